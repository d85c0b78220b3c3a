/*
 * Description: libFuzzer target for opening a damaged cache.  Builds two
 * small valid images once (a cleanly closed cache, and a "crashed" one
 * whose last transactions live only in the journal), then applies the
 * fuzz input as patches to their superblocks, journal and metadata pages,
 * opens the result through memdev and walks everything the public API
 * reaches: volumes, objects, present ranges, reads, records, iterators,
 * and (sometimes) writes and a sync.  Return codes are free; crashes,
 * hangs, leaks and out-of-bounds accesses are not.
 *
 * Input: byte 0 = mode (bit 0: crashed image; bit 1: read-only; bit 2:
 * write after the walk), then records of
 *   u8 sel | u16 off (LE) | u8 ctl | (ctl & 0x1f) + 1 bytes
 * sel picks one of the interesting blocks (superblocks, the used part of
 * the journal, used metadata pages, a data block); the bytes are stored
 * (or XORed if ctl & 0x40) at off % 4096.  If ctl & 0x80 the block's
 * checksum is recomputed afterwards (and for a journal block every record
 * header's page checksums too), so the fuzzer gets past verification to
 * the structure checks behind it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hoardfs/hoard.h>
#include "engine/crc32c.h"
#include "engine/format.h"
#include "../lib/memdev.h"

#define DEV_SIZE (12ull << 20)
#define MAXT 256
#define NVOL 2
#define NOBJ 6

static uint8_t *img[2];          /* 0 clean, 1 crashed */
static uint64_t targets[MAXT];
static unsigned ntargets;
static struct hoard_sb sb0;

static void die(const char *what, int r)
{
	fprintf(stderr, "fuzz_open: setup: %s: %d\n", what, r);
	abort();
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 8));
}

static void populate(struct hoard_cache *c, int second)
{
	static uint8_t buf[40 * HOARD_BLOCK_SIZE];
	for (int v = 0; v < NVOL; v++) {
		char name[8];
		uint32_t vol;
		snprintf(name, sizeof(name), "v%d", v);
		int r = hoard_vol_open(c, name, 2, 1, &vol);
		if (r)
			die("vol_open", r);
		for (int o = 0; o < NOBJ; o++) {
			char key[8];
			struct hoard_obj_info info;
			snprintf(key, sizeof(key), "k%d", o);
			r = hoard_obj_acquire(c, vol, key, 2, second && o == 1 ? "coh2" : "coh1", 4, &info);
			if (r < 0)
				die("obj_acquire", r);
			size_t len = second ? 3 * HOARD_BLOCK_SIZE + 100 : (size_t)(o + 1) * 6 * HOARD_BLOCK_SIZE;
			fill(buf, len, (unsigned)(o + second * 10));
			int64_t w = hoard_pwrite(c, info.id, buf, len, second ? (uint64_t)o * HOARD_BLOCK_SIZE : 0);
			if (w < 0)
				die("pwrite", (int)w);
			for (uint64_t rid = 0; rid < 3; rid++) {
				r = hoard_meta_put(c, info.id, 1 + (unsigned)rid % 3, rid + (unsigned)second,
						   buf, 20 + rid * 300);
				if (r)
					die("meta_put", r);
			}
			if (second && o == 2)
				hoard_meta_del(c, info.id, 1, 0);
			if (second && o == 3)
				hoard_obj_truncate(c, info.id, HOARD_BLOCK_SIZE);
			if (second && o == 4)
				hoard_obj_remove(c, info.id);
		}
	}
}

static int nonzero(const uint8_t *p)
{
	for (size_t i = 0; i < HBLK; i++)
		if (p[i])
			return 1;
	return 0;
}

static void add_target(uint64_t b)
{
	for (unsigned i = 0; i < ntargets; i++)
		if (targets[i] == b)
			return;
	if (ntargets < MAXT && b < DEV_SIZE / HBLK)
		targets[ntargets++] = b;
}

