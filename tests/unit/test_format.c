/*
 * Description: hoard_format's reservation of a new image file's blocks
 * (format.c, reserve()) when fallocate(2) fails.  A filesystem that cannot
 * reserve (EOPNOTSUPP, ENOSYS: NFSv3, FUSE, ...) leaves the image sparse:
 * the format succeeds and the cache works, through writes, a reopen and
 * fsck.  Not enough room (ENOSPC) is -EFBIG and any other error is that
 * error, with nothing left behind; --sparse never calls fallocate, and
 * without a fault the whole size is reserved.
 *
 * The faults: this program defines fallocate64 (what fallocate() is
 * under _FILE_OFFSET_BITS=64), which the engine, linked statically,
 * calls instead of libc's; it fails with fa_errno when set and otherwise
 * makes the system call.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cmocka.h>

#include <hoardfs/hoard.h>
#include "../lib/fill.h"

#define IMG "format-test.img"
#define MiB (1024ULL * 1024)

static int fa_errno;  /* fail every fallocate with this errno; 0 = don't */
static int fa_calls;  /* fallocate calls seen */

int fallocate64(int fd, int mode, off_t off, off_t len);
int fallocate64(int fd, int mode, off_t off, off_t len)
{
	fa_calls++;
	if (fa_errno) {
		errno = fa_errno;
		return -1;
	}
	return (int)syscall(SYS_fallocate, fd, mode, off, len);
}

static int setup(void **state)
{
	unlink(IMG);
	fa_errno = 0;
	fa_calls = 0;
	return 0;
}

static uint64_t allocated(void)
{
	struct stat st;
	assert_int_equal(stat(IMG, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

/* The cache on IMG takes data and a record, keeps them over a reopen and
 * passes fsck (data blocks read and verified too). */
static void cache_works(void)
{
	struct hoard_open_opts oo = {.commit_ms = 50};
	struct hoard_cache *c = NULL;
	struct hoard_obj_info info;
	uint32_t vol;
	size_t n = 5 * MiB + 1234;
	uint8_t *w = malloc(n), *r = malloc(n);
	assert_non_null(w);
	assert_non_null(r);
	fill(w, n, 42);
	assert_int_equal(hoard_open(IMG, &oo, &c), 0);
	assert_int_equal(hoard_vol_open(c, "dir:/x", 6, 1, &vol), 0);
	assert_int_equal(hoard_obj_acquire(c, vol, "k", 1, "c", 1, &info), 0);
	assert_int_equal(hoard_pwrite(c, info.id, w, n, 0), (int64_t)n);
	assert_int_equal(hoard_meta_put(c, info.id, 1, 0, "attrs", 5), 0);
	assert_int_equal(hoard_close(c), 0);
	assert_int_equal(hoard_open(IMG, &oo, &c), 0);
	assert_int_equal(hoard_obj_lookup(c, vol, "k", 1, &info), 0);
	memset(r, 0, n);
	assert_int_equal(hoard_pread(c, info.id, r, n, 0), (int64_t)n);
	assert_memory_equal(r, w, n);
	char buf[8];
	assert_int_equal(hoard_meta_get(c, info.id, 1, 0, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "attrs", 5);
	struct hoard_stats st;
	assert_int_equal(hoard_stats(c, &st), 0);
	assert_int_equal(st.csum_errors, 0);
	assert_int_equal(st.io_errors, 0);
	assert_int_equal(hoard_close(c), 0);
	struct hoard_fsck_opts fo = {.check_data = 1};
	struct hoard_fsck_result res;
	assert_int_equal(hoard_fsck(IMG, &fo, &res), 0);
	assert_int_equal(res.errors, 0);
	assert_true(res.data_blocks_checked >= n / HOARD_BLOCK_SIZE);
	assert_int_equal(res.data_blocks_bad, 0);
	free(w);
	free(r);
}

/* A filesystem that cannot reserve: the image is made sparse and works. */
static void unsupported(int err)
{
	struct hoard_format_opts fo = {.size = 64 * MiB};
	fa_errno = err;
	assert_int_equal(hoard_format(IMG, &fo, NULL, 0), 0);
	assert_int_equal(fa_calls, 1);
	fa_errno = 0;
	struct stat st;
	assert_int_equal(stat(IMG, &st), 0);
	assert_int_equal(st.st_size, 64 * MiB);
	/* nothing reserved: only what format wrote (the metadata it
	 * initialises), far from the image's size */
	uint64_t a = allocated();
	if (a >= 32 * MiB)
		fail_msg("a sparse image has %llu bytes allocated, expected far fewer than 64 MiB",
			 (unsigned long long)a);
	cache_works();
}

static void test_eopnotsupp_leaves_a_working_sparse_image(void **state)
{
	unsupported(EOPNOTSUPP);
}

static void test_enosys_leaves_a_working_sparse_image(void **state)
{
	unsupported(ENOSYS);
}

/* Not enough room: -EFBIG, no file. */
static void test_enospc_is_efbig_and_leaves_nothing(void **state)
{
	struct hoard_format_opts fo = {.size = 64 * MiB};
	fa_errno = ENOSPC;
	assert_int_equal(hoard_format(IMG, &fo, NULL, 0), -EFBIG);
	assert_int_equal(fa_calls, 1);
	assert_int_equal(access(IMG, F_OK), -1);
	assert_int_equal(errno, ENOENT);
}

/* Any other failure is the caller's error, no file. */
static void test_other_errors_fail_and_leave_nothing(void **state)
{
	static const int errs[] = {EIO, EPERM};
	for (size_t i = 0; i < sizeof(errs) / sizeof(errs[0]); i++) {
		struct hoard_format_opts fo = {.size = 64 * MiB};
		fa_errno = errs[i];
		int r = hoard_format(IMG, &fo, NULL, 0);
		if (r != -errs[i])
			fail_msg("fallocate failing with %s: hoard_format returned %d, expected %d",
				 strerror(errs[i]), r, -errs[i]);
		assert_int_equal(access(IMG, F_OK), -1);
	}
}

/* --sparse: no fallocate at all; without a fault: all of it reserved. */
static void test_sparse_skips_and_default_reserves(void **state)
{
	struct hoard_format_opts fo = {.size = 64 * MiB, .sparse = 1};
	fa_errno = EIO; /* would fail the format if called */
	assert_int_equal(hoard_format(IMG, &fo, NULL, 0), 0);
	assert_int_equal(fa_calls, 0);
	fa_errno = 0;
	assert_true(allocated() < 32 * MiB);
	cache_works();
	unlink(IMG);
	fo.sparse = 0;
	assert_int_equal(hoard_format(IMG, &fo, NULL, 0), 0);
	assert_int_equal(fa_calls, 1);
	uint64_t a = allocated();
	if (a < 64 * MiB)
		skip(); /* a filesystem here that cannot reserve (the fallback) */
	cache_works();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_eopnotsupp_leaves_a_working_sparse_image, setup),
		cmocka_unit_test_setup(test_enosys_leaves_a_working_sparse_image, setup),
		cmocka_unit_test_setup(test_enospc_is_efbig_and_leaves_nothing, setup),
		cmocka_unit_test_setup(test_other_errors_fail_and_leave_nothing, setup),
		cmocka_unit_test_setup(test_sparse_skips_and_default_reserves, setup),
	};
	int r = cmocka_run_group_tests(tests, NULL, NULL);
	unlink(IMG);
	return r;
}
