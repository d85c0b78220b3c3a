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
	struct hpage *dnext;               /* dirty / journaled list */
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

static inline void *hps_body(struct hpage *pg)
{
	return pg->data + HPAGE_DATA_OFF;
}

#endif
