/*
 * page.c - the metadata page store: superblocks, the write-ahead journal,
 * checkpoints, crash recovery, the bounded page cache and the metadata
 * area's allocation bitmap.
 *
 * Owns: every metadata block on the device (superblocks, journal, the
 * metadata area).  Does not own: data buckets (cache.c), what pages mean
 * (btree.c, cache.c).
 *
 * Invariants (relied on where noted):
 *  I1  The home copy of a page plus the journal records from
 *      sb.journal_seq onwards (or from a later generation's first record,
 *      see replay_start) describe the committed state.  A record is
 *      trusted only if its header checksum, magic and sequence number
 *      (consecutive from sb.journal_seq) are right and every page image
 *      in it matches its checksum; a transaction is applied only when its
 *      record with HJ_COMMIT has been read (hps_open/replay).
 *  I2  A page is written home only by checkpoint(), only while no page is
 *      dirty (so what goes home is committed), and the superblock that
 *      moves journal_seq past those records is written only after the home
 *      writes are flushed (checkpoint).
 *  I3  A journaled page (committed, not yet home) is never evicted: its
 *      home copy is stale.  A dirty page is never evicted.  Clean unpinned
 *      pages sit on the LRU and only they are evicted (get_frame).
 *  I4  Before a commit's journal records are written, the device is
 *      flushed, so data blocks written before the commit are durable before
 *      any metadata that points at them (hps_commit).
 *  I5  After any commit the journal has room for the largest transaction
 *      the engine lets build up (dirty_limit + slack): hps_commit
 *      checkpoints when it passes half full, and cache.c commits when
 *      hps_need_commit says so.
 *  I6  A failed metadata write makes the store read-only for good (sticky,
 *      like SQLite's pager error state): nothing half-written is trusted
 *      by this process again; the journal on disk still holds the last
 *      good state for the next open.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "crc32c.h"
#include "page.h"

#define PG_DIRTY 1u
#define PG_JOURNALED 2u

#define RA_STREAMS 4u /* scans followed at once: tree leaves, generations, ... */

struct hpage_store {
	const struct hoard_dev_ops *ops;
	struct hoard_dev *dev;
	struct hoard_sb sb;     /* the copy in force */
	int read_only;
	int err;                /* sticky error (I6) */

	struct hpage **hash;
	size_t nhash;           /* power of two */
	struct hpage lru;       /* sentinel: next = most recent */
	struct hpage *freelist; /* frames without a page */
	struct hpage *frames;   /* max_cached frames, */
	uint8_t *slab;          /* and their pages: one mapping made at open,
				   touched as used (no allocation per page) */
	size_t ncached, max_cached;
	struct hpage *dirty;
	size_t ndirty, dirty_limit;
	struct hpage *journaled;
	size_t njournaled, ckpt_limit;

	uint64_t jpos;          /* next free journal block (relative) */
	int unflushed;          /* a split commit's records are written, their
				   flush not done (hps_commit_write/_done) */
	uint64_t jseq;          /* next record sequence number */
	uint64_t lsn;           /* next transaction number */
	uint8_t *jbuf;          /* one record: header + HJ_MAX_PAGES images */
#define JBUF_SIZE ((HJ_MAX_PAGES + 1) * (size_t)HBLK)
	struct hoard_io *ios;   /* checkpoint batch, max_cached entries */

	struct hpage *root_pg;  /* page 0, pinned for the store's life */
	uint64_t alloc_hint;
	uint8_t *rabuf;         /* RA_PAGES pages: a miss's read (hps_get) */
	uint64_t last_miss[RA_STREAMS]; /* recent misses (hps_get), one a stream;
					   UINT64_MAX: none yet */
	unsigned last_next;
	struct hps_stats st;
};

/* A miss that follows the last one closely (a scan) reads RA_PAGES pages
 * from the one asked for on (fewer at the end of the area or before a page
 * already cached) in one I/O, and keeps the ones that verify.  Pages are
 * allocated in increasing order (alloc_hint), so the leaves a scan of one
 * object's block pointers walks are mostly neighbours: a warm 1 GiB read
 * after a remount made 2,079 single-page reads, each under the engine lock
 * (every FUSE thread waiting for it), and makes 71 with this.  A miss is
 * part of a scan when it lands just past one of the last
 * RA_STREAMS misses (the leaves and the generation pages are two streams
 * that alternate).  Misses far apart (random lookups among a million
 * objects) read one page: reading ahead for them too halved their rate
 * (pollution, longer reads).  A neighbour that is not cached has its
 * committed copy at home (I3: journaled and dirty pages stay cached); a
 * free page's copy fails verification or is overwritten by hps_alloc. */
#define RA_PAGES 64u

/* ---- synchronous and batched device I/O ------------------------------- */

struct waiter {
	pthread_mutex_t m;
	pthread_cond_t cv;
	int pending;
	int err;
};

