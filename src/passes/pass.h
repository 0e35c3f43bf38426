// A graph optimisation pass: a named function that rewrites the IR in place and reports whether it
// changed anything. Every pass must leave a graph that ir::verify accepts, with the same outputs
// for the same inputs (up to float rounding where it refolds arithmetic, as fuse_conv_bn does).
#pragma once

#include <string_view>

#include "ir/graph.h"

namespace kestrel::passes {

struct Pass {
    std::string_view name;
    bool (*run)(ir::Graph& graph);
};

}  // namespace kestrel::passes
