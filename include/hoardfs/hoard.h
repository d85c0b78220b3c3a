/*
 * hoard.h - public API of libhoard, the hoardfs cache engine.
 *
 * libhoard keeps a persistent cache directly on a block device (a raw
 * partition, a loop device or an image file) in a format of its own
 * (docs/FORMAT.md).  It knows nothing of FUSE or NFS: callers name
 * volumes and objects by opaque byte strings and attach opaque coherency
 * data to objects.
 *
 * Model (after FS-Cache):
 *   cache   one device.
 *   volume  one per server+export, named by an opaque string (<= 255 bytes).
 *   object  one per remote file, named inside its volume by an opaque key
 *           (<= HOARD_KEY_MAX bytes, e.g. an NFS file handle), carrying
 *           coherency data (<= HOARD_COH_MAX bytes: change attribute,
 *           mtime, size).  It holds file data by byte ranges in blocks of
 *           HOARD_BLOCK_SIZE bytes (partial files are normal) and small
 *           metadata records (attributes, directory entries, symlink
 *           targets) for disconnected operation.
 *
 * Conventions (as liburing): every function returns 0 (or a count) on
 * success and a negative errno on failure, and never touches errno.
 * All functions are thread-safe.
 *
 * Errors common to most calls:
 *   -EINVAL   bad argument (size limits, misaligned offsets)
 *   -ENOENT   no such volume/object/record
 *   -EIO      device I/O failed or metadata failed verification
 *   -EROFS    the cache is read-only (opened so, or a metadata write failed:
 *             the error is sticky until the cache is closed and checked)
 *   -ENOSPC   no room left on the device (data area or metadata area)
 *   -ENOMEM   the configured memory budget is exhausted
 */
#ifndef HOARDFS_HOARD_H
#define HOARDFS_HOARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HOARD_BLOCK_SIZE 4096u  /* data and metadata block size */
#define HOARD_KEY_MAX 128u      /* object key bytes */
#define HOARD_COH_MAX 64u       /* coherency data bytes */
#define HOARD_VOLNAME_MAX 255u  /* volume name bytes */
#define HOARD_META_MAX 1024u    /* one metadata record's bytes */

struct hoard_cache;

/* ---- format / open / close ------------------------------------------ */

struct hoard_format_opts {
	uint64_t size;          /* bytes; 0 = size of the existing device/file */
	uint32_t bucket_size;   /* data bucket bytes; 0 = default (1 MiB) */
	uint32_t journal_size;  /* journal bytes; 0 = default */
	int force;              /* overwrite a device holding something we recognise */
	int sparse;             /* an image file: do not reserve its blocks */
};

/*
 * Create a cache on @path.  A regular file is created if absent and sized
 * to opts->size, its blocks reserved with fallocate(2) unless opts->sparse
 * (-EFBIG: its filesystem has not that much free space; a filesystem that
 * cannot reserve leaves the file sparse).  Unless opts->force, refuses a device that holds
 * a recognisable signature: -EEXIST, with a description of what was found
 * in @found (may be NULL) of @found_len bytes.  -EBUSY: another process has
 * the cache open (O1, see hoard_open); nothing is written.
 */
int hoard_format(const char *path, const struct hoard_format_opts *opts,
		 char *found, size_t found_len);

/* Describe what, if anything, @path holds ("empty", "hoardfs cache", "ext4
 * filesystem", "GPT partition table", ...).  Returns 1 if something was
 * recognised, 0 if the device looks empty, negative errno on failure. */
int hoard_probe(const char *path, char *what, size_t what_len);

struct hoard_open_opts {
	uint64_t mem_budget;    /* bytes of memory the library may use; 0 = 64 MiB */
	int read_only;          /* open read-only (fsck, inspect) */
	int no_reclaim;         /* when the data area is full, fail writes with
				   -ENOSPC instead of reclaiming the oldest buckets */
	uint32_t commit_ms;     /* group-commit interval; 0 = default (1000 ms) */
	const struct hoard_dev_ops *dev_ops; /* NULL = io_uring/O_DIRECT device;
						tests pass a recording device */
	void *dev_arg;          /* passed to dev_ops->open */
};

