#!/usr/bin/env bash
# Description: one file's reads overlap at the server, over NFSv3 and
# NFSv4: a single cold sequential reader (the kernel reads ahead several
# 1 MiB requests at once) has more than one READ in flight through a
# counting proxy with 5 ms each way (tests/lib/countproxy.py,
# max_reads_in_flight); before, the file's one connection sent them one
# after the other.  Concurrent reads at many offsets and sizes of one cold
# file give the server's bytes, and so does a warm read after remount (the
# cache was filled with them).  A file renamed over in the export while
# open is still read as the file that was opened, also by reads that take
# another connection (which open it by path).
. "$(dirname "$0")/mount_common.bash"
. "$TOP/tests/lib/nfs-server.sh"
_cleanups+=("nfs_server_stop")
exp=$W/export
mkdir -p "$exp"
for f in seq rand ren; do head -c $((12 << 20)) /dev/urandom >"$exp/$f"; done
head -c $((12 << 20)) /dev/urandom >"$exp/ren.new"
nfs_server_start "$exp" 127.0.0.47 >"$W/nfs-start.log" 2>&1 || skip "no NFS server: $(tail -n 3 "$W/nfs-start.log")"

# preads THREADS FILE EXPECTED: THREADS threads read FILE at many offsets
# and sizes at once (seeded), every piece compared with EXPECTED; then the
# whole file in 1 MiB pieces from all threads at once.
preads() {
	python3 - "$@" <<'PY'
import os, random, sys, threading
nthr, path, ref = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], "rb").read()
fd = os.open(path, os.O_RDONLY)
bad = []
def work(seed):
    rnd = random.Random(seed)
    jobs = [(rnd.randrange(len(ref)), rnd.choice([1, 4096, 65536, 300000, 1 << 20, 3 << 20]))
            for _ in range(24)]
    jobs += [(o, 1 << 20) for o in range(seed << 20, len(ref), nthr << 20)]
    for off, n in jobs:
        got = os.pread(fd, n, off)
        if got != ref[off:off + n]:
            bad.append("offset %d size %d: got %d bytes, differing" % (off, n, len(got)))
ts = [threading.Thread(target=work, args=(i,)) for i in range(nthr)]
for t in ts: t.start()
for t in ts: t.join()
if bad:
    print("\n".join(bad[:5]))
    sys.exit(1)
PY
}

for ver in 3 4; do
	proxy=127.0.0.$((48 + ver - 3))
	stats=$W/stats$ver.json
	python3 "$TOP/tests/lib/countproxy.py" --delay-ms 5 "$proxy:2049" "127.0.0.47:2049" "$stats" \
		--also "$proxy:$NFS_MOUNT_PORT=127.0.0.47:$NFS_MOUNT_PORT" >"$W/proxy$ver.log" 2>&1 &
	_pids+=($!)
	wait_until 20 bash -c "ss -ltn | grep -q '$proxy:2049 '" ||
		fail "the proxy did not start: $(cat "$W/proxy$ver.log")"
	field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$stats" "$1"; }
	if [ "$ver" = 3 ]; then url="nfs://$proxy:2049$exp?version=3&mountport=$NFS_MOUNT_PORT"
	else url="nfs://$proxy:2049$exp?version=4"; fi
	rm -f "$CACHE"
	echo 3 >/proc/sys/vm/drop_caches

	note "nfs v$ver: one sequential reader, cold"
	mount_hoard "$url" "$MNT"
	cmp "$exp/seq" "$MNT/seq" || fail "v$ver: seq differs"
	max=$(field max_reads_in_flight)
	[ "$(field reads)" -ge 12 ] || fail "v$ver: $(field reads) READs for 12 MiB: not counting"
	[ "$max" -ge 2 ] || fail "v$ver: READs of one file in flight at once: expected >= 2, got $max"
	note "nfs v$ver: up to $max READs of one file in flight"

	note "nfs v$ver: 8 threads at many offsets, cold"
	preads 8 "$MNT/rand" "$exp/rand" || fail "v$ver: concurrent reads of rand gave other bytes"

	note "nfs v$ver: renamed over while open"
	ln -f "$exp/ren" "$exp/ren.old"
	python3 - "$MNT/ren" "$exp/ren.old" "$exp/ren.new" "$exp/ren" <<'PY' || fail "v$ver: a file renamed over was read as the new one"
import os, sys, threading
path, old, new, dst = sys.argv[1:5]
ref = open(old, "rb").read()
fd = os.open(path, os.O_RDONLY)
assert os.pread(fd, 4096, 0) == ref[:4096]
os.link(new, new + ".keep")
os.rename(new, dst)           # on the server's side: the path is another file now
bad = []
def work(i):
    for off in range(i << 20, len(ref), 8 << 20):
        if os.pread(fd, 1 << 20, off) != ref[off:off + (1 << 20)]:
            bad.append(off)
ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for t in ts: t.start()
for t in ts: t.join()
if bad:
    print("differs at offsets", sorted(bad)[:8])
    sys.exit(1)
PY
	mv "$exp/ren.new.keep" "$exp/ren.new"
	mv "$exp/ren.old" "$exp/ren"
	umount_hoard "$MNT"

	note "nfs v$ver: warm after remount"
	echo 3 >/proc/sys/vm/drop_caches
	r0=$(field reads)
	mount_hoard "$url" "$MNT"
	cmp "$exp/seq" "$MNT/seq" || fail "v$ver: seq differs warm"
	cmp "$exp/rand" "$MNT/rand" || fail "v$ver: rand differs warm"
	umount_hoard "$MNT"
	expect_eq "v$ver: READs the server saw on the warm pass" "$r0" "$(field reads)"
done
echo PASS
