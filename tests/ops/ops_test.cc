// CPU backend vs the reference, op by op and on small op chains where the planner's choices matter
// (nChw8c layouts, channel padding, views, concat elision, conversions at graph outputs).
//
// Every case is one row of a table below (ggml/ncnn style): the row's parameters build a graph
// with one input, the graph runs through the full CPU build path (fold -> [pipeline] -> plan ->
// session) and through reference::run_graph on seeded random data, and the outputs must agree to a
// relative L2 error of `tol` (1e-5 for fp32 unless the row says otherwise). A failing case prints
// all its parameters and the seed.
#include <gtest/gtest.h>

#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/graph_builder.h"

namespace kestrel::test {
namespace {

using ir::Op;

constexpr double kTol = 1e-5;

struct OpCase {
    std::string name;                          // the gtest name: op and parameters, [A-Za-z0-9_] only
    std::string params;                        // every parameter in words, printed on failure
    std::function<void(GraphBuilder&)> build;  // adds one graph input, the nodes, the outputs
    double tol = kTol;
    bool optimize = false;  // also run the pass pipeline on the CPU side (the reference runs the raw graph)
};

void PrintTo(const OpCase& c, std::ostream* os) { *os << c.params; }

std::string shape_tag(const Shape& s) {
    std::string r;
    for (int64_t d : s) r += (r.empty() ? "" : "x") + std::to_string(d);
    return r;
}

// ---------------------------------------------------------------------------------------------
// Conv: groups/depthwise, strides, padding, kernel 1/3/5, fused SiLU, residual 4th input, channel
// counts that are and are not multiples of 8 (blocked vs plain outputs and padded blocks).

enum class Residual { kNone, kInput, kConv };

struct ConvCase {
    int64_t ic, oc, h, w, k;
    int64_t s = 1, p = 0, g = 1;  // stride, symmetric padding, groups
    bool bias = true;
    bool silu = false;
    Residual res = Residual::kNone;  // kInput: the conv's own input; kConv: a 1x1 conv of it
    bool blk = false;                // read an nChw8c input (needs ic % 8 == 0)

    OpCase to_case() const {
        std::ostringstream n, d;
        n << "Conv_ic" << ic << "_oc" << oc << "_" << h << "x" << w << "_k" << k << "s" << s << "p" << p << "_g" << g
          << (bias ? "" : "_nobias") << (silu ? "_silu" : "")
          << (res == Residual::kInput  ? "_resin"
              : res == Residual::kConv ? "_resconv"
                                       : "")
          << (blk ? "_blk" : "");
        d << "Conv ic=" << ic << " oc=" << oc << " h=" << h << " w=" << w << " k=" << k << " stride=" << s
          << " pad=" << p << " group=" << g << " bias=" << bias << " silu=" << silu << " residual="
          << (res == Residual::kInput  ? "input"
              : res == Residual::kConv ? "conv"
                                       : "none")
          << " blocked_input=" << blk;
        ConvCase c = *this;
        return {n.str(), d.str(), [c](GraphBuilder& b) {
                    Shape in = {1, c.ic, c.h, c.w};
                    int x = c.blk ? b.blocked_input(in) : b.input(in);
                    int r = -1;
                    if (c.res == Residual::kInput) r = x;
                    if (c.res == Residual::kConv) r = b.conv(x, c.ic, c.oc, {.k = 1, .stride = c.s});
                    b.output(b.conv(x, c.ic, c.oc,
                                    {.k = c.k,
                                     .stride = c.s,
                                     .pad = c.p,
                                     .group = c.g,
                                     .bias = c.bias,
                                     .activation = c.silu ? "silu" : "",
                                     .residual = r}));
                }};
    }
};

// Most rows read an nChw8c input (as every conv inside YOLOv8 does); the plain-input rows are the
// graph-input case: a 3-channel stem, plain-to-plain outputs (channels not a multiple of 8), and
// plain inputs of >= 8 channels with blocked outputs.
// clang-format off
const ConvCase kConvCases[] = {
    {.ic = 3, .oc = 16, .h = 16, .w = 16, .k = 3, .s = 2, .p = 1},  // YOLOv8 stem: 3 plain channels
    {.ic = 16, .oc = 32, .h = 8, .w = 8, .k = 1},
    {.ic = 16, .oc = 32, .h = 13, .w = 13, .k = 3, .s = 2, .p = 1},
    {.ic = 8, .oc = 16, .h = 12, .w = 12, .k = 5, .p = 2},
    {.ic = 16, .oc = 16, .h = 10, .w = 10, .k = 3, .p = 1, .g = 16},
    {.ic = 16, .oc = 32, .h = 8, .w = 8, .k = 1, .blk = true},
    {.ic = 16, .oc = 16, .h = 10, .w = 10, .k = 3, .p = 1, .blk = true},
    {.ic = 16, .oc = 32, .h = 13, .w = 11, .k = 3, .s = 2, .p = 1, .blk = true},
    {.ic = 8, .oc = 16, .h = 12, .w = 12, .k = 5, .p = 2, .blk = true},
    {.ic = 16, .oc = 24, .h = 9, .w = 9, .k = 3, .blk = true},
    {.ic = 16, .oc = 32, .h = 8, .w = 8, .k = 3, .p = 1, .bias = false, .blk = true},
    // Grouped and depthwise.
    {.ic = 16, .oc = 32, .h = 8, .w = 8, .k = 3, .p = 1, .g = 2, .blk = true},
    {.ic = 32, .oc = 32, .h = 8, .w = 8, .k = 3, .p = 1, .g = 4, .blk = true},
    {.ic = 16, .oc = 16, .h = 10, .w = 10, .k = 3, .p = 1, .g = 16, .blk = true},
    {.ic = 32, .oc = 32, .h = 9, .w = 9, .k = 3, .s = 2, .p = 1, .g = 32, .blk = true},
    {.ic = 16, .oc = 16, .h = 10, .w = 10, .k = 5, .p = 2, .g = 16, .silu = true, .blk = true},
    // Fused epilogue: SiLU, residual after it (YOLOv8 Bottleneck: x + SiLU(conv(x))).
    {.ic = 16, .oc = 32, .h = 10, .w = 10, .k = 3, .p = 1, .silu = true, .blk = true},
    {.ic = 16, .oc = 32, .h = 10, .w = 10, .k = 3, .s = 2, .p = 1, .silu = true, .blk = true},
    {.ic = 16, .oc = 16, .h = 10, .w = 10, .k = 3, .p = 1, .silu = true, .res = Residual::kInput, .blk = true},
    {.ic = 16, .oc = 16, .h = 10, .w = 10, .k = 3, .p = 1, .res = Residual::kConv, .blk = true},
    {.ic = 16, .oc = 32, .h = 12, .w = 12, .k = 3, .s = 2, .p = 1, .silu = true, .res = Residual::kConv, .blk = true},
    // A plain residual (the graph input) added in the epilogue of a plain-to-plain conv.
    {.ic = 3, .oc = 3, .h = 8, .w = 8, .k = 3, .p = 1, .silu = true, .res = Residual::kInput},
    // Output channels that are not a multiple of 8: plain output from a plain input, padded
    // nChw8c output from a blocked input (converted to plain at the graph output).
    {.ic = 8, .oc = 1, .h = 8, .w = 8, .k = 1},
    {.ic = 8, .oc = 1, .h = 8, .w = 8, .k = 1, .blk = true},
    {.ic = 16, .oc = 51, .h = 8, .w = 8, .k = 1},
    {.ic = 16, .oc = 51, .h = 8, .w = 8, .k = 3, .p = 1, .silu = true, .blk = true},
    {.ic = 12, .oc = 20, .h = 9, .w = 9, .k = 3, .p = 1},
    {.ic = 16, .oc = 12, .h = 9, .w = 9, .k = 3, .p = 1, .res = Residual::kConv, .blk = true},
};
// clang-format on

// ConvTranspose 2x2 stride 2 (YOLOv8-seg's proto upsampling). Weights are [IC, OC, KH, KW].
struct ConvTransposeCase {
    int64_t ic, oc, h, w, k, stride;
    bool bias = true;
    bool blk = false;  // read an nChw8c input

