// The CPU backend's own kernels (everything but convolution and pooling), multithreaded with
// OpenMP, and the dispatch from plan nodes to kernels.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <sstream>

#include "backends/cpu/kernel.h"
#include "backends/cpu/onednn_kernels.h"
#include "backends/cpu/vector_math.h"
#include "backends/cpu/winograd_conv_kernel.h"
#include "core/error.h"

namespace kestrel::cpu {

namespace {

using ir::Node;
using ir::Op;
using plan::Layout;

size_t sz(int64_t v) { return static_cast<size_t>(v); }

// A kernel from a closure: most ops need only their node, the plan and the addresses.
class FnKernel final : public Kernel {
   public:
    explicit FnKernel(std::function<void(const Addresses&)> fn) : fn_(std::move(fn)) {}
    void run(const Addresses& addr) override { fn_(addr); }

   private:
    std::function<void(const Addresses&)> fn_;
};

std::unique_ptr<Kernel> fn(std::function<void(const Addresses&)> f) { return std::make_unique<FnKernel>(std::move(f)); }

float* f32(const Addresses& a, int v) { return reinterpret_cast<float*>(a[sz(v)]); }

// Plain <-> nChw8c conversion for one image.
void reorder_plain_to_blocked(const float* src, float* dst, int64_t C, int64_t HW) {
    int64_t CB = (C + 7) / 8;
#pragma omp parallel for
    for (int64_t cb = 0; cb < CB; ++cb)
        for (int64_t i = 0; i < HW; ++i)
            for (int64_t c8 = 0; c8 < 8; ++c8) {
                int64_t c = cb * 8 + c8;
                dst[(cb * HW + i) * 8 + c8] = c < C ? src[c * HW + i] : 0.f;
            }
}

void reorder_blocked_to_plain(const float* src, float* dst, int64_t C, int64_t HW) {
#pragma omp parallel for
    for (int64_t c = 0; c < C; ++c) {
        const float* s = src + (c / 8) * HW * 8 + c % 8;
        float* d = dst + c * HW;
        for (int64_t i = 0; i < HW; ++i) d[i] = s[i * 8];
    }
}

std::unique_ptr<Kernel> identity_kernel(const plan::ExecutionPlan& p, const Node& n) {
    int in = n.inputs[0], out = n.outputs[0];
    Layout li = p.values[sz(in)].layout, lo = p.values[sz(out)].layout;
    const Shape& s = p.graph.value(out).shape;
    int64_t bytes = p.values[sz(out)].bytes;
    if (li == lo) return fn([=](const Addresses& a) { std::memmove(a[sz(out)], a[sz(in)], sz(bytes)); });
    int64_t C = s[1], HW = s[2] * s[3];
    if (li == Layout::kPlain)
        return fn([=](const Addresses& a) { reorder_plain_to_blocked(f32(a, in), f32(a, out), C, HW); });
    return fn([=](const Addresses& a) { reorder_blocked_to_plain(f32(a, in), f32(a, out), C, HW); });
}

std::unique_ptr<Kernel> unary_kernel(const plan::ExecutionPlan& p, const Node& n) {
    int in = n.inputs[0], out = n.outputs[0];
    int64_t count = p.values[sz(out)].bytes / 4;
    Op op = n.op;
    return fn([=](const Addresses& a) {
        const float* x = f32(a, in);
        float* y = f32(a, out);
        if (op == Op::kSin || op == Op::kCos) {
            // Only the OBB head's angles (a few thousand values): libm is fine.
            for (int64_t i = 0; i < count; ++i) y[i] = op == Op::kSin ? std::sin(x[i]) : std::cos(x[i]);
        } else if (op == Op::kSigmoid) {
#pragma omp parallel for simd if (count > 65536)
            for (int64_t i = 0; i < count; ++i) y[i] = sigmoid_poly(x[i]);
        } else {
#pragma omp parallel for simd if (count > 65536)
            for (int64_t i = 0; i < count; ++i) y[i] = std::max(x[i], 0.f);
        }
    });
}

float apply(Op op, float a, float b) {
    switch (op) {
        case Op::kAdd:
            return a + b;
        case Op::kSub:
            return a - b;
        case Op::kMul:
            return a * b;
        default:
            return a / b;
    }
}

// Broadcast offsets of one input into the output, as strides over the output's dims (0 where broadcast).
std::vector<int64_t> broadcast_strides(const Shape& out, const Shape& in) {
    std::vector<int64_t> st(out.size(), 0);
    auto in_st = row_major_strides(in);
    for (size_t i = 0; i < in.size(); ++i) {
        size_t o = out.size() - in.size() + i;
        st[o] = in[i] == 1 ? 0 : in_st[i];
    }
    return st;
}

std::unique_ptr<Kernel> binary_kernel(const plan::ExecutionPlan& p, const Node& n) {
    const ir::Graph& g = p.graph;
    int ia = n.inputs[0], ib = n.inputs[1], out = n.outputs[0];
    Op op = n.op;
    const Shape& os = g.value(out).shape;
    // Constant operands live in the plan's graph; copy them so the kernel owns its data.
    auto operand = [&](int v) -> std::shared_ptr<std::vector<float>> {
        if (!g.is_constant(v)) return nullptr;
        return std::make_shared<std::vector<float>>(g.value(v).constant->to_floats());
    };
    auto ca = operand(ia), cb = operand(ib);
    if (g.value(ia).shape == os && g.value(ib).shape == os) {
        int64_t count = p.values[sz(out)].bytes / 4;
        return fn([=](const Addresses& a) {
            const float* x = ca ? ca->data() : f32(a, ia);
            const float* y = cb ? cb->data() : f32(a, ib);
            float* z = f32(a, out);
#pragma omp parallel for if (count > 65536)
            for (int64_t i = 0; i < count; ++i) z[i] = apply(op, x[i], y[i]);
        });
    }
    auto sa = broadcast_strides(os, g.value(ia).shape), sb = broadcast_strides(os, g.value(ib).shape);
    int64_t count = num_elements(os);
    int64_t last = os.empty() ? 1 : os.back();
    return fn([=](const Addresses& a) {
        const float* x = ca ? ca->data() : f32(a, ia);
        const float* y = cb ? cb->data() : f32(a, ib);
        float* z = f32(a, out);
        int64_t rows = count / std::max<int64_t>(last, 1);
        int r = static_cast<int>(os.size());
#pragma omp parallel for if (count > 65536)
        for (int64_t row = 0; row < rows; ++row) {
            int64_t oa = 0, ob = 0, rem = row;
            for (int d = r - 2; d >= 0; --d) {
                int64_t c = rem % os[sz(d)];
                rem /= os[sz(d)];
                oa += c * sa[sz(d)];
                ob += c * sb[sz(d)];
            }
            int64_t xa = r ? sa[sz(r - 1)] : 0, xb = r ? sb[sz(r - 1)] : 0;
            for (int64_t i = 0; i < last; ++i) z[row * last + i] = apply(op, x[oa + i * xa], y[ob + i * xb]);
        }
    });
}

// Copies the box of `in` starting at `starts` with `steps` and extent `out_shape` (all plain).
void strided_copy(const float* in, const Shape& in_shape, const std::vector<int64_t>& starts,
                  const std::vector<int64_t>& steps, const Shape& out_shape, float* out, const Shape& dst_shape,
                  const std::vector<int64_t>& dst_starts) {
    auto is = row_major_strides(in_shape), ds = row_major_strides(dst_shape);
    int64_t count = num_elements(out_shape);
    int r = static_cast<int>(out_shape.size());
    int64_t last = out_shape.back();
    int64_t rows = count / std::max<int64_t>(last, 1);
#pragma omp parallel for if (count > 65536)
    for (int64_t row = 0; row < rows; ++row) {
        int64_t si = 0, di = 0, rem = row;
        for (int d = r - 2; d >= 0; --d) {
            int64_t c = rem % out_shape[sz(d)];
            rem /= out_shape[sz(d)];
            si += (starts[sz(d)] + c * steps[sz(d)]) * is[sz(d)];
            di += (dst_starts[sz(d)] + c) * ds[sz(d)];
        }
        si += starts[sz(r - 1)];
        di += dst_starts[sz(r - 1)];
        int64_t step = steps[sz(r - 1)];
        for (int64_t i = 0; i < last; ++i) out[di + i] = in[si + i * step];
    }
}

// True when value v already sits where it belongs inside `container` at byte offset `at`.
bool in_place(const plan::ExecutionPlan& p, int v, int container, int64_t at) {
    auto root = [&](int x) { return p.values[sz(x)].storage == plan::Storage::kView ? p.values[sz(x)].root : x; };
    auto off = [&](int x) { return p.values[sz(x)].storage == plan::Storage::kView ? p.values[sz(x)].offset : 0; };
    return root(v) == root(container) && off(v) - off(container) == at;
}

std::unique_ptr<Kernel> concat_kernel(const plan::ExecutionPlan& p, const Node& n) {
    const ir::Graph& g = p.graph;
    int out = n.outputs[0];
    int axis = static_cast<int>(n.attrs.get_int("axis", 0));
    const Shape& os = g.value(out).shape;
    bool blocked = p.values[sz(out)].layout == Layout::kBlocked8;
    struct Part {
        int value;
        int64_t start;
        Shape shape;
    };
    std::vector<Part> copies;
    int64_t start = 0, inner = 1;
    for (size_t i = sz(axis) + 1; i < os.size(); ++i) inner *= os[i];
    for (int in : n.inputs) {
        const Shape& s = g.value(in).shape;
        bool placed = !g.is_constant(in) && in_place(p, in, out, start * inner * 4);
        if (!placed) copies.push_back({in, start, s});
        start += s[sz(axis)];
    }
    auto constants = std::make_shared<std::vector<std::vector<float>>>();
    for (const Part& part : copies)
        constants->push_back(g.is_constant(part.value) ? g.value(part.value).constant->to_floats()
                                                       : std::vector<float>{});
    if (blocked) {
        // Blocked concat on axis 1 with channel counts in multiples of 8: each part is one byte range.
        return fn([=](const Addresses& a) {
            for (const Part& part : copies)
                std::memcpy(a[sz(out)] + part.start * inner * 4, a[sz(part.value)], sz(num_elements(part.shape) * 4));
        });
    }
    return fn([=](const Addresses& a) {
        for (size_t k = 0; k < copies.size(); ++k) {
            const Part& part = copies[k];
            const float* src = (*constants)[k].empty() ? f32(a, part.value) : (*constants)[k].data();
            std::vector<int64_t> zeros(os.size(), 0), ones(os.size(), 1), dst_starts(os.size(), 0);
            dst_starts[sz(axis)] = part.start;
            strided_copy(src, part.shape, zeros, ones, part.shape, f32(a, out), os, dst_starts);
        }
    });
}

std::unique_ptr<Kernel> slice_like_kernel(const plan::ExecutionPlan& p, const Node& n) {
    // Split and Slice outputs that the planner could not make views of.
    const ir::Graph& g = p.graph;
    int in = n.inputs[0];
    const Shape& is = g.value(in).shape;
    std::vector<std::function<void(const Addresses&)>> parts;
    auto in_strides = row_major_strides(is);
    auto add_part = [&](int out, std::vector<int64_t> starts, std::vector<int64_t> steps) {
        int64_t first = 0;
        for (size_t d = 0; d < is.size(); ++d) first += starts[d] * in_strides[d];
        if (in_place(p, out, in, first * 4)) return;  // a view: nothing to copy
        Shape os = g.value(out).shape;
        parts.push_back([=](const Addresses& a) {
            std::vector<int64_t> zeros(os.size(), 0);
            strided_copy(f32(a, in), is, starts, steps, os, f32(a, out), os, zeros);
        });
    };
    if (n.op == Op::kSlice) {
        add_part(n.outputs[0], n.attrs.get_ints("starts"), n.attrs.get_ints("steps"));
    } else {
        int axis = static_cast<int>(n.attrs.get_int("axis", 0));
        auto sizes = n.attrs.get_ints("split");
        int64_t start = 0;
        for (size_t k = 0; k < n.outputs.size(); ++k) {
            std::vector<int64_t> starts(is.size(), 0), steps(is.size(), 1);
            starts[sz(axis)] = start;
            add_part(n.outputs[k], starts, steps);
            start += sizes[k];
        }
    }
    return fn([parts](const Addresses& a) {
        for (const auto& f : parts) f(a);
    });
}

std::unique_ptr<Kernel> reshape_kernel(const plan::ExecutionPlan& p, const Node& n) {
    int in = n.inputs[0], out = n.outputs[0];
    int64_t bytes = p.values[sz(out)].bytes;
    if (p.values[sz(out)].storage == plan::Storage::kView) return fn([](const Addresses&) {});
    return fn([=](const Addresses& a) { std::memcpy(a[sz(out)], a[sz(in)], sz(bytes)); });
}

std::unique_ptr<Kernel> transpose_kernel(const plan::ExecutionPlan& p, const Node& n) {
    const ir::Graph& g = p.graph;
    int in = n.inputs[0], out = n.outputs[0];
    auto perm = n.attrs.get_ints("perm");
    const Shape& os = g.value(out).shape;
    auto ist = row_major_strides(g.value(in).shape);
    std::vector<int64_t> src_st(os.size());
    for (size_t i = 0; i < os.size(); ++i) src_st[i] = ist[sz(perm[i])];
    Shape zeros(os.size(), 0);
    return fn([=](const Addresses& a) {
        // A transpose is a strided copy whose source strides are permuted.
        const float* x = f32(a, in);
        float* y = f32(a, out);
        int64_t count = num_elements(os), last = os.back(), rows = count / std::max<int64_t>(last, 1);
        int r = static_cast<int>(os.size());
#pragma omp parallel for if (count > 65536)
        for (int64_t row = 0; row < rows; ++row) {
            int64_t si = 0, rem = row;
            for (int d = r - 2; d >= 0; --d) {
                si += (rem % os[sz(d)]) * src_st[sz(d)];
                rem /= os[sz(d)];
            }
            for (int64_t i = 0; i < last; ++i) y[row * last + i] = x[si + i * src_st[sz(r - 1)]];
        }
    });
}

std::unique_ptr<Kernel> softmax_kernel(const plan::ExecutionPlan& p, const Node& n) {
    const Shape& s = p.graph.value(n.inputs[0]).shape;
    int in = n.inputs[0], out = n.outputs[0];
    int axis = static_cast<int>(n.attrs.get_int("axis", -1));
    int64_t outer = 1, len = 1, inner = 1;
    for (int i = 0; i < axis; ++i) outer *= s[sz(i)];
    if (n.attrs.get_int("coerce_2d", 0)) {
        for (size_t i = sz(axis); i < s.size(); ++i) len *= s[i];
    } else {
        len = s[sz(axis)];
        for (size_t i = sz(axis) + 1; i < s.size(); ++i) inner *= s[i];
    }
    // Work on blocks of the inner (contiguous) dimension so every loop runs over consecutive
    // floats and vectorises; the DFL softmax is over 16 values strided by 33600.
    constexpr int64_t kBlock = 256;
    int64_t blocks = (inner + kBlock - 1) / kBlock;
    return fn([=](const Addresses& a) {
        const float* x = f32(a, in);
        float* y = f32(a, out);
#pragma omp parallel for collapse(2) if (outer * inner > 1024)
        for (int64_t o = 0; o < outer; ++o)
            for (int64_t blk = 0; blk < blocks; ++blk) {
                int64_t i0 = blk * kBlock, w = std::min(kBlock, inner - i0);
                float m[kBlock], sum[kBlock];
                const float* px = x + o * len * inner + i0;
                float* py = y + o * len * inner + i0;
                for (int64_t i = 0; i < w; ++i) m[i] = px[i], sum[i] = 0.f;
                for (int64_t l = 1; l < len; ++l)
                    for (int64_t i = 0; i < w; ++i) m[i] = std::max(m[i], px[l * inner + i]);
                for (int64_t l = 0; l < len; ++l)
                    for (int64_t i = 0; i < w; ++i) {
                        float e = exp_poly(px[l * inner + i] - m[i]);
                        py[l * inner + i] = e;
                        sum[i] += e;
                    }
                for (int64_t i = 0; i < w; ++i) sum[i] = 1.f / sum[i];
                for (int64_t l = 0; l < len; ++l)
                    for (int64_t i = 0; i < w; ++i) py[l * inner + i] *= sum[i];
            }
    });
}

std::unique_ptr<Kernel> resize_kernel(const plan::ExecutionPlan& p, const Node& n) {
    const ir::Graph& g = p.graph;
    int in = n.inputs[0], out = n.outputs[0];
    const Shape& is = g.value(in).shape;
    const Shape& os = g.value(out).shape;
    std::string cm = n.attrs.get_string("coordinate_transformation_mode", "half_pixel");
    std::string nm = n.attrs.get_string("nearest_mode", "round_prefer_floor");
    auto index_map = [&](int64_t in_len, int64_t out_len, double scale) {
        std::vector<int64_t> m(sz(out_len));
        for (int64_t o = 0; o < out_len; ++o) {
            double x = cm == "asymmetric"           ? o / scale
                       : cm == "align_corners"      ? (out_len > 1 ? o * double(in_len - 1) / double(out_len - 1) : 0.0)
                       : cm == "pytorch_half_pixel" ? (out_len > 1 ? (o + 0.5) / scale - 0.5 : 0.0)
                                                    : (o + 0.5) / scale - 0.5;
            double r = nm == "floor"               ? std::floor(x)
                       : nm == "ceil"              ? std::ceil(x)
                       : nm == "round_prefer_ceil" ? std::floor(x + 0.5)
                                                   : std::ceil(x - 0.5);
            m[sz(o)] = std::clamp<int64_t>(static_cast<int64_t>(r), 0, in_len - 1);
        }
        return m;
    };
    KS_CHECK(cm == "asymmetric" || cm == "align_corners" || cm == "pytorch_half_pixel" || cm == "half_pixel",
             "Resize: coordinate_transformation_mode '", cm, "' is not supported");
    double sh = n.attrs.has("scale_h") ? n.attrs.get_float("scale_h", 1) : double(os[2]) / double(is[2]);
    double sw = n.attrs.has("scale_w") ? n.attrs.get_float("scale_w", 1) : double(os[3]) / double(is[3]);
    auto mh = index_map(is[2], os[2], sh), mw = index_map(is[3], os[3], sw);
    int64_t vec = p.values[sz(out)].layout == Layout::kBlocked8 ? 8 : 1;
    int64_t planes = p.values[sz(out)].layout == Layout::kBlocked8 ? (os[1] + 7) / 8 : os[1];
    int64_t H = is[2], W = is[3], OH = os[2], OW = os[3];
    return fn([=](const Addresses& a) {
        const float* x = f32(a, in);
        float* y = f32(a, out);
#pragma omp parallel for collapse(2)
        for (int64_t c = 0; c < planes; ++c)
            for (int64_t oh = 0; oh < OH; ++oh) {
                const float* src_row = x + (c * H + mh[sz(oh)]) * W * vec;
                float* dst_row = y + (c * OH + oh) * OW * vec;
                for (int64_t ow = 0; ow < OW; ++ow)
                    std::memcpy(dst_row + ow * vec, src_row + mw[sz(ow)] * vec, sz(vec) * sizeof(float));
            }
    });
}

std::unique_ptr<Kernel> global_average_pool_kernel(const plan::ExecutionPlan& p, const Node& n) {
    const Shape& is = p.graph.value(n.inputs[0]).shape;
    int in = n.inputs[0], out = n.outputs[0];
    bool blocked = p.values[sz(in)].layout == Layout::kBlocked8;
    int64_t C = is[1], HW = num_elements(is) / (is[0] * C);
    return fn([=](const Addresses& a) {
        const float* x = f32(a, in);
        float* y = f32(a, out);
#pragma omp parallel for
        for (int64_t c = 0; c < C; ++c) {
            double acc = 0;
            if (blocked) {
                const float* s = x + (c / 8) * HW * 8 + c % 8;
                for (int64_t i = 0; i < HW; ++i) acc += s[i * 8];
            } else {
                for (int64_t i = 0; i < HW; ++i) acc += x[c * HW + i];
            }
            y[c] = static_cast<float>(acc / static_cast<double>(HW));
        }
    });
}

std::unique_ptr<Kernel> gemm_kernel(const plan::ExecutionPlan& p, const Node& n) {
    const ir::Graph& g = p.graph;
    KS_CHECK(!n.attrs.get_int("transA", 0) && g.is_constant(n.inputs[1]),
             "cpu: Gemm is supported with constant B and transA=0");
    int in = n.inputs[0], out = n.outputs[0];
    bool tb = n.attrs.get_int("transB", 0) != 0;
    float alpha = n.attrs.get_float("alpha", 1.f), beta = n.attrs.get_float("beta", 1.f);
    const Shape& as = g.value(in).shape;
    const Shape& os = g.value(out).shape;
    int64_t M = as[0], K = as[1], N = os[1];
    // B stored as [N][K] so each output is a contiguous dot product.
    auto b = g.value(n.inputs[1]).constant->to_floats();
    auto bt = std::make_shared<std::vector<float>>(sz(N * K));
    for (int64_t k = 0; k < K; ++k)
        for (int64_t j = 0; j < N; ++j) (*bt)[sz(j * K + k)] = tb ? b[sz(j * K + k)] : b[sz(k * N + j)];
    auto c = std::make_shared<std::vector<float>>(sz(M * N), 0.f);
    if (n.input(2) >= 0) {
        const ir::Tensor& ct = *g.value(n.inputs[2]).constant;
        auto cv = ct.to_floats();
        for (int64_t m = 0; m < M; ++m)
            for (int64_t j = 0; j < N; ++j) {
                int64_t idx = ct.shape.size() == 2
                                  ? (ct.shape[0] == 1 ? 0 : m) * ct.shape[1] + (ct.shape[1] == 1 ? 0 : j)
                              : ct.shape.size() == 1 ? (ct.shape[0] == 1 ? 0 : j)
                                                     : 0;
                (*c)[sz(m * N + j)] = beta * cv[sz(idx)];
            }
    }
    return fn([=](const Addresses& a) {
        const float* x = f32(a, in);
        float* y = f32(a, out);
#pragma omp parallel for collapse(2)
        for (int64_t m = 0; m < M; ++m)
            for (int64_t j = 0; j < N; ++j) {
                const float* w = bt->data() + j * K;
                float acc = 0.f;
                for (int64_t k = 0; k < K; ++k) acc += x[m * K + k] * w[k];
                y[m * N + j] = alpha * acc + (*c)[sz(m * N + j)];
            }
    });
}

std::unique_ptr<Kernel> batch_norm_kernel(const plan::ExecutionPlan& p, const Node& n) {
    const ir::Graph& g = p.graph;
    for (size_t i = 1; i < 5; ++i)
        KS_CHECK(g.is_constant(n.inputs[i]), "cpu: BatchNormalization needs constant parameters");
    auto gamma = g.value(n.inputs[1]).constant->to_floats(), beta = g.value(n.inputs[2]).constant->to_floats();
    auto mean = g.value(n.inputs[3]).constant->to_floats(), var = g.value(n.inputs[4]).constant->to_floats();
    float eps = n.attrs.get_float("epsilon", 1e-5f);
    const Shape& s = g.value(n.inputs[0]).shape;
    int64_t C = s[1], inner = num_elements(s) / (s[0] * C);
    auto scale = std::make_shared<std::vector<float>>(sz(C)), shift = std::make_shared<std::vector<float>>(sz(C));
    for (int64_t c = 0; c < C; ++c) {
        (*scale)[sz(c)] = gamma[sz(c)] / std::sqrt(var[sz(c)] + eps);
        (*shift)[sz(c)] = beta[sz(c)] - mean[sz(c)] * (*scale)[sz(c)];
    }
    int in = n.inputs[0], out = n.outputs[0];
    return fn([=](const Addresses& a) {
        const float* x = f32(a, in);
        float* y = f32(a, out);
#pragma omp parallel for
        for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < inner; ++i) y[c * inner + i] = x[c * inner + i] * (*scale)[sz(c)] + (*shift)[sz(c)];
    });
}

std::string conv_name(const plan::ExecutionPlan& p, const Node& n) {
    auto k = p.graph.value(n.inputs[1]).shape;
    auto s = n.attrs.get_ints("strides", {1, 1});
    std::ostringstream os;
    bool int8 = n.attrs.get_string("precision", "fp32") == "int8";
    const char* impl = int8                     ? "_onednn_s8s8f32_nhwc_via_"
                       : winograd_applies(p, n) ? "_winograd_f4x4_avx2_f32_"
                                                : "_onednn_f32_";
    os << (n.op == Op::kConv ? "conv2d" : "deconv2d") << impl << plan::layout_name(p.values[sz(n.inputs[0])].layout)
       << "_" << plan::layout_name(p.values[sz(n.outputs[0])].layout) << "_k" << k[2] << "x" << k[3] << "s" << s[0];
    if (n.attrs.get_int("group", 1) > 1) os << "g" << n.attrs.get_int("group", 1);
    if (n.attrs.get_string("activation", "") == "silu") os << "_silu";
    if (n.input(3) >= 0) os << "_add";
    return os.str();
}

}  // namespace

