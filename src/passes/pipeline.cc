#include "passes/pipeline.h"

#include "ir/verifier.h"
#include "passes/passes.h"

namespace kestrel::passes {

std::vector<Pass> pipeline(const PipelineOptions& options) {
    std::vector<Pass> passes = {
        // Resolve shapes for the chosen input size; fold what is constant.
        {"fold_constants", fold_constants},
        {"eliminate_identity", eliminate_identity},
        // Fuse into convolutions: normalisation, activation, residual (order matters: the
        // epilogue is conv -> bias -> activation -> residual add).
        {"fuse_conv_bn", fuse_conv_bn},
        {"fuse_conv_silu", fuse_conv_silu},
        {"fuse_conv_residual_add", fuse_conv_residual_add},
    };
    // Backend-specific fusions, after the generic ones: they match the graph those leave.
    if (options.fuse_yolo_decode) passes.push_back({"fuse_yolo_decode", fuse_yolo_decode});
    if (options.fuse_yolo_decode && options.fuse_yolo_head_convs)
        passes.push_back({"fuse_yolo_head_convs", fuse_yolo_head_convs});
    // Clean up.
    passes.push_back({"eliminate_dead_nodes", eliminate_dead_nodes});
    return passes;
}

void run_pipeline(ir::Graph& graph, std::ostream* log, const PipelineOptions& options) {
    for (const Pass& pass : pipeline(options)) {
        size_t before = graph.live_node_count();
        bool changed = pass.run(graph);
        graph.compact();
        ir::verify(graph);
        if (log)
            *log << "  pass " << pass.name << ": " << before << " -> " << graph.live_node_count() << " nodes"
                 << (changed ? "" : " (no change)") << "\n";
    }
}

}  // namespace kestrel::passes
