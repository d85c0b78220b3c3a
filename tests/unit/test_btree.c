/*
 * test_btree.c - Description: the B+tree (src/engine/btree.c) against a
 * sorted-array model, over the in-memory page store of test_btree_helper.c
 * (pins counted, hps_dirty discipline checked, faults injected).
 *
 * Covers: key order; put/get/replace/delete semantics; 200,000 seeded
 * random operations (HBT_SEED / HBT_OPS override) compared with the model;
 * seek across leaf boundaries and gaps; growth to four levels and
 * collapse back to one leaf with every page freed; hbt_check on good trees
 * and on scrambled nodes (which no operation may crash on); injected
 * -EIO/-EROFS/-ENOSPC/-ENOMEM leaving no pins and the tree unchanged.
 * Every failure prints what was expected and what was got.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <time.h>
#include <cmocka.h>

#include "engine/btree.h"

/* test_btree_helper.c */
enum { TH_GET, TH_DIRTY, TH_ALLOC, TH_FREE, TH_NOPS };
struct th_snap;
struct hpage_store *th_new(uint32_t npages);
void th_destroy(struct hpage_store *ps);
uint32_t th_pins(struct hpage_store *ps);
uint32_t th_pins_max(struct hpage_store *ps, int reset);
void th_set_pin_limit(struct hpage_store *ps, uint32_t limit);
uint64_t th_allocated(struct hpage_store *ps);
int th_is_allocated(struct hpage_store *ps, uint64_t pgno);
void th_fail(struct hpage_store *ps, int op, unsigned long nth, int err);
void th_fail_off(struct hpage_store *ps);
unsigned long th_fired(struct hpage_store *ps);
unsigned long th_gets_of_free(struct hpage_store *ps);
void th_commit(struct hpage_store *ps);
uint8_t *th_page(struct hpage_store *ps, uint64_t pgno);
void th_set_bad(struct hpage_store *ps, uint64_t pgno, int bad);
void th_set_lenient(struct hpage_store *ps, int on);
struct th_snap *th_snapshot(struct hpage_store *ps);
void th_restore(struct hpage_store *ps, struct th_snap *s);
void th_snap_free(struct th_snap *s);

/* Node layout, from docs/FORMAT.md "B+tree pages" (body offsets). */
#define L_NSLOTS 0
#define L_LEVEL 2
#define L_HEAP 4
#define L_SLOT0 16
#define L_SLOTSZ 28
#define S_OFF 24
#define S_LEN 26
#define I_NKEYS 0
#define I_LEVEL 2
#define I_KEY0 16
#define I_CHILD0 3040

#define expect_eq(what, expected, got)                                                      \
	do {                                                                                \
		long long e_ = (long long)(expected), g_ = (long long)(got);                \
		if (e_ != g_)                                                               \
			fail_msg("%s: expected %lld, got %lld (seed %llu)", what, e_, g_,   \
				 (unsigned long long)seed);                                 \
	} while (0)

#define expect_pins_zero(ps) expect_eq("pinned pages after the operation", 0, th_pins(ps))

static uint64_t seed = 0x5eedb7ee;
static uint64_t rs;

