/*
 * fs.c - the FUSE session of one mount: create, mount, serve, stop.
 *
 * Owns: struct hfs's lifetime, the libfuse session and its multithreaded
 * loop (clone_fd: one /dev/fuse descriptor per worker).  Does not own the
 * backend or the cache: hfs_destroy() leaves both open for the caller.
 *
 * Stopping: hfs_exit() (from the daemon's signal thread) marks the session
 * exited and detaches the mount; the kernel then fails the workers' reads
 * with ENODEV and hfs_loop() returns.  `hoardfs umount` unmounts from
 * outside with the same effect.
 *
 * The evictor thread (while the loop runs) keeps the node table near
 * -o maxnodes by asking the kernel to forget unused files (fs_i.h:
 * hfs_evict_*).  It holds no lock while it writes a notification: the
 * kernel may wait for a request on the same directory to finish first,
 * which a worker answers.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "fs/fs_i.h"

static pthread_mutex_t se_lock = PTHREAD_MUTEX_INITIALIZER; /* se mount state */

int hfs_new(struct hb *b, struct hoard_cache *cache, const struct hfs_opts *o,
	    struct hfs **fsp)
{
	struct hfs *fs = calloc(1, sizeof(*fs));
	struct hb_cred cr = {0, 0};
	struct hb_attr root;
	int r;
	if (!fs)
		return -ENOMEM;
	fs->b = b;
	fs->cache = cache;
	fs->o = *o;
	/* Off by default: the kernel already reads ahead by HFS_READAHEAD
	 * (raise_readahead), and a second window of our own competed with it
	 * for the same server connection (measured slower cold reads). */
	if (!fs->o.ra_window)
		fs->o.ra_window = 1;
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->pool_lock, NULL);
	pthread_mutex_init(&fs->wq_lock, NULL);
	pthread_cond_init(&fs->wq_cond, NULL);
	pthread_cond_init(&fs->wq_idle, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fs->evict_cond, &ca);
	pthread_condattr_destroy(&ca);
	r = b->ops->getattr(b, &cr, "/", &root);
	if (r)
		goto fail;
	r = hoard_vol_open(cache, b->volume, strlen(b->volume), 1, &fs->vol);
	if (r)
		goto fail;
	r = hfs_nodes_init(fs, &root);
	if (r)
		goto fail;
	r = hfs_io_init(fs);
	if (r)
		goto fail;
	*fsp = fs;
	return 0;
fail:
	hfs_destroy(fs);
	return r;
}

/* fuse option values: escape ',' and '\' */
static void opt_escape(char *dst, size_t len, const char *src)
{
	size_t j = 0;
	for (size_t i = 0; src[i] && j + 3 < len; i++) {
		if (src[i] == ',' || src[i] == '\\')
			dst[j++] = '\\';
		dst[j++] = src[i];
	}
	dst[j] = '\0';
}

/* mountinfo's escapes (\\040 for a space, ...) undone in place */
void hfs_mountinfo_unescape(char *s)
{
	char *o = s;
	for (; *s; s++) {
		if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
		    s[3] >= '0' && s[3] <= '7') {
			*o++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
			s += 3;
		} else {
			*o++ = *s;
		}
	}
	*o = 0;
}

/* The kernel reads ahead on a FUSE mount by at most its bdi's
 * read_ahead_kb (128 KiB by default): INIT can only lower it.  Raise it to
 * HFS_READAHEAD before INIT, found through /proc/self/mountinfo (a stat of
 * the mount point would wait for the INIT we have not answered yet).
 * Best effort: without it, sequential reads come in 128 KiB requests. */
static void raise_readahead(const char *mountpoint)
{
	char real[PATH_MAX], line[4096], dev[32] = "";
	if (!realpath(mountpoint, real))
		return;
	FILE *f = fopen("/proc/self/mountinfo", "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		char mdev[32], mpt[PATH_MAX];
		if (sscanf(line, "%*s %*s %31s %*s %4095s", mdev, mpt) != 2)
			continue;
		hfs_mountinfo_unescape(mpt);
		if (!strcmp(mpt, real) && strstr(line, "fuse.hoardfs"))
			snprintf(dev, sizeof(dev), "%s", mdev); /* the last one wins */
	}
	fclose(f);
	if (!dev[0])
		return;
	char path[96];
	snprintf(path, sizeof(path), "/sys/class/bdi/%s/read_ahead_kb", dev);
	f = fopen(path, "w");
	if (f) {
		fprintf(f, "%u\n", HFS_READAHEAD / 1024);
		fclose(f);
	}
}

