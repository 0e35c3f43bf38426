// The planner on small graphs: layouts, views (concat elision, split/slice/reshape aliases), and the
// arena: smaller than the naive sum, and no two buffers that are live at the same time overlap. The
// overlap check recomputes lifetimes from the plan's node order independently of the planner. CUDA
// plans' streams: the branches off the longest chain on stream 1, and buffers sharing bytes only
// where every node touching one runs before any node touching the other (an order recomputed here
// by a search over the nodes' streams and inputs); on yolov8n and its seg and pose models too.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "common/graph_builder.h"
#ifdef KESTREL_SOURCE_DIR
#include <cstdlib>

#include "onnx/model_importer.h"
#endif

namespace kestrel::test {
namespace {

using ir::Op;
using plan::Layout;
using plan::Storage;

plan::ExecutionPlan build_plan(GraphBuilder& b) { return plan::build(prepare(b.graph())); }

const plan::ValuePlan& vp(const plan::ExecutionPlan& p, int v) { return p.values.at(static_cast<size_t>(v)); }

int64_t plane_bytes(const plan::ExecutionPlan& p, int v) {
    const Shape& s = p.graph.value(v).shape;
    return s[2] * s[3] * 4;
}

// Every arena root's [first write, last read] over all values placed in it, from the node order.
struct Lifetime {
    int first = INT_MAX, last = -1;
};

std::vector<Lifetime> root_lifetimes(const plan::ExecutionPlan& p) {
    std::vector<Lifetime> life(p.values.size());
    auto root = [&](int v) { return vp(p, v).storage == Storage::kView ? vp(p, v).root : v; };
    for (size_t i = 0; i < p.graph.nodes.size(); ++i) {
        const ir::Node& n = p.graph.nodes[i];
        int at = static_cast<int>(i);
        for (int o : n.outputs) {
            Lifetime& l = life[static_cast<size_t>(root(o))];
            l.first = std::min(l.first, at);
            l.last = std::max(l.last, at);
        }
        for (int in : n.inputs)
            if (in >= 0) {
                Lifetime& l = life[static_cast<size_t>(root(in))];
                l.last = std::max(l.last, at);
                l.first = std::min(l.first, at);  // read before written would be a bug caught below
            }
    }
    return life;
}

// Where a value's bytes are: its root buffer and the byte range inside it.
struct Range {
    int root;
    int64_t begin, end;
};

Range range_of(const plan::ExecutionPlan& p, int v) {
    const plan::ValuePlan& x = vp(p, v);
    if (x.storage == Storage::kView) return {x.root, x.offset, x.offset + x.bytes};
    return {v, 0, x.bytes};
}

// Bytes per step along `axis` when the slices along it are contiguous ranges (all dims before it
// are 1), else -1.
int64_t contiguous_unit(const ir::Value& v, int64_t axis) {
    int64_t unit = 4;
    for (size_t d = 0; d < v.shape.size(); ++d) {
        if (static_cast<int64_t>(d) < axis && v.shape[d] != 1) return -1;
        if (static_cast<int64_t>(d) > axis) unit *= v.shape[d];
    }
    return unit;
}

// The byte ranges node `n` actually writes, as the CPU kernels do: nothing for outputs that are
// views in place of their input (Split/Slice/Reshape), only the copied slots of a Concat whose
// inputs were elided, the whole output otherwise.
std::vector<Range> written_ranges(const plan::ExecutionPlan& p, const ir::Node& n) {
    const ir::Graph& g = p.graph;
    std::vector<Range> w;
    auto in_place = [&](int v, int container, int64_t at) {
        Range a = range_of(p, v), c = range_of(p, container);
        return a.root == c.root && a.begin == c.begin + at;
    };
    if (n.op == Op::kConcat) {
        int o = n.outputs[0];
        int64_t axis = n.attrs.get_int("axis", 0), unit = contiguous_unit(g.value(o), axis), start = 0;
        Range r = range_of(p, o);
        if (unit < 0) return {r};
        for (int in : n.inputs) {
            int64_t len = g.value(in).shape[static_cast<size_t>(axis)] * unit;
            if (g.is_constant(in) || !in_place(in, o, start))
                w.push_back({r.root, r.begin + start, r.begin + start + len});
            start += len;
        }
        return w;
    }
    if (n.op == Op::kSplit || n.op == Op::kSlice || n.op == Op::kReshape) {
        const ir::Value& x = g.value(n.inputs[0]);
        int64_t start = 0;
        for (size_t k = 0; k < n.outputs.size(); ++k) {
            int o = n.outputs[k];
            int64_t at = 0;  // byte offset of the output inside the input when it is a contiguous range
            if (n.op == Op::kSplit) {
                int64_t unit = contiguous_unit(x, n.attrs.get_int("axis", 0));
                at = unit < 0 ? -1 : start * unit;
                start += g.value(o).shape[static_cast<size_t>(n.attrs.get_int("axis", 0))];
            } else if (n.op == Op::kSlice) {
                auto starts = n.attrs.get_ints("starts");
                for (size_t d = 0; d < starts.size(); ++d)
                    if (starts[d] != 0 || g.value(o).shape[d] != x.shape[d]) {
                        int64_t unit = contiguous_unit(x, static_cast<int64_t>(d));
                        at = unit < 0 ? -1 : starts[d] * unit;
                        break;
                    }
            }
            if (at < 0 || !in_place(o, n.inputs[0], at)) w.push_back(range_of(p, o));
        }
        return w;
    }
    for (int o : n.outputs) w.push_back(range_of(p, o));
    return w;
}

// No node overwrites bytes of another value that was written earlier and is still read later:
// the aliasing counterpart of the lifetime check (views share a root, so lifetimes alone cannot
// see a concat copying over data that sits in the same buffer).
void expect_no_clobbering(const plan::ExecutionPlan& p) {
    const ir::Graph& g = p.graph;
    std::vector<int> producer(g.values.size(), -1), last_read(g.values.size(), -1);
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        for (int o : g.nodes[i].outputs) producer[static_cast<size_t>(o)] = static_cast<int>(i);
        for (int in : g.nodes[i].inputs)
            if (in >= 0) last_read[static_cast<size_t>(in)] = static_cast<int>(i);
    }
    for (int o : g.outputs) last_read[static_cast<size_t>(o)] = INT_MAX;  // read by the caller
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        const ir::Node& n = g.nodes[i];
        for (const Range& w : written_ranges(p, n))
            for (size_t v = 0; v < g.values.size(); ++v) {
                int pv = producer[v];
                if (pv < 0 || pv >= static_cast<int>(i) || last_read[v] <= static_cast<int>(i)) continue;
                Range r = range_of(p, static_cast<int>(v));
                EXPECT_FALSE(r.root == w.root && r.begin < w.end && w.begin < r.end)
                    << "node '" << n.name << "' (#" << i << ") writes bytes [" << w.begin << ", " << w.end << ") of '"
                    << g.value(w.root).name << "', clobbering '" << g.values[v].name << "' [" << r.begin << ", "
                    << r.end << ") written by node #" << pv << " and still read by node #" << last_read[v];
            }
    }
}