static void waiter_init(struct waiter *w)
{
	pthread_mutex_init(&w->m, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->pending = 0;
	w->err = 0;
}

static void waiter_done(struct hoard_io *io, int res)
{
	struct waiter *w = io->arg;
	pthread_mutex_lock(&w->m);
	if (res < 0 && !w->err)
		w->err = res;
	else if (res >= 0 && io->op != HOARD_IO_FLUSH && (size_t)res != io->len && !w->err)
		w->err = -EIO;
	w->pending--;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->m);
}

static int waiter_wait(struct waiter *w)
{
	pthread_mutex_lock(&w->m);
	while (w->pending > 0)
		pthread_cond_wait(&w->cv, &w->m);
	int err = w->err;
	pthread_mutex_unlock(&w->m);
	pthread_mutex_destroy(&w->m);
	pthread_cond_destroy(&w->cv);
	return err;
}

static int waiter_submit(const struct hoard_dev_ops *ops, struct hoard_dev *dev,
			 struct waiter *w, struct hoard_io *io)
{
	io->done = waiter_done;
	io->arg = w;
	pthread_mutex_lock(&w->m);
	w->pending++;
	pthread_mutex_unlock(&w->m);
	int r = ops->submit(dev, io);
	if (r < 0) {
		pthread_mutex_lock(&w->m);
		w->pending--;
		if (!w->err)
			w->err = r;
		pthread_mutex_unlock(&w->m);
	}
	return r;
}

int hoard_dev_io(const struct hoard_dev_ops *ops, struct hoard_dev *dev,
		 int op, void *buf, size_t len, uint64_t off)
{
	struct waiter w;
	struct hoard_io io = {.op = op, .buf = buf, .len = len, .off = off};
	if (ops->sync_io)
		return ops->sync_io(dev, &io, 1);
	waiter_init(&w);
	waiter_submit(ops, dev, &w, &io);
	return waiter_wait(&w);
}

int hps_io(struct hpage_store *ps, int op, void *buf, size_t len, uint64_t off)
{
	int r = hoard_dev_io(ps->ops, ps->dev, op, buf, len, off);
	if (op == HOARD_IO_READ)
		ps->st.dev_reads++;
	else if (op == HOARD_IO_WRITE)
		ps->st.dev_writes++;
	else
		ps->st.flushes++;
	if (r < 0)
		ps->st.io_errors++;
	return r;
}

/* ---- checksums ---------------------------------------------------------- */

void hps_seal(void *page, uint64_t pgno, uint16_t type, uint64_t lsn)
{
	struct hpage_hdr *h = page;
	h->type = type;
	h->pgno = pgno;
	h->lsn = lsn;
	h->magic = HOARD_MAGIC;
	h->csum = hoard_crc32c(0, (uint8_t *)page + 4, HBLK - 4);
}

int hps_verify(const void *page, uint64_t pgno)
{
	const struct hpage_hdr *h = page;
	if (h->magic != HOARD_MAGIC || h->pgno != pgno ||
	    h->csum != hoard_crc32c(0, (const uint8_t *)page + 4, HBLK - 4))
		return -EIO;
	return 0;
}

void hoard_sb_seal(struct hoard_sb *sb)
{
	sb->csum = hoard_crc32c(0, (uint8_t *)sb + 4, HBLK - 4);
}

int hoard_sb_valid(const struct hoard_sb *sb)
{
	return sb->magic == HOARD_MAGIC &&
	       sb->csum == hoard_crc32c(0, (const uint8_t *)sb + 4, HBLK - 4);
}

/* ---- the page cache ---------------------------------------------------- */

static size_t hslot(const struct hpage_store *ps, uint64_t pgno)
{
	return (size_t)((pgno * 0x9E3779B97F4A7C15ULL) >> 20) & (ps->nhash - 1);
}

static struct hpage *hlookup(struct hpage_store *ps, uint64_t pgno)
{
	for (struct hpage *p = ps->hash[hslot(ps, pgno)]; p; p = p->hnext)
		if (p->pgno == pgno)
			return p;
	return NULL;
}

static void hinsert(struct hpage_store *ps, struct hpage *pg)
{
	size_t s = hslot(ps, pg->pgno);
	pg->hnext = ps->hash[s];
	ps->hash[s] = pg;
}

static void hremove(struct hpage_store *ps, struct hpage *pg)
{
	struct hpage **pp = &ps->hash[hslot(ps, pg->pgno)];
	while (*pp && *pp != pg)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = pg->hnext;
}

static int on_lru(const struct hpage *pg)
{
	return pg->lru_next != NULL;
}

static void lru_del(struct hpage *pg)
{
	if (!on_lru(pg))
		return;
	pg->lru_prev->lru_next = pg->lru_next;
	pg->lru_next->lru_prev = pg->lru_prev;
	pg->lru_next = pg->lru_prev = NULL;
}

