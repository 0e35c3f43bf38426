// INT8 convolution on the CPU. oneDNN's int8 kernels on x86 (jit_uni_int8, vpmaddubsw / vpdpbusd)
// need dense NHWC tensors, while the FP32 plan keeps activations in nChw8c or nchw (where concat
// elision and views work). So one INT8 conv is three steps:
//
//   f32 nChw8c/nchw --quantize (x / s_in, round to nearest even, clamp)--> s8 nhwc   (scratch)
//   s8 nhwc --oneDNN conv, s8 weights per output channel, bias, SiLU--> f32 nhwc      (scratch)
//   f32 nhwc --relayout (+ residual)--> f32 nChw8c/nchw                               (the plan's buffer)
//
// Weights are quantised symmetrically per output channel to 7 bits: s_w[c] = max|w[c]| / 63.
// Without VNNI, x86 int8 kernels multiply with vpmaddubsw, whose int16 pair sums saturate for
// 8-bit weights; oneDNN avoids that by halving the weights in its reorder, rounding odd values.
// Handing it even values (2 * q, |q| <= 63) makes the halving exact, so the kernel computes
// exactly what the fake-quantised reference (reference.cc, precision="int8") computes.
// Output scales: out = acc * s_in * s_w[c] / 2.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "backends/cpu/onednn_kernels.h"
#include "core/error.h"

