#!/usr/bin/env bash
# bench/cpu.sh - CPU speed of streamllm, and of llama.cpp on the same file in
# the same run; optionally of the wasm engine under Node too.
#
#   bench/cpu.sh -m MODEL [-p 64] [-n 32] [-r 5] [-t 2] [--peer PATH/TO/llama-bench] [--wasm]
#
# Runs ROUNDS rounds; each round runs one measured repetition of our `bench`,
# then (with --peer) one of llama-bench, then (with --wasm) one of
# bench/wasm.mjs with the same thread count, so all see the same machine
# noise (WASM_ENGINE=FILE picks another engine.wasm). Prints the median tokens/s of each test, the ratios to the peer, the
# machine's read bandwidth (bench/membw.c) and the decode floor it implies:
# the bytes a token reads (every matrix once) / bandwidth. llama.cpp is never
# part of this project: build llama-bench by hand in /tmp.
set -eu
cd "$(dirname "$0")/.."
model="" pp=64 tg=32 rounds=5 threads=2 peer="" wasm=""
while [ $# -gt 0 ]; do
    case "$1" in
        -m) model=$2; shift 2 ;;
        -p) pp=$2; shift 2 ;;
        -n) tg=$2; shift 2 ;;
        -r) rounds=$2; shift 2 ;;
        -t) threads=$2; shift 2 ;;
        --peer) peer=$2; shift 2 ;;
        --wasm) wasm=1; shift ;;
        *) echo "usage: bench/cpu.sh -m MODEL [-p N] [-n N] [-r ROUNDS] [-t THREADS] [--peer llama-bench] [--wasm]" >&2; exit 2 ;;
    esac
done
[ -n "$model" ] || { echo "bench/cpu.sh: no model (-m)" >&2; exit 2; }
[ -x build/streamllm ] || make -j"$(nproc)" all >/dev/null
[ -x build/bench-membw ] || cc -std=c11 -O2 -pthread bench/membw.c -o build/bench-membw
[ -z "$wasm" ] || [ -f build/wasm/engine.wasm ] || make wasm >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
loads=""
for ((i = 0; i < rounds; i++)); do
    loads="$loads $(cut -d' ' -f1 /proc/loadavg)"
    # our table rows: "| ... | ppN | median ± sd |": keep test and value
    build/streamllm bench -m "$model" -p "$pp" -n "$tg" -r 1 -t "$threads" |
        awk -F'|' '/\| (pp|tg)[0-9]+ \|/ {gsub(/ /,"",$7); split($8,a," "); print $7, a[1]}' >>"$tmp/ours"
    if [ -n "$peer" ]; then
        "$peer" -m "$model" -p "$pp" -n "$tg" -r 1 -t "$threads" 2>/dev/null |
            awk -F'|' '/ (pp|tg)[0-9]+ +\|/ {gsub(/ /,"",$(NF-2)); split($(NF-1),a," "); print $(NF-2), a[1]}' >>"$tmp/peer"
    fi
    if [ -n "$wasm" ]; then
        node bench/wasm.mjs -m "$model" -p "$pp" -n "$tg" -r 1 -t "$threads" ${WASM_ENGINE:+--wasm "$WASM_ENGINE"} |
            awk -F'|' '/\| (pp|tg)[0-9]+ \|/ {gsub(/ /,"",$6); gsub(/ /,"",$7); print $6, $7}' >>"$tmp/wasm"
    fi
done

median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
col() { awk -v t="$2" '$1==t {print $2}' "$1" | median; }
echo "model: $model, threads: $threads, rounds: $rounds ($(build/streamllm bench -m "$model" -p 0 -n 1 -r 1 -t 1 | awk -F'|' '/tg1/ {print $5}' | xargs)); load average at each round:$loads"
printf '| test | streamllm t/s |%s%s\n' "${peer:+ llama.cpp t/s | ratio |}" "${wasm:+ wasm t/s |${peer:+ wasm / llama.cpp |}}"
printf '| --- | ---: |%s%s\n' "${peer:+ ---: | ---: |}" "${wasm:+ ---: |${peer:+ ---: |}}"
for test in "pp$pp" "tg$tg"; do
    ours=$(col "$tmp/ours" "$test")
    line=$(printf '| %s | %.2f |' "$test" "$ours")
    if [ -n "$peer" ]; then
        theirs=$(col "$tmp/peer" "$test")
        line="$line $(awk -v a="$ours" -v b="$theirs" 'BEGIN {printf "%.2f | %.2fx |", b, (b > 0 ? a / b : 0)}')"
    fi
    if [ -n "$wasm" ]; then
        w=$(col "$tmp/wasm" "$test")
        line="$line $(printf '%.2f |' "$w")"
        [ -z "$peer" ] || line="$line $(awk -v a="$w" -v b="$theirs" 'BEGIN {printf "%.2fx |", (b > 0 ? a / b : 0)}')"
    fi
    echo "$line"
done

# The decode floor: bytes of the matrices a token reads (the token embedding
# only when it doubles as the output head) / read bandwidth.
bytes=$(build/streamllm info -m "$model" | awk '
    $1 ~ /\.weight$/ && $NF == "bytes" && $2 !~ /^F32$/ { w[$1] = $(NF-1) }
    END { for (k in w) if (k != "token_embd.weight" || !("output.weight" in w)) s += w[k]; print s + 0 }')
bw=$(build/bench-membw -t "$threads" -m 512 -r 3 | sed -E 's/.*read ([0-9.]+) GB.*/\1/')
awk -v b="$bytes" -v bw="$bw" -v t="$threads" 'BEGIN {
    printf "memory: read %.1f GB/s (%d threads); a token reads %.0f MB of weights: decode floor %.1f ms, at most %.1f t/s\n",
           bw, t, b / 1e6, b / (bw * 1e9) * 1e3, bw * 1e9 / b }'