static void lru_add(struct hpage_store *ps, struct hpage *pg)
{
	pg->lru_next = ps->lru.lru_next;
	pg->lru_prev = &ps->lru;
	ps->lru.lru_next->lru_prev = pg;
	ps->lru.lru_next = pg;
}

/* A page may sit on the LRU only when nothing keeps it in memory (I3). */
static void maybe_lru(struct hpage_store *ps, struct hpage *pg)
{
	if (pg->pins == 0 && !(pg->flags & (PG_DIRTY | PG_JOURNALED)) && !on_lru(pg))
		lru_add(ps, pg);
}

static struct hpage *get_frame(struct hpage_store *ps)
{
	struct hpage *pg = ps->freelist;
	if (pg) {
		ps->freelist = pg->hnext;
		goto got;
	}
	if (ps->ncached < ps->max_cached) {
		pg = &ps->frames[ps->ncached];
		pg->data = ps->slab + ps->ncached * (size_t)HBLK;
		ps->ncached++;
		goto got;
	}
	pg = ps->lru.lru_prev; /* least recently used clean page */
	if (pg == &ps->lru)
		return NULL;
	lru_del(pg);
	hremove(ps, pg);
got:
	pg->hnext = NULL;
	pg->pins = 0;
	pg->flags = 0;
	pg->dnext = pg->jnext = NULL;
	return pg;
}

static void put_frame(struct hpage_store *ps, struct hpage *pg)
{
	pg->hnext = ps->freelist;
	ps->freelist = pg;
}

int hps_get(struct hpage_store *ps, uint64_t pgno, struct hpage **pgp)
{
	if (pgno >= ps->sb.meta_blocks)
		return -EUCLEAN; /* a corrupt pointer, not an I/O error */
	struct hpage *pg = hlookup(ps, pgno);
	if (pg) {
		lru_del(pg);
		pg->pins++;
		*pgp = pg;
		return 0;
	}
	pg = get_frame(ps);
	if (!pg)
		return -ENOMEM;
	pg->pgno = pgno;
	uint32_t n = 1;
	int scan = 0;
	for (unsigned i = 0; i < RA_STREAMS && !scan; i++) {
		if (pgno > ps->last_miss[i] && pgno - ps->last_miss[i] <= 2 * RA_PAGES) {
			ps->last_miss[i] = pgno; /* the stream moves on */
			scan = 1;
		}
	}
	if (!scan) /* a new stream, or a lone miss */
		ps->last_miss[ps->last_next++ % RA_STREAMS] = pgno;
	while (scan && ps->rabuf && n < RA_PAGES && pgno + n < ps->sb.meta_blocks &&
	       !hlookup(ps, pgno + n))
		n++;
	int r = hps_io(ps, HOARD_IO_READ, n > 1 ? ps->rabuf : pg->data, n * (size_t)HBLK,
		       (ps->sb.meta_start + pgno) * HBLK);
	if (r == 0 && n > 1)
		memcpy(pg->data, ps->rabuf, HBLK);
	if (r == 0 && hps_verify(pg->data, pgno) < 0) {
		ps->st.csum_errors++;
		r = -EIO;
	}
	if (r < 0) {
		put_frame(ps, pg);
		return r;
	}
	hinsert(ps, pg);
	pg->pins = 1;
	*pgp = pg;
	for (uint32_t i = 1; i < n; i++) { /* the neighbours that verify */
		const uint8_t *img = ps->rabuf + (size_t)i * HBLK;
		if (hps_verify(img, pgno + i) < 0)
			continue;
		struct hpage *nb = get_frame(ps);
		if (!nb)
			break;
		nb->pgno = pgno + i;
		memcpy(nb->data, img, HBLK);
		hinsert(ps, nb);
		maybe_lru(ps, nb);
		ps->st.prefetched++;
	}
	return 0;
}

void hps_put(struct hpage_store *ps, struct hpage *pg)
{
	if (pg->pins > 0)
		pg->pins--;
	maybe_lru(ps, pg);
}

int hps_dirty(struct hpage_store *ps, struct hpage *pg)
{
	if (ps->read_only || ps->err)
		return -EROFS;
	if (!(pg->flags & PG_DIRTY)) {
		pg->flags |= PG_DIRTY;
		pg->dnext = ps->dirty;
		ps->dirty = pg;
		ps->ndirty++;
		lru_del(pg);
	}
	return 0;
}

/* ---- the allocation bitmap -------------------------------------------- */

