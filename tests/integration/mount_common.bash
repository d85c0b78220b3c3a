# mount_common.bash - helpers for tests/integration/mount_*.sh (sourced,
# not a test itself: run-tests.sh runs *.sh only).
#
# Each test gets: $W (its scratch dir), $SRC (the exported tree), $MNT,
# $CACHE, mount_hoard/umount_hoard, stat_field, and a cleanup trap that
# unmounts and stops only the daemons this test started (by pid).
set -u
HOARDFS_BIN=${HOARDFS_BIN:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/asan/hoardfs}
TOP=${HOARDFS_TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
W=${HOARD_TEST_DIR:-$(mktemp -d /tmp/hoardfs-test.XXXXXX)}
SRC=$W/src
MNT=$W/mnt
CACHE=$W/cache.img
LOG=$W/daemon.log
mkdir -p "$SRC" "$MNT"
# Leak reports at daemon exit would go to a log nobody reads: keep them
# fatal, but in the log (abort_on_error makes a failing exit status).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}

_pids=()
_mounts=()
_cleanups=()

skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; [ -f "$LOG" ] && tail -n 20 "$LOG"; exit 1; }
note() { echo "--- $*"; }

[ "$(id -u)" = 0 ] || skip "needs root (FUSE mounts, setfsuid)"
[ -c /dev/fuse ] || skip "no /dev/fuse"
[ -x "$HOARDFS_BIN" ] || skip "no $HOARDFS_BIN (make SAN=1)"

cleanup() {
	local m p
	for c in "${_cleanups[@]}"; do eval "$c" || true; done
	for m in "${_mounts[@]}"; do
		if mountpoint -q "$m"; then
			"$HOARDFS_BIN" umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
		fi
	done
	for p in "${_pids[@]}"; do
		kill -0 "$p" 2>/dev/null && kill "$p" 2>/dev/null
	done
	# and let them go: one still writing into $W as it exits (a daemon's
	# log, countproxy's stats) races run-tests.sh's rm -rf of $W, which
	# then fails with "Directory not empty" and leaves the directory behind
	local i
	for p in "${_pids[@]}"; do
		for i in $(seq 1 100); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
	done
	return 0
}
trap cleanup EXIT

# mount_hoard SOURCE MNT [extra -o options]: mounts (daemonised) and
# records the daemon's pid for cleanup.
mount_hoard() {
	local src=$1 mnt=$2 opts=${3:-}
	"$HOARDFS_BIN" mount "$src" "$mnt" --cache "$CACHE" -o "log=$LOG${opts:+,$opts}" ||
		fail "mount $src $mnt failed"
	_mounts+=("$mnt")
	local pid
	pid=$("$HOARDFS_BIN" stat "$mnt" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])') ||
		fail "no stats from the daemon of $mnt"
	_pids+=("$pid")
	mountpoint -q "$mnt" || fail "$mnt is not a mount point after mount returned"
}

umount_hoard() {
	local mnt=$1
	"$HOARDFS_BIN" umount "$mnt" || fail "umount $mnt failed"
	mountpoint -q "$mnt" && fail "$mnt still mounted after umount returned"
	return 0
}

# stat_field MNT PATH.IN.JSON (e.g. reads.hit_ops)
stat_field() {
	"$HOARDFS_BIN" stat "$1" --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    d = d[k]
print(d)' "$2"
}

# expect_eq WHAT EXPECTED GOT
expect_eq() {
	[ "$2" = "$3" ] || fail "$1: expected '$2', got '$3'"
}

# wait_until SECONDS CMD...: poll CMD until it succeeds, bounded.
wait_until() {
	local lim=$1 t=0; shift
	until "$@"; do
		t=$((t + 1))
		[ $t -gt $((lim * 10)) ] && return 1
		sleep 0.1
	done
}

# proxy_start LISTEN SERVER [OPTION...]: tests/lib/countproxy.py from
# LISTEN:2049 to SERVER:2049, and from LISTEN to SERVER on NFS_MOUNT_PORT
# (NFSv3's MOUNT), with these options (faults: --cut-after, --refuse...),
# counting afresh into $W/stats.json; returns once it listens (bounded).
# proxy_stop: stops it and waits until its port is closed.  pstat FIELD:
# a field of its stats (0 before there is one).
_proxy_pid="" _proxy_listen=""
proxy_start() {
	local listen=$1 server=$2
	shift 2
	rm -f "$W/stats.json"
	python3 "$TOP/tests/lib/countproxy.py" "$@" "$listen:2049" "$server:2049" "$W/stats.json" \
		--also "$listen:$NFS_MOUNT_PORT=$server:$NFS_MOUNT_PORT" >"$W/proxy.log" 2>&1 &
	_proxy_pid=$! _proxy_listen=$listen
	_pids+=($_proxy_pid)
	wait_until 20 bash -c "ss -ltn | grep -q '$listen:2049 '" ||
		fail "the proxy did not start: $(cat "$W/proxy.log")"
}
proxy_stop() {
	kill "$_proxy_pid"
	wait_until 20 bash -c "! kill -0 $_proxy_pid 2>/dev/null" || fail "the proxy does not stop"
	wait_until 20 bash -c "! ss -ltn | grep -q '$_proxy_listen:2049 '" || fail "the proxy's port stays open"
}
pstat() {
	python3 -c 'import json, sys
try: print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))
except FileNotFoundError: print(0)' "$W/stats.json" "$1"
}

