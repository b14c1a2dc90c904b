#!/usr/bin/env bash
# scripts/demo.sh - the main job: build, generate a few sentences on the CPU to
# show the engine works, then serve the model to browsers (Ctrl-C stops it).
# Uses the real TinyStories model from the shared test data when present;
# otherwise synthesizes a small random-weight model (its text is gibberish,
# but every part of the engine runs). SERVE=0 skips the server.
set -eu
cd "$(dirname "$0")/.."
bash scripts/deps.sh
make -j"$(nproc)" all wasm
MODEL="${STREAMLLM_TESTDATA:-../shared/testdata}/models/stories260K.gguf"
if [ ! -f "$MODEL" ]; then
    MODEL=build/demo-smollm2-135m-q8_0.gguf
    [ -f "$MODEL" ] || build/streamllm synth --like smollm2-135m --type Q8_0 -o "$MODEL"
fi
build/streamllm info -m "$MODEL" | tail -n 4
build/streamllm run -m "$MODEL" -p "${PROMPT:-Once upon a time}" -n "${N:-128}" --temp "${TEMP:-0}"
echo
[ "${SERVE:-1}" = "0" ] && exit 0
exec build/streamllm serve "$MODEL" --host 127.0.0.1 --port "${PORT:-8080}" --cache build/serve-cache
