// INT8 post-training quantisation at export: gets the input scales of the INT8-capable layers
// (quant/precision_policy) from a calibration cache or by calibrating on the dataset's val images,
// chooses which of them run INT8 (timing and accuracy, docs/calibration.md "Precision policy"), and
// marks those convolutions precision="int8" with their input_scale.
#pragma once

#include <ostream>
#include <string>

#include "ir/graph.h"

namespace kestrel::api {

struct Int8BuildOptions {
    std::string model_path;  // the ONNX file (its bytes fingerprint the cache)
    std::string data_yaml;   // dataset yaml; empty: coco128.yaml from the datasets folder, with a warning
    std::string algorithm = "ENTROPY_CALIBRATION_2";
    int batch = 1;           // export batch; calibration runs at 2x (batch 1 becomes 4)
    std::string cache_path;  // <model>.cache beside the engine
    double workspace_gib = 4;
    // Print the precision policy's measurements (per-layer time and error) and decisions; also
    // re-runs the analysis when the cache holds a stored choice.
    bool sensitivity = false;
    // The engine's target. "cpu": INT8 only where the CPU's int8 kernel is faster (timed here); any
    // other target is not timed here (the CUDA build times its own kernels) and ranks layers by
    // accuracy alone. The choice is stored with the cache per target.
    std::string target = "cpu";
    std::ostream* log = nullptr;
};

// Quantises `graph` (already optimised, batch-1 shapes) in place. Returns the number of INT8 convs.
int quantize_int8(ir::Graph& graph, const Int8BuildOptions& options);

// Where `data=` defaults to: $KESTREL_DATASETS_DIR/coco128/coco128.yaml, else datasets/coco128/
// coco128.yaml in the working directory, else ../shared/datasets/coco128/coco128.yaml.
std::string default_calibration_yaml();

}  // namespace kestrel::api
