#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build, export yolov8n.onnx to an engine and
# predict on bus.jpg (results in runs/detect/predict/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/build.sh
mkdir -p models
cp ../shared/models/yolov8n.onnx models/
./build/kestrel export model=models/yolov8n.onnx format=engine device=cpu
./build/kestrel predict model=models/yolov8n.engine source=../shared/images/bus.jpg
