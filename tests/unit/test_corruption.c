/*
 * test_corruption.c - Description: a cache whose blocks are damaged either
 * refuses to open with a clear error or opens, and never returns wrong
 * bytes.
 *
 * A small cache is formatted, filled (objects with data blocks whose
 * contents name their object and block, metadata records, enough objects
 * for a two-level B+tree) and closed; a second image is taken after a
 * sync without closing, so its last transactions live in the journal.
 * The blocks of each image are classified by parsing the superblock and
 * the page headers (src/engine/format.h).  Then, for each kind of block,
 * random bytes of one block are flipped (TRIALS times, each on a fresh
 * copy-on-write device over the pristine image) and the cache is opened
 * read-only and read-write:
 *   superblock A or B alone   opens, everything intact;
 *   both superblocks          -EUCLEAN;
 *   stale journal block       opens, everything intact;
 *   live journal block        opens (the damaged record ends the journal);
 *   root / B+tree leaf /
 *   inner / gens / bitmap     opens or fails with -EIO/-EUCLEAN;
 *   data block                opens, that block reads absent and is counted
 *                             in csum_errors, every other block intact.
 * In every case, every byte returned must be the byte written there, every
 * record returned must be the record written, and a read-write open that
 * then writes and syncs (which may fail) must leave a cache that again
 * returns no wrong bytes.  With HOARDFS_BIN set to an existing binary,
 * `hoardfs fsck IMAGE` runs on one damaged image of each kind and must
 * exit (0 or 1), not die by a signal; on the pristine image it must pass.
 *
 * Env: HOARD_CORRUPT_SEED, HOARD_CORRUPT_TRIALS
 */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <hoardfs/hoard.h>
#include "engine/format.h"
#include "../lib/memdev.h"

#define DEV_SIZE (16ull << 20)
#define NOBJ 160u         /* 216-byte object records: > 1 leaf, so an inner root */
#define NBLK 3u           /* data blocks per object */
#define MAXBLK 256

static uint64_t seed = 0xc0dec0de;
static uint64_t rs;
static unsigned trials = 12;

/* images and what each block of them holds */
enum kind { K_SB_A, K_SB_B, K_SB_BOTH, K_JOURNAL_STALE, K_JOURNAL_LIVE, K_ROOT, K_LEAF, K_INNER,
	    K_GENS, K_BITMAP, K_DATA, K_NKINDS };
static const char *kind_name[K_NKINDS] = {
	"superblock A", "superblock B", "both superblocks", "stale journal block",
	"live journal block", "root page", "B+tree leaf", "B+tree inner page",
	"bucket-generation page", "bitmap page", "data block",
};

struct image {
	uint8_t *img;
	struct hoard_sb sb;     /* the newest copy */
	int newest_sb;          /* 0 = A, 1 = B */
	uint64_t blocks[K_NKINDS][MAXBLK];
	unsigned n[K_NKINDS];
	uint32_t vol;
	uint64_t ids[NOBJ + 16];
	unsigned nids;
};
static struct image clean, live;   /* closed; crashed after a sync */

static void content(uint8_t *p, uint64_t id, uint32_t blk)
{
	uint64_t s = id * 0x9E3779B97F4A7C15ull ^ (blk + 1) * 0xC2B2AE3D27D4EB4Full;
	for (size_t i = 0; i < HOARD_BLOCK_SIZE; i += 8) {
		uint64_t v = memdev_rand(&s);
		memcpy(p + i, &v, 8);
	}
	memcpy(p, &id, 8);
	memcpy(p + 8, &blk, 4);
}

static void record(uint8_t *p, size_t len, uint64_t id)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(id * 31 + i);
}
#define REC_LEN(id) (40 + (size_t)((id) % 200))

static uint64_t rnd(void)
{
	return memdev_rand(&rs);
}