static uint64_t rnd(void)
{
	uint64_t z = (rs += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void seed_rng(void)
{
	const char *s = getenv("HBT_SEED");

	if (s)
		seed = strtoull(s, NULL, 0);
	rs = seed;
}

static uint64_t mix(uint64_t z) /* a bijection */
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Key number r of the random tests: distinct r give distinct keys, in an
 * order unrelated to r. */
static struct hbt_key mkkey(uint32_t r)
{
	struct hbt_key k = { 0 };

	k.type = (uint8_t)(1 + r % 5);
	k.a = (r / 5) % 3;
	k.b = mix(r) >> (r % 3 ? 0 : 40);
	k.c = r;
	return k;
}

static struct hbt_key objkey(uint64_t b)
{
	struct hbt_key k = { 0 };

	k.type = HK_OBJ;
	k.b = b;
	return k;
}

static void fill(uint8_t *v, unsigned len, uint32_t vs)
{
	uint32_t x = vs * 2654435761u + 1;

	for (unsigned i = 0; i < len; i++) {
		x = x * 1103515245u + 12345u;
		v[i] = (uint8_t)(x >> 24);
	}
}

static unsigned pick_len(void)
{
	unsigned r = (unsigned)(rnd() % 10);

	if (r < 3)
		return (unsigned)(rnd() % 17);
	if (r == 3)
		return HBT_VAL_MAX;
	return (unsigned)(rnd() % (HBT_VAL_MAX + 1));
}

static const char *kstr(const struct hbt_key *k)
{
	static char buf[4][96];
	static int n;
	char *b = buf[n++ % 4];

	snprintf(b, 96, "(%u,%u,%#llx,%llu)", k->type, k->a, (unsigned long long)k->b,
		 (unsigned long long)k->c);
	return b;
}

/* ---- the model: a sorted array ---- */

struct mrec {
	struct hbt_key key;
	unsigned len;
	uint32_t vs;
};

struct fx {
	struct hpage_store *ps;
	struct hbt t;
	struct mrec *m;
	size_t n, cap;
	uint64_t leaked; /* pages lost to an injected hps_free failure */
};

/* First index with key >= k (> k if after). */
static size_t m_lower(struct fx *f, const struct hbt_key *k, int after)
{
	size_t lo = 0, hi = f->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = hbt_key_cmp(&f->m[mid].key, k);

		if (c < 0 || (after && c == 0))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static struct mrec *m_find(struct fx *f, const struct hbt_key *k)
{
	size_t i = m_lower(f, k, 0);

	return i < f->n && !hbt_key_cmp(&f->m[i].key, k) ? &f->m[i] : NULL;
}

static void m_put(struct fx *f, const struct hbt_key *k, unsigned len, uint32_t vs)
{
	size_t i = m_lower(f, k, 0);

	if (i < f->n && !hbt_key_cmp(&f->m[i].key, k)) {
		f->m[i].len = len;
		f->m[i].vs = vs;
		return;
	}
	if (f->n == f->cap) {
		f->cap = f->cap ? 2 * f->cap : 1024;
		f->m = realloc(f->m, f->cap * sizeof(*f->m));
		assert_non_null(f->m);
	}
	memmove(&f->m[i + 1], &f->m[i], (f->n - i) * sizeof(*f->m));
	f->m[i] = (struct mrec){ *k, len, vs };
	f->n++;
}

static void m_del(struct fx *f, const struct hbt_key *k)
{
	size_t i = m_lower(f, k, 0);

	assert_true(i < f->n && !hbt_key_cmp(&f->m[i].key, k));
	memmove(&f->m[i], &f->m[i + 1], (f->n - i - 1) * sizeof(*f->m));
	f->n--;
}

static struct fx *fx_new(uint32_t npages)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->ps = th_new(npages);
	f->t.ps = f->ps;
	expect_eq("hbt_create", 0, hbt_create(&f->t));
	expect_pins_zero(f->ps);
	return f;
}

static void fx_free(struct fx *f)
{
	th_destroy(f->ps);
	free(f->m);
	free(f);
}

/* ---- tree operations checked against the model ---- */

static void do_put(struct fx *f, const struct hbt_key *k, unsigned len, uint32_t vs)
{
	uint8_t v[HBT_VAL_MAX];

	fill(v, len, vs);
	int rc = hbt_put(&f->t, k, v, len);

	if (rc)
		fail_msg("hbt_put %s len %u: expected 0, got %d (seed %llu)", kstr(k), len, rc,
			 (unsigned long long)seed);
	expect_pins_zero(f->ps);
	m_put(f, k, len, vs);
}

static void do_del(struct fx *f, const struct hbt_key *k)
{
	int want = m_find(f, k) ? 0 : -ENOENT, rc = hbt_del(&f->t, k);

	if (rc != want)
		fail_msg("hbt_del %s: expected %d, got %d (seed %llu)", kstr(k), want, rc,
			 (unsigned long long)seed);
	expect_pins_zero(f->ps);
	if (!want)
		m_del(f, k);
}

static void check_value(const char *what, const struct hbt_key *k, const struct mrec *r,
			 const uint8_t *got, size_t n)
{
	uint8_t v[HBT_VAL_MAX];

	fill(v, r->len, r->vs);
	for (size_t i = 0; i < n; i++)
		if (got[i] != v[i])
			fail_msg("%s %s: value byte %zu: expected %#x, got %#x (seed %llu)", what,
				 kstr(k), i, v[i], got[i], (unsigned long long)seed);
}

static void do_get(struct fx *f, const struct hbt_key *k, size_t cap)
{
	uint8_t buf[HBT_VAL_MAX + 1];
	const struct mrec *r = m_find(f, k);

	memset(buf, 0xa5, sizeof(buf));
	int rc = hbt_get(&f->t, k, buf, cap);

	expect_pins_zero(f->ps);
	if (!r) {
		if (rc != -ENOENT)
			fail_msg("hbt_get %s (absent): expected %d, got %d (seed %llu)", kstr(k),
				 -ENOENT, rc, (unsigned long long)seed);
		return;
	}
	if (rc != (int)r->len)
		fail_msg("hbt_get %s: expected length %u, got %d (seed %llu)", kstr(k), r->len, rc,
			 (unsigned long long)seed);
	check_value("hbt_get", k, r, buf, r->len < cap ? r->len : cap);
	if (cap < sizeof(buf) && cap < r->len)
		expect_eq("hbt_get wrote past cap", 0xa5, buf[cap]);
}

static void do_seek(struct fx *f, const struct hbt_key *k, int after)
{
	uint8_t buf[HBT_VAL_MAX];
	struct hbt_key found;
	size_t i = m_lower(f, k, after);
	int rc = hbt_seek(&f->t, k, after, &found, buf, sizeof(buf));

	expect_pins_zero(f->ps);
	if (i == f->n) {
		if (rc != -ENOENT)
			fail_msg("hbt_seek %s after=%d: expected -ENOENT, got %d, key %s (seed %llu)",
				 kstr(k), after, rc, kstr(&found), (unsigned long long)seed);
		return;
	}
	if (rc < 0 || hbt_key_cmp(&found, &f->m[i].key))
		fail_msg("hbt_seek %s after=%d: expected %s, got %d %s (seed %llu)", kstr(k), after,
			 kstr(&f->m[i].key), rc, rc < 0 ? "" : kstr(&found), (unsigned long long)seed);
	expect_eq("hbt_seek value length", f->m[i].len, rc);
	check_value("hbt_seek", &found, &f->m[i], buf, (size_t)rc);
}

struct walk {
	struct fx *f;
	uint8_t *seen;
	uint64_t pages, by_level[17];
	int reports;
	char first[200];
};

static int walk_fn(uint64_t pgno, int level, void *arg)
{
	struct walk *w = arg;

	if (!th_is_allocated(w->f->ps, pgno))
		fail_msg("hbt_check visited page %llu, which is not allocated",
			 (unsigned long long)pgno);
	if (w->seen[pgno])
		fail_msg("hbt_check visited page %llu twice", (unsigned long long)pgno);
	w->seen[pgno] = 1;
	w->pages++;
	if (level >= 0 && level < 17)
		w->by_level[level]++;
	return 0;
}

static void walk_report(const char *msg, void *arg)
{
	struct walk *w = arg;

	if (!w->reports++)
		snprintf(w->first, sizeof(w->first), "%s", msg);
}

/* The whole tree: seek walk equals the model, hbt_check is clean and sees
 * exactly the allocated pages (no leaks), nothing is left pinned. */
static void verify_all(struct fx *f)
{
	uint8_t buf[HBT_VAL_MAX];
	struct hbt_key k = { 0 }, found;
	size_t i = 0;
	int after = 0;

	for (;;) {
		int rc = hbt_seek(&f->t, &k, after, &found, buf, sizeof(buf));

		if (rc == -ENOENT)
			break;
		if (rc < 0)
			fail_msg("walk: hbt_seek after %s: got %d (seed %llu)", kstr(&k), rc,
				 (unsigned long long)seed);
		if (i >= f->n || hbt_key_cmp(&found, &f->m[i].key))
			fail_msg("walk: entry %zu: expected %s, got %s (seed %llu)", i,
				 i < f->n ? kstr(&f->m[i].key) : "the end", kstr(&found),
				 (unsigned long long)seed);
		expect_eq("walk: value length", f->m[i].len, rc);
		check_value("walk", &found, &f->m[i], buf, (size_t)rc);
		k = found;
		after = 1;
		i++;
	}
	expect_eq("walk: keys found", f->n, i);

	struct walk w = { .f = f };
	uint64_t nkeys = 0;

	w.seen = calloc(1 << 20, 1);
	assert_non_null(w.seen);
	int rc = hbt_check(&f->t, walk_fn, walk_report, &w, &nkeys);

	if (rc || w.reports)
		fail_msg("hbt_check: expected 0 and no reports, got %d, %d reports, first: %s", rc,
			 w.reports, w.first);
	expect_eq("hbt_check key count", f->n, nkeys);
	expect_eq("hbt_check leaves at level 0 and one root", 1, w.by_level[f->t.height - 1]);
	expect_eq("allocated pages (root page + tree + leaked)", 1 + w.pages + f->leaked,
		  th_allocated(f->ps));
	expect_eq("reads of free pages", 0, th_gets_of_free(f->ps));
	expect_pins_zero(f->ps);
	free(w.seen);
}

/* One random operation on key number < keyspace; @grow biases to puts. */
static void random_op(struct fx *f, uint32_t keyspace, int grow)
{
	unsigned r = (unsigned)(rnd() % 100);
	struct hbt_key k = mkkey((uint32_t)(rnd() % keyspace));

	if (f->n && rnd() % 2) /* half the time, an existing key */
		k = f->m[rnd() % f->n].key;
	if (r < (grow ? 55u : 25u))
		do_put(f, &k, pick_len(), (uint32_t)rnd());
	else if (r < 85)
		do_del(f, &k);
	else if (r < 92)
		do_get(f, &k, rnd() % 4 ? HBT_VAL_MAX : rnd() % 40);
	else
		do_seek(f, &k, (int)(rnd() % 2));
}

/* ---- tests ---- */

static void test_key_cmp_is_numeric_by_field(void **state)
{
	struct hbt_key x = objkey(256), y = objkey(1);

	(void)state;
	/* little-endian bytes of 256 compare below those of 1 with memcmp */
	expect_eq("cmp(b=256, b=1)", 1, hbt_key_cmp(&x, &y));
	expect_eq("cmp(b=1, b=256)", -1, hbt_key_cmp(&y, &x));
	x = objkey(5);
	y = objkey(5);
	x.pad[0] = 7;
	expect_eq("pad bytes ignored", 0, hbt_key_cmp(&x, &y));
	x.c = 1;
	expect_eq("c breaks a tie", 1, hbt_key_cmp(&x, &y));
	x = objkey(0);
	x.a = 0x100;
	y = objkey(UINT64_MAX);
	expect_eq("a before b", 1, hbt_key_cmp(&x, &y));
	x = objkey(0);
	y = objkey(UINT64_MAX);
	y.type = HK_VOL;
	expect_eq("type first", 1, hbt_key_cmp(&x, &y));
}

static void test_empty_tree(void **state)
{
	struct fx *f = fx_new(64);
	struct hbt_key k = objkey(1), found;
	uint8_t v[8];

	(void)state;
	expect_eq("height", 1, f->t.height);
	expect_eq("get", -ENOENT, hbt_get(&f->t, &k, v, sizeof(v)));
	expect_eq("seek", -ENOENT, hbt_seek(&f->t, &k, 0, &found, v, sizeof(v)));
	expect_eq("del", -ENOENT, hbt_del(&f->t, &k));
	expect_eq("put too long", -EINVAL, hbt_put(&f->t, &k, v, HBT_VAL_MAX + 1));
	expect_pins_zero(f->ps);
	verify_all(f);
	do_put(f, &k, 0, 1);
	do_del(f, &k);
	verify_all(f);
	fx_free(f);
}

static void test_put_get_replace_sizes(void **state)
{
	struct fx *f = fx_new(256);

	(void)state;
	seed_rng();
	/* three maximal values fill a leaf; grow, shrink, regrow in place */
	for (uint64_t i = 0; i < 3; i++)
		do_put(f, &(struct hbt_key){ .type = HK_OBJ, .b = i }, HBT_VAL_MAX, (uint32_t)i);
	expect_eq("height with three maximal values", 1, f->t.height);
	do_put(f, &(struct hbt_key){ .type = HK_OBJ, .b = 1 }, 0, 9);
	do_get(f, &(struct hbt_key){ .type = HK_OBJ, .b = 1 }, HBT_VAL_MAX);
	do_put(f, &(struct hbt_key){ .type = HK_OBJ, .b = 1 }, HBT_VAL_MAX, 10);
	expect_eq("height after replacing with the same size", 1, f->t.height);
	verify_all(f);
	/* a fourth forces a split; replaces that no longer fit split too */
	do_put(f, &(struct hbt_key){ .type = HK_OBJ, .b = 3 }, HBT_VAL_MAX, 3);
	expect_eq("height after the split", 2, f->t.height);
	for (uint64_t i = 0; i < 40; i++)
		do_put(f, &(struct hbt_key){ .type = HK_OBJ, .b = 100 + i }, 10, (uint32_t)i);
	for (uint64_t i = 0; i < 40; i++) {
		do_put(f, &(struct hbt_key){ .type = HK_OBJ, .b = 100 + i }, HBT_VAL_MAX,
		       (uint32_t)i + 1000);
		verify_all(f);
	}
	for (uint64_t i = 0; i < 40; i += 3)
		do_put(f, &(struct hbt_key){ .type = HK_OBJ, .b = 100 + i }, 1, 7);
	for (size_t cap = 0; cap < 3; cap++)
		do_get(f, &(struct hbt_key){ .type = HK_OBJ, .b = 101 }, cap);
	do_get(f, &(struct hbt_key){ .type = HK_OBJ, .b = 99 }, 8);
	verify_all(f);
	fx_free(f);
}

static void test_random_ops_match_model(void **state)
{
	const char *s = getenv("HBT_OPS");
	unsigned long ops = s ? strtoul(s, NULL, 0) : 200000;
	struct fx *f = fx_new(8192);
	uint32_t maxh = 0;

	(void)state;
	seed_rng();
	print_message("seed %llu, %lu operations\n", (unsigned long long)seed, ops);
	th_commit(f->ps);
	for (unsigned long i = 0; i < ops; i++) {
		uint32_t h = f->t.height;

		/* the pin budget of btree.h: 2 * height + 4 */
		th_set_pin_limit(f->ps, 2 * h + 4);
		/* alternate growing and shrinking phases; end growing */
		random_op(f, 12000, (i / 25000) % 2 == 0 || i + 25000 >= ops);
		if (th_pins_max(f->ps, 1) > 2 * h + 3)
			fail_msg("op %lu pinned more than 2 * height + 3 = %u pages", i, 2 * h + 3);
		maxh = f->t.height > maxh ? f->t.height : maxh;
		if (i % 5000 == 4999)
			th_commit(f->ps);
		if (i % 25000 == 24999)
			verify_all(f);
	}
	th_set_pin_limit(f->ps, 0);
	verify_all(f);
	print_message("%zu keys at the end, height %u, highest %u\n", f->n, f->t.height, maxh);
	while (f->n)
		do_del(f, &f->m[rnd() % f->n].key);
	th_commit(f->ps);
	expect_eq("height after deleting everything", 1, f->t.height);
	expect_eq("pages left: the root page and one leaf", 2, th_allocated(f->ps));
	verify_all(f);
	fx_free(f);
}

static void test_seek_crosses_leaf_boundaries(void **state)
{
	struct fx *f = fx_new(4096);
	const uint64_t n = 3000;

	(void)state;
	seed_rng();
	for (uint64_t i = 0; i < n; i++)
		do_put(f, &(struct hbt_key){ .type = HK_OBJ, .b = 2 * i }, 700, (uint32_t)i);
	assert_true(f->t.height >= 3);
	for (uint64_t b = 0; b <= 2 * n + 1; b++) {
		struct hbt_key k = objkey(b);

		do_seek(f, &k, 0);
		do_seek(f, &k, 1);
	}
	/* keys of other types on either side */
	do_seek(f, &(struct hbt_key){ .type = HK_OBJ - 1, .a = UINT32_MAX, .b = UINT64_MAX }, 1);
	do_seek(f, &(struct hbt_key){ .type = HK_OBJ, .b = 2 * n - 2, .c = 1 }, 0);
	do_seek(f, &(struct hbt_key){ .type = HK_OBJ + 1 }, 0);
	/* a gap of hundreds of freed leaves */
	for (uint64_t i = 1000; i < 2000; i++)
		do_del(f, &(struct hbt_key){ .type = HK_OBJ, .b = 2 * i });
	verify_all(f);
	for (uint64_t b = 1990; b <= 4010; b++) {
		do_seek(f, &(struct hbt_key){ .type = HK_OBJ, .b = b }, 0);
		do_seek(f, &(struct hbt_key){ .type = HK_OBJ, .b = b }, 1);
	}
	/* the tail, then everything: seek past the end at every step */
	for (uint64_t i = n; i-- > 0;) {
		if (i >= 1000 && i < 2000)
			continue;
		do_del(f, &(struct hbt_key){ .type = HK_OBJ, .b = 2 * i });
		if (i % 97 == 0) {
			do_seek(f, &(struct hbt_key){ .type = HK_OBJ, .b = 2 * i - 1 }, 0);
			do_seek(f, &(struct hbt_key){ 0 }, 0);
		}
	}
	expect_eq("height when empty", 1, f->t.height);
	do_seek(f, &(struct hbt_key){ 0 }, 0);
	verify_all(f);
	fx_free(f);
}

static void test_fill_four_levels_then_delete_all(void **state)
{
	struct fx *f = fx_new(12000);
	uint32_t r = 0, lasth = 1;
	uint8_t v[HBT_VAL_MAX];

	(void)state;
	seed_rng();
	/* ascending keys with maximal values: 2 entries per leaf, 64
	 * children per inner node: four levels after ~8,200 leaves */
	while (f->t.height < 4) {
		do_put(f, &(struct hbt_key){ .type = HK_CHUNK, .b = r / 16, .c = r % 16 },
		       HBT_VAL_MAX, r);
		r++;
		if (f->t.height != lasth) {
			expect_eq("height grows by one", lasth + 1, f->t.height);
			lasth = f->t.height;
			verify_all(f);
		}
	}
	print_message("height 4 after %u keys, %llu pages\n", r,
		      (unsigned long long)th_allocated(f->ps));
	/* throughput of lookups over cached pages (informative only) */
	struct timespec t0, t1;
	const unsigned nget = 300000;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (unsigned i = 0; i < nget; i++) {
		const struct mrec *m = &f->m[rnd() % f->n];

		if (hbt_get(&f->t, &m->key, v, sizeof(v)) != (int)m->len)
			fail_msg("hbt_get %s failed", kstr(&m->key));
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	print_message("%.0f lookups/s at height 4 (this build)\n",
		      nget / ((t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9));
	/* delete in random order: the height only ever shrinks, to 1 */
	for (unsigned long i = 0; f->n; i++) {
		do_del(f, &f->m[rnd() % f->n].key);
		if (f->t.height > lasth)
			fail_msg("height grew on delete: from %u to %u", lasth, f->t.height);
		lasth = f->t.height;
		if (i % 4000 == 0)
			verify_all(f);
	}
	expect_eq("height after deleting everything", 1, f->t.height);
	expect_eq("pages left: the root page and one leaf", 2, th_allocated(f->ps));
	verify_all(f);
	fx_free(f);
}

/* ---- corruption ---- */

enum {
	C_L_NSLOTS, C_L_NSLOTS_PLUS, C_L_HEAP, C_L_LEN, C_L_OFF, C_L_SWAP, C_L_OVERLAP,
	C_L_LEVEL, C_L_ABOVE, C_L_BELOW, C_TYPE, C_GARBAGE, C_BAD_READ, C_I_NKEYS, C_I_LEVEL, C_I_CHILD_ROOTPG,
	C_I_CHILD_RANGE, C_I_SWAP, C_I_DUP_CHILD, C_NKINDS
};

static uint16_t rd16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static void wr16(uint8_t *p, unsigned v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/* Damage page @pgno (a node at @level) in way @kind; 0 if the kind does
 * not apply to it.  @edge: 1 leftmost leaf, 2 rightmost leaf. */
static int corrupt(struct fx *f, uint64_t pgno, int level, int edge, int kind)
{
	uint8_t *pg = th_page(f->ps, pgno), *b = pg + HPAGE_DATA_OFF;
	unsigned n = rd16(b);
	uint8_t tmp[24];

	if (kind == C_TYPE) {
		wr16(pg + 4, HPT_FREE);
		return 1;
	}
	if (kind == C_GARBAGE) {
		for (unsigned i = 0; i < HPAGE_BODY; i++)
			b[i] = (uint8_t)rnd();
		return 1;
	}
	if (kind == C_BAD_READ) {
		th_set_bad(f->ps, pgno, 1);
		return 1;
	}
	if (level == 0) {
		uint8_t *s0 = b + L_SLOT0, *s1 = s0 + L_SLOTSZ;

		switch (kind) {
		case C_L_NSLOTS: wr16(b + L_NSLOTS, 0xffff); return 1;
		case C_L_NSLOTS_PLUS: wr16(b + L_NSLOTS, rd16(b + L_HEAP) / L_SLOTSZ + 1); return 1;
		case C_L_HEAP: wr16(b + L_HEAP, 3); return 1;
		case C_L_LEVEL: wr16(b + L_LEVEL, 1); return 1;
		case C_L_ABOVE: /* still in order in the leaf, above its bound */
			if (!n || edge & 2)
				return 0;
			s0[(n - 1) * L_SLOTSZ] = 0xff;
			return 1;
		case C_L_BELOW:
			if (!n || edge & 1)
				return 0;
			s0[0] = 0;
			return 1;
		case C_L_LEN:
			if (!n)
				return 0;
			wr16(s0 + S_LEN, HBT_VAL_MAX + 1);
			return 1;
		case C_L_OFF:
			if (!n || rd16(s0 + S_LEN) < 2)
				return 0;
			wr16(s0 + S_OFF, HPAGE_BODY - 1);
			return 1;
		case C_L_SWAP:
			if (n < 2)
				return 0;
			memcpy(tmp, s0, 24);
			memcpy(s0, s1, 24);
			memcpy(s1, tmp, 24);
			return 1;
		case C_L_OVERLAP:
			if (n < 2 || !rd16(s0 + S_LEN))
				return 0;
			memcpy(s1 + S_OFF, s0 + S_OFF, 4); /* same off and len */
			return 1;
		}
		return 0;
	}
	uint8_t *c0 = b + I_CHILD0, *c1 = c0 + 8;

	switch (kind) {
	case C_I_NKEYS: wr16(b + I_NKEYS, 0xffff); return 1;
	case C_I_LEVEL: wr16(b + I_LEVEL, (unsigned)level + 1); return 1;
	case C_I_CHILD_ROOTPG: memset(c0, 0, 8); return 1;
	case C_I_CHILD_RANGE: memset(c1, 0xff, 4); return 1;
	case C_I_SWAP:
		if (n < 2)
			return 0;
		memcpy(tmp, b + I_KEY0, 24);
		memcpy(b + I_KEY0, b + I_KEY0 + 24, 24);
		memcpy(b + I_KEY0 + 24, tmp, 24);
		return 1;
	case C_I_DUP_CHILD: memcpy(c1, c0, 8); return 1;
	}
	return 0;
}

struct pagelist {
	uint64_t pg[8192];
	int level[8192];
	unsigned n;
};

static int list_fn(uint64_t pgno, int level, void *arg)
{
	struct pagelist *l = arg;

	assert_true(l->n < 8192);
	l->pg[l->n] = pgno;
	l->level[l->n++] = level;
	return 0;
}

/* Operations on a corrupt tree may fail, but only with these, and must
 * neither crash nor leak pins. */
static void expect_sane_rc(const char *what, int rc)
{
	if (rc < 0 && rc != -ENOENT && rc != -EUCLEAN && rc != -EIO)
		fail_msg("%s on a corrupt tree: expected >= 0, -ENOENT, -EUCLEAN or -EIO, got %d",
			 what, rc);
}

static void test_check_reports_scrambled_nodes(void **state)
{
	struct fx *f = fx_new(2048);
	static struct pagelist l;
	uint8_t v[HBT_VAL_MAX];
	struct hbt_key found;
	unsigned tried = 0;

	(void)state;
	seed_rng();
	for (uint32_t i = 0; i < 3000; i++)
		do_put(f, &(struct hbt_key){ .type = HK_OBJ, .b = mix(i) }, 600 + i % 100, i);
	for (uint32_t i = 0; i < 3000; i += 4) /* leaves with free space and holes */
		do_del(f, &(struct hbt_key){ .type = HK_OBJ, .b = mix(i) });
	expect_eq("height", 3, f->t.height);
	verify_all(f);
	l.n = 0;
	expect_eq("hbt_check", 0, hbt_check(&f->t, list_fn, NULL, &l, NULL));

	struct th_snap *snap = th_snapshot(f->ps);
	struct hbt saved = f->t;

	th_set_lenient(f->ps, 1);
	unsigned first = l.n, last = 0;

	for (unsigned p = 0; p < l.n; p++) {
		if (l.level[p] == 0 && first == l.n)
			first = p;
		if (l.level[p] == 0)
			last = p;
	}
	for (unsigned p = 0; p < l.n; p++) {
		/* the root, every inner node, and a sample of leaves */
		if (l.level[p] == 0 && p % 37 && p != first && p != last)
			continue;
		for (int kind = 0; kind < C_NKINDS; kind++) {
			struct walk w = { .f = f };
			uint64_t nkeys;

			th_restore(f->ps, snap);
			f->t = saved;
			if (!corrupt(f, l.pg[p], l.level[p], (p == first) | (p == last) << 1, kind))
				continue;
			tried++;
			int rc = hbt_check(&f->t, NULL, walk_report, &w, &nkeys);

			if ((rc != -EUCLEAN && rc != -EIO) || !w.reports)
				fail_msg("hbt_check, page %llu level %d damage %d: expected -EUCLEAN "
					 "or -EIO and a report, got %d and %d reports",
					 (unsigned long long)l.pg[p], l.level[p], kind, rc, w.reports);
			expect_pins_zero(f->ps);
			/* and no operation may crash on it */
			for (unsigned i = 0; i < 300; i++) {
				struct hbt_key k = objkey(mix(rnd() % 3100));
				unsigned op = (unsigned)(rnd() % 4);

				if (op == 0)
					expect_sane_rc("hbt_put",
						       hbt_put(&f->t, &k, v, pick_len()));
				else if (op == 1)
					expect_sane_rc("hbt_del", hbt_del(&f->t, &k));
				else if (op == 2)
					expect_sane_rc("hbt_get", hbt_get(&f->t, &k, v, sizeof(v)));
				else
					expect_sane_rc("hbt_seek", hbt_seek(&f->t, &k, (int)(rnd() % 2),
									    &found, v, sizeof(v)));
				expect_pins_zero(f->ps);
			}
			expect_sane_rc("hbt_check after operations",
				       hbt_check(&f->t, NULL, NULL, NULL, NULL));
			expect_pins_zero(f->ps);
		}
	}
	print_message("%u damaged trees checked\n", tried);
	/* heights out of range */
	th_restore(f->ps, snap);
	f->t = saved;
	f->t.height = 0;
	expect_eq("hbt_get with height 0", -EUCLEAN, hbt_get(&f->t, &found, v, sizeof(v)));
	expect_eq("hbt_check with height 0", -EUCLEAN, hbt_check(&f->t, NULL, NULL, NULL, NULL));
	f->t.height = 17;
	expect_eq("hbt_put with height 17", -EUCLEAN, hbt_put(&f->t, &found, v, 1));
	f->t = saved;
	f->t.height = 2; /* the root is read as a level-1 node: wrong level */
	expect_eq("hbt_get with a wrong height", -EUCLEAN,
		  hbt_get(&f->t, &(struct hbt_key){ .type = HK_OBJ, .b = mix(1) }, v, sizeof(v)));
	expect_pins_zero(f->ps);
	f->t = saved;
	th_set_lenient(f->ps, 0);
	th_snap_free(snap);
	fx_free(f);
}

/* ---- injected errors ---- */

static void test_injected_errors_leave_tree_intact(void **state)
{
	static const int errs[TH_NOPS] = { -EIO, -EROFS, -ENOSPC, -EIO };
	struct fx *f = fx_new(4096);
	uint8_t v[HBT_VAL_MAX], buf[HBT_VAL_MAX];
	unsigned long fired_total = 0, by_op[TH_NOPS] = { 0 };

	(void)state;
	seed_rng();
	for (uint32_t i = 0; i < 3000; i++)
		do_put(f, &(struct hbt_key){ .type = HK_META, .b = mix(i) }, 800 + i % 300, i);
	verify_all(f);
	for (unsigned it = 0; it < 6000; it++) {
		uint32_t h = f->t.height;
		int op = (int)(rnd() % TH_NOPS), enomem = rnd() % 8 == 0;
		unsigned kind = (unsigned)(rnd() % 5), len = pick_len();
		uint32_t vs = (uint32_t)rnd();
		struct hbt_key k = rnd() % 2 && f->n ? f->m[rnd() % f->n].key
						     : (struct hbt_key){ .type = HK_META,
									 .b = mix(3000 + rnd() % 3000) };
		const struct mrec *old = m_find(f, &k);
		struct mrec before = old ? *old : (struct mrec){ 0 };
		int present = old != NULL, rc;
		unsigned long fired = th_fired(f->ps);

		if (enomem)
			th_set_pin_limit(f->ps, 1 + (uint32_t)(rnd() % (2 * h + 1)));
		else /* an operation makes up to 2h+1 gets, h+1 dirties and
		      * allocs, h frees: aim at the calls that happen */
			th_fail(f->ps, op, 1 + rnd() % (op == TH_GET ? 2 * h + 2 : op == TH_FREE ? 2 : 3),
				errs[op]);
		fill(v, len, vs);
		switch (kind) {
		case 0: case 1: rc = hbt_put(&f->t, &k, v, len); break;
		case 2: case 3: rc = hbt_del(&f->t, &k); break;
		default: rc = hbt_seek(&f->t, &k, 0, &k, buf, sizeof(buf)); break;
		}
		th_fail_off(f->ps);
		th_set_pin_limit(f->ps, 0);
		expect_pins_zero(f->ps);
		int hit = th_fired(f->ps) != fired || rc == -ENOMEM;

		if (!hit) {
			/* the operation completed: mirror it */
			if (kind < 2) {
				expect_eq("hbt_put", 0, rc);
				m_put(f, &k, len, vs);
			} else if (kind < 4) {
				expect_eq("hbt_del", present ? 0 : -ENOENT, rc);
				if (present)
					m_del(f, &k);
			} else if (rc != -ENOENT) {
				assert_true(rc >= 0);
			}
		} else if (kind >= 2 && kind < 4 && op == TH_FREE && !enomem) {
			/* the delete took effect, then a page could not be
			 * returned: it leaks (fsck's job) */
			expect_eq("hbt_del with a failing hps_free", errs[TH_FREE], rc);
			m_del(f, &k);
			f->leaked++;
		} else {
			int want = enomem ? -ENOMEM : errs[op];

			if (rc != want)
				fail_msg("it %u: op %u with injected %d: expected %d, got %d", it, kind,
					 want, want, rc);
			/* the tree is unchanged */
			rc = hbt_get(&f->t, &k, buf, sizeof(buf));
			expect_eq("value length after a failed operation",
				  present ? (int)before.len : -ENOENT, rc);
			if (present)
				check_value("after a failed operation", &k, &before, buf, before.len);
			fired_total++;
			by_op[enomem ? TH_GET : op]++;
		}
		if (it % 250 == 0) {
			verify_all(f);
			th_commit(f->ps);
		}
	}
	verify_all(f);
	print_message("%lu failed operations (get %lu, dirty %lu, alloc %lu), %llu pages leaked "
		      "by failed frees, height %u\n",
		      fired_total, by_op[TH_GET], by_op[TH_DIRTY], by_op[TH_ALLOC],
		      (unsigned long long)f->leaked, f->t.height);
	assert_true(by_op[TH_DIRTY] > 0 && by_op[TH_ALLOC] > 0 && f->leaked > 0);
	/* hbt_create and hbt_check fail cleanly too */
	struct hbt t2 = { .ps = f->ps };

	th_fail(f->ps, TH_ALLOC, 1, -ENOSPC);
	expect_eq("hbt_create with hps_alloc failing", -ENOSPC, hbt_create(&t2));
	th_fail(f->ps, TH_GET, 2, -EIO);
	expect_eq("hbt_check with one unreadable page", -EIO,
		  hbt_check(&f->t, NULL, NULL, NULL, NULL));
	th_set_pin_limit(f->ps, 1);
	expect_eq("hbt_check without pins", -ENOMEM, hbt_check(&f->t, NULL, NULL, NULL, NULL));
	th_set_pin_limit(f->ps, 0);
	th_fail_off(f->ps);
	expect_pins_zero(f->ps);
	fx_free(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_cmp_is_numeric_by_field),
		cmocka_unit_test(test_empty_tree),
		cmocka_unit_test(test_put_get_replace_sizes),
		cmocka_unit_test(test_random_ops_match_model),
		cmocka_unit_test(test_seek_crosses_leaf_boundaries),
		cmocka_unit_test(test_fill_four_levels_then_delete_all),
		cmocka_unit_test(test_check_reports_scrambled_nodes),
		cmocka_unit_test(test_injected_errors_leave_tree_intact),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
