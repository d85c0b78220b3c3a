/*
 * io.c - the data path: read (cache hit, miss, readahead) and write.
 *
 * Owns: the pools of cache-fill and hit buffers, the background workers
 * (readahead, and the rare hit that turned into a miss), open file handles'
 * lifetime (hfs_fh_put) and the read latency histogram.  Does not own:
 * coherency decisions (ops.c, at open) or the cache format (the engine).
 *
 * Read:
 *   hit   every byte asked for (up to the size seen at open) is present:
 *         hoard_read() into a pool buffer (a small hit buffer for reads
 *         of up to HFS_SMALL_MAX, so that a queue of 4 KiB reads does not
 *         drain the 1 MiB fill buffers); the reply is sent from the
 *         engine's completion thread (hit_done), the FUSE thread returns at
 *         once.  No buffer free -> blocking hoard_pread into the thread's
 *         own buffer.
 *   miss  the request is rounded out to whole blocks and read from the
 *         server into the thread's own buffer; the reader gets its reply
 *         first, then the whole blocks (and a short last block at EOF) are
 *         copied into a pool buffer and written to the cache with
 *         hoard_write() without waiting.  Pool empty -> waits up to
 *         HFS_FILL_WAIT_MS for a buffer (the reader already has its
 *         reply), then not cached (stats.fill_skipped); never allocates.
 *   ra    (off by default: -o ra=BYTES) a sequential reader keeps up to ra_window bytes
 *         ahead fetched into the cache by the workers, 1 MiB at a time,
 *         skipping what is present.
 * Write: through to the server synchronously (backend pwrite), then the
 * bytes the server accepted go to the cache (store_write: the touched
 * blocks dropped, the whole ones stored, in write order under the node's
 * wlock).  The first write of a handle marks the node as being written
 * (writers > 0: no hits, no fills); flush/release settle the new coherency
 * data without dropping the cache (ops.c: fh_settle, hfs_own_change).  Fills racing with a write are undone
 * by the wseq check in fill_done (I4).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fs/fs_i.h"

#define BLK ((uint64_t)HOARD_BLOCK_SIZE)
#define RND_DOWN(x) ((x) & ~(BLK - 1))
#define RND_UP(x) (((x) + BLK - 1) & ~(BLK - 1))

static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;

static void tl_init(void)
{
	pthread_key_create(&tl_key, free);
}

/* The calling thread's own request buffer (FUSE workers, io workers):
 * bounded by the number of threads. */
static uint8_t *thread_buf(void)
{
	uint8_t *b = pthread_getspecific(tl_key);
	if (!b) {
		void *p;
		if (posix_memalign(&p, BLK, HFS_BUF_SIZE))
			return NULL;
		b = p;
		pthread_setspecific(tl_key, b);
	}
	return b;
}

