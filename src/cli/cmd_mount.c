/*
 * cmd_mount.c - `hoardfs mount`, `hoardfs umount`, `hoardfs stat`.
 *
 * Owns: the command lines and -o options of those commands, and the order
 * in which a mount comes up:
 *   1. parse and validate (malformed option -> exit 2, naming it)
 *   2. detach (fork; the parent waits on a pipe for readiness) unless -f
 *   3. block signals, lock memory, become an I/O flusher (before threads)
 *   4. connect to the source (bounded by -o timeout), open the cache
 *      (format an absent file; never format an existing foreign device;
 *      while another process holds it (O1), wait for that process to exit,
 *      bounded by -o lockwait, unless it serves a live mount)
 *   5. mount, control socket, signal thread, report ready, serve
 *   6. on unmount or SIGTERM: stop, close the cache (commit), exit
 * Also the mount(8) helper form: mount.fuse.hoardfs SOURCE DIR -o OPTS
 * (cache=PATH inside -o).
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "cli/cli.h"
#include "daemon/daemon.h"

struct mount_args {
	const char *source, *mountpoint, *cache, *log;
	unsigned long long cachesize;
	unsigned long long cachemem; /* engine memory budget, 0 = 24 MiB */
	double timeout;
	double lockwait;   /* seconds to wait for another process's hold on the cache */
	uint32_t nconn;
	int foreground, fake;
	struct hfs_opts fo;
};

static int parse_double(const char *v, double *out)
{
	char *end;
	errno = 0;
	double d = strtod(v, &end);
	if (errno || end == v || *end || d < 0 || d > 1e7)
		return -EINVAL;
	*out = d;
	return 0;
}

static int parse_u32(const char *v, uint32_t lo, uint32_t hi, uint32_t *out)
{
	unsigned long long x;
	if (cli_parse_size(v, &x) || x < lo || x > hi)
		return -EINVAL;
	*out = (uint32_t)x;
	return 0;
}

/* Options that mount(8) and fstab pass and that mean nothing here. */
static const char *const ignored[] = {
	"rw", "defaults", "auto", "noauto", "user", "nouser", "users", "_netdev",
	"nofail", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "atime",
	"noatime", "relatime", "norelatime", "strictatime", "async", "cto",
	"hard", "soft", "intr", "nointr", "lazytime", "nolazytime", NULL,
};

static int parse_opt(struct mount_args *a, char *opt)
{
	char *v = strchr(opt, '=');
	if (v)
		*v++ = '\0';
	const char *k = opt;
	double d;
	if (!*k)
		return 0;
	if (!v) {
		for (int i = 0; ignored[i]; i++)
			if (!strcmp(k, ignored[i]))
				return 0;
		if (!strncmp(k, "x-", 2))
			return 0;
		if (!strcmp(k, "allow_other")) {
			a->fo.allow_other = 1;
			return 0;
		}
		if (!strcmp(k, "ro")) {
			a->fo.read_only = 1;
			return 0;
		}
		if (!strcmp(k, "noac")) {
			a->fo.acregmin = a->fo.acregmax = a->fo.acdirmin = a->fo.acdirmax = 0;
			return 0;
		}
		if (!strcmp(k, "nocto")) {
			a->fo.nocto = 1;
			return 0;
		}
		if (!strcmp(k, "debug")) {
			a->fo.debug = 1;
			return 0;
		}
		fprintf(stderr, "hoardfs mount: unknown option '%s'\n", k);
		return -EINVAL;
	}
	int r = 0;
	if (!strcmp(k, "cache"))
		a->cache = v;
	else if (!strcmp(k, "log"))
		a->log = v;
	else if (!strcmp(k, "cachemem"))
		r = cli_parse_size(v, &a->cachemem) || a->cachemem < (4u << 20) ? -EINVAL : 0;
	else if (!strcmp(k, "cachesize"))
		r = cli_parse_size(v, &a->cachesize) || a->cachesize < (16u << 20) ? -EINVAL : 0;
	else if (!strcmp(k, "timeout"))
		r = parse_double(v, &a->timeout) || a->timeout == 0 ? -EINVAL : 0;
	else if (!strcmp(k, "lockwait"))
		r = parse_double(v, &a->lockwait);
	else if (!strcmp(k, "acregmin"))
		r = parse_double(v, &a->fo.acregmin);
	else if (!strcmp(k, "acregmax"))
		r = parse_double(v, &a->fo.acregmax);
	else if (!strcmp(k, "acdirmin"))
		r = parse_double(v, &a->fo.acdirmin);
	else if (!strcmp(k, "acdirmax"))
		r = parse_double(v, &a->fo.acdirmax);
	else if (!strcmp(k, "actimeo")) {
		r = parse_double(v, &d);
		a->fo.acregmin = a->fo.acregmax = a->fo.acdirmin = a->fo.acdirmax = d;
	} else if (!strcmp(k, "bufs"))
		r = parse_u32(v, 2, 4096, &a->fo.pool_bufs);
	else if (!strcmp(k, "ra")) {
		r = parse_u32(v, 0, 1u << 30, &a->fo.ra_window);
		if (!r && a->fo.ra_window == 0)
			a->fo.ra_window = 1; /* off */
	} else if (!strcmp(k, "maxnodes"))
		r = parse_u32(v, 0, UINT32_MAX, &a->fo.max_nodes);
	else if (!strcmp(k, "threads"))
		r = parse_u32(v, 1, 1024, &a->fo.max_threads);
	else if (!strcmp(k, "nconn"))
		r = parse_u32(v, 1, 64, &a->nconn);
	else if (!strcmp(k, "fsname"))
		a->fo.fsname = v;
	else if (!strncmp(k, "x-", 2) || !strcmp(k, "comment") ||
		 !strcmp(k, "context") || !strcmp(k, "helper"))
		r = 0;
	else {
		fprintf(stderr, "hoardfs mount: unknown option '%s'\n", k);
		return -EINVAL;
	}
	if (r)
		fprintf(stderr, "hoardfs mount: bad value for option '%s': '%s'\n", k, v);
	return r ? -EINVAL : 0;
}