static int bitmap_update(struct hpage_store *ps, uint64_t pgno, int set)
{
	struct hroot *root = hps_root(ps);
	uint64_t bp = pgno / HBITS_PER_PAGE, bit = pgno % HBITS_PER_PAGE;
	struct hpage *pg;
	if (bp >= root->bitmap_pages)
		return -EUCLEAN;
	int r = hps_get(ps, root->bitmap_start + bp, &pg);
	if (r < 0)
		return r;
	uint8_t *b = hps_body(pg);
	int was = (b[bit / 8] >> (bit % 8)) & 1;
	if (was == set) {
		hps_put(ps, pg);
		return -EUCLEAN; /* double allocation or double free */
	}
	r = hps_dirty(ps, pg);
	if (r == 0)
		r = hps_dirty_root(ps);
	if (r == 0) {
		b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		if (set)
			root->meta_used++;
		else
			root->meta_used--;
	}
	hps_put(ps, pg);
	return r;
}

int hps_is_allocated(struct hpage_store *ps, uint64_t pgno)
{
	struct hroot *root = hps_root(ps);
	uint64_t bp = pgno / HBITS_PER_PAGE, bit = pgno % HBITS_PER_PAGE;
	struct hpage *pg;
	if (bp >= root->bitmap_pages)
		return -EUCLEAN;
	int r = hps_get(ps, root->bitmap_start + bp, &pg);
	if (r < 0)
		return r;
	r = (((uint8_t *)hps_body(pg))[bit / 8] >> (bit % 8)) & 1;
	hps_put(ps, pg);
	return r;
}

static int find_free(struct hpage_store *ps, uint64_t *pgnop)
{
	struct hroot *root = hps_root(ps);
	uint64_t total = ps->sb.meta_blocks;
	if (total == 0 || root->meta_used >= total)
		return -ENOSPC;
	uint64_t start = ps->alloc_hint < total ? ps->alloc_hint : 0;
	for (uint64_t scanned = 0; scanned < total + HBITS_PER_PAGE;) {
		uint64_t pgno = (start + scanned) % total;
		uint64_t bp = pgno / HBITS_PER_PAGE;
		struct hpage *pg;
		int r = hps_get(ps, root->bitmap_start + bp, &pg);
		if (r < 0)
			return r;
		const uint8_t *b = hps_body(pg);
		uint64_t end = (bp + 1) * HBITS_PER_PAGE;
		if (end > total)
			end = total;
		for (uint64_t p = pgno; p < end; p++) {
			uint64_t bit = p % HBITS_PER_PAGE;
			if ((bit % 8) == 0 && b[bit / 8] == 0xff && p + 8 <= end) {
				p += 7;
				continue;
			}
			if (!((b[bit / 8] >> (bit % 8)) & 1)) {
				hps_put(ps, pg);
				*pgnop = p;
				return 0;
			}
		}
		hps_put(ps, pg);
		scanned += end - pgno;
	}
	return -ENOSPC;
}

int hps_alloc(struct hpage_store *ps, uint16_t type, struct hpage **pgp)
{
	uint64_t pgno;
	if (ps->read_only || ps->err)
		return -EROFS;
	int r = find_free(ps, &pgno);
	if (r < 0)
		return r;
	struct hpage *pg = hlookup(ps, pgno);
	if (pg) {
		lru_del(pg);
	} else {
		pg = get_frame(ps);
		if (!pg)
			return -ENOMEM;
		pg->pgno = pgno;
		hinsert(ps, pg);
	}
	pg->pins++;
	r = bitmap_update(ps, pgno, 1);
	if (r == 0)
		r = hps_dirty(ps, pg);
	if (r < 0) {
		hps_put(ps, pg);
		return r;
	}
	memset(pg->data, 0, HBLK);
	((struct hpage_hdr *)pg->data)->type = type;
	ps->alloc_hint = pgno + 1;
	*pgp = pg;
	return 0;
}

int hps_free(struct hpage_store *ps, uint64_t pgno)
{
	if (pgno == 0 || pgno >= ps->sb.meta_blocks)
		return -EUCLEAN;
	return bitmap_update(ps, pgno, 0);
}

/* ---- commit, checkpoint ------------------------------------------------ */

static int write_sb(struct hpage_store *ps, struct hoard_sb *sb)
{
	sb->seq++;
	hoard_sb_seal(sb);
	/* copies alternate: seq N goes to copy N % 2, so a torn write leaves
	 * the other, older copy intact */
	return hps_io(ps, HOARD_IO_WRITE, sb, HBLK, (sb->seq % 2) * HBLK);
}

/* Everything before ps->jseq is home: flush, then write a superblock that
 * starts recovery at ps->jseq, and flush again (I2). */
static int advance_journal(struct hpage_store *ps)
{
	struct hoard_sb *sb;
	int r = hps_io(ps, HOARD_IO_FLUSH, NULL, 0, 0);
	if (r < 0)
		return r;
	if (posix_memalign((void **)&sb, HBLK, HBLK))
		return -ENOMEM;
	*sb = ps->sb;
	sb->journal_seq = ps->jseq;
	r = write_sb(ps, sb);
	if (r == 0)
		r = hps_io(ps, HOARD_IO_FLUSH, NULL, 0, 0);
	if (r == 0)
		ps->sb = *sb;
	free(sb);
	return r;
}

