#!/usr/bin/env bash
# bench/soak.sh - soak test: nothing leaks, nothing grows, nothing fails over time.
#
#   bench/soak.sh [MINUTES]        (default 10; or MINUTES=N)
#
# 1. Serve under load: `streamllm serve` of a model (MODEL, default the test
#    data's stories260K.gguf, else a synthesized tiny model) under `wrk`
#    (CONNS connections, default 32) for MINUTES, with a mix of requests the
#    browser makes (shards whole and by Range, manifests, /api/models, the
#    app's page; no HEAD and no If-None-Match: wrk's HTTP parser waits for a
#    body after the Content-Length the server sends, as RFC 9110 allows, in
#    answers to HEAD and in 304s), while a loop
#    loads the model from the server through the StreamWeightManager and
#    generates (`node web/cli.mjs run -m URL/api/models/ID`, greedy, so every
#    run must print the same text). The server's RSS is sampled every SAMPLE
#    seconds (default 5). Prints wrk's requests and errors (socket errors and
#    answers other than 2xx/3xx), the loader's runs, failures and runs whose
#    text differs, and the RSS at the end of the warm-up (the first minute,
#    or the first fifth of a shorter run), its maximum after it and at the end.
# 2. Native generation of TOKENS tokens (default 10,000) with no leak report:
#    once under LeakSanitizer (build-asan/streamllm, `make asan` builds it; one
#    run with --ctx TOKENS+16: the CLI has no context shift, but the context
#    may exceed the model's training length), and under valgrind memcheck in
#    VALGRIND_RUNS runs (default 10) of TOKENS/VALGRIND_RUNS tokens each
#    (whole, the quadratic attention makes one valgrind run of 10,000 tokens
#    take an hour); either is skipped, loudly, when its tool is missing.
#
# LOADER=browser: the loop is the chat page in headless Chromium instead
# (bench/soak-browser.mjs: loads from the network, reloads from the cache,
# continues greedily each time).
# Environment: MINUTES, CONNS, WRK_THREADS (2), SAMPLE, MODEL, TOKENS,
# VALGRIND_RUNS, STREAMLLM_BIN (build/streamllm), ASAN_BIN
# (build-asan/streamllm), SKIP_SERVE=1, SKIP_NATIVE=1, SOAK_DIR (where the
# logs go, default build/soak). Exit status 0 when every check holds: no wrk
# error, no loader failure, the same text every run, RSS at the end within
# max(8 MiB, 10%) of the warm-up's, no leak or memory error report.
set -u
cd "$(dirname "$0")/.."
MINUTES=${1:-${MINUTES:-10}}
CONNS=${CONNS:-32}
WRK_THREADS=${WRK_THREADS:-2}
SAMPLE=${SAMPLE:-5}
TOKENS=${TOKENS:-10000}
VALGRIND_RUNS=${VALGRIND_RUNS:-10}
BIN=${STREAMLLM_BIN:-build/streamllm}
ASAN_BIN=${ASAN_BIN:-build-asan/streamllm}
TESTDATA=${STREAMLLM_TESTDATA:-../shared/testdata}
work=${SOAK_DIR:-build/soak}
mkdir -p "$work"
failures=0
fail() { echo "!!! $*"; failures=$((failures + 1)); }
[ -x "$BIN" ] || { echo "$BIN not built (make)" >&2; exit 1; }

model=${MODEL:-}
if [ -z "$model" ]; then
    if [ -f "$TESTDATA/models/stories260K.gguf" ]; then
        model="$TESTDATA/models/stories260K.gguf"
    else
        model="$work/tiny.gguf"
        [ -f "$model" ] || "$BIN" synth --like tiny --type Q8_0 -o "$model" >/dev/null
    fi
fi
echo "model: $model; machine: $(nproc) cores"

# ---- 1. the server under load, the loader looping ---------------------------------
if [ -z "${SKIP_SERVE:-}" ]; then
    command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
    command -v node >/dev/null || { echo "node is not installed" >&2; exit 1; }
    [ -f build/wasm/engine.wasm ] || { echo "build/wasm/engine.wasm not built (make wasm)" >&2; exit 1; }
    : >"$work/serve.out"
    "$BIN" serve "$model" --cache "$work/cache" --port 0 --cors '*' >"$work/serve.out" 2>/dev/null &
    pid=$!
    loader=""
    trap 'kill $pid $loader 2>/dev/null; wait 2>/dev/null' EXIT
    url=""
    for _ in $(seq 1 300); do
        url=$(sed -n 's|^open \(http://[^ ]*\)/$|\1|p' "$work/serve.out")
        [ -n "$url" ] && break
        kill -0 "$pid" 2>/dev/null || { echo "serve did not start" >&2; exit 1; }
        sleep 0.2
    done
    [ -n "$url" ] || { echo "serve did not print its URL" >&2; exit 1; }
    id=$(curl -sf "$url/api/models" | python3 -c 'import json,sys; print(json.load(sys.stdin)["models"][0]["id"])')
    curl -sf "$url/api/models/$id" >"$work/manifest.json"
    # the shards (path, bytes, etag) for wrk's request mix
    python3 - "$work/manifest.json" "$url" "$id" >"$work/mix.lua" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
