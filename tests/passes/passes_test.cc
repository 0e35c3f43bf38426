// Each pass on hand-built graphs: a positive case checks the structure after the rewrite (node
// count, ops, attributes, which value feeds which input) and that the graph still computes the same
// outputs (reference::run_graph before vs after, relative L2 <= 1e-5); negative cases check that
// every precondition of a rewrite is honoured (the graph is left unchanged).
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "common/graph_builder.h"
#include "core/error.h"

namespace kestrel::test {
namespace {

using ir::Op;

constexpr double kTol = 1e-5;

using PassFn = bool (*)(ir::Graph&);

struct PassResult {
    ir::Graph before;  // canonical (shapes inferred), as the pass saw it
    ir::Graph after;   // compacted and verified
    bool changed = false;
};

// Canonicalises `g` (fold_constants: the fusions read inferred shapes), then runs `pass` on a copy.
PassResult run_pass(ir::Graph g, PassFn pass) {
    PassResult r;
    r.before = prepare(std::move(g));
    r.after = r.before;
    r.changed = pass(r.after);
    r.after.compact();
    ir::verify(r.after);  // every pass must leave a valid graph
    return r;
}

// Same outputs before and after on seeded random inputs.
void expect_equivalent(const ir::Graph& before, const ir::Graph& after, Rng& rng, double tol = kTol) {
    auto in = random_inputs(before, rng);
    auto want = reference::run_graph(before, in);
    auto got = reference::run_graph(after, in);
    EXPECT_TRUE(all_close(got, want, tol));
}

class PassTest : public ::testing::Test {
   protected:
    void SetUp() override { trace_ = std::make_unique<::testing::ScopedTrace>(__FILE__, __LINE__, rng_.trace()); }
    Rng rng_;
    GraphBuilder b_{rng_};
    std::unique_ptr<::testing::ScopedTrace> trace_;
};

// ---------------------------------------------------------------------------------------------
// fold_constants

class FoldConstants : public PassTest {};

TEST_F(FoldConstants, ShapeGatherUnsqueezeConcatReshapeFoldsToConstantShape) {
    // The dynamic-export idiom: reshape x to [N, C, -1] with N and C read from Shape(x).
    int x = b_.input({1, 16, 4, 5});
    int shape = b_.node(Op::kShape, {x});
    auto dim = [&](int64_t i) {
        int g = b_.node(Op::kGather, {shape, b_.constant(ir::Tensor::from_int64s({}, {i}))}, {{"axis", int64_t{0}}});
        return b_.node(Op::kUnsqueeze, {g, b_.ints({0})});
    };
    int spec = b_.node(Op::kConcat, {dim(0), dim(1), b_.ints({-1})}, {{"axis", int64_t{0}}});
    int y = b_.node(Op::kReshape, {x, spec});
    b_.output(y);
    ir::Graph g = b_.graph();

    EXPECT_TRUE(passes::fold_constants(g));
    g.compact();
    ir::verify(g);
    ASSERT_EQ(live_ops(g), std::vector<Op>{Op::kReshape});
    ASSERT_TRUE(g.is_constant(spec));
    EXPECT_EQ(g.value(spec).constant->to_int64s(), (Ints{1, 16, -1}));
    // The Reshape is canonical: the shape is an attribute, the shape input is dropped.
    const ir::Node& r = g.nodes[0];
    EXPECT_EQ(r.inputs, std::vector<int>{x});
    EXPECT_EQ(r.attrs.get_ints("shape"), (Ints{1, 16, 20}));
    EXPECT_EQ(g.value(y).shape, (Shape{1, 16, 20}));

    // Numerically a reshape: the data comes through unchanged.
    auto in = random_inputs(g, rng_);
    auto out = reference::run_graph(g, in);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].shape, (Shape{1, 16, 20}));
    EXPECT_EQ(out[0].bytes, in[0].bytes);
}

TEST_F(FoldConstants, ConstantArithmeticFoldsAndMatches) {
    int x = b_.input({1, 8, 3, 3});
    int s = b_.node(Op::kAdd, {b_.random_constant({1, 8, 1, 1}), b_.random_constant({1})});
    int m = b_.node(Op::kMul, {x, b_.node(Op::kSigmoid, {s})});
    b_.output(m);
    ir::Graph raw = b_.graph();  // nothing here needs canonicalising, so the raw graph is runnable
    ir::Graph g = raw;
    EXPECT_TRUE(passes::fold_constants(g));
    g.compact();
    ir::verify(g);
    EXPECT_EQ(live_ops(g), std::vector<Op>{Op::kMul});
    EXPECT_TRUE(g.is_constant(g.nodes[0].inputs[1]));
    expect_equivalent(raw, g, rng_);
}

