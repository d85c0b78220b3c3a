/*
 * Description: device errors never corrupt the cache.  For every N, the
 * Nth device write (then, separately, the Nth flush and the Nth read) of
 * a small workload fails with -EIO (memdev fault injection).  Checked:
 *   - no call crashes or hangs; errors are returned as negative errnos;
 *   - once a metadata write or flush has failed the cache says read-only
 *     (stats.read_only) and later writes/syncs fail (sticky, hoard.h);
 *   - the device then opens again (faults off) and every block and record
 *     it returns is one that was written there (never wrong bytes), and
 *     everything synced before the first fault is still there.
 * Exit 0 pass, 1 fail.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hoardfs/hoard.h>
#include "../lib/memdev.h"

#define DEV_SIZE (16ull << 20)
#define NOBJ 8
#define NBLK 6
#define ROUNDS 3

static int failures;
#define FAIL(...) do { fprintf(stderr, "FAIL: " __VA_ARGS__); fputc('\n', stderr); failures++; } while (0)

static void content(uint8_t *p, int obj, int blk, int round)
{
	uint64_t s = (uint64_t)obj * 1000003 + (uint64_t)blk * 7919 + (uint64_t)round * 104729 + 1;
	for (size_t i = 0; i < HOARD_BLOCK_SIZE; i += 8) {
		uint64_t v = memdev_rand(&s);
		memcpy(p + i, &v, 8);
	}
}

/* synced[o][b] = round synced last (-1 none) */
static int synced[NOBJ][NBLK];

static int workload(struct hoard_cache *c, uint64_t *ids, int *first_fault_round)
{
	static uint8_t buf[HOARD_BLOCK_SIZE];
	uint32_t vol;
	int rc = hoard_vol_open(c, "v", 1, 1, &vol);
	if (rc)
		return rc;
	for (int o = 0; o < NOBJ; o++) {
		char key[16];
		struct hoard_obj_info info;
		snprintf(key, sizeof(key), "k%d", o);
		rc = hoard_obj_acquire(c, vol, key, strlen(key), "c", 1, &info);
		if (rc < 0)
			return rc;
		ids[o] = info.id;
	}
	for (int round = 0; round < ROUNDS; round++) {
		int ok = 1;
		for (int o = 0; o < NOBJ; o++)
			for (int b = 0; b < NBLK; b++) {
				content(buf, o, b, round);
				int64_t w = hoard_pwrite(c, ids[o], buf, sizeof(buf), (uint64_t)b * HOARD_BLOCK_SIZE);
				if (w != (int64_t)sizeof(buf))
					ok = 0;
			}
		for (int o = 0; o < NOBJ; o++)
			if (hoard_meta_put(c, ids[o], 1, 1, &round, sizeof(round)))
				ok = 0;
		if (hoard_sync(c))
			ok = 0;
		if (!ok) {
			*first_fault_round = round;
			return -EIO;
		}
		for (int o = 0; o < NOBJ; o++)
			for (int b = 0; b < NBLK; b++)
				synced[o][b] = round;
	}
	return 0;
}

static void verify(struct memdev *md, const uint64_t *ids, const char *what)
{
	static uint8_t buf[HOARD_BLOCK_SIZE], exp[HOARD_BLOCK_SIZE];
	struct hoard_open_opts oo = { .dev_ops = &memdev_ops, .dev_arg = md, .mem_budget = 4 << 20 };
	struct hoard_cache *c;
	int rc = hoard_open("memdev", &oo, &c);
	if (rc) {
		FAIL("%s: reopening after the fault: %d (%s)", what, rc, hoard_strerror(rc));
		return;
	}
	for (int o = 0; o < NOBJ && ids[o]; o++)
		for (int b = 0; b < NBLK; b++) {
			int64_t n = hoard_pread(c, ids[o], buf, sizeof(buf), (uint64_t)b * HOARD_BLOCK_SIZE);
			if (n <= 0) {
				if (synced[o][b] >= 0)
					FAIL("%s: obj %d block %d: synced in round %d, now absent (%" PRId64 ")", what, o,
					     b, synced[o][b], n);
				continue;
			}
			int ok = 0;
			for (int round = synced[o][b] < 0 ? 0 : synced[o][b]; round < ROUNDS && !ok; round++) {
				content(exp, o, b, round);
				ok = n == (int64_t)sizeof(buf) && !memcmp(exp, buf, sizeof(buf));
			}
			if (!ok)
				FAIL("%s: obj %d block %d: WRONG BYTES (%" PRId64 " bytes, none of the rounds >= %d)", what,
				     o, b, n, synced[o][b]);
		}
	/* the reopened cache works */
	memset(buf, 1, sizeof(buf));
	uint32_t vol;
	struct hoard_obj_info info;
	if (hoard_vol_open(c, "after", 5, 1, &vol) || hoard_obj_acquire(c, vol, "x", 1, "c", 1, &info) < 0) {
		FAIL("%s: creating an object after reopening failed", what);
	} else {
		int64_t w = hoard_pwrite(c, info.id, buf, sizeof(buf), 0);
		int sr = hoard_sync(c);
		struct hoard_stats st;
		hoard_stats(c, &st);
		if (w != (int64_t)sizeof(buf) || sr)
			FAIL("%s: writing after reopening failed: pwrite %" PRId64 ", sync %d, read_only %d", what, w,
			     sr, st.read_only);
	}
	hoard_close(c);
}

