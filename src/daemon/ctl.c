/*
 * ctl.c - the control socket: statistics for `hoardfs stat`, the pid and
 * the exit notification for `hoardfs umount` (protocol in daemon.h).
 *
 * Owns: the socket under /run/hoardfs/ (named by a hash of the mount
 * point), its thread, and the stats document.  Reads the front end's
 * counters (relaxed atomics) and hoard_stats(); after hd_ctl_detach() it
 * no longer touches either.
 *
 * Locking: ctl->lock protects fs/cache (detach) and the waiter list.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "daemon/daemon.h"

#define CTL_DIR "/run/hoardfs"
#define MAX_WAITERS 32

struct hd_ctl {
	int lfd;
	int stop[2];
	pthread_t th;
	pthread_mutex_t lock;
	struct hfs *fs;
	int waiters[MAX_WAITERS];
	int nwait;
	time_t started;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *mountpoint, *source;
};

int hd_ctl_path(const char *mountpoint, char *buf, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (const char *p = mountpoint; *p; p++) {
		h ^= (unsigned char)*p;
		h *= 0x100000001b3ULL;
	}
	int n = snprintf(buf, len, CTL_DIR "/%016llx.sock", (unsigned long long)h);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* ---- the document ---- */

struct out {
	char *p;
	size_t len, cap;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->len = o->len + (size_t)n < o->cap ? o->len + (size_t)n : o->cap - 1;
}

static void put_json_str(struct out *o, const char *s)
{
	put(o, "\"");
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			put(o, "\\%c", c);
		else if (c < 0x20)
			put(o, "\\u%04x", c);
		else
			put(o, "%c", c);
	}
	put(o, "\"");
}

/* Resident size now (VmRSS) and at its peak (VmHWM, what issue #4's
 * 64 MiB bound is about): one pass over /proc/self/status. */
static void mem_bytes(uint64_t *rss, uint64_t *hwm)
{
	char line[128];
	unsigned long long kib;
	*rss = *hwm = 0;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "VmRSS: %llu", &kib) == 1)
			*rss = (uint64_t)kib << 10;
		else if (sscanf(line, "VmHWM: %llu", &kib) == 1)
			*hwm = (uint64_t)kib << 10;
	}
	fclose(f);
}

#define L(x) ((unsigned long long)atomic_load_explicit(&(x), memory_order_relaxed))

