#!/usr/bin/env bash
# tests/run.sh - runs every test program of a build and prints the total.
#
# Each test program prints "N passed, N failed" as its last line; a program
# that dies without that line counts as one failure. The reference data for the
# conformance tests comes from $STREAMLLM_TESTDATA (default ../shared/testdata):
# when absent the run says so loudly, and under CI=true that is a failure.
set -u
BUILD=${BUILD:-build}
export STREAMLLM_BIN="$BUILD/streamllm"
export STREAMLLM_TESTDATA="${STREAMLLM_TESTDATA:-../shared/testdata}"

if [ ! -f "$STREAMLLM_TESTDATA/index.tsv" ]; then
    echo "!!! ============================================================="
    echo "!!! reference test data not found at $STREAMLLM_TESTDATA"
    echo "!!! the conformance suite is SKIPPED (set STREAMLLM_TESTDATA)"
    echo "!!! ============================================================="
    if [ "${CI:-}" = "true" ]; then
        echo "CI=true: the conformance suite is mandatory"
        echo "0 passed, 1 failed"
        exit 1
    fi
fi

total_pass=0
total_fail=0
logdir="$BUILD/test-logs"
mkdir -p "$logdir"
# C test programs, then executable test scripts (tests/test_*.sh: they run
# $STREAMLLM_BIN and print the same summary line).
for t in "$BUILD"/tests/test_* tests/test_*.sh; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    start=$(date +%s)
    "$t" >"$logdir/$name.out" 2>"$logdir/$name.err"
    rc=$?
    secs=$(( $(date +%s) - start ))
    summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$logdir/$name.out" | tail -n 1)
    if [ -z "$summary" ]; then
        echo "FAIL $name: exit status $rc and no summary line (see $logdir/$name.err)"
        tail -n 20 "$logdir/$name.err"
        total_fail=$((total_fail + 1))
        continue
    fi
    p=$(echo "$summary" | sed -E 's/^([0-9]+) passed, ([0-9]+) failed.*/\1/')
    f=$(echo "$summary" | sed -E 's/^([0-9]+) passed, ([0-9]+) failed.*/\2/')
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    printf '%-28s %s (%ss)\n' "$name" "$summary" "$secs"
    if [ "$f" -ne 0 ]; then grep -E '^(FAIL|  check failed)' "$logdir/$name.err" | head -n 40; fi
done

# The wasm engine's tests (node --test tests/web/) once `make wasm` built
# build/wasm/engine.wasm; the pass/fail counts of their TAP summary join the
# totals. Not repeated in the sanitizer run (the same wasm, nothing to add).
if [ -z "${SL_SANITIZED:-}" ]; then
    if [ -f build/wasm/engine.wasm ] && command -v node >/dev/null; then
        start=$(date +%s)
        node --test --test-reporter=tap tests/web/ >"$logdir/node-web.out" 2>"$logdir/node-web.err"
        rc=$?
        count() { grep -E "^# $1 [0-9]+" "$logdir/node-web.out" | tail -n 1 | sed -E 's/.* ([0-9]+)$/\1/'; }
        p=$(count pass); f=$(count fail); c=$(count cancelled)
        p=${p:-0}; f=$(( ${f:-0} + ${c:-0} ))
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
        total_pass=$((total_pass + p))
        total_fail=$((total_fail + f))
        printf '%-28s %s passed, %s failed (%ss)\n' "node tests/web" "$p" "$f" "$(( $(date +%s) - start ))"
        if [ "$f" -ne 0 ]; then grep -E '^not ok|^ +(error|expected|actual):' "$logdir/node-web.out" | head -n 40; fi
    else
        echo "!!! node tests/web SKIPPED: no build/wasm/engine.wasm (make wasm) or no node"
        if [ "${CI:-}" = "true" ]; then total_fail=$((total_fail + 1)); fi
    fi
fi
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
