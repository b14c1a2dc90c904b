#!/usr/bin/env bash
# scripts/lavapipe.sh - sets up Mesa's lavapipe 25 (software Vulkan with
# shader-f16, subgroups and a 128 MiB storage binding limit) for the second
# WebGPU test lane (../shared/docs/testing.md, section 2), and prints the
# path of its ICD file. Debian 12's own lavapipe (22.3) is too old for Dawn:
# the driver is taken from bookworm-backports, unpacked into a folder
# (default build/lavapipe), never installed. Run as root (or with sudo) the
# first time; later runs only print the path (offline).
#
#   VK_ICD_FILENAMES=$(scripts/lavapipe.sh) node --test tests/web/gpu_*.test.mjs
set -eu
cd "$(dirname "$0")/.."
DIR=${LAVAPIPE_DIR:-build/lavapipe}
ICD="$PWD/$DIR/lvp_icd.json"
if [ -f "$ICD" ]; then echo "$ICD"; exit 0; fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# the driver's libraries, all from bookworm itself
DEPS="libvulkan1 libllvm15 libdrm2 libwayland-client0 libx11-xcb1 libxcb-dri3-0 libxcb-present0 libxcb-randr0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0 libxshmfence1 libzstd1"
missing=""
for p in $DEPS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing" >&2
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >&2
fi

# bookworm-backports from the machine's Debian mirror, in a private apt state
mkdir -p "$DIR/apt/lists/partial" "$DIR/apt/cache/archives/partial" "$DIR/apt/sources"
MIRROR=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
         grep -v security | head -n 1 | sed -E 's/^URIs: *//; s/^deb (\[[^]]*\] )?//; s/ .*//')
cat >"$DIR/apt/sources/backports.sources" <<EOF
Types: deb
URIs: ${MIRROR:-http://deb.debian.org/debian}
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
O="-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=$PWD/$DIR/apt/sources
   -o Dir::State::Lists=$PWD/$DIR/apt/lists -o Dir::Cache=$PWD/$DIR/apt/cache -o APT::Sandbox::User=root"
apt-get $O update -qq >&2
(cd "$DIR" && apt-get $O download mesa-vulkan-drivers/bookworm-backports >&2)
dpkg-deb -x "$DIR"/mesa-vulkan-drivers_*.deb "$DIR/root"
LIB="$PWD/$DIR/root/usr/lib/x86_64-linux-gnu/libvulkan_lvp.so"
[ -f "$LIB" ] || { echo "lavapipe: $LIB not found in the package" >&2; exit 1; }
cat >"$ICD" <<EOF
{ "file_format_version": "1.0.0", "ICD": { "library_path": "$LIB", "api_version": "1.4.305" } }
EOF
echo "$ICD"
