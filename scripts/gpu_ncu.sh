#!/usr/bin/env bash
# Nsight Compute on this checkout's kernels alone, on the GPU machine: build, export yolov8n FP16
# (dynamic, batch 128, the tuner's timing cache coming back with the logs), then ncu on the kernels
# whose demangled names match NCU at batch BATCH (default 64), NCU_COUNT launches of them (default 2)
# with the default sections plus NCU_SECTIONS. Less than a gpu_ab.sh call: no second tree, no
# benchmark rounds, no tests (run gpu_ab.sh or gpu_round.sh for those). Logs: $OUT/ncu_logs.tgz.
#   device tool:  NCU=conv3x3_pair NCU_SECTIONS="InstructionStats SourceCounters" bash scripts/gpu_ncu.sh
#                 (carry [".deps", ".gpu"] after `bash scripts/stage_gpu.sh` here)
set -uo pipefail
cd "$(dirname "$0")/.."
: "${NCU:?NCU=REGEX names the kernels to profile}"
source scripts/gpu_env.sh ncu
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DKESTREL_SHARED="$shared" >"$LOG/cmake.log" 2>&1 &&
  ninja -C build-gpu kestrel_cli >"$LOG/build.log" 2>&1 || { grep -A12 -m8 error "$LOG/build.log"; exit 1; }
m=/tmp/kestrel_ncu_models && mkdir -p $m && cp "$shared/models/yolov8n.onnx" $m/
build-gpu/kestrel export model=$m/yolov8n.onnx format=engine device=0 dynamic=True batch=128 half=True \
  timing_cache="$LOG/timing.txt" >"$LOG/export.log" 2>&1 || { tail -5 "$LOG/export.log"; exit 1; }
build-gpu/kestrel benchmark model=$m/yolov8n.engine batch="${BATCH:-64}" profile=True >"$LOG/profile.txt" 2>&1
ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
sections="SpeedOfLight Occupancy WarpStateStats MemoryWorkloadAnalysis LaunchStats ${NCU_SECTIONS:-}"
"$ncu" --kernel-name-base demangled -k "regex:$NCU" -c "${NCU_COUNT:-2}" $(printf -- '--section %s ' $sections) \
  build-gpu/kestrel benchmark model=$m/yolov8n.engine batch="${BATCH:-64}" >"$LOG/ncu.txt" 2>&1 || echo "ncu failed"
grep -E "^  [a-z_].*\(|Duration|Throughput|Warp Cycles Per Issued|Registers Per|Achieved Occupancy" "$LOG/ncu.txt" | head -60
