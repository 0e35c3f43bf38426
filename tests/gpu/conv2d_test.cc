// CUDA convolution kernels (backends/cuda/conv2d.h) against the reference oracle.
//
// Every row of the table below runs in f32 and f16 through EVERY tactic that supports it, plus the
// heuristic (tactic -1). Inputs are seeded random data; x, y and the residual live in wider NHWC
// buffers when a row asks for channel slices. Channels outside a slice are poisoned with NaN: in x
// and the residual so that a kernel reading them would spoil its output, in y so that we can check
// they come back bit-identical, and that every element inside the slice was written.
// Tolerances (relative L2): f32 1e-5 against the float64 reference; f16 2e-3 against the reference
// run on the f16-rounded inputs, weights and residual. INT8 (kI8: f16 tensors, int8 GEMM) against
// the reference's fake-quantised conv (precision="int8", weight_qmax=127) on the same f16 inputs:
// 3e-3 (f16 output rounding, and the kernel's x * (1 / scale) may round a rare tie otherwise).
// Tactics that need a workspace (split-K) share one zero-filled buffer per case, as a stream's convs
// do in the runtime: each must leave it all zeros. They run twice on it (atomics may reorder the
// float sums, so the two results need not be bit-identical, but both must meet the tolerance).
#include "backends/cuda/conv2d.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common/rng.h"
#include "core/half.h"
#include "gpu/gpu_test.h"
#include "ir/graph.h"
#include "reference/reference.h"

namespace kestrel::test {
namespace {

using cuda::ConvShape;
using cuda::ElemType;
using cuda::NhwcTensor;

float round_to_half(float v) { return half_to_float(float_to_half(v)); }

// Poison bit patterns: NaNs that no kernel computes from finite data.
constexpr uint32_t kPoisonF32 = 0x7fbadbadu;
constexpr uint16_t kPoisonF16 = 0x7dadu;

// An NHWC buffer of `ps` channels per pixel on the host, holding an NCHW tensor's data at channels
// [off, off + c) and poison elsewhere.
std::vector<uint8_t> to_nhwc(const ir::Tensor* nchw, int n, int h, int w, int c, int ps, int off, ElemType type) {
    const size_t es = static_cast<size_t>(cuda::elem_size(type));
    std::vector<uint8_t> buf(static_cast<size_t>(n) * h * w * ps * es);
    for (size_t i = 0; i < buf.size() / es; ++i) {
        if (type == ElemType::kF32) {
            std::memcpy(buf.data() + i * 4, &kPoisonF32, 4);
        } else {
            std::memcpy(buf.data() + i * 2, &kPoisonF16, 2);
        }
    }
    if (!nchw) return buf;
    for (int b = 0; b < n; ++b)
        for (int ch = 0; ch < c; ++ch)
            for (int y = 0; y < h; ++y)
                for (int x = 0; x < w; ++x) {
                    const float v = nchw->data<float>()[((static_cast<int64_t>(b) * c + ch) * h + y) * w + x];
                    const size_t dst = ((static_cast<size_t>(b) * h + y) * w + x) * ps + off + ch;
                    if (type == ElemType::kF32) {
                        std::memcpy(buf.data() + dst * 4, &v, 4);
                    } else {
                        const uint16_t hv = float_to_half(v);
                        std::memcpy(buf.data() + dst * 2, &hv, 2);
                    }
                }
    return buf;
}

struct Case {
    std::string name;
    int n, c, h, w, k;
    int kh = 3, kw = 3;
    int stride = 1;
    int pt = 0, pl = 0, pb = 0, pr = 0;
    int dil = 1, groups = 1;
    bool silu = false;
    bool residual = false;
    bool inplace = false;  // the residual is y itself (y = conv + y)
    // Channel slices: pixel stride (0: dense) and channel offset of x, y and the residual.
    int x_ps = 0, x_off = 0, y_ps = 0, y_off = 0, r_ps = 0, r_off = 0;

    int oh() const { return (h + pt + pb - dil * (kh - 1) - 1) / stride + 1; }
    int ow() const { return (w + pl + pr - dil * (kw - 1) - 1) / stride + 1; }
    int xps() const { return x_ps ? x_ps : c; }
    int yps() const { return y_ps ? y_ps : k; }
    int rps() const { return r_ps ? r_ps : k; }
    ConvShape shape() const {
        ConvShape s;
        s.k = k;
        s.c = c;
        s.kh = kh;
        s.kw = kw;
        s.stride_h = s.stride_w = stride;
        s.pad_top = pt;
        s.pad_left = pl;
        s.dil_h = s.dil_w = dil;
        s.groups = groups;
        return s;
    }
    // Slices the vectorised tensor-core loads accept: 16-byte aligned pixels of x.
    bool x_vectorisable() const { return xps() % 8 == 0 && x_off % 8 == 0; }
    std::string describe() const {
        std::ostringstream os;
        os << name << ": n=" << n << " c=" << c << " h=" << h << " w=" << w << " k=" << k << " kernel " << kh << "x"
           << kw << " stride " << stride << " pads " << pt << "," << pl << "," << pb << "," << pr << " dil " << dil
           << " groups " << groups << " silu " << silu << " residual " << residual << (inplace ? " (in place)" : "")
           << " x[ps " << xps() << " off " << x_off << "] y[ps " << yps() << " off " << y_off << "] res[ps " << rps()
           << " off " << r_off << "]";
        return os.str();
    }
};

// clang-format off
const Case kCases[] = {
    // YOLOv8 stem: 3 channels, 3x3 stride 2 pad 1.
    {.name = "stem", .n = 1, .c = 3, .h = 32, .w = 32, .k = 16, .stride = 2, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true},
    {.name = "stem_batch3_odd", .n = 3, .c = 3, .h = 17, .w = 22, .k = 16, .stride = 2, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true},
    // 1x1 convs (C2f cv1/cv2, SPPF), including a long K and the detect head's 80 classes.
    {.name = "1x1", .n = 1, .c = 32, .h = 20, .w = 20, .k = 32, .kh = 1, .kw = 1, .silu = true},
    {.name = "1x1_k256_to_128", .n = 1, .c = 256, .h = 10, .w = 9, .k = 128, .kh = 1, .kw = 1, .silu = true},
    {.name = "1x1_head_80", .n = 2, .c = 80, .h = 7, .w = 9, .k = 80, .kh = 1, .kw = 1},
    {.name = "1x1_c24_k40_plain", .n = 1, .c = 24, .h = 9, .w = 7, .k = 40, .kh = 1, .kw = 1},
    {.name = "1x1_stride2", .n = 1, .c = 16, .h = 11, .w = 10, .k = 32, .kh = 1, .kw = 1, .stride = 2},
    // The streamed 1x1 tactics' shapes (K = 64 or 128, C a multiple of 32 from K up): enough 128-pixel
    // tiles that the persistent CTAs go round their rings, a partial last tile with slices of x, y and
    // an aligned residual (C not a power of two), and a residual they must add element by element.
    {.name = "1x1_c64_k64_ring", .n = 24, .c = 64, .h = 80, .w = 80, .k = 64, .kh = 1, .kw = 1, .silu = true},
    {.name = "1x1_c192_k128_ring", .n = 16, .c = 192, .h = 40, .w = 80, .k = 128, .kh = 1, .kw = 1, .silu = true},
    {.name = "1x1_c96_k64_slices", .n = 3, .c = 96, .h = 9, .w = 13, .k = 64, .kh = 1, .kw = 1, .silu = true, .residual = true,
     .x_ps = 128, .x_off = 32, .y_ps = 96, .y_off = 16, .r_ps = 72, .r_off = 8},
    {.name = "1x1_c256_k128_res_unaligned", .n = 2, .c = 256, .h = 11, .w = 7, .k = 128, .kh = 1, .kw = 1, .residual = true,
     .y_ps = 136, .y_off = 8, .r_ps = 130, .r_off = 2},
    // 3x3 stride 1 (bottlenecks, with their residual) and stride 2 (downsampling), odd sizes, batch 3.
    {.name = "3x3_bottleneck_res", .n = 3, .c = 16, .h = 13, .w = 11, .k = 16, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true, .residual = true},
    // The halo tactics' shapes (C -> C, 3x3, padding 1): whole 8x16 tiles, partial ones, and slices.
    {.name = "3x3_c32_whole_tiles", .n = 1, .c = 32, .h = 16, .w = 32, .k = 32, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true},
    {.name = "3x3_c32_slices", .n = 2, .c = 32, .h = 19, .w = 37, .k = 32, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true, .residual = true,
     .x_ps = 64, .x_off = 32, .y_ps = 96, .y_off = 32, .r_ps = 40, .r_off = 8},
    {.name = "3x3_c16_y_unaligned", .n = 1, .c = 16, .h = 8, .w = 16, .k = 16, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .y_ps = 17, .y_off = 1},
    {.name = "3x3_c16_pads_1_1_0_2", .n = 2, .c = 16, .h = 10, .w = 12, .k = 16, .pt = 1, .pl = 1, .pb = 0, .pr = 2, .silu = true},
    {.name = "3x3_c16_in_place", .n = 2, .c = 16, .h = 9, .w = 17, .k = 16, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true, .residual = true, .inplace = true},
    {.name = "3x3_c16_res_unaligned", .n = 1, .c = 16, .h = 9, .w = 20, .k = 16, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true, .residual = true,
     .r_ps = 17, .r_off = 1},
    // Enough tiles that the persistent halo CTAs go round their ring of tile buffers (2-4) more than once.
    {.name = "3x3_c16_ring", .n = 16, .c = 16, .h = 128, .w = 160, .k = 16, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true, .residual = true},
    {.name = "3x3_c32_ring", .n = 8, .c = 32, .h = 80, .w = 160, .k = 32, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true, .residual = true},
    {.name = "3x3_s2_odd", .n = 1, .c = 32, .h = 13, .w = 11, .k = 64, .stride = 2, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true},
    // The stride-2 halo tactics' shapes: 16 -> 32 and 32 -> 64 with padding 1 (the bottom/right one
    // unused on even sizes), partial tiles, a slice, and enough tiles to go round the ring.
    {.name = "3x3_s2_c16_k32", .n = 3, .c = 16, .h = 37, .w = 50, .k = 32, .stride = 2, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true},
    {.name = "3x3_s2_c32_even_slices", .n = 2, .c = 32, .h = 34, .w = 40, .k = 64, .stride = 2, .pt = 1, .pl = 1, .pb = 0, .pr = 0, .silu = true,
     .x_ps = 96, .x_off = 64, .y_ps = 72, .y_off = 8},
    {.name = "3x3_s2_c16_ring", .n = 16, .c = 16, .h = 160, .w = 320, .k = 32, .stride = 2, .pt = 1, .pl = 1, .pb = 0, .pr = 0, .silu = true},
    // The head's 3x3 convs on wgmma halo tiles: 64 -> 80, 80 -> 80 with a residual and slices, 64 -> 64
    // slices, and enough tiles to go round the rings.
    {.name = "3x3_c64_k80", .n = 2, .c = 64, .h = 20, .w = 36, .k = 80, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true},
    {.name = "3x3_c80_res_slices", .n = 2, .c = 80, .h = 19, .w = 21, .k = 80, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true, .residual = true,
     .x_ps = 160, .x_off = 80, .y_ps = 88, .y_off = 8, .r_ps = 96, .r_off = 16},
    {.name = "3x3_c64_slices", .n = 1, .c = 64, .h = 17, .w = 33, .k = 64, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .residual = true,
     .x_ps = 128, .x_off = 64, .y_ps = 144, .y_off = 72, .r_ps = 72, .r_off = 8},
    {.name = "3x3_c64_ring", .n = 8, .c = 64, .h = 80, .w = 80, .k = 64, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true},
    {.name = "3x3_c80_ring", .n = 4, .c = 80, .h = 80, .w = 80, .k = 80, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true},
    // A C2f bottleneck's second conv: y and the residual channel slices of one concat-like buffer
    // (aligned: the wgmma halo kernel copies the residual into shared memory, its own cp.async group
    // beside the ring's, round the ring several times), and a residual it must read from global memory.
    {.name = "3x3_c64_res_ring", .n = 8, .c = 64, .h = 80, .w = 80, .k = 64, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true, .residual = true,
     .y_ps = 256, .y_off = 192, .r_ps = 256, .r_off = 64},
    {.name = "3x3_c64_res_unaligned", .n = 2, .c = 64, .h = 20, .w = 36, .k = 64, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true, .residual = true,
     .r_ps = 68, .r_off = 4},
    {.name = "3x3_k96", .n = 1, .c = 64, .h = 12, .w = 12, .k = 96, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true},
    {.name = "3x3_c128_k256_batch3", .n = 3, .c = 128, .h = 6, .w = 5, .k = 256, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true, .residual = true},
    {.name = "3x3_many_tiles", .n = 2, .c = 16, .h = 40, .w = 36, .k = 32, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true},
    {.name = "3x3_c64_40x40", .n = 1, .c = 64, .h = 40, .w = 40, .k = 64, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true},
    {.name = "3x3_no_pad", .n = 1, .c = 8, .h = 9, .w = 12, .k = 24},
    // Odd channel counts (gather and scalar epilogue tails), kernels other than 1 and 3, dilation,
    // asymmetric padding, groups.
    {.name = "odd_channels_res", .n = 2, .c = 5, .h = 9, .w = 9, .k = 7, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true, .residual = true},
    {.name = "5x5_p2", .n = 1, .c = 8, .h = 12, .w = 12, .k = 16, .kh = 5, .kw = 5, .pt = 2, .pl = 2, .pb = 2, .pr = 2},
    // 32 taps (the vectorised loads' per-row tap mask full, bit 31 included), and 49 and 81 (past
    // its 32 bits: only the gather and SIMT tactics take them).
    {.name = "4x8_asym", .n = 2, .c = 16, .h = 11, .w = 10, .k = 24, .kh = 4, .kw = 8, .pt = 2, .pl = 4, .pb = 1, .pr = 3, .silu = true, .residual = true},
    {.name = "7x7_p3", .n = 2, .c = 8, .h = 11, .w = 10, .k = 16, .kh = 7, .kw = 7, .pt = 3, .pl = 3, .pb = 3, .pr = 3, .silu = true},
    {.name = "9x9_p4", .n = 1, .c = 8, .h = 10, .w = 9, .k = 8, .kh = 9, .kw = 9, .pt = 4, .pl = 4, .pb = 4, .pr = 4},
    {.name = "3x1_asym_dil2", .n = 1, .c = 16, .h = 10, .w = 9, .k = 16, .kh = 3, .kw = 1, .pt = 2, .pl = 0, .pb = 1, .pr = 1, .dil = 2, .silu = true},
    {.name = "3x3_dil2_s2_asym", .n = 2, .c = 24, .h = 15, .w = 14, .k = 24, .stride = 2, .pt = 2, .pl = 1, .pb = 3, .pr = 2, .dil = 2},
    {.name = "grouped_4", .n = 1, .c = 16, .h = 8, .w = 8, .k = 32, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .groups = 4, .silu = true},
    {.name = "depthwise", .n = 2, .c = 16, .h = 10, .w = 10, .k = 16, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .groups = 16, .residual = true},
    // Channel slices of wider buffers (Split outputs read, Concat inputs written in place).
    {.name = "slices", .n = 2, .c = 16, .h = 11, .w = 13, .k = 32, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true, .residual = true,
     .x_ps = 48, .x_off = 16, .y_ps = 64, .y_off = 8, .r_ps = 40, .r_off = 8},
    {.name = "slices_1x1", .n = 1, .c = 32, .h = 9, .w = 10, .k = 64, .kh = 1, .kw = 1, .silu = true,
     .x_ps = 64, .x_off = 32, .y_ps = 128, .y_off = 64},
    {.name = "slices_misaligned", .n = 2, .c = 16, .h = 7, .w = 9, .k = 24, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true, .residual = true,
     .x_ps = 27, .x_off = 3, .y_ps = 45, .y_off = 5, .r_ps = 33, .r_off = 1},
    {.name = "slices_y_misaligned", .n = 1, .c = 32, .h = 8, .w = 7, .k = 16, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .residual = true,
     .y_ps = 21, .y_off = 3, .r_ps = 17, .r_off = 1},
    {.name = "inplace_residual", .n = 2, .c = 32, .h = 9, .w = 8, .k = 32, .pt = 1, .pl = 1, .pb = 1, .pr = 1, .silu = true, .residual = true,
     .inplace = true, .y_ps = 48, .y_off = 16},
};
// clang-format on

bool all_zero(const std::vector<uint8_t>& bytes) {
    return std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; });
}

