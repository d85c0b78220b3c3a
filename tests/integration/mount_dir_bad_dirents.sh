#!/usr/bin/env bash
# Description: a malformed stored directory entry is never served.  A
# directory's listing is stored in the cache as one DIRENT record per
# entry and a LISTING record (docs/FORMAT.md); records that pass the
# engine's checksums but not the front end's own checks (cut short, a
# name with '/', NUL, "." or "..", longer than NAME_MAX, the wrong rid, no
# attributes, a fileid unlike its attributes', a mode with no file type,
# one record too many or too few) must make the daemon ask the server
# again, never reach the kernel.  For each kind of damage
# (tests/tools/dirent_edit rewrites the record of d/sub, a directory,
# while unmounted), after a remount: the tree lists and stats exactly as
# the source (names, types, modes, sizes, contents), d's listing came from
# the server (listings 1, while the undamaged listings came from the
# cache), and after one more remount the listing stored again is served
# from the cache, equal.  No sanitizer report in the daemon's log.
. "$(dirname "$0")/mount_common.bash"

EDIT=$(dirname "$HOARDFS_BIN")/tests/tools/dirent_edit
[ -x "$EDIT" ] || skip "no $EDIT (make SAN=1)"
# attributes usable for 60 s: the listings stored stay fresh over remounts
AC=acregmin=60,acregmax=60,acdirmin=60,acdirmax=60

mkdir -p "$SRC/d/sub" "$SRC/e"
for i in 1 2 3 4 5; do echo "file $i" >"$SRC/d/f$i"; done
echo deep >"$SRC/d/sub/f"
ln -s f1 "$SRC/d/link"
echo other >"$SRC/e/g"
chmod 750 "$SRC/d/sub"

tree() { # the tree under $1 as find prints it, sorted
	(cd "$1" && find . -printf '%y %m %s %n %p %l\n' | sort)
}
want=$(tree "$SRC")
check_tree() { # WHAT: the mount lists, stats and reads as the source
	expect_eq "$1: tree" "$want" "$(tree "$MNT")"
	expect_eq "$1: d/sub/f" deep "$(cat "$MNT/d/sub/f")"
	expect_eq "$1: d/f3" "file 3" "$(cat "$MNT/d/f3")"
	python3 - "$MNT/d" "$SRC/d" <<'PY' || fail "$1: readdir of d differs from the source's"
import os, sys
def ents(p):
    return sorted((e.name, e.is_dir(follow_symlinks=False), e.is_symlink(), e.inode() != 0)
                  for e in os.scandir(p))
a, b = ents(sys.argv[1]), ents(sys.argv[2])
if a != b:
    sys.exit("mount %r\nsource %r" % (a, b))
PY
}

"$HOARDFS_BIN" format "$CACHE" --size 32M >/dev/null || fail "format"
mount_hoard "dir:$SRC" "$MNT" "$AC"
check_tree "first listing"
umount_hoard "$MNT"
# the listings are served from the cache when nothing is damaged (else
# the checks below would pass without reading a stored listing at all)
mount_hoard "dir:$SRC" "$MNT" "$AC"
check_tree "stored listing"
expect_eq "listings from the server, undamaged" 0 "$(stat_field "$MNT" listings)"
[ "$(stat_field "$MNT" listings_cached)" -ge 3 ] || fail "the stored listings were not used"
umount_hoard "$MNT"
cp --sparse=always "$CACHE" "$W/good.img" || fail "cannot keep a copy of the cache"

# each kind of damage on its own, to the cache as it was here
for how in short cut len0 long slash nul dot dotdot rid noattr fileid mode extra gone; do
	cp --sparse=always "$W/good.img" "$CACHE" || fail "$how: cannot restore the cache"
	"$EDIT" "$CACHE" sub "$how" >"$W/edit.log" 2>&1 || fail "$how: dirent_edit: $(cat "$W/edit.log")"
	mount_hoard "dir:$SRC" "$MNT" "$AC"
	check_tree "$how"
	expect_eq "$how: listings from the server (d's alone)" 1 "$(stat_field "$MNT" listings)"
	umount_hoard "$MNT"
	mount_hoard "dir:$SRC" "$MNT" "$AC"
	check_tree "$how, stored again"
	expect_eq "$how: listings from the server once stored again" 0 "$(stat_field "$MNT" listings)"
	umount_hoard "$MNT"
done
if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$LOG"; then
	fail "sanitizer report in the daemon's log: $(grep -E -A12 "ERROR: (Address|Leak)Sanitizer|runtime error:" "$LOG" | head -24)"
fi
"$HOARDFS_BIN" fsck "$CACHE" >"$W/fsck.log" 2>&1 || fail "fsck: $(cat "$W/fsck.log")"
echo PASS
