/*
 * fs_i.h - internals shared by the files of src/fs.
 *
 * Locking:
 *   fs->lock    the node table (all three hashes), and every field of
 *               struct hfs_node and struct hfs_name marked [L].  Never held
 *               across a backend or engine call.
 *   pool->lock  the free list of cache-fill buffers.
 *   wq.lock     the background work queue.
 *   fh->lock    the readahead state of one open file.
 *
 * Invariants (relied on where noted):
 *   I1 a node is freed only when nlookup == 0 and refs == 0; refs counts
 *      names whose parent it is, open handles and in-flight users
 *      (hfs_node_put) -- so a path can always be built from a node we hold.
 *   I2 a directory has at most one name; a file may have several (hard
 *      links); path building uses the first.
 *   I3 FUSE inode numbers are never reused (64-bit counter), so no
 *      generation numbers are needed.
 *   I4 bytes are stored in the cache only if they came from the server
 *      for an object whose coherency was checked at open, and no write to
 *      the node started or finished while they were fetched (wseq).
 */
#ifndef HOARDFS_FS_I_H
#define HOARDFS_FS_I_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include "fs/fs.h"
#include "fs/name_hash.h"

/* Coherency data kept with each object: the server's view of the file.
 * Little-endian, fixed width (hoard coherency bytes are opaque). */
struct hfs_coh {
	uint64_t mtime_sec, mtime_nsec, ctime_sec, ctime_nsec, size, change;
};
#define HFS_COH_LEN 48
_Static_assert(sizeof(struct hfs_coh) == HFS_COH_LEN, "coh size");
_Static_assert(HFS_COH_LEN <= HOARD_COH_MAX, "coh fits");

/* Metadata record kinds (hoard_meta_put). */
#define HFS_META_ATTR 1u    /* rid 0: struct hb_attr, serialised LE */
#define HFS_META_DIRENT 2u  /* rid = hash(name): fileid, mode, name */
#define HFS_META_LINK 3u    /* rid 0: symlink target */
#define HFS_META_LISTING 4u /* rid 0: the DIRENT records form a whole
			       listing (written last; docs/FORMAT.md) */

struct hfs_node;

/* Hash chains are intrusive and singly linked; the hash is recomputed from
 * the key when needed (growing, unlinking) rather than stored: one word per
 * link instead of two, on every node and name. */
struct hfs_hlink {
	struct hfs_hlink *next;
};

struct hfs_htab {
	struct hfs_hlink **b;
	size_t nb, count;
	uint64_t (*hash)(const struct hfs_hlink *l); /* the key's hash */
};

/* One name of a node: 32 bytes and the name, one allocation. */
struct hfs_name {
	struct hfs_hlink h;        /* in fs->by_name, keyed (parent ino, name) */
	struct hfs_name *nnext;    /* [L] next name of the same node */
	struct hfs_node *parent;   /* holds a ref on parent (I1) */
	struct hfs_node *node;
	char name[];               /* NUL-terminated, no '/' */
};

/* One node per server file the kernel holds (nlookup > 0) or we use
 * (refs > 0): the daemon's memory grows with these (hfs_evict bounds their
 * number, -o maxnodes).  Kept to 256 bytes; see hfs_node_wlock for the
 * write lock that used to be here. */
struct hfs_node {
	struct hfs_hlink h_ino;    /* in fs->by_ino */
	struct hfs_hlink h_key;    /* in fs->by_key, keyed (fsid, fileid) */
	uint64_t ino;
	uint64_t fsid, fileid;
	uint64_t nlookup;          /* [L] */
	uint32_t refs;             /* [L] */
	uint32_t writers;          /* [L] handles that wrote and not flushed */
	struct hfs_name *names;    /* [L] */
	struct hb_attr attr;       /* [L] last attributes from the server */
	uint64_t attr_ns;          /* [L] real-time ns at which the server gave
				      attr (before the call that fetched it),
				      or HFS_ATTR_STALE | when we changed the
				      file (hfs_attr_*: ask again) */
	uint64_t obj;              /* [L] engine object id, 0 = unknown */
	struct hfs_coh coh;        /* [L] coherency at the last open/own change */
	atomic_uint_fast64_t wseq; /* bumped around every write/truncate (I4) */
	bool coh_valid;            /* [L] */
	bool evicting;             /* [L] the kernel was asked to forget it
				      (hfs_evict; counted in evict_pending) */
	bool referenced;           /* [L] looked up since the evictor's clock
				      hand last passed (hfs_evict_pick) */
};
_Static_assert(sizeof(struct hfs_node) <= 256, "a node grows the daemon by 100 MB per 400k files");
_Static_assert(sizeof(struct hfs_name) == 32, "name header");

