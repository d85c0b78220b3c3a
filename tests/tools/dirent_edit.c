/*
 * dirent_edit - damage the stored directory entries of a cache on
 * purpose, for tests/integration/mount_dir_bad_dirents.sh.
 *
 *   dirent_edit CACHE NAME HOW
 *
 * Opens CACHE (unmounted) with the engine and rewrites every DIRENT
 * record (docs/FORMAT.md, "Front-end records") named NAME, of any object,
 * the way HOW says, through hoard_meta_put: the engine's checksums are
 * right, so only the front end's own checks of the record stand between
 * it and the kernel.  The LISTING record is left as it is.  HOW:
 *
 *   short     the record cut to 100 bytes (less than its header)
 *   cut       the name's last byte cut off (name_len unchanged)
 *   len0      name_len 0, the name gone
 *   long      a name of 300 bytes (past NAME_MAX; rid and length right)
 *   slash     the name's first byte '/' (rid recomputed)
 *   nul       the name's first byte NUL (rid recomputed)
 *   dot, dotdot  the name "." or ".." (rid and length right)
 *   rid       the record moved to another rid
 *   noattr    flags without "attr valid"
 *   fileid    the fileid field unlike the attr's
 *   mode      no file type in mode (both copies: permission bits only)
 *   extra     one more well-formed record, for a name the server has not
 *   gone      the record deleted
 *
 * Exit 0 when at least one record was changed, 1 on an error or none.
 * Records are integers little-endian; this tool assumes a little-endian
 * host (as the tests do).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hoardfs/hoard.h>
#include "fs/name_hash.h"

#define KIND_DIRENT 2u
#define HDR 152u

struct found {
	uint64_t obj, rid;
	size_t len;
	uint8_t val[HOARD_META_MAX];
};

struct scan {
	struct hoard_cache *c;
	const char *name;
	struct found f[64];
	int n;
	int err;
};

static int on_dirent(uint64_t rid, const void *val, size_t len, void *arg)
{
	struct scan *s = arg;
	const uint8_t *p = val;
	size_t nl = strlen(s->name);
	if (len != HDR + nl || memcmp(p + HDR, s->name, nl))
		return 0;
	if (s->n == 64)
		return -E2BIG;
	struct found *f = &s->f[s->n++];
	f->rid = rid;
	f->len = len;
	memcpy(f->val, val, len);
	return 0;
}

static int on_obj(const struct hoard_obj_info *info, void *arg)
{
	struct scan *s = arg;
	int before = s->n;
	int r = hoard_meta_iterate(s->c, info->id, KIND_DIRENT, on_dirent, s);
	if (r < 0)
		return r;
	for (int i = before; i < s->n; i++)
		s->f[i].obj = info->id;
	return 0;
}

static void set_name(struct found *f, const char *name, size_t nl)
{
	uint16_t l = (uint16_t)nl;
	memcpy(f->val + 12, &l, 2);
	memcpy(f->val + HDR, name, nl);
	f->len = HDR + nl;
	f->rid = hfs_name_hash(0, name, nl);
}

static int edit(struct hoard_cache *c, struct found *f, const char *how)
{
	uint64_t old_rid = f->rid;
	size_t nl = f->len - HDR;
	char name[512];
	if (!strcmp(how, "short")) {
		f->len = 100;
	} else if (!strcmp(how, "cut")) {
		f->len--;
	} else if (!strcmp(how, "len0")) {
		set_name(f, "", 0);
		f->rid = old_rid;
	} else if (!strcmp(how, "long")) {
		memset(name, 'x', 300);
		set_name(f, name, 300);
	} else if (!strcmp(how, "slash") || !strcmp(how, "nul")) {
		memcpy(name, f->val + HDR, nl);
		name[0] = how[0] == 's' ? '/' : '\0';
		set_name(f, name, nl);
	} else if (!strcmp(how, "dot")) {
		set_name(f, ".", 1);
	} else if (!strcmp(how, "dotdot")) {
		set_name(f, "..", 2);
	} else if (!strcmp(how, "rid")) {
		f->rid = old_rid + 1;
	} else if (!strcmp(how, "noattr")) {
		uint16_t flags = 0;
		memcpy(f->val + 14, &flags, 2);
	} else if (!strcmp(how, "fileid")) {
		uint64_t id;
		memcpy(&id, f->val, 8);
		id ^= 0x5a5a;
		memcpy(f->val, &id, 8);
	} else if (!strcmp(how, "mode")) {
		uint32_t m = 0644;
		uint64_t m64 = 0644;
		memcpy(f->val + 8, &m, 4);
		memcpy(f->val + 24 + 2 * 8, &m64, 8); /* attr: fsid, fileid, mode */
	} else if (!strcmp(how, "extra")) {
		snprintf(name, sizeof(name), "%.*s-not-on-the-server", (int)nl,
			 (const char *)f->val + HDR);
		set_name(f, name, strlen(name));
		uint64_t id;
		memcpy(&id, f->val, 8);
		id += 1000003; /* another file */
		memcpy(f->val, &id, 8);
		memcpy(f->val + 24 + 8, &id, 8);
		return hoard_meta_put(c, f->obj, KIND_DIRENT, f->rid, f->val, f->len);
	} else if (!strcmp(how, "gone")) {
		return hoard_meta_del(c, f->obj, KIND_DIRENT, old_rid);
	} else {
		fprintf(stderr, "dirent_edit: unknown HOW '%s'\n", how);
		return -EINVAL;
	}
	if (f->rid != old_rid) {
		int r = hoard_meta_del(c, f->obj, KIND_DIRENT, old_rid);
		if (r < 0)
			return r;
	}
	return hoard_meta_put(c, f->obj, KIND_DIRENT, f->rid, f->val, f->len);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: dirent_edit CACHE NAME HOW\n");
		return 2;
	}
	struct hoard_open_opts o = {0};
	struct hoard_cache *c;
	int r = hoard_open(argv[1], &o, &c);
	if (r < 0) {
		fprintf(stderr, "dirent_edit: open %s: %s\n", argv[1], hoard_strerror(r));
		return 1;
	}
	static struct scan s;
	s.c = c;
	s.name = argv[2];
	r = hoard_obj_iterate(c, 0, on_obj, &s);
	for (int i = 0; r >= 0 && i < s.n; i++)
		r = edit(c, &s.f[i], argv[3]);
	int rc = hoard_close(c);
	if (r >= 0)
		r = rc;
	if (r < 0) {
		fprintf(stderr, "dirent_edit: %s\n", hoard_strerror(r));
		return 1;
	}
	if (!s.n) {
		fprintf(stderr, "dirent_edit: no DIRENT record named '%s'\n", argv[2]);
		return 1;
	}
	printf("dirent_edit: %d record(s) named '%s': %s\n", s.n, argv[2], argv[3]);
	return 0;
}