static void setup(void)
{
	struct memdev md;
	struct hoard_format_opts fo = { .bucket_size = 64 * 1024 };
	int r = memdev_format(&md, DEV_SIZE, &fo);
	if (r)
		die("format", r);
	md.inline_io = 1;
	struct hoard_open_opts oo = { .dev_ops = &memdev_ops, .dev_arg = &md, .commit_ms = 600000 };
	struct hoard_cache *c;
	if ((r = hoard_open("memdev", &oo, &c)))
		die("open", r);
	populate(c, 0);
	if ((r = hoard_close(c)))
		die("close", r);
	img[0] = malloc(DEV_SIZE);
	img[1] = malloc(DEV_SIZE);
	if (!img[0] || !img[1])
		die("malloc", -ENOMEM);
	memdev_read_image(&md, img[0]);
	if ((r = hoard_open("memdev", &oo, &c)))
		die("reopen", r);
	populate(c, 1);
	if ((r = hoard_sync(c)))
		die("sync", r);
	memdev_read_image(&md, img[1]); /* as if it crashed now */
	hoard_close(c);
	memdev_fini(&md);

	memcpy(&sb0, img[0], sizeof(sb0));
	add_target(0);
	add_target(1);
	add_target(sb0.journal_start);
	for (int k = 0; k < 2; k++) {
		for (uint64_t b = sb0.journal_start; b < sb0.journal_start + sb0.journal_blocks && ntargets < 64; b++)
			if (nonzero(img[k] + b * HBLK))
				add_target(b);
	}
	add_target(sb0.meta_start);
	for (int k = 0; k < 2; k++)
		for (uint64_t b = sb0.meta_start; b < sb0.meta_start + sb0.meta_blocks && ntargets < MAXT - 2; b++)
			if (nonzero(img[k] + b * HBLK))
				add_target(b);
	add_target(sb0.data_start);
	add_target(sb0.data_start + 1);
}

/* Reseal every well-formed journal record: page checksums, then header. */
static void reseal_journal(struct memdev *md)
{
	static uint8_t blk[HBLK], pg[HBLK];
	for (uint64_t j = 0; j < sb0.journal_blocks;) {
		uint64_t at = (sb0.journal_start + j) * HBLK;
		memdev_pread(md, blk, HBLK, at);
		struct hjournal_hdr *h = (struct hjournal_hdr *)blk;
		if (h->magic != HJ_MAGIC || h->npages == 0 || h->npages > HJ_MAX_PAGES ||
		    j + 1 + h->npages > sb0.journal_blocks) {
			if (!nonzero(blk))
				break;
			j++;
			continue;
		}
		for (uint32_t i = 0; i < h->npages; i++) {
			memdev_pread(md, pg, HBLK, at + (1 + (uint64_t)i) * HBLK);
			h->pages[i].csum = hoard_crc32c(0, pg, HBLK);
		}
		h->csum = hoard_crc32c(0, blk + 4, HBLK - 4);
		memdev_pwrite(md, blk, HBLK, at);
		j += 1 + h->npages;
	}
}

struct walk {
	struct hoard_cache *c;
	uint64_t ids[32];
	int n;
};

static void add_id(struct walk *w, uint64_t id)
{
	for (int i = 0; i < w->n; i++)
		if (w->ids[i] == id)
			return;
	if (w->n < 32)
		w->ids[w->n++] = id;
}

static int on_obj(const struct hoard_obj_info *info, void *arg)
{
	add_id(arg, info->id);
	return 0;
}

static int on_meta(uint64_t rid, const void *val, size_t len, void *arg)
{
	volatile const uint8_t *p = val;
	size_t *sum = arg;
	if (len)
		*sum += p[0] + p[len - 1]; /* touch the bytes: ASan checks them */
	return 0;
}

