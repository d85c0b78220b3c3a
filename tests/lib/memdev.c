/*
 * memdev.c - the recording in-memory device (see memdev.h for the model:
 * copy-on-write blocks over a shared base, the write/flush log, crash
 * images, fault injection).
 *
 * Invariants relied on below:
 *   - md->blk[i] != NULL is the only copy of block i's current contents;
 *     otherwise the block reads from md->base (or zeros).  A base is never
 *     written through.
 *   - Log entries appear in the order requests were processed (writes) or
 *     submitted (flushes), under md->lock, so a flush entry follows every
 *     write it makes durable and precedes every write it does not.
 *   - The completion queue is FIFO; one thread pops it, so completions
 *     arrive in submission order, as on a single io_uring queue.
 */
#include "memdev.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct memdev_qent {
	struct hoard_io *io;
	int res;      /* result decided at submit (fault), or 1 = process */
};

#define QENT_PROCESS 1

static uint8_t *blk_ptr(struct memdev *md, uint64_t b, int for_write)
{
	if (md->blk[b])
		return md->blk[b];
	if (!for_write)
		return NULL;
	uint8_t *p = malloc(MEMDEV_SECTOR);
	if (!p) {
		fprintf(stderr, "memdev: out of memory for a block copy\n");
		abort();
	}
	if (md->base)
		memcpy(p, md->base + b * MEMDEV_SECTOR, MEMDEV_SECTOR);
	else
		memset(p, 0, MEMDEV_SECTOR);
	md->blk[b] = p;
	return p;
}

static void store_read(struct memdev *md, void *buf, size_t len, uint64_t off)
{
	uint8_t *dst = buf;
	while (len) {
		uint64_t b = off / MEMDEV_SECTOR;
		size_t in = off % MEMDEV_SECTOR;
		size_t n = MEMDEV_SECTOR - in < len ? MEMDEV_SECTOR - in : len;
		const uint8_t *src = blk_ptr(md, b, 0);
		if (src)
			memcpy(dst, src + in, n);
		else if (md->base)
			memcpy(dst, md->base + off, n);
		else
			memset(dst, 0, n);
		dst += n;
		off += n;
		len -= n;
	}
}

static void store_write(struct memdev *md, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *src = buf;
	while (len) {
		uint64_t b = off / MEMDEV_SECTOR;
		size_t in = off % MEMDEV_SECTOR;
		size_t n = MEMDEV_SECTOR - in < len ? MEMDEV_SECTOR - in : len;
		memcpy(blk_ptr(md, b, 1) + in, src, n);
		src += n;
		off += n;
		len -= n;
	}
}

static void free_blocks(struct memdev *md)
{
	if (!md->blk)
		return;
	for (uint64_t i = 0; i < md->nblocks; i++) {
		free(md->blk[i]);
		md->blk[i] = NULL;
	}
}

int memdev_init(struct memdev *md, uint64_t size)
{
	if (!size || size % MEMDEV_SECTOR)
		return -EINVAL;
	memset(md, 0, sizeof(*md));
	md->size = size;
	md->log_cap = (size_t)512 << 20;
	md->nblocks = size / MEMDEV_SECTOR;
	md->blk = calloc(md->nblocks, sizeof(*md->blk));
	if (!md->blk)
		return -ENOMEM;
	pthread_mutex_init(&md->lock, NULL);
	pthread_cond_init(&md->cond, NULL);
	pthread_cond_init(&md->idle_cond, NULL);
	pthread_cond_init(&md->gate_cond, NULL);
	return 0;
}

void memdev_log_reset(struct memdev *md)
{
	pthread_mutex_lock(&md->lock);
	for (size_t i = 0; i < md->nlog; i++)
		free(md->log[i].data);
	free(md->log);
	md->log = NULL;
	md->nlog = md->log_alloc = md->log_bytes = 0;
	md->nflushes_logged = 0;
	pthread_mutex_unlock(&md->lock);
}

