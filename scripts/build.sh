#!/usr/bin/env bash
# Configures and builds Kestrel into build/ (Release), or build-asan/ with SANITIZE=1.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=build; flags=(-DCMAKE_BUILD_TYPE=Release)
if [ "${SANITIZE:-0}" = 1 ]; then dir=build-asan; flags=(-DCMAKE_BUILD_TYPE=RelWithDebInfo -DKESTREL_SANITIZE=ON); fi
cmake -S . -B "$dir" -G Ninja "${flags[@]}" >/dev/null
ninja -C "$dir" -j"$(nproc)"
