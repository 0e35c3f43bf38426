#include "plan/execution_plan.h"

#include <algorithm>
#include <map>

#include "core/error.h"

namespace kestrel::plan {

namespace {

using ir::Graph;
using ir::Node;
using ir::Op;

constexpr int64_t kAlignment = 64;
int64_t align_up(int64_t v) { return (v + kAlignment - 1) / kAlignment * kAlignment; }

bool is_4d(const ir::Value& v) { return v.shape.size() == 4; }

// A binary elementwise op keeps the fast layout only between two same-shape activations in it
// (broadcasting and constants are plain).
Layout binary_layout(const Graph& g, const Node& n, const std::vector<Layout>& lay, Layout fast) {
    const ir::Value& a = g.value(n.inputs[0]);
    const ir::Value& b = g.value(n.inputs[1]);
    bool same = a.shape == b.shape && !a.constant && !b.constant;
    return same && lay[static_cast<size_t>(n.inputs[0])] == fast && lay[static_cast<size_t>(n.inputs[1])] == fast
               ? fast
               : Layout::kPlain;
}

// The CUDA backend's layouts: convolutions, pooling and resize work on NHWC only; elementwise ops,
// Split and Concat stay NHWC when their inputs are; everything else (the heads) is plain float32.
Layout cuda_output_layout(const Graph& g, const Node& n, const std::vector<Layout>& lay) {
    auto in_layout = [&](size_t i) { return lay[static_cast<size_t>(n.inputs[i])]; };
    if (!is_4d(g.value(n.outputs[0]))) return Layout::kPlain;
    switch (n.op) {
        case Op::kConv:
        case Op::kConvTranspose:
        case Op::kMaxPool:
        case Op::kResize:
            return Layout::kNhwc;
        case Op::kSigmoid:
        case Op::kRelu:
        case Op::kSin:
        case Op::kCos:
            return in_layout(0);
        case Op::kAdd:
        case Op::kSub:
        case Op::kMul:
        case Op::kDiv:
            return binary_layout(g, n, lay, Layout::kNhwc);
        case Op::kSplit:
            return n.attrs.get_int("axis", 0) == 1 && in_layout(0) == Layout::kNhwc ? Layout::kNhwc : Layout::kPlain;
        case Op::kConcat: {
            if (n.attrs.get_int("axis", 0) != 1) return Layout::kPlain;
            for (int in : n.inputs)
                if (lay[static_cast<size_t>(in)] != Layout::kNhwc || g.is_constant(in)) return Layout::kPlain;
            return Layout::kNhwc;
        }
        default:
            return Layout::kPlain;
    }
}

Layout cuda_required_input_layout(const Graph& g, const Node& n, size_t i, Layout out, Layout in) {
    switch (n.op) {
        case Op::kConv:
            if (i == 0 && in == Layout::kPlain && reads_plain_image(g, n)) return Layout::kPlain;
            return i == 0 ? Layout::kNhwc : (i == 3 ? out : Layout::kPlain);
        case Op::kConvTranspose:
        case Op::kMaxPool:
        case Op::kResize:
        case Op::kGlobalAveragePool:
            return i == 0 ? Layout::kNhwc : Layout::kPlain;
        case Op::kSigmoid:
        case Op::kRelu:
        case Op::kSin:
        case Op::kCos:
            return in;
        case Op::kAdd:
        case Op::kSub:
        case Op::kMul:
        case Op::kDiv:
        case Op::kSplit:
        case Op::kConcat:
            return out;
        case Op::kYoloDecode:
            // The level maps (or with head_convs the head convs' inputs, two a level) in NHWC: each
            // anchor's channels are contiguous (one vector load each).
            return i < static_cast<size_t>(n.attrs.get_int("num_levels", 0) *
                                           (n.attrs.get_int("head_convs", 0) ? 2 : 1))
                       ? Layout::kNhwc
                       : Layout::kPlain;
        default:
            return Layout::kPlain;
    }
}

// Layout each op produces given its inputs' layouts, and the layout it needs on each input.
Layout output_layout(const Graph& g, const Node& n, const std::vector<Layout>& lay, Target target) {
    if (target == Target::kCuda) return cuda_output_layout(g, n, lay);
    auto in_layout = [&](size_t i) { return lay[static_cast<size_t>(n.inputs[i])]; };
    const ir::Value& out = g.value(n.outputs[0]);
    if (!is_4d(out)) return Layout::kPlain;
    switch (n.op) {
        case Op::kConv:
        case Op::kConvTranspose:
            return in_layout(0) == Layout::kBlocked8 || out.shape[1] % 8 == 0 ? Layout::kBlocked8 : Layout::kPlain;
        case Op::kMaxPool:
        case Op::kResize:
        case Op::kSigmoid:
        case Op::kRelu:
        case Op::kSin:
        case Op::kCos:
            return in_layout(0);
        case Op::kAdd:
        case Op::kSub:
        case Op::kMul:
        case Op::kDiv:
            return binary_layout(g, n, lay, Layout::kBlocked8);
        case Op::kSplit: {
            if (n.attrs.get_int("axis", 0) != 1 || in_layout(0) != Layout::kBlocked8) return Layout::kPlain;
            for (int64_t s : n.attrs.get_ints("split"))
                if (s % 8) return Layout::kPlain;
            return Layout::kBlocked8;
        }
        case Op::kConcat: {
            if (n.attrs.get_int("axis", 0) != 1) return Layout::kPlain;
            for (int in : n.inputs)
                if (lay[static_cast<size_t>(in)] != Layout::kBlocked8 || g.value(in).shape[1] % 8 || g.is_constant(in))
                    return Layout::kPlain;
            return Layout::kBlocked8;
        }
        default:
            return Layout::kPlain;
    }
}

// The layout node `n` needs on input `i`, given the layout of its output; kPlain/kBlocked8, or
// the input's own layout when the op takes either. oneDNN has optimised nchw -> nChw8c
// convolutions only for few input channels (the image stem); wider nchw inputs are converted.
Layout required_input_layout(const Graph& g, const Node& n, size_t i, Layout out, Layout in, Target target) {
    if (target == Target::kCuda) return cuda_required_input_layout(g, n, i, out, in);
    auto conv_src = [&] {
        bool wide = g.value(n.inputs[0]).shape.size() == 4 && g.value(n.inputs[0]).shape[1] >= 8;
        return out == Layout::kBlocked8 && wide ? Layout::kBlocked8 : in;
    };
    switch (n.op) {
        case Op::kConv:
            return i == 3 ? out : (i == 0 ? conv_src() : Layout::kPlain);
        case Op::kConvTranspose:
            return i == 0 ? conv_src() : Layout::kPlain;
        case Op::kMaxPool:
        case Op::kResize:
        case Op::kSigmoid:
        case Op::kRelu:
        case Op::kSin:
        case Op::kCos:
        case Op::kGlobalAveragePool:
            return in;
        case Op::kAdd:
        case Op::kSub:
        case Op::kMul:
        case Op::kDiv:
        case Op::kSplit:
        case Op::kConcat:
            return out;
        default:
            return Layout::kPlain;
    }
}

void assign_layouts(Graph& g, std::vector<Layout>& lay, Target target) {
    const Layout fast = target == Target::kCuda ? Layout::kNhwc : Layout::kBlocked8;
    lay.assign(g.values.size(), Layout::kPlain);
    std::vector<Node> nodes;
    std::map<int, int> converted;  // value -> its plain (or blocked) copy
    auto convert = [&](int v, Layout want) -> int {
        int key = v * 4 + static_cast<int>(want);
        auto it = converted.find(key);
        if (it != converted.end()) return it->second;
        ir::Value c = g.value(v);
        c.name += "/" + std::string(layout_name(want));
        c.constant = nullptr;
        int id = g.add_value(std::move(c));
        lay.push_back(want);
        Node conv;
        conv.op = Op::kIdentity;
        conv.name = g.value(id).name;
        conv.inputs = {v};
        conv.outputs = {id};
        nodes.push_back(std::move(conv));
        converted[key] = id;
        return id;
    };
    for (Node n : g.nodes) {
        if (n.removed) continue;
        Layout out = output_layout(g, n, lay, target);
        for (size_t i = 0; i < n.inputs.size(); ++i) {
            int v = n.inputs[i];
            if (v < 0 || g.is_constant(v)) continue;
            Layout want = required_input_layout(g, n, i, out, lay[static_cast<size_t>(v)], target);
            if (want != lay[static_cast<size_t>(v)]) n.inputs[i] = convert(v, want);
        }
        for (int o : n.outputs) lay[static_cast<size_t>(o)] = out;
        nodes.push_back(std::move(n));
        // A graph output is always plain: the producer writes a temporary in the fast layout and an
        // Identity converts into the named output.
        for (int& o : nodes.back().outputs) {
            if (!g.is_graph_output(o) || lay[static_cast<size_t>(o)] == Layout::kPlain) continue;
            ir::Value t = g.value(o);
            t.name += "/" + std::string(layout_name(fast));
            int tmp = g.add_value(std::move(t));
            lay.push_back(fast);
            int final_out = o;
            o = tmp;
            lay[static_cast<size_t>(final_out)] = Layout::kPlain;
            Node conv;
            conv.op = Op::kIdentity;
            conv.name = g.value(final_out).name + "/to_plain";
            conv.inputs = {tmp};
            conv.outputs = {final_out};
            nodes.push_back(std::move(conv));
        }
    }
    g.nodes = std::move(nodes);
}

struct Placement {
    std::vector<int> parent;      // -1 for roots
    std::vector<int64_t> offset;  // bytes within parent

