// Finds Ultralytics' Detect-head decode and replaces it with one YoloDecode node (for backends with a
// fused kernel for it: CUDA). As exported (yolov8n, -pose, -seg at opset 17), for levels l = 0..L-1:
//
//   x_l [b, 4R + nc, H_l, W_l] -> Reshape [b, 4R + nc, H_l W_l] -> Concat(axis 2) -> Split(axis 1, [4R, nc])
//       -> box: Reshape [b, 4, R, A] -> Transpose(0, 2, 1, 3) -> Softmax(axis 1) -> Conv(w [1, R, 1, 1])
//               -> Reshape [b, 4, A] -> Split(axis 1, [2, 2]) -> lt, rb
//          x1y1 = Sub(anchors, lt); x2y2 = Add(anchors, rb); c = Div(Add(x1y1, x2y2), 2); wh = Sub(x2y2, x1y1)
//          Mul(Concat(c, wh, axis 1), strides)
//       -> cls: Sigmoid
//   y = Concat(box * strides, Sigmoid(cls), [pose keypoints / mask coefficients...], axis 1)
//
// Later exports (opset 20) reshape the box and class maps of each level separately and concatenate
// them in two Concats, and take lt and rb with two Slices; both forms are matched. For those the
// level maps YoloDecode reads are new Concat(box_l, cls_l, axis 1) values, which the CUDA planner
// places as channel slices (the convolutions write straight into them).
//
// Every op, axis, split size, shape and constant is checked (the Div by exactly 2, both anchor
// operands equal, the DFL conv 1x1 without bias or epilogue), and every intermediate value must be
// read only inside the pattern and not be a graph output: anything else leaves the graph unchanged.
// The matched nodes are removed; YoloDecode writes the final Concat's output when the Concat has
// only the two decode inputs, else a new value that the Concat reads in their place.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "passes/passes.h"

namespace kestrel::passes {

namespace {

using ir::Node;
using ir::Op;

size_t sz(int64_t v) { return static_cast<size_t>(v); }

struct Match {
    // Per level: the map YoloDecode reads, or (box map, class map) when a level Concat must be made.
    std::vector<int> levels;
    std::vector<std::pair<int, int>> split_levels;
    std::vector<size_t> level_slots;  // split form: node positions the level Concats take (see rewrite)
    int anchors = -1, strides = -1, dfl = -1;
    int64_t reg_max = 0, nc = 0, batch = 0, anchors_count = 0;
    std::vector<size_t> nodes;  // every matched node, the final Concat and the Mul included
    size_t mul = 0, sigmoid = 0, final_concat = 0;
    int mul_out = -1, sigmoid_out = -1;
};

class Matcher {
   public:
    explicit Matcher(const ir::Graph& g) : g_(g), producers_(g.producers()), consumers_(g.consumers()) {}

    // The decode around the DFL Softmax at node `softmax`, or nothing when any part differs.
    std::optional<Match> match(size_t softmax) {
        m_ = Match{};
        box_ = cls_ = dist_ = -1;
        box_levels_.clear();
        if (!match_dfl(softmax) || !match_front() || !match_back()) return std::nullopt;
        return m_;
    }

   private:
    const Node& node(size_t i) const { return g_.nodes[i]; }
    const Shape& shape(int v) const { return g_.value(v).shape; }

    // The live node of op `op` writing `v`, with `outputs` outputs; -1 when there is none.
    int64_t producer(int v, Op op, size_t outputs = 1) const {
        if (v < 0) return -1;
        int p = producers_[sz(v)];
        if (p < 0 || node(sz(p)).op != op || node(sz(p)).outputs.size() != outputs) return -1;
        return p;
    }
    // `v` is read exactly by `readers` (once each, in any order) and is not a graph output.
    bool read_only_by(int v, std::vector<int64_t> readers) const {
        if (g_.is_graph_output(v)) return false;
        std::vector<int64_t> got(consumers_[sz(v)].begin(), consumers_[sz(v)].end());
        std::sort(got.begin(), got.end());
        std::sort(readers.begin(), readers.end());
        return got == readers;
    }
    int64_t sole_reader(int v) const {
        return g_.is_graph_output(v) || consumers_[sz(v)].size() != 1 ? -1 : consumers_[sz(v)][0];
    }
    bool has_shape(int v, const Shape& s) const { return g_.value(v).shape_known && shape(v) == s; }
    bool float_constant(int v) const { return g_.is_constant(v) && g_.value(v).dtype == DType::kFloat32; }
    void take(int64_t n) { m_.nodes.push_back(sz(n)); }

