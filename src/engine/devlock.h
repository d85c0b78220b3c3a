/*
 * devlock.h - one process at a time on a cache device (invariant O1).
 *
 * Two engines on one device would each trust their own view of the
 * metadata (the page cache, the open bucket, the journal's position) and
 * overwrite each other's: a second mount on the same image, `hoardfs fsck
 * --repair` or `format --force` while a daemon runs, or a new mount while
 * the previous daemon still writes its last commit after a plain umount.
 * So every open of a device for the engine locks it: flock(2), exclusive
 * to write, shared to read (inspect and fsck without --repair may run side
 * by side, never beside a writer), and a block device opened to write is
 * also opened O_EXCL (the kernel refuses it while mounted or held
 * exclusively, under any of its names).  The kernel drops the lock when
 * the process exits, crash included: nothing to clean up after a crash.
 */
#ifndef HOARDFS_DEVLOCK_H
#define HOARDFS_DEVLOCK_H

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

/* Extra open(2) flags for @path opened to write: O_EXCL for a block device. */
static inline int hoard_dev_open_flags(const char *path, int write)
{
	struct stat st;
	return write && stat(path, &st) == 0 && S_ISBLK(st.st_mode) ? O_EXCL : 0;
}

/* 0, or -EBUSY when another process has the device open for the engine. */
static inline int hoard_dev_lock(int fd, int exclusive)
{
	if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) == 0)
		return 0;
	return errno == EWOULDBLOCK ? -EBUSY : -errno;
}

#endif