static int checkpoint(struct hpage_store *ps)
{
	struct waiter w;
	size_t n = 0;
	int r;
	if (ps->njournaled == 0 && ps->jpos == 0)
		return 0;
	if (ps->ndirty) {
		/* I2 would break: a journaled page dirtied again would go home
		 * with uncommitted changes, without the new pages they may
		 * point at.  A bug: stop trusting ourselves (I6). */
		hps_fail(ps, -EUCLEAN);
		return -EUCLEAN;
	}
	waiter_init(&w);
	for (struct hpage *pg = ps->journaled; pg; pg = pg->jnext) {
		struct hoard_io *io = &ps->ios[n++];
		*io = (struct hoard_io){.op = HOARD_IO_WRITE, .buf = pg->data, .len = HBLK,
					.off = (ps->sb.meta_start + pg->pgno) * HBLK};
		ps->st.dev_writes++;
		if (!ps->ops->sync_io)
			waiter_submit(ps->ops, ps->dev, &w, io);
	}
	r = waiter_wait(&w);
	if (r == 0 && ps->ops->sync_io)
		r = ps->ops->sync_io(ps->dev, ps->ios, (int)n);
	if (r == 0) /* I2: the superblock moves past the journal only now */
		r = advance_journal(ps);
	if (r < 0) {
		hps_fail(ps, r);
		return r;
	}
	struct hpage *pg = ps->journaled;
	while (pg) {
		struct hpage *next = pg->jnext;
		pg->flags &= ~PG_JOURNALED;
		pg->jnext = NULL;
		maybe_lru(ps, pg);
		pg = next;
	}
	ps->journaled = NULL;
	ps->njournaled = 0;
	ps->jpos = 0;
	ps->st.checkpoints++;
	return 0;
}

static int write_records(struct hpage_store *ps)
{
	struct hpage *pg = ps->dirty;
	uint64_t lsn = ps->lsn;
	while (pg) {
		struct hjournal_hdr *h = (struct hjournal_hdr *)ps->jbuf;
		memset(h, 0, HBLK);
		uint32_t n = 0;
		for (; pg && n < HJ_MAX_PAGES; pg = pg->dnext, n++) {
			const struct hpage_hdr *ph = (const struct hpage_hdr *)pg->data;
			hps_seal(pg->data, pg->pgno, ph->type, lsn);
			memcpy(ps->jbuf + (size_t)(n + 1) * HBLK, pg->data, HBLK);
			h->pages[n].pgno = pg->pgno;
			h->pages[n].csum = hoard_crc32c(0, pg->data, HBLK);
		}
		h->npages = n;
		h->magic = HJ_MAGIC;
		h->seq = ps->jseq;
		h->lsn = lsn;
		h->flags = pg ? 0 : HJ_COMMIT;
		h->csum = hoard_crc32c(0, (uint8_t *)h + 4, HBLK - 4);
		if (ps->jpos + n + 1 > ps->sb.journal_blocks)
			return -ENOSPC; /* I5 violated: a bug, not a full device */
		int r = hps_io(ps, HOARD_IO_WRITE, ps->jbuf, (size_t)(n + 1) * HBLK,
			       (ps->sb.journal_start + ps->jpos) * HBLK);
		if (r < 0)
			return r;
		ps->jpos += n + 1;
		ps->jseq++;
	}
	return 0;
}

/* The dirty pages are in the journal (durable or not, see unflushed): they
 * are journaled now, never evicted (I3) until a checkpoint writes them
 * home, which only ever follows a flush (I2). */
static void mark_journaled(struct hpage_store *ps)
{
	ps->lsn++;
	ps->st.commits++;
	struct hpage *pg = ps->dirty;
	while (pg) {
		struct hpage *next = pg->dnext;
		pg->flags &= ~PG_DIRTY;
		pg->dnext = NULL;
		if (!(pg->flags & PG_JOURNALED)) {
			pg->flags |= PG_JOURNALED;
			pg->jnext = ps->journaled;
			ps->journaled = pg;
			ps->njournaled++;
		}
		pg = next;
	}
	ps->dirty = NULL;
	ps->ndirty = 0;
}

/* I5: the journal is due for a checkpoint, to leave room for the next
 * transaction */
static int checkpoint_due(const struct hpage_store *ps)
{
	return ps->jpos * 2 > ps->sb.journal_blocks || ps->njournaled > ps->ckpt_limit;
}

static int maybe_checkpoint(struct hpage_store *ps)
{
	return checkpoint_due(ps) ? checkpoint(ps) : 0;
}