TEST_F(FoldConstants, LeavesImageComputationsAndInfersTheirShapes) {
    int x = b_.input({1, 8, 6, 6});
    int y = b_.conv(x, 8, 16, {.k = 3, .stride = 2, .pad = 1});
    b_.output(b_.node(Op::kSigmoid, {y}));
    ir::Graph g = b_.graph();
    EXPECT_FALSE(passes::fold_constants(g));
    EXPECT_EQ(live_ops(g), (std::vector<Op>{Op::kConv, Op::kSigmoid}));
    EXPECT_TRUE(g.value(y).shape_known);
    EXPECT_EQ(g.value(y).shape, (Shape{1, 16, 3, 3}));
}

TEST_F(FoldConstants, ShapeOpOnImageDataIsRejected) {
    // Gather is a shape-only op: on image data it must fail loudly, naming the node.
    int x = b_.input({1, 8, 4, 4});
    b_.output(b_.node(Op::kGather, {x, b_.ints({0})}, {{"axis", int64_t{1}}}, "gather_on_image"));
    ir::Graph g = b_.graph();
    try {
        passes::fold_constants(g);
        FAIL() << "expected kestrel::Error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("gather_on_image"), std::string::npos) << e.what();
    }
}

// ---------------------------------------------------------------------------------------------
// eliminate_identity

class EliminateIdentity : public PassTest {};

TEST_F(EliminateIdentity, ReadersReadTheSource) {
    int x = b_.input({1, 8, 4, 4});
    int i1 = b_.node(Op::kIdentity, {x});
    int i2 = b_.node(Op::kIdentity, {i1});  // a chain goes in one run
    b_.output(b_.node(Op::kSigmoid, {i2}));
    auto r = run_pass(b_.graph(), passes::eliminate_identity);
    EXPECT_TRUE(r.changed);
    ASSERT_EQ(live_ops(r.after), std::vector<Op>{Op::kSigmoid});
    EXPECT_EQ(r.after.nodes[0].inputs, std::vector<int>{x});
    expect_equivalent(r.before, r.after, rng_);
}

TEST_F(EliminateIdentity, IdentityIntoGraphOutputKeepsTheOutputValue) {
    int x = b_.input({1, 8, 4, 4});
    int s = b_.node(Op::kSigmoid, {x});
    int y = b_.node(Op::kIdentity, {s});
    b_.output(y);
    b_.output(b_.node(Op::kRelu, {s}));  // another reader of the renamed value
    auto r = run_pass(b_.graph(), passes::eliminate_identity);
    EXPECT_TRUE(r.changed);
    ASSERT_EQ(live_ops(r.after), (std::vector<Op>{Op::kSigmoid, Op::kRelu}));
    // The producer writes the named output directly; the graph's outputs are unchanged.
    EXPECT_EQ(r.after.nodes[0].outputs, std::vector<int>{y});
    EXPECT_EQ(r.after.nodes[1].inputs, std::vector<int>{y});
    EXPECT_EQ(r.after.outputs, r.before.outputs);
    expect_equivalent(r.before, r.after, rng_);
}

TEST_F(EliminateIdentity, GraphInputToGraphOutputPassThroughIsKept) {
    // The only way to express "output = input"; removing it would leave the output unproduced.
    int x = b_.input({1, 8, 4, 4});
    b_.output(b_.node(Op::kIdentity, {x}));
    ir::Graph g = prepare(b_.graph());
    ir::Graph after = g;
    bool changed = false;
    ASSERT_NO_THROW({
        changed = passes::eliminate_identity(after);
        after.compact();
        ir::verify(after);
    });
    EXPECT_FALSE(changed);
    EXPECT_EQ(live_ops(after), std::vector<Op>{Op::kIdentity});
}

