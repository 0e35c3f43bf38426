#!/usr/bin/env bash
# Creates .venv with the test references (ONNX Runtime, onnx, numpy, OpenCV) from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import onnxruntime, onnx, numpy, cv2" 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check onnxruntime onnx numpy opencv-python-headless
fi
