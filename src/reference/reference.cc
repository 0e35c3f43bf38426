#include "reference/reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <numeric>

#include "core/error.h"

namespace kestrel::reference {

using ir::Node;
using ir::Op;
using ir::Tensor;

namespace {

// Index of `out_index` (row-major in `out`) inside a tensor of shape `in` broadcast to `out`.
int64_t broadcast_offset(int64_t out_index, const Shape& out, const Shape& in) {
    int64_t off = 0, stride = 1;
    for (int i = static_cast<int>(out.size()) - 1, j = static_cast<int>(in.size()) - 1; i >= 0; --i, --j) {
        int64_t coord = out_index % out[i];
        out_index /= out[i];
        if (j >= 0) {
            if (in[j] != 1) off += coord * stride;
            stride *= in[j];
        }
    }
    return off;
}

template <typename T>
T apply_binary(Op op, T a, T b) {
    switch (op) {
        case Op::kAdd:
            return a + b;
        case Op::kSub:
            return a - b;
        case Op::kMul:
            return a * b;
        case Op::kDiv:
            if constexpr (std::is_integral_v<T>) {
                KS_CHECK(b != 0, "integer division by zero");
            }
            return a / b;
        default:
            KS_FAIL("not a binary op");
    }
}

template <typename T>
Tensor binary_typed(Op op, const Tensor& a, const Tensor& b) {
    Shape s = broadcast_shapes(a.shape, b.shape);
    Tensor out(a.dtype, s);
    int64_t n = out.size();
    for (int64_t i = 0; i < n; ++i)
        out.data<T>()[i] = apply_binary<T>(op, a.data<T>()[broadcast_offset(i, s, a.shape)],
                                           b.data<T>()[broadcast_offset(i, s, b.shape)]);
    return out;
}

Tensor binary(Op op, const Tensor& a, const Tensor& b) {
    KS_CHECK(a.dtype == b.dtype, op_name(op), ": input types differ");
    switch (a.dtype) {
        case DType::kFloat32:
            return binary_typed<float>(op, a, b);
        case DType::kInt64:
            return binary_typed<int64_t>(op, a, b);
        case DType::kInt32:
            return binary_typed<int32_t>(op, a, b);
        default:
            KS_FAIL(op_name(op), ": unsupported type ", dtype_name(a.dtype));
    }
}

Tensor unary(const Tensor& x, const std::function<double(double)>& f) {
    KS_CHECK(x.dtype == DType::kFloat32, "unary op on non-float tensor");
    Tensor out(DType::kFloat32, x.shape);
    for (int64_t i = 0; i < x.size(); ++i) out.data<float>()[i] = static_cast<float>(f(x.data<float>()[i]));
    return out;
}

double silu(double v) { return v / (1.0 + std::exp(-v)); }

// Conv with ONNX semantics (NCHW, OIHW weights, groups) plus the fused epilogue the passes may add:
// attribute `activation` ("silu") and an optional residual added after it (input 3).
Tensor conv2d(const Node& node, const Tensor& x, const Tensor& w, const Tensor* b, const Tensor* residual) {
    KS_CHECK(x.shape.size() == 4 && w.shape.size() == 4, "Conv: only 2-D convolution is supported");
    const auto& a = node.attrs;
    auto strides = a.get_ints("strides", {1, 1});
    auto dil = a.get_ints("dilations", {1, 1});
    auto pads = a.get_ints("pads", {0, 0, 0, 0});
    int64_t group = a.get_int("group", 1);
    int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
    int64_t OC = w.shape[0], ICg = w.shape[1], KH = w.shape[2], KW = w.shape[3];
    KS_CHECK(C == ICg * group && OC % group == 0, "Conv: channel/group mismatch");
    int64_t OH = (H + pads[0] + pads[2] - dil[0] * (KH - 1) - 1) / strides[0] + 1;
    int64_t OW = (W + pads[1] + pads[3] - dil[1] * (KW - 1) - 1) / strides[1] + 1;
    Tensor out(DType::kFloat32, {N, OC, OH, OW});
    const float* xp = x.data<float>();
    const float* wp = w.data<float>();
    float* op = out.data<float>();
    int64_t OCg = OC / group;
    std::string act = a.get_string("activation", "");
    // precision="int8": the fake-quantised oracle of the INT8 kernels. Input rounded to its per-tensor
    // scale (8 bits), weights to per-output-channel scales max|w| / weight_qmax: 63 by default (7 bits,
    // the CPU kernel: see int8_conv_kernel.cc), 127 for CUDA engines.
    std::vector<float> xq, wq;
    if (a.get_string("precision", "fp32") == "int8") {
        double s = a.get_float("input_scale", 1.f);
        xq.resize(static_cast<size_t>(x.size()));
        for (size_t i = 0; i < xq.size(); ++i)
            xq[i] = static_cast<float>(std::clamp(std::nearbyint(xp[i] / s), -128.0, 127.0) * s);
        int64_t per = w.size() / OC;
        const int64_t qmax = a.get_int("weight_qmax", 63);
        KS_CHECK(qmax == 63 || qmax == 127, "Conv: weight_qmax must be 63 or 127");
        wq.resize(static_cast<size_t>(w.size()));
        for (int64_t c = 0; c < OC; ++c) {
            double amax = 0;
            for (int64_t k = 0; k < per; ++k) amax = std::max(amax, std::abs(static_cast<double>(wp[c * per + k])));
            double sw = amax > 0 ? amax / static_cast<double>(qmax) : 1.0;
            for (int64_t k = 0; k < per; ++k)
                wq[static_cast<size_t>(c * per + k)] = static_cast<float>(std::nearbyint(wp[c * per + k] / sw) * sw);
        }
        xp = xq.data();
        wp = wq.data();
    }
    for (int64_t n = 0; n < N; ++n)
        for (int64_t oc = 0; oc < OC; ++oc) {
            int64_t g = oc / OCg;
            for (int64_t oh = 0; oh < OH; ++oh)
                for (int64_t ow = 0; ow < OW; ++ow) {
                    double acc = b ? b->data<float>()[oc] : 0.0;
                    for (int64_t ic = 0; ic < ICg; ++ic)
                        for (int64_t kh = 0; kh < KH; ++kh) {
                            int64_t ih = oh * strides[0] - pads[0] + kh * dil[0];
                            if (ih < 0 || ih >= H) continue;
                            for (int64_t kw = 0; kw < KW; ++kw) {
                                int64_t iw = ow * strides[1] - pads[1] + kw * dil[1];
                                if (iw < 0 || iw >= W) continue;
                                acc += static_cast<double>(xp[((n * C + g * ICg + ic) * H + ih) * W + iw]) *
                                       wp[((oc * ICg + ic) * KH + kh) * KW + kw];
                            }
                        }
                    if (act == "silu") acc = silu(acc);
                    int64_t o = ((n * OC + oc) * OH + oh) * OW + ow;
                    if (residual) acc += residual->data<float>()[o];
                    op[o] = static_cast<float>(acc);
                }
        }
    return out;
}

Tensor conv_transpose2d(const Node& node, const Tensor& x, const Tensor& w, const Tensor* b) {
    KS_CHECK(x.shape.size() == 4, "ConvTranspose: only 2-D is supported");
    const auto& a = node.attrs;
    auto strides = a.get_ints("strides", {1, 1});
    auto pads = a.get_ints("pads", {0, 0, 0, 0});
    auto dil = a.get_ints("dilations", {1, 1});
    auto outpad = a.get_ints("output_padding", {0, 0});
    KS_CHECK(a.get_int("group", 1) == 1, "ConvTranspose: groups are not supported");
    int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
    int64_t OC = w.shape[1], KH = w.shape[2], KW = w.shape[3];
    int64_t OH = strides[0] * (H - 1) + outpad[0] + (KH - 1) * dil[0] + 1 - pads[0] - pads[2];
    int64_t OW = strides[1] * (W - 1) + outpad[1] + (KW - 1) * dil[1] + 1 - pads[1] - pads[3];
    std::vector<double> acc(static_cast<size_t>(N * OC * OH * OW), 0.0);
    const float* xp = x.data<float>();
    const float* wp = w.data<float>();
    for (int64_t n = 0; n < N; ++n)
        for (int64_t c = 0; c < C; ++c)
            for (int64_t ih = 0; ih < H; ++ih)
                for (int64_t iw = 0; iw < W; ++iw) {
                    double v = xp[((n * C + c) * H + ih) * W + iw];
                    for (int64_t oc = 0; oc < OC; ++oc)
                        for (int64_t kh = 0; kh < KH; ++kh) {
                            int64_t oh = ih * strides[0] - pads[0] + kh * dil[0];
                            if (oh < 0 || oh >= OH) continue;
                            for (int64_t kw = 0; kw < KW; ++kw) {
                                int64_t ow = iw * strides[1] - pads[1] + kw * dil[1];
                                if (ow < 0 || ow >= OW) continue;
                                acc[static_cast<size_t>(((n * OC + oc) * OH + oh) * OW + ow)] +=
                                    v * wp[((c * OC + oc) * KH + kh) * KW + kw];
                            }
                        }
                }
    Tensor out(DType::kFloat32, {N, OC, OH, OW});
    for (int64_t i = 0; i < out.size(); ++i) {
        int64_t oc = (i / (OH * OW)) % OC;
        out.data<float>()[i] = static_cast<float>(acc[static_cast<size_t>(i)] + (b ? b->data<float>()[oc] : 0.0));
    }
    return out;
}

Tensor batch_norm(const Node& node, const Tensor& x, const Tensor& scale, const Tensor& bias, const Tensor& mean,
                  const Tensor& var) {
    double eps = node.attrs.get_float("epsilon", 1e-5f);
    Tensor out(DType::kFloat32, x.shape);
    int64_t C = x.shape[1];
    int64_t inner = x.size() / (x.shape[0] * C);
    for (int64_t i = 0; i < x.size(); ++i) {
        int64_t c = (i / inner) % C;
        double v = (x.data<float>()[i] - mean.data<float>()[c]) / std::sqrt(var.data<float>()[c] + eps);
        out.data<float>()[i] = static_cast<float>(v * scale.data<float>()[c] + bias.data<float>()[c]);
    }
    return out;
}

Tensor max_pool(const Node& node, const Tensor& x) {
    const auto& a = node.attrs;
    auto k = a.get_ints("kernel_shape");
    auto strides = a.get_ints("strides", {1, 1});
    auto pads = a.get_ints("pads", {0, 0, 0, 0});
    auto dil = a.get_ints("dilations", {1, 1});
    bool ceil_mode = a.get_int("ceil_mode", 0) != 0;
    KS_CHECK(x.shape.size() == 4 && k.size() == 2, "MaxPool: only 2-D pooling is supported");
    int64_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3];
    auto out_dim = [&](int64_t in, int64_t kk, int64_t s, int64_t p0, int64_t p1, int64_t d) {
        double v = static_cast<double>(in + p0 + p1 - d * (kk - 1) - 1) / static_cast<double>(s);
        return static_cast<int64_t>(ceil_mode ? std::ceil(v) : std::floor(v)) + 1;
    };
    int64_t OH = out_dim(H, k[0], strides[0], pads[0], pads[2], dil[0]);
    int64_t OW = out_dim(W, k[1], strides[1], pads[1], pads[3], dil[1]);
    Tensor out(DType::kFloat32, {N, C, OH, OW});
    for (int64_t nc = 0; nc < N * C; ++nc)
        for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow) {
                float m = -INFINITY;
                for (int64_t kh = 0; kh < k[0]; ++kh) {
                    int64_t ih = oh * strides[0] - pads[0] + kh * dil[0];
                    if (ih < 0 || ih >= H) continue;
                    for (int64_t kw = 0; kw < k[1]; ++kw) {
                        int64_t iw = ow * strides[1] - pads[1] + kw * dil[1];
                        if (iw < 0 || iw >= W) continue;
                        m = std::max(m, x.data<float>()[(nc * H + ih) * W + iw]);
                    }
                }
                out.data<float>()[(nc * OH + oh) * OW + ow] = m;
            }
    return out;
}