// The plan's memory invariants, checked exhaustively over all pairs.
void expect_valid_memory(const plan::ExecutionPlan& p) {
    const ir::Graph& g = p.graph;
    ASSERT_EQ(p.values.size(), g.values.size());
    auto life = root_lifetimes(p);
    std::vector<int> arena_roots;
    for (size_t v = 0; v < p.values.size(); ++v) {
        const plan::ValuePlan& x = p.values[v];
        SCOPED_TRACE("value '" + g.values[v].name + "'");
        EXPECT_EQ(x.bytes, plan::storage_bytes(g.values[v], x.layout));
        if (x.storage == Storage::kView) {
            // A view lies inside its root, and the root is a real buffer (views are resolved).
            ASSERT_GE(x.root, 0);
            const plan::ValuePlan& r = vp(p, x.root);
            EXPECT_NE(r.storage, Storage::kView);
            EXPECT_NE(r.storage, Storage::kConstant);
            EXPECT_GE(x.offset, 0);
            EXPECT_LE(x.offset + x.bytes, r.bytes) << "view overruns root '" << g.value(x.root).name << "'";
        }
        if (x.storage == Storage::kArena && life[v].last >= 0) {
            EXPECT_GE(x.offset, 0);
            EXPECT_EQ(x.offset % 64, 0) << "arena buffers are 64-byte aligned for oneDNN";
            EXPECT_LE(x.offset + x.bytes, p.arena_bytes);
            arena_roots.push_back(static_cast<int>(v));
        }
    }
    for (size_t i = 0; i < arena_roots.size(); ++i)
        for (size_t j = i + 1; j < arena_roots.size(); ++j) {
            int a = arena_roots[i], b = arena_roots[j];
            const Lifetime &la = life[static_cast<size_t>(a)], &lb = life[static_cast<size_t>(b)];
            bool live_together = la.first <= lb.last && lb.first <= la.last;
            const plan::ValuePlan &pa = vp(p, a), &pb = vp(p, b);
            bool overlap = pa.offset < pb.offset + pb.bytes && pb.offset < pa.offset + pa.bytes;
            EXPECT_FALSE(live_together && overlap)
                << "'" << g.value(a).name << "' [" << pa.offset << ", " << pa.offset + pa.bytes << ") nodes "
                << la.first << ".." << la.last << " overlaps '" << g.value(b).name << "' [" << pb.offset << ", "
                << pb.offset + pb.bytes << ") nodes " << lb.first << ".." << lb.last;
        }
    expect_no_clobbering(p);
    // Every value a node reads has been written (or is an input/constant) by then.
    std::vector<bool> ready(g.values.size(), false);
    for (size_t v = 0; v < g.values.size(); ++v) ready[v] = g.values[v].constant != nullptr;
    for (int in : g.inputs) ready[static_cast<size_t>(in)] = true;
    for (const ir::Node& n : g.nodes) {
        for (int in : n.inputs) EXPECT_TRUE(in < 0 || ready[static_cast<size_t>(in)]) << "node '" << n.name << "'";
        for (int o : n.outputs) ready[static_cast<size_t>(o)] = true;
    }
}

// Whether node a's work is complete before node b's starts when the plan's nodes run on their
// streams: b runs after the earlier nodes of its stream and after its inputs' producers; searched
// back from b.
bool runs_before(const plan::ExecutionPlan& p, const std::vector<int>& producers, int a, int b) {
    std::vector<bool> seen(p.graph.nodes.size(), false);
    std::vector<int> todo = {b};
    while (!todo.empty()) {
        const int n = todo.back();
        todo.pop_back();
        std::vector<int> preds;
        for (int k = n - 1; k >= 0; --k)
            if (p.streams[static_cast<size_t>(k)] == p.streams[static_cast<size_t>(n)]) {
                preds.push_back(k);
                break;
            }
        for (int in : p.graph.nodes[static_cast<size_t>(n)].inputs)
            if (in >= 0 && producers[static_cast<size_t>(in)] >= 0) preds.push_back(producers[static_cast<size_t>(in)]);
        for (int q : preds) {
            if (q == a) return true;
            if (!seen[static_cast<size_t>(q)]) {
                seen[static_cast<size_t>(q)] = true;
                todo.push_back(q);
            }
        }
    }
    return false;
}

