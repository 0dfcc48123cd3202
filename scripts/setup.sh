#!/usr/bin/env bash
# Installs every build and test dependency of piquant from Debian's packages.
# Idempotent: installs only what is missing, and says nothing when all is there.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  nlohmann-json3-dev libcli11-dev libpcre2-dev libhwy-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  nodejs npm python3 python3-numpy
)

missing=()
for p in "${packages[@]}"; do
  # node and npm may come from outside Debian (e.g. an image's own Node.js): accept them on PATH.
  case "$p" in
    nodejs) command -v node >/dev/null 2>&1 && continue ;;
    npm) command -v npm >/dev/null 2>&1 && continue ;;
  esac
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
