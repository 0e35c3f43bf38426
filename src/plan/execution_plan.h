// Lowering of the optimised IR to an ExecutionPlan for one image (batch 1; the runtime loops over
// the images of a batch, so any batch in the profile runs on one plan and one arena):
//
//   1. layouts: each 4-D activation is kBlocked8 (oneDNN's nChw8c: channels in blocks of 8,
//      padded) where the ops around it can work in that layout, else kPlain (NCHW row-major).
//      Where a reader needs another layout than its writer produces, an Identity node converts.
//   2. aliases ("views"): Reshape outputs, Split/Slice outputs and Concat inputs that are
//      contiguous byte ranges of another tensor are placed inside it instead of copied. Concat
//      elision is this: each producer writes straight into its slice of the concat buffer.
//   3. memory: every root buffer gets an offset in one arena; buffers whose lifetimes (first write
//      to last read, over all tensors placed in them) do not overlap share bytes (greedy by size).
//
//   ExecutionPlan plan = plan::build(graph);
//   std::cout << plan.arena_bytes;           // one activation arena of this size per session
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace kestrel::plan {

enum class Layout : uint8_t { kPlain = 0, kBlocked8 = 1 };

enum class Storage : uint8_t {
    kArena,     // a root buffer in the activation arena
    kInput,     // the graph input, bound by the caller
    kOutput,    // a graph output, bound by the caller
    kConstant,  // weights and other constants
    kView,      // a byte range of another value (see root/offset)
};

struct ValuePlan {
    Layout layout = Layout::kPlain;
    Storage storage = Storage::kArena;
    int root = -1;          // for kView: the value whose buffer holds this one (itself a root)
    int64_t offset = 0;     // kView: byte offset in root's buffer; kArena: byte offset in the arena
    int64_t bytes = 0;      // storage size (blocked layouts pad channels to a multiple of 8)
};

struct ExecutionPlan {
    ir::Graph graph;                  // the IR with layout-conversion Identity nodes inserted
    std::vector<ValuePlan> values;    // indexed by value id
    int64_t arena_bytes = 0;          // peak activation memory per session
    int64_t naive_bytes = 0;          // sum of all activation sizes (no reuse, no aliasing)
};

// Builds the plan for a graph whose shapes are static and whose batch is 1.
ExecutionPlan build(const ir::Graph& graph);

// Bytes of a value in a layout.
int64_t storage_bytes(const ir::Value& v, Layout layout);

std::string_view layout_name(Layout layout);

}  // namespace kestrel::plan
