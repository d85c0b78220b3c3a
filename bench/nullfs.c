/*
 * nullfs.c - a FUSE filesystem that does no I/O: the ceiling of the FUSE
 * transport on this kernel, for bandwidth and for operations per second.
 *
 *   nullfs MOUNTPOINT SIZE [THREADS]
 *
 * Serves one read-only file, /file, of SIZE bytes (suffix K, M, G) whose
 * content is a fixed pattern with a 1 MiB period (byte at offset o is
 * pattern[o mod 1 MiB]); reads are answered from that buffer in memory.
 * Runs in the foreground until unmounted or signalled (SIGTERM/SIGINT
 * unmount it).
 *
 * The FUSE settings are hoardfs's (src/fs/fs.c, src/fs/ops.c op_init):
 * 1 MiB max_write and max_readahead (so max_pages covers 1 MiB requests),
 * readdirplus, async reads, parallel dirops, no splice, no writeback
 * cache, the multithreaded loop with clone_fd, 16 threads at most, 4 idle.
 * Attributes and entries are valid for an hour: the transport, not
 * revalidation, is what is measured.  Not a test.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#define PERIOD (1u << 20)
#define MAX_IO (1u << 20)
#define FILE_INO 2
#define TIMEOUT 3600.0

static uint64_t file_size;
static unsigned char pattern[PERIOD + MAX_IO];

static void fill_attr(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_uid = 0;
	st->st_gid = 0;
	if (ino == FUSE_ROOT_ID) {
		st->st_mode = S_IFDIR | 0755;
		st->st_nlink = 2;
	} else {
		st->st_mode = S_IFREG | 0444;
		st->st_nlink = 1;
		st->st_size = (off_t)file_size;
		st->st_blocks = (blkcnt_t)((file_size + 511) / 512);
	}
	st->st_blksize = 4096;
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

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;
	if (parent != FUSE_ROOT_ID || strcmp(name, "file")) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = FILE_INO;
	e.attr_timeout = TIMEOUT;
	e.entry_timeout = TIMEOUT;
	fill_attr(FILE_INO, &e.attr);
	fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;
	(void)fi;
	if (ino != FUSE_ROOT_ID && ino != FILE_INO) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(ino, &st);
	fuse_reply_attr(req, &st, TIMEOUT);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino != FILE_INO) {
		fuse_reply_err(req, EISDIR);
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
	(void)ino;
	(void)fi;
	uint64_t o = (uint64_t)off;
	if (o >= file_size) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	if (size > MAX_IO)
		size = MAX_IO;
	if (size > file_size - o)
		size = (size_t)(file_size - o);
	fuse_reply_buf(req, (const char *)pattern + o % PERIOD, size);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	if (ino != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	char buf[512];
	size_t pos = 0, lim = size > sizeof(buf) ? sizeof(buf) : size;
	static const char *names[] = {".", "..", "file"};
	for (off_t i = off; i < 3; i++) {
		struct stat st;
		fill_attr(i == 2 ? FILE_INO : FUSE_ROOT_ID, &st);
		size_t n = fuse_add_direntry(req, buf + pos, lim - pos, names[i], &st, i + 1);
		if (pos + n > lim)
			break;
		pos += n;
	}
	fuse_reply_buf(req, buf, pos);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)fi;
	if (ino != FUSE_ROOT_ID) {
		fuse_reply_err(req, ENOTDIR);
		return;
	}
	char buf[1024];
	size_t pos = 0, lim = size > sizeof(buf) ? sizeof(buf) : size;
	static const char *names[] = {".", "..", "file"};
	for (off_t i = off; i < 3; i++) {
		struct fuse_entry_param e;
		memset(&e, 0, sizeof(e));
		fuse_ino_t in = i == 2 ? FILE_INO : FUSE_ROOT_ID;
		fill_attr(in, &e.attr);
		if (i == 2) { /* "." and ".." take no lookup reference */
			e.ino = in;
			e.attr_timeout = TIMEOUT;
			e.entry_timeout = TIMEOUT;
		}
		size_t n = fuse_add_direntry_plus(req, buf + pos, lim - pos, names[i], &e, i + 1);
		if (pos + n > lim)
			break;
		pos += n;
	}
	fuse_reply_buf(req, buf, pos);
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

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: nullfs MOUNTPOINT SIZE [THREADS]\n");
		return 2;
	}
	file_size = parse_size(argv[2]);
	int threads = argc > 3 ? atoi(argv[3]) : 16;
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (unsigned char)(((i % PERIOD) >> 12) * 31 + (i % PERIOD) * 7);

	char *fargv[] = {"nullfs", "-o", "default_permissions,fsname=nullfs,subtype=nullfs", NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	struct fuse_session *se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
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
