#!/usr/bin/env bash
# Description: counted at the server side, through a counting TCP proxy in
# front of nfs-ganesha (tests/lib/countproxy.py): after unmount + remount a
# warm read of the whole tree sends no READ to the server, over NFSv3 and
# NFSv4; a file changed directly in the export is fetched again (and only
# that file), and its new bytes are what the mount shows.
. "$(dirname "$0")/mount_common.bash"
. "$TOP/tests/lib/nfs-server.sh"
_cleanups+=("nfs_server_stop")
exp=$W/export
mkdir -p "$exp/d"
head -c 3000000 /dev/urandom >"$exp/big"
head -c 200000 /dev/urandom >"$exp/d/mid"
for i in $(seq 1 20); do head -c $((i * 1000)) /dev/urandom >"$exp/d/s$i"; done
nfs_server_start "$exp" 127.0.0.41 >"$W/nfs-start.log" 2>&1 || skip "no NFS server: $(tail -n 3 "$W/nfs-start.log")"

proxy=127.0.0.42
python3 "$TOP/tests/lib/countproxy.py" "$proxy:2049" "127.0.0.41:2049" "$W/stats.json" \
	--also "$proxy:$NFS_MOUNT_PORT=127.0.0.41:$NFS_MOUNT_PORT" >"$W/proxy.log" 2>&1 &
_pids+=($!)
wait_until 20 bash -c "ss -ltn | grep -q '$proxy:2049 '" ||
	fail "the proxy did not start: $(cat "$W/proxy.log")"

reads() { # READs the server has seen through the proxy
	python3 -c 'import json,sys
try: print(json.load(open(sys.argv[1])).get("reads", 0))
except FileNotFoundError: print(0)' "$W/stats.json"
}
read_tree() {
	cmp "$exp/big" "$MNT/big" || fail "$1: big differs"
	cmp "$exp/d/mid" "$MNT/d/mid" || fail "$1: mid differs"
	for i in $(seq 1 20); do cmp "$exp/d/s$i" "$MNT/d/s$i" || fail "$1: s$i differs"; done
}

for ver in 3 4; do
	if [ "$ver" = 3 ]; then url="nfs://$proxy:2049$exp?version=3&mountport=$NFS_MOUNT_PORT"
	else url="nfs://$proxy:2049$exp?version=4"; fi
	rm -f "$CACHE"
	note "nfs v$ver: cold"
	r0=$(reads)
	mount_hoard "$url" "$MNT"
	read_tree "v$ver cold"
	umount_hoard "$MNT"
	r1=$(reads)
	[ "$r1" -gt "$r0" ] || fail "v$ver: the cold pass sent no READ through the proxy ($r0 -> $r1): not counting"
	note "nfs v$ver: warm after remount ($((r1 - r0)) READs cold)"
	echo 3 >/proc/sys/vm/drop_caches
	mount_hoard "$url" "$MNT"
	read_tree "v$ver warm"
	umount_hoard "$MNT"
	expect_eq "v$ver: READs the server saw on the warm pass" "$r1" "$(reads)"

	note "nfs v$ver: a change in the export is fetched again"
	head -c 200000 /dev/urandom >"$exp/d/mid"
	touch -d '+1 min' "$exp/d/mid"
	mount_hoard "$url" "$MNT"
	read_tree "v$ver after change"
	umount_hoard "$MNT"
	r3=$(reads)
	[ "$r3" -gt "$r1" ] || fail "v$ver: the changed file was not read from the server"
	[ $((r3 - r1)) -le 8 ] || fail "v$ver: $((r3 - r1)) READs after changing one 200 kB file (more than that file)"
done
echo PASS
