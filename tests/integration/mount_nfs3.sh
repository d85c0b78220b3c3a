#!/usr/bin/env bash
# Description: hoardfs over a real NFSv3 server (nfs-ganesha on 127.0.0.31):
# operations compared with the export, files over 4 GiB, parallel readers
# and writers, fsx, changes by another client seen at the next open, and
# persistence across remount with no data read from the server.
. "$(dirname "$0")/mount_common.bash"
nfs_suite 3 127.0.0.31