struct hfs_buf {
	struct hfs_buf *next;
	struct hfs *fs;
	uint8_t *data;             /* HFS_BUF_SIZE, block aligned */
	bool small;                /* from the hit pool: HFS_SMALL_BUF */
	/* hit path */
	fuse_req_t req;
	struct hfs_fh *fh;
	uint64_t aoff, off;
	size_t size;
	uint64_t t0;
};

struct hfs_fh {
	struct hb_file *bf;
	struct hfs_node *node;     /* ref held */
	uint64_t obj;              /* 0: not cacheable */
	int flags;
	bool wrote;
	atomic_int refs;           /* the FUSE handle + background jobs */
	pthread_mutex_t lock;      /* ra_*, seq_next, wrote */
	uint64_t seq_next;         /* where a sequential reader reads next */
	uint64_t ra_end;           /* readahead fetched/queued up to here */
	bool ra_busy;
	atomic_bool last_hit;      /* hint: the last read was served from the
				      cache, so try the cache first (io.c) */
};

struct hfs_dirh {
	size_t n;
	struct hfs_dirent {
		char *name;
		struct hb_attr attr;
		uint64_t checked_ns; /* wall clock when the server gave attr */
		bool has_attr;
	} *e;
};

enum hfs_job_kind { HFS_JOB_RA, HFS_JOB_MISS };
struct hfs_job {
	enum hfs_job_kind kind;
	struct hfs_fh *fh;         /* ref held by the job */
	fuse_req_t req;
	uint64_t off, len;
	uint64_t t0;
};

/* Hit buffers for reads of up to HFS_SMALL_MAX bytes: a read rounded out
 * to whole blocks; as many as FUSE requests in flight (max_background). */
#define HFS_SMALL_BUF (32u * 1024)
#define HFS_SMALL_MAX (HFS_SMALL_BUF - 2 * HOARD_BLOCK_SIZE)
#define HFS_SMALL_BUFS 64

#define HFS_WQ_LEN 64
/* Write locks, shared by nodes through a hash of the ino: a lock per node
 * cost 40 bytes on each of the (possibly millions of) nodes while only
 * nodes being written use one.  Two files written at once share a lock
 * with probability 1/HFS_WLOCKS. */
#define HFS_WLOCKS 256
#define HFS_WORKERS 3

struct hfs {
	struct hb *b;
	struct hoard_cache *cache;
	uint32_t vol;
	struct hfs_opts o;
	struct fuse_session *se;
	char *mountpoint;
	bool mounted;
	struct hfs_stats st;

	pthread_mutex_t lock;
	struct hfs_htab by_ino, by_key, by_name;
	uint64_t next_ino;
	struct hfs_node *root;
	pthread_mutex_t wlocks[HFS_WLOCKS]; /* hfs_node_wlock */

	/* the node table's bound (fs.c: evictor; inode.c: hfs_evict_*) */
	pthread_cond_t evict_cond;   /* fs->lock; signalled above max_nodes */
	pthread_t evictor;
	bool evict_started, evict_stop; /* fs->lock */
	size_t evict_hand;           /* [L] next by_ino bucket to sweep */
	size_t evict_pending;        /* [L] nodes with evicting set */
	size_t nodes_peak;           /* [L] the most nodes there have been */
	/* Replies that link new inodes (readdirplus, lookup) in progress and
	 * when the last ended (hfs_now_us): the kernel drops the attributes
	 * of such a reply if any inode was evicted while it was in flight
	 * (fuse_iget's evict_ctr check), so the evictor waits for a gap. */
	atomic_int linking;
	atomic_uint_fast64_t linked_at;

