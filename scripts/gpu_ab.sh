#!/usr/bin/env bash
# A/B round on the GPU machine: an earlier commit's tree against this checkout, built, exported and
# benchmarked alternately in one call (timings from different calls or cards do not compare), then
# this checkout's GPU tests and py_gpu_compare; GPU compute time at batch 1-128, the batch-64 and
# batch-1 profiles and end to end (coco128's JPEG files -> boxes). Logs come back as $OUT/ab_logs.tgz.
#   here:            bash scripts/stage_gpu.sh && bash scripts/gpu_ab.sh stage REV   # REV's tree -> .gpu/old
#   device tool:     bash scripts/gpu_ab.sh        (carry [".deps", ".gpu"]); NCU=REGEX adds Nsight Compute
#                    on the new tree's matching kernels; the tuner's timing caches come back too
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = stage ]; then
  rm -rf .gpu/old && mkdir -p .gpu/old && git archive "${2:?stage needs a revision}" | tar -x -C .gpu/old
  echo "staged $(git rev-parse --short "$2") in .gpu/old"; exit 0
fi
[ -d .gpu/old ] || { echo "no .gpu/old: run 'bash scripts/gpu_ab.sh stage REV' first" >&2; exit 1; }
source scripts/gpu_env.sh ab
build() {  # source dir, build dir, targets...
  local s=$1 b=$2; shift 2
  cmake -S "$s" -B "$b" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKESTREL_PYTHON="$(command -v python3)" \
    -DKESTREL_SHARED="$shared" >"$LOG/cmake_$b.log" 2>&1 &&
    ninja -C "$b" "$@" >"$LOG/build_$b.log" 2>&1 || { grep -A12 -m8 error "$LOG/build_$b.log"; return 1; }
}
build . build-gpu kestrel_cli kestrel_gpu_tests kestrel_run_raw || exit 1
build .gpu/old build-old kestrel_cli || exit 1
# TESTS=FILTER runs only the GPU tests a gtest filter names (a short call); py_gpu_compare always runs.
timeout 300 build-gpu/kestrel_gpu_tests ${TESTS:+--gtest_filter="$TESTS"} >"$LOG/tests.log" 2>&1; status=$?
grep -E '^\[  (FAILED|PASSED) |FAILED TEST' "$LOG/tests.log" | tail -12
# The engines against the CPU engine on real images (tests/models/gpu_compare.py).
(cd build-gpu && ctest -L gpu -R py_ --output-on-failure) >>"$LOG/tests.log" 2>&1 || status=1
grep -E '^(FAIL|ok) |tests passed' "$LOG/tests.log" | tail -3
m=/tmp/kestrel_ab_models
for v in old new; do
  b=build-gpu; [ $v = old ] && b=build-old
  mkdir -p $m/$v && cp "$shared/models/yolov8n.onnx" $m/$v/
  $b/kestrel export model=$m/$v/yolov8n.onnx format=engine device=0 dynamic=True batch=128 half=True \
    timing_cache="$LOG/timing_$v.txt" >"$LOG/export_$v.log" 2>&1 || { tail -5 "$LOG/export_$v.log"; exit 1; }
done
for r in 1 2; do
  for v in old new; do
    b=build-gpu; [ $v = old ] && b=build-old
    echo "== $v, round $r ==" >>"$LOG/bench.txt"
    $b/kestrel benchmark model=$m/$v/yolov8n.engine batch=1,8,32,64,128 >>"$LOG/bench.txt" 2>&1 || status=1
  done
done
for v in old new; do
  b=build-gpu; [ $v = old ] && b=build-old
  $b/kestrel benchmark model=$m/$v/yolov8n.engine batch=64 profile=True >"$LOG/profile_$v.txt" 2>&1
  $b/kestrel benchmark model=$m/$v/yolov8n.engine batch=1 profile=True >"$LOG/profile1_$v.txt" 2>&1
  # End to end: coco128's JPEG files -> boxes (nvJPEG, letterbox kernel, inference, GPU NMS).
  $b/kestrel benchmark model=$m/$v/yolov8n.engine batch=64 source="$shared/datasets/coco128/images/train2017" \
    >"$LOG/e2e_$v.txt" 2>&1 || status=1
done
# NCU=REGEX: Nsight Compute on this checkout's kernels whose names match, at batch 64 (NCU_COUNT of them;
# NCU_SECTIONS adds sections, e.g. "InstructionStats ComputeWorkloadAnalysis SourceCounters");
# the names are demangled with their template arguments as "conv3x3_halo_kernel<(int)16, (int)16, ...>".
if [ -n "${NCU:-}" ]; then
  ncu=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
  sections="SpeedOfLight Occupancy WarpStateStats MemoryWorkloadAnalysis LaunchStats ${NCU_SECTIONS:-}"
  "$ncu" --kernel-name-base demangled -k "regex:$NCU" -c "${NCU_COUNT:-6}" $(printf -- '--section %s ' $sections) \
    build-gpu/kestrel benchmark model=$m/new/yolov8n.engine batch=64 >"$LOG/ncu.txt" 2>&1 || echo "ncu failed"
fi
grep -E '^==|^ +[0-9]+ ' "$LOG/bench.txt"
for v in old new; do echo "== end to end, $v =="; tail -2 "$LOG/e2e_$v.txt"; done
exit $status