/*
 * Open the cache on @path.  Recovers from a crash by replaying the journal:
 * the time this takes is bounded by the journal size, not by the number of
 * objects.  -EUCLEAN: not a hoardfs cache or both superblocks damaged.
 * -EPROTO: a hoardfs cache of an unsupported version.  -EBUSY: another
 * process has the cache open (O1: one writer, or any number of readers,
 * at a time; hoard_format and hoard_fsck --repair are writers).
 */
int hoard_open(const char *path, const struct hoard_open_opts *opts,
	       struct hoard_cache **cachep);

/* Commit everything outstanding and close.  Waits for in-flight I/O. */
int hoard_close(struct hoard_cache *c);

/* Make every completed write durable (a commit).  */
int hoard_sync(struct hoard_cache *c);

/* ---- volumes ---------------------------------------------------------- */

/* Find (or with @create, create) a volume.  Stores its id in *volp. */
int hoard_vol_open(struct hoard_cache *c, const void *name, size_t len,
		   int create, uint32_t *volp);

/* ---- objects ---------------------------------------------------------- */

struct hoard_obj_info {
	uint64_t id;
	uint32_t vol;
	uint32_t gen;             /* bumped by every invalidation */
	uint32_t key_len;
	uint32_t coh_len;
	uint8_t key[HOARD_KEY_MAX];
	uint8_t coh[HOARD_COH_MAX];
	uint64_t atime;           /* seconds; last lookup (eviction hint) */
};

/* Look up the object of @vol named @key.  -ENOENT if absent. */
int hoard_obj_lookup(struct hoard_cache *c, uint32_t vol, const void *key,
		     size_t key_len, struct hoard_obj_info *info);

/* Look up, creating with coherency @coh if absent.  If present and @coh
 * differs from the stored coherency data, the object's data and metadata
 * records are dropped (O(1), by generation) and @coh stored: returns 1 in
 * that case, 0 otherwise. */
int hoard_obj_acquire(struct hoard_cache *c, uint32_t vol, const void *key,
		      size_t key_len, const void *coh, size_t coh_len,
		      struct hoard_obj_info *info);

/* Fetch an object by id. */
int hoard_obj_get(struct hoard_cache *c, uint64_t id, struct hoard_obj_info *info);

/* Compare @coh with the stored coherency data: 0 if equal; if different,
 * invalidate the object, store @coh and return 1. */
int hoard_obj_check(struct hoard_cache *c, uint64_t id, const void *coh,
		    size_t coh_len);

/* Drop all data and metadata records of the object (O(1)). */
int hoard_obj_invalidate(struct hoard_cache *c, uint64_t id);

/* Replace the stored coherency data WITHOUT dropping anything: for the
 * caller's own changes (a write through to the server), after it has made
 * the cached data match the server's new state.  Misuse serves stale data. */
int hoard_obj_set_coherency(struct hoard_cache *c, uint64_t id, const void *coh,
			    size_t coh_len);

/* Drop the cached blocks overlapping [off, off+len) (every block that holds
 * any byte of the range). */
int hoard_obj_punch(struct hoard_cache *c, uint64_t id, uint64_t off, uint64_t len);

/* Drop the data from byte @from onwards (a truncate on the server). */
int hoard_obj_truncate(struct hoard_cache *c, uint64_t id, uint64_t from);

/* Remove the object and everything it holds. */
int hoard_obj_remove(struct hoard_cache *c, uint64_t id);

/* Call @fn for every object of @vol (or of every volume if vol == 0),
 * in no particular order; a non-zero return from @fn stops the walk and
 * is returned. */
typedef int (*hoard_obj_iter_fn)(const struct hoard_obj_info *info, void *arg);
int hoard_obj_iterate(struct hoard_cache *c, uint32_t vol, hoard_obj_iter_fn fn,
		      void *arg);

/* ---- data ------------------------------------------------------------- */

/*
 * Data is stored in blocks of HOARD_BLOCK_SIZE bytes.  A write must start
 * at a block boundary; its length must be a multiple of the block size
 * unless the write ends the file (the last block may be short).  Buffers
 * for the asynchronous calls must be aligned to HOARD_BLOCK_SIZE and stay
 * valid until the callback; their length is rounded up to whole blocks.
 *
 * A read returns how many bytes from @off on are present and verified
 * (a short count = a miss from there on; 0 = nothing present at @off).
 * A block whose checksum fails is reported absent and counted in
 * stats.csum_errors: the cache never returns bytes it cannot verify.
 */
