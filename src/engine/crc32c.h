/* crc32c.h - CRC-32C (Castagnoli), hardware-accelerated where the CPU has it. */
#ifndef HOARDFS_ENGINE_CRC32C_H
#define HOARDFS_ENGINE_CRC32C_H
#include <stddef.h>
#include <stdint.h>
uint32_t hoard_crc32c(uint32_t crc, const void *buf, size_t len);

/* One implementation by name, for tests: the table, the crc32 instruction
 * (three lanes for long buffers), PCLMULQDQ folding (from 64 bytes on here).
 * -1 if this CPU lacks it (the result is then 0). */
enum hoard_crc_impl { HOARD_CRC_TABLE, HOARD_CRC_SSE42, HOARD_CRC_FOLD };
int hoard_crc32c_with(enum hoard_crc_impl impl, uint32_t crc, const void *buf, size_t len,
		      uint32_t *out);
#endif
