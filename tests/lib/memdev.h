/*
 * memdev.h - a recording in-memory device for tests: implements
 * struct hoard_dev_ops (memdev_ops) so that the engine can run on memory,
 * records every write and flush, builds crash images from the record, and
 * injects faults.
 *
 * Owns: the device contents, the write log, the completion thread.  Does
 * not own: the engine, test verdicts (callers decide what a failure is),
 * cmocka or main() (this file is linked into every test binary).
 *
 * Storage.  The contents are an optional read-only base image shared with
 * others (memdev_set_base; never written through) plus a private copy of
 * every 4 KiB block written since (copy on write).  Crash images are cheap:
 * one flat snapshot of the durable state is shared as the base of many
 * short-lived devices, each holding only the blocks its crash wrote.
 *
 * Ordering, like a real disk with a volatile write cache:
 *   - a read sees every write processed before it;
 *   - a FLUSH covers only the writes already processed (completed) when it
 *     is submitted: a write still queued then belongs to the next epoch.
 *     The log records a flush at its submission for that reason;
 *   - completions: by default on one completion thread, in submission
 *     order, as the io_uring device does; with md->inline_io, inside
 *     submit() on the caller's thread (deterministic: the log order is the
 *     submission order, so a seed reproduces a run exactly).
 *
 * The log: entry i is a WRITE (offset, copy of the data) or a FLUSH.  The
 * "epoch" of a crash point P (0 <= P <= nlog: entries [0, P) were issued)
 * is the run of writes after the last flush before P.  Everything before
 * that flush is durable; of the epoch's writes, any subset may have reached
 * the media, in any order, and one of them may be torn (only some of its
 * 4 KiB sectors written).
 *
 * Locking: md->lock protects every field below "state"; configuration
 * fields are set before hoard_open and not changed while the device is
 * open, except the fault fields, which may be changed at any time (they
 * are read under the lock).
 */
#ifndef HOARDFS_TESTS_MEMDEV_H
#define HOARDFS_TESTS_MEMDEV_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <hoardfs/hoard.h>

#define MEMDEV_SECTOR 4096u

enum { MEMDEV_LOG_WRITE = 1, MEMDEV_LOG_FLUSH = 2 };

struct memdev_log_ent {
	uint8_t type;      /* MEMDEV_LOG_* */
	uint64_t off;
	uint32_t len;
	uint8_t *data;     /* WRITE: copy of the bytes written */
	uint64_t epoch;    /* number of flushes logged before this entry */
};

struct memdev {
	/* ---- configuration (memdev_init sets defaults) ---- */
	uint64_t size;          /* device bytes (multiple of 4096) */
	int inline_io;          /* 1: complete inside submit() (deterministic) */
	int record;             /* 1: log writes and flushes */
	size_t log_cap;         /* max bytes of logged write data; exceeding it
				   aborts the test with a message */
	/* fault injection: counts are 1-based over the device's lifetime
	   (md->nwrites etc. after the op is counted); 0 = off */
	uint64_t fail_write_nth, fail_read_nth, fail_flush_nth;
	int fail_sticky;        /* once failed, fail every later op of that kind */
	uint64_t enospc_above;  /* writes reaching past this offset get -ENOSPC
				   (0 = off) */
	int hold_flushes;       /* 1: a FLUSH waits on the completion thread
				   (counted in flushes_held) until this is
				   cleared by memdev_hold_flushes(md, 0);
				   threaded completions only */

	/* ---- state ---- */
	pthread_mutex_t lock;
	const uint8_t *base;    /* read-only base image of size bytes, or NULL
				   (zeros); not owned */
	uint8_t **blk;          /* private block copies, NULL = base */
	uint64_t nblocks;
	struct memdev_log_ent *log;
	size_t nlog, log_alloc, log_bytes;
	uint64_t nflushes_logged;
	/* counters: ops submitted (each op counted, failed ones included) */
	uint64_t nreads, nwrites, nflushes;
	uint64_t read_bytes, write_bytes;
	uint64_t ro_violations; /* writes submitted while opened read-only */
	uint64_t faults;        /* errors injected */
	int is_open, read_only;
	int failed_write, failed_read, failed_flush; /* sticky state */
	/* completion thread */
	pthread_t thread;
	pthread_cond_t cond;
	pthread_cond_t idle_cond;
	struct memdev_qent *q;
	size_t qhead, qlen, qalloc;
	int busy, stop, thread_started;
	uint64_t flushes_held;  /* FLUSHes that have reached the gate */
	uint64_t flushes_released; /* of those, let go one by one */
	pthread_cond_t gate_cond;
};

/* Initialise @md as a zero-filled device of @size bytes, not recording,
 * threaded completions.  Returns 0 or -ENOMEM/-EINVAL. */