static void walk(struct hoard_cache *c, int write)
{
	static uint8_t buf[4 * HOARD_BLOCK_SIZE];
	struct hoard_stats st;
	struct walk w = { c, { 0 }, 0 };
	uint32_t vols[NVOL + 1] = { 0 };
	hoard_stats(c, &st);
	for (int v = 0; v < NVOL; v++) {
		char name[8];
		snprintf(name, sizeof(name), "v%d", v);
		if (hoard_vol_open(c, name, 2, 0, &vols[v]) == 0)
			for (int o = 0; o < NOBJ; o++) {
				char key[8];
				struct hoard_obj_info info;
				snprintf(key, sizeof(key), "k%d", o);
				if (hoard_obj_lookup(c, vols[v], key, 2, &info) == 0)
					add_id(&w, info.id);
			}
	}
	hoard_obj_iterate(c, 0, on_obj, &w);
	hoard_obj_iterate(c, vols[0], on_obj, &w);
	for (int i = 0; i < w.n; i++) {
		struct hoard_obj_info info;
		struct hoard_range rg[8];
		size_t sum = 0;
		uint64_t id = w.ids[i];
		if (hoard_obj_get(c, id, &info) != 0)
			continue;
		int n = hoard_present(c, id, 0, 1 << 20, rg, 8);
		for (int k = 0; k < n && k < 8; k++)
			hoard_pread(c, id, buf, rg[k].len < sizeof(buf) ? rg[k].len : sizeof(buf), rg[k].off);
		hoard_pread(c, id, buf, sizeof(buf), 0);
		for (uint32_t kind = 0; kind <= 3; kind++)
			hoard_meta_iterate(c, id, kind, on_meta, &sum);
		hoard_meta_get(c, id, 1, 0, buf, HOARD_META_MAX);
		hoard_meta_get(c, id, 2, 1, buf, 10);
		if (write) {
			memset(buf, 0x5a, 2 * HOARD_BLOCK_SIZE);
			hoard_pwrite(c, id, buf, 2 * HOARD_BLOCK_SIZE, 4 * HOARD_BLOCK_SIZE);
			hoard_meta_put(c, id, 2, 7, buf, 33);
			hoard_meta_del(c, id, 1, 1);
			if (i == 1)
				hoard_obj_truncate(c, id, HOARD_BLOCK_SIZE);
			if (i == 2)
				hoard_obj_invalidate(c, id);
			if (i == 3)
				hoard_obj_check(c, id, "other", 5);
		}
	}
	if (write) {
		struct hoard_obj_info info;
		if (vols[0] && hoard_obj_acquire(c, vols[0], "new", 3, "c", 1, &info) >= 0)
			hoard_pwrite(c, info.id, buf, HOARD_BLOCK_SIZE, 0);
		hoard_sync(c);
	}
	hoard_stats(c, &st);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Add -timeout=30 unless the caller chose one: a hang is a bug here and
 * the runner gives the whole target only its own timeout. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static char *nargv[256];
	static char tmo[] = "-timeout=30", rss[] = "-rss_limit_mb=2048";
	int has_t = 0, n = *argc < 250 ? *argc : 250;
	for (int i = 0; i < n; i++)
		if (!strncmp((*argv)[i], "-timeout=", 9))
			has_t = 1;
	if (has_t)
		return 0;
	nargv[0] = (*argv)[0];
	nargv[1] = tmo;
	nargv[2] = rss;
	for (int i = 1; i < n; i++)
		nargv[i + 2] = (*argv)[i];
	nargv[n + 2] = NULL;
	*argc = n + 2;
	*argv = nargv;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!img[0])
		setup();
	if (size < 1)
		return 0;
	uint8_t mode = data[0];
	struct memdev md;
	if (memdev_init(&md, DEV_SIZE))
		return 0;
	memdev_set_base(&md, img[mode & 1]);
	md.inline_io = 1;
	size_t p = 1;
	int reseal = 0;
	for (int nrec = 0; nrec < 64 && p + 4 <= size; nrec++) {
		uint8_t sel = data[p], ctl = data[p + 3];
		uint16_t off = (uint16_t)(data[p + 1] | data[p + 2] << 8) % HBLK;
		size_t n = (size_t)(ctl & 0x1f) + 1;
		p += 4;
		if (n > size - p)
			n = size - p;
		if (off + n > HBLK)
			n = HBLK - off;
		uint64_t b = targets[sel % ntargets];
		uint8_t blk[HBLK];
		memdev_pread(&md, blk, HBLK, b * HBLK);
		for (size_t i = 0; i < n; i++)
			blk[off + i] = ctl & 0x40 ? blk[off + i] ^ data[p + i] : data[p + i];
		p += n;
		if (ctl & 0x80) {
			uint32_t cs = hoard_crc32c(0, blk + 4, HBLK - 4);
			memcpy(blk, &cs, 4);
			if (b >= sb0.journal_start && b < sb0.journal_start + sb0.journal_blocks)
				reseal = 1;
		}
		memdev_pwrite(&md, blk, HBLK, b * HBLK);
	}
	if (reseal)
		reseal_journal(&md);

	struct hoard_open_opts oo = {
		.dev_ops = &memdev_ops, .dev_arg = &md, .read_only = (mode >> 1) & 1,
		.mem_budget = 4 << 20, .commit_ms = 600000,
	};
	struct hoard_cache *c;
	if (hoard_open("memdev", &oo, &c) == 0) {
		walk(c, !oo.read_only && (mode & 4));
		hoard_close(c);
	}
	memdev_fini(&md);
	return 0;
}
