/*
 * fsck.c - checking (and where possible repairing) a cache: hoard_fsck.
 *
 * Owns: the rules of what a sound cache is, written down as checks:
 *   F1  both superblock copies verify and agree on the geometry;
 *   F2  the journal replays (in memory: fsck without --repair writes
 *       nothing) and the root page verifies;
 *   F3  every B+tree page verifies, keys are ordered, leaves are at one
 *       depth (hbt_check);
 *   F4  every page reachable from the root is allocated in the bitmap, and
 *       every allocated page is reachable (else it leaked: a warning);
 *   F5  every record decodes; KEY and OBJ records pair up; CHUNK and META
 *       records belong to a live object (else orphans of a removal that was
 *       interrupted: a warning, they are garbage); block pointers lie in
 *       the data area; the root's counters match what was counted;
 *   F6  with check_data, every live block's data matches its crc32c.
 * What cannot be repaired (a damaged tree) is reported with the remedy:
 * the cache only holds copies, so `hoardfs format --force` loses nothing
 * that the server does not have.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "btree.h"
#include "crc32c.h"
#include "page.h"

struct fsck {
	const struct hoard_fsck_opts *o;
	struct hoard_fsck_result *res;
	struct hpage_store *ps;
	const struct hoard_sb *sb;
	uint8_t *reach;     /* bitmap of pages reachable from the root */
	uint64_t work, total;
};

__attribute__((format(printf, 3, 4)))
static void say(struct fsck *f, int error, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	int n = snprintf(msg, sizeof(msg), "%s: ", error ? "error" : "warning");
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	if (error)
		f->res->errors++;
	else
		f->res->warnings++;
	if (f->o->report)
		f->o->report(msg, f->o->arg);
}

static void tick(struct fsck *f)
{
	f->work++;
	if (f->o->progress && (f->work & 1023) == 0)
		f->o->progress(f->work, f->total, f->o->arg);
}

static int mark(uint64_t pgno, int level, void *arg)
{
	struct fsck *f = arg;
	if (pgno >= f->sb->meta_blocks)
		return 0;
	if (f->reach[pgno / 8] & (1u << (pgno % 8)))
		say(f, 1, "page %llu is reachable twice", (unsigned long long)pgno);
	f->reach[pgno / 8] |= (uint8_t)(1u << (pgno % 8));
	f->res->pages_reachable++;
	tick(f);
	return 0;
}

static void tree_report(const char *msg, void *arg)
{
	say(arg, 1, "B+tree: %s", msg);
}

/* F1: each copy on its own. */
static int check_superblocks(struct fsck *f, const struct hoard_dev_ops *ops,
			     struct hoard_dev *dev, int *bad_copy)
{
	struct hoard_sb *sb;
	*bad_copy = -1;
	if (posix_memalign((void **)&sb, HBLK, 2 * HBLK))
		return -ENOMEM;
	int r = hoard_dev_io(ops, dev, HOARD_IO_READ, sb, 2 * HBLK, 0);
	if (r == 0) {
		for (int i = 0; i < 2; i++) {
			if (!hoard_sb_valid(&sb[i])) {
				say(f, 1, "superblock copy %c is damaged (bad magic or checksum)", 'A' + i);
				*bad_copy = i;
			}
		}
		if (hoard_sb_valid(&sb[0]) && hoard_sb_valid(&sb[1]) &&
		    (sb[0].dev_blocks != sb[1].dev_blocks || sb[0].meta_start != sb[1].meta_start ||
		     sb[0].data_start != sb[1].data_start || sb[0].nbuckets != sb[1].nbuckets))
			say(f, 1, "the two superblock copies disagree on the geometry");
	}
	free(sb);
	return r;
}

static int obj_decode(const uint8_t *v, int len, struct hobj *o)
{
	size_t hdr = offsetof(struct hobj, key);
	if (len < (int)hdr || len > (int)sizeof(*o))
		return -1;
	memcpy(o, v, hdr);
	if (o->key_len > HOARD_KEY_MAX || o->coh_len > HOARD_COH_MAX ||
	    (size_t)len != hdr + o->key_len + o->coh_len)
		return -1;
	return 0;
}

/* Is there a live object @id?  Returns its generation through *gen. */
static int obj_live(struct hbt *t, uint64_t id, uint32_t *gen)
{
	uint8_t v[sizeof(struct hobj)];
	struct hobj o;
	struct hbt_key k = {.type = HK_OBJ, .b = id};
	int len = hbt_get(t, &k, v, sizeof(v));
	if (len < 0 || obj_decode(v, len, &o) < 0)
		return 0;
	*gen = o.gen;
	return 1;
}

static int check_data_block(struct fsck *f, const struct hblkptr *p, uint8_t *buf)
{
	int r = hps_io(f->ps, HOARD_IO_READ, buf, HBLK, p->blk * HBLK);
	f->res->data_blocks_checked++;
	if (r < 0 || hoard_crc32c(0, buf, p->len) != p->csum) {
		f->res->data_blocks_bad++;
		return 1;
	}
	return 0;
}