int hfs_mount(struct hfs *fs, const char *mountpoint)
{
	char opts[1024], name[600];
	opt_escape(name, sizeof(name), fs->o.fsname ? fs->o.fsname : "hoardfs");
	snprintf(opts, sizeof(opts),
		 "default_permissions,fsname=%s,subtype=hoardfs%s%s", name,
		 fs->o.allow_other ? ",allow_other" : "",
		 fs->o.read_only ? ",ro" : "");
	char *argv[] = {"hoardfs", "-o", opts, fs->o.debug ? "-d" : NULL, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(fs->o.debug ? 4 : 3, argv);
	fs->se = fuse_session_new(&args, &hfs_ll_ops, sizeof(hfs_ll_ops), fs);
	fuse_opt_free_args(&args);
	if (!fs->se)
		return -EINVAL;
	fs->mountpoint = strdup(mountpoint);
	if (!fs->mountpoint)
		return -ENOMEM;
	if (fuse_session_mount(fs->se, mountpoint))
		return -EIO;
	fs->mounted = true;
	raise_readahead(mountpoint);
	return 0;
}

/* Wait @secs under fs->lock whatever the signals say (each sweep walks
 * the table under fs->lock: no sweeping on every new node). */
static void evict_pause(struct hfs *fs, double secs)
{
	double until = hfs_now() + secs;
	while (!fs->evict_stop && hfs_now() < until) {
		struct timespec ts;
		ts.tv_sec = (time_t)until;
		ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
		pthread_cond_timedwait(&fs->evict_cond, &fs->lock, &ts);
	}
}

/* Wait (until HFS_EVICT_GAP_WAIT_US after @t0, the batch's start) until no
 * readdirplus reply has been in progress for HFS_EVICT_GAP_US: an inode evicted while the kernel
 * waits for such a reply makes it drop the attributes the reply brings
 * (fuse_iget compares its eviction counter), and every entry then costs
 * a GETATTR.  A walk (find, ls -l) reads a directory, then stats its
 * entries: evictions go in the second part. */
#define HFS_EVICT_GAP_US 2000
#define HFS_EVICT_GAP_WAIT_US 200000
/* A quarter over the bound: memory first, no waiting for gaps (parallel
 * walkers may leave none, and a fast one goes far over in 200 ms). */
static bool evict_urgent(struct hfs *fs)
{
	return fs->by_ino.count > fs->o.max_nodes + fs->o.max_nodes / 4;
}

/* Returns true once the table is over the bound by a quarter. */
static bool evict_gap(struct hfs *fs, uint64_t t0)
{
	for (;;) {
		uint64_t now = hfs_now_us();
		if (atomic_load(&fs->linking) == 0 &&
		    now - atomic_load(&fs->linked_at) >= HFS_EVICT_GAP_US)
			return false;
		if (now - t0 >= HFS_EVICT_GAP_WAIT_US)
			return false; /* memory first: a walk with no pauses */
		pthread_mutex_lock(&fs->lock);
		bool urgent = evict_urgent(fs);
		pthread_mutex_unlock(&fs->lock);
		if (urgent)
			return true;
		struct timespec ts = {0, 500000};
		nanosleep(&ts, NULL);
	}
}

static void *evictor(void *arg)
{
	struct hfs *fs = arg;
	struct hfs_victim *v = malloc(HFS_EVICT_BATCH * sizeof(*v));
	bool idle = false; /* the last sweep found nothing it could take */
	if (!v)
		return NULL;
	pthread_mutex_lock(&fs->lock);
	while (!fs->evict_stop) {
		size_t want = hfs_evict_want(fs);
		if (!want) {
			idle = false;
			pthread_cond_wait(&fs->evict_cond, &fs->lock);
			continue;
		}
		size_t n = hfs_evict_pick(fs, v, want < HFS_EVICT_BATCH ? want : HFS_EVICT_BATCH);
		if (!n) {
			/* nothing evictable (directories, open files, all
			 * being asked about): look again in 100 ms, then
			 * every second */
			evict_pause(fs, idle ? 1.0 : 0.1);
			idle = true;
			continue;
		}
		idle = false;
		bool urgent = evict_urgent(fs);
		pthread_mutex_unlock(&fs->lock);
		uint64_t done = 0;
		bool broken = false;
		uint64_t batch_t0 = hfs_now_us(); /* the wait is per batch */
		for (size_t i = 0; i < n; i++) {
			if (!broken && !urgent)
				urgent = evict_gap(fs, batch_t0);
			int r = broken ? -ENOSYS :
				fuse_lowlevel_notify_inval_entry(fs->se, v[i].parent,
								 v[i].name, strlen(v[i].name));
			if (r == 0) {
				done++;
				continue;
			}
			/* -ENOENT: the kernel has no such entry (it forgot the
			 * dentry but keeps the inode, or a rename raced);
			 * anything else: notifications do not work here */
			broken = broken || r != -ENOENT;
			pthread_mutex_lock(&fs->lock);
			hfs_evict_undo(fs, v[i].ino);
			pthread_mutex_unlock(&fs->lock);
		}
		atomic_fetch_add_explicit(&fs->st.evictions, done, memory_order_relaxed);
		pthread_mutex_lock(&fs->lock);
		if (broken && !fs->evict_stop) {
			fuse_log(FUSE_LOG_ERR, "hoardfs: the kernel refuses entry "
				 "notifications: the node table is not bounded\n");
			break;
		}
		if (!done) /* none of these was in the kernel's cache */
			evict_pause(fs, 1.0);
	}
	pthread_mutex_unlock(&fs->lock);
	free(v);
	return NULL;
}

static void evictor_start(struct hfs *fs)
{
	pthread_attr_t at;
	if (!fs->o.max_nodes)
		return;
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, 64 << 10);
	fs->evict_stop = false;
	if (pthread_create(&fs->evictor, &at, evictor, fs) == 0)
		fs->evict_started = true;
	pthread_attr_destroy(&at);
}

