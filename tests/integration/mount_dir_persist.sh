#!/usr/bin/env bash
# Description: data read through a mount is served from the cache after
# unmount + remount (and after the daemon is killed with SIGTERM): the
# second pass reads zero bytes from the source, only cache hits.
. "$(dirname "$0")/mount_common.bash"

head -c 7000000 /dev/urandom >"$SRC/big"
head -c 5000 /dev/urandom >"$SRC/small"
mkdir "$SRC/d"; head -c 100000 /dev/urandom >"$SRC/d/mid"

mount_hoard "dir:$SRC" "$MNT"
for f in big small d/mid; do cmp "$SRC/$f" "$MNT/$f" || fail "first read of $f"; done
misses=$(stat_field "$MNT" reads.miss_ops)
from_server=$(stat_field "$MNT" bytes_from_server)
[ "$from_server" -ge 7105000 ] || fail "first pass: expected >= 7105000 bytes from the source, got $from_server"
echo "first pass: $misses misses, $from_server bytes from the source"
umount_hoard "$MNT"

note "remount: everything from the cache"
mount_hoard "dir:$SRC" "$MNT"
for f in big small d/mid; do cmp "$SRC/$f" "$MNT/$f" || fail "second read of $f"; done
expect_eq "bytes from the source after remount" 0 "$(stat_field "$MNT" bytes_from_server)"
expect_eq "misses after remount" 0 "$(stat_field "$MNT" reads.miss_ops)"
hits=$(stat_field "$MNT" reads.hit_bytes)
[ "$hits" -ge 7105000 ] || fail "hit bytes: expected >= 7105000, got $hits"

note "SIGTERM: clean shutdown, cache still good"
pid=$(stat_field "$MNT" pid)
kill -TERM "$pid"
wait_until 60 bash -c "! kill -0 $pid 2>/dev/null" || fail "daemon $pid did not exit on SIGTERM"
mountpoint -q "$MNT" && fail "still mounted after SIGTERM"
grep -q "exiting" "$LOG" || fail "no clean exit in the log"
mount_hoard "dir:$SRC" "$MNT"
for f in big small d/mid; do cmp "$SRC/$f" "$MNT/$f" || fail "third read of $f"; done
expect_eq "bytes from the source after SIGTERM + remount" 0 "$(stat_field "$MNT" bytes_from_server)"
"$HOARDFS_BIN" stat "$MNT" | grep -q "^reads" || fail "human-readable stat"
umount_hoard "$MNT"
echo PASS