int hps_commit(struct hpage_store *ps)
{
	if (ps->err)
		return -EROFS;
	if (ps->ndirty == 0 && !ps->unflushed)
		return 0;
	if (ps->read_only)
		return -EROFS;
	int r = 0;
	if (ps->ndirty) {
		r = hps_io(ps, HOARD_IO_FLUSH, NULL, 0, 0); /* I4 */
		if (r == 0)
			r = write_records(ps);
	}
	/* (with nothing dirty: the records of a split commit still
	 * waiting for their flush, which this one is) */
	if (r == 0)
		r = hps_io(ps, HOARD_IO_FLUSH, NULL, 0, 0);
	if (r < 0) {
		hps_fail(ps, r);
		return r;
	}
	ps->unflushed = 0;
	if (ps->ndirty)
		mark_journaled(ps);
	return maybe_checkpoint(ps);
}

int hps_pending(struct hpage_store *ps)
{
	return ps->ndirty > 0 || ps->unflushed;
}

int hps_commit_write(struct hpage_store *ps)
{
	if (ps->err || ps->read_only)
		return -EROFS;
	if (ps->ndirty == 0)
		return 0;
	ps->st.flushes++; /* the caller's, run without the store */
	int r = write_records(ps);
	if (r < 0) {
		hps_fail(ps, r);
		return r;
	}
	mark_journaled(ps);
	ps->unflushed = 1;
	/* I5 now, while nothing is dirty (I2): once the caller lets go of
	 * the store for the second flush, other threads dirty pages again.
	 * The records are flushed first, here: a page must not go home
	 * before the records of its transaction are durable (I1), or a crash
	 * could keep the one without the other. */
	if (checkpoint_due(ps)) {
		r = hps_io(ps, HOARD_IO_FLUSH, NULL, 0, 0);
		if (r < 0) {
			hps_fail(ps, r);
			return r;
		}
		ps->unflushed = 0;
		r = checkpoint(ps);
		return r < 0 ? r : 0;
	}
	return 1;
}

int hps_commit_done(struct hpage_store *ps, int flush_result)
{
	if (flush_result < 0) {
		ps->st.io_errors++;
		hps_fail(ps, flush_result);
		return flush_result;
	}
	ps->st.flushes++;
	if (ps->err)
		return -EROFS;
	ps->unflushed = 0; /* (a commit in between may have flushed them already) */
	return 0; /* no checkpoint here: pages may be dirty again (I2) */
}

int hps_checkpoint(struct hpage_store *ps)
{
	int r = hps_commit(ps);
	if (r < 0)
		return r;
	if (ps->read_only)
		return 0;
	return checkpoint(ps);
}

int hps_need_commit(struct hpage_store *ps)
{
	return ps->ndirty >= ps->dirty_limit;
}

void hps_fail(struct hpage_store *ps, int err)
{
	if (!ps->err)
		ps->err = err < 0 ? err : -EIO;
}

int hps_is_read_only(struct hpage_store *ps)
{
	return ps->read_only || ps->err != 0;
}

struct hroot *hps_root(struct hpage_store *ps)
{
	return hps_body(ps->root_pg);
}

int hps_dirty_root(struct hpage_store *ps)
{
	return hps_dirty(ps, ps->root_pg);
}

const struct hoard_sb *hps_sb(struct hpage_store *ps)
{
	return &ps->sb;
}

void hps_get_stats(struct hpage_store *ps, struct hps_stats *st)
{
	*st = ps->st;
	st->cached = ps->ncached;
	st->dirty = ps->ndirty;
	st->journaled = ps->njournaled;
	st->max_cached = ps->max_cached;
}

/* ---- open: superblock choice and journal replay ----------------------- */

static int sb_geometry_ok(const struct hoard_sb *sb, uint64_t dev_size)
{
	uint64_t n = sb->dev_blocks;
	if (sb->block_size != HBLK || n > dev_size / HBLK || n < 8)
		return 0;
	if (sb->journal_start != 2 || sb->journal_blocks < 4 ||
	    sb->meta_start != sb->journal_start + sb->journal_blocks || sb->meta_blocks < 4 ||
	    sb->data_start != sb->meta_start + sb->meta_blocks || sb->bucket_blocks == 0 ||
	    sb->bucket_blocks > (1u << 20) || sb->data_start > n ||
	    sb->nbuckets > (n - sb->data_start) / sb->bucket_blocks)
		return 0;
	return 1;
}

static int read_sb(struct hpage_store *ps, uint64_t dev_size)
{
	struct hoard_sb *buf;
	int best = -1, r, proto = 0;
	if (posix_memalign((void **)&buf, HBLK, 2 * HBLK))
		return -ENOMEM;
	r = hps_io(ps, HOARD_IO_READ, buf, 2 * HBLK, 0);
	if (r < 0)
		goto out;
	for (int i = 0; i < 2; i++) {
		if (!hoard_sb_valid(&buf[i]))
			continue;
		if (buf[i].version_min > HOARD_VERSION) {
			proto = 1;
			continue;
		}
		if (!sb_geometry_ok(&buf[i], dev_size))
			continue;
		if (best < 0 || buf[i].seq > buf[best].seq)
			best = i;
	}
	if (best < 0) {
		r = proto ? -EPROTO : -EUCLEAN;
		goto out;
	}
	ps->sb = buf[best];
out:
	free(buf);
	return r;
}