static void stats_doc(struct hd_ctl *ctl, struct out *o, int table)
{
	pthread_mutex_lock(&ctl->lock);
	struct hfs *fs = ctl->fs;
	struct hoard_stats hs = {0};
	int hr = fs ? hoard_stats(hfs_cache(fs), &hs) : -ENOENT;
	const struct hfs_stats *s = fs ? hfs_get_stats(fs) : NULL;
	uint64_t rss_b, hwm_b;
	mem_bytes(&rss_b, &hwm_b);
	unsigned long long pid = (unsigned long long)getpid(),
			   rss = (unsigned long long)rss_b,
			   hwm = (unsigned long long)hwm_b,
			   up = (unsigned long long)(time(NULL) - ctl->started);
	if (!s) {
		pthread_mutex_unlock(&ctl->lock);
		if (table)
			put(o, "daemon %llu: stopping\n", pid);
		else
			put(o, "{\"pid\": %llu, \"state\": \"stopping\"}\n", pid);
		return;
	}
	uint64_t nn = 0, nm = 0, np = 0;
	hfs_node_counts(fs, &nn, &nm, &np);
	unsigned long long nodes = nn, names = nm, nodes_peak = np;
	unsigned long long p50 = hfs_lat_percentile(s, 50),
			   p90 = hfs_lat_percentile(s, 90),
			   p99 = hfs_lat_percentile(s, 99);
	if (table) {
		put(o, "mountpoint      %s\nsource          %s\n", ctl->mountpoint,
		    ctl->source);
		put(o, "daemon pid      %llu (rss %llu KiB, peak %llu KiB, up %llu s)\n",
		    pid, rss >> 10, hwm >> 10, up);
		put(o, "nodes           %llu (%llu names, peak %llu), %llu evicted\n",
		    nodes, names, nodes_peak, L(s->evictions));
		put(o, "reads           %llu ops, %llu bytes\n", L(s->read_ops),
		    L(s->read_bytes));
		put(o, "  hits          %llu ops, %llu bytes\n", L(s->hit_ops),
		    L(s->hit_bytes));
		put(o, "  misses        %llu ops, %llu bytes\n", L(s->miss_ops),
		    L(s->miss_bytes));
		put(o, "from server     %llu bytes (readahead %llu)\n",
		    L(s->server_bytes), L(s->ra_bytes));
		put(o, "from cache      %llu bytes\n", L(s->cache_bytes));
		put(o, "cached          %llu bytes, %llu ranges skipped (no buffer)\n",
		    L(s->fill_bytes), L(s->fill_skipped));
		put(o, "work queue full %llu times (misses read on a completion thread)\n",
		    L(s->wq_full));
		put(o, "writes          %llu ops, %llu bytes\n", L(s->write_ops),
		    L(s->write_bytes));
		put(o, "read latency    p50 %llu us, p90 %llu us, p99 %llu us\n",
		    p50, p90, p99);
		put(o, "directories     %llu listed by the server, %llu from the cache\n",
		    L(s->listings), L(s->listings_cached));
		put(o, "invalidations   %llu\n", L(s->invalidations));
		put(o, "errors          server %llu, cache %llu\n",
		    L(s->server_errors), L(s->cache_errors));
		if (hr == 0)
			put(o, "cache           %llu of %llu bytes used, %llu objects%s\n",
			    (unsigned long long)hs.data_used,
			    (unsigned long long)hs.data_bytes,
			    (unsigned long long)hs.objects,
			    hs.read_only ? ", READ-ONLY" : "");
		pthread_mutex_unlock(&ctl->lock);
		return;
	}
	put(o, "{\"pid\": %llu, \"rss_bytes\": %llu, \"rss_peak_bytes\": %llu, "
	    "\"uptime_s\": %llu, \"nodes\": %llu, \"names\": %llu, \"nodes_peak\": %llu, "
	    "\"evictions\": %llu, ",
	    pid, rss, hwm, up, nodes, names, nodes_peak, L(s->evictions));
	put(o, "\"mountpoint\": ");
	put_json_str(o, ctl->mountpoint);
	put(o, ", \"source\": ");
	put_json_str(o, ctl->source);
	put(o, ",\n \"reads\": {\"ops\": %llu, \"bytes\": %llu, \"hit_ops\": %llu, "
	    "\"hit_bytes\": %llu, \"miss_ops\": %llu, \"miss_bytes\": %llu},\n",
	    L(s->read_ops), L(s->read_bytes), L(s->hit_ops), L(s->hit_bytes),
	    L(s->miss_ops), L(s->miss_bytes));
	put(o, " \"bytes_from_server\": %llu, \"bytes_from_cache\": %llu, "
	    "\"readahead_bytes\": %llu, \"fill_bytes\": %llu, \"fill_skipped\": %llu, "
	    "\"wq_full\": %llu,\n",
	    L(s->server_bytes), L(s->cache_bytes), L(s->ra_bytes),
	    L(s->fill_bytes), L(s->fill_skipped), L(s->wq_full));
	put(o, " \"writes\": {\"ops\": %llu, \"bytes\": %llu},\n", L(s->write_ops),
	    L(s->write_bytes));
	put(o, " \"lookups\": %llu, \"opens\": %llu, \"getattrs\": %llu, "
	    "\"getattrs_cached\": %llu, \"invalidations\": %llu,\n",
	    L(s->lookups), L(s->opens), L(s->getattrs), L(s->getattrs_cached),
	    L(s->invalidations));
	put(o, " \"listings\": %llu, \"listings_cached\": %llu,\n",
	    L(s->listings), L(s->listings_cached));
	put(o, " \"errors\": {\"server\": %llu, \"cache\": %llu},\n",
	    L(s->server_errors), L(s->cache_errors));
	put(o, " \"read_latency_us\": {\"p50\": %llu, \"p90\": %llu, \"p99\": %llu},\n",
	    p50, p90, p99);
	if (hr == 0)
		put(o, " \"cache\": {\"dev_bytes\": %llu, \"data_bytes\": %llu, "
		    "\"data_used\": %llu, \"meta_pages\": %llu, \"meta_used\": %llu, "
		    "\"volumes\": %llu, \"objects\": %llu, \"read_hits\": %llu, "
		    "\"read_misses\": %llu, \"bytes_read\": %llu, "
		    "\"bytes_written\": %llu, \"csum_errors\": %llu, "
		    "\"io_errors\": %llu, \"commits\": %llu, "
		    "\"reclaimed_buckets\": %llu, \"mem_used\": %llu, "
		    "\"read_only\": %s}}\n",
		    (unsigned long long)hs.dev_bytes, (unsigned long long)hs.data_bytes,
		    (unsigned long long)hs.data_used, (unsigned long long)hs.meta_pages,
		    (unsigned long long)hs.meta_used, (unsigned long long)hs.volumes,
		    (unsigned long long)hs.objects, (unsigned long long)hs.read_hits,
		    (unsigned long long)hs.read_misses,
		    (unsigned long long)hs.bytes_read,
		    (unsigned long long)hs.bytes_written,
		    (unsigned long long)hs.csum_errors,
		    (unsigned long long)hs.io_errors, (unsigned long long)hs.commits,
		    (unsigned long long)hs.reclaimed_buckets,
		    (unsigned long long)hs.mem_used, hs.read_only ? "true" : "false");
	else
		put(o, " \"cache\": null}\n");
	pthread_mutex_unlock(&ctl->lock);
}

