#!/usr/bin/env bash
# Description: permissions through an allow_other mount with two non-root
# users: files are created with the caller's uid/gid on the source, modes
# are enforced for the other user (read, write, directory entry), chown by
# a non-owner fails, and cached data is not served to a user who may not
# read the file.
. "$(dirname "$0")/mount_common.bash"

for u in hoardu1 hoardu2; do
	id "$u" >/dev/null 2>&1 || useradd -M -N -s /bin/sh "$u" 2>/dev/null || skip "cannot create user $u"
done
u1=$(id -u hoardu1); u2=$(id -u hoardu2)
chmod 755 "$W"
chmod 1777 "$SRC"
as() { local u=$1; shift; setpriv --reuid="$u" --regid="$(id -g "$u")" --clear-groups "$@"; }

mount_hoard "dir:$SRC" "$MNT" allow_other

note "create as hoardu1"
as hoardu1 sh -c "echo secret >'$MNT/p1'; chmod 600 '$MNT/p1'" || fail "hoardu1 cannot create"
expect_eq "owner on the source" "$u1" "$(stat -c %u "$SRC/p1")"
expect_eq "owner via the mount" "$u1" "$(stat -c %u "$MNT/p1")"
expect_eq "hoardu1 reads" secret "$(as hoardu1 cat "$MNT/p1")"
as hoardu2 cat "$MNT/p1" 2>/dev/null && fail "hoardu2 read a 0600 file of hoardu1"
as hoardu2 sh -c "echo x >>'$MNT/p1'" 2>/dev/null && fail "hoardu2 wrote a 0600 file of hoardu1"
as hoardu2 chown hoardu2 "$MNT/p1" 2>/dev/null && fail "hoardu2 chowned hoardu1's file"
as hoardu2 chmod 666 "$MNT/p1" 2>/dev/null && fail "hoardu2 chmodded hoardu1's file"

note "shared read, private directory"
as hoardu1 sh -c "echo public >'$MNT/p2'; chmod 644 '$MNT/p2'; mkdir -m 700 '$MNT/priv'; echo x >'$MNT/priv/f'"
expect_eq "hoardu2 reads a 0644 file" public "$(as hoardu2 cat "$MNT/p2")"
as hoardu2 sh -c "echo y >'$MNT/p2'" 2>/dev/null && fail "hoardu2 wrote a 0644 file of hoardu1"
as hoardu2 ls "$MNT/priv" >/dev/null 2>&1 && fail "hoardu2 listed a 0700 directory"
as hoardu2 cat "$MNT/priv/f" >/dev/null 2>&1 && fail "hoardu2 read through a 0700 directory"
as hoardu2 rm -f "$MNT/p2" 2>/dev/null; [ -e "$SRC/p2" ] || fail "hoardu2 removed hoardu1's file in a sticky directory"

note "hoardu2's own files"
as hoardu2 sh -c "echo mine >'$MNT/q'" || fail "hoardu2 cannot create"
expect_eq "owner of q" "$u2:$(id -g hoardu2)" "$(stat -c %u:%g "$SRC/q")"
as hoardu1 sh -c "echo z >'$MNT/q'" 2>/dev/null && fail "hoardu1 overwrote hoardu2's 0644 file"

note "cached data is still permission-checked"
cat "$MNT/p1" >/dev/null   # root reads: now cached
as hoardu2 cat "$MNT/p1" 2>/dev/null && fail "hoardu2 read cached 0600 data"
umount_hoard "$MNT"
echo PASS
