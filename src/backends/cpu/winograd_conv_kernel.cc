// Winograd F(4x4, 3x3) convolution (winograd_conv_kernel.h). Per image (the CPU plan's batch 1):
//
//   x: [C/8][H][W][8]   y, residual: [K/8][H][W][8]   (nChw8c; a channel slice of a concat buffer
//   is a pointer offset in this layout, so y may live inside a larger tensor)
//
// The T = ceil(H/4) x ceil(W/4) output tiles are processed in blocks of `tiles_per_block_`, one
// block per OpenMP iteration, each thread with its own scratch:
//   1. input transform: V[p][t][c] = (B^T d_t,c B)[p] for the block's tiles t, p = 0..35;
//   2. 36 GEMMs: M[p] (tiles x K) = V[p] (tiles x C) . U[p] (C x K), a 6x16 AVX2 register tile
//      (a tile-major V and M, contiguous per tile for the transforms, measured the same);
//   3. output transform: y = A^T M A per tile and 8 output channels, + bias, SiLU, + residual,
//      stored (edge tiles clipped to H x W).
// U (36 x C x K floats, transformed at creation) is read once per block, so blocks are as large as
// kBlockScratchBytes allows while every thread still gets a share.
#include "backends/cpu/winograd_conv_kernel.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "core/error.h"

namespace kestrel::cpu {

namespace {

size_t sz(int64_t v) { return static_cast<size_t>(v); }

// Scratch per thread for one block: V and M, 36 x tiles x (C + K) floats, within about this many
// bytes. Every block reads all of U (36 x C x K floats, 2.4 MB for 128 -> 128 channels), so larger
// blocks read it less often. On the Zen 3 development machine (512 KiB L2 per core, 32 MiB L3),
// yolov8n's 32 layers (bench/cpu/winograd_vs_direct.cc): 384 KiB 0.57-0.60 of oneDNN direct's
// time, 1 MiB 0.50, 2 MiB 0.48-0.51.
constexpr int64_t kBlockScratchBytes = 1024 * 1024;
constexpr int kGemmRows = 6;  // tiles per register tile of the GEMM

// G (6x3) of F(4x4, 3x3) with interpolation points 0, 1, -1, 2, -2 and infinity.
constexpr double kG[6][3] = {{1.0 / 4, 0, 0},
                             {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                             {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                             {1.0 / 24, 1.0 / 12, 1.0 / 6},
                             {1.0 / 24, -1.0 / 12, 1.0 / 6},
                             {0, 0, 1}};

}  // namespace

bool winograd_applies(const plan::ExecutionPlan& p, const ir::Node& n) {
    if (n.op != ir::Op::kConv || n.attrs.get_string("precision", "fp32") != "fp32") return false;
    if (n.attrs.get_string("algorithm", "") == "direct") return false;
    if (n.attrs.get_int("group", 1) != 1) return false;
    if (n.attrs.get_ints("strides", {1, 1}) != std::vector<int64_t>{1, 1}) return false;
    if (n.attrs.get_ints("dilations", {1, 1}) != std::vector<int64_t>{1, 1}) return false;
    if (n.attrs.get_ints("pads", {0, 0, 0, 0}) != std::vector<int64_t>{1, 1, 1, 1}) return false;
    const Shape& w = p.graph.value(n.inputs[1]).shape;
    const Shape& x = p.graph.value(n.inputs[0]).shape;
    if (w.size() != 4 || w[2] != 3 || w[3] != 3 || x.size() != 4 || x[0] != 1) return false;
    if (w[0] % 8 != 0 || w[1] % 8 != 0 || !p.graph.is_constant(n.inputs[1])) return false;
    const std::string act = n.attrs.get_string("activation", "");
    if (!act.empty() && act != "silu") return false;
    for (int v : {n.inputs[0], n.outputs[0], n.input(3)})
        if (v >= 0 && p.values[sz(v)].layout != plan::Layout::kBlocked8) return false;
    static const bool cpu_ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return cpu_ok;
}

// Everything below runs only where winograd_applies found AVX2 and FMA.
#pragma GCC push_options
#pragma GCC target("avx2,fma")

namespace {

// exp(x) for 8 lanes: vector_math.h's exp_poly (Cody-Waite reduction, degree-7 polynomial).
inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.7f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 q = _mm256_set1_ps(1.f / 5040.f);
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.f / 720.f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.f / 120.f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.f / 24.f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.f / 6.f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(0.5f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(q, _mm256_castsi256_ps(e));
}

inline __m256 silu8(__m256 v) {
    const __m256 one = _mm256_set1_ps(1.f);
    return _mm256_div_ps(v, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), v))));
}