typedef void (*hoard_done_fn)(void *arg, int64_t res);

int hoard_read(struct hoard_cache *c, uint64_t id, uint64_t off, size_t len,
	       void *buf, hoard_done_fn done, void *arg);
int hoard_write(struct hoard_cache *c, uint64_t id, uint64_t off, size_t len,
		const void *buf, hoard_done_fn done, void *arg);

/* Memory for data buffers: @size bytes, zeroed and faulted in, aligned to
 * 2 MiB, on transparent huge pages where the kernel gives them.  A buffer
 * from here reaches the device in one or two physical segments; one from
 * malloc() is one segment per 4 KiB page, and a 1 MiB transfer of 256
 * segments is split by the block layer and fills a virtio queue on its
 * own (src/engine/iobuf.c).  Use it for buffers of 64 KiB and more that
 * are reused: the rounding to 2 MiB makes it wasteful for small or
 * short-lived ones.  NULL if the memory cannot be mapped.  Free with
 * hoard_iobuf_free() and the same @size. */
void *hoard_iobuf_alloc(size_t size);
void hoard_iobuf_free(void *p, size_t size);

/* hoard_read() in the calling thread (same arguments and result, as a
 * return value): the device reads go through dev_ops->sync_io when the
 * device has one, so no completion-thread hop; otherwise it submits and
 * waits.  For a lone small read, the lower latency. */
int64_t hoard_read_sync(struct hoard_cache *c, uint64_t id, uint64_t off, size_t len,
			void *buf);

/* Blocking wrappers: return bytes read/written or a negative errno.
 * Any buffer alignment is accepted (copies through an aligned bounce). */
int64_t hoard_pread(struct hoard_cache *c, uint64_t id, void *buf, size_t len,
		    uint64_t off);
int64_t hoard_pwrite(struct hoard_cache *c, uint64_t id, const void *buf,
		     size_t len, uint64_t off);

/* Present ranges of [off, off+len): fills up to @max ranges, returns the
 * number found (may exceed @max: then only @max were filled). */
struct hoard_range {
	uint64_t off;
	uint64_t len;
};
int hoard_present(struct hoard_cache *c, uint64_t id, uint64_t off,
		  uint64_t len, struct hoard_range *ranges, int max);

/* ---- metadata records --------------------------------------------------- */

/*
 * Small records attached to an object, named by (@kind, @rid): the front
 * end stores attributes (kind 1), directory entries (kind 2, rid = hash of
 * the name), symlink targets (kind 3).  Records go with the object's data on
 * invalidation.  Values are at most HOARD_META_MAX bytes.
 */
int hoard_meta_put(struct hoard_cache *c, uint64_t id, uint32_t kind,
		   uint64_t rid, const void *val, size_t len);
/* Returns the record's length (copying at most @len bytes), -ENOENT. */
int hoard_meta_get(struct hoard_cache *c, uint64_t id, uint32_t kind,
		   uint64_t rid, void *val, size_t len);
int hoard_meta_del(struct hoard_cache *c, uint64_t id, uint32_t kind,
		   uint64_t rid);
/* Drop every record of @kind (all kinds if kind == 0). */
int hoard_meta_clear(struct hoard_cache *c, uint64_t id, uint32_t kind);
typedef int (*hoard_meta_iter_fn)(uint64_t rid, const void *val, size_t len,
				  void *arg);
int hoard_meta_iterate(struct hoard_cache *c, uint64_t id, uint32_t kind,
		       hoard_meta_iter_fn fn, void *arg);

/* ---- stats -------------------------------------------------------------- */

struct hoard_stats {
	uint64_t dev_bytes;         /* device size */
	uint64_t data_bytes;        /* data area size */
	uint64_t data_used;         /* bytes of the data area in use (ring) */
	uint64_t meta_pages;        /* metadata area pages */
	uint64_t meta_used;         /* metadata pages in use */
	uint64_t volumes;
	uint64_t objects;
	uint64_t read_hits, read_misses;       /* block reads */
	uint64_t bytes_read, bytes_written;    /* data bytes served / stored */
	uint64_t csum_errors;       /* blocks that failed verification */
	uint64_t io_errors;
	uint64_t commits;
	uint64_t meta_reads;        /* metadata reads from the device (page misses) */
	uint64_t meta_prefetched;   /* pages a scan's miss read along with its own */
	uint64_t reclaimed_buckets; /* buckets evicted by the ring */
	uint64_t mem_used;          /* bytes of memory held by the library */
	int read_only;              /* 1 if read-only (sticky error or opened so) */
};
int hoard_stats(struct hoard_cache *c, struct hoard_stats *st);

