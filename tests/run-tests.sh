#!/usr/bin/env bash
# Runs hoardfs's tests: each test is one program or script, run in its own
# scratch directory with a timeout; exit 0 = pass, 77 = skip, else fail.
# Usage: tests/run-tests.sh [unit|crash|fuzz|integration ...]   (default: all)
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
cats=("$@")
[ ${#cats[@]} -gt 0 ] || cats=(unit crash fuzz integration)
export HOARDFS_BIN=${HOARDFS_BIN:-$top/build/asan/hoardfs}
export HOARDFS_TOP=$top
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
logdir=$top/build/test-logs
mkdir -p "$logdir"
pass=0 fail=0 skip=0 failed=()

run_one() { # name timeout cmd...
	local name=$1 to=$2; shift 2
	local work; work=$(mktemp -d /tmp/hoardfs-test.XXXXXX)
	local t0=$SECONDS
	(cd "$work" && HOARD_TEST_DIR=$work timeout -k 10 "$to" "$@") >"$logdir/$name.log" 2>&1
	local rc=$?
	local dt=$((SECONDS - t0))
	case $rc in
	0) pass=$((pass + 1)); echo "PASS  $name (${dt}s)" ;;
	77) skip=$((skip + 1)); echo "SKIP  $name: $(tail -n 1 "$logdir/$name.log")" ;;
	*) fail=$((fail + 1)); failed+=("$name"); echo "FAIL  $name (rc=$rc, ${dt}s)"; tail -n 30 "$logdir/$name.log" | sed 's/^/      /' ;;
	esac
	rm -rf "$work"
}

for cat in "${cats[@]}"; do
	case $cat in
	unit)
		for t in build/asan/tests/test_*; do [ -x "$t" ] && run_one "$(basename "$t")" 300 "$top/$t"; done ;;
	crash)
		for t in build/asan/tests/crash_*; do [ -x "$t" ] && run_one "$(basename "$t")" 600 "$top/$t"; done ;;
	fuzz)
		for t in build/fuzz/fuzz_*; do
			[ -x "$t" ] || continue
			n=$(basename "$t"); corp=$top/tests/fuzz/corpus/${n#fuzz_}
			# new inputs go to the first directory: keep the repo's
			# corpus as it is and collect them under build/
			fresh=$top/build/fuzz-corpus/${n#fuzz_}
			mkdir -p "$corp" "$fresh"
			# a fixed seed in `make check` (the same inputs every run: a
			# failure is reproducible, not luck); `make fuzz-long` sets
			# HOARD_FUZZ_SEED=0 for a random one
			run_one "$n" 600 "$top/$t" -runs="${HOARD_FUZZ_RUNS:-20000}" \
				-seed="${HOARD_FUZZ_SEED:-1}" \
				-max_total_time="${HOARD_FUZZ_SECONDS:-120}" "$fresh" "$corp"
		done ;;
	integration)
		for t in tests/integration/*.sh; do [ -f "$t" ] && run_one "$(basename "$t" .sh)" 900 bash "$top/$t"; done ;;
	*) echo "unknown test category: $cat" >&2; exit 2 ;;
	esac
done
echo
[ ${#failed[@]} -eq 0 ] || echo "failed: ${failed[*]}"
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