// Source coordinate for nearest resize, per the ONNX Resize spec.

Tensor resize_nearest(const Node& node, const Tensor& x, const Shape& out_shape) {
    KS_CHECK(node.attrs.get_string("mode", "nearest") == "nearest", "Resize: only mode 'nearest' is supported");
    KS_CHECK(x.shape.size() == 4 && out_shape[0] == x.shape[0] && out_shape[1] == x.shape[1],
             "Resize: only spatial resizing of 4-D tensors is supported");
    std::string cm = node.attrs.get_string("coordinate_transformation_mode", "half_pixel");
    std::string nm = node.attrs.get_string("nearest_mode", "round_prefer_floor");
    int64_t H = x.shape[2], W = x.shape[3], OH = out_shape[2], OW = out_shape[3];
    double sh = node.attrs.has("scale_h") ? node.attrs.get_float("scale_h", 1) : static_cast<double>(OH) / H;
    double sw = node.attrs.has("scale_w") ? node.attrs.get_float("scale_w", 1) : static_cast<double>(OW) / W;
    Tensor out(DType::kFloat32, out_shape);
    for (int64_t nc = 0; nc < x.shape[0] * x.shape[1]; ++nc)
        for (int64_t oh = 0; oh < OH; ++oh) {
            int64_t ih = nearest_source(oh, sh, H, OH, cm, nm);
            for (int64_t ow = 0; ow < OW; ++ow) {
                int64_t iw = nearest_source(ow, sw, W, OW, cm, nm);
                out.data<float>()[(nc * OH + oh) * OW + ow] = x.data<float>()[(nc * H + ih) * W + iw];
            }
        }
    return out;
}

