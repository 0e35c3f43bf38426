#!/usr/bin/env bash
# Runs every test suite: installs dependencies and the test venv, builds (Release), runs ctest;
# then builds again with AddressSanitizer + UndefinedBehaviorSanitizer and runs the suites again
# (all but the ONNX Runtime comparisons, py_ort*).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/setup_test_venv.sh
bash scripts/build.sh
# Tests labelled "gpu" need an NVIDIA GPU: scripts/gpu_round.sh runs them on the GPU machine.
(cd build && ctest --output-on-failure -j1 -LE gpu)
SANITIZE=1 bash scripts/build.sh
# oneDNN's JIT code is not instrumented; leak checks stay on for our code. KESTREL_SANITIZED: the
# Python suites skip what depends on CPU timings (tests/models/quant_test.py says which).
(cd build-asan && KESTREL_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$PWD/../tests/lsan.supp \
   UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j1 -LE gpu -E '^py_ort')