// Runs one case in one element type through the heuristic and every supporting tactic.
// only_workspace: just the tactics that need a workspace (split-K).
// type kI8: an INT8 convolution (cuda::ConvInt8) over f16 tensors.
void run_case(const Case& cs, ElemType type, Rng& rng, bool only_workspace = false) {
    SCOPED_TRACE(cs.describe() + (type == ElemType::kF32 ? " [f32]" : type == ElemType::kF16 ? " [f16]" : " [int8]"));
    const bool int8 = type == ElemType::kI8;
    const ElemType io = int8 ? ElemType::kF16 : type;  // the tensors' element type
    const bool f16 = io == ElemType::kF16;
    const int oh = cs.oh(), ow = cs.ow(), cg = cs.c / cs.groups;
    auto rnd = [&](Shape s, float lo, float hi) {
        std::vector<float> v = rng.uniform_floats(static_cast<size_t>(num_elements(s)), lo, hi);
        if (f16)
            for (float& f : v) f = round_to_half(f);
        return ir::Tensor::from_floats(std::move(s), v);
    };
    const float bound = std::sqrt(3.f / static_cast<float>(cg * cs.kh * cs.kw));
    const ir::Tensor x = rnd({cs.n, cs.c, cs.h, cs.w}, -1.f, 1.f);
    const ir::Tensor w = rnd({cs.k, cg, cs.kh, cs.kw}, -bound, bound);
    const ir::Tensor b = ir::Tensor::from_floats({cs.k}, rng.uniform_floats(static_cast<size_t>(cs.k), -0.5f, 0.5f));
    const ir::Tensor r = rnd({cs.n, cs.k, oh, ow}, -1.f, 1.f);

    ir::Node node;
    node.op = ir::Op::kConv;
    node.name = cs.name;
    node.attrs.set("kernel_shape", std::vector<int64_t>{cs.kh, cs.kw});
    node.attrs.set("strides", std::vector<int64_t>{cs.stride, cs.stride});
    node.attrs.set("pads", std::vector<int64_t>{cs.pt, cs.pl, cs.pb, cs.pr});
    node.attrs.set("dilations", std::vector<int64_t>{cs.dil, cs.dil});
    node.attrs.set("group", int64_t{cs.groups});
    if (cs.silu) node.attrs.set("activation", std::string("silu"));
    // x is in [-1, 1): this scale clips its top 10% (the clamp is tested too).
    const float input_scale = 0.9f / 127.f;
    if (int8) {
        node.attrs.set("precision", std::string("int8"));
        node.attrs.set("input_scale", input_scale);
        node.attrs.set("weight_qmax", int64_t{127});
    }
    const ir::Tensor want = reference::evaluate(node, {&x, &w, &b, cs.residual ? &r : nullptr}).at(0);
    ASSERT_EQ(want.shape, (Shape{cs.n, cs.k, oh, ow}));

    const ConvShape s = cs.shape();
    const size_t es = static_cast<size_t>(cuda::elem_size(io));
    const std::vector<uint8_t> x_host = to_nhwc(&x, cs.n, cs.h, cs.w, cs.c, cs.xps(), cs.x_off, io);
    const std::vector<uint8_t> y_init = to_nhwc(cs.inplace ? &r : nullptr, cs.n, oh, ow, cs.k, cs.yps(), cs.y_off, io);
    DeviceBuffer dx(x_host.size()), dy(y_init.size());
    dx.upload(x_host);
    std::unique_ptr<DeviceBuffer> dr;
    if (cs.residual && !cs.inplace) {
        const std::vector<uint8_t> r_host = to_nhwc(&r, cs.n, oh, ow, cs.k, cs.rps(), cs.r_off, io);
        dr = std::make_unique<DeviceBuffer>(r_host.size());
        dr->upload(r_host);
    }
    std::vector<float> w_scales;
    const std::vector<uint8_t> packed = cuda::pack_conv_weights(w.data<float>(), s, type, &w_scales);
    DeviceBuffer dw(packed.size()), db(static_cast<size_t>(cs.k) * 4), ddq(static_cast<size_t>(cs.k) * 4);
    dw.upload(packed);
    db.upload(b.bytes);
    cuda::ConvInt8 q;
    if (int8) {
        std::vector<float> dequant(w_scales.size());
        for (size_t i = 0; i < dequant.size(); ++i) dequant[i] = input_scale * w_scales[i];
        ddq.upload(ir::Tensor::from_floats({cs.k}, dequant).bytes);
        q = {input_scale, reinterpret_cast<const float*>(ddq.get())};
    }

    NhwcTensor tx{dx.bytes() + cs.x_off * es, io, cs.n, cs.h, cs.w, cs.c, cs.xps()};
    NhwcTensor ty{dy.bytes() + cs.y_off * es, io, cs.n, oh, ow, cs.k, cs.yps()};
    NhwcTensor tr = ty;
    if (dr) tr = NhwcTensor{dr->bytes() + cs.r_off * es, io, cs.n, oh, ow, cs.k, cs.rps()};

    std::vector<int> tactics;
    if (!only_workspace) tactics.push_back(-1);
    size_t ws_bytes = 0;
    for (int t = 0; t < cuda::conv2d_tactic_count(); ++t) {
        if (!cuda::conv2d_tactic_supports(t, s, type)) continue;
        const size_t need = cuda::conv2d_workspace_bytes(t, s, type, cs.n, oh, ow);
        if (only_workspace && need == 0) continue;
        ws_bytes = std::max(ws_bytes, need);
        tactics.push_back(t);
    }
    ASSERT_GE(tactics.size(), only_workspace ? 1u : 2u) << "no tactic supports this convolution";
    // One zero-filled workspace for every tactic of the case, as the runtime shares one per stream.
    DeviceBuffer dws(ws_bytes);
    KS_CUDA(cudaMemset(dws.get(), 0, ws_bytes ? ws_bytes : 1));

    const double tol = int8 ? 3e-3 : f16 ? 2e-3 : 1e-5;
    for (const int t : tactics) {
        const bool needs_ws = t >= 0 && cuda::conv2d_workspace_bytes(t, s, type, cs.n, oh, ow) > 0;
        for (int run = 0; run < (needs_ws ? 2 : 1); ++run) {
            const std::string tname = t < 0 ? "heuristic" : cuda::conv2d_tactic_name(t, s, type);
            SCOPED_TRACE("tactic " + std::to_string(t) + " " + tname + " run " + std::to_string(run));
            dy.upload(y_init);
            try {
                cuda::conv2d_nhwc(tx, dw.get(), reinterpret_cast<const float*>(db.get()), s, cs.silu,
                                  cs.residual ? &tr : nullptr, ty, t, nullptr, needs_ws ? dws.get() : nullptr,
                                  int8 ? &q : nullptr);
            } catch (const Error& e) {
                // Only the vectorised tensor-core tactics may refuse, and only an x they cannot load in
                // 16-byte pieces (which conv2d_tactic_supports cannot see).
                EXPECT_TRUE(t >= 0 && !cs.x_vectorisable() && tname.find("mma") != std::string::npos &&
                            tname.find("gather") == std::string::npos)
                    << "refused: " << e.what();
                continue;
            }
            const cudaError_t err = cudaDeviceSynchronize();
            ASSERT_EQ(err, cudaSuccess) << "the kernel failed: " << cudaGetErrorString(err);
            const std::vector<uint8_t> got = dy.download();
            if (ws_bytes) {
                EXPECT_TRUE(all_zero(dws.download())) << "the workspace is not zero-filled after the kernel";
                KS_CUDA(cudaMemset(dws.get(), 0, ws_bytes));  // so one failure does not cascade
            }

            double num = 0, den = 0, max_diff = 0;
            int64_t bad_poison = 0, unwritten = 0, first_bad = -1;
            const int yps = cs.yps();
            for (int64_t pix = 0; pix < static_cast<int64_t>(cs.n) * oh * ow; ++pix) {
                const int64_t bi = pix / (oh * ow), yx = pix % (oh * ow);
                for (int ch = 0; ch < yps; ++ch) {
                    const size_t at = static_cast<size_t>(pix * yps + ch);
                    const bool inside = ch >= cs.y_off && ch < cs.y_off + cs.k;
                    if (!inside) {
                        if (std::memcmp(got.data() + at * es, y_init.data() + at * es, es) != 0) {
                            ++bad_poison;
                            if (first_bad < 0) first_bad = static_cast<int64_t>(at);
                        }
                        continue;
                    }
                    float v;
                    if (f16) {
                        uint16_t h;
                        std::memcpy(&h, got.data() + at * 2, 2);
                        v = half_to_float(h);
                    } else {
                        std::memcpy(&v, got.data() + at * 4, 4);
                    }
                    if (!std::isfinite(v)) {
                        ++unwritten;
                        continue;
                    }
                    const double ref = want.data<float>()[(bi * cs.k + (ch - cs.y_off)) * oh * ow + yx];
                    const double d = v - ref;
                    num += d * d;
                    den += ref * ref;
                    max_diff = std::max(max_diff, std::fabs(d));
                }
            }
            EXPECT_EQ(bad_poison, 0) << "channels outside the output slice were written (first at element " << first_bad
                                     << ")";
            EXPECT_EQ(unwritten, 0) << "output elements left unwritten or not finite";
            const double rel = std::sqrt(num / std::max(den, 1e-30));
            EXPECT_LE(rel, tol) << "relative L2 error " << rel << ", max abs diff " << max_diff;
        }
    }
}

