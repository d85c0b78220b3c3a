/*
 * name_hash.h - the hash of a name within its directory: the key of the
 * daemon's node table and of the DIRENT records a stored listing keeps
 * in the cache (docs/FORMAT.md, "hash(name) (FNV-1a + finaliser, parent
 * 0)"), so it is part of the on-disk format: changing it makes every
 * stored listing unusable (each is then fetched again).  Header-only, so
 * that tests/tools/dirent_edit computes keys with this very code.
 */
#ifndef HOARDFS_FS_NAME_HASH_H
#define HOARDFS_FS_NAME_HASH_H

#include <stddef.h>
#include <stdint.h>

/* A 64-bit finaliser (MurmurHash3's fmix64). */
static inline uint64_t hfs_mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* FNV-1a of @name (@len bytes) seeded with @parent, then the finaliser. */
static inline uint64_t hfs_name_hash(uint64_t parent, const char *name, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL ^ hfs_mix64(parent);
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)name[i];
		h *= 0x100000001b3ULL;
	}
	return hfs_mix64(h);
}

#endif
