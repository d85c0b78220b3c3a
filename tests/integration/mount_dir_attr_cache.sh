#!/usr/bin/env bash
# Description: the daemon's attribute cache follows NFS's rules.  A kernel
# GETATTR for attributes the server gave within their attribute-cache life
# (the kernel drops its copy when an inode is evicted during a readdirplus
# reply, or for `stat --cached=never`) is answered without asking the
# server; with noac every one asks.  Anything we change ourselves is asked
# again: the mode after chmod, a directory's mtime after a create, rename
# or remove in it, the link count after a link is removed, the size and
# mtime after an append; a listing read before such a change does not
# bring the old attributes back.  A change made on the server is seen at
# the next open (close-to-open), also through stat.
. "$(dirname "$0")/mount_common.bash"

mkdir -p "$SRC/d"
for f in a b c; do echo "$f" >"$SRC/d/$f"; done
echo linked >"$SRC/d/l1"
ln "$SRC/d/l1" "$SRC/d/l2"
# dated a day back: an attribute life of acregmax (60 s), so that nothing
# below expires on a slow run
touch -d '1 day ago' "$SRC/d"/* "$SRC/d"

srv() { stat_field "$MNT" getattrs; }
cached() { stat_field "$MNT" getattrs_cached; }
# what the mount says, forcing the kernel to ask the daemon
mstat() { stat --cached=never -c "$1" "$MNT/$2"; }

mount_hoard "dir:$SRC" "$MNT"
ls -l "$MNT/d" >/dev/null # readdirplus: every entry's attributes
s0=$(srv) c0=$(cached)
expect_eq "size of a" "$(stat -c %s "$SRC/d/a")" "$(mstat %s d/a)"
expect_eq "mtime of b" "$(stat -c %Y "$SRC/d/b")" "$(mstat %Y d/b)"
expect_eq "server GETATTRs for fresh attributes" "$s0" "$(srv)"
[ "$(cached)" -ge $((c0 + 2)) ] || fail "getattrs_cached: expected >= $((c0 + 2)), got $(cached)"

note "our own changes are asked again"
chmod 600 "$MNT/d/a"
expect_eq "mode after chmod" 600 "$(mstat %a d/a)"
touch "$MNT/d/new"
expect_eq "directory mtime after a create" "$(stat -c %Y.%y "$SRC/d")" "$(mstat %Y.%y d)"
mv "$MNT/d/new" "$MNT/d/new2"
expect_eq "directory ctime after a rename" "$(stat -c %Z.%z "$SRC/d")" "$(mstat %Z.%z d)"
expect_eq "renamed file's ctime" "$(stat -c %z "$SRC/d/new2")" "$(mstat %z d/new2)"
rm "$MNT/d/new2"
expect_eq "directory mtime after a remove" "$(stat -c %y "$SRC/d")" "$(mstat %y d)"
expect_eq "links of l1 before" 2 "$(mstat %h d/l1)"
rm "$MNT/d/l2"
expect_eq "links of l1 after removing l2" 1 "$(mstat %h d/l1)"
expect_eq "ctime of l1 after removing l2" "$(stat -c %z "$SRC/d/l1")" "$(mstat %z d/l1)"
echo more >>"$MNT/d/b"
expect_eq "size after an append" "$(stat -c %s "$SRC/d/b")" "$(mstat %s d/b)"
expect_eq "mtime after an append" "$(stat -c %y "$SRC/d/b")" "$(mstat %y d/b)"

note "a listing read before our change does not bring back the old attributes"
echo e >"$SRC/d/e"
touch -d '1 day ago' "$SRC/d/e"
ls -l "$MNT/d" >/dev/null
python3 - "$MNT/d" <<'PY' || fail "readdirplus from a handle opened before a chmod"
import os, sys
d = sys.argv[1]
fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)   # the listing, as it is now
os.chmod(os.path.join(d, "e"), 0o604)           # our change
names = [e.name for e in os.scandir(fd)]        # readdirplus from that handle
os.close(fd)
assert "e" in names, names
mode = os.stat(os.path.join(d, "e")).st_mode & 0o777
if mode != 0o604:
    sys.exit("mode after the listing: %o, expected 604" % mode)
PY
expect_eq "mode with the cache forced" 604 "$(mstat %a d/e)"

note "a change on the server is seen at the next open"
chmod 640 "$SRC/d/c"
echo longer-now >"$SRC/d/c"
cat "$MNT/d/c" >/dev/null
expect_eq "mode after open" 640 "$(mstat %a d/c)"
expect_eq "size after open" "$(stat -c %s "$SRC/d/c")" "$(mstat %s d/c)"
umount_hoard "$MNT"

note "noac: every GETATTR asks the server"
mount_hoard "dir:$SRC" "$MNT" noac
ls -l "$MNT/d" >/dev/null
s0=$(srv) c0=$(cached)
mstat %s d/a >/dev/null
mstat %s d/b >/dev/null
[ "$(srv)" -ge $((s0 + 2)) ] || fail "server GETATTRs with noac: expected >= $((s0 + 2)), got $(srv)"
expect_eq "getattrs_cached with noac" "$c0" "$(cached)"
umount_hoard "$MNT"
echo PASS