std::shared_ptr<CpuContext> make_context() { return std::make_shared<CpuContext>(); }

std::string kernel_name(const plan::ExecutionPlan& p, size_t index) {
    const Node& n = p.graph.nodes[index];
    auto lay = [&](int v) { return std::string(plan::layout_name(p.values[sz(v)].layout)); };
    std::string io = "_f32_" + lay(n.inputs[0]);
    switch (n.op) {
        case Op::kConv:
        case Op::kConvTranspose:
            return conv_name(p, n);
        case Op::kMaxPool:
            return "maxpool2d_onednn" + io;
        case Op::kIdentity:
            return lay(n.inputs[0]) == lay(n.outputs[0]) ? "copy" + io : "reorder" + io + "_to_" + lay(n.outputs[0]);
        case Op::kReshape:
            return p.values[sz(n.outputs[0])].storage == plan::Storage::kView ? "view_reshape" : "copy_reshape";
        case Op::kConcat: {
            // Elided when every input was planned inside the output: nothing runs.
            int64_t start = 0, inner = 1;
            const Shape& os = p.graph.value(n.outputs[0]).shape;
            int axis = static_cast<int>(n.attrs.get_int("axis", 0));
            for (size_t i = sz(axis) + 1; i < os.size(); ++i) inner *= os[i];
            bool elided = true;
            for (int in : n.inputs) {
                elided = elided && !p.graph.is_constant(in) && in_place(p, in, n.outputs[0], start * inner * 4);
                start += p.graph.value(in).shape[sz(axis)];
            }
            return (elided ? "elided_concat" : "concat") + io;
        }
        case Op::kSplit:
        case Op::kSlice: {
            bool view = true;
            for (int o : n.outputs) view = view && p.values[sz(o)].storage == plan::Storage::kView;
            return std::string(view ? "view_" : "copy_") + std::string(ir::op_name(n.op)) + io;
        }
        default: {
            std::string name(ir::op_name(n.op));
            std::transform(name.begin(), name.end(), name.begin(),
                           [](char c) { return static_cast<char>(std::tolower(c)); });
            return name + io;
        }
    }
}