    // Softmax(Transpose(Reshape(box))) -> Conv 1x1 -> Reshape [b, 4, A]: fixes R, A and the box value.
    bool match_dfl(size_t si) {
        const Node& sm = node(si);
        if (sm.op != Op::kSoftmax || sm.inputs.size() != 1 || sm.outputs.size() != 1) return false;
        if (sm.attrs.get_int("axis", -1) != 1 || sm.attrs.get_int("coerce_2d", 0) != 0) return false;
        const Shape& ss = shape(sm.outputs[0]);
        if (ss.size() != 4 || ss[2] != 4) return false;
        m_.batch = ss[0];
        m_.reg_max = ss[1];
        m_.anchors_count = ss[3];
        const int64_t b = m_.batch, r = m_.reg_max, a = m_.anchors_count;
        if (r < 1 || a < 1) return false;
        take(static_cast<int64_t>(si));

        int64_t tr = producer(sm.inputs[0], Op::kTranspose);
        if (tr < 0 || sole_reader(sm.inputs[0]) != static_cast<int64_t>(si)) return false;
        if (node(sz(tr)).attrs.get_ints("perm") != std::vector<int64_t>{0, 2, 1, 3}) return false;
        take(tr);
        int box4 = node(sz(tr)).inputs[0];
        int64_t rs = producer(box4, Op::kReshape);
        if (rs < 0 || sole_reader(box4) != tr || !has_shape(box4, {b, 4, r, a})) return false;
        take(rs);
        box_ = node(sz(rs)).inputs[0];
        if (!has_shape(box_, {b, 4 * r, a}) || sole_reader(box_) != rs) return false;

        int64_t cv = sole_reader(sm.outputs[0]);
        if (cv < 0 || node(sz(cv)).op != Op::kConv) return false;
        const Node& conv = node(sz(cv));
        // Input 0 the softmax, 1 the weights; no bias, no residual, no fused epilogue.
        if (conv.inputs.size() < 2 || conv.inputs[0] != sm.outputs[0] || conv.outputs.size() != 1) return false;
        for (size_t i = 2; i < conv.inputs.size(); ++i)
            if (conv.inputs[i] >= 0) return false;
        if (conv.attrs.has("activation") || conv.attrs.has("precision")) return false;
        const std::vector<int64_t> one{1, 1};
        if (conv.attrs.get_int("group", 1) != 1 || conv.attrs.get_ints("strides", one) != one ||
            conv.attrs.get_ints("dilations", one) != one ||
            conv.attrs.get_ints("pads", {0, 0, 0, 0}) != std::vector<int64_t>{0, 0, 0, 0} ||
            conv.attrs.get_ints("kernel_shape", one) != one)
            return false;
        if (!float_constant(conv.inputs[1]) || !has_shape(conv.inputs[1], {1, r, 1, 1})) return false;
        m_.dfl = conv.inputs[1];
        take(cv);
        int d4 = conv.outputs[0];
        if (!has_shape(d4, {b, 1, 4, a})) return false;
        int64_t rd = sole_reader(d4);
        if (rd < 0 || node(sz(rd)).op != Op::kReshape || node(sz(rd)).outputs.size() != 1) return false;
        take(rd);
        dist_ = node(sz(rd)).outputs[0];
        return has_shape(dist_, {b, 4, a});
    }

    // Back from the box value to the level maps: either Split(Concat(Reshape(x_l)...)) or, in the
    // later form, Concat(Reshape(box_l)...) (the class concat is reached from the Sigmoid in match_back).
    bool match_front() {
        const int64_t r = m_.reg_max;
        int64_t sp = producer(box_, Op::kSplit, 2);
        if (sp < 0) return match_level_concat(box_, 4 * r, &box_levels_);
        const Node& split = node(sz(sp));
        if (split.outputs[0] != box_ || split.attrs.get_int("axis", -1) != 1) return false;
        auto sizes = split.attrs.get_ints("split");
        if (sizes.size() != 2 || sizes[0] != 4 * r || sizes[1] < 1) return false;
        m_.nc = sizes[1];
        cls_ = split.outputs[1];
        take(sp);
        int cat = split.inputs[0];
        std::vector<Level> levels;
        if (sole_reader(cat) != sp || !match_level_concat(cat, 4 * r + m_.nc, &levels)) return false;
        for (const Level& l : levels) m_.levels.push_back(l.map);
        return true;
    }