TEST_F(EliminateIdentity, ConstantToGraphOutputIsKept) {
    int x = b_.input({1, 4});
    b_.output(b_.node(Op::kSigmoid, {x}));
    // Built after prepare: fold_constants would otherwise fold the Identity of a constant itself.
    ir::Graph g = prepare(b_.graph());
    int c = g.add_constant("c", ir::Tensor::from_floats({2}, {1.f, 2.f}));
    ir::Value v;
    v.name = "c_out";
    v.shape = {2};
    v.shape_known = true;
    int y = g.add_value(v);
    ir::Node n;
    n.op = Op::kIdentity;
    n.name = "const_identity";
    n.inputs = {c};
    n.outputs = {y};
    g.nodes.push_back(n);
    g.outputs.push_back(y);
    EXPECT_FALSE(passes::eliminate_identity(g));
    EXPECT_EQ(live_ops(g), (std::vector<Op>{Op::kSigmoid, Op::kIdentity}));
}

// ---------------------------------------------------------------------------------------------
// fuse_conv_bn

class FuseConvBn : public PassTest {
   protected:
    int bn(int y, int64_t c) {
        return b_.node(Op::kBatchNormalization,
                       {y, b_.random_constant({c}, 0.5f, 1.5f), b_.random_constant({c}), b_.random_constant({c}),
                        b_.random_constant({c}, 0.2f, 2.f)},
                       {{"epsilon", 1e-3f}});
    }
};

TEST_F(FuseConvBn, FoldsIntoWeightsAndBias) {
    for (bool bias : {true, false}) {
        SCOPED_TRACE(bias ? "conv with bias" : "conv without bias");
        Rng rng;
        GraphBuilder b(rng);
        int x = b.input({1, 8, 6, 6});
        int y = b.conv(x, 8, 16, {.k = 3, .pad = 1, .bias = bias});
        int out = b.node(Op::kBatchNormalization,
                         {y, b.random_constant({16}, 0.5f, 1.5f), b.random_constant({16}), b.random_constant({16}),
                          b.random_constant({16}, 0.2f, 2.f)},
                         {{"epsilon", 1e-3f}});
        b.output(out);
        auto r = run_pass(b.graph(), passes::fuse_conv_bn);
        EXPECT_TRUE(r.changed);
        ASSERT_EQ(live_ops(r.after), std::vector<Op>{Op::kConv});
        const ir::Node& conv = r.after.nodes[0];
        ASSERT_EQ(conv.inputs.size(), 3u);
        EXPECT_EQ(conv.inputs[0], x);
        EXPECT_TRUE(r.after.is_constant(conv.inputs[1]));
        EXPECT_TRUE(r.after.is_constant(conv.inputs[2]));
        EXPECT_EQ(r.after.value(conv.inputs[2]).shape, (Shape{16}));
        EXPECT_EQ(conv.outputs, std::vector<int>{out});
        expect_equivalent(r.before, r.after, rng);
    }
}

TEST_F(FuseConvBn, ConvOutputWithSecondConsumerIsNotFused) {
    int y = b_.conv(b_.input({1, 8, 6, 6}), 8, 16, {.k = 1});
    b_.output(bn(y, 16));
    b_.output(b_.node(Op::kSigmoid, {y}));
    auto r = run_pass(b_.graph(), passes::fuse_conv_bn);
    EXPECT_FALSE(r.changed);
    EXPECT_EQ(live_ops(r.after), (std::vector<Op>{Op::kConv, Op::kBatchNormalization, Op::kSigmoid}));
}

TEST_F(FuseConvBn, ConvOutputThatIsAGraphOutputIsNotFused) {
    int y = b_.conv(b_.input({1, 8, 6, 6}), 8, 16, {.k = 1});
    b_.output(y);
    b_.output(bn(y, 16));
    auto r = run_pass(b_.graph(), passes::fuse_conv_bn);
    EXPECT_FALSE(r.changed);
    EXPECT_EQ(r.after.live_node_count(), 2u);
}

TEST_F(FuseConvBn, ConvWithEpilogueIsNotFused) {
    // BN after the activation (or after a residual add) is not a per-channel affine of the conv sum.
    int x = b_.input({1, 16, 6, 6});
    int act = b_.conv(x, 16, 16, {.k = 1, .activation = "silu"});
    int res = b_.conv(x, 16, 16, {.k = 1, .residual = x});
    b_.output(bn(act, 16));
    b_.output(bn(res, 16));
    auto r = run_pass(b_.graph(), passes::fuse_conv_bn);
    EXPECT_FALSE(r.changed);
    EXPECT_EQ(r.after.live_node_count(), 4u);
}