TEST(CudaConv2d, TacticTable) {
    const int count = cuda::conv2d_tactic_count();
    ASSERT_GT(count, 0);
    std::set<std::string> names;
    ConvShape dense;  // 3x3 with a long K, which every tactic (split-K included) supports in its type
    dense.c = 256;
    dense.k = 64;
    dense.kh = dense.kw = 3;
    ConvShape stem;
    stem.c = 3;
    stem.k = 16;
    ConvShape grouped;
    grouped.c = 16;
    grouped.k = 16;
    grouped.groups = 16;
    bool mma_dense = false;
    for (int t = 0; t < count; ++t) {
        ElemType type = ElemType::kF16;
        for (ElemType e : {ElemType::kF32, ElemType::kI8})
            if (cuda::conv2d_tactic_supports(t, dense, e)) type = e;
        const std::string name = cuda::conv2d_tactic_name(t, dense, type);
        EXPECT_TRUE(names.insert(name).second) << "duplicate tactic name " << name;
        EXPECT_NE(name.find(type == ElemType::kF32 ? "f32" : "f16"), std::string::npos) << name;
        // INT8 tactics say so (s8 operands, k32 MMAs) and run no float GEMM.
        EXPECT_EQ(name.find("s8mma_m16n8k32") != std::string::npos, type == ElemType::kI8) << name;
        // The float32 path is exact: FFMA only, never the tensor cores (no TF32).
        if (type == ElemType::kF32) {
            EXPECT_NE(name.find("simt"), std::string::npos) << name;
        }
        if (name.find("halo3x3") != std::string::npos) {
            // Halo tactics: 3x3, their stride (1, or 2 for "halo3x3s2"), padding 1, exactly their C -> K
            // channels.
            const int stride = name.find("halo3x3s2") != std::string::npos ? 2 : 1;
            const size_t at_c = name.find("_c", name.find("halo3x3"));
            ConvShape bottleneck;
            bottleneck.c = std::stoi(name.substr(at_c + 2));
            bottleneck.k = std::stoi(name.substr(name.find("_k", at_c) + 2));
            bottleneck.kh = bottleneck.kw = 3;
            bottleneck.stride_h = bottleneck.stride_w = stride;
            bottleneck.pad_top = bottleneck.pad_left = 1;
            EXPECT_TRUE(cuda::conv2d_tactic_supports(t, bottleneck, ElemType::kF16)) << name;
            ConvShape other = bottleneck;
            other.k *= 2;
            EXPECT_FALSE(cuda::conv2d_tactic_supports(t, other, ElemType::kF16)) << name;
            other = bottleneck;
            other.stride_h = other.stride_w = 3 - stride;
            EXPECT_FALSE(cuda::conv2d_tactic_supports(t, other, ElemType::kF16)) << name;
            other = bottleneck;
            other.pad_top = other.pad_left = 0;
            EXPECT_FALSE(cuda::conv2d_tactic_supports(t, other, ElemType::kF16)) << name;
            EXPECT_FALSE(cuda::conv2d_tactic_supports(t, dense, ElemType::kF16)) << name;
        } else if (name.find("_1x1_stream") != std::string::npos) {
            // Streamed 1x1 tactics: 1x1 stride 1 without padding, exactly their K, C a multiple of 32 from K up.
            const int k = std::stoi(name.substr(name.find("m64n") + 4));
            ConvShape pointwise;
            pointwise.k = k;
            pointwise.c = k + 32;
            EXPECT_TRUE(cuda::conv2d_tactic_supports(t, pointwise, ElemType::kF16)) << name;
            for (auto change : {+[](ConvShape& s) { s.k *= 2; }, +[](ConvShape& s) { s.c = s.k / 2; },
                                +[](ConvShape& s) { s.c += 8; }, +[](ConvShape& s) { s.c = 1024; },
                                +[](ConvShape& s) { s.kh = s.kw = 3, s.pad_top = s.pad_left = 1; },
                                +[](ConvShape& s) { s.stride_h = s.stride_w = 2; }}) {
                ConvShape other = pointwise;
                change(other);
                EXPECT_FALSE(cuda::conv2d_tactic_supports(t, other, ElemType::kF16)) << name;
            }
            EXPECT_FALSE(cuda::conv2d_tactic_supports(t, pointwise, ElemType::kF32)) << name;
        } else if (name.find("mma") != std::string::npos) {
            EXPECT_TRUE(cuda::conv2d_tactic_supports(t, dense, type)) << name;
            EXPECT_FALSE(cuda::conv2d_tactic_supports(t, grouped, type)) << name;
            mma_dense = true;
        }
    }
    EXPECT_TRUE(mma_dense) << "no tensor-core tactic for a 3x3 256->64 f16 conv";
    // Vectorised tensor-core tactics keep a 32-bit tap mask per output row: 32 filter taps at most.
    ConvShape taps32 = dense, taps33 = dense;
    taps32.kh = 4;
    taps32.kw = 8;
    taps33.kh = 3;
    taps33.kw = 11;
    for (int t = 0; t < count; ++t) {
        const std::string name = cuda::conv2d_tactic_name(t, dense, ElemType::kF16);
        const bool vectorised =
            name.find("_mma_m16n8k16_") != std::string::npos || name.find("_wgmma_") != std::string::npos;
        // (The halo and streamed 1x1 tactics take only their filter sizes; checked above.)
        if (!vectorised || name.find("gather") != std::string::npos || name.find("halo") != std::string::npos ||
            name.find("_1x1_stream") != std::string::npos)
            continue;
        EXPECT_TRUE(cuda::conv2d_tactic_supports(t, taps32, ElemType::kF16)) << name;
        EXPECT_FALSE(cuda::conv2d_tactic_supports(t, taps33, ElemType::kF16)) << name;
    }
    for (const ConvShape& s : {dense, stem, grouped})
        for (ElemType type : {ElemType::kF32, ElemType::kF16}) {
            int supported = 0;
            for (int t = 0; t < count; ++t) supported += cuda::conv2d_tactic_supports(t, s, type);
            EXPECT_GT(supported, 0) << "c=" << s.c << " k=" << s.k << " groups=" << s.groups;
        }
    EXPECT_FALSE(cuda::conv2d_tactic_supports(-1, dense, ElemType::kF16));
    EXPECT_FALSE(cuda::conv2d_tactic_supports(count, dense, ElemType::kF16));
    EXPECT_THROW(cuda::conv2d_tactic_name(count, dense, ElemType::kF16), Error);
}

