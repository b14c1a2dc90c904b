#!/usr/bin/env bash
# bench/server-load.sh - load test of `streamllm serve` with wrk on loopback:
# CONNS connections (default 64) for DURATION (default 30s) against the
# largest shard of at most 64 MiB, then against /api/models. Prints for each:
# requests/s, MiB/s, errors (socket errors + non-2xx/3xx answers) and the
# server's RSS before and after. A benchmark, not a test: nothing fails on
# numbers, but errors are reported loudly.
#
# The model is synthesized once (qwen2.5-0.5b shape, Q8_0, 4 layers, ~211 MB:
# its layer shard is ~60 MiB) into $BENCH_DIR (default build/bench-server).
# Environment: STREAMLLM_BIN, DURATION, CONNS, WRK_THREADS (default 2),
# ACCESS_LOG (default /dev/null; the log line is still formatted and written).
set -eu
cd "$(dirname "$0")/.."
BIN=${STREAMLLM_BIN:-build/streamllm}
DURATION=${DURATION:-30s}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-2}
ACCESS_LOG=${ACCESS_LOG:-/dev/null}
work=${BENCH_DIR:-build/bench-server}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)" >&2; exit 1; }
[ -x "$BIN" ] || { echo "$BIN not built (make)" >&2; exit 1; }
mkdir -p "$work"
[ -f "$work/model.gguf" ] || "$BIN" synth --like qwen2.5-0.5b --type Q8_0 --layers 4 -o "$work/model.gguf" >&2

"$BIN" serve "$work/model.gguf" --cache "$work/cache" --port 0 >"$work/serve.out" 2>"$ACCESS_LOG" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
url=""
for _ in $(seq 1 300); do
    url=$(sed -n 's|^open \(http://[^ ]*\)/$|\1|p' "$work/serve.out")
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "serve did not start" >&2; exit 1; }
    sleep 0.2
done
[ -n "$url" ] || { echo "serve did not print its URL" >&2; exit 1; }

# the largest shard within 64 MiB
read -r shard_path shard_bytes < <(curl -sf "$url/api/models/model" | python3 -c '
import json, sys
m = json.load(sys.stdin)
s = max((s for s in m["shards"] if s["bytes"] <= 64 << 20), key=lambda s: s["bytes"])
print(s["url"], s["bytes"])')

rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
threads() { awk '/^Threads/ {print $2}' "/proc/$pid/status"; }

echo "server: $url (pid $pid, $(threads) threads), machine: $(nproc) cores; wrk -t$WRK_THREADS -c$CONNS -d$DURATION --timeout 60s"
echo "shard: $shard_path ($shard_bytes bytes, $(awk -v b="$shard_bytes" 'BEGIN {printf "%.1f", b / 1048576}') MiB)"
echo
printf '| %-12s | %12s | %10s | %6s | %12s | %12s |\n' target "requests/s" "MiB/s" errors "RSS before" "RSS after"
printf '|%s|%s|%s|%s|%s|%s|\n' "--------------" "--------------" "------------" "--------" "--------------" "--------------"
total_errors=0
run() { # run NAME URL
    local before after out
    before=$(rss_kib)
    out="$work/wrk-$1.txt"
    # --timeout: 64 parallel downloads of a 60 MiB shard each take seconds (wrk's default is 2 s)
    wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --timeout 60s --latency "$2" >"$out"
    after=$(rss_kib)
    local rps mib errors
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    # Transfer/sec with wrk's binary units (KB = 1024 B)
    mib=$(awk '/^Transfer\/sec:/ {v = $2; u = v; sub(/[0-9.]+/, "", u); sub(/[A-Za-z]+$/, "", v);
              f = (u == "GB") ? 1024 : (u == "MB") ? 1 : (u == "KB") ? 1 / 1024 : 1 / 1048576; printf "%.1f", v * f}' "$out")
    errors=$(awk '/^  Socket errors:/ {gsub(/,/, ""); s += $4 + $6 + $8 + $10} /^  Non-2xx or 3xx responses:/ {s += $5}
                  END {print s + 0}' "$out")
    total_errors=$((total_errors + errors))
    printf '| %-12s | %12s | %10s | %6s | %9s KiB | %9s KiB |\n' "$1" "$rps" "$mib" "$errors" "$before" "$after"
}
run shard "$url$shard_path"
run api-models "$url/api/models"
echo
echo "RSS at the end: $(rss_kib) KiB; wrk's full output: $work/wrk-*.txt"
if [ "$total_errors" -ne 0 ]; then echo "!!! $total_errors errors (see $work/wrk-*.txt)"; fi
