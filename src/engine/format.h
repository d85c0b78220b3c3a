/*
 * format.h - on-disk structures of a hoardfs cache.  docs/FORMAT.md says
 * the same in prose with offsets; change both together.
 *
 * Every field is little-endian and fixed width; structs are packed with
 * explicit padding and their sizes asserted.  The code reads them in place,
 * so a big-endian host refuses to build rather than misread a cache.
 */
#ifndef HOARDFS_ENGINE_FORMAT_H
#define HOARDFS_ENGINE_FORMAT_H

#include <stdint.h>
#include <hoardfs/hoard.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "hoardfs reads its little-endian format in place: port the accessors first"
#endif

#define HOARD_MAGIC 0x4452414f48ULL /* "HOARD\0\0\0" as little-endian bytes */
#define HOARD_VERSION 1u
#define HOARD_VERSION_MIN 1u
#define HBLK HOARD_BLOCK_SIZE

/* Device layout, in 4 KiB blocks:
 *   0            superblock copy A
 *   1            superblock copy B
 *   2..          journal (sb.journal_blocks)
 *   ..           metadata area (sb.meta_blocks): page store pages
 *   ..           data area: sb.nbuckets buckets of sb.bucket_blocks blocks
 */
struct hoard_sb {
	uint32_t csum;          /* crc32c of bytes 4..4095 of the block */
	uint16_t version;       /* format written */
	uint16_t version_min;   /* oldest reader that may open it */
	uint64_t magic;         /* HOARD_MAGIC */
	uint64_t seq;           /* bumped every write; highest valid copy wins */
	uint8_t uuid[16];
	uint64_t dev_blocks;    /* total device blocks */
	uint32_t block_size;    /* HBLK */
	uint32_t bucket_blocks; /* blocks per data bucket */
	uint64_t journal_start, journal_blocks;
	uint64_t meta_start, meta_blocks;
	uint64_t data_start, nbuckets;
	uint64_t journal_seq;   /* seq of the first commit record expected at
				   journal_start; older records are ignored */
	uint64_t created;       /* unix seconds */
	uint32_t flags;         /* HOARD_SB_* */
	uint32_t pad0;
	uint8_t reserved[4096 - 128];
} __attribute__((packed));
_Static_assert(sizeof(struct hoard_sb) == 4096, "superblock is one block");

#define HOARD_SB_NEEDS_CHECK 1u /* a metadata write failed: fsck first */

/* Header of every metadata page (page store). */
struct hpage_hdr {
	uint32_t csum;   /* crc32c of bytes 4..4095 */
	uint16_t type;   /* HPT_* */
	uint16_t flags;
	uint64_t pgno;   /* page number in the metadata area: a misdirected
			    write fails verification */
	uint64_t lsn;    /* commit sequence that last wrote it */
	uint64_t magic;  /* HOARD_MAGIC */
} __attribute__((packed));
_Static_assert(sizeof(struct hpage_hdr) == 32, "page header");
#define HPAGE_DATA_OFF 32u
#define HPAGE_BODY (HBLK - HPAGE_DATA_OFF)

enum {
	HPT_FREE = 0,
	HPT_ROOT = 1,    /* page 0: struct hroot */
	HPT_BITMAP = 2,  /* metadata-area allocation bitmap */
	HPT_GENS = 3,    /* bucket generation table */
	HPT_BT_LEAF = 4,
	HPT_BT_INNER = 5,
};

/* Page 0 of the metadata area: the root of everything else. */
struct hroot {
	uint64_t bt_root;        /* B+tree root page */
	uint32_t bt_height;      /* 1 = root is a leaf */
	uint32_t pad0;
	uint64_t next_objid;     /* generation counter: every new object and
				    every invalidation takes the next value */
	uint32_t next_vol;
	uint32_t pad1;
	uint64_t nobjects, nvolumes;
	uint64_t meta_used;      /* allocated pages */
	uint64_t bitmap_start, bitmap_pages; /* page numbers */
	uint64_t gens_start, gens_pages;
	uint64_t ring_head;      /* next bucket to fill (monotonic count) */
	uint64_t ring_tail;      /* oldest live bucket (monotonic count);
				    bucket index = count % nbuckets */
	uint64_t reclaimed;      /* buckets reclaimed so far */
	uint8_t reserved[HPAGE_BODY - 112];
} __attribute__((packed));
_Static_assert(sizeof(struct hroot) == HPAGE_BODY, "root page body");