    struct Level {
        int map;         // [b, c, H, W]
        size_t reshape;  // its Reshape to [b, c, H W]
    };

    // `cat` = Concat(axis 2) of Reshape(map_l) to [b, c, H_l W_l], maps 4-D [b, c, H_l, W_l] float32
    // activations with H_l W_l summing to A; records the nodes and returns the levels in order.
    bool match_level_concat(int cat, int64_t c, std::vector<Level>* levels) {
        const int64_t b = m_.batch;
        int64_t cn = producer(cat, Op::kConcat);
        if (cn < 0 || node(sz(cn)).attrs.get_int("axis", -1) != 2 || !has_shape(cat, {b, c, m_.anchors_count}))
            return false;
        take(cn);
        int64_t total = 0;
        for (int in : node(sz(cn)).inputs) {
            int64_t rs = producer(in, Op::kReshape);
            if (rs < 0 || sole_reader(in) != cn) return false;
            int x = node(sz(rs)).inputs[0];
            if (x < 0 || g_.is_constant(x) || g_.value(x).dtype != DType::kFloat32) return false;
            const Shape& xs = shape(x);
            if (xs.size() != 4 || xs[0] != b || xs[1] != c || !has_shape(in, {b, c, xs[2] * xs[3]})) return false;
            total += xs[2] * xs[3];
            take(rs);
            levels->push_back({x, sz(rs)});
        }
        return !levels->empty() && total == m_.anchors_count;
    }

