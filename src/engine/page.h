/*
 * page.h - the metadata page store: fixed 4 KiB pages addressed by page
 * number, read through a bounded cache, changed through a write-ahead
 * journal (see page.c and docs/FORMAT.md).
 *
 * Transactions are implicit: every change made since the last commit is
 * committed atomically by the next hps_commit().  The caller (cache.c)
 * holds its engine lock across every multi-page change (a B+tree split,
 * for instance), and takes the same lock to commit, so a commit never sees
 * half an operation.  INVARIANT relied on by btree.c and cache.c.
 *
 * Every page starts with struct hpage_hdr; hps_commit fills csum/pgno/lsn,
 * callers set only the type.  Usable bytes: HPAGE_DATA_OFF..4095.
 */
#ifndef HOARDFS_ENGINE_PAGE_H
#define HOARDFS_ENGINE_PAGE_H

#include <stdint.h>
#include "format.h"

struct hpage_store;

struct hpage {
	uint64_t pgno;
	uint8_t *data;  /* HOARD_BLOCK_SIZE bytes, aligned; header first */
	/* private to page.c below */
	uint32_t pins;
	uint32_t flags;
	struct hpage *hnext;               /* hash chain */
	struct hpage *lru_prev, *lru_next; /* clean unpinned pages */
	struct hpage *dnext;               /* dirty list */
	struct hpage *jnext;               /* journaled, not yet checkpointed */
};

/* Read page @pgno (verifying its checksum) and pin it.  -EIO if it fails
 * verification (counted), -ENOMEM if every cached page is pinned. */
int hps_get(struct hpage_store *ps, uint64_t pgno, struct hpage **pgp);
/* Unpin. */
void hps_put(struct hpage_store *ps, struct hpage *pg);
/* Declare that the caller is about to modify @pg (pinned).  Must be called
 * before the first change in a transaction.  -EROFS if read-only. */
int hps_dirty(struct hpage_store *ps, struct hpage *pg);
/* Allocate a page of @type from the metadata area: zeroed, dirty, pinned.
 * -ENOSPC if the metadata area is full. */
int hps_alloc(struct hpage_store *ps, uint16_t type, struct hpage **pgp);
/* Return page @pgno to the free map (the caller holds no pin on it). */
int hps_free(struct hpage_store *ps, uint64_t pgno);

/* ---- lifecycle (cache.c, format.c, fsck) ---- */

struct hps_stats {
	uint64_t cached, dirty, journaled, max_cached;
	uint64_t csum_errors, io_errors, commits, checkpoints, replayed;
	uint64_t prefetched; /* neighbours a miss read along (hps_get) */
	uint64_t dev_reads, dev_writes, flushes;
};

/* Open the page store on @dev: pick the newer valid superblock, replay
 * the journal (bounded by its size), pin the root page.  At most
 * @max_pages pages are cached.  -EUCLEAN: no valid superblock, -EPROTO:
 * unsupported version. */
int hps_open(const struct hoard_dev_ops *ops, struct hoard_dev *dev,
	     uint64_t dev_size, int read_only, size_t max_pages,
	     struct hpage_store **psp);
void hps_close(struct hpage_store *ps);
/* Make every change so far durable: flush the device (data written before
 * the commit is durable before the metadata that points at it), write the
 * dirty pages to the journal, flush.  Checkpoints when the journal is half
 * full.  A failure makes the store read-only for good (sticky). */
int hps_commit(struct hpage_store *ps);
/* A commit in two halves, for a caller that runs the flushes without the
 * lock it keeps the store under: it flushes the device itself after the
 * last data write any dirty page points at (I4), then hps_commit_write()
 * writes the journal records (1: records written, flush them; 0: nothing
 * to commit, or the journal was due for a checkpoint, which it ran while
 * no page was dirty (I2) and whose flushes covered the records; < 0
 * failed, sticky), then the caller flushes and hands the result to
 * hps_commit_done().  Meanwhile the pages are journaled; changes go into
 * the next transaction; any hps_commit() flushes the records too (so
 * hps_commit() with nothing dirty still makes them durable). */
int hps_commit_write(struct hpage_store *ps);
/* 1 while something is left for a commit to do (dirty pages, records not
 * yet flushed). */
int hps_pending(struct hpage_store *ps);
int hps_commit_done(struct hpage_store *ps, int flush_result);
/* Commit, then write every journaled page home and reset the journal. */
int hps_checkpoint(struct hpage_store *ps);
/* 1 when enough pages are dirty or journaled that a commit should run. */
int hps_need_commit(struct hpage_store *ps);
struct hroot *hps_root(struct hpage_store *ps);
int hps_dirty_root(struct hpage_store *ps);
const struct hoard_sb *hps_sb(struct hpage_store *ps);
int hps_is_read_only(struct hpage_store *ps);
/* Make the store read-only (sticky) after a failed metadata write. */
void hps_fail(struct hpage_store *ps, int err);
void hps_get_stats(struct hpage_store *ps, struct hps_stats *st);
/* Synchronous device I/O through the device table (buf aligned). */
int hps_io(struct hpage_store *ps, int op, void *buf, size_t len, uint64_t off);
int hoard_dev_io(const struct hoard_dev_ops *ops, struct hoard_dev *dev,
		 int op, void *buf, size_t len, uint64_t off);
/* Fill in a page header (magic, pgno, lsn, type) and its checksum. */
void hps_seal(void *page, uint64_t pgno, uint16_t type, uint64_t lsn);
/* Verify a page image read from @pgno: 0, or -EIO. */
int hps_verify(const void *page, uint64_t pgno);
/* Superblock checksum helpers. */
void hoard_sb_seal(struct hoard_sb *sb);
int hoard_sb_valid(const struct hoard_sb *sb);
/* Whether page @pgno is marked allocated in the bitmap (fsck). */
int hps_is_allocated(struct hpage_store *ps, uint64_t pgno);

static inline void *hps_body(struct hpage *pg)
{
	return pg->data + HPAGE_DATA_OFF;
}

#endif
