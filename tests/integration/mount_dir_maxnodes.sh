#!/usr/bin/env bash
# Description: the node table stays bounded (-o maxnodes): walking a tree
# of 4,000 files with maxnodes=400 never holds more than twice that and
# leaves at most 400 nodes once the evictor has caught up (the daemon's
# memory follows the bound, not the tree), and every file still looks and reads the same afterwards: the
# kernel looks forgotten files up again, link counts are right (not the
# zero the kernel is told for a forgotten entry), an open file is never
# evicted, hard links are left alone, writes after eviction go through.
. "$(dirname "$0")/mount_common.bash"

MAX=400
python3 - "$SRC" <<'PY'
import os, sys
root = sys.argv[1]
for d in range(40):
    p = os.path.join(root, "d%02d" % d)
    os.makedirs(p)
    for f in range(100):
        with open(os.path.join(p, "f%03d" % f), "w") as fh:
            fh.write("%s/f%03d\n" % (p[len(root):], f))
PY
echo linked >"$SRC/a"
ln "$SRC/a" "$SRC/b"
echo held >"$SRC/held"

mount_hoard "dir:$SRC" "$MNT" "maxnodes=$MAX"
exec 3<"$MNT/held"

# settle: the evictor works in the background; FORGETs follow its
# notifications.  Waits up to 20 s for the table to be within the bound.
settle() {
	local i n
	for i in $(seq 1 100); do
		n=$(stat_field "$MNT" nodes)
		[ "$n" -le "$MAX" ] && { echo "$n"; return 0; }
		sleep 0.2
	done
	echo "$n"
	return 1
}

note "walk 4,000 files"
(cd "$SRC" && find . -printf '%p %s %n %m\n' | sort) >"$W/want"
(cd "$MNT" && find . -printf '%p %s %n %m\n' | sort) >"$W/got1"
cmp -s "$W/want" "$W/got1" || { diff "$W/want" "$W/got1" | head; fail "first walk differs from the source"; }
n=$(settle) || fail "nodes after the walk: expected <= $MAX, got $n"
# throughout, not just once it settles: the evictor's clock takes what
# the walk listed longest ago, whatever its age (it used to spare every
# file looked up in the last second, and a fast walk went 10x over)
pk=$(stat_field "$MNT" nodes_peak)
[ "$pk" -le $((MAX * 2)) ] || fail "nodes during the walk: expected <= $((MAX * 2)), peaked at $pk"
ev=$(stat_field "$MNT" evictions)
[ "$ev" -gt 0 ] || fail "evictions: expected > 0, got $ev"
note "nodes $n (peak $pk), evicted $ev, peak rss $(($(stat_field "$MNT" rss_peak_bytes) >> 20)) MiB"

note "walk again: forgotten files are looked up again"
(cd "$MNT" && find . -printf '%p %s %n %m\n' | sort) >"$W/got2"
cmp -s "$W/want" "$W/got2" || { diff "$W/want" "$W/got2" | head; fail "second walk differs from the source"; }

note "read every file"
bad=0
for f in "$MNT"/d*/f*; do
	[ "$(cat "$f")" = "${f#"$MNT"}" ] || { bad=$((bad + 1)); echo "content of $f: $(cat "$f")"; }
done
[ "$bad" = 0 ] || fail "$bad files read wrong after eviction"
n=$(settle) || fail "nodes after reading: expected <= $MAX, got $n"

note "open file, hard links, writes"
expect_eq "read from a handle held across eviction" held "$(cat <&3)"
expect_eq "link count of a" 2 "$(stat -c %h "$MNT/a")"
expect_eq "link count of b" 2 "$(stat -c %h "$MNT/b")"
echo more >>"$MNT/d00/f000"
expect_eq "append after eviction" "$(printf '/d00/f000\nmore')" "$(cat "$MNT/d00/f000")"
expect_eq "append reached the source" "$(printf '/d00/f000\nmore')" "$(cat "$SRC/d00/f000")"
exec 3<&-

umount_hoard "$MNT"
echo PASS
