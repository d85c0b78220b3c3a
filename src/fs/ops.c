/*
 * ops.c - the FUSE metadata operations: lookup, attributes, directories,
 * namespace changes, open/close and the coherency checks at open.
 *
 * Owns: translating FUSE requests into backend calls with the caller's
 * credentials, keeping the node table in step, attribute-cache timeouts
 * (NFS rules), close-to-open revalidation and the engine objects' coherency
 * data.  Does not own: the data path (io.c), the table itself (inode.c).
 *
 * Close-to-open (NFS semantics): every open asks the server for fresh
 * attributes (unless nocto) and calls hoard_obj_acquire() with them; the
 * engine drops the object's data if they differ from what it stored.  The
 * kernel keeps its page cache (keep_cache) only if the coherency data is
 * the one we saw at the previous open or own change.
 *
 * Each callback answers its request exactly once.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include "fs/fs_i.h"

double hfs_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

uint64_t hfs_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + ts.tv_nsec / 1000;
}

#define FS(req) ((struct hfs *)fuse_req_userdata(req))

struct hb_cred hfs_cred(fuse_req_t req)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);
	struct hb_cred cr = {c->uid, c->gid};
	return cr;
}

void hfs_count_err(struct hfs *fs, int err)
{
	switch (-err) {
	case 0: case ENOENT: case EEXIST: case ENOTEMPTY: case EACCES:
	case EPERM: case ESTALE: case ENOTDIR: case EISDIR: case ENAMETOOLONG:
	case EXDEV: case EINVAL: case ENODATA: case ENOSYS: case ELOOP:
	case EROFS: case EFBIG: case ENOSPC: case EDQUOT: case EBADF:
		return;
	default:
		atomic_fetch_add_explicit(&fs->st.server_errors, 1,
					  memory_order_relaxed);
	}
}

static void cache_err(struct hfs *fs, int err)
{
	if (err < 0)
		atomic_fetch_add_explicit(&fs->st.cache_errors, 1,
					  memory_order_relaxed);
}

/* ---- attributes ---- */

/* Wall-clock nanoseconds: when the server vouched for attributes that are
 * kept across remounts (monotonic time does not survive a reboot). */
uint64_t hfs_real_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* How long attributes fetched at @at_ns may be used: NFS's adaptive rule,
 * a file unchanged for long is cached longer (a tenth of its age), within
 * [acregmin, acregmax] or [acdirmin, acdirmax]. */
static double ac_timeout_at(const struct hfs *fs, const struct hb_attr *a,
			    uint64_t at_ns)
{
	double lo, hi;
	if (S_ISDIR(a->mode)) {
		lo = fs->o.acdirmin;
		hi = fs->o.acdirmax;
	} else {
		lo = fs->o.acregmin;
		hi = fs->o.acregmax;
	}
	double age = (double)(int64_t)(at_ns / 1000000000u - (uint64_t)a->mtime.tv_sec) +
		     ((double)(at_ns % 1000000000u) - a->mtime.tv_nsec) / 1e9;
	double t = age / 10;
	if (t < lo)
		t = lo;
	if (t > hi)
		t = hi;
	return t;
}

static double ac_timeout(const struct hfs *fs, const struct hb_attr *a)
{
	return ac_timeout_at(fs, a, hfs_real_ns());
}

/* Seconds that attributes the server gave at @at_ns remain usable at
 * @now_ns (<= 0: revalidate).  The time of the check is kept with stored
 * attributes, so a remount does not extend their life. */
static double ac_left(const struct hfs *fs, const struct hb_attr *a,
		      uint64_t at_ns, uint64_t now_ns)
{
	if (now_ns < at_ns)
		return 0; /* the clock went back: trust nothing stored */
	return ac_timeout_at(fs, a, at_ns) - (double)(now_ns - at_ns) / 1e9;
}

static void to_stat(const struct hb_attr *a, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	/* st_ino is the server's fileid (as the NFS client shows it), the
	 * FUSE node id is ours. */
	st->st_ino = a->fileid;
	st->st_mode = a->mode;
	st->st_nlink = a->nlink;
	st->st_uid = a->uid;
	st->st_gid = a->gid;
	st->st_size = a->size;
	st->st_blocks = a->blocks;
	st->st_blksize = HFS_MAX_IO;
	st->st_rdev = a->rdev;
	st->st_atim = a->atime;
	st->st_mtim = a->mtime;
	st->st_ctim = a->ctime;
}

/* @ttl: seconds the kernel may keep the entry and its attributes. */
static void fill_entry(struct hfs_node *n, const struct hb_attr *a,
		       double ttl, struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = n->ino;
	to_stat(a, &e->attr);
	e->attr_timeout = e->entry_timeout = ttl > 0 ? ttl : 0;
}

void hfs_coh_from_attr(struct hfs_coh *c, const struct hb_attr *a)
{
	c->mtime_sec = htole64((uint64_t)a->mtime.tv_sec);
	c->mtime_nsec = htole64((uint64_t)a->mtime.tv_nsec);
	c->ctime_sec = htole64((uint64_t)a->ctime.tv_sec);
	c->ctime_nsec = htole64((uint64_t)a->ctime.tv_nsec);
	c->size = htole64(a->size);
	c->change = htole64(a->change);
}

static void obj_key(uint64_t fsid, uint64_t fileid, uint8_t key[16])
{
	uint64_t f = htole64(fsid), i = htole64(fileid);
	memcpy(key, &f, 8);
	memcpy(key + 8, &i, 8);
}

/* Serialised hb_attr (HFS_META_ATTR, and inside HFS_META_DIRENT): 16
 * little-endian u64, docs/FORMAT.md "Front-end records". */
#define HFS_ATTR_REC 128

static void attr_encode(const struct hb_attr *a, uint8_t out[HFS_ATTR_REC])
{
	uint64_t v[16] = {
		a->fsid, a->fileid, a->mode, a->nlink, a->uid, a->gid, a->size,
		a->blocks, a->rdev, (uint64_t)a->atime.tv_sec,
		(uint64_t)a->atime.tv_nsec, (uint64_t)a->mtime.tv_sec,
		(uint64_t)a->mtime.tv_nsec, (uint64_t)a->ctime.tv_sec,
		(uint64_t)a->ctime.tv_nsec, a->change,
	};
	for (int i = 0; i < 16; i++)
		v[i] = htole64(v[i]);
	memcpy(out, v, HFS_ATTR_REC);
}