// Softmax over `axis`; with attribute `coerce_2d` (opsets before 13) over all dims from axis on.
Tensor softmax(const Node& node, const Tensor& x) {
    int axis = normalize_axis(node.attrs.get_int("axis", -1), x.shape.size());
    bool flat = node.attrs.get_int("coerce_2d", 0) != 0;
    int64_t outer = 1, len = 1, inner = 1;
    for (int i = 0; i < axis; ++i) outer *= x.shape[i];
    if (flat) {
        for (size_t i = static_cast<size_t>(axis); i < x.shape.size(); ++i) len *= x.shape[i];
    } else {
        len = x.shape[axis];
        for (size_t i = static_cast<size_t>(axis) + 1; i < x.shape.size(); ++i) inner *= x.shape[i];
    }
    Tensor out(DType::kFloat32, x.shape);
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t in = 0; in < inner; ++in) {
            const float* p = x.data<float>() + o * len * inner + in;
            float* q = out.data<float>() + o * len * inner + in;
            double m = -INFINITY, s = 0;
            for (int64_t l = 0; l < len; ++l) m = std::max(m, static_cast<double>(p[l * inner]));
            for (int64_t l = 0; l < len; ++l) s += std::exp(p[l * inner] - m);
            for (int64_t l = 0; l < len; ++l) q[l * inner] = static_cast<float>(std::exp(p[l * inner] - m) / s);
        }
    return out;
}

