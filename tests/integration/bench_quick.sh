#!/usr/bin/env bash
# Description: bench/run --quick runs end to end (servers, datasets,
# mounts, every workload against every system, the report) and its report
# has every table, each with numbers -- so the benchmark harness never
# rots.  The report goes to the scratch directory, never into docs/.
# Uses the optimised build ($HOARDFS_TOP/build), which the benchmark needs;
# builds it if missing, skips (77) if that fails.
set -u
TOP=${HOARDFS_TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
W=${HOARD_TEST_DIR:-$(mktemp -d /tmp/hoardfs-test.XXXXXX)}
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || skip "needs root (FUSE mounts, ganesha, netns)"
[ -c /dev/fuse ] || skip "no /dev/fuse"
command -v fio >/dev/null || skip "fio not installed"
command -v ganesha.nfsd >/dev/null || skip "nfs-ganesha not installed"
ok=1
for b in build/hoardfs build/bench/nullfs build/bench/nfs_read build/bench/engine_bench build/bench/delayproxy; do
	[ -x "$TOP/$b" ] || ok=0
done
if [ $ok = 0 ]; then
	echo "--- building the optimised build (make -C $TOP all)"
	make -s -C "$TOP" all >"$W/make.log" 2>&1 ||
		skip "no optimised build in $TOP/build and make all failed: $(tail -n 3 "$W/make.log")"
fi

out=$W/bench
bash "$TOP/bench/run" --quick --out "$out" --work "$W/work" || fail "bench/run --quick exited $?"
md=$out/BENCHMARKS.md
[ -f "$md" ] || fail "no $md"
python3 - "$md" <<'PY' || fail "the report is incomplete (above)"
import re, sys
text = open(sys.argv[1]).read()
need = ["Sequential read", "4 KiB random reads", "A tree of small files", "Writes",
        "Slow link", "The engine alone", "Daemon resident memory", "Targets"]
sections = {}
for part in re.split(r"^## ", text, flags=re.M)[1:]:
    title, _, body = part.partition("\n")
    sections[title] = body
bad = 0
for n in need:
    body = [b for t, b in sections.items() if t.startswith(n)]
    if not body:
        print("missing section: %s" % n); bad = 1; continue
    lines = body[0].splitlines()
    # table rows, less separators and the header above each separator
    data = [l for i, l in enumerate(lines) if l.startswith("|") and not l.startswith("|---")
            and not (i + 1 < len(lines) and lines[i + 1].startswith("|---"))]
    if not data:
        print("section %s: no table rows" % n); bad = 1; continue
    for r in data:
        cells = [c.strip() for c in r.strip("|").split("|")][1:]
        if not any(re.search(r"\d", c) for c in cells):
            print("section %s: a row without numbers: %s" % (n, r)); bad = 1
if "not measured" in sections.get("Targets", ""):
    print("a target was not measured:"); print(sections["Targets"]); bad = 1
# the ceilings' columns and rows: paired device ratios, machine CPU, the
# null FUSE tree and the bound it puts on the slow link's find
for c in ("warm / device (paired)", "QD 1 / device (paired)", "engine / fio (paired)",
          "machine busy % cold", "ganesha CPU s/GiB cold", "| null FUSE tree (FUSE ceiling for walks) |"):
    if c not in text:
        print("report lacks %s" % c); bad = 1
if not re.search(r"cold/warm is at most [0-9.,]+ s / [0-9.,]+ s = \*\*[0-9.]+x\*\*", text):
    print("the slow link's find has no bound from the null FUSE tree"); bad = 1
for c in ("**Command:**", "**Machine:**", "**Date:**", "nproc", "kernel"):
    if c not in text:
        print("header lacks %s" % c); bad = 1
sys.exit(bad)
PY
for p in seq rand tree write slow engine; do
	[ -s "$out/bench/$p.png" ] || fail "no plot $p.png"
done
grep -q . "$out/bench/results.tsv" || fail "no raw results"
echo PASS
