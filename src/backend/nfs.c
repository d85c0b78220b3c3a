/*
 * nfs.c - the "nfs://" backend: NFSv3 or NFSv4 through libnfs's high-level
 * (path-based, synchronous) API, AUTH_SYS with the caller's uid and gid.
 *
 * Owns: parsing the source URL, a pool of connections to one export, and
 * turning each backend call into libnfs calls on one connection.  Does not
 * own: caching, coherency, inode numbers handed to the kernel.
 *
 * Source: nfs://HOST[:PORT]/EXPORT[/PATH][?version=3|4][&mountport=N]
 *   HOST is a name or IPv4 address.  PORT is the NFS port (default: the
 *   portmapper's answer for v3, 2049 for v4); with v3, mountport=N skips the
 *   portmapper for MOUNT too, so a server can be reached with no rpcbind at
 *   all (tests do this).  EXPORT[/PATH] is mounted as one path: the server
 *   must accept a mount of a directory below its export (ganesha does).
 * Volume: "nfs://HOST:PORT/EXPORT/PATH", port always written, slashes
 *   collapsed, mountport left out; "?version=4" is appended for v4 because
 *   libnfs reports fsid 0 over v4 and the server's fsid over v3, so the two
 *   versions give the same file different cache keys and must not share a
 *   volume.
 *
 * Threads: an nfs_context is not thread-safe.  The backend keeps nconn
 * contexts, each a separate TCP connection (and, for v4, a separate client
 * id), each guarded by its own mutex.  A path-based call takes whichever
 * connection is free (trylock round the pool, then waits on one).  An open
 * file belongs to the connection that opened it (the v4 open state lives
 * there), chosen as the one with the fewest open files, so reads of
 * different files proceed in parallel up to nconn.  Writes, fsync and close
 * go through that owner.  One file's reads proceed in parallel too: a READ
 * that finds another READ of the same file in progress takes a free
 * connection and reads through the file's *view* there, its own handle
 * opened read-only by path on that connection's context the first time
 * (checked to be the same fileid, so a file renamed over meanwhile is never
 * read instead), closed at release.  The kernel's readahead sends four
 * 1 MiB reads of one file at once; a synchronous nfs_pread holds its
 * connection for a whole round trip, so without views they went out one
 * after the other (cold sequential reads over 4 ms round trips at half the
 * speed).  v4: each view is an OPEN by that connection's client, so a
 * file read in parallel is open by several clients of ours at once; fine
 * while the server grants libnfs no delegations (libnfs 4.0 runs no
 * callback service, so a server that probes the callback path grants none;
 * ganesha's exports grant none unless configured to).
 *
 * Invariants:
 *  1. conn->lock is held across every libnfs call on conn->ctx, including
 *     nfs_set_uid/nfs_set_gid and the call they prepare, so each RPC goes
 *     out with the credential of the caller that made it.
 *  2. conn->uid/gid mirror what was last given to libnfs (-1: unknown).
 *  3. A struct nfsdir, once returned by nfs_opendir, is a private in-memory
 *     list: nfs_readdir() only walks it, so readdir walks it unlocked and
 *     calls back with no lock held (dircache is off; closedir is locked).
 *  4. v4 state loss: libnfs 4.0 never renews its v4 lease, so after the
 *     server's lease time (ganesha: 60 s) with no stateful call, or after a
 *     server restart, every OPEN/READ/WRITE on that context fails (libnfs
 *     gives ERANGE for NFS4ERR_EXPIRED) for good.  On ERANGE over v4 the
 *     connection gets a fresh context (new client id) in conn->ctx, the old
 *     one moves to conn->retired, and the call is retried once.  A file's
 *     view whose ctx is not its connection's ctx reopens itself by path
 *     first (a file renamed meanwhile then fails with ENOENT, one renamed
 *     over with ESTALE).  A broken TCP connection gets a fresh context
 *     the same way (conn_broken: libnfs 4.0 never reconnects a v4
 *     context), the call retried once.
 *  5. f->view[i] (its ctx and fh) is used and changed only with conn[i]'s
 *     lock held; view[i].state is a hint read unlocked (set under the lock).
 *
 * Limits of libnfs 4.0 (found against ganesha 4.3):
 *  - v4: nfs_readdir entries leave inode, dev and other fields
 *    uninitialised (garbage under ASan, often 0), so readdir does one
 *    GETATTR per entry to learn the fileid (NFS_RD_DEPTH of them in flight
 *    on one connection, through the async API); nfs_lstat64 gives nfs_dev 0,
 *    so fsid is 0; nfs_get_readmax/writemax return 0, so READs start at
 *    1 MiB and are halved while the server refuses them (ganesha answers
 *    EIO above its maximum, not a short read).
 *  - v4: WRITE data is encoded inline into libnfs's fixed PDU buffer: any
 *    nfs_pwrite above 3944 bytes (with ganesha's 50-byte handles) fails
 *    with "ZDR error: Failed to encode COMPOUND4args".  Writes go out in
 *    3 KiB synchronous calls: v4 writes are slow, prefer v3 for writes.
 *  - times are set through nfs_lutimes (struct timeval): microseconds only,
 *    "now" is the client's clock, and setting one of atime/mtime rewrites
 *    the other with its current value truncated to microseconds.
 *  - v4: a handle from nfs_create() cannot be written (every WRITE fails
 *    with "ZDR error: Failed to encode COMPOUND4args"), so files are
 *    created with nfs_open2(O_CREAT); that creates GUARDED, so O_CREAT
 *    without O_EXCL on an existing file gives EEXIST and is retried as a
 *    plain open.
 *  - v4: nfs_mknod makes only character and block devices; fifos and
 *    sockets give EOPNOTSUPP.
 *  - no RENAME_EXCHANGE (EINVAL); RENAME_NOREPLACE is a lookup then rename,
 *    not atomic.
 *  - the change attribute is not exposed: attr->change is 0.
 *  - nfs4_set_client_name() leaks the name it replaces (nfs_init_context
 *    sets "Libnfs pid:PID TIME", the same for every context made in one
 *    second, so each connection must set its own): 27 bytes a connection,
 *    suppressed for LeakSanitizer below.
 *  - a failed mount reports most connection failures as -EIO ("nfs_service
 *    failed"), so hb_nfs_open first probes the TCP port itself to return
 *    ECONNREFUSED / ETIMEDOUT / EHOSTUNREACH within the timeout.
 *  - O_APPEND is dropped at open: callers give explicit offsets.
 *  - v4: a context whose TCP connection breaks is never reconnected (the
 *    v4 mount leaves autoreconnect off; libnfs's debug log says "reconnect
 *    is disabled"): every later call on it fails with EIO, so the
 *    connection gets a fresh context (conn_broken, invariant 4).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#include <nfsc/libnfs.h>
#include <nfsc/libnfs-raw.h>
#include <nfsc/libnfs-raw-nfs.h>
#include <nfsc/libnfs-raw-nfs4.h>
#include "backend/backend.h"

#define NFS_DEFAULT_TIMEOUT_MS 10000u
#define NFS_DEFAULT_NCONN 4
#define NFS_MAX_NCONN 64
#define NFS_V4_READMAX (1u << 20)
#define NFS_V4_WRITEMAX 3072u /* libnfs 4.0 encodes v4 WRITE data inline */
#define NFS_MIN_IO 512u
#define NFS_IOMAX_CAP (1u << 24) /* keep each RPC's count well inside int */

