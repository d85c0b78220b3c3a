/* crc32c.h - CRC-32C (Castagnoli), hardware-accelerated where the CPU has it. */
#ifndef HOARDFS_ENGINE_CRC32C_H
#define HOARDFS_ENGINE_CRC32C_H
#include <stddef.h>
#include <stdint.h>
uint32_t hoard_crc32c(uint32_t crc, const void *buf, size_t len);
#endif