// YoloDecode (passes/fuse_yolo_decode.cc): Ultralytics' Detect-head decode on NCHW level maps
// x_l [n, 4R + nc, H_l, W_l]. Anchor a (levels in order, pixels row-major) gets, with
// d_j = sum_k w_k softmax_k(x[j R + k]) (j = 0..3: left, top, right, bottom distances),
//   x1 = ax - d0, y1 = ay - d1, x2 = ax + d2, y2 = ay + d3,
//   y[:4] = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1) * stride, y[4 + c] = sigmoid(x[4R + c]).
// anchors: 2 * A values (x row, then y row); strides: A; w: R. Output [n, 4 + nc, A]; all in double.
// With head_convs = 1 the level maps are first made from the head's 1x1 convs (see yolo_head_maps).
Tensor yolo_decode(const Node& node, const std::vector<const Tensor*>& in);
Tensor concat(const Node& node, const std::vector<const Tensor*>& xs);

// head_convs = 1: level map l = Concat(Conv1x1(box_l) + b_box_l, Conv1x1(cls_l) + b_cls_l) (the
// reference conv, double sums), then the plain decode of those maps.
Tensor yolo_decode_head(const Node& node, const std::vector<const Tensor*>& in) {
    const int64_t levels = node.attrs.get_int("num_levels", 0), R = node.attrs.get_int("reg_max", 0),
                  nc = node.attrs.get_int("nc", 0);
    KS_CHECK(levels >= 1 && R >= 1 && nc >= 1 && static_cast<int64_t>(in.size()) == 6 * levels + 3,
             "YoloDecode: bad attributes or input count");
    for (const Tensor* t : in) KS_CHECK(t && t->dtype == DType::kFloat32, "YoloDecode: inputs must be float32");
    const Node conv1x1;  // no attributes: 1x1, stride 1, no padding
    Node concat_channels;
    concat_channels.attrs.set("axis", int64_t{1});
    std::vector<Tensor> maps;
    for (size_t l = 0; l < static_cast<size_t>(levels); ++l) {
        const size_t w = 2 * static_cast<size_t>(levels) + 4 * l;  // w_box_l, b_box_l, w_cls_l, b_cls_l
        const Tensor &xb = *in[2 * l], &xc = *in[2 * l + 1];
        KS_CHECK(xb.shape.size() == 4 && xc.shape.size() == 4 && xb.shape[0] == xc.shape[0] &&
                     xb.shape[2] == xc.shape[2] && xb.shape[3] == xc.shape[3] && in[w]->shape.at(0) == 4 * R &&
                     in[w + 1]->size() == 4 * R && in[w + 2]->shape.at(0) == nc && in[w + 3]->size() == nc,
                 "YoloDecode: level ", l, " head convs have mismatched shapes");
        const Tensor box = conv2d(conv1x1, xb, *in[w], in[w + 1], nullptr);
        const Tensor cls = conv2d(conv1x1, xc, *in[w + 2], in[w + 3], nullptr);
        maps.push_back(concat(concat_channels, {&box, &cls}));
    }
    std::vector<const Tensor*> plain;
    for (const Tensor& m : maps) plain.push_back(&m);
    plain.insert(plain.end(), in.end() - 3, in.end());
    Node decode = node;
    decode.attrs.set("head_convs", int64_t{0});
    return yolo_decode(decode, plain);
}

