/*
 * nfs_read.c - read one file sequentially straight through libnfs, no
 * cache, no FUSE: the ceiling of hoardfs's cold path on the same server.
 *
 *   nfs_read URL PATH [QD [BS]]
 *     URL   nfs://host[:port]/export[?version=3|4[&mountport=N]] (a dir)
 *     PATH  the file, relative to the export ("/big")
 *     QD    READs in flight (default 4), pipelined on one connection
 *     BS    bytes per READ (default: the server's maximum, 1 MiB for v4,
 *           whose maximum libnfs 4.0 does not report)
 *
 * Prints one line of key=value pairs (bytes, secs, MBps, rss_kb).  The data
 * is discarded; a checksum of the first byte of every READ keeps the
 * compiler honest.  Owns nothing but its one context; not a test.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nfsc/libnfs.h>

struct state {
	struct nfs_context *nfs;
	struct nfsfh *fh;
	uint64_t size, next, done, bs;
	int inflight, err;
	unsigned sum;
};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long rss_kb(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	char line[256];
	long kb = -1;
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmHWM:", 6))
			kb = atol(line + 6);
	if (f)
		fclose(f);
	return kb;
}

static void issue(struct state *s);

static void on_read(int status, struct nfs_context *nfs, void *data, void *priv)
{
	struct state *s = priv;
	s->inflight--;
	if (status < 0) {
		fprintf(stderr, "nfs_read: READ failed: %s\n", (char *)data);
		s->err = status;
		return;
	}
	if (status > 0)
		s->sum += ((unsigned char *)data)[0];
	s->done += (uint64_t)status;
	issue(s);
}

static void issue(struct state *s)
{
	if (s->err || s->next >= s->size)
		return;
	uint64_t n = s->size - s->next < s->bs ? s->size - s->next : s->bs;
	if (nfs_pread_async(s->nfs, s->fh, s->next, n, on_read, s) < 0) {
		fprintf(stderr, "nfs_read: cannot queue a READ: %s\n", nfs_get_error(s->nfs));
		s->err = -EIO;
		return;
	}
	s->next += n;
	s->inflight++;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: nfs_read URL PATH [QD [BS]]\n");
		return 2;
	}
	int qd = argc > 3 ? atoi(argv[3]) : 4;
	struct state s = {0};
	s.nfs = nfs_init_context();
	if (!s.nfs)
		return 1;
	/* libnfs 4.0 reads no port in the host part: move it to nfsport= */
	char url[2048];
	const char *h = strncmp(argv[1], "nfs://", 6) ? NULL : argv[1] + 6;
	const char *slash = h ? strchr(h, '/') : NULL, *colon = h ? strchr(h, ':') : NULL;
	if (colon && slash && colon < slash) {
		const char *q = strchr(slash, '?');
		snprintf(url, sizeof(url), "nfs://%.*s%s%s%snfsport=%.*s", (int)(colon - h), h, slash,
			 q ? "" : "?", q ? "&" : "", (int)(slash - colon - 1), colon + 1);
	} else {
		snprintf(url, sizeof(url), "%s", argv[1]);
	}
	struct nfs_url *u = nfs_parse_url_dir(s.nfs, url);
	if (!u) {
		fprintf(stderr, "nfs_read: %s: %s\n", argv[1], nfs_get_error(s.nfs));
		return 1;
	}
	if (nfs_mount(s.nfs, u->server, u->path) < 0) {
		fprintf(stderr, "nfs_read: mount %s:%s: %s\n", u->server, u->path, nfs_get_error(s.nfs));
		return 1;
	}
	struct nfs_stat_64 st;
	if (nfs_open(s.nfs, argv[2], O_RDONLY, &s.fh) < 0 || nfs_fstat64(s.nfs, s.fh, &st) < 0) {
		fprintf(stderr, "nfs_read: %s: %s\n", argv[2], nfs_get_error(s.nfs));
		return 1;
	}
	s.size = st.nfs_size;
	s.bs = argc > 4 ? strtoull(argv[4], NULL, 0) : nfs_get_readmax(s.nfs);
	if (!s.bs)
		s.bs = 1u << 20;
	double t0 = now();
	for (int i = 0; i < qd; i++)
		issue(&s);
	while (s.inflight > 0) {
		struct pollfd p = {.fd = nfs_get_fd(s.nfs), .events = (short)nfs_which_events(s.nfs)};
		if (poll(&p, 1, 1000) < 0 && errno != EINTR)
			break;
		if (nfs_service(s.nfs, p.revents) < 0) {
			fprintf(stderr, "nfs_read: %s\n", nfs_get_error(s.nfs));
			s.err = -EIO;
			break;
		}
	}
	double dt = now() - t0;
	printf("mode=nfs_read bytes=%llu secs=%.3f MBps=%.1f qd=%d bs=%llu sum=%u rss_kb=%ld\n",
	       (unsigned long long)s.done, dt, (double)s.done / dt / 1e6, qd,
	       (unsigned long long)s.bs, s.sum, rss_kb());
	nfs_close(s.nfs, s.fh);
	nfs_destroy_url(u);
	nfs_destroy_context(s.nfs);
	return s.err || s.done != s.size;
}