/* The parts of a source URL (see the top comment). */
struct nfs_src {
	char host[256];
	char path[1024]; /* normalised: starts with '/', no '//' or final '/' */
	int port;        /* 0 = not given */
	int mountport;   /* 0 = not given */
	int version;
};

struct rd_orphan;

struct nfs_conn {
	pthread_mutex_t lock;
	struct nfs_context *ctx; /* lock */
	int64_t uid, gid;        /* lock; invariant 2 */
	atomic_int nfiles;       /* open files pinned here (a hint) */
	int idx;                 /* position in the pool */
	/* lock: contexts replaced after v4 state was lost (invariant 4);
	 * files may still hold handles on them; destroyed at close. */
	struct nfs_context **retired;
	int nretired;
	/* lock: the entries of listings whose connection broke, which
	 * libnfs may still call back into (rd_getattrs); freed at close,
	 * after the contexts */
	struct rd_orphan *orphans;
};

struct nfs_hb {
	struct hb base;
	int version;
	/* Bytes per READ / WRITE call; over v4 halved (atomically, never
	 * below NFS_MIN_IO) when the server refuses a size. */
	_Atomic uint32_t readmax, writemax;
	atomic_uint next;           /* round-robin start for conn_get */
	struct nfs_src src;         /* read-only after open */
	uint32_t timeout_ms;        /* read-only after open */
	int nconn;
	struct nfs_conn conn[];
};

enum { VIEW_NONE, VIEW_OPEN, VIEW_FAILED };

/* One open file's handle on one connection (invariant 5). */
struct nfs_view {
	struct nfs_context *ctx; /* the context fh belongs to */
	struct nfsfh *fh;        /* NULL: not open on this connection */
	atomic_int state;        /* VIEW_*: a hint for read_conn and release */
};

struct hb_file {
	struct nfs_conn *conn;   /* the owner: opened it, writes, closes */
	struct hb_cred cred;
	int has_cred;
	int flags;               /* for a reopen: access mode only */
	int known;               /* fsid/fileid known: views allowed */
	uint64_t fsid, fileid;   /* from the open, to check reopens */
	atomic_int reading;      /* preads in progress */
	atomic_uint next;        /* round-robin start for read_conn */
	char *path;              /* for a reopen, after view[] */
	struct nfs_view view[];  /* [nconn], view[conn->idx] the owner's */
};

static struct nfs_hb *to_nfs(struct hb *b)
{
	return (struct nfs_hb *)b;
}

/* ---- connections ------------------------------------------------------ */

static struct nfs_conn *conn_get(struct nfs_hb *n)
{
	unsigned start = atomic_fetch_add_explicit(&n->next, 1, memory_order_relaxed);
	for (int i = 0; i < n->nconn; i++) {
		struct nfs_conn *c = &n->conn[(start + (unsigned)i) % (unsigned)n->nconn];
		if (!pthread_mutex_trylock(&c->lock))
			return c;
	}
	struct nfs_conn *c = &n->conn[start % (unsigned)n->nconn];
	pthread_mutex_lock(&c->lock);
	return c;
}

static void conn_put(struct nfs_conn *c)
{
	pthread_mutex_unlock(&c->lock);
}

/* Invariant 1: called with c->lock held, before the call it prepares. */
static void conn_cred(struct nfs_conn *c, const struct hb_cred *cr)
{
	int64_t uid = cr ? (int64_t)cr->uid : (int64_t)geteuid();
	int64_t gid = cr ? (int64_t)cr->gid : (int64_t)getegid();
	if (c->uid != uid) {
		nfs_set_uid(c->ctx, (int)uid);
		c->uid = uid;
	}
	if (c->gid != gid) {
		nfs_set_gid(c->ctx, (int)gid);
		c->gid = gid;
	}
}

/* libnfs returns -errno, except that a call that timed out gives -EINTR
 * and some failures before any reply (no
 * connection, a call that could not be queued) come back as -1 with only
 * a message.  -1 is also a genuine NFS3ERR_PERM, so look at the message. */
static int nfs_err(struct nfs_context *ctx, int r)
{
	if (r == -EINTR)
		return -ETIMEDOUT; /* libnfs's code for a call that timed out */
	if (r == -EFAULT) {
		/* The portmapper has no MOUNT or NFS registered. */
		const char *m = nfs_get_error(ctx);
		if (m && strstr(m, "not available"))
			return -ECONNREFUSED;
	}
	if (r >= 0 || r != -1)
		return r;
	const char *m = nfs_get_error(ctx);
	if (!m)
		return -EPERM;
	if (strstr(m, "timed out") || strstr(m, "Timed out") || strstr(m, "timeout"))
		return -ETIMEDOUT;
	if (strstr(m, "refused"))
		return -ECONNREFUSED;
	if (strstr(m, "unreachable"))
		return -EHOSTUNREACH;
	if (strstr(m, "resolv") || strstr(m, "Invalid address"))
		return -EHOSTUNREACH;
	if (strstr(m, "PERM") || strstr(m, "ermission"))
		return -EPERM;
	if (strstr(m, "connect") || strstr(m, "Connect") || strstr(m, "socket"))
		return -ENOTCONN;
	return -EIO;
}

static int conn_open(struct nfs_conn *c, const struct nfs_src *s, int idx,
		     uint32_t timeout_ms, char *err, size_t err_len);

static int state_lost(const struct nfs_hb *n, int r)
{
	return n->version == 4 && r == -ERANGE;
}

/* Invariant 4: give @c a fresh context.  c->lock held. */
static int conn_reset(struct nfs_hb *n, struct nfs_conn *c)
{
	struct nfs_conn fresh = {.idx = c->idx};
	char err[256];
	int r = conn_open(&fresh, &n->src, c->idx, n->timeout_ms, err, sizeof(err));
	struct nfs_context **v = NULL;
	if (!r) {
		v = realloc(c->retired, ((size_t)c->nretired + 1) * sizeof(*v));
		if (v)
			c->retired = v;
		else
			r = -ENOMEM;
	}
	if (r) {
		if (fresh.ctx)
			nfs_destroy_context(fresh.ctx);
		return r;
	}
	c->retired[c->nretired++] = c->ctx;
	c->ctx = fresh.ctx;
	c->uid = c->gid = -1;
	return 0;
}

