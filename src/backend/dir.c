/*
 * dir.c - the "dir:" backend: a local directory that some other client
 * already mounted (a kernel NFS or SMB mount, a FUSE filesystem, or a plain
 * local tree in tests).
 *
 * Owns: resolving backend paths beneath one root and doing each operation
 * with the caller's filesystem credentials.  Does not own: caching, inode
 * numbers handed to the kernel.
 *
 * Invariants relied on below:
 *  1. Every path is resolved from d->root (an O_PATH directory fd opened once)
 *     with the *at() calls; the parent directory is opened with openat2()
 *     RESOLVE_BENEATH, so no intermediate component (symlink or "..") can
 *     leave the tree.  The final component is never followed when it is a
 *     symlink: stat, chown, utimes and chmod use AT_SYMLINK_NOFOLLOW, open
 *     uses O_NOFOLLOW, and a final ".." is refused.  On a kernel without
 *     openat2 (before 5.6) intermediate symlinks are followed as openat()
 *     does; that fallback is the only place the tree can be left.
 *  2. Credentials: each call that takes a struct hb_cred switches the
 *     calling thread's fsuid/fsgid (raw syscalls, which are per thread) and
 *     restores them before returning; callbacks of readdir run with the
 *     daemon's own credentials.  Supplementary groups are NOT applied:
 *     setgroups() is per process in glibc, so the caller is checked with its
 *     uid, its primary gid and the daemon's own supplementary groups.  A
 *     NULL cred means "the daemon's own credentials" (no switch).
 *  3. hb_file is an fd opened by the caller's credentials; later I/O on it
 *     is not re-checked (POSIX semantics).  O_APPEND is dropped at open:
 *     callers always give explicit offsets to pwrite.
 * fileid = st_ino, fsid = st_dev, change = 0 (not available from stat).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>
#include "backend/backend.h"

struct dir_hb {
	struct hb base;
	int root; /* O_PATH|O_DIRECTORY; read-only after open */
};

struct hb_file {
	int fd;
};

/* The parent directory of a path and its last component. */
struct dir_path {
	int fd;           /* parent directory (d->root or an O_PATH fd) */
	int own;          /* fd must be closed */
	const char *name; /* last component, "." for the root */
	char buf[PATH_MAX];
};

struct dir_cred {
	int active;
	uid_t uid;
	gid_t gid;
};

static struct dir_hb *to_dir(struct hb *b)
{
	return (struct dir_hb *)b;
}

/* Switch the calling thread's fsuid/fsgid to @cr (invariant 2). */
static int cred_enter(const struct hb_cred *cr, struct dir_cred *s)
{
	s->active = 0;
	if (!cr)
		return 0;
	s->gid = (gid_t)syscall(SYS_setfsgid, cr->gid);
	s->uid = (uid_t)syscall(SYS_setfsuid, cr->uid);
	s->active = 1;
	/* setfsuid() reports nothing on failure: read the values back. */
	if ((uid_t)syscall(SYS_setfsuid, -1) != cr->uid ||
	    (gid_t)syscall(SYS_setfsgid, -1) != cr->gid)
		return -EPERM;
	return 0;
}

static void cred_leave(struct dir_cred *s)
{
	if (!s->active)
		return;
	syscall(SYS_setfsuid, s->uid);
	syscall(SYS_setfsgid, s->gid);
	s->active = 0;
}