    std::pair<int, int64_t> root(int v) const {
        int64_t off = 0;
        while (parent[static_cast<size_t>(v)] >= 0) {
            off += offset[static_cast<size_t>(v)];
            v = parent[static_cast<size_t>(v)];
        }
        return {v, off};
    }
};

// Bytes per unit step along `axis` when a range along it is a slice a view can describe: for
// plain and blocked (axis 1) tensors, a contiguous byte range (all dims before axis are 1, the
// batch included); for NHWC, any channel range (the unit is one channel of one pixel).
bool sliceable_axis(const ir::Value& v, const ValuePlan& vp, int axis, int batch, int64_t* unit_bytes) {
    if (vp.layout == Layout::kNhwc) {
        *unit_bytes = static_cast<int64_t>(dtype_size(vp.dtype));
        return axis == 1;
    }
    int64_t outer = batch, inner = 1;
    for (int i = 0; i < axis; ++i) outer *= v.shape[static_cast<size_t>(i)];
    for (size_t i = static_cast<size_t>(axis) + 1; i < v.shape.size(); ++i) inner *= v.shape[i];
    *unit_bytes = inner * static_cast<int64_t>(dtype_size(vp.dtype));
    return outer == 1;
}

}  // namespace

std::string_view layout_name(Layout layout) {
    return layout == Layout::kPlain ? "nchw" : layout == Layout::kBlocked8 ? "nChw8c" : "nhwc";
}

bool reads_plain_image(const ir::Graph& g, const ir::Node& n) {
    if (n.op != Op::kConv || n.input(3) >= 0 || n.attrs.get_int("group", 1) != 1) return false;
    const Shape& w = g.value(n.inputs[1]).shape;
    return w.size() == 4 && w[1] == 3 && w[2] == 3 && w[3] == 3 && w[0] <= 64 &&
           n.attrs.get_ints("dilations", {1, 1}) == std::vector<int64_t>({1, 1});
}

std::optional<C2fBlock> c2f_block_at(const ir::Graph& g, const std::vector<std::vector<int>>& consumers, size_t i) {
    if (i + 5 >= g.nodes.size()) return std::nullopt;
    const Node &cv1 = g.nodes[i], &split = g.nodes[i + 1], &m1 = g.nodes[i + 2], &m2 = g.nodes[i + 3],
               &concat = g.nodes[i + 4], &cv2 = g.nodes[i + 5];
    if (cv1.op != Op::kConv || split.op != Op::kSplit || m1.op != Op::kConv || m2.op != Op::kConv ||
        concat.op != Op::kConcat || cv2.op != Op::kConv)
        return std::nullopt;
    if (split.inputs.size() != 1 || split.outputs.size() != 2 || split.inputs[0] != cv1.outputs[0] ||
        split.attrs.get_int("axis", 0) != 1 || concat.attrs.get_int("axis", 0) != 1)
        return std::nullopt;
    const int v = cv1.outputs[0], a = split.outputs[0], b = split.outputs[1], t = m1.outputs[0], m = m2.outputs[0],
              cat = concat.outputs[0];
    const Shape &as = g.value(a).shape, &bs = g.value(b).shape;
    if (as.size() != 4 || as != bs || m1.inputs[0] != b || m2.inputs[0] != t ||
        (m2.input(3) >= 0 && m2.inputs[3] != b) || concat.inputs != std::vector<int>{a, b, m} || cv2.inputs[0] != cat)
        return std::nullopt;
    auto only = [&](int value, std::vector<size_t> readers) {
        std::vector<size_t> got;
        for (int r : consumers[static_cast<size_t>(value)]) got.push_back(static_cast<size_t>(r));
        std::sort(got.begin(), got.end());
        std::sort(readers.begin(), readers.end());
        return got == readers && !g.is_graph_output(value);
    };
    std::vector<size_t> b_readers = {i + 2, i + 4};
    if (m2.input(3) >= 0) b_readers.push_back(i + 3);
    if (!only(v, {i + 1}) || !only(a, {i + 4}) || !only(b, b_readers) || !only(t, {i + 3}) || !only(m, {i + 4}) ||
        !only(cat, {i + 5}))
        return std::nullopt;
    return C2fBlock{i, i + 1, i + 2, i + 3, i + 4, i + 5};
}

std::optional<size_t> upsample_concat_conv_at(const ir::Graph& g, const std::vector<std::vector<int>>& consumers,
                                              size_t i) {
    if (i + 2 >= g.nodes.size()) return std::nullopt;
    const Node &up = g.nodes[i], &concat = g.nodes[i + 1], &conv = g.nodes[i + 2];
    if (up.op != Op::kResize || concat.op != Op::kConcat || conv.op != Op::kConv || up.outputs.size() != 1 ||
        concat.inputs.empty() || concat.inputs[0] != up.outputs[0] || concat.attrs.get_int("axis", 0) != 1 ||
        conv.inputs[0] != concat.outputs[0] || conv.input(3) >= 0)
        return std::nullopt;
    auto only = [&](int value, size_t reader) {
        return consumers[static_cast<size_t>(value)] == std::vector<int>{static_cast<int>(reader)} &&
               !g.is_graph_output(value);
    };
    const Shape& w = g.value(conv.inputs[1]).shape;
    const bool pointwise = w.size() == 4 && w[2] == 1 && w[3] == 1 && conv.attrs.get_int("group", 1) == 1 &&
                           conv.attrs.get_ints("strides", {1, 1}) == std::vector<int64_t>({1, 1}) &&
                           conv.attrs.get_ints("pads", {0, 0, 0, 0}) == std::vector<int64_t>({0, 0, 0, 0});
    if (!pointwise || !only(up.outputs[0], i + 1) || !only(concat.outputs[0], i + 2)) return std::nullopt;
    return i + 2;
}

namespace {

// The CUDA streams of the nodes (ExecutionPlan::streams). A node counts as one kernel, but Split,
// Concat and Reshape count none (the planner makes them views). The longest chain of kernels stays
// on stream 0; every other node goes to stream 1. A group of nodes that a backend may run as one
// kernel (a C2f block, an upsample with its concat and conv, a conv or max-pool and the next node
// if it is one of the same op reading it) is put on stream 0 whole where any of it is on the chain.
std::vector<int> assign_streams(const Graph& g) {
    const size_t n = g.nodes.size();
    const std::vector<std::vector<int>> consumers = g.consumers();
    auto for_each_consumer = [&](size_t i, auto&& f) {
        for (int o : g.nodes[i].outputs)
            for (int c : consumers[static_cast<size_t>(o)]) f(static_cast<size_t>(c));
    };
    std::vector<int> longest(n, 0);  // kernels on the longest path from node i on, node i included
    for (size_t i = n; i-- > 0;) {
        const Op op = g.nodes[i].op;
        int after = 0;
        for_each_consumer(i, [&](size_t c) { after = std::max(after, longest[c]); });
        longest[i] = after + (op == Op::kSplit || op == Op::kConcat || op == Op::kReshape ? 0 : 1);
    }
    std::vector<int> stream(n, 1);
    if (n == 0) return stream;
    for (size_t at = static_cast<size_t>(std::max_element(longest.begin(), longest.end()) - longest.begin());;) {
        stream[at] = 0;
        std::optional<size_t> next;
        for_each_consumer(at, [&](size_t c) {
            if (!next || longest[c] > longest[*next] || (longest[c] == longest[*next] && c < *next)) next = c;
        });
        if (!next) break;
        at = *next;
    }
    // A group one kernel may run (nodes first..last) is on stream 0 if any of its nodes is.
    auto together = [&](size_t first, size_t last) {
        const auto begin = stream.begin() + static_cast<ptrdiff_t>(first);
        const auto end = stream.begin() + static_cast<ptrdiff_t>(last) + 1;
        if (std::find(begin, end, 0) != end) std::fill(begin, end, 0);
    };
    for (size_t i = 0; i < n; ++i) {
        if (const std::optional<C2fBlock> c2f = c2f_block_at(g, consumers, i)) together(i, c2f->cv2);
        if (const std::optional<size_t> conv = upsample_concat_conv_at(g, consumers, i)) together(i, *conv);
        if (i + 1 < n && g.nodes[i].op == g.nodes[i + 1].op &&
            (g.nodes[i].op == Op::kConv || g.nodes[i].op == Op::kMaxPool) &&
            g.nodes[i + 1].inputs[0] == g.nodes[i].outputs[0])
            together(i, i + 1);
    }
    return stream;
}

// Bit j of before[i] (64 nodes a word) is set when node j's work is complete before node i's
// starts, the nodes running on `streams`: j is earlier on node i's stream, or produces one of its
// inputs (the backend waits for it), or is before one of those.
std::vector<std::vector<uint64_t>> nodes_before(const Graph& g, const std::vector<int>& streams) {
    const size_t n = g.nodes.size(), words = (n + 63) / 64;
    const std::vector<int> producers = g.producers();
    std::vector<std::vector<uint64_t>> before(n, std::vector<uint64_t>(words, 0));
    std::map<int, size_t> last_on_stream;
    for (size_t i = 0; i < n; ++i) {
        auto after = [&](size_t j) {
            for (size_t w = 0; w < words; ++w) before[i][w] |= before[j][w];
            before[i][j / 64] |= uint64_t{1} << (j % 64);
        };
        if (auto it = last_on_stream.find(streams[i]); it != last_on_stream.end()) after(it->second);
        for (int in : g.nodes[i].inputs)
            if (in >= 0 && producers[static_cast<size_t>(in)] >= 0)
                after(static_cast<size_t>(producers[static_cast<size_t>(in)]));
        last_on_stream[streams[i]] = i;
    }
    return before;
}

}  // namespace

int64_t storage_bytes(const ir::Value& v, Layout layout, DType dtype) {
    int64_t n = num_elements(v.shape) * static_cast<int64_t>(dtype_size(dtype));
    if (layout == Layout::kBlocked8) {
        int64_t c = v.shape[1];
        n = n / std::max<int64_t>(c, 1) * ((c + 7) / 8 * 8);
    }
    return n;
}

ExecutionPlan build(const ir::Graph& input_graph, const PlanOptions& options) {
    ExecutionPlan plan;
    plan.options = options;
    plan.graph = input_graph;
    plan.graph.compact();
    Graph& g = plan.graph;
    const bool cuda = options.target == Target::kCuda;
    const int batch = cuda ? options.batch : 1;
    KS_CHECK(batch >= 1, "planner: batch must be at least 1");
    for (int in : g.inputs) KS_CHECK(g.value(in).shape.at(0) == 1, "planner: graphs are planned at batch 1");
    // A batched plan treats dim 0 of every tensor as the batch: a graph that moves the batch
    // elsewhere (or drops it) cannot run batched.
    for (const Node& n : g.nodes)
        for (int o : n.outputs)
            KS_CHECK(!cuda || n.removed || g.value(o).shape.empty() || g.value(o).shape[0] == 1, "'", n.name,
                     "' mixes the batch into other dimensions; batched execution needs it in dim 0");
    std::vector<Layout> lay;
    assign_layouts(g, lay, options.target);

    size_t nv = g.values.size();
    plan.values.resize(nv);
    for (size_t v = 0; v < nv; ++v) {
        ValuePlan& vp = plan.values[v];
        vp.layout = lay[v];
        vp.dtype = lay[v] == Layout::kNhwc && options.half ? DType::kFloat16 : g.values[v].dtype;
        vp.bytes = storage_bytes(g.values[v], lay[v], vp.dtype) * (g.values[v].constant ? 1 : batch);
        vp.storage = g.values[v].constant ? Storage::kConstant : Storage::kArena;
    }
    if (cuda) {
        for (size_t v = 0; v < nv; ++v)
            if (lay[v] == Layout::kNhwc) plan.values[v].channels = g.values[v].shape[1];
        // The image stem: 3 channels converted to NHWC are stored as 8, zeros after the third, so
        // the stem conv runs on the vectorised tensor-core path (its weights are padded alike).
        auto consumers = g.consumers();
        for (const Node& n : g.nodes) {
            int out = n.outputs[0];
            ValuePlan& vp = plan.values[static_cast<size_t>(out)];
            if (n.op != Op::kIdentity || lay[static_cast<size_t>(n.inputs[0])] != Layout::kPlain ||
                vp.layout != Layout::kNhwc || vp.channels % 8 == 0 || vp.channels > 8)
                continue;
            bool convs_only = !consumers[static_cast<size_t>(out)].empty();
            for (int c : consumers[static_cast<size_t>(out)]) {
                const Node& cn = g.nodes[static_cast<size_t>(c)];
                convs_only =
                    convs_only && cn.op == Op::kConv && cn.inputs[0] == out && cn.attrs.get_int("group", 1) == 1;
            }
            if (!convs_only) continue;
            vp.bytes = vp.bytes / vp.channels * 8;
            vp.channels = 8;
        }
    }
    for (int in : g.inputs) plan.values[static_cast<size_t>(in)].storage = Storage::kInput;
    for (int out : g.outputs) plan.values[static_cast<size_t>(out)].storage = Storage::kOutput;

    // Aliasing.
    Placement pl{std::vector<int>(nv, -1), std::vector<int64_t>(nv, 0)};
    auto movable_root = [&](int r) { return plan.values[static_cast<size_t>(r)].storage == Storage::kArena; };
    for (const Node& n : g.nodes) {
        switch (n.op) {
            case Op::kReshape: {
                int out = n.outputs[0];
                if (!movable_root(out) || plan.values[static_cast<size_t>(n.inputs[0])].layout == Layout::kNhwc) break;
                pl.parent[static_cast<size_t>(out)] = n.inputs[0];
                break;
            }
            case Op::kSplit: {
                const ir::Value& x = g.value(n.inputs[0]);
                int64_t unit;
                int axis = static_cast<int>(n.attrs.get_int("axis", 0));
                if (!sliceable_axis(x, plan.values[static_cast<size_t>(n.inputs[0])], axis, batch, &unit)) break;
                int64_t start = 0;
                auto sizes = n.attrs.get_ints("split");
                for (size_t k = 0; k < n.outputs.size(); ++k) {
                    int out = n.outputs[k];
                    if (movable_root(out)) {
                        pl.parent[static_cast<size_t>(out)] = n.inputs[0];
                        pl.offset[static_cast<size_t>(out)] = start * unit;
                    }
                    start += sizes[k];
                }
                break;
            }
            case Op::kSlice: {
                const ir::Value& x = g.value(n.inputs[0]);
                auto starts = n.attrs.get_ints("starts"), steps = n.attrs.get_ints("steps");
                const Shape& os = g.value(n.outputs[0]).shape;
                int first = -1;
                bool ok = true;
                for (size_t a = 0; a < os.size(); ++a) {
                    if (os[a] == x.shape[a] && starts[a] == 0) continue;
                    if (first < 0) {
                        first = static_cast<int>(a);
                        ok = ok && steps[a] == 1;
                    } else {
                        ok = false;
                    }
                }
                int64_t unit;
                if (first < 0 || !ok || !movable_root(n.outputs[0]) ||
                    !sliceable_axis(x, plan.values[static_cast<size_t>(n.inputs[0])], first, batch, &unit))
                    break;
                pl.parent[static_cast<size_t>(n.outputs[0])] = n.inputs[0];
                pl.offset[static_cast<size_t>(n.outputs[0])] = starts[static_cast<size_t>(first)] * unit;
                break;
            }
            case Op::kConcat: {
                const ir::Value& out = g.value(n.outputs[0]);
                const ValuePlan& out_plan = plan.values[static_cast<size_t>(n.outputs[0])];
                int axis = static_cast<int>(n.attrs.get_int("axis", 0));
                int64_t unit;
                if (!sliceable_axis(out, out_plan, axis, batch, &unit)) break;
                // In NHWC the slots are channel ranges of one pixel: extents are per pixel.
                bool nhwc = out_plan.layout == Layout::kNhwc;
                auto extent = [&](int v) {
                    return nhwc ? g.value(v).shape[1] * unit : plan.values[static_cast<size_t>(v)].bytes;
                };
                std::vector<std::pair<int64_t, int64_t>> taken;  // byte ranges of roots placed here
                int64_t start = 0;
                for (int in : n.inputs) {
                    int64_t off = start * unit;
                    start += g.value(in).shape[static_cast<size_t>(axis)];
                    auto [r, r_off] = pl.root(in);
                    int64_t at = off - r_off;
                    int64_t size = extent(r);
                    bool fits = movable_root(r) && r != n.outputs[0] && at >= 0 && at + size <= extent(n.outputs[0]) &&
                                plan.values[static_cast<size_t>(r)].layout == out_plan.layout &&
                                plan.values[static_cast<size_t>(r)].dtype == out_plan.dtype;
                    for (auto [b, e] : taken) fits = fits && (at + size <= b || at >= e);
                    // The root may hold more than this input's slot (a whole Split source): every
                    // other input whose slot it covers must already lie inside it at that slot, or
                    // copying that input would overwrite bytes that are still read.
                    int64_t other = 0;
                    for (int o : n.inputs) {
                        int64_t o_begin = other * unit;
                        other += g.value(o).shape[static_cast<size_t>(axis)];
                        int64_t o_end = other * unit;
                        if (o == in || o_end <= at || o_begin >= at + size) continue;
                        auto [orr, ooff] = pl.root(o);
                        fits = fits && orr == r && ooff + at == o_begin;
                    }
                    if (!fits) continue;
                    pl.parent[static_cast<size_t>(r)] = n.outputs[0];
                    pl.offset[static_cast<size_t>(r)] = at;
                    taken.emplace_back(at, at + size);
                }
                break;
            }
            default:
                break;
        }
    }

    // Resolve views to their roots.
    for (size_t v = 0; v < nv; ++v) {
        if (pl.parent[v] < 0) continue;
        auto [r, off] = pl.root(static_cast<int>(v));
        plan.values[v].storage = Storage::kView;
        plan.values[v].root = r;
        plan.values[v].offset = off;
    }

    // What touches each arena root: the nodes that write or read anything placed in it.
    plan.streams = cuda ? assign_streams(g) : std::vector<int>(g.nodes.size(), 0);
    std::vector<std::vector<int>> touched(nv);
    auto root_of = [&](int v) {
        return plan.values[static_cast<size_t>(v)].storage == Storage::kView ? plan.values[static_cast<size_t>(v)].root
                                                                             : v;
    };
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        const Node& n = g.nodes[i];
        for (int o : n.outputs) touched[static_cast<size_t>(root_of(o))].push_back(static_cast<int>(i));
        for (int in : n.inputs)
            if (in >= 0) touched[static_cast<size_t>(root_of(in))].push_back(static_cast<int>(i));
    }
    // CUDA: a C2f block's input lives until its cv2 (a backend may run the block as one kernel,
    // which must not find its input's bytes reused for its output); an upsample's input until the
    // conv after its concat (which may read the upsampled channels from it).
    if (cuda) {
        const std::vector<std::vector<int>> consumers = g.consumers();
        auto keep_input_until = [&](size_t i, size_t until) {
            touched[static_cast<size_t>(root_of(g.nodes[i].inputs[0]))].push_back(static_cast<int>(until));
        };
        for (size_t i = 0; i < g.nodes.size(); ++i) {
            if (const std::optional<C2fBlock> c2f = c2f_block_at(g, consumers, i)) keep_input_until(i, c2f->cv2);
            if (const std::optional<size_t> conv = upsample_concat_conv_at(g, consumers, i)) keep_input_until(i, *conv);
        }
    }
    // Two roots may share bytes when every node touching one is complete before any node touching
    // the other starts. On one stream that is: one's last access is before the other's first.
    const std::vector<std::vector<uint64_t>> before = nodes_before(g, plan.streams);
    auto all_before = [&](const std::vector<int>& a, const std::vector<int>& b) {
        for (int j : b)
            for (int i : a)
                if (!(before[static_cast<size_t>(j)][static_cast<size_t>(i) / 64] >> (i % 64) & 1)) return false;
        return true;
    };
    std::vector<int> roots;
    for (size_t v = 0; v < nv; ++v) {
        if (plan.values[v].storage != Storage::kArena || touched[v].empty()) continue;
        roots.push_back(static_cast<int>(v));
        plan.naive_bytes += align_up(plan.values[v].bytes);
    }
    std::stable_sort(roots.begin(), roots.end(), [&](int a, int b) {
        return plan.values[static_cast<size_t>(a)].bytes > plan.values[static_cast<size_t>(b)].bytes;
    });
    struct Block {
        int64_t begin, end;
        int root;
    };
    // Offsets are placed per image and scale with the batch (ValuePlan::offset): a CUDA engine's
    // run of fewer images than its max batch keeps its tensors packed at the arena's start, not
    // spread over the max batch's bytes (measured at batch 1 on an H100 with a max batch of 128:
    // 0.342 ms spread against 0.317 for an engine built for batch 1).
    std::vector<Block> placed;
    for (int r : roots) {
        const int64_t bytes = plan.values[static_cast<size_t>(r)].bytes;
        KS_CHECK(bytes % batch == 0, "planner: '", g.value(r).name, "' is not ", batch, " images");
        const int64_t size = align_up(bytes / batch);
        const std::vector<int>& mine = touched[static_cast<size_t>(r)];
        std::vector<std::pair<int64_t, int64_t>> busy;
        for (const Block& b : placed) {
            const std::vector<int>& theirs = touched[static_cast<size_t>(b.root)];
            if (!all_before(mine, theirs) && !all_before(theirs, mine)) busy.emplace_back(b.begin, b.end);
        }
        std::sort(busy.begin(), busy.end());
        int64_t at = 0;
        for (auto [b, e] : busy) {
            if (at + size <= b) break;
            at = std::max(at, e);
        }
        plan.values[static_cast<size_t>(r)].offset = at;
        placed.push_back({at, at + size, r});
        plan.arena_bytes = std::max(plan.arena_bytes, at + size);
    }
    plan.arena_bytes *= batch;
    return plan;
}

}  // namespace kestrel::plan
