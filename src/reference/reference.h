// The oracle: a plain, single-threaded implementation of every IR op on row-major (NCHW) tensors,
// accumulating in double where a sum is involved. Used by constant folding at build time and by the
// tests as the reference every backend kernel is checked against; never on an inference hot path.
#pragma once

#include <vector>

#include "ir/graph.h"

namespace kestrel::reference {

// Evaluates one node. inputs[i] is nullptr for an omitted optional input. Output shapes follow ONNX.
std::vector<ir::Tensor> evaluate(const ir::Node& node, const std::vector<const ir::Tensor*>& inputs);

// Runs a whole graph on its inputs (in graph input order); returns the graph outputs in order.
std::vector<ir::Tensor> run_graph(const ir::Graph& graph, const std::vector<ir::Tensor>& inputs);

}  // namespace kestrel::reference