/* F5, F6: every record. Orphans are collected for --repair. */
static int check_records(struct fsck *f, struct hbt *t, struct hbt_key **orph, size_t *norph)
{
	const struct hoard_sb *sb = f->sb;
	struct hroot *root = hps_root(f->ps);
	uint8_t v[HBT_VAL_MAX];
	uint8_t *dbuf = NULL;
	size_t cap = 0;
	struct hbt_key k = {0}, found;
	int after = 0;
	uint64_t objs = 0;
	if (f->o->check_data && posix_memalign((void **)&dbuf, HBLK, HBLK))
		return -ENOMEM;
	for (;;) {
		int len = t->height ? hbt_seek(t, &k, after, &found, v, sizeof(v)) : -ENOENT;
		if (len == -ENOENT)
			break;
		if (len < 0) {
			say(f, 1, "records unreadable after key type %u id %llu: %s", k.type,
			    (unsigned long long)k.b, strerror(-len));
			break;
		}
		k = found;
		after = 1;
		tick(f);
		int orphan = 0;
		uint32_t gen = 0;
		switch (found.type) {
		case HK_VOL:
			f->res->volumes++;
			if (len == 0 || len > (int)HOARD_VOLNAME_MAX)
				say(f, 1, "volume %llu: bad name length %d", (unsigned long long)found.c, len);
			break;
		case HK_OBJ: {
			struct hobj o;
			objs++;
			f->res->objects++;
			if (obj_decode(v, len, &o) < 0)
				say(f, 1, "object %llu: malformed record", (unsigned long long)found.b);
			break;
		}
		case HK_CHUNK: {
			f->res->chunks++;
			if (!obj_live(t, found.b, &gen)) {
				orphan = 1;
				break;
			}
			if (len != (int)sizeof(struct hchunk)) {
				say(f, 1, "object %llu chunk %llu: bad length %d", (unsigned long long)found.b,
				    (unsigned long long)found.c, len);
				break;
			}
			const struct hchunk *ch = (const struct hchunk *)v;
			if (ch->obj_gen != gen)
				break; /* invalidated: garbage the purge drops */
			for (unsigned i = 0; i < HCHUNK_BLOCKS; i++) {
				const struct hblkptr *p = &ch->b[i];
				if (!p->len)
					continue;
				if (p->len > HBLK || p->blk < sb->data_start ||
				    p->blk >= sb->data_start + sb->nbuckets * sb->bucket_blocks) {
					say(f, 1, "object %llu block %llu: pointer outside the data area",
					    (unsigned long long)found.b,
					    (unsigned long long)(found.c * HCHUNK_BLOCKS + i));
					continue;
				}
				struct hpage *gp;
				uint64_t bucket = (p->blk - sb->data_start) / sb->bucket_blocks;
				if (hps_get(f->ps, root->gens_start + bucket / HGENS_PER_PAGE, &gp) < 0)
					continue; /* reported by the page walk */
				uint16_t g = ((uint16_t *)hps_body(gp))[bucket % HGENS_PER_PAGE];
				hps_put(f->ps, gp);
				if (g != p->gen)
					continue; /* its bucket was reclaimed: evicted */
				f->res->blocks++;
				if (dbuf && check_data_block(f, p, dbuf))
					say(f, 1, "object %llu block %llu: data fails its checksum (it is a miss, never served)",
					    (unsigned long long)found.b,
					    (unsigned long long)(found.c * HCHUNK_BLOCKS + i));
			}
			break;
		}
		case HK_META:
			f->res->meta_records++;
			if (!obj_live(t, found.b, &gen))
				orphan = 1;
			else if (len < 4)
				say(f, 1, "object %llu: metadata record too short", (unsigned long long)found.b);
			break;
		default:
			say(f, 1, "unknown record type %u", found.type);
			break;
		}
		if (orphan) {
			f->res->orphans++;
			if (f->o->repair) {
				if (*norph == cap) {
					cap = cap ? cap * 2 : 1024;
					struct hbt_key *n = realloc(*orph, cap * sizeof(**orph));
					if (!n) {
						free(dbuf);
						return -ENOMEM;
					}
					*orph = n;
				}
				(*orph)[(*norph)++] = found;
			}
		}
	}
	if (f->res->orphans)
		say(f, 0, "%llu records of removed objects not yet dropped (garbage, no harm)",
		    (unsigned long long)f->res->orphans);
	if (root->nobjects != objs)
		say(f, f->o->repair ? 0 : 1, "root counts %llu objects, found %llu",
		    (unsigned long long)root->nobjects, (unsigned long long)objs);
	free(dbuf);
	return 0;
}

