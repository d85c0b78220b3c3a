/*
 * Description: crash consistency of the cache engine.  A seeded random
 * workload (objects created, written, overwritten, truncated, punched,
 * invalidated, removed and re-created; coherency data changed with and
 * without invalidation; metadata records put and deleted; hoard_sync at
 * random points) runs on a recording memdev while a model keeps the
 * history of every object's existence and coherency data and of every
 * (object, block) and (object, record) cell.  Then, for many crash points
 * (prefixes, random subsets and orders of the writes of the open flush
 * epoch, torn writes, garbage sectors), the crash image is opened (read-
 * only or read-write) and checked:
 *
 *   - it opens: a crash is always recoverable (never -EUCLEAN);
 *   - let S be the last hoard_sync completed before the crash point and H
 *     the last operation started before it.  Every cell the engine reports
 *     (object existence, coherency data, a block's bytes and length, a
 *     record's bytes) equals the cell's value after S or after some
 *     operation in (S, H].  So: never garbage, never another object's
 *     block, never data dropped by a committed truncate/invalidate/remove,
 *     never committed data missing (the device is sized so that nothing
 *     is evicted: reclaimed_buckets is checked to stay 0);
 *   - no checksum errors unless the crash tore a write or trashed a sector;
 *   - a read-only open writes nothing to the device;
 *   - a read-write open accepts new writes and a sync, and (sometimes)
 *     they survive a close and reopen.
 *
 * Env: HOARD_CRASH_POINTS (total crash points, default 10000),
 * HOARD_CRASH_SEED (run only this workload seed), HOARD_CRASH_ONLY (only
 * crash number N of that seed), HOARD_CRASH_OPS (workload length),
 * HOARD_CRASH_VERBOSE, HOARD_CRASH_MUTATE=1 (self-test: simulate a device
 * that loses the last flushed epoch; this test must then FAIL).
 * Exit 0 pass, 1 fail.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hoardfs/hoard.h>
#include "../lib/memdev.h"

#define DEV_SIZE (32ull << 20)
#define MAXB 40u           /* blocks per object (spans two chunks) */
#define NKIND 3u
#define NRID 4u
#define NMETA (NKIND * NRID)
#define NVOL 2u
#define NKEYS 12u          /* key slots per volume */
#define MAXOBJ 1024u
#define MAXFAIL 5

/* ---- model ---- */

struct hent {
	uint32_t op;
	uint32_t val;
};
struct hist {
	uint32_t n, cap;
	struct hent *e;
};

/* cell values: 0 = absent.
 * block: ver << 13 | len (1..4096); record: ver << 11 | len (1..1024);
 * exists: 1; coh: the coherency version (coh_content). */
struct mobj {
	uint64_t id;
	uint32_t vol, key;      /* indices */
	struct hist exists, coh, blk[MAXB], meta[NMETA];
};

struct model {
	struct mobj *objs;
	uint32_t nobj;
	uint32_t vol_id[NVOL];
	uint32_t op;            /* current operation number */
	size_t *opstart;        /* log position when op k started */
	uint32_t opcap;
	uint32_t *sync_op;      /* completed syncs: op number ... */
	size_t *sync_pos;       /* ... and log position when it returned */
	uint32_t nsync, synccap;
	uint64_t ver;
};

static void hist_push(struct hist *h, uint32_t op, uint32_t val)
{
	if (h->n && h->e[h->n - 1].op == op) {
		h->e[h->n - 1].val = val;
		return;
	}
	if (h->n == h->cap) {
		h->cap = h->cap ? h->cap * 2 : 4;
		h->e = realloc(h->e, h->cap * sizeof(*h->e));
		if (!h->e)
			abort();
	}
	h->e[h->n++] = (struct hent){ op, val };
}

static uint32_t hist_cur(const struct hist *h)
{
	return h->n ? h->e[h->n - 1].val : 0;
}

/* Value after op s. */
static uint32_t hist_at(const struct hist *h, uint32_t s)
{
	uint32_t v = 0;
	for (uint32_t i = 0; i < h->n && h->e[i].op <= s; i++)
		v = h->e[i].val;
	return v;
}

/* Is @val the cell's value after S or after some op in (S, H]? */
static int hist_allows(const struct hist *h, uint32_t s, uint32_t hi, uint32_t val)
{
	if (hist_at(h, s) == val)
		return 1;
	for (uint32_t i = 0; i < h->n; i++)
		if (h->e[i].op > s && h->e[i].op <= hi && h->e[i].val == val)
			return 1;
	return 0;
}

static void hist_describe(const struct hist *h, uint32_t s, uint32_t hi, char *out, size_t n)
{
	int k = snprintf(out, n, "after sync op %u: %#x; later:", s, hist_at(h, s));
	for (uint32_t i = 0; i < h->n && k > 0 && (size_t)k < n; i++)
		if (h->e[i].op > s && h->e[i].op <= hi)
			k += snprintf(out + k, n - (size_t)k, " op%u=%#x", h->e[i].op, h->e[i].val);
}

/* ---- content ---- */

static void fill(uint8_t *p, size_t len, uint64_t a, uint64_t b, uint64_t c, uint64_t tag)
{
	uint64_t s = a * 0x9E3779B97F4A7C15ull ^ b * 0xC2B2AE3D27D4EB4Full ^ c * 0x165667B19E3779F9ull ^ tag;
	uint8_t head[32];
	memcpy(head, &tag, 8);
	memcpy(head + 8, &a, 8);
	memcpy(head + 16, &b, 8);
	memcpy(head + 24, &c, 8);
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = memdev_rand(&s);
		memcpy(p + i, &v, len - i < 8 ? len - i : 8);
	}
	memcpy(p, head, len < 32 ? len : 32);
}

#define TAG_BLK 0x4b4c42ull  /* "BLK" */
#define TAG_META 0x4154454dull
#define TAG_COH 0x484f43ull

static void blk_content(uint8_t *p, uint64_t id, uint32_t b, uint32_t ver, uint32_t len)
{
	fill(p, len, id, b, ver, TAG_BLK);
}

static void meta_content(uint8_t *p, uint64_t id, uint32_t slot, uint32_t ver, uint32_t len)
{
	fill(p, len, id, slot, ver, TAG_META);
}