static void evictor_stop(struct hfs *fs)
{
	if (!fs->evict_started)
		return;
	pthread_mutex_lock(&fs->lock);
	fs->evict_stop = true;
	pthread_cond_signal(&fs->evict_cond);
	pthread_mutex_unlock(&fs->lock);
	pthread_join(fs->evictor, NULL);
	fs->evict_started = false;
}

int hfs_loop(struct hfs *fs)
{
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	if (!cfg)
		return -ENOMEM;
	unsigned n = fs->o.max_threads ? fs->o.max_threads : 8;
	fuse_loop_cfg_set_clone_fd(cfg, 1);
	fuse_loop_cfg_set_max_threads(cfg, n);
	/* keep every worker once started: with fewer kept idle, a reader at
	 * queue depth 32 made libfuse start and end ~1,600 threads a second
	 * (measured by the pids used), each one's stack locked by mlockall */
	fuse_loop_cfg_set_idle_threads(cfg, n);
	evictor_start(fs);
	int r = fuse_session_loop_mt(fs->se, cfg);
	evictor_stop(fs);
	fuse_loop_cfg_destroy(cfg);
	return r > 0 ? 0 : r; /* > 0: ended by a signal */
}

void hfs_exit(struct hfs *fs)
{
	pthread_mutex_lock(&se_lock);
	if (fs->se) {
		fuse_session_exit(fs->se);
		if (fs->mounted)
			fuse_session_unmount(fs->se);
		fs->mounted = false;
	}
	pthread_mutex_unlock(&se_lock);
}

void hfs_destroy(struct hfs *fs)
{
	if (!fs)
		return;
	hfs_exit(fs);
	hfs_io_stop(fs);
	pthread_mutex_lock(&se_lock);
	if (fs->se)
		fuse_session_destroy(fs->se);
	fs->se = NULL;
	pthread_mutex_unlock(&se_lock);
	hfs_nodes_free(fs);
	free(fs->mountpoint);
	pthread_mutex_destroy(&fs->lock);
	pthread_mutex_destroy(&fs->pool_lock);
	pthread_mutex_destroy(&fs->wq_lock);
	pthread_cond_destroy(&fs->wq_cond);
	pthread_cond_destroy(&fs->wq_idle);
	pthread_cond_destroy(&fs->evict_cond);
	free(fs);
}

#ifdef HOARD_TEST_HOOKS
void hfs_test_point(const char *name)
{
	const char *v = getenv("HOARDFS_TEST_PAUSE");
	size_t n = strlen(name);
	if (!v || strncmp(v, name, n) || v[n] != ':')
		return;
	long ms = atol(v + n + 1);
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

bool hfs_test_fail(const char *name)
{
	const char *v = getenv("HOARDFS_TEST_FAIL");
	return v && !strcmp(v, name);
}
#endif

const struct hfs_stats *hfs_get_stats(struct hfs *fs)
{
	return &fs->st;
}

struct hoard_cache *hfs_cache(struct hfs *fs)
{
	return fs->cache;
}
