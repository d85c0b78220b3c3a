/*
 * btree.h - a B+tree of fixed 24-byte keys (struct hbt_key) and
 * variable-length values (at most HBT_VAL_MAX bytes) stored in page-store
 * pages (page.h).  Updates in place; atomicity comes from the page store's
 * journal, so the tree has no copy-on-write of its own.
 *
 * Not thread-safe: the caller (cache.c) serialises every call with its
 * engine lock.  Lookups cost O(height) page reads; height is O(log n).
 * Deletion frees empty pages but does not rebalance underfull ones.
 */
#ifndef HOARDFS_ENGINE_BTREE_H
#define HOARDFS_ENGINE_BTREE_H

#include <stddef.h>
#include "format.h"
#include "page.h"

#define HBT_VAL_MAX 1100u

struct hbt {
	struct hpage_store *ps;
	uint64_t root;    /* root page number */
	uint32_t height;  /* 1 = the root is a leaf */
	/* the caller saves root/height into the root page after changes */
};

int hbt_key_cmp(const struct hbt_key *x, const struct hbt_key *y);

/* Create an empty tree (one leaf). */
int hbt_create(struct hbt *t);
/* Copy the value of @key into @val (at most @cap bytes); returns the
 * value's full length or -ENOENT. */
int hbt_get(struct hbt *t, const struct hbt_key *key, void *val, size_t cap);
/* Insert or replace. -EINVAL if len > HBT_VAL_MAX, -ENOSPC, -EIO, -EROFS. */
int hbt_put(struct hbt *t, const struct hbt_key *key, const void *val,
	    size_t len);
/* Delete; -ENOENT if absent. */
int hbt_del(struct hbt *t, const struct hbt_key *key);
/* Find the first key >= @key (> @key if @after): copies it to *found and
 * its value to @val (at most @cap bytes); returns the value length, or
 * -ENOENT if there is none. */
int hbt_seek(struct hbt *t, const struct hbt_key *key, int after,
	     struct hbt_key *found, void *val, size_t cap);
/* Visit every page of the tree (fsck): calls fn(pgno, level, arg) for each,
 * and checks ordering and bounds; returns 0, the first non-zero fn result,
 * or -EUCLEAN on a structural error (details passed to @report). */
int hbt_check(struct hbt *t, int (*fn)(uint64_t pgno, int level, void *arg),
	      void (*report)(const char *msg, void *arg), void *arg,
	      uint64_t *nkeys);

#endif