// Arena buffers that share bytes (per image: offsets scale with the batch) are touched by nodes
// that the streams order: every node writing or reading one runs before every node touching the
// other. Returns the number of such pairs checked.
int expect_shared_bytes_ordered(const plan::ExecutionPlan& p) {
    const ir::Graph& g = p.graph;
    EXPECT_EQ(p.streams.size(), g.nodes.size());
    const std::vector<int> producers = g.producers();
    std::vector<std::vector<int>> touching(p.values.size());
    auto root = [&](int v) { return vp(p, v).storage == Storage::kView ? vp(p, v).root : v; };
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        for (int v : g.nodes[i].outputs) touching[static_cast<size_t>(root(v))].push_back(static_cast<int>(i));
        for (int v : g.nodes[i].inputs)
            if (v >= 0) touching[static_cast<size_t>(root(v))].push_back(static_cast<int>(i));
    }
    auto ordered = [&](const std::vector<int>& first, const std::vector<int>& then) {
        for (int a : first)
            for (int b : then)
                if (!runs_before(p, producers, a, b)) return false;
        return true;
    };
    int pairs = 0;
    const int64_t batch = p.options.target == plan::Target::kCuda ? p.options.batch : 1;
    for (size_t a = 0; a < p.values.size(); ++a)
        for (size_t b = a + 1; b < p.values.size(); ++b) {
            const plan::ValuePlan &x = p.values[a], &y = p.values[b];
            if (x.storage != Storage::kArena || y.storage != Storage::kArena || touching[a].empty() ||
                touching[b].empty() || x.offset >= y.offset + y.bytes / batch || y.offset >= x.offset + x.bytes / batch)
                continue;
            ++pairs;
            EXPECT_TRUE(ordered(touching[a], touching[b]) || ordered(touching[b], touching[a]))
                << "'" << g.values[a].name << "' and '" << g.values[b].name
                << "' share bytes but nodes on different streams may touch them at once";
        }
    return pairs;
}

class PlanTest : public ::testing::Test {
   protected:
    void SetUp() override { trace_ = std::make_unique<::testing::ScopedTrace>(__FILE__, __LINE__, rng_.trace()); }
    // The plan must also run: the CPU result matches the reference.
    void expect_runs_correctly() {
        auto in = random_inputs(b_.graph(), rng_);
        EXPECT_TRUE(all_close(run_cpu(b_.graph(), in), run_reference(b_.graph(), in), 1e-5));
    }
    Rng rng_;
    GraphBuilder b_{rng_};
    std::unique_ptr<::testing::ScopedTrace> trace_;
};

TEST_F(PlanTest, LayoutsBlockedForConvsAndPlainAtGraphOutputs) {
    int x3 = b_.input({1, 3, 6, 6});
    int x = b_.conv(x3, 3, 16, {.k = 3, .pad = 1});  // the stem: plain in, nChw8c out
    int c32 = b_.conv(x, 16, 32, {.k = 1});          // internal: nChw8c
    int o16 = b_.conv(c32, 32, 16, {.k = 1});        // graph output: blocked temporary + conversion
    int o51 = b_.conv(x3, 3, 51, {.k = 1});          // from a plain input, 51 channels stay plain
    int o51b = b_.conv(c32, 32, 51, {.k = 1});       // from a blocked input: blocked, padded to 56 channels
    for (int o : {o16, o51, o51b}) b_.output(o);
    auto p = build_plan(b_);
    for (int v : {x, c32}) {
        EXPECT_EQ(vp(p, v).layout, Layout::kBlocked8);
        EXPECT_EQ(vp(p, v).storage, Storage::kArena);
    }
    for (int o : {o16, o51, o51b}) {
        EXPECT_EQ(vp(p, o).layout, Layout::kPlain) << p.graph.value(o).name;
        EXPECT_EQ(vp(p, o).storage, Storage::kOutput);
    }
    int identities = 0;
    for (const ir::Node& n : p.graph.nodes) {
        if (n.op == Op::kConv && n.outputs[0] == o51) {
            EXPECT_EQ(vp(p, n.inputs[0]).layout, Layout::kPlain);
        }
        if (n.op != Op::kIdentity) continue;
        ++identities;
        SCOPED_TRACE(n.name);
        EXPECT_TRUE(n.outputs[0] == o16 || n.outputs[0] == o51b);
        EXPECT_EQ(vp(p, n.inputs[0]).layout, Layout::kBlocked8);
        EXPECT_EQ(vp(p, n.outputs[0]).layout, Layout::kPlain);
        // The padded blocked temporary holds whole blocks of 8 channels.
        EXPECT_EQ(vp(p, n.inputs[0]).bytes, (n.outputs[0] == o51b ? 56 : 16) * 36 * 4);
    }
    EXPECT_EQ(identities, 2) << "o16 and o51b are produced blocked, o51 plain";
    expect_valid_memory(p);
    expect_runs_correctly();
}

