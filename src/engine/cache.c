/*
 * cache.c - libhoard's public API (hoard.h): volumes, objects, data blocks
 * in a ring of buckets, metadata records, the request pool, the index
 * worker and group commit.
 *
 * Owns: the engine lock, the data area (buckets and their generations),
 * the meaning of every B+tree record (format.h, HK_*).  Does not own:
 * journaling (page.c), the tree's nodes (btree.c), the device (dev ops).
 *
 * Data path.  A write takes the engine lock only to allocate device blocks
 * from the current bucket, then writes with no lock held; its completion
 * is queued to the index worker, which records the block pointers under
 * the lock.  A read takes the lock to turn (object, offset) into device
 * blocks, then reads with no lock held and verifies every block's crc32c
 * on the completion thread (large reads: on a verifier thread, one per
 * CPU, so that checking is not capped at one core).  Completion callbacks
 * never take the engine
 * lock: a thread holding it may be waiting for a metadata read that only
 * the completion thread can finish.
 *
 * Invariants:
 *  C1  A block pointer is trusted only if its chunk's obj_gen equals the
 *      object's gen (invalidation is one generation bump: O(1)), its
 *      bucket's generation equals the pointer's gen (reclaiming a bucket is
 *      one generation bump), and the data read matches its crc32c.
 *  C2  A bucket's generation bump is committed (durable) before any new
 *      data is written into it (open_bucket), so after a crash no old
 *      pointer can name new data with a matching generation.
 *  C3  Block pointers are recorded only after their data write completed;
 *      page.c flushes the device before journaling them (page.c I4).
 *  C4  Every multi-page change is made under the engine lock, and commits
 *      take the lock (page.h): a commit never sees half an operation.
 *  C5  Completion callbacks and user callbacks run without the engine lock.
 *      Metadata I/O goes through the device's sync_io, which does not
 *      depend on the data completion thread, so a user callback may call
 *      back into the engine (bench/engine_bench resubmits from its
 *      callbacks): the lock holder's page reads still complete.  With a
 *      device that has no sync_io (the tests' memdev), callbacks must not
 *      wait for the engine lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "btree.h"
#include "crc32c.h"
#include "page.h"

#define HREQ_MAX_BLOCKS 256u /* 1 MiB per request */
#define HREQ_IOS 32u
#define HREQ_POOL 256u
#define NO_BUCKET UINT64_MAX
#define ATIME_GRAIN 3600u
#define META_KINDS 16u
#define PURGE_Q 1024u
#define HVERIFY_MAX 4         /* verifier threads (at most one per CPU) */
#define HVERIFY_INLINE 16u    /* reads of up to 64 KiB: checked and called
				 back on the completion thread (a hop to a
				 verifier costs more than the check) */

struct hreq {
	struct hoard_cache *c;
	int write;
	uint64_t objid;
	uint32_t gen;
	uint64_t off;
	size_t len;
	uint8_t *buf;
	hoard_done_fn done;
	void *arg;
	uint32_t nblk;
	uint32_t next;           /* next block to submit */
	atomic_int pending;      /* ios in flight in this batch */
	atomic_int err;
	int res;                 /* index result, set by the worker */
	uint64_t blk[HREQ_MAX_BLOCKS];
	uint32_t csum[HREQ_MAX_BLOCKS];
	uint16_t blen[HREQ_MAX_BLOCKS];
	uint16_t bgen[HREQ_MAX_BLOCKS];
	struct hoard_io ios[HREQ_IOS];
	struct hreq *qnext;
};

struct hoard_cache {
	pthread_mutex_t lock;     /* the engine lock: ps, bt, ring fields */
	struct hpage_store *ps;
	struct hbt bt;            /* root/height mirrored into the root page */
	const struct hoard_dev_ops *ops;
	struct hoard_dev *dev;
	const struct hoard_sb *sb;
	int read_only, no_reclaim;
	uint64_t cur_bucket;      /* ring count of the bucket being filled */
	uint32_t cur_used;        /* blocks used in it */

	pthread_mutex_t pool_lock; /* free_reqs, nfree, inflight */
	pthread_cond_t pool_cv;
	struct hreq *free_reqs;
	struct hreq *reqs;
	unsigned inflight;

	pthread_mutex_t v_lock;   /* v_head, v_tail, v_stop */
	pthread_cond_t v_cv;
	struct hreq *v_head, *v_tail;
	int v_stop;
	pthread_t verifiers[HVERIFY_MAX];
	int nverifiers;

	pthread_mutex_t q_lock;   /* q_head, q_tail, stop, purge queue, kick */
	pthread_cond_t q_cv;
	struct hreq *q_head, *q_tail;
	uint64_t purge[PURGE_Q];
	unsigned npurge;
	int stop, kick;
	pthread_t worker;
	int worker_started;
	uint32_t commit_ms;
	uint64_t mem_fixed;

	atomic_uint_fast64_t hits, misses, bytes_read, bytes_written;
	atomic_uint_fast64_t csum_errors, io_errors, raced;
};

/* ---- helpers ----------------------------------------------------------- */

static uint64_t hash64(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	h ^= h >> 29;
	h *= 0xbf58476d1ce4e5b9ULL;
	return h ^ (h >> 32);
}

static struct hbt_key mkkey(uint8_t type, uint32_t a, uint64_t b, uint64_t c)
{
	struct hbt_key k;
	memset(&k, 0, sizeof(k));
	k.type = type;
	k.a = a;
	k.b = b;
	k.c = c;
	return k;
}

/* After any tree change: mirror root/height into the root page. */
static int sync_root(struct hoard_cache *c)
{
	struct hroot *root = hps_root(c->ps);
	if (root->bt_root == c->bt.root && root->bt_height == c->bt.height)
		return 0;
	int r = hps_dirty_root(c->ps);
	if (r == 0) {
		root->bt_root = c->bt.root;
		root->bt_height = c->bt.height;
	}
	return r;
}

static int tput(struct hoard_cache *c, const struct hbt_key *k, const void *v, size_t n)
{
	if (c->read_only || hps_is_read_only(c->ps))
		return -EROFS;
	int r = hbt_put(&c->bt, k, v, n);
	int r2 = sync_root(c);
	return r < 0 ? r : r2;
}

static int tdel(struct hoard_cache *c, const struct hbt_key *k)
{
	if (c->read_only || hps_is_read_only(c->ps))
		return -EROFS;
	int r = hbt_del(&c->bt, k);
	int r2 = sync_root(c);
	return r < 0 ? r : r2;
}

static int tget(struct hoard_cache *c, const struct hbt_key *k, void *v, size_t cap)
{
	if (c->bt.height == 0)
		return -ENOENT;
	return hbt_get(&c->bt, k, v, cap);
}

static int tseek(struct hoard_cache *c, const struct hbt_key *k, int after,
		 struct hbt_key *found, void *v, size_t cap)
{
	if (c->bt.height == 0)
		return -ENOENT;
	int r = hbt_seek(&c->bt, k, after, found, v, cap);
	/* A damaged tree may answer with a key before the one asked for:
	 * every walk here relies on keys moving forward to end. */
	if (r >= 0) {
		int cmp = hbt_key_cmp(found, k);
		if (cmp < 0 || (after && cmp == 0))
			return -EUCLEAN;
	}
	return r;
}

/* Commit if the page store asks for it (page.c I5).  Engine lock held. */
static int maybe_commit(struct hoard_cache *c)
{
	if (!c->read_only && hps_need_commit(c->ps))
		return hps_commit(c->ps);
	return 0;
}

static int root_dirty(struct hoard_cache *c, struct hroot **rootp)
{
	int r = hps_dirty_root(c->ps);
	*rootp = hps_root(c->ps);
	return r;
}

/* ---- bucket generations ------------------------------------------------- */

static int bucket_gen(struct hoard_cache *c, uint64_t bucket, uint16_t *gen, int bump)
{
	struct hroot *root = hps_root(c->ps);
	struct hpage *pg;
	int r = hps_get(c->ps, root->gens_start + bucket / HGENS_PER_PAGE, &pg);
	if (r < 0)
		return r;
	uint16_t *g = (uint16_t *)hps_body(pg) + bucket % HGENS_PER_PAGE;
	if (bump) {
		r = hps_dirty(c->ps, pg);
		if (r == 0)
			(*g)++;
	}
	*gen = *g;
	hps_put(c->ps, pg);
	return r;
}

