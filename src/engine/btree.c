/*
 * btree.c - the B+tree of btree.h: node layout and validation, search,
 * insert and replace with splits, delete with freeing of empty pages and
 * root collapse, seek, and the fsck walk (hbt_check).
 *
 * Owns the bodies (hps_body) of HPT_BT_LEAF and HPT_BT_INNER pages.  Does
 * not own the page header, caching, journaling or page allocation (page.c)
 * nor where root/height are persisted (the caller, cache.c).
 *
 * Node layout (docs/FORMAT.md, "B+tree pages", gives the byte offsets):
 *   leaf:  struct bt_leaf_hdr, then a slot array sorted by key growing up
 *          from offset 16, then free space, then the value heap growing
 *          down from the end of the body.  Slot i = {key, off, len}: its
 *          value is body[off .. off+len).  Space freed by deletes and
 *          replaces is reclaimed by rebuilding the leaf (leaf_build).
 *   inner: struct bt_inner: nkeys sorted separator keys and nkeys + 1
 *          child page numbers; child i holds the keys k with
 *          key[i-1] <= k < key[i] (missing bounds are the node's own).
 *
 * Invariants:
 *   I1 every page is validated when it is pinned (node_get: page type,
 *      level, counts, offsets), so a corrupt page yields -EUCLEAN and never
 *      an out-of-bounds access; the code below relies on it for every
 *      index and offset it reads from a node.
 *   I2 leaves are at level 0, an inner node at level L has children at
 *      level L-1, the root is at level height-1 < BT_MAXH.  Levels strictly
 *      decrease on the way down, so no walk can loop or recurse unbounded.
 *   I3 a leaf other than the root is never empty (hbt_del frees it), and an
 *      inner root has at least one key (hbt_del collapses it).
 *   I4 in a leaf, end of slot array <= heap <= the offset of every
 *      non-empty value, and the values do not overlap.
 *   I5 hbt_put and hbt_del pin, dirty and allocate every page they will
 *      change before changing any: an error from the page store leaves the
 *      tree as it was.  The one exception is hps_free failing after a
 *      delete took effect: the error is returned, the tree is consistent,
 *      the page leaks until fsck.
 *   Pins: an operation holds at most 2 * height + 1 pages at once (the
 *   root-to-leaf path plus one new page per split level and a new root).
 */
#include "btree.h"

#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define BT_MAXH 16u /* deepest tree accepted; with fanout >= 2 unreachable */

struct bt_leaf_hdr {
	uint16_t nslots;   /* entries in the slot array */
	uint16_t level;    /* always 0 */
	uint16_t heap;     /* body offset of the lowest value byte */
	uint16_t pad0;     /* 0 */
	uint64_t reserved; /* 0 (room for a right-sibling pointer) */
} __attribute__((packed));
_Static_assert(sizeof(struct bt_leaf_hdr) == 16, "leaf header");

struct bt_slot {
	struct hbt_key key;
	uint16_t off; /* body offset of the value (>= heap) */
	uint16_t len; /* value bytes, <= HBT_VAL_MAX */
} __attribute__((packed));
_Static_assert(sizeof(struct bt_slot) == 28, "leaf slot");

#define BT_LHDR ((unsigned)sizeof(struct bt_leaf_hdr))
#define BT_SLOT ((unsigned)sizeof(struct bt_slot))
#define BT_LEAF_MAXSLOTS ((HPAGE_BODY - BT_LHDR) / BT_SLOT) /* 144 */
/* Every leaf can hold three maximal entries, so splitting one leaf in two
 * always makes room for one more entry. */
_Static_assert(BT_LHDR + 3 * (BT_SLOT + HBT_VAL_MAX) <= HPAGE_BODY,
	       "a leaf holds three maximal values");

#define BT_IMAX 126u /* separator keys per inner node; fanout 127 */

struct bt_inner {
	uint16_t nkeys;    /* separator keys; children = nkeys + 1 */
	uint16_t level;    /* >= 1: height above the leaves */
	uint32_t pad0;     /* 0 */
	uint64_t reserved; /* 0 */
	struct hbt_key key[BT_IMAX];
	uint64_t child[BT_IMAX + 1];
	uint8_t pad1[8]; /* 0 */
} __attribute__((packed));
_Static_assert(sizeof(struct bt_inner) == HPAGE_BODY, "inner node fills the body");
_Static_assert(offsetof(struct bt_inner, child) == 3040, "inner child offset");

