/*
 * backend.h - the one small interface between the FUSE front end and the
 * network filesystems behind it.
 *
 * Owns: naming a remote tree by path and doing POSIX-ish operations on it
 * with the caller's credentials.  Does not own: caching (src/fs and the
 * engine), inode numbers handed to the kernel (src/fs).
 *
 * Paths are relative to the root of the source, start with "/" ("/" is the
 * root), and contain any bytes but NUL.  Every call returns 0 or a count on
 * success and a negative errno on failure.  A backend is thread-safe.
 *
 * Implementations: nfs.c (libnfs, NFSv3 and NFSv4, AUTH_SYS with the
 * caller's uid/gid) and dir.c (any directory already mounted by some other
 * client; credentials through setfsuid/setfsgid on the calling thread).
 */
#ifndef HOARDFS_BACKEND_H
#define HOARDFS_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

struct hb_cred {
	uid_t uid;
	gid_t gid;
};

struct hb_attr {
	uint64_t fsid;       /* which filesystem on the server */
	uint64_t fileid;     /* inode number on the server: (fsid, fileid) is
				the object's cache key, stable across renames */
	uint32_t mode;       /* type and permission bits, as st_mode */
	uint32_t nlink;
	uint32_t uid, gid;
	uint64_t size;
	uint64_t blocks;     /* 512-byte blocks used */
	uint64_t rdev;
	struct timespec atime, mtime, ctime;
	uint64_t change;     /* NFSv4 change attribute if known, else 0 */
};

struct hb_statfs {
	uint64_t bsize, frsize, blocks, bfree, bavail, files, ffree, namemax;
};

/* Called once per directory entry ("." and ".." excluded); with
 * readdirplus the attributes are filled (attr may be NULL otherwise).
 * A non-zero return stops the listing and is returned by readdir. */
typedef int (*hb_dirent_fn)(const char *name, const struct hb_attr *attr,
			    void *arg);

struct hb;      /* one connection to a source */
struct hb_file; /* an open remote file */

/* Bits of hb_setattr.valid */
#define HB_SET_MODE 1u
#define HB_SET_UID 2u
#define HB_SET_GID 4u
#define HB_SET_SIZE 8u
#define HB_SET_ATIME 16u
#define HB_SET_MTIME 32u
#define HB_SET_ATIME_NOW 64u
#define HB_SET_MTIME_NOW 128u

struct hb_setattr {
	uint32_t valid;
	uint32_t mode;
	uint32_t uid, gid;
	uint64_t size;
	struct timespec atime, mtime;
};

struct hb_ops {
	const char *name; /* "nfs", "dir" */
	void (*close)(struct hb *b);
	int (*getattr)(struct hb *b, const struct hb_cred *cr, const char *path,
		       struct hb_attr *attr);  /* lstat */
	int (*readdir)(struct hb *b, const struct hb_cred *cr, const char *path,
		       hb_dirent_fn fn, void *arg);
	/* flags: O_RDONLY/O_WRONLY/O_RDWR, O_CREAT|O_EXCL|O_TRUNC|O_APPEND.
	 * On success fills *attr (may be NULL) with the file's attributes. */
	int (*open)(struct hb *b, const struct hb_cred *cr, const char *path,
		    int flags, uint32_t mode, struct hb_file **fp,
		    struct hb_attr *attr);
	int64_t (*pread)(struct hb *b, struct hb_file *f, void *buf, size_t len,
			 uint64_t off);
	int64_t (*pwrite)(struct hb *b, struct hb_file *f, const void *buf,
			  size_t len, uint64_t off);
	int (*fsync)(struct hb *b, struct hb_file *f);
	int (*release)(struct hb *b, struct hb_file *f); /* closes; frees f */
	int (*setattr)(struct hb *b, const struct hb_cred *cr, const char *path,
		       const struct hb_setattr *sa, struct hb_attr *attr);
	int (*mknod)(struct hb *b, const struct hb_cred *cr, const char *path,
		     uint32_t mode, uint64_t rdev);
	int (*mkdir)(struct hb *b, const struct hb_cred *cr, const char *path,
		     uint32_t mode);
	int (*unlink)(struct hb *b, const struct hb_cred *cr, const char *path);
	int (*rmdir)(struct hb *b, const struct hb_cred *cr, const char *path);
	int (*rename)(struct hb *b, const struct hb_cred *cr, const char *from,
		      const char *to, unsigned int flags);
	int (*symlink)(struct hb *b, const struct hb_cred *cr, const char *target,
		       const char *path);
	int (*readlink)(struct hb *b, const struct hb_cred *cr, const char *path,
			char *buf, size_t len); /* returns length, no NUL added */
	int (*link)(struct hb *b, const struct hb_cred *cr, const char *from,
		    const char *to);
	int (*statfs)(struct hb *b, const struct hb_cred *cr, const char *path,
		      struct hb_statfs *st);
};

struct hb {
	const struct hb_ops *ops;
	char volume[256];   /* stable name of the source, e.g. "nfs://h/export" */
};

struct hb_opts {
	uint32_t timeout_ms; /* connect / RPC timeout; 0 = default 10000 */
	int nconn;           /* NFS connections (parallel RPCs); 0 = default 4 */
};

/*
 * Open @source: "nfs://host[:port]/export[/path][?version=3|4]" or
 * "dir:/path".  A server that cannot be reached gives -ETIMEDOUT or
 * -ECONNREFUSED within opts->timeout_ms; a malformed source -EINVAL with a
 * message in @err.
 */
int hb_open(const char *source, const struct hb_opts *opts, struct hb **bp,
	    char *err, size_t err_len);

int hb_nfs_open(const char *source, const struct hb_opts *opts, struct hb **bp,
		char *err, size_t err_len);
int hb_dir_open(const char *source, const struct hb_opts *opts, struct hb **bp,
		char *err, size_t err_len);

#endif