/* Start filling the next bucket of the ring, reclaiming the oldest one if
 * the ring is full (C2).  Engine lock held. */
static int open_bucket(struct hoard_cache *c)
{
	struct hroot *root;
	int r = root_dirty(c, &root);
	if (r < 0)
		return r;
	int reclaimed = 0;
	if (root->ring_head - root->ring_tail >= c->sb->nbuckets) {
		if (c->no_reclaim)
			return -ENOSPC;
		uint16_t g;
		r = bucket_gen(c, root->ring_tail % c->sb->nbuckets, &g, 1);
		if (r < 0)
			return r;
		root->ring_tail++;
		root->reclaimed++;
		reclaimed = 1;
	}
	c->cur_bucket = root->ring_head++;
	c->cur_used = 0;
	if (reclaimed) /* C2: durable before the bucket is reused */
		r = hps_commit(c->ps);
	return r;
}

/* ---- objects ------------------------------------------------------------- */

/* Object records are stored packed: the fixed header, then key_len key
 * bytes, then coh_len coherency bytes (struct hobj is the unpacked form). */
#define HOBJ_HDR offsetof(struct hobj, key)

static int obj_load(struct hoard_cache *c, uint64_t id, struct hobj *o)
{
	uint8_t buf[sizeof(struct hobj)];
	struct hbt_key k = mkkey(HK_OBJ, 0, id, 0);
	int r = tget(c, &k, buf, sizeof(buf));
	if (r < 0)
		return r;
	if (r < (int)HOBJ_HDR || r > (int)sizeof(buf))
		return -EIO;
	memset(o, 0, sizeof(*o));
	memcpy(o, buf, HOBJ_HDR);
	if (o->key_len > HOARD_KEY_MAX || o->coh_len > HOARD_COH_MAX ||
	    (size_t)r != HOBJ_HDR + o->key_len + o->coh_len)
		return -EIO;
	memcpy(o->key, buf + HOBJ_HDR, o->key_len);
	memcpy(o->coh, buf + HOBJ_HDR + o->key_len, o->coh_len);
	return 0;
}

static int obj_store(struct hoard_cache *c, uint64_t id, const struct hobj *o)
{
	uint8_t buf[sizeof(struct hobj)];
	struct hbt_key k = mkkey(HK_OBJ, 0, id, 0);
	memcpy(buf, o, HOBJ_HDR);
	memcpy(buf + HOBJ_HDR, o->key, o->key_len);
	memcpy(buf + HOBJ_HDR + o->key_len, o->coh, o->coh_len);
	return tput(c, &k, buf, HOBJ_HDR + o->key_len + o->coh_len);
}

static void fill_info(uint64_t id, const struct hobj *o, struct hoard_obj_info *info)
{
	if (!info)
		return;
	memset(info, 0, sizeof(*info));
	info->id = id;
	info->vol = o->vol;
	info->gen = o->gen;
	info->key_len = o->key_len;
	info->coh_len = o->coh_len;
	memcpy(info->key, o->key, o->key_len);
	memcpy(info->coh, o->coh, o->coh_len);
	info->atime = o->atime;
}

/* Object ids are hashes of (volume, key), so a lookup by key is one tree
 * descent: the object is the record in [h, h + ID_WINDOW) whose volume and
 * key match (a collision takes the next free id in the window).  Ids of
 * removed objects may come back; their stale chunks never match, because
 * every new object takes a generation never used before (C1). */
#define ID_WINDOW 64u

static uint64_t obj_hash(uint32_t vol, const void *key, size_t key_len)
{
	uint64_t h = hash64(key, key_len) ^ ((uint64_t)vol * 0x9E3779B97F4A7C15ULL);
	h ^= h >> 31;
	return (h & (UINT64_MAX >> 2)) | 1; /* never 0, never near the top */
}

/* Find the object; else -ENOENT with a free id for it in *freep. */
static int find_obj(struct hoard_cache *c, uint32_t vol, const void *key, size_t key_len,
		    uint64_t *idp, struct hobj *o, uint64_t *freep)
{
	uint64_t h = obj_hash(vol, key, key_len), expect = h;
	struct hbt_key k = mkkey(HK_OBJ, 0, h, 0), f;
	int after = 0;
	if (freep)
		*freep = 0;
	for (;;) {
		int r = tseek(c, &k, after, &f, NULL, 0);
		if (r < 0 && r != -ENOENT)
			return r;
		if (r == -ENOENT || f.type != HK_OBJ || f.b >= h + ID_WINDOW)
			break;
		if (freep && !*freep && f.b != expect)
			*freep = expect;
		expect = f.b + 1;
		r = obj_load(c, f.b, o);
		if (r == 0 && o->vol == vol && o->key_len == key_len &&
		    memcmp(o->key, key, key_len) == 0) {
			*idp = f.b;
			return 0;
		}
		if (r < 0 && r != -ENOENT && r != -EIO)
			return r;
		k = f;
		after = 1;
	}
	if (freep && !*freep && expect < h + ID_WINDOW)
		*freep = expect;
	return -ENOENT;
}

static uint64_t now_s(void)
{
	return (uint64_t)time(NULL);
}

int hoard_vol_open(struct hoard_cache *c, const void *name, size_t len, int create,
		   uint32_t *volp)
{
	if (!len || len > HOARD_VOLNAME_MAX)
		return -EINVAL;
	uint64_t h = hash64(name, len);
	struct hbt_key k = mkkey(HK_VOL, 0, h, 0), f;
	uint8_t buf[HOARD_VOLNAME_MAX];
	int r, after = 0;
	pthread_mutex_lock(&c->lock);
	for (;;) {
		r = tseek(c, &k, after, &f, buf, sizeof(buf));
		if (r < 0 && r != -ENOENT)
			goto out;
		if (r < 0 || f.type != HK_VOL || f.b != h)
			break;
		if ((size_t)r == len && memcmp(buf, name, len) == 0) {
			*volp = (uint32_t)f.c;
			r = 0;
			goto out;
		}
		k = f;
		after = 1;
	}
	r = -ENOENT;
	if (!create)
		goto out;
	struct hroot *root;
	r = root_dirty(c, &root);
	if (r < 0)
		goto out;
	uint32_t vol = root->next_vol++;
	root->nvolumes++;
	k = mkkey(HK_VOL, 0, h, vol);
	r = tput(c, &k, name, len);
	if (r == 0) {
		*volp = vol;
		r = maybe_commit(c);
	}
out:
	pthread_mutex_unlock(&c->lock);
	return r;
}

static int lookup_locked(struct hoard_cache *c, uint32_t vol, const void *key, size_t key_len,
			 uint64_t *idp, struct hobj *o, uint64_t *freep)
{
	int r = find_obj(c, vol, key, key_len, idp, o, freep);
	if (r == 0 && !c->read_only && !hps_is_read_only(c->ps) &&
	    now_s() > o->atime + ATIME_GRAIN) { /* eviction hint, coarse like relatime */
		o->atime = now_s();
		r = obj_store(c, *idp, o);
	}
	return r;
}

int hoard_obj_lookup(struct hoard_cache *c, uint32_t vol, const void *key, size_t key_len,
		     struct hoard_obj_info *info)
{
	struct hobj o;
	uint64_t id;
	if (!key_len || key_len > HOARD_KEY_MAX)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	int r = lookup_locked(c, vol, key, key_len, &id, &o, NULL);
	if (r == 0)
		fill_info(id, &o, info);
	if (r == 0)
		r = maybe_commit(c);
	pthread_mutex_unlock(&c->lock);
	return r;
}

/* Store @coh in @o if it differs from what @o holds: 1 if it did. */
static int coh_replace(struct hobj *o, const void *coh, size_t coh_len)
{
	if (o->coh_len == coh_len && memcmp(o->coh, coh, coh_len) == 0)
		return 0;
	o->coh_len = (uint16_t)coh_len;
	memset(o->coh, 0, sizeof(o->coh));
	memcpy(o->coh, coh, coh_len);
	return 1;
}

