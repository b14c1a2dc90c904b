#!/usr/bin/env bash
# scripts/test.sh - the one command that builds and runs every test: installs
# dependencies, then unit + conformance tests, the same under ASan+UBSan, and a
# bounded fuzzing run of every libFuzzer target.
set -eu
cd "$(dirname "$0")/.."
bash scripts/deps.sh
make check
