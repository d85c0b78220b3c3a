/*
 * test_btree_helper.c - an in-memory page store (page.h) for test_btree
 * only (the Makefile links tests/unit/<test>_helper.c into <test>).
 *
 * Owns: a flat array of 4 KiB pages, an allocation map, a pin counter per
 * page, a dirty flag per page, fault injection (the Nth call of hps_get,
 * hps_dirty, hps_alloc or hps_free fails with a chosen errno) and a pin
 * limit (-ENOMEM beyond it).  Catches misuse on the spot with cmocka
 * failures: dirtying an unpinned page, freeing a pinned or free page,
 * unpinning an unpinned page, and (th_commit) changing a page that was
 * never hps_dirty()ed.  Does not checksum: corrupt pages reach btree.c
 * unfiltered, which is what the corruption tests want.
 *
 * Page 0 is HPT_ROOT and never allocated; a page number beyond the store,
 * or marked with th_set_bad, fails hps_get with -EIO.
 *
 * Linking: the Makefile links tests/lib (memdev) into every unit test, and
 * memdev calls hoard_format, whose format.o would pull the real page.o out
 * of libhoard.a and clash with the hps_* below.  The stub hoard_format at
 * the end satisfies memdev so that page.o stays out of this binary.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>

#include "engine/page.h"

enum { TH_GET, TH_DIRTY, TH_ALLOC, TH_FREE, TH_NOPS };

struct hpage_store {
	uint32_t npages;
	struct hpage *pg;
	uint8_t *mem, *shadow;      /* shadow: contents at the last commit */
	uint8_t *allocated, *dirty, *bad;
	uint64_t nalloc;
	uint32_t pins, pins_max, pin_limit;
	unsigned long calls[TH_NOPS];
	unsigned long fail_at[TH_NOPS]; /* 0 = off; else fail that call */
	int fail_err[TH_NOPS];
	unsigned long fired;
	unsigned long gets_of_free;
	uint32_t next_hint;
	int lenient; /* corrupt trees: bad frees return -EUCLEAN */
};

struct hpage_store *th_new(uint32_t npages);
void th_destroy(struct hpage_store *ps);
uint32_t th_pins(struct hpage_store *ps);
uint32_t th_pins_max(struct hpage_store *ps, int reset);
void th_set_pin_limit(struct hpage_store *ps, uint32_t limit);
uint64_t th_allocated(struct hpage_store *ps); /* including page 0 */
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

struct th_snap {
	uint8_t *mem, *allocated;
	uint64_t nalloc;
};

struct hpage_store *th_new(uint32_t npages)
{
	struct hpage_store *ps = calloc(1, sizeof(*ps));

	assert_non_null(ps);
	ps->npages = npages;
	ps->pg = calloc(npages, sizeof(*ps->pg));
	ps->mem = calloc(npages, HBLK);
	ps->allocated = calloc(npages, 1);
	ps->dirty = calloc(npages, 1);
	ps->bad = calloc(npages, 1);
	assert_true(ps->pg && ps->mem && ps->allocated && ps->dirty && ps->bad);
	for (uint32_t i = 0; i < npages; i++) {
		ps->pg[i].pgno = i;
		ps->pg[i].data = ps->mem + (size_t)i * HBLK;
	}
	((struct hpage_hdr *)ps->pg[0].data)->type = HPT_ROOT;
	ps->allocated[0] = 1; /* the root page: never handed out */
	ps->nalloc = 1;
	ps->next_hint = 1;
	return ps;
}

void th_destroy(struct hpage_store *ps)
{
	free(ps->pg);
	free(ps->mem);
	free(ps->shadow);
	free(ps->allocated);
	free(ps->dirty);
	free(ps->bad);
	free(ps);
}

uint32_t th_pins(struct hpage_store *ps)
{
	return ps->pins;
}

uint32_t th_pins_max(struct hpage_store *ps, int reset)
{
	uint32_t m = ps->pins_max;

	if (reset)
		ps->pins_max = ps->pins;
	return m;
}

void th_set_pin_limit(struct hpage_store *ps, uint32_t limit)
{
	ps->pin_limit = limit;
}

uint64_t th_allocated(struct hpage_store *ps)
{
	return ps->nalloc;
}

int th_is_allocated(struct hpage_store *ps, uint64_t pgno)
{
	return pgno < ps->npages && ps->allocated[pgno];
}

void th_fail(struct hpage_store *ps, int op, unsigned long nth, int err)
{
	ps->fail_at[op] = nth ? ps->calls[op] + nth : 0;
	ps->fail_err[op] = err;
}

void th_fail_off(struct hpage_store *ps)
{
	memset(ps->fail_at, 0, sizeof(ps->fail_at));
}

unsigned long th_fired(struct hpage_store *ps)
{
	return ps->fired;
}

unsigned long th_gets_of_free(struct hpage_store *ps)
{
	return ps->gets_of_free;
}

/* The page store's commit: every page changed since the last one must
 * have been declared with hps_dirty.  The first call only takes the
 * baseline (the shadow copy is allocated on demand). */
void th_commit(struct hpage_store *ps)
{
	assert_int_equal(ps->pins, 0);
	if (!ps->shadow) {
		ps->shadow = malloc((size_t)ps->npages * HBLK);
		assert_non_null(ps->shadow);
		memcpy(ps->shadow, ps->mem, (size_t)ps->npages * HBLK);
		memset(ps->dirty, 0, ps->npages);
		return;
	}
	for (uint32_t i = 0; i < ps->npages; i++) {
		uint8_t *cur = ps->mem + (size_t)i * HBLK, *old = ps->shadow + (size_t)i * HBLK;

		if (!ps->dirty[i] && memcmp(cur, old, HBLK))
			fail_msg("page %u changed without hps_dirty", i);
		if (ps->dirty[i])
			memcpy(old, cur, HBLK);
		ps->dirty[i] = 0;
	}
}