Tensor yolo_decode(const Node& node, const std::vector<const Tensor*>& in) {
    if (node.attrs.get_int("head_convs", 0) != 0) return yolo_decode_head(node, in);
    const int64_t levels = node.attrs.get_int("num_levels", 0), R = node.attrs.get_int("reg_max", 0),
                  nc = node.attrs.get_int("nc", 0), C = 4 * R + nc;
    KS_CHECK(levels >= 1 && R >= 1 && nc >= 1 && static_cast<int64_t>(in.size()) == levels + 3,
             "YoloDecode: bad attributes or input count");
    for (const Tensor* t : in) KS_CHECK(t && t->dtype == DType::kFloat32, "YoloDecode: inputs must be float32");
    const int64_t n = in[0]->shape.at(0);
    int64_t A = 0;
    for (int64_t l = 0; l < levels; ++l) {
        const Shape& s = in[static_cast<size_t>(l)]->shape;
        KS_CHECK(s.size() == 4 && s[0] == n && s[1] == C, "YoloDecode: level ", l, " has shape ", shape_str(s));
        A += s[2] * s[3];
    }
    const Tensor &anchors = *in[static_cast<size_t>(levels)], &strides = *in[static_cast<size_t>(levels) + 1],
                 &w = *in[static_cast<size_t>(levels) + 2];
    KS_CHECK(anchors.size() == 2 * A && strides.size() == A && w.size() == R,
             "YoloDecode: anchors/strides/dfl weights sizes do not match the levels");
    Tensor out(DType::kFloat32, {n, 4 + nc, A});
    float* y = out.data<float>();
    for (int64_t b = 0; b < n; ++b) {
        int64_t a = 0;
        for (int64_t l = 0; l < levels; ++l) {
            const Tensor& x = *in[static_cast<size_t>(l)];
            const int64_t hw = x.shape[2] * x.shape[3];
            const float* xb = x.data<float>() + b * C * hw;
            for (int64_t p = 0; p < hw; ++p, ++a) {
                double d[4];
                for (int64_t j = 0; j < 4; ++j) {
                    double m = -INFINITY, s = 0, e = 0;
                    for (int64_t k = 0; k < R; ++k) m = std::max(m, static_cast<double>(xb[(j * R + k) * hw + p]));
                    for (int64_t k = 0; k < R; ++k) {
                        double v = std::exp(xb[(j * R + k) * hw + p] - m);
                        s += v;
                        e += v * w.data<float>()[k];
                    }
                    d[j] = e / s;
                }
                const double ax = anchors.data<float>()[a], ay = anchors.data<float>()[A + a];
                const double st = strides.data<float>()[a];
                const double x1 = ax - d[0], y1 = ay - d[1], x2 = ax + d[2], y2 = ay + d[3];
                const double box[4] = {(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1};
                float* yb = y + b * (4 + nc) * A + a;
                for (int64_t j = 0; j < 4; ++j) yb[j * A] = static_cast<float>(box[j] * st);
                for (int64_t c = 0; c < nc; ++c)
                    yb[(4 + c) * A] =
                        static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(xb[(4 * R + c) * hw + p]))));
            }
        }
    }
    return out;
}

Tensor gemm(const Node& node, const Tensor& A, const Tensor& B, const Tensor* C) {
    bool ta = node.attrs.get_int("transA", 0) != 0, tb = node.attrs.get_int("transB", 0) != 0;
    double alpha = node.attrs.get_float("alpha", 1.f), beta = node.attrs.get_float("beta", 1.f);
    KS_CHECK(A.shape.size() == 2 && B.shape.size() == 2, "Gemm: inputs must be 2-D");
    int64_t M = ta ? A.shape[1] : A.shape[0], K = ta ? A.shape[0] : A.shape[1];
    int64_t N = tb ? B.shape[0] : B.shape[1];
    KS_CHECK((tb ? B.shape[1] : B.shape[0]) == K, "Gemm: inner dimensions differ");
    Tensor out(DType::kFloat32, {M, N});
    for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
            double acc = 0;
            for (int64_t k = 0; k < K; ++k)
                acc += static_cast<double>(A.data<float>()[ta ? k * M + m : m * K + k]) *
                       B.data<float>()[tb ? n * K + k : k * N + n];
            acc *= alpha;
            if (C) acc += beta * C->data<float>()[broadcast_offset(m * N + n, {M, N}, C->shape)];
            out.data<float>()[m * N + n] = static_cast<float>(acc);
        }
    return out;
}

Tensor global_average_pool(const Tensor& x) {
    int64_t N = x.shape[0], C = x.shape[1], HW = x.size() / (N * C);
    Shape s = {N, C};
    for (size_t i = 2; i < x.shape.size(); ++i) s.push_back(1);
    Tensor out(DType::kFloat32, s);
    for (int64_t nc = 0; nc < N * C; ++nc) {
        double acc = 0;
        for (int64_t i = 0; i < HW; ++i) acc += x.data<float>()[nc * HW + i];
        out.data<float>()[nc] = static_cast<float>(acc / HW);
    }
    return out;
}

Tensor transpose(const Node& node, const Tensor& x) {
    size_t r = x.shape.size();
    std::vector<int64_t> perm = node.attrs.get_ints("perm");
    if (perm.empty())
        for (size_t i = 0; i < r; ++i) perm.push_back(static_cast<int64_t>(r - 1 - i));
    KS_CHECK(perm.size() == r, "Transpose: perm size differs from rank");
    Shape s(r);
    for (size_t i = 0; i < r; ++i) s[i] = x.shape[static_cast<size_t>(perm[i])];
    Tensor out(x.dtype, s);
    auto in_st = row_major_strides(x.shape);
    size_t es = dtype_size(x.dtype);
    for (int64_t i = 0; i < out.size(); ++i) {
        int64_t rem = i, off = 0;
        for (int d = static_cast<int>(r) - 1; d >= 0; --d) {
            off += (rem % s[d]) * in_st[static_cast<size_t>(perm[d])];
            rem /= s[d];
        }
        std::memcpy(out.bytes.data() + i * es, x.bytes.data() + off * es, es);
    }
    return out;
}

