// Shape and type inference, one node at a time, with canonicalisation: inputs that only describe
// shapes (Reshape's shape, Split's sizes, Slice's starts/ends/axes/steps, Resize's scales/sizes,
// Unsqueeze/Squeeze axes) must be constants by the time a node is inferred; they are resolved into
// attributes and dropped, and Flatten/Squeeze/Unsqueeze become Reshape. After inference every
// value's shape is static: Kestrel specialises a graph for one input shape (per image).
#pragma once

#include "ir/graph.h"

namespace kestrel::ir {

// Infers the output shapes of graph.nodes[index] (and canonicalises it). Throws kestrel::Error
// naming the node on an inconsistent or unsupported configuration.
void infer_node(Graph& graph, size_t index);

// Infers every live node in order.
void infer_shapes(Graph& graph);

}  // namespace kestrel::ir
