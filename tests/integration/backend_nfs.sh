#!/usr/bin/env bash
# Description: the nfs (v3 and v4) and dir backends, seen through
# `hoardfs ls`, show a real directory exactly: listings with attributes,
# file bytes (including a sparse file above 4 GiB), awkward names, an
# empty directory; an unreachable server fails within the timeout with a
# clear message.
# Server: ganesha on 127.0.0.21 (unique to this test).  Exit 0/1/77.
set -u
top=${HOARDFS_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${HOARDFS_BIN:-$top/build/asan/hoardfs}
work=${HOARD_TEST_DIR:-$(mktemp -d)}
cd "$work" || exit 1 # its scratch files (expected.lst, got.txt...) stay out of the caller's directory
addr=127.0.0.21

[ -x "$bin" ] || { echo "skip: $bin not built"; exit 77; }
[ "$(id -u)" -eq 0 ] || { echo "skip: needs root (ganesha)"; exit 77; }
command -v ganesha.nfsd >/dev/null || { echo "skip: nfs-ganesha not installed"; exit 77; }
command -v python3 >/dev/null || { echo "skip: python3 not installed"; exit 77; }

. "$top/tests/lib/nfs-server.sh"
trap nfs_server_stop EXIT

fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# ---- the tree -------------------------------------------------------------
ex=$work/export
mkdir -p "$ex/dir/nested" "$ex/dir/void" || exit 1 # void: an empty directory
: >"$ex/empty"
printf 'hello\n' >"$ex/small"
head -c $((1024 * 1024 + 1)) /dev/urandom >"$ex/1MiB+1"
head -c $((3 * 1024 * 1024 + 123)) /dev/urandom >"$ex/3MiB+123"
printf 'nested\n' >"$ex/dir/nested/file"
# Sparse, above 4 GiB, with data at both ends so 32-bit offsets would show.
head -c 5000 /dev/urandom >"$ex/sparse5G"
head -c 5000 /dev/urandom | dd of="$ex/sparse5G" bs=1 seek=$((4 * 1024 * 1024 * 1024 + 100)) conv=notrunc status=none
truncate -s $((5 * 1024 * 1024 * 1024)) "$ex/sparse5G"
ln -s small "$ex/link"
ln -s /etc/passwd "$ex/abs-link"
printf 'space\n' >"$ex/with space"
printf 'newline\n' >"$ex/new"$'\n'"line"
printf 'bytes\n' >"$ex/bad"$'\xff\xfe'"name"
mkfifo "$ex/fifo"

# The expected -l -0 listing of a directory, built from lstat (see cmd_ls.c).
expect_listing() { # DIR
	python3 - "$1" <<'EOF'
import os, stat, sys
d = os.fsencode(sys.argv[1])
out = bytearray()
for n in sorted(os.listdir(d)):
    st = os.lstat(os.path.join(d, n))
    out += b"%07o %d %d.%09d %d " % (st.st_mode, st.st_size, st.st_mtime_ns // 10**9,
                                     st.st_mtime_ns % 10**9, st.st_ino)
    out += n + b"\0"
sys.stdout.buffer.write(bytes(out))
EOF
}

# Everything a source must show the same as the directory itself.
check_source() { # NAME SOURCE
	local name=$1 src=$2 f
	echo "== $name: $src"
	for d in / /dir /dir/nested /dir/void; do
		expect_listing "$ex$d" >expected.lst
		if ! "$bin" ls "$src" "$d" -l -0 >got.lst 2>err.txt; then
			fail "$name: ls $d: $(cat err.txt)"
			continue
		fi
		cmp -s expected.lst got.lst || {
			fail "$name: listing of $d differs"
			echo "expected:"; tr '\0' '\n' <expected.lst
			echo "got:"; tr '\0' '\n' <got.lst
		}
	done
	"$bin" ls "$src" >plain.lst 2>err.txt || fail "$name: plain ls: $(cat err.txt)"
	python3 -c 'import os,sys; sys.stdout.buffer.write(b"".join(n + b"\n" for n in sorted(os.listdir(os.fsencode(sys.argv[1])))))' "$ex" >expected.plain
	cmp -s expected.plain plain.lst || fail "$name: plain listing differs"
	for f in empty small 1MiB+1 3MiB+123 "with space" "new"$'\n'"line" "bad"$'\xff\xfe'"name" dir/nested/file sparse5G; do
		if ! "$bin" ls "$src" "/$f" --cat 2>err.txt | cmp -s - "$ex/$f"; then
			fail "$name: --cat /$f differs from the file ($(cat err.txt))"
		fi
	done
	# A symlink is listed as itself, never followed, even out of the tree.
	"$bin" ls "$src" /abs-link -l >got.txt 2>err.txt || fail "$name: ls /abs-link: $(cat err.txt)"
	grep -q '^0120777 ' got.txt || fail "$name: /abs-link not shown as a symlink: $(cat got.txt)"
	# Errors: a missing path, a directory given to --cat.
	"$bin" ls "$src" /no-such-file >/dev/null 2>err.txt
	rc=$?
	[ $rc -eq 1 ] && grep -q '^hoardfs ls: .*No such file or directory' err.txt ||
		fail "$name: missing path: rc=$rc, message: $(cat err.txt)"
	"$bin" ls "$src" /dir --cat >/dev/null 2>err.txt
	rc=$?
	[ $rc -eq 1 ] && grep -q 'Is a directory' err.txt ||
		fail "$name: --cat of a directory: rc=$rc, message: $(cat err.txt)"
}

check_unreachable() { # NAME SOURCE
	local name=$1 src=$2 t0 rc dt
	t0=$(date +%s%N)
	"$bin" ls "$src" --timeout 3000 >/dev/null 2>err.txt
	rc=$?
	dt=$((($(date +%s%N) - t0) / 1000000))
	echo "== $name unreachable: rc=$rc in ${dt} ms: $(cat err.txt)"
	[ $rc -eq 1 ] || fail "$name: unreachable server: exit $rc, expected 1"
	[ $dt -lt 5000 ] || fail "$name: unreachable server took $dt ms (timeout 3000)"
	grep -q -E '^hoardfs ls: .*(Connection refused|Connection timed out|No route to host)$' err.txt ||
		fail "$name: unclear message: $(cat err.txt)"
}

nfs_server_start "$ex" "$addr" || { echo "FAIL: cannot start ganesha on $addr"; exit 1; }

check_source nfs3 "$NFS_URL3"
check_source nfs4 "$NFS_URL4"
check_source dir "dir:$ex"

check_unreachable nfs3 "nfs://127.0.0.99/export?version=3"
check_unreachable nfs4 "nfs://127.0.0.99/export?version=4"
check_unreachable nfs3-ports "nfs://127.0.0.99:2049/export?version=3&mountport=20048"

# dir: that does not exist, malformed sources (usage: exit 2).
"$bin" ls "dir:$work/no-such-dir" >/dev/null 2>err.txt
[ $? -eq 1 ] && grep -q 'No such file or directory' err.txt || fail "dir: missing root: $(cat err.txt)"
for bad in "nfs://" "nfs:///export" "nfs://h:0/x" "nfs://h:99999/x" "nfs://h/x?version=2" \
	"nfs://h/x?bogus=1" "nfs://h/../x" "smb://h/x" "dir:"; do
	"$bin" ls "$bad" >/dev/null 2>err.txt
	rc=$?
	[ $rc -eq 2 ] && grep -q 'Invalid argument' err.txt || fail "source '$bad': rc=$rc, $(cat err.txt)"
done
"$bin" ls >/dev/null 2>&1
[ $? -eq 2 ] || fail "ls with no source should exit 2"

if [ $fails -ne 0 ]; then
	echo "$fails failure(s); server log: $NFS_LOG"
	exit 1
fi
echo "all backend checks passed"
exit 0
