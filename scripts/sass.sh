#!/usr/bin/env bash
# The SASS of a CUDA source's kernels for sm_90a, to read what ptxas made of them (this machine has
# nvcc and ptxas but no cuobjdump: NVIDIA's PyPI wheels nvidia-cuda-cuobjdump and nvidia-cuda-nvdisasm
# provide it, unpacked once into .deps/cuobjdump).
#   bash scripts/sass.sh src/backends/cuda/yolo_decode.cu              # every kernel, to stdout
#   bash scripts/sass.sh src/backends/cuda/yolo_decode.cu head_kernel  # kernels whose name matches:
#                                                                      # instruction counts by opcode
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:?usage: scripts/sass.sh FILE.cu [KERNEL_REGEX]}
tool=.deps/cuobjdump/nvidia/cu13/bin/cuobjdump
if [ ! -x "$tool" ]; then
  mkdir -p .deps/cuobjdump
  python3 -m pip download --quiet --no-deps nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm -d .deps/cuobjdump >&2
  (cd .deps/cuobjdump && for w in nvidia_cuda_*.whl; do python3 -m zipfile -e "$w" .; done)
  chmod +x .deps/cuobjdump/nvidia/cu13/bin/*
fi
export PATH="$PWD/.deps/cuobjdump/nvidia/cu13/bin:$PATH"  # cuobjdump runs nvdisasm
cubin=$(mktemp --suffix=.cubin)
trap 'rm -f "$cubin"' EXIT
/usr/local/cuda/bin/nvcc -I src -I include -O3 -DNDEBUG -std=c++20 --expt-relaxed-constexpr \
  -gencode=arch=compute_90a,code=sm_90a -cubin -x cu "$src" -o "$cubin"
if [ -z "${2:-}" ]; then
  "$tool" -sass "$cubin"
  exit 0
fi
# Per matching kernel: its static instruction count, then its opcodes used 8 times or more, most first.
"$tool" -sass "$cubin" | awk -v re="$2" '
  /Function :/ { name = $3; keep = name ~ re; next }
  keep && /^ +\/\*[0-9a-f]+\*\// {
    op = $2; if (op ~ /^@/) op = $3; sub(/;$/, "", op); n[name]++; c[name "\t" op]++
  }
  END {
    for (k in n) print k "\t" 1e9 "\t" n[k] " instructions"
    for (ko in c) if (c[ko] >= 8) { split(ko, p, "\t"); print p[1] "\t" c[ko] "\t  " c[ko] " " p[2] }
  }' | sort -t$'\t' -k1,1 -k2,2nr | awk -F'\t' '$2 == 1e9 { print "== " $1 ": " $3; next } { print $3 }'