// Copies a box [starts, starts + out.shape) with `steps` from x; all steps here are positive.
Tensor slice(const Tensor& x, const std::vector<int64_t>& starts, const std::vector<int64_t>& steps, const Shape& s) {
    Tensor out(x.dtype, s);
    auto in_st = row_major_strides(x.shape);
    size_t es = dtype_size(x.dtype);
    for (int64_t i = 0; i < out.size(); ++i) {
        int64_t rem = i, off = 0;
        for (int d = static_cast<int>(s.size()) - 1; d >= 0; --d) {
            off += (starts[d] + (rem % s[d]) * steps[d]) * in_st[d];
            rem /= s[d];
        }
        std::memcpy(out.bytes.data() + i * es, x.bytes.data() + off * es, es);
    }
    return out;
}

Tensor concat(const Node& node, const std::vector<const Tensor*>& xs) {
    int axis = normalize_axis(node.attrs.get_int("axis", 0), xs[0]->shape.size());
    Shape s = xs[0]->shape;
    s[axis] = 0;
    for (auto* x : xs) s[axis] += x->shape[axis];
    Tensor out(xs[0]->dtype, s);
    int64_t outer = 1;
    for (int i = 0; i < axis; ++i) outer *= s[i];
    size_t es = dtype_size(out.dtype);
    int64_t out_row = out.size() / std::max<int64_t>(outer, 1);
    int64_t col = 0;
    for (auto* x : xs) {
        KS_CHECK(x->dtype == out.dtype, "Concat: input types differ");
        int64_t row = outer ? x->size() / outer : 0;
        for (int64_t o = 0; o < outer; ++o)
            std::memcpy(out.bytes.data() + (o * out_row + col) * es, x->bytes.data() + o * row * es,
                        static_cast<size_t>(row) * es);
        col += row;
    }
    return out;
}

std::vector<Tensor> split(const Node& node, const Tensor& x, const Tensor* sizes_input) {
    int axis = normalize_axis(node.attrs.get_int("axis", 0), x.shape.size());
    std::vector<int64_t> sizes = sizes_input ? sizes_input->to_int64s() : node.attrs.get_ints("split");
    size_t n = node.outputs.size();
    if (sizes.empty()) {
        KS_CHECK(n > 0, "Split: no outputs");
        int64_t chunk = (x.shape[axis] + static_cast<int64_t>(n) - 1) / static_cast<int64_t>(n);
        for (size_t i = 0; i < n; ++i)
            sizes.push_back(std::min(chunk, x.shape[axis] - chunk * static_cast<int64_t>(i)));
    }
    KS_CHECK(sizes.size() == n, "Split: number of sizes differs from outputs");
    std::vector<Tensor> outs;
    int64_t start = 0;
    for (int64_t sz : sizes) {
        std::vector<int64_t> starts(x.shape.size(), 0), steps(x.shape.size(), 1);
        starts[axis] = start;
        Shape s = x.shape;
        s[axis] = sz;
        outs.push_back(slice(x, starts, steps, s));
        start += sz;
    }
    KS_CHECK(start == x.shape[axis], "Split: sizes do not sum to the axis length");
    return outs;
}

Tensor gather(const Node& node, const Tensor& x, const Tensor& idx) {
    int axis = normalize_axis(node.attrs.get_int("axis", 0), x.shape.size());
    auto indices = idx.to_int64s();
    Shape s;
    for (int i = 0; i < axis; ++i) s.push_back(x.shape[i]);
    for (int64_t d : idx.shape) s.push_back(d);
    for (size_t i = static_cast<size_t>(axis) + 1; i < x.shape.size(); ++i) s.push_back(x.shape[i]);
    Tensor out(x.dtype, s);
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < axis; ++i) outer *= x.shape[i];
    for (size_t i = static_cast<size_t>(axis) + 1; i < x.shape.size(); ++i) inner *= x.shape[i];
    size_t es = dtype_size(x.dtype);
    int64_t len = x.shape[axis];
    int64_t k = 0;
    for (int64_t o = 0; o < outer; ++o)
        for (int64_t j : indices) {
            if (j < 0) j += len;
            KS_CHECK(j >= 0 && j < len, "Gather: index out of range");
            std::memcpy(out.bytes.data() + k * inner * es, x.bytes.data() + (o * len + j) * inner * es,
                        static_cast<size_t>(inner) * es);
            ++k;
        }
    return out;
}

Tensor reshaped(const Tensor& x, Shape s) {
    Tensor out = x;
    out.shape = std::move(s);
    KS_CHECK(out.size() == x.size(), "reshape changes the element count");
    return out;
}