    OpCase to_case() const {
        std::ostringstream n, p;
        n << "ConvTranspose_ic" << ic << "_oc" << oc << "_" << h << "x" << w << "_k" << k << "s" << stride
          << (bias ? "" : "_nobias") << (blk ? "_blk" : "");
        p << "ConvTranspose ic=" << ic << " oc=" << oc << " h=" << h << " w=" << w << " k=" << k << " stride=" << stride
          << " bias=" << bias << " blocked_input=" << blk;
        ConvTransposeCase c = *this;
        return {n.str(), p.str(), [c](GraphBuilder& b) {
                    int x = c.blk ? b.blocked_input({1, c.ic, c.h, c.w}) : b.input({1, c.ic, c.h, c.w});
                    std::vector<int> in = {x, b.random_constant({c.ic, c.oc, c.k, c.k})};
                    if (c.bias) in.push_back(b.random_constant({c.oc}));
                    b.output(b.node(Op::kConvTranspose, in,
                                    {{"kernel_shape", Ints{c.k, c.k}}, {"strides", Ints{c.stride, c.stride}}}));
                }};
    }
};

const ConvTransposeCase kConvTransposeCases[] = {
    {.ic = 16, .oc = 16, .h = 8, .w = 8, .k = 2, .stride = 2},
    {.ic = 16, .oc = 16, .h = 8, .w = 6, .k = 2, .stride = 2, .blk = true},
    {.ic = 8, .oc = 12, .h = 5, .w = 7, .k = 2, .stride = 2, .bias = false},
};

// ---------------------------------------------------------------------------------------------
// MaxPool: SPPF's k5 s1 p2, the k2 s2 downsampling, ceil_mode (output rounded up; the extra window
// overhangs the input and must ignore the overhang, not read zeros).

struct MaxPoolCase {
    int64_t c, h, w, k, stride, pad;
    bool ceil_mode = false;
    bool blk = false;  // read an nChw8c input

    OpCase to_case() const {
        std::ostringstream n, p;
        n << "MaxPool_c" << c << "_" << h << "x" << w << "_k" << k << "s" << stride << "p" << pad
          << (ceil_mode ? "_ceil" : "") << (blk ? "_blk" : "");
        p << "MaxPool c=" << c << " h=" << h << " w=" << w << " k=" << k << " stride=" << stride << " pad=" << pad
          << " ceil_mode=" << ceil_mode << " blocked_input=" << blk;
        MaxPoolCase m = *this;
        return {n.str(), p.str(), [m](GraphBuilder& b) {
                    int x = m.blk ? b.blocked_input({1, m.c, m.h, m.w}) : b.input({1, m.c, m.h, m.w});
                    b.output(b.node(Op::kMaxPool, {x},
                                    {{"kernel_shape", Ints{m.k, m.k}},
                                     {"strides", Ints{m.stride, m.stride}},
                                     {"pads", Ints{m.pad, m.pad, m.pad, m.pad}},
                                     {"ceil_mode", int64_t{m.ceil_mode}}}));
                }};
    }
};

const MaxPoolCase kMaxPoolCases[] = {
    {.c = 16, .h = 12, .w = 12, .k = 5, .stride = 1, .pad = 2},
    {.c = 16, .h = 12, .w = 10, .k = 5, .stride = 1, .pad = 2, .blk = true},
    {.c = 16, .h = 12, .w = 12, .k = 2, .stride = 2, .pad = 0},
    {.c = 16, .h = 12, .w = 12, .k = 2, .stride = 2, .pad = 0, .blk = true},
    {.c = 12, .h = 11, .w = 11, .k = 2, .stride = 2, .pad = 0, .ceil_mode = true},
    {.c = 16, .h = 11, .w = 9, .k = 2, .stride = 2, .pad = 0, .ceil_mode = true, .blk = true},
    {.c = 8, .h = 10, .w = 10, .k = 3, .stride = 2, .pad = 1, .ceil_mode = true},
};

// ---------------------------------------------------------------------------------------------
// Resize nearest: YOLOv8's Upsample (scales 2, asymmetric, floor) and the ONNX defaults
// (half_pixel, round_prefer_floor), by scales and by sizes.

struct ResizeCase {
    int64_t c, h, w;
    float scale = 0;                       // spatial scale, given as `scales` when out_h == 0
    int64_t out_h = 0, out_w = 0;          // > 0: given as `sizes` {1, c, out_h, out_w} instead
    std::string coord = "", nearest = "";  // empty: attribute absent (ONNX defaults)
    bool blk = false;                      // read an nChw8c input

