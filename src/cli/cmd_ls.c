/*
 * cmd_ls.c - `hoardfs ls`: list a directory of a source or write a file's
 * bytes to stdout, straight through the backend with no cache.  It is the
 * user's connectivity check and the test suite's window on the backends.
 *
 * Owns: argument parsing and output formats.  Does not own: anything the
 * backend does.  Errors become messages here and nowhere else.
 *
 * Output: one name per line sorted bytewise (-0: NUL-terminated, for names
 * holding newlines); with -l each line is
 *   MODE(octal) SIZE MTIME(sec.nsec) FILEID NAME
 * and a PATH that is not a directory lists itself under its last component.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "backend/backend.h"
#include "cli/cli.h"

#define LS_BUF (1u << 20)

struct ls_ent {
	char *name;
	struct hb_attr attr;
	int has_attr;
};

struct ls_list {
	struct ls_ent *v;
	size_t n, cap;
};

static void usage(FILE *f)
{
	fprintf(f, "usage: hoardfs ls SOURCE [PATH] [-l] [-0] [--cat] [--timeout MS] [--nconn N]\n"
		   "  SOURCE  nfs://host[:port]/export[/path][?version=3|4] or dir:/path\n"
		   "  -l      long listing: mode size mtime fileid name\n"
		   "  -0      end each entry with NUL instead of newline\n"
		   "  --cat   write the file PATH to stdout\n"
		   "  --timeout MS  connect/RPC timeout (default 10000)\n");
}

static int collect(const char *name, const struct hb_attr *attr, void *arg)
{
	struct ls_list *l = arg;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 64;
		struct ls_ent *v = realloc(l->v, cap * sizeof(*v));
		if (!v)
			return -ENOMEM;
		l->v = v;
		l->cap = cap;
	}
	struct ls_ent *e = &l->v[l->n];
	e->name = strdup(name);
	if (!e->name)
		return -ENOMEM;
	e->has_attr = attr != NULL;
	if (attr)
		e->attr = *attr;
	l->n++;
	return 0;
}

static int cmp_ent(const void *a, const void *b)
{
	return strcmp(((const struct ls_ent *)a)->name, ((const struct ls_ent *)b)->name);
}

static void print_ent(const struct ls_ent *e, int lng, char term)
{
	if (lng) {
		if (e->has_attr)
			printf("%07o %" PRIu64 " %lld.%09ld %" PRIu64 " ",
			       (unsigned)e->attr.mode, e->attr.size,
			       (long long)e->attr.mtime.tv_sec, e->attr.mtime.tv_nsec,
			       e->attr.fileid);
		else
			printf("? ? ? ? ");
	}
	fputs(e->name, stdout);
	putchar(term);
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Copy @path to stdout.  Returns 0, or -errno with *what naming the step. */
static int do_cat(struct hb *b, const struct hb_cred *cr, const char *path,
		  const char **what)
{
	struct hb_file *f = NULL;
	struct hb_attr a;
	char *buf = NULL;
	uint64_t off = 0;
	int r;

	*what = path;
	r = b->ops->open(b, cr, path, O_RDONLY, 0, &f, &a);
	if (r)
		return r;
	if (S_ISDIR(a.mode)) {
		r = -EISDIR;
		goto out;
	}
	buf = malloc(LS_BUF);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	for (;;) {
		int64_t n = b->ops->pread(b, f, buf, LS_BUF, off);
		if (n < 0) {
			r = (int)n;
			goto out;
		}
		if (n == 0)
			break;
		r = write_all(STDOUT_FILENO, buf, (size_t)n);
		if (r) {
			*what = "stdout";
			goto out;
		}
		off += (uint64_t)n;
	}
out:
	free(buf);
	int rr = b->ops->release(b, f);
	return r ? r : rr;
}

int cmd_ls(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"cat", no_argument, NULL, 'c'},
		{"timeout", required_argument, NULL, 't'},
		{"nconn", required_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct hb_opts opts = {.nconn = 1};
	struct ls_list list = {0};
	struct hb *b = NULL;
	int cat = 0, lng = 0, opt, r, status = 1;
	char term = '\n';
	char err[512] = "";
	const char *what;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "l0h", longopts, NULL)) != -1) {
		unsigned long long v;
		switch (opt) {
		case 'c': cat = 1; break;
		case 'l': lng = 1; break;
		case '0': term = '\0'; break;
		case 'h': usage(stdout); return 0;
		case 't':
		case 'n':
			if (cli_parse_size(optarg, &v) || v == 0 || v > 0x7fffffff) {
				fprintf(stderr, "hoardfs ls: bad value for --%s: %s\n",
					opt == 't' ? "timeout" : "nconn", optarg);
				return 2;
			}
			if (opt == 't')
				opts.timeout_ms = (uint32_t)v;
			else
				opts.nconn = (int)v;
			break;
		default: usage(stderr); return 2;
		}
	}
	if (optind >= argc || argc - optind > 2) {
		usage(stderr);
		return 2;
	}
	const char *source = argv[optind];
	const char *path = optind + 1 < argc ? argv[optind + 1] : "/";
	if (path[0] != '/') {
		fprintf(stderr, "hoardfs ls: PATH must start with '/': %s\n", path);
		return 2;
	}
	struct hb_cred cred = {.uid = geteuid(), .gid = getegid()};

	r = hb_open(source, &opts, &b, err, sizeof(err));
	if (r) {
		fprintf(stderr, "hoardfs ls: %s: %s\n", err[0] ? err : source, strerror(-r));
		return r == -EINVAL ? 2 : 1;
	}
	if (cat) {
		r = do_cat(b, &cred, path, &what);
		if (r) {
			fprintf(stderr, "hoardfs ls: %s: %s\n", what, strerror(-r));
			goto out;
		}
		status = 0;
		goto out;
	}
	struct hb_attr a;
	r = b->ops->getattr(b, &cred, path, &a);
	if (r) {
		fprintf(stderr, "hoardfs ls: %s: %s\n", path, strerror(-r));
		goto out;
	}
	if (S_ISDIR(a.mode)) {
		r = b->ops->readdir(b, &cred, path, collect, &list);
		if (r) {
			fprintf(stderr, "hoardfs ls: %s: %s\n", path, strerror(-r));
			goto out;
		}
		if (list.n) /* an empty directory: list.v is NULL */
			qsort(list.v, list.n, sizeof(list.v[0]), cmp_ent);
		for (size_t i = 0; i < list.n; i++)
			print_ent(&list.v[i], lng, term);
	} else {
		const char *slash = strrchr(path, '/');
		struct ls_ent e = {.name = (char *)(slash ? slash + 1 : path),
				   .attr = a, .has_attr = 1};
		print_ent(&e, lng, term);
	}
	if (fflush(stdout) == EOF || ferror(stdout)) {
		fprintf(stderr, "hoardfs ls: stdout: %s\n", strerror(errno));
		goto out;
	}
	status = 0;
out:
	for (size_t i = 0; i < list.n; i++)
		free(list.v[i].name);
	free(list.v);
	b->ops->close(b);
	return status;
}