#define COH_LEN 16u
/* coherency data: versions are unique over the run, so the bytes need
 * not depend on the object id (unknown before creation) */
static void coh_content(uint8_t *p, uint32_t cohver)
{
	fill(p, COH_LEN, cohver, 0, 0, TAG_COH);
}

static void key_content(char *k, size_t n, uint32_t vol, uint32_t key)
{
	snprintf(k, n, "key-%u-%u", vol, key);
}

/* Describe bytes read back: whose block they are, if any. */
static void describe_bytes(const uint8_t *p, size_t len, char *out, size_t n)
{
	uint64_t tag, a, b, c;
	if (len < 32) {
		snprintf(out, n, "%zu bytes (too short to identify)", len);
		return;
	}
	memcpy(&tag, p, 8);
	memcpy(&a, p + 8, 8);
	memcpy(&b, p + 16, 8);
	memcpy(&c, p + 24, 8);
	if (tag == TAG_BLK) {
		uint8_t tmp[HOARD_BLOCK_SIZE];
		blk_content(tmp, a, (uint32_t)b, (uint32_t)c, (uint32_t)len);
		snprintf(out, n, "%zu bytes of (obj %" PRIu64 ", block %" PRIu64 ", version %" PRIu64 ")%s",
			 len, a, b, c, memcmp(tmp, p, len) ? " with damaged body" : "");
	} else if (tag == TAG_META) {
		snprintf(out, n, "%zu bytes of a record (obj %" PRIu64 " slot %" PRIu64 " ver %" PRIu64 ")",
			 len, a, b, c);
	} else {
		snprintf(out, n, "%zu unrecognised bytes (%02x %02x %02x %02x ...)", len, p[0], p[1], p[2], p[3]);
	}
}

/* ---- run state ---- */

struct run {
	uint64_t seed;
	int inline_io;
	struct memdev rec;
	uint8_t *init;          /* image when recording started */
	struct model m;
	struct hoard_cache *c;
	int short_writes;       /* engine accepts short last blocks */
	unsigned failures;
	uint64_t points_run, opens_ro, opens_rw, reopens, torn, garbage;
	int verbose;
	int mutate;             /* HOARD_CRASH_MUTATE: self-test of the checks */
};

static int fail_count;

#define FAILF(r, ...)                                                         \
	do {                                                                  \
		fprintf(stderr, "FAIL seed=%" PRIu64 " (%s): ", (r)->seed,   \
			(r)->inline_io ? "inline" : "threaded");              \
		fprintf(stderr, __VA_ARGS__);                                 \
		fputc('\n', stderr);                                          \
		(r)->failures++;                                              \
		fail_count++;                                                 \
	} while (0)

static void op_begin(struct run *r)
{
	struct model *m = &r->m;
	m->op++;
	if (m->op >= m->opcap) {
		m->opcap = m->opcap ? m->opcap * 2 : 1024;
		m->opstart = realloc(m->opstart, m->opcap * sizeof(*m->opstart));
		if (!m->opstart)
			abort();
	}
	pthread_mutex_lock(&r->rec.lock);
	m->opstart[m->op] = r->rec.nlog;
	pthread_mutex_unlock(&r->rec.lock);
}

static void sync_done(struct run *r)
{
	struct model *m = &r->m;
	if (m->nsync == m->synccap) {
		m->synccap = m->synccap ? m->synccap * 2 : 64;
		m->sync_op = realloc(m->sync_op, m->synccap * sizeof(*m->sync_op));
		m->sync_pos = realloc(m->sync_pos, m->synccap * sizeof(*m->sync_pos));
		if (!m->sync_op || !m->sync_pos)
			abort();
	}
	pthread_mutex_lock(&r->rec.lock);
	m->sync_pos[m->nsync] = r->rec.nlog;
	pthread_mutex_unlock(&r->rec.lock);
	m->sync_op[m->nsync++] = m->op;
}

static struct mobj *find_live(struct model *m, uint32_t vol, uint32_t key)
{
	for (uint32_t i = m->nobj; i-- > 0;)
		if (m->objs[i].vol == vol && m->objs[i].key == key && hist_cur(&m->objs[i].exists))
			return &m->objs[i];
	return NULL;
}

static void drop_all(struct model *m, struct mobj *o, int meta_too)
{
	for (uint32_t b = 0; b < MAXB; b++)
		if (hist_cur(&o->blk[b]))
			hist_push(&o->blk[b], m->op, 0);
	if (meta_too)
		for (uint32_t k = 0; k < NMETA; k++)
			if (hist_cur(&o->meta[k]))
				hist_push(&o->meta[k], m->op, 0);
}

/* Verify, on the live engine, that one object holds exactly its current
 * model state (no crash involved). */
static int check_live(struct run *r, struct mobj *o)
{
	static uint8_t buf[MAXB * HOARD_BLOCK_SIZE], exp[HOARD_BLOCK_SIZE];
	for (uint32_t b = 0; b < MAXB; b++) {
		uint32_t v = hist_cur(&o->blk[b]);
		int64_t n = hoard_pread(r->c, o->id, buf, HOARD_BLOCK_SIZE, (uint64_t)b * HOARD_BLOCK_SIZE);
		uint32_t len = v & 0x1fff;
		if (n < 0 || (uint64_t)n != len) {
			FAILF(r, "live op %u: obj %" PRIu64 " block %u: read %" PRId64 " bytes, model has %u (ver %u)",
			      r->m.op, o->id, b, n, len, v >> 13);
			return -1;
		}
		if (len) {
			blk_content(exp, o->id, b, v >> 13, len);
			if (memcmp(exp, buf, len)) {
				char d[160];
				describe_bytes(buf, len, d, sizeof(d));
				FAILF(r, "live op %u: obj %" PRIu64 " block %u: expected version %u, got %s",
				      r->m.op, o->id, b, v >> 13, d);
				return -1;
			}
		}
	}
	return 0;
}

/* ---- the workload ---- */