/*
 * Did the call that returned @r fail because @c's TCP connection broke?
 * A context libnfs does not reconnect (any v4 one: see the top comment)
 * is dead for good, and every later call on it fails the same way: its
 * wait for the reply says "nfs_service failed".
 */
static int conn_broken(struct nfs_conn *c, int r)
{
	const char *m = r == -EIO ? nfs_get_error(c->ctx) : NULL;
	return m && strstr(m, "nfs_service failed") != NULL;
}

/* Should a call that returned @r be retried after a conn_reset?  A broken
 * connection is replaced even when the call is not retried. */
static int conn_retry(struct nfs_hb *n, struct nfs_conn *c, int r, int attempt)
{
	if (conn_broken(c, r))
		return conn_reset(n, c) == 0 && attempt == 0;
	return attempt == 0 && state_lost(n, r) && conn_reset(n, c) == 0;
}

/*
 * Invariants 4, 5: make @f's view on @c (locked) a handle of c->ctx,
 * (re)opening it by path: the owner's with the file's access mode, any
 * other read-only.  A handle that names another file than the one opened
 * (renamed over meanwhile) is refused with ESTALE.
 */
static int view_current(struct nfs_hb *n, struct hb_file *f, struct nfs_conn *c)
{
	struct nfs_view *v = &f->view[c->idx];
	struct nfsfh *fh;
	if (v->fh && v->ctx == c->ctx)
		return 0;
	conn_cred(c, f->has_cred ? &f->cred : NULL);
	int r = nfs_err(c->ctx, nfs_open(c->ctx, f->path,
					 c == f->conn ? f->flags : O_RDONLY, &fh));
	if (!r && f->known) {
		struct nfs_stat_64 st;
		r = nfs_err(c->ctx, nfs_fstat64(c->ctx, fh, &st));
		if (!r && (st.nfs_ino != f->fileid ||
			   (n->version == 3 && st.nfs_dev != f->fsid)))
			r = -ESTALE;
		if (r)
			nfs_close(c->ctx, fh);
	}
	if (r)
		return r;
	if (v->fh)
		nfs_close(v->ctx, v->fh); /* frees it; the CLOSE itself fails */
	v->ctx = c->ctx;
	v->fh = fh;
	atomic_store(&v->state, VIEW_OPEN);
	return 0;
}

/*
 * @call (which may name the context `ctx`) on connection @c, locked, with
 * credentials @cr, retried once on a fresh context when libnfs's v4 state
 * went bad (invariant 4: EXPIRED, BAD_SEQID, BAD_STATEID give ERANGE).
 * Evaluates to 0 or a negative errno.
 */
#define CONN_CALL(n, c, cr, call)                                              \
	({                                                                     \
		int r_;                                                        \
		for (int t_ = 0;; t_++) {                                      \
			conn_cred((c), (cr));                                  \
			struct nfs_context *ctx = (c)->ctx;                    \
			r_ = nfs_err(ctx, (call));                             \
			if (!conn_retry((n), (c), r_, t_))                     \
				break;                                         \
		}                                                              \
		r_;                                                            \
	})

/* ---- attributes ------------------------------------------------------- */

static void attr_from_stat64(struct hb_attr *a, const struct nfs_stat_64 *st)
{
	memset(a, 0, sizeof(*a));
	a->fsid = st->nfs_dev;
	a->fileid = st->nfs_ino;
	a->mode = (uint32_t)st->nfs_mode;
	a->nlink = (uint32_t)st->nfs_nlink;
	a->uid = (uint32_t)st->nfs_uid;
	a->gid = (uint32_t)st->nfs_gid;
	a->size = st->nfs_size;
	a->blocks = st->nfs_blocks;
	a->rdev = st->nfs_rdev;
	a->atime.tv_sec = (time_t)st->nfs_atime;
	a->atime.tv_nsec = (long)st->nfs_atime_nsec;
	a->mtime.tv_sec = (time_t)st->nfs_mtime;
	a->mtime.tv_nsec = (long)st->nfs_mtime_nsec;
	a->ctime.tv_sec = (time_t)st->nfs_ctime;
	a->ctime.tv_nsec = (long)st->nfs_ctime_nsec;
}

static void attr_from_dirent(struct hb_attr *a, const struct nfsdirent *e)
{
	memset(a, 0, sizeof(*a));
	a->fsid = e->dev;
	a->fileid = e->inode;
	a->mode = e->mode;
	a->nlink = e->nlink;
	a->uid = e->uid;
	a->gid = e->gid;
	a->size = e->size;
	a->blocks = e->blocks;
	a->rdev = e->rdev;
	a->atime.tv_sec = e->atime.tv_sec;
	a->atime.tv_nsec = e->atime_nsec;
	a->mtime.tv_sec = e->mtime.tv_sec;
	a->mtime.tv_nsec = e->mtime_nsec;
	a->ctime.tv_sec = e->ctime.tv_sec;
	a->ctime.tv_nsec = e->ctime_nsec;
}

static int lstat_locked(struct nfs_conn *c, const char *path, struct hb_attr *attr)
{
	struct nfs_stat_64 st;
	int r = nfs_err(c->ctx, nfs_lstat64(c->ctx, path, &st));
	if (!r)
		attr_from_stat64(attr, &st);
	return r;
}

/* ---- operations ------------------------------------------------------- */

static void rd_orphans_free(struct rd_orphan *o);

static void nfs_hb_close(struct hb *b)
{
	struct nfs_hb *n = to_nfs(b);
	if (!n)
		return;
	for (int i = 0; i < n->nconn; i++) {
		struct nfs_conn *c = &n->conn[i];
		if (c->ctx)
			nfs_destroy_context(c->ctx);
		for (int j = 0; j < c->nretired; j++)
			nfs_destroy_context(c->retired[j]);
		free(c->retired);
		rd_orphans_free(c->orphans);
		pthread_mutex_destroy(&c->lock);
	}
	free(n);
}

static int nfs_hb_getattr(struct hb *b, const struct hb_cred *cr,
			  const char *path, struct hb_attr *attr)
{
	struct nfs_conn *c = conn_get(to_nfs(b));
	int r;
	for (int t = 0;; t++) {
		conn_cred(c, cr);
		r = lstat_locked(c, path, attr);
		if (!conn_retry(to_nfs(b), c, r, t))
			break;
	}
	conn_put(c);
	return r;
}

/* One entry of a listing whose attributes are asked for (readdir). */
struct rd_ent {
	char *name;
	struct hb_attr a;
	int r;      /* 0, or a negative errno */
	int state;  /* RD_* */
	size_t *inflight; /* while RD_SENT: the count to drop on the reply */
};

enum { RD_HAVE, RD_ASK, RD_SENT };

#define NFS_RD_DEPTH 32 /* GETATTRs of one listing in flight at once */

/* A listing's entries left to a broken connection (nfs_conn.orphans). */
struct rd_orphan {
	struct rd_orphan *next;
	struct rd_ent *ents;
	size_t cnt;
	size_t *inflight;
};