static int add_objects(struct hoard_cache *c, struct image *im, unsigned from, unsigned n)
{
	static uint8_t buf[NBLK * HOARD_BLOCK_SIZE];
	for (unsigned i = from; i < from + n; i++) {
		char key[16];
		struct hoard_obj_info info;
		int len = snprintf(key, sizeof(key), "obj%u", i);
		int r = hoard_obj_acquire(c, im->vol, key, (size_t)len, "coh", 3, &info);
		if (r < 0)
			return r;
		for (uint32_t b = 0; b < NBLK; b++)
			content(buf + b * HOARD_BLOCK_SIZE, info.id, b);
		int64_t w = hoard_pwrite(c, info.id, buf, sizeof(buf), 0);
		if (w != (int64_t)sizeof(buf))
			return w < 0 ? (int)w : -EIO;
		record(buf, REC_LEN(info.id), info.id);
		r = hoard_meta_put(c, info.id, 1, 7, buf, REC_LEN(info.id));
		if (r)
			return r;
		im->ids[im->nids++] = info.id;
	}
	return 0;
}

static void classify(struct image *im, int journal_live)
{
	/* the newer of the two copies describes the journal */
	const struct hoard_sb *sa = (const void *)im->img, *sb1 = (const void *)(im->img + HBLK);
	im->newest_sb = sb1->magic == HOARD_MAGIC && sb1->seq > sa->seq ? 1 : 0;
	memcpy(&im->sb, im->newest_sb ? (const void *)sb1 : (const void *)sa, sizeof(im->sb));
	const struct hoard_sb *sb = &im->sb;
#define ADD(k, b) do { if (im->n[k] < MAXBLK) im->blocks[k][im->n[k]++] = (b); } while (0)
	ADD(K_SB_A, 0);
	ADD(K_SB_B, 1);
	ADD(K_SB_BOTH, 0);
	for (uint64_t p = 0; p < sb->meta_blocks; p++) {
		const struct hpage_hdr *h = (const void *)(im->img + (sb->meta_start + p) * HBLK);
		if (h->magic != HOARD_MAGIC)
			continue;
		switch (h->type) {
		case HPT_ROOT: ADD(K_ROOT, sb->meta_start + p); break;
		case HPT_BT_LEAF: ADD(K_LEAF, sb->meta_start + p); break;
		case HPT_BT_INNER: ADD(K_INNER, sb->meta_start + p); break;
		case HPT_GENS: ADD(K_GENS, sb->meta_start + p); break;
		case HPT_BITMAP: ADD(K_BITMAP, sb->meta_start + p); break;
		default: break;
		}
	}
	/* journal records from sb.journal_seq on are live; blocks of the
	 * journal area that are not part of them are stale */
	uint64_t pos = 0, seq = sb->journal_seq;
	while (journal_live && pos < sb->journal_blocks) {
		const struct hjournal_hdr *h = (const void *)(im->img + (sb->journal_start + pos) * HBLK);
		if (h->magic != HJ_MAGIC || h->seq != seq || h->npages == 0 || h->npages > HJ_MAX_PAGES)
			break;
		for (uint64_t i = 0; i <= h->npages; i++)
			ADD(K_JOURNAL_LIVE, sb->journal_start + pos + i);
		pos += 1 + h->npages;
		seq++;
	}
	for (uint64_t b = pos; b < sb->journal_blocks && im->n[K_JOURNAL_STALE] < 16; b++) {
		const uint8_t *p = im->img + (sb->journal_start + b) * HBLK;
		for (size_t i = 0; i < HBLK; i++)
			if (p[i]) {
				ADD(K_JOURNAL_STALE, sb->journal_start + b);
				break;
			}
	}
	if (!im->n[K_JOURNAL_STALE])
		ADD(K_JOURNAL_STALE, sb->journal_start + pos); /* zeros: still stale */
	/* data blocks: those that start with an object id we wrote */
	for (uint64_t b = sb->data_start; b < sb->dev_blocks && im->n[K_DATA] < MAXBLK; b++) {
		uint64_t id;
		uint32_t blk;
		memcpy(&id, im->img + b * HBLK, 8);
		memcpy(&blk, im->img + b * HBLK + 8, 4);
		for (unsigned i = 0; i < im->nids; i++)
			if (im->ids[i] == id && blk < NBLK) {
				ADD(K_DATA, b);
				break;
			}
	}
#undef ADD
}