TEST(CudaConv2d, PackedWeightLayout) {
    ConvShape s;
    s.k = 6;
    s.c = 8;
    s.kh = 3;
    s.kw = 2;
    s.groups = 2;
    const int cg = s.c / s.groups;
    std::vector<float> oihw(static_cast<size_t>(s.k * cg * s.kh * s.kw));
    for (size_t i = 0; i < oihw.size(); ++i) oihw[i] = 0.25f * static_cast<float>(i) - 3.f;
    const std::vector<uint8_t> f32 = cuda::pack_conv_weights(oihw.data(), s, ElemType::kF32);
    const std::vector<uint8_t> f16 = cuda::pack_conv_weights(oihw.data(), s, ElemType::kF16);
    ASSERT_EQ(f32.size(), oihw.size() * 4);
    ASSERT_EQ(f16.size(), oihw.size() * 2);
    // [k][kh][kw][c/groups]
    for (int o = 0; o < s.k; ++o)
        for (int i = 0; i < cg; ++i)
            for (int y = 0; y < s.kh; ++y)
                for (int x = 0; x < s.kw; ++x) {
                    const float want = oihw[static_cast<size_t>(((o * cg + i) * s.kh + y) * s.kw + x)];
                    const size_t at = static_cast<size_t>(((o * s.kh + y) * s.kw + x) * cg + i);
                    float got;
                    std::memcpy(&got, f32.data() + at * 4, 4);
                    EXPECT_EQ(got, want);
                    uint16_t h;
                    std::memcpy(&h, f16.data() + at * 2, 2);
                    EXPECT_EQ(h, float_to_half(want));
                }
    s.groups = 3;  // does not divide c
    EXPECT_THROW(cuda::pack_conv_weights(oihw.data(), s, ElemType::kF32), Error);
}

TEST(CudaConv2d, MatchesReferenceF32) {
    SKIP_WITHOUT_GPU();
    Rng rng;
    SCOPED_TRACE(rng.trace());
    for (const Case& cs : kCases) {
        run_case(cs, ElemType::kF32, rng);
        if (HasFatalFailure()) return;  // a failed launch leaves the CUDA context unusable
    }
}

TEST(CudaConv2d, MatchesReferenceF16) {
    SKIP_WITHOUT_GPU();
    Rng rng;
    SCOPED_TRACE(rng.trace());
    for (const Case& cs : kCases) {
        run_case(cs, ElemType::kF16, rng);
        if (HasFatalFailure()) return;
    }
}

// INT8 convolutions (f16 tensors, s8 tensor-core GEMM): every case the INT8 tactics can run
// (groups 1, channels a multiple of 8, at most 32 filter taps, 16-byte aligned input pixels), slices
// and residuals included.
TEST(CudaConv2d, MatchesReferenceInt8) {
    SKIP_WITHOUT_GPU();
    Rng rng;
    SCOPED_TRACE(rng.trace());
    int ran = 0;
    for (const Case& cs : kCases) {
        if (cs.groups != 1 || cs.c % 8 != 0 || cs.kh * cs.kw > 32 || !cs.x_vectorisable()) continue;
        run_case(cs, ElemType::kI8, rng);
        ++ran;
        if (HasFatalFailure()) return;
    }
    EXPECT_GE(ran, 10);
    // A long reduction through every pipeline stage, and the split-K INT8 tactics at YOLOv8's batch-1 shapes.
    run_case({.name = "int8_long_k",
              .n = 2,
              .c = 256,
              .h = 16,
              .w = 12,
              .k = 192,
              .pt = 1,
              .pl = 1,
              .pb = 1,
              .pr = 1,
              .silu = true,
              .residual = true},
             ElemType::kI8, rng);
    run_case({.name = "int8_yolo_20x20_c256_3x3_k256",
              .n = 1,
              .c = 256,
              .h = 20,
              .w = 20,
              .k = 256,
              .pt = 1,
              .pl = 1,
              .pb = 1,
              .pr = 1,
              .silu = true,
              .residual = true,
              .y_ps = 512,
              .y_off = 256,
              .r_ps = 384,
              .r_off = 128},
             ElemType::kI8, rng, /*only_workspace=*/true);
}

// INT8 packing: per-channel scales max|w| / 127, rows padded to 32 bytes, k permuted within every
// 16 as the kernel's fragments expect (slot 4t + i holds k 2t + (i & 1) + 8 (i >> 1)).
TEST(CudaConv2d, PackedInt8WeightLayout) {
    ConvShape s;
    s.k = 3;
    s.c = 8;
    s.kh = 1;
    s.kw = 3;  // gemm_k = 24 -> rows of 32
    std::vector<float> oihw(static_cast<size_t>(s.k * s.c * s.kw));
    for (size_t i = 0; i < oihw.size(); ++i) oihw[i] = static_cast<float>(static_cast<int>(i % 17) - 8) * 0.5f;
    oihw[5] = 10.f;  // channel 0's max
    std::vector<float> scales;
    const std::vector<uint8_t> packed = cuda::pack_conv_weights(oihw.data(), s, ElemType::kI8, &scales);
    ASSERT_EQ(packed.size(), 3u * 32);
    ASSERT_EQ(scales.size(), 3u);
    EXPECT_FLOAT_EQ(scales[0], 10.f / 127.f);
    EXPECT_FLOAT_EQ(scales[1], 4.f / 127.f);  // |values| reach 8 * 0.5
    const int gemm_k = 24;
    for (int o = 0; o < s.k; ++o)
        for (int slot = 0; slot < 32; ++slot) {
            const int base = slot & ~15, p = slot & 15;
            const int k = base + 2 * (p >> 2) + (p & 1) + 8 * ((p >> 1) & 1);
            const int8_t got = static_cast<int8_t>(packed[static_cast<size_t>(o * 32 + slot)]);
            if (k >= gemm_k) {
                EXPECT_EQ(got, 0) << "o=" << o << " slot=" << slot;
                continue;
            }
            const int tap = k / s.c, ch = k % s.c;  // GEMM k = tap * c + channel
            const float w = oihw[static_cast<size_t>((o * s.c + ch) * s.kw + tap)];
            EXPECT_EQ(got, static_cast<int8_t>(std::nearbyint(w / scales[static_cast<size_t>(o)])))
                << "o=" << o << " slot=" << slot;
        }
    EXPECT_THROW(cuda::pack_conv_weights(oihw.data(), s, ElemType::kI8), Error);  // no scales out
}

// A longer reduction with many k-tiles through every pipeline stage, at a size where the heuristic
// picks large tiles; f16 only (the tensor-core path is the one with a multi-stage ring).
TEST(CudaConv2d, LongReductionF16) {
    SKIP_WITHOUT_GPU();
    Rng rng;
    SCOPED_TRACE(rng.trace());
    const Case cs{.name = "long_k",
                  .n = 2,
                  .c = 256,
                  .h = 16,
                  .w = 12,
                  .k = 192,
                  .pt = 1,
                  .pl = 1,
                  .pb = 1,
                  .pr = 1,
                  .silu = true,
                  .residual = true};
    run_case(cs, ElemType::kF16, rng);
}

// The f16 SiLU epilogue element by element (the relative L2 of the cases above averages over the
// elements). A 3x3 conv whose filter is the identity at the centre tap and whose bias is 0 computes
// y = silu(x) exactly up to the activation and the f16 rounding of y, in every tactic; x covers
// [-24, 24] densely. Bound per element: f16 rounding of y (2^-11 |y|) plus 2^-11 |x| for the
// activation's approximation (tanh.approx.f32 on x / 2, scaled by x / 2).
TEST(CudaConv2d, SiluEpilogueElementwiseF16) {
    SKIP_WITHOUT_GPU();
    for (const int c : {16, 32, 64, 80}) {
        SCOPED_TRACE("channels " + std::to_string(c));
        const int n = 2, h = 16, w = 32;
        const size_t count = static_cast<size_t>(n) * h * w * c;
        std::vector<uint16_t> x(count);
        for (size_t i = 0; i < count; ++i)
            x[i] = float_to_half(-24.f + 48.f * static_cast<float>(i) / static_cast<float>(count - 1));
        ConvShape s;
        s.c = s.k = c;
        s.kh = s.kw = 3;
        s.pad_top = s.pad_left = 1;
        std::vector<float> wts(static_cast<size_t>(c) * c * 9, 0.f);
        for (int k = 0; k < c; ++k) wts[(static_cast<size_t>(k) * c + k) * 9 + 4] = 1.f;  // centre tap
        const std::vector<uint8_t> packed = cuda::pack_conv_weights(wts.data(), s, ElemType::kF16);
        DeviceBuffer dx(count * 2), dy(count * 2), dw(packed.size()), db(static_cast<size_t>(c) * 4);
        dx.upload(x.data());
        dw.upload(packed);
        KS_CUDA(cudaMemset(db.get(), 0, db.size()));
        const NhwcTensor tx{dx.bytes(), ElemType::kF16, n, h, w, c, c};
        const NhwcTensor ty{dy.bytes(), ElemType::kF16, n, h, w, c, c};
        size_t ws_bytes = 0;
        std::vector<int> tactics;
        for (int t = 0; t < cuda::conv2d_tactic_count(); ++t) {
            if (!cuda::conv2d_tactic_supports(t, s, ElemType::kF16)) continue;
            tactics.push_back(t);
            ws_bytes = std::max(ws_bytes, cuda::conv2d_workspace_bytes(t, s, ElemType::kF16, n, h, w));
        }
        ASSERT_GE(tactics.size(), 2u);
        DeviceBuffer dws(ws_bytes);
        KS_CUDA(cudaMemset(dws.get(), 0, ws_bytes ? ws_bytes : 1));
        for (const int t : tactics) {
            const std::string name = cuda::conv2d_tactic_name(t, s, ElemType::kF16);
            KS_CUDA(cudaMemset(dy.get(), 0xff, dy.size()));  // NaN: every element must be written
            cuda::conv2d_nhwc(tx, dw.get(), db.f(), s, /*silu=*/true, nullptr, ty, t, nullptr, dws.get());
            std::vector<uint16_t> y(count);
            dy.download(y.data());
            double worst = 0, worst_x = 0, worst_got = 0;  // the largest error / bound
            for (size_t i = 0; i < count; ++i) {
                const double xv = half_to_float(x[i]), want = xv / (1.0 + std::exp(-xv));
                const double got = half_to_float(y[i]);
                const double ratio = std::abs(got - want) / (std::ldexp(std::abs(want) + std::abs(xv), -11) + 1e-30);
                if (!(ratio <= worst)) worst = ratio, worst_x = xv, worst_got = got;
            }
            EXPECT_LE(worst, 1.0) << name << ": silu(" << worst_x << ") gave " << worst_got;
            std::printf("[ silu     ] %-48s worst error / bound %.3f\n", name.c_str(), worst);
        }
    }
}

