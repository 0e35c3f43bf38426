#include <cmath>

#include "passes/passes.h"

namespace kestrel::passes {

bool fuse_conv_bn(ir::Graph& g) {
    bool changed = false;
    auto producers = g.producers();
    auto consumers = g.consumers();
    for (ir::Node& bn : g.nodes) {
        if (bn.removed || bn.op != ir::Op::kBatchNormalization) continue;
        int y = bn.inputs[0];
        int p = producers[static_cast<size_t>(y)];
        if (p < 0) continue;
        ir::Node& conv = g.nodes[static_cast<size_t>(p)];
        if (conv.op != ir::Op::kConv || conv.inputs.size() > 3 || consumers[static_cast<size_t>(y)].size() != 1 ||
            g.is_graph_output(y) || conv.attrs.has("activation") || !g.is_constant(conv.inputs[1]))
            continue;
        bool params_const = true;
        for (size_t i = 1; i < 5; ++i) params_const = params_const && g.is_constant(bn.inputs[i]);
        if (!params_const || (conv.input(2) >= 0 && !g.is_constant(conv.inputs[2]))) continue;

        auto gamma = g.value(bn.inputs[1]).constant->to_floats();
        auto beta = g.value(bn.inputs[2]).constant->to_floats();
        auto mean = g.value(bn.inputs[3]).constant->to_floats();
        auto var = g.value(bn.inputs[4]).constant->to_floats();
        double eps = bn.attrs.get_float("epsilon", 1e-5f);
        ir::Tensor w = *g.value(conv.inputs[1]).constant;
        int64_t oc = w.shape[0], per_oc = w.size() / oc;
        std::vector<float> bias(static_cast<size_t>(oc), 0.f);
        if (conv.input(2) >= 0) bias = g.value(conv.inputs[2]).constant->to_floats();
        for (int64_t c = 0; c < oc; ++c) {
            double s = gamma[c] / std::sqrt(static_cast<double>(var[c]) + eps);
            for (int64_t k = 0; k < per_oc; ++k) w.data<float>()[c * per_oc + k] = static_cast<float>(w.data<float>()[c * per_oc + k] * s);
            bias[c] = static_cast<float>((bias[c] - mean[c]) * s + beta[c]);
        }
        conv.inputs.resize(3);
        conv.inputs[1] = g.add_constant(conv.name + ".weight_bn", std::move(w));
        conv.inputs[2] = g.add_constant(conv.name + ".bias_bn", ir::Tensor::from_floats({oc}, bias));
        conv.outputs[0] = bn.outputs[0];
        bn.removed = true;
        changed = true;
    }
    return changed;
}

}  // namespace kestrel::passes
