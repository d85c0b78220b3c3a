# bench/lib/common.sh - helpers for bench/run (sourced): results, timing,
# caches, mounts of every system compared, daemon CPU and memory.
#
# Owns: the results file ($RES, one measurement a line:
#   workload <TAB> system <TAB> metric <TAB> value <TAB> rep)
# and every mount, process and namespace it starts, which it records so
# bench_cleanup (the EXIT trap) can undo them by pid and by path.
# Needs: TOP H BB WORK RES LOGD set by bench/run.

_B_MOUNTS=()   # mount points to unmount at exit
_B_PIDS=()     # processes to stop at exit
_B_NETNS=()    # network namespaces to delete at exit
_B_LINKS=()    # host-side veth links to delete at exit

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { log "bench: $*"; exit 1; }

# rec WORKLOAD SYSTEM METRIC VALUE: one measurement of repetition $REP.
rec() {
	[ -n "$4" ] || { log "no value for $1 $2 $3"; return 0; }
	printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${REP:-1}" >>"$RES"
	log "  $1 $2 $3 = $4"
}

now_ns() { date +%s%N; }
# secs_since T0_NS: seconds elapsed, 3 decimals
secs_since() { awk -v a="$1" -v b="$(now_ns)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# ---- processes ----

# cpu_ticks PID: utime + stime in clock ticks
cpu_ticks() {
	local s
	s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
	s=${s##*) }
	set -- $s
	echo $(( ${12} + ${13} ))
}
CLK_TCK=$(getconf CLK_TCK)

# rss_sampler PID FILE: the largest VmRSS (KiB) seen, every 0.2 s, in FILE
rss_sampler() {
	local pid=$1 f=$2 max=0 k v
	while [ -e "/proc/$pid" ]; do
		while read -r k v _; do
			if [ "$k" = VmRSS: ]; then
				[ "$v" -gt "$max" ] && { max=$v; echo "$max" >"$f"; }
				break
			fi
		done <"/proc/$pid/status" 2>/dev/null
		sleep 0.2
	done
}

vm_field() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }

wait_gone() { # PID SECONDS
	local i
	for i in $(seq 1 $(($2 * 10))); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

wait_mounted() { # MNT SECONDS
	local i
	for i in $(seq 1 $(($2 * 10))); do
		mountpoint -q "$1" && return 0
		sleep 0.1
	done
	return 1
}

# ---- the systems ----
# Every mount_* sets DPID (the serving process, for CPU and memory) and
# starts an RSS sampler; sys_umount reads the peak and records it under
# $MEM_WL (the workload) when the system is a hoardfs mount.

_b_track() { # MNT PID
	_B_MOUNTS+=("$1")
	_B_PIDS+=("$2")
	DPID=$2
	echo 0 >"$WORK/rss.$2"
	rss_sampler "$2" "$WORK/rss.$2" &
	SAMPLER=$!
}

# mount_hoard SOURCE MNT CACHE [PREFIX...]: PREFIX runs the daemon (nsenter)
mount_hoard() {
	local src=$1 mnt=$2 cache=$3
	shift 3
	"$@" "$H" mount "$src" "$mnt" --cache "$cache" \
		-o "cachesize=$CACHESIZE,log=$LOGD/hoardfs.log" 2>>"$LOGD/hoardfs.err" ||
		die "hoardfs mount $src failed (see $LOGD)"
	local pid
	pid=$("$H" stat "$mnt" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])') ||
		die "no stats from the daemon of $mnt"
	_b_track "$mnt" "$pid"
}

mount_rclone() { # MNT CACHEDIR
	"$RCLONE" mount "$EXPORT" "$1" --vfs-cache-mode full --cache-dir "$2" \
		--config "$WORK/rclone.conf" --log-file "$LOGD/rclone.log" </dev/null &
	local pid=$!
	wait_mounted "$1" 20 || die "rclone mount $1 did not come up (see $LOGD/rclone.log)"
	_b_track "$1" "$pid"
}

mount_nullfs() { # MNT [ARGS...]: nullfs's arguments after MNT, "${BIG_MB}M" by default
	local mnt=$1
	shift
	[ $# -gt 0 ] || set -- "${BIG_MB}M"
	"$BB/nullfs" "$mnt" "$@" </dev/null >>"$LOGD/nullfs.log" 2>&1 &
	local pid=$!
	wait_mounted "$mnt" 20 || die "nullfs did not mount $mnt"
	_b_track "$mnt" "$pid"
}

# hoard_stat MNT FIELD.PATH
hoard_stat() {
	"$H" stat "$1" --json 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    d = d[k]
print(d)' "$2"
}

# sys_umount MNT [SYSTEM]: unmount; with SYSTEM, record the daemon's peak
# resident memory (MiB) under workload $MEM_WL
sys_umount() {
	local mnt=$1 sys=${2:-} pid=$DPID hwm peak
	hwm=$(vm_field "$pid" VmHWM)
	case $sys in
	hoard*)
		"$H" umount "$mnt" 2>>"$LOGD/hoardfs.err" ;;
	*)
		fusermount3 -u "$mnt" 2>>"$LOGD/umount.err" || kill "$pid" 2>/dev/null ;;
	esac
	mountpoint -q "$mnt" && { umount -l "$mnt" 2>/dev/null; log "lazy unmount of $mnt"; }
	wait_gone "$pid" 20 || { log "pid $pid did not exit; killing"; kill -KILL "$pid" 2>/dev/null; }
	wait "$SAMPLER" 2>/dev/null
	peak=$(cat "$WORK/rss.$pid" 2>/dev/null)
	[ -n "$hwm" ] && [ "${peak:-0}" -lt "$hwm" ] && peak=$hwm
	if [ -n "$sys" ] && [ -n "$peak" ] && [ "$peak" -gt 0 ]; then
		rec "$MEM_WL" "$sys" rss_peak_mib "$(awk -v k="$peak" 'BEGIN { printf "%.1f", k / 1024 }')"
	fi
	rm -f "$WORK/rss.$pid"
	return 0
}