static int do_op(struct run *r, uint64_t *rs)
{
	struct model *m = &r->m;
	uint64_t x = memdev_rand(rs) % 100;
	static uint8_t buf[8 * HOARD_BLOCK_SIZE];
	char key[32];
	int rc;

	if (x < 8) { /* sync */
		op_begin(r);
		rc = hoard_sync(r->c);
		if (rc) {
			FAILF(r, "op %u: hoard_sync: %d", m->op, rc);
			return -1;
		}
		sync_done(r);
		return 0;
	}
	uint32_t vol = (uint32_t)(memdev_rand(rs) % NVOL), ks = (uint32_t)(memdev_rand(rs) % NKEYS);
	struct mobj *o = find_live(m, vol, ks);
	if (x < 20 || !o) { /* acquire: create, or change coherency data (invalidates) */
		if (m->nobj == MAXOBJ)
			return 0;
		uint32_t cohver = o && memdev_rand(rs) % 2 ? hist_cur(&o->coh) : (uint32_t)(++m->ver);
		uint8_t coh[COH_LEN];
		struct hoard_obj_info info;
		key_content(key, sizeof(key), vol, ks);
		coh_content(coh, cohver);
		op_begin(r);
		rc = hoard_obj_acquire(r->c, m->vol_id[vol], key, strlen(key), coh, COH_LEN, &info);
		if (rc < 0) {
			FAILF(r, "op %u: hoard_obj_acquire: %d", m->op, rc);
			return -1;
		}
		if (!o) {
			if (rc != 0) {
				FAILF(r, "op %u: acquire of a new object returned %d", m->op, rc);
				return -1;
			}
			/* ids may be reused (they are hashes of (volume, key)):
			 * a removed object's cells continue, all absent */
			for (uint32_t i = 0; i < m->nobj && !o; i++)
				if (m->objs[i].id == info.id) {
					o = &m->objs[i];
					if (hist_cur(&o->exists) || o->vol != vol || o->key != ks) {
						FAILF(r, "op %u: new object (vol %u key %u) got id %" PRIu64
						      ", used by live=%u vol %u key %u", m->op, vol, ks, info.id,
						      hist_cur(&o->exists), o->vol, o->key);
						return -1;
					}
				}
			if (!o) {
				o = &m->objs[m->nobj++];
				memset(o, 0, sizeof(*o));
				o->id = info.id;
				o->vol = vol;
				o->key = ks;
			}
			hist_push(&o->exists, m->op, 1);
			hist_push(&o->coh, m->op, cohver);
			return 0;
		}
		int changed = cohver != hist_cur(&o->coh);
		if (rc != changed) {
			FAILF(r, "op %u: acquire with %s coherency data returned %d", m->op,
			      changed ? "different" : "equal", rc);
			return -1;
		}
		if (changed) {
			hist_push(&o->coh, m->op, cohver);
			drop_all(m, o, 1);
		}
		return 0;
	}
	if (x >= 50 && x < 53) { /* punch a byte range: every block it touches goes */
		uint64_t off = memdev_rand(rs) % ((uint64_t)MAXB * HOARD_BLOCK_SIZE);
		uint64_t len = 1 + memdev_rand(rs) % (6 * HOARD_BLOCK_SIZE);
		op_begin(r);
		rc = hoard_obj_punch(r->c, o->id, off, len);
		if (rc) {
			FAILF(r, "op %u: hoard_obj_punch(%" PRIu64 ", %" PRIu64 ", %" PRIu64 ") = %d", m->op, o->id,
			      off, len, rc);
			return -1;
		}
		for (uint64_t b = off / HOARD_BLOCK_SIZE; b < MAXB && b * HOARD_BLOCK_SIZE < off + len; b++)
			if (hist_cur(&o->blk[b]))
				hist_push(&o->blk[b], m->op, 0);
		return 0;
	}
	if (x >= 53 && x < 55) { /* new coherency data, data kept */
		uint32_t cohver = (uint32_t)(++m->ver);
		uint8_t coh[COH_LEN];
		coh_content(coh, cohver);
		op_begin(r);
		rc = hoard_obj_set_coherency(r->c, o->id, coh, COH_LEN);
		if (rc) {
			FAILF(r, "op %u: hoard_obj_set_coherency(%" PRIu64 ") = %d", m->op, o->id, rc);
			return -1;
		}
		hist_push(&o->coh, m->op, cohver);
		return 0;
	}
	if (x < 55) { /* write */
		uint32_t b = (uint32_t)(memdev_rand(rs) % MAXB);
		uint32_t n = 1 + (uint32_t)(memdev_rand(rs) % 8);
		if (b + n > MAXB)
			n = MAXB - b;
		uint32_t ver = (uint32_t)(++m->ver);
		uint32_t lastlen = HOARD_BLOCK_SIZE;
		if (r->short_writes && memdev_rand(rs) % 5 == 0)
			lastlen = 1 + (uint32_t)(memdev_rand(rs) % (HOARD_BLOCK_SIZE - 1));
		for (uint32_t i = 0; i < n; i++)
			blk_content(buf + i * HOARD_BLOCK_SIZE, o->id, b + i, ver,
				    i + 1 == n ? lastlen : HOARD_BLOCK_SIZE);
		size_t len = (size_t)(n - 1) * HOARD_BLOCK_SIZE + lastlen;
		op_begin(r);
		int64_t w = hoard_pwrite(r->c, o->id, buf, len, (uint64_t)b * HOARD_BLOCK_SIZE);
		if (w == -EINVAL && lastlen < HOARD_BLOCK_SIZE) {
			fprintf(stderr, "note: engine refuses short writes in the middle; disabled\n");
			r->short_writes = 0;
			return 0;
		}
		if (w != (int64_t)len) {
			FAILF(r, "op %u: hoard_pwrite(obj %" PRIu64 ", %zu bytes at block %u) = %" PRId64,
			      m->op, o->id, len, b, w);
			return -1;
		}
		for (uint32_t i = 0; i < n; i++)
			hist_push(&o->blk[b + i], m->op, ver << 13 | (i + 1 == n ? lastlen : HOARD_BLOCK_SIZE));
		return 0;
	}
	if (x < 60) { /* truncate at a block boundary */
		uint32_t b = (uint32_t)(memdev_rand(rs) % MAXB);
		op_begin(r);
		rc = hoard_obj_truncate(r->c, o->id, (uint64_t)b * HOARD_BLOCK_SIZE);
		if (rc) {
			FAILF(r, "op %u: hoard_obj_truncate(%" PRIu64 ", block %u) = %d", m->op, o->id, b, rc);
			return -1;
		}
		for (; b < MAXB; b++)
			if (hist_cur(&o->blk[b]))
				hist_push(&o->blk[b], m->op, 0);
		return 0;
	}
	if (x < 64) { /* invalidate */
		op_begin(r);
		rc = hoard_obj_invalidate(r->c, o->id);
		if (rc) {
			FAILF(r, "op %u: hoard_obj_invalidate(%" PRIu64 ") = %d", m->op, o->id, rc);
			return -1;
		}
		drop_all(m, o, 1);
		return 0;
	}
	if (x < 68) { /* remove */
		op_begin(r);
		rc = hoard_obj_remove(r->c, o->id);
		if (rc) {
			FAILF(r, "op %u: hoard_obj_remove(%" PRIu64 ") = %d", m->op, o->id, rc);
			return -1;
		}
		drop_all(m, o, 1);
		hist_push(&o->coh, m->op, 0);
		hist_push(&o->exists, m->op, 0);
		return 0;
	}
	uint32_t slot = (uint32_t)(memdev_rand(rs) % NMETA);
	uint32_t kind = 1 + slot / NRID;
	uint64_t rid = slot % NRID;
	if (x < 86) { /* meta_put */
		uint32_t ver = (uint32_t)(++m->ver);
		uint32_t len = 1 + (uint32_t)(memdev_rand(rs) % HOARD_META_MAX);
		meta_content(buf, o->id, slot, ver, len);
		op_begin(r);
		rc = hoard_meta_put(r->c, o->id, kind, rid, buf, len);
		if (rc) {
			FAILF(r, "op %u: hoard_meta_put(%" PRIu64 ", %u, %" PRIu64 ", %u bytes) = %d",
			      m->op, o->id, kind, rid, len, rc);
			return -1;
		}
		hist_push(&o->meta[slot], m->op, ver << 11 | len);
		return 0;
	}
	if (x < 94) { /* meta_del */
		int present = hist_cur(&o->meta[slot]) != 0;
		op_begin(r);
		rc = hoard_meta_del(r->c, o->id, kind, rid);
		if (rc != (present ? 0 : -ENOENT)) {
			FAILF(r, "op %u: hoard_meta_del(%" PRIu64 ", %u, %" PRIu64 ") = %d, record %s",
			      m->op, o->id, kind, rid, rc, present ? "present" : "absent");
			return -1;
		}
		if (present)
			hist_push(&o->meta[slot], m->op, 0);
		return 0;
	}
	if (x < 96) { /* meta_clear of one kind */
		op_begin(r);
		rc = hoard_meta_clear(r->c, o->id, kind);
		if (rc) {
			FAILF(r, "op %u: hoard_meta_clear(%" PRIu64 ", %u) = %d", m->op, o->id, kind, rc);
			return -1;
		}
		for (uint32_t s = (kind - 1) * NRID; s < kind * NRID; s++)
			if (hist_cur(&o->meta[s]))
				hist_push(&o->meta[s], m->op, 0);
		return 0;
	}
	/* live check of one object against the model */
	return check_live(r, o);
}