// B^T applied to 6 vectors (one column or row of a 6x6 tile), in place into out[0..5].
inline void input_1d(const __m256 d[6], __m256 out[6]) {
    const __m256 four = _mm256_set1_ps(4.f), five = _mm256_set1_ps(5.f), two = _mm256_set1_ps(2.f);
    // r0 = 4 d0 - 5 d2 + d4
    out[0] = _mm256_fmadd_ps(four, d[0], _mm256_fnmadd_ps(five, d[2], d[4]));
    // r1 = -4 (d1 + d2) + d3 + d4;  r2 = 4 (d1 - d2) - d3 + d4
    __m256 s12 = _mm256_add_ps(d[1], d[2]), m12 = _mm256_sub_ps(d[1], d[2]);
    __m256 s34 = _mm256_add_ps(d[3], d[4]), m43 = _mm256_sub_ps(d[4], d[3]);
    out[1] = _mm256_fnmadd_ps(four, s12, s34);
    out[2] = _mm256_fmadd_ps(four, m12, m43);
    // r3 = 2 (d3 - d1) + d4 - d2;  r4 = 2 (d1 - d3) + d4 - d2
    __m256 m31 = _mm256_sub_ps(d[3], d[1]), m42 = _mm256_sub_ps(d[4], d[2]);
    out[3] = _mm256_fmadd_ps(two, m31, m42);
    out[4] = _mm256_fnmadd_ps(two, m31, m42);
    // r5 = 4 d1 - 5 d3 + d5
    out[5] = _mm256_fmadd_ps(four, d[1], _mm256_fnmadd_ps(five, d[3], d[5]));
}

// A^T applied to 6 vectors: 4 outputs.
inline void output_1d(const __m256 m[6], __m256 out[4]) {
    const __m256 two = _mm256_set1_ps(2.f), four = _mm256_set1_ps(4.f), eight = _mm256_set1_ps(8.f);
    __m256 s12 = _mm256_add_ps(m[1], m[2]), d12 = _mm256_sub_ps(m[1], m[2]);
    __m256 s34 = _mm256_add_ps(m[3], m[4]), d34 = _mm256_sub_ps(m[3], m[4]);
    out[0] = _mm256_add_ps(_mm256_add_ps(m[0], s12), s34);
    out[1] = _mm256_fmadd_ps(two, d34, d12);
    out[2] = _mm256_fmadd_ps(four, s34, s12);
    out[3] = _mm256_add_ps(_mm256_fmadd_ps(eight, d34, d12), m[5]);
}

// c[r][0..16) = sum_i a[r][i] * b[i][0..16) for r < 6 (a rows `lda` apart, b rows `ldb`, c rows
// `ldc`): 12 accumulators, 2 loads of b and 6 broadcasts of a per step. Written out by hand: GCC
// keeps an accumulator array in memory (a store per FMA), these variables in registers.
inline void gemm_6x16(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t depth) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256 c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    // Two row pointers and one stride: every address is base + stride * {0, 1, 2} + i, which x86
    // encodes directly (six pointers made GCC spill general registers in the loop).
    const float *a0 = a, *a3 = a + 3 * lda;
    for (int64_t i = 0; i < depth; ++i, b += ldb, ++a0, ++a3) {
        const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        __m256 av = _mm256_broadcast_ss(a0);
        c00 = _mm256_fmadd_ps(av, b0, c00);
        c01 = _mm256_fmadd_ps(av, b1, c01);
        av = _mm256_broadcast_ss(a0 + lda);
        c10 = _mm256_fmadd_ps(av, b0, c10);
        c11 = _mm256_fmadd_ps(av, b1, c11);
        av = _mm256_broadcast_ss(a0 + 2 * lda);
        c20 = _mm256_fmadd_ps(av, b0, c20);
        c21 = _mm256_fmadd_ps(av, b1, c21);
        av = _mm256_broadcast_ss(a3);
        c30 = _mm256_fmadd_ps(av, b0, c30);
        c31 = _mm256_fmadd_ps(av, b1, c31);
        av = _mm256_broadcast_ss(a3 + lda);
        c40 = _mm256_fmadd_ps(av, b0, c40);
        c41 = _mm256_fmadd_ps(av, b1, c41);
        av = _mm256_broadcast_ss(a3 + 2 * lda);
        c50 = _mm256_fmadd_ps(av, b0, c50);
        c51 = _mm256_fmadd_ps(av, b1, c51);
    }
    _mm256_storeu_ps(c, c00);
    _mm256_storeu_ps(c + 8, c01);
    _mm256_storeu_ps(c + ldc, c10);
    _mm256_storeu_ps(c + ldc + 8, c11);
    _mm256_storeu_ps(c + 2 * ldc, c20);
    _mm256_storeu_ps(c + 2 * ldc + 8, c21);
    _mm256_storeu_ps(c + 3 * ldc, c30);
    _mm256_storeu_ps(c + 3 * ldc + 8, c31);
    _mm256_storeu_ps(c + 4 * ldc, c40);
    _mm256_storeu_ps(c + 4 * ldc + 8, c41);
    _mm256_storeu_ps(c + 5 * ldc, c50);
    _mm256_storeu_ps(c + 5 * ldc + 8, c51);
}