    // From the DFL output to the final Concat: lt/rb (Split or two Slices), the box arithmetic with
    // its constants, the Mul by strides, the Sigmoid of the class logits and the final Concat.
    bool match_back() {
        const int64_t b = m_.batch, a = m_.anchors_count;
        const Shape half{b, 2, a};
        int lt = -1, rb = -1;
        auto readers = consumers_[sz(dist_)];
        if (g_.is_graph_output(dist_)) return false;
        if (readers.size() == 1 && node(sz(readers[0])).op == Op::kSplit) {
            const Node& sp = node(sz(readers[0]));
            if (sp.outputs.size() != 2 || sp.attrs.get_int("axis", -1) != 1 ||
                sp.attrs.get_ints("split") != std::vector<int64_t>{2, 2})
                return false;
            lt = sp.outputs[0];
            rb = sp.outputs[1];
            take(readers[0]);
        } else if (readers.size() == 2) {
            for (int rd : readers) {
                const Node& sl = node(sz(rd));
                if (sl.op != Op::kSlice || sl.outputs.size() != 1 || sl.attrs.get_ints("shape") != half ||
                    sl.attrs.get_ints("steps") != std::vector<int64_t>{1, 1, 1})
                    return false;
                auto st = sl.attrs.get_ints("starts");
                if (st == std::vector<int64_t>{0, 0, 0}) {
                    lt = sl.outputs[0];
                } else if (st == std::vector<int64_t>{0, 2, 0}) {
                    rb = sl.outputs[0];
                }
                take(rd);
            }
            if (lt < 0 || rb < 0) return false;
        } else {
            return false;
        }
        if (!has_shape(lt, half) || !has_shape(rb, half)) return false;

        // x1y1 = anchors - lt; x2y2 = anchors + rb (either operand order for the Add).
        int64_t sub1 = sole_reader(lt);
        if (sub1 < 0 || node(sz(sub1)).op != Op::kSub || node(sz(sub1)).inputs[1] != lt) return false;
        int anchors = node(sz(sub1)).inputs[0];
        int64_t add1 = sole_reader(rb);
        if (add1 < 0 || node(sz(add1)).op != Op::kAdd) return false;
        int anchors2 = other_input(add1, rb);
        if (!anchor_constant(anchors) || !anchor_constant(anchors2) || !same_constant(anchors, anchors2)) return false;
        m_.anchors = anchors;
        int x1y1 = node(sz(sub1)).outputs[0], x2y2 = node(sz(add1)).outputs[0];
        if (!has_shape(x1y1, half) || !has_shape(x2y2, half)) return false;
        take(sub1);
        take(add1);

        // c_xy = (x1y1 + x2y2) / 2; wh = x2y2 - x1y1; both read exactly once each.
        int64_t add2 = -1, sub2 = -1;
        for (int n : consumers_[sz(x1y1)]) {
            if (node(sz(n)).op == Op::kAdd) add2 = n;
            if (node(sz(n)).op == Op::kSub) sub2 = n;
        }
        if (add2 < 0 || sub2 < 0 || !read_only_by(x1y1, {add2, sub2}) || !read_only_by(x2y2, {add2, sub2}))
            return false;
        const Node& add = node(sz(add2));
        const Node& sub = node(sz(sub2));
        if (other_input(add2, x1y1) != x2y2 || sub.op != Op::kSub || sub.inputs[0] != x2y2 || sub.inputs[1] != x1y1)
            return false;
        int64_t div = sole_reader(add.outputs[0]);
        if (div < 0 || node(sz(div)).op != Op::kDiv || node(sz(div)).inputs[0] != add.outputs[0]) return false;
        int two = node(sz(div)).inputs[1];
        if (!float_constant(two) || g_.value(two).constant->size() != 1 ||
            g_.value(two).constant->to_floats()[0] != 2.f)
            return false;
        int c_xy = node(sz(div)).outputs[0], wh = sub.outputs[0];
        if (!has_shape(add.outputs[0], half) || !has_shape(c_xy, half) || !has_shape(wh, half)) return false;
        take(add2);
        take(sub2);
        take(div);

        // Mul(Concat(c_xy, wh, axis 1), strides).
        int64_t cat = sole_reader(c_xy);
        if (cat < 0 || sole_reader(wh) != cat) return false;
        const Node& boxcat = node(sz(cat));
        if (boxcat.op != Op::kConcat || boxcat.attrs.get_int("axis", -1) != 1 ||
            boxcat.inputs != std::vector<int>{c_xy, wh} || !has_shape(boxcat.outputs[0], {b, 4, a}))
            return false;
        take(cat);
        int64_t mul = sole_reader(boxcat.outputs[0]);
        if (mul < 0 || node(sz(mul)).op != Op::kMul) return false;
        int strides = other_input(mul, boxcat.outputs[0]);
        if (!float_constant(strides) || num_elements(shape(strides)) != a) return false;
        const Shape& ss = shape(strides);
        if (!(ss == Shape{a} || ss == Shape{1, a} || ss == Shape{1, 1, a})) return false;
        m_.strides = strides;
        m_.mul = sz(mul);
        m_.mul_out = node(sz(mul)).outputs[0];
        if (!has_shape(m_.mul_out, {b, 4, a})) return false;
        take(mul);

        // Concat(box, Sigmoid(cls), ...) along axis 1.
        int64_t fin = sole_reader(m_.mul_out);
        if (fin < 0) return false;
        const Node& out = node(sz(fin));
        if (out.op != Op::kConcat || out.attrs.get_int("axis", -1) != 1 || out.inputs.size() < 2 ||
            out.inputs[0] != m_.mul_out)
            return false;
        int64_t sig = producer(out.inputs[1], Op::kSigmoid);
        if (sig < 0 || sole_reader(out.inputs[1]) != fin) return false;
        m_.sigmoid_out = out.inputs[1];
        m_.sigmoid = sz(sig);
        m_.final_concat = sz(fin);
        take(sig);
        take(fin);
        int cls = node(sz(sig)).inputs[0];
        if (sole_reader(cls) != sig) return false;
        if (cls_ >= 0) {
            if (cls != cls_) return false;
        } else {
            // Separate class concat: its levels pair with the box levels in order (same H and W).
            if (!g_.value(cls).shape_known || shape(cls).size() != 3 || shape(cls)[1] < 1) return false;
            m_.nc = shape(cls)[1];
            std::vector<Level> cls_levels;
            if (!match_level_concat(cls, m_.nc, &cls_levels) || cls_levels.size() != box_levels_.size()) return false;
            for (size_t l = 0; l < cls_levels.size(); ++l) {
                const Shape& bs = shape(box_levels_[l].map);
                const Shape& cs = shape(cls_levels[l].map);
                if (bs[2] != cs[2] || bs[3] != cs[3]) return false;
                m_.split_levels.emplace_back(box_levels_[l].map, cls_levels[l].map);
                // The level Concat takes the later of the two Reshapes' places: after both maps.
                m_.level_slots.push_back(std::max(box_levels_[l].reshape, cls_levels[l].reshape));
            }
        }
        if (!has_shape(cls, {b, m_.nc, a}) || !has_shape(m_.sigmoid_out, {b, m_.nc, a})) return false;
        // No node may be matched twice (e.g. one Reshape feeding both level concats).
        std::vector<size_t> nodes = m_.nodes;
        std::sort(nodes.begin(), nodes.end());
        return std::adjacent_find(nodes.begin(), nodes.end()) == nodes.end();
    }

