// ONNX frontend: reads a .onnx file into the IR. Nodes become IR nodes with ONNX semantics;
// initializers and Constant nodes become constant values; Ultralytics' metadata_props are kept.
// Symbolic input dimensions take the sizes given in ImportOptions, so every shape is static after
// passes::fold_constants (which also folds the Shape/Gather/Concat subgraphs of dynamic exports).
//
//   ImportOptions opt;          // batch 1, the model's own image size
//   ir::Graph g = onnx::import_model("yolov8n.onnx", opt);
#pragma once

#include <array>
#include <string>

#include "ir/graph.h"

namespace kestrel::onnx {

struct ImportOptions {
    int64_t batch = 1;                 // size for a symbolic batch dimension
    std::array<int64_t, 2> imgsz{};    // {h, w} for symbolic spatial dims; 0 = the model's own
};

// Opsets Kestrel imports; the range YOLOv8 exports use.
constexpr int kMinOpset = 11;
constexpr int kMaxOpset = 20;

// Throws kestrel::Error with a one-line message on a missing, unreadable or malformed file, an
// opset out of range, an op Kestrel does not support (naming node and op) or unsupported data.
ir::Graph import_model(const std::string& path, const ImportOptions& options);

// The same from bytes already in memory; `what` names the source in messages.
ir::Graph import_model_bytes(const std::string& bytes, const std::string& what, const ImportOptions& options);

}  // namespace kestrel::onnx