static void queue_purge(struct hoard_cache *c, uint64_t id)
{
	pthread_mutex_lock(&c->q_lock);
	if (c->npurge < PURGE_Q)
		c->purge[c->npurge++] = id; /* full: left for a later sweep */
	pthread_mutex_unlock(&c->q_lock);
}

/* Invalidate: one generation bump (C1).  Engine lock held. */
static int invalidate_locked(struct hoard_cache *c, uint64_t id, struct hobj *o)
{
	struct hroot *root;
	int r = root_dirty(c, &root);
	if (r < 0)
		return r;
	o->gen = (uint32_t)root->next_objid++; /* never used before: C1 */
	r = obj_store(c, id, o);
	if (r == 0)
		queue_purge(c, id);
	return r;
}

int hoard_obj_acquire(struct hoard_cache *c, uint32_t vol, const void *key, size_t key_len,
		      const void *coh, size_t coh_len, struct hoard_obj_info *info)
{
	struct hobj o;
	uint64_t id;
	int changed = 0;
	if (!key_len || key_len > HOARD_KEY_MAX || coh_len > HOARD_COH_MAX)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	uint64_t free_id;
	int r = lookup_locked(c, vol, key, key_len, &id, &o, &free_id);
	if (r == -ENOENT) {
		struct hroot *root;
		if (!free_id) { /* 64 colliding 62-bit hashes: not in this universe */
			r = -ENOSPC;
			goto out;
		}
		r = root_dirty(c, &root);
		if (r < 0)
			goto out;
		id = free_id;
		root->nobjects++;
		memset(&o, 0, sizeof(o));
		o.vol = vol;
		o.gen = (uint32_t)root->next_objid++; /* a generation never used (C1) */
		o.key_len = (uint16_t)key_len;
		o.coh_len = (uint16_t)coh_len;
		o.atime = now_s();
		memcpy(o.key, key, key_len);
		memcpy(o.coh, coh, coh_len);
		r = obj_store(c, id, &o);
	} else if (r == 0 && coh_replace(&o, coh, coh_len)) {
		r = invalidate_locked(c, id, &o);
		changed = 1;
	}
	if (r == 0) {
		fill_info(id, &o, info);
		r = maybe_commit(c);
	}
out:
	pthread_mutex_unlock(&c->lock);
	return r < 0 ? r : changed;
}

int hoard_obj_get(struct hoard_cache *c, uint64_t id, struct hoard_obj_info *info)
{
	struct hobj o;
	pthread_mutex_lock(&c->lock);
	int r = obj_load(c, id, &o);
	if (r == 0)
		fill_info(id, &o, info);
	pthread_mutex_unlock(&c->lock);
	return r;
}