int memdev_init(struct memdev *md, uint64_t size);
/* Free everything @md holds (it must be closed). */
void memdev_fini(struct memdev *md);
/* Use @img (size bytes, kept alive by the caller, never written) as the
 * base; drops private blocks.  NULL = zeros. */
void memdev_set_base(struct memdev *md, const uint8_t *img);
/* Load a file (e.g. one hoard_format made) as the contents: only non-zero
 * blocks are stored.  A shorter file leaves zeros. */
int memdev_load_file(struct memdev *md, const char *path);
/* Make @dst (uninitialised) a device of the same size holding @src's
 * current contents (sharing @src's base, which must outlive @dst); not
 * recording, threaded, no faults.  Returns 0 or -ENOMEM. */
int memdev_clone(struct memdev *dst, struct memdev *src);
/* Write the contents to a file (created/truncated, sparse). */
int memdev_save_file(struct memdev *md, const char *path);
/* Copy the contents into @out (size bytes). */
void memdev_read_image(struct memdev *md, uint8_t *out);
/* Direct access (device closed, or with care): copy/patch bytes. */
void memdev_pread(struct memdev *md, void *buf, size_t len, uint64_t off);
void memdev_pwrite(struct memdev *md, const void *buf, size_t len, uint64_t off);
/* Forget the log (keeps contents); recording state unchanged. */
void memdev_log_reset(struct memdev *md);
/* Wait until every submitted request has completed. */
void memdev_drain(struct memdev *md);
/* Hold FLUSHes at the completion thread (on = 1) or let them all go (0;
 * a later hold then holds the next FLUSH that comes). */
void memdev_hold_flushes(struct memdev *md, int on);
/* Let the next @n held FLUSHes go (the gate stays on for later ones). */
void memdev_release_flushes(struct memdev *md, uint64_t n);
/* Wait until @n FLUSHes have been held, at most @secs seconds: 0, or
 * -ETIMEDOUT. */
int memdev_wait_held(struct memdev *md, uint64_t n, int secs);

/* The device table: hoard_open_opts.dev_ops = &memdev_ops, dev_arg = md.
 * The path argument is ignored. */
extern const struct hoard_dev_ops memdev_ops;

/* ---- crash images ---- */

struct memdev_crash {
	size_t point;        /* log entries [0, point) were issued */
	uint64_t seed;       /* drives every random choice below */
	unsigned keep_pct;   /* each write of the open epoch reached the media
				with this probability (100 = all, 0 = none) */
	int shuffle;         /* apply the survivors in random order (overlapping
				writes: the later applied wins) */
	int tear;            /* tear one survivor of >1 sector: a random
				non-empty proper subset of its sectors lands */
	int garbage;         /* one sector written in the open epoch holds
				random bytes instead */
};

struct memdev_crash_info {
	size_t epoch_first;  /* first log index of the open epoch */
	size_t epoch_writes; /* writes in the open epoch */
	size_t kept;         /* of which applied */
	long torn_ent;       /* log index torn, -1 none */
	long garbage_ent;    /* log index whose sector was trashed, -1 none */
	uint64_t garbage_off;
	char desc[160];      /* one line for failure messages */
};

/* A flat image of the durable state after the first @nflush flushes of
 * rec's log, advanced incrementally (crash points in increasing order
 * reuse it).  img is size bytes. */
struct memdev_snap {
	uint8_t *img;
	uint64_t size;
	size_t next_ent;     /* log entries [0, next_ent) applied */
};

/* @init: the contents when recording started (size bytes). */
int memdev_snap_init(struct memdev_snap *s, const uint8_t *init, uint64_t size);
void memdev_snap_fini(struct memdev_snap *s);

/*
 * Build the crash image of @rec's log at cr->point into @out, a device
 * that memdev_crash_build initialises (memdev_init + base = the snapshot
 * advanced to the start of the open epoch; @init is the image recording
 * started from, used when the snapshot must go back).  The caller closes
 * and finalises @out (memdev_fini) before moving @snap again.
 */
int memdev_crash_build(struct memdev *rec, const uint8_t *init,
		       struct memdev_snap *snap, const struct memdev_crash *cr,
		       struct memdev *out, struct memdev_crash_info *info);

/* Index just after the k-th flush (1-based) in the log, or nlog. */
size_t memdev_flush_pos(struct memdev *rec, uint64_t k);

/* ---- helpers for engine tests ---- */

/* Format a cache of @size bytes (options may be NULL) in a scratch file in
 * $HOARD_TEST_DIR (or the cwd), load it into @md (memdev_init'ed by this
 * call) and remove the file.  Returns 0 or a negative errno. */
int memdev_format(struct memdev *md, uint64_t size,
		  const struct hoard_format_opts *opts);

/* Deterministic small PRNG (splitmix64) for tests. */
static inline uint64_t memdev_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

#endif
