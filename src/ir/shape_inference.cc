#include "ir/shape_inference.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "core/error.h"

namespace kestrel::ir {

namespace {

class NodeContext {
   public:
    NodeContext(Graph& g, Node& n) : g_(g), n_(n) {}

    const Value& in(size_t i) const {
        KS_CHECK(i < n_.inputs.size() && n_.inputs[i] >= 0, "missing input ", i);
        const Value& v = g_.value(n_.inputs[i]);
        KS_CHECK(v.shape_known, "input '", v.name, "' has an unknown shape");
        return v;
    }
    bool has_in(size_t i) const { return i < n_.inputs.size() && n_.inputs[i] >= 0; }
    // Constant integer contents of input i; the input must be a constant.
    std::vector<int64_t> const_ints(size_t i, const char* what) const {
        KS_CHECK(g_.is_constant(n_.inputs[i]), what, " must be a constant (after folding shape computations)");
        return g_.value(n_.inputs[i]).constant->to_int64s();
    }
    std::vector<float> const_floats(size_t i, const char* what) const {
        KS_CHECK(g_.is_constant(n_.inputs[i]), what, " must be a constant");
        return g_.value(n_.inputs[i]).constant->to_floats();
    }
    void set_out(size_t i, const Shape& s, DType t) {
        KS_CHECK(i < n_.outputs.size(), "missing output ", i);
        for (int64_t d : s) KS_CHECK(d >= 0, "negative output dimension in ", shape_str(s));
        Value& v = g_.value(n_.outputs[i]);
        v.shape = s;
        v.dtype = t;
        v.shape_known = true;
    }
    void drop_inputs_from(size_t i) {
        if (n_.inputs.size() > i) n_.inputs.erase(n_.inputs.begin() + static_cast<std::ptrdiff_t>(i), n_.inputs.end());
    }

