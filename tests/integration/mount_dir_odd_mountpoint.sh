#!/usr/bin/env bash
# Description: a mount point whose path /proc/self/mountinfo escapes (a
# space is written \040 there) is found in it like any other: the daemon
# raises the mount's kernel readahead to 4 MiB (read_ahead_kb of its bdi;
# it stayed at the kernel's 128 KiB when the escaped path did not match),
# files read right, and a second mount of the same cache is refused naming
# that mount point.
. "$(dirname "$0")/mount_common.bash"

odd="$W/mnt point"
mkdir -p "$odd"
head -c 3000000 /dev/urandom >"$SRC/f"
mount_hoard "dir:$SRC" "$odd"
dev=$(mountpoint -d "$odd") || fail "no device number for '$odd'"
expect_eq "read_ahead_kb of '$odd'" 4096 "$(cat "/sys/class/bdi/$dev/read_ahead_kb")"
cmp "$SRC/f" "$odd/f" || fail "f differs through '$odd'"
"$HOARDFS_BIN" mount "dir:$SRC" "$MNT" --cache "$CACHE" -o "log=$LOG" 2>"$W/second.err" &&
	fail "a second mount of the cache in use succeeded"
grep -qF "serving $odd (pid" "$W/second.err" ||
	fail "the refusal does not name the mount point: $(cat "$W/second.err")"
umount_hoard "$odd"
echo PASS
