# nfs-server.sh - real NFS servers (nfs-ganesha, FSAL VFS, in userspace)
# for integration tests, the demo and the benchmarks.  Source it; needs
# root, ganesha.nfsd and rpcbind.
#
#   nfs_server_start DIR ADDR [PORT]   export DIR over NFSv3 and NFSv4 on
#                                      ADDR (a 127.x.y.z) port PORT (2049)
#   nfs_server_stop [PID]              stop that server, or every server
#                                      this shell started
#
# After nfs_server_start these are set and exported:
#   NFS_PID NFS_LOG NFS_CONF NFS_ADDR NFS_PORT NFS_MOUNT_PORT NFS_EXPORT
#   NFS_URL3  nfs://ADDR:PORT/EXPORT?version=3&mountport=MNT
#   NFS_URL4  nfs://ADDR:PORT/EXPORT?version=4
# The export path is DIR's real path, for v3 and v4 alike.
#
# rpcbind: ganesha refuses to start NFSv3 unless it can register with
# rpcbind, so one `rpcbind -w` is started if none answers, and left running
# (other servers may use it).  All servers share it and register the same
# programs: last start wins, and a server that stops unregisters them for
# everyone.  Every server therefore uses the same NFS port and the same MOUNT
# port (NFS_MOUNT_PORT, default 20048) on its own address -- a portmapper
# answer is only a port number, so it is right for all of them -- and
# NFS_URL3 names both ports, so libnfs never asks the portmapper at all.
# Several servers on different 127.x addresses, ours or not, coexist.
#
# Servers run in the foreground (-F) as children of the calling shell: they
# share its process group, so a test runner's timeout kills them too.  So
# never use a bare `wait` in a script that started one: it waits for the
# server as well.  Wait for your own pids by number.
# Typical test:
#   . "$HOARDFS_TOP/tests/lib/nfs-server.sh"
#   trap nfs_server_stop EXIT
#   nfs_server_start "$PWD/export" 127.0.0.21 || exit 77

_NFS_SERVERS=()

_nfs_plugins_dir() {
	local d
	for d in /usr/lib/x86_64-linux-gnu/ganesha /usr/lib/aarch64-linux-gnu/ganesha \
		/usr/lib64/ganesha /usr/lib/ganesha; do
		[ -e "$d/libfsalvfs.so" ] && { echo "$d"; return 0; }
	done
	return 1
}

_nfs_rpcbind() {
	rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && return 0
	rpcbind -w || return 1
	local i
	for i in $(seq 1 50); do
		rpcinfo -p 127.0.0.1 >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "nfs-server: rpcbind does not answer" >&2
	return 1
}