static int group_setup(void **state)
{
	struct memdev md;
	struct hoard_cache *c;
	struct hoard_format_opts fo = { .bucket_size = 64 * 1024 };
	const char *s = getenv("HOARD_CORRUPT_SEED");
	if (s && *s)
		seed = strtoull(s, NULL, 0);
	s = getenv("HOARD_CORRUPT_TRIALS");
	if (s && *s)
		trials = (unsigned)strtoul(s, NULL, 0);
	rs = seed;
	int r = memdev_format(&md, DEV_SIZE, &fo);
	if (r)
		return fprintf(stderr, "format: %d\n", r), -1;
	md.inline_io = 1;
	struct hoard_open_opts oo = { .dev_ops = &memdev_ops, .dev_arg = &md, .commit_ms = 600000 };
	if ((r = hoard_open("memdev", &oo, &c)))
		return fprintf(stderr, "open: %d\n", r), -1;
	r = hoard_vol_open(c, "vol", 3, 1, &clean.vol);
	if (!r)
		r = add_objects(c, &clean, 0, NOBJ);
	int cr = hoard_close(c);
	if (r || cr)
		return fprintf(stderr, "fill: %d, close %d\n", r, cr), -1;
	clean.img = malloc(DEV_SIZE);
	live.img = malloc(DEV_SIZE);
	if (!clean.img || !live.img)
		return -1;
	memdev_read_image(&md, clean.img);
	live.vol = clean.vol;
	memcpy(live.ids, clean.ids, sizeof(clean.ids));
	live.nids = clean.nids;
	if ((r = hoard_open("memdev", &oo, &c)))
		return fprintf(stderr, "reopen: %d\n", r), -1;
	r = add_objects(c, &live, NOBJ, 12);
	if (!r)
		r = hoard_sync(c);
	memdev_read_image(&md, live.img); /* crashed here */
	hoard_close(c);
	memdev_fini(&md);
	if (r)
		return fprintf(stderr, "second fill: %d\n", r), -1;
	classify(&clean, 0);
	classify(&live, 1);
	fprintf(stderr, "seed %#" PRIx64 "; clean image:", seed);
	for (int k = 0; k < K_NKINDS; k++)
		fprintf(stderr, " %s %u,", kind_name[k], clean.n[k]);
	fprintf(stderr, " live journal blocks %u\n", live.n[K_JOURNAL_LIVE]);
	(void)state;
	return 0;
}

static int group_teardown(void **state)
{
	free(clean.img);
	free(live.img);
	(void)state;
	return 0;
}

/* ---- checks ---- */

struct verdict {
	unsigned present_blocks, absent_blocks, objects_missing, records_ok;
	uint64_t csum_errors;
};

