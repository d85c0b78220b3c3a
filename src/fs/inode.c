/*
 * inode.c - the node table: FUSE inode numbers <-> server files and names.
 *
 * Owns: struct hfs_node and struct hfs_name, three hashes over them (by
 * FUSE ino, by server (fsid, fileid), by (parent ino, name)) and path
 * building.  Does not own: talking to the server or the cache (ops.c,
 * io.c) -- every function here works under fs->lock on memory only.
 *
 * One node per server file (key (fsid, fileid)), so hard links share an
 * inode as they do on the server.  A node keeps every name we have seen
 * for it; the first is its current path.  Invariants I1-I3 in fs_i.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "fs/fs_i.h"

/* ---- a chained hash with intrusive links, growing by doubling ---- */

static int htab_init(struct hfs_htab *t, uint64_t (*hash)(const struct hfs_hlink *))
{
	t->nb = 1024;
	t->count = 0;
	t->hash = hash;
	t->b = calloc(t->nb, sizeof(*t->b));
	return t->b ? 0 : -ENOMEM;
}

static void htab_grow(struct hfs_htab *t)
{
	size_t nb = t->nb * 2;
	struct hfs_hlink **b = calloc(nb, sizeof(*b));
	if (!b)
		return; /* keep the longer chains */
	for (size_t i = 0; i < t->nb; i++) {
		struct hfs_hlink *l = t->b[i], *next;
		for (; l; l = next) {
			next = l->next;
			size_t i2 = t->hash(l) & (nb - 1);
			l->next = b[i2];
			b[i2] = l;
		}
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
}

static void htab_add(struct hfs_htab *t, struct hfs_hlink *l, uint64_t hash)
{
	if (t->count >= t->nb * 2)
		htab_grow(t);
	l->next = t->b[hash & (t->nb - 1)];
	t->b[hash & (t->nb - 1)] = l;
	t->count++;
}

static void htab_del(struct hfs_htab *t, struct hfs_hlink *l)
{
	struct hfs_hlink **p = &t->b[t->hash(l) & (t->nb - 1)];
	for (; *p; p = &(*p)->next)
		if (*p == l) {
			*p = l->next;
			t->count--;
			return;
		}
}

#define container_of(p, T, m) ((T *)((char *)(p) - offsetof(T, m)))

static uint64_t key_hash(uint64_t fsid, uint64_t fileid)
{
	return hfs_mix64(fsid * 0x9e3779b97f4a7c15ULL ^ hfs_mix64(fileid));
}

static uint64_t ino_link_hash(const struct hfs_hlink *l)
{
	return hfs_mix64(container_of(l, struct hfs_node, h_ino)->ino);
}

static uint64_t key_link_hash(const struct hfs_hlink *l)
{
	const struct hfs_node *n = container_of(l, struct hfs_node, h_key);
	return key_hash(n->fsid, n->fileid);
}

static uint64_t name_link_hash(const struct hfs_hlink *l)
{
	const struct hfs_name *nm = container_of(l, struct hfs_name, h);
	return hfs_name_hash(nm->parent->ino, nm->name, strlen(nm->name));
}

static struct hfs_node *find_ino(struct hfs *fs, uint64_t ino)
{
	uint64_t h = hfs_mix64(ino);
	for (struct hfs_hlink *l = fs->by_ino.b[h & (fs->by_ino.nb - 1)]; l; l = l->next) {
		struct hfs_node *n = container_of(l, struct hfs_node, h_ino);
		if (n->ino == ino)
			return n;
	}
	return NULL;
}

static struct hfs_node *find_key(struct hfs *fs, uint64_t fsid, uint64_t fileid)
{
	uint64_t h = key_hash(fsid, fileid);
	for (struct hfs_hlink *l = fs->by_key.b[h & (fs->by_key.nb - 1)]; l; l = l->next) {
		struct hfs_node *n = container_of(l, struct hfs_node, h_key);
		if (n->fsid == fsid && n->fileid == fileid)
			return n;
	}
	return NULL;
}

static struct hfs_name *find_name(struct hfs *fs, uint64_t parent,
				  const char *name)
{
	size_t len = strlen(name);
	uint64_t h = hfs_name_hash(parent, name, len);
	for (struct hfs_hlink *l = fs->by_name.b[h & (fs->by_name.nb - 1)]; l; l = l->next) {
		struct hfs_name *nm = container_of(l, struct hfs_name, h);
		if (nm->parent->ino == parent && !strcmp(nm->name, name))
			return nm;
	}
	return NULL;
}

/* ---- nodes ---- */

static void node_maybe_free(struct hfs *fs, struct hfs_node *n);

static void name_free(struct hfs *fs, struct hfs_name *nm)
{
	struct hfs_node *n = nm->node, *parent = nm->parent;
	htab_del(&fs->by_name, &nm->h);
	for (struct hfs_name **p = &n->names; *p; p = &(*p)->nnext)
		if (*p == nm) {
			*p = nm->nnext;
			break;
		}
	free(nm);
	parent->refs--;
	node_maybe_free(fs, parent);
}

static void node_maybe_free(struct hfs *fs, struct hfs_node *n)
{
	/* I1: only unreferenced nodes go; the root is never freed.  Each name
	 * holds a ref on its parent: the last parent is continued with
	 * iteratively (a directory chain), the others recursively. */
	while (n && n != fs->root && n->nlookup == 0 && n->refs == 0) {
		struct hfs_node *last = NULL;
		while (n->names) {
			struct hfs_name *nm = n->names;
			struct hfs_node *p = nm->parent;
			n->names = nm->nnext;
			htab_del(&fs->by_name, &nm->h);
			free(nm);
			if (last) {
				last->refs--;
				node_maybe_free(fs, last);
			}
			last = p;
		}
		htab_del(&fs->by_ino, &n->h_ino);
		htab_del(&fs->by_key, &n->h_key);
		if (n->evicting)
			fs->evict_pending--;
		free(n);
		if (!last)
			return;
		last->refs--;
		n = last;
	}
}

static struct hfs_node *node_new(struct hfs *fs, const struct hb_attr *a,
				 uint64_t attr_ns)
{
	struct hfs_node *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->ino = fs->next_ino++;
	n->fsid = a->fsid;
	n->fileid = a->fileid;
	n->attr = *a;
	n->attr_ns = attr_ns;
	n->referenced = true;
	atomic_init(&n->wseq, 0);
	htab_add(&fs->by_ino, &n->h_ino, hfs_mix64(n->ino));
	if (fs->by_ino.count > fs->nodes_peak)
		fs->nodes_peak = fs->by_ino.count;
	htab_add(&fs->by_key, &n->h_key, key_hash(n->fsid, n->fileid));
	if (fs->o.max_nodes && fs->by_ino.count > fs->o.max_nodes)
		pthread_cond_signal(&fs->evict_cond);
	return n;
}

int hfs_nodes_init(struct hfs *fs, const struct hb_attr *root_attr)
{
	for (int i = 0; i < HFS_WLOCKS; i++)
		pthread_mutex_init(&fs->wlocks[i], NULL);
	if (htab_init(&fs->by_ino, ino_link_hash) ||
	    htab_init(&fs->by_key, key_link_hash) ||
	    htab_init(&fs->by_name, name_link_hash))
		return -ENOMEM;
	fs->next_ino = FUSE_ROOT_ID;
	fs->root = node_new(fs, root_attr, 0);
	if (!fs->root)
		return -ENOMEM;
	fs->root->nlookup = 1;
	return 0;
}

void hfs_nodes_free(struct hfs *fs)
{
	struct hfs_htab *t = &fs->by_name;
	for (size_t i = 0; t->b && i < t->nb; i++)
		for (struct hfs_hlink *l = t->b[i], *next; l; l = next) {
			next = l->next;
			free(container_of(l, struct hfs_name, h));
		}
	t = &fs->by_ino;
	for (size_t i = 0; t->b && i < t->nb; i++)
		for (struct hfs_hlink *l = t->b[i], *next; l; l = next) {
			next = l->next;
			free(container_of(l, struct hfs_node, h_ino));
		}
	free(fs->by_ino.b);
	free(fs->by_key.b);
	free(fs->by_name.b);
	fs->by_ino.b = fs->by_key.b = fs->by_name.b = NULL;
	for (int i = 0; i < HFS_WLOCKS; i++)
		pthread_mutex_destroy(&fs->wlocks[i]);
}

struct hfs_node *hfs_node_get(struct hfs *fs, uint64_t ino)
{
	pthread_mutex_lock(&fs->lock);
	struct hfs_node *n = find_ino(fs, ino);
	if (n)
		n->refs++;
	pthread_mutex_unlock(&fs->lock);
	return n;
}

void hfs_node_put(struct hfs *fs, struct hfs_node *n)
{
	if (!n)
		return;
	pthread_mutex_lock(&fs->lock);
	n->refs--;
	node_maybe_free(fs, n);
	pthread_mutex_unlock(&fs->lock);
}

static int name_add(struct hfs *fs, struct hfs_node *parent,
		    struct hfs_node *n, const char *name)
{
	size_t len = strlen(name);
	struct hfs_name *nm = malloc(sizeof(*nm) + len + 1);
	if (!nm)
		return -ENOMEM;
	memcpy(nm->name, name, len + 1);
	nm->parent = parent;
	nm->node = n;
	parent->refs++;
	/* I2: the newest name goes first, it is the one the kernel uses. */
	nm->nnext = n->names;
	n->names = nm;
	htab_add(&fs->by_name, &nm->h, hfs_name_hash(parent->ino, name, len));
	return 0;
}

struct hfs_node *hfs_node_link(struct hfs *fs, struct hfs_node *parent,
			       const char *name, const struct hb_attr *attr,
			       uint64_t attr_ns, uint64_t nlookup)
{
	pthread_mutex_lock(&fs->lock);
	struct hfs_name *old = find_name(fs, parent->ino, name);
	struct hfs_node *n = find_key(fs, attr->fsid, attr->fileid);
	if (old && old->node != n) {
		/* The name now refers to another server file. */
		struct hfs_node *on = old->node;
		on->refs++;
		name_free(fs, old);
		on->refs--;
		node_maybe_free(fs, on);
		old = NULL;
	}
	if (!n) {
		n = node_new(fs, attr, attr_ns);
		if (!n) {
			pthread_mutex_unlock(&fs->lock);
			return NULL;
		}
	} else {
		hfs_attr_take_locked(n, attr, attr_ns);
		n->referenced = true;
	}
	n->nlookup += nlookup;
	n->refs++;
	if (n->evicting) { /* wanted again */
		n->evicting = false;
		fs->evict_pending--;
	}
	if (!old && n != fs->root) {
		if (S_ISDIR(attr->mode)) /* I2 */
			while (n->names)
				name_free(fs, n->names);
		if (name_add(fs, parent, n, name)) {
			/* Out of memory: the node stays usable by ino, only
			 * without a path; later calls fail with ESTALE. */
		}
	} else if (old && old != n->names) {
		/* Make the name just used the current one. */
		for (struct hfs_name **p = &n->names; *p; p = &(*p)->nnext)
			if (*p == old) {
				*p = old->nnext;
				break;
			}
		old->nnext = n->names;
		n->names = old;
	}
	pthread_mutex_unlock(&fs->lock);
	return n;
}

void hfs_node_forget(struct hfs *fs, uint64_t ino, uint64_t cnt)
{
	pthread_mutex_lock(&fs->lock);
	struct hfs_node *n = find_ino(fs, ino);
	if (n) {
		n->nlookup = cnt > n->nlookup ? 0 : n->nlookup - cnt;
		node_maybe_free(fs, n);
	}
	pthread_mutex_unlock(&fs->lock);
}

struct hfs_node *hfs_name_drop(struct hfs *fs, uint64_t parent,
			       const char *name)
{
	pthread_mutex_lock(&fs->lock);
	struct hfs_name *nm = find_name(fs, parent, name);
	struct hfs_node *n = NULL;
	if (nm) {
		n = nm->node;
		n->refs++;
		name_free(fs, nm);
	}
	pthread_mutex_unlock(&fs->lock);
	return n;
}

struct hfs_node *hfs_name_move(struct hfs *fs, uint64_t parent,
			       const char *name, uint64_t newparent,
			       const char *newname, bool exchange)
{
	pthread_mutex_lock(&fs->lock);
	struct hfs_name *from = find_name(fs, parent, name);
	struct hfs_name *to = find_name(fs, newparent, newname);
	struct hfs_node *np = find_ino(fs, newparent), *op = find_ino(fs, parent);
	struct hfs_node *a = from ? from->node : NULL, *b = to ? to->node : NULL;
	if (a)
		a->refs++;
	if (b)
		b->refs++;
	if (from)
		name_free(fs, from);
	if (to)
		name_free(fs, to);
	if (a && np)
		name_add(fs, np, a, newname);
	/* the server changed their ctime: ask for it again */
	uint64_t now = hfs_real_ns();
	if (a)
		hfs_attr_stale_locked(a, now);
	if (b)
		hfs_attr_stale_locked(b, now);
	if (exchange && b && op)
		name_add(fs, op, b, name);
	if (a) {
		a->refs--;
		node_maybe_free(fs, a);
	}
	if (b && exchange) {
		b->refs--;
		node_maybe_free(fs, b);
		b = NULL;
	}
	pthread_mutex_unlock(&fs->lock);
	return b; /* the node replaced, with a ref */
}

int hfs_path(struct hfs *fs, struct hfs_node *n, const char *name,
	     char **pathp)
{
	size_t len = name ? strlen(name) + 1 : 0, depth = 0;
	pthread_mutex_lock(&fs->lock);
	for (struct hfs_node *p = n; p != fs->root; p = p->names->parent) {
		if (!p->names || ++depth > 4096) {
			pthread_mutex_unlock(&fs->lock);
			return -ESTALE;
		}
		len += strlen(p->names->name) + 1;
	}
	char *path = malloc(len + 2);
	if (!path) {
		pthread_mutex_unlock(&fs->lock);
		return -ENOMEM;
	}
	size_t pos = len;
	path[pos] = '\0';
	if (name) {
		size_t l = strlen(name);
		pos -= l;
		memcpy(path + pos, name, l);
		path[--pos] = '/';
	}
	for (struct hfs_node *p = n; p != fs->root; p = p->names->parent) {
		size_t l = strlen(p->names->name);
		pos -= l;
		memcpy(path + pos, p->names->name, l);
		path[--pos] = '/';
	}
	pthread_mutex_unlock(&fs->lock);
	if (len == 0)
		strcpy(path, "/");
	*pathp = path;
	return 0;
}

void hfs_node_set_attr(struct hfs *fs, struct hfs_node *n,
		       const struct hb_attr *a, uint64_t attr_ns)
{
	pthread_mutex_lock(&fs->lock);
	hfs_attr_take_locked(n, a, attr_ns);
	pthread_mutex_unlock(&fs->lock);
}

void hfs_node_counts(struct hfs *fs, uint64_t *nodes, uint64_t *names,
		     uint64_t *peak)
{
	pthread_mutex_lock(&fs->lock);
	*nodes = fs->by_ino.count;
	*names = fs->by_name.count;
	*peak = fs->nodes_peak;
	pthread_mutex_unlock(&fs->lock);
}

pthread_mutex_t *hfs_node_wlock(struct hfs *fs, const struct hfs_node *n)
{
	return &fs->wlocks[hfs_mix64(n->ino) % HFS_WLOCKS];
}

/* ---- eviction (fs_i.h: bounding the node table) ---- */

size_t hfs_evict_want(struct hfs *fs)
{
	size_t max = fs->o.max_nodes, count = fs->by_ino.count;
	if (!max || count <= max || count - fs->evict_pending <= max - max / 8)
		return 0;
	return count - fs->evict_pending - (max - max / 8);
}

static bool evictable(struct hfs *fs, const struct hfs_node *n)
{
	return n != fs->root && n->nlookup > 0 && n->refs == 0 &&
	       !n->evicting && n->names && !n->names->nnext &&
	       !S_ISDIR(n->attr.mode) && n->attr.nlink <= 1 &&
	       strlen(n->names->name) < 256;
}

size_t hfs_evict_pick(struct hfs *fs, struct hfs_victim *v, size_t max)
{
	struct hfs_htab *t = &fs->by_ino;
	size_t got = 0;
	for (size_t swept = 0; swept < 2 * t->nb && got < max; swept++) {
		size_t i = fs->evict_hand++ & (t->nb - 1);
		for (struct hfs_hlink *l = t->b[i]; l && got < max; l = l->next) {
			struct hfs_node *n = container_of(l, struct hfs_node, h_ino);
			if (!evictable(fs, n))
				continue;
			if (n->referenced) { /* a second chance */
				n->referenced = false;
				continue;
			}
			v[got].parent = n->names->parent->ino;
			v[got].ino = n->ino;
			strcpy(v[got].name, n->names->name);
			n->evicting = true;
			fs->evict_pending++;
			got++;
		}
	}
	return got;
}

void hfs_evict_undo(struct hfs *fs, uint64_t ino)
{
	struct hfs_node *n = find_ino(fs, ino);
	if (n && n->evicting) {
		n->evicting = false;
		fs->evict_pending--;
	}
}