static void rd_orphans_free(struct rd_orphan *o)
{
	while (o) {
		struct rd_orphan *next = o->next;
		for (size_t i = 0; i < o->cnt; i++)
			free(o->ents[i].name);
		free(o->ents);
		free(o->inflight);
		free(o);
		o = next;
	}
}

static void rd_getattr_cb(int err, struct nfs_context *ctx, void *data,
			  void *priv)
{
	struct rd_ent *e = priv;
	e->r = nfs_err(ctx, err);
	if (!e->r)
		attr_from_stat64(&e->a, data);
	e->state = RD_HAVE;
	(*e->inflight)--;
}

/*
 * The attributes of @ents[0..n) in state RD_ASK (their names below @dir),
 * NFS_RD_DEPTH GETATTRs in flight on one connection instead of one round
 * trip each.  An entry that cannot be asked for gets an error.  Returns
 * 0, -ENOMEM, or -EIO if the connection broke: libnfs may then still
 * call back into @ents (when the old context is destroyed, at close), so
 * @ents and their names pass to the connection, which frees them after
 * its contexts; the caller must not touch them again.
 */
static int rd_getattrs(struct nfs_hb *n, const struct hb_cred *cr,
		       const char *dir, struct rd_ent *ents, size_t cnt)
{
	size_t plen = strlen(dir), next = 0;
	/* on the heap: leaked with @ents if the connection breaks */
	size_t *inflight = calloc(1, sizeof(*inflight));
	char *child = NULL;
	int broken = 0;
	if (!inflight)
		return -ENOMEM;
	struct nfs_conn *c = conn_get(n);
	conn_cred(c, cr);
	struct nfs_context *ctx = c->ctx;
	for (;;) {
		while (!broken && *inflight < NFS_RD_DEPTH && next < cnt) {
			struct rd_ent *e = &ents[next++];
			if (e->state != RD_ASK)
				continue;
			size_t nlen = strlen(e->name);
			char *p = realloc(child, plen + nlen + 2);
			if (!p) {
				e->r = -ENOMEM;
				e->state = RD_HAVE;
				continue;
			}
			child = p;
			memcpy(child, dir, plen);
			size_t o = plen;
			if (o == 0 || child[o - 1] != '/')
				child[o++] = '/';
			memcpy(child + o, e->name, nlen + 1);
			/* libnfs copies the path: child is reused */
			e->state = RD_SENT;
			e->inflight = inflight;
			if (nfs_lstat64_async(ctx, child, rd_getattr_cb, e)) {
				e->r = nfs_err(ctx, -1);
				e->state = RD_HAVE;
				continue;
			}
			(*inflight)++;
		}
		if (broken || (!*inflight && next == cnt))
			break;
		/* libnfs's own timeouts (nfs_set_timeout) end every call:
		 * service at least every 100 ms, as its sync calls do */
		struct pollfd pfd = {nfs_get_fd(ctx), (short)nfs_which_events(ctx), 0};
		int pr = poll(&pfd, 1, 100);
		if (nfs_service(ctx, pr < 0 ? 0 : pfd.revents) < 0)
			broken = 1;
	}
	/* libnfs does not reconnect it (conn_broken): a fresh context for
	 * the next caller; the old one, retired, is never serviced again */
	if (broken) {
		conn_reset(n, c);
		struct rd_orphan *o = malloc(sizeof(*o));
		if (o) { /* else leaked: libnfs may still write into them */
			*o = (struct rd_orphan){c->orphans, ents, cnt, inflight};
			c->orphans = o;
		}
	}
	conn_put(c);
	free(child);
	if (!broken) {
		free(inflight);
		return 0;
	}
	return -EIO;
}

static int nfs_hb_readdir(struct hb *b, const struct hb_cred *cr,
			  const char *path, hb_dirent_fn fn, void *arg)
{
	struct nfs_hb *n = to_nfs(b);
	struct nfsdir *dir = NULL;
	struct nfsdirent *e;
	struct rd_ent *ents = NULL;
	size_t cnt = 0, cap = 0;
	int r;

	struct nfs_conn *c = conn_get(n);
	for (int t = 0;; t++) {
		conn_cred(c, cr);
		r = nfs_err(c->ctx, nfs_opendir(c->ctx, path, &dir));
		if (!conn_retry(n, c, r, t))
			break;
	}
	struct nfs_context *dctx = c->ctx;
	conn_put(c);
	if (r)
		return r;
	/* Invariant 3: dir is ours alone until closedir. */
	while ((e = nfs_readdir(dctx, dir)) != NULL) {
		if (!strcmp(e->name, ".") || !strcmp(e->name, ".."))
			continue;
		if (n->version == 3 && e->inode != 0 && e->mode != 0) {
			/* READDIRPLUS gave the attributes: straight on */
			struct hb_attr a;
			attr_from_dirent(&a, e);
			r = fn(e->name, &a, arg);
			if (r)
				break;
			continue;
		}
		/* v4 (libnfs 4.0 leaves the entry's inode, dev, ...
		 * uninitialised), or a v3 entry without attributes: ask, many
		 * at once, after the listing */
		if (cnt == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct rd_ent *v = realloc(ents, ncap * sizeof(*v));
			if (!v) {
				r = -ENOMEM;
				break;
			}
			ents = v;
			cap = ncap;
		}
		struct rd_ent *d = &ents[cnt];
		memset(d, 0, sizeof(*d));
		d->name = strdup(e->name);
		if (!d->name) {
			r = -ENOMEM;
			break;
		}
		cnt++;
		d->state = RD_ASK;
	}
	pthread_mutex_lock(&c->lock);
	nfs_closedir(dctx, dir); /* dctx may be retired by now: still valid */
	conn_put(c);
	if (!r && cnt) {
		r = rd_getattrs(n, cr, path, ents, cnt);
		if (r == -EIO)
			return r; /* ents belong to the connection now */
	}
	for (size_t i = 0; i < cnt && !r; i++) {
		if (ents[i].r == -ENOENT)
			continue; /* removed since the listing */
		r = fn(ents[i].name, ents[i].r ? NULL : &ents[i].a, arg);
	}
	for (size_t i = 0; i < cnt; i++)
		free(ents[i].name);
	free(ents);
	return r;
}

static struct nfs_conn *conn_for_open(struct nfs_hb *n)
{
	struct nfs_conn *best = &n->conn[0];
	for (int i = 1; i < n->nconn; i++)
		if (atomic_load(&n->conn[i].nfiles) < atomic_load(&best->nfiles))
			best = &n->conn[i];
	return best;
}