TEST_F(PlanTest, ConcatElisionPlacesProducersInsideTheConcatOutput) {
    // Conv(16->32) -> Split(16, 16) -> Conv on the second half -> Concat(a, b, conv) -> Conv: YOLOv8's C2f.
    int x = b_.blocked_input({1, 16, 8, 8});
    int c1 = b_.conv(x, 16, 32, {.k = 1, .activation = "silu"});
    auto s = b_.node_n(Op::kSplit, {c1, b_.ints({16, 16})}, 2, {{"axis", int64_t{1}}});
    int m = b_.conv(s[1], 16, 16, {.k = 3, .pad = 1, .activation = "silu"});
    int cat = b_.node(Op::kConcat, {s[0], s[1], m}, {{"axis", int64_t{1}}});
    b_.output(b_.conv(cat, 48, 16, {.k = 1}));
    auto p = build_plan(b_);

    EXPECT_EQ(vp(p, cat).layout, Layout::kBlocked8);
    EXPECT_EQ(vp(p, cat).storage, Storage::kArena);
    int64_t ch16 = 16 * plane_bytes(p, cat);  // 16 channels = two nChw8c blocks
    struct Expect {
        int value;
        int64_t offset;
        const char* what;
    };
    for (auto [v, off, what] : {Expect{c1, 0, "conv1 output (split input)"}, Expect{s[0], 0, "split[0]"},
                                Expect{s[1], ch16, "split[1]"}, Expect{m, 2 * ch16, "bottleneck conv output"}}) {
        SCOPED_TRACE(what);
        EXPECT_EQ(vp(p, v).storage, Storage::kView);
        EXPECT_EQ(vp(p, v).root, cat);
        EXPECT_EQ(vp(p, v).offset, off);
    }
    expect_valid_memory(p);
    expect_runs_correctly();
}

TEST_F(PlanTest, PlainConcatOfNonBlockMultiplesIsElidedToo) {
    // 12 + 20 channels: plain layout, still contiguous channel ranges of a batch-1 tensor.
    int x = b_.input({1, 16, 5, 5});
    int a = b_.conv(x, 16, 12, {.k = 1});
    int c = b_.conv(x, 16, 20, {.k = 1});
    int cat = b_.node(Op::kConcat, {a, c}, {{"axis", int64_t{1}}});
    b_.output(b_.node(Op::kSigmoid, {cat}));
    auto p = build_plan(b_);
    EXPECT_EQ(vp(p, cat).layout, Layout::kPlain);
    EXPECT_EQ(vp(p, a).storage, Storage::kView);
    EXPECT_EQ(vp(p, a).root, cat);
    EXPECT_EQ(vp(p, a).offset, 0);
    EXPECT_EQ(vp(p, c).storage, Storage::kView);
    EXPECT_EQ(vp(p, c).root, cat);
    EXPECT_EQ(vp(p, c).offset, 12 * 25 * 4);
    expect_valid_memory(p);
    expect_runs_correctly();
}

TEST_F(PlanTest, ConcatOfMixedLayoutsOrNonContiguousAxisIsNotElided) {
    int x3 = b_.input({1, 3, 6, 6});
    int x = b_.conv(x3, 3, 16, {.k = 1});    // nChw8c
    int blk = b_.conv(x, 16, 16, {.k = 1});  // nChw8c
    int pln = b_.conv(x3, 3, 12, {.k = 1});  // nchw: plain input, 12 channels
    int cat1 = b_.node(Op::kConcat, {blk, pln}, {{"axis", int64_t{1}}});
    // Axis 2 of [1, C, H, W]: each input is C strided pieces of the output, not one range.
    int cat2 = b_.node(Op::kConcat, {b_.node(Op::kSigmoid, {x}), b_.node(Op::kRelu, {x})}, {{"axis", int64_t{2}}});
    b_.output(b_.node(Op::kSigmoid, {cat1}));
    b_.output(b_.node(Op::kSigmoid, {cat2}));
    auto p = build_plan(b_);
    EXPECT_EQ(vp(p, cat1).layout, Layout::kPlain);
    // The blocked conv output is converted to plain first; the plain copy is what sits in the concat.
    EXPECT_EQ(vp(p, blk).storage, Storage::kArena);
    for (const ir::Node& n : p.graph.nodes)
        if (n.op == Op::kIdentity && n.inputs[0] == blk) {
            EXPECT_EQ(vp(p, n.outputs[0]).layout, Layout::kPlain);
            EXPECT_EQ(vp(p, n.outputs[0]).storage, Storage::kView);
            EXPECT_EQ(vp(p, n.outputs[0]).root, cat1);
            EXPECT_EQ(vp(p, n.outputs[0]).offset, 0);
        }
    EXPECT_EQ(vp(p, pln).root, cat1);
    EXPECT_EQ(vp(p, pln).offset, 16 * 36 * 4);
    for (const ir::Node& n : p.graph.nodes) {
        if (n.outputs[0] != cat2) continue;
        for (int in : n.inputs) EXPECT_NE(vp(p, in).storage, Storage::kView) << p.graph.value(in).name;
    }
    expect_valid_memory(p);
    expect_runs_correctly();
}

