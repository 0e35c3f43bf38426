#!/usr/bin/env bash
# One round on the GPU machine (through the device tool, after scripts/stage_gpu.sh here): build
# with CUDA, run the GPU tests (label "gpu"), then benchmark Kestrel's CUDA engines beside the
# PyTorch peer in the same call. Logs go to $LOG (and $OUT/gpu_round_logs.tgz); a summary table prints last.
#   bash scripts/gpu_round.sh [test|bench|all]   (default all; SKIP_TORCH=1 leaves out the PyTorch peer,
#                                                  TORCH_ARGS overrides its default --quick,
#                                                  PRECISIONS="fp16" exports one engine (of fp16 int8 fp32),
#                                                  SKIP_VAL=1, SKIP_REST=1 leaves out building the CPU suites)
set -uo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
source scripts/gpu_env.sh gpu_round
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DKESTREL_PYTHON="$(command -v python3)" \
  -DKESTREL_SHARED="$shared" >"$LOG/cmake.log" 2>&1 || { tail -40 "$LOG/cmake.log"; exit 1; }
ninja -C build-gpu kestrel_cli kestrel_run_raw kestrel_gpu_tests kestrel_gpu_ceilings >"$LOG/build.log" 2>&1 ||
  { grep -A12 -m8 'error' "$LOG/build.log"; exit 1; }
# The rest (CPU suites) only to learn that they build with this machine's g++ 13 too.
[ "${SKIP_REST:-0}" = 1 ] || ninja -C build-gpu -k 0 >"$LOG/build_rest.log" 2>&1 || grep -m5 -A6 'error' "$LOG/build_rest.log"
status=0
if [ "$what" != bench ]; then
  build-gpu/kestrel_gpu_tests >"$LOG/tests.log" 2>&1 || status=1
  grep -E '^\[  (FAILED|PASSED) |FAILED TEST|tests ran' "$LOG/tests.log" | tail -15
  (cd build-gpu && ctest -L gpu -R py_ --output-on-failure) >>"$LOG/tests.log" 2>&1 || status=1
  grep -E '^(FAIL|ok) |passed|Error' "$LOG/tests.log" | tail -40
fi
if [ "$what" != test ]; then
  build-gpu/kestrel_gpu_ceilings >"$LOG/ceilings.txt" 2>&1 || status=1
  k=$PWD/build-gpu/kestrel; m=/tmp/kestrel_models; mkdir -p "$m"; cp "$shared/models/yolov8n.onnx" "$m/"
  coco=$shared/datasets/coco128/coco128.yaml
  for p in ${PRECISIONS:-fp16 int8 fp32}; do
    extra=""; [ $p = fp16 ] && extra="half=True"; [ $p = int8 ] && extra="int8=True data=$coco"
    $k export model="$m/yolov8n.onnx" format=engine device=0 dynamic=True batch=128 $extra verbose=True \
      >>"$LOG/export.log" 2>&1 || { tail -5 "$LOG/export.log"; status=1; continue; }
    mv "$m/yolov8n.engine" "$m/yolov8n_$p.engine"
    $k benchmark model="$m/yolov8n_$p.engine" batch=1,8,32,64,128 >"$LOG/bench_$p.txt" 2>&1 || status=1
  done
  # End to end: coco128's JPEG files -> boxes (nvJPEG, letterbox kernel, inference, GPU NMS).
  $k benchmark model="$m/yolov8n_fp16.engine" batch=1,8,32,64 source="$shared/datasets/coco128/images/train2017" \
    >"$LOG/e2e.txt" 2>&1 || status=1
  $k benchmark model="$m/yolov8n_fp16.engine" batch=64 profile=True >"$LOG/profile.txt" 2>&1
  $k benchmark model="$m/yolov8n_fp16.engine" batch=1 profile=True >>"$LOG/profile.txt" 2>&1
  for p in ${PRECISIONS:-fp32 fp16 int8}; do
    [ "${SKIP_VAL:-0}" = 1 ] && break
    echo "== val $p ==" >>"$LOG/val.txt"
    (cd /tmp && $k val model="$m/yolov8n_$p.engine" data="$coco") >>"$LOG/val.txt" 2>&1 || status=1
  done
  [ "${SKIP_TORCH:-0}" = 1 ] || PYTHONUNBUFFERED=1 timeout 420 python3 bench/models/gpu_vs_pytorch.py --model "$m/yolov8n.onnx" \
    ${TORCH_ARGS:---quick} --json "$LOG/torch.json" >"$LOG/torch.txt" 2>&1 || status=1
  echo "== measured ceilings =="; cat "$LOG/ceilings.txt"
  echo "== Kestrel (GPU compute time) =="; cat "$LOG"/bench_*.txt
  echo "== Kestrel end to end (FP16) =="; tail -8 "$LOG/e2e.txt"
  [ "${SKIP_VAL:-0}" = 1 ] || { echo "== val on COCO128 (${PRECISIONS:-fp32 fp16 int8}) =="; grep -E '^ +all ' "$LOG/val.txt"; }
  [ "${SKIP_TORCH:-0}" = 1 ] || { echo "== PyTorch peer =="; tail -12 "$LOG/torch.txt"; }
fi
exit $status