/* ---- server ---- */

static void serve(struct hd_ctl *ctl, int fd)
{
	char cmd[64];
	size_t got = 0;
	struct pollfd p = {fd, POLLIN, 0};
	while (got < sizeof(cmd) - 1 && poll(&p, 1, 1000) == 1) {
		ssize_t n = read(fd, cmd + got, sizeof(cmd) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(cmd, '\n', got))
			break;
	}
	cmd[got] = '\0';
	cmd[strcspn(cmd, "\r\n")] = '\0';
	char buf[8192];
	struct out o = {buf, 0, sizeof(buf)};
	buf[0] = '\0';
	if (!strcmp(cmd, "stats"))
		stats_doc(ctl, &o, 0);
	else if (!strcmp(cmd, "table"))
		stats_doc(ctl, &o, 1);
	else if (!strcmp(cmd, "pid"))
		put(&o, "%d\n", (int)getpid());
	else if (!strcmp(cmd, "wait")) {
		pthread_mutex_lock(&ctl->lock);
		if (ctl->nwait < MAX_WAITERS) {
			ctl->waiters[ctl->nwait++] = fd;
			fd = -1;
		}
		pthread_mutex_unlock(&ctl->lock);
	} else
		put(&o, "error: unknown command '%s'\n", cmd);
	if (fd < 0)
		return;
	for (size_t off = 0; off < o.len;) {
		ssize_t n = write(fd, buf + off, o.len - off);
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(fd);
}

static void *ctl_main(void *arg)
{
	struct hd_ctl *ctl = arg;
	for (;;) {
		struct pollfd p[2] = {{ctl->lfd, POLLIN, 0}, {ctl->stop[0], POLLIN, 0}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return NULL;
		}
		if (p[1].revents)
			return NULL;
		if (p[0].revents & POLLIN) {
			int fd = accept4(ctl->lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				serve(ctl, fd);
		}
	}
}

int hd_ctl_start(const char *mountpoint, const char *source, struct hfs *fs,
		 struct hd_ctl **ctlp)
{
	struct hd_ctl *ctl = calloc(1, sizeof(*ctl));
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int r;
	if (!ctl)
		return -ENOMEM;
	ctl->lfd = ctl->stop[0] = ctl->stop[1] = -1;
	pthread_mutex_init(&ctl->lock, NULL);
	ctl->fs = fs;
	ctl->started = time(NULL);
	ctl->mountpoint = strdup(mountpoint);
	ctl->source = strdup(source);
	r = hd_ctl_path(mountpoint, ctl->path, sizeof(ctl->path));
	if (r || !ctl->mountpoint || !ctl->source)
		goto fail;
	if (mkdir(CTL_DIR, 0755) && errno != EEXIST) {
		r = -errno;
		goto fail;
	}
	ctl->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ctl->lfd < 0 || pipe2(ctl->stop, O_CLOEXEC)) {
		r = -errno;
		goto fail;
	}
	strcpy(sa.sun_path, ctl->path);
	unlink(ctl->path); /* a stale socket: the caller checked no daemon answers */
	if (bind(ctl->lfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(ctl->lfd, 16)) {
		r = -errno;
		goto fail;
	}
	chmod(ctl->path, 0666); /* stats for everyone; nothing writable */
	r = -pthread_create(&ctl->th, NULL, ctl_main, ctl);
	if (r)
		goto fail;
	*ctlp = ctl;
	return 0;
fail:
	if (ctl->lfd >= 0) {
		close(ctl->lfd);
		unlink(ctl->path);
	}
	if (ctl->stop[0] >= 0) {
		close(ctl->stop[0]);
		close(ctl->stop[1]);
	}
	free(ctl->mountpoint);
	free(ctl->source);
	free(ctl);
	return r ? r : -ENOMEM;
}

void hd_ctl_detach(struct hd_ctl *ctl)
{
	if (!ctl)
		return;
	pthread_mutex_lock(&ctl->lock);
	ctl->fs = NULL;
	pthread_mutex_unlock(&ctl->lock);
}

void hd_ctl_stop(struct hd_ctl *ctl)
{
	if (!ctl)
		return;
	ssize_t w = write(ctl->stop[1], "x", 1);
	(void)w;
	pthread_join(ctl->th, NULL);
	unlink(ctl->path);
	close(ctl->lfd);
	close(ctl->stop[0]);
	close(ctl->stop[1]);
	for (int i = 0; i < ctl->nwait; i++)
		close(ctl->waiters[i]);
	pthread_mutex_destroy(&ctl->lock);
	free(ctl->mountpoint);
	free(ctl->source);
	free(ctl);
}

/* ---- client ---- */

static int ctl_connect(const char *mountpoint)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int r = hd_ctl_path(mountpoint, sa.sun_path, sizeof(sa.sun_path));
	if (r)
		return r;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		r = -errno;
		close(fd);
		return r;
	}
	return fd;
}