namespace kestrel::cpu {

namespace {

using dnnl::memory;
using Tag = memory::format_tag;
using plan::Layout;

class Int8ConvKernel final : public Kernel {
   public:
    Int8ConvKernel(const plan::ExecutionPlan& plan, const ir::Node& n, CpuContext& ctx) : ctx_(ctx) {
        const ir::Graph& g = plan.graph;
        const ir::Value& x = g.value(n.inputs[0]);
        const ir::Value& y = g.value(n.outputs[0]);
        const ir::Tensor& w = *g.value(n.inputs[1]).constant;
        KS_CHECK(n.attrs.get_int("group", 1) == 1, "cpu int8: grouped convolution '", n.name, "' is not supported");
        src_id_ = n.inputs[0];
        dst_id_ = n.outputs[0];
        residual_id_ = n.input(3);
        src_layout_ = plan.values[static_cast<size_t>(src_id_)].layout;
        dst_layout_ = plan.values[static_cast<size_t>(dst_id_)].layout;
        ic_ = x.shape[1];
        ih_w_ = x.shape[2] * x.shape[3];
        oc_ = y.shape[1];
        oh_w_ = y.shape[2] * y.shape[3];
        inv_scale_ = 1.f / n.attrs.get_float("input_scale", 0.f);
        KS_CHECK(n.attrs.get_int("weight_qmax", 63) == 63, "cpu int8: conv '", n.name,
                 "' was quantised for another device's 8-bit weights");
        KS_CHECK(std::isfinite(inv_scale_) && inv_scale_ > 0, "cpu int8: conv '", n.name, "' has no input scale");

        // Per-output-channel symmetric weight quantisation.
        int64_t per_oc = w.size() / oc_;
        std::vector<int8_t> wq(static_cast<size_t>(w.size()));
        std::vector<float> out_scales(static_cast<size_t>(oc_));
        for (int64_t c = 0; c < oc_; ++c) {
            const float* wc = w.data<float>() + c * per_oc;
            float amax = 0.f;
            for (int64_t k = 0; k < per_oc; ++k) amax = std::max(amax, std::abs(wc[k]));
            float sw = amax > 0 ? amax / 63.f : 1.f;
            for (int64_t k = 0; k < per_oc; ++k)
                wq[static_cast<size_t>(c * per_oc + k)] =
                    static_cast<int8_t>(2.f * std::clamp(std::nearbyint(wc[k] / sw), -63.f, 63.f));
            out_scales[static_cast<size_t>(c)] = sw / 2.f / inv_scale_;
        }

        memory::dims xd(x.shape.begin(), x.shape.end()), yd(y.shape.begin(), y.shape.end());
        memory::desc src_md(xd, memory::data_type::s8, Tag::nhwc);
        memory::desc dst_md(yd, memory::data_type::f32, Tag::nhwc);
        memory::dims wd(w.shape.begin(), w.shape.end());
        auto s = n.attrs.get_ints("strides", {1, 1});
        auto d = n.attrs.get_ints("dilations", {1, 1});
        auto p = n.attrs.get_ints("pads", {0, 0, 0, 0});
        dnnl::post_ops po;
        if (n.attrs.get_string("activation", "") == "silu")
            po.append_eltwise(1.f, dnnl::algorithm::eltwise_swish, 1.f, 0.f);
        dnnl::primitive_attr attr;
        attr.set_output_scales(2, out_scales);
        attr.set_post_ops(po);
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        auto desc = dnnl::convolution_forward::desc(
            dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src_md,
            memory::desc(wd, memory::data_type::s8, Tag::any), memory::desc({oc_}, memory::data_type::f32, Tag::a),
            dst_md, {s[0], s[1]}, {d[0] - 1, d[1] - 1}, {p[0], p[1]}, {p[2], p[3]});
        auto pd = dnnl::convolution_forward::primitive_desc(desc, attr, ctx.engine);
        std::string impl = pd.impl_info_str();
        KS_CHECK(impl.rfind("ref", 0) != 0, "cpu int8: no optimised oneDNN implementation for '", n.name, "' (", impl,
                 ")");
        prim_ = dnnl::convolution_forward(pd);
        memory user_w(memory::desc(wd, memory::data_type::s8, Tag::oihw), ctx.engine, wq.data());
        weights_ = memory(pd.weights_desc(), ctx.engine);
        dnnl::reorder(user_w, weights_).execute(ctx.stream, user_w, weights_);
        ctx.stream.wait();
        bias_ = memory(memory::desc({oc_}, memory::data_type::f32, Tag::a), ctx.engine);
        auto* bp = static_cast<float*>(bias_.get_data_handle());
        if (n.input(2) >= 0) {
            // oneDNN 2.x applies output scales after the bias: dst = scale * (acc + bias).
            auto b = g.value(n.inputs[2]).constant->to_floats();
            for (int64_t c = 0; c < oc_; ++c) bp[c] = b[static_cast<size_t>(c)] / out_scales[static_cast<size_t>(c)];
        } else {
            std::fill(bp, bp + oc_, 0.f);
        }
        scratch_ = memory(pd.scratchpad_desc(), ctx.engine);
        // Scratch: [s8 input | f32 nhwc output], 64-byte aligned.
        q_bytes_ = (static_cast<size_t>(ic_ * ih_w_) + 63) / 64 * 64;
        ctx.reserve_scratch(q_bytes_ + static_cast<size_t>(oc_ * oh_w_) * sizeof(float) + 64);
        src_ = memory(src_md, ctx.engine, nullptr);
        dst_ = memory(dst_md, ctx.engine, nullptr);
    }

    void run(const Addresses& addr) override {
        // The context's scratch may have grown after this kernel was created: take its address now.
        uint8_t* base = ctx_.scratch_at((64 - reinterpret_cast<uintptr_t>(ctx_.scratch.data()) % 64) % 64);
        auto* q = reinterpret_cast<int8_t*>(base);
        auto* out = reinterpret_cast<float*>(base + q_bytes_);
        quantize(reinterpret_cast<const float*>(addr[static_cast<size_t>(src_id_)]), q);
        src_.set_data_handle(q);
        dst_.set_data_handle(out);
        prim_.execute(ctx_.stream, {{DNNL_ARG_SRC, src_},
                                    {DNNL_ARG_WEIGHTS, weights_},
                                    {DNNL_ARG_BIAS, bias_},
                                    {DNNL_ARG_DST, dst_},
                                    {DNNL_ARG_SCRATCHPAD, scratch_}});
        ctx_.stream.wait();
        const float* res =
            residual_id_ >= 0 ? reinterpret_cast<const float*>(addr[static_cast<size_t>(residual_id_)]) : nullptr;
        relayout(out, res, reinterpret_cast<float*>(addr[static_cast<size_t>(dst_id_)]));
    }

