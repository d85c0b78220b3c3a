#!/usr/bin/env bash
# Description: the daemon killed with SIGKILL in the middle of filling the
# cache (reads and writes in flight, commits pending) loses nothing that
# matters: the cache opens again (journal recovery), fsck finds it sound,
# no block fails its checksum, and every byte read through the remounted
# filesystem equals the source.
. "$(dirname "$0")/mount_common.bash"

for i in $(seq 1 6); do head -c 6000000 /dev/urandom >"$SRC/f$i"; done
for round in 1 2 3; do
	mount_hoard "dir:$SRC" "$MNT"
	pid=$(stat_field "$MNT" pid)
	jobs=()
	for i in $(seq 1 6); do cat "$MNT/f$i" >/dev/null 2>&1 & jobs+=($!); done
	head -c 3000000 /dev/urandom >"$W/w$round"
	cp "$W/w$round" "$MNT/w$round" 2>/dev/null & jobs+=($!)
	# kill once the cache is being filled
	wait_until 30 bash -c "[ \"\$(\"$HOARDFS_BIN\" stat \"$MNT\" --json 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin)[\"reads\"][\"ops\"])' 2>/dev/null || echo 0)\" -gt 10 ]" ||
		fail "round $round: no reads through the mount"
	kill -KILL "$pid"
	wait_until 30 bash -c "! kill -0 $pid 2>/dev/null" || fail "daemon $pid survived SIGKILL"
	for j in "${jobs[@]}"; do wait "$j" 2>/dev/null || true; done
	fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
	"$HOARDFS_BIN" fsck "$CACHE" >"$W/fsck$round.log" 2>&1 ||
		fail "round $round: fsck after SIGKILL: $(cat "$W/fsck$round.log")"
	mount_hoard "dir:$SRC" "$MNT"
	for i in $(seq 1 6); do cmp "$SRC/f$i" "$MNT/f$i" || fail "round $round: f$i differs after SIGKILL + remount"; done
	if [ -f "$SRC/w$round" ]; then cmp "$SRC/w$round" "$MNT/w$round" || fail "round $round: w$round differs from the source"; fi
	expect_eq "round $round: blocks failing their checksum" 0 "$(stat_field "$MNT" cache.csum_errors)"
	umount_hoard "$MNT"
done
echo PASS
