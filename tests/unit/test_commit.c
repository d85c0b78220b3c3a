/*
 * Description: the index worker's group commit flushes the device without
 * the engine lock: while a commit's flush is held at the device (memdev's
 * flush gate, which stops its one completion thread: so only work that
 * needs no device I/O can go on), lookups and the present-block index
 * answer, and once it is let go the commit completes and what was written
 * survives a reopen.  Pages dirtied while a commit's journal flush is held
 * are never written home by a checkpoint before they are committed (I2:
 * the journal's checkpoint runs when the records are written, while
 * nothing is dirty, not after the unlocked flush).  A failure of the
 * commit's journal flush, which the worker meets without the engine lock,
 * still makes the cache read-only for good, and what was synced before it
 * is intact after a reopen.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <hoardfs/hoard.h>

#include "../lib/memdev.h"

#define DEV_SIZE (64ull << 20)
#define DATA (256u * 1024)

/* An engine call on a thread of its own, to see whether it waits. */
struct job {
	struct hoard_cache *c;
	uint32_t vol;
	uint64_t id, rid;
	int lookup_r;            /* or the put's result */
	int present_r;
	pthread_mutex_t m;
	pthread_cond_t cv;
	int done;
};

static void job_finish(struct job *j, int r1, int r2)
{
	pthread_mutex_lock(&j->m);
	j->lookup_r = r1;
	j->present_r = r2;
	j->done = 1;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->m);
}

static void *lookup_main(void *arg)
{
	struct job *j = arg;
	struct hoard_obj_info info;
	struct hoard_range rg[2];
	int r = hoard_obj_lookup(j->c, j->vol, "a", 1, &info);
	job_finish(j, r, hoard_present(j->c, j->id, 0, 4096, rg, 2));
	return NULL;
}

/* Wait up to @secs for the job; 1 if it finished. */
static int job_wait(struct job *j, int secs)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += secs;
	pthread_mutex_lock(&j->m);
	int r = 0;
	while (!j->done && r == 0)
		r = pthread_cond_timedwait(&j->cv, &j->m, &dl);
	int done = j->done;
	pthread_mutex_unlock(&j->m);
	return done;
}

/* A fresh cache on @md with a group commit every @commit_ms (and, with
 * @min_mem, the smallest memory budget the engine accepts), a volume and
 * an object "a" in it. */
static struct hoard_cache *setup(struct memdev *md, struct hoard_open_opts *oo,
				 uint32_t commit_ms, int min_mem, uint32_t *vol,
				 struct hoard_obj_info *info)
{
	struct hoard_format_opts fo = {.bucket_size = 64 * 1024};
	assert_int_equal(memdev_format(md, DEV_SIZE, &fo), 0);
	*oo = (struct hoard_open_opts){.dev_ops = &memdev_ops, .dev_arg = md,
				       .commit_ms = commit_ms};
	struct hoard_cache *c = NULL;
	if (min_mem)
		for (oo->mem_budget = 1u << 20; hoard_open("memdev", oo, &c) == -EINVAL;
		     oo->mem_budget += 64u << 10)
			assert_true(oo->mem_budget < (64u << 20));
	else
		assert_int_equal(hoard_open("memdev", oo, &c), 0);
	assert_non_null(c);
	assert_int_equal(hoard_vol_open(c, "v", 1, 1, vol), 0);
	int r = hoard_obj_acquire(c, *vol, "a", 1, "c", 1, info);
	assert_true(r == 0 || r == 1);
	return c;
}

