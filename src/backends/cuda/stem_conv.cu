// The stem convolution on the float32 NCHW image (see conv2d.h). Converting the image to NHWC
// float16 first and running the tensor-core path cost 0.27 + 0.48 ms at batch 64 (the 3 channels
// padded to 8 make the intermediate larger than the image); reading the image once here is the
// floor of that work. Two kernels:
//   stem_conv_nchw_3x3: a thread per output pixel, its 27 taps times every filter in float32 FMAs
//     (weights in the constant bank). Exact for f32 outputs; for f16 ones it issued 432 FMAs a
//     pixel, and issue, not DRAM, bounded it (Nsight Compute, BENCHMARKS.md).
//   stem_conv_nchw_3x3_mma (f16 outputs, K = 16/32/48/64, 16-byte aligned pixels): a lane gathers
//     its pixel's 27 taps (zero-padded to 32) as f16 into a shared row, the warp multiplies its 32
//     rows by the filters with mma.sync m16n8k16 (A by ldmatrix, B fragments packed on the host):
//     the arithmetic is K / 4 MMAs per 16 pixels, so the image's reads are what is left.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>

#include "backends/cuda/activations.cuh"
#include "backends/cuda/conv2d.h"
#include "backends/cuda/device_convert.cuh"
#include "backends/cuda/fast_divmod.h"
#include "backends/cuda/launch.cuh"
#include "backends/cuda/mma_sync.cuh"
#include "backends/cuda/stem_mma.cuh"
#include "core/half.h"