int hoard_obj_check(struct hoard_cache *c, uint64_t id, const void *coh, size_t coh_len)
{
	struct hobj o;
	if (coh_len > HOARD_COH_MAX)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	int r = obj_load(c, id, &o);
	if (r == 0 && coh_replace(&o, coh, coh_len)) {
		r = invalidate_locked(c, id, &o);
		if (r == 0)
			r = 1;
	}
	if (r >= 0) {
		int r2 = maybe_commit(c);
		if (r2 < 0)
			r = r2;
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

int hoard_obj_set_coherency(struct hoard_cache *c, uint64_t id, const void *coh, size_t coh_len)
{
	struct hobj o;
	if (coh_len > HOARD_COH_MAX)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	int r = obj_load(c, id, &o);
	if (r == 0 && coh_replace(&o, coh, coh_len)) {
		r = obj_store(c, id, &o);
		if (r == 0)
			r = maybe_commit(c);
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

int hoard_obj_punch(struct hoard_cache *c, uint64_t id, uint64_t off, uint64_t len)
{
	struct hobj o;
	struct hchunk ch;
	if (len == 0)
		return 0;
	if (off + len < off)
		return -EINVAL;
	uint64_t fb = off / HBLK, lb = (off + len - 1) / HBLK; /* blocks fb..lb */
	pthread_mutex_lock(&c->lock);
	int r = obj_load(c, id, &o);
	for (uint64_t chunk = fb / HCHUNK_BLOCKS; r == 0 && chunk <= lb / HCHUNK_BLOCKS; chunk++) {
		struct hbt_key k = mkkey(HK_CHUNK, 0, id, chunk), f;
		/* skip to the next chunk that exists: a punch of a huge hole
		 * costs what is cached in it, not its length */
		r = tseek(c, &k, 0, &f, &ch, sizeof(ch));
		if (r == -ENOENT || (r >= 0 && (f.type != HK_CHUNK || f.b != id || f.c > lb / HCHUNK_BLOCKS))) {
			r = 0;
			break;
		}
		if (r < 0)
			break;
		if (f.a != 0 || f.c < chunk) {
			r = -EUCLEAN; /* not a chunk key we wrote: damaged */
			break;
		}
		chunk = f.c;
		k = f;
		if (r != (int)sizeof(ch) || ch.obj_gen != o.gen) {
			r = tdel(c, &k); /* stale or damaged: all of it goes */
			continue;
		}
		int left = 0;
		for (uint32_t i = 0; i < HCHUNK_BLOCKS; i++) {
			uint64_t b = chunk * HCHUNK_BLOCKS + i;
			if (b >= fb && b <= lb)
				memset(&ch.b[i], 0, sizeof(ch.b[i]));
			left += ch.b[i].len != 0;
		}
		r = left ? tput(c, &k, &ch, sizeof(ch)) : tdel(c, &k);
		if (r == 0)
			r = maybe_commit(c);
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

int hoard_obj_invalidate(struct hoard_cache *c, uint64_t id)
{
	struct hobj o;
	pthread_mutex_lock(&c->lock);
	int r = obj_load(c, id, &o);
	if (r == 0)
		r = invalidate_locked(c, id, &o);
	if (r == 0)
		r = maybe_commit(c);
	pthread_mutex_unlock(&c->lock);
	return r;
}

/* Delete every record of type @type with a == @a and b == @id whose
 * position c >= @from (for chunks: also clear the partial first chunk
 * when @first_blk is set).  Commits between batches when asked to; the
 * caller has made the change that matters atomic already.  Lock held. */
static int delete_range(struct hoard_cache *c, uint8_t type, uint32_t a, uint64_t id,
			uint64_t from, int only_stale, uint32_t gen)
{
	struct hbt_key k = mkkey(type, a, id, from), f;
	uint32_t g;
	int r, after = 0;
	for (;;) {
		r = tseek(c, &k, after, &f, &g, sizeof(g));
		if (r == -ENOENT)
			return 0;
		if (r < 0)
			return r;
		if (f.type != type || f.a != a || f.b != id)
			return 0;
		if (!only_stale || r < (int)sizeof(g) || g != gen) {
			r = tdel(c, &f);
			if (r < 0)
				return r;
			r = maybe_commit(c);
			if (r < 0)
				return r;
		}
		k = f;
		after = 1;
	}
}

static int purge_locked(struct hoard_cache *c, uint64_t id, int all, uint32_t gen)
{
	int r = delete_range(c, HK_CHUNK, 0, id, 0, !all, gen);
	for (uint32_t kind = 1; r == 0 && kind < META_KINDS; kind++)
		r = delete_range(c, HK_META, kind, id, 0, !all, gen);
	return r;
}

int hoard_obj_remove(struct hoard_cache *c, uint64_t id)
{
	struct hobj o;
	pthread_mutex_lock(&c->lock);
	int r = obj_load(c, id, &o);
	if (r < 0)
		goto out;
	struct hbt_key k = mkkey(HK_OBJ, 0, id, 0);
	r = tdel(c, &k);
	if (r == 0) {
		struct hroot *root;
		r = root_dirty(c, &root);
		if (r == 0 && root->nobjects)
			root->nobjects--;
	}
	/* the object is gone in this transaction; its blocks and records
	 * are garbage from here on and may be dropped over several commits */
	if (r == 0)
		r = purge_locked(c, id, 1, 0);
	if (r == 0)
		r = maybe_commit(c);
out:
	pthread_mutex_unlock(&c->lock);
	return r;
}

int hoard_obj_truncate(struct hoard_cache *c, uint64_t id, uint64_t from)
{
	struct hobj o;
	struct hchunk ch;
	uint64_t fb = from / HBLK; /* the block holding `from` goes too */
	pthread_mutex_lock(&c->lock);
	int r = obj_load(c, id, &o);
	if (r < 0)
		goto out;
	struct hbt_key k = mkkey(HK_CHUNK, 0, id, fb / HCHUNK_BLOCKS);
	r = tget(c, &k, &ch, sizeof(ch));
	if (r == (int)sizeof(ch) && fb % HCHUNK_BLOCKS) {
		for (uint32_t i = fb % HCHUNK_BLOCKS; i < HCHUNK_BLOCKS; i++)
			memset(&ch.b[i], 0, sizeof(ch.b[i]));
		r = tput(c, &k, &ch, sizeof(ch));
		if (r == 0)
			r = delete_range(c, HK_CHUNK, 0, id, fb / HCHUNK_BLOCKS + 1, 0, 0);
	} else if (r >= 0 || r == -ENOENT) {
		r = delete_range(c, HK_CHUNK, 0, id, fb / HCHUNK_BLOCKS, 0, 0);
	}
	if (r == 0)
		r = maybe_commit(c);
out:
	pthread_mutex_unlock(&c->lock);
	return r;
}

#define ITER_BATCH 64

int hoard_obj_iterate(struct hoard_cache *c, uint32_t vol, hoard_obj_iter_fn fn, void *arg)
{
	struct hoard_obj_info *batch = malloc(ITER_BATCH * sizeof(*batch));
	struct hbt_key k = mkkey(HK_OBJ, 0, 0, 0), f;
	struct hobj o;
	int r = 0, after = 0, done = 0;
	if (!batch)
		return -ENOMEM;
	while (!done && r == 0) {
		int n = 0;
		pthread_mutex_lock(&c->lock);
		while (n < ITER_BATCH) {
			r = tseek(c, &k, after, &f, NULL, 0);
			if (r < 0 || f.type != HK_OBJ) {
				r = r == -ENOENT || r >= 0 ? 0 : r;
				done = 1;
				break;
			}
			k = f;
			after = 1;
			r = obj_load(c, f.b, &o);
			if (r < 0) { /* damaged record: skipped (fsck reports it) */
				r = 0;
				continue;
			}
			if (vol == 0 || o.vol == vol)
				fill_info(f.b, &o, &batch[n++]);
		}
		pthread_mutex_unlock(&c->lock);
		for (int i = 0; i < n && r == 0; i++)
			r = fn(&batch[i], arg);
	}
	free(batch);
	return r;
}

/* ---- metadata records ------------------------------------------------------ */

int hoard_meta_put(struct hoard_cache *c, uint64_t id, uint32_t kind, uint64_t rid,
		   const void *val, size_t len)
{
	uint8_t buf[4 + HOARD_META_MAX];
	struct hobj o;
	if (len > HOARD_META_MAX || kind == 0 || kind >= META_KINDS)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	int r = obj_load(c, id, &o);
	if (r == 0) {
		memcpy(buf, &o.gen, 4);
		memcpy(buf + 4, val, len);
		struct hbt_key k = mkkey(HK_META, kind, id, rid);
		r = tput(c, &k, buf, 4 + len);
	}
	if (r == 0)
		r = maybe_commit(c);
	pthread_mutex_unlock(&c->lock);
	return r;
}

int hoard_meta_get(struct hoard_cache *c, uint64_t id, uint32_t kind, uint64_t rid,
		   void *val, size_t len)
{
	uint8_t buf[4 + HOARD_META_MAX];
	struct hobj o;
	if (kind == 0 || kind >= META_KINDS)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	int r = obj_load(c, id, &o);
	if (r == 0) {
		struct hbt_key k = mkkey(HK_META, kind, id, rid);
		r = tget(c, &k, buf, sizeof(buf));
		if (r >= 0 && (r < 4 || r > (int)sizeof(buf) || memcmp(buf, &o.gen, 4)))
			r = -ENOENT; /* stale: dropped by an invalidation (C1) */
		if (r >= 0) {
			r -= 4;
			memcpy(val, buf + 4, (size_t)r < len ? (size_t)r : len);
		}
	}
	pthread_mutex_unlock(&c->lock);
	return r;
}

int hoard_meta_del(struct hoard_cache *c, uint64_t id, uint32_t kind, uint64_t rid)
{
	if (kind == 0 || kind >= META_KINDS)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	struct hbt_key k = mkkey(HK_META, kind, id, rid);
	int r = tdel(c, &k);
	if (r == 0)
		r = maybe_commit(c);
	pthread_mutex_unlock(&c->lock);
	return r;
}

int hoard_meta_clear(struct hoard_cache *c, uint64_t id, uint32_t kind)
{
	if (kind >= META_KINDS)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	int r = 0;
	for (uint32_t k = kind ? kind : 1; r == 0 && k < (kind ? kind + 1 : META_KINDS); k++)
		r = delete_range(c, HK_META, k, id, 0, 0, 0);
	if (r == 0)
		r = maybe_commit(c);
	pthread_mutex_unlock(&c->lock);
	return r;
}

struct meta_item {
	uint64_t rid;
	uint32_t len;
	uint8_t val[HOARD_META_MAX];
};

int hoard_meta_iterate(struct hoard_cache *c, uint64_t id, uint32_t kind,
		       hoard_meta_iter_fn fn, void *arg)
{
	uint8_t buf[4 + HOARD_META_MAX];
	struct meta_item *batch = malloc(ITER_BATCH * sizeof(*batch));
	struct hbt_key k = mkkey(HK_META, kind, id, 0), f;
	struct hobj o;
	int r = 0, after = 0, done = 0;
	if (!batch)
		return -ENOMEM;
	if (kind == 0 || kind >= META_KINDS) {
		free(batch);
		return -EINVAL;
	}
	while (!done && r == 0) {
		int n = 0;
		pthread_mutex_lock(&c->lock);
		r = obj_load(c, id, &o);
		while (r == 0 && n < ITER_BATCH) {
			int len = tseek(c, &k, after, &f, buf, sizeof(buf));
			if (len < 0 || f.type != HK_META || f.a != kind || f.b != id) {
				r = len < 0 && len != -ENOENT ? len : 0;
				done = 1;
				break;
			}
			k = f;
			after = 1;
			if (len < 4 || len > (int)sizeof(buf) || memcmp(buf, &o.gen, 4))
				continue;
			batch[n].rid = f.c;
			batch[n].len = (uint32_t)len - 4;
			memcpy(batch[n].val, buf + 4, (size_t)len - 4);
			n++;
		}
		pthread_mutex_unlock(&c->lock);
		for (int i = 0; i < n && r == 0; i++)
			r = fn(batch[i].rid, batch[i].val, batch[i].len, arg);
	}
	free(batch);
	return r;
}

/* ---- the request pool ------------------------------------------------------ */

static struct hreq *req_get(struct hoard_cache *c)
{
	pthread_mutex_lock(&c->pool_lock);
	while (!c->free_reqs) /* bounded: waits for a request to finish */
		pthread_cond_wait(&c->pool_cv, &c->pool_lock);
	struct hreq *q = c->free_reqs;
	c->free_reqs = q->qnext;
	c->inflight++;
	pthread_mutex_unlock(&c->pool_lock);
	q->qnext = NULL;
	q->c = c;
	q->nblk = q->next = 0;
	atomic_store(&q->pending, 0);
	atomic_store(&q->err, 0);
	return q;
}

static void req_put(struct hoard_cache *c, struct hreq *q)
{
	pthread_mutex_lock(&c->pool_lock);
	q->qnext = c->free_reqs;
	c->free_reqs = q;
	c->inflight--;
	pthread_cond_broadcast(&c->pool_cv);
	pthread_mutex_unlock(&c->pool_lock);
}

static void req_finish(struct hreq *q);
static void req_submit_batch(struct hreq *q);

static void req_io_done(struct hoard_io *io, int res)
{
	struct hreq *q = io->arg;
	if (res < 0 || (size_t)res != io->len) {
		int expect = 0;
		atomic_compare_exchange_strong(&q->err, &expect, res < 0 ? res : -EIO);
	}
	if (atomic_fetch_sub(&q->pending, 1) != 1)
		return;
	if (q->next < q->nblk && atomic_load(&q->err) == 0)
		req_submit_batch(q);
	else
		req_finish(q);
}

/* Submit the next run of ios: consecutive device blocks become one io. */
static void req_submit_batch(struct hreq *q)
{
	struct hoard_cache *c = q->c;
	unsigned n = 0;
	uint32_t i = q->next;
	while (i < q->nblk && n < HREQ_IOS) {
		uint32_t j = i + 1;
		while (j < q->nblk && q->blk[j] == q->blk[j - 1] + 1)
			j++;
		q->ios[n] = (struct hoard_io){
			.op = q->write ? HOARD_IO_WRITE : HOARD_IO_READ,
			.buf = q->buf + (size_t)i * HBLK,
			.len = (size_t)(j - i) * HBLK,
			.off = q->blk[i] * HBLK,
			.done = req_io_done,
			.arg = q,
		};
		n++;
		i = j;
	}
	q->next = i;
	atomic_store(&q->pending, (int)n);
	for (unsigned k = 0; k < n; k++) {
		int r = c->ops->submit(c->dev, &q->ios[k]);
		if (r < 0) { /* count the ones never submitted as failed */
			for (unsigned m = k; m < n; m++)
				req_io_done(&q->ios[m], r);
			return;
		}
	}
}

static void read_finish(struct hreq *q)
{
	struct hoard_cache *c = q->c;
	int64_t got = 0;
	if (atomic_load(&q->err)) {
		atomic_fetch_add(&c->io_errors, 1);
	} else {
		for (uint32_t i = 0; i < q->nblk; i++) {
			const uint8_t *b = q->buf + (size_t)i * HBLK;
			if (hoard_crc32c(0, b, q->blen[i]) != q->csum[i]) {
				atomic_fetch_add(&c->csum_errors, 1); /* C1: a miss, never bad bytes */
				break;
			}
			got += q->blen[i];
		}
	}
	if (got > (int64_t)q->len)
		got = (int64_t)q->len;
	atomic_fetch_add(&c->bytes_read, (uint64_t)got);
	hoard_done_fn done = q->done;
	void *arg = q->arg;
	req_put(c, q);
	done(arg, got);
}

/* Verifier threads: checking a large read's blocks (memory-bound, ~0.3 ms
 * per MiB of freshly read data) on the one completion thread would cap
 * cached reads at one core's speed. */
static void *verifier_main(void *arg)
{
	struct hoard_cache *c = arg;
	pthread_mutex_lock(&c->v_lock);
	for (;;) {
		while (!c->v_head && !c->v_stop)
			pthread_cond_wait(&c->v_cv, &c->v_lock);
		struct hreq *q = c->v_head;
		if (!q)
			break;
		c->v_head = q->qnext;
		if (!c->v_head)
			c->v_tail = NULL;
		pthread_mutex_unlock(&c->v_lock);
		q->qnext = NULL;
		read_finish(q);
		pthread_mutex_lock(&c->v_lock);
	}
	pthread_mutex_unlock(&c->v_lock);
	return NULL;
}

static void req_finish(struct hreq *q)
{
	struct hoard_cache *c = q->c;
	if (!q->write) {
		if (q->nblk <= HVERIFY_INLINE || !c->nverifiers) {
			read_finish(q);
			return;
		}
		pthread_mutex_lock(&c->v_lock);
		if (c->v_tail)
			c->v_tail->qnext = q;
		else
			c->v_head = q;
		c->v_tail = q;
		pthread_cond_signal(&c->v_cv);
		pthread_mutex_unlock(&c->v_lock);
		return;
	}
	/* C5: the index update needs the engine lock: hand it to the worker */
	pthread_mutex_lock(&c->q_lock);
	if (c->q_tail)
		c->q_tail->qnext = q;
	else
		c->q_head = q;
	c->q_tail = q;
	pthread_cond_signal(&c->q_cv);
	pthread_mutex_unlock(&c->q_lock);
}

/* Record the block pointers of a completed write (C3).  Lock held. */
static int index_write(struct hoard_cache *c, struct hreq *q)
{
	struct hobj o;
	struct hchunk ch;
	int r = obj_load(c, q->objid, &o);
	if (r < 0)
		return r;
	if (o.gen != q->gen)
		return -ESTALE; /* invalidated while the write was in flight */
	uint64_t fb = q->off / HBLK;
	uint32_t i = 0;
	while (i < q->nblk) {
		uint64_t chunk = (fb + i) / HCHUNK_BLOCKS;
		struct hbt_key k = mkkey(HK_CHUNK, 0, q->objid, chunk);
		r = tget(c, &k, &ch, sizeof(ch));
		if (r != (int)sizeof(ch) || ch.obj_gen != o.gen) {
			if (r < 0 && r != -ENOENT)
				return r;
			memset(&ch, 0, sizeof(ch));
			ch.obj_gen = o.gen;
		}
		for (; i < q->nblk && (fb + i) / HCHUNK_BLOCKS == chunk; i++) {
			struct hblkptr *p = &ch.b[(fb + i) % HCHUNK_BLOCKS];
			p->blk = q->blk[i];
			p->csum = q->csum[i];
			p->len = q->blen[i];
			p->gen = q->bgen[i];
		}
		r = tput(c, &k, &ch, sizeof(ch));
		if (r < 0)
			return r;
	}
	return maybe_commit(c);
}

static void write_finish(struct hoard_cache *c, struct hreq *q, int r)
{
	if (r == 0)
		atomic_fetch_add(&c->bytes_written, q->len);
	hoard_done_fn done = q->done;
	void *arg = q->arg;
	size_t len = q->len;
	req_put(c, q);
	done(arg, r == 0 ? (int64_t)len : r);
}

/* ---- data -------------------------------------------------------------------- */

/* Is block pointer @p valid (C1, but for the crc)?  @memo remembers the
 * last bucket looked up: a run of blocks shares one bucket. */
struct gen_memo {
	uint64_t bucket;
	uint16_t gen;
};

static int blk_valid(struct hoard_cache *c, const struct hblkptr *p, int *ok, struct gen_memo *memo)
{
	const struct hoard_sb *sb = c->sb;
	*ok = 0;
	if (p->len == 0 || p->len > HBLK)
		return 0;
	if (p->blk < sb->data_start || p->blk >= sb->data_start + sb->nbuckets * sb->bucket_blocks)
		return 0;
	uint64_t bucket = (p->blk - sb->data_start) / sb->bucket_blocks;
	if (bucket != memo->bucket) {
		int r = bucket_gen(c, bucket, &memo->gen, 0);
		if (r < 0)
			return r;
		memo->bucket = bucket;
	}
	*ok = memo->gen == p->gen;
	return 0;
}

/* Resolve blocks of a read into q->blk.. (engine lock held). */
static int plan_read(struct hoard_cache *c, struct hreq *q, uint32_t nb)
{
	struct hobj o;
	struct hchunk ch;
	uint64_t fb = q->off / HBLK, loaded = UINT64_MAX;
	struct gen_memo memo = {UINT64_MAX, 0};
	int have = 0;
	int r = obj_load(c, q->objid, &o);
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < nb; i++) {
		uint64_t chunk = (fb + i) / HCHUNK_BLOCKS;
		if (chunk != loaded) {
			struct hbt_key k = mkkey(HK_CHUNK, 0, q->objid, chunk);
			r = tget(c, &k, &ch, sizeof(ch));
			if (r < 0 && r != -ENOENT)
				return r;
			have = r == (int)sizeof(ch) && ch.obj_gen == o.gen;
			loaded = chunk;
		}
		if (!have)
			break;
		const struct hblkptr *p = &ch.b[(fb + i) % HCHUNK_BLOCKS];
		int ok;
		r = blk_valid(c, p, &ok, &memo);
		if (r < 0)
			return r;
		if (!ok)
			break;
		q->blk[i] = p->blk;
		q->csum[i] = p->csum;
		q->blen[i] = p->len;
		q->nblk = i + 1;
		if (p->len < HBLK) /* a short block ends the file */
			break;
	}
	return 0;
}

/* A read request for blocks of @id at @off, planned (which blocks are
 * present, where) and counted; NULL with *err on failure. */
static struct hreq *read_plan(struct hoard_cache *c, uint64_t id, uint64_t off,
			      size_t len, void *buf, int *err)
{
	uint32_t nb = (uint32_t)((len + HBLK - 1) / HBLK);
	struct hreq *q = req_get(c);
	q->write = 0;
	q->objid = id;
	q->off = off;
	q->len = len;
	q->buf = buf;
	pthread_mutex_lock(&c->lock);
	int r = plan_read(c, q, nb);
	pthread_mutex_unlock(&c->lock);
	if (r < 0) {
		req_put(c, q);
		*err = r;
		return NULL;
	}
	atomic_fetch_add(&c->hits, q->nblk);
	atomic_fetch_add(&c->misses, nb - q->nblk);
	return q;
}

int hoard_read(struct hoard_cache *c, uint64_t id, uint64_t off, size_t len, void *buf,
	       hoard_done_fn done, void *arg)
{
	if (off % HBLK || len == 0 || len > HREQ_MAX_BLOCKS * HBLK || ((uintptr_t)buf % HBLK))
		return -EINVAL;
	int r = 0;
	struct hreq *q = read_plan(c, id, off, len, buf, &r);
	if (!q)
		return r;
	q->done = done;
	q->arg = arg;
	if (q->nblk == 0) {
		req_put(c, q);
		done(arg, 0);
		return 0;
	}
	req_submit_batch(q);
	return 0;
}

int hoard_write(struct hoard_cache *c, uint64_t id, uint64_t off, size_t len, const void *buf,
		hoard_done_fn done, void *arg)
{
	if (off % HBLK || len == 0 || len > HREQ_MAX_BLOCKS * HBLK || ((uintptr_t)buf % HBLK))
		return -EINVAL;
	if (c->read_only)
		return -EROFS;
	uint32_t nb = (uint32_t)((len + HBLK - 1) / HBLK);
	struct hreq *q = req_get(c);
	struct hobj o;
	q->write = 1;
	q->objid = id;
	q->off = off;
	q->len = len;
	q->buf = (uint8_t *)buf;
	q->done = done;
	q->arg = arg;
	q->nblk = nb;
	for (uint32_t i = 0; i < nb; i++) {
		size_t bl = i + 1 < nb ? HBLK : len - (size_t)i * HBLK;
		q->blen[i] = (uint16_t)bl;
		q->csum[i] = hoard_crc32c(0, q->buf + (size_t)i * HBLK, bl);
	}
	pthread_mutex_lock(&c->lock);
	int r = hps_is_read_only(c->ps) ? -EROFS : obj_load(c, id, &o);
	for (uint32_t i = 0; r == 0 && i < nb; i++) {
		if (c->cur_bucket == NO_BUCKET || c->cur_used >= c->sb->bucket_blocks)
			r = open_bucket(c);
		if (r < 0)
			break;
		uint64_t b = c->cur_bucket % c->sb->nbuckets;
		r = bucket_gen(c, b, &q->bgen[i], 0);
		q->blk[i] = c->sb->data_start + b * c->sb->bucket_blocks + c->cur_used++;
	}
	if (r == 0)
		q->gen = o.gen;
	pthread_mutex_unlock(&c->lock);
	if (r < 0) {
		req_put(c, q);
		return r;
	}
	req_submit_batch(q);
	return 0;
}

struct sync_wait {
	pthread_mutex_t m;
	pthread_cond_t cv;
	int done;
	int64_t res;
};

static void sync_done(void *arg, int64_t res)
{
	struct sync_wait *w = arg;
	pthread_mutex_lock(&w->m);
	w->res = res;
	w->done = 1;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->m);
}

static int64_t sync_call(struct hoard_cache *c, int write, uint64_t id, uint64_t off,
			 size_t len, void *buf)
{
	struct sync_wait w = {.done = 0};
	pthread_mutex_init(&w.m, NULL);
	pthread_cond_init(&w.cv, NULL);
	int r = write ? hoard_write(c, id, off, len, buf, sync_done, &w)
		      : hoard_read(c, id, off, len, buf, sync_done, &w);
	if (r == 0) {
		pthread_mutex_lock(&w.m);
		while (!w.done)
			pthread_cond_wait(&w.cv, &w.m);
		pthread_mutex_unlock(&w.m);
	}
	pthread_mutex_destroy(&w.m);
	pthread_cond_destroy(&w.cv);
	return r < 0 ? r : w.res;
}

/* A hit read in the caller's thread: planned under the engine lock like
 * hoard_read(), then read through the device's sync_io, which does not
 * involve the completion thread, and verified here (C1).  For a reader
 * alone, this saves the completion thread's wakeup and the hand back. */
int64_t hoard_read_sync(struct hoard_cache *c, uint64_t id, uint64_t off, size_t len, void *buf)
{
	if (off % HBLK || len == 0 || len > HREQ_MAX_BLOCKS * HBLK || ((uintptr_t)buf % HBLK))
		return -EINVAL;
	if (!c->ops->sync_io)
		return sync_call(c, 0, id, off, len, buf);
	int r = 0;
	struct hreq *q = read_plan(c, id, off, len, buf, &r);
	if (!q)
		return r;
	int64_t got = 0;
	for (uint32_t i = 0; i < q->nblk && r == 0;) {
		int n = 0;
		while (i < q->nblk && n < (int)HREQ_IOS) { /* runs of device blocks */
			uint32_t j = i + 1;
			while (j < q->nblk && q->blk[j] == q->blk[j - 1] + 1)
				j++;
			q->ios[n++] = (struct hoard_io){
				.op = HOARD_IO_READ,
				.buf = q->buf + (size_t)i * HBLK,
				.len = (size_t)(j - i) * HBLK,
				.off = q->blk[i] * HBLK,
			};
			i = j;
		}
		r = c->ops->sync_io(c->dev, q->ios, n);
	}
	if (r < 0) {
		atomic_fetch_add(&c->io_errors, 1);
	} else {
		for (uint32_t i = 0; i < q->nblk; i++) {
			if (hoard_crc32c(0, q->buf + (size_t)i * HBLK, q->blen[i]) != q->csum[i]) {
				atomic_fetch_add(&c->csum_errors, 1); /* C1: a miss, never bad bytes */
				break;
			}
			got += q->blen[i];
		}
	}
	if (got > (int64_t)len)
		got = (int64_t)len;
	atomic_fetch_add(&c->bytes_read, (uint64_t)got);
	req_put(c, q);
	return got;
}

int64_t hoard_pread(struct hoard_cache *c, uint64_t id, void *buf, size_t len, uint64_t off)
{
	const size_t piece = HREQ_MAX_BLOCKS * HBLK;
	uint8_t *bounce;
	int64_t total = 0;
	if (posix_memalign((void **)&bounce, HBLK, piece))
		return -ENOMEM;
	uint64_t pos = off;
	while ((size_t)total < len) {
		uint64_t a = pos - pos % HBLK;
		size_t want = (size_t)(pos - a) + (len - (size_t)total);
		if (want > piece)
			want = piece;
		int64_t got = sync_call(c, 0, id, a, want, bounce);
		if (got < 0) {
			if (total == 0)
				total = got;
			break;
		}
		if ((uint64_t)got <= pos - a)
			break;
		size_t n = (size_t)got - (size_t)(pos - a);
		memcpy((uint8_t *)buf + total, bounce + (pos - a), n);
		total += (int64_t)n;
		pos += n;
		if ((size_t)got < want)
			break;
	}
	free(bounce);
	return total;
}

int64_t hoard_pwrite(struct hoard_cache *c, uint64_t id, const void *buf, size_t len,
		     uint64_t off)
{
	const size_t piece = HREQ_MAX_BLOCKS * HBLK;
	uint8_t *bounce;
	int64_t total = 0;
	if (off % HBLK)
		return -EINVAL;
	if (posix_memalign((void **)&bounce, HBLK, piece))
		return -ENOMEM;
	while ((size_t)total < len) {
		size_t n = len - (size_t)total < piece ? len - (size_t)total : piece;
		memcpy(bounce, (const uint8_t *)buf + total, n);
		int64_t r = sync_call(c, 1, id, off + (uint64_t)total, n, bounce);
		if (r < 0) {
			total = total ? total : r;
			break;
		}
		total += (int64_t)n;
	}
	free(bounce);
	return total;
}

int hoard_present(struct hoard_cache *c, uint64_t id, uint64_t off, uint64_t len,
		  struct hoard_range *ranges, int max)
{
	struct hobj o;
	struct hchunk ch;
	struct gen_memo memo = {UINT64_MAX, 0};
	int n = 0, open = 0;
	pthread_mutex_lock(&c->lock);
	int r = obj_load(c, id, &o);
	if (r < 0)
		goto out;
	/* in blocks, so that no product overflows whatever a damaged tree says */
	uint64_t end = len > UINT64_MAX - off ? UINT64_MAX : off + len;
	uint64_t eb = end / HBLK + (end % HBLK != 0), blk = off / HBLK;
	while (blk < eb) {
		struct hbt_key k = mkkey(HK_CHUNK, 0, id, blk / HCHUNK_BLOCKS), f;
		r = tseek(c, &k, 0, &f, &ch, sizeof(ch));
		if (r == -ENOENT || (r >= 0 && (f.type != HK_CHUNK || f.b != id)))
			break;
		if (r < 0)
			goto out;
		if (f.a != 0 || f.c < blk / HCHUNK_BLOCKS) {
			r = -EUCLEAN; /* not a chunk key we wrote: damaged */
			goto out;
		}
		if (f.c > (eb - 1) / HCHUNK_BLOCKS)
			break;
		if (f.c != blk / HCHUNK_BLOCKS) {
			open = 0;
			blk = f.c * HCHUNK_BLOCKS;
		}
		int good = r == (int)sizeof(ch) && ch.obj_gen == o.gen;
		for (uint32_t i = (uint32_t)(blk % HCHUNK_BLOCKS); i < HCHUNK_BLOCKS && blk < eb; i++, blk++) {
			int ok = 0;
			if (good && (r = blk_valid(c, &ch.b[i], &ok, &memo)) < 0)
				goto out;
			if (!ok) {
				open = 0;
				continue;
			}
			uint64_t s = blk * HBLK, e = s + ch.b[i].len;
			if (s < off)
				s = off;
			if (e > end)
				e = end;
			if (open && n <= max && ranges[n - 1].off + ranges[n - 1].len == s) {
				ranges[n - 1].len += e - s;
			} else {
				if (n < max)
					ranges[n] = (struct hoard_range){s, e - s};
				n++;
			}
			open = ch.b[i].len == HBLK;
		}
	}
	r = 0;
out:
	pthread_mutex_unlock(&c->lock);
	return r < 0 ? r : n;
}

/* ---- the index worker: write completions, purges, group commit ------------ */

/* A device flush with the engine lock not held (the device table and the
 * device never change while the cache is open; the page store counts it). */
static int flush_unlocked(struct hoard_cache *c)
{
	return hoard_dev_io(c->ops, c->dev, HOARD_IO_FLUSH, NULL, 0, 0);
}

static void *worker_main(void *arg)
{
	struct hoard_cache *c = arg;
	struct timespec last;
	clock_gettime(CLOCK_MONOTONIC, &last);
	pthread_mutex_lock(&c->q_lock);
	for (;;) {
		if (!c->q_head && !c->stop && !c->kick) {
			struct timespec dl;
			clock_gettime(CLOCK_REALTIME, &dl);
			dl.tv_sec += c->commit_ms / 1000;
			dl.tv_nsec += (long)(c->commit_ms % 1000) * 1000000L;
			if (dl.tv_nsec >= 1000000000L) {
				dl.tv_sec++;
				dl.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&c->q_cv, &c->q_lock, &dl);
		}
		struct hreq *list = c->q_head;
		c->q_head = c->q_tail = NULL;
		unsigned np = c->npurge;
		uint64_t purge[16];
		if (np > 16)
			np = 16;
		memcpy(purge, c->purge + c->npurge - np, np * sizeof(uint64_t));
		c->npurge -= np;
		int stop = c->stop;
		c->kick = 0;
		pthread_mutex_unlock(&c->q_lock);

		if (list) {
			pthread_mutex_lock(&c->lock);
			for (struct hreq *q = list; q; q = q->qnext) {
				q->res = atomic_load(&q->err);
				if (q->res == 0)
					q->res = index_write(c, q);
				else
					atomic_fetch_add(&c->io_errors, 1);
			}
			pthread_mutex_unlock(&c->lock);
			while (list) { /* C5: callbacks without the lock */
				struct hreq *next = list->qnext;
				write_finish(c, list, list->res == -ESTALE ? 0 : list->res);
				list = next;
			}
		}
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long ms = (now.tv_sec - last.tv_sec) * 1000 + (now.tv_nsec - last.tv_nsec) / 1000000;
		if (np || ms >= (long)c->commit_ms) {
			/* The group commit's flushes run without the engine
			 * lock, so hits, lookups and block allocation for new
			 * fills go on during them (on a VM's image file one has
			 * taken 0.6 s).  The first (I4) is safe unlocked because
			 * only this thread adds block pointers (index_write), and
			 * each one it added points at a write completed before
			 * now; the second makes the records written under the
			 * lock durable (page.h, hps_commit_write). */
			int commit = ms >= (long)c->commit_ms && !c->read_only;
			if (commit) { /* an idle cache is not flushed every second */
				pthread_mutex_lock(&c->lock);
				commit = hps_pending(c->ps);
				pthread_mutex_unlock(&c->lock);
				if (!commit)
					last = now;
			}
			int fr = commit ? flush_unlocked(c) : 0;
			pthread_mutex_lock(&c->lock);
			for (unsigned i = 0; i < np && !c->read_only; i++) {
				struct hobj o;
				if (obj_load(c, purge[i], &o) == 0)
					purge_locked(c, purge[i], 0, o.gen);
			}
			if (commit) {
				/* a failure is sticky: seen by every writer; a failed
				 * first flush is left to hps_commit to meet again */
				int w = fr < 0 ? hps_commit(c->ps) : hps_commit_write(c->ps);
				if (w > 0) {
					pthread_mutex_unlock(&c->lock);
					fr = flush_unlocked(c);
					pthread_mutex_lock(&c->lock);
					hps_commit_done(c->ps, fr);
				}
				last = now;
			}
			pthread_mutex_unlock(&c->lock);
		}
		pthread_mutex_lock(&c->q_lock);
		if (stop && !c->q_head)
			break;
	}
	pthread_mutex_unlock(&c->q_lock);
	return NULL;
}

/* ---- open, close, sync, stats ---------------------------------------------- */

int hoard_open(const char *path, const struct hoard_open_opts *opts, struct hoard_cache **cp)
{
	struct hoard_open_opts dflt = {0};
	const struct hoard_open_opts *o = opts ? opts : &dflt;
	struct hoard_cache *c = calloc(1, sizeof(*c));
	uint64_t size = 0;
	int r;
	if (!c)
		return -ENOMEM;
	c->ops = o->dev_ops ? o->dev_ops : &hoard_dev_uring;
	c->read_only = o->read_only;
	c->no_reclaim = o->no_reclaim;
	c->commit_ms = o->commit_ms ? o->commit_ms : 1000;
	c->cur_bucket = NO_BUCKET;
	pthread_mutex_init(&c->lock, NULL);
	pthread_mutex_init(&c->pool_lock, NULL);
	pthread_cond_init(&c->pool_cv, NULL);
	pthread_mutex_init(&c->q_lock, NULL);
	pthread_cond_init(&c->q_cv, NULL);
	pthread_mutex_init(&c->v_lock, NULL);
	pthread_cond_init(&c->v_cv, NULL);
	r = c->ops->open(path, o->read_only, o->dev_arg, &c->dev, &size);
	if (r < 0) {
		free(c);
		return r;
	}
	c->reqs = calloc(HREQ_POOL, sizeof(*c->reqs));
	if (!c->reqs) {
		r = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < HREQ_POOL; i++) {
		c->reqs[i].qnext = c->free_reqs;
		c->free_reqs = &c->reqs[i];
	}
	uint64_t budget = o->mem_budget ? o->mem_budget : 64ULL << 20;
	c->mem_fixed = HREQ_POOL * sizeof(struct hreq) + (HJ_MAX_PAGES + 1) * (uint64_t)HBLK + sizeof(*c);
	if (budget < c->mem_fixed + 64 * 4200ULL) {
		r = -EINVAL;
		goto fail;
	}
	r = hps_open(c->ops, c->dev, size, o->read_only, (size_t)((budget - c->mem_fixed) / 4200), &c->ps);
	if (r < 0)
		goto fail;
	c->sb = hps_sb(c->ps);
	struct hroot *root = hps_root(c->ps);
	c->bt.ps = c->ps;
	c->bt.root = root->bt_root;
	c->bt.height = root->bt_height;
	if (c->bt.height == 0 && !c->read_only) { /* first writable open */
		r = hbt_create(&c->bt);
		if (r == 0)
			r = sync_root(c);
		if (r == 0)
			r = hps_commit(c->ps);
		if (r < 0)
			goto fail;
	}
	if (!c->read_only) {
		r = -pthread_create(&c->worker, NULL, worker_main, c);
		if (r < 0)
			goto fail;
		c->worker_started = 1;
	}
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int nv = ncpu < 1 ? 1 : ncpu > HVERIFY_MAX ? HVERIFY_MAX : (int)ncpu;
	for (int i = 0; i < nv; i++)
		if (pthread_create(&c->verifiers[c->nverifiers], NULL, verifier_main, c) == 0)
			c->nverifiers++;
	*cp = c;
	return 0;
fail:
	if (c->ps)
		hps_close(c->ps);
	c->ops->close(c->dev);
	free(c->reqs);
	free(c);
	return r;
}

int hoard_sync(struct hoard_cache *c)
{
	if (c->read_only)
		return 0;
	pthread_mutex_lock(&c->lock);
	int r = hps_commit(c->ps);
	pthread_mutex_unlock(&c->lock);
	return r;
}

int hoard_close(struct hoard_cache *c)
{
	int r = 0;
	if (!c)
		return 0;
	pthread_mutex_lock(&c->pool_lock); /* wait for every request */
	while (c->inflight)
		pthread_cond_wait(&c->pool_cv, &c->pool_lock);
	pthread_mutex_unlock(&c->pool_lock);
	pthread_mutex_lock(&c->v_lock);
	c->v_stop = 1;
	pthread_cond_broadcast(&c->v_cv);
	pthread_mutex_unlock(&c->v_lock);
	for (int i = 0; i < c->nverifiers; i++)
		pthread_join(c->verifiers[i], NULL);
	if (c->worker_started) {
		pthread_mutex_lock(&c->q_lock);
		c->stop = 1;
		pthread_cond_signal(&c->q_cv);
		pthread_mutex_unlock(&c->q_lock);
		pthread_join(c->worker, NULL);
	}
	if (!c->read_only) {
		pthread_mutex_lock(&c->lock);
		r = hps_checkpoint(c->ps);
		pthread_mutex_unlock(&c->lock);
	}
	hps_close(c->ps);
	c->ops->close(c->dev);
	free(c->reqs);
	pthread_mutex_destroy(&c->lock);
	pthread_mutex_destroy(&c->pool_lock);
	pthread_cond_destroy(&c->pool_cv);
	pthread_mutex_destroy(&c->q_lock);
	pthread_cond_destroy(&c->q_cv);
	pthread_mutex_destroy(&c->v_lock);
	pthread_cond_destroy(&c->v_cv);
	free(c);
	return r;
}

int hoard_stats(struct hoard_cache *c, struct hoard_stats *st)
{
	struct hps_stats ps;
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&c->lock);
	const struct hroot *root = hps_root(c->ps);
	const struct hoard_sb *sb = c->sb;
	st->dev_bytes = sb->dev_blocks * HBLK;
	st->data_bytes = sb->nbuckets * sb->bucket_blocks * HBLK;
	st->data_used = (root->ring_head - root->ring_tail) * sb->bucket_blocks * HBLK;
	st->meta_pages = sb->meta_blocks;
	st->meta_used = root->meta_used;
	st->volumes = root->nvolumes;
	st->objects = root->nobjects;
	st->reclaimed_buckets = root->reclaimed;
	st->read_only = c->read_only || hps_is_read_only(c->ps);
	hps_get_stats(c->ps, &ps);
	pthread_mutex_unlock(&c->lock);
	st->read_hits = atomic_load(&c->hits);
	st->read_misses = atomic_load(&c->misses);
	st->bytes_read = atomic_load(&c->bytes_read);
	st->bytes_written = atomic_load(&c->bytes_written);
	st->csum_errors = atomic_load(&c->csum_errors) + ps.csum_errors;
	st->io_errors = atomic_load(&c->io_errors) + ps.io_errors;
	st->commits = ps.commits;
	st->meta_reads = ps.dev_reads;
	st->meta_prefetched = ps.prefetched;
	st->mem_used = c->mem_fixed + ps.cached * 4200;
	return 0;
}

int hoard_vol_iterate(struct hoard_cache *c, hoard_vol_iter_fn fn, void *arg)
{
	uint8_t name[HOARD_VOLNAME_MAX];
	struct hbt_key k = mkkey(HK_VOL, 0, 0, 0), f;
	int r = 0, after = 0;
	for (;;) { /* volumes are few: one lookup each, the lock dropped for fn */
		pthread_mutex_lock(&c->lock);
		int len = tseek(c, &k, after, &f, name, sizeof(name));
		pthread_mutex_unlock(&c->lock);
		if (len < 0 || f.type != HK_VOL)
			return len < 0 && len != -ENOENT ? len : 0;
		k = f;
		after = 1;
		if (len > (int)sizeof(name))
			continue;
		r = fn((uint32_t)f.c, name, (size_t)len, arg);
		if (r)
			return r;
	}
}

int hoard_geometry(struct hoard_cache *c, struct hoard_geometry *g)
{
	const struct hoard_sb *sb = c->sb;
	memset(g, 0, sizeof(*g));
	pthread_mutex_lock(&c->lock);
	g->dev_blocks = sb->dev_blocks;
	g->journal_start = sb->journal_start;
	g->journal_blocks = sb->journal_blocks;
	g->meta_start = sb->meta_start;
	g->meta_blocks = sb->meta_blocks;
	g->data_start = sb->data_start;
	g->nbuckets = sb->nbuckets;
	g->block_size = sb->block_size;
	g->bucket_blocks = sb->bucket_blocks;
	g->version = sb->version;
	g->created = sb->created;
	g->sb_seq = sb->seq;
	memcpy(g->uuid, sb->uuid, sizeof(g->uuid));
	pthread_mutex_unlock(&c->lock);
	return 0;
}

const char *hoard_strerror(int err)
{
	switch (err) {
	case -EUCLEAN:
		return "not a hoardfs cache, or its metadata is damaged (run hoardfs fsck)";
	case -EPROTO:
		return "hoardfs cache of an unsupported format version";
	case -EROFS:
		return "cache is read-only (a metadata write failed: run hoardfs fsck)";
	case -ENOSPC:
		return "no space left in the cache";
	case -EEXIST:
		return "device holds data (use --force to overwrite)";
	case -EBUSY:
		return "the cache is open in another process (a mount, or its daemon still "
		       "finishing after an unmount)";
	default:
		return strerror(-err);
	}
}
