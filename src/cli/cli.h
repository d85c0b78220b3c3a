/*
 * cli.h - subcommands of the `hoardfs` command.  Each lives in its own
 * file as `int cmd_NAME(int argc, char **argv)` (argv[0] is the subcommand
 * name) returning the process exit status: 0 ok, 1 the check or operation
 * failed, 2 usage error.  Messages go to stderr as "hoardfs NAME: ...".
 */
#ifndef HOARDFS_CLI_H
#define HOARDFS_CLI_H

int cmd_format(int argc, char **argv);  /* cmd_admin.c */
int cmd_fsck(int argc, char **argv);    /* cmd_admin.c */
int cmd_inspect(int argc, char **argv); /* cmd_admin.c */
int cmd_mount(int argc, char **argv);   /* cmd_mount.c */
int cmd_umount(int argc, char **argv);  /* cmd_mount.c */
int cmd_stat(int argc, char **argv);    /* cmd_mount.c */
int cmd_ls(int argc, char **argv);      /* cmd_ls.c: list/cat a source
					   through its backend, no cache */

/* Parse a size such as "4096", "64M", "1G", "1T" (binary units). Returns 0
 * or -EINVAL. */
int cli_parse_size(const char *s, unsigned long long *out);

/* Why a new image of @size bytes at @path was refused with -EFBIG (by
 * hoard_format): not enough free space to reserve it, or a size its
 * filesystem takes for no file (ext4: 16 TiB).  main.c. */
const char *cli_efbig_why(const char *path, unsigned long long size, int sparse);
extern const char cli_efbig_no_space[]; /* one of the two answers */

#endif