static int nfs_hb_open(struct hb *b, const struct hb_cred *cr, const char *path,
		       int flags, uint32_t mode, struct hb_file **fp,
		       struct hb_attr *attr)
{
	struct nfs_hb *n = to_nfs(b);
	size_t plen = strlen(path);
	size_t vsize = (size_t)n->nconn * sizeof(struct nfs_view);
	struct hb_file *f = calloc(1, sizeof(*f) + vsize + plen + 1);
	int r;
	if (!f)
		return -ENOMEM;
	f->path = (char *)f + sizeof(*f) + vsize;
	memcpy(f->path, path, plen + 1);
	if (cr) {
		f->cred = *cr;
		f->has_cred = 1;
	}
	flags &= O_ACCMODE | O_CREAT | O_EXCL | O_TRUNC;
	f->flags = flags & O_ACCMODE;
	struct nfs_conn *c = conn_for_open(n);
	struct nfs_view *v = &f->view[c->idx];
	pthread_mutex_lock(&c->lock);
	for (int t = 0;; t++) {
		conn_cred(c, cr);
		if (flags & O_CREAT) {
			/* Not nfs_create: over v4 its handle cannot be
			 * written ("Failed to encode COMPOUND4args"). */
			r = nfs_open2(c->ctx, path, flags, (int)(mode & 07777), &v->fh);
			/* libnfs v4 creates GUARDED even without O_EXCL. */
			if (r == -EEXIST && !(flags & O_EXCL) && n->version == 4)
				r = nfs_open(c->ctx, path, flags & ~O_CREAT, &v->fh);
		} else {
			r = nfs_open(c->ctx, path, flags, &v->fh);
		}
		r = nfs_err(c->ctx, r);
		if (!conn_retry(n, c, r, t))
			break;
	}
	v->ctx = c->ctx;
	if (!r && attr) {
		struct nfs_stat_64 st;
		r = nfs_err(c->ctx, nfs_fstat64(c->ctx, v->fh, &st));
		if (r) {
			nfs_close(c->ctx, v->fh);
		} else {
			attr_from_stat64(attr, &st);
			f->fsid = st.nfs_dev;
			f->fileid = st.nfs_ino;
			f->known = 1;
		}
	}
	conn_put(c);
	if (r) {
		free(f);
		return r;
	}
	f->conn = c;
	atomic_store(&v->state, VIEW_OPEN);
	atomic_fetch_add(&c->nfiles, 1);
	*fp = f;
	return 0;
}

/*
 * The chunk-and-retry loop of pread and pwrite through @f's view on @c
 * (locked; for a write the owner): calls
 * of at most readmax / writemax bytes; once per call, a fresh context when
 * the v4 state was lost (invariant 4); over v4, the size halved while the
 * server refuses it (READ: ganesha answers EIO above its maximum rather
 * than shortening; WRITE: libnfs 4.0 cannot encode a big one).  Stops at
 * end of file (READ gives 0) or error; a WRITE the server accepts nothing
 * of is EIO.  Returns the bytes done, or the error if none were.
 */
static int64_t file_io(struct nfs_hb *n, struct hb_file *f, struct nfs_conn *c,
		       char *buf, size_t len, uint64_t off, int write)
{
	struct nfs_view *v = &f->view[c->idx];
	_Atomic uint32_t *max = write ? &n->writemax : &n->readmax;
	size_t done = 0;
	int retried = 0;
	int r = view_current(n, f, c);
	while (!r && done < len) {
		conn_cred(c, f->has_cred ? &f->cred : NULL);
		size_t want = len - done;
		uint32_t m = atomic_load_explicit(max, memory_order_relaxed);
		if (want > m)
			want = m;
		r = nfs_err(c->ctx, write ? nfs_pwrite(c->ctx, v->fh, off + done, want,
						       buf + done)
					  : nfs_pread(c->ctx, v->fh, off + done, want,
						      buf + done));
		if (conn_retry(n, c, r, retried)) {
			retried = 1;
			r = view_current(n, f, c);
			continue;
		}
		if (r == -EIO && n->version == 4 && want > NFS_MIN_IO) {
			atomic_store_explicit(max, (uint32_t)want / 2, memory_order_relaxed);
			r = 0;
			continue;
		}
		if (r == 0 && write)
			r = -EIO; /* a server that accepts nothing */
		if (r <= 0)
			break; /* error, or end of file */
		done += (size_t)r;
		r = 0;
	}
	if (r < 0 && done == 0)
		return r;
	return (int64_t)done;
}

/*
 * The connection, locked, for a READ of @f: the owner unless another READ
 * of @f is in progress and a connection is free, preferring one where @f
 * has a view already.  Views are opened lazily, so a file read by one
 * thread at a time never opens one.
 */
static struct nfs_conn *read_conn(struct nfs_hb *n, struct hb_file *f)
{
	struct nfs_conn *own = f->conn;
	if (atomic_fetch_add(&f->reading, 1) == 0 || !f->known || n->nconn == 1) {
		pthread_mutex_lock(&own->lock);
		return own;
	}
	if (!pthread_mutex_trylock(&own->lock))
		return own;
	unsigned start = atomic_fetch_add_explicit(&f->next, 1, memory_order_relaxed);
	for (int pass = 0; pass < 2; pass++) {
		for (int i = 0; i < n->nconn; i++) {
			struct nfs_conn *c = &n->conn[(start + (unsigned)i) % (unsigned)n->nconn];
			int st = atomic_load_explicit(&f->view[c->idx].state,
						      memory_order_relaxed);
			if (c == own || st == VIEW_FAILED || (pass == 0 && st != VIEW_OPEN))
				continue;
			if (!pthread_mutex_trylock(&c->lock))
				return c;
		}
	}
	pthread_mutex_lock(&own->lock);
	return own;
}

static int64_t nfs_hb_pread(struct hb *b, struct hb_file *f, void *buf,
			    size_t len, uint64_t off)
{
	struct nfs_hb *n = to_nfs(b);
	struct nfs_conn *c = read_conn(n, f);
	if (c != f->conn) {
		int r = view_current(n, f, c);
		if (conn_retry(n, c, r, 0))
			r = view_current(n, f, c);
		if (r) {
			/* Only a shortcut: read through the owner.  A stale
			 * handle left in the view is closed at release. */
			atomic_store(&f->view[c->idx].state, VIEW_FAILED);
			conn_put(c);
			c = f->conn;
			pthread_mutex_lock(&c->lock);
		}
	}
	int64_t r = file_io(n, f, c, buf, len, off, 0);
	conn_put(c);
	atomic_fetch_sub(&f->reading, 1);
	return r;
}

static int64_t nfs_hb_pwrite(struct hb *b, struct hb_file *f, const void *buf,
			     size_t len, uint64_t off)
{
	pthread_mutex_lock(&f->conn->lock);
	/* nfs_pwrite takes a const buffer: file_io only passes it on. */
	int64_t r = file_io(to_nfs(b), f, f->conn, (char *)(uintptr_t)buf, len, off, 1);
	conn_put(f->conn);
	return r;
}

static int nfs_hb_fsync(struct hb *b, struct hb_file *f)
{
	struct nfs_conn *c = f->conn;
	pthread_mutex_lock(&c->lock);
	int r = view_current(to_nfs(b), f, c);
	if (!r) {
		conn_cred(c, f->has_cred ? &f->cred : NULL);
		r = nfs_err(c->ctx, nfs_fsync(c->ctx, f->view[c->idx].fh));
	}
	conn_put(c);
	return r;
}