static void attr_decode(const uint8_t in[HFS_ATTR_REC], struct hb_attr *a)
{
	uint64_t v[16];
	memcpy(v, in, HFS_ATTR_REC);
	for (int i = 0; i < 16; i++)
		v[i] = le64toh(v[i]);
	a->fsid = v[0];
	a->fileid = v[1];
	a->mode = (uint32_t)v[2];
	a->nlink = (uint32_t)v[3];
	a->uid = (uint32_t)v[4];
	a->gid = (uint32_t)v[5];
	a->size = v[6];
	a->blocks = v[7];
	a->rdev = v[8];
	a->atime.tv_sec = (time_t)v[9];
	a->atime.tv_nsec = (long)v[10];
	a->mtime.tv_sec = (time_t)v[11];
	a->mtime.tv_nsec = (long)v[12];
	a->ctime.tv_sec = (time_t)v[13];
	a->ctime.tv_nsec = (long)v[14];
	a->change = v[15];
}

static void put_attr_record(struct hfs *fs, uint64_t obj,
			    const struct hb_attr *a)
{
	uint8_t v[HFS_ATTR_REC];
	attr_encode(a, v);
	cache_err(fs, hoard_meta_put(fs->cache, obj, HFS_META_ATTR, 0, v,
				     sizeof(v)));
}

/* The engine object of the server's file (@fsid, @fileid), 0 if none. */
static uint64_t obj_find(struct hfs *fs, uint64_t fsid, uint64_t fileid)
{
	uint8_t key[16];
	struct hoard_obj_info info;
	obj_key(fsid, fileid, key);
	if (hoard_obj_lookup(fs->cache, fs->vol, key, sizeof(key), &info))
		return 0;
	return info.id;
}

/* Acquire the engine object of @a's file with fresh coherency data.
 * Returns 1 if the engine dropped stale data, 0 if unchanged, <0 error
 * (the file is then simply not cached). */
static int obj_acquire(struct hfs *fs, const struct hb_attr *a, uint64_t *obj)
{
	uint8_t key[16];
	struct hfs_coh coh;
	struct hoard_obj_info info;
	obj_key(a->fsid, a->fileid, key);
	hfs_coh_from_attr(&coh, a);
	int r = hoard_obj_acquire(fs->cache, fs->vol, key, sizeof(key), &coh,
				  sizeof(coh), &info);
	if (r < 0) {
		cache_err(fs, r);
		*obj = 0;
		return r;
	}
	*obj = info.id;
	if (r == 1)
		atomic_fetch_add_explicit(&fs->st.invalidations, 1,
					  memory_order_relaxed);
	return r;
}

static void listing_update_entry(struct hfs *fs, struct hfs_node *n,
			       const struct hb_attr *a);

/* The server's copy of @n changed by our own hand (write, truncate,
 * chmod...): store the new coherency data so that the next open does not
 * take our change for a foreign one.  The cached data already matches
 * the server (writes store what the server accepted, truncates drop what
 * went), so it is kept: hoard_obj_set_coherency.  As with NFS without
 * pre-operation attributes, a change made by another client while we had
 * the file open for writing is not seen: close-to-open promises nothing
 * for two clients writing one file at once. */
void hfs_own_change(struct hfs *fs, struct hfs_node *n, const struct hb_attr *a)
{
	struct hfs_coh coh;
	hfs_coh_from_attr(&coh, a);
	pthread_mutex_lock(&fs->lock);
	uint64_t obj = n->obj;
	n->attr = *a; /* the server's answer to our own change: the newest */
	n->attr_ns = hfs_real_ns();
	n->coh = coh;
	n->coh_valid = true;
	pthread_mutex_unlock(&fs->lock);
	if (obj) {
		int r = hoard_obj_set_coherency(fs->cache, obj, &coh, sizeof(coh));
		if (r < 0 && r != -ENOENT)
			cache_err(fs, r);
	}
	listing_update_entry(fs, n, a);
}

/* The file is gone from the server (or its name is): remove its object
 * when no other name of it is known. */
static void node_gone(struct hfs *fs, struct hfs_node *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&fs->lock);
	bool last = !n->names && (S_ISDIR(n->attr.mode) || n->attr.nlink <= 1);
	uint64_t obj = n->obj, fsid = n->fsid, fileid = n->fileid;
	if (last) {
		n->obj = 0;
		n->coh_valid = false;
	}
	pthread_mutex_unlock(&fs->lock);
	if (last) {
		if (!obj)
			obj = obj_find(fs, fsid, fileid);
		if (obj) {
			int r = hoard_obj_remove(fs->cache, obj);
			if (r != -ENOENT)
				cache_err(fs, r);
		}
	}
	hfs_node_put(fs, n);
}

/* ---- lookup / forget / getattr / setattr ---- */

/* @n (may be NULL) is being changed on the server by our own hand, or its
 * directory entries are: the attributes we hold no longer count as the
 * server's (op_getattr asks it again). */
static void attr_stale(struct hfs *fs, struct hfs_node *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&fs->lock);
	hfs_attr_stale_locked(n, hfs_real_ns());
	pthread_mutex_unlock(&fs->lock);
}

static int do_lookup(fuse_req_t req, struct hfs_node *p, const char *name,
		     struct fuse_entry_param *e)
{
	struct hfs *fs = FS(req);
	struct hb_cred cr = hfs_cred(req);
	struct hb_attr a;
	char *path;
	int r = hfs_path(fs, p, name, &path);
	if (r)
		return r;
	atomic_fetch_add_explicit(&fs->st.lookups, 1, memory_order_relaxed);
	uint64_t at = hfs_real_ns();
	r = fs->b->ops->getattr(fs->b, &cr, path, &a);
	free(path);
	if (r == -ENOENT || r == -ESTALE) {
		node_gone(fs, hfs_name_drop(fs, p->ino, name));
		return -ENOENT;
	}
	if (r) {
		hfs_count_err(fs, r);
		return r;
	}
	struct hfs_node *n = hfs_node_link(fs, p, name, &a, at, 1);
	if (!n)
		return -ENOMEM;
	fill_entry(n, &a, ac_timeout(fs, &a), e);
	hfs_node_put(fs, n);
	return 0;
}

/* Around a reply that makes the kernel create inodes (fs_i.h: linking). */
static void linking_begin(struct hfs *fs)
{
	atomic_fetch_add(&fs->linking, 1);
}

static void linking_end(struct hfs *fs)
{
	atomic_store(&fs->linked_at, hfs_now_us());
	atomic_fetch_sub(&fs->linking, 1);
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct hfs *fs = FS(req);
	struct hfs_node *p = hfs_node_get(fs, parent);
	struct fuse_entry_param e;
	if (!p) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	linking_begin(fs);
	int r = do_lookup(req, p, name, &e);
	hfs_node_put(fs, p);
	if (r)
		fuse_reply_err(req, -r);
	else if (fuse_reply_entry(req, &e))
		hfs_node_forget(fs, e.ino, 1);
	linking_end(fs);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	hfs_node_forget(FS(req), ino, nlookup);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count,
			    struct fuse_forget_data *f)
{
	for (size_t i = 0; i < count; i++)
		hfs_node_forget(FS(req), f[i].ino, f[i].nlookup);
	fuse_reply_none(req);
}

