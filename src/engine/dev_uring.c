/*
 * dev_uring.c - the default device: io_uring with O_DIRECT.  One thread,
 * the reaper, is the only one that touches the data ring: it submits the
 * ios other threads queue and calls each one's done() callback.
 *
 * Owns: the file descriptor, the rings, the completion thread.  Does not
 * own: ordering (a flush covers only writes already completed; callers
 * wait for completions before they flush), buffers (callers' memory,
 * aligned to HOARD_BLOCK_SIZE for O_DIRECT).
 *
 * Why one issuer.  When any thread may submit, a read's completion runs as
 * task work on the thread that submitted it: a FUSE thread asleep in
 * read(/dev/fuse) is woken to post the CQE, the threads contend for the
 * ring's lock, and only then is the reaper woken; each submitter also
 * rings the device's doorbell on its own.  Here the data ring is created
 * SINGLE_ISSUER | DEFER_TASKRUN by the reaper: completions are posted
 * when the reaper waits, in batches, and under load one io_uring_enter()
 * submits every queued io and collects every completion.
 *
 * The hand-off (U1): submit() pushes the io on a lock-free stack (the
 * reaper takes the whole stack at once: no ABA) and writes to an eventfd
 * only if the reaper said it is going to sleep; the reaper keeps a read of
 * that eventfd armed in its ring.  The reaper announces sleep (sleeping =
 * 1), then looks at the stack once more before it waits; submit() pushes,
 * then looks at sleeping.  Both sequentially consistent: at least one of
 * them sees the other, so no io stays queued while the reaper sleeps.
 * Bounded: the stack links ios the caller owns (the engine's request pool
 * bounds them); nothing is allocated.
 *
 * Submitting inside a batch (U2).  The reaper runs each completion's
 * callback (checksums, a closed loop's next read, a FUSE reply), and
 * callbacks queue new ios.  Held until the whole batch was done, those ios
 * reached the device together: a closed loop at QD 32 fell into lockstep
 * (block tracepoints: 31 reads in one unplug, the device idle while the
 * reaper worked through the batch; 28 ios in flight for 90k IOPS where
 * fio's 16 gave 140k).  So inside a batch, once what is queued is at
 * least a quarter of what the device still holds, it is submitted at
 * once: the device is kept fed, and under a steady load (the FUSE mount,
 * where FUSE threads queue reads while the device holds many) little is
 * submitted early; each early submit is one more io_uring_enter() and
 * doorbell (a VM exit here).  Measured by hand, alternated: engine QD 32
 * 88-94k -> 123-124k IOPS (fio 144-150k); at half instead of a quarter
 * 113-119k; after every completion 122-142k, but through the mount that
 * looked costlier (4 of 7 warm reads at 1.85-2.0 CPU s per GiB, against
 * ~1.0 otherwise; not beyond this machine's noise), so the rule stays
 * between.  Through the mount, the quarter rule changed nothing measurable.
 *
 * Metadata I/O uses a second ring, sync_io, reaped by its caller from any
 * thread.
 *
 * This is the only file in hoardfs that calls liburing.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <liburing.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hoardfs/hoard.h>
#include "devlock.h"

#define RING_DEPTH 256
#define SYNC_DEPTH 64

struct hoard_dev {
	int fd;
	struct io_uring ring;    /* the data ring: the reaper's alone (U1) */
	sem_t ready;             /* the reaper has set up the ring, */
	int ring_res;            /* with this result */
	int efd;                 /* wakes the reaper (U1) */
	uint64_t efd_val;        /* the armed eventfd read's buffer */
	_Atomic(struct hoard_io *) queued; /* pushed by submit(), newest first */
	atomic_int sleeping;     /* the reaper is about to wait, or waits */
	unsigned inflight;       /* SQEs the kernel holds, no CQE seen (U2) */
	atomic_int stop;
	struct io_uring sring;   /* metadata I/O, waited for by its caller */
	pthread_mutex_t s_lock;  /* protects sring */
	pthread_t reaper;
};

/* Everything prepared on the data ring to the kernel (reaper only);
 * d->inflight counts what it took.  @wait: also wait for a completion,
 * at most @ts when given.  Errors (-EINTR; -EAGAIN, -EBUSY: transient)
 * leave the SQEs queued for the next call. */
