// The IR's invariants, checked after every pass: nodes in topological order, every read value
// defined before use (graph input, constant or earlier output), each value written once, every
// shape known, no live node reading a removed node's output, graph outputs produced.
#pragma once

#include "ir/graph.h"

namespace kestrel::ir {

// Throws kestrel::Error describing the first violation.
void verify(const Graph& graph);

}  // namespace kestrel::ir
