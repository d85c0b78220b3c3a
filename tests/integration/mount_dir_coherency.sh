#!/usr/bin/env bash
# Description: changes made directly in the source tree (another client)
# are seen through the mount at the next open (close-to-open): rewritten
# and appended files, same-size rewrites, deleted files (ENOENT, cache
# object dropped), renamed directories, files replaced under their name.
. "$(dirname "$0")/mount_common.bash"

printf 'version one\n' >"$SRC/f"
head -c 3000000 /dev/urandom >"$SRC/big"
mkdir -p "$SRC/dir1/sub"; echo inside >"$SRC/dir1/sub/g"
mount_hoard "dir:$SRC" "$MNT"
expect_eq "first read" "version one" "$(cat "$MNT/f")"
cmp "$SRC/big" "$MNT/big" || fail "first read of big"
expect_eq "file in dir1" inside "$(cat "$MNT/dir1/sub/g")"

note "rewrite with another size"
printf 'version two, longer\n' >"$SRC/f"
expect_eq "after rewrite" "version two, longer" "$(cat "$MNT/f")"
note "append"
printf 'appended\n' >>"$SRC/f"
expect_eq "after append" "$(printf 'version two, longer\nappended')" "$(cat "$MNT/f")"
note "same-size rewrite of a cached big file"
python3 -c "
import os
with open('$SRC/big', 'r+b') as f:
    f.seek(1234567); f.write(b'X' * 100000)
"
cmp "$SRC/big" "$MNT/big" || fail "stale data after a same-size rewrite"
inv=$(stat_field "$MNT" invalidations)
[ "$inv" -ge 1 ] || fail "expected an invalidation, got $inv"

note "delete on the server"
rm "$SRC/f"
cat "$MNT/f" 2>/dev/null && fail "deleted file still readable"
[ -e "$MNT/f" ] && fail "deleted file still visible"
note "replace a file under the same name"
echo new >"$SRC/big.new"; mv "$SRC/big.new" "$SRC/big"
expect_eq "replaced file" new "$(cat "$MNT/big")"

note "rename a directory on the server"
mv "$SRC/dir1" "$SRC/dir2"
cat "$MNT/dir1/sub/g" 2>/dev/null && fail "old directory name still works"
expect_eq "file under the new name" inside "$(cat "$MNT/dir2/sub/g")"
echo changed >"$SRC/dir2/sub/g"
expect_eq "changed under the new name" changed "$(cat "$MNT/dir2/sub/g")"

note "new files appear"
echo hi >"$SRC/newfile"
expect_eq "new file" hi "$(cat "$MNT/newfile")"
ls "$MNT" | grep -qx newfile || fail "new file not listed"
umount_hoard "$MNT"
echo PASS