void memdev_fini(struct memdev *md)
{
	if (md->is_open) {
		fprintf(stderr, "memdev: memdev_fini on an open device (engine did not close it)\n");
		abort();
	}
	memdev_log_reset(md);
	free_blocks(md);
	free(md->blk);
	free(md->q);
	pthread_mutex_destroy(&md->lock);
	pthread_cond_destroy(&md->cond);
	pthread_cond_destroy(&md->idle_cond);
	pthread_cond_destroy(&md->gate_cond);
	memset(md, 0, sizeof(*md));
}

void memdev_set_base(struct memdev *md, const uint8_t *img)
{
	pthread_mutex_lock(&md->lock);
	free_blocks(md);
	md->base = img;
	pthread_mutex_unlock(&md->lock);
}

void memdev_pread(struct memdev *md, void *buf, size_t len, uint64_t off)
{
	pthread_mutex_lock(&md->lock);
	if (off + len <= md->size)
		store_read(md, buf, len, off);
	pthread_mutex_unlock(&md->lock);
}

void memdev_pwrite(struct memdev *md, const void *buf, size_t len, uint64_t off)
{
	pthread_mutex_lock(&md->lock);
	if (off + len <= md->size)
		store_write(md, buf, len, off);
	pthread_mutex_unlock(&md->lock);
}

void memdev_read_image(struct memdev *md, uint8_t *out)
{
	memdev_pread(md, out, md->size, 0);
}

static int is_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

int memdev_load_file(struct memdev *md, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	uint8_t buf[MEMDEV_SECTOR];
	int r = 0;
	pthread_mutex_lock(&md->lock);
	for (uint64_t b = 0; b < md->nblocks; b++) {
		if (!md->base) { /* skip holes of a sparse file */
			off_t d = lseek(fd, (off_t)(b * MEMDEV_SECTOR), SEEK_DATA);
			if (d < 0)
				break; /* ENXIO: only a hole is left */
			if ((uint64_t)d / MEMDEV_SECTOR > b)
				b = (uint64_t)d / MEMDEV_SECTOR;
			if (b >= md->nblocks)
				break;
		}
		ssize_t n = pread(fd, buf, sizeof(buf), (off_t)(b * MEMDEV_SECTOR));
		if (n < 0) {
			r = -errno;
			break;
		}
		if (n == 0)
			break;
		if ((size_t)n < sizeof(buf))
			memset(buf + n, 0, sizeof(buf) - (size_t)n);
		if (is_zero(buf, sizeof(buf)) && !md->base && !md->blk[b])
			continue;
		memcpy(blk_ptr(md, b, 1), buf, sizeof(buf));
	}
	pthread_mutex_unlock(&md->lock);
	close(fd);
	return r;
}

int memdev_clone(struct memdev *dst, struct memdev *src)
{
	int r = memdev_init(dst, src->size);
	if (r)
		return r;
	pthread_mutex_lock(&src->lock);
	dst->base = src->base;
	for (uint64_t b = 0; b < src->nblocks; b++) {
		if (!src->blk[b])
			continue;
		dst->blk[b] = malloc(MEMDEV_SECTOR);
		if (!dst->blk[b]) {
			pthread_mutex_unlock(&src->lock);
			memdev_fini(dst);
			return -ENOMEM;
		}
		memcpy(dst->blk[b], src->blk[b], MEMDEV_SECTOR);
	}
	pthread_mutex_unlock(&src->lock);
	return 0;
}

int memdev_save_file(struct memdev *md, const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int r = 0;
	uint8_t buf[MEMDEV_SECTOR];
	if (ftruncate(fd, (off_t)md->size) < 0)
		r = -errno;
	pthread_mutex_lock(&md->lock);
	for (uint64_t b = 0; !r && b < md->nblocks; b++) {
		store_read(md, buf, sizeof(buf), b * MEMDEV_SECTOR);
		if (is_zero(buf, sizeof(buf)))
			continue;
		if (pwrite(fd, buf, sizeof(buf), (off_t)(b * MEMDEV_SECTOR)) != (ssize_t)sizeof(buf))
			r = -EIO;
	}
	pthread_mutex_unlock(&md->lock);
	if (close(fd) < 0 && !r)
		r = -errno;
	return r;
}