static int nfs_hb_release(struct hb *b, struct hb_file *f)
{
	struct nfs_hb *n = to_nfs(b);
	struct nfs_conn *c = f->conn;
	int r = 0;
	/* No READ of f is in progress: the states are exact.  The views
	 * first; their errors do not matter, the owner's is the answer. */
	for (int i = 0; i < n->nconn; i++) {
		struct nfs_conn *vc = &n->conn[i];
		struct nfs_view *v = &f->view[i];
		if (vc == c || atomic_load(&v->state) == VIEW_NONE)
			continue;
		pthread_mutex_lock(&vc->lock);
		if (v->fh) {
			conn_cred(vc, f->has_cred ? &f->cred : NULL);
			nfs_close(v->ctx, v->fh);
		}
		conn_put(vc);
	}
	struct nfs_view *v = &f->view[c->idx];
	pthread_mutex_lock(&c->lock);
	conn_cred(c, f->has_cred ? &f->cred : NULL);
	r = nfs_err(v->ctx, nfs_close(v->ctx, v->fh));
	if (v->ctx != c->ctx || state_lost(n, r))
		r = 0; /* the server dropped that state already */
	conn_put(c);
	atomic_fetch_sub(&c->nfiles, 1);
	free(f);
	return r;
}

static void tv_from_ts(struct timeval *tv, const struct timespec *ts)
{
	tv->tv_sec = ts->tv_sec;
	tv->tv_usec = ts->tv_nsec / 1000;
}

static int nfs_hb_setattr(struct hb *b, const struct hb_cred *cr,
			  const char *path, const struct hb_setattr *sa,
			  struct hb_attr *attr)
{
	struct nfs_conn *c = conn_get(to_nfs(b));
	struct hb_attr cur;
	int r = 0;
	const uint32_t times = HB_SET_ATIME | HB_SET_MTIME | HB_SET_ATIME_NOW |
			       HB_SET_MTIME_NOW;

	conn_cred(c, cr);
	/* Partial chown and partial utimes need the current values. */
	if (((sa->valid & (HB_SET_UID | HB_SET_GID)) &&
	     (sa->valid & (HB_SET_UID | HB_SET_GID)) != (HB_SET_UID | HB_SET_GID)) ||
	    ((sa->valid & times) && !((sa->valid & (HB_SET_ATIME | HB_SET_ATIME_NOW)) &&
				      (sa->valid & (HB_SET_MTIME | HB_SET_MTIME_NOW))))) {
		r = lstat_locked(c, path, &cur);
		if (r)
			goto out;
	}
	if (sa->valid & (HB_SET_UID | HB_SET_GID)) {
		int uid = (int)(sa->valid & HB_SET_UID ? sa->uid : cur.uid);
		int gid = (int)(sa->valid & HB_SET_GID ? sa->gid : cur.gid);
		r = CONN_CALL(to_nfs(b), c, cr, nfs_lchown(c->ctx, path, uid, gid));
		if (r)
			goto out;
	}
	if (sa->valid & HB_SET_MODE) {
		r = CONN_CALL(to_nfs(b), c, cr, nfs_lchmod(c->ctx, path, (int)(sa->mode & 07777)));
		if (r)
			goto out;
	}
	if (sa->valid & HB_SET_SIZE) {
		r = CONN_CALL(to_nfs(b), c, cr, nfs_truncate(c->ctx, path, sa->size));
		if (r)
			goto out;
	}
	if (sa->valid & times) {
		struct timeval tv[2], now;
		gettimeofday(&now, NULL);
		if (sa->valid & HB_SET_ATIME_NOW)
			tv[0] = now;
		else if (sa->valid & HB_SET_ATIME)
			tv_from_ts(&tv[0], &sa->atime);
		else
			tv_from_ts(&tv[0], &cur.atime);
		if (sa->valid & HB_SET_MTIME_NOW)
			tv[1] = now;
		else if (sa->valid & HB_SET_MTIME)
			tv_from_ts(&tv[1], &sa->mtime);
		else
			tv_from_ts(&tv[1], &cur.mtime);
		r = CONN_CALL(to_nfs(b), c, cr, nfs_lutimes(c->ctx, path, tv));
		if (r)
			goto out;
	}
	if (attr)
		r = lstat_locked(c, path, attr);
out:
	conn_put(c);
	return r;
}

/* One locked call on any connection with the caller's credentials. */
#define NFS_CALL(b, cr, call)                                                  \
	({                                                                     \
		struct nfs_conn *nc_ = conn_get(to_nfs(b));                    \
		int nr_ = CONN_CALL(to_nfs(b), nc_, (cr), call);               \
		conn_put(nc_);                                                 \
		nr_;                                                           \
	})

static int nfs_hb_mknod(struct hb *b, const struct hb_cred *cr, const char *path,
			uint32_t mode, uint64_t rdev)
{
	if (S_ISREG(mode)) {
		/* nfs_mknod makes devices, fifos and sockets; a regular
		 * file is an exclusive create. */
		struct hb_file *f;
		int r = nfs_hb_open(b, cr, path, O_WRONLY | O_CREAT | O_EXCL,
				    mode, &f, NULL);
		return r ? r : nfs_hb_release(b, f);
	}
	if (to_nfs(b)->version == 4 && !S_ISCHR(mode) && !S_ISBLK(mode))
		return -EOPNOTSUPP; /* libnfs: "Invalid file type for MKNOD call" */
	return NFS_CALL(b, cr, nfs_mknod(ctx, path, (int)mode, (int)rdev));
}

static int nfs_hb_mkdir(struct hb *b, const struct hb_cred *cr, const char *path,
			uint32_t mode)
{
	return NFS_CALL(b, cr, nfs_mkdir2(ctx, path, (int)(mode & 07777)));
}

static int nfs_hb_unlink(struct hb *b, const struct hb_cred *cr, const char *path)
{
	return NFS_CALL(b, cr, nfs_unlink(ctx, path));
}

static int nfs_hb_rmdir(struct hb *b, const struct hb_cred *cr, const char *path)
{
	return NFS_CALL(b, cr, nfs_rmdir(ctx, path));
}

static int nfs_hb_rename(struct hb *b, const struct hb_cred *cr,
			 const char *from, const char *to, unsigned int flags)
{
	if (flags & ~(unsigned)RENAME_NOREPLACE)
		return -EINVAL; /* RENAME_EXCHANGE, RENAME_WHITEOUT */
	struct nfs_conn *c = conn_get(to_nfs(b));
	int r = 0;
	conn_cred(c, cr);
	if (flags & RENAME_NOREPLACE) {
		struct nfs_stat_64 st;
		r = nfs_err(c->ctx, nfs_lstat64(c->ctx, to, &st));
		if (r == 0)
			r = -EEXIST;
		else if (r == -ENOENT)
			r = 0;
	}
	if (!r)
		r = nfs_err(c->ctx, nfs_rename(c->ctx, from, to));
	conn_put(c);
	return r;
}