/* ---- verification of a recovered cache ---- */

struct iter_ctx {
	struct run *r;
	uint32_t s, hi;
	const char *where;
	int bad;
};

static int iter_obj(const struct hoard_obj_info *info, void *arg)
{
	struct iter_ctx *ix = arg;
	struct model *m = &ix->r->m;
	for (uint32_t i = 0; i < m->nobj; i++)
		if (m->objs[i].id == info->id) {
			if (!hist_allows(&m->objs[i].exists, ix->s, ix->hi, 1)) {
				FAILF(ix->r, "%s: iterate reports obj %" PRIu64 ", which must not exist",
				      ix->where, info->id);
				ix->bad = 1;
			}
			return 0;
		}
	FAILF(ix->r, "%s: iterate reports unknown obj %" PRIu64 " (vol %u, key_len %u)", ix->where,
	      info->id, info->vol, info->key_len);
	ix->bad = 1;
	return 0;
}

struct meta_iter_ctx {
	struct run *r;
	const char *where;
	uint64_t id;
	uint32_t kind;
	int bad;
};

static int iter_meta(uint64_t rid, const void *val, size_t len, void *arg)
{
	struct meta_iter_ctx *mx = arg;
	if (rid >= NRID || len == 0 || len > HOARD_META_MAX) {
		FAILF(mx->r, "%s: obj %" PRIu64 " kind %u: meta_iterate reports rid %" PRIu64 " len %zu",
		      mx->where, mx->id, mx->kind, rid, len);
		mx->bad = 1;
	}
	return 0;
}

