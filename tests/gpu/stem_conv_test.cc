// cuda::conv2d_nchw_input (the stem reading the float32 NCHW image) against reference::evaluate of
// the same Conv node: f32 and f16 outputs (f16: within 1e-3 relative L2 of the float result; the
// tensor-core kernel rounds taps and weights to f16 too), SiLU on and off, stride 2 and 1, odd image
// sizes, batches 1-4, the output as a channel slice of a poisoned wider buffer (every element of the
// slice written, nothing outside it). f16 slices of 16-byte aligned pixels with 16-64 channels run
// the tensor-core kernel (a batch of four 640x640 images: warps on several 32-pixel units), the
// unaligned ones the FMA kernel. Without a CUDA device the suite skips.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "backends/cuda/conv2d.h"
#include "common/rng.h"
#include "core/half.h"
#include "gpu/gpu_test.h"
#include "reference/reference.h"

namespace kestrel::cuda {
namespace {

using ir::Tensor;

template <typename T>
T* upload(const std::vector<T>& host) {
    void* d = nullptr;
    KS_CUDA(cudaMalloc(&d, host.size() * sizeof(T)));
    KS_CUDA(cudaMemcpy(d, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
    return static_cast<T*>(d);
}

struct Case {
    int n, h, w, k, stride;
    bool silu;
    ElemType type;
    bool aligned = false;  // the slice's pixels 16-byte aligned (channel offset 8, stride k + 16)
};

TEST(CudaStemConv, MatchesReferenceIntoChannelSlices) {
    SKIP_WITHOUT_GPU();
    test::Rng rng;
    SCOPED_TRACE(rng.trace());
    const Case cases[] = {
        {1, 64, 64, 16, 2, true, ElemType::kF16},       {3, 37, 29, 16, 2, true, ElemType::kF32},
        {2, 21, 30, 24, 1, false, ElemType::kF16},      {1, 13, 17, 64, 2, true, ElemType::kF16},
        {2, 16, 16, 5, 2, false, ElemType::kF32},       {1, 64, 64, 16, 2, true, ElemType::kF16, true},
        {3, 37, 29, 32, 2, true, ElemType::kF16, true}, {2, 21, 30, 48, 1, false, ElemType::kF16, true},
        {1, 13, 17, 64, 2, true, ElemType::kF16, true}, {4, 640, 640, 16, 2, true, ElemType::kF16, true},
        {2, 16, 16, 24, 2, true, ElemType::kF16, true}};
    for (const Case& c : cases) {
        SCOPED_TRACE(::testing::Message()
                     << "n=" << c.n << " " << c.h << "x" << c.w << " k=" << c.k << " s=" << c.stride
                     << (c.type == ElemType::kF16 ? " f16" : " f32") << (c.aligned ? " aligned" : ""));
        Tensor x(DType::kFloat32, {c.n, 3, c.h, c.w}), w(DType::kFloat32, {c.k, 3, 3, 3}), b(DType::kFloat32, {c.k});
        for (int64_t i = 0; i < x.size(); ++i) x.data<float>()[i] = rng.uniform(0.f, 1.f);
        for (int64_t i = 0; i < w.size(); ++i) w.data<float>()[i] = rng.uniform(-1.f, 1.f);
        for (int64_t i = 0; i < b.size(); ++i) b.data<float>()[i] = rng.uniform(-1.f, 1.f);
        ir::Node node;
        node.op = ir::Op::kConv;
        node.attrs.set("kernel_shape", std::vector<int64_t>{3, 3});
        node.attrs.set("strides", std::vector<int64_t>{c.stride, c.stride});
        node.attrs.set("pads", std::vector<int64_t>{1, 1, 1, 1});
        if (c.silu) node.attrs.set("activation", std::string("silu"));
        Tensor want = reference::evaluate(node, {&x, &w, &b}).at(0);
        const int oh = static_cast<int>(want.shape[2]), ow = static_cast<int>(want.shape[3]);

        // y: channels [5, 5 + k) of pixels k + 8 wide (aligned: [8, 8 + k) of k + 16), all poisoned first.
        const int64_t ps = c.k + (c.aligned ? 16 : 8), off = c.aligned ? 8 : 5, pixels = int64_t{c.n} * oh * ow;
        const size_t es = c.type == ElemType::kF16 ? 2 : 4;
        std::vector<uint8_t> poison(static_cast<size_t>(pixels * ps) * es, 0x7f);
        uint8_t* yd = upload(poison);
        float* xd = upload(std::vector<float>(x.data<float>(), x.data<float>() + x.size()));
        NhwcTensor y{yd + off * static_cast<int64_t>(es), c.type, c.n, oh, ow, c.k, ps};
        ConvShape s;
        s.k = c.k;
        s.c = 3;
        s.kh = s.kw = 3;
        s.stride_h = s.stride_w = c.stride;
        s.pad_top = s.pad_left = 1;
        ASSERT_TRUE(conv2d_nchw_input_supported(s));
        conv2d_nchw_input(xd, c.h, c.w, w.data<float>(), b.data<float>(), s, c.silu, y, nullptr);
        KS_CUDA(cudaDeviceSynchronize());
        std::vector<uint8_t> got(poison.size());
        KS_CUDA(cudaMemcpy(got.data(), yd, got.size(), cudaMemcpyDeviceToHost));

        double err = 0, norm = 0;
        bool outside_intact = true;
        for (int64_t p = 0; p < pixels; ++p)
            for (int64_t ch = 0; ch < ps; ++ch) {
                const uint8_t* e = got.data() + static_cast<size_t>(p * ps + ch) * es;
                bool inside = ch >= off && ch < off + c.k;
                if (!inside) {
                    outside_intact = outside_intact && std::memcmp(e, poison.data(), es) == 0;
                    continue;
                }
                float v;
                if (c.type == ElemType::kF16) {
                    uint16_t h;
                    std::memcpy(&h, e, 2);
                    v = half_to_float(h);
                } else {
                    std::memcpy(&v, e, 4);
                }
                const int64_t img = p / (int64_t{oh} * ow), pix = p % (int64_t{oh} * ow);
                double r = want.data<float>()[(img * c.k + (ch - off)) * oh * ow + pix];
                err += (v - r) * (v - r);
                norm += r * r;
            }
        double rel = std::sqrt(err / norm);
        EXPECT_LE(rel, c.type == ElemType::kF16 ? 1e-3 : 1e-6) << "relative L2";  // NaN (unwritten) fails too
        EXPECT_TRUE(outside_intact) << "wrote outside the output slice";
        for (void* d : {static_cast<void*>(yd), static_cast<void*>(xd)}) cudaFree(d);
    }
}

TEST(CudaStemConv, RefusesOtherConvs) {
    ConvShape s;
    s.k = 16;
    s.c = 3;
    s.kh = s.kw = 3;
    EXPECT_TRUE(conv2d_nchw_input_supported(s));
    s.c = 4;
    EXPECT_FALSE(conv2d_nchw_input_supported(s));
    s.c = 3;
    s.kh = s.kw = 1;
    EXPECT_FALSE(conv2d_nchw_input_supported(s));
    s.kh = s.kw = 3;
    s.k = 65;
    EXPECT_FALSE(conv2d_nchw_input_supported(s));
}

}  // namespace
}  // namespace kestrel::cuda