/* Every byte the cache returns must be right.  Returns 0, or fails. */
static void check_no_wrong_bytes(struct hoard_cache *c, const struct image *im, const char *what,
				 struct verdict *v)
{
	static uint8_t buf[NBLK * HOARD_BLOCK_SIZE + HOARD_BLOCK_SIZE], exp[HOARD_BLOCK_SIZE];
	memset(v, 0, sizeof(*v));
	for (unsigned i = 0; i < im->nids; i++) {
		uint64_t id = im->ids[i];
		char key[16];
		struct hoard_obj_info info;
		int len = snprintf(key, sizeof(key), "obj%u", i);
		int r = hoard_obj_lookup(c, im->vol, key, (size_t)len, &info);
		if (r == 0 && info.id != id)
			fail_msg("%s: key %s maps to object %" PRIu64 ", expected %" PRIu64, what, key, info.id, id);
		if (r != 0 && r != -ENOENT && r != -EIO)
			fail_msg("%s: hoard_obj_lookup(%s) = %d, expected 0, -ENOENT or -EIO", what, key, r);
		if (r) {
			v->objects_missing++;
			/* the object may be lost (e.g. a damaged journal
			 * record) and its id given to a new object: read by
			 * id only while the id still names this key */
			int g = hoard_obj_get(c, id, &info);
			if (g == 0 && (info.key_len != (uint32_t)len || memcmp(info.key, key, (size_t)len))) {
				v->absent_blocks += NBLK;
				continue;
			}
		}
		/* read by id whether or not the lookup worked */
		for (uint32_t b = 0; b < NBLK + 1; b++) {
			int64_t n = hoard_pread(c, id, buf, HOARD_BLOCK_SIZE, (uint64_t)b * HOARD_BLOCK_SIZE);
			if (n < 0 && n != -ENOENT && n != -EIO)
				fail_msg("%s: obj %" PRIu64 " block %u: hoard_pread = %" PRId64, what, id, b, n);
			if (n <= 0) {
				v->absent_blocks += b < NBLK;
				continue;
			}
			if (b >= NBLK)
				fail_msg("%s: obj %" PRIu64 " block %u was never written, got %" PRId64 " bytes", what,
					 id, b, n);
			content(exp, id, b);
			if (n != HOARD_BLOCK_SIZE || memcmp(exp, buf, HOARD_BLOCK_SIZE)) {
				uint64_t gid;
				uint32_t gb;
				memcpy(&gid, buf, 8);
				memcpy(&gb, buf + 8, 4);
				fail_msg("%s: obj %" PRIu64 " block %u: WRONG BYTES: expected 4096 bytes of (obj %" PRIu64
					 ", block %u), got %" PRId64 " bytes starting like (obj %" PRIu64 ", block %u)",
					 what, id, b, id, b, n, gid, gb);
			}
			v->present_blocks++;
		}
		/* a multi-block read must agree too */
		int64_t n = hoard_pread(c, id, buf, NBLK * HOARD_BLOCK_SIZE, 0);
		for (int64_t off = 0; n > 0 && off < n; off += HOARD_BLOCK_SIZE) {
			content(exp, id, (uint32_t)(off / HOARD_BLOCK_SIZE));
			size_t l = (size_t)(n - off < HOARD_BLOCK_SIZE ? n - off : HOARD_BLOCK_SIZE);
			if (memcmp(exp, buf + off, l))
				fail_msg("%s: obj %" PRIu64 ": WRONG BYTES in a %" PRId64 "-byte read at offset %" PRId64,
					 what, id, n, off);
		}
		int m = hoard_meta_get(c, id, 1, 7, buf, HOARD_META_MAX);
		if (m > 0) {
			record(exp, REC_LEN(id), id);
			if ((size_t)m != REC_LEN(id) || memcmp(exp, buf, (size_t)m))
				fail_msg("%s: obj %" PRIu64 ": WRONG RECORD: expected %zu bytes, got %d", what, id,
					 REC_LEN(id), m);
			v->records_ok++;
		} else if (m != -ENOENT && m != -EIO) {
			fail_msg("%s: hoard_meta_get(%" PRIu64 ") = %d", what, id, m);
		}
	}
	struct hoard_stats st;
	if (hoard_stats(c, &st) == 0)
		v->csum_errors = st.csum_errors;
}

static void flip(struct memdev *md, uint64_t blk)
{
	uint8_t b[HBLK];
	memdev_pread(md, b, HBLK, blk * HBLK);
	unsigned n = 1 + (unsigned)(rnd() % 8);
	for (unsigned i = 0; i < n; i++)
		b[rnd() % HBLK] ^= (uint8_t)(1 + rnd() % 255);
	memdev_pwrite(md, b, HBLK, blk * HBLK);
}

static void run_fsck(struct memdev *md, const char *what, int expect_clean)
{
	const char *bin = getenv("HOARDFS_BIN");
	struct stat st;
	if (!bin || !*bin || stat(bin, &st) != 0)
		return;
	const char *dir = getenv("HOARD_TEST_DIR");
	char path[4096], cmd[8400];
	snprintf(path, sizeof(path), "%s/corrupt.img", dir && *dir ? dir : ".");
	if (memdev_save_file(md, path))
		fail_msg("%s: saving the image for fsck failed", what);
	snprintf(cmd, sizeof(cmd), "'%s' fsck '%s' >/dev/null 2>&1", bin, path);
	int rc = system(cmd);
	unlink(path);
	if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) > 1)
		fail_msg("%s: `hoardfs fsck` died or failed oddly (status %#x)", what, rc);
	if (expect_clean && WEXITSTATUS(rc) != 0)
		fail_msg("%s: `hoardfs fsck` reports problems on an undamaged cache (exit %d)", what,
			 WEXITSTATUS(rc));
}

