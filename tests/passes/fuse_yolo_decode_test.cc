// fuse_yolo_decode on hand-built Detect heads (both exported forms, with and without extra branches
// after the decode) and on the real models: the fused graph is one YoloDecode in place of the
// decode and computes the same outputs (reference::run_graph, relative L2 <= 1e-5); any change to
// an op, axis, size or constant, or an intermediate read elsewhere, leaves the graph unchanged.
// The pass only runs when PipelineOptions asks for it (CUDA engines).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/graph_builder.h"
#ifdef KESTREL_SOURCE_DIR
#include "engine/engine_file.h"
#include "onnx/model_importer.h"
#endif

namespace kestrel::test {
namespace {

using ir::Op;

constexpr double kTol = 1e-5;

size_t idx(int v) { return static_cast<size_t>(v); }

// A Detect head as Ultralytics exports it (see the pass's file comment), with knobs that break it.
struct HeadSpec {
    std::vector<std::pair<int64_t, int64_t>> levels = {{8, 8}, {4, 4}, {2, 2}};
    std::vector<float> strides = {8, 16, 32};
    int64_t reg_max = 16, nc = 5;
    bool split_form = false;      // opset-20 form: per-level box/class reshapes, two concats, Slices
    bool cls_last = false;        // split form: the class branch's nodes after the box branch's
    int64_t extra = 0;            // channels of a keypoint/mask branch concatenated after the decode
    float div = 2.f;              // the Div constant of the box centre
    bool conv_bias = false;       // a bias on the DFL conv
    bool reader_of_dist = false;  // the DFL output [1, 4, A] also read elsewhere (a graph output)
    bool other_anchors = false;   // the Add's anchors differ from the Sub's
    std::vector<int64_t> perm = {0, 2, 1, 3};
    int64_t softmax_axis = 1;
};

struct Head {
    ir::Graph graph;
    std::vector<int> maps;  // level maps (graph inputs)
    int anchors = -1, strides = -1, dfl = -1, out = -1;
    int64_t anchor_count = 0;
};

Head build_head(Rng& rng, const HeadSpec& s) {
    GraphBuilder b(rng);
    Head h;
    const int64_t r = s.reg_max, nc = s.nc, c = 4 * r + nc;
    std::vector<float> ax, ay, st;
    for (size_t l = 0; l < s.levels.size(); ++l) {
        auto [hh, ww] = s.levels[l];
        for (int64_t y = 0; y < hh; ++y)
            for (int64_t x = 0; x < ww; ++x) {
                ax.push_back(static_cast<float>(x) + 0.5f);
                ay.push_back(static_cast<float>(y) + 0.5f);
                st.push_back(s.strides[l]);
            }
    }
    const int64_t a = static_cast<int64_t>(st.size());
    h.anchor_count = a;
    std::vector<float> anchors = ax;
    anchors.insert(anchors.end(), ay.begin(), ay.end());
    h.anchors = b.floats({1, 2, a}, anchors, "anchors");
    h.strides = b.floats({1, a}, st, "strides");
    // Not arange: the op must use the weights as given.
    std::vector<float> w;
    for (int64_t k = 0; k < r; ++k) w.push_back(static_cast<float>(k) * 0.97f + rng.uniform(-0.05f, 0.05f));
    h.dfl = b.floats({1, r, 1, 1}, w, "dfl.weight");

    int box = -1, cls = -1;
    std::vector<int> box_parts, parts;
    for (auto [hh, ww] : s.levels) {
        if (s.split_form) {
            int bm = b.input({1, 4 * r, hh, ww}), cm = b.input({1, nc, hh, ww});
            h.maps.push_back(bm);
            h.maps.push_back(cm);
            box_parts.push_back(b.node(Op::kReshape, {bm, b.ints({1, 4 * r, -1})}));
        } else {
            int x = b.input({1, c, hh, ww});
            h.maps.push_back(x);
            parts.push_back(b.node(Op::kReshape, {x, b.ints({1, c, -1})}));
        }
    }
    // The later form's class branch: reshapes, concat and Sigmoid (early or, with cls_last, after
    // the whole box branch: any topological order must fuse).
    auto class_branch = [&] {
        std::vector<int> cls_parts;
        for (size_t l = 0; l < s.levels.size(); ++l)
            cls_parts.push_back(b.node(Op::kReshape, {h.maps[2 * l + 1], b.ints({1, nc, -1})}));
        return b.node(Op::kSigmoid, {b.node(Op::kConcat, cls_parts, {{"axis", int64_t{2}}})});
    };
    int sig = -1;
    if (s.split_form) {
        box = b.node(Op::kConcat, box_parts, {{"axis", int64_t{-1}}});
        if (!s.cls_last) sig = class_branch();
    } else {
        int cat = b.node(Op::kConcat, parts, {{"axis", int64_t{2}}});
        auto sp = b.node_n(Op::kSplit, {cat, b.ints({4 * r, nc})}, 2, {{"axis", int64_t{1}}});
        box = sp[0];
        cls = sp[1];
    }
    int rb = b.node(Op::kReshape, {box, b.ints({1, 4, r, a})});
    int tr = b.node(Op::kTranspose, {rb}, {{"perm", s.perm}});
    int sm = b.node(Op::kSoftmax, {tr}, {{"axis", s.softmax_axis}});
    std::vector<int> conv_in = {sm, h.dfl};
    if (s.conv_bias) conv_in.push_back(b.floats({1}, {0.25f}));
    int cv = b.node(Op::kConv, conv_in,
                    {{"kernel_shape", Ints{1, 1}},
                     {"strides", Ints{1, 1}},
                     {"pads", Ints{0, 0, 0, 0}},
                     {"dilations", Ints{1, 1}},
                     {"group", int64_t{1}}});
    int dist = b.node(Op::kReshape, {cv, b.ints({1, 4, -1})});
    int lt, rt;
    if (s.split_form) {
        lt = b.node(Op::kSlice, {dist, b.ints({0}), b.ints({2}), b.ints({1})});
        rt = b.node(Op::kSlice, {dist, b.ints({2}), b.ints({4}), b.ints({1})});
    } else {
        auto sp = b.node_n(Op::kSplit, {dist, b.ints({2, 2})}, 2, {{"axis", int64_t{1}}});
        lt = sp[0];
        rt = sp[1];
    }
    int anchors2 = h.anchors;
    if (s.split_form || s.other_anchors) {
        // The later exports carry two equal anchor constants; other_anchors makes them differ.
        std::vector<float> a2 = anchors;
        if (s.other_anchors) a2[3] += 1.f;
        anchors2 = b.floats({1, 2, a}, a2, "anchors2");
    }
    int x1y1 = b.node(Op::kSub, {h.anchors, lt});
    int x2y2 = b.node(Op::kAdd, {anchors2, rt});
    int sum = b.node(Op::kAdd, {x1y1, x2y2});
    int c_xy = b.node(Op::kDiv, {sum, b.constant(ir::Tensor::from_floats({}, {s.div}))});
    int wh = b.node(Op::kSub, {x2y2, x1y1});
    int boxes = b.node(Op::kMul, {b.node(Op::kConcat, {c_xy, wh}, {{"axis", int64_t{1}}}), h.strides});
    if (cls >= 0) sig = b.node(Op::kSigmoid, {cls});
    if (sig < 0) sig = class_branch();
    std::vector<int> fin = {boxes, sig};
    if (s.extra > 0) fin.push_back(b.node(Op::kSigmoid, {b.input({1, s.extra, a})}));
    h.out = b.node(Op::kConcat, fin, {{"axis", int64_t{1}}});
    b.output(h.out);
    if (s.reader_of_dist) b.output(dist);
    h.graph = b.graph();
    return h;
}

// Wide enough that the DFL softmaxes are far from uniform and the sigmoids saturate somewhere.
std::vector<ir::Tensor> head_inputs(const ir::Graph& g, Rng& rng) { return random_inputs(g, rng, -6.f, 6.f); }

struct Fused {
    ir::Graph before, after;
    bool changed = false;
};

Fused fuse(const ir::Graph& g) {
    Fused f;
    f.before = prepare(g);
    f.after = f.before;
    f.changed = passes::fuse_yolo_decode(f.after);
    f.after.compact();
    ir::verify(f.after);
    return f;
}

void expect_same_outputs(const Fused& f, Rng& rng) {
    auto in = head_inputs(f.before, rng);
    EXPECT_TRUE(all_close(reference::run_graph(f.after, in), reference::run_graph(f.before, in), kTol));
}

class FuseYoloDecode : public ::testing::Test {
   protected:
    void SetUp() override { trace_ = std::make_unique<::testing::ScopedTrace>(__FILE__, __LINE__, rng_.trace()); }
    Rng rng_;
    std::unique_ptr<::testing::ScopedTrace> trace_;
};

TEST_F(FuseYoloDecode, ExportedHeadBecomesOneNode) {
    for (int64_t nc : {5, 1, 80}) {
        SCOPED_TRACE("nc " + std::to_string(nc));
        HeadSpec s;
        s.nc = nc;
        Head h = build_head(rng_, s);
        Fused f = fuse(h.graph);
        EXPECT_TRUE(f.changed);
        ASSERT_EQ(live_ops(f.after), std::vector<Op>{Op::kYoloDecode});
        const ir::Node& n = f.after.nodes[0];
        std::vector<int> want = h.maps;
        want.insert(want.end(), {h.anchors, h.strides, h.dfl});
        EXPECT_EQ(n.inputs, want);
        EXPECT_EQ(n.outputs, std::vector<int>{h.out});
        EXPECT_EQ(n.attrs.get_int("num_levels", 0), 3);
        EXPECT_EQ(n.attrs.get_int("reg_max", 0), 16);
        EXPECT_EQ(n.attrs.get_int("nc", 0), nc);
        EXPECT_EQ(f.after.value(h.out).shape, (Shape{1, 4 + nc, h.anchor_count}));
        expect_same_outputs(f, rng_);
    }
}

TEST_F(FuseYoloDecode, OtherLevelCountsAndRegMax) {
    HeadSpec s;
    s.levels = {{5, 7}, {3, 1}};
    s.strides = {4, 64};
    s.reg_max = 8;
    s.nc = 3;
    Fused f = fuse(build_head(rng_, s).graph);
    EXPECT_TRUE(f.changed);
    ASSERT_EQ(live_ops(f.after), std::vector<Op>{Op::kYoloDecode});
    EXPECT_EQ(f.after.nodes[0].attrs.get_int("num_levels", 0), 2);
    EXPECT_EQ(f.after.nodes[0].attrs.get_int("reg_max", 0), 8);
    expect_same_outputs(f, rng_);
}

TEST_F(FuseYoloDecode, ExtraBranchStaysConcatenatedAfterTheDecode) {
    // Pose and seg: Concat(box * strides, Sigmoid(cls), keypoints or mask coefficients).
    HeadSpec s;
    s.extra = 7;
    Head h = build_head(rng_, s);
    Fused f = fuse(h.graph);
    EXPECT_TRUE(f.changed);
    ASSERT_EQ(live_ops(f.after), (std::vector<Op>{Op::kYoloDecode, Op::kSigmoid, Op::kConcat}));
    const ir::Node& dec = f.after.nodes[0];
    const ir::Node& cat = f.after.nodes[2];
    EXPECT_EQ(cat.outputs, std::vector<int>{h.out});
    ASSERT_EQ(cat.inputs.size(), 2u);
    EXPECT_EQ(cat.inputs[0], dec.outputs[0]);
    EXPECT_EQ(cat.inputs[1], f.after.nodes[1].outputs[0]);
    EXPECT_EQ(f.after.value(dec.outputs[0]).shape, (Shape{1, 4 + s.nc, h.anchor_count}));
    expect_same_outputs(f, rng_);
}

TEST_F(FuseYoloDecode, LaterExportFormGetsLevelConcats) {
    // yolov8n-seg-320's form: the decode reads Concat(box_l, cls_l) per level.
    for (auto [extra, cls_last] : {std::pair{0, false}, std::pair{32, false}, std::pair{32, true}}) {
        SCOPED_TRACE("extra " + std::to_string(extra) + (cls_last ? ", class branch last" : ""));
        HeadSpec s;
        s.split_form = true;
        s.extra = extra;
        s.cls_last = cls_last;
        Head h = build_head(rng_, s);
        Fused f = fuse(h.graph);
        EXPECT_TRUE(f.changed);
        auto ops = live_ops(f.after);
        EXPECT_EQ(std::count(ops.begin(), ops.end(), Op::kYoloDecode), 1);
        EXPECT_EQ(std::count(ops.begin(), ops.end(), Op::kConcat), extra ? 4 : 3);
        EXPECT_EQ(ops.size(), extra ? 6u : 4u);
        for (const ir::Node& n : f.after.nodes) {
            if (n.op != Op::kYoloDecode) continue;
            ASSERT_EQ(n.inputs.size(), 6u);
            for (size_t l = 0; l < 3; ++l) {
                EXPECT_EQ(f.after.value(n.inputs[l]).shape[1], 4 * 16 + s.nc);
                const ir::Node& cat = f.after.nodes[static_cast<size_t>(f.after.producers()[idx(n.inputs[l])])];
                EXPECT_EQ(cat.op, Op::kConcat);
                EXPECT_EQ(cat.inputs, (std::vector<int>{h.maps[2 * l], h.maps[2 * l + 1]}));
            }
        }
        expect_same_outputs(f, rng_);
    }
}

TEST_F(FuseYoloDecode, AnyDifferenceLeavesTheGraphUnchanged) {
    struct Case {
        const char* what;
        HeadSpec spec;
    };
    std::vector<Case> cases;
    auto add = [&](const char* what, auto change) {
        for (bool split_form : {false, true}) {
            HeadSpec s;
            s.split_form = split_form;
            change(s);
            cases.push_back({what, s});
        }
    };
    add("Div by 3", [](HeadSpec& s) { s.div = 3.f; });
    add("DFL conv with bias", [](HeadSpec& s) { s.conv_bias = true; });
    add("DFL output also a graph output", [](HeadSpec& s) { s.reader_of_dist = true; });
    add("anchors of Sub and Add differ", [](HeadSpec& s) { s.other_anchors = true; });
    add("Transpose perm", [](HeadSpec& s) {
        s.reg_max = 4;  // [1, 4, 4, A] either way: only the perm differs
        s.perm = {0, 1, 2, 3};
    });
    add("Softmax axis", [](HeadSpec& s) { s.softmax_axis = 2; });
    for (const Case& c : cases) {
        SCOPED_TRACE(std::string(c.what) + (c.spec.split_form ? " (later form)" : ""));
        Head h = build_head(rng_, c.spec);
        Fused f = fuse(h.graph);
        EXPECT_FALSE(f.changed);
        EXPECT_EQ(live_ops(f.after), live_ops(f.before));
    }
}

TEST_F(FuseYoloDecode, RunsOnlyWhenThePipelineAsks) {
    Head h = build_head(rng_, {});
    ir::Graph on = prepare(h.graph), off = on;
    passes::run_pipeline(on, nullptr, {.fuse_yolo_decode = true});
    passes::run_pipeline(off);
    EXPECT_EQ(live_ops(on), std::vector<Op>{Op::kYoloDecode});
    auto ops = live_ops(off);
    EXPECT_EQ(std::count(ops.begin(), ops.end(), Op::kYoloDecode), 0);
    EXPECT_GT(ops.size(), 15u);
}

#ifdef KESTREL_SOURCE_DIR

std::string model_path(const std::string& name) {
    const char* env = std::getenv("KESTREL_SHARED");
    return (env ? std::string(env) : std::string(KESTREL_SOURCE_DIR) + "/../shared") + "/models/" + name;
}

int count_op(const ir::Graph& g, Op op) {
    int k = 0;
    for (const ir::Node& n : g.nodes) k += !n.removed && n.op == op;
    return k;
}

// Engines store ops by name and attributes by type: the fused node comes back as it was.
TEST_F(FuseYoloDecode, EngineRoundTrip) {
    HeadSpec s;
    s.extra = 3;
    Fused f = fuse(build_head(rng_, s).graph);
    ASSERT_TRUE(f.changed);
    engine::EngineData d;
    d.graph = f.after;
    d.target = "cuda:sm_90";
    engine::EngineData back = engine::deserialize(engine::serialize(d), "test engine");
    ASSERT_EQ(live_ops(back.graph), live_ops(f.after));
    for (size_t i = 0; i < f.after.nodes.size(); ++i) {
        EXPECT_EQ(back.graph.nodes[i].inputs, f.after.nodes[i].inputs);
        EXPECT_EQ(back.graph.nodes[i].outputs, f.after.nodes[i].outputs);
        EXPECT_EQ(back.graph.nodes[i].attrs.all(), f.after.nodes[i].attrs.all());
    }
    auto in = head_inputs(f.after, rng_);
    EXPECT_TRUE(all_close(reference::run_graph(back.graph, in), reference::run_graph(f.after, in), 0.0));
}

// The real exports: one decode where there is a Detect head (the opset-20 seg export included),
// none in classify, none with the option off; with fuse_yolo_head_convs each takes six convs in.
TEST(FuseYoloDecodeModels, OneDecodePerDetectHead) {
    struct Model {
        const char* file;
        int decodes;
    };
    int found = 0;
    for (Model m : {Model{"yolov8n.onnx", 1}, Model{"yolov8n-pose.onnx", 1}, Model{"yolov8n-seg.onnx", 1},
                    Model{"yolov8n-seg-320.onnx", 1}, Model{"yolov8n-cls.onnx", 0}}) {
        const std::string path = model_path(m.file);
        if (!std::filesystem::exists(path)) continue;
        ++found;
        SCOPED_TRACE(m.file);
        ir::Graph g = onnx::import_model(path, {});
        ir::Graph on = g, off = g, head = g;
        passes::run_pipeline(on, nullptr, {.fuse_yolo_decode = true});
        passes::run_pipeline(off);
        passes::run_pipeline(head, nullptr, {.fuse_yolo_decode = true, .fuse_yolo_head_convs = true});
        EXPECT_EQ(count_op(on, Op::kYoloDecode), m.decodes);
        EXPECT_EQ(count_op(off, Op::kYoloDecode), 0);
        EXPECT_EQ(on.outputs, off.outputs);
        for (int o : on.outputs) EXPECT_EQ(on.value(o).shape, off.value(o).shape);
        // Every Detect head (pose and seg, both export forms) takes its last 1x1 convs in too.
        EXPECT_EQ(count_op(on, Op::kConv) - count_op(head, Op::kConv), 6 * m.decodes);
        for (const ir::Node& n : head.nodes) {
            if (!n.removed && n.op == Op::kYoloDecode) {
                EXPECT_EQ(n.attrs.get_int("head_convs", 0), 1);
            }
        }
        EXPECT_EQ(head.outputs, off.outputs);
        for (int o : head.outputs) EXPECT_EQ(head.value(o).shape, off.value(o).shape);
    }
    if (found == 0) GTEST_SKIP() << "no models under " << model_path("");
}

// The part of g that `inputs` (and constants) compute, with those values as its inputs.
ir::Graph computed_from(ir::Graph g, const std::vector<int>& inputs) {
    std::vector<bool> known(g.values.size(), false);
    for (int v : inputs) known[idx(v)] = true;
    for (ir::Node& n : g.nodes) {
        bool ok = !n.removed;
        for (int in : n.inputs) ok = ok && (in < 0 || g.is_constant(in) || known[idx(in)]);
        n.removed = !ok;
        if (ok)
            for (int o : n.outputs) known[idx(o)] = true;
    }
    g.compact();
    g.inputs = inputs;
    ir::verify(g);
    return g;
}

// yolov8n's head alone (its three level maps as inputs): the fused node computes what the exported
// ops compute, with the model's own anchors, strides and DFL weights.
TEST(FuseYoloDecodeModels, Yolov8nHeadMatchesTheExportedOps) {
    const std::string path = model_path("yolov8n.onnx");
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found";
    ir::Graph off = onnx::import_model(path, {});
    passes::run_pipeline(off);
    ir::Graph on = off;
    ASSERT_TRUE(passes::fuse_yolo_decode(on));
    on.compact();
    std::vector<int> levels;
    for (const ir::Node& n : on.nodes)
        if (n.op == Op::kYoloDecode) levels.assign(n.inputs.begin(), n.inputs.begin() + 3);
    ASSERT_EQ(levels.size(), 3u);
    // Keep only what the level maps (and constants) compute: the head.
    ir::Graph a = computed_from(off, levels), b = computed_from(on, levels);
    EXPECT_GT(a.live_node_count(), 15u);
    EXPECT_EQ(live_ops(b), std::vector<Op>{Op::kYoloDecode});
    Rng rng;
    SCOPED_TRACE(rng.trace());
    auto in = random_inputs(a, rng, -8.f, 8.f);
    EXPECT_TRUE(all_close(reference::run_graph(b, in), reference::run_graph(a, in), kTol));
}

// The CUDA plan of the fused models: YoloDecode reads its level maps in NHWC straight from the
// convolutions (no conversion in between; the later form's level Concats are elided into channel
// slices) and writes plain float32.
TEST(FuseYoloDecodeModels, CudaPlanReadsNhwcLevels) {
    int found = 0;
    for (const char* file : {"yolov8n.onnx", "yolov8n-seg-320.onnx"}) {
        const std::string path = model_path(file);
        if (!std::filesystem::exists(path)) continue;
        ++found;
        SCOPED_TRACE(file);
        ir::Graph g = onnx::import_model(path, {});
        passes::run_pipeline(g, nullptr, {.fuse_yolo_decode = true});
        for (bool half : {false, true}) {
            plan::ExecutionPlan p = plan::build(g, {.target = plan::Target::kCuda, .batch = 4, .half = half});
            auto producers = p.graph.producers();
            int decodes = 0;
            for (const ir::Node& n : p.graph.nodes) {
                if (n.op != Op::kYoloDecode) continue;
                ++decodes;
                EXPECT_EQ(p.values[idx(n.outputs[0])].layout, plan::Layout::kPlain);
                EXPECT_EQ(p.values[idx(n.outputs[0])].dtype, DType::kFloat32);
                for (size_t l = 0; l < 3; ++l) {
                    const plan::ValuePlan& vp = p.values[idx(n.inputs[l])];
                    EXPECT_EQ(vp.layout, plan::Layout::kNhwc);
                    EXPECT_EQ(vp.dtype, half ? DType::kFloat16 : DType::kFloat32);
                    const ir::Node& src = p.graph.nodes[idx(producers[idx(n.inputs[l])])];
                    ASSERT_EQ(src.op, Op::kConcat);
                    for (int in : src.inputs) {
                        EXPECT_EQ(p.graph.nodes[idx(producers[idx(in)])].op, Op::kConv);
                        EXPECT_EQ(p.values[idx(in)].storage, plan::Storage::kView);
                        EXPECT_EQ(p.values[idx(in)].root, n.inputs[l]);
                    }
                }
            }
            EXPECT_EQ(decodes, 1);
        }
    }
    if (found == 0) GTEST_SKIP() << "no models under " << model_path("");
}

// fuse_yolo_head_convs on yolov8n: the decode absorbs the six last head convs (one box and one class
// 1x1 conv a level) and their three level Concats, and computes what they and the plain decode
// compute, from the same features; an activation on one of the convs, or a level's features of
// another width, leaves the graph unchanged.
TEST(FuseYoloDecodeModels, Yolov8nHeadConvsMoveIntoTheDecode) {
    const std::string path = model_path("yolov8n.onnx");
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found";
    ir::Graph off = onnx::import_model(path, {});
    passes::run_pipeline(off, nullptr, {.fuse_yolo_decode = true});
    ir::Graph on = off;
    ASSERT_TRUE(passes::fuse_yolo_head_convs(on));
    EXPECT_FALSE(passes::fuse_yolo_head_convs(on)) << "a second run finds nothing";
    const ir::Node* decode = nullptr;
    for (const ir::Node& n : on.nodes)
        if (!n.removed && n.op == Op::kYoloDecode) decode = &n;
    ASSERT_NE(decode, nullptr);
    EXPECT_EQ(decode->attrs.get_int("head_convs", 0), 1);
    ASSERT_EQ(decode->inputs.size(), 6u * 3 + 3);
    const std::vector<int> features(decode->inputs.begin(), decode->inputs.begin() + 6);
    for (size_t l = 0; l < 3; ++l) {
        EXPECT_EQ(on.value(features[2 * l]).shape[1], 64) << "box features of level " << l;
        EXPECT_EQ(on.value(features[2 * l + 1]).shape[1], 80) << "class features of level " << l;
    }
    EXPECT_EQ(count_op(off, Op::kConv) - count_op(on, Op::kConv), 6);
    EXPECT_EQ(count_op(off, Op::kConcat) - count_op(on, Op::kConcat), 3);
    ir::verify(on);

    // The head from the six features on: 6 convs, 3 Concats and the decode against one node.
    ir::Graph a = computed_from(off, features), b = computed_from(on, features);
    EXPECT_EQ(a.live_node_count(), 10u);
    EXPECT_EQ(live_ops(b), std::vector<Op>{Op::kYoloDecode});
    Rng rng;
    SCOPED_TRACE(rng.trace());
    auto in = random_inputs(a, rng, -1.f, 4.f);
    EXPECT_TRUE(all_close(reference::run_graph(b, in), reference::run_graph(a, in), kTol));

    // Any part of the pattern different: no rewrite.
    ir::Graph act = off;
    int changed_convs = 0;
    for (ir::Node& n : act.nodes)
        if (!n.removed && n.op == Op::kConv && n.inputs[0] == features[5]) {
            n.attrs.set("activation", std::string("silu"));
            ++changed_convs;
        }
    ASSERT_EQ(changed_convs, 1);
    EXPECT_FALSE(passes::fuse_yolo_head_convs(act));

    // Level 2's box features 72 channels (level 0's: 64), then 60 (not a multiple of 8): the kernel
    // reads every level's features as level 0's, 16 bytes at a time, so no rewrite.
    for (int64_t c : {72, 60}) {
        SCOPED_TRACE(c);
        ir::Graph wide = off;
        wide.value(features[4]).shape[1] = c;
        for (ir::Node& n : wide.nodes)
            if (!n.removed && n.op == Op::kConv && n.inputs[0] == features[4]) wide.value(n.inputs[1]).shape[1] = c;
        EXPECT_FALSE(passes::fuse_yolo_head_convs(wide));
    }
}

// The CUDA plan with the head convs in the decode: it reads the six features in NHWC, each as the
// 3x3 conv before it wrote it.
TEST(FuseYoloDecodeModels, CudaPlanReadsNhwcHeadFeatures) {
    const std::string path = model_path("yolov8n.onnx");
    if (!std::filesystem::exists(path)) GTEST_SKIP() << path << " not found";
    ir::Graph g = onnx::import_model(path, {});
    passes::run_pipeline(g, nullptr, {.fuse_yolo_decode = true, .fuse_yolo_head_convs = true});
    plan::ExecutionPlan p = plan::build(g, {.target = plan::Target::kCuda, .batch = 4, .half = true});
    auto producers = p.graph.producers();
    int decodes = 0;
    for (const ir::Node& n : p.graph.nodes) {
        if (n.op != Op::kYoloDecode) continue;
        ++decodes;
        EXPECT_EQ(n.attrs.get_int("head_convs", 0), 1);
        for (size_t i = 0; i < 6; ++i) {
            EXPECT_EQ(p.values[idx(n.inputs[i])].layout, plan::Layout::kNhwc);
            EXPECT_EQ(p.values[idx(n.inputs[i])].dtype, DType::kFloat16);
            EXPECT_EQ(p.graph.nodes[idx(producers[idx(n.inputs[i])])].op, Op::kConv);
        }
        for (size_t i = 6; i < n.inputs.size(); ++i) EXPECT_TRUE(p.graph.is_constant(n.inputs[i]));
    }
    EXPECT_EQ(decodes, 1);
}

#endif  // KESTREL_SOURCE_DIR

}  // namespace
}  // namespace kestrel::test
