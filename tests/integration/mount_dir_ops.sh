#!/usr/bin/env bash
# Description: every filesystem operation through a hoardfs mount of a
# dir: source gives the same result as on the source tree itself: create,
# write, append, read, truncate (shrink/grow), chmod, chown, utimens,
# mkdir, rmdir, unlink, rename (plain, over a file, directories,
# RENAME_NOREPLACE and RENAME_EXCHANGE), symlink/readlink, hard links,
# fifos, statfs, files over 4 GiB, names with odd bytes, big directories.
. "$(dirname "$0")/mount_common.bash"

mkdir -p "$SRC/pre/sub"
echo "pre-existing" >"$SRC/pre/sub/f"
mount_hoard "dir:$SRC" "$MNT"

note "create / write / read"
printf 'hello world\n' >"$MNT/a"
expect_eq "server copy of a" "hello world" "$(cat "$SRC/a")"
expect_eq "read a" "hello world" "$(cat "$MNT/a")"
echo more >>"$MNT/a"
expect_eq "append" "$(printf 'hello world\nmore')" "$(cat "$SRC/a")"
head -c 3000000 /dev/urandom >"$W/rand"
cp "$W/rand" "$MNT/r"
cmp "$W/rand" "$SRC/r" || fail "server copy of a 3 MB file differs"
cmp "$W/rand" "$MNT/r" || fail "read back of a 3 MB file differs"
expect_eq "pre-existing file" "pre-existing" "$(cat "$MNT/pre/sub/f")"

note "truncate"
truncate -s 1000 "$MNT/r"
expect_eq "size after shrink" 1000 "$(stat -c %s "$SRC/r")"
cmp <(head -c 1000 "$W/rand") "$MNT/r" || fail "content after shrink"
truncate -s 5000 "$MNT/r"
cmp <(head -c 1000 "$W/rand"; head -c 4000 /dev/zero) "$MNT/r" || fail "content after grow"
cmp "$SRC/r" "$MNT/r" || fail "server copy after grow"

note "chmod / chown / utimens"
chmod 640 "$MNT/a"
expect_eq "mode on server" 640 "$(stat -c %a "$SRC/a")"
expect_eq "mode via mount" 640 "$(stat -c %a "$MNT/a")"
chown 1234:5678 "$MNT/a"
expect_eq "owner on server" "1234:5678" "$(stat -c %u:%g "$SRC/a")"
expect_eq "owner via mount" "1234:5678" "$(stat -c %u:%g "$MNT/a")"
touch -d "2001-02-03 04:05:06.789" "$MNT/a"
expect_eq "mtime on server" "$(date -d '2001-02-03 04:05:06.789' +%s.%N)" "$(stat -c %.9Y "$SRC/a" | tr -d ' ')"
expect_eq "mtime via mount" "$(stat -c %.9Y "$SRC/a")" "$(stat -c %.9Y "$MNT/a")"

note "mkdir / rmdir / unlink"
mkdir "$MNT/d1"
[ -d "$SRC/d1" ] || fail "mkdir not on server"
echo x >"$MNT/d1/x"
rmdir "$MNT/d1" 2>/dev/null && fail "rmdir of a non-empty directory succeeded"
rm "$MNT/d1/x"
[ -e "$SRC/d1/x" ] && fail "unlink not on server"
rmdir "$MNT/d1"
[ -e "$SRC/d1" ] && fail "rmdir not on server"
[ -e "$MNT/d1" ] && fail "removed directory still visible"

note "rename"
echo one >"$MNT/r1"; echo two >"$MNT/r2"
mv "$MNT/r1" "$MNT/r3"
expect_eq "renamed content" one "$(cat "$MNT/r3")"
[ -e "$SRC/r1" ] && fail "old name still on server"
mv -f "$MNT/r3" "$MNT/r2"
expect_eq "rename over a file" one "$(cat "$MNT/r2")"
expect_eq "rename over a file (server)" one "$(cat "$SRC/r2")"
mkdir -p "$MNT/dA/inner"; echo deep >"$MNT/dA/inner/f"
mv "$MNT/dA" "$MNT/dB"
expect_eq "file in renamed dir" deep "$(cat "$MNT/dB/inner/f")"
expect_eq "file in renamed dir (server)" deep "$(cat "$SRC/dB/inner/f")"
mv "$MNT/dB/inner" "$MNT/pre/moved"
expect_eq "dir moved across parents" deep "$(cat "$MNT/pre/moved/f")"
echo e1 >"$MNT/x1"; echo e2 >"$MNT/x2"
python3 - "$MNT" <<'EOF' || fail "renameat2 flags"
import ctypes, os, sys, errno
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
def rn(a, b, flags):
    r = libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags)
    return 0 if r == 0 else ctypes.get_errno()