/* Byte pointers into packed arrays (no address-of-packed-member). */
#define IN_KEYP(in, i) ((uint8_t *)(in) + offsetof(struct bt_inner, key) + (size_t)(i) * sizeof(struct hbt_key))
#define IN_CHILDP(in, i) ((uint8_t *)(in) + offsetof(struct bt_inner, child) + (size_t)(i) * 8u)

/* One leaf entry while a leaf is rebuilt or split; val points into a copy. */
struct bt_ent {
	struct hbt_key key;
	const uint8_t *val;
	unsigned len;
};

/* The pinned root-to-leaf path of hbt_put / hbt_del. */
struct bt_path {
	unsigned n;                 /* pages pinned: pg[0] root .. pg[n-1] */
	struct hpage *pg[BT_MAXH];
	unsigned idx[BT_MAXH];      /* child index taken in inner pg[d] */
};

static inline int kcmp(const struct hbt_key *x, const struct hbt_key *y)
{
	if (x->type != y->type)
		return x->type < y->type ? -1 : 1;
	if (x->a != y->a)
		return x->a < y->a ? -1 : 1;
	if (x->b != y->b)
		return x->b < y->b ? -1 : 1;
	if (x->c != y->c)
		return x->c < y->c ? -1 : 1;
	return 0;
}

int hbt_key_cmp(const struct hbt_key *x, const struct hbt_key *y)
{
	return kcmp(x, y);
}

static inline struct bt_leaf_hdr *lhdr(uint8_t *b)
{
	return (struct bt_leaf_hdr *)b;
}

static inline struct bt_slot *lslot(uint8_t *b, unsigned i)
{
	return (struct bt_slot *)(b + BT_LHDR + (size_t)i * BT_SLOT);
}

static inline struct bt_inner *inode(uint8_t *b)
{
	return (struct bt_inner *)b;
}

static inline uint16_t page_type(const struct hpage *pg)
{
	return ((const struct hpage_hdr *)pg->data)->type;
}

/* NULL if leaf body @b is structurally sound (I4, bounds), else why not.
 * Key order is checked by hbt_check, not here: binary search over
 * misordered keys gives wrong answers but stays in bounds. */
static const char *leaf_problem(uint8_t *b)
{
	const struct bt_leaf_hdr *h = lhdr(b);
	size_t end = BT_LHDR + (size_t)h->nslots * BT_SLOT, used = end;

	if (h->level != 0)
		return "leaf level is not 0";
	if (h->nslots > BT_LEAF_MAXSLOTS)
		return "leaf slot count too large";
	if (h->heap < end || h->heap > HPAGE_BODY)
		return "leaf heap offset out of range";
	for (unsigned i = 0; i < h->nslots; i++) {
		const struct bt_slot *s = lslot(b, i);

		if (s->len > HBT_VAL_MAX)
			return "leaf value longer than HBT_VAL_MAX";
		/* an empty value's offset is never dereferenced */
		if (s->len ? s->off < h->heap || (size_t)s->off + s->len > HPAGE_BODY
			   : s->off > HPAGE_BODY)
			return "leaf value outside the heap";
		used += s->len;
	}
	if (used > HPAGE_BODY)
		return "leaf values overflow the page";
	return NULL;
}

static const char *inner_problem(uint8_t *b, unsigned level)
{
	const struct bt_inner *in = inode(b);

	if (in->level != level)
		return "inner node at the wrong level";
	if (in->nkeys > BT_IMAX)
		return "inner key count too large";
	return NULL;
}

/* Pin page @pgno, which must be a valid node at @level (I1, I2). */
static int node_get(struct hbt *t, uint64_t pgno, unsigned level, struct hpage **pgp)
{
	struct hpage *pg;
	int err = hps_get(t->ps, pgno, &pg);

	if (err)
		return err;
	if (level == 0 ? page_type(pg) != HPT_BT_LEAF || leaf_problem(hps_body(pg))
		       : page_type(pg) != HPT_BT_INNER || inner_problem(hps_body(pg), level)) {
		hps_put(t->ps, pg);
		return -EUCLEAN;
	}
	*pgp = pg;
	return 0;
}