static uint64_t pick(const struct image *im, enum kind k)
{
	if (!im->n[k])
		return UINT64_MAX;
	return im->blocks[k][rnd() % im->n[k]];
}

/* One kind of damage, TRIALS times; @intact: every object must be whole. */
static void corrupt_kind(enum kind k, const struct image *im, int must_open, int intact)
{
	if (!im->n[k]) {
		print_message("no %s in the image: skipped\n", kind_name[k]);
		skip();
	}
	for (unsigned t = 0; t < trials; t++) {
		struct memdev md;
		char what[160];
		uint64_t blk = pick(im, k);
		assert_int_equal(memdev_init(&md, DEV_SIZE), 0);
		memdev_set_base(&md, im->img);
		md.inline_io = 1;
		flip(&md, blk);
		if (k == K_SB_BOTH)
			flip(&md, 1);
		int ro = t % 2;
		snprintf(what, sizeof(what), "%s (block %" PRIu64 ") damaged, trial %u, %s, seed %#" PRIx64,
			 kind_name[k], blk, t, ro ? "read-only" : "read-write", seed);
		if (t == 0)
			run_fsck(&md, what, 0);
		struct hoard_open_opts oo = { .dev_ops = &memdev_ops, .dev_arg = &md, .read_only = ro,
					      .commit_ms = 600000, .mem_budget = 3 << 20 };
		struct hoard_cache *c;
		int r = hoard_open("memdev", &oo, &c);
		if (k == K_SB_BOTH) {
			if (r == 0)
				hoard_close(c);
			memdev_fini(&md);
			if (r != -EUCLEAN)
				fail_msg("%s: hoard_open = %d, expected -EUCLEAN (%d)", what, r, -EUCLEAN);
			continue;
		}
		if (r) {
			memdev_fini(&md);
			if (must_open)
				fail_msg("%s: hoard_open = %d (%s), expected success", what, r, hoard_strerror(r));
			if (r != -EIO && r != -EUCLEAN)
				fail_msg("%s: hoard_open = %d (%s), expected 0, -EIO or -EUCLEAN", what, r,
					 hoard_strerror(r));
			continue;
		}
		struct verdict v;
		check_no_wrong_bytes(c, im, what, &v);
		/* Regression: with the newest superblock copy damaged, the
		 * older copy's journal_seq predates the journal's restart at
		 * the last checkpoint; recovery must still find the newer
		 * generation (page.c replay_start), losing nothing. */
		if (intact && (v.objects_missing || v.absent_blocks || v.records_ok != im->nids)) {
			hoard_close(c);
			memdev_fini(&md);
			fail_msg("%s: expected everything intact; %u objects missing, %u blocks absent, %u/%u records",
				 what, v.objects_missing, v.absent_blocks, v.records_ok, im->nids);
		}
		if (k == K_DATA) {
			if (v.absent_blocks != 1 || v.csum_errors < 1) {
				hoard_close(c);
				memdev_fini(&md);
				fail_msg("%s: expected exactly the damaged block absent and counted: %u absent, "
					 "%" PRIu64 " checksum errors", what, v.absent_blocks, v.csum_errors);
			}
		}
		if (!ro) {
			/* keep using it: may fail, must not make things worse */
			uint8_t buf[HOARD_BLOCK_SIZE];
			struct hoard_obj_info info;
			if (hoard_obj_acquire(c, im->vol, "later", 5, "c", 1, &info) >= 0) {
				memset(buf, 0x77, sizeof(buf));
				hoard_pwrite(c, info.id, buf, sizeof(buf), 0);
			}
			hoard_meta_put(c, im->ids[0], 2, 1, "x", 1);
			int sr = hoard_sync(c);
			if (intact && sr)
				fail_msg("%s: hoard_sync after recovery = %d", what, sr);
		}
		hoard_close(c);
		if (!ro) {
			oo.read_only = 1;
			r = hoard_open("memdev", &oo, &c);
			if (r == 0) {
				char w2[200];
				snprintf(w2, sizeof(w2), "%s, reopened after writing", what);
				check_no_wrong_bytes(c, im, w2, &v);
				hoard_close(c);
			} else if (intact || must_open) {
				memdev_fini(&md);
				fail_msg("%s: reopening after writing: %d", what, r);
			}
		}
		memdev_fini(&md);
	}
}

