/*
 * fill.h - test data: @n pseudo-random bytes determined by @seed
 * (xorshift64), so a test can write one pattern and check it later.
 */
#ifndef HOARDFS_TESTS_FILL_H
#define HOARDFS_TESTS_FILL_H

#include <stddef.h>
#include <stdint.h>

static inline void fill(uint8_t *b, size_t n, uint64_t seed)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		b[i] = (uint8_t)x;
	}
}

#endif