static void add(atomic_uint_fast64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static void record_lat(struct hfs *fs, uint64_t t0)
{
	uint64_t us = hfs_now_us() - t0;
	int b = 63 - __builtin_clzll(us | 1);
	if (b >= HFS_LAT_BUCKETS)
		b = HFS_LAT_BUCKETS - 1;
	add(&fs->st.lat[b], 1);
}

uint64_t hfs_lat_percentile(const struct hfs_stats *st, double p)
{
	uint64_t total = 0, acc = 0;
	for (int i = 0; i < HFS_LAT_BUCKETS; i++)
		total += atomic_load_explicit(&st->lat[i], memory_order_relaxed);
	if (!total)
		return 0;
	for (int i = 0; i < HFS_LAT_BUCKETS; i++) {
		acc += atomic_load_explicit(&st->lat[i], memory_order_relaxed);
		if (acc * 100.0 >= p * total)
			return (2ull << i) - 1; /* upper bound of bucket i */
	}
	return ~0ull;
}

/* ---- pool ---- */

static struct hfs_buf *pool_get(struct hfs *fs, uint32_t keep)
{
	struct hfs_buf *b = NULL;
	pthread_mutex_lock(&fs->pool_lock);
	if (fs->pool_free && fs->pool_n - fs->pool_inflight > keep) {
		b = fs->pool_free;
		fs->pool_free = b->next;
		fs->pool_inflight++;
	}
	pthread_mutex_unlock(&fs->pool_lock);
	return b;
}

/* For a fill after the reader has its reply: wait a little for a buffer
 * (cache writes in flight free them), so that a burst of small misses
 * slows down to the cache's write speed instead of going uncached.
 * Bounded: after HFS_FILL_WAIT_MS the fill is skipped. */
#define HFS_FILL_WAIT_MS 1000
static struct hfs_buf *pool_get_wait(struct hfs *fs)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_nsec += HFS_FILL_WAIT_MS * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	struct hfs_buf *b = NULL;
	pthread_mutex_lock(&fs->pool_lock);
	for (;;) {
		if (fs->pool_free) {
			b = fs->pool_free;
			fs->pool_free = b->next;
			fs->pool_inflight++;
			break;
		}
		if (pthread_cond_timedwait(&fs->wq_idle, &fs->pool_lock, &dl) == ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&fs->pool_lock);
	return b;
}

/* A buffer for a hit of @need bytes (whole blocks): a small one when it
 * fits, else a fill buffer (none kept back: the reader waits). */
static struct hfs_buf *hit_buf_get(struct hfs *fs, uint64_t need)
{
	if (need > HFS_SMALL_BUF)
		return pool_get(fs, 0);
	struct hfs_buf *b = NULL;
	pthread_mutex_lock(&fs->pool_lock);
	if (fs->small_free) {
		b = fs->small_free;
		fs->small_free = b->next;
		fs->small_inflight++;
	}
	pthread_mutex_unlock(&fs->pool_lock);
	return b ? b : pool_get(fs, 0);
}

/* Give @b back.  Once the last buffer is back, hfs_io_stop lets
 * hfs_destroy free the fs: a callback gives its buffer back last, after
 * everything else it does with the fs, its handle or its node. */
static void pool_put(struct hfs *fs, struct hfs_buf *b)
{
	pthread_mutex_lock(&fs->pool_lock);
	if (b->small) {
		b->next = fs->small_free;
		fs->small_free = b;
		if (--fs->small_inflight == 0)
			pthread_cond_broadcast(&fs->wq_idle); /* hfs_io_stop */
		pthread_mutex_unlock(&fs->pool_lock);
		HFS_TEST_POINT("pool_put");
		return;
	}
	b->next = fs->pool_free;
	fs->pool_free = b;
	fs->pool_inflight--;
	pthread_cond_broadcast(&fs->wq_idle);
	pthread_mutex_unlock(&fs->pool_lock);
	HFS_TEST_POINT("pool_put");
}

/* ---- handles ---- */

void hfs_fh_put(struct hfs *fs, struct hfs_fh *fh)
{
	if (atomic_fetch_sub(&fh->refs, 1) != 1)
		return;
	if (fh->bf) {
		int r = fs->b->ops->release(fs->b, fh->bf);
		if (r)
			hfs_count_err(fs, r);
	}
	hfs_node_put(fs, fh->node);
	pthread_mutex_destroy(&fh->lock);
	free(fh);
}

static bool node_fillable(struct hfs *fs, struct hfs_node *n, uint64_t *size)
{
	pthread_mutex_lock(&fs->lock);
	bool ok = n->writers == 0 && n->obj != 0;
	*size = n->attr.size;
	pthread_mutex_unlock(&fs->lock);
	return ok;
}

/* ---- cache fills ---- */

static void fill_done(void *arg, int64_t res)
{
	struct hfs_buf *b = arg;
	struct hfs *fs = b->fs;
	struct hfs_fh *fh = b->fh;
	if (res < 0)
		add(&fs->st.cache_errors, 1);
	/* I4: a write started or ended meanwhile: what we stored may predate
	 * it. */
	if (atomic_load(&fh->node->wseq) != b->t0) {
		int r = hoard_obj_invalidate(fs->cache, fh->obj);
		if (r < 0 && r != -ENOENT)
			add(&fs->st.cache_errors, 1);
	}
	hfs_fh_put(fs, fh);
	pool_put(fs, b); /* last: see pool_put */
}

/* Store @n bytes read from the server at block offset @aoff (in @b->data)
 * into the cache: whole blocks, and a short last block if the server
 * returned less than @asked (EOF).  Takes over @b. */
static void fill_submit(struct hfs *fs, struct hfs_fh *fh, struct hfs_buf *b,
			uint64_t aoff, int64_t n, uint64_t asked, uint64_t wseq)
{
	uint64_t len = (uint64_t)n < asked ? (uint64_t)n : RND_DOWN((uint64_t)n);
	if (len == 0 || (wseq & 1) || atomic_load(&fh->node->wseq) != wseq) {
		pool_put(fs, b);
		return;
	}
	b->fh = fh;
	b->t0 = wseq;
	atomic_fetch_add(&fh->refs, 1);
	add(&fs->st.fill_bytes, len);
	int r = hoard_write(fs->cache, fh->obj, aoff, len, b->data, fill_done, b);
	if (r < 0) {
		if (r != -ENOENT)
			add(&fs->st.cache_errors, 1);
		hfs_fh_put(fs, fh);
		pool_put(fs, b);
	}
}

/* ---- the miss path ---- */

/* @may_wait: false on an I/O completion thread, which must not block
 * waiting for a buffer (completions are what give buffers back): with
 * none free, the fill is skipped. */
static void do_miss(struct hfs *fs, fuse_req_t req, struct hfs_fh *fh,
		    uint64_t off, size_t size, uint64_t t0, bool may_wait)
{
	uint8_t *tb = thread_buf();
	uint64_t aoff = RND_DOWN(off), alen = RND_UP(off + size) - aoff;
	if (!tb) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	uint64_t fsize;
	bool fillable = node_fillable(fs, fh->node, &fsize);
	uint64_t wseq = atomic_load(&fh->node->wseq);
	/* With a fill buffer free, the server's bytes land in it and go to
	 * the cache from there (no copy); else into the thread's buffer, and
	 * a buffer is waited for after the reply. */
	struct hfs_buf *b = fillable ? pool_get(fs, 0) : NULL;
	if (b)
		tb = b->data;
	int64_t n = fs->b->ops->pread(fs->b, fh->bf, tb, alen, aoff);
	if (n < 0) {
		if (b)
			pool_put(fs, b);
		hfs_count_err(fs, (int)n);
		fuse_reply_err(req, (int)-n);
		return;
	}
	add(&fs->st.server_bytes, n);
	size_t got = (uint64_t)n > off - aoff ? (size_t)((uint64_t)n - (off - aoff)) : 0;
	if (got > size)
		got = size;
	fuse_reply_buf(req, (const char *)tb + (off - aoff), got);
	add(&fs->st.read_ops, 1);
	add(&fs->st.read_bytes, got);
	add(&fs->st.miss_ops, 1);
	add(&fs->st.miss_bytes, got);
	record_lat(fs, t0);
	if (b && n > 0) {
		fill_submit(fs, fh, b, aoff, n, alen, wseq);
		return;
	}
	if (b)
		pool_put(fs, b);
	if (!fillable || n == 0)
		return;
	b = may_wait ? pool_get_wait(fs) : pool_get(fs, 0);
	if (!b) {
		add(&fs->st.fill_skipped, 1);
		return;
	}
	memcpy(b->data, tb, (size_t)n);
	fill_submit(fs, fh, b, aoff, n, alen, wseq);
}

/* ---- background work ---- */

static bool wq_push(struct hfs *fs, const struct hfs_job *j)
{
	bool ok = false;
	if (HFS_TEST_FAIL("wq_push"))
		return false; /* as if full: tests/integration/mount_dir_wq_full.sh */
	pthread_mutex_lock(&fs->wq_lock);
	if (!fs->wq_stop && fs->wq_len < HFS_WQ_LEN) {
		fs->wq[(fs->wq_head + fs->wq_len) % HFS_WQ_LEN] = *j;
		fs->wq_len++;
		pthread_cond_signal(&fs->wq_cond);
		ok = true;
	}
	pthread_mutex_unlock(&fs->wq_lock);
	return ok;
}

static void do_readahead(struct hfs *fs, struct hfs_fh *fh, uint64_t off,
			 uint64_t len)
{
	uint64_t pos = RND_DOWN(off), end = off + len;
	while (pos < end) {
		uint64_t fsize;
		if (!node_fillable(fs, fh->node, &fsize) || pos >= fsize)
			break;
		uint64_t chunk = end - pos < HFS_MAX_IO ? RND_UP(end - pos) : HFS_MAX_IO;
		uint64_t want = pos + chunk < fsize ? chunk : fsize - pos;
		struct hoard_range r[2];
		int nr = hoard_present(fs->cache, fh->obj, pos, want, r, 2);
		if (nr == 1 && r[0].off <= pos && r[0].off + r[0].len >= pos + want) {
			pos += chunk;
			continue;
		}
		/* keep a quarter of the pool for the readers' own misses */
		struct hfs_buf *b = pool_get(fs, fs->pool_n / 4);
		if (!b)
			break;
		uint64_t wseq = atomic_load(&fh->node->wseq);
		int64_t n = fs->b->ops->pread(fs->b, fh->bf, b->data, chunk, pos);
		if (n <= 0) {
			if (n < 0)
				hfs_count_err(fs, (int)n);
			pool_put(fs, b);
			break;
		}
		add(&fs->st.server_bytes, n);
		add(&fs->st.ra_bytes, n);
		fill_submit(fs, fh, b, pos, n, chunk, wseq);
		if ((uint64_t)n < chunk)
			break;
		pos += chunk;
	}
	pthread_mutex_lock(&fh->lock);
	fh->ra_busy = false;
	if (pos < fh->ra_end)
		fh->ra_end = pos;
	pthread_mutex_unlock(&fh->lock);
}

static void *worker(void *arg)
{
	struct hfs *fs = arg;
	for (;;) {
		pthread_mutex_lock(&fs->wq_lock);
		while (!fs->wq_len && !fs->wq_stop)
			pthread_cond_wait(&fs->wq_cond, &fs->wq_lock);
		if (!fs->wq_len) {
			pthread_mutex_unlock(&fs->wq_lock);
			return NULL;
		}
		struct hfs_job j = fs->wq[fs->wq_head];
		fs->wq_head = (fs->wq_head + 1) % HFS_WQ_LEN;
		fs->wq_len--;
		fs->wq_active++;
		pthread_mutex_unlock(&fs->wq_lock);
		if (j.kind == HFS_JOB_RA)
			do_readahead(fs, j.fh, j.off, j.len);
		else
			do_miss(fs, j.req, j.fh, j.off, j.len, j.t0, true);
		hfs_fh_put(fs, j.fh);
		pthread_mutex_lock(&fs->wq_lock);
		fs->wq_active--;
		pthread_mutex_unlock(&fs->wq_lock);
	}
}

static void maybe_readahead(struct hfs *fs, struct hfs_fh *fh, uint64_t off,
			    size_t size, uint64_t fsize)
{
	uint64_t win = fs->o.ra_window;
	if (win <= 1 || !fh->obj || (fh->flags & O_ACCMODE) == O_WRONLY)
		return;
	uint64_t endr = off + size;
	struct hfs_job j = {.kind = HFS_JOB_RA, .fh = fh};
	pthread_mutex_lock(&fh->lock);
	bool seq = off == 0 ||
		   (off + HFS_MAX_IO >= fh->seq_next && off <= fh->seq_next + HFS_MAX_IO);
	if (endr > fh->seq_next)
		fh->seq_next = endr;
	if (seq && !fh->ra_busy && fh->ra_end < endr + win / 2) {
		uint64_t start = fh->ra_end > endr ? fh->ra_end : endr;
		uint64_t lim = endr + win < fsize ? endr + win : fsize;
		if (start < lim) {
			j.off = start;
			j.len = lim - start;
			fh->ra_busy = true;
			fh->ra_end = lim;
		}
	}
	pthread_mutex_unlock(&fh->lock);
	if (!j.len)
		return;
	atomic_fetch_add(&fh->refs, 1);
	if (!wq_push(fs, &j)) {
		pthread_mutex_lock(&fh->lock);
		fh->ra_busy = false;
		fh->ra_end = j.off;
		pthread_mutex_unlock(&fh->lock);
		atomic_fetch_sub(&fh->refs, 1);
	}
}

/* ---- read ---- */

static void hit_stats(struct hfs *fs, size_t got, uint64_t t0);

static void hit_done(void *arg, int64_t res)
{
	struct hfs_buf *b = arg;
	struct hfs *fs = b->fs;
	struct hfs_fh *fh = b->fh;
	uint64_t skip = b->off - b->aoff;
	/* before the reply: the reader's next read may then go inline */
	atomic_fetch_sub(&fs->hits_inflight, 1);
	if (res >= 0 && (uint64_t)res >= skip + b->size) {
		atomic_store_explicit(&fh->last_hit, true, memory_order_relaxed);
		fuse_reply_buf(b->req, (const char *)b->data + skip, b->size);
		hit_stats(fs, b->size, b->t0);
		hfs_fh_put(fs, fh);
		pool_put(fs, b); /* last: see pool_put */
		return;
	}
	/* Not all there (the hint was wrong, or reclaimed or failed
	 * verification since hoard_present()): from the server, off this
	 * (completion) thread when possible. */
	atomic_store_explicit(&fh->last_hit, false, memory_order_relaxed);
	if (res < 0)
		add(&fs->st.cache_errors, 1);
	struct hfs_job j = {.kind = HFS_JOB_MISS, .fh = fh, .req = b->req,
			    .off = b->off, .len = b->size, .t0 = b->t0};
	if (!wq_push(fs, &j)) {
		add(&fs->st.wq_full, 1);
		do_miss(fs, j.req, fh, j.off, j.len, j.t0, false);
		hfs_fh_put(fs, fh);
	}
	pool_put(fs, b); /* last: see pool_put */
}

static void hit_stats(struct hfs *fs, size_t got, uint64_t t0)
{
	add(&fs->st.read_ops, 1);
	add(&fs->st.read_bytes, got);
	add(&fs->st.hit_ops, 1);
	add(&fs->st.hit_bytes, got);
	add(&fs->st.cache_bytes, got);
	record_lat(fs, t0);
}

/* Serve [uoff, end) from the cache (aoff = uoff's block).  True if the
 * request is answered or handed to hit_done; false: the caller goes to
 * the server.
 *
 * A small read with no other hit in flight (a reader at queue depth 1) is
 * read in this thread (hoard_read_sync): the device read wakes this thread
 * directly, where the completion thread would cost one more wakeup and a
 * hop before the reply.  Reads that overlap go asynchronously, so a FUSE
 * thread never waits behind a queue of them; so do large ones (measured:
 * 1 MiB readahead requests read inline made sequential reads ~15% slower,
 * the crc32c pass no longer overlapping the next read). */
static bool read_hit(struct hfs *fs, fuse_req_t req, struct hfs_fh *fh,
		     uint64_t aoff, uint64_t uoff, uint64_t end, uint64_t t0)
{
	uint64_t need = RND_UP(end) - aoff;
	if (atomic_fetch_add(&fs->hits_inflight, 1) == 0 && need <= HFS_SMALL_BUF) {
		uint8_t *tb = thread_buf();
		int64_t n = tb ? hoard_read_sync(fs->cache, fh->obj, aoff, need, tb) : -ENOMEM;
		atomic_fetch_sub(&fs->hits_inflight, 1);
		if (n >= (int64_t)(end - aoff)) {
			atomic_store_explicit(&fh->last_hit, true, memory_order_relaxed);
			fuse_reply_buf(req, (const char *)tb + (uoff - aoff), end - uoff);
			hit_stats(fs, end - uoff, t0);
			return true;
		}
		atomic_store_explicit(&fh->last_hit, false, memory_order_relaxed);
		if (n < 0)
			add(&fs->st.cache_errors, 1);
		return false;
	}
	struct hfs_buf *b = hit_buf_get(fs, need);
	if (b) {
		b->req = req;
		b->fh = fh;
		b->aoff = aoff;
		b->off = uoff;
		b->size = end - uoff;
		b->t0 = t0;
		atomic_fetch_add(&fh->refs, 1);
		int r = hoard_read(fs->cache, fh->obj, aoff, need, b->data, hit_done, b);
		if (r >= 0)
			return true; /* hit_done replies */
		atomic_fetch_sub(&fs->hits_inflight, 1);
		atomic_fetch_sub(&fh->refs, 1);
		pool_put(fs, b);
		add(&fs->st.cache_errors, 1);
		return false;
	}
	atomic_fetch_sub(&fs->hits_inflight, 1);
	uint8_t *tb = thread_buf();
	int64_t n = tb ? hoard_pread(fs->cache, fh->obj, tb, need, aoff) : -ENOMEM;
	if (n < (int64_t)(end - aoff))
		return false;
	fuse_reply_buf(req, (const char *)tb + (uoff - aoff), end - uoff);
	hit_stats(fs, end - uoff, t0);
	return true;
}

/* 1 if [off, end) is all in the cache. */
static bool all_present(struct hfs *fs, uint64_t obj, uint64_t off,
			uint64_t end)
{
	struct hoard_range r[2];
	int n = hoard_present(fs->cache, obj, off, end - off, r, 2);
	return n == 1 && r[0].off <= off && r[0].off + r[0].len >= end;
}

void hfs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		 struct fuse_file_info *fi)
{
	struct hfs *fs = fuse_req_userdata(req);
	struct hfs_fh *fh = (struct hfs_fh *)(uintptr_t)fi->fh;
	uint64_t t0 = hfs_now_us(), fsize;
	uint64_t uoff = (uint64_t)off;
	if (size > HFS_MAX_IO)
		size = HFS_MAX_IO;
	/* Once we reply, the kernel may release the handle at any time: hold
	 * it until this function is done with it. */
	atomic_fetch_add(&fh->refs, 1);
	bool cacheable = node_fillable(fs, fh->node, &fsize);
	maybe_readahead(fs, fh, uoff, size, fsize);
	if (cacheable && uoff < fsize) {
		uint64_t end = uoff + size < fsize ? uoff + size : fsize;
		uint64_t aoff = RND_DOWN(uoff);
		/* A warm reader reads straight from the cache (hit_done falls
		 * back to the server if something is missing); otherwise ask
		 * first, so a cold read does not take a detour. */
		if ((atomic_load_explicit(&fh->last_hit, memory_order_relaxed) ||
		     all_present(fs, fh->obj, aoff, end)) &&
		    read_hit(fs, req, fh, aoff, uoff, end, t0)) {
			hfs_fh_put(fs, fh);
			return;
		}
	}
	do_miss(fs, req, fh, uoff, size, t0, true);
	hfs_fh_put(fs, fh);
}