static void test_lookups_go_on_during_a_commit_flush(void **state)
{
	(void)state;
	struct memdev md;
	struct hoard_open_opts oo;
	struct hoard_obj_info info;
	struct job j = {.done = 0};
	struct hoard_cache *c = setup(&md, &oo, 20, 0, &j.vol, &info);
	j.c = c;
	j.id = info.id;
	pthread_mutex_init(&j.m, NULL);
	pthread_cond_init(&j.cv, NULL);
	static uint8_t data[DATA] __attribute__((aligned(4096)));
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 3);
	assert_int_equal(hoard_pwrite(c, j.id, data, 4096, 0), 4096);
	assert_int_equal(hoard_sync(c), 0);

	/* new data: its block pointers make the next group commit's
	 * transaction, and that commit's flush is held at the device */
	memdev_hold_flushes(&md, 1);
	assert_int_equal(hoard_pwrite(c, j.id, data, sizeof(data), 0), (int64_t)sizeof(data));
	assert_int_equal(memdev_wait_held(&md, 1, 30), 0);

	/* the commit's first flush (data before pointers), then, once that
	 * is let go and the records are written, its second (the journal):
	 * with the engine lock held across either, the lookup never finishes
	 * while the flush is held */
	for (uint64_t held = 1; held <= 2; held++) {
		if (held == 2) {
			memdev_release_flushes(&md, 1);
			if (memdev_wait_held(&md, 2, 30) < 0) {
				memdev_hold_flushes(&md, 0);
				fail_msg("the commit's journal flush never came");
			}
		}
		pthread_t t;
		j.done = 0;
		assert_int_equal(pthread_create(&t, NULL, lookup_main, &j), 0);
		int finished = job_wait(&j, 20);
		if (!finished)
			memdev_hold_flushes(&md, 0);
		pthread_join(t, NULL);
		if (!finished)
			fail_msg("a lookup waited for flush %" PRIu64 " of the group commit", held);
		assert_int_equal(j.lookup_r, 0);
		assert_int_equal(j.present_r, 1);
	}
	memdev_hold_flushes(&md, 0);

	/* the commit completes; the data is there after a reopen */
	assert_int_equal(hoard_sync(c), 0);
	assert_int_equal(hoard_close(c), 0);
	assert_int_equal(hoard_open("memdev", &oo, &c), 0);
	static uint8_t back[DATA] __attribute__((aligned(4096)));
	assert_int_equal(hoard_read_sync(c, j.id, 0, sizeof(back), back), (int64_t)sizeof(back));
	assert_memory_equal(back, data, sizeof(data));
	assert_int_equal(hoard_close(c), 0);
	memdev_fini(&md);
	pthread_mutex_destroy(&j.m);
	pthread_cond_destroy(&j.cv);
}

static uint8_t big_val[HOARD_META_MAX];

static void *put_main(void *arg)
{
	struct job *j = arg;
	job_finish(j, hoard_meta_put(j->c, j->id, 7, j->rid, big_val, sizeof(big_val)), 0);
	return NULL;
}

static uint64_t held(struct memdev *md)
{
	pthread_mutex_lock(&md->lock);
	uint64_t n = md->flushes_held;
	pthread_mutex_unlock(&md->lock);
	return n;
}

#define PUTS 6   /* big records per round: new leaf pages to journal */
#define ROUNDS 60

static void test_no_checkpoint_of_pages_dirtied_during_a_commit(void **state)
{
	(void)state;
	struct memdev md;
	struct hoard_open_opts oo;
	uint32_t vol;
	struct hoard_obj_info info;
	/* the smallest memory the engine accepts: few page frames, so the
	 * journal is due for a checkpoint every few commits */
	struct hoard_cache *c = setup(&md, &oo, 5, 1, &vol, &info);
	for (size_t i = 0; i < sizeof(big_val); i++)
		big_val[i] = (uint8_t)(i * 13 + 1);
	assert_int_equal(hoard_sync(c), 0);

	uint64_t rid = 0;
	for (int round = 0; round < ROUNDS; round++) {
		memdev_hold_flushes(&md, 1);
		uint64_t h = held(&md);
		for (int k = 0; k < PUTS; k++)
			assert_int_equal(hoard_meta_put(c, info.id, 7, rid++, big_val,
							sizeof(big_val)), 0);
		/* the group commit: its first flush, then (records written,
		 * pages journaled) its second, or a checkpoint's */
		if (memdev_wait_held(&md, h + 1, 30))
			fail_msg("round %d: no group commit", round);
		memdev_release_flushes(&md, 1);
		if (memdev_wait_held(&md, h + 2, 30))
			fail_msg("round %d: no second flush in the group commit", round);
		/* dirty the page just journaled while that flush is held; with
		 * a checkpoint running under the engine lock, the put waits for
		 * it (the gate is let go below) */
		struct job j = {.c = c, .id = info.id, .rid = rid - 1, .done = 0};
		pthread_mutex_init(&j.m, NULL);
		pthread_cond_init(&j.cv, NULL);
		pthread_t t;
		assert_int_equal(pthread_create(&t, NULL, put_main, &j), 0);
		job_wait(&j, 2);
		memdev_hold_flushes(&md, 0);
		pthread_join(t, NULL);
		assert_int_equal(j.lookup_r, 0);
		pthread_mutex_destroy(&j.m);
		pthread_cond_destroy(&j.cv);
		assert_int_equal(hoard_sync(c), 0);
		struct hoard_stats st;
		assert_int_equal(hoard_stats(c, &st), 0);
		if (st.read_only)
			fail_msg("round %d: the store turned read-only (a checkpoint with dirty pages)", round);
	}
	pthread_mutex_lock(&md.lock);
	uint64_t flushes = md.nflushes;
	pthread_mutex_unlock(&md.lock);
	/* checkpoints happened (each adds two flushes): the test met the
	 * case it is about */
	if (flushes <= 4u * ROUNDS) /* two a group commit, two a sync */
		fail_msg("no checkpoint in %d rounds (%" PRIu64 " flushes)", ROUNDS, flushes);
	assert_int_equal(hoard_close(c), 0);
	assert_int_equal(hoard_open("memdev", &oo, &c), 0);
	uint8_t back[HOARD_META_MAX];
	for (uint64_t i = 0; i < rid; i++) {
		assert_int_equal(hoard_meta_get(c, info.id, 7, i, back, sizeof(back)),
				 (int)sizeof(back));
		assert_memory_equal(back, big_val, sizeof(back));
	}
	assert_int_equal(hoard_close(c), 0);
	memdev_fini(&md);
}