int hoard_fsck(const char *path, const struct hoard_fsck_opts *opts, struct hoard_fsck_result *res)
{
	struct hoard_fsck_opts dflt = {0};
	const struct hoard_fsck_opts *o = opts ? opts : &dflt;
	const struct hoard_dev_ops *ops = o->dev_ops ? o->dev_ops : &hoard_dev_uring;
	struct fsck f = {.o = o, .res = res};
	struct hoard_dev *dev = NULL;
	struct hbt_key *orph = NULL;
	size_t norph = 0;
	uint64_t size;
	int bad_copy, r;
	memset(res, 0, sizeof(*res));
	r = ops->open(path, !o->repair, o->dev_arg, &dev, &size);
	if (r < 0)
		return r;
	r = check_superblocks(&f, ops, dev, &bad_copy);
	if (r < 0)
		goto out;
	r = hps_open(ops, dev, size, !o->repair, 16384, &f.ps);
	if (r < 0) {
		say(&f, 1, "cannot open the cache: %s", hoard_strerror(r));
		if (r == -EUCLEAN || r == -EIO)
			r = 1;
		goto out;
	}
	f.sb = hps_sb(f.ps);
	struct hroot *root = hps_root(f.ps);
	res->pages_used = root->meta_used;
	f.total = root->meta_used + root->nobjects * 3;
	f.reach = calloc(1, (size_t)(f.sb->meta_blocks / 8 + 1));
	if (!f.reach) {
		r = -ENOMEM;
		goto out;
	}
	mark(0, 0, &f); /* F4: the fixed pages */
	for (uint64_t i = 0; i < root->bitmap_pages; i++)
		mark(root->bitmap_start + i, 0, &f);
	for (uint64_t i = 0; i < root->gens_pages; i++)
		mark(root->gens_start + i, 0, &f);
	struct hbt t = {.ps = f.ps, .root = root->bt_root, .height = root->bt_height};
	uint64_t nkeys = 0;
	int tree_ok = 1;
	if (t.height) {
		r = hbt_check(&t, mark, tree_report, &f, &nkeys);
		if (r < 0) {
			tree_ok = 0;
			if (r != -EUCLEAN)
				say(&f, 1, "B+tree walk failed: %s", strerror(-r));
		}
	}
	if (tree_ok) { /* F4: bitmap against reachability */
		for (uint64_t p = 0; p < f.sb->meta_blocks; p++) {
			int reach = (f.reach[p / 8] >> (p % 8)) & 1;
			int alloc = hps_is_allocated(f.ps, p);
			if (alloc < 0) {
				say(&f, 1, "allocation bitmap unreadable: %s", strerror(-alloc));
				break;
			}
			if (reach && !alloc)
				say(&f, 1, "page %llu is in use but marked free", (unsigned long long)p);
			if (!reach && alloc) {
				res->leaked_pages++;
				if (o->repair && hps_free(f.ps, p) == 0)
					res->repaired++;
			}
		}
		if (res->leaked_pages)
			say(&f, 0, "%llu pages allocated but unused (leaked)%s",
			    (unsigned long long)res->leaked_pages, o->repair ? ": freed" : "");
		r = check_records(&f, &t, &orph, &norph);
		if (r < 0)
			goto out;
	} else {
		say(&f, 1, "the index is damaged beyond repair: reformat with "
			   "`hoardfs format --force` (the cache only holds copies of server data)");
	}
	if (o->repair && tree_ok) {
		for (size_t i = 0; i < norph; i++) {
			if (hbt_del(&t, &orph[i]) == 0)
				res->repaired++;
			if (hps_need_commit(f.ps) && (r = hps_commit(f.ps)) < 0)
				goto out;
		}
		if (hps_dirty_root(f.ps) == 0) {
			root->bt_root = t.root;
			root->bt_height = t.height;
			root->nobjects = res->objects;
		}
		r = hps_checkpoint(f.ps);
		if (r < 0)
			goto out;
	}
	if (o->repair && bad_copy >= 0) {
		/* F1: rewrite a damaged copy from the good one (same sequence:
		 * the next superblock write alternates as usual) */
		int still_bad;
		struct fsck quiet = {.o = &dflt, .res = &(struct hoard_fsck_result){0}};
		struct hoard_sb *sb;
		int rc = check_superblocks(&quiet, ops, dev, &still_bad);
		if (rc == 0 && still_bad < 0) { /* the checkpoint rewrote it */
			res->repaired++;
			say(&f, 0, "superblock copy %c rewritten", 'A' + bad_copy);
		} else if (rc == 0 && posix_memalign((void **)&sb, HBLK, HBLK) == 0) {
			*sb = *f.sb;
			hoard_sb_seal(sb);
			if (hoard_dev_io(ops, dev, HOARD_IO_WRITE, sb, HBLK, (uint64_t)still_bad * HBLK) == 0 &&
			    hoard_dev_io(ops, dev, HOARD_IO_FLUSH, NULL, 0, 0) == 0) {
				res->repaired++;
				say(&f, 0, "superblock copy %c rewritten", 'A' + still_bad);
			}
			free(sb);
		}
	}
	if (o->progress)
		o->progress(f.total, f.total, o->arg);
	r = res->errors ? 1 : 0;
out:
	free(orph);
	free(f.reach);
	if (f.ps)
		hps_close(f.ps);
	ops->close(dev);
	return r;
}
