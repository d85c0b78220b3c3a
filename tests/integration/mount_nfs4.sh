#!/usr/bin/env bash
# Description: as mount_nfs3.sh, over NFSv4 (nfs-ganesha on 127.0.0.32).
. "$(dirname "$0")/mount_common.bash"
nfs_suite 4 127.0.0.32
