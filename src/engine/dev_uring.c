/*
 * dev_uring.c - the default device: io_uring with O_DIRECT, completions
 * reaped by one thread that calls each request's done() callback.
 *
 * Owns: the file descriptor, the ring, the completion thread.  Does not
 * own: ordering (a flush covers only writes already completed; callers
 * wait for completions before they flush), buffers (callers' memory,
 * aligned to HOARD_BLOCK_SIZE for O_DIRECT).
 *
 * This is the only file in hoardfs that calls liburing.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <hoardfs/hoard.h>

#define RING_DEPTH 256
#define SYNC_DEPTH 64

struct hoard_dev {
	int fd;
	struct io_uring ring;
	pthread_mutex_t sq_lock; /* protects the submission queue */
	struct io_uring sring;   /* metadata I/O, waited for by its caller */
	pthread_mutex_t s_lock;  /* protects sring */
	pthread_t reaper;
	int reaper_started;
};

static void complete(struct hoard_dev *d, struct hoard_io *io, int res);

static int submit_locked(struct hoard_dev *d, struct hoard_io *io)
{
	struct io_uring_sqe *sqe;
	while ((sqe = io_uring_get_sqe(&d->ring)) == NULL) {
		int r = io_uring_submit(&d->ring);
		if (r < 0 && r != -EAGAIN && r != -EBUSY && r != -EINTR)
			return r;
	}
	switch (io->op) {
	case HOARD_IO_READ:
		io_uring_prep_read(sqe, d->fd, io->buf, (unsigned)io->len, io->off);
		break;
	case HOARD_IO_WRITE:
		io_uring_prep_write(sqe, d->fd, io->buf, (unsigned)io->len, io->off);
		break;
	case HOARD_IO_FLUSH:
		io_uring_prep_fsync(sqe, d->fd, IORING_FSYNC_DATASYNC);
		break;
	default:
		io_uring_prep_nop(sqe);
		break;
	}
	io_uring_sqe_set_data(sqe, io);
	for (;;) {
		int r = io_uring_submit(&d->ring);
		if (r >= 0)
			return 0;
		if (r != -EAGAIN && r != -EBUSY && r != -EINTR)
			return r;
	}
}

static int uring_submit(struct hoard_dev *d, struct hoard_io *io)
{
	if (io->op < HOARD_IO_READ || io->op > HOARD_IO_FLUSH)
		return -EINVAL;
	pthread_mutex_lock(&d->sq_lock);
	int r = submit_locked(d, io);
	pthread_mutex_unlock(&d->sq_lock);
	return r;
}

/* The rest of a read or write from byte @done on, with pread/pwrite:
 * io->len, or -errno.  For short transfers (the end of a file, a device
 * error: never the normal path) and single metadata reads. */
