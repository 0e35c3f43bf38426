#!/usr/bin/env bash
# Stages what a GPU-machine round needs into ignored folders of the checkout (the device tool
# sends the checkout only, and `carry` adds ignored paths): .deps (Debian -dev packages the GPU
# machine lacks, with ../shared/device/deps.sh) and .gpu/shared (models, images, coco128).
#   bash scripts/stage_gpu.sh [MODEL...]     # default: yolov8n.onnx
# Then, through the device tool: carry [".deps", ".gpu"], command "bash scripts/gpu_round.sh".
set -euo pipefail
cd "$(dirname "$0")/.."
shared=../shared
if [ ! -f .deps/deps.sh ]; then
  $shared/device/deps.sh download .deps libonnx-dev libonnx1 libprotobuf-dev libprotobuf32 libprotobuf-lite32 \
    libdnnl-dev libdnnl2 libturbojpeg0-dev libturbojpeg0 libyaml-cpp-dev libyaml-cpp0.7 nlohmann-json3-dev \
    libgtest-dev libpng-dev libpng16-16 protobuf-compiler libprotoc32
  cp $shared/device/deps.sh .deps/   # the script travels with the .debs
fi
rm -rf .gpu && mkdir -p .gpu/shared/models .gpu/shared/datasets
mkdir -p .gpu/shared/images && cp $shared/images/bus.jpg $shared/images/zidane.jpg .gpu/shared/images/
for m in "${@:-yolov8n.onnx}"; do cp $shared/models/$m .gpu/shared/models/; done
cp -r $shared/datasets/coco128 .gpu/shared/datasets/
du -sh .deps .gpu