/* Read the record at journal block @pos; 0 and its page count if it is
 * valid with sequence @seq (I1), -EAGAIN at the end of the journal. */
static int read_record(struct hpage_store *ps, uint64_t pos, uint64_t seq,
		       uint32_t *np, uint32_t *flags)
{
	const struct hoard_sb *sb = &ps->sb;
	struct hjournal_hdr *h = (struct hjournal_hdr *)ps->jbuf;
	if (pos + 1 > sb->journal_blocks)
		return -EAGAIN;
	int r = hps_io(ps, HOARD_IO_READ, ps->jbuf, HBLK, (sb->journal_start + pos) * HBLK);
	if (r < 0)
		return r;
	if (h->magic != HJ_MAGIC || h->seq != seq || h->npages == 0 ||
	    h->npages > HJ_MAX_PAGES || pos + 1 + h->npages > sb->journal_blocks ||
	    h->csum != hoard_crc32c(0, (uint8_t *)h + 4, HBLK - 4))
		return -EAGAIN;
	uint32_t n = h->npages;
	r = hps_io(ps, HOARD_IO_READ, ps->jbuf + HBLK, (size_t)n * HBLK,
		   (sb->journal_start + pos + 1) * HBLK);
	if (r < 0)
		return r;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *img = ps->jbuf + (size_t)(i + 1) * HBLK;
		if (h->pages[i].pgno >= sb->meta_blocks ||
		    h->pages[i].csum != hoard_crc32c(0, img, HBLK) ||
		    hps_verify(img, h->pages[i].pgno) < 0)
			return -EAGAIN; /* torn: the transaction never committed */
	}
	*np = n;
	*flags = h->flags;
	return 0;
}

/* Apply one page image from the journal: home directly when writable,
 * else into the cache as a journaled (pinned) page. */
static int replay_page(struct hpage_store *ps, uint64_t pgno, const uint8_t *img)
{
	if (!ps->read_only)
		return hps_io(ps, HOARD_IO_WRITE, (void *)img, HBLK, (ps->sb.meta_start + pgno) * HBLK);
	struct hpage *pg = hlookup(ps, pgno);
	if (!pg) {
		pg = get_frame(ps);
		if (!pg)
			return -ENOMEM;
		pg->pgno = pgno;
		hinsert(ps, pg);
		pg->flags |= PG_JOURNALED;
		pg->jnext = ps->journaled;
		ps->journaled = pg;
		ps->njournaled++;
	}
	memcpy(pg->data, img, HBLK);
	return 0;
}

/* The sequence number recovery starts from.  Normally sb.journal_seq; but
 * if the newer superblock copy was lost, the older one names the journal
 * generation before the last checkpoint, while the journal already holds
 * the next generation, which starts at block 0 with a higher sequence.
 * Records are written only after the checkpoint that began their
 * generation is durable (I2), so a valid record at block 0 with a higher
 * sequence is always safe to start from. */
static uint64_t replay_start(struct hpage_store *ps)
{
	const struct hjournal_hdr *h = (const struct hjournal_hdr *)ps->jbuf;
	uint32_t n, flags;
	uint64_t seq = ps->sb.journal_seq;
	if (hps_io(ps, HOARD_IO_READ, ps->jbuf, HBLK, ps->sb.journal_start * HBLK) < 0)
		return seq;
	if (h->magic != HJ_MAGIC || h->seq <= seq ||
	    h->csum != hoard_crc32c(0, (const uint8_t *)h + 4, HBLK - 4))
		return seq;
	uint64_t cand = h->seq;
	return read_record(ps, 0, cand, &n, &flags) == 0 ? cand : seq;
}

static int replay(struct hpage_store *ps)
{
	uint64_t start = replay_start(ps);
	uint64_t pos = 0, seq = start, end_pos = 0, end_seq = seq;
	uint32_t n, flags;
	int r;
	/* pass 1: find the end of the last complete transaction */
	while ((r = read_record(ps, pos, seq, &n, &flags)) == 0) {
		pos += n + 1;
		seq++;
		if (flags & HJ_COMMIT) {
			end_pos = pos;
			end_seq = seq;
		}
	}
	if (r != -EAGAIN)
		return r;
	/* pass 2: apply it */
	pos = 0;
	seq = start;
	while (pos < end_pos) {
		r = read_record(ps, pos, seq, &n, &flags);
		if (r < 0)
			return r == -EAGAIN ? -EIO : r; /* changed under us */
		const struct hjournal_hdr *h = (const struct hjournal_hdr *)ps->jbuf;
		for (uint32_t i = 0; i < n; i++) {
			r = replay_page(ps, h->pages[i].pgno, ps->jbuf + (size_t)(i + 1) * HBLK);
			if (r < 0)
				return r;
			ps->st.replayed++;
		}
		if (h->lsn >= ps->lsn)
			ps->lsn = h->lsn + 1;
		pos += n + 1;
		seq++;
	}
	ps->jseq = end_seq;
	if (ps->read_only) {
		ps->jpos = end_pos;
		return 0;
	}
	/* the replayed pages are home: flush, then move the journal on (I2) */
	ps->jpos = end_pos;
	if (end_pos == 0)
		return 0;
	r = advance_journal(ps);
	ps->jpos = 0;
	return r;
}

