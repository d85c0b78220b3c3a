/*
 * engine_bench.c - throughput of the cache engine alone, for comparison
 * with fio on the same device (bench/engine.sh runs both).
 *
 *   engine_bench fill IMG SIZE_MB            write one object of SIZE_MB
 *   engine_bench seq IMG SIZE_MB QD          1 MiB reads, QD in flight
 *   engine_bench rand IMG SIZE_MB QD SECS    4 KiB random reads, QD in flight
 *   engine_bench objects IMG N               create N objects (batched)
 *   engine_bench lookup IMG N SECS           random lookups among N objects
 *
 * Prints one line of key=value pairs.  Not a test: it asserts nothing.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hoardfs/hoard.h>

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

static struct hoard_cache *open_cache(const char *img)
{
	struct hoard_cache *c;
	struct hoard_open_opts oo = {0};
	int r = hoard_open(img, &oo, &c);
	if (r < 0) {
		fprintf(stderr, "engine_bench: %s: %s\n", img, hoard_strerror(r));
		exit(1);
	}
	return c;
}

static uint64_t the_object(struct hoard_cache *c)
{
	uint32_t vol;
	struct hoard_obj_info info;
	if (hoard_vol_open(c, "bench", 5, 1, &vol) < 0 ||
	    hoard_obj_acquire(c, vol, "big", 3, "c", 1, &info) < 0) {
		fprintf(stderr, "engine_bench: cannot create the object\n");
		exit(1);
	}
	return info.id;
}

/* Closed loop, driven by completions: each of @qd slots resubmits its next
 * read from its own completion callback (as the FUSE daemon replies from
 * the engine's completion threads), so no thread hop of the benchmark's
 * own sits between an I/O and the next. */
struct run {
	struct hoard_cache *c;
	uint64_t id;
	size_t len;
	uint64_t span;
	int random;
	uint64_t total;     /* requests to issue (0 = until the deadline) */
	double deadline;    /* monotonic seconds (0 = none) */
	atomic_uint_fast64_t issued, done_ops, done_bytes, short_ops, pos;
	atomic_int active;  /* slots still running */
	pthread_mutex_t mu;
	pthread_cond_t cv;
};

struct slot {
	struct run *run;
	uint8_t *buf;
	uint64_t x;         /* this slot's random state */
};

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void on_done(void *arg, int64_t res);

/* Issue the slot's next read, or retire the slot. */
static void issue(struct slot *s)
{
	struct run *r = s->run;
	uint64_t n = atomic_fetch_add(&r->issued, 1);
	if ((r->total && n >= r->total) || (r->deadline > 0 && now() >= r->deadline)) {
		pthread_mutex_lock(&r->mu);
		if (atomic_fetch_sub(&r->active, 1) == 1)
			pthread_cond_signal(&r->cv);
		pthread_mutex_unlock(&r->mu);
		return;
	}
	uint64_t off;
	if (r->random) {
		off = (rnd(&s->x) % (r->span / r->len)) * r->len;
	} else {
		off = atomic_fetch_add(&r->pos, r->len) % r->span;
	}
	if (hoard_read(r->c, r->id, off, r->len, s->buf, on_done, s) < 0) {
		fprintf(stderr, "engine_bench: read failed\n");
		exit(1);
	}
}

static void on_done(void *arg, int64_t res)
{
	struct slot *s = arg;
	struct run *r = s->run;
	atomic_fetch_add(&r->done_ops, 1);
	if (res > 0)
		atomic_fetch_add(&r->done_bytes, (uint64_t)res);
	if (res < (int64_t)r->len)
		atomic_fetch_add(&r->short_ops, 1);
	issue(s);
}