// YOLOv8 deep layers at batch 1: small M (20x20, 40x40 pixels), long K. Every split-K tactic that
// supports them, with SiLU, a residual (itself a channel slice) and the output written into a
// channel slice of a Concat buffer. run_case checks the workspace is zero-filled after every run.
TEST(CudaConv2d, SplitKYoloBatch1F16) {
    SKIP_WITHOUT_GPU();
    Rng rng;
    SCOPED_TRACE(rng.trace());
    // clang-format off
    const Case cases[] = {
        {.name = "yolo_20x20_c256_3x3_k256", .n = 1, .c = 256, .h = 20, .w = 20, .k = 256, .pt = 1, .pl = 1, .pb = 1, .pr = 1,
         .silu = true, .residual = true, .y_ps = 512, .y_off = 256, .r_ps = 384, .r_off = 128},
        {.name = "yolo_40x40_c128_3x3_k128", .n = 1, .c = 128, .h = 40, .w = 40, .k = 128, .pt = 1, .pl = 1, .pb = 1, .pr = 1,
         .silu = true, .residual = true, .y_ps = 256, .y_off = 128, .r_ps = 192, .r_off = 64},
        {.name = "yolo_20x20_c512_1x1_k256", .n = 1, .c = 512, .h = 20, .w = 20, .k = 256, .kh = 1, .kw = 1,
         .silu = true, .residual = true, .x_ps = 768, .x_off = 256, .y_ps = 384, .y_off = 128},
        // The detect head: few output channels, the longest K, and a misaligned output slice
        // (scalar stores) with 80 classes.
        {.name = "yolo_head_20x20_c256_3x3_k80", .n = 1, .c = 256, .h = 20, .w = 20, .k = 80, .pt = 1, .pl = 1, .pb = 1, .pr = 1,
         .silu = true, .y_ps = 85, .y_off = 3},
    };
    // clang-format on
    for (const Case& cs : cases) {
        run_case(cs, ElemType::kF16, rng, /*only_workspace=*/true);
        if (HasFatalFailure()) return;
    }
}

// Split-K tactics: supported only for long enough K (f16 also needs c % 8 == 0 and groups == 1);
// the workspace size follows the output tiles and is 0 for every other tactic.
TEST(CudaConv2d, SplitKSupportAndWorkspace) {
    ConvShape big;
    big.c = 256;
    big.k = 256;
    big.kh = big.kw = 3;
    ConvShape tiny;  // K = 16
    tiny.c = 16;
    tiny.k = 64;
    ConvShape odd = big;
    odd.c = 252;
    int split_tactics = 0;
    for (int t = 0; t < cuda::conv2d_tactic_count(); ++t) {
        for (ElemType type : {ElemType::kF32, ElemType::kF16, ElemType::kI8}) {
            const std::string name = cuda::conv2d_tactic_name(t, big, type);
            const bool split = name.find("splitk") != std::string::npos;
            if (!cuda::conv2d_tactic_supports(t, big, type)) {
                EXPECT_EQ(cuda::conv2d_workspace_bytes(t, big, type, 1, 20, 20), 0u) << name;
                continue;
            }
            const size_t ws = cuda::conv2d_workspace_bytes(t, big, type, 1, 20, 20);
            if (!split) {
                EXPECT_EQ(ws, 0u) << name;
                continue;
            }
            ++split_tactics;
            // At least one float per output element, and it grows with the batch.
            EXPECT_GE(ws, 20u * 20 * 256 * 4) << name;
            EXPECT_EQ(ws % 16, 0u) << name;
            EXPECT_GT(cuda::conv2d_workspace_bytes(t, big, type, 8, 20, 20), ws) << name;
            EXPECT_FALSE(cuda::conv2d_tactic_supports(t, tiny, type)) << name;
            if (type != ElemType::kF32) {
                EXPECT_FALSE(cuda::conv2d_tactic_supports(t, odd, type)) << name;
            }
        }
    }
    EXPECT_GE(split_tactics, 4);

    // The YOLOv8 batch-1 shapes of SplitKYoloBatch1F16 get every f16 split-K tactic whose splits
    // each keep at least two 32-wide k-tiles.
    for (const auto& [kernel, c] : {std::pair{3, 256}, std::pair{3, 128}, std::pair{1, 512}}) {
        ConvShape s;
        s.c = c;
        s.k = 256;
        s.kh = s.kw = kernel;
        int supported = 0;
        for (int t = 0; t < cuda::conv2d_tactic_count(); ++t) {
            const std::string name = cuda::conv2d_tactic_name(t, s, ElemType::kF16);
            const size_t at = name.find("f16_mma_m16n8k16_splitk");
            if (at == std::string::npos) continue;
            const int splits = std::stoi(name.substr(at + std::strlen("f16_mma_m16n8k16_splitk")));
            const bool long_enough = kernel * kernel * c >= splits * 2 * 32;
            EXPECT_EQ(cuda::conv2d_tactic_supports(t, s, ElemType::kF16), long_enough) << name << " c=" << c;
            supported += long_enough;
        }
        EXPECT_GE(supported, 3) << "c=" << c;
    }
}

// A fused kernel's f16 NHWC output (n images of `plane` pixels, `ps` channels a pixel) against the
// NCHW reference `want` of k channels: channels [off, off + k) within 2e-3 relative L2, all of them
// written and finite; every other channel as it was (`init`).
void expect_f16_slice(const std::vector<uint8_t>& got, const std::vector<uint8_t>& init, const ir::Tensor& want, int n,
                      int64_t plane, int ps, int off, int k) {
    double num = 0, den = 0;
    int64_t changed = 0, unwritten = 0;
    for (int64_t pix = 0; pix < n * plane; ++pix)
        for (int ch = 0; ch < ps; ++ch) {
            const size_t at = static_cast<size_t>(pix * ps + ch) * 2;
            if (ch < off || ch >= off + k) {
                changed += std::memcmp(got.data() + at, init.data() + at, 2) != 0;
                continue;
            }
            uint16_t hv;
            std::memcpy(&hv, got.data() + at, 2);
            const double v = half_to_float(hv);
            if (!std::isfinite(v)) {
                ++unwritten;
                continue;
            }
            const double ref = want.data<float>()[((pix / plane) * k + (ch - off)) * plane + pix % plane];
            num += (v - ref) * (v - ref);
            den += ref * ref;
        }
    EXPECT_EQ(changed, 0) << "channels outside y's slice changed";
    EXPECT_EQ(unwritten, 0) << "y elements left unwritten or not finite";
    EXPECT_LE(std::sqrt(num / std::max(den, 1e-30)), 2e-3);
}

