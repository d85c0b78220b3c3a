/*
 * Description: hoard_iobuf_alloc() gives zeroed, writable memory of the
 * size asked, aligned to 2 MiB, in a mapping the kernel may back with
 * transparent huge pages (smaps: THPeligible 1 wherever THP is not
 * "never"), which is what keeps a 1 MiB transfer to one or two device
 * segments; a size of 0 or one too large to map is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <hoardfs/hoard.h>

#define MIB ((size_t)1 << 20)

/* THPeligible of the mapping holding @p: 0/1, or -1 if smaps does not say */
static int thp_eligible(const void *p)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	int in = 0, r = -1;
	uintptr_t a = (uintptr_t)p;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = a >= lo && a < hi;
			continue;
		}
		if (in && sscanf(line, "THPeligible: %d", &r) == 1)
			break;
	}
	if (f)
		fclose(f);
	return r;
}

static int thp_never(void)
{
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	char line[128] = "";
	if (!f)
		return 1;
	if (!fgets(line, sizeof(line), f))
		line[0] = 0;
	fclose(f);
	return strstr(line, "[never]") != NULL;
}

static void test_sizes(void **state)
{
	const size_t sizes[] = {1, 4096, MIB + 8192, 16 * (MIB + 8192), 3 * MIB};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		uint8_t *p = hoard_iobuf_alloc(sizes[i]);
		assert_non_null(p);
		assert_int_equal((uintptr_t)p % (2 * MIB), 0);
		for (size_t k = 0; k < sizes[i]; k += 4096)
			assert_int_equal(p[k], 0);
		assert_int_equal(p[sizes[i] - 1], 0);
		memset(p, 0xa5, sizes[i]);
		hoard_iobuf_free(p, sizes[i]);
	}
}

static void test_refused(void **state)
{
	assert_null(hoard_iobuf_alloc(0));
	assert_null(hoard_iobuf_alloc(SIZE_MAX - MIB));
	hoard_iobuf_free(NULL, MIB); /* nothing to do, no crash */
}

static void test_huge_page_eligible(void **state)
{
	if (thp_never())
		skip();
	uint8_t *p = hoard_iobuf_alloc(MIB + 8192);
	assert_non_null(p);
	assert_int_equal(thp_eligible(p), 1);
	hoard_iobuf_free(p, MIB + 8192);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_huge_page_eligible),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
