/*
 * Description: the io_uring device (src/engine/dev_uring.c) under ring
 * faults a test cannot get from the kernel on demand.
 *   - Transient completions: a read, write or flush that completes with
 *     -EAGAIN is done again, on the data ring (the reaper queues it
 *     again) and on the metadata ring (uring_sync_io does it with
 *     pread/pwrite/fsync): no error reaches the caller, the cache does not
 *     turn read-only, and everything is there after a reopen, fsck clean.
 *   - A data ring that refuses SQEs (io_uring_submit failing for good
 *     while the submission queue is full, get_sqe): the ios that find no
 *     room fail (a read reports a miss, counted in io_errors), every
 *     callback is called once, nothing waits for ever, no wrong byte is
 *     returned, and once the ring submits again the cache works.
 *   - A data ring that refuses every submit while what is queued fits:
 *     the ios stay queued, the reaper asks again every 10 ms (no spin),
 *     and they complete once the ring submits again.
 *
 * The faults: this program defines io_uring_submit, io_uring_submit_and_wait
 * and io_uring_submit_and_wait_timeout, which the engine, linked
 * statically, calls instead of liburing's (reached with dlsym(RTLD_NEXT)).
 * To make the kernel itself complete an io with -EAGAIN, the wrapper
 * rewrites the io's pending SQE (between the ring's sqe_head and
 * sqe_tail) into a RWF_NOWAIT read of an empty pipe, keeping its
 * user_data: the engine sees its own io complete with -EAGAIN.  The data
 * ring is told from the metadata ring by its size (RING_DEPTH 256 against
 * SYNC_DEPTH 64 in dev_uring.c); the test fails, not passes, if that
 * changes (no fault of a kind injected).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include <hoardfs/hoard.h>
#include "../lib/fill.h"

#define IMG "uring-faults-test.img"
#define MiB (1024ULL * 1024)
#define BLK HOARD_BLOCK_SIZE
#define DATA_RING_ENTRIES 256u /* dev_uring.c RING_DEPTH */

enum { OP_READ, OP_WRITE, OP_FSYNC, NOPS };
static const char *const op_name[NOPS] = {"read", "write", "flush"};

static int pipe_fds[2];            /* empty: a RWF_NOWAIT read is -EAGAIN */
static char scratch[8];
static atomic_uint every;          /* make every Nth io of the device -EAGAIN; 0 off */
static atomic_uint eligible;
static atomic_uint injected[2][NOPS]; /* [data ring][op] */
static atomic_int broken;          /* the data ring's submits fail, -ENXIO */
static atomic_uint refused;        /* ... of which with the queue full (get_sqe) */
static atomic_uint attempts;       /* submits of the broken data ring, all kinds */

static bool is_data_ring(const struct io_uring *r)
{
	return r->sq.ring_entries == DATA_RING_ENTRIES;
}

/* Turn every Nth pending read, write or fsync of a regular file (the
 * cache image: not the reaper's eventfd read) into an -EAGAIN. */
static void inject(struct io_uring *r)
{
	unsigned n = atomic_load(&every);
	if (!n)
		return;
	for (unsigned i = r->sq.sqe_head; i != r->sq.sqe_tail; i++) {
		struct io_uring_sqe *sqe = &r->sq.sqes[i & r->sq.ring_mask];
		int op = sqe->opcode == IORING_OP_READ    ? OP_READ
			 : sqe->opcode == IORING_OP_WRITE ? OP_WRITE
			 : sqe->opcode == IORING_OP_FSYNC ? OP_FSYNC
							  : -1;
		struct stat st;
		if (op < 0 || fstat(sqe->fd, &st) < 0 || !S_ISREG(st.st_mode))
			continue;
		if (atomic_fetch_add(&eligible, 1) % n)
			continue;
		uint64_t ud = sqe->user_data;
		io_uring_prep_read(sqe, pipe_fds[0], scratch, sizeof(scratch), (uint64_t)-1);
		sqe->rw_flags = RWF_NOWAIT;
		sqe->user_data = ud;
		atomic_fetch_add(&injected[is_data_ring(r)][op], 1);
	}
}

static pthread_mutex_t attempt_m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t attempt_cv = PTHREAD_COND_INITIALIZER; /* attempts > 0 */