std::unique_ptr<Kernel> create_kernel(const plan::ExecutionPlan& p, size_t index, CpuContext& ctx) {
    const Node& n = p.graph.nodes[index];
    for (int in : n.inputs)
        KS_CHECK(in < 0 || p.graph.value(in).dtype == DType::kFloat32, "cpu: ", ir::op_name(n.op), " node '", n.name,
                 "' has a ", dtype_name(p.graph.value(in).dtype), " input; the CPU backend computes float32 tensors");
    switch (n.op) {
        case Op::kConv:
            if (n.attrs.get_string("precision", "fp32") == "int8") return make_int8_conv_kernel(p, n, ctx);
            if (winograd_applies(p, n)) return make_winograd_conv_kernel(p, n);
            return make_conv_kernel(p, n, ctx, false);
        case Op::kConvTranspose:
            return make_conv_kernel(p, n, ctx, true);
        case Op::kMaxPool:
            return make_maxpool_kernel(p, n, ctx);
        case Op::kBatchNormalization:
            return batch_norm_kernel(p, n);
        case Op::kSigmoid:
        case Op::kRelu:
        case Op::kSin:
        case Op::kCos:
            return unary_kernel(p, n);
        case Op::kAdd:
        case Op::kSub:
        case Op::kMul:
        case Op::kDiv:
            return binary_kernel(p, n);
        case Op::kSplit:
        case Op::kSlice:
            return slice_like_kernel(p, n);
        case Op::kConcat:
            return concat_kernel(p, n);
        case Op::kGlobalAveragePool:
            return global_average_pool_kernel(p, n);
        case Op::kResize:
            return resize_kernel(p, n);
        case Op::kReshape:
            return reshape_kernel(p, n);
        case Op::kTranspose:
            return transpose_kernel(p, n);
        case Op::kSoftmax:
            return softmax_kernel(p, n);
        case Op::kGemm:
            return gemm_kernel(p, n);
        case Op::kIdentity:
            return identity_kernel(p, n);
        case Op::kFlatten:
        case Op::kUnsqueeze:
        case Op::kSqueeze:
        case Op::kShape:
        case Op::kGather:
        case Op::kCast:
        case Op::kConstantOfShape:
        case Op::kRange:
        case Op::kExpand:
        case Op::kEqual:
        case Op::kWhere:
        case Op::kYoloDecode:  // fused for CUDA engines only (passes::PipelineOptions)
            break;
    }
    KS_FAIL("cpu: ", ir::op_name(n.op), " node '", n.name, "' is not supported on the cpu backend");
}

}  // namespace kestrel::cpu