# cache_f_g: a 6 MiB file f and a 10,000-byte file g in $SRC, read once
# through a mount of a fresh 64 MiB $CACHE, so both sit in the cache
# (unmounted on return): the setup of the tests that damage cached data
cache_f_g() {
	head -c 6291456 /dev/urandom >"$SRC/f"
	head -c 10000 /dev/urandom >"$SRC/g"
	"$HOARDFS_BIN" format "$CACHE" --size 64M >/dev/null || fail "format"
	mount_hoard "dir:$SRC" "$MNT"
	cat "$MNT/f" "$MNT/g" >/dev/null || fail "first read"
	umount_hoard "$MNT"
}

# damage OFFSET XOR: flip byte OFFSET of every block of $CACHE's data
# area, unmounted (superblock: bucket_blocks at offset 52, data_start at
# 88, nbuckets at 96; docs/FORMAT.md)
damage() {
	python3 - "$CACHE" "$1" "$2" <<'PY' || fail "could not damage the data area"
import struct, sys
off, xor = int(sys.argv[2]), int(sys.argv[3], 0)
with open(sys.argv[1], "r+b") as f:
    sb = f.read(4096)
    bucket_blocks, = struct.unpack_from("<I", sb, 52)
    data_start, nbuckets = struct.unpack_from("<QQ", sb, 88)
    for blk in range(data_start, data_start + nbuckets * bucket_blocks):
        f.seek(blk * 4096 + off)
        b = f.read(1)
        f.seek(blk * 4096 + off)
        f.write(bytes([b[0] ^ xor]))
PY
}

# same_tree A B: identical names, types, sizes, modes and contents.
same_tree() {
	python3 - "$1" "$2" <<'EOF'
import os, sys, stat
a, b = sys.argv[1], sys.argv[2]
def walk(root):
    out = {}
    for d, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(d, n)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            v = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
            if stat.S_ISREG(st.st_mode):
                with open(p, 'rb') as f:
                    v += (st.st_size, hash(f.read()))
            elif stat.S_ISLNK(st.st_mode):
                v += (os.readlink(p),)
            out[rel] = v
    return out
x, y = walk(a), walk(b)
if x != y:
    for k in sorted(set(x) | set(y)):
        if x.get(k) != y.get(k):
            print("differs:", repr(k), x.get(k), y.get(k))
    sys.exit(1)
EOF
}

