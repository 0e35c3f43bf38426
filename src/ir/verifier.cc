#include "ir/verifier.h"

#include "core/error.h"

namespace kestrel::ir {

void verify(const Graph& g) {
    std::vector<bool> defined(g.values.size(), false);
    for (size_t i = 0; i < g.values.size(); ++i) defined[i] = g.values[i].constant != nullptr;
    for (int in : g.inputs) defined[static_cast<size_t>(in)] = true;
    for (const Node& n : g.nodes) {
        if (n.removed) continue;
        for (int in : n.inputs)
            KS_CHECK(in < 0 || defined[static_cast<size_t>(in)], "IR verifier: node '", n.name, "' reads '",
                     g.value(in).name, "' before it is defined");
        for (int out : n.outputs) {
            KS_CHECK(out >= 0 && !defined[static_cast<size_t>(out)], "IR verifier: value '", g.value(out).name,
                     "' is written twice");
            KS_CHECK(g.value(out).shape_known, "IR verifier: value '", g.value(out).name, "' has no shape");
            defined[static_cast<size_t>(out)] = true;
        }
    }
    for (int out : g.outputs)
        KS_CHECK(defined[static_cast<size_t>(out)], "IR verifier: graph output '", g.value(out).name, "' is never produced");
}

}  // namespace kestrel::ir