static int root_ok(struct hpage_store *ps)
{
	const struct hroot *root = hps_root(ps);
	uint64_t m = ps->sb.meta_blocks;
	if (((struct hpage_hdr *)ps->root_pg->data)->type != HPT_ROOT)
		return 0;
	if (root->bitmap_start == 0 || root->bitmap_start + root->bitmap_pages > m ||
	    root->bitmap_pages * (uint64_t)HBITS_PER_PAGE < m)
		return 0;
	if (root->gens_start == 0 || root->gens_start + root->gens_pages > m ||
	    root->gens_pages * (uint64_t)HGENS_PER_PAGE < ps->sb.nbuckets)
		return 0;
	if (root->bt_root >= m || root->bt_height > 16 || (root->bt_root == 0) != (root->bt_height == 0))
		return 0;
	if (root->ring_tail > root->ring_head || root->ring_head - root->ring_tail > ps->sb.nbuckets ||
	    root->meta_used > m)
		return 0;
	return 1;
}

int hps_open(const struct hoard_dev_ops *ops, struct hoard_dev *dev,
	     uint64_t dev_size, int read_only, size_t max_pages,
	     struct hpage_store **psp)
{
	struct hpage_store *ps = calloc(1, sizeof(*ps));
	int r = -ENOMEM;
	if (!ps)
		return -ENOMEM;
	ps->ops = ops;
	ps->dev = dev;
	ps->read_only = read_only;
	ps->lru.lru_next = ps->lru.lru_prev = &ps->lru;
	if (max_pages < 64)
		max_pages = 64;
	ps->max_cached = max_pages;
	for (unsigned i = 0; i < RA_STREAMS; i++)
		ps->last_miss[i] = UINT64_MAX; /* no scan before a first miss */
	for (ps->nhash = 64; ps->nhash < max_pages * 2; ps->nhash *= 2)
		;
	ps->hash = calloc(ps->nhash, sizeof(*ps->hash));
	ps->ios = calloc(max_pages, sizeof(*ps->ios));
	ps->frames = calloc(max_pages, sizeof(*ps->frames));
	ps->slab = mmap(NULL, max_pages * (size_t)HBLK, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ps->slab == MAP_FAILED)
		ps->slab = NULL;
	/* a record reaches the device in one segment, not 254 (iobuf.c) */
	ps->jbuf = hoard_iobuf_alloc(JBUF_SIZE);
	if (posix_memalign((void **)&ps->rabuf, HBLK, RA_PAGES * (size_t)HBLK))
		ps->rabuf = NULL; /* single-page misses */
	if (!ps->hash || !ps->ios || !ps->frames || !ps->slab || !ps->jbuf)
		goto fail;
	r = read_sb(ps, dev_size);
	if (r < 0)
		goto fail;
	/* I5: a transaction may build up to dirty_limit pages plus one
	 * operation's worth; keep that under a quarter of the journal */
	ps->dirty_limit = ps->sb.journal_blocks / 4;
	if (ps->dirty_limit > max_pages / 4)
		ps->dirty_limit = max_pages / 4;
	if (ps->dirty_limit > 64)
		ps->dirty_limit -= 48;
	ps->ckpt_limit = max_pages / 2;
	if (ps->sb.journal_blocks < 256) {
		r = -EUCLEAN;
		goto fail;
	}
	r = replay(ps);
	if (r < 0)
		goto fail;
	r = hps_get(ps, 0, &ps->root_pg);
	if (r < 0)
		goto fail;
	if (!root_ok(ps)) {
		r = -EUCLEAN;
		goto fail;
	}
	if (ps->lsn <= ((struct hpage_hdr *)ps->root_pg->data)->lsn)
		ps->lsn = ((struct hpage_hdr *)ps->root_pg->data)->lsn + 1;
	*psp = ps;
	return 0;
fail:
	hps_close(ps);
	return r;
}

void hps_close(struct hpage_store *ps)
{
	if (!ps)
		return;
	if (ps->slab)
		munmap(ps->slab, ps->max_cached * (size_t)HBLK);
	free(ps->frames);
	free(ps->hash);
	free(ps->ios);
	hoard_iobuf_free(ps->jbuf, JBUF_SIZE);
	free(ps->rabuf);
	free(ps);
}
