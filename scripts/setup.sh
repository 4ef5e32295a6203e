#!/usr/bin/env bash
# setup.sh installs what camd needs on a fresh Debian/Ubuntu machine that
# already has Go. `setup.sh build` installs the build dependencies (cgo
# libraries for the WebRTC plugin); `setup.sh test` adds what the tests
# drive (ffmpeg, Chromium, Python). Packages already present are skipped.
set -euo pipefail

pkgs=(gcc make pkg-config libvpx-dev libturbojpeg0-dev)
if [ "${1:-build}" = "test" ]; then
  pkgs+=(ffmpeg chromium python3 fonts-dejavu-core prometheus)
  # The Python example plugin (examples/python) and the install test.
  pkgs+=(python3-grpcio python3-protobuf python3-yaml python3-bcrypt python3-cryptography systemd)
  # The README's recipes, read as Home Assistant (aiohttp) and VLC do.
  pkgs+=(python3-aiohttp vlc-bin vlc-plugin-base)
fi

need=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "setup: installing ${need[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
