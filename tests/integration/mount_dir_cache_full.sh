#!/usr/bin/env bash
# Description: a cache smaller than what is read never overshoots: reading
# five times the cache's size through a 48 MiB cache keeps the image file at
# its size and at the blocks reserved at format (no growth, the host disk
# is never filled), evicts the oldest
# data, serves every byte correctly, and fsck finds the cache sound.
. "$(dirname "$0")/mount_common.bash"

for i in $(seq 1 12); do head -c 20000000 /dev/urandom >"$SRC/f$i"; done  # 240 MB
"$HOARDFS_BIN" format "$CACHE" --size 48M >/dev/null || fail "format"
size0=$(stat -c %s "$CACHE")
# the image's blocks are reserved at format (plus the host filesystem's own
# extent blocks, a few KiB): what it occupies then is all it ever occupies
alloc0=$(($(stat -c %b "$CACHE") * $(stat -c %B "$CACHE")))
[ "$alloc0" -ge "$size0" ] || fail "format reserved $alloc0 bytes of $size0"
[ "$alloc0" -le $((size0 + size0 / 100)) ] || fail "format reserved $alloc0 bytes for $size0"
mount_hoard "dir:$SRC" "$MNT"
for pass in 1 2; do
	for i in $(seq 1 12); do cmp "$SRC/f$i" "$MNT/f$i" || fail "pass $pass: f$i differs"; done
done
used=$(stat_field "$MNT" cache.data_used)
total=$(stat_field "$MNT" cache.data_bytes)
[ "$used" -le "$total" ] || fail "cache reports $used bytes used of $total"
umount_hoard "$MNT"
size1=$(stat -c %s "$CACHE")
expect_eq "image file size after reading 5x its size" "$size0" "$size1"
alloc=$(($(stat -c %b "$CACHE") * $(stat -c %B "$CACHE")))
# (+ the extent blocks the host filesystem adds as reserved extents are
# first written: 4 KiB here)
[ "$alloc" -le $((size0 + size0 / 100)) ] ||
	fail "image occupies $alloc bytes on the host after reading 5x its size (reserved: $alloc0 of $size0)"
"$HOARDFS_BIN" inspect "$CACHE" | grep -q "buckets reclaimed" || fail "inspect"
reclaimed=$("$HOARDFS_BIN" inspect "$CACHE" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["reclaimed_buckets"])')
[ "$reclaimed" -gt 0 ] || fail "expected the ring to reclaim buckets, reclaimed $reclaimed"
"$HOARDFS_BIN" fsck "$CACHE" || fail "fsck after eviction"
echo PASS
