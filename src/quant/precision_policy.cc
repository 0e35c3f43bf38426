#include "quant/precision_policy.h"

#include <algorithm>

namespace kestrel::quant {

std::vector<size_t> int8_conv_candidates(const ir::Graph& g) {
    std::vector<size_t> out;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        const ir::Node& n = g.nodes[i];
        if (n.removed || n.op != ir::Op::kConv) continue;
        bool is_graph_input = std::find(g.inputs.begin(), g.inputs.end(), n.inputs[0]) != g.inputs.end();
        if (n.attrs.get_string("activation", "") != "silu" || n.attrs.get_int("group", 1) != 1 || is_graph_input)
            continue;
        out.push_back(i);
    }
    return out;
}

std::vector<int> calibration_values(const ir::Graph& g) {
    std::vector<int> values;
    for (size_t i : int8_conv_candidates(g)) {
        int v = g.nodes[i].inputs[0];
        if (std::find(values.begin(), values.end(), v) == values.end()) values.push_back(v);
    }
    return values;
}

}  // namespace kestrel::quant
