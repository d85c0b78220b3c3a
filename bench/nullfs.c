/*
 * nullfs.c - a FUSE filesystem that does no I/O: the ceiling of the FUSE
 * transport on this kernel, for bandwidth, for operations per second and
 * for metadata walks.
 *
 *   nullfs MOUNTPOINT SIZE [THREADS]
 *   nullfs MOUNTPOINT --tree NDIRS NFILES [THREADS]
 *
 * The first form serves one read-only file, /file, of SIZE bytes (suffix
 * K, M, G) whose content is a fixed pattern with a 1 MiB period (byte at
 * offset o is pattern[o mod 1 MiB]); reads are answered from that buffer
 * in memory.  Attributes and entries are valid for an hour: the
 * transport, not revalidation, is what is measured.
 *
 * The second form serves the shape of bench/run's tree: /tree holds the
 * directories d000 .. d(NDIRS-1), each with the files f00000 ..
 * f(NFILES-1) of 4096 bytes (the names bench/run's generator gives,
 * "d%03d" and "f%05d"), every mtime a day before the mount, read-only.
 * Entries and attributes are valid for 60 s, what hoardfs gives a tree
 * dated a day back (NFS's acregmax and acdirmax); listings are readdirplus
 * replies with every entry's attributes.  A file reads as the first 4 KiB
 * of the pattern.  Nothing is stored per inode: inode numbers are computed
 * (1 the root, 2 /tree, 3 + d directory d, 3 + NDIRS + d * NFILES + f
 * file f of d), so lookups and forgets cost nothing.
 *
 * Runs in the foreground until unmounted or signalled (SIGTERM/SIGINT
 * unmount it).  The FUSE settings are hoardfs's (src/fs/fs.c,
 * src/fs/ops.c op_init): 1 MiB max_write and max_readahead (so max_pages
 * covers 1 MiB requests), readdirplus always, async reads, parallel
 * dirops, no splice, no writeback cache, no kernel caching of listings,
 * the multithreaded loop with clone_fd, 16 threads at most, 4 idle.
 * Not a test.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#define PERIOD (1u << 20)
#define MAX_IO (1u << 20)
#define FILE_INO 2
#define TREE_INO 2
#define TIMEOUT 3600.0
#define TREE_TIMEOUT 60.0
#define TREE_FILE_SIZE 4096u
#define DIRBUF (128u << 10)

static uint64_t file_size;
static unsigned char pattern[PERIOD + MAX_IO];

/* Tree mode (set once in main, read-only afterwards). */
static int tree_mode;
static uint64_t ndirs, nfiles;
static time_t tree_mtime;

enum kind { K_NONE, K_ROOT, K_FILE, K_TREE, K_DIR, K_TFILE };

/* What inode ino is; *d and *f the directory and file index in the tree. */
static enum kind kind_of(fuse_ino_t ino, uint64_t *d, uint64_t *f)
{
	if (ino == FUSE_ROOT_ID)
		return K_ROOT;
	if (!tree_mode)
		return ino == FILE_INO ? K_FILE : K_NONE;
	if (ino == TREE_INO)
		return K_TREE;
	if (ino < 3)
		return K_NONE;
	uint64_t i = ino - 3;
	if (i < ndirs) {
		*d = i;
		return K_DIR;
	}
	i -= ndirs;
	if (i / nfiles >= ndirs)
		return K_NONE;
	*d = i / nfiles;
	*f = i % nfiles;
	return K_TFILE;
}

static fuse_ino_t dir_ino(uint64_t d)
{
	return 3 + d;
}

static fuse_ino_t tfile_ino(uint64_t d, uint64_t f)
{
	return 3 + ndirs + d * nfiles + f;
}

static void fill_attr(fuse_ino_t ino, struct stat *st)
{
	uint64_t d = 0, f = 0;
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = 0;
	st->st_gid = 0;
	st->st_blksize = 4096;
	switch (kind_of(ino, &d, &f)) {
	case K_ROOT:
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = tree_mode ? 3 : 2;
		break;
	case K_FILE:
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)file_size;
		st->st_blocks = (blkcnt_t)((file_size + 511) / 512);
		break;
	case K_TREE:
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = (nlink_t)(2 + ndirs);
		st->st_size = 4096;
		break;
	case K_DIR:
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
		st->st_size = 4096;
		break;
	case K_TFILE:
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = TREE_FILE_SIZE;
		st->st_blocks = TREE_FILE_SIZE / 512;
		break;
	case K_NONE:
		break;
	}
	if (tree_mode) {
		st->st_mtim.tv_sec = tree_mtime;
		st->st_ctim.tv_sec = tree_mtime;
		st->st_atim.tv_sec = tree_mtime;
	}
}