TEST_F(PlanTest, SplitSliceAndReshapeOutputsAreViews) {
    int x = b_.input({1, 16, 6, 6});
    // Convs read a 3-channel slice: a plain 16-channel conv input would need a conversion first.
    int x3 = b_.node(Op::kSlice, {x, b_.ints({0}), b_.ints({3}), b_.ints({1})});
    int c = b_.conv(x3, 3, 32, {.k = 1});  // blocked, 32 channels
    auto s = b_.node_n(Op::kSplit, {c, b_.ints({8, 24})}, 2, {{"axis", int64_t{1}}});
    int plain = b_.node(Op::kSigmoid, {x});
    int sl = b_.node(Op::kSlice, {plain, b_.ints({4}), b_.ints({12}), b_.ints({1})});
    int rs = b_.node(Op::kReshape, {plain, b_.ints({1, 16, 36})});
    auto s2 = b_.node_n(Op::kSplit, {plain, b_.ints({2, 4})}, 2, {{"axis", int64_t{2}}});  // strided: copies
    for (int v : {s[0], s[1], sl, rs, s2[0], s2[1]}) b_.output(b_.node(Op::kSigmoid, {v}));
    auto p = build_plan(b_);

    EXPECT_EQ(vp(p, s[0]).layout, Layout::kBlocked8);
    EXPECT_EQ(vp(p, s[0]).storage, Storage::kView);
    EXPECT_EQ(vp(p, s[0]).root, c);
    EXPECT_EQ(vp(p, s[0]).offset, 0);
    EXPECT_EQ(vp(p, s[1]).storage, Storage::kView);
    EXPECT_EQ(vp(p, s[1]).root, c);
    EXPECT_EQ(vp(p, s[1]).offset, 8 * 36 * 4);
    EXPECT_EQ(vp(p, sl).storage, Storage::kView);
    EXPECT_EQ(vp(p, sl).root, plain);
    EXPECT_EQ(vp(p, sl).offset, 4 * 36 * 4);
    EXPECT_EQ(vp(p, rs).storage, Storage::kView);
    EXPECT_EQ(vp(p, rs).root, plain);
    EXPECT_EQ(vp(p, rs).offset, 0);
    EXPECT_NE(vp(p, s2[0]).storage, Storage::kView);
    EXPECT_NE(vp(p, s2[1]).storage, Storage::kView);
    expect_valid_memory(p);
    expect_runs_correctly();
}

TEST_F(PlanTest, ArenaReusesMemoryAlongAChain) {
    // Six convs in a row: at any time only an input and an output are live.
    int v = b_.blocked_input({1, 16, 10, 10});
    for (int i = 0; i < 6; ++i) v = b_.conv(v, 16, 16, {.k = 3, .pad = 1, .activation = "silu"});
    b_.output(b_.node(Op::kSigmoid, {v}));
    auto p = build_plan(b_);
    int64_t one = 16 * 100 * 4;
    EXPECT_LT(p.arena_bytes, p.naive_bytes);
    // Seven conv outputs and the Sigmoid's blocked temporary before the conversion to the plain output.
    EXPECT_EQ(p.naive_bytes, 8 * one);
    EXPECT_LE(p.arena_bytes, 2 * one);
    EXPECT_GE(p.arena_bytes, 2 * one) << "two buffers are live at every conv";
    expect_valid_memory(p);
    expect_runs_correctly();
}

TEST_F(PlanTest, ValueReadByTwoConcatsIsNotClobbered) {
    // v is elided into cat1 (slot 0); cat2 = Concat(p, v, c) may not then place all of cat1 at its
    // slot 1, because cat1's second half (a) would lie where cat2 copies c.
    int x = b_.blocked_input({1, 16, 6, 6});
    int v = b_.conv(x, 16, 16, {.k = 1}), a = b_.conv(x, 16, 16, {.k = 1});
    int q = b_.conv(x, 16, 16, {.k = 1}), c = b_.conv(x, 16, 16, {.k = 1});
    int cat1 = b_.node(Op::kConcat, {v, a}, {{"axis", int64_t{1}}});
    int cat2 = b_.node(Op::kConcat, {q, v, c}, {{"axis", int64_t{1}}});
    b_.output(b_.conv(cat1, 32, 16, {.k = 1}));
    b_.output(b_.conv(cat2, 48, 16, {.k = 1}));
    auto p = build_plan(b_);
    expect_valid_memory(p);
    expect_runs_correctly();
}

TEST_F(PlanTest, SplitHalfPlacedInConcatDoesNotClobberTheOtherHalf) {
    // s[1] sits at byte 6ch of conv c; Concat(const, s[1]) may not place c at 0 of the concat:
    // the constant is copied to the concat's first 6 channels, which would be s[0], still read.
    int x = b_.input({1, 3, 6, 6});
    auto s = b_.node_n(Op::kSplit, {b_.conv(x, 3, 12, {.k = 1}), b_.ints({6, 6})}, 2, {{"axis", int64_t{1}}});
    int cat = b_.node(Op::kConcat, {b_.random_constant({1, 6, 6, 6}), s[1]}, {{"axis", int64_t{1}}});
    b_.output(b_.node(Op::kSigmoid, {cat}));
    b_.output(b_.node(Op::kSigmoid, {s[0]}));
    auto p = build_plan(b_);
    expect_valid_memory(p);
    expect_runs_correctly();
}