shards = [(s["url"], s["bytes"], '"%s"' % s["sha256"]) for s in m["shards"]]
print("local shards = {")
for u, b, e in shards:
    print('  {path = "%s", bytes = %d, etag = %s},' % (u, b, json.dumps(e)))
print("}")
print('local manifest = "/api/models/%s"' % sys.argv[3])
print(r'''
local n = 0
request = function()
  n = n + 1
  local k = n % 10
  local s = shards[(n % #shards) + 1]
  if k == 0 then return wrk.format("GET", "/api/models")
  elseif k == 1 then return wrk.format("GET", manifest)
  elseif k == 2 then return wrk.format("GET", "/")
  elseif k == 5 then return wrk.format("GET", s.path)
  else
    local first = math.random(0, s.bytes - 1)
    local last = math.min(s.bytes - 1, first + math.random(0, 262143))
    return wrk.format("GET", s.path, {["Range"] = "bytes=" .. first .. "-" .. last})
  end
end
''')
EOF
    rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0; }
    seconds=$((MINUTES * 60))
    warm=$((seconds / 5 < 60 ? seconds / 5 : 60))
    if [ "${LOADER:-node}" = browser ]; then
        echo "server: $url (pid $pid); wrk -t$WRK_THREADS -c$CONNS for ${MINUTES} min; loader: the chat page in headless Chromium (bench/soak-browser.mjs)"
        # the loader: the page loads (network, then cache after a reload) and continues greedily
        node bench/soak-browser.mjs "$url" "$id" "$seconds" >"$work/loader.log" 2>"$work/loader.err" &
    else
    echo "server: $url (pid $pid); wrk -t$WRK_THREADS -c$CONNS for ${MINUTES} min; loader: node web/cli.mjs run -m $url/api/models/$id"

    # the loader: load through the manager, generate greedily, compare the text
    (
        end=$(($(date +%s) + seconds))
        i=0
        while [ "$(date +%s)" -lt "$end" ]; do
            i=$((i + 1))
            if node web/cli.mjs run -m "$url/api/models/$id" -p "Once upon a time" -n 32 --temp 0 \
                >"$work/loader-$i.out" 2>"$work/loader-$i.err"; then
                if [ "$i" -gt 1 ] && ! cmp -s "$work/loader-1.out" "$work/loader-$i.out"; then
                    echo "differs $i"
                else
                    echo "ok $i"
                    [ "$i" -gt 1 ] && rm -f "$work/loader-$i.out" "$work/loader-$i.err"
                fi
            else
                echo "failed $i"
            fi
        done
    ) >"$work/loader.log" 2>&1 &
    fi
    loader=$!

    : >"$work/rss.tsv"
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"${seconds}s" --timeout 30s -s "$work/mix.lua" "$url" >"$work/wrk.txt" 2>&1 &
    wrk_pid=$!
    t0=$(date +%s)
    while kill -0 "$wrk_pid" 2>/dev/null; do
        printf '%s\t%s\n' "$(($(date +%s) - t0))" "$(rss_kib)" >>"$work/rss.tsv"
        sleep "$SAMPLE"
    done
    wait "$wrk_pid"
    wait "$loader"
    loader=""
    printf '%s\t%s\n' "$(($(date +%s) - t0))" "$(rss_kib)" >>"$work/rss.tsv"
    kill -0 "$pid" 2>/dev/null || fail "the server died"

    requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.txt")
    errors=$(awk '/^  Socket errors:/ {gsub(/,/, ""); s += $4 + $6 + $8 + $10} /^  Non-2xx or 3xx responses:/ {s += $5}
                  END {print s + 0}' "$work/wrk.txt")
    runs=$(grep -c . "$work/loader.log")
    loader_failed=$(grep -c '^failed' "$work/loader.log")
    differs=$(grep -c '^differs' "$work/loader.log")
    rss_warm=$(awk -v w="$warm" '$1 <= w {v = $2} END {print v + 0}' "$work/rss.tsv")
    rss_max=$(awk -v w="$warm" '$1 > w && $2 > m {m = $2} END {print m + 0}' "$work/rss.tsv")
    rss_end=$(tail -n 1 "$work/rss.tsv" | cut -f2)
    echo
    echo "wrk:    ${requests:-?} requests (${rps:-?}/s), $errors errors"
    echo "loader: $runs loads + generations, $loader_failed failed, $differs with other text"
    echo "RSS:    ${rss_warm} KiB after the warm-up (${warm} s), max ${rss_max} KiB after it, ${rss_end} KiB at the end"
    echo "        (samples: $work/rss.tsv; wrk: $work/wrk.txt; loader: $work/loader.log)"
    [ "$errors" = 0 ] || fail "$errors wrk errors (see $work/wrk.txt)"
    [ "$runs" -gt 0 ] || fail "the loader never ran"
    [ "$loader_failed" = 0 ] || fail "$loader_failed loads failed (see $work/loader-*.err)"
    [ "$differs" = 0 ] || fail "$differs runs printed other text than the first"
    slack=$((rss_warm / 10 > 8192 ? rss_warm / 10 : 8192))
    [ "$rss_end" -le $((rss_warm + slack)) ] || fail "RSS grew past the warm-up: $rss_warm -> $rss_end KiB"
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    trap - EXIT
fi

# ---- 2. native generation under LeakSanitizer and valgrind --------------------------
if [ -z "${SKIP_NATIVE:-}" ]; then
    echo
    prompt="Once upon a time"
    if [ -x "$ASAN_BIN" ]; then
        start=$(date +%s)
        ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 "$ASAN_BIN" run -m "$model" -p "$prompt" -n "$TOKENS" \
            --ctx $((TOKENS + 16)) --temp 0.8 --seed 1 -t 2 >"$work/asan.out" 2>"$work/asan.err"
        rc=$?
        gen=$(grep -o 'generation: [0-9]* tokens' "$work/asan.err")
        echo "LeakSanitizer: $ASAN_BIN run -n $TOKENS --ctx $((TOKENS + 16)): exit $rc, ${gen:-no summary}, $(($(date +%s) - start)) s"
        [ "$rc" = 0 ] || fail "the sanitized run failed (see $work/asan.err)"
        grep -q "generation: $TOKENS tokens" "$work/asan.err" || fail "the sanitized run did not generate $TOKENS tokens"
        if grep -qE 'ERROR: (LeakSanitizer|AddressSanitizer)|runtime error' "$work/asan.err"; then
            fail "sanitizer report (see $work/asan.err)"
        else
            echo "               no leak or memory error reported"
        fi
    else
        echo "!!! LeakSanitizer run SKIPPED: no $ASAN_BIN (make asan)"
    fi
    if command -v valgrind >/dev/null; then
        per=$((TOKENS / VALGRIND_RUNS))
        total=0
        bad=0
        start=$(date +%s)
        for r in $(seq 1 "$VALGRIND_RUNS"); do
            valgrind --leak-check=full --show-leak-kinds=definite,indirect,possible \
                --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99 \
                "$BIN" run -m "$model" -p "$prompt" -n "$per" --ctx $((per + 16)) --temp 0.8 --seed "$r" -t 1 \
                >"$work/valgrind-$r.out" 2>"$work/valgrind-$r.err"
            rc=$?
            n=$(grep -o 'generation: [0-9]* tokens' "$work/valgrind-$r.err" | awk '{print $2}')
            total=$((total + ${n:-0}))
            if [ "$rc" != 0 ] || ! grep -q 'ERROR SUMMARY: 0 errors' "$work/valgrind-$r.err"; then
                bad=$((bad + 1))
                echo "!!! valgrind run $r: exit $rc (see $work/valgrind-$r.err)"
            fi
        done
        lost=$(grep -h 'definitely lost:' "$work"/valgrind-*.err | awk '{gsub(/,/, "", $4); s += $4} END {print s + 0}')
        echo "valgrind memcheck: $VALGRIND_RUNS runs x $per tokens = $total tokens generated, $bad runs with errors," \
             "definitely lost $lost bytes, $(($(date +%s) - start)) s"
        [ "$bad" = 0 ] || fail "$bad valgrind runs reported errors or leaks"
        [ "$total" = $((per * VALGRIND_RUNS)) ] || fail "valgrind runs generated $total tokens, not $((per * VALGRIND_RUNS))"
    else
        echo "!!! valgrind run SKIPPED: valgrind is not installed (apt-get install valgrind)"
    fi
fi

echo
if [ "$failures" = 0 ]; then echo "soak: every check holds"; else echo "soak: $failures checks failed"; fi
[ "$failures" = 0 ]
