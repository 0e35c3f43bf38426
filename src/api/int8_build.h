// INT8 post-training quantisation at export: chooses the INT8 layers (quant/precision_policy),
// gets their input scales from a calibration cache or by calibrating on the dataset's val images,
// and marks those convolutions precision="int8" with their input_scale.
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
    bool sensitivity = false;  // print each layer's measured INT8 sensitivity
    std::ostream* log = nullptr;
};

// Quantises `graph` (already optimised, batch-1 shapes) in place. Returns the number of INT8 convs.
int quantize_int8(ir::Graph& graph, const Int8BuildOptions& options);

// Where `data=` defaults to: $KESTREL_DATASETS_DIR/coco128/coco128.yaml, else datasets/coco128/
// coco128.yaml in the working directory, else ../shared/datasets/coco128/coco128.yaml.
std::string default_calibration_yaml();

}  // namespace kestrel::api
