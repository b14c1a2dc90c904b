#!/usr/bin/env bash
# bench/cpu.sh - CPU speed of streamllm, and of llama.cpp on the same file in
# the same run; optionally of the wasm engine under Node too.
#
#   bench/cpu.sh -m MODEL [-p 64] [-n 32] [-r 5] [-t 2] [--peer PATH/TO/llama-bench] [--wasm]
#
# Runs ROUNDS rounds; each round runs one measured repetition of our `bench`,
# then (with --peer) one of llama-bench, then (with --wasm) one of
# bench/wasm.mjs with the same thread count (the threaded engine-mt.wasm for
# -t > 1), so all see the same machine noise (WASM_ENGINE=FILE picks another
# engine.wasm; WASM_SIMD=simd128|relaxed a build, default the relaxed-SIMD one
# where built), and the machine's read bandwidth (bench/membw.c). Prints for
# each test the median tokens/s of the rounds and the best round (a busy
# machine disturbs most rounds), the ratios to the peer (wasm's too: to
# native llama.cpp), the load average at each round, and the decode floor:
# the bytes a token reads (every matrix once) / the best read bandwidth.
# llama.cpp is never part of this project: build llama-bench by hand in /tmp.
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
    # read bandwidth in every round too; the floor below uses the best
    build/bench-membw -t "$threads" -m 512 -r 3 | sed -E 's/.*read ([0-9.]+) GB.*/\1/' >>"$tmp/membw"
    # our table rows: "| ... | ppN | median ± sd |": keep test and value
    build/streamllm bench -m "$model" -p "$pp" -n "$tg" -r 1 -t "$threads" |
        awk -F'|' '/\| (pp|tg)[0-9]+ \|/ {gsub(/ /,"",$7); split($8,a," "); print $7, a[1]}' >>"$tmp/ours"
    if [ -n "$peer" ]; then
        "$peer" -m "$model" -p "$pp" -n "$tg" -r 1 -t "$threads" 2>/dev/null |
            awk -F'|' '/ (pp|tg)[0-9]+ +\|/ {gsub(/ /,"",$(NF-2)); split($(NF-1),a," "); print $(NF-2), a[1]}' >>"$tmp/peer"
    fi
    if [ -n "$wasm" ]; then
        node bench/wasm.mjs -m "$model" -p "$pp" -n "$tg" -r 1 -t "$threads" ${WASM_ENGINE:+--wasm "$WASM_ENGINE"} \
            ${WASM_SIMD:+--simd "$WASM_SIMD"} |
            awk -F'|' '/\| (pp|tg)[0-9]+ \|/ {gsub(/ /,"",$6); gsub(/ /,"",$7); print $6, $7}' >>"$tmp/wasm"
    fi
done

median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
best() { sort -g | tail -1 | awk '{print $1} END {if (NR==0) print "nan"}'; }
col() { awk -v t="$2" '$1==t {print $2}' "$1" | $3; }
# a cell: the median of the rounds and, in parentheses, the best one (on a
# busy machine the best round is the one least disturbed)
cell() { printf '%.2f (%.2f)' "$(col "$1" "$2" median)" "$(col "$1" "$2" best)"; }
ratio() { awk -v a="$(col "$1" "$3" median)" -v b="$(col "$2" "$3" median)" -v c="$(col "$1" "$3" best)" -v d="$(col "$2" "$3" best)" \
    'BEGIN {printf "%.2fx (%.2fx)", (b > 0 ? a / b : 0), (d > 0 ? c / d : 0)}'; }
echo "model: $model, threads: $threads, rounds: $rounds ($(build/streamllm bench -m "$model" -p 0 -n 1 -r 1 -t 1 | awk -F'|' '/tg1/ {print $5}' | xargs)); load average at each round:$loads"
echo "figures: median of the rounds (best round)"
printf '| test | streamllm t/s |%s%s\n' "${peer:+ llama.cpp t/s | ratio |}" "${wasm:+ wasm t/s |${peer:+ wasm / llama.cpp |}}"
printf '| --- | ---: |%s%s\n' "${peer:+ ---: | ---: |}" "${wasm:+ ---: |${peer:+ ---: |}}"
for test in "pp$pp" "tg$tg"; do
    line="| $test | $(cell "$tmp/ours" "$test") |"
    [ -z "$peer" ] || line="$line $(cell "$tmp/peer" "$test") | $(ratio "$tmp/ours" "$tmp/peer" "$test") |"
    if [ -n "$wasm" ]; then
        line="$line $(cell "$tmp/wasm" "$test") |"
        [ -z "$peer" ] || line="$line $(ratio "$tmp/wasm" "$tmp/peer" "$test") |"
    fi
    echo "$line"
done

# The decode floor: bytes of the matrices a token reads (the token embedding
# only when it doubles as the output head) / read bandwidth.
bytes=$(build/streamllm info -m "$model" | awk '
    $1 ~ /\.weight$/ && $NF == "bytes" && $2 !~ /^F32$/ { w[$1] = $(NF-1) }
    END { for (k in w) if (k != "token_embd.weight" || !("output.weight" in w)) s += w[k]; print s + 0 }')
bw=$(sort -g "$tmp/membw" | tail -1)
awk -v b="$bytes" -v bw="$bw" -v t="$threads" 'BEGIN {
    printf "memory: read %.1f GB/s (%d threads, best round); a token reads %.0f MB of weights: decode floor %.1f ms, at most %.1f t/s\n",
           bw, t, b / 1e6, b / (bw * 1e9) * 1e3, bw * 1e9 / b }'