// CUDA plans: the whole batch in NHWC float16, channel slices as views (the C2f concat costs no
// copy), plain float32 at the graph's edges, buffers sized for the batch.
TEST_F(PlanTest, CudaPlanIsBatchedNhwcWithChannelSliceViews) {
    int x = b_.input({1, 3, 8, 8});
    int c1 = b_.conv(x, 3, 32, {.k = 3, .pad = 1, .activation = "silu"});
    auto s = b_.node_n(Op::kSplit, {c1, b_.ints({16, 16})}, 2, {{"axis", int64_t{1}}});
    int m = b_.conv(s[1], 16, 16, {.k = 3, .pad = 1, .activation = "silu", .residual = s[1]});
    int cat = b_.node(Op::kConcat, {s[0], s[1], m}, {{"axis", int64_t{1}}});
    int out = b_.conv(cat, 48, 8, {.k = 1});
    int flat = b_.node(Op::kReshape, {out, b_.ints({1, 8, 64})});
    b_.output(b_.node(Op::kSigmoid, {flat}));
    auto p = plan::build(prepare(b_.graph()), {plan::Target::kCuda, /*batch=*/4, /*half=*/true});

    for (int v : {c1, cat, out}) {
        SCOPED_TRACE(p.graph.value(v).name);
        EXPECT_EQ(vp(p, v).layout, Layout::kNhwc);
        EXPECT_EQ(vp(p, v).dtype, DType::kFloat16);
    }
    EXPECT_EQ(vp(p, cat).bytes, 4 * 48 * 64 * 2) << "sized for the batch, 2 bytes an element";
    struct Expect {
        int value;
        int64_t offset;  // bytes of the channel offset within a pixel of the concat buffer
    };
    for (auto [v, off] : {Expect{c1, 0}, Expect{s[0], 0}, Expect{s[1], 16 * 2}, Expect{m, 32 * 2}}) {
        SCOPED_TRACE(p.graph.value(v).name);
        EXPECT_EQ(vp(p, v).storage, Storage::kView);
        EXPECT_EQ(vp(p, v).root, cat);
        EXPECT_EQ(vp(p, v).offset, off);
    }
    // The 3x3 stem reads the plain image itself; plain float32 again where the head begins.
    int conversions = 0;
    for (const ir::Node& n : p.graph.nodes) {
        if (n.op == Op::kConv && n.outputs[0] == c1) {
            EXPECT_EQ(n.inputs[0], x) << "the stem reads the image";
        }
        if (n.op != Op::kIdentity) continue;
        ++conversions;
        EXPECT_EQ(vp(p, n.inputs[0]).layout, Layout::kNhwc);
        EXPECT_EQ(vp(p, n.outputs[0]).layout, Layout::kPlain);
        EXPECT_EQ(vp(p, n.outputs[0]).dtype, DType::kFloat32);
    }
    EXPECT_EQ(conversions, 1);
    EXPECT_EQ(vp(p, flat).layout, Layout::kPlain);
}

// A CUDA plan places its arena per image: the max batch's offsets are batch 1's, so a run of n
// images binds root r at n * offset and its tensors stay packed at the arena's start (an engine
// with a max batch of 128 ran batch 1 8 % slower with the tensors spread over the max batch's
// bytes). At every n the buffers that are live together must stay apart.
TEST_F(PlanTest, CudaArenaOffsetsArePerImage) {
    int x = b_.input({1, 3, 8, 8});
    int c1 = b_.conv(x, 3, 32, {.k = 3, .pad = 1, .activation = "silu"});
    int a = b_.conv(c1, 32, 24, {.k = 3, .pad = 1, .activation = "silu"});
    int b = b_.conv(c1, 32, 40, {.k = 1, .activation = "silu"});
    int cat = b_.node(Op::kConcat, {a, b, c1}, {{"axis", int64_t{1}}});
    int d = b_.conv(cat, 96, 16, {.k = 3, .pad = 1, .activation = "silu", .residual = b_.conv(cat, 96, 16, {.k = 1})});
    b_.output(b_.node(Op::kSigmoid, {b_.conv(d, 16, 8, {.k = 1})}));
    const ir::Graph g = prepare(b_.graph());
    const auto one = plan::build(g, {plan::Target::kCuda, /*batch=*/1, /*half=*/true});
    const auto four = plan::build(g, {plan::Target::kCuda, /*batch=*/4, /*half=*/true});
    EXPECT_EQ(four.arena_bytes, 4 * one.arena_bytes);
    const auto life = root_lifetimes(four);
    std::vector<int> roots;
    for (size_t v = 0; v < four.values.size(); ++v) {
        if (four.values[v].storage != Storage::kArena || life[v].last < 0) continue;
        roots.push_back(static_cast<int>(v));
        SCOPED_TRACE(four.graph.values[v].name);
        EXPECT_EQ(four.values[v].offset, one.values[v].offset);
        EXPECT_EQ(four.values[v].bytes, 4 * one.values[v].bytes);
        EXPECT_EQ(four.values[v].offset % 64, 0);
    }
    ASSERT_GE(roots.size(), 3u);
    for (int64_t n = 1; n <= 4; ++n)
        for (int r : roots) {
            const int64_t begin = n * vp(four, r).offset, end = begin + n * vp(four, r).bytes / 4;
            EXPECT_LE(end, four.arena_bytes);
            for (int q : roots) {
                if (q == r || life[static_cast<size_t>(q)].first > life[static_cast<size_t>(r)].last ||
                    life[static_cast<size_t>(r)].first > life[static_cast<size_t>(q)].last)
                    continue;
                const int64_t qb = n * vp(four, q).offset, qe = qb + n * vp(four, q).bytes / 4;
                EXPECT_FALSE(begin < qe && qb < end) << "batch " << n << ": '" << four.graph.value(r).name
                                                     << "' overlaps '" << four.graph.value(q).name << "'";
            }
        }
}

