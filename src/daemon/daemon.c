/*
 * daemon.c - memory reserve, signals and daemonising of the mount daemon.
 *
 * Owns: the process's memory locking, I/O-flusher status, signal
 * handling (one thread in sigwait, every other thread has the signals
 * blocked), and the fork + readiness pipe between `hoardfs mount` and the
 * daemon it leaves behind.  Does not own the filesystem or the socket.
 *
 * Memory: a FUSE daemon serving a filesystem that the kernel may need to
 * write back pages to cannot wait for memory that only that writeback
 * would free.  So: mlockall (MCL_ONFAULT: reserved but untouched mappings
 * such as sanitizer shadow stay unlocked), PR_SET_IO_FLUSHER (the kernel
 * does not recurse into filesystem reclaim for us), and buffer pools
 * allocated and touched at start (src/fs/io.c).
 *
 * Heap: one malloc arena for every thread (M_ARENA_MAX 1).  glibc gives
 * each thread that allocates its own arena; a node created by one FUSE
 * worker and freed by another leaves holes in arenas that no other thread
 * can fill, and each arena keeps its own free top: with 8 workers and 3
 * background threads the tree workload left 8 MiB more resident than the
 * same nodes in one arena (and NFSv4 sequential reads 61-63 MiB against
 * 47).  The arena lock is not contended: our data path takes its buffers
 * from pools, libnfs allocates one reply buffer per READ (1 MiB), and the
 * node table allocates under fs->lock anyway.  Those reply buffers must
 * live in the heap, where freed ones are reused: glibc's default 128 KiB
 * mmap threshold mmapped each one afresh (16 times the page faults, half
 * again the daemon's CPU time on a cold read).  Its dynamic threshold put
 * them in the heap but trimmed the heap's top (dynamic trim threshold:
 * twice the mmap threshold, ~2 MiB) whenever a few were freed together,
 * and the next READs faulted that memory in again: page faults and
 * zeroing inside recv(), ~5 % of the daemon's samples on a cold NFSv4
 * read.  So both thresholds are fixed: buffers up to HD_MMAP_THRESHOLD
 * come from the heap, and its top is kept up to HD_TRIM_THRESHOLD (never
 * more than the daemon's peak, which the memory budget already covers).
 * Measured on a cold NFSv4 read of 1 GiB: 1.20-1.28 s of daemon CPU
 * against 1.29-1.51 with the dynamic thresholds (5 alternations).
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "daemon/daemon.h"

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif
#ifndef MCL_ONFAULT
#define MCL_ONFAULT 4
#endif

static FILE *log_file;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void hd_log_to(FILE *f)
{
	log_file = f;
}

void hd_log(const char *fmt, ...)
{
	FILE *f = log_file ? log_file : (hd_detached() ? NULL : stderr);
	if (!f)
		return;
	char ts[32];
	time_t now = time(NULL);
	struct tm tm;
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", localtime_r(&now, &tm));
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&log_lock);
	fprintf(f, "%s hoardfs[%d]: ", ts, (int)getpid());
	vfprintf(f, fmt, ap);
	fputc('\n', f);
	fflush(f);
	pthread_mutex_unlock(&log_lock);
	va_end(ap);
}

#define HD_MMAP_THRESHOLD (4 << 20)  /* above libnfs's 1 MiB READ replies */
#define HD_TRIM_THRESHOLD (32 << 20) /* the heap's top kept, up to this */

void hd_memory_reserve(void)
{
	if (!mallopt(M_ARENA_MAX, 1))
		hd_log("mallopt M_ARENA_MAX: refused (continuing)");
	if (!mallopt(M_MMAP_THRESHOLD, HD_MMAP_THRESHOLD) ||
	    !mallopt(M_TRIM_THRESHOLD, HD_TRIM_THRESHOLD))
		hd_log("mallopt M_MMAP_THRESHOLD, M_TRIM_THRESHOLD: refused (continuing)");
	if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT))
		hd_log("mlockall: %s (continuing without locked memory)",
		       strerror(errno));
	if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0))
		hd_log("PR_SET_IO_FLUSHER: %s (continuing)", strerror(errno));
}

/* ---- signals ---- */

static pthread_t sig_thread;
static int sig_started;
static volatile int sig_stopping;

void hd_signals_block(void)
{
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGTERM);
	sigaddset(&s, SIGINT);
	sigaddset(&s, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static void *sig_main(void *arg)
{
	struct hfs *fs = arg;
	sigset_t s;
	int sig;
	sigemptyset(&s);
	sigaddset(&s, SIGTERM);
	sigaddset(&s, SIGINT);
	sigaddset(&s, SIGHUP);
	for (;;) {
		if (sigwait(&s, &sig))
			continue;
		if (sig_stopping)
			return NULL;
		hd_log("signal %d: unmounting", sig);
		hfs_exit(fs);
		return NULL;
	}
}

int hd_signals_start(struct hfs *fs)
{
	int r = pthread_create(&sig_thread, NULL, sig_main, fs);
	if (r)
		return -r;
	sig_started = 1;
	return 0;
}

void hd_signals_stop(void)
{
	if (!sig_started)
		return;
	sig_stopping = 1;
	pthread_kill(sig_thread, SIGHUP); /* no-op if it already returned */
	pthread_join(sig_thread, NULL);
	sig_started = 0;
}

/* ---- daemonising ---- */

static int ready_fd = -1;
static int detached;

int hd_detached(void)
{
	return detached;
}

int hd_detach(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC))
		return -errno;
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return -errno;
	if (pid > 0) {
		close(p[1]);
		char msg[4096];
		size_t got = 0;
		ssize_t n;
		while (got < sizeof(msg) - 1 &&
		       (n = read(p[0], msg + got, sizeof(msg) - 1 - got)) != 0) {
			if (n < 0) {
				if (errno == EINTR)
					continue;
				break;
			}
			got += (size_t)n;
		}
		msg[got] = '\0';
		if (got > 0 && msg[0] == '0')
			exit(0);
		if (got > 1)
			fprintf(stderr, "%s\n", msg + 1);
		else {
			int st;
			waitpid(pid, &st, 0);
			fprintf(stderr, "hoardfs mount: the daemon exited before the mount was ready\n");
		}
		exit(1);
	}
	close(p[0]);
	ready_fd = p[1];
	detached = 1;
	setsid();
	return 0;
}

void hd_ready(void)
{
	if (ready_fd < 0)
		return;
	int nul = open("/dev/null", O_RDWR);
	if (nul >= 0) {
		dup2(nul, 0);
		dup2(nul, 1);
		/* sanitizer reports and libfuse messages go to the log */
		dup2(log_file ? fileno(log_file) : nul, 2);
		if (nul > 2)
			close(nul);
	}
	ssize_t w = write(ready_fd, "0", 1);
	(void)w;
	close(ready_fd);
	ready_fd = -1;
}

void hd_fail(const char *msg)
{
	if (ready_fd < 0) {
		fprintf(stderr, "%s\n", msg);
		return;
	}
	char buf[4096];
	int n = snprintf(buf, sizeof(buf), "1%s", msg);
	ssize_t w = write(ready_fd, buf, n < (int)sizeof(buf) ? (size_t)n : sizeof(buf) - 1);
	(void)w;
	close(ready_fd);
	ready_fd = -1;
}
