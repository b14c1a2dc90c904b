#!/usr/bin/env bash
# scripts/deps.sh - installs what building and testing stream-llm needs on a
# Debian/Ubuntu machine (run as root, or with sudo available). Installs only
# what is missing, so a second run is quick and works offline.
set -eu
PKGS="build-essential make clang libclang-rt-14-dev libcjson-dev libssl-dev libmicrohttpd-dev libcurl4-openssl-dev"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