/* ---- the log ---- */

static void log_append(struct memdev *md, uint8_t type, uint64_t off,
		       const void *data, uint32_t len)
{
	if (md->nlog == md->log_alloc) {
		size_t na = md->log_alloc ? md->log_alloc * 2 : 1024;
		struct memdev_log_ent *nl = realloc(md->log, na * sizeof(*nl));
		if (!nl) {
			fprintf(stderr, "memdev: out of memory for the write log\n");
			abort();
		}
		md->log = nl;
		md->log_alloc = na;
	}
	struct memdev_log_ent *e = &md->log[md->nlog];
	memset(e, 0, sizeof(*e));
	e->type = type;
	e->off = off;
	e->len = len;
	e->epoch = md->nflushes_logged;
	if (type == MEMDEV_LOG_WRITE) {
		md->log_bytes += len;
		if (md->log_bytes > md->log_cap) {
			fprintf(stderr,
				"memdev: FAIL: the write log exceeds its cap of %zu bytes "
				"(%zu entries); raise memdev.log_cap or shorten the workload\n",
				md->log_cap, md->nlog);
			abort();
		}
		e->data = malloc(len ? len : 1);
		if (!e->data) {
			fprintf(stderr, "memdev: out of memory for the write log\n");
			abort();
		}
		memcpy(e->data, data, len);
	} else {
		md->nflushes_logged++;
	}
	md->nlog++;
}

size_t memdev_flush_pos(struct memdev *rec, uint64_t k)
{
	uint64_t seen = 0;
	for (size_t i = 0; i < rec->nlog; i++)
		if (rec->log[i].type == MEMDEV_LOG_FLUSH && ++seen == k)
			return i + 1;
	return rec->nlog;
}

/* ---- the device table ---- */

/* Called with md->lock held.  Returns the request's result. */
static int process(struct memdev *md, struct hoard_io *io)
{
	if (io->op == HOARD_IO_FLUSH)
		return 0;
	if (io->off + io->len > md->size || io->off + io->len < io->off)
		return -EINVAL;
	if (io->op == HOARD_IO_READ) {
		store_read(md, io->buf, io->len, io->off);
		return (int)io->len;
	}
	store_write(md, io->buf, io->len, io->off);
	if (md->record)
		log_append(md, MEMDEV_LOG_WRITE, io->off, io->buf, (uint32_t)io->len);
	return (int)io->len;
}

static int fault_hit(uint64_t count, uint64_t nth, int sticky, int *failed)
{
	if (*failed && sticky)
		return 1;
	if (nth && count == nth) {
		*failed = 1;
		return 1;
	}
	return 0;
}

/* Called with md->lock held: counts the request and decides whether a
 * fault replaces it.  Returns QENT_PROCESS or a negative errno. */
static int admit(struct memdev *md, struct hoard_io *io)
{
	switch (io->op) {
	case HOARD_IO_READ:
		md->nreads++;
		md->read_bytes += io->len;
		if (fault_hit(md->nreads, md->fail_read_nth, md->fail_sticky, &md->failed_read))
			goto fault;
		return QENT_PROCESS;
	case HOARD_IO_WRITE:
		md->nwrites++;
		md->write_bytes += io->len;
		if (md->read_only) {
			md->ro_violations++;
			return -EROFS;
		}
		if (fault_hit(md->nwrites, md->fail_write_nth, md->fail_sticky, &md->failed_write))
			goto fault;
		if (md->enospc_above && io->off + io->len > md->enospc_above) {
			md->faults++;
			return -ENOSPC;
		}
		return QENT_PROCESS;
	case HOARD_IO_FLUSH:
		md->nflushes++;
		if (fault_hit(md->nflushes, md->fail_flush_nth, md->fail_sticky, &md->failed_flush))
			goto fault;
		/* covers exactly the writes processed so far */
		if (md->record)
			log_append(md, MEMDEV_LOG_FLUSH, 0, NULL, 0);
		return QENT_PROCESS;
	default:
		return -EINVAL;
	}
fault:
	md->faults++;
	return -EIO;
}

