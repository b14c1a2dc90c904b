#!/usr/bin/env bash
# test_bench_gpu.sh - bench/gpu.sh --tiny on the software GPU (SwiftShader,
# as tests/web/gpu_env.mjs picks it), so the GPU benchmark script cannot rot:
# it must synthesize its model, measure pp, tg and greedy tg, the copy bandwidth and the
# floor, and print one table row of numbers. Needs build/streamllm, the wasm
# engine and a WebGPU adapter (loud skip without; a failure under CI=true).
# Prints "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
icd=/usr/lib/chromium/vk_swiftshader_icd.json
missing=""
[ -x build/streamllm ] || missing="$missing build/streamllm"
[ -f build/wasm/engine.wasm ] || missing="$missing build/wasm/engine.wasm"
[ -n "${VK_ICD_FILENAMES:-}" ] || [ -f "$icd" ] || missing="$missing $icd"
if [ -n "$missing" ]; then
    echo "!!! SKIP test_bench_gpu.sh: missing$missing" >&2
    if [ "${CI:-}" = "true" ]; then echo "0 passed, 1 failed"; else echo "0 passed, 0 failed"; fi
    exit 0
fi
export VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-$icd} XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
out=$(timeout 600 bash bench/gpu.sh --tiny --dir "$dir" 2>"$dir/err")
rc=$?
echo "$out"
num='[0-9]+(\.[0-9]+)?'
if [ $rc -eq 0 ] && printf '%s\n' "$out" | grep -Eq "^\| tiny Q4_0 \| $num \| - \| - \| $num \| - \| - \| $num \| - \| $num t/s \($num GB/s\) \| $num% \|$"; then
    echo "ok bench/gpu.sh --tiny printed its table"
    echo "1 passed, 0 failed"
else
    echo "FAIL bench/gpu.sh --tiny (exit $rc): $(tail -3 "$dir/err")"
    echo "0 passed, 1 failed"
fi