    OpCase to_case() const {
        std::ostringstream n, p;
        n << "Resize_c" << c << "_" << h << "x" << w;
        if (out_h > 0)
            n << "_to" << out_h << "x" << out_w;
        else
            n << "_x" << static_cast<int>(scale * 10);
        n << "_" << (coord.empty() ? "default" : coord) << "_" << (nearest.empty() ? "default" : nearest)
          << (blk ? "_blk" : "");
        p << "Resize c=" << c << " h=" << h << " w=" << w << " scale=" << scale << " sizes=" << out_h << "x" << out_w
          << " coordinate_transformation_mode='" << coord << "' nearest_mode='" << nearest << "' blocked_input=" << blk;
        ResizeCase r = *this;
        return {n.str(), p.str(), [r](GraphBuilder& b) {
                    Shape in = {1, r.c, r.h, r.w};
                    int x = r.blk ? b.blocked_input(in) : b.input(in);
                    AttrList a = {{"mode", std::string("nearest")}};
                    if (!r.coord.empty()) a.emplace_back("coordinate_transformation_mode", r.coord);
                    if (!r.nearest.empty()) a.emplace_back("nearest_mode", r.nearest);
                    std::vector<int> inputs = {x, -1};  // roi omitted
                    if (r.out_h > 0) {
                        inputs.push_back(-1);
                        inputs.push_back(b.ints({1, r.c, r.out_h, r.out_w}));
                    } else {
                        inputs.push_back(b.floats({4}, {1.f, 1.f, r.scale, r.scale}));
                    }
                    b.output(b.node(Op::kResize, inputs, a));
                }};
    }
};

// clang-format off
const ResizeCase kResizeCases[] = {
    {.c = 16, .h = 8, .w = 8, .scale = 2.f, .coord = "asymmetric", .nearest = "floor"},  // YOLOv8 Upsample
    {.c = 16, .h = 6, .w = 9, .scale = 2.f, .coord = "asymmetric", .nearest = "floor", .blk = true},
    {.c = 12, .h = 7, .w = 5, .scale = 2.f, .coord = "half_pixel"},
    {.c = 8, .h = 6, .w = 6, .scale = 1.5f},
    {.c = 8, .h = 5, .w = 6, .out_h = 9, .out_w = 14, .coord = "half_pixel", .nearest = "round_prefer_ceil"},
    {.c = 16, .h = 5, .w = 5, .out_h = 10, .out_w = 10, .coord = "asymmetric", .nearest = "floor", .blk = true},
};
// clang-format on

// ---------------------------------------------------------------------------------------------
// Elementwise binary ops, same shape and broadcast. A runtime operand is carved out of the single
// graph input (Split + Reshape, so the operands are views of it); a constant one is an initializer.

enum class Operand { kInput, kConst };

struct BinaryCase {
    Op op;
    Shape a, b;
    Operand a_kind = Operand::kInput, b_kind = Operand::kInput;

    OpCase to_case() const {
        auto kind = [](Operand k) { return k == Operand::kInput ? "in" : "const"; };
        std::ostringstream n, p;
        n << ir::op_name(op) << "_" << kind(a_kind) << shape_tag(a) << "_" << kind(b_kind) << shape_tag(b);
        p << ir::op_name(op) << " a=" << kind(a_kind) << shape_str(a) << " b=" << kind(b_kind) << shape_str(b);
        BinaryCase c = *this;
        return {n.str(), p.str(), [c](GraphBuilder& b) {
                    int64_t na = c.a_kind == Operand::kInput ? num_elements(c.a) : 0;
                    int64_t nb = c.b_kind == Operand::kInput ? num_elements(c.b) : 0;
                    int x = b.input({1, na + nb});
                    std::vector<int> parts = {x};
                    if (na && nb) parts = b.node_n(Op::kSplit, {x, b.ints({na, nb})}, 2, {{"axis", int64_t{1}}});
                    size_t next = 0;
                    auto operand = [&](Operand k, const Shape& s, bool divisor) {
                        if (k == Operand::kConst)
                            // Divisors kept away from zero so one huge quotient cannot dominate the error.
                            return divisor ? b.random_constant(s, 0.5f, 2.f) : b.random_constant(s, -1.f, 1.f);
                        int v = b.node(Op::kReshape, {parts[next++], b.ints(s)});
                        return divisor ? b.node(Op::kSigmoid, {v}) : v;
                    };
                    int va = operand(c.a_kind, c.a, false);
                    int vb = operand(c.b_kind, c.b, c.op == Op::kDiv);
                    b.output(b.node(c.op, {va, vb}));
                }};
    }
};

const BinaryCase kBinaryCases[] = {
    {Op::kAdd, {1, 16, 8, 8}, {1, 16, 8, 8}},
    {Op::kSub, {1, 16, 8, 8}, {1, 16, 8, 8}},
    {Op::kMul, {1, 16, 8, 8}, {1, 16, 8, 8}},
    {Op::kDiv, {1, 16, 8, 8}, {1, 16, 8, 8}},
    {Op::kAdd, {1, 16, 8, 8}, {1, 16, 8, 8}, Operand::kInput, Operand::kConst},
    // YOLOv8 head: dist2bbox against anchors [1, 2, 8400] and strides [1, 8400].
    {Op::kAdd, {1, 2, 8400}, {1, 8400}, Operand::kInput, Operand::kConst},
    {Op::kSub, {1, 8400}, {1, 2, 8400}, Operand::kConst, Operand::kInput},
    {Op::kMul, {1, 4, 8400}, {1, 8400}, Operand::kInput, Operand::kConst},
    {Op::kDiv, {1, 2, 8400}, {1, 1, 8400}, Operand::kInput, Operand::kInput},
    {Op::kAdd, {1, 2, 840}, {1, 1, 840}, Operand::kInput, Operand::kInput},
    // Scalars (rank 0 and [1]) on either side.
    {Op::kMul, {1, 16, 8, 8}, {}, Operand::kInput, Operand::kConst},
    {Op::kDiv, {1, 2, 100}, {1}, Operand::kInput, Operand::kConst},
    {Op::kSub, {}, {1, 16, 8, 8}, Operand::kConst, Operand::kInput},
    // Per-channel and inner-dimension broadcasts.
    {Op::kAdd, {1, 16, 8, 8}, {1, 16, 1, 1}, Operand::kInput, Operand::kConst},
    {Op::kMul, {1, 16, 8, 8}, {1, 16, 1, 1}, Operand::kInput, Operand::kInput},
    {Op::kMul, {1, 16, 1, 8}, {1, 1, 8, 1}, Operand::kInput, Operand::kInput},
};

// ---------------------------------------------------------------------------------------------
// Split: axis 1 (sizes multiple of 8 or not, default equal split) and axis 2. The outputs go either
// straight to graph outputs (copies) or through a Sigmoid each (so they can be views).

struct SplitCase {
    Shape shape;
    int64_t axis;
    Ints sizes;  // empty: default equal split into `parts`
    size_t parts;
    bool blk = false;  // read an nChw8c input
    bool through_sigmoid = false;

