#!/usr/bin/env bash
# Installs every Debian package hoardfs needs to build, test and benchmark.
set -euo pipefail
pkgs=(build-essential pkg-config clang libclang-rt-14-dev libfuzzer-14-dev
      liburing-dev libfuse3-dev fuse3 libnfs-dev libcmocka-dev
      nfs-ganesha nfs-ganesha-vfs rpcbind fio rclone gnuplot-nox
      e2fsprogs fdisk util-linux procps psmisc iproute2 python3 valgrind cppcheck)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q
	apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# FUSE requests over 1 MiB need the kernel's page limit raised.
if [ -w /proc/sys/fs/fuse/max_pages_limit ]; then
	cur=$(cat /proc/sys/fs/fuse/max_pages_limit)
	[ "$cur" -ge 256 ] || echo 256 > /proc/sys/fs/fuse/max_pages_limit
fi
echo "deps: ok"