Tensor cast(const Tensor& x, int64_t to) {
    // ONNX TensorProto data types: 1 float, 6 int32, 7 int64, 9 bool.
    Tensor out;
    switch (to) {
        case 1:
            return Tensor::from_floats(x.shape, x.to_floats());
        case 7:
            return Tensor::from_int64s(x.shape, x.to_int64s());
        case 6: {
            out = Tensor(DType::kInt32, x.shape);
            auto v = x.to_int64s();
            for (size_t i = 0; i < v.size(); ++i) out.data<int32_t>()[i] = static_cast<int32_t>(v[i]);
            return out;
        }
        case 9: {
            out = Tensor(DType::kBool, x.shape);
            auto v = x.to_floats();
            for (size_t i = 0; i < v.size(); ++i) out.data<uint8_t>()[i] = v[i] != 0;
            return out;
        }
        default:
            KS_FAIL("Cast: target type ", to, " is not supported");
    }
}

Tensor expand(const Tensor& x, const Shape& target) {
    Shape s = broadcast_shapes(x.shape, target);
    Tensor out(x.dtype, s);
    size_t es = dtype_size(x.dtype);
    for (int64_t i = 0; i < out.size(); ++i)
        std::memcpy(out.bytes.data() + i * es, x.bytes.data() + broadcast_offset(i, s, x.shape) * es, es);
    return out;
}

}  // namespace

int64_t nearest_source(int64_t out_coord, double scale, int64_t in_len, int64_t out_len, const std::string& coord_mode,
                       const std::string& nearest_mode) {
    double x;
    if (coord_mode == "asymmetric") {
        x = out_coord / scale;
    } else if (coord_mode == "half_pixel") {
        x = (out_coord + 0.5) / scale - 0.5;
    } else if (coord_mode == "pytorch_half_pixel") {
        x = out_len > 1 ? (out_coord + 0.5) / scale - 0.5 : 0.0;
    } else if (coord_mode == "align_corners") {
        x = out_len > 1 ? out_coord * static_cast<double>(in_len - 1) / static_cast<double>(out_len - 1) : 0.0;
    } else {
        KS_FAIL("Resize: coordinate_transformation_mode '", coord_mode, "' is not supported");
    }
    int64_t i;
    if (nearest_mode == "floor") {
        i = static_cast<int64_t>(std::floor(x));
    } else if (nearest_mode == "ceil") {
        i = static_cast<int64_t>(std::ceil(x));
    } else if (nearest_mode == "round_prefer_ceil") {
        i = static_cast<int64_t>(std::floor(x + 0.5));
    } else if (nearest_mode == "round_prefer_floor") {
        i = static_cast<int64_t>(std::ceil(x - 0.5));
    } else {
        KS_FAIL("Resize: nearest_mode '", nearest_mode, "' is not supported");
    }
    return std::clamp<int64_t>(i, 0, in_len - 1);
}