	/* cache-fill buffers (I4, style habit 6: no allocation on the data
	 * path) */
	pthread_mutex_t pool_lock;
	struct hfs_buf *pool_free;
	struct hfs_buf *pool_all;
	uint8_t *pool_mem;           /* their memory: hoard_iobuf_alloc() */
	uint32_t pool_n;
	uint32_t pool_inflight;      /* pool_lock */
	/* hit buffers for small reads (HFS_SMALL_BUF each): a queue of
	 * 4 KiB reads must not take the 1 MiB fill buffers (pool_lock) */
	struct hfs_buf *small_free;
	struct hfs_buf *small_all;
	uint8_t *small_mem;
	uint32_t small_n;
	uint32_t small_inflight;     /* pool_lock */
	atomic_uint hits_inflight;   /* cache reads under way (io.c read_hit) */

	/* background work: readahead and hit-path fallbacks */
	pthread_mutex_t wq_lock;
	pthread_cond_t wq_cond, wq_idle;
	struct hfs_job wq[HFS_WQ_LEN];
	unsigned wq_head, wq_len, wq_active;
	bool wq_stop;
	pthread_t workers[HFS_WORKERS];
	int nworkers;
};

/* inode.c */
int hfs_nodes_init(struct hfs *fs, const struct hb_attr *root_attr);
void hfs_nodes_free(struct hfs *fs);
struct hfs_node *hfs_node_get(struct hfs *fs, uint64_t ino); /* +ref */
void hfs_node_put(struct hfs *fs, struct hfs_node *n);
/* Record that @name in @parent is @attr's file: finds or creates the node
 * keyed by (fsid, fileid), adds @nlookup and a ref.  Directories are moved
 * to the new name; files gain it as another name. */
struct hfs_node *hfs_node_link(struct hfs *fs, struct hfs_node *parent,
			       const char *name, const struct hb_attr *attr,
			       uint64_t attr_ns, uint64_t nlookup);
void hfs_node_forget(struct hfs *fs, uint64_t ino, uint64_t n);
/* Drop the name (@parent, @name) from the table; returns the node that
 * had it with a ref (or NULL). */
struct hfs_node *hfs_name_drop(struct hfs *fs, uint64_t parent,
			       const char *name);
/* Rename in the table (after the server accepted it).  Returns the node
 * whose name was replaced (not for an exchange), with a ref, or NULL. */
struct hfs_node *hfs_name_move(struct hfs *fs, uint64_t parent,
			       const char *name, uint64_t newparent,
			       const char *newname, bool exchange);
/* Malloc'd "/a/b[/name]" for the node, -ESTALE if it has no name. */
int hfs_path(struct hfs *fs, struct hfs_node *n, const char *name,
	     char **pathp);
/* A node's attributes and their time (attr_ns), under fs->lock.  The
 * newest win: attributes the server gave at @at replace the node's only
 * if they are no older than those, and no older than our last change to
 * the file, which marks the node stale with its time (so that an answer
 * from before the change, a GETATTR under way or a listing read before,
 * is never taken for the server's word after it: NFS clients keep a
 * generation count for the same reason). */
#define HFS_ATTR_STALE (1ull << 63)
static inline void hfs_attr_stale_locked(struct hfs_node *n, uint64_t now)
{
	n->attr_ns = HFS_ATTR_STALE | now;
}
static inline void hfs_attr_take_locked(struct hfs_node *n,
					const struct hb_attr *a, uint64_t at)
{
	if (at < (n->attr_ns & ~HFS_ATTR_STALE))
		return;
	n->attr = *a;
	n->attr_ns = at;
}
/* The server's answer to a GETATTR sent at @attr_ns (real time). */
void hfs_node_set_attr(struct hfs *fs, struct hfs_node *n,
		       const struct hb_attr *a, uint64_t attr_ns);
