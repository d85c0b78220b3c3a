#!/usr/bin/env bash
# Description: unmounting while cache fills are still completing frees
# nothing a fill's completion still uses.  A fill's callback (fill_done,
# hit_done) gave its buffer back, then dropped its file handle; once the
# last buffer is back, teardown (hfs_io_stop, then hfs_destroy) frees the
# filesystem, so a callback still between the two touched freed memory
# (seen once under ASan at an unmount right after a read).  The sanitizer
# build's test point HOARDFS_TEST_PAUSE=pool_put:MS holds every thread for
# MS ms right after it gives a buffer back, which makes that window wide:
# a cold read leaves its fills queued behind the first one's pause, and
# the unmount starts before they are done.  Asserts: the unmount
# completes, the daemon exits with status 0 and leaves no sanitizer
# report, and what the fills stored is sound (fsck) and reads back equal
# to the source after a remount.
. "$(dirname "$0")/mount_common.bash"

head -c 4194304 /dev/urandom >"$SRC/f"
for round in 1 2; do
	rm -f "$CACHE"
	HOARDFS_TEST_PAUSE=pool_put:250 mount_hoard "dir:$SRC" "$MNT"
	pid=$(stat_field "$MNT" pid)
	cat "$MNT/f" >/dev/null || fail "round $round: cold read failed"
	# the fills are queued behind the first one's pause: unmount now
	pending=$(( $(stat_field "$MNT" fill_bytes) > 0 ))
	expect_eq "round $round: fills started" 1 "$pending"
	"$HOARDFS_BIN" umount "$MNT" || fail "round $round: umount failed"
	mountpoint -q "$MNT" && fail "round $round: still mounted after umount"
	wait_until 30 bash -c "! kill -0 $pid 2>/dev/null" || fail "round $round: daemon $pid did not exit"
	if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$LOG"; then
		fail "round $round: sanitizer report in the daemon's log: $(grep -E -A12 "ERROR: (Address|Leak)Sanitizer|runtime error:" "$LOG" | head -24)"
	fi
	"$HOARDFS_BIN" fsck "$CACHE" >"$W/fsck$round.log" 2>&1 ||
		fail "round $round: fsck after the unmount: $(cat "$W/fsck$round.log")"
	mount_hoard "dir:$SRC" "$MNT"
	cmp "$SRC/f" "$MNT/f" || fail "round $round: f differs from the source after a remount"
	umount_hoard "$MNT"
done
echo PASS
