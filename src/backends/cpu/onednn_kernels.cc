// Convolution, transposed convolution and max pooling through oneDNN primitives. Activations are
// nchw or nChw8c as the plan assigned; weights are reordered once into the format the primitive
// prefers (format_tag::any). The conv epilogue (bias, SiLU, residual add) runs as oneDNN post-ops.
#include "backends/cpu/onednn_kernels.h"

#include <cstring>

#include "core/error.h"

namespace kestrel::cpu {

namespace {

using dnnl::memory;
using Tag = memory::format_tag;

memory::desc activation_desc(const ir::Value& v, plan::Layout layout) {
    memory::dims d(v.shape.begin(), v.shape.end());
    return memory::desc(d, memory::data_type::f32, layout == plan::Layout::kBlocked8 ? Tag::nChw8c : Tag::nchw);
}

memory::dims ints(const std::vector<int64_t>& v) { return memory::dims(v.begin(), v.end()); }

// Copies user weights (in `tag` order) into the primitive's preferred layout.
memory reorder_weights(CpuContext& ctx, const ir::Tensor& w, const memory::dims& dims, Tag tag,
                       const memory::desc& want) {
    memory::desc user_desc(dims, memory::data_type::f32, tag);
    std::vector<float> copy(w.data<float>(), w.data<float>() + w.size());
    memory user(user_desc, ctx.engine, copy.data());
    memory out(want, ctx.engine);
    dnnl::reorder(user, out).execute(ctx.stream, user, out);
    ctx.stream.wait();
    return out;
}

memory bias_memory(CpuContext& ctx, const ir::Graph& g, int bias, int64_t channels) {
    memory m(memory::desc({channels}, memory::data_type::f32, Tag::a), ctx.engine);
    float* p = static_cast<float*>(m.get_data_handle());
    if (bias >= 0) {
        auto b = g.value(bias).constant->to_floats();
        std::memcpy(p, b.data(), sizeof(float) * static_cast<size_t>(channels));
    } else {
        std::fill(p, p + channels, 0.f);
    }
    return m;
}

class ConvKernel final : public Kernel {
   public:
    ConvKernel(const plan::ExecutionPlan& plan, const ir::Node& n, CpuContext& ctx, bool transposed) : ctx_(ctx) {
        const ir::Graph& g = plan.graph;
        const ir::Value& x = g.value(n.inputs[0]);
        const ir::Value& y = g.value(n.outputs[0]);
        const ir::Tensor& w = *g.value(n.inputs[1]).constant;
        src_id_ = n.inputs[0];
        dst_id_ = n.outputs[0];
        residual_id_ = n.input(3);
        auto src_md = activation_desc(x, plan.values[static_cast<size_t>(src_id_)].layout);
        auto dst_md = activation_desc(y, plan.values[static_cast<size_t>(dst_id_)].layout);
        auto strides = ints(n.attrs.get_ints("strides", {1, 1}));
        auto dil = n.attrs.get_ints("dilations", {1, 1});
        memory::dims dnnl_dil = {dil[0] - 1, dil[1] - 1};
        auto pads = n.attrs.get_ints("pads", {0, 0, 0, 0});
        memory::dims pad_l = {pads[0], pads[1]}, pad_r = {pads[2], pads[3]};
        int64_t group = n.attrs.get_int("group", 1);

        has_activation_ = n.attrs.get_string("activation", "") == "silu";
        dnnl::post_ops po;
        if (has_activation_) po.append_eltwise(1.f, dnnl::algorithm::eltwise_swish, 1.f, 0.f);
        if (residual_id_ >= 0) po.append_binary(dnnl::algorithm::binary_add, dst_md);
        dnnl::primitive_attr attr;
        attr.set_post_ops(po);
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);