/* Bucket generations: uint16_t per bucket, HGENS_PER_PAGE per page. */
#define HGENS_PER_PAGE (HPAGE_BODY / 2)
/* Allocation bitmap: one bit per metadata page. */
#define HBITS_PER_PAGE (HPAGE_BODY * 8)

/* Journal: a commit is one header block followed by the page images.
 * A transaction larger than HJ_MAX_PAGES is split over several records;
 * only the last has HJ_COMMIT set and recovery applies a transaction only
 * once it has read its commit record. */
struct hjournal_hdr {
	uint32_t csum;      /* crc32c of bytes 4..4095 */
	uint32_t npages;
	uint64_t magic;     /* HOARD_MAGIC ^ 0x4a4e4c (journal) */
	uint64_t seq;       /* record sequence, consecutive from sb.journal_seq */
	uint32_t flags;     /* HJ_COMMIT */
	uint32_t pad0;
	uint64_t lsn;       /* transaction (commit) number */
	struct {
		uint64_t pgno;
		uint32_t csum;  /* crc32c of the whole page image */
		uint32_t pad;
	} pages[];
} __attribute__((packed));
#define HJ_MAGIC (HOARD_MAGIC ^ 0x4a4e4cULL)
#define HJ_COMMIT 1u
#define HJ_MAX_PAGES ((HBLK - 40) / 16)

/* B+tree keys: compared as the tuple (type, a, b, c). */
struct hbt_key {
	uint8_t type;    /* HK_* */
	uint8_t pad[3];
	uint32_t a;
	uint64_t b;
	uint64_t c;
} __attribute__((packed));
_Static_assert(sizeof(struct hbt_key) == 24, "btree key");

enum {
	HK_VOL = 1,   /* (VOL, 0, namehash, vol)  -> volume name */
	/* 2 was an index by key: object ids are now hashes of (vol, key) */
	HK_OBJ = 3,   /* (OBJ, 0, objid = hash(vol, key) + probe, 0) -> struct hobj, packed: header,
			 key_len key bytes, coh_len coherency bytes */
	HK_CHUNK = 4, /* (CHUNK, 0, objid, chunk) -> struct hchunk */
	HK_META = 5,  /* (META, kind, objid, rid) -> record bytes, prefixed by
			 a uint32_t object generation */
};

/* Object record. */
struct hobj {
	uint32_t vol;
	uint32_t gen;
	uint16_t key_len, coh_len;
	uint32_t flags;
	uint64_t atime;
	uint8_t key[HOARD_KEY_MAX];
	uint8_t coh[HOARD_COH_MAX];
} __attribute__((packed));
_Static_assert(sizeof(struct hobj) == 216, "object record");

/* Data: a chunk maps HCHUNK_BLOCKS consecutive file blocks.  A block
 * pointer is valid when len > 0, its bucket's generation equals gen, and
 * the chunk's obj_gen equals the object's gen; its data must match csum. */
#define HCHUNK_BLOCKS 32u
struct hblkptr {
	uint64_t blk;    /* device block number */
	uint32_t csum;   /* crc32c of the len bytes stored */
	uint16_t len;    /* bytes valid in the block (1..4096), 0 = absent */
	uint16_t gen;    /* bucket generation when written */
} __attribute__((packed));
_Static_assert(sizeof(struct hblkptr) == 16, "block pointer");
struct hchunk {
	uint32_t obj_gen;
	uint32_t pad0;
	struct hblkptr b[HCHUNK_BLOCKS];
} __attribute__((packed));
_Static_assert(sizeof(struct hchunk) == 520, "chunk");

#endif