static int refuse(struct io_uring *r)
{
	if (atomic_fetch_add(&attempts, 1) == 0) {
		pthread_mutex_lock(&attempt_m);
		pthread_cond_broadcast(&attempt_cv);
		pthread_mutex_unlock(&attempt_m);
	}
	if (r->sq.sqe_tail - r->sq.sqe_head >= r->sq.ring_entries)
		atomic_fetch_add(&refused, 1);
	return -ENXIO;
}

int io_uring_submit(struct io_uring *r)
{
	static int (*real)(struct io_uring *);
	if (!real)
		real = (int (*)(struct io_uring *))dlsym(RTLD_NEXT, "io_uring_submit");
	if (is_data_ring(r) && atomic_load(&broken))
		return refuse(r);
	inject(r);
	return real(r);
}

int io_uring_submit_and_wait(struct io_uring *r, unsigned wait_nr)
{
	static int (*real)(struct io_uring *, unsigned);
	if (!real)
		real = (int (*)(struct io_uring *, unsigned))dlsym(RTLD_NEXT, "io_uring_submit_and_wait");
	if (is_data_ring(r) && atomic_load(&broken))
		return refuse(r);
	inject(r);
	return real(r, wait_nr);
}

typedef int (*submit_wait_timeout_fn)(struct io_uring *, struct io_uring_cqe **, unsigned,
				      struct __kernel_timespec *, sigset_t *);
int io_uring_submit_and_wait_timeout(struct io_uring *r, struct io_uring_cqe **cqe,
				     unsigned wait_nr, struct __kernel_timespec *ts,
				     sigset_t *sigmask)
{
	static submit_wait_timeout_fn real;
	if (!real)
		real = (submit_wait_timeout_fn)dlsym(RTLD_NEXT, "io_uring_submit_and_wait_timeout");
	if (is_data_ring(r) && atomic_load(&broken))
		return refuse(r);
	inject(r);
	return real(r, cqe, wait_nr, ts, sigmask);
}

static int setup(void **state)
{
	unlink(IMG);
	atomic_store(&every, 0);
	atomic_store(&eligible, 0);
	memset(injected, 0, sizeof(injected));
	atomic_store(&broken, 0);
	atomic_store(&refused, 0);
	atomic_store(&attempts, 0);
	if (pipe2(pipe_fds, O_CLOEXEC) < 0)
		return -1;
	struct hoard_format_opts fo = {.size = 64 * MiB, .bucket_size = 256 * 1024};
	return hoard_format(IMG, &fo, NULL, 0);
}

static int teardown(void **state)
{
	close(pipe_fds[0]);
	close(pipe_fds[1]);
	unlink(IMG);
	return 0;
}

static struct hoard_cache *open_img(void)
{
	struct hoard_open_opts oo = {.commit_ms = 20};
	struct hoard_cache *c = NULL;
	int r = hoard_open(IMG, &oo, &c);
	if (r)
		fail_msg("hoard_open: %d", r);
	return c;
}

static void fsck_clean(void)
{
	struct hoard_fsck_opts fo = {.check_data = 1};
	struct hoard_fsck_result res;
	int r = hoard_fsck(IMG, &fo, &res);
	if (r != 0 || res.errors || res.data_blocks_bad)
		fail_msg("fsck: %d, %llu errors, %llu bad data blocks", r,
			 (unsigned long long)res.errors,
			 (unsigned long long)res.data_blocks_bad);
}

static void expect_clean_stats(struct hoard_cache *c, const char *when)
{
	struct hoard_stats st;
	assert_int_equal(hoard_stats(c, &st), 0);
	if (st.io_errors || st.csum_errors || st.read_only)
		fail_msg("%s: io_errors %llu, csum_errors %llu, read_only %d (expected none)",
			 when, (unsigned long long)st.io_errors,
			 (unsigned long long)st.csum_errors, st.read_only);
}

#define NOBJ 4
#define OBJ_LEN (3 * MiB + 5000)
#define FRAG_BLOCKS 32u

/* Two objects written a block at a time, alternately: each one's blocks
 * lie every other block on the device, so reading FRAG_BLOCKS of one is
 * FRAG_BLOCKS ios. */