/* Check every cell of the model against the cache.  Returns 0 or -1. */
static int verify(struct run *r, struct hoard_cache *c, uint32_t s, uint32_t hi, const char *where)
{
	struct model *m = &r->m;
	static uint8_t buf[MAXB * HOARD_BLOCK_SIZE + HOARD_BLOCK_SIZE], exp[HOARD_BLOCK_SIZE];
	static uint8_t bulk[MAXB * HOARD_BLOCK_SIZE];
	char d1[200], d2[400];
	int bad = 0;

	for (uint32_t i = 0; i < m->nobj && bad < 3; i++) {
		struct mobj *o = &m->objs[i];
		if (!o->exists.n || o->exists.e[0].op > hi)
			continue; /* created after the crash */
		struct hoard_obj_info info;
		int rc = hoard_obj_get(c, o->id, &info);
		if (rc == -ENOENT) {
			if (!hist_allows(&o->exists, s, hi, 0)) {
				hist_describe(&o->exists, s, hi, d2, sizeof(d2));
				FAILF(r, "%s: committed obj %" PRIu64 " is missing (exists %s)", where, o->id, d2);
				bad++;
			}
			continue;
		}
		if (rc) {
			FAILF(r, "%s: hoard_obj_get(%" PRIu64 ") = %d", where, o->id, rc);
			bad++;
			continue;
		}
		if (!hist_allows(&o->exists, s, hi, 1)) {
			FAILF(r, "%s: obj %" PRIu64 " exists, but it was removed before the last sync", where, o->id);
			bad++;
			continue;
		}
		char key[32];
		key_content(key, sizeof(key), o->vol, o->key);
		if (info.vol != m->vol_id[o->vol] || info.key_len != strlen(key) ||
		    memcmp(info.key, key, info.key_len)) {
			FAILF(r, "%s: obj %" PRIu64 ": vol %u key '%.*s', expected vol %u key '%s'", where,
			      o->id, info.vol, (int)(info.key_len < 64 ? info.key_len : 64), info.key,
			      m->vol_id[o->vol], key);
			bad++;
		}
		/* coherency data: which model value matches? */
		int coh_ok = 0;
		if (info.coh_len == COH_LEN) {
			uint8_t cb[COH_LEN];
			for (uint32_t k = 0; k < o->coh.n && !coh_ok; k++) {
				uint32_t v = o->coh.e[k].val;
				if (!v)
					continue;
				coh_content(cb, v);
				if (!memcmp(cb, info.coh, COH_LEN) && hist_allows(&o->coh, s, hi, v))
					coh_ok = 1;
			}
		}
		if (!coh_ok) {
			hist_describe(&o->coh, s, hi, d2, sizeof(d2));
			FAILF(r, "%s: obj %" PRIu64 ": coherency data (%u bytes) matches no allowed value (%s)",
			      where, o->id, info.coh_len, d2);
			bad++;
		}

		/* data: present ranges, then the bytes */
		struct hoard_range rg[64];
		int nr = hoard_present(c, o->id, 0, (uint64_t)(MAXB + 8) * HOARD_BLOCK_SIZE, rg, 64);
		if (nr < 0 || nr > 64) {
			FAILF(r, "%s: hoard_present(%" PRIu64 ") = %d", where, o->id, nr);
			bad++;
			continue;
		}
		uint32_t plen[MAXB + 8];
		memset(plen, 0, sizeof(plen));
		for (int k = 0; k < nr; k++) {
			uint64_t a = rg[k].off, e = rg[k].off + rg[k].len;
			if (e > (uint64_t)MAXB * HOARD_BLOCK_SIZE || rg[k].len == 0) {
				FAILF(r, "%s: obj %" PRIu64 ": present range [%" PRIu64 ", +%" PRIu64 ") is beyond anything written",
				      where, o->id, a, rg[k].len);
				bad++;
				e = a;
			}
			for (uint64_t p = a; p < e;) {
				uint64_t b = p / HOARD_BLOCK_SIZE, be = (b + 1) * HOARD_BLOCK_SIZE;
				uint64_t q = be < e ? be : e;
				plen[b] += (uint32_t)(q - p);
				p = q;
			}
		}
		/* one read per present range; blocks it does not cover (a
		 * checksum failure in the middle) are read again one by one */
		uint32_t got[MAXB + 8];
		memset(got, 0, sizeof(got));
		for (int k = 0; k < nr; k++) {
			uint64_t a = rg[k].off, e = rg[k].off + rg[k].len;
			if (e > (uint64_t)MAXB * HOARD_BLOCK_SIZE)
				continue;
			int64_t n = hoard_pread(c, o->id, bulk + a, (size_t)(e - a), a);
			for (uint64_t b = a / HOARD_BLOCK_SIZE; n > 0 && b * HOARD_BLOCK_SIZE < e; b++) {
				uint64_t bs = b * HOARD_BLOCK_SIZE, ve = a + (uint64_t)n;
				if (ve > bs)
					got[b] = (uint32_t)(ve - bs < plen[b] ? ve - bs : plen[b]);
			}
		}
		for (uint32_t b = 0; b < MAXB; b++) {
			uint32_t len = 0;
			if (plen[b] && got[b] == plen[b]) {
				len = got[b];
				memcpy(buf, bulk + (size_t)b * HOARD_BLOCK_SIZE, len);
			} else if (plen[b]) {
				int64_t n = hoard_pread(c, o->id, buf, HOARD_BLOCK_SIZE, (uint64_t)b * HOARD_BLOCK_SIZE);
				if (n < 0) {
					FAILF(r, "%s: obj %" PRIu64 " block %u: present, but hoard_pread = %" PRId64,
					      where, o->id, b, n);
					bad++;
					continue;
				}
				len = (uint32_t)n; /* 0 if it failed verification now */
			}
			if (!len) {
				if (!hist_allows(&o->blk[b], s, hi, 0)) {
					hist_describe(&o->blk[b], s, hi, d2, sizeof(d2));
					FAILF(r, "%s: obj %" PRIu64 " block %u: committed data missing (%s)", where,
					      o->id, b, d2);
					bad++;
				}
				continue;
			}
			/* the returned bytes must be one allowed version */
			int ok = 0;
			for (uint32_t k = 0; k < o->blk[b].n && !ok; k++) {
				uint32_t v = o->blk[b].e[k].val;
				if (!v || (v & 0x1fff) != len || !hist_allows(&o->blk[b], s, hi, v))
					continue;
				blk_content(exp, o->id, b, v >> 13, len);
				ok = !memcmp(exp, buf, len);
			}
			if (!ok) {
				describe_bytes(buf, len, d1, sizeof(d1));
				hist_describe(&o->blk[b], s, hi, d2, sizeof(d2));
				FAILF(r, "%s: obj %" PRIu64 " block %u: got %s; allowed (ver<<13|len) %s", where,
				      o->id, b, d1, d2);
				bad++;
			}
		}

		/* metadata records */
		for (uint32_t slot = 0; slot < NMETA; slot++) {
			uint32_t kind = 1 + slot / NRID;
			uint64_t rid = slot % NRID;
			int n = hoard_meta_get(c, o->id, kind, rid, buf, HOARD_META_MAX);
			if (n == -ENOENT || n == 0) {
				if (!hist_allows(&o->meta[slot], s, hi, 0)) {
					hist_describe(&o->meta[slot], s, hi, d2, sizeof(d2));
					FAILF(r, "%s: obj %" PRIu64 " record (%u,%" PRIu64 "): committed record missing (%s)",
					      where, o->id, kind, rid, d2);
					bad++;
				}
				continue;
			}
			if (n < 0) {
				FAILF(r, "%s: hoard_meta_get(%" PRIu64 ", %u, %" PRIu64 ") = %d", where, o->id, kind, rid, n);
				bad++;
				continue;
			}
			int ok = 0;
			for (uint32_t k = 0; k < o->meta[slot].n && !ok; k++) {
				uint32_t v = o->meta[slot].e[k].val;
				if (!v || (v & 0x7ff) != (uint32_t)n || !hist_allows(&o->meta[slot], s, hi, v))
					continue;
				meta_content(exp, o->id, slot, v >> 11, (uint32_t)n);
				ok = !memcmp(exp, buf, (size_t)n);
			}
			if (!ok) {
				describe_bytes(buf, (size_t)n, d1, sizeof(d1));
				hist_describe(&o->meta[slot], s, hi, d2, sizeof(d2));
				FAILF(r, "%s: obj %" PRIu64 " record (%u,%" PRIu64 "): got %s; allowed (ver<<11|len) %s",
				      where, o->id, kind, rid, d1, d2);
				bad++;
			}
		}
		for (uint32_t kind = 1; kind <= NKIND; kind++) {
			struct meta_iter_ctx mx = { r, where, o->id, kind, 0 };
			rc = hoard_meta_iterate(c, o->id, kind, iter_meta, &mx);
			if (rc < 0 && rc != -ENOENT) {
				FAILF(r, "%s: hoard_meta_iterate(%" PRIu64 ", %u) = %d", where, o->id, kind, rc);
				bad++;
			}
			bad += mx.bad;
		}
	}
	struct iter_ctx ix = { r, s, hi, where, 0 };
	int rc = hoard_obj_iterate(c, 0, iter_obj, &ix);
	if (rc < 0) {
		FAILF(r, "%s: hoard_obj_iterate = %d", where, rc);
		bad++;
	}
	bad += ix.bad;
	return bad ? -1 : 0;
}

