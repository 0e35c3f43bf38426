#include "passes/passes.h"

namespace kestrel::passes {

bool eliminate_dead_nodes(ir::Graph& g) {
    bool changed = false;
    // Walk backwards so a chain of dead nodes goes in one sweep.
    std::vector<bool> used(g.values.size(), false);
    for (int out : g.outputs) used[static_cast<size_t>(out)] = true;
    for (size_t i = g.nodes.size(); i-- > 0;) {
        ir::Node& n = g.nodes[i];
        if (n.removed) continue;
        bool live = false;
        for (int out : n.outputs) live = live || used[static_cast<size_t>(out)];
        if (!live) {
            n.removed = true;
            changed = true;
            continue;
        }
        for (int in : n.inputs)
            if (in >= 0) used[static_cast<size_t>(in)] = true;
    }
    return changed;
}

}  // namespace kestrel::passes