/* The index N in NAME if NAME is exactly printf(FMT, N) with N < LIMIT. */
static int parse_name(const char *name, char prefix, const char *fmt,
		      uint64_t limit, uint64_t *n)
{
	char *end, again[32];
	if (name[0] != prefix || name[1] < '0' || name[1] > '9')
		return -ENOENT;
	errno = 0;
	unsigned long long v = strtoull(name + 1, &end, 10);
	if (errno || *end || v >= limit)
		return -ENOENT;
	snprintf(again, sizeof(again), fmt, v);
	if (strcmp(again, name))
		return -ENOENT;
	*n = v;
	return 0;
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	conn->max_write = MAX_IO;
	conn->max_readahead = MAX_IO;
	if (conn->capable & FUSE_CAP_READDIRPLUS) {
		conn->want |= FUSE_CAP_READDIRPLUS;
		conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	}
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_SPLICE_READ |
			FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
}

/* The inode of NAME in PARENT, or 0. */
static fuse_ino_t child_of(fuse_ino_t parent, const char *name)
{
	uint64_t d = 0, f = 0, n;
	switch (kind_of(parent, &d, &f)) {
	case K_ROOT:
		if (!tree_mode)
			return strcmp(name, "file") ? 0 : FILE_INO;
		return strcmp(name, "tree") ? 0 : TREE_INO;
	case K_TREE:
		return parse_name(name, 'd', "d%03llu", ndirs, &n) ? 0 : dir_ino(n);
	case K_DIR:
		return parse_name(name, 'f', "f%05llu", nfiles, &n) ? 0 : tfile_ino(d, n);
	default:
		return 0;
	}
}

static void fill_entry(fuse_ino_t ino, struct fuse_entry_param *e)
{
	double t = tree_mode ? TREE_TIMEOUT : TIMEOUT;
	memset(e, 0, sizeof(*e));
	e->ino = ino;
	e->attr_timeout = t;
	e->entry_timeout = t;
	fill_attr(ino, &e->attr);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	fuse_ino_t ino = child_of(parent, name);
	if (!ino) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_entry(ino, &e);
	fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	uint64_t d, f;
	(void)fi;
	if (kind_of(ino, &d, &f) == K_NONE) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(ino, &st);
	fuse_reply_attr(req, &st, tree_mode ? TREE_TIMEOUT : TIMEOUT);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	uint64_t d, f;
	enum kind k = kind_of(ino, &d, &f);
	if (k != K_FILE && k != K_TFILE) {
		fuse_reply_err(req, k == K_NONE ? ENOENT : EISDIR);
		return;
	}
	if ((fi->flags & O_ACCMODE) != O_RDONLY) {
		fuse_reply_err(req, EROFS);
		return;
	}
	fi->keep_cache = 0;
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	(void)fi;
	uint64_t d, f, o = (uint64_t)off;
	uint64_t fsize = kind_of(ino, &d, &f) == K_TFILE ? TREE_FILE_SIZE : file_size;
	if (o >= fsize) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > MAX_IO)
		size = MAX_IO;
	if (size > fsize - o)
		size = (size_t)(fsize - o);
	fuse_reply_buf(req, (const char *)pattern + o % PERIOD, size);
}

/* Entry I of directory INO's listing: "." and ".." first, then the
 * children in name order.  Returns the entry's inode, 0 past the end;
 * *name points to a static name or to NBUF. */
