#!/usr/bin/env bash
# Description: an NFSv4 listing's attributes (libnfs 4.0's READDIR gives
# none: one GETATTR per entry) are asked for many at a time, not one round
# trip each: 152 entries behind a proxy adding 20 ms each way (40 ms round
# trips, 6 s one by one; 7.1 s before) list with many GETATTRs in flight
# at once at the proxy (0.7 s), with every entry's attributes right.
# Server: ganesha on 127.0.0.51, proxy on 127.0.0.52.  Exit 0/1/77.
set -u
top=${HOARDFS_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${HOARDFS_BIN:-$top/build/asan/hoardfs}
work=${HOARD_TEST_DIR:-$(mktemp -d)}
addr=127.0.0.51 proxy=127.0.0.52

[ -x "$bin" ] || { echo "skip: $bin not built"; exit 77; }
[ "$(id -u)" -eq 0 ] || { echo "skip: needs root (ganesha)"; exit 77; }
command -v ganesha.nfsd >/dev/null || { echo "skip: nfs-ganesha not installed"; exit 77; }
command -v python3 >/dev/null || { echo "skip: python3 not installed"; exit 77; }

. "$top/tests/lib/nfs-server.sh"
ppid_=""
cleanup() {
	[ -n "$ppid_" ] && kill "$ppid_" 2>/dev/null
	nfs_server_stop
}
trap cleanup EXIT

ex=$work/export
mkdir -p "$ex/many" || exit 1
for i in $(seq 1 150); do printf '%d\n' "$i" >"$ex/many/f$i"; done
mkdir "$ex/many/sub"
ln -s f1 "$ex/many/link"
HOARDFS_BIN=$bin nfs_server_start "$ex" "$addr" >"$work/server.log" 2>&1 ||
	{ echo "skip: no NFS server: $(tail -n 3 "$work/server.log")"; exit 77; }
python3 "$top/tests/lib/countproxy.py" --delay-ms 20 "$proxy:2049" "$addr:2049" "$work/stats.json" \
	>"$work/proxy.log" 2>&1 &
ppid_=$!
up=0
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/$proxy/2049") 2>/dev/null && { up=1; break; }; sleep 0.1; done
[ "$up" = 1 ] || { echo "FAIL: the counting proxy did not start: $(tail -n 3 "$work/proxy.log")"; exit 1; }
url="nfs://$proxy:2049$NFS_EXPORT?version=4"

# what the listing must say: mode size mtime fileid name, as `hoardfs ls -l`
want=$(cd "$ex/many" && for f in * ; do stat -c '%f %s %Y %i %n' "$f"; done | sort)
fmt() { # hoardfs ls -l lines -> hex mode, size, mtime seconds, fileid, name
	python3 -c '
import sys
for l in sys.stdin:
    m, size, mtime, fid, name = l.rstrip("\n").split(" ", 4)
    print("%x %s %d %s %s" % (int(m, 8), size, int(float(mtime)), fid, name))' | sort
}
t0=$(date +%s%N)
got=$("$bin" ls "$url" /many -l --nconn 1 2>"$work/ls.err") || { echo "FAIL: ls: $(cat "$work/ls.err")"; exit 1; }
ms=$((($(date +%s%N) - t0) / 1000000))
fails=0
fmtd=$(printf '%s\n' "$got" | fmt 2>"$work/fmt.err") || { echo "FAIL: unexpected ls -l output: $got"; exit 1; }
if [ "$fmtd" != "$want" ]; then
	echo "FAIL: listing differs"; diff <(echo "$want") <(echo "$fmtd") | head; fails=$((fails + 1))
fi
# One by one, the proxy never sees more than one call of this one
# connection waiting for its reply; many at once, a batch's worth.  (The
# time is shown, not asserted: 152 round trips of 40 ms would be 6 s.)
echo "--- listed 152 entries in $ms ms"
inflight=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["max_calls_in_flight"])' "$work/stats.json")
echo "--- at most $inflight calls in flight"
[ "$inflight" -ge 8 ] || { echo "FAIL: at most $inflight calls in flight: one GETATTR per round trip?"; fails=$((fails + 1)); }
[ "$fails" = 0 ] && echo PASS
[ "$fails" = 0 ]