// A C2f bottleneck's two convs in one kernel (cuda::conv3x3_pair_nhwc) against the reference's two
// convs, t rounded to f16 between them as the kernel keeps it (and as two kernels would store it).
// x and y are channel slices of one buffer, as in YOLOv8's C2f (the split's half read, the concat's
// slice written), or of two; partial tiles, an image smaller than one tile, and enough tiles that
// the CTAs go round their ring. Every other channel of the buffers must come back untouched.
TEST(CudaConv2d, BottleneckPairMatchesTwoConvs) {
    SKIP_WITHOUT_GPU();
    Rng rng;
    SCOPED_TRACE(rng.trace());
    struct PairCase {
        int n, c, h, w;
        bool residual, one_buffer;
        int x_ps, x_off, y_ps, y_off;  // y_ps unused with one buffer (x's)
    };
    const PairCase cases[] = {
        {2, 16, 19, 37, true, true, 48, 16, 0, 32},     // model.2's slices, partial tiles
        {1, 32, 8, 16, false, false, 32, 0, 32, 0},     // one whole tile, no shortcut (the neck's C2f)
        {3, 32, 40, 24, true, true, 128, 64, 0, 96},    // model.4's second bottleneck
        {2, 16, 5, 7, true, false, 16, 0, 24, 8},       // smaller than a tile
        {16, 16, 64, 80, true, true, 48, 16, 0, 32},    // 640 tiles: round the ring
        {4, 32, 33, 50, false, false, 64, 32, 96, 64},  // two buffers, slices
    };
    for (const PairCase& pc : cases) {
        SCOPED_TRACE("n " + std::to_string(pc.n) + " c " + std::to_string(pc.c) + " " + std::to_string(pc.h) + "x" +
                     std::to_string(pc.w) + (pc.residual ? " residual" : "") + (pc.one_buffer ? " one buffer" : ""));
        const int c = pc.c;
        auto rnd = [&](Shape s, float lo, float hi) {
            std::vector<float> v = rng.uniform_floats(static_cast<size_t>(num_elements(s)), lo, hi);
            for (float& f : v) f = round_to_half(f);
            return ir::Tensor::from_floats(std::move(s), v);
        };
        const float bound = std::sqrt(3.f / static_cast<float>(9 * c));
        const ir::Tensor x = rnd({pc.n, c, pc.h, pc.w}, -1.f, 1.f);
        const ir::Tensor w1 = rnd({c, c, 3, 3}, -bound, bound), w2 = rnd({c, c, 3, 3}, -bound, bound);
        const ir::Tensor b1 = ir::Tensor::from_floats({c}, rng.uniform_floats(static_cast<size_t>(c), -0.5f, 0.5f));
        const ir::Tensor b2 = ir::Tensor::from_floats({c}, rng.uniform_floats(static_cast<size_t>(c), -0.5f, 0.5f));
        ir::Node node;
        node.op = ir::Op::kConv;
        node.name = "bottleneck";
        node.attrs.set("kernel_shape", std::vector<int64_t>{3, 3});
        node.attrs.set("pads", std::vector<int64_t>{1, 1, 1, 1});
        node.attrs.set("activation", std::string("silu"));
        ir::Tensor t = reference::evaluate(node, {&x, &w1, &b1, nullptr}).at(0);
        for (int64_t i = 0; i < num_elements(t.shape); ++i) t.data<float>()[i] = round_to_half(t.data<float>()[i]);
        const ir::Tensor want = reference::evaluate(node, {&t, &w2, &b2, pc.residual ? &x : nullptr}).at(0);

        ConvShape s;
        s.c = s.k = c;
        s.kh = s.kw = 3;
        s.pad_top = s.pad_left = 1;
        const std::vector<uint8_t> pw1 = cuda::pack_conv_weights(w1.data<float>(), s, ElemType::kF16);
        const std::vector<uint8_t> pw2 = cuda::pack_conv_weights(w2.data<float>(), s, ElemType::kF16);
        DeviceBuffer dw1(pw1.size()), dw2(pw2.size()), db1(static_cast<size_t>(c) * 4), db2(static_cast<size_t>(c) * 4);
        dw1.upload(pw1);
        dw2.upload(pw2);
        db1.upload(b1.bytes);
        db2.upload(b2.bytes);
        const std::vector<uint8_t> x_host = to_nhwc(&x, pc.n, pc.h, pc.w, c, pc.x_ps, pc.x_off, ElemType::kF16);
        const int y_ps = pc.one_buffer ? pc.x_ps : pc.y_ps;
        const std::vector<uint8_t> y_init =
            pc.one_buffer ? x_host : to_nhwc(nullptr, pc.n, pc.h, pc.w, c, y_ps, pc.y_off, ElemType::kF16);
        DeviceBuffer dx(x_host.size()), dy(y_init.size());
        dx.upload(x_host);
        dy.upload(y_init);
        uint8_t* y_base = pc.one_buffer ? dx.bytes() : dy.bytes();
        const NhwcTensor tx{dx.bytes() + pc.x_off * 2, ElemType::kF16, pc.n, pc.h, pc.w, c, pc.x_ps};
        const NhwcTensor ty{y_base + pc.y_off * 2, ElemType::kF16, pc.n, pc.h, pc.w, c, y_ps};
        cuda::conv3x3_pair_nhwc(tx, dw1.get(), db1.f(), dw2.get(), db2.f(), pc.residual, ty, nullptr);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        const std::vector<uint8_t> got = pc.one_buffer ? dx.download() : dy.download();

        expect_f16_slice(got, y_init, want, pc.n, static_cast<int64_t>(pc.h) * pc.w, y_ps, pc.y_off, c);
    }
    // Refused: 64 channels, f32, y overlapping x.
    DeviceBuffer d(4096 * 64);
    const NhwcTensor x16{d.bytes(), ElemType::kF16, 1, 8, 8, 16, 48};
    NhwcTensor y16{d.bytes() + 16, ElemType::kF16, 1, 8, 8, 16, 48};  // channels 8-23: overlaps x's 0-15
    EXPECT_THROW(cuda::conv3x3_pair_nhwc(x16, d.get(), d.f(), d.get(), d.f(), true, y16, nullptr), Error);
    y16.data = d.bytes() + 64;  // channels 32-47
    NhwcTensor bad = x16;
    bad.c = bad.pixel_stride = 64;
    EXPECT_THROW(cuda::conv3x3_pair_nhwc(bad, d.get(), d.f(), d.get(), d.f(), true, bad, nullptr), Error);
    bad = x16;
    bad.type = ElemType::kF32;
    EXPECT_THROW(cuda::conv3x3_pair_nhwc(bad, d.get(), d.f(), d.get(), d.f(), true, y16, nullptr), Error);
    EXPECT_FALSE(cuda::conv3x3_pair_supported(64, x16, y16));
    EXPECT_TRUE(cuda::conv3x3_pair_supported(16, x16, y16));
}

// A C2f block with one bottleneck in one kernel (cuda::c2f_n1_nhwc) against the reference's four
// convs, each intermediate rounded to f16 where the separate kernels store it (cv1's output, m1's,
// the bottleneck's sum). Partial tiles, an image smaller than one tile, enough tiles that the CTAs
// go round their ring, x and y as slices of wider buffers, with and without the shortcut. Every
// other channel of y's buffer must come back untouched.
TEST(CudaConv2d, C2fOneBottleneckMatchesItsConvs) {
    SKIP_WITHOUT_GPU();
    Rng rng;
    SCOPED_TRACE(rng.trace());
    struct C2fCase {
        int n, h, w;
        bool shortcut;
        int x_ps, x_off, y_ps, y_off;
    };
    const C2fCase cases[] = {
        {2, 19, 37, true, 32, 0, 32, 0},    // partial tiles
        {1, 5, 7, true, 48, 16, 40, 8},     // smaller than a tile, slices
        {16, 64, 80, true, 32, 0, 32, 0},   // 640 tiles: round the ring
        {3, 8, 16, false, 32, 0, 64, 32},   // one whole tile, no shortcut
        {1, 160, 160, true, 32, 0, 32, 0},  // model.2's map
    };
    constexpr int kIn = 32, kHalf = 16, kOut = 32;
    for (const C2fCase& cc : cases) {
        SCOPED_TRACE("n " + std::to_string(cc.n) + " " + std::to_string(cc.h) + "x" + std::to_string(cc.w) +
                     (cc.shortcut ? " shortcut" : ""));
        auto rnd = [&](Shape s, float lo, float hi) {
            std::vector<float> v = rng.uniform_floats(static_cast<size_t>(num_elements(s)), lo, hi);
            for (float& f : v) f = round_to_half(f);
            return ir::Tensor::from_floats(std::move(s), v);
        };
        auto bias = [&](int k) {
            return ir::Tensor::from_floats({k}, rng.uniform_floats(static_cast<size_t>(k), -0.5f, 0.5f));
        };
        auto round_all = [](ir::Tensor t) {
            for (int64_t i = 0; i < num_elements(t.shape); ++i) t.data<float>()[i] = round_to_half(t.data<float>()[i]);
            return t;
        };
        auto conv = [](int k, const ir::Tensor& x, const ir::Tensor& w, const ir::Tensor& b, const ir::Tensor* res) {
            ir::Node node;
            node.op = ir::Op::kConv;
            node.name = "c2f";
            node.attrs.set("kernel_shape", std::vector<int64_t>{k, k});
            node.attrs.set("pads", std::vector<int64_t>(4, k / 2));
            node.attrs.set("activation", std::string("silu"));
            return reference::evaluate(node, {&x, &w, &b, res}).at(0);
        };
        // Channels [from, from + c) of an NCHW tensor, and NCHW tensors joined along the channels.
        const int64_t plane = static_cast<int64_t>(cc.h) * cc.w;
        auto channels = [&](const ir::Tensor& t, int from, int c) {
            const int64_t tc = t.shape[1];
            std::vector<float> v(static_cast<size_t>(cc.n * c * plane));
            for (int b = 0; b < cc.n; ++b)
                std::copy_n(t.data<float>() + (b * tc + from) * plane, c * plane, v.begin() + b * c * plane);
            return ir::Tensor::from_floats({cc.n, c, cc.h, cc.w}, v);
        };
        auto join = [&](std::initializer_list<const ir::Tensor*> parts) {
            int64_t c = 0;
            for (const ir::Tensor* t : parts) c += t->shape[1];
            std::vector<float> v;
            for (int b = 0; b < cc.n; ++b)
                for (const ir::Tensor* t : parts)
                    v.insert(v.end(), t->data<float>() + b * t->shape[1] * plane,
                             t->data<float>() + (b + 1) * t->shape[1] * plane);
            return ir::Tensor::from_floats({cc.n, c, cc.h, cc.w}, v);
        };
        const float b1x1 = std::sqrt(3.f / kIn), b3x3 = std::sqrt(3.f / (9 * kHalf)), b48 = std::sqrt(3.f / 48);
        const ir::Tensor x = rnd({cc.n, kIn, cc.h, cc.w}, -1.f, 1.f);
        const ir::Tensor w_cv1 = rnd({kIn, kIn, 1, 1}, -b1x1, b1x1), bias_cv1 = bias(kIn);
        const ir::Tensor w_m1 = rnd({kHalf, kHalf, 3, 3}, -b3x3, b3x3), bias_m1 = bias(kHalf);
        const ir::Tensor w_m2 = rnd({kHalf, kHalf, 3, 3}, -b3x3, b3x3), bias_m2 = bias(kHalf);
        const ir::Tensor w_cv2 = rnd({kOut, 3 * kHalf, 1, 1}, -b48, b48), bias_cv2 = bias(kOut);
        const ir::Tensor v = round_all(conv(1, x, w_cv1, bias_cv1, nullptr));
        const ir::Tensor a = channels(v, 0, kHalf), b = channels(v, kHalf, kHalf);
        const ir::Tensor t = round_all(conv(3, b, w_m1, bias_m1, nullptr));
        const ir::Tensor m = round_all(conv(3, t, w_m2, bias_m2, cc.shortcut ? &b : nullptr));
        const ir::Tensor cat = join({&a, &b, &m});
        const ir::Tensor want = conv(1, cat, w_cv2, bias_cv2, nullptr);

        std::vector<std::unique_ptr<DeviceBuffer>> keep;
        auto upload = [&](const std::vector<uint8_t>& bytes) {
            keep.push_back(std::make_unique<DeviceBuffer>(bytes.size()));
            keep.back()->upload(bytes);
            return keep.back()->get();
        };
        auto packed = [&](const ir::Tensor& w) {
            ConvShape s;
            s.k = static_cast<int>(w.shape[0]);
            s.c = static_cast<int>(w.shape[1]);
            s.kh = s.kw = static_cast<int>(w.shape[2]);
            s.pad_top = s.pad_left = s.kh / 2;
            return upload(cuda::pack_conv_weights(w.data<float>(), s, ElemType::kF16));
        };
        auto floats = [&](const ir::Tensor& t) { return static_cast<const float*>(upload(t.bytes)); };
        cuda::C2fWeights cw;
        cw.cv1 = packed(w_cv1);
        cw.m1 = packed(w_m1);
        cw.m2 = packed(w_m2);
        cw.cv2 = packed(w_cv2);
        cw.cv1_bias = floats(bias_cv1);
        cw.m1_bias = floats(bias_m1);
        cw.m2_bias = floats(bias_m2);
        cw.cv2_bias = floats(bias_cv2);
        cw.shortcut = cc.shortcut;
        const std::vector<uint8_t> x_host = to_nhwc(&x, cc.n, cc.h, cc.w, kIn, cc.x_ps, cc.x_off, ElemType::kF16);
        const std::vector<uint8_t> y_init = to_nhwc(nullptr, cc.n, cc.h, cc.w, kOut, cc.y_ps, cc.y_off, ElemType::kF16);
        DeviceBuffer dx(x_host.size()), dy(y_init.size());
        dx.upload(x_host);
        dy.upload(y_init);
        const NhwcTensor tx{dx.bytes() + cc.x_off * 2, ElemType::kF16, cc.n, cc.h, cc.w, kIn, cc.x_ps};
        const NhwcTensor ty{dy.bytes() + cc.y_off * 2, ElemType::kF16, cc.n, cc.h, cc.w, kOut, cc.y_ps};
        cuda::c2f_n1_nhwc(tx, cw, ty, nullptr);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        const std::vector<uint8_t> got = dy.download();

        expect_f16_slice(got, y_init, want, cc.n, plane, cc.y_ps, cc.y_off, kOut);
    }
    // Refused: y overlapping x, 16-channel x, f32.
    DeviceBuffer d(8 * 8 * 64 * 2 * 2);
    const NhwcTensor x32{d.bytes(), ElemType::kF16, 1, 8, 8, 32, 32};
    NhwcTensor y32{d.bytes() + 8 * 8 * 32 * 2 - 64, ElemType::kF16, 1, 8, 8, 32, 32};  // x's last pixel
    cuda::C2fWeights cw;
    cw.cv1 = cw.m1 = cw.m2 = cw.cv2 = d.get();
    cw.cv1_bias = cw.m1_bias = cw.m2_bias = cw.cv2_bias = d.f();
    EXPECT_THROW(cuda::c2f_n1_nhwc(x32, cw, y32, nullptr), Error);
    y32.data = d.bytes() + 8 * 8 * 32 * 2;  // right after x: accepted by the checks
    EXPECT_TRUE(cuda::c2f_n1_supported(x32, y32));
    NhwcTensor bad = x32;
    bad.c = 16;
    EXPECT_FALSE(cuda::c2f_n1_supported(bad, y32));
    EXPECT_THROW(cuda::c2f_n1_nhwc(bad, cw, y32, nullptr), Error);
    bad = x32;
    bad.type = ElemType::kF32;
    EXPECT_THROW(cuda::c2f_n1_nhwc(bad, cw, y32, nullptr), Error);
}