TEST_F(FuseConvBn, BnAfterNonConvOrWithRuntimeParametersIsNotFused) {
    int x = b_.input({1, 8, 6, 6});
    b_.output(bn(b_.node(Op::kSigmoid, {x}), 8));
    int y = b_.conv(x, 8, 8, {.k = 1});
    int scale = b_.input({8});  // a runtime parameter cannot be folded into weights
    b_.output(b_.node(Op::kBatchNormalization, {y, scale, b_.random_constant({8}), b_.random_constant({8}),
                                                b_.random_constant({8}, 0.5f, 1.f)}));
    auto r = run_pass(b_.graph(), passes::fuse_conv_bn);
    EXPECT_FALSE(r.changed);
    EXPECT_EQ(r.after.live_node_count(), 4u);
}

// ---------------------------------------------------------------------------------------------
// fuse_conv_silu

class FuseConvSilu : public PassTest {};

TEST_F(FuseConvSilu, MulOfConvAndSigmoidBecomesActivation) {
    for (bool sigmoid_first : {false, true}) {
        SCOPED_TRACE(sigmoid_first ? "Mul(Sigmoid(y), y)" : "Mul(y, Sigmoid(y))");
        Rng rng;
        GraphBuilder b(rng);
        int x = b.input({1, 8, 6, 6});
        int y = b.conv(x, 8, 16, {.k = 3, .pad = 1});
        int s = b.node(Op::kSigmoid, {y});
        int m = b.node(Op::kMul, sigmoid_first ? std::vector<int>{s, y} : std::vector<int>{y, s});
        b.output(m);
        auto r = run_pass(b.graph(), passes::fuse_conv_silu);
        EXPECT_TRUE(r.changed);
        ASSERT_EQ(live_ops(r.after), std::vector<Op>{Op::kConv});
        const ir::Node& conv = r.after.nodes[0];
        EXPECT_EQ(conv.attrs.get_string("activation", ""), "silu");
        EXPECT_EQ(conv.outputs, std::vector<int>{m});
        EXPECT_EQ(conv.inputs.size(), 3u);
        expect_equivalent(r.before, r.after, rng);
    }
}

TEST_F(FuseConvSilu, ConvOutputWithThirdConsumerIsNotFused) {
    int y = b_.conv(b_.input({1, 8, 6, 6}), 8, 16, {.k = 1});
    b_.output(b_.node(Op::kMul, {y, b_.node(Op::kSigmoid, {y})}));
    b_.output(b_.node(Op::kRelu, {y}));
    auto r = run_pass(b_.graph(), passes::fuse_conv_silu);
    EXPECT_FALSE(r.changed);
    EXPECT_EQ(r.after.live_node_count(), 4u);
}

TEST_F(FuseConvSilu, ConvOutputThatIsAGraphOutputIsNotFused) {
    int y = b_.conv(b_.input({1, 8, 6, 6}), 8, 16, {.k = 1});
    b_.output(y);
    b_.output(b_.node(Op::kMul, {y, b_.node(Op::kSigmoid, {y})}));
    auto r = run_pass(b_.graph(), passes::fuse_conv_silu);
    EXPECT_FALSE(r.changed);
}

TEST_F(FuseConvSilu, SigmoidWithSecondConsumerIsNotFused) {
    int y = b_.conv(b_.input({1, 8, 6, 6}), 8, 16, {.k = 1});
    int s = b_.node(Op::kSigmoid, {y});
    b_.output(b_.node(Op::kMul, {y, s}));
    b_.output(b_.node(Op::kRelu, {s}));
    auto r = run_pass(b_.graph(), passes::fuse_conv_silu);
    EXPECT_FALSE(r.changed);
    EXPECT_EQ(r.after.live_node_count(), 4u);
}

TEST_F(FuseConvSilu, SigmoidOfAnotherValueIsNotFused) {
    int x = b_.input({1, 16, 6, 6});
    int y = b_.conv(x, 16, 16, {.k = 1});
    b_.output(b_.node(Op::kMul, {y, b_.node(Op::kSigmoid, {x})}));
    auto r = run_pass(b_.graph(), passes::fuse_conv_silu);
    EXPECT_FALSE(r.changed);
}

TEST_F(FuseConvSilu, ConvWithActivationOrResidualIsNotFused) {
    // A second SiLU on top of the first, or SiLU after the residual add: neither is the epilogue order.
    int x = b_.input({1, 16, 6, 6});
    int a = b_.conv(x, 16, 16, {.k = 1, .activation = "silu"});
    int r = b_.conv(x, 16, 16, {.k = 1, .residual = x});
    b_.output(b_.node(Op::kMul, {a, b_.node(Op::kSigmoid, {a})}));
    b_.output(b_.node(Op::kMul, {r, b_.node(Op::kSigmoid, {r})}));
    auto res = run_pass(b_.graph(), passes::fuse_conv_silu);
    EXPECT_FALSE(res.changed);
    EXPECT_EQ(res.after.live_node_count(), 6u);
}

