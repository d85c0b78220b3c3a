/*
 * format.c - creating a cache (hoard_format) and recognising what a device
 * already holds (hoard_probe), so that format never destroys a filesystem
 * or a partition table by accident.
 *
 * Owns: the initial layout (docs/FORMAT.md, "Layout").  Uses plain
 * pread/pwrite: formatting is a tool's job, off the data path.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "devlock.h"
#include "page.h"

#define PROBE_BYTES (68 * 1024)

static int dev_size(int fd, uint64_t *size)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISBLK(st.st_mode))
		return ioctl(fd, BLKGETSIZE64, size) < 0 ? -errno : 0;
	if (!S_ISREG(st.st_mode))
		return -ENOTBLK;
	*size = (uint64_t)st.st_size;
	return 0;
}

static int has(const uint8_t *b, size_t off, const void *sig, size_t len)
{
	return off + len <= PROBE_BYTES && memcmp(b + off, sig, len) == 0;
}

/* What the first bytes of a device say it holds; NULL if nothing known. */
static const char *identify(const uint8_t *b, size_t n)
{
	if (n < PROBE_BYTES)
		return NULL;
	for (int i = 0; i < 2; i++) {
		const struct hoard_sb *sb = (const struct hoard_sb *)(b + i * HBLK);
		if (sb->magic == HOARD_MAGIC)
			return hoard_sb_valid(sb) ? "a hoardfs cache" : "a damaged hoardfs cache";
	}
	if (b[1080] == 0x53 && b[1081] == 0xEF)
		return "an ext2/3/4 filesystem";
	if (has(b, 0, "XFSB", 4))
		return "an XFS filesystem";
	if (has(b, 0x10040, "_BHRfS_M", 8))
		return "a btrfs filesystem";
	if (has(b, 0, "LUKS\xba\xbe", 6))
		return "a LUKS encrypted volume";
	if (has(b, 4086, "SWAPSPACE2", 10) || has(b, 4086, "SWAP-SPACE", 10))
		return "a swap area";
	if (has(b, 512, "EFI PART", 8))
		return "a GPT partition table";
	if (has(b, 0, "hsqs", 4))
		return "a squashfs filesystem";
	if (has(b, 32769, "CD001", 5))
		return "an ISO 9660 filesystem";
	if (has(b, 82, "FAT32   ", 8) || has(b, 54, "FAT12   ", 8) || has(b, 54, "FAT16   ", 8))
		return "a FAT filesystem";
	if (has(b, 3, "NTFS    ", 8))
		return "an NTFS filesystem";
	if (b[510] == 0x55 && b[511] == 0xAA) {
		/* an MBR: at least one partition entry with a type */
		for (int i = 0; i < 4; i++)
			if (b[446 + 16 * i + 4] != 0)
				return "an MBR partition table";
	}
	if (has(b, 0x1018, "LVM2 001", 8) || has(b, 0x218, "LVM2 001", 8))
		return "an LVM physical volume";
	return NULL;
}