static int open_beneath(int root, const char *rel, int *fd)
{
	struct open_how how = {
		.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
	};
	static int no_openat2; /* set once, racy but idempotent */
	long r = -1;

	if (!__atomic_load_n(&no_openat2, __ATOMIC_RELAXED)) {
		r = syscall(SYS_openat2, root, rel, &how, sizeof(how));
		if (r < 0 && errno == ENOSYS)
			__atomic_store_n(&no_openat2, 1, __ATOMIC_RELAXED);
	}
	if (__atomic_load_n(&no_openat2, __ATOMIC_RELAXED))
		r = openat(root, rel, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (r < 0)
		return -errno;
	*fd = (int)r;
	return 0;
}

/* Resolve @path to (parent fd, last name) beneath the root (invariant 1). */
static int dir_resolve(struct dir_hb *d, const char *path, struct dir_path *p)
{
	p->fd = d->root;
	p->own = 0;
	while (*path == '/')
		path++;
	size_t n = strlen(path);
	if (n >= sizeof(p->buf))
		return -ENAMETOOLONG;
	memcpy(p->buf, path, n + 1);
	while (n > 0 && p->buf[n - 1] == '/')
		p->buf[--n] = '\0';
	if (n == 0) {
		p->name = ".";
		return 0;
	}
	char *slash = strrchr(p->buf, '/');
	if (!slash) {
		p->name = p->buf;
	} else {
		*slash = '\0';
		p->name = slash + 1;
		int r = open_beneath(d->root, p->buf, &p->fd);
		if (r)
			return r;
		p->own = 1;
	}
	if (!strcmp(p->name, ".."))
		return -EINVAL; /* the caller's dir_put() closes p->fd */
	return 0;
}

static void dir_put(struct dir_path *p)
{
	if (p->own)
		close(p->fd);
	p->own = 0;
}

static void attr_from_stat(struct hb_attr *a, const struct stat *st)
{
	memset(a, 0, sizeof(*a));
	a->fsid = st->st_dev;
	a->fileid = st->st_ino;
	a->mode = st->st_mode;
	a->nlink = (uint32_t)st->st_nlink;
	a->uid = st->st_uid;
	a->gid = st->st_gid;
	a->size = (uint64_t)st->st_size;
	a->blocks = (uint64_t)st->st_blocks;
	a->rdev = st->st_rdev;
	a->atime = st->st_atim;
	a->mtime = st->st_mtim;
	a->ctime = st->st_ctim;
}

static int stat_at(int fd, const char *name, struct hb_attr *attr)
{
	struct stat st;
	if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return -errno;
	attr_from_stat(attr, &st);
	return 0;
}

static void dir_close(struct hb *b)
{
	struct dir_hb *d = to_dir(b);
	if (!d)
		return;
	close(d->root);
	free(d);
}

static int dir_getattr(struct hb *b, const struct hb_cred *cr, const char *path,
		       struct hb_attr *attr)
{
	struct dir_path p;
	struct dir_cred c;
	int r = cred_enter(cr, &c);
	if (r)
		goto out;
	r = dir_resolve(to_dir(b), path, &p);
	if (!r)
		r = stat_at(p.fd, p.name, attr);
	dir_put(&p);
out:
	cred_leave(&c);
	return r;
}

static int dir_readdir(struct hb *b, const struct hb_cred *cr, const char *path,
		       hb_dirent_fn fn, void *arg)
{
	struct dir_path p;
	struct dir_cred c;
	DIR *dp = NULL;
	int r = cred_enter(cr, &c);
	if (r)
		goto out;
	r = dir_resolve(to_dir(b), path, &p);
	if (r)
		goto out_put;
	int fd = openat(p.fd, p.name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		goto out_put;
	}
	dp = fdopendir(fd);
	if (!dp) {
		r = -errno;
		close(fd);
		goto out_put;
	}
	for (;;) {
		errno = 0;
		struct dirent *e = readdir(dp);
		if (!e) {
			r = -errno;
			break;
		}
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		struct hb_attr a;
		int sr = stat_at(dirfd(dp), e->d_name, &a);
		if (sr == -ENOENT)
			continue; /* removed since getdents */
		cred_leave(&c);
		r = fn(e->d_name, sr ? NULL : &a, arg);
		if (r)
			break;
		r = cred_enter(cr, &c);
		if (r)
			break;
	}
	closedir(dp);
out_put:
	dir_put(&p);
out:
	cred_leave(&c);
	return r;
}

static int dir_open(struct hb *b, const struct hb_cred *cr, const char *path,
		    int flags, uint32_t mode, struct hb_file **fp,
		    struct hb_attr *attr)
{
	struct dir_path p;
	struct dir_cred c;
	struct hb_file *f = NULL;
	int fd = -1;
	int r = cred_enter(cr, &c);
	if (r)
		goto out;
	r = dir_resolve(to_dir(b), path, &p);
	if (r)
		goto out_put;
	flags &= O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC;
	fd = openat(p.fd, p.name, flags | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
	if (fd < 0) {
		r = -errno;
		goto out_put;
	}
	if (attr) {
		struct stat st;
		if (fstat(fd, &st) < 0) {
			r = -errno;
			goto out_put;
		}
		attr_from_stat(attr, &st);
	}
	f = malloc(sizeof(*f));
	if (!f) {
		r = -ENOMEM;
		goto out_put;
	}
	f->fd = fd;
	fd = -1;
	*fp = f;
out_put:
	if (fd >= 0)
		close(fd);
	dir_put(&p);
out:
	cred_leave(&c);
	return r;
}

static int64_t dir_pread(struct hb *b, struct hb_file *f, void *buf, size_t len,
			 uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pread(f->fd, (char *)buf + done, len - done,
				  (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return done ? (int64_t)done : -errno;
		}
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (int64_t)done;
}

static int64_t dir_pwrite(struct hb *b, struct hb_file *f, const void *buf,
			  size_t len, uint64_t off)
{
	size_t done = 0;
	while (done < len) {
		ssize_t n = pwrite(f->fd, (const char *)buf + done, len - done,
				   (off_t)(off + done));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return done ? (int64_t)done : -errno;
		}
		done += (size_t)n;
	}
	return (int64_t)done;
}

static int dir_fsync(struct hb *b, struct hb_file *f)
{
	return fsync(f->fd) < 0 ? -errno : 0;
}

static int dir_release(struct hb *b, struct hb_file *f)
{
	int r = close(f->fd) < 0 ? -errno : 0;
	free(f);
	return r;
}

static int dir_setattr(struct hb *b, const struct hb_cred *cr, const char *path,
		       const struct hb_setattr *sa, struct hb_attr *attr)
{
	struct dir_path p;
	struct dir_cred c;
	int r = cred_enter(cr, &c);
	if (r)
		goto out;
	r = dir_resolve(to_dir(b), path, &p);
	if (r)
		goto out_put;
	if (sa->valid & (HB_SET_UID | HB_SET_GID)) {
		uid_t uid = sa->valid & HB_SET_UID ? sa->uid : (uid_t)-1;
		gid_t gid = sa->valid & HB_SET_GID ? sa->gid : (gid_t)-1;
		if (fchownat(p.fd, p.name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			goto out_put;
		}
	}
	if (sa->valid & HB_SET_MODE) {
		/* glibc refuses symlinks with EOPNOTSUPP and otherwise
		 * chmods through an O_PATH|O_NOFOLLOW fd. */
		if (fchmodat(p.fd, p.name, sa->mode & 07777, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			goto out_put;
		}
	}
	if (sa->valid & HB_SET_SIZE) {
		int fd = openat(p.fd, p.name,
				O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
		if (fd < 0) {
			r = -errno;
			goto out_put;
		}
		r = ftruncate(fd, (off_t)sa->size) < 0 ? -errno : 0;
		close(fd);
		if (r)
			goto out_put;
	}
	if (sa->valid & (HB_SET_ATIME | HB_SET_MTIME | HB_SET_ATIME_NOW |
			 HB_SET_MTIME_NOW)) {
		struct timespec ts[2] = {{.tv_nsec = UTIME_OMIT}, {.tv_nsec = UTIME_OMIT}};
		if (sa->valid & HB_SET_ATIME_NOW)
			ts[0].tv_nsec = UTIME_NOW;
		else if (sa->valid & HB_SET_ATIME)
			ts[0] = sa->atime;
		if (sa->valid & HB_SET_MTIME_NOW)
			ts[1].tv_nsec = UTIME_NOW;
		else if (sa->valid & HB_SET_MTIME)
			ts[1] = sa->mtime;
		if (utimensat(p.fd, p.name, ts, AT_SYMLINK_NOFOLLOW) < 0) {
			r = -errno;
			goto out_put;
		}
	}
	if (attr)
		r = stat_at(p.fd, p.name, attr);
out_put:
	dir_put(&p);
out:
	cred_leave(&c);
	return r;
}

/* The shape shared by the one-path operations below. */
#define DIR_PATH_OP(fname, call, ...)                                          \
	static int fname(struct hb *b, const struct hb_cred *cr,               \
			 const char *path, ##__VA_ARGS__)                      \
	{                                                                      \
		struct dir_path p;                                             \
		struct dir_cred c;                                             \
		int r = cred_enter(cr, &c);                                    \
		if (r)                                                         \
			goto out;                                              \
		r = dir_resolve(to_dir(b), path, &p);                          \
		if (!r && (call) < 0)                                          \
			r = -errno;                                            \
		dir_put(&p);                                                   \
	out:                                                                   \
		cred_leave(&c);                                                \
		return r;                                                      \
	}

DIR_PATH_OP(dir_mknod, mknodat(p.fd, p.name, (mode_t)mode, (dev_t)rdev),
	    uint32_t mode, uint64_t rdev)
DIR_PATH_OP(dir_mkdir, mkdirat(p.fd, p.name, (mode_t)mode), uint32_t mode)
DIR_PATH_OP(dir_unlink, unlinkat(p.fd, p.name, 0))
DIR_PATH_OP(dir_rmdir, unlinkat(p.fd, p.name, AT_REMOVEDIR))

static int dir_symlink(struct hb *b, const struct hb_cred *cr,
		       const char *target, const char *path)
{
	struct dir_path p;
	struct dir_cred c;
	int r = cred_enter(cr, &c);
	if (r)
		goto out;
	r = dir_resolve(to_dir(b), path, &p);
	if (!r && symlinkat(target, p.fd, p.name) < 0)
		r = -errno;
	dir_put(&p);
out:
	cred_leave(&c);
	return r;
}

static int dir_readlink(struct hb *b, const struct hb_cred *cr, const char *path,
			char *buf, size_t len)
{
	struct dir_path p;
	struct dir_cred c;
	int r = cred_enter(cr, &c);
	if (r)
		goto out;
	r = dir_resolve(to_dir(b), path, &p);
	if (!r) {
		ssize_t n = readlinkat(p.fd, p.name, buf, len);
		r = n < 0 ? -errno : (int)n;
	}
	dir_put(&p);
out:
	cred_leave(&c);
	return r;
}

/* Two-path operations: rename (flags as renameat2) and link. */
static int dir_two(struct hb *b, const struct hb_cred *cr, const char *from,
		   const char *to, unsigned int flags, int is_link)
{
	struct dir_path *p = malloc(2 * sizeof(*p)); /* 2 * PATH_MAX: keep off the stack */
	struct dir_cred c;
	int r;
	if (!p)
		return -ENOMEM;
	p[0].own = p[1].own = 0;
	r = cred_enter(cr, &c);
	if (r)
		goto out;
	r = dir_resolve(to_dir(b), from, &p[0]);
	if (r)
		goto out;
	r = dir_resolve(to_dir(b), to, &p[1]);
	if (r)
		goto out;
	if (is_link)
		r = linkat(p[0].fd, p[0].name, p[1].fd, p[1].name, 0);
	else
		r = renameat2(p[0].fd, p[0].name, p[1].fd, p[1].name, flags);
	if (r < 0)
		r = -errno;
out:
	dir_put(&p[1]);
	dir_put(&p[0]);
	cred_leave(&c);
	free(p);
	return r;
}

static int dir_rename(struct hb *b, const struct hb_cred *cr, const char *from,
		      const char *to, unsigned int flags)
{
	return dir_two(b, cr, from, to, flags, 0);
}

static int dir_link(struct hb *b, const struct hb_cred *cr, const char *from,
		    const char *to)
{
	return dir_two(b, cr, from, to, 0, 1);
}

static int dir_statfs(struct hb *b, const struct hb_cred *cr, const char *path,
		      struct hb_statfs *st)
{
	struct dir_path p;
	struct dir_cred c;
	struct statvfs v;
	int r = cred_enter(cr, &c);
	if (r)
		goto out;
	r = dir_resolve(to_dir(b), path, &p);
	if (r)
		goto out_put;
	int fd = openat(p.fd, p.name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		goto out_put;
	}
	r = fstatvfs(fd, &v) < 0 ? -errno : 0;
	close(fd);
	if (!r) {
		st->bsize = v.f_bsize;
		st->frsize = v.f_frsize;
		st->blocks = v.f_blocks;
		st->bfree = v.f_bfree;
		st->bavail = v.f_bavail;
		st->files = v.f_files;
		st->ffree = v.f_ffree;
		st->namemax = v.f_namemax;
	}
out_put:
	dir_put(&p);
out:
	cred_leave(&c);
	return r;
}

static const struct hb_ops dir_ops = {
	.name = "dir",
	.close = dir_close,
	.getattr = dir_getattr,
	.readdir = dir_readdir,
	.open = dir_open,
	.pread = dir_pread,
	.pwrite = dir_pwrite,
	.fsync = dir_fsync,
	.release = dir_release,
	.setattr = dir_setattr,
	.mknod = dir_mknod,
	.mkdir = dir_mkdir,
	.unlink = dir_unlink,
	.rmdir = dir_rmdir,
	.rename = dir_rename,
	.symlink = dir_symlink,
	.readlink = dir_readlink,
	.link = dir_link,
	.statfs = dir_statfs,
};

int hb_dir_open(const char *source, const struct hb_opts *opts, struct hb **bp,
		char *err, size_t err_len)
{
	struct dir_hb *d = NULL;
	char *real = NULL;
	int r;

	*bp = NULL;
	if (strncmp(source, "dir:", 4) || !source[4]) {
		snprintf(err, err_len, "invalid source '%s' (expected dir:/path)",
			 source);
		return -EINVAL;
	}
	real = realpath(source + 4, NULL);
	if (!real) {
		r = -errno;
		snprintf(err, err_len, "%s", source + 4);
		goto out;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		r = -ENOMEM;
		goto out;
	}
	d->base.ops = &dir_ops;
	if ((size_t)snprintf(d->base.volume, sizeof(d->base.volume), "dir:%s",
			     real) >= sizeof(d->base.volume)) {
		r = -ENAMETOOLONG;
		snprintf(err, err_len, "volume name for %s", real);
		goto out;
	}
	d->root = open(real, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (d->root < 0) {
		r = -errno;
		snprintf(err, err_len, "%s", real);
		goto out;
	}
	*bp = &d->base;
	d = NULL;
	r = 0;
out:
	free(d);
	free(real);
	return r;
}