static int height_ok(const struct hbt *t)
{
	return t->height >= 1 && t->height <= BT_MAXH;
}

/* First slot with key >= @key (> @key if @after); *eq: it equals @key. */
static unsigned leaf_search(uint8_t *b, const struct hbt_key *key, int after, int *eq)
{
	unsigned lo = 0, hi = lhdr(b)->nslots;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		int c = kcmp(&lslot(b, mid)->key, key);

		if (c < 0 || (after && c == 0))
			lo = mid + 1;
		else
			hi = mid;
	}
	if (eq)
		*eq = !after && lo < lhdr(b)->nslots && kcmp(&lslot(b, lo)->key, key) == 0;
	return lo;
}

/* Index of the child of @in that covers @key: the number of keys <= @key. */
static unsigned inner_search(const struct bt_inner *in, const struct hbt_key *key)
{
	unsigned lo = 0, hi = in->nkeys;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;

		if (kcmp(&in->key[mid], key) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Descend to the leaf covering @key, holding one pin at a time.  If @hi is
 * given, it receives the tightest separator above the leaf (*has_hi 1) or
 * *has_hi stays 0 for the rightmost leaf. */
static int leaf_find(struct hbt *t, const struct hbt_key *key, struct hpage **pgp,
		     struct hbt_key *hi, int *has_hi)
{
	uint64_t pgno = t->root;

	if (!height_ok(t))
		return -EUCLEAN;
	for (unsigned level = t->height - 1;; level--) {
		struct hpage *pg;
		int err = node_get(t, pgno, level, &pg);

		if (err)
			return err;
		if (level == 0) {
			*pgp = pg;
			return 0;
		}
		const struct bt_inner *in = inode(hps_body(pg));
		unsigned i = inner_search(in, key);

		if (hi && i < in->nkeys) {
			*hi = in->key[i];
			*has_hi = 1;
		}
		pgno = in->child[i];
		hps_put(t->ps, pg);
	}
}

static void path_put(struct hbt *t, struct bt_path *p)
{
	while (p->n)
		hps_put(t->ps, p->pg[--p->n]);
}

/* Pin the whole root-to-leaf path for @key; on error the caller still
 * path_put()s what was pinned. */
static int path_get(struct hbt *t, const struct hbt_key *key, struct bt_path *p)
{
	uint64_t pgno = t->root;

	p->n = 0;
	if (!height_ok(t))
		return -EUCLEAN;
	for (unsigned d = 0; d < t->height; d++) {
		unsigned level = t->height - 1 - d;
		int err = node_get(t, pgno, level, &p->pg[d]);

		if (err)
			return err;
		p->n++;
		if (level) {
			const struct bt_inner *in = inode(hps_body(p->pg[d]));

			p->idx[d] = inner_search(in, key);
			pgno = in->child[p->idx[d]];
		}
	}
	return 0;
}

int hbt_create(struct hbt *t)
{
	struct hpage *pg;
	int err = hps_alloc(t->ps, HPT_BT_LEAF, &pg);

	if (err)
		return err;
	memset(hps_body(pg), 0, HPAGE_BODY);
	lhdr(hps_body(pg))->heap = HPAGE_BODY;
	t->root = pg->pgno;
	t->height = 1;
	hps_put(t->ps, pg);
	return 0;
}

int hbt_get(struct hbt *t, const struct hbt_key *key, void *val, size_t cap)
{
	struct hpage *pg;
	int eq, err = leaf_find(t, key, &pg, NULL, NULL);

	if (err)
		return err;
	uint8_t *b = hps_body(pg);
	unsigned i = leaf_search(b, key, 0, &eq);

	if (eq) {
		const struct bt_slot *s = lslot(b, i);
		size_t n = s->len < cap ? s->len : cap;

		if (n)
			memcpy(val, b + s->off, n);
		err = s->len;
	} else {
		err = -ENOENT;
	}
	hps_put(t->ps, pg);
	return err;
}

int hbt_seek(struct hbt *t, const struct hbt_key *key, int after,
	     struct hbt_key *found, void *val, size_t cap)
{
	struct hbt_key cur = *key;

	for (;;) {
		struct hbt_key hi;
		struct hpage *pg;
		int has_hi = 0, err = leaf_find(t, &cur, &pg, &hi, &has_hi);

		if (err)
			return err;
		uint8_t *b = hps_body(pg);
		unsigned i = leaf_search(b, &cur, after, NULL);

		if (i < lhdr(b)->nslots) {
			const struct bt_slot *s = lslot(b, i);
			size_t n = s->len < cap ? s->len : cap;

			*found = s->key;
			if (n)
				memcpy(val, b + s->off, n);
			err = s->len;
			hps_put(t->ps, pg);
			return err;
		}
		hps_put(t->ps, pg);
		/* Nothing left in this leaf: the next key, if any, is the
		 * first one >= the separator that bounds the leaf above.
		 * Separators strictly increase, so this terminates. */
		if (!has_hi)
			return -ENOENT;
		if (kcmp(&hi, &cur) <= 0)
			return -EUCLEAN;
		cur = hi;
		after = 0;
	}
}

/* Entries of leaf body @b (a private copy) with (@key, @val, @len) placed at
 * slot @idx, replacing the entry there if @found.  Returns the count. */
static unsigned leaf_ents(uint8_t *b, unsigned idx, int found, const struct hbt_key *key,
			  const void *val, unsigned len, struct bt_ent *e)
{
	unsigned n = lhdr(b)->nslots, k = 0;
	struct bt_ent ne = { *key, val, len };

	for (unsigned i = 0; i < n; i++) {
		if (i == idx) {
			e[k++] = ne;
			if (found)
				continue;
		}
		e[k].key = lslot(b, i)->key;
		e[k].val = b + lslot(b, i)->off;
		e[k].len = lslot(b, i)->len;
		k++;
	}
	if (idx >= n)
		e[k++] = ne;
	return k;
}

static size_t ents_bytes(const struct bt_ent *e, unsigned n)
{
	size_t sz = BT_LHDR;

	for (unsigned i = 0; i < n; i++)
		sz += BT_SLOT + e[i].len;
	return sz;
}

/* Write a compact leaf holding @e[0..n) into body @b.  The caller has
 * checked ents_bytes(e, n) <= HPAGE_BODY; @e must not point into @b. */
static void leaf_build(uint8_t *b, const struct bt_ent *e, unsigned n)
{
	struct bt_leaf_hdr *h = lhdr(b);
	size_t off = HPAGE_BODY, end = BT_LHDR + (size_t)n * BT_SLOT;

	for (unsigned i = 0; i < n; i++) {
		struct bt_slot *s = lslot(b, i);

		off -= e[i].len;
		if (e[i].len)
			memcpy(b + off, e[i].val, e[i].len);
		s->key = e[i].key;
		s->off = (uint16_t)off;
		s->len = (uint16_t)e[i].len;
	}
	memset(b + end, 0, off - end);
	h->nslots = (uint16_t)n;
	h->level = 0;
	h->heap = (uint16_t)off;
	h->pad0 = 0;
	h->reserved = 0;
}

/* Where to split @e[0..n) in two leaves that both fit, as even as
 * possible by bytes: entries [0, *mp) go left. */
static int leaf_split_point(const struct bt_ent *e, unsigned n, unsigned *mp)
{
	size_t total = ents_bytes(e, n) - BT_LHDR, left = 0, best = (size_t)-1;

	*mp = 0;
	for (unsigned m = 1; m < n; m++) {
		left += BT_SLOT + e[m - 1].len;
		size_t right = total - left, worst = left > right ? left : right;

		if (BT_LHDR + worst <= HPAGE_BODY && worst < best) {
			best = worst;
			*mp = m;
		}
	}
	return *mp ? 0 : -EUCLEAN; /* only a corrupt leaf cannot be split */
}

/* Insert separator @sep with right child @right after child @ci. */
static void inner_insert(struct bt_inner *in, unsigned ci, const struct hbt_key *sep,
			 uint64_t right)
{
	unsigned n = in->nkeys;

	memmove(IN_KEYP(in, ci + 1), IN_KEYP(in, ci), (size_t)(n - ci) * sizeof(struct hbt_key));
	memmove(IN_CHILDP(in, ci + 2), IN_CHILDP(in, ci + 1), (size_t)(n - ci) * 8u);
	in->key[ci] = *sep;
	in->child[ci + 1] = right;
	in->nkeys = (uint16_t)(n + 1);
}

/* Remove child @ci and one separator next to it. */
static void inner_remove(struct bt_inner *in, unsigned ci)
{
	unsigned n = in->nkeys, k = ci ? ci - 1 : 0;

	memmove(IN_KEYP(in, k), IN_KEYP(in, k + 1), (size_t)(n - 1 - k) * sizeof(struct hbt_key));
	memmove(IN_CHILDP(in, ci), IN_CHILDP(in, ci + 1), (size_t)(n - ci) * 8u);
	memset(IN_KEYP(in, n - 1), 0, sizeof(struct hbt_key));
	in->child[n] = 0;
	in->nkeys = (uint16_t)(n - 1);
}

/* @l is full (BT_IMAX keys): insert (@sep, @right) after child @ci and
 * move the upper half to the empty node @r (page @rpgno).  On return
 * *sep and *right are the separator and page to insert one level up. */
static void inner_split(struct bt_inner *l, struct bt_inner *r, uint64_t rpgno, unsigned ci,
			struct hbt_key *sep, uint64_t *right)
{
	struct hbt_key k[BT_IMAX + 1];
	uint64_t c[BT_IMAX + 2];
	unsigned n = l->nkeys, mid = (BT_IMAX + 1) / 2;

	for (unsigned i = 0, j = 0; i <= n; i++) {
		if (i == ci)
			k[j++] = *sep;
		if (i < n)
			k[j++] = l->key[i];
	}
	for (unsigned i = 0, j = 0; i <= n; i++) {
		c[j++] = l->child[i];
		if (i == ci)
			c[j++] = *right;
	}
	memset(r, 0, sizeof(*r));
	r->level = l->level;
	r->nkeys = (uint16_t)(n - mid);
	for (unsigned i = 0; i < n - mid; i++)
		r->key[i] = k[mid + 1 + i];
	for (unsigned i = 0; i <= n - mid; i++)
		r->child[i] = c[mid + 1 + i];
	memset(IN_KEYP(l, 0), 0, offsetof(struct bt_inner, pad1) - offsetof(struct bt_inner, key));
	l->nkeys = (uint16_t)mid;
	for (unsigned i = 0; i < mid; i++)
		l->key[i] = k[i];
	for (unsigned i = 0; i <= mid; i++)
		l->child[i] = c[i];
	*sep = k[mid];
	*right = rpgno;
}

/* The leaf of path @p is too full for @e[0..ne): split it, and every full
 * inner node above it, allocating all new pages before changing any. */
static int put_split(struct hbt *t, struct bt_path *p, struct bt_ent *e, unsigned ne)
{
	struct hpage *fresh[BT_MAXH + 1];
	unsigned hgt = p->n, nfresh = 0, need, m;
	int d, err = leaf_split_point(e, ne, &m);

	if (err)
		return err;
	/* d: the deepest inner node that takes a key without splitting. */
	for (d = (int)hgt - 2; d >= 0 && inode(hps_body(p->pg[d]))->nkeys >= BT_IMAX; d--)
		;
	if (d < 0 && hgt >= BT_MAXH)
		return -ENOSPC;
	need = 1 + (unsigned)((int)hgt - 2 - d) + (d < 0);
	for (unsigned i = d < 0 ? 0 : (unsigned)d; i < hgt; i++) {
		err = hps_dirty(t->ps, p->pg[i]);
		if (err)
			return err;
	}
	do { /* need >= 1: the new leaf first, then inner nodes */
		err = hps_alloc(t->ps, nfresh ? HPT_BT_INNER : HPT_BT_LEAF, &fresh[nfresh]);
		if (err)
			goto out_free;
	} while (++nfresh < need);

	/* No failure is possible from here on (I5). */
	struct hbt_key sep = e[m].key;
	uint64_t right = fresh[0]->pgno;
	unsigned f = 1;

	leaf_build(hps_body(p->pg[hgt - 1]), e, m);
	leaf_build(hps_body(fresh[0]), e + m, ne - m);
	for (int dd = (int)hgt - 2; dd > d; dd--, f++)
		inner_split(inode(hps_body(p->pg[dd])), inode(hps_body(fresh[f])), fresh[f]->pgno,
			    p->idx[dd], &sep, &right);
	if (d >= 0) {
		inner_insert(inode(hps_body(p->pg[d])), p->idx[d], &sep, right);
	} else {
		struct bt_inner *nr = inode(hps_body(fresh[f]));

		memset(nr, 0, sizeof(*nr));
		nr->level = (uint16_t)hgt;
		nr->nkeys = 1;
		nr->key[0] = sep;
		nr->child[0] = t->root;
		nr->child[1] = right;
		t->root = fresh[f]->pgno;
		t->height = hgt + 1;
	}
	while (nfresh)
		hps_put(t->ps, fresh[--nfresh]);
	return 0;

out_free:
	while (nfresh) {
		uint64_t pgno = fresh[--nfresh]->pgno;

		hps_put(t->ps, fresh[nfresh]);
		hps_free(t->ps, pgno); /* the original error is what matters */
	}
	return err;
}

int hbt_put(struct hbt *t, const struct hbt_key *key, const void *val, size_t len)
{
	struct bt_path p;
	struct bt_ent e[BT_LEAF_MAXSLOTS + 1];
	uint8_t copy[HPAGE_BODY];
	int found, err;

	if (len > HBT_VAL_MAX)
		return -EINVAL;
	err = path_get(t, key, &p);
	if (err)
		goto out;

	struct hpage *lp = p.pg[p.n - 1];
	uint8_t *b = hps_body(lp);
	struct bt_leaf_hdr *h = lhdr(b);
	unsigned n = h->nslots, idx = leaf_search(b, key, 0, &found);
	size_t avail = h->heap - (BT_LHDR + (size_t)n * BT_SLOT);

	/* Fast paths: the value fits in place or in the free gap. */
	if (found && (len <= lslot(b, idx)->len || len <= avail)) {
		struct bt_slot *s = lslot(b, idx);

		err = hps_dirty(t->ps, lp);
		if (err)
			goto out;
		if (len > s->len) {
			h->heap = (uint16_t)(h->heap - len);
			s->off = h->heap;
		}
		if (len)
			memcpy(b + s->off, val, len);
		s->len = (uint16_t)len;
		goto out;
	}
	if (!found && BT_SLOT + len <= avail) {
		err = hps_dirty(t->ps, lp);
		if (err)
			goto out;
		memmove(lslot(b, idx + 1), lslot(b, idx), (size_t)(n - idx) * BT_SLOT);
		h->heap = (uint16_t)(h->heap - len);
		struct bt_slot *s = lslot(b, idx);

		s->key = *key;
		s->off = h->heap;
		s->len = (uint16_t)len;
		if (len)
			memcpy(b + s->off, val, len);
		h->nslots = (uint16_t)(n + 1);
		goto out;
	}

	/* Slow paths: rebuild the leaf compactly, or split it. */
	memcpy(copy, b, HPAGE_BODY);
	unsigned ne = leaf_ents(copy, idx, found, key, val, (unsigned)len, e);

	if (ents_bytes(e, ne) <= HPAGE_BODY) {
		err = hps_dirty(t->ps, lp);
		if (!err)
			leaf_build(b, e, ne);
	} else {
		err = put_split(t, &p, e, ne);
	}
out:
	path_put(t, &p);
	return err;
}

int hbt_del(struct hbt *t, const struct hbt_key *key)
{
	struct bt_path p;
	uint64_t freel[2 * BT_MAXH];
	unsigned nfree = 0;
	int found, d, err = path_get(t, key, &p);

	if (err)
		goto out;

	unsigned hgt = p.n;
	struct hpage *lp = p.pg[hgt - 1];
	uint8_t *b = hps_body(lp);
	struct bt_leaf_hdr *h = lhdr(b);
	unsigned idx = leaf_search(b, key, 0, &found);

	if (!found) {
		err = -ENOENT;
		goto out;
	}
	if (h->nslots > 1 || hgt == 1) {
		struct bt_slot *s = lslot(b, idx);

		err = hps_dirty(t->ps, lp);
		if (err)
			goto out;
		if (s->off == h->heap) /* topmost value: give its bytes back */
			h->heap = (uint16_t)(h->heap + s->len);
		memmove(s, lslot(b, idx + 1), (size_t)(h->nslots - 1 - idx) * BT_SLOT);
		h->nslots--;
		memset(lslot(b, h->nslots), 0, BT_SLOT);
		if (!h->nslots)
			h->heap = HPAGE_BODY;
		goto out;
	}

	/* The leaf would become empty: unlink it, and the single-child inner
	 * nodes above it, from the deepest ancestor with a key to spare (I3). */
	for (d = (int)hgt - 2; d >= 0 && inode(hps_body(p.pg[d]))->nkeys == 0; d--)
		;
	if (d < 0) {
		/* A chain of single-child nodes (not made by this code): the
		 * tree becomes its leaf, emptied. */
		err = hps_dirty(t->ps, lp);
		if (err)
			goto out;
		memset(b, 0, HPAGE_BODY);
		h->heap = HPAGE_BODY;
		for (unsigned i = 0; i + 1 < hgt; i++)
			freel[nfree++] = p.pg[i]->pgno;
		t->root = lp->pgno;
		t->height = 1;
	} else if (d == 0 && inode(hps_body(p.pg[0]))->nkeys == 1) {
		/* The root keeps one child: that child (past any single-child
		 * nodes below it) becomes the root; nothing is modified. */
		const struct bt_inner *root = inode(hps_body(p.pg[0]));
		uint64_t chain[BT_MAXH], nroot = root->child[1 - p.idx[0]];
		unsigned nchain = 0, level = hgt - 2;

		while (level > 0) {
			struct hpage *pg;

			err = node_get(t, nroot, level, &pg);
			if (err)
				goto out;
			const struct bt_inner *in = inode(hps_body(pg));

			if (in->nkeys) {
				hps_put(t->ps, pg);
				break;
			}
			chain[nchain++] = nroot;
			nroot = in->child[0];
			hps_put(t->ps, pg);
			level--;
		}
		for (unsigned i = 0; i < hgt; i++)
			freel[nfree++] = p.pg[i]->pgno;
		for (unsigned i = 0; i < nchain; i++)
			freel[nfree++] = chain[i];
		t->root = nroot;
		t->height = level + 1;
	} else {
		err = hps_dirty(t->ps, p.pg[d]);
		if (err)
			goto out;
		inner_remove(inode(hps_body(p.pg[d])), p.idx[d]);
		for (unsigned i = (unsigned)d + 1; i < hgt; i++)
			freel[nfree++] = p.pg[i]->pgno;
	}
out:
	path_put(t, &p);
	for (unsigned i = 0; i < nfree; i++) {
		int e = hps_free(t->ps, freel[i]);

		if (e && !err)
			err = e;
	}
	return err;
}

/* ---- hbt_check ---- */

struct bt_ck {
	struct hbt *t;
	int (*fn)(uint64_t pgno, int level, void *arg);
	void (*report)(const char *msg, void *arg);
	void *arg;
	uint64_t nkeys;
	int bad;   /* structural errors reported */
	int ioerr; /* first read error */
};

__attribute__((format(printf, 3, 4))) static void ck_report(struct bt_ck *c, uint64_t pgno,
							    const char *fmt, ...)
{
	char msg[192];
	int n = snprintf(msg, sizeof(msg), "btree page %llu: ", (unsigned long long)pgno);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	c->bad++;
	if (c->report)
		c->report(msg, c->arg);
}

static void ck_leaf(struct bt_ck *c, uint64_t pgno, uint8_t *b, int is_root,
		    const struct hbt_key *lo, const struct hbt_key *hi)
{
	uint8_t used[HPAGE_BODY / 8 + 1] = { 0 };
	const char *why = leaf_problem(b);
	unsigned n = lhdr(b)->nslots;

	if (why) {
		ck_report(c, pgno, "%s", why);
		return;
	}
	if (!n && !is_root)
		ck_report(c, pgno, "empty leaf below the root");
	for (unsigned i = 0; i < n; i++) {
		const struct bt_slot *s = lslot(b, i);

		if (i && kcmp(&lslot(b, i - 1)->key, &s->key) >= 0)
			ck_report(c, pgno, "leaf keys %u and %u out of order", i - 1, i);
		if (lo && kcmp(&s->key, lo) < 0)
			ck_report(c, pgno, "leaf key %u below the parent's separator", i);
		if (hi && kcmp(&s->key, hi) >= 0)
			ck_report(c, pgno, "leaf key %u at or above the parent's separator", i);
		for (unsigned o = s->off; o < (unsigned)s->off + s->len; o++) {
			if (used[o / 8] & (1u << (o % 8))) {
				ck_report(c, pgno, "leaf value %u overlaps another", i);
				break;
			}
			used[o / 8] |= (uint8_t)(1u << (o % 8));
		}
	}
	c->nkeys += n;
}

/* Check the subtree at @pgno, which must be at @level with keys in
 * [lo, hi) (NULL: unbounded).  Recursion depth <= height <= BT_MAXH, one
 * pin per level.  Returns non-zero only to stop the walk. */
static int ck_node(struct bt_ck *c, uint64_t pgno, unsigned level, int is_root,
		   const struct hbt_key *lo, const struct hbt_key *hi)
{
	struct hpage *pg;
	int err = hps_get(c->t->ps, pgno, &pg);

	if (err == -ENOMEM)
		return err;
	if (err) {
		if (c->report) {
			char msg[96];

			snprintf(msg, sizeof(msg), "btree page %llu: unreadable (%d)",
				 (unsigned long long)pgno, err);
			c->report(msg, c->arg);
		}
		if (!c->ioerr)
			c->ioerr = err;
		return 0;
	}
	uint16_t want = level ? HPT_BT_INNER : HPT_BT_LEAF;
	uint8_t *b = hps_body(pg);

	if (page_type(pg) != want) {
		ck_report(c, pgno, "page type %u, expected %u", page_type(pg), want);
		goto out;
	}
	if (c->fn) {
		err = c->fn(pgno, (int)level, c->arg);
		if (err)
			goto out;
	}
	if (level == 0) {
		ck_leaf(c, pgno, b, is_root, lo, hi);
		goto out;
	}

	const char *why = inner_problem(b, level);
	const struct bt_inner *in = inode(b);

	if (why) {
		ck_report(c, pgno, "%s", why);
		goto out;
	}
	if (!in->nkeys && is_root)
		ck_report(c, pgno, "inner root with a single child");
	for (unsigned i = 0; i < in->nkeys; i++) {
		if (i && kcmp(&in->key[i - 1], &in->key[i]) >= 0)
			ck_report(c, pgno, "separators %u and %u out of order", i - 1, i);
		if ((lo && kcmp(&in->key[i], lo) < 0) || (hi && kcmp(&in->key[i], hi) > 0))
			ck_report(c, pgno, "separator %u outside the parent's bounds", i);
	}
	for (unsigned i = 0; i <= in->nkeys && !err; i++)
		err = ck_node(c, in->child[i], level - 1, 0, i ? &in->key[i - 1] : lo,
			      i < in->nkeys ? &in->key[i] : hi);
out:
	hps_put(c->t->ps, pg);
	return err;
}

int hbt_check(struct hbt *t, int (*fn)(uint64_t pgno, int level, void *arg),
	      void (*report)(const char *msg, void *arg), void *arg, uint64_t *nkeys)
{
	struct bt_ck c = { .t = t, .fn = fn, .report = report, .arg = arg };
	int err;

	if (!height_ok(t)) {
		ck_report(&c, t->root, "tree height %u out of range 1..%u", t->height, BT_MAXH);
		err = -EUCLEAN;
	} else {
		err = ck_node(&c, t->root, t->height - 1, 1, NULL, NULL);
	}
	if (nkeys)
		*nkeys = c.nkeys;
	if (err)
		return err;
	return c.bad ? -EUCLEAN : c.ioerr;
}
