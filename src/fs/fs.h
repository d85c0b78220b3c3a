/*
 * fs.h - the FUSE front end of hoardfs, as seen by the daemon and the CLI.
 *
 * Owns: the FUSE low-level session, the node table (inode.c), the read and
 * write paths through the cache engine (io.c), the metadata operations
 * (ops.c) and the counters behind `hoardfs stat`.
 * Does not own: process concerns (src/daemon: signals, daemonising, the
 * control socket), the cache device (include/hoardfs/hoard.h) or the
 * network (src/backend/backend.h).  The caller opens the backend and the
 * cache and hands both over; hfs_destroy() gives them back unclosed.
 */
#ifndef HOARDFS_FS_H
#define HOARDFS_FS_H

#include <stdatomic.h>
#include <stdint.h>
#include "backend/backend.h"
#include "hoardfs/hoard.h"

struct hfs_opts {
	/* NFS attribute cache timeouts, seconds (acregmin=3 acregmax=60
	 * acdirmin=30 acdirmax=60 by default; noac = all zero). */
	double acregmin, acregmax, acdirmin, acdirmax;
	int nocto;           /* skip the GETATTR at open (read-only trees) */
	int allow_other;
	int read_only;
	uint32_t pool_bufs;  /* cache-fill buffers of HFS_BUF_SIZE; 0 = 16 */
	uint32_t ra_window;  /* our own readahead window bytes; 0 or 1 = off
			       (the kernel reads ahead HFS_READAHEAD) */
	uint32_t max_threads;/* FUSE worker threads; 0 = 8 */
	uint32_t max_nodes;  /* node table bound (hfs_evict); 0 = none */
	int debug;           /* libfuse debug output */
	const char *fsname;  /* shown in /proc/mounts; NULL = "hoardfs" */
};

/* One buffer: the largest request (1 MiB) rounded out to whole blocks. */
#define HFS_MAX_IO (1u << 20)
#define HFS_READAHEAD (4u << 20) /* kernel readahead window (the bdi's) */
#define HFS_BUF_SIZE (HFS_MAX_IO + 2 * HOARD_BLOCK_SIZE)

/* Counters: relaxed atomics, read by the control socket. */
#define HFS_LAT_BUCKETS 40  /* log2 microseconds */
struct hfs_stats {
	atomic_uint_fast64_t read_ops, read_bytes;      /* FUSE reads answered */
	atomic_uint_fast64_t hit_ops, hit_bytes;        /* served from the cache */
	atomic_uint_fast64_t miss_ops, miss_bytes;      /* served from the server */
	atomic_uint_fast64_t server_bytes;  /* bytes read from the server
					       (misses + readahead) */
	atomic_uint_fast64_t cache_bytes;   /* bytes read from the cache */
	atomic_uint_fast64_t fill_bytes;    /* bytes handed to hoard_write */
	atomic_uint_fast64_t fill_skipped;  /* ranges not cached: pool empty */
	atomic_uint_fast64_t wq_full;       /* hits turned misses that found the
					       work queue full: read from the
					       server on a completion thread */
	atomic_uint_fast64_t ra_bytes;      /* readahead bytes fetched */
	atomic_uint_fast64_t write_ops, write_bytes;
	atomic_uint_fast64_t invalidations; /* objects dropped by coherency */
	atomic_uint_fast64_t server_errors; /* backend calls that failed
					       (other than ENOENT/EEXIST...) */
	atomic_uint_fast64_t cache_errors;  /* engine calls that failed */
	atomic_uint_fast64_t lookups, opens, getattrs;
	atomic_uint_fast64_t getattrs_cached; /* answered from fresh attributes */
	atomic_uint_fast64_t listings;        /* directories listed by the server */
	atomic_uint_fast64_t listings_cached; /* ... served from the engine */
	atomic_uint_fast64_t evictions;     /* files the kernel was asked to
					       forget (-o maxnodes) */
	atomic_uint_fast64_t lat[HFS_LAT_BUCKETS]; /* read latency histogram */
};

struct hfs;

/* Create the front end over @b and @cache (volume named by b->volume). */
int hfs_new(struct hb *b, struct hoard_cache *cache, const struct hfs_opts *o,
	    struct hfs **fsp);
/* Create the FUSE session and mount it on @mountpoint. */
int hfs_mount(struct hfs *fs, const char *mountpoint);
/* Serve requests until unmounted or hfs_exit(); returns 0 or -errno. */
int hfs_loop(struct hfs *fs);
/* Ask the loop to stop and detach the mount (async-signal-unsafe: call it
 * from a thread, e.g. the signal thread). */
void hfs_exit(struct hfs *fs);
/* Unmount (if still mounted), wait for background I/O, free. */
void hfs_destroy(struct hfs *fs);

const struct hfs_stats *hfs_get_stats(struct hfs *fs);
struct hoard_cache *hfs_cache(struct hfs *fs);
/* Nodes (files the kernel holds) and names in the table now, and the most
 * nodes there have been. */
void hfs_node_counts(struct hfs *fs, uint64_t *nodes, uint64_t *names,
		     uint64_t *peak);
/* Percentile @p (0..100) of read latency in microseconds. */
uint64_t hfs_lat_percentile(const struct hfs_stats *st, double p);
/* /proc/self/mountinfo's octal escapes (\\040 for a space, ...) undone
 * in place. */
void hfs_mountinfo_unescape(char *s);

#endif
