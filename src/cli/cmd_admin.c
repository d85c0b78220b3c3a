/*
 * cmd_admin.c - `hoardfs format`, `hoardfs fsck`, `hoardfs inspect`: the
 * cache's admin commands.  Thin: every check and every byte written is the
 * engine's (hoard_format, hoard_fsck, hoard_stats); this file turns
 * arguments into calls and results into text.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hoardfs/hoard.h>
#include "cli.h"

static void human(uint64_t v, char *buf, size_t len)
{
	const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double d = (double)v;
	int i = 0;
	while (d >= 1024 && i < 5) {
		d /= 1024;
		i++;
	}
	snprintf(buf, len, i ? "%.1f %s" : "%.0f %s", d, u[i]);
}

int cmd_format(int argc, char **argv)
{
	static const struct option lo[] = {
		{"size", required_argument, NULL, 's'},
		{"bucket-size", required_argument, NULL, 'b'},
		{"force", no_argument, NULL, 'f'},
		{"sparse", no_argument, NULL, 'S'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct hoard_format_opts fo = {0};
	unsigned long long v;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "s:b:fh", lo, NULL)) != -1) {
		switch (ch) {
		case 's':
			if (cli_parse_size(optarg, &v) < 0 || v == 0) {
				fprintf(stderr, "hoardfs format: bad --size '%s' (e.g. 512M, 10G)\n", optarg);
				return 2;
			}
			fo.size = v;
			break;
		case 'b':
			if (cli_parse_size(optarg, &v) < 0 || v > (1ULL << 30)) {
				fprintf(stderr, "hoardfs format: bad --bucket-size '%s'\n", optarg);
				return 2;
			}
			fo.bucket_size = (uint32_t)v;
			break;
		case 'f':
			fo.force = 1;
			break;
		case 'S':
			fo.sparse = 1;
			break;
		case 'h':
			printf("usage: hoardfs format DEV|FILE [--size N] [--bucket-size N] [--force] [--sparse]\n");
			return 0;
		default:
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: hoardfs format DEV|FILE [--size N] [--bucket-size N] [--force] [--sparse]\n");
		return 2;
	}
	const char *path = argv[optind];
	char found[128] = "";
	int r = hoard_format(path, &fo, found, sizeof(found));
	if (r == -EEXIST) {
		fprintf(stderr, "hoardfs format: %s holds %s; refusing to overwrite it (use --force)\n",
			path, found);
		return 1;
	}
	if (r == -EINVAL && access(path, F_OK) != 0) {
		fprintf(stderr, "hoardfs format: %s does not exist: give --size to create an image file\n", path);
		return 2;
	}
	if (r == -EFBIG) {
		const char *why = cli_efbig_why(path, fo.size, fo.sparse);
		fprintf(stderr, "hoardfs format: a %llu-byte image at %s: %s (nothing was created; "
			"give a smaller --size%s)\n", (unsigned long long)fo.size, path, why,
			why == cli_efbig_no_space ? ", or --sparse to reserve nothing" : "");
		return 1;
	}
	if (r < 0) {
		fprintf(stderr, "hoardfs format: %s: %s\n", path,
			r == -ENOSPC ? "too small for a cache (needs at least ~16 MiB)" : hoard_strerror(r));
		return 1;
	}
	struct hoard_cache *c;
	struct hoard_open_opts oo = {.read_only = 1};
	if (hoard_open(path, &oo, &c) == 0) {
		struct hoard_stats st;
		char a[32], b[32];
		hoard_stats(c, &st);
		human(st.dev_bytes, a, sizeof(a));
		human(st.data_bytes, b, sizeof(b));
		printf("formatted %s: %s, %s for data, %llu metadata pages\n", path, a, b,
		       (unsigned long long)st.meta_pages);
		hoard_close(c);
	}
	return 0;
}

struct fsck_ui {
	int tty;
	int shown;
};

static void fsck_report(const char *msg, void *arg)
{
	struct fsck_ui *ui = arg;
	if (ui->tty && ui->shown) {
		fprintf(stderr, "\r%60s\r", "");
		ui->shown = 0;
	}
	printf("%s\n", msg);
	fflush(stdout);
}

static void fsck_progress(uint64_t done, uint64_t total, void *arg)
{
	struct fsck_ui *ui = arg;
	if (!ui->tty || !total)
		return;
	unsigned pct = done >= total ? 100 : (unsigned)(done * 100 / total);
	int bars = (int)(pct * 40 / 100);
	fprintf(stderr, "\r[%.*s%*s] %3u%%", bars, "########################################", 40 - bars, "",
		pct);
	ui->shown = 1;
	if (pct == 100) {
		fprintf(stderr, "\r%60s\r", "");
		ui->shown = 0;
	}
}

int cmd_fsck(int argc, char **argv)
{
	static const struct option lo[] = {
		{"repair", no_argument, NULL, 'r'},
		{"data", no_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct fsck_ui ui = {.tty = isatty(2)};
	struct hoard_fsck_opts fo = {.report = fsck_report, .progress = fsck_progress, .arg = &ui};
	struct hoard_fsck_result res;
	int ch;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "rdh", lo, NULL)) != -1) {
		switch (ch) {
		case 'r':
			fo.repair = 1;
			break;
		case 'd':
			fo.check_data = 1;
			break;
		case 'h':
			printf("usage: hoardfs fsck DEV|FILE [--repair] [--data]\n");
			return 0;
		default:
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: hoardfs fsck DEV|FILE [--repair] [--data]\n");
		return 2;
	}
	const char *path = argv[optind];
	int r = hoard_fsck(path, &fo, &res);
	if (r < 0) {
		fprintf(stderr, "hoardfs fsck: %s: %s\n", path, hoard_strerror(r));
		return r == -ENOENT || r == -EACCES ? 2 : 1;
	}
	printf("%s: %llu errors, %llu warnings%s; %llu volumes, %llu objects, %llu blocks, "
	       "%llu metadata records, %llu/%llu pages reachable",
	       path, (unsigned long long)res.errors, (unsigned long long)res.warnings,
	       fo.repair ? "" : " (checked only)", (unsigned long long)res.volumes,
	       (unsigned long long)res.objects, (unsigned long long)res.blocks,
	       (unsigned long long)res.meta_records, (unsigned long long)res.pages_reachable,
	       (unsigned long long)res.pages_used);
	if (fo.check_data)
		printf(", %llu data blocks verified (%llu bad)", (unsigned long long)res.data_blocks_checked,
		       (unsigned long long)res.data_blocks_bad);
	if (fo.repair)
		printf(", %llu repairs", (unsigned long long)res.repaired);
	printf("\n");
	return r ? 1 : 0;
}

struct vol_list {
	int json;
	int n;
};

static void json_str(const void *p, size_t len)
{
	const unsigned char *s = p;
	putchar('"');
	for (size_t i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			printf("\\%c", s[i]);
		else if (s[i] < 0x20 || s[i] >= 0x7f)
			printf("\\u%04x", s[i]);
		else
			putchar(s[i]);
	}
	putchar('"');
}

static int count_vol_objs(const struct hoard_obj_info *info, void *arg)
{
	(*(uint64_t *)arg)++;
	return 0;
}

struct vol_ctx {
	struct hoard_cache *c;
	struct vol_list *vl;
};

static int show_vol(uint32_t vol, const void *name, size_t len, void *arg)
{
	struct vol_ctx *vc = arg;
	uint64_t n = 0;
	hoard_obj_iterate(vc->c, vol, count_vol_objs, &n);
	if (vc->vl->json) {
		printf("%s{\"id\": %u, \"name\": ", vc->vl->n ? ", " : "", vol);
		json_str(name, len);
		printf(", \"objects\": %llu}", (unsigned long long)n);
	} else {
		printf("  volume %-4u %-48.*s %llu objects\n", vol, (int)len, (const char *)name,
		       (unsigned long long)n);
	}
	vc->vl->n++;
	return 0;
}

int cmd_inspect(int argc, char **argv)
{
	int json = 0;
	const char *path = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--json"))
			json = 1;
		else if (argv[i][0] == '-' || path) {
			fprintf(stderr, "usage: hoardfs inspect DEV|FILE [--json]\n");
			return 2;
		} else
			path = argv[i];
	}
	if (!path) {
		fprintf(stderr, "usage: hoardfs inspect DEV|FILE [--json]\n");
		return 2;
	}
	struct hoard_cache *c;
	struct hoard_open_opts oo = {.read_only = 1};
	int r = hoard_open(path, &oo, &c);
	if (r < 0) {
		char what[128] = "";
		if (r == -EUCLEAN && hoard_probe(path, what, sizeof(what)) >= 0)
			fprintf(stderr, "hoardfs inspect: %s is not a usable hoardfs cache (it holds %s)\n",
				path, what);
		else
			fprintf(stderr, "hoardfs inspect: %s: %s\n", path, hoard_strerror(r));
		return 1;
	}
	struct hoard_stats st;
	struct hoard_geometry g;
	hoard_stats(c, &st);
	hoard_geometry(c, &g);
	char uuid[40];
	for (int i = 0; i < 16; i++)
		snprintf(uuid + i * 2, 3, "%02x", g.uuid[i]);
	struct vol_list vl = {.json = json};
	struct vol_ctx vc = {.c = c, .vl = &vl};
	if (json) {
		printf("{\"path\": ");
		json_str(path, strlen(path));
		printf(", \"version\": %u, \"uuid\": \"%s\", \"created\": %llu, \"block_size\": %u, "
		       "\"device_bytes\": %llu, \"journal_blocks\": %llu, \"meta_pages\": %llu, "
		       "\"meta_used\": %llu, \"buckets\": %llu, \"bucket_bytes\": %llu, "
		       "\"data_bytes\": %llu, \"data_used\": %llu, \"reclaimed_buckets\": %llu, "
		       "\"objects\": %llu, \"volumes\": [",
		       g.version, uuid, (unsigned long long)g.created, g.block_size,
		       (unsigned long long)st.dev_bytes, (unsigned long long)g.journal_blocks,
		       (unsigned long long)st.meta_pages, (unsigned long long)st.meta_used,
		       (unsigned long long)g.nbuckets, (unsigned long long)g.bucket_blocks * g.block_size,
		       (unsigned long long)st.data_bytes, (unsigned long long)st.data_used,
		       (unsigned long long)st.reclaimed_buckets, (unsigned long long)st.objects);
		hoard_vol_iterate(c, show_vol, &vc);
		printf("]}\n");
	} else {
		char a[32], b[32], d[32];
		time_t t = (time_t)g.created;
		char when[64];
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
		human(st.dev_bytes, a, sizeof(a));
		printf("%s: hoardfs cache, format version %u, uuid %s, created %s\n", path, g.version, uuid, when);
		printf("  device      %s (%llu blocks of %u bytes)\n", a, (unsigned long long)g.dev_blocks,
		       g.block_size);
		human(g.journal_blocks * g.block_size, a, sizeof(a));
		printf("  journal     %s at block %llu\n", a, (unsigned long long)g.journal_start);
		human(g.meta_blocks * g.block_size, a, sizeof(a));
		printf("  metadata    %s: %llu of %llu pages in use (%.1f%%)\n", a,
		       (unsigned long long)st.meta_used, (unsigned long long)st.meta_pages,
		       100.0 * (double)st.meta_used / (double)st.meta_pages);
		human(st.data_bytes, a, sizeof(a));
		human((uint64_t)g.bucket_blocks * g.block_size, b, sizeof(b));
		human(st.data_used, d, sizeof(d));
		printf("  data        %s in %llu buckets of %s: %s in use (%.1f%%), %llu buckets reclaimed\n", a,
		       (unsigned long long)g.nbuckets, b, d, 100.0 * (double)st.data_used / (double)st.data_bytes,
		       (unsigned long long)st.reclaimed_buckets);
		printf("  objects     %llu in %llu volumes\n", (unsigned long long)st.objects,
		       (unsigned long long)st.volumes);
		hoard_vol_iterate(c, show_vol, &vc);
	}
	hoard_close(c);
	return 0;
}