// The same for 8 columns (a K that is an odd multiple of 8).
inline void gemm_6x8(const float* a, int64_t lda, const float* b, int64_t ldb, float* c, int64_t ldc, int64_t depth) {
    __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
    for (int64_t i = 0; i < depth; ++i, b += ldb) {
        const __m256 b0 = _mm256_loadu_ps(b);
        c0 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + i), b0, c0);
        c1 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + lda + i), b0, c1);
        c2 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 2 * lda + i), b0, c2);
        c3 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 3 * lda + i), b0, c3);
        c4 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 4 * lda + i), b0, c4);
        c5 = _mm256_fmadd_ps(_mm256_broadcast_ss(a + 5 * lda + i), b0, c5);
    }
    _mm256_storeu_ps(c, c0);
    _mm256_storeu_ps(c + ldc, c1);
    _mm256_storeu_ps(c + 2 * ldc, c2);
    _mm256_storeu_ps(c + 3 * ldc, c3);
    _mm256_storeu_ps(c + 4 * ldc, c4);
    _mm256_storeu_ps(c + 5 * ldc, c5);
}

// c[0..w) = sum_i a[i] * b[i][0..w) for a panel b of width w (16 or 8): one tile's row of the GEMM.
inline void gemm_1xw(const float* a, const float* b, int64_t w, float* c, int64_t depth) {
    __m256 c0 = _mm256_setzero_ps(), c1 = c0;
    for (int64_t i = 0; i < depth; ++i, b += w) {
        const __m256 av = _mm256_broadcast_ss(a + i);
        c0 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b), c0);
        if (w == 16) c1 = _mm256_fmadd_ps(av, _mm256_loadu_ps(b + 8), c1);
    }
    _mm256_storeu_ps(c, c0);
    if (w == 16) _mm256_storeu_ps(c + 8, c1);
}

