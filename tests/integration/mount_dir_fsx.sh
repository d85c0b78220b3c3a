#!/usr/bin/env bash
# Description: fsx-style random writes, truncates, reads and mmap reads
# through a dir: mount, checked byte for byte against a model and against
# the source's copy; then remounted and read again from the cache.
. "$(dirname "$0")/mount_common.bash"

mount_hoard "dir:$SRC" "$MNT"
for seed in 1 2; do
	python3 "$(dirname "$0")/fsx.py" "$MNT/fsx$seed" --seed $seed --server "$SRC/fsx$seed" ||
		fail "fsx seed $seed"
done
# independent readers and writers on two files at once
python3 "$(dirname "$0")/fsx.py" "$MNT/fsxa" --seed 3 --ops 1500 --server "$SRC/fsxa" &
p1=$!
python3 "$(dirname "$0")/fsx.py" "$MNT/fsxb" --seed 4 --ops 1500 --server "$SRC/fsxb" || fail "fsx seed 4"
wait $p1 || fail "fsx seed 3"
umount_hoard "$MNT"
mount_hoard "dir:$SRC" "$MNT"
for f in fsx1 fsx2 fsxa fsxb; do cmp "$SRC/$f" "$MNT/$f" || fail "$f after remount"; done
errs=$(stat_field "$MNT" errors.cache)
expect_eq "cache errors" 0 "$errs"
umount_hoard "$MNT"
echo PASS
