/*
 * Description: the index worker's group commit flushes the device without
 * the engine lock: while a commit's flush is held at the device (memdev's
 * flush gate, which stops its one completion thread: so only work that
 * needs no device I/O can go on), lookups and the present-block index
 * answer, and once it is let go the commit completes and what was written
 * survives a reopen.
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

struct lookup_job {
	struct hoard_cache *c;
	uint32_t vol;
	uint64_t id;
	int lookup_r;
	int present_r;
	pthread_mutex_t m;
	pthread_cond_t cv;
	int done;
};

static void *lookup_main(void *arg)
{
	struct lookup_job *j = arg;
	struct hoard_obj_info info;
	struct hoard_range rg[2];
	int r = hoard_obj_lookup(j->c, j->vol, "a", 1, &info);
	int n = hoard_present(j->c, j->id, 0, 4096, rg, 2);
	pthread_mutex_lock(&j->m);
	j->lookup_r = r;
	j->present_r = n;
	j->done = 1;
	pthread_cond_signal(&j->cv);
	pthread_mutex_unlock(&j->m);
	return NULL;
}

/* Wait up to @secs for the job; 1 if it finished. */
static int job_wait(struct lookup_job *j, int secs)
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

static void test_lookups_go_on_during_a_commit_flush(void **state)
{
	(void)state;
	struct memdev md;
	struct hoard_format_opts fo = {.bucket_size = 64 * 1024};
	assert_int_equal(memdev_format(&md, DEV_SIZE, &fo), 0);
	struct hoard_open_opts oo = {.dev_ops = &memdev_ops, .dev_arg = &md, .commit_ms = 20};
	struct hoard_cache *c = NULL;
	assert_int_equal(hoard_open("memdev", &oo, &c), 0);

	static uint8_t data[DATA] __attribute__((aligned(4096)));
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + 3);
	struct lookup_job j = {.c = c, .done = 0};
	pthread_mutex_init(&j.m, NULL);
	pthread_cond_init(&j.cv, NULL);
	struct hoard_obj_info info;
	assert_int_equal(hoard_vol_open(c, "v", 1, 1, &j.vol), 0);
	int r = hoard_obj_acquire(c, j.vol, "a", 1, "c", 1, &info);
	assert_true(r == 0 || r == 1);
	j.id = info.id;
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lookups_go_on_during_a_commit_flush),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
