// The build-time optimisation pipeline: the ordered list of passes in pipeline.cc.
#pragma once

#include <ostream>
#include <vector>

#include "passes/pass.h"

namespace kestrel::passes {

// Passes that only pay off on some backends (a fused kernel exists there), off by default.
struct PipelineOptions {
    bool fuse_yolo_decode = false;      // the Detect-head decode as one YoloDecode node (CUDA engines)
    bool fuse_yolo_head_convs = false;  // and the head's last 1x1 convs inside it (CUDA FP16/INT8)
};

// The passes in the order run_pipeline applies them with `options`.
std::vector<Pass> pipeline(const PipelineOptions& options = {});

// Runs every pass once, verifying the graph after each. With `log`, prints one line per pass.
void run_pipeline(ir::Graph& graph, std::ostream* log = nullptr, const PipelineOptions& options = {});

}  // namespace kestrel::passes