/* kind: 0 write, 1 flush, 2 read.  Returns 0 when the fault was past the
 * end of the workload (nothing failed). */
static int one(int kind, uint64_t nth)
{
	static const char *names[] = { "write", "flush", "read" };
	struct memdev md;
	struct hoard_cache *c;
	uint64_t ids[NOBJ] = { 0 };
	char what[96];
	int first = -1;
	snprintf(what, sizeof(what), "%s #%" PRIu64 " fails", names[kind], nth);
	memset(synced, 0xff, sizeof(synced));
	if (memdev_format(&md, DEV_SIZE, &(struct hoard_format_opts){ .bucket_size = 64 * 1024 })) {
		FAIL("format");
		return 0;
	}
	md.inline_io = nth % 2;
	struct hoard_open_opts oo = { .dev_ops = &memdev_ops, .dev_arg = &md, .commit_ms = 600000,
				      .mem_budget = 4 << 20 };
	uint64_t base = kind == 0 ? md.nwrites : kind == 1 ? md.nflushes : md.nreads;
	if (kind == 0)
		md.fail_write_nth = base + nth;
	else if (kind == 1)
		md.fail_flush_nth = base + nth;
	else
		md.fail_read_nth = base + nth;
	int rc = hoard_open("memdev", &oo, &c);
	if (rc) {
		/* a fault during open is fine: it must fail cleanly */
		md.fail_write_nth = md.fail_flush_nth = md.fail_read_nth = 0;
		verify(&md, ids, what);
		memdev_fini(&md);
		return 1;
	}
	rc = workload(c, ids, &first);
	struct hoard_stats st;
	hoard_stats(c, &st);
	if (md.faults && kind != 2 && rc == 0)
		FAIL("%s: an injected %s error went unnoticed (every call succeeded)", what, names[kind]);
	if (md.faults && kind != 2 && !st.read_only && rc != 0) {
		/* a failed data write alone need not make it read-only; a
		 * failed flush must (the commit it belonged to is unknown) */
		if (kind == 1)
			FAIL("%s: the cache is not read-only after a failed flush", what);
	}
	if (st.read_only) {
		uint8_t b[HOARD_BLOCK_SIZE] = { 0 };
		int64_t w = ids[0] ? hoard_pwrite(c, ids[0], b, sizeof(b), 0) : -EROFS;
		if (w >= 0 && hoard_sync(c) == 0)
			FAIL("%s: read-only after a failure, yet a write and a sync succeeded", what);
	}
	hoard_close(c);
	int hit = md.faults != 0;
	md.fail_write_nth = md.fail_flush_nth = md.fail_read_nth = 0;
	verify(&md, ids, what);
	memdev_fini(&md);
	return hit;
}

int main(void)
{
	for (int kind = 0; kind < 3; kind++) {
		uint64_t n;
		for (n = 1; n < 2000 && failures < 10; n += n < 40 ? 1 : 7)
			if (!one(kind, n))
				break;
		fprintf(stderr, "%s faults: tried up to #%" PRIu64 "\n", kind == 0 ? "write" : kind == 1 ? "flush" : "read", n);
	}
	fprintf(stderr, "crash_faults: %s\n", failures ? "FAIL" : "PASS");
	return failures ? 1 : 0;
}