static void test_pristine_images_are_whole(void **state)
{
	const struct image *ims[2] = { &clean, &live };
	for (int i = 0; i < 2; i++) {
		struct memdev md;
		struct hoard_cache *c;
		struct verdict v;
		assert_int_equal(memdev_init(&md, DEV_SIZE), 0);
		memdev_set_base(&md, ims[i]->img);
		md.inline_io = 1;
		if (i == 0)
			run_fsck(&md, "pristine image", 1);
		struct hoard_open_opts oo = { .dev_ops = &memdev_ops, .dev_arg = &md, .read_only = 1 };
		assert_int_equal(hoard_open("memdev", &oo, &c), 0);
		check_no_wrong_bytes(c, ims[i], i ? "pristine crashed image" : "pristine image", &v);
		hoard_close(c);
		memdev_fini(&md);
		if (v.objects_missing || v.absent_blocks || v.records_ok != ims[i]->nids || v.csum_errors)
			fail_msg("pristine image %d: %u objects missing, %u blocks absent, %u/%u records, %" PRIu64
				 " checksum errors", i, v.objects_missing, v.absent_blocks, v.records_ok,
				 ims[i]->nids, v.csum_errors);
	}
	(void)state;
}

static void test_superblock_a_damaged_opens_from_b(void **state)
{
	corrupt_kind(K_SB_A, &clean, 1, 1);
	corrupt_kind(K_SB_A, &live, 1, 1);
	(void)state;
}

static void test_superblock_b_damaged_opens_from_a(void **state)
{
	corrupt_kind(K_SB_B, &clean, 1, 1);
	corrupt_kind(K_SB_B, &live, 1, 1);
	(void)state;
}

static void test_both_superblocks_damaged_is_euclean(void **state)
{
	corrupt_kind(K_SB_BOTH, &clean, 0, 0);
	(void)state;
}

static void test_stale_journal_block_damaged_is_harmless(void **state)
{
	corrupt_kind(K_JOURNAL_STALE, &clean, 1, 1);
	(void)state;
}

static void test_live_journal_block_damaged_opens_without_wrong_bytes(void **state)
{
	corrupt_kind(K_JOURNAL_LIVE, &live, 1, 0);
	(void)state;
}

static void test_root_page_damaged_never_wrong_bytes(void **state)
{
	corrupt_kind(K_ROOT, &clean, 0, 0);
	(void)state;
}

static void test_btree_leaf_damaged_never_wrong_bytes(void **state)
{
	corrupt_kind(K_LEAF, &clean, 0, 0);
	(void)state;
}

static void test_btree_inner_damaged_never_wrong_bytes(void **state)
{
	corrupt_kind(K_INNER, &clean, 0, 0);
	(void)state;
}

static void test_gens_page_damaged_never_wrong_bytes(void **state)
{
	corrupt_kind(K_GENS, &clean, 0, 0);
	(void)state;
}

static void test_bitmap_page_damaged_never_wrong_bytes(void **state)
{
	corrupt_kind(K_BITMAP, &clean, 0, 0);
	(void)state;
}

static void test_data_block_damaged_reads_absent_and_counts(void **state)
{
	corrupt_kind(K_DATA, &clean, 1, 0);
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pristine_images_are_whole),
		cmocka_unit_test(test_superblock_a_damaged_opens_from_b),
		cmocka_unit_test(test_superblock_b_damaged_opens_from_a),
		cmocka_unit_test(test_both_superblocks_damaged_is_euclean),
		cmocka_unit_test(test_stale_journal_block_damaged_is_harmless),
		cmocka_unit_test(test_live_journal_block_damaged_opens_without_wrong_bytes),
		cmocka_unit_test(test_root_page_damaged_never_wrong_bytes),
		cmocka_unit_test(test_btree_leaf_damaged_never_wrong_bytes),
		cmocka_unit_test(test_btree_inner_damaged_never_wrong_bytes),
		cmocka_unit_test(test_gens_page_damaged_never_wrong_bytes),
		cmocka_unit_test(test_bitmap_page_damaged_never_wrong_bytes),
		cmocka_unit_test(test_data_block_damaged_reads_absent_and_counts),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
