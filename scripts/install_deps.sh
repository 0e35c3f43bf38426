#!/usr/bin/env bash
# Installs Kestrel's build and test dependencies from Debian's packages (needs root; idempotent).
set -euo pipefail
pkgs=(cmake ninja-build g++ libonnx-dev libprotobuf-dev protobuf-compiler libdnnl-dev libturbojpeg0-dev libpng-dev
      nlohmann-json3-dev libyaml-cpp-dev libgtest-dev python3-venv)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