// An upsample whose input nothing else reads: the CUDA plan keeps that input alive until the 1x1 conv
// after the upsample's concat (plan::upsample_concat_conv_at), which may read the upsampled channels
// from it while it writes its output, so the two never share bytes (without the kept lifetime the
// conv's output took the input's bytes).
TEST_F(PlanTest, CudaKeepsAnUpsamplesInputUntilTheConvAfterItsConcat) {
    int x = b_.input({1, 3, 16, 16});
    int c1 = b_.conv(x, 3, 32, {.k = 3, .pad = 1, .activation = "silu"});
    int lo = b_.conv(c1, 32, 32, {.k = 3, .stride = 2, .pad = 1, .activation = "silu"});
    int up = b_.node(Op::kResize, {lo, -1, b_.floats({4}, {1.f, 1.f, 2.f, 2.f})},
                     {{"mode", std::string("nearest")},
                      {"coordinate_transformation_mode", std::string("asymmetric")},
                      {"nearest_mode", std::string("floor")}});
    int cat = b_.node(Op::kConcat, {up, c1}, {{"axis", int64_t{1}}});
    int y = b_.conv(cat, 64, 32, {.k = 1, .activation = "silu"});
    b_.output(b_.node(Op::kSigmoid, {b_.conv(y, 32, 8, {.k = 1})}));
    auto p = plan::build(prepare(b_.graph()), {plan::Target::kCuda, /*batch=*/2, /*half=*/true});
    size_t resize = 0;
    for (size_t i = 0; i < p.graph.nodes.size(); ++i)
        if (p.graph.nodes[i].op == Op::kResize) resize = i;
    const std::optional<size_t> conv = plan::upsample_concat_conv_at(p.graph, p.graph.consumers(), resize);
    ASSERT_TRUE(conv.has_value());
    EXPECT_EQ(p.graph.nodes[*conv].outputs[0], y);
    const plan::ValuePlan &in = vp(p, lo), &out = vp(p, y);
    ASSERT_EQ(in.storage, Storage::kArena);
    ASSERT_EQ(out.storage, Storage::kArena);
    EXPECT_TRUE(in.offset + in.bytes / 2 <= out.offset || out.offset + out.bytes / 2 <= in.offset)
        << "the upsample's input [" << in.offset << ", +" << in.bytes / 2 << ") and the conv's output [" << out.offset
        << ", +" << out.bytes / 2 << ") share bytes";
}

// A CUDA plan puts the longest chain of kernels on stream 0 and a branch beside it on stream 1:
// the branch's buffers must not take bytes of the chain's that are dead in the node order but
// may still be in use when the branch runs beside the chain (in node order the branch comes last,
// so a one-stream planner gives s1 the bytes of c1 or c2).
TEST_F(PlanTest, CudaBranchBesideTheLongestChainRunsOnStreamOneInBytesOfItsOwn) {
    int x = b_.input({1, 16, 8, 8});
    auto conv = [&](int in) { return b_.conv(in, 16, 16, {.k = 3, .pad = 1, .activation = "silu"}); };
    int c1 = conv(x), c2 = conv(c1), c3 = conv(c2), c4 = conv(c3);
    int s1 = b_.conv(x, 16, 16, {.k = 1}), s2 = b_.conv(s1, 16, 16, {.k = 1});
    b_.output(b_.node(Op::kSigmoid, {b_.node(Op::kAdd, {c4, s2})}));
    auto p = plan::build(prepare(b_.graph()), {plan::Target::kCuda, /*batch=*/2, /*half=*/true});
    const std::vector<int> producers = p.graph.producers();
    auto stream_of = [&](int v) { return p.streams.at(static_cast<size_t>(producers.at(static_cast<size_t>(v)))); };
    for (int v : {c1, c2, c3, c4}) EXPECT_EQ(stream_of(v), 0) << p.graph.value(v).name;
    for (int v : {s1, s2}) EXPECT_EQ(stream_of(v), 1) << p.graph.value(v).name;
    EXPECT_GT(expect_shared_bytes_ordered(p), 0) << "no buffers share bytes: the check checked nothing";
    // The same graph planned for the CPU: one stream, and its buffers may share bytes in node order.
    const plan::ExecutionPlan cpu = build_plan(b_);
    EXPECT_EQ(cpu.streams, std::vector<int>(cpu.graph.nodes.size(), 0));
    expect_valid_memory(cpu);
}

// A 3-channel input that other convs read (here a 1x1) is converted to NHWC and stored as 8
// channels, zeros after the third, for the vectorised tensor-core path.
TEST_F(PlanTest, CudaPlanPadsFewChannelInputsToEight) {
    int x = b_.input({1, 3, 8, 8});
    b_.output(b_.conv(x, 3, 16, {.k = 1}));
    auto p = plan::build(prepare(b_.graph()), {plan::Target::kCuda, /*batch=*/4, /*half=*/true});
    int converted = 0;
    for (const ir::Node& n : p.graph.nodes) {
        if (n.op != Op::kIdentity || vp(p, n.inputs[0]).layout != Layout::kPlain) continue;
        ++converted;
        EXPECT_EQ(vp(p, n.outputs[0]).channels, 8);
        EXPECT_EQ(vp(p, n.outputs[0]).bytes, 4 * 8 * 64 * 2);
    }
    EXPECT_EQ(converted, 1);
}