    int other_input(int64_t n, int v) const {
        const Node& nd = node(sz(n));
        if (nd.inputs.size() != 2) return -1;
        if (nd.inputs[0] == v && nd.inputs[1] != v) return nd.inputs[1];
        if (nd.inputs[1] == v && nd.inputs[0] != v) return nd.inputs[0];
        return -1;
    }
    bool anchor_constant(int v) const {
        const int64_t a = m_.anchors_count;
        return float_constant(v) && (shape(v) == Shape{2, a} || shape(v) == Shape{1, 2, a});
    }
    bool same_constant(int x, int y) const {
        return x == y || (shape(x) == shape(y) && g_.value(x).constant->bytes == g_.value(y).constant->bytes);
    }

    const ir::Graph& g_;
    std::vector<int> producers_;
    std::vector<std::vector<int>> consumers_;
    Match m_;
    int box_ = -1, cls_ = -1, dist_ = -1;
    std::vector<Level> box_levels_;  // the later form's box levels, paired with the class levels
};

void rewrite(ir::Graph& g, const Match& m) {
    const int64_t a = m.anchors_count;
    for (size_t n : m.nodes) g.nodes[n].removed = true;
    std::vector<int> levels = m.levels;
    for (size_t l = 0; l < m.split_levels.size(); ++l) {
        // One map per level with the box then the class channels, as the fused op reads them.
        auto [box, cls] = m.split_levels[l];
        ir::Value v = g.value(box);
        v.name += "/yolo_level";
        v.shape[1] = 4 * m.reg_max + m.nc;
        v.constant = nullptr;
        int x = g.add_value(std::move(v));
        Node& cat = g.nodes[m.level_slots[l]];
        cat = Node{};
        cat.op = Op::kConcat;
        cat.name = g.value(x).name;
        cat.inputs = {box, cls};
        cat.outputs = {x};
        cat.attrs.set("axis", int64_t{1});
        levels.push_back(x);
    }
    Node dec;
    dec.op = Op::kYoloDecode;
    dec.inputs = levels;
    dec.inputs.insert(dec.inputs.end(), {m.anchors, m.strides, m.dfl});
    dec.attrs.set("num_levels", static_cast<int64_t>(levels.size()));
    dec.attrs.set("reg_max", m.reg_max);
    dec.attrs.set("nc", m.nc);
    Node& fin = g.nodes[m.final_concat];
    if (fin.inputs.size() == 2) {
        // The decode is the whole output: YoloDecode takes the final Concat's place and value.
        dec.name = fin.name;
        dec.outputs = fin.outputs;
        fin = std::move(dec);
        return;
    }
    // Extra branches (keypoints, mask coefficients) stay concatenated after the decode. It takes
    // the place of the later of the Mul (after every box input) and the Sigmoid (after every class
    // input): after all level maps, before the Concat.
    const size_t slot = std::max(m.mul, m.sigmoid);
    ir::Value y;
    y.name = g.nodes[m.final_concat].name + "/yolo_decode";
    y.shape = {m.batch, 4 + m.nc, a};
    y.shape_known = true;
    int yv = g.add_value(std::move(y));
    dec.name = g.value(yv).name;
    dec.outputs = {yv};
    g.nodes[slot] = std::move(dec);
    Node& f = g.nodes[m.final_concat];
    f.removed = false;
    f.inputs.erase(f.inputs.begin(), f.inputs.begin() + 2);
    f.inputs.insert(f.inputs.begin(), yv);
}

}  // namespace

bool fuse_yolo_decode(ir::Graph& g) {
    bool changed = false;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        if (g.nodes[i].removed || g.nodes[i].op != Op::kSoftmax) continue;
        // A fresh matcher per candidate: a rewrite changes producers and readers.
        std::optional<Match> m = Matcher(g).match(i);
        if (!m) continue;
        rewrite(g, *m);
        changed = true;
    }
    return changed;
}

}  // namespace kestrel::passes