        memory::dims wdims;
        Tag wtag;
        if (!transposed) {
            if (group == 1) {
                wdims = ints(w.shape);
                wtag = Tag::oihw;
            } else {
                wdims = {group, w.shape[0] / group, w.shape[1], w.shape[2], w.shape[3]};
                wtag = Tag::goihw;
            }
            auto wmd = memory::desc(wdims, memory::data_type::f32, Tag::any);
            auto bmd = memory::desc({y.shape[1]}, memory::data_type::f32, Tag::a);
            auto d = dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                     dnnl::algorithm::convolution_direct, src_md, wmd, bmd, dst_md,
                                                     strides, dnnl_dil, pad_l, pad_r);
            auto pd = dnnl::convolution_forward::primitive_desc(d, attr, ctx.engine);
            prim_ = dnnl::convolution_forward(pd);
            weights_ = reorder_weights(ctx, w, wdims, wtag, pd.weights_desc());
            scratch_ = memory(pd.scratchpad_desc(), ctx.engine);
            impl_ = pd.impl_info_str();
        } else {
            // ONNX ConvTranspose weights are [IC, OC, KH, KW]: oneDNN's iohw.
            wdims = {w.shape[1], w.shape[0], w.shape[2], w.shape[3]};
            wtag = Tag::iohw;
            auto wmd = memory::desc(wdims, memory::data_type::f32, Tag::any);
            auto bmd = memory::desc({y.shape[1]}, memory::data_type::f32, Tag::a);
            auto d = dnnl::deconvolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                       dnnl::algorithm::deconvolution_direct, src_md, wmd, bmd, dst_md,
                                                       strides, dnnl_dil, pad_l, pad_r);
            auto pd = dnnl::deconvolution_forward::primitive_desc(d, attr, ctx.engine);
            prim_ = dnnl::deconvolution_forward(pd);
            weights_ = reorder_weights(ctx, w, wdims, wtag, pd.weights_desc());
            scratch_ = memory(pd.scratchpad_desc(), ctx.engine);
            impl_ = pd.impl_info_str();
        }
        bias_ = bias_memory(ctx, g, n.input(2), y.shape[1]);
        src_ = memory(src_md, ctx.engine, nullptr);
        dst_ = memory(dst_md, ctx.engine, nullptr);
        if (residual_id_ >= 0) residual_ = memory(dst_md, ctx.engine, nullptr);
        // A reference implementation would be orders of magnitude slower: refuse rather than fall back.
        KS_CHECK(impl_.rfind("ref", 0) != 0, "cpu: no optimised oneDNN implementation for node '", n.name, "' (", impl_,
                 ")");
    }

    void run(const Addresses& addr) override {
        src_.set_data_handle(addr[static_cast<size_t>(src_id_)]);
        dst_.set_data_handle(addr[static_cast<size_t>(dst_id_)]);
        std::unordered_map<int, memory> args = {{DNNL_ARG_SRC, src_},
                                                {DNNL_ARG_WEIGHTS, weights_},
                                                {DNNL_ARG_BIAS, bias_},
                                                {DNNL_ARG_DST, dst_},
                                                {DNNL_ARG_SCRATCHPAD, scratch_}};
        if (residual_id_ >= 0) {
            residual_.set_data_handle(addr[static_cast<size_t>(residual_id_)]);
            args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(post_op_index()) | DNNL_ARG_SRC_1] = residual_;
        }
        prim_.execute(ctx_.stream, args);
        ctx_.stream.wait();
    }

   private:
    int post_op_index() const { return has_activation_ ? 1 : 0; }

    CpuContext& ctx_;
    dnnl::primitive prim_;
    memory weights_, bias_, scratch_, src_, dst_, residual_;
    int src_id_ = -1, dst_id_ = -1, residual_id_ = -1;
    bool has_activation_ = false;
    std::string impl_;
};

class MaxPoolKernel final : public Kernel {
   public:
    MaxPoolKernel(const plan::ExecutionPlan& plan, const ir::Node& n, CpuContext& ctx) : ctx_(ctx) {
        const ir::Graph& g = plan.graph;
        const ir::Value& x = g.value(n.inputs[0]);
        const ir::Value& y = g.value(n.outputs[0]);
        src_id_ = n.inputs[0];
        dst_id_ = n.outputs[0];
        auto src_md = activation_desc(x, plan.values[static_cast<size_t>(src_id_)].layout);
        auto dst_md = activation_desc(y, plan.values[static_cast<size_t>(dst_id_)].layout);
        auto k = n.attrs.get_ints("kernel_shape");
        auto s = n.attrs.get_ints("strides", {1, 1});
        auto d = n.attrs.get_ints("dilations", {1, 1});
        auto p = n.attrs.get_ints("pads", {0, 0, 0, 0});
        memory::dims pad_l = {p[0], p[1]}, pad_r(2);
        // ceil_mode: extend the right padding so oneDNN yields the output size shape inference chose.
        for (int i = 0; i < 2; ++i)
            pad_r[static_cast<size_t>(i)] = (y.shape[static_cast<size_t>(2 + i)] - 1) * s[static_cast<size_t>(i)] +
                                            (k[static_cast<size_t>(i)] - 1) * d[static_cast<size_t>(i)] + 1 -
                                            x.shape[static_cast<size_t>(2 + i)] - p[static_cast<size_t>(i)];
        auto desc = dnnl::pooling_v2_forward::desc(dnnl::prop_kind::forward_inference, dnnl::algorithm::pooling_max,
                                                   src_md, dst_md, ints(s), ints(k), {d[0] - 1, d[1] - 1}, pad_l, pad_r);
        dnnl::primitive_attr attr;
        attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
        auto pd = dnnl::pooling_v2_forward::primitive_desc(desc, attr, ctx.engine);
        prim_ = dnnl::pooling_v2_forward(pd);
        scratch_ = memory(pd.scratchpad_desc(), ctx.engine);
        src_ = memory(src_md, ctx.engine, nullptr);
        dst_ = memory(dst_md, ctx.engine, nullptr);
    }

    void run(const Addresses& addr) override {
        src_.set_data_handle(addr[static_cast<size_t>(src_id_)]);
        dst_.set_data_handle(addr[static_cast<size_t>(dst_id_)]);
        prim_.execute(ctx_.stream, {{DNNL_ARG_SRC, src_}, {DNNL_ARG_DST, dst_}, {DNNL_ARG_SCRATCHPAD, scratch_}});
        ctx_.stream.wait();
    }

   private:
    CpuContext& ctx_;
    dnnl::primitive prim_;
    memory scratch_, src_, dst_;
    int src_id_ = -1, dst_id_ = -1;
};

}  // namespace

std::unique_ptr<Kernel> make_conv_kernel(const plan::ExecutionPlan& plan, const ir::Node& n, CpuContext& ctx,
                                         bool transposed) {
    return std::make_unique<ConvKernel>(plan, n, ctx, transposed);
}

std::unique_ptr<Kernel> make_maxpool_kernel(const plan::ExecutionPlan& plan, const ir::Node& n, CpuContext& ctx) {
    return std::make_unique<MaxPoolKernel>(plan, n, ctx);
}

}  // namespace kestrel::cpu