static int nfs_hb_symlink(struct hb *b, const struct hb_cred *cr,
			  const char *target, const char *path)
{
	return NFS_CALL(b, cr, nfs_symlink(ctx, target, path));
}

static int nfs_hb_readlink(struct hb *b, const struct hb_cred *cr,
			   const char *path, char *buf, size_t len)
{
	char *t = NULL;
	int r = NFS_CALL(b, cr, nfs_readlink2(ctx, path, &t));
	if (r) {
		free(t);
		return r;
	}
	size_t n = t ? strlen(t) : 0;
	if (n > len)
		n = len;
	if (n > (size_t)INT32_MAX)
		n = INT32_MAX;
	if (n)
		memcpy(buf, t, n);
	free(t);
	return (int)n;
}

static int nfs_hb_link(struct hb *b, const struct hb_cred *cr, const char *from,
		       const char *to)
{
	return NFS_CALL(b, cr, nfs_link(ctx, from, to));
}

static int nfs_hb_statfs(struct hb *b, const struct hb_cred *cr,
			 const char *path, struct hb_statfs *st)
{
	struct nfs_statvfs_64 v;
	int r = NFS_CALL(b, cr, nfs_statvfs64(ctx, path, &v));
	if (r)
		return r;
	st->bsize = v.f_bsize;
	st->frsize = v.f_frsize;
	st->blocks = v.f_blocks;
	st->bfree = v.f_bfree;
	st->bavail = v.f_bavail;
	st->files = v.f_files;
	st->ffree = v.f_ffree;
	st->namemax = v.f_namemax;
	return 0;
}

static const struct hb_ops nfs_ops = {
	.name = "nfs",
	.close = nfs_hb_close,
	.getattr = nfs_hb_getattr,
	.readdir = nfs_hb_readdir,
	.open = nfs_hb_open,
	.pread = nfs_hb_pread,
	.pwrite = nfs_hb_pwrite,
	.fsync = nfs_hb_fsync,
	.release = nfs_hb_release,
	.setattr = nfs_hb_setattr,
	.mknod = nfs_hb_mknod,
	.mkdir = nfs_hb_mkdir,
	.unlink = nfs_hb_unlink,
	.rmdir = nfs_hb_rmdir,
	.rename = nfs_hb_rename,
	.symlink = nfs_hb_symlink,
	.readlink = nfs_hb_readlink,
	.link = nfs_hb_link,
	.statfs = nfs_hb_statfs,
};

/* ---- opening ---------------------------------------------------------- */

static int parse_uint(const char *s, size_t len, unsigned max, int *out)
{
	unsigned v = 0;
	if (len == 0 || len > 10)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		v = v * 10 + (unsigned)(s[i] - '0');
		if (v > max)
			return -EINVAL;
	}
	*out = (int)v;
	return 0;
}

/* Parse @source into @s; on error write why into @err. */
static int parse_source(const char *source, struct nfs_src *s, char *err,
			size_t err_len)
{
	const char *p = source + 6; /* after "nfs://" */
	const char *why;

	memset(s, 0, sizeof(*s));
	s->version = 3;
	size_t hl = strcspn(p, ":/?");
	why = "missing host";
	if (hl == 0)
		goto bad;
	why = "host name too long";
	if (hl >= sizeof(s->host))
		goto bad;
	memcpy(s->host, p, hl);
	for (size_t i = 0; i < hl; i++) {
		unsigned char ch = (unsigned char)s->host[i];
		why = "bad character in host";
		if (!(ch == '.' || ch == '-' || ch == '_' || (ch >= '0' && ch <= '9') ||
		      ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z')))
			goto bad;
	}
	p += hl;
	if (*p == ':') {
		p++;
		size_t pl = strcspn(p, "/?");
		why = "bad port";
		if (parse_uint(p, pl, 65535, &s->port) || s->port == 0)
			goto bad;
		p += pl;
	}
	why = "missing export path";
	if (*p != '/')
		goto bad;
	/* Path up to '?': collapse slashes, drop a final one, refuse "..". */
	size_t o = 0;
	while (*p && *p != '?') {
		while (*p == '/')
			p++;
		if (!*p || *p == '?')
			break;
		size_t cl = strcspn(p, "/?");
		why = "'.' or '..' in path";
		if ((cl == 1 && p[0] == '.') || (cl == 2 && p[0] == '.' && p[1] == '.'))
			goto bad;
		why = "path too long";
		if (o + 1 + cl >= sizeof(s->path))
			goto bad;
		s->path[o++] = '/';
		memcpy(s->path + o, p, cl);
		o += cl;
		p += cl;
	}
	if (o == 0)
		s->path[o++] = '/';
	s->path[o] = '\0';
	if (*p == '?') {
		p++;
		while (*p) {
			size_t kl = strcspn(p, "&");
			const char *eq = memchr(p, '=', kl);
			why = "bad option (expected version=3|4 or mountport=N)";
			if (!eq)
				goto bad;
			size_t nl = (size_t)(eq - p), vl = kl - nl - 1;
			if (nl == 7 && !memcmp(p, "version", 7)) {
				why = "version must be 3 or 4";
				if (parse_uint(eq + 1, vl, 9, &s->version) ||
				    (s->version != 3 && s->version != 4))
					goto bad;
			} else if (nl == 9 && !memcmp(p, "mountport", 9)) {
				why = "bad mountport";
				if (parse_uint(eq + 1, vl, 65535, &s->mountport) ||
				    !s->mountport)
					goto bad;
			} else {
				goto bad;
			}
			p += kl;
			if (*p == '&')
				p++;
		}
	}
	return 0;
bad:
	snprintf(err, err_len, "invalid source '%s': %s (expected "
		 "nfs://host[:port]/export[/path][?version=3|4])", source, why);
	return -EINVAL;
}

/* Connect to host:port ourselves, waiting at most @timeout_ms, to learn why
 * a server cannot be reached (libnfs would say only EIO). */
static int probe_tcp(const char *host, int port, uint32_t timeout_ms, char *err,
		     size_t err_len)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
	char ps[8];
	int r = -EHOSTUNREACH;

	snprintf(ps, sizeof(ps), "%d", port);
	int g = getaddrinfo(host, ps, &hints, &res);
	if (g) {
		snprintf(err, err_len, "cannot resolve %s: %s", host, gai_strerror(g));
		return -EHOSTUNREACH;
	}
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
				ai->ai_protocol);
		if (fd < 0) {
			r = -errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			r = 0;
		} else if (errno != EINPROGRESS) {
			r = -errno;
		} else {
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};
			int pr;
			do
				pr = poll(&pfd, 1, (int)timeout_ms);
			while (pr < 0 && errno == EINTR);
			if (pr == 0) {
				r = -ETIMEDOUT;
			} else if (pr < 0) {
				r = -errno;
			} else {
				int e = 0;
				socklen_t l = sizeof(e);
				getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &l);
				r = -e;
			}
		}
		close(fd);
		if (r == 0)
			break;
	}
	freeaddrinfo(res);
	if (r)
		snprintf(err, err_len, "cannot reach %s port %d", host, port);
	return r;
}

