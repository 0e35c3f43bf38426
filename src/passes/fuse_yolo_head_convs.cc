// Moves the Detect head's last convolutions into YoloDecode (for CUDA engines with float16 feature
// maps: FP16 and INT8). Each level map
// the decode reads is, in YOLOv8, Concat(cv2[l][2](box_l), cv3[l][2](cls_l), axis 1): two 1x1 convs
// with bias and no activation, 4 R box logits and nc class logits. With head_convs = 1, YoloDecode
// reads box_l and cls_l and multiplies them by those convs' weights itself, so the logits never
// go to memory (at batch 64 they are 2.4 MB an image written and read back in f16) and six kernels
// fewer run. Inputs after the rewrite (L levels):
//   box_0, cls_0, ..., box_{L-1}, cls_{L-1},  w_box_0, b_box_0, w_cls_0, b_cls_0, ...,  anchors, strides, dfl
// The whole head must match (every level, each conv read only by its Concat, each Concat only by
// the decode, constant weights and biases, no INT8 precision on the convs, the box and the class
// features of every level as wide as level 0's and a multiple of 8 channels, as the kernel reads
// them): anything else leaves the graph unchanged.
#include <optional>
#include <vector>

#include "passes/passes.h"

namespace kestrel::passes {

namespace {

using ir::Node;
using ir::Op;

size_t sz(int64_t v) { return static_cast<size_t>(v); }

struct HeadConv {
    size_t node = 0;
    int x = -1, w = -1, b = -1;
};

}  // namespace

bool fuse_yolo_head_convs(ir::Graph& g) {
    bool changed = false;
    const auto producers = g.producers();
    const auto consumers = g.consumers();
    // The 1x1 conv writing v with `channels` outputs, read only by the level Concat.
    auto head_conv = [&](int v, int64_t channels) -> std::optional<HeadConv> {
        const int p = v >= 0 ? producers[sz(v)] : -1;
        if (p < 0 || consumers[sz(v)].size() != 1 || g.is_graph_output(v)) return std::nullopt;
        const Node& c = g.nodes[sz(p)];
        if (c.removed || c.op != Op::kConv || c.inputs.size() != 3 || c.inputs[2] < 0 || c.attrs.has("activation") ||
            c.attrs.get_string("precision", "") == "int8")
            return std::nullopt;
        if (!g.is_constant(c.inputs[1]) || !g.is_constant(c.inputs[2])) return std::nullopt;
        const Shape& w = g.value(c.inputs[1]).shape;
        const Shape& x = g.value(c.inputs[0]).shape;
        if (w.size() != 4 || w[0] != channels || w[2] != 1 || w[3] != 1 || x.size() != 4 || x[1] != w[1])
            return std::nullopt;
        const std::vector<int64_t> ones{1, 1}, zeros{0, 0, 0, 0};
        if (c.attrs.get_int("group", 1) != 1 || c.attrs.get_ints("strides", ones) != ones ||
            c.attrs.get_ints("dilations", ones) != ones || c.attrs.get_ints("pads", zeros) != zeros)
            return std::nullopt;
        return HeadConv{sz(p), c.inputs[0], c.inputs[1], c.inputs[2]};
    };
    for (Node& d : g.nodes) {
        if (d.removed || d.op != Op::kYoloDecode || d.attrs.get_int("head_convs", 0) != 0) continue;
        const int64_t levels = d.attrs.get_int("num_levels", 0), reg_max = d.attrs.get_int("reg_max", 0),
                      nc = d.attrs.get_int("nc", 0);
        if (levels < 1 || static_cast<int64_t>(d.inputs.size()) != levels + 3) continue;
        std::vector<int> features, weights;
        std::vector<size_t> matched;
        bool ok = true;
        for (int64_t l = 0; l < levels && ok; ++l) {
            const int map = d.inputs[sz(l)];
            const int p = producers[sz(map)];
            ok = p >= 0 && consumers[sz(map)].size() == 1 && !g.is_graph_output(map);
            if (!ok) break;
            const Node& cat = g.nodes[sz(p)];
            ok = !cat.removed && cat.op == Op::kConcat && cat.attrs.get_int("axis", 0) == 1 && cat.inputs.size() == 2;
            if (!ok) break;
            const auto box = head_conv(cat.inputs[0], 4 * reg_max), cls = head_conv(cat.inputs[1], nc);
            ok = box && cls;
            if (!ok) break;
            const int64_t cb = g.value(box->x).shape[1], cc = g.value(cls->x).shape[1];
            ok = cb % 8 == 0 && cc % 8 == 0 &&
                 (l == 0 || (cb == g.value(features[0]).shape[1] && cc == g.value(features[1]).shape[1]));
            if (!ok) break;
            features.insert(features.end(), {box->x, cls->x});
            weights.insert(weights.end(), {box->w, box->b, cls->w, cls->b});
            matched.insert(matched.end(), {sz(p), box->node, cls->node});
        }
        if (!ok) continue;
        std::vector<int> inputs = features;
        inputs.insert(inputs.end(), weights.begin(), weights.end());
        inputs.insert(inputs.end(), d.inputs.end() - 3, d.inputs.end());
        d.inputs = inputs;
        d.attrs.set("head_convs", int64_t{1});
        for (size_t i : matched) g.nodes[i].removed = true;
        changed = true;
    }
    return changed;
}

}  // namespace kestrel::passes