int hoard_probe(const char *path, char *what, size_t what_len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	uint8_t *b = calloc(1, PROBE_BYTES);
	int r = -ENOMEM;
	if (!b)
		goto out;
	ssize_t n = pread(fd, b, PROBE_BYTES, 0);
	if (n < 0) {
		r = -errno;
		goto out;
	}
	const char *id = identify(b, PROBE_BYTES); /* short files read as zeros */
	r = id != NULL;
	if (what && what_len)
		snprintf(what, what_len, "%s", id ? id : "nothing recognisable");
out:
	free(b);
	close(fd);
	return r;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		buf = (const char *)buf + n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static uint64_t clamp64(uint64_t v, uint64_t lo, uint64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

/* Lay out @sb for a device of @blocks blocks. */
static int layout(struct hoard_sb *sb, uint64_t blocks, const struct hoard_format_opts *o)
{
	uint32_t bucket = o->bucket_size ? o->bucket_size : 1u << 20;
	if (bucket % HBLK || bucket < 16 * HBLK || bucket > (1u << 30))
		return -EINVAL;
	sb->block_size = HBLK;
	sb->bucket_blocks = bucket / HBLK;
	sb->dev_blocks = blocks;
	sb->journal_start = 2;
	sb->journal_blocks = o->journal_size ? o->journal_size / HBLK
					     : clamp64(blocks / 32, 1024, 16384);
	if (sb->journal_blocks < 1024)
		return -EINVAL;
	sb->meta_start = sb->journal_start + sb->journal_blocks;
	sb->meta_blocks = clamp64(blocks / 8, 1024, 1ULL << 34);
	sb->data_start = sb->meta_start + sb->meta_blocks;
	if (sb->data_start + 4ULL * sb->bucket_blocks > blocks)
		return -ENOSPC; /* too small for even four buckets */
	sb->nbuckets = (blocks - sb->data_start) / sb->bucket_blocks;
	return 0;
}

/* Reserve an image file's blocks: the cache then cannot run its
 * filesystem out of space later, half-way through a fill, and its data
 * writes are overwrites of allocated (unwritten) extents, which io_uring
 * issues without blocking, in parallel (an allocating O_DIRECT write to a
 * sparse file takes the inode lock and is handed to io-wq, where writes to
 * one file are run one at a time). */
static int reserve(int fd, uint64_t size, int sparse)
{
	if (sparse || fallocate(fd, 0, 0, (off_t)size) == 0)
		return 0;
	if (errno == ENOSPC)
		return -EFBIG;
	if (errno == EOPNOTSUPP || errno == ENOSYS)
		return 0; /* e.g. a filesystem without unwritten extents */
	return -errno;
}

int hoard_format(const char *path, const struct hoard_format_opts *opts,
		 char *found, size_t found_len)
{
	struct hoard_format_opts dflt = {0};
	const struct hoard_format_opts *o = opts ? opts : &dflt;
	uint8_t *pg = NULL;
	struct hoard_sb *sb = NULL;
	uint64_t size = 0;
	int r, created = 0;
	int fd = open(path, O_RDWR | O_CLOEXEC | hoard_dev_open_flags(path, 1));
	if (fd < 0 && errno == ENOENT) {
		if (!o->size)
			return -EINVAL; /* a new image needs a size */
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		created = 1;
	}
	if (fd < 0)
		return -errno;
	r = hoard_dev_lock(fd, 1); /* O1: never under a running engine */
	if (r < 0)
		goto out;
	r = dev_size(fd, &size);
	if (r < 0)
		goto out;
	if (!created && !o->force) {
		char what[128];
		r = hoard_probe(path, what, sizeof(what));
		if (r < 0)
			goto out;
		if (r > 0) {
			if (found && found_len)
				snprintf(found, found_len, "%s", what);
			r = -EEXIST;
			goto out;
		}
	}
	if (o->size) {
		struct stat st;
		if (fstat(fd, &st) < 0) {
			r = -errno;
			goto out;
		}
		if (S_ISREG(st.st_mode)) {
			if (ftruncate(fd, (off_t)o->size) < 0) {
				r = -errno;
				goto out;
			}
			size = o->size;
			r = reserve(fd, size, o->sparse);
			if (r < 0)
				goto out;
		} else if (o->size > size) {
			r = -ENOSPC;
			goto out;
		} else {
			size = o->size;
		}
	}
	if (posix_memalign((void **)&pg, HBLK, HBLK) ||
	    posix_memalign((void **)&sb, HBLK, HBLK)) {
		r = -ENOMEM;
		goto out;
	}
	memset(sb, 0, HBLK);
	r = layout(sb, size / HBLK, o);
	if (r < 0)
		goto out;
	sb->version = HOARD_VERSION;
	sb->version_min = HOARD_VERSION_MIN;
	sb->magic = HOARD_MAGIC;
	sb->created = (uint64_t)time(NULL);
	sb->journal_seq = 1;
	if (getrandom(sb->uuid, sizeof(sb->uuid), 0) != sizeof(sb->uuid))
		memset(sb->uuid, 0x5a, sizeof(sb->uuid));

	/* Kill the superblocks first: a format torn half-way must not look
	 * like a valid cache. */
	memset(pg, 0, HBLK);
	for (int i = 0; i < 2 && r == 0; i++)
		r = pwrite_all(fd, pg, HBLK, (uint64_t)i * HBLK);
	/* and the first journal block, so no old record is replayed */
	if (r == 0)
		r = pwrite_all(fd, pg, HBLK, sb->journal_start * HBLK);
	if (r < 0)
		goto out;

	uint64_t bitmap_pages = (sb->meta_blocks + HBITS_PER_PAGE - 1) / HBITS_PER_PAGE;
	uint64_t gens_pages = (sb->nbuckets + HGENS_PER_PAGE - 1) / HGENS_PER_PAGE;
	/* the B+tree is created at the first writable open (bt_root 0 means
	 * an empty tree), so its node format stays private to btree.c */
	uint64_t used = 1 + bitmap_pages + gens_pages;
	uint64_t meta = sb->meta_start * HBLK;

	/* the root page */
	memset(pg, 0, HBLK);
	struct hroot *root = (struct hroot *)(pg + HPAGE_DATA_OFF);
	root->bt_root = 0;
	root->bt_height = 0;
	root->next_objid = 1;
	root->next_vol = 1;
	root->meta_used = used;
	root->bitmap_start = 1;
	root->bitmap_pages = bitmap_pages;
	root->gens_start = 1 + bitmap_pages;
	root->gens_pages = gens_pages;
	hps_seal(pg, 0, HPT_ROOT, 0);
	r = pwrite_all(fd, pg, HBLK, meta);
	/* bitmap pages: the first `used` pages are allocated */
	for (uint64_t i = 0; i < bitmap_pages && r == 0; i++) {
		memset(pg, 0, HBLK);
		uint8_t *b = pg + HPAGE_DATA_OFF;
		for (uint64_t p = i * HBITS_PER_PAGE; p < used && p < (i + 1) * HBITS_PER_PAGE; p++) {
			uint64_t bit = p % HBITS_PER_PAGE;
			b[bit / 8] |= (uint8_t)(1u << (bit % 8));
		}
		hps_seal(pg, 1 + i, HPT_BITMAP, 0);
		r = pwrite_all(fd, pg, HBLK, meta + (1 + i) * HBLK);
	}
	/* (root points into pg, which the loops above reuse) */
	uint64_t gens_start = 1 + bitmap_pages;
	for (uint64_t i = 0; i < gens_pages && r == 0; i++) {
		memset(pg, 0, HBLK);
		hps_seal(pg, gens_start + i, HPT_GENS, 0);
		r = pwrite_all(fd, pg, HBLK, meta + (gens_start + i) * HBLK);
	}
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	/* superblocks last: the cache exists only once they are written */
	for (int i = 0; i < 2 && r == 0; i++) {
		sb->seq = (uint64_t)i + 1;
		hoard_sb_seal(sb);
		r = pwrite_all(fd, sb, HBLK, (sb->seq % 2) * HBLK);
	}
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
out:
	free(pg);
	free(sb);
	close(fd);
	if (r < 0 && created)
		unlink(path);
	return r;
}
