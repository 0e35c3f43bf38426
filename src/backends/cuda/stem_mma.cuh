// The image stem (3 channels, 3x3, float32 NCHW image) on the tensor cores: a pixel's 27 taps
// (k = (c, ky, kx), padded to 32) as f16; 16 pixels times 8 filters are two m16n8k16 MMAs, B
// fragments packed on the host. stem_conv.cu's stem kernel has a lane gather its pixel's taps from
// global memory into a shared row (gather_stem_taps, store_stem_row, stem_a_fragments); conv2d.cu's
// stem + first-conv kernel builds A from the image in shared memory and takes the bias in the MMA
// (pack_stem_mma_fragments_half_bias). Both use the fragments' packing and stem_mma.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "backends/cuda/mma_sync.cuh"
#include "core/half.h"

namespace kestrel::cuda {

constexpr int kStemC = 3, kStemTaps = 9;
constexpr int kStemRowHalves = 40;  // a pixel's shared row: 32 taps + 8 (conflict-free ldmatrix)

// B fragments of the filters as mma's "col" operand, f16, k = (c, ky, kx) padded 27 -> 32:
// frag[nb][ks][lane] = {W[8 nb + g][16 ks + 2 t4 ..+1], W[8 nb + g][16 ks + 2 t4 + 8 ..+9]}. A lane
// reads only its own entries, once per kernel.
template <int K>
struct StemMmaFragments {
    uint32_t frag[K / 8][2][32][2];
};
template <int K>
struct StemMmaWeights : StemMmaFragments<K> {
    float b[K];
};

// rows[k][t]: filter k's value at k index t (host), rounded to f16 into the fragments.
template <int K>
StemMmaFragments<K> pack_stem_mma_fragments(const float (&rows)[K][32]) {
    StemMmaFragments<K> f{};
    for (int nb = 0; nb < K / 8; ++nb)
        for (int ks = 0; ks < 2; ++ks)
            for (int lane = 0; lane < 32; ++lane)
                for (int j = 0; j < 2; ++j) {
                    const int k = 8 * nb + lane / 4, t0 = 16 * ks + 2 * (lane % 4) + 8 * j;
                    f.frag[nb][ks][lane][j] =
                        uint32_t{float_to_half(rows[k][t0])} | uint32_t{float_to_half(rows[k][t0 + 1])} << 16;
                }
    return f;
}

// weights: OIHW float32 [K, 3, 3, 3], bias float32[K] (host); k indices 27..31 zero.
template <int K>
StemMmaWeights<K> pack_stem_mma_weights(const float* weights, const float* bias) {
    float rows[K][32] = {};
    for (int k = 0; k < K; ++k)
        for (int t = 0; t < kStemC * kStemTaps; ++t) rows[k][t] = weights[k * kStemC * kStemTaps + t];
    StemMmaWeights<K> wt{};
    static_cast<StemMmaFragments<K>&>(wt) = pack_stem_mma_fragments<K>(rows);
    for (int k = 0; k < K; ++k) wt.b[k] = bias[k];
    return wt;
}

// For an MMA that gives h = (conv + bias) / 2, a SiLU epilogue's input (silu_approx_of_half): the
// filters halved (exact in f16) and the halved bias at k = 27 and 28 as two f16 parts, hi and the
// rest lo (their sum is the float32 value to ~2^-22 of it), where the A rows hold 1 at k = 27 and
// 28 (stem_bias_taps).
template <int K>
StemMmaFragments<K> pack_stem_mma_fragments_half_bias(const float* weights, const float* bias) {
    float rows[K][32] = {};
    for (int k = 0; k < K; ++k) {
        for (int t = 0; t < kStemC * kStemTaps; ++t) rows[k][t] = 0.5f * weights[k * kStemC * kStemTaps + t];
        const float half_bias = 0.5f * bias[k], hi = half_to_float(float_to_half(half_bias));
        rows[k][kStemC * kStemTaps] = hi;
        rows[k][kStemC * kStemTaps + 1] = half_bias - hi;
    }
    return pack_stem_mma_fragments<K>(rows);
}

// The 27 taps (c, ky, kx) of the 3x3 window whose top-left is pixel (iy0, ix0) of `image` (3 planes
// of h x w floats), zeros outside the image (the padding) and for k >= 27, as 16 f16 pairs. The
// loads of taps outside read the nearest pixel instead (rows and columns clamped once), so every
// load is unconditional at a line pointer plus a column: a tap costs an address add, the load and
// a select, where predicated loads had the compiler form each tap's 64-bit address apart.
__device__ __forceinline__ void gather_stem_taps(const float* image, int h, int w, int iy0, int ix0,
                                                 uint32_t (&packed)[16]) {
    bool row_in[3], col_in[3];
    int row_at[3], col_at[3];
#pragma unroll
    for (int k = 0; k < 3; ++k) {
        row_in[k] = static_cast<unsigned>(iy0 + k) < static_cast<unsigned>(h);
        col_in[k] = static_cast<unsigned>(ix0 + k) < static_cast<unsigned>(w);
        row_at[k] = min(max(iy0 + k, 0), h - 1) * w;
        col_at[k] = min(max(ix0 + k, 0), w - 1);
    }
    const int plane = h * w;
    float in[32];
#pragma unroll
    for (int c = 0; c < kStemC; ++c)
#pragma unroll
        for (int ky = 0; ky < 3; ++ky) {
            const float* line = image + (c * plane + row_at[ky]);
#pragma unroll
            for (int kx = 0; kx < 3; ++kx) {
                const float v = __ldg(line + col_at[kx]);
                in[(c * 3 + ky) * 3 + kx] = row_in[ky] && col_in[kx] ? v : 0.f;
            }
        }
#pragma unroll
    for (int k = kStemC * kStemTaps; k < 32; ++k) in[k] = 0.f;
#pragma unroll
    for (int i = 0; i < 16; ++i) {
        const __half2 h2 = __floats2half2_rn(in[2 * i], in[2 * i + 1]);
        packed[i] = *reinterpret_cast<const uint32_t*>(&h2);
    }
}

// The lane's gathered taps into its row of the warp's 32 rows (`rows`, kStemRowHalves halves each).
__device__ __forceinline__ void store_stem_row(__half* rows, int lane, const uint32_t (&packed)[16]) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
        reinterpret_cast<uint4*>(rows + lane * kStemRowHalves)[i] =
            make_uint4(packed[4 * i], packed[4 * i + 1], packed[4 * i + 2], packed[4 * i + 3]);
}

// Rows 16 mb .. 16 mb + 15 of the warp's rows (shared address rows_base) times filters 8 nb .. 8 nb
// + 7 (the lane's B fragments b[ks] of StemMmaWeights::frag[nb]): one m16n8 accumulator, from zero.
// afr: the rows' A fragments (stem_a_fragments), loaded once for all nb.
__device__ __forceinline__ void stem_a_fragments(uint32_t rows_base, int mb, int lane, uint32_t (&afr)[2][4]) {
#pragma unroll
    for (int ks = 0; ks < 2; ++ks)
        ldmatrix_x4(afr[ks], rows_base + static_cast<uint32_t>(
                                             ((16 * mb + lane % 16) * kStemRowHalves + 16 * ks + 8 * (lane / 16)) * 2));
}
__device__ __forceinline__ void stem_mma(float (&d)[4], const uint32_t (&afr)[2][4], const uint32_t (&b)[2][2]) {
    d[0] = d[1] = d[2] = d[3] = 0.f;
    mma_16816(d, afr[0], b[0][0], b[0][1]);
    mma_16816(d, afr[1], b[1][0], b[1][1]);
}

}  // namespace kestrel::cuda
