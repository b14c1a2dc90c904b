#!/usr/bin/env bash
# scripts/check.sh - every test stage, with one grand total at the end:
#   1. unit + conformance tests (gcc -O2), and the wasm engine's node tests
#   2. the WebGPU tests again on the lavapipe lane (the first run, inside 1., uses SwiftShader)
#   3. the same under AddressSanitizer + UndefinedBehaviorSanitizer (clang)
#   4. each libFuzzer target for FUZZ_SECONDS (default 60)
set -u
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
pass=0; fail=0
stage() {   # stage NAME COMMAND...: runs it, adds its last "N passed, N failed" line
    local name=$1; shift
    echo "=== $name"
    local log; log=$(mktemp)
    "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    local s; s=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    rm -f "$log"
    local p=0 f=0
    if [ -n "$s" ]; then
        p=$(echo "$s" | sed -E 's/^([0-9]+) passed.*/\1/')
        f=$(echo "$s" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    fi
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "stage '$name' failed (exit $rc)"; fi
    pass=$((pass + p)); fail=$((fail + f))
}
stage "build + tests" bash -c "make -j$JOBS tests wasm && BUILD=build bash tests/run.sh"
stage "WebGPU on lavapipe 25 (shader-f16, subgroups, 128 MiB binding)" bash scripts/gpu-lane.sh lavapipe
stage "ASan+UBSan" make -j"$JOBS" asan
stage "fuzz (${FUZZ_SECONDS:-60}s per target)" make -j"$JOBS" fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-60}"
echo "=== total"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
