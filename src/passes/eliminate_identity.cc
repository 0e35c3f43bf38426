#include <algorithm>

#include "passes/passes.h"

namespace kestrel::passes {

bool eliminate_identity(ir::Graph& g) {
    bool changed = false;
    for (ir::Node& n : g.nodes) {
        if (n.removed || n.op != ir::Op::kIdentity) continue;
        int src = n.inputs[0], dst = n.outputs[0];
        // An Identity between a graph input and output is the only way to express a pass-through;
        // keep it (the backend copies).
        bool src_is_input = std::find(g.inputs.begin(), g.inputs.end(), src) != g.inputs.end();
        if (g.is_graph_output(dst) && (g.is_graph_output(src) || g.is_constant(src) || src_is_input)) continue;
        if (g.is_graph_output(dst)) {
            // Keep the output's name: the producer of `src` writes `dst` directly.
            for (ir::Node& p : g.nodes)
                if (!p.removed)
                    for (int& o : p.outputs)
                        if (o == src) o = dst;
            for (ir::Node& c : g.nodes)
                if (!c.removed && &c != &n)
                    for (int& in : c.inputs)
                        if (in == src) in = dst;
        } else {
            g.replace_uses(dst, src);
        }
        n.removed = true;
        changed = true;
    }
    return changed;
}

}  // namespace kestrel::passes
