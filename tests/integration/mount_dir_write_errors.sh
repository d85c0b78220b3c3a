#!/usr/bin/env bash
# Description: a write the server refuses is never lost silently: with the
# source on a 2 MiB tmpfs, writing 4 MiB through the mount fails with an
# error at write or close (ENOSPC), and afterwards what the mount shows is
# exactly what the source holds -- before and after a remount.
. "$(dirname "$0")/mount_common.bash"

mount -t tmpfs -o size=2m tmpfs "$SRC" || skip "cannot mount a tmpfs"
_cleanups+=("umount -l '$SRC'")
mount_hoard "dir:$SRC" "$MNT"
head -c 4000000 /dev/urandom >"$W/data"
if dd if="$W/data" of="$MNT/big" bs=65536 conv=fsync status=none 2>"$W/dd.err"; then
	fail "writing 4 MB to a 2 MiB source succeeded"
fi
grep -qi "space" "$W/dd.err" || fail "expected ENOSPC, dd said: $(cat "$W/dd.err")"
cmp "$SRC/big" "$MNT/big" || fail "the mount shows other bytes than the source holds"
n=$(stat -c %s "$SRC/big")
cmp -n "$n" "$W/data" "$MNT/big" || fail "the bytes the source accepted are not the ones written"
umount_hoard "$MNT"
mount_hoard "dir:$SRC" "$MNT"
cmp "$SRC/big" "$MNT/big" || fail "after remount the mount shows other bytes than the source holds"
umount_hoard "$MNT"
echo PASS