# nfs_suite VERSION ADDR: the NFS tests (mount_nfs3.sh, mount_nfs4.sh).
# Another hoardfs mount with its own cache plays "another client".
nfs_suite() {
	local ver=$1 addr=$2
	. "$TOP/tests/lib/nfs-server.sh"
	_cleanups+=("nfs_server_stop")
	local exp=$W/export
	mkdir -p "$exp"
	head -c 6000000 /dev/urandom >"$exp/big"
	mkdir -p "$exp/d/sub"; echo deep >"$exp/d/sub/f"
	nfs_server_start "$exp" "$addr" >"$W/nfs-start.log" 2>&1 || skip "no NFS server: $(tail -n 3 "$W/nfs-start.log")"
	local url
	if [ "$ver" = 3 ]; then url=$NFS_URL3; else url=$NFS_URL4; fi
	local MNT2=$W/mnt2
	mkdir -p "$MNT2"

	mount_hoard "$url" "$MNT"
	note "nfs v$ver: read"
	cmp "$exp/big" "$MNT/big" || fail "first read of big"
	expect_eq "deep file" deep "$(cat "$MNT/d/sub/f")"

	note "nfs v$ver: operations"
	printf 'hello\n' >"$MNT/a"; echo more >>"$MNT/a"
	expect_eq "server copy" "$(printf 'hello\nmore')" "$(cat "$exp/a")"
	head -c 2500000 /dev/urandom >"$W/rand"; cp "$W/rand" "$MNT/r"
	cmp "$W/rand" "$exp/r" || fail "server copy of r"
	cmp "$W/rand" "$MNT/r" || fail "read back r"
	truncate -s 1000 "$MNT/r"; cmp <(head -c 1000 "$W/rand") "$MNT/r" || fail "shrink"
	truncate -s 9000 "$MNT/r"; cmp "$exp/r" "$MNT/r" || fail "grow"
	chmod 600 "$MNT/a"; expect_eq "chmod" 600 "$(stat -c %a "$exp/a")"
	chown 1234:5678 "$MNT/a"; expect_eq "chown" "1234:5678" "$(stat -c %u:%g "$exp/a")"
	touch -d "2001-02-03 04:05:06" "$MNT/a"; expect_eq "utimens" "$(stat -c %Y "$exp/a")" "$(stat -c %Y "$MNT/a")"
	mkdir "$MNT/nd"; mv "$MNT/a" "$MNT/nd/b"; expect_eq "rename" "$(printf 'hello\nmore')" "$(cat "$exp/nd/b")"
	ln -s "../big" "$MNT/nd/sl"; expect_eq "readlink" "../big" "$(readlink "$MNT/nd/sl")"
	ln "$MNT/nd/b" "$MNT/nd/c"; expect_eq "hard link" "$(stat -c %i "$MNT/nd/b")" "$(stat -c %i "$MNT/nd/c")"
	rm "$MNT/nd/b" "$MNT/nd/c" "$MNT/nd/sl"; rmdir "$MNT/nd"; [ -e "$exp/nd" ] && fail "rmdir"
	mv "$MNT/d" "$MNT/d2"; expect_eq "renamed dir" deep "$(cat "$MNT/d2/sub/f")"
	df "$MNT" >/dev/null || fail "statfs"
	truncate -s 5G "$MNT/huge"
	printf 'past4G' | dd of="$MNT/huge" bs=1 seek=$((4 << 30)) conv=notrunc status=none
	expect_eq "past 4 GiB" past4G "$(dd if="$MNT/huge" bs=1 skip=$((4 << 30)) count=6 status=none)"
	rm "$MNT/huge"

	note "nfs v$ver: parallel readers and writers"
	local i pids=()
	for i in 1 2 3 4; do head -c $((1000000 + i * 77777)) /dev/urandom >"$W/w$i"; done
	for i in 1 2 3 4; do cp "$W/w$i" "$MNT/w$i" & pids+=($!); done
	for i in 1 2 3 4 5 6; do cmp "$exp/big" "$MNT/big" & pids+=($!); done
	for p in "${pids[@]}"; do wait "$p" || fail "parallel job failed"; done
	for i in 1 2 3 4; do cmp "$W/w$i" "$MNT/w$i" || fail "parallel write w$i"; cmp "$W/w$i" "$exp/w$i" || fail "server w$i"; done

	note "nfs v$ver: fsx"
	python3 "$TOP/tests/integration/fsx.py" "$MNT/fsx" --seed 11 --ops "${HOARD_FSX_OPS_NFS:-800}" --server "$exp/fsx" || fail "fsx over nfs v$ver"

	note "nfs v$ver: another client changes files"
	CACHE=$W/cache2.img mount_hoard "$url" "$MNT2"
	cat "$MNT/w1" >/dev/null
	printf 'other client\n' >"$MNT2/w1"
	expect_eq "change by another client" "other client" "$(cat "$MNT/w1")"
	rm "$MNT2/w2"
	cat "$MNT/w2" 2>/dev/null && fail "file removed by another client still readable"
	umount_hoard "$MNT2"

	note "nfs v$ver: persistence"
	cmp "$exp/big" "$MNT/big" || fail "big before remount"
	local tree='%i %M %n %U %G %s %T@ %p %l\n'
	(cd "$MNT" && find . >/dev/null) # listings stored
	umount_hoard "$MNT"
	# 60 s attribute timeouts: the files were modified a moment ago, so
	# the NFS rule would keep their attributes for only acregmin = 3 s
	mount_hoard "$url" "$MNT" acregmin=60,acregmax=60,acdirmin=60,acdirmax=60
	cmp "$exp/big" "$MNT/big" || fail "big after remount"
	cmp "$exp/w3" "$MNT/w3" || fail "w3 after remount"
	expect_eq "bytes from the server after remount" 0 "$(stat_field "$MNT" bytes_from_server)"
	expect_eq "tree after remount" "$(cd "$exp" && find . -printf "$tree" | sort)" \
		"$(cd "$MNT" && find . -printf "$tree" | sort)"
	expect_eq "listings from the server after remount" 0 "$(stat_field "$MNT" listings)"
	umount_hoard "$MNT"
	echo PASS
}
