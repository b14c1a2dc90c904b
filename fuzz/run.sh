#!/usr/bin/env bash
# fuzz/run.sh - runs libFuzzer targets for a bounded time each.
#
# Usage: fuzz/run.sh BIN...   (e.g. build-fuzz/fuzz_gguf; `make fuzz` builds and calls this)
# Each target NAME runs for $FUZZ_SECONDS seconds (default 60) on the corpus
# build-fuzz/corpus/NAME, seeded from fuzz/seeds/NAME/ when present and from the
# shared test data files listed in fuzz/seeds/NAME.testdata (globs relative to
# $STREAMLLM_TESTDATA, default ../shared/testdata; files over 2 MB are skipped).
# A crash, a sanitizer report, a timeout of one input (10 s) or an allocation
# over $FUZZ_MALLOC_LIMIT_MB (default 1024) is a finding: its input is kept as
# build-fuzz/artifacts/NAME-*. Prints each target's exec count and, at the end,
# "N passed, N failed" counting targets; exits non-zero on any finding.
set -u

if [ $# -eq 0 ]; then
    echo "usage: fuzz/run.sh BIN..." >&2
    exit 2
fi

seconds=${FUZZ_SECONDS:-60}
malloc_limit=${FUZZ_MALLOC_LIMIT_MB:-1024}
testdata=${STREAMLLM_TESTDATA:-../shared/testdata}
out=build-fuzz
max_seed_bytes=$((2 * 1024 * 1024))
passed=0
failed=0

for bin in "$@"; do
    name=$(basename "$bin")
    if [ ! -x "$bin" ]; then
        echo "FAIL $name: $bin is not an executable"
        failed=$((failed + 1))
        continue
    fi
    corpus="$out/corpus/$name"
    extra="$out/seeds-testdata/$name"
    mkdir -p "$corpus" "$out/artifacts" "$out/logs"
    rm -rf "$extra"
    mkdir -p "$extra"
    dirs=("$corpus")
    [ -d "fuzz/seeds/$name" ] && dirs+=("fuzz/seeds/$name")
    if [ -f "fuzz/seeds/$name.testdata" ]; then
        if [ -d "$testdata" ]; then
            while read -r pattern; do
                case "$pattern" in ''|'#'*) continue ;; esac
                for f in "$testdata"/$pattern; do
                    [ -f "$f" ] || continue
                    [ "$(stat -c %s "$f")" -le "$max_seed_bytes" ] || continue
                    cp "$f" "$extra/"
                done
            done <"fuzz/seeds/$name.testdata"
            dirs+=("$extra")
        else
            echo "note: $testdata absent, $name runs without test data seeds"
        fi
    fi

    log="$out/logs/$name.log"
    "$bin" -max_total_time="$seconds" -timeout=10 -malloc_limit_mb="$malloc_limit" \
        -print_final_stats=1 -artifact_prefix="$out/artifacts/$name-" "${dirs[@]}" >"$log" 2>&1
    rc=$?
    execs=$(grep -E '^stat::number_of_executed_units:' "$log" | tail -n 1 | awk '{print $2}')
    [ -n "$execs" ] || execs=$(grep -oE 'Done [0-9]+ runs' "$log" | tail -n 1 | awk '{print $2}')
    [ -n "$execs" ] || execs="?"
    if [ "$rc" -eq 0 ]; then
        echo "ok   $name: $execs execs in ${seconds}s, corpus $(ls "$corpus" | wc -l) files"
        passed=$((passed + 1))
    else
        echo "FAIL $name: exit status $rc after $execs execs (log: $log)"
        grep -E 'ERROR:|SUMMARY:|runtime error|Test unit written' "$log" | head -n 10
        failed=$((failed + 1))
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
