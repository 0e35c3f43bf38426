#include <memory>

#include "core/error.h"
#include "ir/shape_inference.h"
#include "passes/passes.h"
#include "reference/reference.h"

namespace kestrel::passes {

bool fold_constants(ir::Graph& g) {
    bool changed = false;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        ir::Node& n = g.nodes[i];
        if (n.removed) continue;
        ir::infer_node(g, i);
        bool foldable = true;
        std::vector<const ir::Tensor*> inputs;
        // Shape reads only its input's (now static) shape: a stand-in tensor of that shape suffices.
        std::unique_ptr<ir::Tensor> shape_only;
        if (n.op == ir::Op::kShape && !g.is_constant(n.inputs[0])) {
            shape_only = std::make_unique<ir::Tensor>();
            shape_only->shape = g.value(n.inputs[0]).shape;
            inputs.push_back(shape_only.get());
        } else {
            for (int in : n.inputs) {
                if (in >= 0 && !g.is_constant(in)) foldable = false;
                inputs.push_back(in >= 0 ? g.value(in).constant.get() : nullptr);
            }
        }
        if (!foldable) {
            KS_CHECK(ir::op_category(n.op) != ir::OpCategory::kShape, ir::op_name(n.op), " node '", n.name,
                     "' computes on image data; Kestrel supports it only in shape computations");
            continue;
        }
        std::vector<ir::Tensor> outs;
        try {
            outs = reference::evaluate(n, inputs);
        } catch (const Error& e) {
            KS_FAIL(ir::op_name(n.op), " node '", n.name, "': ", e.what());
        }
        for (size_t k = 0; k < n.outputs.size(); ++k)
            g.value(n.outputs[k]).constant = std::make_shared<const ir::Tensor>(std::move(outs.at(k)));
        n.removed = true;
        changed = true;
    }
    return changed;
}

}  // namespace kestrel::passes