   private:
    // Round to nearest even with the 1.5 * 2^23 trick (no libm call, so the loops vectorise), clamp.
    static int8_t q8(float v, float inv) {
        float r = (v * inv + 12582912.f) - 12582912.f;
        return static_cast<int8_t>(std::min(127.f, std::max(-128.f, r)));
    }

    void quantize(const float* x, int8_t* q) const {
        const int64_t C = ic_, HW = ih_w_;
        const float inv = inv_scale_;
        if (src_layout_ == Layout::kBlocked8 && C % 8 == 0) {
            // nChw8c -> nhwc: eight consecutive channels per pixel on both sides.
#pragma omp parallel for
            for (int64_t p = 0; p < HW; ++p)
                for (int64_t cb = 0; cb < C / 8; ++cb)
                    for (int64_t c8 = 0; c8 < 8; ++c8) q[p * C + cb * 8 + c8] = q8(x[(cb * HW + p) * 8 + c8], inv);
        } else if (src_layout_ == Layout::kBlocked8) {
#pragma omp parallel for
            for (int64_t p = 0; p < HW; ++p)
                for (int64_t c = 0; c < C; ++c) q[p * C + c] = q8(x[((c / 8) * HW + p) * 8 + c % 8], inv);
        } else {
#pragma omp parallel for
            for (int64_t p = 0; p < HW; ++p)
                for (int64_t c = 0; c < C; ++c) q[p * C + c] = q8(x[c * HW + p], inv);
        }
    }

    void relayout(const float* y, const float* res, float* dst) const {
        const int64_t C = oc_, HW = oh_w_;
        if (dst_layout_ == Layout::kBlocked8) {
            int64_t CB = (C + 7) / 8;
#pragma omp parallel for
            for (int64_t cb = 0; cb < CB; ++cb) {
                int64_t valid = std::min<int64_t>(8, C - cb * 8);
                for (int64_t p = 0; p < HW; ++p) {
                    float* d = dst + (cb * HW + p) * 8;
                    const float* src = y + p * C + cb * 8;
                    if (valid == 8) {
                        if (res) {
                            const float* r = res + (cb * HW + p) * 8;
                            for (int64_t c8 = 0; c8 < 8; ++c8) d[c8] = src[c8] + r[c8];
                        } else {
                            for (int64_t c8 = 0; c8 < 8; ++c8) d[c8] = src[c8];
                        }
                    } else {
                        for (int64_t c8 = 0; c8 < 8; ++c8)
                            d[c8] = (c8 < valid ? src[c8] : 0.f) + (res ? res[(cb * HW + p) * 8 + c8] : 0.f);
                    }
                }
            }
        } else {
#pragma omp parallel for
            for (int64_t c = 0; c < C; ++c)
                for (int64_t p = 0; p < HW; ++p) {
                    float v = y[p * C + c];
                    dst[c * HW + p] = res ? v + res[c * HW + p] : v;
                }
        }
    }

    CpuContext& ctx_;
    dnnl::primitive prim_;
    memory weights_, bias_, scratch_, src_, dst_;
    int src_id_ = -1, dst_id_ = -1, residual_id_ = -1;
    Layout src_layout_{}, dst_layout_{};
    int64_t ic_ = 0, ih_w_ = 0, oc_ = 0, oh_w_ = 0;
    float inv_scale_ = 0;
    size_t q_bytes_ = 0;
};

}  // namespace

std::unique_ptr<Kernel> make_int8_conv_kernel(const plan::ExecutionPlan& plan, const ir::Node& n, CpuContext& ctx) {
    return std::make_unique<Int8ConvKernel>(plan, n, ctx);
}

}  // namespace kestrel::cpu
