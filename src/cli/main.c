/*
 * main.c - the `hoardfs` command: dispatches to subcommands (cli.h).
 * Also answers as a mount helper: when invoked as mount.fuse.hoardfs or
 * mount.hoardfs (mount -t fuse.hoardfs SOURCE DIR -o OPTS) it runs mount.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include "cli.h"

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} cmds[] = {
	{"format", cmd_format, "format DEV|FILE [--size N] [--force] [--sparse]   create a cache"},
	{"fsck", cmd_fsck, "fsck DEV|FILE [--repair]               check a cache"},
	{"inspect", cmd_inspect, "inspect DEV|FILE [--json]              show a cache"},
	{"mount", cmd_mount, "mount SOURCE MOUNTPOINT --cache DEV|FILE [-f] [-o OPTS]"},
	{"umount", cmd_umount, "umount MOUNTPOINT                      flush and unmount"},
	{"stat", cmd_stat, "stat MOUNTPOINT [--json]               statistics of a mount"},
	{"ls", cmd_ls, "ls SOURCE [PATH] [--cat]               read a source directly"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: hoardfs COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  hoardfs %s\n", cmds[i].help);
	fprintf(f, "\nSOURCE is nfs://host[:port]/export[/path][?version=3|4] or dir:/path\n");
}

const char cli_efbig_no_space[] = "not enough free space";

const char *cli_efbig_why(const char *path, unsigned long long size, int sparse)
{
	char dir[PATH_MAX];
	struct statvfs v;
	snprintf(dir, sizeof(dir), "%s", path);
	/* a sparse image reserves nothing: only the size can be refused */
	if (sparse || (statvfs(dirname(dir), &v) == 0 &&
		       (unsigned long long)v.f_bavail * v.f_frsize >= size))
		return "larger than its filesystem takes for one file";
	return cli_efbig_no_space;
}

int cli_parse_size(const char *s, unsigned long long *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || s[0] == '-')
		return -EINVAL;
	unsigned shift = 0;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: break;
	}
	if (*end == 'i' || *end == 'B')
		end++;
	if (*end == 'B')
		end++;
	if (*end != '\0' || (shift && v > (~0ULL >> shift)))
		return -EINVAL;
	*out = v << shift;
	return 0;
}

int main(int argc, char **argv)
{
	const char *prog = strrchr(argv[0], '/');
	prog = prog ? prog + 1 : argv[0];
	if (!strncmp(prog, "mount.", 6)) {
		argv[0] = (char *)"mount";
		return cmd_mount(argc, argv);
	}
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "hoardfs: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
