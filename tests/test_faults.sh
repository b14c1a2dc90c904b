#!/usr/bin/env bash
# tests/test_faults.sh - `streamllm pull` from `streamllm serve` when the disk
# fills up, as a user meets it: the pull of a model's shards (a llama.cpp
# split set) runs with a file size limit (ulimit -f, SIGXFSZ ignored, so
# write() fails with EFBIG as on a full disk) and must stop with one clear
# error line and exit 1, leaving the complete shards intact and the cut one
# as a .part; with room again the same command resumes it (Range) and
# completes, `streamllm verify` accepts the folder, and `streamllm run`
# generates from it. (The network faults are tests/test_faults_pull.c.)
# Prints "N passed, N failed" like the C tests.
set -u
BIN=${STREAMLLM_BIN:-build/streamllm}
. "$(dirname "$0")/lib.sh"
need_tools test_faults.sh curl python3

tmp=$(mktemp -d /tmp/sl-test-faults-XXXXXX)
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
    rm -rf "$tmp"
}
trap cleanup EXIT

"$BIN" synth --like tiny --type Q8_0 -o "$tmp/tiny.gguf" >/dev/null 2>&1
check "synth a model" test -s "$tmp/tiny.gguf"
: >"$tmp/serve.out"
"$BIN" serve "$tmp/tiny.gguf" --cache "$tmp/cache" --port 0 >"$tmp/serve.out" 2>"$tmp/serve.err" &
pid=$!
url=""
for _ in $(seq 1 100); do
    url=$(sed -n 's|^open \(http://[^ ]*\)/$|\1|p' "$tmp/serve.out")
    if [ -n "$url" ] || ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.2
done
check "serve starts" test -n "$url"
if [ -z "$url" ]; then
    echo "$pass passed, $((fail + 1)) failed"
    exit 1
fi
# the shards (file, bytes) in order, and the manifest's URL
curl -sf "$url/api/models/tiny" >"$tmp/manifest.json"
mapfile -t files < <(python3 -c 'import json,sys; [print(s["file"]) for s in json.load(open(sys.argv[1]))["shards"]]' "$tmp/manifest.json")
mapfile -t sizes < <(python3 -c 'import json,sys; [print(s["bytes"]) for s in json.load(open(sys.argv[1]))["shards"]]' "$tmp/manifest.json")
mapfile -t hashes < <(python3 -c 'import json,sys; [print(s["sha256"]) for s in json.load(open(sys.argv[1]))["shards"]]' "$tmp/manifest.json")
intact() { test "$(sha256sum <"$out/${files[$1]}" | cut -d' ' -f1)" = "${hashes[$1]}"; }
check "four shards, the third the largest" test "${#files[@]}" = 4 -a "${sizes[2]}" -gt $((600 * 1024))
first="$url/models/tiny/${files[0]}"
out="$tmp/pulled"

# a limit that the first two shards fit under and the third does not
limit_kb=$(( (sizes[0] + sizes[1]) / 1024 + 64 ))
(ulimit -f "$limit_kb"; trap '' XFSZ; exec "$BIN" pull "$first" -o "$out") >"$tmp/full.out" 2>"$tmp/full.err"
rc=$?
check "disk full: exit 1" test "$rc" = 1
last=$(tail -n 1 "$tmp/full.err")
check "disk full: one clear error line" bash -c "grep -q '^streamllm pull: download of .*failed: cannot write the .part file: File too large$' <<<'$last'"
check "disk full: nothing printed as a result" test ! -s "$tmp/full.out"
check "disk full: shard 1 complete" intact 0
check "disk full: shard 2 complete" intact 1
part_size=$(stat -c %s "$out/${files[2]}.part" 2>/dev/null || echo 0)
check "disk full: shard 3 left as a .part" test "$part_size" -gt 0 -a "$part_size" -lt "${sizes[2]}"
check "disk full: shard 3 not in place" test ! -e "$out/${files[2]}"

# room again: the same command resumes and completes
"$BIN" pull "$first" -o "$out" >"$tmp/again.out" 2>"$tmp/again.err"
check "room again: exit 0" test $? = 0
check "room again: shards 1-2 not fetched again" test "$(grep -c '^have ' "$tmp/again.err")" = 2
check "room again: shard 3 resumed at the .part's size" grep -q "^resuming ${files[2]} at $part_size bytes" "$tmp/again.err"
check "room again: every shard verified" test "$(grep -c 'SHA-256 verified' "$tmp/again.err")" = 2
"$BIN" pull "$url/models/tiny/manifest.json" -o "$out" >/dev/null 2>&1
check "the manifest pulled" test -s "$out/manifest.json"
"$BIN" verify "$out" >"$tmp/verify.out" 2>&1
check "streamllm verify accepts the folder" test $? = 0
"$BIN" run -m "$out" -p "Once upon a time" -n 4 --temp 0 >"$tmp/run.out" 2>"$tmp/run.err"
check "streamllm run generates from it" test $? = 0 -a -s "$tmp/run.out"

# a corrupted shard in the folder is caught by verify, by name
printf 'X' | dd of="$out/${files[1]}" bs=1 seek=100 conv=notrunc 2>/dev/null
"$BIN" verify "$out" >/dev/null 2>"$tmp/verify-bad.err"
check "verify: a corrupted shard fails" test $? != 0
check "verify: names it" grep -q "${files[1]}" "$tmp/verify-bad.err"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