static int send_cmd(int fd, const char *cmd)
{
	char line[64];
	int n = snprintf(line, sizeof(line), "%s\n", cmd);
	return write(fd, line, (size_t)n) == n ? 0 : -EIO;
}

int hd_ctl_query(const char *mountpoint, const char *cmd, char *out,
		 size_t len, int timeout_ms)
{
	int fd = ctl_connect(mountpoint);
	if (fd < 0)
		return fd;
	int r = send_cmd(fd, cmd);
	size_t got = 0;
	while (!r && got < len - 1) {
		struct pollfd p = {fd, POLLIN, 0};
		int pr = poll(&p, 1, timeout_ms);
		if (pr == 0) {
			r = -ETIMEDOUT;
			break;
		}
		if (pr < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			break;
		}
		ssize_t n = read(fd, out + got, len - 1 - got);
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	out[got] = '\0';
	close(fd);
	return r ? r : (int)got;
}

int hd_ctl_wait_begin(const char *mountpoint)
{
	int fd = ctl_connect(mountpoint);
	if (fd < 0)
		return fd;
	int r = send_cmd(fd, "wait");
	if (r) {
		close(fd);
		return r;
	}
	return fd;
}

int hd_ctl_wait_end(int fd, int timeout_ms)
{
	char c;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		clock_gettime(CLOCK_MONOTONIC, &t1);
		long el = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
		if (el >= timeout_ms) {
			close(fd);
			return -ETIMEDOUT;
		}
		struct pollfd p = {fd, POLLIN, 0};
		int pr = poll(&p, 1, (int)(timeout_ms - el));
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			continue;
		ssize_t n = read(fd, &c, 1);
		if (n <= 0) {
			close(fd);
			return 0;
		}
	}
}