/* Fresh attributes of @n by its path.  A path that is gone or that now
 * names another file -> -ENOENT after dropping the name; the kernel
 * revalidates with a lookup. */
static int node_getattr(fuse_req_t req, struct hfs_node *n, struct hb_attr *a)
{
	struct hfs *fs = FS(req);
	struct hb_cred cr = hfs_cred(req);
	for (int tries = 0; tries < 4; tries++) {
		char *path;
		int r = hfs_path(fs, n, NULL, &path);
		if (r) {
			/* No known name: unlinked but maybe still open. */
			pthread_mutex_lock(&fs->lock);
			*a = n->attr;
			pthread_mutex_unlock(&fs->lock);
			return n->attr.nlink ? -ESTALE : 0;
		}
		atomic_fetch_add_explicit(&fs->st.getattrs, 1,
					  memory_order_relaxed);
		uint64_t at = hfs_real_ns();
		r = fs->b->ops->getattr(fs->b, &cr, path, a);
		free(path);
		if (r == 0 && n != fs->root &&
		    (a->fileid != n->fileid || a->fsid != n->fsid))
			r = -ESTALE;
		if (r == -ENOENT || r == -ESTALE) {
			/* Drop this name; retry with another known one. */
			pthread_mutex_lock(&fs->lock);
			struct hfs_name *nm = n->names;
			uint64_t pino = nm ? nm->parent->ino : 0;
			char *nmcopy = nm ? strdup(nm->name) : NULL;
			pthread_mutex_unlock(&fs->lock);
			if (!nmcopy)
				return -ESTALE;
			struct hfs_node *gone = hfs_name_drop(fs, pino, nmcopy);
			free(nmcopy);
			hfs_node_put(fs, gone);
			continue;
		}
		if (r) {
			hfs_count_err(fs, r);
			return r;
		}
		hfs_node_set_attr(fs, n, a, at);
		return 0;
	}
	return -ESTALE;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct hfs *fs = FS(req);
	struct hfs_node *n = hfs_node_get(fs, ino);
	struct hb_attr a;
	struct stat st;
	if (!n) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	/* The kernel asks when its copy of the attributes expired, which
	 * ours (no younger) have too, or when it dropped a copy still within
	 * its life: an inode evicted while a readdirplus reply was on its
	 * way (fuse_iget's eviction counter), a write or a change of ours.
	 * Attributes the server gave less than their attribute-cache life
	 * ago, with nothing changed by us since, are what an NFS client
	 * would answer from its attribute cache: no round trip. */
	pthread_mutex_lock(&fs->lock);
	double left = n->attr_ns && !(n->attr_ns & HFS_ATTR_STALE) && !n->writers ?
		      ac_left(fs, &n->attr, n->attr_ns, hfs_real_ns()) : 0;
	if (left > 0)
		a = n->attr;
	pthread_mutex_unlock(&fs->lock);
	if (left > 0) {
		hfs_node_put(fs, n);
		atomic_fetch_add_explicit(&fs->st.getattrs_cached, 1,
					  memory_order_relaxed);
		to_stat(&a, &st);
		fuse_reply_attr(req, &st, left);
		return;
	}
	int r = node_getattr(req, n, &a);
	hfs_node_put(fs, n);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	to_stat(&a, &st);
	fuse_reply_attr(req, &st, ac_timeout(fs, &a));
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr,
		       int to_set, struct fuse_file_info *fi)
{
	struct hfs *fs = FS(req);
	struct hb_cred cr = hfs_cred(req);
	struct hfs_node *n = hfs_node_get(fs, ino);
	struct hb_setattr sa = {0};
	struct hb_attr a;
	struct stat st;
	char *path = NULL;
	int r;
	if (!n) {
		fuse_reply_err(req, ESTALE);
		return;
	}
	if (to_set & FUSE_SET_ATTR_MODE) {
		sa.valid |= HB_SET_MODE;
		sa.mode = attr->st_mode & 07777;
	}
	if (to_set & FUSE_SET_ATTR_UID) {
		sa.valid |= HB_SET_UID;
		sa.uid = attr->st_uid;
	}
	if (to_set & FUSE_SET_ATTR_GID) {
		sa.valid |= HB_SET_GID;
		sa.gid = attr->st_gid;
	}
	if (to_set & FUSE_SET_ATTR_SIZE) {
		sa.valid |= HB_SET_SIZE;
		sa.size = attr->st_size;
	}
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		sa.valid |= HB_SET_ATIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME) {
		sa.valid |= HB_SET_ATIME;
		sa.atime = attr->st_atim;
	}
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		sa.valid |= HB_SET_MTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME) {
		sa.valid |= HB_SET_MTIME;
		sa.mtime = attr->st_mtim;
	}
	r = hfs_path(fs, n, NULL, &path);
	if (r)
		goto out;
	attr_stale(fs, n);
	if (sa.valid & HB_SET_SIZE)
		atomic_fetch_add(&n->wseq, 1); /* I4: fills in flight lose */
	r = fs->b->ops->setattr(fs->b, &cr, path, &sa, &a);
	if (r == 0 && !sa.valid)
		r = fs->b->ops->getattr(fs->b, &cr, path, &a);
	if (sa.valid & HB_SET_SIZE)
		atomic_fetch_add(&n->wseq, 1);
	if (r) {
		hfs_count_err(fs, r);
		goto out;
	}
	if (sa.valid & HB_SET_SIZE) {
		pthread_mutex_lock(&fs->lock);
		uint64_t obj = n->obj;
		pthread_mutex_unlock(&fs->lock);
		if (obj) {
			int e = hoard_obj_truncate(fs->cache, obj,
						   sa.size & ~(uint64_t)(HOARD_BLOCK_SIZE - 1));
			if (e && e != -ENOENT)
				cache_err(fs, e);
		}
	}
	hfs_own_change(fs, n, &a);
out:
	free(path);
	hfs_node_put(fs, n);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	to_stat(&a, &st);
	fuse_reply_attr(req, &st, ac_timeout(fs, &a));
}

/* ---- creating names ---- */

/* After the server created @name in @p: look it up and answer. */
static void reply_new_entry(fuse_req_t req, struct hfs_node *p,
			    const char *name)
{
	struct fuse_entry_param e;
	int r = do_lookup(req, p, name, &e);
	if (r) {
		fuse_reply_err(req, -r);
		return;
	}
	if (fuse_reply_entry(req, &e))
		hfs_node_forget(FS(req), e.ino, 1);
}

enum mk_kind { MK_NOD, MK_DIR, MK_SYMLINK, MK_LINK };

