/*
 * Description: opening a cache (clean, and after a crash with a non-empty
 * journal) costs a number of device reads that does not grow with the
 * number of objects it holds.  hoard.h promises that recovery is bounded
 * by the journal size, not by the number of objects; this counts device
 * READ requests (and bytes) through memdev during hoard_open for caches of
 * 2k, 20k and 200k committed, checkpointed objects, on devices of the same
 * size (so the same layout and journal size), and asserts the counts are
 * equal within a small constant.
 *
 * Env: HOARD_RECOVERY_MAXOBJS caps the largest N (default 200000).
 * Exit 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hoardfs/hoard.h>
#include "../lib/memdev.h"

#define DEV_SIZE (2ull << 30)   /* meta area = 1/16: room for 200k objects */
#define SLACK 8                 /* reads allowed to differ (tree height...) */
#define TAIL_OBJS 200           /* objects left in the journal for the crash case */

struct counts {
	uint64_t reads, bytes;
	double secs;
};

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int count_open(struct memdev *md, struct counts *ct, uint64_t expect_objs)
{
	struct hoard_open_opts oo = { .dev_ops = &memdev_ops, .dev_arg = md, .read_only = 1 };
	struct hoard_cache *c;
	uint64_t r0 = md->nreads, b0 = md->read_bytes;
	double t0 = now();
	int rc = hoard_open("memdev", &oo, &c);
	ct->secs = now() - t0;
	ct->reads = md->nreads - r0;
	ct->bytes = md->read_bytes - b0;
	if (rc) {
		fprintf(stderr, "FAIL: hoard_open = %d (%s)\n", rc, hoard_strerror(rc));
		return -1;
	}
	struct hoard_stats st;
	rc = hoard_stats(c, &st);
	hoard_close(c);
	if (rc || st.objects != expect_objs) {
		fprintf(stderr, "FAIL: stats = %d, objects %" PRIu64 ", expected %" PRIu64 "\n", rc,
			st.objects, expect_objs);
		return -1;
	}
	return 0;
}

static int add_objects(struct hoard_cache *c, uint32_t vol, uint64_t from, uint64_t n)
{
	for (uint64_t i = from; i < from + n; i++) {
		char key[24];
		struct hoard_obj_info info;
		int len = snprintf(key, sizeof(key), "k%08" PRIu64, i);
		int rc = hoard_obj_acquire(c, vol, key, (size_t)len, "c", 1, &info);
		if (rc < 0) {
			fprintf(stderr, "FAIL: creating object %" PRIu64 ": %d (%s)\n", i, rc, hoard_strerror(rc));
			return rc;
		}
		if ((i + 1) % 5000 == 0 && (rc = hoard_sync(c)) != 0) {
			fprintf(stderr, "FAIL: hoard_sync: %d\n", rc);
			return rc;
		}
	}
	return 0;
}

/* Build a cache of @n objects; measure a clean open and an open after a
 * crash that leaves TAIL_OBJS objects' creation in the journal only. */
static int measure(uint64_t n, struct counts *clean, struct counts *crash)
{
	struct memdev md, snap;
	struct hoard_cache *c;
	uint32_t vol;
	int rc = memdev_format(&md, DEV_SIZE, NULL);
	if (rc) {
		fprintf(stderr, "FAIL: formatting %llu bytes: %d\n", DEV_SIZE, rc);
		return -1;
	}
	struct hoard_open_opts oo = { .dev_ops = &memdev_ops, .dev_arg = &md, .commit_ms = 600000 };
	double t0 = now();
	rc = hoard_open("memdev", &oo, &c);
	if (rc) {
		fprintf(stderr, "FAIL: hoard_open of a fresh cache: %d\n", rc);
		memdev_fini(&md);
		return -1;
	}
	rc = hoard_vol_open(c, "vol", 3, 1, &vol);
	if (!rc)
		rc = add_objects(c, vol, 0, n);
	int crc = hoard_close(c);
	if (rc || crc) {
		fprintf(stderr, "FAIL: building %" PRIu64 " objects: %d, close %d\n", n, rc, crc);
		memdev_fini(&md);
		return -1;
	}
	double built = now() - t0;
	rc = count_open(&md, clean, n);

	/* crash case: a few more objects committed to the journal, then the
	 * device is copied without closing (no checkpoint) */
	if (!rc)
		rc = hoard_open("memdev", &oo, &c);
	if (!rc) {
		rc = hoard_vol_open(c, "vol", 3, 0, &vol);
		if (!rc)
			rc = add_objects(c, vol, n, TAIL_OBJS);
		if (!rc)
			rc = hoard_sync(c);
		memdev_drain(&md);
		if (!rc)
			rc = memdev_clone(&snap, &md);
		hoard_close(c);
		if (!rc) {
			rc = count_open(&snap, crash, n + TAIL_OBJS);
			memdev_fini(&snap);
		}
	}
	fprintf(stderr,
		"%7" PRIu64 " objects (built in %.1fs): clean open %" PRIu64 " reads / %" PRIu64
		" KiB / %.3fs; after crash %" PRIu64 " reads / %" PRIu64 " KiB / %.3fs\n",
		n, built, clean->reads, clean->bytes >> 10, clean->secs, crash->reads, crash->bytes >> 10,
		crash->secs);
	memdev_fini(&md);
	return rc ? -1 : 0;
}

int main(void)
{
	uint64_t sizes[] = { 2000, 20000, 200000 };
	const char *e = getenv("HOARD_RECOVERY_MAXOBJS");
	uint64_t maxn = e && *e ? strtoull(e, NULL, 0) : 200000;
	struct counts cl[3], cr[3];
	int ns = 0, fail = 0;
	for (int i = 0; i < 3; i++) {
		if (sizes[i] > maxn)
			break;
		if (measure(sizes[i], &cl[i], &cr[i]))
			return 1;
		ns++;
	}
	if (ns < 2) {
		fprintf(stderr, "HOARD_RECOVERY_MAXOBJS too small to compare two sizes\n");
		return 77;
	}
	for (int i = 1; i < ns; i++) {
		if (cl[i].reads > cl[0].reads + SLACK) {
			fprintf(stderr, "FAIL: clean open of %" PRIu64 " objects took %" PRIu64
				" device reads, of %" PRIu64 " objects %" PRIu64 " (allowed +%d)\n",
				sizes[i], cl[i].reads, sizes[0], cl[0].reads, SLACK);
			fail = 1;
		}
		if (cr[i].reads > cr[0].reads + SLACK) {
			fprintf(stderr, "FAIL: recovery of %" PRIu64 " objects took %" PRIu64
				" device reads, of %" PRIu64 " objects %" PRIu64 " (allowed +%d)\n",
				sizes[i], cr[i].reads, sizes[0], cr[0].reads, SLACK);
			fail = 1;
		}
	}
	fprintf(stderr, "crash_recovery_reads: %s\n", fail ? "FAIL" : "PASS");
	return fail;
}
