#include "passes/passes.h"

namespace kestrel::passes {

bool fuse_conv_silu(ir::Graph& g) {
    bool changed = false;
    auto producers = g.producers();
    auto consumers = g.consumers();
    auto producer_op = [&](int v, ir::Op op) -> ir::Node* {
        int p = v >= 0 ? producers[static_cast<size_t>(v)] : -1;
        if (p < 0 || g.nodes[static_cast<size_t>(p)].op != op || g.nodes[static_cast<size_t>(p)].removed) return nullptr;
        return &g.nodes[static_cast<size_t>(p)];
    };
    for (ir::Node& mul : g.nodes) {
        if (mul.removed || mul.op != ir::Op::kMul) continue;
        for (int side = 0; side < 2; ++side) {
            int y = mul.inputs[static_cast<size_t>(side)], s = mul.inputs[static_cast<size_t>(1 - side)];
            ir::Node* conv = producer_op(y, ir::Op::kConv);
            ir::Node* sig = producer_op(s, ir::Op::kSigmoid);
            if (!conv || !sig || sig->inputs[0] != y || conv->attrs.has("activation") || conv->inputs.size() > 3) continue;
            if (consumers[static_cast<size_t>(y)].size() != 2 || consumers[static_cast<size_t>(s)].size() != 1 ||
                g.is_graph_output(y) || g.is_graph_output(s))
                continue;
            conv->attrs.set("activation", std::string("silu"));
            conv->outputs[0] = mul.outputs[0];
            sig->removed = true;
            mul.removed = true;
            changed = true;
            break;
        }
    }
    return changed;
}

}  // namespace kestrel::passes
