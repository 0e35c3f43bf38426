// Which layers run INT8. A convolution runs INT8 when the CPU has a fast int8 kernel for it and it
// is not one of the layers that cost YOLOv8 accuracy in INT8 (docs/calibration.md, "precision
// policy"): the Detect head's final bare 1x1 convs (box and class outputs) and the DFL conv stay
// float, as does the stem conv that reads the image (3 channels: int8 gains nothing there).
// In graph terms: Conv nodes with a fused SiLU, one group, and an input that is not the graph input.
#pragma once

#include <vector>

#include "ir/graph.h"

namespace kestrel::quant {

// Indices (into graph.nodes) of the convolutions that run INT8 when they have an input scale.
std::vector<size_t> int8_conv_candidates(const ir::Graph& graph);

// The values whose scales those layers need (each candidate's input), in node order, unique.
std::vector<int> calibration_values(const ir::Graph& graph);

}  // namespace kestrel::quant