static int finish_sync(struct hoard_dev *d, struct hoard_io *io, size_t done)
{
	while (done < io->len) {
		ssize_t n = io->op == HOARD_IO_READ
			? pread(d->fd, (char *)io->buf + done, io->len - done, (off_t)(io->off + done))
			: pwrite(d->fd, (char *)io->buf + done, io->len - done, (off_t)(io->off + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return (int)io->len;
}

static void complete(struct hoard_dev *d, struct hoard_io *io, int res)
{
	if (res >= 0 && io->op != HOARD_IO_FLUSH && (size_t)res < io->len)
		res = finish_sync(d, io, (size_t)res);
	io->done(io, res);
}

static void *reaper_main(void *arg)
{
	struct hoard_dev *d = arg;
	for (;;) {
		struct io_uring_cqe *cqe;
		int r = io_uring_wait_cqe(&d->ring, &cqe);
		if (r == -EINTR)
			continue;
		if (r < 0)
			break;
		struct hoard_io *io = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&d->ring, cqe);
		if (!io) /* the stop marker from uring_close */
			break;
		if (res == -EAGAIN || res == -EINTR) {
			pthread_mutex_lock(&d->sq_lock);
			r = submit_locked(d, io);
			pthread_mutex_unlock(&d->sq_lock);
			if (r == 0)
				continue;
			res = r;
		}
		complete(d, io, res);
	}
	return NULL;
}

static void prep(struct io_uring_sqe *sqe, int fd, struct hoard_io *io)
{
	switch (io->op) {
	case HOARD_IO_READ:
		io_uring_prep_read(sqe, fd, io->buf, (unsigned)io->len, io->off);
		break;
	case HOARD_IO_WRITE:
		io_uring_prep_write(sqe, fd, io->buf, (unsigned)io->len, io->off);
		break;
	default:
		io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
		break;
	}
}

/* Metadata I/O on its own ring, reaped by the calling thread: it never
 * waits for the completion thread (see hoard.h, sync_io). */
static int uring_sync_io(struct hoard_dev *d, struct hoard_io *ios, int n)
{
	int err = 0;
	if (n == 1 && ios[0].op == HOARD_IO_READ) {
		/* one read (a page, or a lone cached read: hoard_read_sync):
		 * pread(2) in this thread, no ring lock between threads */
		int r = finish_sync(d, &ios[0], 0);
		return r < 0 ? r : 0;
	}
	pthread_mutex_lock(&d->s_lock);
	for (int done = 0; done < n;) {
		int batch = n - done < SYNC_DEPTH ? n - done : SYNC_DEPTH;
		for (int i = 0; i < batch; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&d->sring);
			prep(sqe, d->fd, &ios[done + i]);
			io_uring_sqe_set_data(sqe, &ios[done + i]);
		}
		int r;
		do
			r = io_uring_submit(&d->sring);
		while (r == -EINTR || r == -EAGAIN || r == -EBUSY);
		if (r < 0) {
			err = r; /* nothing was submitted: nothing to reap */
			break;
		}
		for (int i = 0; i < batch; i++) {
			struct io_uring_cqe *cqe;
			do
				r = io_uring_wait_cqe(&d->sring, &cqe);
			while (r == -EINTR);
			if (r < 0) {
				if (!err)
					err = r;
				break;
			}
			struct hoard_io *io = io_uring_cqe_get_data(cqe);
			int res = cqe->res;
			io_uring_cqe_seen(&d->sring, cqe);
			/* a transient failure (the reaper resubmits those) is
			 * not a device error: a failed metadata write would
			 * make the cache read-only; do it again, synchronously */
			if ((res == -EAGAIN || res == -EINTR) && io->op != HOARD_IO_FLUSH)
				res = 0;
			if (res >= 0 && io->op != HOARD_IO_FLUSH && (size_t)res != io->len)
				res = finish_sync(d, io, (size_t)res);
			else if ((res == -EAGAIN || res == -EINTR))
				res = fsync(d->fd) ? -errno : 0;
			if (res < 0 && !err)
				err = res;
		}
		done += batch;
	}
	pthread_mutex_unlock(&d->s_lock);
	return err;
}

static int uring_open(const char *path, int read_only, void *arg,
		      struct hoard_dev **devp, uint64_t *sizep)
{
	struct hoard_dev *d = calloc(1, sizeof(*d));
	int r;
	if (!d)
		return -ENOMEM;
	int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	d->fd = open(path, flags | O_DIRECT);
	if (d->fd < 0 && errno == EINVAL) /* a filesystem without O_DIRECT */
		d->fd = open(path, flags);
	if (d->fd < 0) {
		r = -errno;
		goto out_free;
	}
	struct stat st;
	if (fstat(d->fd, &st) < 0) {
		r = -errno;
		goto out_close;
	}
	if (S_ISBLK(st.st_mode)) {
		uint64_t sz;
		if (ioctl(d->fd, BLKGETSIZE64, &sz) < 0) {
			r = -errno;
			goto out_close;
		}
		*sizep = sz;
	} else if (S_ISREG(st.st_mode)) {
		*sizep = (uint64_t)st.st_size;
	} else {
		r = -ENOTBLK;
		goto out_close;
	}
	r = io_uring_queue_init(RING_DEPTH, &d->ring, 0);
	if (r < 0)
		goto out_close;
	r = io_uring_queue_init(SYNC_DEPTH, &d->sring, 0);
	if (r < 0) {
		io_uring_queue_exit(&d->ring);
		goto out_close;
	}
	pthread_mutex_init(&d->sq_lock, NULL);
	pthread_mutex_init(&d->s_lock, NULL);
	r = -pthread_create(&d->reaper, NULL, reaper_main, d);
	if (r < 0)
		goto out_ring;
	d->reaper_started = 1;
	*devp = d;
	return 0;
out_ring:
	io_uring_queue_exit(&d->sring);
	io_uring_queue_exit(&d->ring);
out_close:
	close(d->fd);
out_free:
	free(d);
	return r;
}

static void uring_close(struct hoard_dev *d)
{
	if (d->reaper_started) {
		pthread_mutex_lock(&d->sq_lock);
		struct io_uring_sqe *sqe;
		while ((sqe = io_uring_get_sqe(&d->ring)) == NULL)
			io_uring_submit(&d->ring);
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data(sqe, NULL);
		io_uring_submit(&d->ring);
		pthread_mutex_unlock(&d->sq_lock);
		pthread_join(d->reaper, NULL);
	}
	io_uring_queue_exit(&d->ring);
	io_uring_queue_exit(&d->sring);
	close(d->fd);
	pthread_mutex_destroy(&d->sq_lock);
	pthread_mutex_destroy(&d->s_lock);
	free(d);
}

const struct hoard_dev_ops hoard_dev_uring = {
	.open = uring_open,
	.submit = uring_submit,
	.close = uring_close,
	.sync_io = uring_sync_io,
};
