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