   private:
    Graph& g_;
    Node& n_;
};

int64_t conv_out(int64_t in, int64_t k, int64_t s, int64_t p0, int64_t p1, int64_t d, bool ceil_mode) {
    double v = static_cast<double>(in + p0 + p1 - d * (k - 1) - 1) / static_cast<double>(s);
    return static_cast<int64_t>(ceil_mode ? std::ceil(v) : std::floor(v)) + 1;
}

// Resolves ONNX auto_pad into explicit pads (SAME_UPPER/SAME_LOWER/VALID), then removes it.
void resolve_auto_pad(Node& n, const Shape& x, const std::vector<int64_t>& k, const std::vector<int64_t>& s,
                      const std::vector<int64_t>& d) {
    std::string ap = n.attrs.get_string("auto_pad", "NOTSET");
    n.attrs.erase("auto_pad");
    if (ap == "NOTSET") return;
    std::vector<int64_t> pads(4, 0);
    if (ap != "VALID") {
        KS_CHECK(ap == "SAME_UPPER" || ap == "SAME_LOWER", "unsupported auto_pad '", ap, "'");
        for (int i = 0; i < 2; ++i) {
            int64_t in = x[2 + i], out = (in + s[i] - 1) / s[i];
            int64_t total = std::max<int64_t>(0, (out - 1) * s[i] + d[i] * (k[i] - 1) + 1 - in);
            pads[i] = ap == "SAME_UPPER" ? total / 2 : total - total / 2;
            pads[2 + i] = total - pads[i];
        }
    }
    n.attrs.set("pads", pads);
}

void infer_conv(NodeContext& c, Node& n) {
    const Shape& x = c.in(0).shape;
    const Shape& w = c.in(1).shape;
    KS_CHECK(x.size() == 4 && w.size() == 4, "only 2-D convolution (4-D tensors) is supported");
    std::vector<int64_t> k = n.attrs.get_ints("kernel_shape", {w[2], w[3]});
    auto s = n.attrs.get_ints("strides", {1, 1});
    auto d = n.attrs.get_ints("dilations", {1, 1});
    resolve_auto_pad(n, x, k, s, d);
    auto p = n.attrs.get_ints("pads", {0, 0, 0, 0});
    KS_CHECK(k.size() == 2 && s.size() == 2 && d.size() == 2 && p.size() == 4, "malformed convolution attributes");
    int64_t g = n.attrs.get_int("group", 1);
    KS_CHECK(g >= 1 && x[1] == w[1] * g && w[0] % g == 0, "input channels ", x[1], " do not match weights ",
             shape_str(w), " with group ", g);
    KS_CHECK(k[0] == w[2] && k[1] == w[3], "kernel_shape does not match the weights");
    if (c.has_in(2)) KS_CHECK(c.in(2).shape == Shape{w[0]}, "bias shape must be [", w[0], "]");
    Shape out = {x[0], w[0], conv_out(x[2], k[0], s[0], p[0], p[2], d[0], false),
                 conv_out(x[3], k[1], s[1], p[1], p[3], d[1], false)};
    if (c.has_in(3)) KS_CHECK(c.in(3).shape == out, "residual shape differs from the convolution output");
    c.set_out(0, out, DType::kFloat32);
}

void infer_conv_transpose(NodeContext& c, Node& n) {
    const Shape& x = c.in(0).shape;
    const Shape& w = c.in(1).shape;
    KS_CHECK(x.size() == 4 && w.size() == 4 && x[1] == w[0], "ConvTranspose: unsupported shapes");
    KS_CHECK(n.attrs.get_int("group", 1) == 1, "ConvTranspose: groups are not supported");
    KS_CHECK(!n.attrs.has("output_shape"), "ConvTranspose: attribute output_shape is not supported");
    KS_CHECK(n.attrs.get_string("auto_pad", "NOTSET") == "NOTSET", "ConvTranspose: auto_pad is not supported");
    auto s = n.attrs.get_ints("strides", {1, 1});
    auto p = n.attrs.get_ints("pads", {0, 0, 0, 0});
    auto d = n.attrs.get_ints("dilations", {1, 1});
    auto op = n.attrs.get_ints("output_padding", {0, 0});
    Shape out = {x[0], w[1], s[0] * (x[2] - 1) + op[0] + (w[2] - 1) * d[0] + 1 - p[0] - p[2],
                 s[1] * (x[3] - 1) + op[1] + (w[3] - 1) * d[1] + 1 - p[1] - p[3]};
    c.set_out(0, out, DType::kFloat32);
}

void infer_maxpool(NodeContext& c, Node& n) {
    const Shape& x = c.in(0).shape;
    auto k = n.attrs.get_ints("kernel_shape");
    KS_CHECK(x.size() == 4 && k.size() == 2, "only 2-D max pooling is supported");
    KS_CHECK(n.outputs.size() == 1, "MaxPool: the Indices output is not supported");
    KS_CHECK(n.attrs.get_int("storage_order", 0) == 0, "MaxPool: storage_order=1 is not supported");
    auto s = n.attrs.get_ints("strides", {1, 1});
    auto d = n.attrs.get_ints("dilations", {1, 1});
    resolve_auto_pad(n, x, k, s, d);
    auto p = n.attrs.get_ints("pads", {0, 0, 0, 0});
    bool ceil_mode = n.attrs.get_int("ceil_mode", 0) != 0;
    c.set_out(0,
              {x[0], x[1], conv_out(x[2], k[0], s[0], p[0], p[2], d[0], ceil_mode),
               conv_out(x[3], k[1], s[1], p[1], p[3], d[1], ceil_mode)},
              c.in(0).dtype);
}

void infer_resize(NodeContext& c, Node& n) {
    const Shape& x = c.in(0).shape;
    KS_CHECK(x.size() == 4, "Resize: only 4-D inputs are supported");
    KS_CHECK(n.attrs.get_string("mode", "nearest") == "nearest", "Resize: only mode 'nearest' is supported");
    if (n.inputs.size() == 1 && n.attrs.has("shape")) {  // already canonical
        c.set_out(0, n.attrs.get_ints("shape"), c.in(0).dtype);
        return;
    }
    // Inputs: X, roi, scales, sizes (opset 11+). Scales and sizes are exclusive.
    Shape out;
    if (c.has_in(3) && c.in(3).constant && c.in(3).constant->size() > 0) {
        auto sizes = c.const_ints(3, "Resize sizes");
        KS_CHECK(sizes.size() == 4, "Resize: sizes must have 4 entries");
        out = sizes;
    } else {
        KS_CHECK(c.has_in(2), "Resize: neither scales nor sizes given");
        auto scales = c.const_floats(2, "Resize scales");
        KS_CHECK(scales.size() == 4 && scales[0] == 1.f && scales[1] == 1.f,
                 "Resize: only spatial scales (1, 1, sh, sw) are supported");
        out = {x[0], x[1], static_cast<int64_t>(std::floor(x[2] * static_cast<double>(scales[2]))),
               static_cast<int64_t>(std::floor(x[3] * static_cast<double>(scales[3])))};
        n.attrs.set("scale_h", scales[2]);
        n.attrs.set("scale_w", scales[3]);
    }
    KS_CHECK(out[0] == x[0] && out[1] == x[1], "Resize: only spatial resizing is supported");
    n.attrs.set("shape", out);
    c.drop_inputs_from(1);
    c.set_out(0, out, c.in(0).dtype);
}

// Turns Reshape/Flatten/Squeeze/Unsqueeze into Reshape{shape}.
void infer_reshape_like(NodeContext& c, Node& n, int opset) {
    const Value& xv = c.in(0);
    const Shape& x = xv.shape;
    int64_t total = num_elements(x);
    Shape out;
    if (n.op == Op::kReshape && n.inputs.size() == 1) {  // already canonical
        out = n.attrs.get_ints("shape");
        KS_CHECK(num_elements(out) == total, "cannot reshape ", shape_str(x), " to ", shape_str(out));
        c.set_out(0, out, xv.dtype);
        return;
    }
    switch (n.op) {
        case Op::kReshape: {
            auto spec = c.const_ints(1, "Reshape shape");
            bool allowzero = n.attrs.get_int("allowzero", 0) != 0;
            int64_t known = 1;
            int infer_at = -1;
            for (size_t i = 0; i < spec.size(); ++i) {
                int64_t d = spec[i];
                if (d == 0 && !allowzero) {
                    KS_CHECK(i < x.size(), "Reshape: 0 refers to a missing input dimension");
                    d = x[i];
                }
                if (d == -1) {
                    KS_CHECK(infer_at < 0, "Reshape: more than one -1");
                    infer_at = static_cast<int>(i);
                } else {
                    KS_CHECK(d >= 0, "Reshape: invalid dimension ", d);
                    known *= d;
                }
                out.push_back(d);
            }
            if (infer_at >= 0) {
                KS_CHECK(known > 0 && total % known == 0, "Reshape: cannot infer -1 for ", shape_str(x), " to ",
                         shape_str(spec));
                out[static_cast<size_t>(infer_at)] = total / known;
            }
            break;
        }
        case Op::kFlatten: {
            int axis = normalize_axis(n.attrs.get_int("axis", 1), x.size() + 1);
            int64_t a = 1;
            for (int i = 0; i < axis; ++i) a *= x[i];
            out = {a, a ? total / a : 0};
            break;
        }
        case Op::kSqueeze:
        case Op::kUnsqueeze: {
            std::vector<int64_t> axes = opset >= 13 ? (c.has_in(1) ? c.const_ints(1, "axes") : std::vector<int64_t>{})
                                                    : n.attrs.get_ints("axes");
            if (n.op == Op::kSqueeze) {
                std::vector<bool> drop(x.size(), axes.empty());
                for (int64_t a : axes) drop[static_cast<size_t>(normalize_axis(a, x.size()))] = true;
                for (size_t i = 0; i < x.size(); ++i) {
                    if (drop[i] && x[i] == 1) continue;
                    KS_CHECK(!drop[i] || axes.empty(), "Squeeze: axis ", i, " has size ", x[i]);
                    out.push_back(x[i]);
                }
            } else {
                size_t r = x.size() + axes.size();
                std::vector<bool> add(r, false);
                for (int64_t a : axes) add[static_cast<size_t>(normalize_axis(a, r))] = true;
                for (size_t i = 0, j = 0; i < r; ++i) out.push_back(add[i] ? 1 : x[j++]);
            }
            break;
        }
        default:
            KS_FAIL("not a reshape-like op");
    }
    KS_CHECK(num_elements(out) == total, "cannot reshape ", shape_str(x), " to ", shape_str(out));
    n.op = Op::kReshape;
    n.attrs = Attributes();
    n.attrs.set("shape", out);
    c.drop_inputs_from(1);
    c.set_out(0, out, xv.dtype);
}

void infer_slice(NodeContext& c, Node& n, int opset) {
    const Value& xv = c.in(0);
    const Shape& x = xv.shape;
    if (n.inputs.size() == 1 && n.attrs.has("shape")) {  // already canonical
        c.set_out(0, n.attrs.get_ints("shape"), xv.dtype);
        return;
    }
    std::vector<int64_t> starts, ends, axes, steps;
    if (opset >= 10) {
        starts = c.const_ints(1, "Slice starts");
        ends = c.const_ints(2, "Slice ends");
        if (c.has_in(3)) axes = c.const_ints(3, "Slice axes");
        if (c.has_in(4)) steps = c.const_ints(4, "Slice steps");
    } else {
        starts = n.attrs.get_ints("starts");
        ends = n.attrs.get_ints("ends");
        axes = n.attrs.get_ints("axes");
    }
    KS_CHECK(starts.size() == ends.size(), "Slice: starts and ends differ in length");
    std::vector<int64_t> st(x.size(), 0), sp(x.size(), 1);
    Shape out = x;
    for (size_t i = 0; i < starts.size(); ++i) {
        int axis = normalize_axis(axes.empty() ? static_cast<int64_t>(i) : axes[i], x.size());
        int64_t step = steps.empty() ? 1 : steps[i];
        KS_CHECK(step > 0, "Slice: only positive steps are supported");
        int64_t len = x[axis];
        int64_t s = starts[i] < 0 ? starts[i] + len : starts[i];
        int64_t e = ends[i] < 0 ? ends[i] + len : ends[i];
        s = std::clamp<int64_t>(s, 0, len);
        e = std::clamp<int64_t>(e, 0, len);
        st[axis] = s;
        sp[axis] = step;
        out[axis] = e > s ? (e - s + step - 1) / step : 0;
    }
    n.attrs = Attributes();
    n.attrs.set("starts", st);
    n.attrs.set("steps", sp);
    n.attrs.set("shape", out);
    c.drop_inputs_from(1);
    c.set_out(0, out, xv.dtype);
}

void infer_split(NodeContext& c, Node& n) {
    const Value& xv = c.in(0);
    int axis = normalize_axis(n.attrs.get_int("axis", 0), xv.shape.size());
    std::vector<int64_t> sizes = c.has_in(1) ? c.const_ints(1, "Split sizes") : n.attrs.get_ints("split");
    int64_t len = xv.shape[axis];
    int64_t parts = static_cast<int64_t>(n.outputs.size());
    if (sizes.empty()) {
        int64_t chunk = (len + parts - 1) / parts;
        for (int64_t i = 0; i < parts; ++i) sizes.push_back(std::min(chunk, len - chunk * i));
    }
    KS_CHECK(static_cast<int64_t>(sizes.size()) == parts, "Split: ", sizes.size(), " sizes for ", parts, " outputs");
    int64_t sum = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
        KS_CHECK(sizes[i] >= 0, "Split: negative size");
        Shape s = xv.shape;
        s[axis] = sizes[i];
        c.set_out(i, s, xv.dtype);
        sum += sizes[i];
    }
    KS_CHECK(sum == len, "Split: sizes sum to ", sum, " but the axis has ", len);
    n.attrs.set("axis", static_cast<int64_t>(axis));
    n.attrs.set("split", sizes);
    c.drop_inputs_from(1);
}

// YoloDecode(x_0..x_{L-1}, anchors, strides, dfl_weights): level maps [n, 4 * reg_max + nc, H_l, W_l],
// constant anchors (2 * A values: the x row then the y row), strides (A) and DFL weights (reg_max);
// output [n, 4 + nc, A] with A = sum H_l * W_l. With head_convs = 1 (passes/fuse_yolo_head_convs.cc)
// level l's map is Concat(Conv1x1(box_l, w_box_l, b_box_l), Conv1x1(cls_l, w_cls_l, b_cls_l)):
// inputs box_0, cls_0, ..., then w_box_0 [4 reg_max, C, 1, 1], b_box_0, w_cls_0 [nc, C', 1, 1],
// b_cls_0, ..., then anchors, strides, dfl_weights.
void infer_yolo_decode(NodeContext& c, Node& n, const Graph& g) {
    const int64_t levels = n.attrs.get_int("num_levels", 0), reg_max = n.attrs.get_int("reg_max", 0),
                  nc = n.attrs.get_int("nc", 0);
    const bool head = n.attrs.get_int("head_convs", 0) != 0;
    KS_CHECK(levels >= 1 && reg_max >= 1 && nc >= 1, "YoloDecode: num_levels=", levels, ", reg_max=", reg_max,
             ", nc=", nc, " must all be positive");
    const int64_t tail = head ? 6 * levels : levels;  // inputs before anchors, strides, dfl weights
    KS_CHECK(static_cast<int64_t>(n.inputs.size()) == tail + 3, "YoloDecode: ", n.inputs.size(), " inputs for ", levels,
             " levels", head ? " with head convs" : "", " (want ", tail + 3, ")");
    const int64_t batch = c.in(0).shape.empty() ? -1 : c.in(0).shape[0];
    auto constant = [&](size_t i, const Shape& want, const char* what) {
        const Value& v = c.in(i);
        KS_CHECK(g.is_constant(n.inputs[i]) && v.dtype == DType::kFloat32 && v.shape == want, "YoloDecode: ", what,
                 " must be a float32 constant ", shape_str(want), " (got ", dtype_name(v.dtype), " ",
                 shape_str(v.shape), ")");
    };
    int64_t anchors = 0;
    for (size_t l = 0; l < static_cast<size_t>(levels); ++l) {
        const int64_t parts = head ? 2 : 1;
        for (size_t k = 0; k < static_cast<size_t>(parts); ++k) {
            const Value& x = c.in(head ? 2 * l + k : l);
            const int64_t channels = head ? 0 : 4 * reg_max + nc;  // head convs: any input channels
            KS_CHECK(x.dtype == DType::kFloat32 && x.shape.size() == 4 && x.shape[0] == batch &&
                         (channels == 0 || x.shape[1] == channels),
                     "YoloDecode: level ", l, " input ", k, " is ", dtype_name(x.dtype), " ", shape_str(x.shape),
                     ", want float32 [", batch, ", ", channels ? std::to_string(channels) : "C", ", H, W]");
            if (head && k == 1)
                KS_CHECK(x.shape[2] == c.in(2 * l).shape[2] && x.shape[3] == c.in(2 * l).shape[3], "YoloDecode: level ",
                         l, "'s box and class features differ in size");
            if (head) {
                const int64_t k_out = k == 0 ? 4 * reg_max : nc;
                const size_t w = static_cast<size_t>(2 * levels + 4 * static_cast<int64_t>(l)) + 2 * k;
                constant(w, {k_out, x.shape[1], 1, 1}, k == 0 ? "a box conv's weights" : "a class conv's weights");
                constant(w + 1, {k_out}, k == 0 ? "a box conv's bias" : "a class conv's bias");
            }
        }
        const Value& x = c.in(head ? 2 * l : l);
        anchors += x.shape[2] * x.shape[3];
    }
    const int64_t want[3] = {2 * anchors, anchors, reg_max};
    const char* what[3] = {"anchors", "strides", "dfl weights"};
    for (size_t k = 0; k < 3; ++k) {
        const Value& v = c.in(static_cast<size_t>(tail) + k);
        KS_CHECK(g.is_constant(n.inputs[static_cast<size_t>(tail) + k]) && v.dtype == DType::kFloat32 &&
                     num_elements(v.shape) == want[k],
                 "YoloDecode: ", what[k], " must be a float32 constant of ", want[k], " values (got ",
                 dtype_name(v.dtype), " ", shape_str(v.shape), ")");
    }
    c.set_out(0, {batch, 4 + nc, anchors}, DType::kFloat32);
}

}  // namespace

