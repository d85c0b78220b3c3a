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
# cached.  With -o lockwait=1 the wait ends in a clear error.
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
# hold_cache EX|SH: a stand-in takes the cache's lock (as the engine does)
# and keeps it until fd $hold (the fifo's writing end) is closed; sets hpid
hold_cache() {
	python3 -c '
import fcntl, sys
f = open(sys.argv[1], "rb+")
fcntl.flock(f, getattr(fcntl, "LOCK_" + sys.argv[2]))
print("locked", flush=True)
sys.stdin.read()' "$CACHE" "$1" <"$W/hold" >"$W/holder.out" &
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
echo PASS