/* ---- crash points ---- */

struct cpoint {
	size_t point;
	uint32_t idx;      /* crash number within the seed (reproduction) */
	struct memdev_crash cr;
	int ro;
	int post;          /* 0 none, 1 write+sync, 2 also close and reopen */
	int inline_io;
};

static int cp_cmp(const void *a, const void *b)
{
	const struct cpoint *x = a, *y = b;
	if (x->point != y->point)
		return x->point < y->point ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

static void make_points(struct run *r, struct cpoint *cp, uint32_t n)
{
	uint64_t rs = r->seed ^ 0xC0FFEE;
	size_t L = r->rec.nlog;
	uint64_t nfl = r->rec.nflushes_logged;
	for (uint32_t i = 0; i < n; i++) {
		struct cpoint *p = &cp[i];
		memset(p, 0, sizeof(*p));
		p->idx = i;
		uint64_t v = memdev_rand(&rs) % 100;
		p->cr.seed = memdev_rand(&rs);
		if (v < 20) { /* plain prefix */
			p->point = (size_t)(memdev_rand(&rs) % (L + 1));
			p->cr.keep_pct = 100;
		} else if (v < 30 && nfl) { /* around a flush */
			size_t fp = memdev_flush_pos(&r->rec, 1 + memdev_rand(&rs) % nfl);
			p->point = fp - (memdev_rand(&rs) % 2);
			p->cr.keep_pct = memdev_rand(&rs) % 2 ? 100 : 0;
		} else {
			p->point = (size_t)(memdev_rand(&rs) % (L + 1));
			p->cr.keep_pct = (unsigned)(memdev_rand(&rs) % 101);
			p->cr.shuffle = 1;
			if (v >= 65 && v < 85)
				p->cr.tear = 1;
			if (v >= 85) {
				p->cr.garbage = 1;
				p->cr.tear = memdev_rand(&rs) % 2;
			}
		}
		p->ro = memdev_rand(&rs) % 4 == 0;
		p->post = p->ro ? 0 : (memdev_rand(&rs) % 8 == 0 ? 2 : memdev_rand(&rs) % 3 == 0);
		p->inline_io = memdev_rand(&rs) % 4 != 0; /* threads cost futexes */
		p->cr.point = p->point;
	}
	qsort(cp, n, sizeof(*cp), cp_cmp);
}

/* last completed sync (op number) at log position P, and last op started */
static void window(struct run *r, size_t P, uint32_t *s, uint32_t *hi)
{
	struct model *m = &r->m;
	*s = 0;
	for (uint32_t k = 0; k < m->nsync; k++)
		if (m->sync_pos[k] <= P)
			*s = m->sync_op[k];
	*hi = 0;
	for (uint32_t k = 1; k <= m->op; k++)
		if (m->opstart[k] < P)
			*hi = k;
	if (*hi < *s)
		*hi = *s;
}

static int post_recovery(struct run *r, struct hoard_cache *c, struct memdev *dev, const char *where, int reopen)
{
	static uint8_t buf[3 * HOARD_BLOCK_SIZE], got[3 * HOARD_BLOCK_SIZE];
	uint32_t vol;
	struct hoard_obj_info info;
	int rc = hoard_vol_open(c, "post-crash", 10, 1, &vol);
	if (!rc)
		rc = hoard_obj_acquire(c, vol, "post", 4, "coh", 3, &info);
	if (rc < 0) {
		FAILF(r, "%s: after recovery: creating an object: %d", where, rc);
		return -1;
	}
	for (uint32_t b = 0; b < 3; b++)
		blk_content(buf + b * HOARD_BLOCK_SIZE, 777, b, 1, HOARD_BLOCK_SIZE);
	int64_t w = hoard_pwrite(c, info.id, buf, sizeof(buf), 0);
	if (w != (int64_t)sizeof(buf)) {
		FAILF(r, "%s: after recovery: hoard_pwrite = %" PRId64, where, w);
		return -1;
	}
	rc = hoard_meta_put(c, info.id, 1, 99, "attr", 4);
	if (!rc)
		rc = hoard_sync(c);
	if (rc) {
		FAILF(r, "%s: after recovery: meta_put/sync = %d", where, rc);
		return -1;
	}
	if (!reopen)
		return 0;
	uint64_t id = info.id;
	rc = hoard_close(c);
	if (rc) {
		FAILF(r, "%s: after recovery: hoard_close = %d", where, rc);
		return -2;
	}
	struct hoard_open_opts oo = { .dev_ops = &memdev_ops, .dev_arg = dev, .commit_ms = 600000 };
	rc = hoard_open("memdev", &oo, &c);
	if (rc) {
		FAILF(r, "%s: reopening after post-recovery writes: %d", where, rc);
		return -2;
	}
	w = hoard_pread(c, id, got, sizeof(got), 0);
	char tmp[8];
	int mr = hoard_meta_get(c, id, 1, 99, tmp, sizeof(tmp));
	if (w != (int64_t)sizeof(got) || memcmp(got, buf, sizeof(got)) || mr != 4 || memcmp(tmp, "attr", 4)) {
		FAILF(r, "%s: post-recovery writes lost after close/reopen: read %" PRId64 ", meta %d", where, w, mr);
		hoard_close(c);
		return -2;
	}
	hoard_close(c);
	return -3; /* closed, fine */
}

static int run_point(struct run *r, struct memdev_snap *snap, const struct cpoint *p)
{
	struct memdev dev;
	struct memdev_crash_info ci;
	char where[300];
	int ret = 0;
	struct memdev_crash cr = p->cr;
	if (r->mutate) {
		/* harness self-test: a device that loses the last flushed
		 * epoch; the checks must catch it on most seeds */
		for (size_t i = cr.point; i > 0; i--)
			if (r->rec.log[i - 1].type == MEMDEV_LOG_FLUSH) {
				cr.point = i - 1;
				break;
			}
		cr.keep_pct = 0;
	}
	int rc = memdev_crash_build(&r->rec, r->init, snap, &cr, &dev, &ci);
	if (rc) {
		FAILF(r, "memdev_crash_build: %d", rc);
		return -1;
	}
	dev.inline_io = p->inline_io;
	uint32_t s, hi;
	window(r, p->point, &s, &hi);
	snprintf(where, sizeof(where), "crash #%u [%s] %s, ops (%u, %u]", p->idx, ci.desc,
		 p->ro ? "read-only" : "read-write", s, hi);
	if (r->verbose)
		fprintf(stderr, "%s\n", where);

	struct hoard_open_opts oo = { .dev_ops = &memdev_ops, .dev_arg = &dev, .read_only = p->ro,
				      .commit_ms = 600000, .mem_budget = 6 << 20 };
	struct hoard_cache *c = NULL;
	rc = hoard_open("memdev", &oo, &c);
	if (rc) {
		FAILF(r, "%s: hoard_open = %d (%s): a crash must be recoverable", where, rc, hoard_strerror(rc));
		memdev_fini(&dev);
		return -1;
	}
	r->points_run++;
	if (p->ro)
		r->opens_ro++;
	else
		r->opens_rw++;
	if (verify(r, c, s, hi, where))
		ret = -1;
	struct hoard_stats st;
	if (hoard_stats(c, &st) == 0) {
		int damaged = ci.torn_ent >= 0 || ci.garbage_ent >= 0;
		if (st.csum_errors && !damaged) {
			FAILF(r, "%s: %" PRIu64 " checksum errors on a crash image without torn or trashed writes"
			      " (data not durable before the metadata pointing at it?)", where, st.csum_errors);
			ret = -1;
		}
		if (st.reclaimed_buckets) {
			FAILF(r, "%s: the engine reclaimed %" PRIu64 " buckets; the model assumes none", where,
			      st.reclaimed_buckets);
			ret = -1;
		}
	}
	int closed = 0;
	if (!p->ro && p->post && ret == 0) {
		rc = post_recovery(r, c, &dev, where, p->post == 2);
		if (rc == -1)
			ret = -1;
		if (rc <= -2)
			closed = 1;
		if (rc == -2)
			ret = -1;
		if (p->post == 2)
			r->reopens++;
	}
	if (!closed) {
		rc = hoard_close(c);
		if (rc && !p->ro) {
			FAILF(r, "%s: hoard_close = %d", where, rc);
			ret = -1;
		}
	}
	if (p->ro && dev.ro_violations) {
		FAILF(r, "%s: a read-only open wrote %" PRIu64 " times to the device", where, dev.ro_violations);
		ret = -1;
	}
	if (ci.torn_ent >= 0)
		r->torn++;
	if (ci.garbage_ent >= 0)
		r->garbage++;
	memdev_fini(&dev);
	return ret;
}

static uint64_t env_u64(const char *name, uint64_t def)
{
	const char *v = getenv(name);
	return v && *v ? strtoull(v, NULL, 0) : def;
}

static int run_seed(uint64_t seed, uint32_t npoints, uint32_t nops, long only)
{
	struct run r;
	memset(&r, 0, sizeof(r));
	r.seed = seed;
	r.inline_io = seed % 2 == 0;
	r.short_writes = 1;
	r.verbose = (int)env_u64("HOARD_CRASH_VERBOSE", 0);
	r.mutate = (int)env_u64("HOARD_CRASH_MUTATE", 0);
	struct hoard_format_opts fo = { .bucket_size = 64 * 1024 };
	struct timespec t0, t1, t2;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	int rc = memdev_format(&r.rec, DEV_SIZE, &fo);
	if (rc) {
		FAILF(&r, "formatting a %llu-byte cache: %d", DEV_SIZE, rc);
		return -1;
	}
	r.rec.inline_io = r.inline_io;
	struct hoard_open_opts oo = {
		.dev_ops = &memdev_ops, .dev_arg = &r.rec, .no_reclaim = 1,
		/* inline: no timer commits, so a seed replays exactly;
		 * threaded: frequent background commits */
		.commit_ms = r.inline_io ? 600000 : 7,
	};
	rc = hoard_open("memdev", &oo, &r.c);
	if (rc) {
		FAILF(&r, "hoard_open of a fresh cache: %d", rc);
		memdev_fini(&r.rec);
		return -1;
	}
	for (uint32_t v = 0; v < NVOL && !rc; v++) {
		char name[16];
		snprintf(name, sizeof(name), "vol%u", v);
		rc = hoard_vol_open(r.c, name, strlen(name), 1, &r.m.vol_id[v]);
	}
	if (!rc)
		rc = hoard_sync(r.c);
	if (rc) {
		FAILF(&r, "creating volumes: %d", rc);
		hoard_close(r.c);
		memdev_fini(&r.rec);
		return -1;
	}
	/* recording starts from the durable image of now */
	memdev_drain(&r.rec);
	r.init = malloc(DEV_SIZE);
	r.m.objs = calloc(MAXOBJ, sizeof(*r.m.objs));
	if (!r.init || !r.m.objs)
		abort();
	memdev_read_image(&r.rec, r.init);
	memdev_log_reset(&r.rec);
	r.rec.record = 1;
	r.rec.log_cap = (size_t)1 << 30;
	op_begin(&r); /* op 1 = the baseline, "synced" */
	sync_done(&r);
	r.m.sync_pos[0] = 0;

	uint64_t rs = seed;
	int ok = 0;
	for (uint32_t i = 0; i < nops && ok == 0; i++)
		ok = do_op(&r, &rs);
	if (ok == 0) {
		for (uint32_t i = 0; i < r.m.nobj && ok == 0; i++)
			if (hist_cur(&r.m.objs[i].exists))
				ok = check_live(&r, &r.m.objs[i]);
	}
	struct hoard_stats st;
	if (hoard_stats(r.c, &st) == 0 && st.reclaimed_buckets) {
		FAILF(&r, "the workload caused %" PRIu64 " bucket reclaims: enlarge DEV_SIZE", st.reclaimed_buckets);
		ok = -1;
	}
	op_begin(&r); /* close = a final commit */
	rc = hoard_close(r.c);
	r.c = NULL;
	if (rc) {
		FAILF(&r, "hoard_close after the workload: %d", rc);
		ok = -1;
	} else {
		sync_done(&r);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (ok) {
		fprintf(stderr, "seed %" PRIu64 ": workload failed; no crash points run\n", seed);
		goto out;
	}

	/* the clean image must hold the final state exactly */
	{
		struct memdev_crash all = { .point = r.rec.nlog, .keep_pct = 100 };
		struct cpoint cp = { .point = r.rec.nlog, .idx = (uint32_t)-1, .cr = all, .inline_io = 1 };
		struct memdev_snap snap;
		if (memdev_snap_init(&snap, r.init, DEV_SIZE))
			abort();
		if (run_point(&r, &snap, &cp))
			ok = -1;
		memdev_snap_fini(&snap);
	}

	struct cpoint *cps = calloc(npoints ? npoints : 1, sizeof(*cps));
	struct memdev_snap snap;
	if (!cps || memdev_snap_init(&snap, r.init, DEV_SIZE))
		abort();
	make_points(&r, cps, npoints);
	for (uint32_t i = 0; i < npoints && r.failures < MAXFAIL; i++) {
		if (only >= 0 && cps[i].idx != (uint32_t)only)
			continue;
		if (run_point(&r, &snap, &cps[i]))
			ok = -1;
	}
	memdev_snap_fini(&snap);
	free(cps);
	clock_gettime(CLOCK_MONOTONIC, &t2);
	fprintf(stderr,
		"seed %" PRIu64 " (%s): %u ops, %u syncs, %u objects, log %zu entries (%" PRIu64
		" flushes, %zu KiB); workload %.2fs; %" PRIu64 " crash points (%" PRIu64 " ro, %" PRIu64
		" rw, %" PRIu64 " reopened, %" PRIu64 " torn, %" PRIu64 " garbage) in %.2fs%s\n",
		seed, r.inline_io ? "inline" : "threaded", r.m.op, r.m.nsync, r.m.nobj, r.rec.nlog,
		r.rec.nflushes_logged, r.rec.log_bytes >> 10,
		(double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9, r.points_run,
		r.opens_ro, r.opens_rw, r.reopens, r.torn, r.garbage,
		(double)(t2.tv_sec - t1.tv_sec) + (double)(t2.tv_nsec - t1.tv_nsec) / 1e9,
		r.failures >= MAXFAIL ? " (stopped after too many failures)" : "");
	if (ok)
		fprintf(stderr, "reproduce: HOARD_CRASH_SEED=%" PRIu64 " [HOARD_CRASH_ONLY=<crash #>] %s\n",
			seed, "(inline seeds replay exactly)");
out:
	if (r.c)
		hoard_close(r.c);
	for (uint32_t i = 0; i < r.m.nobj; i++) {
		struct mobj *o = &r.m.objs[i];
		free(o->exists.e);
		free(o->coh.e);
		for (uint32_t b = 0; b < MAXB; b++)
			free(o->blk[b].e);
		for (uint32_t k = 0; k < NMETA; k++)
			free(o->meta[k].e);
	}
	free(r.m.objs);
	free(r.m.opstart);
	free(r.m.sync_op);
	free(r.m.sync_pos);
	free(r.init);
	memdev_fini(&r.rec);
	return ok;
}

int main(void)
{
	uint64_t total = env_u64("HOARD_CRASH_POINTS", 10000);
	uint32_t nops = (uint32_t)env_u64("HOARD_CRASH_OPS", 400);
	const char *one = getenv("HOARD_CRASH_SEED");
	long only = getenv("HOARD_CRASH_ONLY") ? atol(getenv("HOARD_CRASH_ONLY")) : -1;
	uint64_t seeds[] = { 1, 2, 3, 4, 5, 6 };
	uint32_t nseeds = sizeof(seeds) / sizeof(seeds[0]);
	if (one && *one) {
		seeds[0] = strtoull(one, NULL, 0);
		nseeds = 1;
	}
	/* at least 8 crash points per log entry would be wasteful; spread */
	uint32_t per = (uint32_t)((total + nseeds - 1) / nseeds);
	int fails = 0;
	for (uint32_t i = 0; i < nseeds; i++)
		if (run_seed(seeds[i], per, nops, only))
			fails++;
	if (fails || fail_count) {
		fprintf(stderr, "crash_engine: FAIL (%d seeds failed, %d failures)\n", fails, fail_count);
		return 1;
	}
	fprintf(stderr, "crash_engine: PASS\n");
	return 0;
}
