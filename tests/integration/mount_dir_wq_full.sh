#!/usr/bin/env bash
# Description: a cached block that fails verification while the work
# queue is full is still answered with the server's bytes.  A hit that
# turns out bad (hit_done) hands its read to a worker; when the queue has
# no room, the completion thread reads from the server itself
# (do_miss(may_wait = false): it must not wait for a fill buffer, which
# only completions give back, so the fill may be skipped).  The sanitizer
# build's HOARDFS_TEST_FAIL=wq_push makes every push find the queue full.
# A file is read through the mount, every block of the cache's data area
# damaged while unmounted, and the file read again with the queue "full":
# whole reads (large hits, verified on the engine's verifier threads) and
# small reads from four threads at once (hits that overlap go
# asynchronously, verified on the completion thread) return the source's
# bytes; the fallback was taken (wq_full), checksum failures counted;
# the daemon leaves no sanitizer report; the cache passes fsck and, after
# a remount without the hook, reads back equal.
. "$(dirname "$0")/mount_common.bash"

cache_f_g

for round in 1 2; do
	damage $((round * 100)) 0x5a
	# round 2: two fill buffers, so that a fallback often finds none
	opts=""
	[ $round = 2 ] && opts=bufs=2
	HOARDFS_TEST_FAIL=wq_push mount_hoard "dir:$SRC" "$MNT" "$opts"
	if [ $round = 1 ]; then
		cmp "$SRC/f" "$MNT/f" || fail "round 1: f: bytes from a damaged cache"
		cmp "$SRC/g" "$MNT/g" || fail "round 1: g: bytes from a damaged cache"
	else
		python3 - "$SRC/f" "$MNT/f" <<'PY' || fail "round 2: parallel reads returned wrong bytes"
import os, random, sys, threading
a, b = (os.open(p, os.O_RDONLY) for p in sys.argv[1:3])
size = os.fstat(a).st_size
bad = []
def reader(seed):
    rnd = random.Random(seed)
    for _ in range(400):
        off, n = rnd.randrange(0, size - 70000), rnd.choice((512, 4096, 5000, 20000, 70000))
        if os.pread(a, n, off) != os.pread(b, n, off):
            bad.append("differs at %d+%d" % (off, n))
            return
ts = [threading.Thread(target=reader, args=(s,)) for s in range(4)]
for t in ts: t.start()
for t in ts: t.join()
if bad:
    sys.exit("; ".join(bad))
PY
		cmp "$SRC/f" "$MNT/f" || fail "round 2: f differs after the parallel reads"
	fi
	inline=$(stat_field "$MNT" wq_full)
	[ "$inline" -gt 0 ] || fail "round $round: no hit fell back with the queue full (wq_full=$inline): is the test hook compiled in (make SAN=1)?"
	bad=$(stat_field "$MNT" cache.csum_errors)
	[ "$bad" -gt 0 ] || fail "round $round: no checksum failure counted (csum_errors=$bad)"
	note "round $round: wq_full=$inline csum_errors=$bad fill_bytes=$(stat_field "$MNT" fill_bytes) fill_skipped=$(stat_field "$MNT" fill_skipped)"
	umount_hoard "$MNT"
	if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$LOG"; then
		fail "round $round: sanitizer report in the daemon's log: $(grep -E -A12 "ERROR: (Address|Leak)Sanitizer|runtime error:" "$LOG" | head -24)"
	fi
	"$HOARDFS_BIN" fsck "$CACHE" >"$W/fsck$round.log" 2>&1 ||
		fail "round $round: fsck: $(cat "$W/fsck$round.log")"
done

mount_hoard "dir:$SRC" "$MNT"
cmp "$SRC/f" "$MNT/f" || fail "f differs after a remount"
cmp "$SRC/g" "$MNT/g" || fail "g differs after a remount"
umount_hoard "$MNT"
echo PASS