static void *completion_main(void *arg)
{
	struct memdev *md = arg;
	pthread_mutex_lock(&md->lock);
	for (;;) {
		while (!md->qlen && !md->stop)
			pthread_cond_wait(&md->cond, &md->lock);
		if (!md->qlen && md->stop)
			break;
		struct memdev_qent q = md->q[md->qhead];
		md->qhead = (md->qhead + 1) % md->qalloc;
		md->qlen--;
		md->busy = 1;
		if (q.io->op == HOARD_IO_FLUSH && md->hold_flushes) {
			uint64_t n = ++md->flushes_held;
			pthread_cond_broadcast(&md->gate_cond);
			while (md->hold_flushes && md->flushes_released < n)
				pthread_cond_wait(&md->gate_cond, &md->lock);
		}
		int res = q.res == QENT_PROCESS ? process(md, q.io) : q.res;
		pthread_mutex_unlock(&md->lock);
		q.io->done(q.io, res);
		pthread_mutex_lock(&md->lock);
		md->busy = 0;
		if (!md->qlen)
			pthread_cond_broadcast(&md->idle_cond);
	}
	pthread_mutex_unlock(&md->lock);
	return NULL;
}

static int q_push(struct memdev *md, struct hoard_io *io, int res)
{
	if (md->qlen == md->qalloc) {
		size_t na = md->qalloc ? md->qalloc * 2 : 64;
		struct memdev_qent *nq = malloc(na * sizeof(*nq));
		if (!nq)
			return -ENOMEM;
		for (size_t i = 0; i < md->qlen; i++)
			nq[i] = md->q[(md->qhead + i) % md->qalloc];
		free(md->q);
		md->q = nq;
		md->qalloc = na;
		md->qhead = 0;
	}
	md->q[(md->qhead + md->qlen) % md->qalloc] = (struct memdev_qent){ io, res };
	md->qlen++;
	pthread_cond_signal(&md->cond);
	return 0;
}

static int md_submit(struct hoard_dev *dev, struct hoard_io *io)
{
	struct memdev *md = (struct memdev *)dev;
	if (io->op < HOARD_IO_READ || io->op > HOARD_IO_FLUSH)
		return -EINVAL;
	pthread_mutex_lock(&md->lock);
	int res = admit(md, io);
	if (md->inline_io) {
		if (res == QENT_PROCESS)
			res = process(md, io);
		pthread_mutex_unlock(&md->lock);
		io->done(io, res);
		return 0;
	}
	int r = q_push(md, io, res);
	pthread_mutex_unlock(&md->lock);
	return r;
}

void memdev_hold_flushes(struct memdev *md, int on)
{
	pthread_mutex_lock(&md->lock);
	md->hold_flushes = on;
	if (!on) /* all go: a later hold counts from here */
		md->flushes_released = md->flushes_held;
	pthread_cond_broadcast(&md->gate_cond);
	pthread_mutex_unlock(&md->lock);
}

void memdev_release_flushes(struct memdev *md, uint64_t n)
{
	pthread_mutex_lock(&md->lock);
	md->flushes_released += n;
	pthread_cond_broadcast(&md->gate_cond);
	pthread_mutex_unlock(&md->lock);
}

int memdev_wait_held(struct memdev *md, uint64_t n, int secs)
{
	struct timespec dl;
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += secs;
	int r = 0;
	pthread_mutex_lock(&md->lock);
	while (md->flushes_held < n && r == 0)
		r = pthread_cond_timedwait(&md->gate_cond, &md->lock, &dl);
	int ok = md->flushes_held >= n;
	pthread_mutex_unlock(&md->lock);
	return ok ? 0 : -ETIMEDOUT;
}

