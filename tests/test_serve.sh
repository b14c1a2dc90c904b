#!/usr/bin/env bash
# tests/test_serve.sh - `streamllm serve` and `streamllm pull` run as a user
# runs them: startup (the URL it prints, splitting then reusing the cache),
# the routes and headers over curl, the default web folder next to the
# binary, the access log on stderr, clean shutdown on SIGTERM and SIGINT
# (exit 0), a port already in use, usage errors, --public-url, `serve
# hf://...` and `pull hf://...` against a static imitation of the hub's URL
# layout (python3's http.server, which publishes no hash: size only), and a
# 404 from it. Only 127.0.0.1, ports picked by the kernel (--port 0), every
# wait bounded. Prints "N passed, N failed" like the C tests.
set -u
BIN=${STREAMLLM_BIN:-build/streamllm}
. "$(dirname "$0")/lib.sh"
need_tools test_serve.sh curl python3

tmp=$(mktemp -d /tmp/sl-test-serve-XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

# start_serve NAME ARGS...: serve in the background; sets pid and url (empty
# when it exited or printed no URL within 20 s).
start_serve() {
    local name=$1
    shift
    : >"$tmp/$name.out" # exists before the loop below reads it
    "$BIN" serve "$@" >"$tmp/$name.out" 2>"$tmp/$name.err" &
    pid=$!
    pids+=("$pid")
    url=""
    for _ in $(seq 1 100); do
        url=$(sed -n 's|^open \(http://[^ ]*\)/$|\1|p' "$tmp/$name.out")
        if [ -n "$url" ]; then return 0; fi
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

# stop_serve PID SIGNAL: sends it and waits up to 5 s; sets rc (999: had to be killed).
stop_serve() {
    kill -"$2" "$1"
    for _ in $(seq 1 50); do
        kill -0 "$1" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$1" 2>/dev/null; then
        kill -9 "$1"
        wait "$1" 2>/dev/null
        rc=999
    else
        wait "$1"
        rc=$?
    fi
}

status_of() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
header_of() { curl -s -D - -o /dev/null "${@:2}" | tr -d '\r' | grep -i "^$1:" | head -n 1 | cut -d' ' -f2-; }

mkdir -p "$tmp/models" "$tmp/web"
"$BIN" synth --like tiny --type Q8_0 -o "$tmp/models/tiny.gguf" >/dev/null 2>&1
check "synth a model" test -s "$tmp/models/tiny.gguf"
echo '<!doctype html><title>t</title><p>web folder given</p>' >"$tmp/web/index.html"

# ---- a first start: splits, serves, logs, stops on SIGTERM
check "serve starts and prints the URL" start_serve a --models "$tmp/models" --cache "$tmp/cache" --port 0 --web "$tmp/web"
check "the model was split" grep -q "model tiny: .*split now" "$tmp/a.err"
check "/api/models lists it" bash -c "curl -sf '$url/api/models' | grep -q '\"id\":\"tiny\"'"
check "/ is the given web folder" bash -c "curl -sf '$url/' | grep -q 'web folder given'"
check "COOP on /" test "$(header_of Cross-Origin-Opener-Policy "$url/")" = "same-origin"
check "COEP on /" test "$(header_of Cross-Origin-Embedder-Policy "$url/")" = "require-corp"
shard=$(curl -sf "$url/api/models/tiny" | python3 -c 'import json,sys; print(json.load(sys.stdin)["shards"][1]["url"])')
check "Range over curl: 206" test "$(status_of -r 0-9 "$url$shard")" = "206"
check "Range over curl: 10 bytes" test "$(curl -s -r 0-9 "$url$shard" | wc -c)" = "10"
check "HEAD over curl" test "$(curl -sI -o /dev/null -w '%{http_code}' "$url$shard")" = "200"
check "405 over curl" test "$(status_of -X PUT "$url/api/models")" = "405"
check "traversal over curl" test "$(status_of --path-as-is "$url/../../etc/passwd")" = "400"
check "access log line" grep -q '"method":"GET","path":"/api/models","status":200,"bytes":' "$tmp/a.err"
stop_serve "$pid" TERM
check "SIGTERM: exit 0" test "$rc" = 0
check "SIGTERM: says so" grep -q "SIGTERM, shutting down" "$tmp/a.err"

# ---- a second start: the cache is reused; the default web folder; SIGINT
check "serve starts again" start_serve b "$tmp/models/tiny.gguf" --cache "$tmp/cache" --port 0
check "the cache was reused" grep -q "model tiny: .*cached" "$tmp/b.err"
check "default web folder (next to the binary)" grep -q "web app $(cd "$(dirname "$BIN")/.." && pwd)/web" "$tmp/b.out"
check "/ from the project's web/" test "$(status_of "$url/")" = "200"
port=${url##*:}
"$BIN" serve "$tmp/models/tiny.gguf" --cache "$tmp/cache" --port "$port" >/dev/null 2>"$tmp/busy.err"
check "a port in use: exit 1" test $? = 1
check "a port in use: says so" grep -q "cannot listen" "$tmp/busy.err"
stop_serve "$pid" INT
check "SIGINT: exit 0" test "$rc" = 0

# ---- usage and input errors
"$BIN" serve >/dev/null 2>&1
check "serve without models: exit 2" test $? = 2
"$BIN" serve --models "$tmp/models" --port 70000 >/dev/null 2>&1
check "bad port: exit 2" test $? = 2
"$BIN" serve --bogus x >/dev/null 2>&1
check "unknown option: exit 2" test $? = 2
"$BIN" serve "$tmp/nope.gguf" --cache "$tmp/cache" --port 0 >/dev/null 2>"$tmp/nope.err"
check "missing model: exit 1" test $? = 1
check "missing model: one line" test "$(wc -l <"$tmp/nope.err")" = 1
"$BIN" serve "$tmp/models/tiny.gguf" --public-url ftp://x --port 0 >/dev/null 2>&1
check "bad --public-url: exit 1" test $? = 1

# ---- --public-url
check "serve with --public-url" start_serve c "$tmp/models/tiny.gguf" --cache "$tmp/cache" --port 0 --public-url https://cdn.example/m/
check "manifest points at the CDN" bash -c "curl -sf '$url/api/models/tiny' | grep -q '\"url\":\"https://cdn.example/m/tiny/tiny-'"
stop_serve "$pid" TERM

# ---- hf:// through an imitation of the hub's URL layout
mkdir -p "$tmp/hub/org/repo/resolve/main" "$tmp/home"
cp "$tmp/models/tiny.gguf" "$tmp/hub/org/repo/resolve/main/tiny2.gguf"
: >"$tmp/hub.out"
python3 -u -m http.server 0 --bind 127.0.0.1 --directory "$tmp/hub" >"$tmp/hub.out" 2>"$tmp/hub.err" &
pids+=($!)
hub_port=""
for _ in $(seq 1 50); do
    hub_port=$(sed -n 's/.* port \([0-9]*\).*/\1/p' "$tmp/hub.out" | head -n 1)
    if [ -n "$hub_port" ]; then break; fi
    sleep 0.1
done
check "hub imitation started" test -n "$hub_port"
export STREAMLLM_HF_ENDPOINT="http://127.0.0.1:$hub_port"
HOME="$tmp/home" XDG_CACHE_HOME="" start_serve d hf://org/repo/tiny2.gguf --cache "$tmp/cache" --port 0
check "serve hf://: started" test -n "$url"
check "serve hf://: pulled into ~/.cache/stream-llm" cmp -s "$tmp/home/.cache/stream-llm/tiny2.gguf" "$tmp/models/tiny.gguf"
check "serve hf://: listed" bash -c "curl -sf '$url/api/models' | grep -q '\"id\":\"tiny2\"'"
stop_serve "$pid" TERM
out=$("$BIN" pull hf://org/repo/tiny2.gguf -o "$tmp/pulled" 2>"$tmp/pull.err")
check "pull: exit 0, prints the path" test "$out" = "$tmp/pulled/tiny2.gguf"
check "pull: the same bytes" cmp -s "$tmp/pulled/tiny2.gguf" "$tmp/models/tiny.gguf"
check "pull: no .part left" test ! -e "$tmp/pulled/tiny2.gguf.part"
"$BIN" pull hf://org/repo/missing.gguf -o "$tmp/pulled" >/dev/null 2>"$tmp/pull404.err"
check "pull 404: exit 1" test $? = 1
check "pull 404: one line naming it" bash -c "test \$(wc -l <'$tmp/pull404.err') = 1 && grep -q 'HTTP 404' '$tmp/pull404.err'"
"$BIN" pull >/dev/null 2>&1
check "pull without a source: exit 2" test $? = 2
"$BIN" pull hf://only-owner -o "$tmp/pulled" >/dev/null 2>&1
check "pull bad source: exit 1" test $? = 1

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