// A 3x3, stride-2, padding-1 conv of c -> k channels (YOLOv8's stem and downsampling convs).
ConvShape stride2_conv3x3(int c, int k) {
    ConvShape s;
    s.c = c;
    s.k = k;
    s.kh = s.kw = 3;
    s.stride_h = s.stride_w = 2;
    s.pad_top = s.pad_left = 1;
    return s;
}

// The stem and the conv after it in one kernel (cuda::stem_conv3x3s2_nhwc) against the reference's
// two convs, the stem's output rounded to f16 (as the stem kernel stores it) and its taps rounded
// to f16 (as the tensor-core stem multiplies them). Maps with partial tiles, one smaller than a
// tile, an odd image height, image widths that are not a multiple of the window's 64 columns,
// batches whose CTAs take several tiles (the next tile's window loads during this one's model.1),
// y as a slice of a wider buffer.
TEST(CudaConv2d, StemAndFirstConvMatchTheirConvs) {
    SKIP_WITHOUT_GPU();
    Rng rng;
    SCOPED_TRACE(rng.trace());
    struct StemCase {
        int n, h, w, y_ps, y_off;
    };
    const StemCase cases[] = {
        {2, 64, 96, 32, 0},    // 16x24 outputs: partial tiles
        {1, 13, 20, 48, 16},   // an odd height, smaller than a tile, a slice
        {3, 640, 640, 32, 0},  // yolov8n's 640x640: 200 tiles an image
        {8, 160, 224, 40, 8},  // several tiles a CTA
    };
    for (const StemCase& sc : cases) {
        SCOPED_TRACE("n " + std::to_string(sc.n) + " " + std::to_string(sc.h) + "x" + std::to_string(sc.w));
        auto rnd = [&](Shape s, float lo, float hi) {
            return ir::Tensor::from_floats(std::move(s),
                                           rng.uniform_floats(static_cast<size_t>(num_elements(s)), lo, hi));
        };
        const ir::Tensor image = rnd({sc.n, 3, sc.h, sc.w}, 0.f, 1.f);
        ir::Tensor taps = image;  // the stem multiplies f16 taps and f16 weights
        for (int64_t i = 0; i < num_elements(taps.shape); ++i)
            taps.data<float>()[i] = round_to_half(taps.data<float>()[i]);
        const ir::Tensor w0 = rnd({16, 3, 3, 3}, -0.6f, 0.6f), b0 = rnd({16}, -0.5f, 0.5f);
        const ir::Tensor w1 = rnd({32, 16, 3, 3}, -0.15f, 0.15f), b1 = rnd({32}, -0.5f, 0.5f);
        ir::Tensor w0h = w0, w1h = w1;
        for (ir::Tensor* t : {&w0h, &w1h})
            for (int64_t i = 0; i < num_elements(t->shape); ++i)
                t->data<float>()[i] = round_to_half(t->data<float>()[i]);
        ir::Node node;
        node.op = ir::Op::kConv;
        node.name = "stem";
        node.attrs.set("kernel_shape", std::vector<int64_t>{3, 3});
        node.attrs.set("strides", std::vector<int64_t>{2, 2});
        node.attrs.set("pads", std::vector<int64_t>{1, 1, 1, 1});
        node.attrs.set("activation", std::string("silu"));
        ir::Tensor s = reference::evaluate(node, {&taps, &w0h, &b0, nullptr}).at(0);
        for (int64_t i = 0; i < num_elements(s.shape); ++i) s.data<float>()[i] = round_to_half(s.data<float>()[i]);
        const ir::Tensor want = reference::evaluate(node, {&s, &w1h, &b1, nullptr}).at(0);
        const int oh = static_cast<int>(want.shape[2]), ow = static_cast<int>(want.shape[3]);

        const ConvShape s0 = stride2_conv3x3(3, 16), s1 = stride2_conv3x3(16, 32);
        const std::vector<uint8_t> pw1 = cuda::pack_conv_weights(w1.data<float>(), s1, ElemType::kF16);
        DeviceBuffer dimg(image.bytes.size()), dw1(pw1.size()), db1(32 * 4);
        dimg.upload(image.bytes);
        dw1.upload(pw1);
        db1.upload(b1.bytes);
        const std::vector<uint8_t> y_init = to_nhwc(nullptr, sc.n, oh, ow, 32, sc.y_ps, sc.y_off, ElemType::kF16);
        DeviceBuffer dy(y_init.size());
        dy.upload(y_init);
        const NhwcTensor ty{dy.bytes() + sc.y_off * 2, ElemType::kF16, sc.n, oh, ow, 32, sc.y_ps};
        cuda::stem_conv3x3s2_nhwc(dimg.f(), sc.h, sc.w, w0.data<float>(), b0.data<float>(), s0, dw1.get(), db1.f(), s1,
                                  ty, nullptr);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        const std::vector<uint8_t> got = dy.download();
        expect_f16_slice(got, y_init, want, sc.n, static_cast<int64_t>(oh) * ow, sc.y_ps, sc.y_off, 32);
    }
    // Refused: a stem of 32 filters, an image width not a multiple of 4, an unaligned image, y of the
    // wrong size, f32 y.
    const ConvShape s0 = stride2_conv3x3(3, 16), s1 = stride2_conv3x3(16, 32);
    DeviceBuffer d(64 * 64 * 3 * 4);
    std::vector<float> host_w(32 * 27, 0.1f);
    NhwcTensor y{d.bytes(), ElemType::kF16, 1, 16, 16, 32, 32};
    EXPECT_TRUE(cuda::stem_conv3x3s2_supported(s0, s1, 64, y));
    ConvShape wide = s0;
    wide.k = 32;
    EXPECT_FALSE(cuda::stem_conv3x3s2_supported(wide, s1, 64, y));
    EXPECT_THROW(
        cuda::stem_conv3x3s2_nhwc(d.f(), 64, 64, host_w.data(), host_w.data(), wide, d.get(), d.f(), s1, y, nullptr),
        Error);
    EXPECT_FALSE(cuda::stem_conv3x3s2_supported(s0, s1, 62, y));
    EXPECT_THROW(
        cuda::stem_conv3x3s2_nhwc(d.f(), 64, 62, host_w.data(), host_w.data(), s0, d.get(), d.f(), s1, y, nullptr),
        Error);
    EXPECT_THROW(
        cuda::stem_conv3x3s2_nhwc(d.f() + 1, 64, 64, host_w.data(), host_w.data(), s0, d.get(), d.f(), s1, y, nullptr),
        Error);
    y.h = 17;  // a 64x64 image gives 16x16
    EXPECT_THROW(
        cuda::stem_conv3x3s2_nhwc(d.f(), 64, 64, host_w.data(), host_w.data(), s0, d.get(), d.f(), s1, y, nullptr),
        Error);
    y.h = 16;
    y.type = ElemType::kF32;
    EXPECT_THROW(
        cuda::stem_conv3x3s2_nhwc(d.f(), 64, 64, host_w.data(), host_w.data(), s0, d.get(), d.f(), s1, y, nullptr),
        Error);
}

