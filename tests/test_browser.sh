#!/usr/bin/env bash
# tests/test_browser.sh - `streamllm serve` in a real browser: starts three
# servers on 127.0.0.1 (ports picked by the kernel) over a synthesized model —
# the app (the project's web/), one with --cors naming the app's origin, one
# without — and runs tests/server/browser.mjs in headless Chromium
# (playwright-core from npm, the system's chromium; see ../shared/docs/testing.md).
# Without chromium or playwright-core it says so loudly and skips (a failure
# under CI=true). Prints "N passed, N failed".
set -u
BIN=${STREAMLLM_BIN:-build/streamllm}
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
export CHROMIUM

missing=""
[ -x "$CHROMIUM" ] || missing="$missing chromium"
command -v node >/dev/null || missing="$missing node"
[ -f node_modules/playwright-core/package.json ] || missing="$missing playwright-core"
if [ -n "$missing" ]; then
    echo "!!! SKIP test_browser.sh: missing$missing (bash scripts/deps.sh installs them)" >&2
    if [ "${CI:-}" = "true" ]; then
        echo "0 passed, 1 failed"
        exit 1
    fi
    echo "0 passed, 0 failed"
    exit 0
fi

tmp=$(mktemp -d /tmp/sl-test-browser-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# start_serve NAME ARGS...: serve in the background; sets url (empty on failure).
start_serve() {
    local name=$1
    shift
    : >"$tmp/$name.out" # exists before the loop below reads it
    "$BIN" serve "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    local pid=$!
    pids+=("$pid")
    url=""
    for _ in $(seq 1 100); do
        url=$(sed -n 's|^open \(http://[^ ]*\)/$|\1|p' "$tmp/$name.out")
        if [ -n "$url" ]; then return 0; fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    echo "FAIL serve $name did not start:" >&2
    tail -n 5 "$tmp/$name.err" >&2
    echo "0 passed, 1 failed"
    exit 1
}

"$BIN" synth --like tiny --type Q8_0 -o "$tmp/tiny.gguf" >/dev/null 2>&1
start_serve app "$tmp/tiny.gguf" --cache "$tmp/cache" --port 0
app=$url
start_serve cors "$tmp/tiny.gguf" --cache "$tmp/cache" --port 0 --cors "$app"
cors=$url
start_serve plain "$tmp/tiny.gguf" --cache "$tmp/cache" --port 0
plain=$url

logdir="$(dirname "$BIN")/test-logs"
mkdir -p "$logdir"
timeout 180 node tests/server/browser.mjs "$app" "$cors" "$plain" "$logdir/browser.png"
rc=$?
if [ "$rc" -eq 124 ]; then
    echo "FAIL the browser test timed out" >&2
    echo "0 passed, 1 failed"
fi
exit "$rc"
