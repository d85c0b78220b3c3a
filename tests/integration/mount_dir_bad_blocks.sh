#!/usr/bin/env bash
# Description: cached data that fails its checksum is never served.  A
# file is read through the mount (the cache fills), then, unmounted, one
# byte of every block of the cache's data area is flipped.  After a
# remount the file reads back equal to the source — whole reads (the
# asynchronous hit path: a hit that fails verification becomes a miss and
# goes to the server), small reads at scattered offsets (the synchronous
# one) — with the checksum failures counted and the bytes fetched from the
# server; those reads fill the cache again, and after another remount the
# file is served from the cache, equal, with nothing from the server.
. "$(dirname "$0")/mount_common.bash"

cache_f_g

damage 100 0x5a

mount_hoard "dir:$SRC" "$MNT"
cmp "$SRC/f" "$MNT/f" || fail "f: bytes from a damaged cache"
cmp "$SRC/g" "$MNT/g" || fail "g: bytes from a damaged cache"
bad=$(stat_field "$MNT" cache.csum_errors)
[ "$bad" -gt 0 ] || fail "no checksum failure counted (csum_errors=$bad): was the cache read at all?"
from=$(stat_field "$MNT" bytes_from_server)
[ "$from" -ge 6291456 ] || fail "only $from bytes from the server for a 6 MiB file whose cached blocks are all bad"
umount_hoard "$MNT"

# small reads at scattered offsets, on the refilled cache damaged again
damage 200 0xa5
mount_hoard "dir:$SRC" "$MNT"
python3 - "$SRC/f" "$MNT/f" <<'PY' || fail "small reads returned bytes from a damaged cache"
import os, random, sys
a, b = (os.open(p, os.O_RDONLY) for p in sys.argv[1:3])
size = os.fstat(a).st_size
rnd = random.Random(7)
for _ in range(300):
    off, n = rnd.randrange(0, size - 5000), rnd.choice((1, 512, 4096, 5000))
    if os.pread(a, n, off) != os.pread(b, n, off):
        sys.exit("differs at %d+%d" % (off, n))
PY
cmp "$SRC/f" "$MNT/f" || fail "f differs after the small reads"
cmp "$SRC/g" "$MNT/g" || fail "g: bytes from a damaged cache (2)"
[ "$(stat_field "$MNT" cache.csum_errors)" -gt 0 ] || fail "small reads: no checksum failure counted"
umount_hoard "$MNT"

# the misses refilled the cache: served from it, equal, nothing from the server
mount_hoard "dir:$SRC" "$MNT"
cmp "$SRC/f" "$MNT/f" || fail "f differs when read from the refilled cache"
cmp "$SRC/g" "$MNT/g" || fail "g differs when read from the refilled cache"
expect_eq "bytes from the server once refilled" 0 "$(stat_field "$MNT" bytes_from_server)"
expect_eq "checksum failures once refilled" 0 "$(stat_field "$MNT" cache.csum_errors)"
umount_hoard "$MNT"
if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$LOG"; then
	fail "sanitizer report in the daemon's log: $(grep -E -A12 "ERROR: (Address|Leak)Sanitizer|runtime error:" "$LOG" | head -24)"
fi
echo PASS
