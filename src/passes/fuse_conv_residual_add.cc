#include "passes/passes.h"

namespace kestrel::passes {

bool fuse_conv_residual_add(ir::Graph& g) {
    bool changed = false;
    auto producers = g.producers();
    auto consumers = g.consumers();
    for (size_t a = 0; a < g.nodes.size(); ++a) {
        ir::Node& add = g.nodes[a];
        if (add.removed || add.op != ir::Op::kAdd) continue;
        for (int side = 0; side < 2; ++side) {
            int y = add.inputs[static_cast<size_t>(side)], r = add.inputs[static_cast<size_t>(1 - side)];
            int p = producers[static_cast<size_t>(y)];
            if (p < 0) continue;
            ir::Node& conv = g.nodes[static_cast<size_t>(p)];
            if (conv.op != ir::Op::kConv || conv.inputs.size() > 3 || consumers[static_cast<size_t>(y)].size() != 1 ||
                g.is_graph_output(y) || g.value(r).shape != g.value(y).shape || g.value(r).dtype != DType::kFloat32)
                continue;
            // The residual must be computed before the conv runs; constants stay an Add (the
            // epilogue reads the residual in the activation layout, which constants do not get).
            int rp = producers[static_cast<size_t>(r)];
            if (g.is_constant(r) || rp >= p || r == y) continue;
            conv.inputs.resize(3, -1);
            conv.inputs.push_back(r);
            conv.outputs[0] = add.outputs[0];
            add.removed = true;
            changed = true;
            break;
        }
    }
    return changed;
}

}  // namespace kestrel::passes
