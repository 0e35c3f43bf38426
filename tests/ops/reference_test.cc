// The reference is the oracle every backend kernel is compared with, so it is itself checked here
// against values computed by hand on tiny inputs (the expected numbers are written out, not computed
// by a second implementation that could share its mistakes).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "common/graph_builder.h"

namespace kestrel::test {
namespace {

using ir::Op;
using ir::Tensor;

Tensor T(Shape s, std::vector<float> v) { return Tensor::from_floats(std::move(s), v); }

ir::Node make_node(Op op, const AttrList& attrs = {}, size_t outputs = 1) {
    ir::Node n;
    n.op = op;
    n.name = std::string(ir::op_name(op));
    for (const auto& [k, v] : attrs) n.attrs.set(k, v);
    n.outputs.assign(outputs, 0);
    return n;
}

// Evaluates one node already in canonical form (no shape inputs to resolve).
Tensor eval(const ir::Node& n, const std::vector<const Tensor*>& in) {
    auto out = reference::evaluate(n, in);
    EXPECT_EQ(out.size(), 1u);
    return out.at(0);
}

// For ops whose shape inputs are canonicalised into attributes first (Resize, Slice, Split): a
// one-node graph on input `x`, run through fold_constants (inference) and reference::run_graph.
std::vector<Tensor> run_one(const Tensor& x, const std::function<void(GraphBuilder&, int)>& build) {
    Rng rng;
    GraphBuilder b(rng);
    int in = b.input(x.shape);
    build(b, in);
    return run_reference(b.graph(), {x});
}

void expect_tensor(const Tensor& got, const Shape& shape, const std::vector<float>& want, float tol = 1e-6f) {
    ASSERT_EQ(got.shape, shape) << shape_str(got.shape);
    ASSERT_EQ(got.dtype, DType::kFloat32);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got.data<float>()[i], want[i], tol) << "at flat index " << i;
}

TEST(Reference, Conv1x1WithBias) {
    // out = 2 * c0 - c1 + 0.5
    Tensor x = T({1, 2, 2, 2}, {1, 2, 3, 4, 5, 6, 7, 8}), w = T({1, 2, 1, 1}, {2, -1}), b = T({1}, {0.5f});
    expect_tensor(eval(make_node(Op::kConv), {&x, &w, &b}), {1, 1, 2, 2}, {-2.5f, -1.5f, -0.5f, 0.5f});
}

TEST(Reference, Conv3x3ZeroPaddingSumsNeighbourhoods) {
    // All-ones 3x3 kernel, pad 1: each output is the sum of the in-bounds 3x3 neighbourhood.
    Tensor x = T({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9}), w = T({1, 1, 3, 3}, std::vector<float>(9, 1.f));
    expect_tensor(eval(make_node(Op::kConv, {{"pads", Ints{1, 1, 1, 1}}}), {&x, &w}), {1, 1, 3, 3},
                  {12, 21, 16, 27, 45, 33, 24, 39, 28});
    // Stride 2 keeps the corners.
    expect_tensor(eval(make_node(Op::kConv, {{"pads", Ints{1, 1, 1, 1}}, {"strides", Ints{2, 2}}}), {&x, &w}),
                  {1, 1, 2, 2}, {12, 16, 24, 28});
    // Asymmetric pads [top, left, bottom, right] = [0, 1, 1, 0]: a 2x2 output shifted left and down.
    expect_tensor(eval(make_node(Op::kConv, {{"pads", Ints{0, 1, 1, 0}}}), {&x, &w}), {1, 1, 2, 2},
                  {1 + 2 + 4 + 5 + 7 + 8, 1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9, 4 + 5 + 7 + 8, 4 + 5 + 6 + 7 + 8 + 9});
}

TEST(Reference, ConvDepthwiseGroups) {
    // group = 2, one output channel per group: c0 * 2, c1 * 3.
    Tensor x = T({1, 2, 1, 2}, {1, 2, 3, 4}), w = T({2, 1, 1, 1}, {2, 3});
    expect_tensor(eval(make_node(Op::kConv, {{"group", int64_t{2}}}), {&x, &w}), {1, 2, 1, 2}, {2, 4, 9, 12});
}

TEST(Reference, ConvFusedSiluThenResidual) {
    // The fused epilogue: SiLU(conv) first, then the residual is added (YOLOv8 Bottleneck order).
    Tensor x = T({1, 1, 1, 4}, {0, 1, -1, 2}), w = T({1, 1, 1, 1}, {1}), r = T({1, 1, 1, 4}, {10, 20, 30, 40});
    ir::Node n = make_node(Op::kConv, {{"activation", std::string("silu")}});
    expect_tensor(eval(n, {&x, &w}), {1, 1, 1, 4}, {0.f, 0.7310586f, -0.2689414f, 1.7615942f});
    expect_tensor(eval(n, {&x, &w, nullptr, &r}), {1, 1, 1, 4}, {10.f, 20.7310586f, 29.7310586f, 41.7615942f}, 1e-5f);
}

TEST(Reference, ConvTranspose2x2Stride2) {
    // Each input pixel stamps w scaled by its value into its own 2x2 output block.
    Tensor x = T({1, 1, 2, 2}, {1, 2, 3, 4}), w = T({1, 1, 2, 2}, {1, 10, 100, 1000}), b = T({1}, {0.5f});
    expect_tensor(eval(make_node(Op::kConvTranspose, {{"strides", Ints{2, 2}}}), {&x, &w, &b}), {1, 1, 4, 4},
                  {1.5f, 10.5f, 2.5f, 20.5f, 100.5f, 1000.5f, 200.5f, 2000.5f, 3.5f, 30.5f, 4.5f, 40.5f, 300.5f,
                   3000.5f, 400.5f, 4000.5f});
}

TEST(Reference, MaxPoolPaddingIsMinusInfinity) {
    // All inputs negative: padding must never win (zero padding would put 0 on every border).
    Tensor x = T({1, 1, 3, 3}, {-1, -2, -3, -4, -5, -6, -7, -8, -9});
    ir::Node n = make_node(Op::kMaxPool, {{"kernel_shape", Ints{3, 3}}, {"pads", Ints{1, 1, 1, 1}}});
    expect_tensor(eval(n, {&x}), {1, 1, 3, 3}, {-1, -1, -2, -1, -1, -2, -4, -4, -5});
}

TEST(Reference, MaxPoolCeilModeIgnoresOverhang) {
    // 3x3 input, k2 s2: floor gives 1x1, ceil gives 2x2 whose last windows hang over the edge.
    Tensor x = T({1, 1, 3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9});
    AttrList a = {{"kernel_shape", Ints{2, 2}}, {"strides", Ints{2, 2}}};
    expect_tensor(eval(make_node(Op::kMaxPool, a), {&x}), {1, 1, 1, 1}, {5});
    a.emplace_back("ceil_mode", int64_t{1});
    expect_tensor(eval(make_node(Op::kMaxPool, a), {&x}), {1, 1, 2, 2}, {5, 6, 8, 9});
}

TEST(Reference, ResizeNearestAsymmetricFloorX2) {
    // YOLOv8's Upsample: each pixel becomes a 2x2 block.
    auto out = run_one(T({1, 1, 2, 2}, {1, 2, 3, 4}), [](GraphBuilder& b, int x) {
        b.output(b.node(
            Op::kResize, {x, -1, b.floats({4}, {1, 1, 2, 2})},
            {{"coordinate_transformation_mode", std::string("asymmetric")}, {"nearest_mode", std::string("floor")}}));
    });
    expect_tensor(out.at(0), {1, 1, 4, 4}, {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
}

TEST(Reference, ResizeNearestAsymmetricFloorX1_5) {
    // Output x = o / 1.5 floored: 0, 0.67, 1.33 -> 0, 0, 1.
    auto out = run_one(T({1, 1, 1, 2}, {7, 9}), [](GraphBuilder& b, int x) {
        b.output(b.node(
            Op::kResize, {x, -1, b.floats({4}, {1, 1, 1, 1.5f})},
            {{"coordinate_transformation_mode", std::string("asymmetric")}, {"nearest_mode", std::string("floor")}}));
    });
    expect_tensor(out.at(0), {1, 1, 1, 3}, {7, 7, 9});
}

TEST(Reference, ResizeNearestHalfPixelDefaults) {
    // ONNX defaults half_pixel + round_prefer_floor: x = (o + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, ...
    // rounds to 0, 0, 1, 1, 2, 2 (0.25 -> 0 and 0.75 -> 1; ties would go down).
    auto up = run_one(T({1, 1, 1, 3}, {10, 20, 30}), [](GraphBuilder& b, int x) {
        b.output(b.node(Op::kResize, {x, -1, b.floats({4}, {1, 1, 1, 2})}));
    });
    expect_tensor(up.at(0), {1, 1, 1, 6}, {10, 10, 20, 20, 30, 30});
    // Downscale by sizes: x = (o + 0.5) * 2 - 0.5 = 0.5, 2.5 -> round_prefer_floor -> 0, 2.
    auto down = run_one(T({1, 1, 1, 4}, {1, 2, 3, 4}), [](GraphBuilder& b, int x) {
        b.output(b.node(Op::kResize, {x, -1, -1, b.ints({1, 1, 1, 2})}));
    });
    expect_tensor(down.at(0), {1, 1, 1, 2}, {1, 3});
}

TEST(Reference, SoftmaxAxis1) {
    Tensor x = T({1, 3}, {1, 2, 3});
    expect_tensor(eval(make_node(Op::kSoftmax, {{"axis", int64_t{1}}}), {&x}), {1, 3},
                  {0.09003057f, 0.24472847f, 0.66524096f});
    // On [1, 2, 1, 2], axis 1 normalises each spatial position separately: (0, 0) and (1, 3).
    Tensor y = T({1, 2, 1, 2}, {0, 1, 0, 3});
    expect_tensor(eval(make_node(Op::kSoftmax, {{"axis", int64_t{1}}}), {&y}), {1, 2, 1, 2},
                  {0.5f, 0.11920292f, 0.5f, 0.88079708f});
}

TEST(Reference, SoftmaxLargeLogitsDoNotOverflow) {
    Tensor x = T({1, 2}, {1000, 1000});
    expect_tensor(eval(make_node(Op::kSoftmax, {{"axis", int64_t{1}}}), {&x}), {1, 2}, {0.5f, 0.5f});
}

TEST(Reference, SoftmaxCoerce2dNormalisesTrailingDims) {
    // Opset < 13 semantics: flatten from axis on; all four entries share one normaliser.
    Tensor x = T({1, 2, 2}, {0, 0, 0, 0});
    expect_tensor(eval(make_node(Op::kSoftmax, {{"axis", int64_t{1}}, {"coerce_2d", int64_t{1}}}), {&x}), {1, 2, 2},
                  {0.25f, 0.25f, 0.25f, 0.25f});
}

TEST(Reference, GemmTransBWithBias) {
    // A [2,3] * B^T (B [2,3]) = [[-2, 4], [-2, 13]]; + C [2] broadcast over rows.
    Tensor a = T({2, 3}, {1, 2, 3, 4, 5, 6}), b = T({2, 3}, {1, 0, -1, 2, 1, 0}), c = T({2}, {10, 20});
    expect_tensor(eval(make_node(Op::kGemm, {{"transB", int64_t{1}}}), {&a, &b, &c}), {2, 2}, {8, 24, 8, 33});
    expect_tensor(eval(make_node(Op::kGemm, {{"transB", int64_t{1}}, {"alpha", 2.f}, {"beta", 0.5f}}), {&a, &b, &c}),
                  {2, 2}, {1, 18, 1, 36});
}

TEST(Reference, GemmNoTranspose) {
    Tensor a = T({1, 2}, {1, 2}), b = T({2, 3}, {1, 2, 3, 4, 5, 6});
    expect_tensor(eval(make_node(Op::kGemm), {&a, &b}), {1, 3}, {9, 12, 15});
}

TEST(Reference, SliceNegativeIndices) {
    // starts -4, ends -1 on a length-5 axis: columns 1..3; axes -1 is the last axis.
    auto out = run_one(T({2, 5}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}), [](GraphBuilder& b, int x) {
        b.output(b.node(Op::kSlice, {x, b.ints({-4}), b.ints({-1}), b.ints({-1})}));
    });
    expect_tensor(out.at(0), {2, 3}, {1, 2, 3, 6, 7, 8});
}

TEST(Reference, SliceClampsAndSteps) {
    // ends = INT64_MAX means "to the end"; step 2 takes 0, 2, 4. A start before the axis clamps to 0.
    Tensor x = T({2, 5}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    auto stepped = run_one(x, [](GraphBuilder& b, int in) {
        b.output(b.node(Op::kSlice, {in, b.ints({0}), b.ints({INT64_MAX}), b.ints({1}), b.ints({2})}));
    });
    expect_tensor(stepped.at(0), {2, 3}, {0, 2, 4, 5, 7, 9});
    auto clamped = run_one(x, [](GraphBuilder& b, int in) {
        b.output(b.node(Op::kSlice, {in, b.ints({-100, 1}), b.ints({2, 100}), b.ints({1, 0})}));
    });
    expect_tensor(clamped.at(0), {1, 2}, {5, 6});
}

TEST(Reference, SplitDefaultEqualSplit) {
    auto out = run_one(T({1, 6}, {0, 1, 2, 3, 4, 5}), [](GraphBuilder& b, int x) {
        for (int o : b.node_n(Op::kSplit, {x}, 3, {{"axis", int64_t{1}}})) b.output(o);
    });
    ASSERT_EQ(out.size(), 3u);
    expect_tensor(out[0], {1, 2}, {0, 1});
    expect_tensor(out[1], {1, 2}, {2, 3});
    expect_tensor(out[2], {1, 2}, {4, 5});
}

TEST(Reference, SplitDefaultUnevenLastChunkSmaller) {
    // ONNX (opset 18): ceil(5 / 2) = 3, so the chunks are 3 and 2.
    auto out = run_one(T({1, 5}, {0, 1, 2, 3, 4}), [](GraphBuilder& b, int x) {
        for (int o : b.node_n(Op::kSplit, {x}, 2, {{"axis", int64_t{-1}}})) b.output(o);
    });
    ASSERT_EQ(out.size(), 2u);
    expect_tensor(out[0], {1, 3}, {0, 1, 2});
    expect_tensor(out[1], {1, 2}, {3, 4});
}

TEST(Reference, SplitWithSizesInput) {
    auto out = run_one(T({1, 2, 3}, {0, 1, 2, 3, 4, 5}), [](GraphBuilder& b, int x) {
        for (int o : b.node_n(Op::kSplit, {x, b.ints({1, 2})}, 2, {{"axis", int64_t{2}}})) b.output(o);
    });
    ASSERT_EQ(out.size(), 2u);
    expect_tensor(out[0], {1, 2, 1}, {0, 3});
    expect_tensor(out[1], {1, 2, 2}, {1, 2, 4, 5});
}

TEST(Reference, BroadcastAddAndScalarDiv) {
    Tensor a = T({2, 3}, {1, 2, 3, 4, 5, 6}), b = T({3}, {10, 20, 30}), s = T({}, {2});
    expect_tensor(eval(make_node(Op::kAdd), {&a, &b}), {2, 3}, {11, 22, 33, 14, 25, 36});
    expect_tensor(eval(make_node(Op::kDiv), {&a, &s}), {2, 3}, {0.5f, 1, 1.5f, 2, 2.5f, 3});
    Tensor col = T({2, 1}, {100, 200});
    expect_tensor(eval(make_node(Op::kSub), {&col, &a}), {2, 3}, {99, 98, 97, 196, 195, 194});
}

TEST(Reference, ConcatAxis1) {
    Tensor a = T({1, 1, 2}, {1, 2}), b = T({1, 2, 2}, {3, 4, 5, 6});
    ir::Node n = make_node(Op::kConcat, {{"axis", int64_t{1}}});
    expect_tensor(eval(n, {&a, &b}), {1, 3, 2}, {1, 2, 3, 4, 5, 6});
    ir::Node last = make_node(Op::kConcat, {{"axis", int64_t{2}}});
    Tensor c = T({1, 1, 1}, {9});
    expect_tensor(eval(last, {&a, &c}), {1, 1, 3}, {1, 2, 9});
}

TEST(Reference, GlobalAveragePoolAndBatchNorm) {
    Tensor x = T({1, 2, 1, 2}, {1, 3, 10, 20});
    expect_tensor(eval(make_node(Op::kGlobalAveragePool), {&x}), {1, 2, 1, 1}, {2, 15});
    // (x - mean) / sqrt(var + eps) * gamma + beta with var + eps = 4: c0 (0, 2) / 2; c1 (0, 10) / 2 * 2 + 1.
    Tensor g = T({2}, {1, 2}), be = T({2}, {0, 1}), m = T({2}, {1, 10}), v = T({2}, {3.5f, 3.5f});
    expect_tensor(eval(make_node(Op::kBatchNormalization, {{"epsilon", 0.5f}}), {&x, &g, &be, &m, &v}), {1, 2, 1, 2},
                  {0, 1, 1, 11}, 1e-5f);
}

}  // namespace
}  // namespace kestrel::test