# _cpu_per_gib TICKS0 TICKS1 BYTES: CPU seconds per GiB
_cpu_per_gib() {
	awk -v a="$1" -v b="$2" -v hz="$CLK_TCK" -v n="$3" 'BEGIN { printf "%.2f", (b - a) / hz / (n / 1073741824) }'
}
# cpu_start / cpu_rec WORKLOAD SYSTEM METRIC BYTES: daemon CPU seconds per GiB
cpu_start() { CPU0=$(cpu_ticks "$DPID"); }
cpu_rec() { rec "$1" "$2" "$3" "$(_cpu_per_gib "$CPU0" "$(cpu_ticks "$DPID")" "$4")"; }
# ganesha_start / ganesha_rec WORKLOAD SYSTEM METRIC BYTES: the NFS
# server's CPU seconds per GiB ($GANESHA_PID)
ganesha_start() { GCPU0=$(cpu_ticks "$GANESHA_PID"); }
ganesha_rec() { rec "$1" "$2" "$3" "$(_cpu_per_gib "$GCPU0" "$(cpu_ticks "$GANESHA_PID")" "$4")"; }

# busy_start, busy_stop right after the measurement, busy_rec WORKLOAD
# SYSTEM METRIC: how busy the whole machine was in between, in percent of
# all its cores (100 = every core busy): (total - idle - iowait) / total
# of /proc/stat's aggregate cpu line (total = user .. steal; guest time is
# inside user).  Everything on the machine counts, not only ours: it says
# whether a measurement was short of CPU.
_stat_cpu() { # prints "TOTAL IDLE+IOWAIT" in ticks
	local k u n s i w q sq st _
	read -r k u n s i w q sq st _ </proc/stat
	echo "$((u + n + s + i + w + q + sq + st)) $((i + w))"
}
busy_start() { BUSY0=$(_stat_cpu); }
busy_stop() { BUSY1=$(_stat_cpu); }
busy_rec() {
	rec "$1" "$2" "$3" "$(awk -v a="$BUSY0" -v b="$BUSY1" 'BEGIN {
		split(a, x, " "); split(b, y, " "); t = y[1] - x[1]
		if (t > 0) printf "%.0f", 100 * (t - (y[2] - x[2])) / t }')"
}
# mcpu_rec WORKLOAD SYSTEM METRIC BYTES: over the same interval, the whole
# machine's CPU seconds (every core, everything running: the reader, the
# kernel, the daemon, the server) per GiB of BYTES.  With nproc cores, no
# read that costs this much can go faster than nproc / it GiB/s.
mcpu_rec() {
	rec "$1" "$2" "$3" "$(awk -v a="$BUSY0" -v b="$BUSY1" -v n="$4" -v hz="$CLK_TCK" 'BEGIN {
		split(a, x, " "); split(b, y, " "); busy = (y[1] - x[1]) - (y[2] - x[2])
		if (n > 0) printf "%.2f", busy / hz / (n / 1073741824) }')"
}