static void do_make(fuse_req_t req, enum mk_kind kind, fuse_ino_t parent,
		    const char *name, mode_t mode, dev_t rdev,
		    const char *target, fuse_ino_t src)
{
	struct hfs *fs = FS(req);
	struct hb_cred cr = hfs_cred(req);
	struct hfs_node *p = hfs_node_get(fs, parent), *s = NULL;
	char *path = NULL, *spath = NULL;
	int r = -ESTALE;
	if (!p)
		goto out;
	r = hfs_path(fs, p, name, &path);
	if (r)
		goto out;
	attr_stale(fs, p); /* its mtime, and nlink for a directory */
	switch (kind) {
	case MK_NOD:
		r = fs->b->ops->mknod(fs->b, &cr, path, mode, rdev);
		break;
	case MK_DIR:
		r = fs->b->ops->mkdir(fs->b, &cr, path, mode);
		break;
	case MK_SYMLINK:
		r = fs->b->ops->symlink(fs->b, &cr, target, path);
		break;
	case MK_LINK:
		s = hfs_node_get(fs, src);
		r = s ? hfs_path(fs, s, NULL, &spath) : -ESTALE;
		if (!r)
			r = fs->b->ops->link(fs->b, &cr, spath, path);
		break;
	}
	if (r)
		hfs_count_err(fs, r);
out:
	if (!r)
		reply_new_entry(req, p, name);
	else
		fuse_reply_err(req, -r);
	free(path);
	free(spath);
	hfs_node_put(fs, s);
	hfs_node_put(fs, p);
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode, dev_t rdev)
{
	do_make(req, MK_NOD, parent, name, mode, rdev, NULL, 0);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name,
		     mode_t mode)
{
	do_make(req, MK_DIR, parent, name, mode, 0, NULL, 0);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
		       const char *name)
{
	do_make(req, MK_SYMLINK, parent, name, 0, 0, link, 0);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
		    const char *newname)
{
	do_make(req, MK_LINK, newparent, newname, 0, 0, NULL, ino);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct hfs *fs = FS(req);
	struct hb_cred cr = hfs_cred(req);
	struct hfs_node *n = hfs_node_get(fs, ino);
	char *path = NULL, buf[4097];
	int r = n ? hfs_path(fs, n, NULL, &path) : -ESTALE;
	if (!r) {
		r = fs->b->ops->readlink(fs->b, &cr, path, buf, sizeof(buf) - 1);
		if (r < 0)
			hfs_count_err(fs, r);
	}
	free(path);
	if (r < 0) {
		hfs_node_put(fs, n);
		fuse_reply_err(req, -r);
		return;
	}
	buf[r] = '\0';
	fuse_reply_readlink(req, buf);
	/* Keep the target (kind 3) for disconnected operation, under the
	 * link's own object, whose coherency is the link's attributes. */
	if (n && (size_t)r <= HOARD_META_MAX) {
		pthread_mutex_lock(&fs->lock);
		struct hb_attr a = n->attr;
		pthread_mutex_unlock(&fs->lock);
		uint64_t obj;
		if (obj_acquire(fs, &a, &obj) >= 0 && obj)
			cache_err(fs, hoard_meta_put(fs->cache, obj, HFS_META_LINK, 0, buf, (size_t)r));
	}
	hfs_node_put(fs, n);
}

/* ---- removing and renaming ---- */

static void do_remove(fuse_req_t req, fuse_ino_t parent, const char *name,
		      bool dir)
{
	struct hfs *fs = FS(req);
	struct hb_cred cr = hfs_cred(req);
	struct hfs_node *p = hfs_node_get(fs, parent);
	char *path = NULL;
	int r = p ? hfs_path(fs, p, name, &path) : -ESTALE;
	if (!r) {
		attr_stale(fs, p);
		r = dir ? fs->b->ops->rmdir(fs->b, &cr, path)
			: fs->b->ops->unlink(fs->b, &cr, path);
		if (r)
			hfs_count_err(fs, r);
	}
	if (!r || r == -ENOENT) {
		struct hfs_node *n = hfs_name_drop(fs, parent, name);
		if (n && !dir) {
			/* nlink as the server counts it now */
			pthread_mutex_lock(&fs->lock);
			if (n->attr.nlink > 0)
				n->attr.nlink--;
			hfs_attr_stale_locked(n, hfs_real_ns()); /* and its ctime */
			pthread_mutex_unlock(&fs->lock);
		}
		node_gone(fs, n);
	}
	free(path);
	hfs_node_put(fs, p);
	fuse_reply_err(req, -r);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	do_remove(req, parent, name, false);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	do_remove(req, parent, name, true);
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
		      fuse_ino_t newparent, const char *newname,
		      unsigned int flags)
{
	struct hfs *fs = FS(req);
	struct hb_cred cr = hfs_cred(req);
	struct hfs_node *p = hfs_node_get(fs, parent);
	struct hfs_node *np = hfs_node_get(fs, newparent);
	char *from = NULL, *to = NULL;
	int r = (p && np) ? 0 : -ESTALE;
	if (!r)
		r = hfs_path(fs, p, name, &from);
	if (!r)
		r = hfs_path(fs, np, newname, &to);
	if (!r) {
		attr_stale(fs, p);
		attr_stale(fs, np);
		r = fs->b->ops->rename(fs->b, &cr, from, to, flags);
		if (r)
			hfs_count_err(fs, r);
	}
	if (!r) {
		struct hfs_node *gone = hfs_name_move(fs, parent, name, newparent,
						      newname,
						      flags & RENAME_EXCHANGE);
		if (gone) {
			pthread_mutex_lock(&fs->lock);
			if (!S_ISDIR(gone->attr.mode) && gone->attr.nlink > 0)
				gone->attr.nlink--;
			pthread_mutex_unlock(&fs->lock);
		}
		node_gone(fs, gone);
	}
	free(from);
	free(to);
	hfs_node_put(fs, p);
	hfs_node_put(fs, np);
	fuse_reply_err(req, -r);
}

/* ---- open / create / flush / release / fsync ---- */

static struct hfs_fh *fh_new(struct hfs_node *n, struct hb_file *bf,
			     uint64_t obj, int flags)
{
	struct hfs_fh *fh = calloc(1, sizeof(*fh));
	if (!fh)
		return NULL;
	fh->bf = bf;
	fh->node = n;
	fh->obj = obj;
	fh->flags = flags;
	atomic_init(&fh->refs, 1);
	pthread_mutex_init(&fh->lock, NULL);
	return fh;
}

/* Coherency at open: acquire the object with @a's coherency, decide
 * keep_cache and drop the kernel's attributes if the file changed. */