// ---------------------------------------------------------------------------------------------
// fuse_conv_residual_add

class FuseConvResidualAdd : public PassTest {};

TEST_F(FuseConvResidualAdd, AddOfEarlierValueAndConvBecomesFourthInput) {
    for (int variant = 0; variant < 3; ++variant) {
        // 0: Add(x, conv) with bias; 1: Add(conv, x) with silu; 2: conv without bias.
        SCOPED_TRACE("variant " + std::to_string(variant));
        Rng rng;
        GraphBuilder b(rng);
        int x = b.input({1, 16, 6, 6});
        int r = b.node(Op::kSigmoid, {x});
        int y = b.conv(r, 16, 16, {.k = 3, .pad = 1, .bias = variant != 2, .activation = variant == 1 ? "silu" : ""});
        int add = b.node(Op::kAdd, variant == 1 ? std::vector<int>{y, r} : std::vector<int>{r, y});
        b.output(add);
        auto res = run_pass(b.graph(), passes::fuse_conv_residual_add);
        EXPECT_TRUE(res.changed);
        ASSERT_EQ(live_ops(res.after), (std::vector<Op>{Op::kSigmoid, Op::kConv}));
        const ir::Node& conv = res.after.nodes[1];
        ASSERT_EQ(conv.inputs.size(), 4u);
        EXPECT_EQ(conv.inputs[0], r);
        EXPECT_EQ(conv.inputs[2] >= 0, variant != 2);
        EXPECT_EQ(conv.inputs[3], r);
        EXPECT_EQ(conv.outputs, std::vector<int>{add});
        EXPECT_EQ(conv.attrs.get_string("activation", ""), variant == 1 ? "silu" : "");
        expect_equivalent(res.before, res.after, rng);
    }
}

TEST_F(FuseConvResidualAdd, ConvOutputWithSecondConsumerIsNotFused) {
    int x = b_.input({1, 16, 6, 6});
    int y = b_.conv(x, 16, 16, {.k = 1});
    b_.output(b_.node(Op::kAdd, {x, y}));
    b_.output(b_.node(Op::kSigmoid, {y}));
    auto r = run_pass(b_.graph(), passes::fuse_conv_residual_add);
    EXPECT_FALSE(r.changed);
    EXPECT_EQ(r.after.live_node_count(), 3u);
}

TEST_F(FuseConvResidualAdd, BroadcastAddIsNotFused) {
    int x = b_.input({1, 16, 6, 6});
    int y = b_.conv(x, 16, 16, {.k = 1});
    int per_channel = b_.node(Op::kGlobalAveragePool, {x});  // [1, 16, 1, 1], computed before the conv
    b_.output(b_.node(Op::kAdd, {y, per_channel}));
    auto r = run_pass(b_.graph(), passes::fuse_conv_residual_add);
    EXPECT_FALSE(r.changed);
    EXPECT_EQ(live_ops(r.after), (std::vector<Op>{Op::kConv, Op::kGlobalAveragePool, Op::kAdd}));
}

TEST_F(FuseConvResidualAdd, ResidualProducedAfterTheConvIsNotFused) {
    // The conv runs first, so its epilogue cannot read a value computed later.
    int x = b_.input({1, 16, 6, 6});
    int y = b_.conv(x, 16, 16, {.k = 1});
    int later = b_.node(Op::kSigmoid, {x});
    b_.output(b_.node(Op::kAdd, {y, later}));
    auto r = run_pass(b_.graph(), passes::fuse_conv_residual_add);
    EXPECT_FALSE(r.changed);
    EXPECT_EQ(r.after.live_node_count(), 3u);
}

TEST_F(FuseConvResidualAdd, ConvAddedToItselfOrAlreadyResidualIsNotFused) {
    int x = b_.input({1, 16, 6, 6});
    int y = b_.conv(x, 16, 16, {.k = 1});
    b_.output(b_.node(Op::kAdd, {y, y}));
    int z = b_.conv(x, 16, 16, {.k = 1, .residual = x});
    b_.output(b_.node(Op::kAdd, {x, z}));
    auto r = run_pass(b_.graph(), passes::fuse_conv_residual_add);
    EXPECT_FALSE(r.changed);
    EXPECT_EQ(r.after.live_node_count(), 4u);
}