static void write_fragmented(struct hoard_cache *c, uint32_t vol, uint64_t id[2],
			     uint8_t *data[2])
{
	struct hoard_obj_info info;
	for (int o = 0; o < 2; o++) {
		char key[16];
		snprintf(key, sizeof(key), "frag%d", o);
		assert_int_equal(hoard_obj_acquire(c, vol, key, strlen(key), "c", 1, &info), 0);
		id[o] = info.id;
		fill(data[o], FRAG_BLOCKS * BLK, 100 + (uint64_t)o);
	}
	for (unsigned b = 0; b < FRAG_BLOCKS; b++)
		for (int o = 0; o < 2; o++)
			assert_int_equal(hoard_pwrite(c, id[o], data[o] + b * BLK, BLK, b * BLK),
					 BLK);
}

static void test_eagain_completions_are_done_again(void **state)
{
	uint8_t *w[NOBJ], *r = malloc(OBJ_LEN), *frag[2];
	uint64_t id[NOBJ], fid[2];
	uint32_t vol;
	struct hoard_obj_info info;
	assert_non_null(r);
	for (int o = 0; o < 2; o++) {
		assert_int_equal(posix_memalign((void **)&frag[o], BLK, FRAG_BLOCKS * BLK), 0);
	}
	uint8_t *rb = NULL;
	assert_int_equal(posix_memalign((void **)&rb, BLK, FRAG_BLOCKS * BLK), 0);

	struct hoard_cache *c = open_img();
	atomic_store(&every, 3);
	assert_int_equal(hoard_vol_open(c, "v", 1, 1, &vol), 0);
	for (int o = 0; o < NOBJ; o++) {
		char key[16];
		snprintf(key, sizeof(key), "o%d", o);
		w[o] = malloc(OBJ_LEN);
		assert_non_null(w[o]);
		fill(w[o], OBJ_LEN, (uint64_t)o);
		assert_int_equal(hoard_obj_acquire(c, vol, key, strlen(key), "c", 1, &info), 0);
		id[o] = info.id;
		assert_int_equal(hoard_pwrite(c, id[o], w[o], OBJ_LEN, 0), OBJ_LEN);
		for (uint64_t rid = 0; rid < 50; rid++)
			assert_int_equal(hoard_meta_put(c, id[o], 2, rid, &rid, sizeof(rid)), 0);
		assert_int_equal(hoard_sync(c), 0);
	}
	write_fragmented(c, vol, fid, frag);
	assert_int_equal(hoard_sync(c), 0);
	for (int o = 0; o < NOBJ; o++) {
		memset(r, 0, OBJ_LEN);
		assert_int_equal(hoard_pread(c, id[o], r, OBJ_LEN, 0), OBJ_LEN);
		assert_memory_equal(r, w[o], OBJ_LEN);
	}
	/* a read in this thread of scattered blocks: several ios on the
	 * metadata ring (sync_io) */
	for (int i = 0; i < 6; i++) {
		memset(rb, 0, FRAG_BLOCKS * BLK);
		assert_int_equal(hoard_read_sync(c, fid[i % 2], 0, FRAG_BLOCKS * BLK, rb),
				 FRAG_BLOCKS * BLK);
		assert_memory_equal(rb, frag[i % 2], FRAG_BLOCKS * BLK);
	}
	expect_clean_stats(c, "with -EAGAIN completions");
	assert_int_equal(hoard_close(c), 0);
	atomic_store(&every, 0);

	static const bool want[2][NOPS] = {{true, true, true}, {true, true, false}};
	for (int d = 0; d < 2; d++)
		for (int op = 0; op < NOPS; op++) {
			unsigned n = atomic_load(&injected[d][op]);
			printf("# %s ring: %u %s completions made -EAGAIN\n",
			       d ? "data" : "metadata", n, op_name[op]);
			if (want[d][op] && n == 0)
				fail_msg("no %s on the %s ring was made -EAGAIN: the test did not reach the retry",
					 op_name[op], d ? "data" : "metadata");
		}

	c = open_img();
	for (int o = 0; o < NOBJ; o++) {
		char key[16];
		snprintf(key, sizeof(key), "o%d", o);
		assert_int_equal(hoard_obj_lookup(c, vol, key, strlen(key), &info), 0);
		memset(r, 0, OBJ_LEN);
		assert_int_equal(hoard_pread(c, info.id, r, OBJ_LEN, 0), OBJ_LEN);
		assert_memory_equal(r, w[o], OBJ_LEN);
		for (uint64_t rid = 0; rid < 50; rid++) {
			uint64_t v = ~0ull;
			assert_int_equal(hoard_meta_get(c, info.id, 2, rid, &v, sizeof(v)), sizeof(v));
			assert_int_equal(v, rid);
		}
		free(w[o]);
	}
	expect_clean_stats(c, "after a reopen");
	assert_int_equal(hoard_close(c), 0);
	fsck_clean();
	free(r);
	free(rb);
	free(frag[0]);
	free(frag[1]);
}