static uint64_t open_coherency(fuse_req_t req, struct hfs_node *n,
			       const struct hb_attr *a, struct fuse_file_info *fi)
{
	struct hfs *fs = FS(req);
	struct hfs_coh coh;
	uint64_t obj = 0;
	hfs_coh_from_attr(&coh, a);
	pthread_mutex_lock(&fs->lock);
	bool known = n->coh_valid;
	bool same = known && !memcmp(&n->coh, &coh, sizeof(coh));
	struct hfs_coh seen;
	hfs_coh_from_attr(&seen, &n->attr); /* what the kernel was told */
	bool kernel_stale = memcmp(&seen, &coh, sizeof(coh)) != 0;
	if (fs->o.nocto && known)
		obj = n->obj;
	pthread_mutex_unlock(&fs->lock);

	if (!(fs->o.nocto && known)) {
		int r = obj_acquire(fs, a, &obj);
		if (r >= 0 && (r == 1 || !same))
			put_attr_record(fs, obj, a);
	}
	pthread_mutex_lock(&fs->lock);
	n->obj = obj;
	n->coh = coh;
	n->coh_valid = true;
	n->attr = *a;
	n->attr_ns = hfs_real_ns();
	pthread_mutex_unlock(&fs->lock);
	fi->keep_cache = same;
	if (kernel_stale && fs->se)
		fuse_lowlevel_notify_inval_inode(fs->se, n->ino, -1, 0);
	return obj;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct hfs *fs = FS(req);
	struct hb_cred cr = hfs_cred(req);
	struct hfs_node *n = hfs_node_get(fs, ino);
	struct hb_file *bf = NULL;
	struct hb_attr a;
	char *path = NULL;
	int flags = fi->flags & (O_ACCMODE | O_APPEND | O_TRUNC);
	int r = n ? hfs_path(fs, n, NULL, &path) : -ESTALE;
	if (r)
		goto fail;
	atomic_fetch_add_explicit(&fs->st.opens, 1, memory_order_relaxed);
	r = fs->b->ops->open(fs->b, &cr, path, flags, 0, &bf, &a);
	if (r == 0 && (a.fileid != n->fileid || a.fsid != n->fsid))
		r = -ESTALE; /* another file by now: the kernel looks up again */
	if (r == -ENOENT || r == -ESTALE) {
		pthread_mutex_lock(&fs->lock);
		uint64_t pino = n->names ? n->names->parent->ino : 0;
		char *nm = n->names ? strdup(n->names->name) : NULL;
		pthread_mutex_unlock(&fs->lock);
		if (nm)
			node_gone(fs, hfs_name_drop(fs, pino, nm));
		free(nm);
		r = -ESTALE; /* VFS retries with a fresh lookup (LOOKUP_REVAL) */
	}
	if (r) {
		hfs_count_err(fs, r);
		goto fail;
	}
	uint64_t obj = open_coherency(req, n, &a, fi);
	struct hfs_fh *fh = fh_new(n, bf, obj, flags);
	if (!fh) {
		r = -ENOMEM;
		goto fail;
	}
	n = NULL; /* the handle holds the ref */
	fi->fh = (uintptr_t)fh;
	fi->direct_io = 0;
	free(path);
	if (fuse_reply_open(req, fi)) {
		fs->b->ops->release(fs->b, fh->bf);
		fh->bf = NULL;
		hfs_fh_put(fs, fh);
	}
	return;
fail:
	if (bf)
		fs->b->ops->release(fs->b, bf);
	free(path);
	hfs_node_put(fs, n);
	fuse_reply_err(req, -r);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name,
		      mode_t mode, struct fuse_file_info *fi)
{
	struct hfs *fs = FS(req);
	struct hb_cred cr = hfs_cred(req);
	struct hfs_node *p = hfs_node_get(fs, parent), *n = NULL;
	struct hb_file *bf = NULL;
	struct hb_attr a;
	struct fuse_entry_param e;
	char *path = NULL;
	int flags = fi->flags & (O_ACCMODE | O_APPEND | O_TRUNC | O_CREAT | O_EXCL);
	int r = p ? hfs_path(fs, p, name, &path) : -ESTALE;
	if (r)
		goto fail;
	attr_stale(fs, p);
	uint64_t at = hfs_real_ns();
	r = fs->b->ops->open(fs->b, &cr, path, flags | O_CREAT, mode, &bf, &a);
	if (r) {
		hfs_count_err(fs, r);
		goto fail;
	}
	n = hfs_node_link(fs, p, name, &a, at, 1);
	if (!n) {
		r = -ENOMEM;
		goto fail;
	}
	fill_entry(n, &a, ac_timeout(fs, &a), &e);
	uint64_t obj = open_coherency(req, n, &a, fi);
	struct hfs_fh *fh = fh_new(n, bf, obj, flags & ~(O_CREAT | O_EXCL));
	if (!fh) {
		r = -ENOMEM;
		goto fail;
	}
	fi->fh = (uintptr_t)fh;
	fi->keep_cache = 0;
	free(path);
	hfs_node_put(fs, p);
	if (fuse_reply_create(req, &e, fi)) {
		fs->b->ops->release(fs->b, fh->bf);
		fh->bf = NULL;
		hfs_fh_put(fs, fh);
		hfs_node_forget(fs, e.ino, 1);
	}
	return;
fail:
	if (n) {
		hfs_node_forget(fs, n->ino, 1);
		hfs_node_put(fs, n);
	}
	if (bf)
		fs->b->ops->release(fs->b, bf);
	free(path);
	hfs_node_put(fs, p);
	fuse_reply_err(req, -r);
}

