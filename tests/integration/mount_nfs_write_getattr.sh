#!/usr/bin/env bash
# Description: the GETATTR that follows a write through to the server (the
# close settles the file's coherency data from the server's attributes:
# ops.c fh_settle) fails, over NFSv4 through a proxy in front of ganesha
# (tests/lib/countproxy.py, armed by the first WRITE):
#   refused  the GETATTR's call is refused (PROC_UNAVAIL), the connection
#            stays up;
#   cut      the connection is closed once the GETATTR's call has passed.
# Each time, over a file whose old bytes the cache holds (one connection,
# nconn=1): the writer sees success or EIO, never another error and never
# a hang; the server holds exactly what was written (read in the export
# directly); through the mount, stat gives the server's size and mtime
# (also as the daemon answers: --cached=never), a read the server's bytes,
# at once, after dropping the kernel's caches, and after a remount; the
# daemon lives on; no sanitizer report in its log.  Refused, the daemon
# counts the GETATTR's failure (fails when the settle takes the node's
# attributes from before the write for the server's: the old mtime).
# Cut, fails without a fresh context for the broken connection (libnfs
# 4.0 never reconnects a v4 one: every later call failed with EIO).
# Server 127.0.0.85, proxy 127.0.0.86.
. "$(dirname "$0")/mount_common.bash"
. "$TOP/tests/lib/nfs-server.sh"
_cleanups+=("nfs_server_stop")
exp=$W/export
mkdir -p "$exp"
head -c 50000 /dev/urandom >"$exp/f" # not empty: nfs_server_start lists it
nfs_server_start "$exp" 127.0.0.85 >"$W/nfs-start.log" 2>&1 || skip "no NFS server: $(tail -n 3 "$W/nfs-start.log")"
proxy=127.0.0.86
url="nfs://$proxy:2049$NFS_EXPORT?version=4"
# same_file WHAT: the mount's size, mtime and bytes of f are the server's;
# the attributes as the kernel has them and as the daemon gives them
# (--cached=never: a GETATTR to the daemon, which answers from its
# attribute cache if it holds the attributes for fresh)
same_file() {
	local want; want=$(stat -c '%s %Y' "$exp/f")
	expect_eq "$1: size, mtime through the mount" "$want" "$(stat -c '%s %Y' "$MNT/f")"
	expect_eq "$1: size, mtime from the daemon" "$want" "$(stat --cached=never -c '%s %Y' "$MNT/f")"
	cmp "$exp/f" "$MNT/f" || fail "$1: the mount's bytes are not the server's"
}

for mode in refused cut; do
	note "$mode: the GETATTR after a write fails"
	head -c 50000 /dev/urandom >"$exp/f"
	touch -d 2001-02-03 "$exp/f" # the write's mtime differs in seconds
	head -c 70000 /dev/urandom >"$W/new"
	if [ "$mode" = refused ]; then proxy_start $proxy 127.0.0.85 --arm-after WRITE:1 --refuse GETATTR:1
	else proxy_start $proxy 127.0.0.85 --arm-after WRITE:1 --cut-after GETATTR:1; fi
	rm -f "$CACHE"
	mount_hoard "$url" "$MNT" timeout=5,nconn=1
	dpid=${_pids[-1]}
	cmp "$exp/f" "$MNT/f" || fail "$mode: the old bytes read wrong" # now cached
	expect_eq "$mode: fault armed before the write" 0 "$(pstat fault_armed)"

	# write the new bytes over the old (and past them), then close: the
	# close asks for the attributes; what each step gave, bounded
	timeout 60 python3 - "$MNT/f" "$W/new" >"$W/writer.out" 2>&1 <<'PY'
import os, sys
data = open(sys.argv[2], "rb").read()
step = "open"
try:
    fd = os.open(sys.argv[1], os.O_WRONLY)
    step = "write"
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], done)
    step = "close"
    os.close(fd)
    print("ok")
except OSError as e:
    print("%s: errno %d (%s)" % (step, e.errno, e.strerror))
PY
	rc=$?
	[ "$rc" = 124 ] && fail "$mode: the writer hung (60 s)"
	res=$(cat "$W/writer.out")
	case $res in
	ok) ;;
	*"errno 5 "*) note "$mode: the writer got EIO: $res" ;;
	*) fail "$mode: the writer got neither success nor EIO: $res" ;;
	esac
	expect_eq "$mode: GETATTRs failed by the proxy" 1 "$(pstat faults)"
	# refused: the daemon saw the settle's GETATTR fail (not a retry
	# that hid it); cut: a fresh connection may have retried it
	[ "$mode" = refused ] && expect_eq "$mode: server errors the daemon counted" 1 "$(stat_field "$MNT" errors.server)"
	kill -0 "$dpid" 2>/dev/null || fail "$mode: the daemon died"
	if [ "$res" = ok ]; then
		cmp "$W/new" "$exp/f" || fail "$mode: the write succeeded but the server does not hold it"
	fi
	same_file "$mode: right after the close"
	echo 3 >/proc/sys/vm/drop_caches
	same_file "$mode: after dropping the kernel's caches"
	umount_hoard "$MNT"
	proxy_stop
	proxy_start $proxy 127.0.0.85
	mount_hoard "$url" "$MNT" timeout=5,nconn=1
	same_file "$mode: after a remount"
	umount_hoard "$MNT"
	proxy_stop
done
for p in "${_pids[@]}"; do wait_until 20 bash -c "! kill -0 $p 2>/dev/null" || fail "process $p still running 20 s after its stop"; done
if grep -qE "ERROR: (Address|Leak)Sanitizer|runtime error:" "$LOG"; then
	fail "sanitizer report in the daemon's log: $(grep -E -A6 "ERROR: (Address|Leak)Sanitizer|runtime error:" "$LOG" | head -20)"
fi
echo PASS