void memdev_drain(struct memdev *md)
{
	pthread_mutex_lock(&md->lock);
	while (md->qlen || md->busy)
		pthread_cond_wait(&md->idle_cond, &md->lock);
	pthread_mutex_unlock(&md->lock);
}

static int md_open(const char *path, int read_only, void *arg,
		   struct hoard_dev **devp, uint64_t *sizep)
{
	struct memdev *md = arg;
	if (!md || !md->blk)
		return -EINVAL;
	pthread_mutex_lock(&md->lock);
	if (md->is_open) {
		pthread_mutex_unlock(&md->lock);
		return -EBUSY;
	}
	md->is_open = 1;
	md->read_only = read_only;
	md->stop = 0;
	pthread_mutex_unlock(&md->lock);
	if (!md->inline_io) {
		int r = pthread_create(&md->thread, NULL, completion_main, md);
		if (r) {
			md->is_open = 0;
			return -r;
		}
		md->thread_started = 1;
	}
	*devp = (struct hoard_dev *)md;
	*sizep = md->size;
	return 0;
}

static void md_close(struct hoard_dev *dev)
{
	struct memdev *md = (struct memdev *)dev;
	if (md->thread_started) {
		memdev_drain(md);
		pthread_mutex_lock(&md->lock);
		md->stop = 1;
		pthread_cond_broadcast(&md->cond);
		pthread_mutex_unlock(&md->lock);
		pthread_join(md->thread, NULL);
		md->thread_started = 0;
	}
	pthread_mutex_lock(&md->lock);
	md->is_open = 0;
	md->read_only = 0;
	pthread_mutex_unlock(&md->lock);
}

const struct hoard_dev_ops memdev_ops = {
	.open = md_open,
	.submit = md_submit,
	.close = md_close,
};

/* ---- crash images ---- */

int memdev_snap_init(struct memdev_snap *s, const uint8_t *init, uint64_t size)
{
	s->img = malloc(size);
	if (!s->img)
		return -ENOMEM;
	memcpy(s->img, init, size);
	s->size = size;
	s->next_ent = 0;
	return 0;
}

void memdev_snap_fini(struct memdev_snap *s)
{
	free(s->img);
	memset(s, 0, sizeof(*s));
}

static void snap_advance(struct memdev *rec, const uint8_t *init,
			 struct memdev_snap *s, size_t to)
{
	if (s->next_ent > to) {
		memcpy(s->img, init, s->size);
		s->next_ent = 0;
	}
	for (size_t i = s->next_ent; i < to; i++) {
		const struct memdev_log_ent *e = &rec->log[i];
		if (e->type == MEMDEV_LOG_WRITE)
			memcpy(s->img + e->off, e->data, e->len);
	}
	s->next_ent = to;
}

int memdev_crash_build(struct memdev *rec, const uint8_t *init,
		       struct memdev_snap *snap, const struct memdev_crash *cr,
		       struct memdev *out, struct memdev_crash_info *info)
{
	size_t point = cr->point < rec->nlog ? cr->point : rec->nlog;
	size_t first = 0;
	uint64_t rs = cr->seed * 0x2545F4914F6CDD1DULL + 1;
	memset(info, 0, sizeof(*info));
	info->torn_ent = info->garbage_ent = -1;

	for (size_t i = point; i > 0; i--)
		if (rec->log[i - 1].type == MEMDEV_LOG_FLUSH) {
			first = i;
			break;
		}
	info->epoch_first = first;
	snap_advance(rec, init, snap, first);

	int r = memdev_init(out, rec->size);
	if (r)
		return r;
	out->base = snap->img;