/* After writes through @fh: take the server's new attributes as ours. */
static void fh_settle(fuse_req_t req, struct hfs_fh *fh)
{
	struct hfs *fs = FS(req);
	struct hb_attr a;
	pthread_mutex_lock(&fh->lock);
	bool wrote = fh->wrote;
	fh->wrote = false;
	pthread_mutex_unlock(&fh->lock);
	if (!wrote)
		return;
	if (node_getattr(req, fh->node, &a) == 0) {
		hfs_own_change(fs, fh->node, &a);
	} else {
		pthread_mutex_lock(&fs->lock);
		uint64_t obj = fh->node->obj;
		fh->node->coh_valid = false;
		pthread_mutex_unlock(&fs->lock);
		if (obj)
			cache_err(fs, hoard_obj_invalidate(fs->cache, obj));
		listing_update_entry(fs, fh->node, NULL);
	}
	pthread_mutex_lock(&fs->lock);
	if (fh->node->writers)
		fh->node->writers--;
	pthread_mutex_unlock(&fs->lock);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	/* Write-through: the data is on the server already. */
	fh_settle(req, (struct hfs_fh *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void op_release(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct hfs *fs = FS(req);
	struct hfs_fh *fh = (struct hfs_fh *)(uintptr_t)fi->fh;
	fh_settle(req, fh);
	fuse_reply_err(req, 0);
	hfs_fh_put(fs, fh); /* closes the backend file when jobs are done */
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync,
		     struct fuse_file_info *fi)
{
	struct hfs *fs = FS(req);
	struct hfs_fh *fh = (struct hfs_fh *)(uintptr_t)fi->fh;
	int r = fs->b->ops->fsync(fs->b, fh->bf);
	if (r)
		hfs_count_err(fs, r);
	fuse_reply_err(req, -r);
}

/* ---- directories ---- */

struct list_ctx {
	struct hfs_dirh *d;
	size_t cap;
	uint64_t now;   /* when the server gave the listing (hfs_real_ns) */
};

static struct hfs_dirent *dirh_add(struct list_ctx *c, const char *name,
				   size_t len)
{
	struct hfs_dirh *d = c->d;
	if (d->n == c->cap) {
		size_t cap = c->cap ? c->cap * 2 : 64;
		void *e = realloc(d->e, cap * sizeof(*d->e));
		if (!e)
			return NULL;
		d->e = e;
		c->cap = cap;
	}
	struct hfs_dirent *de = &d->e[d->n];
	de->name = strndup(name, len);
	if (!de->name)
		return NULL;
	d->n++;
	return de;
}

static int list_cb(const char *name, const struct hb_attr *attr, void *arg)
{
	struct list_ctx *c = arg;
	struct hfs_dirent *de = dirh_add(c, name, strlen(name));
	if (!de)
		return -ENOMEM;
	de->has_attr = attr != NULL;
	de->checked_ns = c->now;
	if (attr)
		de->attr = *attr;
	else
		memset(&de->attr, 0, sizeof(de->attr));
	return 0;
}

/* Drop @d's entries, keeping its array for reuse. */
static void dirh_clear(struct hfs_dirh *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->e[i].name);
	d->n = 0;
}

static void dirh_free(struct hfs_dirh *d)
{
	if (!d)
		return;
	dirh_clear(d);
	free(d->e);
	free(d);
}

/*
 * Listings in the engine (docs/FORMAT.md, "Front-end records"): one
 * HFS_META_DIRENT record per entry on the directory's object, with the
 * entry's attributes and the wall-clock time the server gave them, and an
 * HFS_META_LISTING record written last that says the set is whole.  The
 * records go with the directory's object when its coherency data changes
 * (an entry added, removed or renamed), so a listing read back is the
 * directory as it is now; each entry's attributes are then used as long
 * as NFS's attribute-cache rules allow from the time they were fetched
 * (ac_left), remounts included.
 */
#define DIRENT_HDR (8 + 4 + 2 + 2 + 8 + HFS_ATTR_REC)
#define DIRENT_NAME_MAX 255 /* longer names leave the listing unstored */
#define DIRENT_HAS_ATTR 1u
#define LISTING_VERSION 1u
#define LISTING_LEN 24

static size_t dirent_encode(const struct hfs_dirent *de, size_t len,
			    uint8_t *rec)
{
	uint64_t fileid = htole64(de->attr.fileid);
	uint32_t mode = htole32(de->attr.mode);
	uint16_t l = htole16((uint16_t)len);
	uint16_t flags = htole16(de->has_attr ? DIRENT_HAS_ATTR : 0);
	uint64_t at = htole64(de->checked_ns);
	memcpy(rec, &fileid, 8);
	memcpy(rec + 8, &mode, 4);
	memcpy(rec + 12, &l, 2);
	memcpy(rec + 14, &flags, 2);
	memcpy(rec + 16, &at, 8);
	attr_encode(&de->attr, rec + 24);
	memcpy(rec + DIRENT_HDR, de->name, len);
	return DIRENT_HDR + len;
}

/* The directory @n is engine object @obj with coherency from @da. */
static void dir_seen(struct hfs *fs, struct hfs_node *n, uint64_t obj,
		     const struct hb_attr *da)
{
	struct hfs_coh coh;
	hfs_coh_from_attr(&coh, da);
	pthread_mutex_lock(&fs->lock);
	n->obj = obj;
	n->coh = coh;
	n->coh_valid = true;
	pthread_mutex_unlock(&fs->lock);
}

/* Store @d, the listing the server just gave for @n (attributes @da). */
static void store_listing(struct hfs *fs, struct hfs_node *n,
			  const struct hb_attr *da, const struct hfs_dirh *d)
{
	uint64_t obj;
	if (obj_acquire(fs, da, &obj) < 0)
		return;
	dir_seen(fs, n, obj, da);
	/* The marker goes first and comes back last: a listing cut short
	 * (error, crash) is never taken for a whole one. */
	int r = hoard_meta_del(fs->cache, obj, HFS_META_LISTING, 0);
	if (r && r != -ENOENT)
		goto fail;
	r = hoard_meta_clear(fs->cache, obj, HFS_META_DIRENT);
	if (r)
		goto fail;
	put_attr_record(fs, obj, da);
	uint8_t rec[DIRENT_HDR + DIRENT_NAME_MAX];
	uint64_t count = 0;
	for (size_t i = 0; i < d->n; i++) {
		size_t len = strlen(d->e[i].name);
		if (len > DIRENT_NAME_MAX)
			return; /* no room in a record: the listing stays unstored */
		r = hoard_meta_put(fs->cache, obj, HFS_META_DIRENT,
				   hfs_name_hash(0, d->e[i].name, len), rec,
				   dirent_encode(&d->e[i], len, rec));
		if (r)
			goto fail;
		count++;
	}
	uint8_t m[LISTING_LEN] = {0};
	uint32_t v = htole32(LISTING_VERSION);
	uint64_t cnt = htole64(count), at = htole64(hfs_real_ns());
	memcpy(m, &v, 4);
	memcpy(m + 8, &cnt, 8);
	memcpy(m + 16, &at, 8);
	r = hoard_meta_put(fs->cache, obj, HFS_META_LISTING, 0, m, sizeof(m));
	if (r)
		goto fail;
	return;
fail:
	cache_err(fs, r);
}

struct load_ctx {
	struct list_ctx lc;
	const struct hfs *fs;
	bool usable;     /* every record well formed and fresh */
};

/* A mode a server can give: one of the seven file types. */
static bool mode_valid(uint32_t mode)
{
	switch (mode & S_IFMT) {
	case S_IFREG: case S_IFDIR: case S_IFLNK: case S_IFCHR: case S_IFBLK:
	case S_IFIFO: case S_IFSOCK:
		return true;
	}
	return false;
}

/* One DIRENT record into the listing, if it is one store_listing could
 * have written: the backends never list "." or "..", and store_listing
 * stores no name longer than DIRENT_NAME_MAX bytes; everything reaches the kernel
 * and the node table as it is (mount_dir_bad_dirents.sh). */
static int load_cb(uint64_t rid, const void *val, size_t len, void *arg)
{
	struct load_ctx *c = arg;
	const uint8_t *p = val;
	const char *name = (const char *)p + DIRENT_HDR;
	uint16_t l, flags;
	uint32_t mode;
	uint64_t fileid, at;
	if (len < DIRENT_HDR)
		goto unusable;
	memcpy(&fileid, p, 8);
	memcpy(&mode, p + 8, 4);
	memcpy(&l, p + 12, 2);
	memcpy(&flags, p + 14, 2);
	memcpy(&at, p + 16, 8);
	l = le16toh(l);
	if (len != DIRENT_HDR + (size_t)l || l == 0 || l > DIRENT_NAME_MAX ||
	    rid != hfs_name_hash(0, name, l) ||
	    memchr(name, '/', l) || memchr(name, 0, l) ||
	    (name[0] == '.' && (l == 1 || (l == 2 && name[1] == '.'))) ||
	    !(le16toh(flags) & DIRENT_HAS_ATTR))
		goto unusable;
	struct hb_attr a;
	attr_decode(p + 24, &a);
	at = le64toh(at);
	if (a.fileid != le64toh(fileid) || a.mode != le32toh(mode) ||
	    !mode_valid(a.mode))
		goto unusable;
	if (ac_left(c->fs, &a, at, c->lc.now) <= 0)
		goto unusable; /* stale: the server is asked again */
	struct hfs_dirent *de = dirh_add(&c->lc, name, l);
	if (!de)
		return -ENOMEM;
	de->attr = a;
	de->checked_ns = at;
	de->has_attr = true;
	return 0;
unusable:
	c->usable = false;
	return 1; /* stop */
}

/* The listing of @n from the engine if its coherency data still matches
 * @da (the directory's fresh attributes) and every entry's attributes are
 * still usable.  0 and @d filled, or -ENOENT (ask the server). */
static int load_listing(struct hfs *fs, struct hfs_node *n,
			const struct hb_attr *da, struct hfs_dirh *d)
{
	uint64_t obj;
	uint8_t m[LISTING_LEN];
	uint32_t v;
	uint64_t count;
	int changed = obj_acquire(fs, da, &obj);
	if (changed == 1) /* so did its own entry in its parent's listing */
		listing_update_entry(fs, n, da);
	if (changed != 0)
		return -ENOENT; /* changed (records dropped), or no cache */
	int r = hoard_meta_get(fs->cache, obj, HFS_META_LISTING, 0, m, sizeof(m));
	if (r != LISTING_LEN)
		return -ENOENT;
	memcpy(&v, m, 4);
	memcpy(&count, m + 8, 8);
	if (le32toh(v) != LISTING_VERSION)
		return -ENOENT;
	struct load_ctx c = {{d, 0, hfs_real_ns()}, fs, true};
	r = hoard_meta_iterate(fs->cache, obj, HFS_META_DIRENT, load_cb, &c);
	if (r < 0 || !c.usable || d->n != le64toh(count)) {
		if (r < 0)
			cache_err(fs, r);
		dirh_clear(d);
		return -ENOENT;
	}
	dir_seen(fs, n, obj, da);
	return 0;
}

/* Our own change to a file (write, truncate, chmod) made its entry in
 * each known parent's stored listing stale: rewrite the entry with @a
 * (the server's attributes after the change) or, with @a NULL (unknown),
 * drop the listing's marker so that the next opendir asks the server. */
static void listing_update_entry(struct hfs *fs, struct hfs_node *n,
			       const struct hb_attr *a)
{
	struct { uint64_t obj, fsid, fileid; char *name; } p[4];
	int np = 0;
	pthread_mutex_lock(&fs->lock);
	for (struct hfs_name *nm = n->names; nm && np < 4; nm = nm->nnext) {
		p[np].obj = nm->parent->obj;
		p[np].fsid = nm->parent->fsid;
		p[np].fileid = nm->parent->fileid;
		p[np].name = strdup(nm->name);
		if (p[np].name)
			np++;
	}
	pthread_mutex_unlock(&fs->lock);
	for (int i = 0; i < np; i++) {
		/* a parent not listed by this mount: by key */
		uint64_t obj = p[i].obj ? p[i].obj :
			       obj_find(fs, p[i].fsid, p[i].fileid);
		size_t len = strlen(p[i].name);
		uint64_t rid = hfs_name_hash(0, p[i].name, len);
		uint8_t rec[DIRENT_HDR + DIRENT_NAME_MAX];
		int r;
		if (!obj || len > DIRENT_NAME_MAX ||
		    hoard_meta_get(fs->cache, obj, HFS_META_DIRENT, rid, rec,
				   sizeof(rec)) < 0) {
			free(p[i].name);
			continue; /* nothing stored for this name */
		}
		if (a) {
			struct hfs_dirent de = {p[i].name, *a, hfs_real_ns(), true};
			r = hoard_meta_put(fs->cache, obj, HFS_META_DIRENT, rid,
					   rec, dirent_encode(&de, len, rec));
		} else {
			r = hoard_meta_del(fs->cache, obj, HFS_META_LISTING, 0);
		}
		if (r && r != -ENOENT)
			cache_err(fs, r);
		free(p[i].name);
	}
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino,
		       struct fuse_file_info *fi)
{
	struct hfs *fs = FS(req);
	struct hb_cred cr = hfs_cred(req);
	struct hfs_node *n = hfs_node_get(fs, ino);
	struct hfs_dirh *d = calloc(1, sizeof(*d));
	struct list_ctx c = {d, 0, 0};
	struct hb_attr da;
	char *path = NULL;
	/* close-to-open for directories too: the directory's attributes are
	 * always fetched; its entries come from the engine if it is
	 * unchanged */
	int r = (n && d) ? node_getattr(req, n, &da) : -ENOMEM;
	if (!r && load_listing(fs, n, &da, d) == 0) {
		atomic_fetch_add_explicit(&fs->st.listings_cached, 1,
					  memory_order_relaxed);
		goto done;
	}
	if (!r)
		r = hfs_path(fs, n, NULL, &path);
	if (!r) {
		atomic_fetch_add_explicit(&fs->st.listings, 1,
					  memory_order_relaxed);
		c.now = hfs_real_ns();
		r = fs->b->ops->readdir(fs->b, &cr, path, list_cb, &c);
		if (r)
			hfs_count_err(fs, r);
	}
	if (!r && d->n && !d->e[0].has_attr) {
		/* no attributes from the backend: ask for each entry's */
		for (size_t i = 0; i < d->n; i++) {
			char *p2 = NULL;
			if (hfs_path(fs, n, d->e[i].name, &p2))
				continue;
			d->e[i].checked_ns = hfs_real_ns();
			if (fs->b->ops->getattr(fs->b, &cr, p2, &d->e[i].attr) == 0)
				d->e[i].has_attr = true;
			free(p2);
		}
	}
	if (!r)
		store_listing(fs, n, &da, d);
done:
	free(path);
	hfs_node_put(fs, n);
	if (r) {
		dirh_free(d);
		fuse_reply_err(req, -r);
		return;
	}
	fi->fh = (uintptr_t)d;
	fi->cache_readdir = 0;
	if (fuse_reply_open(req, fi))
		dirh_free(d);
}

/* An entry the kernel does not look up (".", "..", or one without
 * attributes): only its name, inode number and type. */
static size_t add_plain(fuse_req_t req, char *buf, size_t room,
			const char *name, uint64_t fileid, uint32_t mode,
			off_t next, bool plus)
{
	struct stat st = {0};
	st.st_ino = fileid;
	st.st_mode = mode;
	if (!plus)
		return fuse_add_direntry(req, buf, room, name, &st, next);
	struct fuse_entry_param e = {0}; /* ino 0: the kernel skips the lookup */
	e.attr = st;
	return fuse_add_direntry_plus(req, buf, room, name, &e, next);
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi, bool plus)
{
	struct hfs *fs = FS(req);
	struct hfs_dirh *d = (struct hfs_dirh *)(uintptr_t)fi->fh;
	struct hfs_node *dn = hfs_node_get(fs, ino);
	char *buf = malloc(size);
	size_t pos = 0, need;
	if (!buf || !dn) {
		free(buf);
		hfs_node_put(fs, dn);
		fuse_reply_err(req, buf ? ESTALE : ENOMEM);
		return;
	}
	uint64_t now = hfs_real_ns();
	/* offsets: 0 ".", 1 "..", 2+i entry i; an entry's off is the next */
	for (size_t i = (size_t)off; i < d->n + 2; i++) {
		if (i < 2) {
			/* d_ino 0 would hide the entry from readdir(3) */
			need = add_plain(req, buf + pos, size - pos,
					 i == 0 ? "." : "..",
					 i == 0 ? dn->fileid : 1, S_IFDIR, i + 1,
					 plus);
			if (need > size - pos)
				break;
			pos += need;
			continue;
		}
		struct hfs_dirent *de = &d->e[i - 2];
		if (!plus || !de->has_attr) {
			need = add_plain(req, buf + pos, size - pos, de->name,
					 de->attr.fileid, de->attr.mode, i + 1,
					 plus);
			if (need > size - pos)
				break;
			pos += need;
			continue;
		}
		/* readdirplus: each entry is a lookup (nlookup + 1) */
		struct hfs_node *n = hfs_node_link(fs, dn, de->name, &de->attr,
						   de->checked_ns, 1);
		if (!n)
			break;
		/* the node's attributes if newer than the listing's (a change
		 * of ours since it was read); none for the kernel to keep if
		 * we changed the file and have not asked since */
		pthread_mutex_lock(&fs->lock);
		struct hb_attr na = n->attr;
		uint64_t nat = n->attr_ns;
		pthread_mutex_unlock(&fs->lock);
		bool stale = nat & HFS_ATTR_STALE;
		struct fuse_entry_param e;
		fill_entry(n, &na, ac_left(fs, &na, stale ? de->checked_ns : nat, now), &e);
		if (stale)
			e.attr_timeout = 0;
		need = fuse_add_direntry_plus(req, buf + pos, size - pos,
					      de->name, &e, i + 1);
		if (need > size - pos) {
			hfs_node_forget(fs, n->ino, 1);
			hfs_node_put(fs, n);
			break;
		}
		hfs_node_put(fs, n);
		pos += need;
	}
	hfs_node_put(fs, dn);
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	do_readdir(req, ino, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size,
			   off_t off, struct fuse_file_info *fi)
{
	struct hfs *fs = FS(req);
	linking_begin(fs);
	do_readdir(req, ino, size, off, fi, true);
	linking_end(fs);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino,
			  struct fuse_file_info *fi)
{
	dirh_free((struct hfs_dirh *)(uintptr_t)fi->fh);
	fuse_reply_err(req, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync,
			struct fuse_file_info *fi)
{
	fuse_reply_err(req, 0);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct hfs *fs = FS(req);
	struct hb_cred cr = hfs_cred(req);
	struct hb_statfs s;
	struct statvfs v = {0};
	int r = fs->b->ops->statfs(fs->b, &cr, "/", &s);
	if (r) {
		hfs_count_err(fs, r);
		fuse_reply_err(req, -r);
		return;
	}
	v.f_bsize = s.bsize;
	v.f_frsize = s.frsize;
	v.f_blocks = s.blocks;
	v.f_bfree = s.bfree;
	v.f_bavail = s.bavail;
	v.f_files = s.files;
	v.f_ffree = s.ffree;
	v.f_favail = s.ffree;
	v.f_namemax = s.namemax ? s.namemax : 255;
	fuse_reply_statfs(req, &v);
}

static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct hfs *fs = userdata;
	/* 1 MiB requests: libfuse derives max_pages from max_write, the
	 * kernel caps it at /proc/sys/fs/fuse/max_pages_limit. */
	conn->max_write = HFS_MAX_IO;
	conn->max_readahead = HFS_READAHEAD;
	/* libfuse leaves 12 requests in flight: too few for queued random
	 * reads (measured +27% 4 KiB reads at queue depth 32 with 64) */
	conn->max_background = 64;
	conn->congestion_threshold = 48;
	if (conn->capable & FUSE_CAP_READDIRPLUS) {
		conn->want |= FUSE_CAP_READDIRPLUS;
		conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
	}
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC)
		conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	if (conn->capable & FUSE_CAP_PARALLEL_DIROPS)
		conn->want |= FUSE_CAP_PARALLEL_DIROPS;
	if (conn->capable & FUSE_CAP_ASYNC_READ)
		conn->want |= FUSE_CAP_ASYNC_READ;
	/* the server's times and sizes decide, not the kernel's guesses */
	conn->want &= ~(FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_SPLICE_READ |
			FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
	(void)fs;
}

const struct fuse_lowlevel_ops hfs_ll_ops = {
	.init = op_init,
	.lookup = op_lookup,
	.forget = op_forget,
	.forget_multi = op_forget_multi,
	.getattr = op_getattr,
	.setattr = op_setattr,
	.readlink = op_readlink,
	.mknod = op_mknod,
	.mkdir = op_mkdir,
	.unlink = op_unlink,
	.rmdir = op_rmdir,
	.symlink = op_symlink,
	.rename = op_rename,
	.link = op_link,
	.open = op_open,
	.read = hfs_op_read,
	.write = hfs_op_write,
	.flush = op_flush,
	.release = op_release,
	.fsync = op_fsync,
	.opendir = op_opendir,
	.readdir = op_readdir,
	.readdirplus = op_readdirplus,
	.releasedir = op_releasedir,
	.fsyncdir = op_fsyncdir,
	.statfs = op_statfs,
	.create = op_create,
};