class WinogradConvKernel final : public Kernel {
   public:
    WinogradConvKernel(const plan::ExecutionPlan& plan, const ir::Node& n) {
        const ir::Graph& g = plan.graph;
        const Shape& xs = g.value(n.inputs[0]).shape;
        const ir::Tensor& w = *g.value(n.inputs[1]).constant;
        c_ = xs[1];
        h_ = xs[2];
        w_ = xs[3];
        k_ = w.shape[0];
        src_id_ = n.inputs[0];
        dst_id_ = n.outputs[0];
        residual_id_ = n.input(3);
        silu_ = n.attrs.get_string("activation", "") == "silu";
        tiles_y_ = (h_ + 3) / 4;
        tiles_x_ = (w_ + 3) / 4;
        const int64_t tiles = tiles_y_ * tiles_x_;

        // U[p] = (G g[k][c] G^T)[p], in double: the weights' rounding is then the only one. Stored
        // as column panels of 16 output channels (see gemm): (c, k) of p lives in the panel that
        // starts at k0 = k - k % 16, whose rows are `width` floats.
        auto u_index = [&](int64_t p, int64_t c, int64_t k) {
            const int64_t k0 = k - k % 16, width = std::min<int64_t>(16, k_ - k0);
            return sz(p * c_ * k_ + k0 * c_ + c * width + (k - k0));
        };
        const std::vector<float> wf = w.to_floats();
        u_.assign(sz(36 * c_ * k_), 0.f);
        for (int64_t k = 0; k < k_; ++k)
            for (int64_t c = 0; c < c_; ++c) {
                const float* f = wf.data() + (k * c_ + c) * 9;
                double gg[6][3];  // G g
                for (int i = 0; i < 6; ++i)
                    for (int j = 0; j < 3; ++j)
                        gg[i][j] = kG[i][0] * f[0 * 3 + j] + kG[i][1] * f[1 * 3 + j] + kG[i][2] * f[2 * 3 + j];
                for (int i = 0; i < 6; ++i)
                    for (int j = 0; j < 6; ++j)
                        u_[u_index(i * 6 + j, c, k)] =
                            static_cast<float>(gg[i][0] * kG[j][0] + gg[i][1] * kG[j][1] + gg[i][2] * kG[j][2]);
            }
        bias_.assign(sz(k_), 0.f);
        if (n.input(2) >= 0) {
            const std::vector<float> b = g.value(n.input(2)).constant->to_floats();
            std::copy(b.begin(), b.end(), bias_.begin());
        }

        // Tiles per block: within the scratch budget, and blocks spread evenly over the threads (a
        // 20x20 map has only 25 tiles: 13 and 12, not 18 and 7).
        const int threads = std::max(1, omp_get_max_threads());
        const int64_t cap =
            std::max<int64_t>(kGemmRows, kBlockScratchBytes / (36 * (c_ + k_) * static_cast<int64_t>(sizeof(float))));
        int64_t blocks = (tiles + cap - 1) / cap;
        blocks = (blocks + threads - 1) / threads * threads;
        tiles_per_block_ = (tiles + blocks - 1) / blocks;
        blocks_ = (tiles + tiles_per_block_ - 1) / tiles_per_block_;
        threads_ = threads;
    }

    void run(const Addresses& addr) override {
        const float* x = reinterpret_cast<const float*>(addr[sz(src_id_)]);
        float* y = reinterpret_cast<float*>(addr[sz(dst_id_)]);
        const float* res = residual_id_ >= 0 ? reinterpret_cast<const float*>(addr[sz(residual_id_)]) : nullptr;
        const size_t need = sz(36 * tiles_per_block_ * (c_ + k_));
#pragma omp parallel num_threads(threads_)
        {
            // One scratch per OpenMP thread, shared by every Winograd conv that thread runs (a
            // session's kernels run one after another; each session's runs use their own threads).
            thread_local std::vector<float> scratch;
            if (scratch.size() < need) scratch.resize(need);
            float* v = scratch.data();
            float* m = v + 36 * tiles_per_block_ * c_;
#pragma omp for schedule(static)
            for (int64_t b = 0; b < blocks_; ++b) {
                const int64_t first = b * tiles_per_block_;
                const int64_t count = std::min(tiles_per_block_, tiles_y_ * tiles_x_ - first);
                input_transform(x, first, count, v);
                for (int p = 0; p < 36; ++p)
                    gemm(p, v + p * tiles_per_block_ * c_, m + p * tiles_per_block_ * k_, count);
                output_transform(m, first, count, res, y);
            }
        }
    }

   private:
    // V[p][t][c] for the block's `count` tiles.
    void input_transform(const float* x, int64_t first, int64_t count, float* v) const {
        const int64_t plane = h_ * w_ * 8;
        for (int64_t t = 0; t < count; ++t) {
            const int64_t oy = (first + t) / tiles_x_ * 4 - 1, ox = (first + t) % tiles_x_ * 4 - 1;
            const bool interior = oy >= 0 && ox >= 0 && oy + 6 <= h_ && ox + 6 <= w_;
            for (int64_t cb = 0; cb < c_ / 8; ++cb) {
                const float* src = x + cb * plane;
                __m256 d[6][6];
                for (int i = 0; i < 6; ++i)
                    for (int j = 0; j < 6; ++j) {
                        const int64_t iy = oy + i, ix = ox + j;
                        d[i][j] = interior || (iy >= 0 && iy < h_ && ix >= 0 && ix < w_)
                                      ? _mm256_loadu_ps(src + (iy * w_ + ix) * 8)
                                      : _mm256_setzero_ps();
                    }
                // Columns first (B^T d), then rows ((B^T d) B).
                __m256 col[6], tcol[6], bt[6][6];
                for (int j = 0; j < 6; ++j) {
                    for (int i = 0; i < 6; ++i) col[i] = d[i][j];
                    input_1d(col, tcol);
                    for (int i = 0; i < 6; ++i) bt[i][j] = tcol[i];
                }
                for (int i = 0; i < 6; ++i) {
                    __m256 row[6];
                    input_1d(bt[i], row);
                    for (int j = 0; j < 6; ++j)
                        _mm256_storeu_ps(v + (i * 6 + j) * tiles_per_block_ * c_ + t * c_ + cb * 8, row[j]);
                }
            }
        }
    }

