#!/usr/bin/env bash
# tests/test_browser_chat.sh - the chat app (web/) end to end in headless
# Chromium: tests/browser/chat.mjs serves stories260K with `streamllm serve`
# (cross-origin isolated) and through a proxy without COOP/COEP, loads the
# model in the page (CPU, and WebGPU on Chromium's SwiftShader), checks
# llama.cpp's reference continuation (on WebGPU too, whole and exact, in the
# page's Worker, ring and postMessage), stop, no main-thread long task in any
# generation, where the download's bytes came from, chat turns, the API, a
# GPU device lost mid-stream, the embedding example and an offline reload.
# Screenshots land in $BUILD/test-logs/chat-*.png. Chromium starts through
# tests/browser/chromium-foreground.sh. Needs chromium, node, playwright-core,
# build/wasm/engine.wasm and the shared test data; without them it says so
# loudly and skips (a failure under CI=true). Prints "N passed, N failed".
set -u
BIN=${STREAMLLM_BIN:-build/streamllm}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
TESTDATA=${STREAMLLM_TESTDATA:-../shared/testdata}
WASM=${STREAMLLM_WASM:-build/wasm/engine.wasm}
export CHROMIUM

missing=""
[ -x "$CHROMIUM" ] || missing="$missing chromium"
command -v node >/dev/null || missing="$missing node"
[ -f node_modules/playwright-core/package.json ] || missing="$missing playwright-core"
[ -f "$WASM" ] || missing="$missing $WASM (make wasm)"
[ -x "$BIN" ] || missing="$missing $BIN"
[ -f "$TESTDATA/models/stories260K.gguf" ] || missing="$missing testdata ($TESTDATA)"
if [ -n "$missing" ]; then
    echo "!!! SKIP test_browser_chat.sh: missing$missing" >&2
    if [ "${CI:-}" = "true" ]; then
        echo "0 passed, 1 failed"
        exit 1
    fi
    echo "0 passed, 0 failed"
    exit 0
fi

tmp=$(mktemp -d /tmp/sl-test-chat-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/models"
cp "$TESTDATA/models/stories260K.gguf" "$tmp/models/"
# the app as served: web/ plus the engine module next to its scripts (the
# server follows no symlinks, hence a copy)
cp -r web "$tmp/web"
cp "$WASM" "$tmp/web/engine/engine.wasm"

logdir="$(dirname "$BIN")/test-logs"
mkdir -p "$logdir"
timeout 300 node tests/browser/chat.mjs "$BIN" "$tmp/models" "$tmp/web" \
    "$TESTDATA/ref/stories260K-f32.summary.txt" "$logdir"
rc=$?
if [ "$rc" -eq 124 ]; then
    echo "FAIL the browser chat test timed out" >&2
    echo "0 passed, 1 failed"
fi
exit "$rc"