// YOLOv8's Upsample -> Concat -> 1x1 conv as one conv (cuda::conv2d_upsampled_concat_nhwc) on every
// tensor-core tactic that takes it, against the reference conv of the concat built on the host.
// The concat buffer's upsampled channels hold poison (NaN), so reading them instead of up shows;
// up lies below x in one buffer, above it in another (the kernel addresses both from the lower);
// partial M tiles, a partial last k-tile, split-K tactics (a shared workspace), y as a slice.
TEST(CudaConv2d, UpsampledConcatMatchesTheConvOfTheConcat) {
    SKIP_WITHOUT_GPU();
    Rng rng;
    SCOPED_TRACE(rng.trace());
    struct UpCase {
        int n, uh, uw, up_c, rest_c, k, y_ps, y_off;
        bool up_first;  // up below x in their buffer
    };
    const UpCase cases[] = {
        {2, 20, 20, 128, 64, 64, 64, 0, false},  // yolov8n's model.15 cv1, at 40x40
        {1, 5, 7, 32, 40, 48, 64, 8, true},      // odd sizes, a partial k-tile, y a slice
        {3, 8, 8, 256, 128, 128, 128, 0, true},  // model.12's cv1 at 16x16
    };
    for (const UpCase& uc : cases) {
        const int h = 2 * uc.uh, w = 2 * uc.uw, c = uc.up_c + uc.rest_c;
        SCOPED_TRACE("n " + std::to_string(uc.n) + " up " + std::to_string(uc.up_c) + "x" + std::to_string(uc.uh) +
                     "x" + std::to_string(uc.uw) + " + " + std::to_string(uc.rest_c) + " -> " + std::to_string(uc.k));
        auto rnd = [&](Shape s, float lo, float hi) {
            std::vector<float> v = rng.uniform_floats(static_cast<size_t>(num_elements(s)), lo, hi);
            for (float& f : v) f = round_to_half(f);
            return ir::Tensor::from_floats(std::move(s), v);
        };
        const ir::Tensor up = rnd({uc.n, uc.up_c, uc.uh, uc.uw}, -1.f, 1.f),
                         rest = rnd({uc.n, uc.rest_c, h, w}, -1.f, 1.f);
        const float bound = std::sqrt(3.f / static_cast<float>(c));
        const ir::Tensor wt = rnd({uc.k, c, 1, 1}, -bound, bound);
        const ir::Tensor b =
            ir::Tensor::from_floats({uc.k}, rng.uniform_floats(static_cast<size_t>(uc.k), -0.5f, 0.5f));
        ir::Tensor cat =
            ir::Tensor::from_floats({uc.n, c, h, w}, std::vector<float>(static_cast<size_t>(uc.n) * c * h * w));
        for (int i = 0; i < uc.n; ++i)
            for (int ch = 0; ch < c; ++ch)
                for (int y = 0; y < h; ++y)
                    for (int x = 0; x < w; ++x)
                        cat.data<float>()[((static_cast<int64_t>(i) * c + ch) * h + y) * w + x] =
                            ch < uc.up_c
                                ? up.data<float>()[((static_cast<int64_t>(i) * uc.up_c + ch) * uc.uh + y / 2) * uc.uw +
                                                   x / 2]
                                : rest.data<
                                      float>()[((static_cast<int64_t>(i) * uc.rest_c + ch - uc.up_c) * h + y) * w + x];
        ir::Node node;
        node.op = ir::Op::kConv;
        node.name = "cv1";
        node.attrs.set("kernel_shape", std::vector<int64_t>{1, 1});
        node.attrs.set("activation", std::string("silu"));
        const ir::Tensor want = reference::evaluate(node, {&cat, &wt, &b, nullptr}).at(0);

        ConvShape s;
        s.c = c;
        s.k = uc.k;
        // One buffer: x's pixels (the concat: poison in the upsampled channels) and up's, in either order.
        const std::vector<uint8_t> x_host = to_nhwc(&rest, uc.n, h, w, uc.rest_c, c, uc.up_c, ElemType::kF16),
                                   up_host = to_nhwc(&up, uc.n, uc.uh, uc.uw, uc.up_c, uc.up_c, 0, ElemType::kF16);
        std::vector<uint8_t> both = uc.up_first ? up_host : x_host;
        const std::vector<uint8_t>& second = uc.up_first ? x_host : up_host;
        both.insert(both.end(), second.begin(), second.end());
        DeviceBuffer dboth(both.size());
        dboth.upload(both);
        uint8_t* const x_at = dboth.bytes() + (uc.up_first ? up_host.size() : 0);
        uint8_t* const up_at = dboth.bytes() + (uc.up_first ? 0 : x_host.size());
        const NhwcTensor tx{x_at, ElemType::kF16, uc.n, h, w, c, c};
        const NhwcTensor tup{up_at, ElemType::kF16, uc.n, uc.uh, uc.uw, uc.up_c, uc.up_c};
        const std::vector<uint8_t> packed = cuda::pack_conv_weights(wt.data<float>(), s, ElemType::kF16);
        DeviceBuffer dw(packed.size()), db(static_cast<size_t>(uc.k) * 4);
        dw.upload(packed);
        db.upload(b.bytes);
        const std::vector<uint8_t> y_init = to_nhwc(nullptr, uc.n, h, w, uc.k, uc.y_ps, uc.y_off, ElemType::kF16);
        DeviceBuffer dy(y_init.size());
        const NhwcTensor ty{dy.bytes() + uc.y_off * 2, ElemType::kF16, uc.n, h, w, uc.k, uc.y_ps};

        std::vector<int> tactics;
        size_t ws_bytes = 0;
        for (int t = 0; t < cuda::conv2d_tactic_count(); ++t)
            if (cuda::conv2d_upsampled_concat_supported(t, s, tup, tx)) {
                tactics.push_back(t);
                ws_bytes = std::max(ws_bytes, cuda::conv2d_workspace_bytes(t, s, ElemType::kF16, uc.n, h, w));
            }
        ASSERT_GE(tactics.size(), 4u) << "the tensor-core tactics take it";
        DeviceBuffer dws(ws_bytes);
        KS_CUDA(cudaMemset(dws.get(), 0, ws_bytes ? ws_bytes : 1));
        for (const int t : tactics) {
            SCOPED_TRACE(cuda::conv2d_tactic_name(t, s, ElemType::kF16));
            dy.upload(y_init);
            cuda::conv2d_upsampled_concat_nhwc(tup, tx, dw.get(), reinterpret_cast<const float*>(db.get()), s, true, ty,
                                               t, nullptr, dws.get());
            ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
            expect_f16_slice(dy.download(), y_init, want, uc.n, static_cast<int64_t>(h) * w, uc.y_ps, uc.y_off, uc.k);
            if (ws_bytes) {
                EXPECT_TRUE(all_zero(dws.download())) << "the workspace is not zero-filled after the kernel";
            }
        }
        // Refused: a tactic that is not a tensor-core implicit GEMM, a 3x3 conv, up of 24 channels or
        // not half x's size.
        for (int t = 0; t < cuda::conv2d_tactic_count(); ++t) {
            const std::string name = cuda::conv2d_tactic_name(t, s, ElemType::kF16);
            if (name.find("mma") == std::string::npos || name.find("halo") != std::string::npos ||
                name.find("gather") != std::string::npos) {
                EXPECT_FALSE(cuda::conv2d_upsampled_concat_supported(t, s, tup, tx)) << name;
            }
        }
        const int t0 = tactics.front();
        ConvShape s3 = s;
        s3.kh = s3.kw = 3;
        s3.pad_top = s3.pad_left = 1;
        EXPECT_FALSE(cuda::conv2d_upsampled_concat_supported(t0, s3, tup, tx));
        NhwcTensor bad = tup;
        bad.c = 24;
        EXPECT_FALSE(cuda::conv2d_upsampled_concat_supported(t0, s, bad, tx));
        bad = tup;
        bad.h += 1;
        EXPECT_FALSE(cuda::conv2d_upsampled_concat_supported(t0, s, bad, tx));
        EXPECT_THROW(cuda::conv2d_upsampled_concat_nhwc(bad, tx, dw.get(), reinterpret_cast<const float*>(db.get()), s,
                                                        true, ty, t0, nullptr, dws.get()),
                     Error);
    }
}

TEST(CudaConv2d, RejectsBadArguments) {
    SKIP_WITHOUT_GPU();
    ConvShape s;
    s.c = 16;
    s.k = 32;
    s.kh = s.kw = 3;
    s.pad_top = s.pad_left = 1;
    DeviceBuffer dx(1 * 8 * 8 * 16 * 4), dy(1 * 8 * 8 * 32 * 4), dw(32 * 9 * 16 * 4), db(32 * 4);
    const auto* bias = reinterpret_cast<const float*>(db.get());
    NhwcTensor x{dx.get(), ElemType::kF32, 1, 8, 8, 16, 16};
    NhwcTensor y{dy.get(), ElemType::kF32, 1, 8, 8, 32, 32};
    EXPECT_NO_THROW(cuda::conv2d_nhwc(x, dw.get(), bias, s, false, nullptr, y, -1, nullptr));
    KS_CUDA(cudaDeviceSynchronize());

    const int count = cuda::conv2d_tactic_count();
    EXPECT_THROW(cuda::conv2d_nhwc(x, dw.get(), bias, s, false, nullptr, y, count, nullptr), Error);
    NhwcTensor bad = y;
    bad.c = 31;  // not k
    EXPECT_THROW(cuda::conv2d_nhwc(x, dw.get(), bias, s, false, nullptr, bad, -1, nullptr), Error);
    bad = y;
    bad.h = 5;  // pad 1, stride 1 give 8 (7 with no bottom padding)
    EXPECT_THROW(cuda::conv2d_nhwc(x, dw.get(), bias, s, false, nullptr, bad, -1, nullptr), Error);
    bad.h = 12;  // would need a bottom padding of 5
    EXPECT_THROW(cuda::conv2d_nhwc(x, dw.get(), bias, s, false, nullptr, bad, -1, nullptr), Error);
    bad = y;
    bad.pixel_stride = 16;  // narrower than its channels
    EXPECT_THROW(cuda::conv2d_nhwc(x, dw.get(), bias, s, false, nullptr, bad, -1, nullptr), Error);
    bad = y;
    bad.type = ElemType::kF16;  // x is f32
    EXPECT_THROW(cuda::conv2d_nhwc(x, dw.get(), bias, s, false, nullptr, bad, -1, nullptr), Error);
    NhwcTensor res = y;
    res.w = 4;
    EXPECT_THROW(cuda::conv2d_nhwc(x, dw.get(), bias, s, false, &res, y, -1, nullptr), Error);
    EXPECT_THROW(cuda::conv2d_nhwc(x, dw.get(), nullptr, s, false, nullptr, y, -1, nullptr), Error);

    // A tactic that does not support the shape or type is refused, not run.
    NhwcTensor xh{dx.get(), ElemType::kF16, 1, 8, 8, 16, 16}, yh{dy.get(), ElemType::kF16, 1, 8, 8, 32, 32};
    ConvShape grouped = s;
    grouped.groups = 2;
    for (int t = 0; t < count; ++t) {
        // A split-K tactic refuses to run without its workspace.
        if (cuda::conv2d_tactic_supports(t, s, ElemType::kF32) &&
            cuda::conv2d_workspace_bytes(t, s, ElemType::kF32, 1, 8, 8) > 0) {
            EXPECT_THROW(cuda::conv2d_nhwc(x, dw.get(), bias, s, false, nullptr, y, t, nullptr), Error) << t;
        }
        if (!cuda::conv2d_tactic_supports(t, s, ElemType::kF32)) {
            EXPECT_THROW(cuda::conv2d_nhwc(x, dw.get(), bias, s, false, nullptr, y, t, nullptr), Error) << t;
        }
        if (!cuda::conv2d_tactic_supports(t, grouped, ElemType::kF16)) {
            EXPECT_THROW(cuda::conv2d_nhwc(xh, dw.get(), bias, grouped, false, nullptr, yh, t, nullptr), Error) << t;
        }
    }
    KS_CUDA(cudaDeviceSynchronize());
}

}  // namespace
}  // namespace kestrel::test