/* ---- a data ring that refuses SQEs ---- */

#define NREADS 20 /* of FRAG_BLOCKS ios each: more than the ring holds */

struct rd {
	pthread_mutex_t *m;
	pthread_cond_t *cv;
	int *ndone;
	int calls;
	int64_t res;
	uint8_t *buf;
};

static void rd_done(void *arg, int64_t res)
{
	struct rd *x = arg;
	pthread_mutex_lock(x->m);
	x->calls++;
	x->res = res;
	(*x->ndone)++;
	pthread_cond_broadcast(x->cv);
	pthread_mutex_unlock(x->m);
}

/* A cache holding the two objects of write_fragmented (their bytes in
 * @frag), committed, and @r: room for @nbufs reads of FRAG_BLOCKS. */
static struct hoard_cache *fragmented_cache(uint8_t *frag[2], uint64_t fid[2], uint8_t **r,
					    unsigned nbufs)
{
	uint32_t vol;
	for (int o = 0; o < 2; o++)
		assert_int_equal(posix_memalign((void **)&frag[o], BLK, FRAG_BLOCKS * BLK), 0);
	assert_int_equal(posix_memalign((void **)r, BLK, nbufs * FRAG_BLOCKS * BLK), 0);
	struct hoard_cache *c = open_img();
	assert_int_equal(hoard_vol_open(c, "v", 1, 1, &vol), 0);
	write_fragmented(c, vol, fid, frag);
	assert_int_equal(hoard_sync(c), 0);
	return c;
}

static void test_refused_sqes_fail_their_ios(void **state)
{
	uint8_t *frag[2], *r;
	uint64_t fid[2];
	struct hoard_cache *c = fragmented_cache(frag, fid, &r, NREADS);

	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
	int ndone = 0;
	struct rd rds[NREADS];
	atomic_store(&broken, 1);
	for (int i = 0; i < NREADS; i++) {
		rds[i] = (struct rd){&m, &cv, &ndone, 0, -1, r + (size_t)i * FRAG_BLOCKS * BLK};
		memset(rds[i].buf, 0xee, FRAG_BLOCKS * BLK);
		assert_int_equal(hoard_read(c, fid[0], 0, FRAG_BLOCKS * BLK, rds[i].buf, rd_done,
					    &rds[i]),
				 0);
	}
	/* The reaper fills the queue (256 SQEs) and then, for each io that
	 * finds no room, asks the ring to submit: refused.  Those ios fail,
	 * and the reads they belong to complete.  Wait for one. */
	pthread_mutex_lock(&m);
	while (ndone == 0)
		pthread_cond_wait(&cv, &m);
	pthread_mutex_unlock(&m);
	unsigned nref = atomic_load(&refused);
	printf("# %u submits of a full queue refused before the first read completed\n", nref);
	if (nref == 0)
		fail_msg("a read completed, but no submit of a full queue was refused");
	atomic_store(&broken, 0); /* the ring works again: the rest go through */
	pthread_mutex_lock(&m);
	while (ndone < NREADS)
		pthread_cond_wait(&cv, &m);
	pthread_mutex_unlock(&m);

	int failed = 0;
	for (int i = 0; i < NREADS; i++) {
		assert_int_equal(rds[i].calls, 1);
		if (rds[i].res == 0) { /* a miss: the caller goes to the server */
			failed++;
			continue;
		}
		if (rds[i].res != FRAG_BLOCKS * BLK)
			fail_msg("read %d: %lld bytes, expected 0 (failed) or %u", i,
				 (long long)rds[i].res, FRAG_BLOCKS * BLK);
		assert_memory_equal(rds[i].buf, frag[0], FRAG_BLOCKS * BLK);
	}
	struct hoard_stats st;
	assert_int_equal(hoard_stats(c, &st), 0);
	printf("# %d of %d reads failed, io_errors %llu\n", failed, NREADS,
	       (unsigned long long)st.io_errors);
	if (failed == 0 || st.io_errors == 0)
		fail_msg("refused ios: %d reads failed, io_errors %llu (expected some)", failed,
			 (unsigned long long)st.io_errors);
	assert_int_equal(st.read_only, 0);

	/* the ring works again: reads, writes, a commit */
	for (int o = 0; o < 2; o++) {
		memset(r, 0, FRAG_BLOCKS * BLK);
		assert_int_equal(hoard_pread(c, fid[o], r, FRAG_BLOCKS * BLK, 0), FRAG_BLOCKS * BLK);
		assert_memory_equal(r, frag[o], FRAG_BLOCKS * BLK);
	}
	fill(frag[1], FRAG_BLOCKS * BLK, 7);
	assert_int_equal(hoard_pwrite(c, fid[1], frag[1], FRAG_BLOCKS * BLK, 0), FRAG_BLOCKS * BLK);
	assert_int_equal(hoard_sync(c), 0);
	assert_int_equal(hoard_close(c), 0);
	c = open_img();
	for (int o = 0; o < 2; o++) {
		memset(r, 0, FRAG_BLOCKS * BLK);
		assert_int_equal(hoard_pread(c, fid[o], r, FRAG_BLOCKS * BLK, 0), FRAG_BLOCKS * BLK);
		assert_memory_equal(r, frag[o], FRAG_BLOCKS * BLK);
	}
	assert_int_equal(hoard_close(c), 0);
	fsck_clean();
	free(r);
	free(frag[0]);
	free(frag[1]);
}

