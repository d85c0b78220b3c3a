#!/usr/bin/env bash
# demo.sh - the README's first command: install what is needed, build,
# start nfs-ganesha on 127.0.0.1 exporting a generated tree, mount it
# through hoardfs, read it cold, unmount, remount, read it warm, and print
# cold vs warm figures.  Then unmount and stop the server.
#
#   bash tools/demo.sh [--files N] [--size-mb M] [--keep]
#
# Needs root (FUSE, ganesha).  Works on a fresh Debian 12 machine.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
files=2000 size_mb=256 keep=0
while [ $# -gt 0 ]; do
	case $1 in
	--files) files=$2; shift 2 ;;
	--size-mb) size_mb=$2; shift 2 ;;
	--keep) keep=1; shift ;;
	*) echo "usage: bash tools/demo.sh [--files N] [--size-mb M] [--keep]" >&2; exit 2 ;;
	esac
done
[ "$(id -u)" -eq 0 ] || { echo "demo.sh: run as root (FUSE mounts, an NFS server)" >&2; exit 1; }

echo "== installing dependencies and building"
make -s deps >/dev/null
make -s -j"$(nproc)" all >/dev/null
bin=$top/build/hoardfs

work=$(mktemp -d /tmp/hoardfs-demo.XXXXXX)
export HOARD_TEST_DIR=$work
mnt=$work/mnt export=$work/export img=$work/cache.img
mkdir -p "$mnt" "$export"
. "$top/tests/lib/nfs-server.sh"
cleanup() {
	mountpoint -q "$mnt" 2>/dev/null && { "$bin" umount "$mnt" || umount -l "$mnt"; } || true
	nfs_server_stop >/dev/null 2>&1 || true
	[ "$keep" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT

echo "== generating the exported tree: $files small files + one ${size_mb} MiB file"
python3 - "$export" "$files" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "src", "dir%03d" % (i // 100))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "file%05d.c" % i), "wb") as f:
        f.write(os.urandom(1024 + (i * 7919) % 15360))
PY
head -c $((size_mb * 1024 * 1024)) /dev/urandom >"$export/big.bin"

echo "== starting nfs-ganesha on 127.0.0.1"
nfs_server_start "$export" 127.0.0.1 >/dev/null
url=$NFS_URL4

"$bin" format "$img" --size $((2 * size_mb + 512))M >/dev/null

read_tree() { # prints seconds
	local t0 t1
	t0=$(date +%s.%N)
	find "$mnt" -type f -print0 | xargs -0 cat >/dev/null
	t1=$(date +%s.%N)
	python3 -c "print('%.2f' % ($t1 - $t0))"
}
stats() { # hits misses bytes_from_server
	"$bin" stat "$mnt" --json | python3 -c '
import json, sys
s = json.load(sys.stdin)
r = s["reads"]
print(r["hit_ops"], r["miss_ops"], s["bytes_from_server"])'
}

echo "== cold: first mount, everything from the server ($url)"
"$bin" mount "$url" "$mnt" --cache "$img"
cold_t=$(read_tree)
read -r cold_hits cold_miss cold_bytes < <(stats)
"$bin" umount "$mnt"
sync
echo 3 >/proc/sys/vm/drop_caches

echo "== warm: remount, kernel caches dropped, read again"
"$bin" mount "$url" "$mnt" --cache "$img"
warm_t=$(read_tree)
read -r warm_hits warm_miss warm_bytes < <(stats)
cmp -s "$export/big.bin" "$mnt/big.bin" || { echo "demo: big.bin differs from the server's copy" >&2; exit 1; }
"$bin" umount "$mnt"

total=$(du -sb "$export" | cut -f1)
echo
printf '%-6s %10s %10s %10s %18s\n' pass seconds hits misses "bytes from server"
printf '%-6s %10s %10s %10s %18s\n' cold "$cold_t" "$cold_hits" "$cold_miss" "$cold_bytes"
printf '%-6s %10s %10s %10s %18s\n' warm "$warm_t" "$warm_hits" "$warm_miss" "$warm_bytes"
python3 -c "print('\nwarm is %.1fx faster than cold; %d of %d bytes read came from the cache on the warm pass' % ($cold_t / max($warm_t, 0.001), $total - $warm_bytes if $warm_bytes < $total else 0, $total))"
"$bin" inspect "$img" | sed -n '1,6p'