// Overlap checks on the kinds of subgraphs YOLOv8 is made of, where views and lifetimes interact.
TEST_F(PlanTest, NoLiveBuffersOverlapInYoloLikeGraphs) {
    int x = b_.blocked_input({1, 16, 12, 12});
    // Stem + C2f with a residual bottleneck.
    int c1 = b_.conv(x, 16, 32, {.k = 3, .stride = 2, .pad = 1, .activation = "silu"});
    int c2 = b_.conv(c1, 32, 32, {.k = 1, .activation = "silu"});
    auto s = b_.node_n(Op::kSplit, {c2, b_.ints({16, 16})}, 2, {{"axis", int64_t{1}}});
    int bt = b_.conv(b_.conv(s[1], 16, 16, {.k = 3, .pad = 1, .activation = "silu"}), 16, 16,
                     {.k = 3, .pad = 1, .activation = "silu", .residual = s[1]});
    int c2f = b_.conv(b_.node(Op::kConcat, {s[0], s[1], bt}, {{"axis", int64_t{1}}}), 48, 32, {.k = 1});
    // Downsample + SPPF.
    int sp = b_.conv(c2f, 32, 16, {.k = 3, .stride = 2, .pad = 1});
    AttrList mp = {{"kernel_shape", Ints{5, 5}}, {"pads", Ints{2, 2, 2, 2}}};
    int y1 = b_.node(Op::kMaxPool, {sp}, mp), y2 = b_.node(Op::kMaxPool, {y1}, mp),
        y3 = b_.node(Op::kMaxPool, {y2}, mp);
    int sppf = b_.conv(b_.node(Op::kConcat, {sp, y1, y2, y3}, {{"axis", int64_t{1}}}), 64, 32, {.k = 1});
    // FPN: upsample back and concat with the earlier stride.
    int up = b_.node(
        Op::kResize, {sppf, -1, b_.floats({4}, {1, 1, 2, 2})},
        {{"coordinate_transformation_mode", std::string("asymmetric")}, {"nearest_mode", std::string("floor")}});
    int fpn = b_.conv(b_.node(Op::kConcat, {up, c2f}, {{"axis", int64_t{1}}}), 64, 16, {.k = 3, .pad = 1});
    // Detect head on two branches, reshaped and concatenated on axis 2, then split into box/class.
    int box = b_.node(Op::kReshape, {b_.conv(fpn, 16, 64, {.k = 1}), b_.ints({1, 64, -1})});
    int cls = b_.node(Op::kReshape, {b_.conv(fpn, 16, 8, {.k = 1}), b_.ints({1, 8, -1})});
    int head = b_.node(Op::kConcat, {box, cls}, {{"axis", int64_t{1}}});
    auto bc = b_.node_n(Op::kSplit, {head, b_.ints({64, 8})}, 2, {{"axis", int64_t{1}}});
    int logits = b_.node(Op::kReshape, {bc[0], b_.ints({1, 4, 16, -1})});
    int dfl = b_.node(Op::kSoftmax, {logits}, {{"axis", int64_t{2}}});
    b_.output(b_.node(Op::kReshape, {dfl, b_.ints({1, 64, -1})}));
    b_.output(b_.node(Op::kSigmoid, {bc[1]}));
    auto p = build_plan(b_);
    EXPECT_LT(p.arena_bytes, p.naive_bytes);
    int views = 0;
    for (const auto& v : p.values) views += v.storage == Storage::kView;
    EXPECT_GE(views, 8) << "split, concat inputs and reshapes should be views";
    expect_valid_memory(p);
    expect_runs_correctly();
}

#ifdef KESTREL_SOURCE_DIR
// yolov8n's CUDA plan: the Detect head's branches of levels 0 and 1 and one of level 2's run on
// stream 1 beside the neck (the chain to level 2 and the decode on stream 0); the seg and pose
// models' extra branches likewise. Shared bytes are ordered in all of them.
TEST_F(PlanTest, CudaYolov8HeadsRunBesideTheNeck) {
    const char* env = std::getenv("KESTREL_SHARED");
    const std::string models = (env ? std::string(env) : std::string(KESTREL_SOURCE_DIR) + "/../shared") + "/models/";
    for (const std::string name : {"yolov8n.onnx", "yolov8n-seg-320.onnx", "yolov8n-pose.onnx"}) {
        SCOPED_TRACE(name);
        ir::Graph g = onnx::import_model(models + name, {});
        passes::run_pipeline(g, nullptr, {.fuse_yolo_decode = true, .fuse_yolo_head_convs = true});
        const plan::ExecutionPlan p = plan::build(g, {plan::Target::kCuda, /*batch=*/8, /*half=*/true});
        std::vector<std::string> side;
        for (size_t i = 0; i < p.graph.nodes.size(); ++i) {
            const std::string& n = p.graph.nodes[i].name;
            if (p.streams[i] == 1) side.push_back(n);
            // The backbone and neck (model.0 - model.21: "/model/k/..." or "/model.k/...") are one chain.
            if (n.rfind("/model", 0) == 0 && n.size() > 7 && std::atoi(n.c_str() + 7) < 22) {
                EXPECT_EQ(p.streams[i], 0) << n;
            }
        }
        auto on_side = [&](const std::string& part) {
            return std::count_if(side.begin(), side.end(),
                                 [&](const std::string& n) { return n.find(part) != std::string::npos; });
        };
        if (name == "yolov8n.onnx") {
            EXPECT_EQ(on_side("/model/22/cv2/0/"), 2);
            EXPECT_EQ(on_side("/model/22/cv3/0/"), 2);
            EXPECT_EQ(on_side("/model/22/cv2/1/"), 2);
            EXPECT_EQ(on_side("/model/22/cv3/1/"), 2);
            EXPECT_EQ(on_side("/model/22/cv2/2/") + on_side("/model/22/cv3/2/"), 2) << "one chain of level 2";
            EXPECT_EQ(side.size(), 10u);
        } else {
            EXPECT_GE(on_side("cv2") + on_side("cv3") + on_side("cv4"), 12) << "the head's convs";
        }
        if (name == "yolov8n-seg-320.onnx") {
            EXPECT_GE(on_side("proto"), 4) << "the mask prototypes' 3 convs and upsample";
        }
        EXPECT_GT(expect_shared_bytes_ordered(p), 0);
    }
}
#endif

}  // namespace
}  // namespace kestrel::test