void infer_node(Graph& g, size_t index) {
    Node& n = g.nodes[index];
    NodeContext c(g, n);
    int opset = static_cast<int>(n.attrs.get_int("_opset", 17));
    try {
        switch (n.op) {
            case Op::kConv:
                infer_conv(c, n);
                break;
            case Op::kConvTranspose:
                infer_conv_transpose(c, n);
                break;
            case Op::kBatchNormalization: {
                KS_CHECK(n.outputs.size() == 1, "BatchNormalization: training outputs are not supported");
                for (size_t i = 1; i < 5; ++i)
                    KS_CHECK(c.in(i).shape == Shape{c.in(0).shape.at(1)}, "BatchNormalization: parameter shape");
                c.set_out(0, c.in(0).shape, DType::kFloat32);
                break;
            }
            case Op::kSigmoid:
            case Op::kRelu:
            case Op::kSin:
            case Op::kCos:
            case Op::kIdentity:
                c.set_out(0, c.in(0).shape, c.in(0).dtype);
                break;
            case Op::kAdd:
            case Op::kSub:
            case Op::kMul:
            case Op::kDiv:
                KS_CHECK(c.in(0).dtype == c.in(1).dtype, "input types differ (", dtype_name(c.in(0).dtype), ", ",
                         dtype_name(c.in(1).dtype), ")");
                c.set_out(0, broadcast_shapes(c.in(0).shape, c.in(1).shape), c.in(0).dtype);
                break;
            case Op::kEqual:
                c.set_out(0, broadcast_shapes(c.in(0).shape, c.in(1).shape), DType::kBool);
                break;
            case Op::kWhere:
                c.set_out(0, broadcast_shapes(broadcast_shapes(c.in(0).shape, c.in(1).shape), c.in(2).shape),
                          c.in(1).dtype);
                break;
            case Op::kSplit:
                infer_split(c, n);
                break;
            case Op::kYoloDecode:
                infer_yolo_decode(c, n, g);
                break;
            case Op::kConcat: {
                Shape s = c.in(0).shape;
                int axis = normalize_axis(n.attrs.get_int("axis", 0), s.size());
                n.attrs.set("axis", static_cast<int64_t>(axis));
                s[axis] = 0;
                for (size_t i = 0; i < n.inputs.size(); ++i) {
                    const Value& v = c.in(i);
                    KS_CHECK(v.shape.size() == s.size() && v.dtype == c.in(0).dtype,
                             "Concat: inputs differ in rank or type");
                    for (size_t d = 0; d < s.size(); ++d)
                        KS_CHECK(d == static_cast<size_t>(axis) || v.shape[d] == s[d], "Concat: input ", i,
                                 " has shape ", shape_str(v.shape), ", incompatible with ", shape_str(c.in(0).shape),
                                 " on axis ", axis);
                    s[axis] += v.shape[axis];
                }
                c.set_out(0, s, c.in(0).dtype);
                break;
            }
            case Op::kSlice:
                infer_slice(c, n, opset);
                break;
            case Op::kMaxPool:
                infer_maxpool(c, n);
                break;
            case Op::kGlobalAveragePool: {
                Shape s = c.in(0).shape;
                KS_CHECK(s.size() >= 3, "GlobalAveragePool: rank must be at least 3");
                for (size_t i = 2; i < s.size(); ++i) s[i] = 1;
                c.set_out(0, s, DType::kFloat32);
                break;
            }
            case Op::kResize:
                infer_resize(c, n);
                break;
            case Op::kReshape:
            case Op::kFlatten:
            case Op::kSqueeze:
            case Op::kUnsqueeze:
                infer_reshape_like(c, n, opset);
                break;
            case Op::kTranspose: {
                Shape x = c.in(0).shape;
                auto perm = n.attrs.get_ints("perm");
                if (perm.empty())
                    for (size_t i = 0; i < x.size(); ++i) perm.push_back(static_cast<int64_t>(x.size() - 1 - i));
                KS_CHECK(perm.size() == x.size(), "Transpose: perm has ", perm.size(), " entries for rank ", x.size());
                std::vector<bool> seen(x.size(), false);
                Shape s;
                for (int64_t p : perm) {
                    KS_CHECK(p >= 0 && p < static_cast<int64_t>(x.size()) && !seen[static_cast<size_t>(p)],
                             "Transpose: invalid perm");
                    seen[static_cast<size_t>(p)] = true;
                    s.push_back(x[static_cast<size_t>(p)]);
                }
                n.attrs.set("perm", perm);
                c.set_out(0, s, c.in(0).dtype);
                break;
            }
            case Op::kSoftmax: {
                Shape x = c.in(0).shape;
                int64_t axis = n.attrs.get_int("axis", opset >= 13 ? -1 : 1);
                n.attrs.set("axis", static_cast<int64_t>(normalize_axis(axis, x.size())));
                // Before opset 13 Softmax flattened the input to 2-D at `axis`.
                if (opset < 13 && normalize_axis(axis, x.size()) != static_cast<int>(x.size()) - 1)
                    n.attrs.set("coerce_2d", int64_t{1});
                c.set_out(0, x, DType::kFloat32);
                break;
            }
            case Op::kGemm: {
                const Shape& a = c.in(0).shape;
                const Shape& b = c.in(1).shape;
                KS_CHECK(a.size() == 2 && b.size() == 2, "Gemm: inputs must be 2-D");
                bool ta = n.attrs.get_int("transA", 0) != 0, tb = n.attrs.get_int("transB", 0) != 0;
                KS_CHECK((ta ? a[0] : a[1]) == (tb ? b[1] : b[0]), "Gemm: inner dimensions differ");
                c.set_out(0, {ta ? a[1] : a[0], tb ? b[0] : b[1]}, DType::kFloat32);
                break;
            }
            case Op::kShape: {
                c.set_out(0, {static_cast<int64_t>(c.in(0).shape.size())}, DType::kInt64);
                break;
            }
            case Op::kGather: {
                Shape x = c.in(0).shape;
                int axis = normalize_axis(n.attrs.get_int("axis", 0), x.size());
                Shape s(x.begin(), x.begin() + axis);
                for (int64_t d : c.in(1).shape) s.push_back(d);
                s.insert(s.end(), x.begin() + axis + 1, x.end());
                c.set_out(0, s, c.in(0).dtype);
                break;
            }
            case Op::kCast: {
                int64_t to = n.attrs.get_int("to", 1);
                DType t = to == 1 ? DType::kFloat32 : to == 7 ? DType::kInt64 : to == 6 ? DType::kInt32 : DType::kBool;
                KS_CHECK(to == 1 || to == 6 || to == 7 || to == 9, "Cast: target type ", to, " is not supported");
                c.set_out(0, c.in(0).shape, t);
                break;
            }
            case Op::kConstantOfShape: {
                c.set_out(0, c.const_ints(0, "ConstantOfShape input"),
                          n.attrs.get_string("value_type", "float32") == "int64" ? DType::kInt64 : DType::kFloat32);
                break;
            }
            case Op::kRange: {
                // Only ever evaluated by folding; its length is known once the inputs are constants.
                auto s = c.const_floats(0, "Range start"), l = c.const_floats(1, "Range limit"),
                     d = c.const_floats(2, "Range delta");
                KS_CHECK(d.at(0) != 0.f, "Range: zero delta");
                int64_t len = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((l.at(0) - s.at(0)) / d.at(0))));
                c.set_out(0, {len}, c.in(0).dtype);
                break;
            }
            case Op::kExpand: {
                c.set_out(0, broadcast_shapes(c.in(0).shape, c.const_ints(1, "Expand shape")), c.in(0).dtype);
                break;
            }
        }
    } catch (const Error& e) {
        KS_FAIL(op_name(n.op), " node '", n.name, "': ", e.what());
    }
}

void infer_shapes(Graph& g) {
    for (size_t i = 0; i < g.nodes.size(); ++i)
        if (!g.nodes[i].removed) infer_node(g, i);
}

}  // namespace kestrel::ir