    // M[p] (tiles x K) = V[p] (tiles x C) . U[p] (C x K) for one p: 6 tiles x 16 channels per
    // register tile (12 accumulators), 8 channels for a K that is an odd multiple of 8; the last
    // count % 6 tiles one at a time.
    // U[p] is stored as column panels of 16 (the last of 8 when K is an odd multiple of 8), each
    // C x 16 contiguous: a panel (4 KiB at C = 64) stays in L1 while every tile row of the block
    // passes under it.
    void gemm(int p, const float* v, float* m, int64_t count) const {
        for (int64_t k = 0; k < k_; k += 16) {
            const int64_t w = std::min<int64_t>(16, k_ - k);
            const float* panel = u_.data() + p * c_ * k_ + k * c_;
            int64_t r = 0;
            for (; r + kGemmRows <= count; r += kGemmRows) {
                if (w == 16) {
                    gemm_6x16(v + r * c_, c_, panel, 16, m + r * k_ + k, k_, c_);
                } else {
                    gemm_6x8(v + r * c_, c_, panel, 8, m + r * k_ + k, k_, c_);
                }
            }
            for (; r < count; ++r) gemm_1xw(v + r * c_, panel, w, m + r * k_ + k, c_);
        }
    }

    void output_transform(const float* m, int64_t first, int64_t count, const float* res, float* y) const {
        const int64_t plane = h_ * w_ * 8;
        for (int64_t t = 0; t < count; ++t) {
            const int64_t oy = (first + t) / tiles_x_ * 4, ox = (first + t) % tiles_x_ * 4;
            const int64_t rows = std::min<int64_t>(4, h_ - oy), cols = std::min<int64_t>(4, w_ - ox);
            for (int64_t kb = 0; kb < k_ / 8; ++kb) {
                __m256 at[4][6];  // A^T M: rows of the result, per column of M
                for (int j = 0; j < 6; ++j) {
                    __m256 col[6], out[4];
                    for (int i = 0; i < 6; ++i)
                        col[i] = _mm256_loadu_ps(m + (i * 6 + j) * tiles_per_block_ * k_ + t * k_ + kb * 8);
                    output_1d(col, out);
                    for (int i = 0; i < 4; ++i) at[i][j] = out[i];
                }
                const __m256 bias = _mm256_loadu_ps(bias_.data() + kb * 8);
                for (int64_t i = 0; i < rows; ++i) {
                    __m256 out[4];
                    output_1d(at[i], out);
                    for (int64_t j = 0; j < cols; ++j) {
                        __m256 r = _mm256_add_ps(out[j], bias);
                        if (silu_) r = silu8(r);
                        const int64_t off = kb * plane + ((oy + i) * w_ + ox + j) * 8;
                        if (res) r = _mm256_add_ps(r, _mm256_loadu_ps(res + off));
                        _mm256_storeu_ps(y + off, r);
                    }
                }
            }
        }
    }

    std::vector<float> u_, bias_;
    int64_t c_ = 0, h_ = 0, w_ = 0, k_ = 0, tiles_y_ = 0, tiles_x_ = 0, tiles_per_block_ = 0, blocks_ = 0;
    int src_id_ = -1, dst_id_ = -1, residual_id_ = -1, threads_ = 1;
    bool silu_ = false;
};

}  // namespace

std::unique_ptr<Kernel> make_winograd_conv_kernel(const plan::ExecutionPlan& plan, const ir::Node& n) {
    return std::make_unique<WinogradConvKernel>(plan, n);
}

#pragma GCC pop_options

}  // namespace kestrel::cpu