    OpCase to_case() const {
        std::ostringstream n, p;
        n << "Split_" << shape_tag(shape) << "_axis" << axis << "_";
        if (sizes.empty()) n << "equal" << parts;
        for (size_t i = 0; i < sizes.size(); ++i) n << (i ? "_" : "") << sizes[i];
        n << (blk ? "_blk" : "") << (through_sigmoid ? "_sig" : "");
        p << "Split shape=" << shape_str(shape) << " axis=" << axis << " sizes=" << shape_str(sizes)
          << " parts=" << parts << " blocked_input=" << blk << " through_sigmoid=" << through_sigmoid;
        SplitCase c = *this;
        return {n.str(), p.str(), [c](GraphBuilder& b) {
                    int x = c.blk ? b.blocked_input(c.shape) : b.input(c.shape);
                    std::vector<int> in = {x};
                    if (!c.sizes.empty()) in.push_back(b.ints(c.sizes));
                    for (int o : b.node_n(Op::kSplit, in, c.parts, {{"axis", c.axis}}))
                        b.output(c.through_sigmoid ? b.node(Op::kSigmoid, {o}) : o);
                }};
    }
};

const SplitCase kSplitCases[] = {
    {.shape = {1, 32, 8, 8}, .axis = 1, .sizes = {16, 16}, .parts = 2},
    {.shape = {1, 32, 8, 8}, .axis = 1, .sizes = {16, 16}, .parts = 2, .blk = true},
    {.shape = {1, 32, 8, 8}, .axis = 1, .sizes = {16, 16}, .parts = 2, .blk = true, .through_sigmoid = true},
    {.shape = {1, 32, 6, 6}, .axis = 1, .sizes = {8, 8, 16}, .parts = 3, .through_sigmoid = true},
    {.shape = {1, 32, 8, 8}, .axis = 1, .sizes = {12, 20}, .parts = 2},
    {.shape = {1, 32, 8, 8}, .axis = 1, .sizes = {12, 20}, .parts = 2, .blk = true, .through_sigmoid = true},
    {.shape = {1, 24, 5, 5}, .axis = 1, .sizes = {}, .parts = 3},
    {.shape = {1, 8, 12, 10}, .axis = 2, .sizes = {4, 8}, .parts = 2},
    {.shape = {1, 16, 12, 10}, .axis = 2, .sizes = {5, 7}, .parts = 2, .blk = true, .through_sigmoid = true},
    {.shape = {1, 84, 100}, .axis = 1, .sizes = {4, 80}, .parts = 2, .through_sigmoid = true},
};

// ---------------------------------------------------------------------------------------------
// Everything else as hand-written rows: a name, the parameters, the graph.

struct GraphCase {
    std::string name;
    std::string params;
    std::function<void(GraphBuilder&)> build;
    double tol = kTol;
    bool optimize = false;
};

std::vector<GraphCase> graph_cases() {
    std::vector<GraphCase> v;
    auto add = [&](std::string name, std::string params, std::function<void(GraphBuilder&)> f, double tol = kTol,
                   bool optimize = false) {
        v.push_back({std::move(name), std::move(params), std::move(f), tol, optimize});
    };

    // Concat on axis 1 and 2, of computed values, constants and views.
    add("Concat_axis1_conv16_conv16", "Concat axis=1 of two conv outputs (16+16 ch, nChw8c, elided)",
        [](GraphBuilder& b) {
            int x = b.blocked_input({1, 16, 8, 8});
            b.output(b.node(Op::kConcat, {b.conv(x, 16, 16, {.k = 3, .pad = 1}), b.conv(x, 16, 16, {.k = 1})},
                            {{"axis", int64_t{1}}}));
        });
    add("Concat_axis1_conv16_conv12",
        "Concat axis=1 of blocked conv outputs, 16+12 ch (12 is no block multiple: plain concat)", [](GraphBuilder& b) {
            int x = b.blocked_input({1, 16, 8, 8});
            b.output(b.node(Op::kConcat, {b.conv(x, 16, 16, {.k = 1}), b.conv(x, 16, 12, {.k = 1})},
                            {{"axis", int64_t{1}}}));
        });
    add("Concat_axis1_blk12_blk20", "Concat axis=1 of blocked conv outputs with 12+20 ch (padded blocks)",
        [](GraphBuilder& b) {
            int x = b.blocked_input({1, 16, 7, 7});
            b.output(b.node(Op::kConcat, {b.conv(x, 16, 12, {.k = 1}), b.conv(x, 16, 20, {.k = 1})},
                            {{"axis", int64_t{1}}}));
        });
    add("Concat_axis1_input_const", "Concat axis=1 of the plain input (5 ch) and a constant (3 ch)",
        [](GraphBuilder& b) {
            int x = b.input({1, 5, 4, 6});
            b.output(b.node(Op::kConcat, {x, b.random_constant({1, 3, 4, 6})}, {{"axis", int64_t{1}}}));
        });
    add("Concat_axis2_reversed_split", "Split axis=2 {4,6} of [1,8,10,6] then Concat axis=2 in reverse order",
        [](GraphBuilder& b) {
            int x = b.input({1, 8, 10, 6});
            auto s = b.node_n(Op::kSplit, {x, b.ints({4, 6})}, 2, {{"axis", int64_t{2}}});
            b.output(b.node(Op::kConcat, {s[1], s[0]}, {{"axis", int64_t{2}}}));
        });
    add("Concat_axis_neg1_3d", "Concat axis=-1 of [1,8,12] and [1,8,20] from Split of the input", [](GraphBuilder& b) {
        int x = b.input({1, 8, 32});
        auto s = b.node_n(Op::kSplit, {x, b.ints({12, 20})}, 2, {{"axis", int64_t{2}}});
        b.output(b.node(Op::kConcat, {b.node(Op::kSigmoid, {s[1]}), s[0]}, {{"axis", int64_t{-1}}}));
    });
    add("Concat_axis2_detect_scales", "YOLO head: convs at two scales, Reshape to [1,C,HW], Concat axis=2",
        [](GraphBuilder& b) {
            int x = b.blocked_input({1, 16, 8, 8});
            int p3 = b.conv(x, 16, 24, {.k = 1});
            int p4 = b.conv(x, 16, 24, {.k = 3, .stride = 2, .pad = 1});
            int r3 = b.node(Op::kReshape, {p3, b.ints({1, 24, -1})});
            int r4 = b.node(Op::kReshape, {p4, b.ints({1, 24, -1})});
            b.output(b.node(Op::kConcat, {r3, r4}, {{"axis", int64_t{2}}}));
        });

    // Slice: positive/negative bounds, steps, several axes, YOLO's box/class split of [1, 84, N].
    auto slice = [&](std::string name, Shape s, Ints starts, Ints ends, Ints axes, Ints steps, bool blk = false) {
        std::ostringstream p;
        p << "Slice shape=" << shape_str(s) << " starts=" << shape_str(starts) << " ends=" << shape_str(ends)
          << " axes=" << shape_str(axes) << " steps=" << shape_str(steps) << " blocked_input=" << blk;
        add(name, p.str(), [=](GraphBuilder& b) {
            int x = blk ? b.blocked_input(s) : b.input(s);
            std::vector<int> in = {x, b.ints(starts), b.ints(ends), b.ints(axes)};
            if (!steps.empty()) in.push_back(b.ints(steps));
            b.output(b.node(Op::kSlice, in));
        });
    };
    slice("Slice_axis1_4_12", {1, 16, 8, 8}, {4}, {12}, {1}, {});
    slice("Slice_axis1_8_16_blk", {1, 16, 8, 8}, {8}, {16}, {1}, {}, true);
    slice("Slice_axis2_neg", {1, 8, 10, 6}, {-6}, {-1}, {2}, {});
    slice("Slice_axis3_step2", {1, 8, 6, 10}, {1}, {100}, {3}, {2});
    slice("Slice_multi_axis_neg_axes", {1, 8, 10, 9}, {2, 1, -7}, {6, -1, 8}, {1, -2, -1}, {1, 2, 1});
    slice("Slice_yolo_boxes", {1, 84, 100}, {0}, {4}, {1}, {});
    slice("Slice_yolo_classes", {1, 84, 100}, {4}, {INT64_MAX}, {1}, {});

    // Reshape (and the ops canonicalised into it), including of a blocked tensor (needs a conversion).
    add("Reshape_4d_to_3d", "Reshape [1,16,8,8] -> [1,16,64]", [](GraphBuilder& b) {
        int x = b.input({1, 16, 8, 8});
        b.output(b.node(Op::kReshape, {x, b.ints({1, 16, 64})}));
    });
    add("Reshape_zero_and_minus1", "Reshape [1,64,5,4] -> [0,4,16,-1] (0 copies a dim, -1 is inferred)",
        [](GraphBuilder& b) {
            int x = b.input({1, 64, 5, 4});
            b.output(b.node(Op::kReshape, {x, b.ints({0, 4, 16, -1})}));
        });
    add("Reshape_of_blocked_conv", "Conv 16->32 (nChw8c) then Reshape to [1,32,-1]", [](GraphBuilder& b) {
        int x = b.blocked_input({1, 16, 6, 6});
        b.output(b.node(Op::kReshape, {b.conv(x, 16, 32, {.k = 1}), b.ints({1, 32, -1})}));
    });
    add("Flatten_axis1", "Flatten axis=1 of [1,8,3,3]", [](GraphBuilder& b) {
        b.output(b.node(Op::kFlatten, {b.input({1, 8, 3, 3})}, {{"axis", int64_t{1}}}));
    });
    add("Unsqueeze_Squeeze", "Unsqueeze axes=[2] of [1,8,20], then Sigmoid, then Squeeze axes=[2]",
        [](GraphBuilder& b) {
            int u = b.node(Op::kUnsqueeze, {b.input({1, 8, 20}), b.ints({2})});
            b.output(b.node(Op::kSqueeze, {b.node(Op::kSigmoid, {u}), b.ints({2})}));
        });
    // The OBB head's rotation: angle = (sigmoid(x) - 0.25) * pi, then cos and sin of it.
    add("Sin_Cos_obb_angle", "Sin and Cos of a [1,1,300] angle row (OBB dist2rbox)", [](GraphBuilder& b) {
        int x = b.input({1, 1, 300});
        b.output(b.node(Op::kSin, {x}));
        b.output(b.node(Op::kCos, {x}));
    });
    add("Sin_blocked", "Sin of a blocked conv output", [](GraphBuilder& b) {
        b.output(b.node(Op::kSin, {b.blocked_input({1, 8, 5, 5})}));
    });

    // Transpose.
    auto transpose = [&](std::string name, Shape s, Ints perm) {
        add(name, "Transpose shape=" + shape_str(s) + " perm=" + shape_str(perm), [=](GraphBuilder& b) {
            b.output(b.node(Op::kTranspose, {b.input(s)}, {{"perm", perm}}));
        });
    };
    transpose("Transpose_0213", {1, 4, 16, 20}, {0, 2, 1, 3});
    transpose("Transpose_021_3d", {1, 84, 50}, {0, 2, 1});
    transpose("Transpose_0231", {1, 8, 5, 6}, {0, 2, 3, 1});
    add("Transpose_default_perm", "Transpose without perm (reverses the dims) of [1,6,7]", [](GraphBuilder& b) {
        b.output(b.node(Op::kTranspose, {b.input({1, 6, 7})}));
    });

    // Softmax: YOLOv8's DFL runs it over the 16 bins, axis 1 of [1, 16, 4, N].
    auto softmax = [&](std::string name, Shape s, int64_t axis) {
        add(name, "Softmax shape=" + shape_str(s) + " axis=" + std::to_string(axis), [=](GraphBuilder& b) {
            b.output(b.node(Op::kSoftmax, {b.input(s)}, {{"axis", axis}}));
        });
    };
    softmax("Softmax_axis1_16x4x100", {1, 16, 4, 100}, 1);
    softmax("Softmax_axis1_16x4x2100", {1, 16, 4, 2100}, 1);
    softmax("Softmax_axis_neg1", {1, 4, 30}, -1);
    add("Softmax_large_logits", "Softmax axis=1 of [1,16,4,50] with inputs scaled by 40 (needs max subtraction)",
        [](GraphBuilder& b) {
            int x = b.input({1, 16, 4, 50});
            b.output(b.node(Op::kSoftmax, {b.node(Op::kMul, {x, b.floats({}, {40.f})})}, {{"axis", int64_t{1}}}));
        });

    // Unary.
    add("Sigmoid_4d", "Sigmoid [1,16,8,8]", [](GraphBuilder& b) {
        b.output(b.node(Op::kSigmoid, {b.input({1, 16, 8, 8})}));
    });
    add("Sigmoid_blk_c12", "Sigmoid of a blocked conv output with 12 ch (padded)", [](GraphBuilder& b) {
        int x = b.blocked_input({1, 16, 6, 6});
        b.output(b.node(Op::kSigmoid, {b.conv(x, 16, 12, {.k = 1})}));
    });
    add("Sigmoid_3d", "Sigmoid [1,80,100] (YOLO class scores)", [](GraphBuilder& b) {
        b.output(b.node(Op::kSigmoid, {b.input({1, 80, 100})}));
    });
    add("Relu_blk", "Relu of a blocked conv output", [](GraphBuilder& b) {
        b.output(b.node(Op::kRelu, {b.conv(b.blocked_input({1, 16, 6, 6}), 16, 16, {.k = 1})}));
    });
    add("Identity_input_to_output", "Identity from the graph input to the graph output (a copy)", [](GraphBuilder& b) {
        b.output(b.node(Op::kIdentity, {b.input({1, 8, 4, 4})}));
    });

    // GlobalAveragePool, Gemm (the classifier head), BatchNormalization.
    add("GlobalAveragePool_plain", "GlobalAveragePool [1,12,7,7]", [](GraphBuilder& b) {
        b.output(b.node(Op::kGlobalAveragePool, {b.input({1, 12, 7, 7})}));
    });
    add("GlobalAveragePool_blk", "GlobalAveragePool of a blocked conv output [1,16,9,9]", [](GraphBuilder& b) {
        b.output(b.node(Op::kGlobalAveragePool, {b.blocked_input({1, 16, 9, 9})}));
    });
    add("Gemm_classifier_transB", "GAP [1,16,5,5] -> Flatten -> Gemm transB=1 B[10,16] C[10]", [](GraphBuilder& b) {
        int g = b.node(Op::kGlobalAveragePool, {b.blocked_input({1, 16, 5, 5})});
        int f = b.node(Op::kFlatten, {g}, {{"axis", int64_t{1}}});
        b.output(
            b.node(Op::kGemm, {f, b.random_constant({10, 16}), b.random_constant({10})}, {{"transB", int64_t{1}}}));
    });
    add("Gemm_M3_alpha_beta", "Gemm A[3,32] (Reshape of the input) B[32,8] C[3,8] alpha=0.5 beta=2",
        [](GraphBuilder& b) {
            int a = b.node(Op::kReshape, {b.input({1, 96}), b.ints({3, 32})});
            b.output(b.node(Op::kGemm, {a, b.random_constant({32, 8}), b.random_constant({3, 8})},
                            {{"alpha", 0.5f}, {"beta", 2.f}}));
        });
    add("Gemm_transB_no_C", "Gemm A[1,24] B[6,24] transB=1 without C", [](GraphBuilder& b) {
        b.output(b.node(Op::kGemm, {b.input({1, 24}), b.random_constant({6, 24})}, {{"transB", int64_t{1}}}));
    });
    auto batch_norm = [&](std::string name, Shape s, bool blk, float eps) {
        std::ostringstream p;
        p << "BatchNormalization shape=" << shape_str(s) << " blocked_input=" << blk << " epsilon=" << eps;
        add(name, p.str(), [=](GraphBuilder& b) {
            int x = blk ? b.blocked_input(s) : b.input(s);
            int64_t c = s[1];
            b.output(b.node(Op::kBatchNormalization,
                            {x, b.random_constant({c}, 0.5f, 1.5f), b.random_constant({c}), b.random_constant({c}),
                             b.random_constant({c}, 0.1f, 2.f)},
                            {{"epsilon", eps}}));
        });
    };
    batch_norm("BatchNormalization_plain", {1, 12, 6, 6}, false, 1e-5f);
    batch_norm("BatchNormalization_blk", {1, 16, 6, 6}, true, 1e-3f);

    // Op chains where the planner's layouts, views and memory reuse matter.
    add("Chain_conv_blk_to_blk", "Conv 16->32 -> Conv 32->16 k3 (nChw8c in and out)", [](GraphBuilder& b) {
        int x = b.blocked_input({1, 16, 10, 10});
        b.output(b.conv(b.conv(x, 16, 32, {.k = 1, .activation = "silu"}), 32, 16, {.k = 3, .pad = 1}));
    });
    add("Chain_c2f_split_concat",
        "C2f: Conv 16->32 -> Split 16,16 -> Conv on the 2nd half -> Concat(a, b, conv) -> Conv", [](GraphBuilder& b) {
            int x = b.blocked_input({1, 16, 10, 10});
            int c1 = b.conv(x, 16, 32, {.k = 1, .activation = "silu"});
            auto s = b.node_n(Op::kSplit, {c1, b.ints({16, 16})}, 2, {{"axis", int64_t{1}}});
            int m = b.conv(b.conv(s[1], 16, 16, {.k = 3, .pad = 1, .activation = "silu"}), 16, 16,
                           {.k = 3, .pad = 1, .activation = "silu", .residual = s[1]});
            int cat = b.node(Op::kConcat, {s[0], s[1], m}, {{"axis", int64_t{1}}});
            b.output(b.conv(cat, 48, 32, {.k = 1, .activation = "silu"}));
        });
    add("Chain_split_conv_concat_output", "Conv 16->32 -> Split 16,16 -> Conv -> Concat as the graph output",
        [](GraphBuilder& b) {
            int x = b.blocked_input({1, 16, 8, 8});
            auto s = b.node_n(Op::kSplit, {b.conv(x, 16, 32, {.k = 1}), b.ints({16, 16})}, 2, {{"axis", int64_t{1}}});
            b.output(b.node(Op::kConcat, {s[0], b.conv(s[1], 16, 16, {.k = 3, .pad = 1})}, {{"axis", int64_t{1}}}));
        });
    add("Chain_conv_output_and_consumer", "Conv output is a graph output and also read by a MaxPool (2 outputs)",
        [](GraphBuilder& b) {
            int c = b.conv(b.blocked_input({1, 16, 8, 8}), 16, 16, {.k = 3, .pad = 1});
            b.output(c);
            b.output(b.node(Op::kMaxPool, {c}, {{"kernel_shape", Ints{2, 2}}, {"strides", Ints{2, 2}}}));
        });
    add("Chain_sppf", "SPPF: Conv -> MaxPool k5 s1 p2 x3 -> Concat of 4 -> Conv", [](GraphBuilder& b) {
        int x = b.conv(b.blocked_input({1, 16, 10, 10}), 16, 8, {.k = 1, .activation = "silu"});
        AttrList mp = {{"kernel_shape", Ints{5, 5}}, {"pads", Ints{2, 2, 2, 2}}};
        int y1 = b.node(Op::kMaxPool, {x}, mp), y2 = b.node(Op::kMaxPool, {y1}, mp),
            y3 = b.node(Op::kMaxPool, {y2}, mp);
        int cat = b.node(Op::kConcat, {x, y1, y2, y3}, {{"axis", int64_t{1}}});
        b.output(b.conv(cat, 32, 16, {.k = 1, .activation = "silu"}));
    });
    add("Chain_upsample_concat", "FPN: Conv stride 2 -> Resize x2 -> Concat with the stride-1 branch -> Conv",
        [](GraphBuilder& b) {
            int x = b.blocked_input({1, 16, 8, 8});
            int lo = b.conv(x, 16, 16, {.k = 3, .stride = 2, .pad = 1});
            int up = b.node(Op::kResize, {lo, -1, b.floats({4}, {1.f, 1.f, 2.f, 2.f})},
                            {{"mode", std::string("nearest")},
                             {"coordinate_transformation_mode", std::string("asymmetric")},
                             {"nearest_mode", std::string("floor")}});
            int cat = b.node(Op::kConcat, {up, b.conv(x, 16, 8, {.k = 1})}, {{"axis", int64_t{1}}});
            b.output(b.conv(cat, 24, 16, {.k = 3, .pad = 1}));
        });
    add("Chain_blk_add_c12", "Two blocked conv outputs with 12 ch (padded) added, to a plain output",
        [](GraphBuilder& b) {
            int x = b.blocked_input({1, 16, 6, 6});
            b.output(b.node(Op::kAdd, {b.conv(x, 16, 12, {.k = 1}), b.conv(x, 16, 12, {.k = 3, .pad = 1})}));
        });
    add("Chain_blk_mul_sigmoid", "Exported SiLU on a blocked conv output: Mul(y, Sigmoid(y))", [](GraphBuilder& b) {
        int y = b.conv(b.blocked_input({1, 16, 6, 6}), 16, 16, {.k = 1});
        b.output(b.node(Op::kMul, {y, b.node(Op::kSigmoid, {y})}));
    });
    add("Chain_dfl",
        "DFL: Conv 16->64 -> Reshape [1,4,16,N] -> Transpose 0213 -> Softmax axis 1 -> Conv 16->1 -> Reshape",
        [](GraphBuilder& b) {
            int x = b.blocked_input({1, 16, 6, 6});
            int c = b.conv(x, 16, 64, {.k = 1});
            int r = b.node(Op::kReshape, {c, b.ints({1, 4, 16, 36})});
            int t = b.node(Op::kTranspose, {r}, {{"perm", Ints{0, 2, 1, 3}}});
            int s = b.node(Op::kSoftmax, {t}, {{"axis", int64_t{1}}});
            std::vector<float> bins(16);
            for (int i = 0; i < 16; ++i) bins[static_cast<size_t>(i)] = static_cast<float>(i);
            int d = b.node(Op::kConv, {s, b.floats({1, 16, 1, 1}, bins)}, {{"kernel_shape", Ints{1, 1}}});
            b.output(b.node(Op::kReshape, {d, b.ints({1, 4, 36})}));
        });
    add("Chain_se_broadcast_mul", "x * GAP(x) with x a blocked conv output (runtime per-channel broadcast)",
        [](GraphBuilder& b) {
            int y = b.conv(b.blocked_input({1, 16, 6, 6}), 16, 16, {.k = 1});
            b.output(b.node(Op::kMul, {y, b.node(Op::kGlobalAveragePool, {y})}));
        });
    // Concat elision when a producer's buffer holds more than its concat slot: the rest of that
    // buffer must not be overwritten by the concat's other inputs while it is still read.
    add("Chain_value_in_two_concats",
        "v feeds Concat(v, a) and Concat(p, v, c) (all 16 ch, nChw8c); both concats read later", [](GraphBuilder& b) {
            int x = b.blocked_input({1, 16, 6, 6});
            int v = b.conv(x, 16, 16, {.k = 1}), a = b.conv(x, 16, 16, {.k = 1});
            int p = b.conv(x, 16, 16, {.k = 1}), c = b.conv(x, 16, 16, {.k = 1});
            int cat1 = b.node(Op::kConcat, {v, a}, {{"axis", int64_t{1}}});
            int cat2 = b.node(Op::kConcat, {p, v, c}, {{"axis", int64_t{1}}});
            b.output(b.conv(cat1, 32, 16, {.k = 1}));
            b.output(b.conv(cat2, 48, 16, {.k = 1}));
        });
    add("Chain_split_half_into_concat",
        "c = Conv 3->12 (plain); Split 6,6; Concat(const 6 ch, s[1]); s[0] read after the concat", [](GraphBuilder& b) {
            int x = b.input({1, 3, 6, 6});
            auto s = b.node_n(Op::kSplit, {b.conv(x, 3, 12, {.k = 1}), b.ints({6, 6})}, 2, {{"axis", int64_t{1}}});
            int cat = b.node(Op::kConcat, {b.random_constant({1, 6, 6, 6}), s[1]}, {{"axis", int64_t{1}}});
            b.output(b.node(Op::kSigmoid, {cat}));
            b.output(b.node(Op::kSigmoid, {s[0]}));
        });
    // fuse_conv_residual_add also fuses Add(conv, constant of the same shape): the constant residual
    // must then be read in the conv output's layout.
    add(
        "Pipeline_conv_add_constant", "Add(Conv 16->16 (nChw8c), constant [1,16,6,6]); CPU side runs run_pipeline",
        [](GraphBuilder& b) {
            int y = b.conv(b.blocked_input({1, 16, 6, 6}), 16, 16, {.k = 3, .pad = 1});
            b.output(b.node(Op::kAdd, {y, b.random_constant({1, 16, 6, 6})}));
        },
        kTol, /*optimize=*/true);
    // As exported (Conv, BatchNormalization, Sigmoid, Mul, Add) and run through the whole pipeline on
    // the CPU side: the fused kernels must match the unfused reference graph.
    add(
        "Pipeline_bottleneck_as_exported", "Conv+BN+Sigmoid*Mul twice, + x; CPU side runs run_pipeline",
        [](GraphBuilder& b) {
            int x = b.blocked_input({1, 16, 8, 8});
            auto cbs = [&](int in) {
                int c = b.conv(in, 16, 16, {.k = 3, .pad = 1, .bias = false});
                int bn =
                    b.node(Op::kBatchNormalization, {c, b.random_constant({16}, 0.5f, 1.5f), b.random_constant({16}),
                                                     b.random_constant({16}), b.random_constant({16}, 0.5f, 2.f)});
                return b.node(Op::kMul, {bn, b.node(Op::kSigmoid, {bn})});
            };
            b.output(b.node(Op::kAdd, {x, cbs(cbs(x))}));
        },
        kTol, /*optimize=*/true);
    return v;
}

std::vector<OpCase> all_cases() {
    std::vector<OpCase> cases;
    for (const auto& c : kConvCases) cases.push_back(c.to_case());
    for (const auto& c : kConvTransposeCases) cases.push_back(c.to_case());
    for (const auto& c : kMaxPoolCases) cases.push_back(c.to_case());
    for (const auto& c : kResizeCases) cases.push_back(c.to_case());
    for (const auto& c : kBinaryCases) cases.push_back(c.to_case());
    for (const auto& c : kSplitCases) cases.push_back(c.to_case());
    for (auto& c : graph_cases()) cases.push_back({c.name, c.params, c.build, c.tol, c.optimize});
    for (OpCase& c : cases)
        for (char& ch : c.name)
            if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
    return cases;
}

class CpuVsReference : public ::testing::TestWithParam<OpCase> {};

TEST_P(CpuVsReference, Matches) {
    const OpCase& c = GetParam();
    SCOPED_TRACE(c.params);
    Rng rng;
    SCOPED_TRACE(rng.trace());
    GraphBuilder b(rng);
    c.build(b);
    auto inputs = random_inputs(b.graph(), rng);
    std::vector<ir::Tensor> want, got;
    ASSERT_NO_THROW(want = run_reference(b.graph(), inputs));
    ASSERT_NO_THROW(got = run_cpu(b.graph(), inputs, c.optimize));
    EXPECT_TRUE(all_close(got, want, c.tol)) << "tolerance: relative L2 <= " << c.tol;
}

INSTANTIATE_TEST_SUITE_P(Ops, CpuVsReference, ::testing::ValuesIn(all_cases()),
                         [](const ::testing::TestParamInfo<OpCase>& info) { return info.param.name; });

// gtest rejects duplicate parameter names only at run time with an unhelpful message; say which.
TEST(CpuVsReferenceTable, CaseNamesAreUnique) {
    std::set<std::string> seen;
    for (const OpCase& c : all_cases()) EXPECT_TRUE(seen.insert(c.name).second) << "duplicate case " << c.name;
}

}  // namespace
}  // namespace kestrel::test
