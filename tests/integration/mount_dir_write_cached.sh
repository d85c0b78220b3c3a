#!/usr/bin/env bash
# Description: what we write through the mount reaches the source and stays
# in the cache: after unmount + remount, reading back our own writes
# (aligned, unaligned, appends, a truncate, a rewrite in the middle) reads
# zero bytes from the source and every byte equals the source's copy.
. "$(dirname "$0")/mount_common.bash"

mount_hoard "dir:$SRC" "$MNT"
head -c 3000000 /dev/urandom >"$MNT/written"           # whole blocks + a short last one
head -c 10000 /dev/urandom >"$MNT/small"
python3 - "$MNT/written" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, os.urandom(5000), 123)        # unaligned rewrite in the middle
os.pwrite(fd, os.urandom(70000), 3000000)   # append past the short last block
os.close(fd)
PY
truncate -s 2500000 "$MNT/small" 2>/dev/null || true
truncate -s 7000 "$MNT/small"
cmp "$SRC/written" "$MNT/written" || fail "written differs from the source before remount"
cmp "$SRC/small" "$MNT/small" || fail "small differs from the source before remount"
umount_hoard "$MNT"

note "remount: our writes come back from the cache"
mount_hoard "dir:$SRC" "$MNT"
cmp "$SRC/written" "$MNT/written" || fail "written differs after remount"
cmp "$SRC/small" "$MNT/small" || fail "small differs after remount"
from_server=$(stat_field "$MNT" bytes_from_server)
# only the blocks the writes covered partly (at most 3 of them) may be fetched
[ "$from_server" -le 16384 ] || fail "expected <= 16384 bytes from the source, got $from_server"
hits=$(stat_field "$MNT" reads.hit_bytes)
[ "$hits" -ge 3000000 ] || fail "hit bytes: expected >= 3000000, got $hits"

note "a change made at the source is still seen at the next open"
head -c 4096 /dev/urandom | dd of="$SRC/written" bs=4096 seek=10 conv=notrunc status=none
touch -d '+1 hour' "$SRC/written"
cmp "$SRC/written" "$MNT/written" || fail "source change not seen"
umount_hoard "$MNT"
echo PASS
