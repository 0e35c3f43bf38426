// Lowering of the optimised IR to an ExecutionPlan for a target:
//   - CPU: one image (batch 1); the runtime loops over the images of a batch, so any batch in the
//     profile runs on one plan and one arena. The fast layout is kBlocked8 (oneDNN's nChw8c).
//   - CUDA: a whole batch at once (buffers sized for PlanOptions::batch, every tensor batch-major);
//     the fast layout is kNhwc, in float16 for half engines; plain tensors stay float32.
//
//   1. layouts: each 4-D activation is in the target's fast layout where the ops around it can
//      work in that layout, else kPlain (NCHW row-major). Where a reader needs another layout than
//      its writer produces, an Identity node converts.
//   2. aliases ("views"): Reshape outputs, Split/Slice outputs and Concat inputs that are
//      contiguous byte ranges of another tensor are placed inside it instead of copied. Concat
//      elision is this: each producer writes straight into its slice of the concat buffer. In NHWC
//      a channel range is such a slice too (with the root's channel count as pixel stride).
//   3. streams (CUDA): the longest chain of kernels runs on stream 0, the nodes off it (the Detect
//      head's branches beside the neck) on stream 1, so that at small batches two kernels that each
//      fill a fraction of the GPU run at once. A node runs after the earlier nodes of its stream and
//      after the producers of its inputs; CPU plans are one stream.
//   4. memory: every root buffer gets an offset in one arena; two buffers share bytes (greedy by
//      size) when every node touching one (writing or reading a tensor placed in it) is complete
//      before any node touching the other starts, in the order of step 3 (on one stream: their
//      lifetimes, first write to last read, do not overlap). Offsets are planned for one image and
//      scale with the batch, so a run of n images uses the arena's first n / batch part, its
//      tensors packed as in an engine built for n.
//
//   ExecutionPlan plan = plan::build(graph);
//   std::cout << plan.arena_bytes;           // one activation arena of this size per session
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace kestrel::plan {

enum class Layout : uint8_t { kPlain = 0, kBlocked8 = 1, kNhwc = 2 };

enum class Target : uint8_t { kCpu = 0, kCuda = 1 };

struct PlanOptions {
    Target target = Target::kCpu;
    int batch = 1;      // CUDA: images the buffers hold (the profile's max batch)
    bool half = false;  // CUDA: NHWC activations stored as float16
};

enum class Storage : uint8_t {
    kArena,     // a root buffer in the activation arena
    kInput,     // the graph input, bound by the caller
    kOutput,    // a graph output, bound by the caller
    kConstant,  // weights and other constants
    kView,      // a byte range of another value (see root/offset)
};

struct ValuePlan {
    Layout layout = Layout::kPlain;
    DType dtype = DType::kFloat32;  // element type in storage (float16 for half NHWC activations)
    Storage storage = Storage::kArena;
    int root = -1;  // for kView: the value whose buffer holds this one (itself a root)
    // kView: byte offset in root's buffer (kNhwc: of the first pixel). kArena: the offset in the
    // arena per image: a run of n images places the buffer at n * offset.
    int64_t offset = 0;
    int64_t bytes = 0;     // storage size for the plan's batch (blocked layouts pad channels to 8)
    int64_t channels = 0;  // kNhwc: channels stored per pixel (more than the value's when padded)
};

struct ExecutionPlan {
    PlanOptions options;
    ir::Graph graph;                // the IR with layout-conversion Identity nodes inserted
    std::vector<ValuePlan> values;  // indexed by value id
    // The stream each node's work is issued on, indexed like graph.nodes (step 3 above): 0 or 1.
    // Running all nodes in their order on one stream is also valid (a stricter order).
    std::vector<int> streams;
    int64_t arena_bytes = 0;  // peak activation memory per session (at options.batch)
    int64_t naive_bytes = 0;  // sum of all activation sizes (no reuse, no aliasing)
};

// Builds the plan for a graph whose shapes are static and whose batch is 1.
ExecutionPlan build(const ir::Graph& graph, const PlanOptions& options = {});

// Bytes of one image of a value in a layout and element type.
int64_t storage_bytes(const ir::Value& v, Layout layout, DType dtype);
inline int64_t storage_bytes(const ir::Value& v, Layout layout) { return storage_bytes(v, layout, v.dtype); }

std::string_view layout_name(Layout layout);

// CUDA: a conv that reads a plain (NCHW float32) input as it is — the image stem: 3 channels, 3x3,
// groups 1, no dilation, no residual, at most 64 outputs (cuda::conv2d_nchw_input's contract).
bool reads_plain_image(const ir::Graph& g, const ir::Node& conv);

// A C2f block with one bottleneck, at consecutive nodes as the importer and the passes leave it:
// cv1 (conv) -> Split (axis 1) into halves a, b -> m1 (conv on b) -> m2 (conv on m1's output, its
// residual b if any) -> Concat (axis 1) [a, b, m2's output] -> cv2 (conv on that). Every value
// between cv1's input x and cv2's output has the readers named here only (consumers:
// Graph::consumers()) and is not a graph output. The CUDA planner keeps x alive until cv2, so that
// a backend may run the block as one kernel that reads x while it writes cv2's output.
struct C2fBlock {
    size_t cv1, split, m1, m2, concat, cv2;
};
std::optional<C2fBlock> c2f_block_at(const ir::Graph& g, const std::vector<std::vector<int>>& consumers, size_t i);

// YOLOv8's neck: node i is a Resize (the upsample) whose output only the Concat at node i + 1 (axis
// 1) reads, as its first input, and that Concat's output only the 1x1 conv (stride 1, no padding, one
// group, no residual) at node i + 2 reads; neither is a graph output. Returns i + 2. The CUDA planner
// keeps the Resize's input alive until the conv, so that a backend may skip the Resize and have the
// conv read the upsampled channels from its input.
std::optional<size_t> upsample_concat_conv_at(const ir::Graph& g, const std::vector<std::vector<int>>& consumers,
                                              size_t i);

}  // namespace kestrel::plan