/* ---- volumes and geometry (tools) ------------------------------------------- */

typedef int (*hoard_vol_iter_fn)(uint32_t vol, const void *name, size_t len,
				 void *arg);
int hoard_vol_iterate(struct hoard_cache *c, hoard_vol_iter_fn fn, void *arg);

struct hoard_geometry {
	uint64_t dev_blocks, journal_start, journal_blocks, meta_start, meta_blocks;
	uint64_t data_start, nbuckets;
	uint32_t block_size, bucket_blocks;
	uint32_t version;
	uint64_t created, sb_seq;
	uint8_t uuid[16];
};
int hoard_geometry(struct hoard_cache *c, struct hoard_geometry *g);

/* ---- fsck ------------------------------------------------------------------ */

struct hoard_fsck_opts {
	int repair;       /* fix what can be fixed (superblock copy, leaked
			     pages, orphan records, counters) */
	int check_data;   /* also read and verify every cached data block */
	const struct hoard_dev_ops *dev_ops; /* NULL = hoard_dev_uring */
	void *dev_arg;
	/* called with each finding ("error: ...", "warning: ...") */
	void (*report)(const char *msg, void *arg);
	/* called now and then with work done out of total */
	void (*progress)(uint64_t done, uint64_t total, void *arg);
	void *arg;
};
struct hoard_fsck_result {
	uint64_t errors, warnings, repaired;
	uint64_t pages_used, pages_reachable, leaked_pages;
	uint64_t volumes, objects, chunks, blocks, meta_records, orphans;
	uint64_t data_blocks_checked, data_blocks_bad;
};
/*
 * Check every structure of the cache on @path: both superblocks, the
 * journal (replayed in memory), the root page, every B+tree page and
 * record, the allocation bitmap against the pages reachable from the tree,
 * block pointers, and with check_data every data block.  Returns 0 if no
 * error was found, 1 if errors were found (res->errors > 0), or a negative
 * errno if the cache could not be examined at all (-EUCLEAN: no valid
 * superblock).
 */
int hoard_fsck(const char *path, const struct hoard_fsck_opts *opts,
	       struct hoard_fsck_result *res);

/* ---- the device layer (for tests and tools) ----------------------------- */

/*
 * Every device access goes through this table, so that tests can record
 * writes and flushes and replay prefixes of them (tests/crash) or inject
 * faults.  The default implementation (hoard_dev_uring) uses io_uring with
 * O_DIRECT and a completion thread; callbacks run on that thread.
 */
struct hoard_io {
	int op;                 /* HOARD_IO_READ, _WRITE, _FLUSH */
	void *buf;
	size_t len;
	uint64_t off;
	void (*done)(struct hoard_io *io, int res); /* res: bytes or -errno */
	void *arg;
	struct hoard_io *next;  /* the device's own, while it holds the io */
};
#define HOARD_IO_READ 0
#define HOARD_IO_WRITE 1
#define HOARD_IO_FLUSH 2

struct hoard_dev;
struct hoard_dev_ops {
	int (*open)(const char *path, int read_only, void *arg,
		    struct hoard_dev **devp, uint64_t *sizep);
	int (*submit)(struct hoard_dev *dev, struct hoard_io *io);
	void (*close)(struct hoard_dev *dev);
	/* Optional: perform @n ios and return when all are done (0 or the
	 * first negative errno; a short transfer is -EIO), without depending
	 * on the thread that delivers submit()'s completions.  The engine
	 * does its metadata I/O this way, so that a data completion callback
	 * that calls back into the engine cannot deadlock it.  NULL: the
	 * engine submits and waits (tests' devices). */
	int (*sync_io)(struct hoard_dev *dev, struct hoard_io *ios, int n);
};
extern const struct hoard_dev_ops hoard_dev_uring;

/* Human-readable name of a negative errno from this library. */
const char *hoard_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
