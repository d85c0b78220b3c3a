#!/usr/bin/env bash
# Description: `hoardfs mount` refuses bad input clearly: malformed or
# unknown -o options (exit 2, naming the option), a missing cache, a cache
# path holding something else (exit 1, never formatted), a missing mount
# point; a new cache image with no room for it on its filesystem (exit 1,
# nothing left behind); sources that cannot be reached fail within the
# timeout; and the mount(8) helper form (mount.fuse.hoardfs SOURCE DIR -o cache=...) works.
. "$(dirname "$0")/mount_common.bash"

expect_rc() { # rc pattern cmd...
	local want=$1 pat=$2; shift 2
	local out rc
	out=$("$@" 2>&1); rc=$?
	[ "$rc" = "$want" ] || fail "'$*': exit $rc (expected $want): $out"
	echo "$out" | grep -q -- "$pat" || fail "'$*': message lacks '$pat': $out"
}
expect_rc 2 "acregmin" "$HOARDFS_BIN" mount "dir:$SRC" "$MNT" --cache "$CACHE" -o acregmin=abc
expect_rc 2 "frobnicate" "$HOARDFS_BIN" mount "dir:$SRC" "$MNT" --cache "$CACHE" -o frobnicate
expect_rc 2 "timeout" "$HOARDFS_BIN" mount "dir:$SRC" "$MNT" --cache "$CACHE" -o timeout=-3
expect_rc 2 "cache" "$HOARDFS_BIN" mount "dir:$SRC" "$MNT"
expect_rc 1 "nowhere" "$HOARDFS_BIN" mount "dir:$SRC" "$W/nowhere" --cache "$CACHE"
expect_rc 1 "source" "$HOARDFS_BIN" mount "bogus:thing" "$MNT" --cache "$CACHE"
mountpoint -q "$MNT" && fail "mounted despite errors"

note "a cache path holding something else is never formatted"
head -c $((64 << 20)) /dev/zero >"$W/foreign.img"
if command -v mkfs.ext4 >/dev/null; then
	mkfs.ext4 -q -F "$W/foreign.img" || fail "mkfs.ext4"
	sum=$(md5sum <"$W/foreign.img")
	expect_rc 1 "not a hoardfs cache" "$HOARDFS_BIN" mount "dir:$SRC" "$MNT" --cache "$W/foreign.img"
	expect_eq "foreign image untouched" "$sum" "$(md5sum <"$W/foreign.img")"
fi
mountpoint -q "$MNT" && fail "mounted on a foreign cache"

note "a new cache image reserves its space, or is not created at all"
# (a sparse image that grows as it fills runs its filesystem out of space
# half-way through a fill, long after the mount said yes)
mkdir -p "$W/small"
mount -t tmpfs -o size=64M tmpfs "$W/small" || fail "tmpfs"
_cleanups+=("umount '$W/small'")
expect_rc 1 "not enough free space" "$HOARDFS_BIN" format "$W/small/big.img" --size 128M
[ -e "$W/small/big.img" ] && fail "format left a partial image behind"
expect_rc 1 "not enough free space" "$HOARDFS_BIN" mount "dir:$SRC" "$MNT" --cache "$W/small/m.img" -o cachesize=100M
[ -e "$W/small/m.img" ] && fail "mount left a partial image behind"
mountpoint -q "$MNT" && fail "mounted without room for its cache"

note "an image larger than its filesystem takes for one file is told apart from a full disk"
# ext2 with 1 KiB blocks takes no file over ~16 GiB: ftruncate says EFBIG,
# which hoard_format also returns for a reservation without room (the
# tmpfs above; ext2 has no fallocate, so it cannot run out that way)
if command -v mkfs.ext2 >/dev/null; then
	truncate -s 16M "$W/small1k.fs"
	mkfs.ext2 -q -F -b 1024 "$W/small1k.fs" || fail "mkfs.ext2"
	mkdir -p "$W/small1k"
	mount -o loop "$W/small1k.fs" "$W/small1k" || fail "mount small1k"
	_cleanups+=("umount '$W/small1k'")
	expect_rc 1 "larger than its filesystem takes for one file" \
		"$HOARDFS_BIN" format "$W/small1k/huge.img" --size 20G --sparse
	[ -e "$W/small1k/huge.img" ] && fail "format left a partial image behind"
fi
"$HOARDFS_BIN" format "$W/small/ok.img" --size 32M >/dev/null || fail "format 32M on 64M"
expect_eq "blocks reserved" 32768 "$(du -k "$W/small/ok.img" | cut -f1)"
"$HOARDFS_BIN" format "$W/small/sparse.img" --size 24M --sparse >/dev/null || fail "format --sparse"
[ "$(du -k "$W/small/sparse.img" | cut -f1)" -lt 4096 ] || fail "--sparse reserved blocks"
"$HOARDFS_BIN" fsck "$W/small/ok.img" >/dev/null || fail "fsck of the reserved image"
"$HOARDFS_BIN" fsck "$W/small/sparse.img" >/dev/null || fail "fsck of the sparse image"

note "unreachable servers: refused, and silent within the timeout"
t0=$SECONDS
expect_rc 1 "hoardfs mount" "$HOARDFS_BIN" mount "nfs://127.0.0.1:1/export" "$MNT" --cache "$CACHE" -o timeout=3
# a listener that accepts and never answers
python3 -c '
import socket, time, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
print(s.getsockname()[1], flush=True)
conns = []
while True:
    c, _ = s.accept(); conns.append(c)
' >"$W/port" &
_pids+=($!)
wait_until 10 test -s "$W/port" || fail "silent listener did not start"
port=$(cat "$W/port")
t0=$SECONDS
expect_rc 1 "hoardfs mount" "$HOARDFS_BIN" mount "nfs://127.0.0.1:$port/export" "$MNT" --cache "$CACHE" -o timeout=3
dt=$((SECONDS - t0))
[ $dt -le 10 ] || fail "unreachable server: took ${dt}s with timeout=3"
mountpoint -q "$MNT" && fail "mounted an unreachable server"

note "mount helper form"
ln -s "$HOARDFS_BIN" "$W/mount.fuse.hoardfs"
"$W/mount.fuse.hoardfs" "dir:$SRC" "$MNT" -o "rw,nosuid,nodev,cache=$CACHE,cachesize=64M,log=$LOG,_netdev" ||
	fail "helper form failed"
_mounts+=("$MNT")
echo via-helper >"$MNT/h"
expect_eq "write through the helper mount" via-helper "$(cat "$SRC/h")"
grep -q "fuse.hoardfs" <(grep " $MNT " /proc/mounts) || fail "fs type in /proc/mounts"
umount_hoard "$MNT"
expect_rc 1 "no hoardfs daemon" "$HOARDFS_BIN" stat "$MNT"
echo PASS
