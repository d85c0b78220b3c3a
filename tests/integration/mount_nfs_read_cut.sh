#!/usr/bin/env bash
# Description: the connection to the server breaks in the middle of a cold
# read (a proxy in front of ganesha, tests/lib/countproxy.py --cut-after
# READ:3, closes it once the third READ has passed), over NFSv3 and NFSv4,
# with one connection (nconn=1) so the broken one is the one used next.
# The reader gets the file's bytes or EIO, never other bytes, within a
# bounded time; the daemon lives on; the next read of the file through the
# same mount is whole and right (the mount does not stay broken); after a
# remount the file is read from the cache, equal, with no READ sent (the
# cut read stored nothing wrong and the fills completed); no sanitizer
# report in the daemon's log.  Server 127.0.0.87, proxy 127.0.0.88.
. "$(dirname "$0")/mount_common.bash"
. "$TOP/tests/lib/nfs-server.sh"
_cleanups+=("nfs_server_stop")
exp=$W/export
mkdir -p "$exp"
head -c 8388608 /dev/urandom >"$exp/f"
nfs_server_start "$exp" 127.0.0.87 >"$W/nfs-start.log" 2>&1 || skip "no NFS server: $(tail -n 3 "$W/nfs-start.log")"
proxy=127.0.0.88

for ver in 3 4; do
	if [ "$ver" = 3 ]; then url="nfs://$proxy:2049$exp?version=3&mountport=$NFS_MOUNT_PORT"
	else url="nfs://$proxy:2049$exp?version=4"; fi
	note "v$ver: the connection breaks after the third READ"
	rm -f "$CACHE"
	proxy_start $proxy 127.0.0.87 --cut-after READ:3
	mount_hoard "$url" "$MNT" timeout=5,nconn=1
	pid=$(stat_field "$MNT" pid)
	timeout 60 cat "$MNT/f" >"$W/got" 2>"$W/cat.err"
	rc=$?
	[ $rc -eq 124 ] && fail "v$ver: the cut read hung (60 s)"
	if [ $rc -eq 0 ]; then
		cmp "$exp/f" "$W/got" || fail "v$ver: the cut read returned other bytes than the file's"
	else
		grep -q "Input/output error" "$W/cat.err" || fail "v$ver: the cut read failed with: $(cat "$W/cat.err")"
		cmp -s "$W/got" <(head -c "$(stat -c %s "$W/got")" "$exp/f") ||
			fail "v$ver: the bytes before the failure are not the file's"
	fi
	expect_eq "v$ver: connections cut" 1 "$(pstat faults)"
	kill -0 "$pid" 2>/dev/null || fail "v$ver: the daemon died"
	note "v$ver: cut read: exit $rc; the same mount reads again"
	timeout 60 cmp "$exp/f" "$MNT/f" || fail "v$ver: the next read through the mount is not the file"
	umount_hoard "$MNT"
	proxy_stop
	proxy_start $proxy 127.0.0.87
	echo 3 >/proc/sys/vm/drop_caches
	mount_hoard "$url" "$MNT" timeout=5,nconn=1
	cmp "$exp/f" "$MNT/f" || fail "v$ver: the cached file differs after a remount"
	expect_eq "v$ver: READs sent for the cached file" 0 "$(pstat reads)"
	umount_hoard "$MNT"
	proxy_stop
done
if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$LOG"; then
	fail "sanitizer report in the daemon's log: $(grep -E -A12 "ERROR: (Address|Leak)Sanitizer|runtime error:" "$LOG" | head -24)"
fi
echo PASS