TEST_F(FuseConvResidualAdd, ConvOutputThatIsAGraphOutputIsNotFused) {
    int x = b_.input({1, 16, 6, 6});
    int y = b_.conv(x, 16, 16, {.k = 1});
    b_.output(y);
    b_.output(b_.node(Op::kAdd, {x, y}));
    auto r = run_pass(b_.graph(), passes::fuse_conv_residual_add);
    EXPECT_FALSE(r.changed);
}

// ---------------------------------------------------------------------------------------------
// eliminate_dead_nodes

class EliminateDeadNodes : public PassTest {};

TEST_F(EliminateDeadNodes, RemovesUnreadChainsInOneRun) {
    int x = b_.input({1, 8, 4, 4});
    int kept = b_.node(Op::kSigmoid, {x});
    b_.output(kept);
    int dead1 = b_.node(Op::kRelu, {x});
    b_.node(Op::kSigmoid, {b_.conv(dead1, 8, 8, {.k = 1})});
    auto r = run_pass(b_.graph(), passes::eliminate_dead_nodes);
    EXPECT_TRUE(r.changed);
    ASSERT_EQ(live_ops(r.after), std::vector<Op>{Op::kSigmoid});
    EXPECT_EQ(r.after.nodes[0].outputs, std::vector<int>{kept});
    expect_equivalent(r.before, r.after, rng_);
}

TEST_F(EliminateDeadNodes, NodeWithOneReadOutputIsKept) {
    int x = b_.input({1, 16, 4, 4});
    auto parts = b_.node_n(Op::kSplit, {x, b_.ints({8, 8})}, 2, {{"axis", int64_t{1}}});
    b_.output(b_.node(Op::kSigmoid, {parts[1]}));  // parts[0] is never read
    auto r = run_pass(b_.graph(), passes::eliminate_dead_nodes);
    EXPECT_FALSE(r.changed);
    EXPECT_EQ(live_ops(r.after), (std::vector<Op>{Op::kSplit, Op::kSigmoid}));
}

TEST_F(EliminateDeadNodes, GraphOutputsAreKeptEvenWithoutReaders) {
    int x = b_.input({1, 8, 4, 4});
    int a = b_.node(Op::kSigmoid, {x});
    b_.output(a);
    b_.output(b_.node(Op::kRelu, {a}));
    auto r = run_pass(b_.graph(), passes::eliminate_dead_nodes);
    EXPECT_FALSE(r.changed);
    EXPECT_EQ(r.after.live_node_count(), 2u);
}

// ---------------------------------------------------------------------------------------------
// The whole pipeline on a YOLOv8 Bottleneck as exported: Conv+BN+SiLU twice plus the shortcut
// becomes two convs, the second with SiLU and the residual in its epilogue.

TEST_F(PassTest, PipelineFusesExportedBottleneck) {
    int x = b_.input({1, 16, 8, 8});
    auto cbs = [&](int in) {
        int c = b_.conv(in, 16, 16, {.k = 3, .pad = 1, .bias = false});
        int bn = b_.node(Op::kBatchNormalization, {c, b_.random_constant({16}, 0.5f, 1.5f), b_.random_constant({16}),
                                                   b_.random_constant({16}), b_.random_constant({16}, 0.5f, 2.f)});
        int id = b_.node(Op::kIdentity, {bn});
        return b_.node(Op::kMul, {id, b_.node(Op::kSigmoid, {id})});
    };
    b_.output(b_.node(Op::kAdd, {x, cbs(cbs(x))}));
    ir::Graph before = prepare(b_.graph());
    ir::Graph after = before;
    passes::run_pipeline(after);
    ASSERT_EQ(live_ops(after), (std::vector<Op>{Op::kConv, Op::kConv}));
    EXPECT_EQ(after.nodes[0].attrs.get_string("activation", ""), "silu");
    EXPECT_EQ(after.nodes[0].inputs.size(), 3u);
    EXPECT_EQ(after.nodes[1].attrs.get_string("activation", ""), "silu");
    ASSERT_EQ(after.nodes[1].inputs.size(), 4u);
    EXPECT_EQ(after.nodes[1].inputs[3], x);
    EXPECT_EQ(after.nodes[1].outputs, before.outputs);
    expect_equivalent(before, after, rng_);
}

}  // namespace
}  // namespace kestrel::test