namespace kestrel::cuda {
namespace {

constexpr int kC = 3, kTaps = 9, kMaxK = 64, kChunk = 8, kThreads = 256;

struct StemArgs {
    const float* x;
    int n, h, w_in, oh, ow, k;
    FastDivmod div_ow;  // output pixel -> (y, x)
    int stride_h, stride_w, pad_top, pad_left;
    bool silu;
    bool vec_store;  // 16-byte aligned pixels: 8 channels per store
    int64_t ps;      // output pixel stride
};

// The weights and bias travel as kernel parameters (the constant bank): with K known at compile
// time every weight index is a constant, so each FMA takes its weight straight from the bank — one
// instruction per FMA, where weights in shared memory cost a load per FMA (0.47 ms at batch 64 on
// the H100). K = 0: any k <= kMaxK, indexed at run time.
template <int K>
struct StemWeights {
    float w[(K ? K : kMaxK) * kC * kTaps];  // OIHW
    float b[K ? K : kMaxK];
};

template <typename T, int K>
__global__ void __launch_bounds__(kThreads)
    stem_conv_nchw_3x3(StemArgs a, const __grid_constant__ StemWeights<K> wt, T* __restrict__ y) {
    wait_for_previous_kernel();
    const int k_count = K ? K : a.k;
    // grid.x covers one image's output pixels, grid.y steps over the images: 32-bit index arithmetic.
    const int q = static_cast<int>(blockIdx.x) * kThreads + static_cast<int>(threadIdx.x);
    if (q >= a.oh * a.ow) return;
    int ox;
    const int oy = a.div_ow.divmod(q, ox);
    for (int64_t img = blockIdx.y; img < a.n; img += gridDim.y) {
        const int64_t p = img * a.oh * a.ow + q;
        // The 27 input taps of this pixel, zero outside the image (the conv's padding).
        float in[kC * kTaps];
#pragma unroll
        for (int c = 0; c < kC; ++c)
#pragma unroll
            for (int ky = 0; ky < 3; ++ky)
#pragma unroll
                for (int kx = 0; kx < 3; ++kx) {
                    const int iy = oy * a.stride_h - a.pad_top + ky, ix = ox * a.stride_w - a.pad_left + kx;
                    const bool inside = iy >= 0 && iy < a.h && ix >= 0 && ix < a.w_in;
                    in[(c * 3 + ky) * 3 + kx] = inside ? __ldg(a.x + ((img * kC + c) * a.h + iy) * a.w_in + ix) : 0.f;
                }
        T* out = y + p * a.ps;
#pragma unroll
        for (int k0 = 0; k0 < (K ? K : kMaxK); k0 += kChunk) {
            if (!K && k0 >= k_count) break;
            float acc[kChunk];
#pragma unroll
            for (int j = 0; j < kChunk; ++j) {
                const int k = K ? k0 + j : min(k0 + j, k_count - 1);
                float s = wt.b[k];
#pragma unroll
                for (int t = 0; t < kC * kTaps; ++t) s = fmaf(in[t], wt.w[k * kC * kTaps + t], s);
                // f16 outputs round far above the approximate SiLU's error; f32 ones get the exact one.
                if (a.silu) s = std::is_same_v<T, float> ? silu_exact(s) : silu_approx(s);
                acc[j] = s;
            }
            if (a.vec_store && k0 + kChunk <= k_count) {
                // 8 channels of one pixel as one 16-byte (f16) or two (f32) stores.
                alignas(16) T v[kChunk];
#pragma unroll
                for (int j = 0; j < kChunk; ++j) v[j] = from_float<T>(acc[j]);
#pragma unroll
                for (int q = 0; q < static_cast<int>(sizeof(v) / 16); ++q)
                    reinterpret_cast<uint4*>(out + k0)[q] = reinterpret_cast<const uint4*>(v)[q];
                continue;
            }
#pragma unroll
            for (int j = 0; j < kChunk; ++j)
                if (k0 + j < k_count) out[k0 + j] = from_float<T>(acc[j]);
        }
    }
}

// ---- f16 outputs on the tensor cores ----------------------------------------------------------
constexpr int kMmaThreads = 128;  // 4 warps, each on its own 32-pixel units
constexpr int kRow = kStemRowHalves;
constexpr int kMaxUnitsPerWarp = 8;

struct StemMmaArgs {
    const float* x;
    int n, h, w_in, oh, ow;
    FastDivmod div_ow;
    int stride_h, stride_w, pad_top, pad_left;
    bool silu;
    int64_t ps;
    int units_per_image;  // 32-pixel units of one image's outputs
    int units;            // of the batch
    int units_per_warp;
};

template <int K>
__global__ void __launch_bounds__(kMmaThreads, 4)
    stem_conv_nchw_3x3_mma(StemMmaArgs a, const __grid_constant__ StemMmaWeights<K> wt, __half* __restrict__ y) {
    constexpr int NB = K / 8;
    __shared__ __align__(16) __half rows[kMmaThreads / 32][32 * kRow];
    const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
    const int g = lane / 4, t4 = lane % 4;
    uint32_t b[NB][2][2];
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
        for (int ks = 0; ks < 2; ++ks) b[nb][ks][0] = wt.frag[nb][ks][lane][0], b[nb][ks][1] = wt.frag[nb][ks][lane][1];
    __half* row = rows[warp];
    const uint32_t row_base = static_cast<uint32_t>(__cvta_generic_to_shared(row));
    wait_for_previous_kernel();

    const int first = (static_cast<int>(blockIdx.x) * (kMmaThreads / 32) + warp) * a.units_per_warp;
    for (int u = first; u < first + a.units_per_warp && u < a.units; ++u) {
        const int64_t img = u / a.units_per_image;
        const int q0 = (u - static_cast<int>(img) * a.units_per_image) * 32;
        const int pixels = a.oh * a.ow;
        // 1. Lane l gathers pixel q0 + l's taps, k = (c * 3 + ky) * 3 + kx, zeros past the image and
        //    for k >= 27, into row l as 16 f16 pairs.
        {
            const int q = q0 + lane;
            uint32_t packed[16];
            if (q < pixels) {
                int ox;
                const int oy = a.div_ow.divmod(q, ox);
                gather_stem_taps(a.x + img * kC * a.h * a.w_in, a.h, a.w_in, oy * a.stride_h - a.pad_top,
                                 ox * a.stride_w - a.pad_left, packed);
            } else {
#pragma unroll
                for (int i = 0; i < 16; ++i) packed[i] = 0;
            }
            store_stem_row(row, lane, packed);
        }
        __syncwarp();
        // 2. Two m16 blocks of pixels x K filters; 3. bias, SiLU, f16 pairs into the output pixels.
#pragma unroll
        for (int mb = 0; mb < 2; ++mb) {
            uint32_t afr[2][4];
            stem_a_fragments(row_base, mb, lane, afr);
#pragma unroll
            for (int nb = 0; nb < NB; ++nb) {
                float d[4];
                stem_mma(d, afr, b[nb]);
#pragma unroll
                for (int half = 0; half < 2; ++half) {
                    const int q = q0 + 16 * mb + g + 8 * half;
                    if (q >= pixels) continue;
                    // The bias from the constant bank where it is used (4 addresses a warp): in registers
                    // it pushed K = 48 over the register budget.
                    float v0 = d[2 * half] + wt.b[8 * nb + 2 * t4], v1 = d[2 * half + 1] + wt.b[8 * nb + 2 * t4 + 1];
                    if (a.silu) v0 = silu_approx(v0), v1 = silu_approx(v1);
                    *reinterpret_cast<__half2*>(y + (img * pixels + q) * a.ps + 8 * nb + 2 * t4) =
                        __floats2half2_rn(v0, v1);
                }
            }
        }
        __syncwarp();  // the rows are rewritten for the next unit
    }
}

template <int K>
void launch_stem_mma(const StemArgs& s, const float* weights, const float* bias, const NhwcTensor& y,
                     cudaStream_t stream) {
    const StemMmaWeights<K> wt = pack_stem_mma_weights<K>(weights, bias);
    StemMmaArgs a{s.x,        s.n,       s.h,        s.w_in, s.oh, s.ow, s.div_ow, s.stride_h,
                  s.stride_w, s.pad_top, s.pad_left, s.silu, s.ps, 0,    0,        1};
    KS_CHECK(int64_t{kC} * s.h * s.w_in < (int64_t{1} << 31), "conv2d_nchw_input: image too large");
    a.units_per_image = (s.oh * s.ow + 31) / 32;
    const int64_t units = int64_t{a.units_per_image} * s.n;
    KS_CHECK(units + kMaxUnitsPerWarp * kMmaThreads < (int64_t{1} << 31), "conv2d_nchw_input: batch too large");
    a.units = static_cast<int>(units);
    // Enough warps to fill the GPU (32 an SM), each on up to 8 units: its fragments are loaded once.
    int dev = 0, sms = 0;
    KS_CUDA(cudaGetDevice(&dev));
    KS_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    a.units_per_warp = std::clamp(a.units / (sms * 32), 1, kMaxUnitsPerWarp);
    const int warps = (a.units + a.units_per_warp - 1) / a.units_per_warp;
    const int blocks = (warps + kMmaThreads / 32 - 1) / (kMmaThreads / 32);
    launch_kernel(stem_conv_nchw_3x3_mma<K>, dim3(static_cast<unsigned>(blocks)), kMmaThreads, 0, stream, a, wt,
                  static_cast<__half*>(y.data));
}

template <int K>
void launch_stem(const StemArgs& a, const float* weights, const float* bias, const NhwcTensor& y, dim3 blocks,
                 cudaStream_t stream) {
    StemWeights<K> wt{};
    std::copy_n(weights, a.k * kC * kTaps, wt.w);
    std::copy_n(bias, a.k, wt.b);
    if (y.type == ElemType::kF16)
        launch_kernel(stem_conv_nchw_3x3<__half, K>, blocks, kThreads, 0, stream, a, wt, static_cast<__half*>(y.data));
    else
        launch_kernel(stem_conv_nchw_3x3<float, K>, blocks, kThreads, 0, stream, a, wt, static_cast<float*>(y.data));
}

// f16 outputs of 16-byte aligned pixels with YOLOv8's stem widths (16 n, 32 s, 48 m, 64 l) go to the
// tensor cores; others to the FMA kernel.
bool uses_mma(const ConvShape& s, ElemType out, bool aligned) {
    return out == ElemType::kF16 && aligned && (s.k == 16 || s.k == 32 || s.k == 48 || s.k == 64);
}

}  // namespace

std::string conv2d_nchw_input_kernel_name(const ConvShape& s, ElemType out, bool aligned) {
    const std::string conv = "3x3s" + std::to_string(s.stride_h);
    if (uses_mma(s, out, aligned))
        return "conv2d_nchw_input_f32_mma_m16n8k16_k" + std::to_string(s.k) + "_" + conv + "_f16_nhwc";
    return "conv2d_nchw_input_f32_direct_" + conv + (out == ElemType::kF16 ? "_f16_nhwc" : "_f32_nhwc");
}

bool conv2d_nchw_input_supported(const ConvShape& s) {
    return s.c == kC && s.kh == 3 && s.kw == 3 && s.groups == 1 && s.dil_h == 1 && s.dil_w == 1 && s.k >= 1 &&
           s.k <= kMaxK;
}

void conv2d_nchw_input(const float* x, int h, int w, const float* weights, const float* bias, const ConvShape& s,
                       bool silu, const NhwcTensor& y, cudaStream_t stream) {
    KS_CHECK(conv2d_nchw_input_supported(s), "conv2d_nchw_input: only 3-channel 3x3 convs with k <= ", kMaxK);
    KS_CHECK(x && weights && bias && y.data, "conv2d_nchw_input: missing tensor");
    KS_CHECK(y.c == s.k && y.pixel_stride >= y.c, "conv2d_nchw_input: output has ", y.c, " channels, conv ", s.k);
    // Bottom/right padding follow from y's size: taps past the image read zeros.
    KS_CHECK((y.h - 1) * s.stride_h - s.pad_top < h && (y.w - 1) * s.stride_w - s.pad_left < w,
             "conv2d_nchw_input: output ", y.h, "x", y.w, " is too large for a ", h, "x", w, " input");
    if (int64_t{y.n} * y.h * y.w == 0) return;
    const bool aligned = reinterpret_cast<uintptr_t>(y.data) % 16 == 0 && y.pixel_stride % 8 == 0;
    KS_CHECK(int64_t{y.h} * y.w < (int64_t{1} << 31) - kThreads, "conv2d_nchw_input: output image too large");
    StemArgs a{x,          y.n,        h,         w,          y.h,  y.w,     s.k,           FastDivmod(y.w),
               s.stride_h, s.stride_w, s.pad_top, s.pad_left, silu, aligned, y.pixel_stride};
    const dim3 blocks(static_cast<unsigned>((y.h * y.w + kThreads - 1) / kThreads),
                      static_cast<unsigned>(std::min(y.n, 65535)));
    // YOLOv8's stems: 16 (n), 32 (s), 48 (m), 64 (l) channels get their own kernels.
    if (uses_mma(s, y.type, aligned)) {
        switch (s.k) {
            case 16:
                return launch_stem_mma<16>(a, weights, bias, y, stream);
            case 32:
                return launch_stem_mma<32>(a, weights, bias, y, stream);
            case 48:
                return launch_stem_mma<48>(a, weights, bias, y, stream);
            default:
                return launch_stem_mma<64>(a, weights, bias, y, stream);
        }
    }
    switch (s.k) {
        case 16:
            return launch_stem<16>(a, weights, bias, y, blocks, stream);
        case 32:
            return launch_stem<32>(a, weights, bias, y, blocks, stream);
        case 48:
            return launch_stem<48>(a, weights, bias, y, blocks, stream);
        case 64:
            return launch_stem<64>(a, weights, bias, y, blocks, stream);
        default:
            return launch_stem<0>(a, weights, bias, y, blocks, stream);
    }
}

}  // namespace kestrel::cuda
