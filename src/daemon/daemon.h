/*
 * daemon.h - process concerns of the mount daemon: memory reserve,
 * daemonising, signals, and the control socket that answers
 * `hoardfs stat` and `hoardfs umount`.
 *
 * Owns: everything about the process that is not the filesystem.  Does
 * not own the FUSE session (src/fs) or option parsing (src/cli).
 *
 * Control socket protocol: a unix stream socket at hd_ctl_path(mountpoint);
 * the client writes one command line, the daemon answers and closes:
 *   stats   JSON document (docs: hoardfs stat --json)
 *   table   the same as a human-readable table
 *   pid     the daemon's pid
 *   wait    no answer: the connection is closed when the daemon has
 *           closed the cache and is about to exit (umount waits on it)
 */
#ifndef HOARDFS_DAEMON_H
#define HOARDFS_DAEMON_H

#include <stddef.h>
#include <stdio.h>
#include "fs/fs.h"

/* Messages of the daemon (stderr in the foreground, the log file or
 * nothing once detached). */
void hd_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void hd_log_to(FILE *f);

/* mlockall (MCL_ONFAULT) and PR_SET_IO_FLUSHER; best effort, logged. */
void hd_memory_reserve(void);

/* Block SIGTERM/SIGINT/SIGHUP in this thread and every thread created
 * after it (call before any thread exists); ignore SIGPIPE. */
void hd_signals_block(void);
/* A thread that waits for those signals and calls hfs_exit(fs). */
int hd_signals_start(struct hfs *fs);
void hd_signals_stop(void);

/* Daemonising: hd_detach() forks; the parent waits until the child calls
 * hd_ready() (returns 0) or hd_fail() (prints the message, returns 1) and
 * exits with that status.  In the child it returns 0. */
int hd_detach(void);
void hd_ready(void);
void hd_fail(const char *msg);
int hd_detached(void);

/* The control socket. */
int hd_ctl_path(const char *mountpoint, char *buf, size_t len);
struct hd_ctl;
int hd_ctl_start(const char *mountpoint, const char *source, struct hfs *fs,
		 struct hd_ctl **ctlp);
/* Stop answering from @fs (it is about to be freed). */
void hd_ctl_detach(struct hd_ctl *ctl);
/* Close the socket; releases "wait" clients. */
void hd_ctl_stop(struct hd_ctl *ctl);
/* Client side: send @cmd, read the answer into @out (NUL-terminated).
 * Returns bytes read or -errno; -ENOENT/-ECONNREFUSED: no daemon. */
int hd_ctl_query(const char *mountpoint, const char *cmd, char *out,
		 size_t len, int timeout_ms);
/* Client side of "wait": connect and send; hd_ctl_wait_end() blocks until
 * the daemon closes the connection (or @timeout_ms). */
int hd_ctl_wait_begin(const char *mountpoint);
int hd_ctl_wait_end(int fd, int timeout_ms);

#endif