uint8_t *th_page(struct hpage_store *ps, uint64_t pgno)
{
	assert_true(pgno < ps->npages);
	return ps->mem + pgno * HBLK;
}

void th_set_bad(struct hpage_store *ps, uint64_t pgno, int bad)
{
	assert_true(pgno < ps->npages);
	ps->bad[pgno] = (uint8_t)bad;
}

/* For trees corrupted on purpose: a free of a page that is not allocated
 * (a corrupt pointer followed) returns -EUCLEAN instead of failing. */
void th_set_lenient(struct hpage_store *ps, int on)
{
	ps->lenient = on;
}

/* Whole-store copy, to undo what a corruption test did.  Leaves every
 * page dirty so that th_commit accepts the restored contents. */
struct th_snap *th_snapshot(struct hpage_store *ps)
{
	struct th_snap *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	s->mem = malloc((size_t)ps->npages * HBLK);
	s->allocated = malloc(ps->npages);
	assert_true(s->mem && s->allocated);
	memcpy(s->mem, ps->mem, (size_t)ps->npages * HBLK);
	memcpy(s->allocated, ps->allocated, ps->npages);
	s->nalloc = ps->nalloc;
	return s;
}

void th_restore(struct hpage_store *ps, struct th_snap *s)
{
	assert_int_equal(ps->pins, 0);
	memcpy(ps->mem, s->mem, (size_t)ps->npages * HBLK);
	memcpy(ps->allocated, s->allocated, ps->npages);
	memset(ps->dirty, 1, ps->npages);
	memset(ps->bad, 0, ps->npages);
	ps->nalloc = s->nalloc;
}

void th_snap_free(struct th_snap *s)
{
	free(s->mem);
	free(s->allocated);
	free(s);
}

static int inject(struct hpage_store *ps, int op)
{
	ps->calls[op]++;
	if (ps->fail_at[op] && ps->calls[op] == ps->fail_at[op]) {
		ps->fail_at[op] = 0;
		ps->fired++;
		return ps->fail_err[op];
	}
	return 0;
}

static int pin(struct hpage_store *ps, struct hpage *pg)
{
	if (ps->pin_limit && ps->pins >= ps->pin_limit)
		return -ENOMEM;
	pg->pins++;
	ps->pins++;
	if (ps->pins > ps->pins_max)
		ps->pins_max = ps->pins;
	return 0;
}

int hps_get(struct hpage_store *ps, uint64_t pgno, struct hpage **pgp)
{
	int err = inject(ps, TH_GET);

	if (err)
		return err;
	if (pgno >= ps->npages || ps->bad[pgno])
		return -EIO;
	if (!ps->allocated[pgno])
		ps->gets_of_free++;
	err = pin(ps, &ps->pg[pgno]);
	if (err)
		return err;
	*pgp = &ps->pg[pgno];
	return 0;
}

void hps_put(struct hpage_store *ps, struct hpage *pg)
{
	if (!pg->pins)
		fail_msg("hps_put of unpinned page %llu", (unsigned long long)pg->pgno);
	pg->pins--;
	ps->pins--;
}

int hps_dirty(struct hpage_store *ps, struct hpage *pg)
{
	int err;

	if (!pg->pins)
		fail_msg("hps_dirty of unpinned page %llu", (unsigned long long)pg->pgno);
	err = inject(ps, TH_DIRTY);
	if (err)
		return err;
	ps->dirty[pg->pgno] = 1;
	return 0;
}

int hps_alloc(struct hpage_store *ps, uint16_t type, struct hpage **pgp)
{
	int err = inject(ps, TH_ALLOC);

	if (err)
		return err;
	for (uint32_t n = 0; n < ps->npages; n++) {
		uint32_t i = (ps->next_hint + n) % ps->npages;

		if (ps->allocated[i])
			continue;
		struct hpage *pg = &ps->pg[i];

		err = pin(ps, pg);
		if (err)
			return err;
		ps->allocated[i] = 1;
		ps->nalloc++;
		ps->dirty[i] = 1;
		ps->next_hint = i + 1;
		memset(pg->data, 0, HBLK);
		((struct hpage_hdr *)pg->data)->type = type;
		((struct hpage_hdr *)pg->data)->pgno = i;
		*pgp = pg;
		return 0;
	}
	return -ENOSPC;
}

int hps_free(struct hpage_store *ps, uint64_t pgno)
{
	int err;

	if (pgno == 0 || pgno >= ps->npages || !ps->allocated[pgno]) {
		if (ps->lenient)
			return -EUCLEAN;
		fail_msg("hps_free of page %llu, which is not allocated", (unsigned long long)pgno);
	}
	if (ps->pg[pgno].pins)
		fail_msg("hps_free of pinned page %llu (%u pins)", (unsigned long long)pgno,
			 ps->pg[pgno].pins);
	err = inject(ps, TH_FREE);
	if (err)
		return err;
	ps->allocated[pgno] = 0;
	ps->nalloc--;
	ps->dirty[pgno] = 1;
	memset(ps->pg[pgno].data, 0, HBLK); /* HPT_FREE: stale reads show */
	return 0;
}

/* See "Linking" above: keeps format.o and page.o out of this test. */
int hoard_format(const char *path, const struct hoard_format_opts *opts, char *found,
		 size_t found_len)
{
	return -ENOSYS;
}