# Does ADDR:PORT accept TCP connections?
_nfs_port_open() {
	(exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

nfs_server_start() {
	local dir=$1 addr=$2 port=${3:-2049}
	local mport=${NFS_MOUNT_PORT:-20048}
	if [ -z "$dir" ] || [ -z "$addr" ]; then
		echo "usage: nfs_server_start DIR ADDR [PORT]" >&2
		return 2
	fi
	command -v ganesha.nfsd >/dev/null || { echo "nfs-server: ganesha.nfsd not installed" >&2; return 1; }
	command -v rpcbind >/dev/null || { echo "nfs-server: rpcbind not installed" >&2; return 1; }
	[ "$(id -u)" -eq 0 ] || { echo "nfs-server: needs root" >&2; return 1; }
	dir=$(realpath -e "$dir") || return 1
	case $dir in *'"'*) echo "nfs-server: '\"' in $dir" >&2; return 1 ;; esac
	if _nfs_port_open "$addr" "$port"; then
		echo "nfs-server: $addr:$port is already in use" >&2
		return 1
	fi
	local plugins
	plugins=$(_nfs_plugins_dir) || { echo "nfs-server: FSAL VFS (nfs-ganesha-vfs) not installed" >&2; return 1; }
	_nfs_rpcbind || return 1

	local sd
	sd=$(mktemp -d "${HOARD_TEST_DIR:-${TMPDIR:-/tmp}}/nfs-server.$addr.XXXXXX") || return 1
	mkdir -p "$sd/recovery"
	cat >"$sd/ganesha.conf" <<EOF
# written by tests/lib/nfs-server.sh
NFS_CORE_PARAM {
	Bind_Addr = $addr;
	NFS_Port = $port;
	MNT_Port = $mport;
	Protocols = 3, 4;
	Enable_NLM = false;
	Enable_RQUOTA = false;
	Enable_UDP = false;
	Plugins_Dir = "$plugins";
}
NFSV4 {
	# No 90 s grace period after start: tests open files at once.
	Graceless = true;
	Allow_Numeric_Owners = true;
	Only_Numeric_Owners = true;
	RecoveryBackend = fs;
	RecoveryRoot = "$sd/recovery";
}
EXPORT {
	Export_Id = 1;
	Path = "$dir";
	Pseudo = "$dir";
	Protocols = 3, 4;
	Transports = TCP;
	Access_Type = RW;
	Squash = No_Root_Squash;
	SecType = sys;
	# Without this ganesha serves attributes up to 60 s stale after a
	# change made directly in DIR.
	Attr_Expiration_Time = 0;
	FSAL { Name = VFS; }
}
LOG { Default_Log_Level = EVENT; }
EOF
	ganesha.nfsd -F -f "$sd/ganesha.conf" -L "$sd/ganesha.log" -p "$sd/ganesha.pid" \
		</dev/null >>"$sd/ganesha.out" 2>&1 &
	local pid=$!
	_NFS_SERVERS+=("$pid")

	export NFS_PID=$pid NFS_LOG=$sd/ganesha.log NFS_CONF=$sd/ganesha.conf
	export NFS_ADDR=$addr NFS_PORT=$port NFS_MOUNT_PORT=$mport NFS_EXPORT=$dir
	export NFS_URL3="nfs://$addr:$port$dir?version=3&mountport=$mport"
	export NFS_URL4="nfs://$addr:$port$dir?version=4"

	# Wait until both versions answer: `hoardfs ls` when built, else the
	# two ports.  Bounded; gives up at once if ganesha exits.
	local deadline=$((SECONDS + ${NFS_START_TIMEOUT:-30})) bin=${HOARDFS_BIN:-}
	while :; do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "nfs-server: ganesha.nfsd for $addr:$port exited; log $NFS_LOG:" >&2
			grep -v -i -E 'dbus|krb|keytab|principal' "$NFS_LOG" | tail -n 15 >&2
			nfs_server_stop "$pid"
			return 1
		fi
		if [ -n "$bin" ] && [ -x "$bin" ]; then
			"$bin" ls "$NFS_URL4" --timeout 2000 >/dev/null 2>&1 &&
				"$bin" ls "$NFS_URL3" --timeout 2000 >/dev/null 2>&1 && break
		elif _nfs_port_open "$addr" "$port" && _nfs_port_open "$addr" "$mport"; then
			break
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "nfs-server: $addr:$port not answering after ${NFS_START_TIMEOUT:-30} s; log $NFS_LOG" >&2
			nfs_server_stop "$pid"
			return 1
		fi
		sleep 0.2
	done
	echo "nfs-server: exporting $dir on $addr:$port (pid $pid, log $NFS_LOG)" >&2
	return 0
}

nfs_server_stop() {
	local pids=("$@") pid i keep=()
	[ ${#pids[@]} -gt 0 ] || pids=("${_NFS_SERVERS[@]}")
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${pids[@]}"; do
		for i in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			echo "nfs-server: pid $pid ignored SIGTERM for 10 s; killing" >&2
			kill -KILL "$pid" 2>/dev/null
		fi
		wait "$pid" 2>/dev/null
	done
	for pid in "${_NFS_SERVERS[@]}"; do
		[[ " ${pids[*]} " == *" $pid "* ]] || keep+=("$pid")
	done
	_NFS_SERVERS=("${keep[@]}")
	return 0
}
