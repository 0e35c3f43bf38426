// The letterbox kernel: one thread per canvas pixel computes its three bytes exactly as the CPU
// resize does (src/yolo/preprocess/letterbox.cc mirrors OpenCV step by step; this file mirrors that
// code) and writes them as floats into the three NCHW planes (coalesced along x). Every floating-
// point step that decides a tap uses an explicit round-to-nearest intrinsic: nvcc would otherwise
// contract `(d + 0.5) * scale - 0.5` into one fused multiply-add and round differently from the CPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <cmath>

#include "backends/cuda/letterbox.h"
#include "backends/cuda/tensors.h"

namespace kestrel::cuda {
namespace {

constexpr int kPad = 114;

struct Tap {
    int first, second, w0, w1;
};

// saturate_cast<short>(weight * INTER_RESIZE_COEF_SCALE), rounded half to even like cvRound.
__device__ __forceinline__ int fixed_weight(float weight) {
    return min(max(__float2int_rn(__fmul_rn(weight, 2048.0f)), -32768), 32767);
}

// INTER_LINEAR's source position of destination coordinate d: (d + 0.5) * scale - 0.5 in double,
// rounded to float, split into the pixel index and the fraction towards the next pixel.
__device__ __forceinline__ void source_position(int d, double scale, int* index, float* fraction) {
    const float f = __double2float_rn(__dadd_rn(__dmul_rn(static_cast<double>(d) + 0.5, scale), -0.5));
    *index = static_cast<int>(floorf(f));
    *fraction = __fsub_rn(f, static_cast<float>(*index));
}

// Columns off an image edge sample the edge pixel with weights (1, 0).
__device__ __forceinline__ Tap column_tap(int d, double scale, int size) {
    int index;
    float fraction;
    source_position(d, scale, &index, &fraction);
    if (index < 0) index = 0, fraction = 0.0f;
    if (index >= size - 1) index = size - 1, fraction = 0.0f;
    return {index, min(index + 1, size - 1), fixed_weight(__fsub_rn(1.0f, fraction)), fixed_weight(fraction)};
}

// Rows clamp only the index and keep their weights (OpenCV's resizeGeneric_Invoker).
__device__ __forceinline__ Tap row_tap(int d, double scale, int size) {
    int index;
    float fraction;
    source_position(d, scale, &index, &fraction);
    return {min(max(index, 0), size - 1), min(max(index + 1, 0), size - 1), fixed_weight(__fsub_rn(1.0f, fraction)),
            fixed_weight(fraction)};
}

__global__ void letterbox_kernel(const uint8_t* __restrict__ src, int64_t pitch, LetterboxParams p,
                                 float* __restrict__ dst) {
    const int x = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
    const int y = static_cast<int>(blockIdx.y * blockDim.y + threadIdx.y);
    if (x >= p.out_w || y >= p.out_h) return;
    int v[3] = {kPad, kPad, kPad};
    const int dx = x - p.left, dy = y - p.top;
    if (dx >= 0 && dx < p.new_w && dy >= 0 && dy < p.new_h) {
        if (p.resize == LetterboxParams::Resize::kCopy) {
            const uint8_t* s = src + dy * pitch + dx * 3;
            for (int c = 0; c < 3; ++c) v[c] = s[c];
        } else if (p.resize == LetterboxParams::Resize::kHalve) {
            // resizeAreaFast_ 2x2: (sum + 2) >> 2.
            const uint8_t* s0 = src + (2 * dy) * pitch + (2 * dx) * 3;
            const uint8_t* s1 = s0 + pitch;
            for (int c = 0; c < 3; ++c) v[c] = (s0[c] + s0[3 + c] + s1[c] + s1[3 + c] + 2) >> 2;
        } else {
            const Tap col = column_tap(dx, p.scale_x, p.src_w);
            const Tap row = row_tap(dy, p.scale_y, p.src_h);
            const uint8_t* upper = src + row.first * pitch;
            const uint8_t* lower = src + row.second * pitch;
            for (int c = 0; c < 3; ++c) {
                // HResizeLinear's exact integer sums, then VResizeLinear's fixed-point blend.
                const int u = upper[col.first * 3 + c] * col.w0 + upper[col.second * 3 + c] * col.w1;
                const int l = lower[col.first * 3 + c] * col.w0 + lower[col.second * 3 + c] * col.w1;
                v[c] = static_cast<uint8_t>((((row.w0 * (u >> 4)) >> 16) + ((row.w1 * (l >> 4)) >> 16) + 2) >> 2);
            }
        }
    }
    const int64_t plane = static_cast<int64_t>(p.out_h) * p.out_w;
    float* out = dst + static_cast<int64_t>(y) * p.out_w + x;
    // Ultralytics' im /= 255: a correctly rounded division, as on the CPU.
    for (int c = 0; c < 3; ++c) out[c * plane] = __fdiv_rn(static_cast<float>(v[c]), 255.0f);
}

}  // namespace

LetterboxParams letterbox_params(int src_w, int src_h, int out_h, int out_w) {
    KS_CHECK(src_w > 0 && src_h > 0, "letterbox: source image is empty (", src_w, "x", src_h, ")");
    KS_CHECK(out_w > 0 && out_h > 0, "letterbox: output size ", out_w, "x", out_h, " must be positive");
    // yolo::letterbox's rule, in the same double arithmetic (Python floats, round half to even).
    const double r = std::min(static_cast<double>(out_h) / src_h, static_cast<double>(out_w) / src_w);
    LetterboxParams p;
    p.src_w = src_w, p.src_h = src_h, p.out_w = out_w, p.out_h = out_h;
    p.new_w = static_cast<int>(std::nearbyint(src_w * r));
    p.new_h = static_cast<int>(std::nearbyint(src_h * r));
    KS_CHECK(p.new_w > 0 && p.new_h > 0, "letterbox: a ", src_w, "x", src_h, " image shrinks to nothing at ", out_w,
             "x", out_h);
    p.top = static_cast<int>(std::nearbyint((out_h - p.new_h) / 2.0 - 0.1));
    p.left = static_cast<int>(std::nearbyint((out_w - p.new_w) / 2.0 - 0.1));
    p.ratio = static_cast<float>(r);
    if (p.new_w == src_w && p.new_h == src_h) return p;
    // yolo::resize_linear: OpenCV's scale factors, and its exact-2x2 test (the double round trip).
    const double inv_x = static_cast<double>(p.new_w) / src_w, inv_y = static_cast<double>(p.new_h) / src_h;
    p.scale_x = 1.0 / inv_x;
    p.scale_y = 1.0 / inv_y;
    const double ix = std::nearbyint(p.scale_x), iy = std::nearbyint(p.scale_y);
    const bool integer = std::abs(p.scale_x - ix) < DBL_EPSILON && std::abs(p.scale_y - iy) < DBL_EPSILON;
    p.resize = integer && ix == 2 && iy == 2 ? LetterboxParams::Resize::kHalve : LetterboxParams::Resize::kLinear;
    return p;
}

void letterbox_to_nchw(const uint8_t* src, int64_t src_pitch, const LetterboxParams& p, float* dst,
                       cudaStream_t stream) {
    KS_CHECK(src_pitch >= static_cast<int64_t>(p.src_w) * 3, "letterbox: row pitch ", src_pitch, " is less than ",
             p.src_w, " RGB pixels");
    const dim3 block(32, 8);
    const dim3 grid(static_cast<unsigned>((p.out_w + 31) / 32), static_cast<unsigned>((p.out_h + 7) / 8));
    letterbox_kernel<<<grid, block, 0, stream>>>(src, src_pitch, p, dst);
    KS_CUDA(cudaGetLastError());
}

}  // namespace kestrel::cuda
