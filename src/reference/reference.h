// The oracle: a plain, single-threaded implementation of every IR op on row-major (NCHW) tensors,
// accumulating in double where a sum is involved. Used by constant folding at build time and by the
// tests as the reference every backend kernel is checked against; never on an inference hot path.
#pragma once

#include <string>
#include <vector>

#include "ir/graph.h"

namespace kestrel::reference {

// Evaluates one node. inputs[i] is nullptr for an omitted optional input. Output shapes follow ONNX.
std::vector<ir::Tensor> evaluate(const ir::Node& node, const std::vector<const ir::Tensor*>& inputs);

// ONNX Resize's nearest-neighbour rule: the input coordinate that output coordinate `out_coord`
// reads along one axis (coordinate_transformation_mode and nearest_mode as in the ONNX spec).
int64_t nearest_source(int64_t out_coord, double scale, int64_t in_len, int64_t out_len, const std::string& coord_mode,
                       const std::string& nearest_mode);

// Runs a whole graph on its inputs (in graph input order); returns the graph outputs in order.
std::vector<ir::Tensor> run_graph(const ir::Graph& graph, const std::vector<ir::Tensor>& inputs);

}  // namespace kestrel::reference