std::vector<Tensor> evaluate(const Node& node, const std::vector<const Tensor*>& in) {
    auto req = [&](size_t i) -> const Tensor& {
        KS_CHECK(i < in.size() && in[i], op_name(node.op), " node '", node.name, "': missing input ", i);
        return *in[i];
    };
    auto opt = [&](size_t i) -> const Tensor* { return i < in.size() ? in[i] : nullptr; };
    switch (node.op) {
        case Op::kConv:
            return {conv2d(node, req(0), req(1), opt(2), opt(3))};
        case Op::kConvTranspose:
            return {conv_transpose2d(node, req(0), req(1), opt(2))};
        case Op::kBatchNormalization:
            return {batch_norm(node, req(0), req(1), req(2), req(3), req(4))};
        case Op::kSigmoid:
            return {unary(req(0), [](double v) { return 1.0 / (1.0 + std::exp(-v)); })};
        case Op::kRelu:
            return {unary(req(0), [](double v) { return v > 0 ? v : 0.0; })};
        case Op::kSin:
            return {unary(req(0), [](double v) { return std::sin(v); })};
        case Op::kCos:
            return {unary(req(0), [](double v) { return std::cos(v); })};
        case Op::kAdd:
        case Op::kSub:
        case Op::kMul:
        case Op::kDiv:
            return {binary(node.op, req(0), req(1))};
        case Op::kSplit:
            return split(node, req(0), opt(1));
        case Op::kConcat: {
            std::vector<const Tensor*> xs;
            for (size_t i = 0; i < in.size(); ++i) xs.push_back(&req(i));
            return {concat(node, xs)};
        }
        case Op::kSlice: {
            // Canonical form (ir::infer_node): resolved `starts` and `steps` per axis, shape in `shape`.
            return {slice(req(0), node.attrs.get_ints("starts"), node.attrs.get_ints("steps"),
                          node.attrs.get_ints("shape"))};
        }
        case Op::kMaxPool:
            return {max_pool(node, req(0))};
        case Op::kGlobalAveragePool:
            return {global_average_pool(req(0))};
        case Op::kResize:
            return {resize_nearest(node, req(0), node.attrs.get_ints("shape"))};
        case Op::kReshape:
            return {reshaped(req(0), node.attrs.get_ints("shape"))};
        case Op::kFlatten:
        case Op::kUnsqueeze:
        case Op::kSqueeze:
            KS_FAIL(op_name(node.op), " must be canonicalised to Reshape before evaluation");
        case Op::kIdentity:
            return {req(0)};
        case Op::kTranspose:
            return {transpose(node, req(0))};
        case Op::kSoftmax:
            return {softmax(node, req(0))};
        case Op::kGemm:
            return {gemm(node, req(0), req(1), opt(2))};
        case Op::kYoloDecode: {
            std::vector<const Tensor*> xs;
            for (size_t i = 0; i < in.size(); ++i) xs.push_back(&req(i));
            return {yolo_decode(node, xs)};
        }
        case Op::kShape: {
            const Tensor& x = req(0);
            return {Tensor::from_int64s({static_cast<int64_t>(x.shape.size())}, x.shape)};
        }
        case Op::kGather:
            return {gather(node, req(0), req(1))};
        case Op::kCast:
            return {cast(req(0), node.attrs.get_int("to", 1))};
        case Op::kConstantOfShape: {
            Shape s = req(0).to_int64s();
            float v = node.attrs.get_float("value", 0.f);
            if (node.attrs.get_string("value_type", "float32") == "int64") {
                Tensor t(DType::kInt64, s);
                std::fill(t.data<int64_t>(), t.data<int64_t>() + t.size(), static_cast<int64_t>(v));
                return {t};
            }
            Tensor t(DType::kFloat32, s);
            std::fill(t.data<float>(), t.data<float>() + t.size(), v);
            return {t};
        }
        case Op::kRange: {
            auto s = req(0).to_int64s(), l = req(1).to_int64s(), d = req(2).to_int64s();
            KS_CHECK(!d.empty() && d[0] != 0, "Range: zero delta");
            std::vector<int64_t> v;
            for (int64_t x = s[0]; d[0] > 0 ? x < l[0] : x > l[0]; x += d[0]) v.push_back(x);
            Tensor t = Tensor::from_int64s({static_cast<int64_t>(v.size())}, v);
            if (req(0).dtype == DType::kFloat32) return {cast(t, 1)};
            return {t};
        }
        case Op::kExpand:
            return {expand(req(0), req(1).to_int64s())};
        case Op::kEqual: {
            auto a = req(0).to_floats(), b = req(1).to_floats();
            Shape s = broadcast_shapes(req(0).shape, req(1).shape);
            Tensor out(DType::kBool, s);
            for (int64_t i = 0; i < out.size(); ++i)
                out.data<uint8_t>()[i] = a[static_cast<size_t>(broadcast_offset(i, s, req(0).shape))] ==
                                         b[static_cast<size_t>(broadcast_offset(i, s, req(1).shape))];
            return {out};
        }
        case Op::kWhere: {
            const Tensor &c = req(0), &x = req(1), &y = req(2);
            KS_CHECK(x.dtype == y.dtype, "Where: branch types differ");
            Shape s = broadcast_shapes(broadcast_shapes(c.shape, x.shape), y.shape);
            Tensor out(x.dtype, s);
            size_t es = dtype_size(x.dtype);
            for (int64_t i = 0; i < out.size(); ++i) {
                bool cond = c.data<uint8_t>()[broadcast_offset(i, s, c.shape)] != 0;
                const Tensor& src = cond ? x : y;
                std::memcpy(out.bytes.data() + i * es, src.bytes.data() + broadcast_offset(i, s, src.shape) * es, es);
            }
            return {out};
        }
    }
    KS_FAIL("reference: unhandled op");
}

std::vector<Tensor> run_graph(const ir::Graph& g, const std::vector<Tensor>& inputs) {
    KS_CHECK(inputs.size() == g.inputs.size(), "run_graph: expected ", g.inputs.size(), " inputs");
    std::vector<std::shared_ptr<const Tensor>> vals(g.values.size());
    for (size_t i = 0; i < g.values.size(); ++i) vals[i] = g.values[i].constant;
    for (size_t i = 0; i < inputs.size(); ++i)
        vals[static_cast<size_t>(g.inputs[i])] = std::make_shared<Tensor>(inputs[i]);
    for (const Node& n : g.nodes) {
        if (n.removed) continue;
        std::vector<const Tensor*> in;
        for (int id : n.inputs) in.push_back(id >= 0 ? vals[static_cast<size_t>(id)].get() : nullptr);
        auto outs = evaluate(n, in);
        for (size_t i = 0; i < outs.size() && i < n.outputs.size(); ++i)
            vals[static_cast<size_t>(n.outputs[i])] = std::make_shared<Tensor>(std::move(outs[i]));
    }
    std::vector<Tensor> result;
    for (int id : g.outputs) {
        KS_CHECK(vals[static_cast<size_t>(id)], "run_graph: output '", g.value(id).name, "' was not computed");
        result.push_back(*vals[static_cast<size_t>(id)]);
    }
    return result;
}

}  // namespace kestrel::reference