static fuse_ino_t dir_entry(fuse_ino_t ino, uint64_t i, const char **name,
			    char *nbuf, size_t nlen)
{
	uint64_t d = 0, f = 0;
	enum kind k = kind_of(ino, &d, &f);
	if (i < 2) {
		*name = i ? ".." : ".";
		if (i == 0 || k == K_ROOT)
			return ino;
		return k == K_TREE ? FUSE_ROOT_ID : TREE_INO;
	}
	i -= 2;
	switch (k) {
	case K_ROOT:
		if (i)
			return 0;
		*name = tree_mode ? "tree" : "file";
		return tree_mode ? TREE_INO : FILE_INO;
	case K_TREE:
		if (i >= ndirs)
			return 0;
		snprintf(nbuf, nlen, "d%03llu", (unsigned long long)i);
		*name = nbuf;
		return dir_ino(i);
	case K_DIR:
		if (i >= nfiles)
			return 0;
		snprintf(nbuf, nlen, "f%05llu", (unsigned long long)i);
		*name = nbuf;
		return tfile_ino(d, i);
	default:
		return 0;
	}
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       int plus)
{
	static __thread char buf[DIRBUF];
	uint64_t d, f;
	enum kind k = kind_of(ino, &d, &f);
	if (k != K_ROOT && k != K_TREE && k != K_DIR) {
		fuse_reply_err(req, k == K_NONE ? ENOENT : ENOTDIR);
		return;
	}
	size_t pos = 0, lim = size > sizeof(buf) ? sizeof(buf) : size;
	for (uint64_t i = (uint64_t)off;; i++) {
		char nbuf[32];
		const char *name;
		fuse_ino_t in = dir_entry(ino, i, &name, nbuf, sizeof(nbuf));
		if (!in)
			break;
		size_t n;
		if (plus) {
			struct fuse_entry_param e;
			fill_entry(in, &e);
			if (i < 2) /* "." and "..": ino 0, no lookup reference */
				e.ino = 0;
			n = fuse_add_direntry_plus(req, buf + pos, lim - pos, name, &e,
						   (off_t)i + 1);
		} else {
			struct stat st;
			fill_attr(in, &st);
			n = fuse_add_direntry(req, buf + pos, lim - pos, name, &st,
					      (off_t)i + 1);
		}
		if (pos + n > lim)
			break;
		pos += n;
	}
	fuse_reply_buf(req, buf, pos);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, 0);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, 1);
}

static const struct fuse_lowlevel_ops ops = {
	.init = op_init,
	.lookup = op_lookup,
	.getattr = op_getattr,
	.open = op_open,
	.read = op_read,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
};

static uint64_t parse_size(const char *s)
{
	char *end;
	uint64_t v = strtoull(s, &end, 10);
	switch (*end) {
	case 'G': case 'g': v <<= 10; /* fall through */
	case 'M': case 'm': v <<= 10; /* fall through */
	case 'K': case 'k': v <<= 10; break;
	default: break;
	}
	return v;
}

static int parse_count(const char *s, uint64_t *v)
{
	char *end;
	errno = 0;
	unsigned long long n = strtoull(s, &end, 10);
	if (errno || end == s || *end || n == 0 || n > (1ull << 32))
		return -EINVAL;
	*v = n;
	return 0;
}

int main(int argc, char **argv)
{
	const char *usage = "usage: nullfs MOUNTPOINT SIZE [THREADS]\n"
			    "       nullfs MOUNTPOINT --tree NDIRS NFILES [THREADS]\n";
	int ta = 3; /* the index of THREADS */
	if (argc < 3) {
		fputs(usage, stderr);
		return 2;
	}
	if (!strcmp(argv[2], "--tree")) {
		if (argc < 5 || parse_count(argv[3], &ndirs) || parse_count(argv[4], &nfiles)) {
			fputs(usage, stderr);
			return 2;
		}
		if (ndirs * nfiles > (1ull << 40)) {
			fputs("nullfs: NDIRS * NFILES above 2^40\n", stderr);
			return 2;
		}
		tree_mode = 1;
		tree_mtime = time(NULL) - 86400;
		ta = 5;
	} else {
		file_size = parse_size(argv[2]);
	}
	int threads = argc > ta ? atoi(argv[ta]) : 16;
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (unsigned char)(((i % PERIOD) >> 12) * 31 + (i % PERIOD) * 7);

	char *fargv[] = {"nullfs", "-o", "default_permissions,fsname=nullfs,subtype=nullfs", NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	struct fuse_session *se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	fuse_opt_free_args(&args); /* the session keeps what it parsed */
	if (!se)
		return 1;
	int r = 1;
	if (fuse_set_signal_handlers(se))
		goto out_se;
	if (fuse_session_mount(se, argv[1]))
		goto out_sig;
	struct fuse_loop_config *cfg = fuse_loop_cfg_create();
	if (!cfg)
		goto out_mnt;
	fuse_loop_cfg_set_clone_fd(cfg, 1);
	fuse_loop_cfg_set_max_threads(cfg, (unsigned)threads);
	fuse_loop_cfg_set_idle_threads(cfg, 4);
	r = fuse_session_loop_mt(se, cfg) < 0;
	fuse_loop_cfg_destroy(cfg);
out_mnt:
	fuse_session_unmount(se);
out_sig:
	fuse_remove_signal_handlers(se);
out_se:
	fuse_session_destroy(se);
	return r;
}