/* ---- write ---- */

struct store_wait {
	pthread_mutex_t m;
	pthread_cond_t cv;
	bool done;
	int64_t res;
};

static void store_done(void *arg, int64_t res)
{
	struct store_wait *w = arg;
	pthread_mutex_lock(&w->m);
	w->res = res;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->m);
}

/* Keep what the server accepted: drop the cached blocks the write touched,
 * then store the blocks it covers whole (and a short last block when it
 * ends the file).  Runs under the node's wlock (hfs_node_wlock), so the copies of two writes reach
 * the cache in the order the server took them.  Without a pool buffer the
 * range is only dropped: correct, a miss later. */
static void store_write(struct hfs *fs, struct hfs_node *n, uint64_t obj,
			const char *buf, uint64_t off, uint64_t len, uint64_t fsize)
{
	int e = hoard_obj_punch(fs->cache, obj, off, len);
	if (e < 0) {
		if (e != -ENOENT) {
			add(&fs->st.cache_errors, 1);
			hoard_obj_invalidate(fs->cache, obj);
		}
		return;
	}
	uint64_t a0 = RND_UP(off), end = off + len;
	uint64_t a1 = end >= fsize ? end : RND_DOWN(end);
	while (a0 < a1) {
		uint64_t piece = a1 - a0 < HFS_BUF_SIZE ? a1 - a0 : HFS_BUF_SIZE;
		struct hfs_buf *b = pool_get(fs, fs->pool_n / 4);
		if (!b)
			return;
		memcpy(b->data, buf + (a0 - off), piece);
		struct store_wait w = {.done = false};
		pthread_mutex_init(&w.m, NULL);
		pthread_cond_init(&w.cv, NULL);
		int r = hoard_write(fs->cache, obj, a0, piece, b->data, store_done, &w);
		if (r == 0) {
			pthread_mutex_lock(&w.m);
			while (!w.done)
				pthread_cond_wait(&w.cv, &w.m);
			pthread_mutex_unlock(&w.m);
			r = w.res < 0 ? (int)w.res : 0;
		}
		pthread_mutex_destroy(&w.m);
		pthread_cond_destroy(&w.cv);
		pool_put(fs, b);
		if (r < 0) {
			if (r != -ENOENT && r != -ENOSPC)
				add(&fs->st.cache_errors, 1);
			return;
		}
		add(&fs->st.fill_bytes, piece);
		a0 += piece;
	}
}

