/* crc32c.c - CRC-32C: SSE4.2 instruction when present, else a table. */
#include "crc32c.h"
#include <string.h>

static uint32_t table[256];
static int have_sse42 = -1;

__attribute__((constructor)) static void init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
		table[i] = c;
	}
#if defined(__x86_64__)
	__builtin_cpu_init();
	have_sse42 = __builtin_cpu_supports("sse4.2");
#else
	have_sse42 = 0;
#endif
}

#if defined(__x86_64__)
#define POLY 0x82F63B78u

/* a * b modulo the CRC polynomial (reflected), and x^(8n) modulo it: what
 * it takes to join the CRCs of three lanes computed side by side (the
 * method of Mark Adler's crc32c.c). */
static uint32_t multmodp(uint32_t a, uint32_t b)
{
	uint32_t m = 1u << 31, p = 0;
	for (;;) {
		if (a & m) {
			p ^= b;
			if ((a & (m - 1)) == 0)
				break;
		}
		m >>= 1;
		b = b & 1 ? (b >> 1) ^ POLY : b >> 1;
	}
	return p;
}

static uint32_t xpow8n(size_t n)
{
	uint32_t x2n[32], p = 1u << 30; /* x^1 */
	x2n[0] = p;
	for (int k = 1; k < 32; k++)
		x2n[k] = p = multmodp(p, p);
	p = 1u << 31; /* x^0 */
	unsigned k = 3;
	while (n) {
		if (n & 1)
			p = multmodp(x2n[k & 31], p);
		n >>= 1;
		k++;
	}
	return p;
}

static __thread size_t lane_cached;
static __thread uint32_t lane_shift;

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc;
	size_t lane = (len / 24) * 8; /* bytes per lane, whole qwords */
	if (lane >= 256) { /* three independent chains hide the instruction's latency */
		uint64_t c1 = 0, c2 = 0;
		if (lane != lane_cached) {
			lane_shift = xpow8n(lane);
			lane_cached = lane;
		}
		const uint8_t *p1 = p + lane, *p2 = p + 2 * lane;
		for (size_t i = 0; i < lane; i += 8) {
			uint64_t v0, v1, v2;
			memcpy(&v0, p + i, 8);
			memcpy(&v1, p1 + i, 8);
			memcpy(&v2, p2 + i, 8);
			c = __builtin_ia32_crc32di(c, v0);
			c1 = __builtin_ia32_crc32di(c1, v1);
			c2 = __builtin_ia32_crc32di(c2, v2);
		}
		c = multmodp(lane_shift, (uint32_t)c) ^ (uint32_t)c1;
		c = multmodp(lane_shift, (uint32_t)c) ^ (uint32_t)c2;
		p += 3 * lane;
		len -= 3 * lane;
	}
	while (len >= 8) {
		uint64_t v;
		memcpy(&v, p, 8);
		c = __builtin_ia32_crc32di(c, v);
		p += 8;
		len -= 8;
	}
	uint32_t c32 = (uint32_t)c;
	while (len--)
		c32 = __builtin_ia32_crc32qi(c32, *p++);
	return c32;
}
#endif

uint32_t hoard_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	if (__builtin_expect(have_sse42 < 0, 0))
		init();
	crc = ~crc;
#if defined(__x86_64__)
	if (have_sse42)
		return ~crc_hw(crc, p, len);
#endif
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}
