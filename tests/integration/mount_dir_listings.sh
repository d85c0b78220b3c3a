#!/usr/bin/env bash
# Description: directory listings and their entries' attributes come back
# from the engine after a remount when the directory is unchanged (no
# listing from the source), stay right after our own writes, and are asked
# for again when the directory changed or the attribute timeouts say so.
. "$(dirname "$0")/mount_common.bash"

mkdir -p "$SRC/a/sub" "$SRC/b"
for i in $(seq 1 40); do head -c $((i * 100)) /dev/urandom >"$SRC/a/f$i"; done
for i in $(seq 1 10); do echo "g$i" >"$SRC/a/sub/g$i"; done
ln -s f1 "$SRC/a/link"
echo x >"$SRC/b/x"
ndirs=4 # ., a, a/sub, b
# Attributes fetched now stay usable for 60 s (the NFS rule would give a
# file modified a moment ago only acregmin = 3 s): every step below takes
# far less, so no step depends on the speed of the machine.
AC=acregmin=60,acregmax=60,acdirmin=60,acdirmax=60

listing() { # find -ls without the access times' noise; sorted
	(cd "$1" && find . -printf '%i %M %n %U %G %s %T@ %p %l\n' | sort)
}
fresh_mount() {
	umount_hoard "$MNT"
	echo 3 >/proc/sys/vm/drop_caches
	mount_hoard "dir:$SRC" "$MNT" "${1:-$AC}"
}

mount_hoard "dir:$SRC" "$MNT" "$AC"
cold=$(listing "$MNT")
expect_eq "the mount lists what the source holds" "$(listing "$SRC")" "$cold"
expect_eq "listings from the source, cold" $ndirs "$(stat_field "$MNT" listings)"

note "remount: every listing and attribute from the cache"
fresh_mount
expect_eq "warm listing" "$cold" "$(listing "$MNT")"
expect_eq "listings from the source, warm" 0 "$(stat_field "$MNT" listings)"
[ "$(stat_field "$MNT" listings_cached)" -ge $ndirs ] || fail "fewer than $ndirs listings from the cache"

note "our own write: the stored entry follows it"
head -c 5555 /dev/urandom >>"$MNT/a/f3"
fresh_mount
expect_eq "f3's size in the listing after our write" "$(stat -c %s "$SRC/a/f3")" \
	"$(find "$MNT/a" -name f3 -printf '%s')"
expect_eq "a/ still listed from the cache" 0 "$(stat_field "$MNT" listings)"
expect_eq "warm listing after our write" "$(listing "$SRC")" "$(listing "$MNT")"

note "a change in the directory on the source: listed again"
echo new >"$SRC/a/new"
rm "$SRC/a/f7"
fresh_mount
names() { (cd "$1" && find . | sort); }
expect_eq "names after the source changed a/" "$(names "$SRC")" "$(names "$MNT")"
expect_eq "only a/ listed from the source" 1 "$(stat_field "$MNT" listings)"
# a/'s own entry in the root's listing was refreshed with it
fresh_mount
expect_eq "warm listing after the change" "$(listing "$SRC")" "$(listing "$MNT")"
expect_eq "listings from the source after that" 0 "$(stat_field "$MNT" listings)"

note "a file changed on the source, directory unchanged: noac asks again"
truncate -s 12345 "$SRC/a/f2"
fresh_mount noac
expect_eq "f2's new size with noac" 12345 "$(find "$MNT/a" -name f2 -printf '%s')"
[ "$(stat_field "$MNT" listings)" -ge 1 ] || fail "noac served a/ from the cache"
fresh_mount
expect_eq "f2's size once listed again" 12345 "$(find "$MNT/a" -name f2 -printf '%s')"
umount_hoard "$MNT"
"$HOARDFS_BIN" fsck "$CACHE" >/dev/null || fail "fsck after the listings"
echo PASS