static int parse_opts(struct mount_args *a, char *s)
{
	/* comma-separated; a backslash escapes the next character */
	char *start = s, *w = s;
	for (char *p = s;; p++) {
		if (*p == '\\' && p[1]) {
			*w++ = *++p;
			continue;
		}
		if (*p == ',' || *p == '\0') {
			int end = *p == '\0';
			*w = '\0';
			if (parse_opt(a, start))
				return -EINVAL;
			if (end)
				return 0;
			start = w = p + 1;
			continue;
		}
		*w++ = *p;
	}
}

static void mount_usage(void)
{
	fprintf(stderr,
		"usage: hoardfs mount SOURCE MOUNTPOINT --cache DEV|FILE [-f] [-o OPTS]\n"
		"options: cache=PATH cachesize=N timeout=SECONDS lockwait=SECONDS allow_other ro\n"
		"         acregmin= acregmax= acdirmin= acdirmax= actimeo= noac nocto\n"
		"         bufs=N ra=BYTES threads=N nconn=N maxnodes=N log=FILE fsname=NAME\n"
		"         debug\n");
}

static int mount_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int mount_fail(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	hd_log("%s", msg);
	if (hd_detached())
		hd_fail(msg);
	else
		fprintf(stderr, "%s\n", msg);
	return 1;
}

/* ---- a cache another process holds (O1) ---- */

/* The pid holding the engine's flock on @path (/proc/locks), or 0. */
static pid_t lock_holder(const char *path)
{
	struct stat st;
	if (stat(path, &st))
		return 0;
	FILE *f = fopen("/proc/locks", "r");
	char line[256], type[16];
	pid_t pid = 0;
	while (f && !pid && fgets(line, sizeof(line), f)) {
		int p;
		unsigned maj, min;
		unsigned long ino;
		if (sscanf(line, "%*d: %15s %*s %*s %d %x:%x:%lu", type, &p, &maj, &min, &ino) == 5 &&
		    !strcmp(type, "FLOCK") && ino == st.st_ino && makedev(maj, min) == st.st_dev)
			pid = p;
	}
	if (f)
		fclose(f);
	return pid;
}

/* Is @pid the daemon of a live hoardfs mount?  Asks the daemon of every
 * hoardfs mount in /proc/self/mountinfo for its pid; puts the mountpoint
 * in @mp.  A daemon finishing after a plain umount serves none. */