static void run_reads(struct hoard_cache *c, uint64_t id, size_t len, uint64_t span, int qd,
		      int random, uint64_t total, double secs)
{
	struct run r = {.c = c, .id = id, .len = len, .span = span, .random = random, .total = total};
	struct slot *s = calloc((size_t)qd, sizeof(*s));
	pthread_mutex_init(&r.mu, NULL);
	pthread_cond_init(&r.cv, NULL);
	atomic_store(&r.active, qd);
	for (int i = 0; i < qd; i++) {
		s[i].run = &r;
		s[i].x = 88172645463325252ULL + (uint64_t)i * 7919;
		/* as the daemon's buffers: on huge pages (hoard.h) */
		s[i].buf = hoard_iobuf_alloc(len);
		if (!s[i].buf)
			exit(1);
	}
	double t0 = now();
	r.deadline = secs > 0 ? t0 + secs : 0;
	for (int i = 0; i < qd; i++)
		issue(&s[i]);
	pthread_mutex_lock(&r.mu);
	while (atomic_load(&r.active) > 0)
		pthread_cond_wait(&r.cv, &r.mu);
	pthread_mutex_unlock(&r.mu);
	double dt = now() - t0;
	printf("mode=%s qd=%d bs=%zu ops=%llu bytes=%llu secs=%.3f MBps=%.1f iops=%.0f short=%llu rss_kb=%ld\n",
	       random ? "rand" : "seq", qd, len, (unsigned long long)atomic_load(&r.done_ops),
	       (unsigned long long)atomic_load(&r.done_bytes), dt,
	       (double)atomic_load(&r.done_bytes) / dt / 1e6, (double)atomic_load(&r.done_ops) / dt,
	       (unsigned long long)atomic_load(&r.short_ops), rss_kb());
	for (int i = 0; i < qd; i++)
		hoard_iobuf_free(s[i].buf, len);
	free(s);
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: see the comment at the top of bench/engine_bench.c\n");
		return 2;
	}
	const char *mode = argv[1], *img = argv[2];
	uint64_t n = strtoull(argv[3], NULL, 10);
	struct hoard_cache *c = open_cache(img);
	if (!strcmp(mode, "fill")) {
		uint64_t id = the_object(c);
		size_t piece = 1 << 20;
		uint8_t *b = malloc(piece);
		memset(b, 0xa5, piece);
		double t0 = now();
		for (uint64_t i = 0; i < n; i++) {
			b[0] = (uint8_t)i;
			if (hoard_pwrite(c, id, b, piece, i * piece) != (int64_t)piece) {
				fprintf(stderr, "engine_bench: write failed at %llu MiB\n", (unsigned long long)i);
				return 1;
			}
		}
		hoard_sync(c);
		double dt = now() - t0;
		printf("mode=fill bytes=%llu secs=%.3f MBps=%.1f\n", (unsigned long long)(n * piece), dt,
		       (double)(n * piece) / dt / 1e6);
		free(b);
	} else if (!strcmp(mode, "seq") || !strcmp(mode, "rand")) {
		int qd = argc > 4 ? atoi(argv[4]) : 1;
		double secs = argc > 5 ? atof(argv[5]) : 10;
		uint64_t id = the_object(c);
		if (!strcmp(mode, "seq"))
			run_reads(c, id, 1 << 20, n << 20, qd, 0, n, 0);
		else
			run_reads(c, id, 4096, n << 20, qd, 1, 0, secs);
	} else if (!strcmp(mode, "objects")) {
		uint32_t vol;
		char key[32];
		hoard_vol_open(c, "objects", 7, 1, &vol);
		double t0 = now();
		for (uint64_t i = 0; i < n; i++) {
			struct hoard_obj_info info;
			int len = snprintf(key, sizeof(key), "fh%016llx", (unsigned long long)i);
			if (hoard_obj_acquire(c, vol, key, (size_t)len, "coherency-data-24-bytes", 23, &info) < 0) {
				fprintf(stderr, "engine_bench: create failed at %llu\n", (unsigned long long)i);
				return 1;
			}
		}
		hoard_sync(c);
		double dt = now() - t0;
		printf("mode=objects n=%llu secs=%.3f creates_per_s=%.0f rss_kb=%ld\n", (unsigned long long)n, dt,
		       (double)n / dt, rss_kb());
	} else if (!strcmp(mode, "lookup")) {
		uint32_t vol;
		char key[32];
		double secs = argc > 4 ? atof(argv[4]) : 10;
		uint64_t x = 1234567, ops = 0, miss = 0;
		hoard_vol_open(c, "objects", 7, 0, &vol);
		double t0 = now();
		while (now() - t0 < secs) {
			for (int k = 0; k < 256; k++) {
				struct hoard_obj_info info;
				int len = snprintf(key, sizeof(key), "fh%016llx", (unsigned long long)(rnd(&x) % n));
				if (hoard_obj_lookup(c, vol, key, (size_t)len, &info) < 0)
					miss++;
				ops++;
			}
		}
		double dt = now() - t0;
		struct hoard_stats st;
		hoard_stats(c, &st);
		printf("mode=lookup n=%llu ops=%llu secs=%.3f lookups_per_s=%.0f missing=%llu rss_kb=%ld engine_mem=%llu\n",
		       (unsigned long long)n, (unsigned long long)ops, dt, (double)ops / dt,
		       (unsigned long long)miss, rss_kb(), (unsigned long long)st.mem_used);
	} else {
		fprintf(stderr, "engine_bench: unknown mode %s\n", mode);
		return 2;
	}
	return hoard_close(c) < 0;
}
