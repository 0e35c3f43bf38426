// The build-time optimisation pipeline: the ordered list of passes in pipeline.cc.
#pragma once

#include <ostream>
#include <vector>

#include "passes/pass.h"

namespace kestrel::passes {

// The passes in the order run_pipeline applies them.
const std::vector<Pass>& pipeline();

// Runs every pass once, verifying the graph after each. With `log`, prints one line per pass.
void run_pipeline(ir::Graph& graph, std::ostream* log = nullptr);

}  // namespace kestrel::passes