	size_t n = 0;
	for (size_t i = first; i < point; i++)
		if (rec->log[i].type == MEMDEV_LOG_WRITE)
			n++;
	info->epoch_writes = n;
	size_t *all = malloc((n ? n : 1) * sizeof(*all));
	size_t *kept = malloc((n ? n : 1) * sizeof(*kept));
	if (!all || !kept) {
		free(all);
		free(kept);
		memdev_fini(out);
		return -ENOMEM;
	}
	size_t nk = 0, na = 0;
	for (size_t i = first; i < point; i++) {
		if (rec->log[i].type != MEMDEV_LOG_WRITE)
			continue;
		all[na++] = i;
		if (cr->keep_pct >= 100 || memdev_rand(&rs) % 100 < cr->keep_pct)
			kept[nk++] = i;
	}
	if (cr->shuffle)
		for (size_t i = nk; i > 1; i--) {
			size_t j = memdev_rand(&rs) % i;
			size_t t = kept[i - 1];
			kept[i - 1] = kept[j];
			kept[j] = t;
		}
	info->kept = nk;

	long torn = -1;
	uint64_t tear_mask = 0;
	if (cr->tear && nk) {
		/* pick a survivor of more than one sector (bounded tries) */
		for (int tries = 0; tries < 16 && torn < 0; tries++) {
			size_t k = kept[memdev_rand(&rs) % nk];
			uint32_t ns = (rec->log[k].len + MEMDEV_SECTOR - 1) / MEMDEV_SECTOR;
			if (ns > 1 && ns <= 64) {
				torn = (long)k;
				uint64_t full = ns == 64 ? ~0ULL : (1ULL << ns) - 1;
				do
					tear_mask = memdev_rand(&rs) & full;
				while (tear_mask == 0 || tear_mask == full);
			}
		}
	}
	info->torn_ent = torn;

	for (size_t j = 0; j < nk; j++) {
		const struct memdev_log_ent *e = &rec->log[kept[j]];
		if ((long)kept[j] != torn) {
			store_write(out, e->data, e->len, e->off);
			continue;
		}
		for (uint32_t s = 0; s * MEMDEV_SECTOR < e->len; s++) {
			if (!(tear_mask >> s & 1))
				continue;
			uint32_t o = s * MEMDEV_SECTOR;
			uint32_t l = e->len - o < MEMDEV_SECTOR ? e->len - o : MEMDEV_SECTOR;
			store_write(out, e->data + o, l, e->off + o);
		}
	}

	if (cr->garbage && na) {
		const struct memdev_log_ent *e = &rec->log[all[memdev_rand(&rs) % na]];
		uint32_t ns = (e->len + MEMDEV_SECTOR - 1) / MEMDEV_SECTOR;
		uint64_t off = (e->off / MEMDEV_SECTOR + memdev_rand(&rs) % (ns ? ns : 1)) * MEMDEV_SECTOR;
		uint8_t g[MEMDEV_SECTOR];
		for (size_t i = 0; i < sizeof(g); i += 8) {
			uint64_t v = memdev_rand(&rs);
			memcpy(g + i, &v, 8);
		}
		if (off + MEMDEV_SECTOR <= out->size)
			store_write(out, g, sizeof(g), off);
		info->garbage_ent = (long)(e - rec->log);
		info->garbage_off = off;
	}
	free(all);
	free(kept);

	snprintf(info->desc, sizeof(info->desc),
		 "point %zu/%zu epoch@%zu: kept %zu/%zu writes%s, torn %ld, garbage %ld@%llu",
		 point, rec->nlog, first, nk, n, cr->shuffle ? " shuffled" : "",
		 torn, info->garbage_ent, (unsigned long long)info->garbage_off);
	return 0;
}

/* ---- helpers ---- */

int memdev_format(struct memdev *md, uint64_t size,
		  const struct hoard_format_opts *opts)
{
	const char *dir = getenv("HOARD_TEST_DIR");
	char path[4096];
	snprintf(path, sizeof(path), "%s/memdev-format-XXXXXX", dir && *dir ? dir : ".");
	int fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	close(fd);
	struct hoard_format_opts o = { 0 };
	if (opts)
		o = *opts;
	o.size = size;
	o.force = 1;
	char found[128];
	int r = hoard_format(path, &o, found, sizeof(found));
	if (r == 0) {
		r = memdev_init(md, size);
		if (r == 0) {
			r = memdev_load_file(md, path);
			if (r)
				memdev_fini(md);
		}
	}
	unlink(path);
	return r;
}