void hfs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		  size_t size, off_t off, struct fuse_file_info *fi)
{
	struct hfs *fs = fuse_req_userdata(req);
	struct hfs_fh *fh = (struct hfs_fh *)(uintptr_t)fi->fh;
	struct hfs_node *n = fh->node;
	atomic_fetch_add(&fh->refs, 1); /* as in read: past the reply */
	pthread_mutex_lock(&fh->lock);
	bool was = fh->wrote;
	fh->wrote = true;
	pthread_mutex_unlock(&fh->lock);
	if (!was) {
		pthread_mutex_lock(&fs->lock);
		n->writers++;
		pthread_mutex_unlock(&fs->lock);
	}
	pthread_mutex_t *wlock = hfs_node_wlock(fs, n);
	pthread_mutex_lock(wlock);
	atomic_fetch_add(&n->wseq, 1); /* odd: a write is under way */
	int64_t r = fs->b->ops->pwrite(fs->b, fh->bf, buf, size, (uint64_t)off);
	atomic_fetch_add(&n->wseq, 1);
	if (r < 0) {
		pthread_mutex_unlock(wlock);
		hfs_count_err(fs, (int)r);
		fuse_reply_err(req, (int)-r);
		hfs_fh_put(fs, fh);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	uint64_t obj = n->obj;
	if ((uint64_t)off + (uint64_t)r > n->attr.size)
		n->attr.size = (uint64_t)off + (uint64_t)r;
	hfs_attr_stale_locked(n, hfs_real_ns()); /* mtime: fh_settle asks */
	uint64_t fsize = n->attr.size;
	pthread_mutex_unlock(&fs->lock);
	if (obj && r > 0)
		store_write(fs, n, obj, buf, (uint64_t)off, (uint64_t)r, fsize);
	pthread_mutex_unlock(wlock);
	fuse_reply_write(req, (size_t)r);
	add(&fs->st.write_ops, 1);
	add(&fs->st.write_bytes, (uint64_t)r);
	hfs_fh_put(fs, fh);
}

/* ---- setup ---- */

/* @n buffers of @size bytes in one region of I/O memory (huge pages: a
 * fill or hit reaches the device in one or two segments, see hoard.h),
 * faulted in now (mlockall), onto *@free. */
static int bufs_alloc(struct hfs *fs, struct hfs_buf **all, uint8_t **mem,
		      uint32_t n, size_t size, bool small,
		      struct hfs_buf **free_list, uint32_t *count)
{
	*all = calloc(n, sizeof(**all));
	*mem = hoard_iobuf_alloc((size_t)n * size);
	if (!*all || !*mem) {
		free(*all);
		*all = NULL;
		hoard_iobuf_free(*mem, (size_t)n * size);
		*mem = NULL;
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct hfs_buf *b = &(*all)[i];
		b->data = *mem + (size_t)i * size;
		b->fs = fs;
		b->small = small;
		b->next = *free_list;
		*free_list = b;
		(*count)++;
	}
	return 0;
}

int hfs_io_init(struct hfs *fs)
{
	pthread_once(&tl_once, tl_init);
	int r = bufs_alloc(fs, &fs->pool_all, &fs->pool_mem,
			   fs->o.pool_bufs ? fs->o.pool_bufs : 16, HFS_BUF_SIZE,
			   false, &fs->pool_free, &fs->pool_n);
	if (!r)
		r = bufs_alloc(fs, &fs->small_all, &fs->small_mem, HFS_SMALL_BUFS,
			       HFS_SMALL_BUF, true, &fs->small_free, &fs->small_n);
	if (r)
		return r;
	for (int i = 0; i < HFS_WORKERS; i++) {
		if (pthread_create(&fs->workers[i], NULL, worker, fs))
			return -EAGAIN;
		fs->nworkers++;
	}
	return 0;
}

void hfs_io_stop(struct hfs *fs)
{
	pthread_mutex_lock(&fs->wq_lock);
	fs->wq_stop = true;
	pthread_cond_broadcast(&fs->wq_cond);
	pthread_mutex_unlock(&fs->wq_lock);
	for (int i = 0; i < fs->nworkers; i++)
		pthread_join(fs->workers[i], NULL);
	fs->nworkers = 0;
	/* in-flight fills: wait for their callbacks */
	pthread_mutex_lock(&fs->pool_lock);
	while (fs->pool_inflight || fs->small_inflight)
		pthread_cond_wait(&fs->wq_idle, &fs->pool_lock);
	pthread_mutex_unlock(&fs->pool_lock);
	hoard_iobuf_free(fs->pool_mem, (size_t)fs->pool_n * HFS_BUF_SIZE);
	free(fs->pool_all);
	fs->pool_mem = NULL;
	fs->pool_all = NULL;
	fs->pool_free = NULL;
	hoard_iobuf_free(fs->small_mem, (size_t)fs->small_n * HFS_SMALL_BUF);
	free(fs->small_all);
	fs->small_mem = NULL;
	fs->small_all = NULL;
	fs->small_free = NULL;
}