static void test_failed_journal_flush_is_sticky(void **state)
{
	(void)state;
	struct memdev md;
	struct hoard_open_opts oo;
	uint32_t vol;
	struct hoard_obj_info info;
	struct hoard_cache *c = setup(&md, &oo, 20, 0, &vol, &info);
	static uint8_t a[DATA] __attribute__((aligned(4096)));
	static uint8_t b[DATA] __attribute__((aligned(4096)));
	static uint8_t back[DATA] __attribute__((aligned(4096)));
	memset(a, 'a', sizeof(a));
	memset(b, 'b', sizeof(b));
	assert_int_equal(hoard_pwrite(c, info.id, a, sizeof(a), 0), (int64_t)sizeof(a));
	assert_int_equal(hoard_sync(c), 0);

	/* the next group commit: its first flush is held; the one after it
	 * (the journal's, run by the worker without the engine lock) fails */
	memdev_hold_flushes(&md, 1);
	uint64_t h = held(&md);
	assert_int_equal(hoard_pwrite(c, info.id, b, sizeof(b), sizeof(a)), (int64_t)sizeof(b));
	assert_int_equal(memdev_wait_held(&md, h + 1, 30), 0);
	pthread_mutex_lock(&md.lock);
	md.fail_flush_nth = md.nflushes + 1;
	pthread_mutex_unlock(&md.lock);
	memdev_release_flushes(&md, 1);
	assert_int_equal(memdev_wait_held(&md, h + 2, 30), 0);
	memdev_hold_flushes(&md, 0);
	/* the worker hands the failure to the store before it indexes any
	 * write that completes meanwhile (its queue waits for the commit it
	 * is in): so this write, issued now, is refused either way */
	assert_int_equal(hoard_pwrite(c, info.id, a, 4096, 0), -EROFS);
	struct hoard_stats st = {0};
	assert_int_equal(hoard_stats(c, &st), 0);
	if (!st.read_only)
		fail_msg("a failed journal flush left the cache writable");
	assert_int_equal(md.faults, 1);
	assert_int_equal(hoard_pwrite(c, info.id, a, 4096, 0), -EROFS);
	assert_int_equal(hoard_sync(c), -EROFS);
	hoard_close(c); /* may report the sticky error */

	/* reopened: what was synced is there; the failed commit's data is
	 * either there whole or absent, never anything else */
	md.fail_flush_nth = 0;
	assert_int_equal(hoard_open("memdev", &oo, &c), 0);
	assert_int_equal(hoard_read_sync(c, info.id, 0, sizeof(back), back), (int64_t)sizeof(back));
	assert_memory_equal(back, a, sizeof(a));
	int64_t n = hoard_read_sync(c, info.id, sizeof(a), sizeof(back), back);
	assert_true(n == 0 || n == (int64_t)sizeof(b));
	if (n)
		assert_memory_equal(back, b, sizeof(b));
	assert_int_equal(hoard_close(c), 0);
	memdev_fini(&md);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lookups_go_on_during_a_commit_flush),
		cmocka_unit_test(test_no_checkpoint_of_pages_dirtied_during_a_commit),
		cmocka_unit_test(test_failed_journal_flush_is_sticky),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