# ---- fio ----
# fio_run ARGS...: prints "MBps IOPS" of the read side (terse v3 fields 7, 8)
fio_run() {
	fio --name=b --output-format=terse --terse-version=3 --readonly "$@" 2>>"$LOGD/fio.err" |
		awk -F';' 'NR == 1 { printf "%.1f %.0f\n", $7 * 1024 / 1e6, $8 }'
}
fio_seq() { # FILE: buffered sequential 1 MiB reads, as an application reads
	fio_run --filename="$1" --rw=read --bs=1M --ioengine=psync --direct=0 \
		--size="${BIG_MB}M" --invalidate=1 | cut -d' ' -f1
}
# The device ceilings run fio with its buffers on huge pages, as hoardfs's
# are (hoard_iobuf_alloc): from malloc'd pages a 1 MiB O_DIRECT transfer is
# up to 256 device segments, which on virtio-blk fill the queue on their
# own (docs/DESIGN.md, "I/O buffers"), and the ceiling would be fio's
# allocator's, not the device's.  THP is set to "always" for the fio
# process only (restored after it, and by bench_cleanup); left alone where
# it is "never", since hoardfs then gets no huge pages either.
THP_CTL=/sys/kernel/mm/transparent_hugepage/enabled
THP_WAS=$(sed -n 's/.*\[\(.*\)\].*/\1/p' "$THP_CTL" 2>/dev/null)
with_thp() { # CMD...: CMD with transparent huge pages "always"
	local rc
	[ -n "$THP_WAS" ] && [ "$THP_WAS" != never ] && echo always >"$THP_CTL" 2>/dev/null
	"$@"
	rc=$?
	[ -n "$THP_WAS" ] && echo "$THP_WAS" >"$THP_CTL" 2>/dev/null
	return $rc
}
fio_dev_seq() { # the device ceiling: 1 MiB O_DIRECT reads, 4 in flight, of $WORK/dev/fio.dat
	with_thp fio_run --filename="$WORK/dev/fio.dat" --rw=read --bs=1M --ioengine=io_uring --iodepth=4 \
		--direct=1 --size="${BIG_MB}M" --time_based --runtime="$RAND_SECS" | cut -d' ' -f1
}
# The ceiling for storing what is read: 1 MiB O_DIRECT writes, 16 in flight,
# into a freshly reserved file of the cache's filesystem (as a new image's
# blocks are), then fsync, timed together (fio's end_fsync): a cache that
# commits its index flushes the data first (docs/FORMAT.md, I4), so this is
# the rate at which it can take in new data for good.
fio_dev_wsync() {
	local f=$WORK/dev/fio-w.dat
	rm -f "$f"
	fallocate -l "${BIG_MB}M" "$f" 2>>"$LOGD/fio.err" || { echo ""; return; }
	with_thp fio --name=b --output-format=terse --terse-version=3 --filename="$f" --rw=write --bs=1M \
		--ioengine=io_uring --iodepth=16 --direct=1 --size="${BIG_MB}M" --end_fsync=1 \
		2>>"$LOGD/fio.err" | awk -F';' 'NR == 1 { printf "%.1f\n", $48 * 1024 / 1e6 }'
	rm -f "$f"
}
fio_rand() { # FILE QD: 4 KiB random reads, O_DIRECT through the mount
	fio_run --filename="$1" --rw=randread --bs=4k --ioengine=io_uring --iodepth="$2" \
		--direct=1 --size="${BIG_MB}M" --time_based --runtime="$RAND_SECS" \
		--norandommap --randrepeat=0 | cut -d' ' -f2
}

# ---- cleanup ----
bench_cleanup() {
	local m p n
	for m in "${_B_MOUNTS[@]}"; do
		if mountpoint -q "$m" 2>/dev/null; then
			"$H" umount "$m" 2>/dev/null || fusermount3 -u "$m" 2>/dev/null || umount -l "$m" 2>/dev/null
		fi
	done
	for p in "${_B_PIDS[@]}"; do
		kill -0 "$p" 2>/dev/null && kill "$p" 2>/dev/null
	done
	for p in "${_B_PIDS[@]}"; do
		wait_gone "$p" 5 || kill -KILL "$p" 2>/dev/null
	done
	declare -F nfs_server_stop >/dev/null && nfs_server_stop >/dev/null 2>&1
	for n in "${_B_LINKS[@]}"; do ip link del "$n" 2>/dev/null; done
	for n in "${_B_NETNS[@]}"; do ip netns del "$n" 2>/dev/null; done
	[ -n "$THP_WAS" ] && echo "$THP_WAS" >"$THP_CTL" 2>/dev/null
	return 0
}