static int serving(pid_t pid, char *mp, size_t len)
{
	FILE *f = fopen("/proc/self/mountinfo", "r");
	char line[4096];
	int found = 0;
	while (f && !found && fgets(line, sizeof(line), f)) {
		char point[PATH_MAX], fstype[64], ans[32];
		/* id parent maj:min root point options... - fstype source ... */
		const char *dash = strstr(line, " - ");
		if (!dash || sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1 ||
		    sscanf(dash + 3, "%63s", fstype) != 1 || strncmp(fstype, "fuse", 4))
			continue;
		hfs_mountinfo_unescape(point);
		if (hd_ctl_query(point, "pid", ans, sizeof(ans), 1000) > 0 &&
		    atoi(ans) == (int)pid) {
			snprintf(mp, len, "%s", point);
			found = 1;
		}
	}
	if (f)
		fclose(f);
	return found;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* hoard_open(), waiting while another process holds the cache: a plain
 * umount(8) returns before the daemon has written its last commit, and a
 * mount right after it would meet the old daemon's lock.  Waits for that
 * process to exit (pidfd: woken by its exit, no polling), at most -o
 * lockwait seconds; refuses at once if the holder serves a live mount.
 * Returns hoard_open()'s result, or 1 when it has said why it fails. */
static int open_waiting(const struct mount_args *a, struct hoard_open_opts *oo,
			struct hoard_cache **cp)
{
	uint64_t deadline = mono_ms() + (uint64_t)(a->lockwait * 1000);
	int r, said = 0;
	pid_t pid = 0;
	while ((r = hoard_open(a->cache, oo, cp)) == -EBUSY) {
		char mp[PATH_MAX];
		pid = lock_holder(a->cache);
		if (pid > 0 && serving(pid, mp, sizeof(mp)))
			return mount_fail("hoardfs mount: cache %s is in use by the hoardfs "
					  "serving %s (pid %d): a cache serves one mount at a time",
					  a->cache, mp, (int)pid);
		uint64_t now = mono_ms();
		if (pid <= 0 || now >= deadline)
			break;
		if (!said) {
			hd_log("cache %s is held by pid %d: waiting up to %g s for it to exit",
			       a->cache, (int)pid, a->lockwait);
			fprintf(stderr, "hoardfs mount: waiting for pid %d to finish with cache %s "
				"(at most %g s)\n", (int)pid, a->cache, a->lockwait);
			said = 1;
		}
		int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
		if (pfd < 0)
			continue; /* gone already (ESRCH): try again */
		/* an early return (EINTR) only means trying the lock again */
		struct pollfd p = {.fd = pfd, .events = POLLIN};
		(void)poll(&p, 1, (int)(deadline - now));
		close(pfd);
	}
	if (r == -EBUSY) {
		char who[64] = "another process";
		if (pid > 0)
			snprintf(who, sizeof(who), "pid %d, still running after %g s", (int)pid,
				 a->lockwait);
		return mount_fail("hoardfs mount: cache %s is in use by %s; a cache serves "
				  "one mount at a time (-o lockwait=SECONDS: how long a mount "
				  "waits for it)", a->cache, who);
	}
	return r;
}

static int open_cache(const struct mount_args *a, struct hoard_cache **cp)
{
	struct stat st;
	char what[256] = "";
	int r;
	if (stat(a->cache, &st) && errno == ENOENT) {
		struct hoard_format_opts fo = {.size = a->cachesize};
		r = hoard_format(a->cache, &fo, what, sizeof(what));
		if (r == -EFBIG)
			return mount_fail("hoardfs mount: cannot create cache %s of %llu bytes: %s "
					  "(give a smaller -o cachesize)", a->cache,
					  (unsigned long long)a->cachesize,
					  cli_efbig_why(a->cache, a->cachesize, 0));
		if (r)
			return mount_fail("hoardfs mount: cannot create cache %s: %s",
					  a->cache, hoard_strerror(r));
		hd_log("created cache %s (%llu bytes)", a->cache, a->cachesize);
	}
	/* the engine's share of the daemon's memory: its page cache holds the
	 * hot metadata; 24 MiB keeps the daemon under 64 MiB in all */
	struct hoard_open_opts oo = {.mem_budget = a->cachemem ? a->cachemem : 24u << 20};
	r = open_waiting(a, &oo, cp);
	if (r == 1)
		return 1; /* said why */
	if (r == -EUCLEAN) {
		if (hoard_probe(a->cache, what, sizeof(what)) < 0)
			snprintf(what, sizeof(what), "unrecognised");
		return mount_fail("hoardfs mount: %s is not a hoardfs cache (it holds: %s); "
				  "create one with 'hoardfs format %s' (this erases it)",
				  a->cache, what, a->cache);
	}
	if (r)
		return mount_fail("hoardfs mount: cannot open cache %s: %s", a->cache,
				  hoard_strerror(r));
	return 0;
}

static int run_mount(struct mount_args *a)
{
	struct hb *b = NULL;
	struct hoard_cache *c = NULL;
	struct hfs *fs = NULL;
	struct hd_ctl *ctl = NULL;
	char err[512] = "";
	int rc = 1, r;

	hd_signals_block();
	hd_memory_reserve();
	struct hb_opts bo = {.timeout_ms = (uint32_t)(a->timeout * 1000),
			     .nconn = (int)a->nconn};
	r = hb_open(a->source, &bo, &b, err, sizeof(err));
	if (r) {
		if (r == -ETIMEDOUT)
			mount_fail("hoardfs mount: %s: server not reachable within %g s%s%s",
				   a->source, a->timeout, err[0] ? ": " : "", err);
		else
			mount_fail("hoardfs mount: %s: %s%s%s", a->source, strerror(-r),
				   err[0] ? ": " : "", err);
		return 1;
	}
	if (open_cache(a, &c))
		goto out;
	r = hfs_new(b, c, &a->fo, &fs);
	if (r) {
		mount_fail("hoardfs mount: %s: %s", a->source,
			   r == -ENOENT || r == -EACCES ? strerror(-r) : hoard_strerror(r));
		goto out;
	}
	r = hfs_mount(fs, a->mountpoint);
	if (r) {
		mount_fail("hoardfs mount: cannot mount on %s", a->mountpoint);
		goto out;
	}
	r = hd_ctl_start(a->mountpoint, a->source, fs, &ctl);
	if (r)
		hd_log("control socket: %s (stat/umount will not find this mount)",
		       strerror(-r));
	if (hd_signals_start(fs))
		hd_log("signal thread: cannot start");
	hd_log("mounted %s on %s (cache %s)", a->source, a->mountpoint, a->cache);
	hd_ready();
	r = hfs_loop(fs);
	rc = r ? 1 : 0;
	hd_log("unmounting %s", a->mountpoint);
out:
	hd_signals_stop();
	hd_ctl_detach(ctl);
	hfs_destroy(fs);
	if (c) {
		r = hoard_close(c);
		if (r) {
			hd_log("closing the cache: %s", hoard_strerror(r));
			rc = 1;
		}
	}
	if (b)
		b->ops->close(b);
	hd_log("exiting");
	hd_ctl_stop(ctl); /* releases `hoardfs umount` */
	return rc;
}

int cmd_mount(int argc, char **argv)
{
	struct mount_args a = {
		.cachesize = 1ull << 30,
		.timeout = 10,
		.lockwait = 30,
		/* maxnodes: a node and its name cost about 340 bytes of
		 * heap; 16384 of them (5.5 MiB) next to the fill buffers
		 * (16 MiB), the engine's budget (24 MiB) and the listings
		 * of open directories keep the daemon under issue #4's
		 * 64 MiB (32768 peaked at 64.7 MiB walking 100,000 files) */
		.fo = {.acregmin = 3, .acregmax = 60, .acdirmin = 30, .acdirmax = 60,
		       .max_nodes = 16384},
	};
	const char *pos[2];
	int npos = 0;
	for (int i = 1; i < argc; i++) {
		char *s = argv[i];
		if (!strcmp(s, "-h") || !strcmp(s, "--help")) {
			mount_usage();
			return 0;
		} else if (!strcmp(s, "-f") || !strcmp(s, "--foreground")) {
			a.foreground = 1;
		} else if (!strcmp(s, "-n") || !strcmp(s, "-s") || !strcmp(s, "-v")) {
			/* mount(8) helper flags: no mtab, sloppy, verbose */
		} else if (!strcmp(s, "--cache") || !strcmp(s, "-c")) {
			if (++i >= argc) {
				fprintf(stderr, "hoardfs mount: --cache needs a value\n");
				return 2;
			}
			a.cache = argv[i];
		} else if (!strncmp(s, "--cache=", 8)) {
			a.cache = s + 8;
		} else if (!strcmp(s, "-o")) {
			if (++i >= argc) {
				fprintf(stderr, "hoardfs mount: -o needs options\n");
				return 2;
			}
			if (parse_opts(&a, argv[i]))
				return 2;
		} else if (!strncmp(s, "-o", 2)) {
			if (parse_opts(&a, s + 2))
				return 2;
		} else if (s[0] == '-' && s[1]) {
			fprintf(stderr, "hoardfs mount: unknown flag '%s'\n", s);
			mount_usage();
			return 2;
		} else if (npos < 2) {
			pos[npos++] = s;
		} else {
			fprintf(stderr, "hoardfs mount: unexpected argument '%s'\n", s);
			return 2;
		}
	}
	if (npos < 2 || !a.cache) {
		if (npos == 2)
			fprintf(stderr, "hoardfs mount: no cache given (--cache DEV|FILE or -o cache=PATH)\n");
		mount_usage();
		return 2;
	}
	a.source = pos[0];
	char mp[PATH_MAX];
	struct stat st;
	if (!realpath(pos[1], mp) || stat(mp, &st)) {
		fprintf(stderr, "hoardfs mount: %s: %s\n", pos[1], strerror(errno));
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		fprintf(stderr, "hoardfs mount: %s: not a directory\n", pos[1]);
		return 1;
	}
	a.mountpoint = mp;
	char cpath[PATH_MAX];
	if (a.cache[0] != '/' && realpath(".", cpath)) { /* we chdir when detached */
		size_t l = strlen(cpath);
		if (l + 1 + strlen(a.cache) < sizeof(cpath)) {
			cpath[l] = '/';
			strcpy(cpath + l + 1, a.cache);
			a.cache = cpath;
		}
	}
	char pid[32];
	if (hd_ctl_query(mp, "pid", pid, sizeof(pid), 2000) > 0) {
		pid[strcspn(pid, "\n")] = 0;
		fprintf(stderr, "hoardfs mount: %s is already served by hoardfs (pid %s)\n",
			mp, pid);
		return 1;
	}
	if (a.fo.acregmin > a.fo.acregmax || a.fo.acdirmin > a.fo.acdirmax) {
		fprintf(stderr, "hoardfs mount: acregmin/acdirmin above their maximum\n");
		return 2;
	}
	if (a.log) {
		FILE *f = fopen(a.log, "a");
		if (!f) {
			fprintf(stderr, "hoardfs mount: log %s: %s\n", a.log, strerror(errno));
			return 1;
		}
		setvbuf(f, NULL, _IOLBF, 0);
		hd_log_to(f);
	}
	if (a.fake)
		return 0;
	if (!a.foreground) {
		int r = hd_detach();
		if (r) {
			fprintf(stderr, "hoardfs mount: fork: %s\n", strerror(-r));
			return 1;
		}
		if (chdir("/"))
			hd_log("chdir /: %s", strerror(errno));
	}
	a.fo.fsname = a.fo.fsname ? a.fo.fsname : a.source;
	return run_mount(&a);
}

/* ---- umount ---- */

int cmd_umount(int argc, char **argv)
{
	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: hoardfs umount MOUNTPOINT\n");
		return 2;
	}
	char mp[PATH_MAX];
	if (!realpath(argv[1], mp)) {
		fprintf(stderr, "hoardfs umount: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	int wfd = hd_ctl_wait_begin(mp);
	if (umount2(mp, 0)) {
		int e = errno;
		if (e == EPERM) {
			pid_t pid = fork();
			if (pid == 0) {
				execlp("fusermount3", "fusermount3", "-u", mp, (char *)NULL);
				_exit(127);
			}
			int st = 1;
			if (pid > 0)
				waitpid(pid, &st, 0);
			e = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : EPERM;
		}
		if (e) {
			fprintf(stderr, "hoardfs umount: %s: %s\n", mp, strerror(e));
			if (wfd >= 0)
				close(wfd);
			return 1;
		}
	}
	if (wfd < 0)
		return 0; /* no daemon answered: nothing to wait for */
	if (hd_ctl_wait_end(wfd, 120000)) {
		fprintf(stderr, "hoardfs umount: %s: the daemon did not exit within 120 s\n", mp);
		return 1;
	}
	return 0;
}

/* ---- stat ---- */

int cmd_stat(int argc, char **argv)
{
	int json = 0;
	const char *m = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (argv[i][0] != '-' && !m)
			m = argv[i];
		else {
			fprintf(stderr, "usage: hoardfs stat MOUNTPOINT [--json]\n");
			return 2;
		}
	}
	if (!m) {
		fprintf(stderr, "usage: hoardfs stat MOUNTPOINT [--json]\n");
		return 2;
	}
	char mp[PATH_MAX];
	if (!realpath(m, mp)) {
		fprintf(stderr, "hoardfs stat: %s: %s\n", m, strerror(errno));
		return 1;
	}
	static char out[16384];
	int r = hd_ctl_query(mp, json ? "stats" : "table", out, sizeof(out), 5000);
	if (r <= 0) {
		fprintf(stderr, "hoardfs stat: %s: no hoardfs daemon answers (%s)\n", mp,
			r ? strerror(-r) : "empty answer");
		return 1;
	}
	fputs(out, stdout);
	return 0;
}
