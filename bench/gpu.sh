#!/usr/bin/env bash
# bench/gpu.sh - GPU speed of the WebGPU engine (Dawn in Node) on synthesized
# models, beside llama.cpp's llama-bench on the same files when given one.
#
#   bench/gpu.sh [--models "llama-3.2-1b:Q4_0 llama-3.2-1b:Q4_K_M ..."] [--peer PATH/llama-bench]
#                [-p 512] [-n 128] [-r 5] [--dir DIR] [--tiny]
#
# For each SHAPE:TYPE it synthesizes DIR/SHAPE-TYPE.gguf (`streamllm synth`,
# kept for later runs), runs bench/gpu.mjs (ppN, tgN: medians of -r runs
# after a warm-up; copy bandwidth and decode floor) and, with --peer,
# `llama-bench -m FILE -p N -n N -r R -fa 1` on the same file; then prints
# one table: ours, the peer's, the ratios, our greedy generation with the
# argmax on the GPU (ids only come back: what temperature 0 runs; the peer's
# tg reads logits), and tg as a share of the floor.
# --tiny: the 'tiny' shape, few tokens, no peer: what CI runs on SwiftShader
# so the script cannot rot. Build llama.cpp yourself (never commit it).
# $STREAMLLM (default build/streamllm), $NODE (default node) and $WASM
# (default build/wasm/engine.wasm) may point elsewhere, e.g. on a GPU machine.
set -euo pipefail
cd "$(dirname "$0")/.."
models="llama-3.2-1b:Q4_0 llama-3.2-1b:Q4_K_M llama-3.2-1b:Q8_0"
peer="" p=512 n=128 r=5 dir=/tmp/streamllm-bench tiny=0
while [ $# -gt 0 ]; do
    case "$1" in
        --models) models=$2; shift 2 ;;
        --peer) peer=$2; shift 2 ;;
        -p) p=$2; shift 2 ;;
        -n) n=$2; shift 2 ;;
        -r) r=$2; shift 2 ;;
        --dir) dir=$2; shift 2 ;;
        --tiny) tiny=1; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "bench/gpu.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
STREAMLLM=${STREAMLLM:-build/streamllm}
NODE=${NODE:-node}
extra=()
[ -n "${WASM:-}" ] && extra+=(--wasm "$WASM")
if [ $tiny = 1 ]; then
    models="tiny:Q4_0" p=16 n=8 r=2 peer=""
    extra+=(--copy-mib 4)
fi
mkdir -p "$dir"
rows=()
for m in $models; do
    shape=${m%%:*} type=${m##*:}
    f="$dir/$shape-$type.gguf"
    [ -s "$f" ] || "$STREAMLLM" synth --like "$shape" --type "$type" -o "$f" >&2
    ours=$("$NODE" bench/gpu.mjs -m "$f" -p "$p" -n "$n" -r "$r" --json "${extra[@]}")
    pp=$(printf '%s' "$ours" | "$NODE" -e "const o=JSON.parse(require('fs').readFileSync(0,'utf8'));console.log(o.results['pp$p'].median.toFixed(1))")
    tg=$(printf '%s' "$ours" | "$NODE" -e "const o=JSON.parse(require('fs').readFileSync(0,'utf8'));console.log(o.results['tg$n'].median.toFixed(1))")
    # greedy generation with the argmax on the GPU (ids only; "-" where the backend cannot)
    tgg=$(printf '%s' "$ours" | "$NODE" -e "const o=JSON.parse(require('fs').readFileSync(0,'utf8'));const g=o.results['tg$n-greedy'];console.log(g?g.median.toFixed(1):'-')")
    floor=$(printf '%s' "$ours" | "$NODE" -e "const o=JSON.parse(require('fs').readFileSync(0,'utf8'));console.log(o.floorTps.toFixed(0)+' t/s ('+(o.bandwidth/1e9).toPrecision(3)+' GB/s)')")
    ofloor=$(printf '%s' "$ours" | "$NODE" -e "const o=JSON.parse(require('fs').readFileSync(0,'utf8'));console.log((100*o.ofFloor).toFixed(1)+'%')")
    ppeer="-" tpeer="-" rpp="-" rtg="-" rtgg="-"
    if [ -n "$peer" ]; then
        json=$("$peer" -m "$f" -p "$p" -n "$n" -r "$r" -fa 1 -o json 2>/dev/null)
        ppeer=$(printf '%s' "$json" | "$NODE" -e "const a=JSON.parse(require('fs').readFileSync(0,'utf8'));console.log(a.find(x=>x.n_prompt>0).avg_ts.toFixed(1))")
        tpeer=$(printf '%s' "$json" | "$NODE" -e "const a=JSON.parse(require('fs').readFileSync(0,'utf8'));console.log(a.find(x=>x.n_gen>0).avg_ts.toFixed(1))")
        rpp=$(awk -v a="$pp" -v b="$ppeer" 'BEGIN { printf "%.2fx", a / b }')
        rtg=$(awk -v a="$tg" -v b="$tpeer" 'BEGIN { printf "%.2fx", a / b }')
        [ "$tgg" = "-" ] || rtgg=$(awk -v a="$tgg" -v b="$tpeer" 'BEGIN { printf "%.2fx", a / b }')
    fi
    rows+=("| $shape $type | $pp | $ppeer | $rpp | $tg | $tpeer | $rtg | $tgg | $rtgg | $floor | $ofloor |")
done
echo "| model | pp$p ours | pp$p peer | ratio | tg$n ours | tg$n peer | ratio | tg$n greedy, GPU argmax | ratio | decode floor | tg of floor |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