/* The lock that orders writes to the server and their copies into the
 * cache for @n (hfs_op_write); shared with other nodes (HFS_WLOCKS). */
pthread_mutex_t *hfs_node_wlock(struct hfs *fs, const struct hfs_node *n);

/* Bounding the node table (-o maxnodes).  Nodes exist while the kernel
 * holds the inode, and the kernel holds what it looked up until memory
 * pressure makes it forget; so the daemon asks it to forget files
 * (fuse_lowlevel_notify_inval_entry on their entry: the kernel drops the
 * dentry, and the inode, unused, is evicted and FORGET follows; unlike
 * notify_delete it leaves the inode's link count alone, so a process that
 * stats the file meanwhile sees it as it is).  Only files nobody uses
 * qualify: not a directory, no open handle or child (refs == 0), one name
 * and nlink 1 (another name would keep the inode anyway).  Which of them:
 * a clock (second chance) over the table, so that the files a walk has
 * just listed, and is about to stat, are the last to go however fast it
 * walks: a lookup marks a node referenced, the hand clears the mark as it
 * passes and takes nodes it finds unmarked.  A file looked up again is
 * just looked up again.  All under fs->lock. */
struct hfs_victim {
	uint64_t parent, ino;
	char name[256];
};
#define HFS_EVICT_BATCH 64
/* How many nodes to ask the kernel about now: down to 7/8 of max_nodes,
 * counting those already asked. */
size_t hfs_evict_want(struct hfs *fs);
/* Up to @max victims, swept from fs->evict_hand on, at most twice round
 * the table (the first pass may only clear marks); marks them evicting. */
size_t hfs_evict_pick(struct hfs *fs, struct hfs_victim *v, size_t max);
/* The kernel refused (the entry was not in its cache): unmark. */
void hfs_evict_undo(struct hfs *fs, uint64_t ino);

/* ops.c helpers used by io.c */
double hfs_now(void);
uint64_t hfs_now_us(void);
uint64_t hfs_real_ns(void);        /* CLOCK_REALTIME, ns */
void hfs_coh_from_attr(struct hfs_coh *c, const struct hb_attr *a);
void hfs_own_change(struct hfs *fs, struct hfs_node *n,
		    const struct hb_attr *a);
void hfs_count_err(struct hfs *fs, int err);
struct hb_cred hfs_cred(fuse_req_t req);
extern const struct fuse_lowlevel_ops hfs_ll_ops;

/* io.c */
int hfs_io_init(struct hfs *fs);
void hfs_io_stop(struct hfs *fs);
void hfs_fh_put(struct hfs *fs, struct hfs_fh *fh);
void hfs_op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		 struct fuse_file_info *fi);
void hfs_op_write(fuse_req_t req, fuse_ino_t ino, const char *buf,
		  size_t size, off_t off, struct fuse_file_info *fi);

/* Test points, in the sanitizer build only (-DHOARD_TEST_HOOKS): with
 * HOARDFS_TEST_PAUSE=NAME:MS in its environment, a thread passing point
 * NAME sleeps MS milliseconds there, which widens a race window a test
 * must hit (tests/integration/mount_dir_umount_fills.sh).  With
 * HOARDFS_TEST_FAIL=NAME, HFS_TEST_FAIL(NAME) is true: the call there
 * fails as it would when out of room, which reaches an error path a test
 * cannot otherwise make happen on purpose (mount_dir_wq_full.sh).
 * Nothing in the optimised build. */
#ifdef HOARD_TEST_HOOKS
void hfs_test_point(const char *name);
bool hfs_test_fail(const char *name);
#define HFS_TEST_POINT(name) hfs_test_point(name)
#define HFS_TEST_FAIL(name) hfs_test_fail(name)
#else
#define HFS_TEST_POINT(name) ((void)0)
#define HFS_TEST_FAIL(name) false
#endif

#endif
