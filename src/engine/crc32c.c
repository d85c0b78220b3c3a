/* crc32c.c - CRC-32C: carry-less multiplication (PCLMULQDQ) folding for
 * long buffers, the SSE4.2 crc32 instruction for the rest, else a table. */
#include "crc32c.h"
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static uint32_t table[256];
static int have_sse42 = -1, have_pclmul;
#if defined(__x86_64__)
static void fold_init(void);
#endif

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
	fold_init();
	have_pclmul = __builtin_cpu_supports("sse4.2") && __builtin_cpu_supports("pclmul");
	have_sse42 = __builtin_cpu_supports("sse4.2"); /* last: "initialised" */
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

/* Folding (Intel, "Fast CRC Computation for Generic Polynomials Using
 * PCLMULQDQ", as zlib's crc32_simd.c does it for gzip's polynomial): four
 * 128-bit accumulators move 512 bits ahead at a time by two carry-less
 * multiplications each, then fold into one, which is a 16-byte message
 * with the same CRC as everything folded; the crc32 instruction takes it
 * and the tail from there.  On the benchmark's CPU (AMD family 23) the
 * crc32 instruction, even in three lanes, checks ~6 GB/s per core; see
 * bench/analysis.md for what folding gives.  The constants are x^n mod P,
 * bit-reflected and shifted left by one, for n = 4*128 +- 32 (fold by 512
 * bits) and 128 +- 32 (by 128), derived here with xpow8n() (with gzip's
 * polynomial the same code gives zlib's published k1..k4: checked by
 * hand).  test_crc32c compares every length and alignment with the
 * bit-at-a-time definition. */
#define FOLD_MIN 256
static uint64_t k512_lo, k512_hi, k128_lo, k128_hi;

static void fold_init(void)
{
	k512_lo = (uint64_t)xpow8n(544 / 8) << 1;
	k512_hi = (uint64_t)xpow8n(480 / 8) << 1;
	k128_lo = (uint64_t)xpow8n(160 / 8) << 1;
	k128_hi = (uint64_t)xpow8n(96 / 8) << 1;
}

__attribute__((target("sse4.2,pclmul"))) static inline __m128i
fold16(__m128i x, __m128i k, __m128i data)
{
	__m128i a = _mm_clmulepi64_si128(x, k, 0x00);
	__m128i b = _mm_clmulepi64_si128(x, k, 0x11);
	return _mm_xor_si128(_mm_xor_si128(a, b), data);
}

/* @len >= 64; @crc raw (not inverted).  Returns the raw crc. */
__attribute__((target("sse4.2,pclmul"))) static uint32_t crc_fold(uint32_t crc, const uint8_t *p,
								  size_t len)
{
	const __m128i k512 = _mm_set_epi64x((long long)k512_hi, (long long)k512_lo);
	const __m128i k128 = _mm_set_epi64x((long long)k128_hi, (long long)k128_lo);
	__m128i x0 = _mm_loadu_si128((const __m128i *)p);
	__m128i x1 = _mm_loadu_si128((const __m128i *)(p + 16));
	__m128i x2 = _mm_loadu_si128((const __m128i *)(p + 32));
	__m128i x3 = _mm_loadu_si128((const __m128i *)(p + 48));
	x0 = _mm_xor_si128(x0, _mm_cvtsi32_si128((int)crc));
	p += 64;
	len -= 64;
	while (len >= 64) {
		x0 = fold16(x0, k512, _mm_loadu_si128((const __m128i *)p));
		x1 = fold16(x1, k512, _mm_loadu_si128((const __m128i *)(p + 16)));
		x2 = fold16(x2, k512, _mm_loadu_si128((const __m128i *)(p + 32)));
		x3 = fold16(x3, k512, _mm_loadu_si128((const __m128i *)(p + 48)));
		p += 64;
		len -= 64;
	}
	x0 = fold16(x0, k128, x1);
	x0 = fold16(x0, k128, x2);
	x0 = fold16(x0, k128, x3);
	while (len >= 16) {
		x0 = fold16(x0, k128, _mm_loadu_si128((const __m128i *)p));
		p += 16;
		len -= 16;
	}
	uint64_t c = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(x0));
	c = _mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(x0, 1));
	uint32_t c32 = (uint32_t)c;
	while (len--)
		c32 = _mm_crc32_u8(c32, *p++);
	return c32;
}

static __thread size_t lane_cached;
static __thread uint32_t lane_shift;

__attribute__((target("sse4.2"))) static uint32_t crc_lanes(uint32_t crc, const uint8_t *p, size_t len)
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

static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	if (have_pclmul && len >= FOLD_MIN)
		return crc_fold(crc, p, len);
	return crc_lanes(crc, p, len);
}
#endif

static uint32_t crc_table(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

int hoard_crc32c_with(enum hoard_crc_impl impl, uint32_t crc, const void *buf, size_t len,
		      uint32_t *out)
{
	const uint8_t *p = buf;
	if (__builtin_expect(have_sse42 < 0, 0))
		init();
	*out = 0;
	crc = ~crc;
	switch (impl) {
	case HOARD_CRC_TABLE:
		*out = ~crc_table(crc, p, len);
		return 0;
#if defined(__x86_64__)
	case HOARD_CRC_SSE42:
		if (!have_sse42)
			return -1;
		*out = ~crc_lanes(crc, p, len);
		return 0;
	case HOARD_CRC_FOLD:
		if (!have_pclmul || len < 64)
			return -1;
		*out = ~crc_fold(crc, p, len);
		return 0;
#endif
	default:
		return -1;
	}
}

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
	return ~crc_table(crc, p, len);
}