/* Set up and mount one context; on error write why into @err. */
static int conn_open(struct nfs_conn *c, const struct nfs_src *s, int idx,
		     uint32_t timeout_ms, char *err, size_t err_len)
{
	char url[1400];
	int r;

	c->uid = c->gid = -1;
	c->ctx = nfs_init_context();
	if (!c->ctx)
		return -ENOMEM;
	/* libnfs counts its timeout in whole seconds. */
	nfs_set_timeout(c->ctx, (int)((timeout_ms + 999) / 1000 * 1000));
	nfs_set_dircache(c->ctx, 0); /* we are the cache; never stale lists */
	nfs_set_readahead(c->ctx, 0);
	nfs_set_autoreconnect(c->ctx, -1);
	/* Ports can only be given through a URL: let libnfs parse one. */
	int n = snprintf(url, sizeof(url), "nfs://%s%s?version=%d", s->host,
			 s->path, s->version);
	if (s->port)
		n += snprintf(url + n, sizeof(url) - (size_t)n, "&nfsport=%d", s->port);
	if (s->mountport && s->version == 3)
		n += snprintf(url + n, sizeof(url) - (size_t)n, "&mountport=%d",
			      s->mountport);
	if ((size_t)n >= sizeof(url))
		return -ENAMETOOLONG;
	struct nfs_url *u = nfs_parse_url_dir(c->ctx, url);
	if (!u) {
		snprintf(err, err_len, "libnfs cannot parse %s: %s", url,
			 nfs_get_error(c->ctx));
		return -EINVAL;
	}
	nfs_destroy_url(u);
	if (s->version == 4) {
		/* Each connection is its own v4 client: a unique name and a
		 * fresh verifier, or the server merges their state. */
		char name[128], verf[8] = {0};
		char host[64] = "";
		gethostname(host, sizeof(host) - 1);
		snprintf(name, sizeof(name), "hoardfs.%s.%d.%d.%p", host,
			 (int)getpid(), idx, (void *)c);
		if (getrandom(verf, sizeof(verf), 0) != (ssize_t)sizeof(verf))
			memcpy(verf, &c, sizeof(verf) < sizeof(c) ? sizeof(verf) : sizeof(c));
		nfs4_set_client_name(c->ctx, name);
		nfs4_set_verifier(c->ctx, verf);
	}
	r = nfs_err(c->ctx, nfs_mount(c->ctx, s->host, s->path));
	if (r) {
		snprintf(err, err_len, "mount %s:%s (NFSv%d): %s", s->host, s->path,
			 s->version, nfs_get_error(c->ctx));
		return r;
	}
	return 0;
}

int hb_nfs_open(const char *source, const struct hb_opts *opts, struct hb **bp,
		char *err, size_t err_len)
{
	struct nfs_src s;
	struct nfs_hb *n = NULL;
	int r;

	*bp = NULL;
	if (strncmp(source, "nfs://", 6)) {
		snprintf(err, err_len, "invalid source '%s'", source);
		return -EINVAL;
	}
	r = parse_source(source, &s, err, err_len);
	if (r)
		return r;
	r = probe_tcp(s.host, s.port ? s.port : s.version == 4 ? 2049 : 111,
		      opts && opts->timeout_ms ? opts->timeout_ms : NFS_DEFAULT_TIMEOUT_MS,
		      err, err_len);
	if (r)
		return r;
	int nconn = opts && opts->nconn > 0 ? opts->nconn : NFS_DEFAULT_NCONN;
	if (nconn > NFS_MAX_NCONN)
		nconn = NFS_MAX_NCONN;
	uint32_t timeout_ms = opts && opts->timeout_ms ? opts->timeout_ms
						      : NFS_DEFAULT_TIMEOUT_MS;

	n = calloc(1, sizeof(*n) + (size_t)nconn * sizeof(n->conn[0]));
	if (!n)
		return -ENOMEM;
	n->base.ops = &nfs_ops;
	n->version = s.version;
	n->src = s;
	n->timeout_ms = timeout_ms;
	int vl = snprintf(n->base.volume, sizeof(n->base.volume), "nfs://%s:%d%s%s",
			  s.host, s.port ? s.port : 2049, s.path,
			  s.version == 4 ? "?version=4" : "");
	if ((size_t)vl >= sizeof(n->base.volume)) {
		snprintf(err, err_len, "source too long for a volume name: %s", source);
		free(n);
		return -ENAMETOOLONG;
	}
	for (int i = 0; i < nconn; i++) {
		pthread_mutex_init(&n->conn[i].lock, NULL);
		n->conn[i].idx = i;
		n->nconn = i + 1; /* what nfs_hb_close must undo */
		r = conn_open(&n->conn[i], &s, i, timeout_ms, err, err_len);
		if ((r == -EIO || r == -ECONNREFUSED) && s.version == 3) {
			/* The portmapper answered (it often listens on every
			 * address) but MOUNT or NFS failed: say which. */
			int pr = probe_tcp(s.host, s.port ? s.port : 2049, timeout_ms,
					   err, err_len);
			if (!pr && s.mountport)
				pr = probe_tcp(s.host, s.mountport, timeout_ms, err, err_len);
			if (pr)
				r = pr;
		}
		if (r)
			goto fail;
	}
	uint64_t rmax = nfs_get_readmax(n->conn[0].ctx);
	uint64_t wmax = nfs_get_writemax(n->conn[0].ctx);
	atomic_init(&n->readmax, (uint32_t)(rmax ? (rmax < NFS_IOMAX_CAP ? rmax : NFS_IOMAX_CAP)
						 : NFS_V4_READMAX));
	atomic_init(&n->writemax, (uint32_t)(wmax ? (wmax < NFS_IOMAX_CAP ? wmax : NFS_IOMAX_CAP)
						  : NFS_V4_WRITEMAX));
	*bp = &n->base;
	return 0;
fail:
	nfs_hb_close(&n->base);
	return r;
}

/* LeakSanitizer: libnfs 4.0's nfs4_set_client_name() leaks the name it
 * replaces (see the top comment); 27 bytes per connection, at open only. */
const char *__lsan_default_suppressions(void);
__attribute__((used)) const char *__lsan_default_suppressions(void)
{
	return "leak:nfs4_set_client_name\n";
}

/* ...and do not list the suppression at every exit of an ASan build. */
const char *__lsan_default_options(void);
__attribute__((used)) const char *__lsan_default_options(void)
{
	return "print_suppressions=0";
}
