#!/usr/bin/env bash
# Description: one process at a time on a cache (invariant O1).  A second
# mount of a cache in use, on another mountpoint, is refused at once and
# names the mount that holds it; fsck --repair, a read-only fsck, inspect
# and format --force are refused while it is mounted, and the cache is intact
# after.  After a plain umount (which returns before the daemon has written
# its last commit) a new mount of the same cache waits for the old daemon
# instead of failing or opening the cache beside it: a stand-in process
# holds the cache's lock, the new mount is seen waiting and not mounted,
# the stand-in exits, and the new mount comes up with the data still
# cached.  With -o lockwait=1 the wait ends in a clear error.  A cache on
# a block device (a loop device) is opened O_EXCL: another exclusive opener
# fails the mount at once, and a second mount names the first.
. "$(dirname "$0")/mount_common.bash"

head -c 3000000 /dev/urandom >"$SRC/f"
mount_hoard "dir:$SRC" "$MNT"
cmp "$SRC/f" "$MNT/f" || fail "first read"
pid1=$(stat_field "$MNT" pid)

note "a second mount of the same cache"
MNT2=$W/mnt2
mkdir -p "$MNT2"
if "$HOARDFS_BIN" mount "dir:$SRC" "$MNT2" --cache "$CACHE" -o "log=$W/second.log" 2>"$W/second.err"; then
	_mounts+=("$MNT2")
	fail "a second mount of a cache in use succeeded"
fi
grep -q "in use by the hoardfs serving $MNT (pid $pid1)" "$W/second.err" ||
	fail "second mount: $(cat "$W/second.err")"
mountpoint -q "$MNT2" && fail "the second mount point is mounted"

note "fsck --repair, fsck, inspect and format --force of a mounted cache"
"$HOARDFS_BIN" fsck "$CACHE" --repair >"$W/cmd.out" 2>&1 && fail "fsck --repair of a mounted cache succeeded"
grep -q "open in another process" "$W/cmd.out" || fail "fsck --repair: $(cat "$W/cmd.out")"
"$HOARDFS_BIN" fsck "$CACHE" >"$W/cmd.out" 2>&1 && fail "fsck of a mounted cache succeeded"
grep -q "open in another process" "$W/cmd.out" || fail "fsck: $(cat "$W/cmd.out")"
"$HOARDFS_BIN" inspect "$CACHE" >"$W/cmd.out" 2>&1 && fail "inspect of a mounted cache succeeded"
grep -q "open in another process" "$W/cmd.out" || fail "inspect: $(cat "$W/cmd.out")"
"$HOARDFS_BIN" format "$CACHE" --force >"$W/cmd.out" 2>&1 && fail "format --force of a mounted cache succeeded"
grep -q "open in another process" "$W/cmd.out" || fail "format --force: $(cat "$W/cmd.out")"
cmp "$SRC/f" "$MNT/f" || fail "read after the refused commands"
expect_eq "bytes from the server after the refused commands" 3000000 "$(stat_field "$MNT" bytes_from_server)"

note "a mount waits for a process that holds the cache and serves no mount"
# As the daemon of a plain umount(8) does while it writes its last commit
# (umount returns before that).  A stand-in holds the lock, so that the
# wait is seen deterministically: it lets go when its stdin closes.
umount_hoard "$MNT"
mkfifo "$W/hold"
# hold_cache EX|SH|EXCL [PATH]: a stand-in holds PATH ($CACHE) as the
# engine does (flock exclusive or shared), or a block device as another
# exclusive opener (O_EXCL), until fd $hold (the fifo's writing end) is
# closed; sets hpid
hold_cache() {
	python3 -c '
import fcntl, os, sys
if sys.argv[2] == "EXCL":
    fd = os.open(sys.argv[1], os.O_RDONLY | os.O_EXCL)
else:
    f = open(sys.argv[1], "rb+")
    fcntl.flock(f, getattr(fcntl, "LOCK_" + sys.argv[2]))
print("locked", flush=True)
sys.stdin.read()' "${2:-$CACHE}" "$1" <"$W/hold" >"$W/holder.out" &
	hpid=$!
	exec {hold}>"$W/hold"
	_cleanups+=("kill $hpid 2>/dev/null")
	wait_until 30 grep -q locked "$W/holder.out" || fail "the stand-in did not take the lock"
}
hold_cache EX
"$HOARDFS_BIN" mount "dir:$SRC" "$MNT" --cache "$CACHE" -o "log=$LOG" 2>"$W/third.err" {hold}>&- &
mpid=$!
wait_until 30 grep -q "waiting for pid $hpid" "$W/third.err" ||
	fail "the mount did not wait for the holder: $(cat "$W/third.err")"
mountpoint -q "$MNT" && fail "mounted while another process holds the cache"
exec {hold}>&-
wait "$mpid" || fail "mount after the holder let go: $(cat "$W/third.err")"
_mounts+=("$MNT")
_pids+=("$(stat_field "$MNT" pid)")
cmp "$SRC/f" "$MNT/f" || fail "read after the new mount"
expect_eq "bytes from the server after the new mount" 0 "$(stat_field "$MNT" bytes_from_server)"
umount_hoard "$MNT"

note "a holder that does not let go within -o lockwait"
hold_cache SH
"$HOARDFS_BIN" mount "dir:$SRC" "$MNT" --cache "$CACHE" -o "log=$LOG,lockwait=1" 2>"$W/fourth.err" {hold}>&- &&
	{ _mounts+=("$MNT"); fail "mounted beside a holder that never let go"; }
grep -q "in use by pid $hpid, still running after 1 s" "$W/fourth.err" ||
	fail "lockwait=1: $(cat "$W/fourth.err")"
exec {hold}>&-
wait "$hpid"
"$HOARDFS_BIN" fsck "$CACHE" >/dev/null || fail "fsck at the end"

note "a cache on a block device: O_EXCL, and a holder with no lock to name"
truncate -s 64M "$W/dev.img"
lo=$(losetup -f --show "$W/dev.img" 2>/dev/null) || skip "no loop device (the rest passed)"
_cleanups+=("losetup -d $lo")
"$HOARDFS_BIN" format "$lo" >/dev/null || fail "format $lo"
hold_cache EXCL "$lo"
# the kernel refuses the exclusive open and /proc/locks names nobody: the
# mount fails at once instead of waiting lockwait for a pid it cannot know
"$HOARDFS_BIN" mount "dir:$SRC" "$MNT" --cache "$lo" -o "log=$LOG" 2>"$W/fifth.err" {hold}>&- &&
	{ _mounts+=("$MNT"); fail "mounted a block device another process holds exclusively"; }
grep -q "in use by another process" "$W/fifth.err" || fail "O_EXCL holder: $(cat "$W/fifth.err")"
grep -q "waiting" "$W/fifth.err" && fail "waited for a holder it cannot name: $(cat "$W/fifth.err")"
exec {hold}>&-
wait "$hpid"
CACHE=$lo mount_hoard "dir:$SRC" "$MNT"
cmp "$SRC/f" "$MNT/f" || fail "read through the block device cache"
"$HOARDFS_BIN" mount "dir:$SRC" "$MNT2" --cache "$lo" -o "log=$W/second.log" 2>"$W/sixth.err" &&
	{ _mounts+=("$MNT2"); fail "a second mount of a block device cache in use succeeded"; }
grep -q "in use by the hoardfs serving $MNT" "$W/sixth.err" || fail "second mount of $lo: $(cat "$W/sixth.err")"
umount_hoard "$MNT"
echo PASS