m = sys.argv[1]
e = rn(m + "/x1", m + "/x2", 1)  # RENAME_NOREPLACE
assert e == errno.EEXIST, ("noreplace", e)
e = rn(m + "/x1", m + "/x2", 2)  # RENAME_EXCHANGE
assert e == 0, ("exchange", e)
assert open(m + "/x1").read() == "e2\n"
assert open(m + "/x2").read() == "e1\n"
EOF
expect_eq "exchange on server" e1 "$(cat "$SRC/x2")"

note "symlink / readlink / hard link / fifo"
ln -s "target with spaces" "$MNT/sl"
expect_eq "readlink" "target with spaces" "$(readlink "$MNT/sl")"
expect_eq "readlink (server)" "target with spaces" "$(readlink "$SRC/sl")"
echo linked >"$MNT/h1"
ln "$MNT/h1" "$MNT/h2"
expect_eq "nlink" 2 "$(stat -c %h "$MNT/h1")"
expect_eq "same inode" "$(stat -c %i "$MNT/h1")" "$(stat -c %i "$MNT/h2")"
echo changed >"$MNT/h2"
expect_eq "write through the other name" changed "$(cat "$MNT/h1")"
rm "$MNT/h1"
expect_eq "other name survives unlink" changed "$(cat "$MNT/h2")"
expect_eq "nlink after unlink" 1 "$(stat -c %h "$MNT/h2")"
mkfifo "$MNT/fifo"
expect_eq "fifo type on server" fifo "$(stat -c %F "$SRC/fifo")"

note "statfs"
df "$MNT" >/dev/null || fail "statfs"
expect_eq "statfs blocks" "$(stat -f -c %b "$SRC")" "$(stat -f -c %b "$MNT")"

note "files over 4 GiB"
truncate -s 5G "$MNT/huge"
printf 'beyond4G' | dd of="$MNT/huge" bs=1 seek=$((4 * 1024 * 1024 * 1024 + 12345)) conv=notrunc status=none
expect_eq "size" 5368709120 "$(stat -c %s "$MNT/huge")"
expect_eq "bytes past 4 GiB" beyond4G "$(dd if="$MNT/huge" bs=1 skip=$((4 * 1024 * 1024 * 1024 + 12345)) count=8 status=none)"
expect_eq "bytes past 4 GiB (server)" beyond4G "$(dd if="$SRC/huge" bs=1 skip=$((4 * 1024 * 1024 * 1024 + 12345)) count=8 status=none)"
rm "$MNT/huge"

note "odd names"
python3 - "$MNT" "$SRC" <<'EOF' || fail "odd names"
import os, sys
m, s = sys.argv[1].encode(), sys.argv[2].encode()
names = [b"sp ace", b"new\nline", b"\xff\xfe-latin", b"tab\tx", b"-dash", b"a" * 255, b"*?[]", b"\\back"]
for n in names:
    with open(m + b"/" + n, "wb") as f:
        f.write(n)
for n in names:
    assert open(s + b"/" + n, "rb").read() == n, n
    assert open(m + b"/" + n, "rb").read() == n, n
got = set(os.listdir(m))
assert set(names) <= got, set(names) - got
for n in names:
    os.unlink(m + b"/" + n)
EOF

note "big directory"
mkdir "$SRC/many"
for i in $(seq 1 1500); do : >"$SRC/many/file-$i-$(printf '%0100d' "$i")"; done
expect_eq "listing size" 1500 "$(ls "$MNT/many" | wc -l)"
diff <(ls -a "$SRC/many") <(ls -a "$MNT/many") || fail "listing differs"

note "whole tree"
same_tree "$SRC" "$MNT" || fail "trees differ"
umount_hoard "$MNT"
echo PASS