/*
 * A data ring that refuses every submit while the ios queued fit in it
 * (so get_sqe never fails one): the reaper keeps them queued and tries
 * again later, without spinning a core meanwhile; once the ring submits
 * again they complete with the right bytes.  Before the fix the reaper
 * called io_uring_submit_and_wait again at once, thousands of times in
 * the 100 ms window (spinning at full CPU).
 */
static void test_refusing_ring_does_not_spin(void **state)
{
	uint8_t *frag[2], *r;
	uint64_t fid[2];
	struct hoard_cache *c = fragmented_cache(frag, fid, &r, 1);

	pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
	pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
	int ndone = 0;
	struct rd rd = {&m, &cv, &ndone, 0, -1, r};
	memset(r, 0xee, FRAG_BLOCKS * BLK);
	atomic_store(&broken, 1);
	assert_int_equal(hoard_read(c, fid[0], 0, FRAG_BLOCKS * BLK, r, rd_done, &rd), 0);
	/* from the first refused submit on (waited for, at most 10 s), how
	 * often the reaper asks again in a 100 ms window (the sleep is the
	 * window being measured, not a wait for an event) */
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 10;
	pthread_mutex_lock(&attempt_m);
	while (atomic_load(&attempts) == 0 &&
	       pthread_cond_timedwait(&attempt_cv, &attempt_m, &dl) == 0)
		;
	pthread_mutex_unlock(&attempt_m);
	unsigned n0 = atomic_load(&attempts);
	if (n0 == 0)
		fail_msg("no submit was refused in 10 s: the fault was not injected");
	struct timespec w = {.tv_nsec = 100 * 1000000L};
	nanosleep(&w, NULL);
	unsigned n = atomic_load(&attempts) - n0;
	printf("# %u refused submits in 100 ms\n", n);
	if (n > 50)
		fail_msg("%u submits of a refusing ring in 100 ms: the reaper spins", n);
	pthread_mutex_lock(&m);
	assert_int_equal(ndone, 0); /* still queued, not failed */
	pthread_mutex_unlock(&m);
	atomic_store(&broken, 0);
	pthread_mutex_lock(&m);
	while (ndone == 0)
		pthread_cond_wait(&cv, &m);
	pthread_mutex_unlock(&m);
	assert_int_equal(rd.calls, 1);
	assert_int_equal(rd.res, FRAG_BLOCKS * BLK);
	assert_memory_equal(r, frag[0], FRAG_BLOCKS * BLK);
	assert_int_equal(hoard_close(c), 0);
	free(r);
	free(frag[0]);
	free(frag[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_eagain_completions_are_done_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused_sqes_fail_their_ios, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusing_ring_does_not_spin, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
