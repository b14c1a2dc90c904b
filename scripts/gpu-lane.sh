#!/usr/bin/env bash
# scripts/gpu-lane.sh LANE - runs the WebGPU tests (tests/web/gpu_*.test.mjs,
# Node + Dawn) on a software Vulkan driver and prints "N passed, N failed".
#   swiftshader: Chromium's SwiftShader (subgroups, no f16, 1 GiB binding)
#   lavapipe:    Mesa 25 lavapipe (f16, subgroups, 128 MiB binding), set up
#                by scripts/lavapipe.sh
set -u
cd "$(dirname "$0")/.."
case "${1:-}" in
    swiftshader) icd=/usr/lib/chromium/vk_swiftshader_icd.json ;;
    lavapipe) icd=$(bash scripts/lavapipe.sh) || { echo "lavapipe setup failed"; echo "0 passed, 1 failed"; exit 1; } ;;
    *) echo "usage: scripts/gpu-lane.sh swiftshader|lavapipe" >&2; exit 2 ;;
esac
[ -f build/wasm/engine.wasm ] || make wasm >/dev/null
mkdir -p build/test-logs
log=build/test-logs/gpu-$1.tap
VK_ICD_FILENAMES=$icd node --test --test-reporter=tap tests/web/gpu_*.test.mjs >"$log" 2>&1
rc=$?
count() { grep -E "^# $1 [0-9]+" "$log" | tail -n 1 | sed -E 's/.* ([0-9]+)$/\1/'; }
p=$(count pass); f=$(count fail)
p=${p:-0}; f=${f:-0}
if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
grep -E '^not ok' "$log" | head -n 20
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