static int ring_submit(struct hoard_dev *d, unsigned wait, struct __kernel_timespec *ts)
{
	unsigned before = io_uring_sq_ready(&d->ring);
	struct io_uring_cqe *cqe;
	int r = !wait ? io_uring_submit(&d->ring)
		: ts ? io_uring_submit_and_wait_timeout(&d->ring, &cqe, wait, ts, NULL)
		     : io_uring_submit_and_wait(&d->ring, wait);
	d->inflight += before - io_uring_sq_ready(&d->ring);
	return r;
}

/* The data ring refused to submit for good (not -EINTR/-EAGAIN/-EBUSY):
 * what is queued stays queued and is tried again in 10 ms, not at once,
 * which would spin a core for as long as the ring refuses. */
static void refused_pause(void)
{
	struct timespec ts = {.tv_nsec = 10000000};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void wake(struct hoard_dev *d)
{
	uint64_t one = 1;
	while (write(d->efd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
}

static int uring_submit(struct hoard_dev *d, struct hoard_io *io)
{
	if (io->op < HOARD_IO_READ || io->op > HOARD_IO_FLUSH)
		return -EINVAL;
	struct hoard_io *head = atomic_load(&d->queued);
	do
		io->next = head;
	while (!atomic_compare_exchange_weak(&d->queued, &head, io));
	if (atomic_load(&d->sleeping) && atomic_exchange(&d->sleeping, 0))
		wake(d);
	return 0;
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

/* An SQE of the data ring (reaper only): when the ring is full, what is
 * in it is submitted first.  NULL with *err when the ring refuses for
 * good (not -EAGAIN/-EBUSY/-EINTR). */
static struct io_uring_sqe *get_sqe(struct hoard_dev *d, int *err)
{
	struct io_uring_sqe *sqe;
	while ((sqe = io_uring_get_sqe(&d->ring)) == NULL) {
		int r = ring_submit(d, 0, NULL);
		if (r < 0 && r != -EAGAIN && r != -EBUSY && r != -EINTR) {
			*err = r;
			return NULL;
		}
	}
	return sqe;
}

static void queue_io(struct hoard_dev *d, struct hoard_io *io)
{
	int err = 0;
	struct io_uring_sqe *sqe = get_sqe(d, &err);
	if (!sqe) { /* a broken ring: the io fails, nothing spins */
		io->done(io, err);
		return;
	}
	prep(sqe, d->fd, io);
	io_uring_sqe_set_data(sqe, io);
}

/* 0, or the ring's error: the reaper then waits with a timeout, since
 * nothing can wake it (U1). */
static int arm_wakeup(struct hoard_dev *d)
{
	int err = 0;
	struct io_uring_sqe *sqe = get_sqe(d, &err);
	if (!sqe)
		return err;
	io_uring_prep_read(sqe, d->efd, &d->efd_val, sizeof(d->efd_val), 0);
	io_uring_sqe_set_data(sqe, &d->efd_val);
	return 0;
}

/* The queued ios into SQEs, oldest first. */
static void take_queued(struct hoard_dev *d)
{
	struct hoard_io *io = atomic_exchange(&d->queued, NULL), *fifo = NULL;
	while (io) {
		struct hoard_io *n = io->next;
		io->next = fifo;
		fifo = io;
		io = n;
	}
	while (fifo) {
		struct hoard_io *n = fifo->next;
		queue_io(d, fifo);
		fifo = n;
	}
}

/* The data ring, created by the thread that will be its only issuer.
 * SINGLE_ISSUER | DEFER_TASKRUN (Linux 6.1) make completions wait for
 * this thread; on older kernels a plain ring keeps the same protocol. */
static int ring_init(struct hoard_dev *d)
{
	int r = io_uring_queue_init(RING_DEPTH, &d->ring,
				    IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
	if (r == -EINVAL)
		r = io_uring_queue_init(RING_DEPTH, &d->ring, 0);
	return r;
}

static void *reaper_main(void *arg)
{
	struct hoard_dev *d = arg;
	d->ring_res = ring_init(d);
	int ok = d->ring_res == 0;
	sem_post(&d->ready); /* on failure uring_open joins this thread */
	if (!ok)
		return NULL;
	int armed = arm_wakeup(d) == 0;
	for (;;) {
		if (!armed)
			armed = arm_wakeup(d) == 0;
		take_queued(d);
		if (io_uring_cq_ready(&d->ring) == 0) {
			atomic_store(&d->sleeping, 1);
			if (atomic_load(&d->queued) || atomic_load(&d->stop)) {
				atomic_store(&d->sleeping, 0);
				if (atomic_load(&d->stop) && !atomic_load(&d->queued))
					break;
				continue;
			}
			/* submits what take_queued prepared and waits; with
			 * DEFER_TASKRUN, completions are posted here.  An error
			 * (-EINTR; -EAGAIN, -EBUSY: transient) leaves the SQEs
			 * queued for the next round.  Without the eventfd read
			 * armed (a ring that refused it), wait 10 ms at most. */
			struct __kernel_timespec ts = {.tv_nsec = 10000000};
			int r = ring_submit(d, 1, armed ? NULL : &ts);
			if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME)
				refused_pause();
			atomic_store(&d->sleeping, 0);
		} else {
			ring_submit(d, 0, NULL);
		}
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0, ready = io_uring_cq_ready(&d->ring);
		io_uring_for_each_cqe(&d->ring, head, cqe) {
			struct hoard_io *io = io_uring_cqe_get_data(cqe);
			int res = cqe->res;
			seen++;
			d->inflight--;
			if ((void *)io == &d->efd_val)
				armed = arm_wakeup(d) == 0;
			else if (res == -EAGAIN || res == -EINTR) /* transient */
				queue_io(d, io);
			else
				complete(d, io, res);
			/* U2: what the callbacks (or other threads) queued goes
			 * to the device before the batch ends once it is a quarter
			 * of what the device still holds (the eventfd read aside) */
			if (seen < ready && atomic_load(&d->queued)) {
				take_queued(d);
				if (4 * io_uring_sq_ready(&d->ring) + armed >= d->inflight)
					ring_submit(d, 0, NULL);
			}
		}
		io_uring_cq_advance(&d->ring, seen);
	}
	return NULL;
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
			/* Waiting fails only on a signal (-EINTR) or for
			 * completions the kernel dropped (-EBADR), which cannot
			 * happen here: at most SYNC_DEPTH ios are in flight and
			 * the completion queue holds twice that.  So no io of
			 * this call is still in flight when it returns. */
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
	int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC |
		    hoard_dev_open_flags(path, !read_only);
	d->fd = open(path, flags | O_DIRECT);
	if (d->fd < 0 && errno == EINVAL) /* a filesystem without O_DIRECT */
		d->fd = open(path, flags);
	if (d->fd < 0) {
		r = -errno; /* EBUSY: a block device held (O1) */
		goto out_free;
	}
	r = hoard_dev_lock(d->fd, !read_only); /* O1 */
	if (r < 0)
		goto out_close;
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
	d->efd = eventfd(0, EFD_CLOEXEC); /* blocking: io_uring polls it */
	if (d->efd < 0) {
		r = -errno;
		goto out_close;
	}
	r = io_uring_queue_init(SYNC_DEPTH, &d->sring, 0);
	if (r < 0)
		goto out_efd;
	pthread_mutex_init(&d->s_lock, NULL);
	sem_init(&d->ready, 0, 0);
	r = -pthread_create(&d->reaper, NULL, reaper_main, d);
	if (r < 0)
		goto out_sring;
	while (sem_wait(&d->ready) < 0) /* EINTR */
		;
	r = d->ring_res;
	if (r < 0) {
		pthread_join(d->reaper, NULL);
		goto out_sring;
	}
	*devp = d;
	return 0;
out_sring:
	sem_destroy(&d->ready);
	pthread_mutex_destroy(&d->s_lock);
	io_uring_queue_exit(&d->sring);
out_efd:
	close(d->efd);
out_close:
	close(d->fd);
out_free:
	free(d);
	return r;
}

/* The caller has waited for every io it submitted. */
static void uring_close(struct hoard_dev *d)
{
	atomic_store(&d->stop, 1);
	wake(d);
	pthread_join(d->reaper, NULL);
	io_uring_queue_exit(&d->ring);
	io_uring_queue_exit(&d->sring);
	close(d->efd);
	close(d->fd);
	pthread_mutex_destroy(&d->s_lock);
	sem_destroy(&d->ready);
	free(d);
}

const struct hoard_dev_ops hoard_dev_uring = {
	.open = uring_open,
	.submit = uring_submit,
	.close = uring_close,
	.sync_io = uring_sync_io,
};
