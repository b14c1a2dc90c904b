#!/usr/bin/env bash
# scripts/deps.sh - installs what building and testing stream-llm needs on a
# Debian/Ubuntu machine (run as root, or with sudo available). Installs only
# what is missing, so a second run is quick and works offline.
set -eu
PKGS="build-essential make clang libclang-rt-14-dev libcjson-dev libssl-dev libmicrohttpd-dev libcurl4-openssl-dev clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32 clang-16 lld-16 libclang-rt-16-dev-wasm32 chromium libvulkan1 wrk curl python3"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# node + npm for the JS tests (any source of node will do: only add Debian's when there is none)
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi

# The npm devDependencies (package-lock.json): `npm ci` at the project root
# unless every one of them is installed already (so a second run works offline).
cd "$(dirname "$0")/.."
if [ -f package-lock.json ] && ! node -e '
    const fs = require("fs");
    const deps = Object.keys(require("./package.json").devDependencies || {});
    process.exit(deps.every((d) => fs.existsSync("node_modules/" + d + "/package.json")) ? 0 : 1);
'; then
    echo "npm ci"
    npm ci --no-audit --no-fund
fi
