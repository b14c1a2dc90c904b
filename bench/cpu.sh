#!/usr/bin/env bash
# bench/cpu.sh - CPU speed of streamllm, and of llama.cpp on the same file in
# the same run.
#
#   bench/cpu.sh -m MODEL [-p 64] [-n 32] [-r 5] [-t 2] [--peer PATH/TO/llama-bench]
#
# Runs ROUNDS rounds; each round runs one measured repetition of our `bench`
# and then (with --peer) one of llama-bench, so both see the same machine
# noise. Prints the median tokens/s of each test and, with a peer, the ratio.
# llama.cpp is never part of this project: build llama-bench by hand in /tmp.
set -eu
cd "$(dirname "$0")/.."
model="" pp=64 tg=32 rounds=5 threads=2 peer=""
while [ $# -gt 0 ]; do
    case "$1" in
        -m) model=$2; shift 2 ;;
        -p) pp=$2; shift 2 ;;
        -n) tg=$2; shift 2 ;;
        -r) rounds=$2; shift 2 ;;
        -t) threads=$2; shift 2 ;;
        --peer) peer=$2; shift 2 ;;
        *) echo "usage: bench/cpu.sh -m MODEL [-p N] [-n N] [-r ROUNDS] [-t THREADS] [--peer llama-bench]" >&2; exit 2 ;;
    esac
done
[ -n "$model" ] || { echo "bench/cpu.sh: no model (-m)" >&2; exit 2; }
[ -x build/streamllm ] || make -j"$(nproc)" all >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for ((i = 0; i < rounds; i++)); do
    # our table rows: "| ... | ppN | median ± sd |": keep test and value
    build/streamllm bench -m "$model" -p "$pp" -n "$tg" -r 1 -t "$threads" |
        awk -F'|' '/\| (pp|tg)[0-9]+ \|/ {gsub(/ /,"",$7); split($8,a," "); print $7, a[1]}' >>"$tmp/ours"
    if [ -n "$peer" ]; then
        "$peer" -m "$model" -p "$pp" -n "$tg" -r 1 -t "$threads" 2>/dev/null |
            awk -F'|' '/ (pp|tg)[0-9]+ +\|/ {gsub(/ /,"",$(NF-2)); split($(NF-1),a," "); print $(NF-2), a[1]}' >>"$tmp/peer"
    fi
done

median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print v[(NR+1)/2]; else print (v[NR/2]+v[NR/2+1])/2}'; }
echo "model: $model, threads: $threads, rounds: $rounds ($(build/streamllm bench -m "$model" -p 0 -n 1 -r 1 -t 1 | awk -F'|' '/tg1/ {print $5}' | xargs))"
printf '| test | streamllm t/s |%s\n' "${peer:+ llama.cpp t/s | ratio |}"
printf '| --- | ---: |%s\n' "${peer:+ ---: | ---: |}"
for test in "pp$pp" "tg$tg"; do
    ours=$(awk -v t="$test" '$1==t {print $2}' "$tmp/ours" | median)
    if [ -n "$peer" ]; then
        theirs=$(awk -v t="$test" '$1==t {print $2}' "$tmp/peer" | median)
        ratio=$(awk -v a="$ours" -v b="$theirs" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}')
        printf '| %s | %.2f | %.2f | %sx |\n' "$test" "$ours" "$theirs" "$ratio"
    else
        printf '| %s | %.2f |\n' "$test" "$ours"
    fi
done
