#!/usr/bin/env bash
# Description: an NFSv4 listing whose connection breaks in the middle of
# its GETATTR batch (libnfs 4.0's READDIR carries no attributes: one
# GETATTR per entry, 32 in flight on one connection).  A proxy in front of
# ganesha (tests/lib/countproxy.py --cut-after) closes the connection once
# 40 GETATTRs of the first listing have passed.  With one connection
# (nconn=1), the listing of 200 files must fail with EIO or be whole with
# every size right, never partial or wrong, within a bounded time; the
# daemon lives on; with the proxy passing everything again the mount keeps
# working: listings (the first one unchanged, so a partial listing stored
# as whole would be served; then four after changes on the server) are
# whole and right, a file reads back right, and after a remount the stored
# listing is whole.  Regression: libnfs 4.0 never reconnects a v4 context,
# so every call on the broken connection failed with EIO for good.  No
# sanitizer report in the daemon's log (the cut listing's entries were
# leaked, which LeakSanitizer reported at exit).
# Server 127.0.0.81, proxy 127.0.0.82.
. "$(dirname "$0")/mount_common.bash"
. "$TOP/tests/lib/nfs-server.sh"
_cleanups+=("nfs_server_stop")
exp=$W/export
nfiles=200
mkdir -p "$exp/many"
for i in $(seq 1 $nfiles); do head -c $((i * 37)) /dev/urandom >"$exp/many/f$i"; done
nfs_server_start "$exp" 127.0.0.81 >"$W/nfs-start.log" 2>&1 || skip "no NFS server: $(tail -n 3 "$W/nfs-start.log")"

proxy=127.0.0.82
proxy_start $proxy 127.0.0.81 --arm-after READDIR:1 --cut-after GETATTR:40
url="nfs://$proxy:2049$NFS_EXPORT?version=4"

# "name size" lines, sorted: what a listing of many/ must say
want() { (cd "$exp/many" && stat -c '%n %s' -- * | sort); }
# list DIR OUT: every entry's name and size (lstat) into OUT, or exit 1
# with the error in OUT.err; bounded: 124 if it hangs
list() {
	timeout 60 python3 - "$1" >"$2" 2>"$2.err" <<'PY'
import os, sys
d = sys.argv[1]
try:
    out = sorted("%s %d" % (n, os.lstat(os.path.join(d, n)).st_size) for n in os.listdir(d))
except OSError as e:
    print("%s (errno %d)" % (e, e.errno), file=sys.stderr)
    sys.exit(1)
print("\n".join(out))
PY
}
# check_list WHAT: a listing of many/ through the mount is whole and right
check_list() {
	list "$MNT/many" "$W/l"
	case $? in
	0) ;;
	124) fail "$1: the listing hung (60 s)" ;;
	*) fail "$1: the listing failed: $(cat "$W/l.err")" ;;
	esac
	expect_eq "$1: listing (vs the export)" "$(want)" "$(cat "$W/l")"
}

# one connection: the one the cut breaks is the one every later call uses
mount_hoard "$url" "$MNT" timeout=5,nconn=1
dpid=${_pids[-1]}
expect_eq "fault armed before the listing" 0 "$(pstat fault_armed)"

note "a listing whose connection is cut after 40 of its GETATTRs"
t0=$SECONDS
list "$MNT/many" "$W/l1"
rc=$?
[ "$rc" = 124 ] && fail "the cut listing hung (60 s)"
if [ "$rc" = 0 ]; then
	expect_eq "the listing that lived through the cut (vs the export)" "$(want)" "$(cat "$W/l1")"
	note "the listing came back whole ($((SECONDS - t0)) s)"
else
	grep -q "errno 5)" "$W/l1.err" || fail "the cut listing failed, but not with EIO: $(cat "$W/l1.err")"
	note "the listing failed with EIO ($((SECONDS - t0)) s)"
fi
expect_eq "connections cut" 1 "$(pstat faults)"
kill -0 "$dpid" 2>/dev/null || fail "the daemon died"
mountpoint -q "$MNT" || fail "the mount is gone"

note "the proxy passes everything again: the mount keeps working"
check_list "first listing after the cut (directory unchanged)"
cmp "$exp/many/f$nfiles" "$MNT/many/f$nfiles" || fail "f$nfiles reads back wrong"
for k in 1 2 3 4; do
	touch -d "+$k min" "$exp/many" # the server is asked again
	check_list "listing $k after a change on the server"
done
umount_hoard "$MNT"

note "after a remount, the stored listing is whole"
mount_hoard "$url" "$MNT" timeout=5,nconn=1,acregmin=60,acregmax=60,acdirmin=60,acdirmax=60
cmp "$exp/many/f7" "$MNT/many/f7" || fail "f7 reads back wrong after the remount"
check_list "listing after the remount"
expect_eq "listings served from the cache after the remount" 1 "$(stat_field "$MNT" listings_cached)"
umount_hoard "$MNT"
# the daemons' exits (a leak is reported then): bounded
for p in "${_pids[@]:1}"; do wait_until 20 bash -c "! kill -0 $p 2>/dev/null" || fail "daemon $p still running 20 s after umount"; done
if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$LOG"; then
	fail "sanitizer report in the daemon's log: $(grep -E -A6 "ERROR: (Address|Leak)Sanitizer|runtime error:" "$LOG" | head -20)"
fi
echo PASS
