// The fused Detect-head decode (see yolo_decode.h). Memory-bound: per anchor 4R + nc channels in
// (f16 or f32) and 4 + nc floats out. The two sides want different orders: NHWC makes one anchor's
// channels contiguous (read them with 16-byte copies), while y [n, 4 + nc, A] makes one channel's
// anchors contiguous (write along anchors). So a block takes a tile of 64 anchors of one level and
// one image and transposes through shared memory:
//   1. the tile's channels, anchor-major, into shared rows (cp.async 16-byte copies when aligned);
//   2. 4 x 64 threads compute the DFL distances (softmax expectation over R bins) into shared;
//      meanwhile class groups of 16 bytes become sigmoids written along anchors (coalesced);
//   3. 64 threads turn distances, anchors and strides into the box rows.
// Shared rows are an odd number of 16-byte units long, so the 16-byte reads of eight consecutive
// anchors in phase 2 hit eight different bank groups (no conflicts). Arithmetic is float32, with
// full-precision expf on float32 maps (decode_exp): the f32 engine matches the reference to ~1e-7.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "backends/cuda/device_convert.cuh"
#include "backends/cuda/fast_divmod.h"
#include "backends/cuda/launch.cuh"
#include "backends/cuda/mma_sync.cuh"
#include "backends/cuda/yolo_decode.h"
#include "core/half.h"

namespace kestrel::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kTile = 64;  // anchors per block; kThreads == 4 * kTile: one DFL distance per thread
constexpr int kMaxLevels = 8;
constexpr int kMaxRegMax = 64;
static_assert(kThreads == 4 * kTile, "phase 2 gives each thread one (side, anchor)");

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

struct LevelArgs {
    const void* data = nullptr;
    int64_t pixel_stride = 0;
    int64_t hw = 0;
    int64_t first_anchor = 0;  // anchors of the levels before this one
    int first_tile = 0;        // tiles of the levels before this one
};

struct DecodeArgs {
    LevelArgs level[kMaxLevels];
    int num_levels = 0;
    int reg_max = 0, nc = 0;
    int c = 0;    // channels per anchor: 4 * reg_max + nc
    int row = 0;  // shared row of one anchor, in elements
    int64_t anchors_total = 0;
    const float* anchors = nullptr;
    const float* strides = nullptr;
    const float* dfl = nullptr;
    float* y = nullptr;
    int64_t ys_n = 0, ys_c = 0, ys_a = 0;
};

__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

// G consecutive shared elements (16 bytes, 16-byte aligned) as floats in one load.
template <typename T, int G>
__device__ __forceinline__ void load16(const T* p, float (&out)[G]) {
    static_assert(G * sizeof(T) == 16, "one 16-byte vector");
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int k = 0; k < G; ++k) out[k] = to_float(e[k]);
}

// exp and quotient of the decode: full precision on float32 rows (the f32 engine matches the
// reference to ~1e-7); on f16 rows, whose logits already carry f16 rounding (2^-11), the SFU's
// ex2.approx and rcp.approx (relative error ~2^-22) at a fraction of the instructions.
template <typename T>
__device__ __forceinline__ float decode_exp(float x) {
    if constexpr (std::is_same_v<T, float>) {
        return expf(x);
    } else {
        return __expf(x);
    }
}
template <typename T>
__device__ __forceinline__ float decode_div(float a, float b) {
    if constexpr (std::is_same_v<T, float>) {
        return a / b;
    } else {
        return __fdividef(a, b);
    }
}

// sum_k w_k softmax_k(row[0..R)): the expected bin of one side's distance distribution.
// kR > 0: R == kR, held in registers and read in 16-byte vectors; kR == 0: any R, scalar reads.
template <typename T, int kR>
__device__ __forceinline__ float dfl_distance(const T* row, int reg_max, const float* w) {
    float m = -INFINITY, s = 0.f, e = 0.f;
    if constexpr (kR > 0) {
        constexpr int G = 16 / static_cast<int>(sizeof(T));
        static_assert(kR % G == 0, "whole vectors");
        float v[kR];
#pragma unroll
        for (int k0 = 0; k0 < kR; k0 += G) {
            float g[G];
            load16<T, G>(row + k0, g);
#pragma unroll
            for (int k = 0; k < G; ++k) v[k0 + k] = g[k];
        }
#pragma unroll
        for (int k = 0; k < kR; ++k) m = fmaxf(m, v[k]);
#pragma unroll
        for (int k = 0; k < kR; ++k) {
            const float p = decode_exp<T>(v[k] - m);
            s += p;
            e = fmaf(p, w[k], e);
        }
    } else {
        for (int k = 0; k < reg_max; ++k) m = fmaxf(m, to_float(row[k]));
        for (int k = 0; k < reg_max; ++k) {
            const float p = decode_exp<T>(to_float(row[k]) - m);
            s += p;
            e = fmaf(p, w[k], e);
        }
    }
    return decode_div<T>(e, s);
}

// Phases 2 and 3 of a tile whose `count` anchors' channels are in shared rows (T: the rows' type),
// anchors p0.. of level lv of image n; w: the DFL weights in shared memory.
template <typename T, int kR>
__device__ __forceinline__ void decode_tile(const DecodeArgs& p, const LevelArgs& lv, const T* rows, const float* w,
                                            float (&dist)[4][kTile], int64_t n, int64_t p0, int count) {
    constexpr int G = 16 / static_cast<int>(sizeof(T));  // class channels per task: one 16-byte vector
    const int tid = static_cast<int>(threadIdx.x);
    // 2a. DFL: thread (side j, anchor t).
    {
        const int j = tid / kTile, t = tid % kTile;
        if (t < count) dist[j][t] = dfl_distance<T, kR>(rows + t * p.row + j * p.reg_max, p.reg_max, w);
    }
    // 2b. Classes: task (group of G channels, anchor t); a warp writes 32 consecutive anchors of a
    //     channel row per store.
    float* yn = p.y + n * p.ys_n;
    const int64_t a0 = lv.first_anchor + p0;
    const int groups = (p.nc + G - 1) / G;
    for (int q = tid; q < groups * kTile; q += kThreads) {
        const int g = q / kTile, t = q % kTile;
        if (t >= count) continue;
        const int c0 = g * G;
        const T* cls = rows + t * p.row + 4 * p.reg_max + c0;
        float v[G];
        if constexpr (kR > 0) {
            // 4 kR channels are whole vectors, and rows are padded to whole vectors: a full read
            // of the last group stays inside the row (lanes past nc are ignored).
            load16<T, G>(cls, v);
        } else {
#pragma unroll
            for (int k = 0; k < G; ++k) v[k] = c0 + k < p.nc ? to_float(cls[k]) : 0.f;
        }
        float* out = yn + (4 + c0) * p.ys_c + (a0 + t) * p.ys_a;
        const int valid = c0 + G <= p.nc ? G : p.nc - c0;  // a whole group: no test per channel
#pragma unroll
        for (int k = 0; k < G; ++k, out += p.ys_c)
            if (valid == G || k < valid) *out = decode_div<T>(1.f, 1.f + decode_exp<T>(-v[k]));
    }
    __syncthreads();

    // 3. Boxes: (x1, y1) = anchor - (l, t), (x2, y2) = anchor + (r, b); centre and size, in pixels.
    if (tid < count) {
        const int64_t a = a0 + tid;
        const float ax = p.anchors[a], ay = p.anchors[p.anchors_total + a], stride = p.strides[a];
        const float x1 = ax - dist[0][tid], y1 = ay - dist[1][tid];
        const float x2 = ax + dist[2][tid], y2 = ay + dist[3][tid];
        float* out = yn + a * p.ys_a;
        out[0] = (x1 + x2) / 2.f * stride;
        out[p.ys_c] = (y1 + y2) / 2.f * stride;
        out[2 * p.ys_c] = (x2 - x1) * stride;
        out[3 * p.ys_c] = (y2 - y1) * stride;
    }
}

// This tile's level: the last one starting at or before it. The kernels take their arguments as
// __grid_constant__, so p.level[level] with a run-time index reads the parameter bank in place
// (uniform across the block); a by-value parameter indexed at run time would be copied to local
// memory, and selecting among constant indices cost ~10 instructions a field and level.
__device__ __forceinline__ int tile_level(const DecodeArgs& p, int tile) {
    int level = 0;
#pragma unroll
    for (int l = 1; l < kMaxLevels; ++l)
        if (l < p.num_levels && tile >= p.level[l].first_tile) level = l;
    return level;
}

// kAsync: every anchor's channels are whole, aligned 16-byte vectors (cp.async); else element copies.
// kR: reg_max as a constant (16: YOLOv8's), or 0 for any.
template <typename T, bool kAsync, int kR>
__global__ void __launch_bounds__(kThreads) yolo_decode_kernel(const __grid_constant__ DecodeArgs p) {
    wait_for_previous_kernel();
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ float dist[4][kTile];
    __shared__ float w[kMaxRegMax];
    T* rows = reinterpret_cast<T*>(smem);
    constexpr int G = 16 / static_cast<int>(sizeof(T));  // channels of one 16-byte vector

    const int tile = static_cast<int>(blockIdx.x), tid = static_cast<int>(threadIdx.x);
    const int64_t n = blockIdx.y;
    const LevelArgs& lv = p.level[tile_level(p, tile)];
    const int64_t p0 = int64_t{tile - lv.first_tile} * kTile;
    const int count = lv.hw - p0 < kTile ? static_cast<int>(lv.hw - p0) : kTile;
    const T* src = static_cast<const T*>(lv.data) + (n * lv.hw + p0) * lv.pixel_stride;
    if (tid < p.reg_max) w[tid] = p.dfl[tid];

    // 1. Channels of `count` anchors into shared rows, anchor-major. Consecutive threads copy
    //    consecutive 16-byte pieces of one anchor, then the next: the tile is read front to back.
    if constexpr (kAsync) {
        const int vpa = p.c / G;  // vectors per anchor
        const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(rows));
        for (int i = tid; i < count * vpa; i += kThreads) {
            const int t = i / vpa, u = i - t * vpa;
            cp_async16(base + static_cast<uint32_t>((t * p.row + u * G) * static_cast<int>(sizeof(T))),
                       src + t * lv.pixel_stride + u * G);
        }
        cp_async_wait_all();
    } else {
        for (int i = tid; i < count * p.c; i += kThreads) {
            const int t = i / p.c, ch = i - t * p.c;
            rows[t * p.row + ch] = src[t * lv.pixel_stride + ch];
        }
    }
    __syncthreads();
    decode_tile<T, kR>(p, lv, rows, w, dist, n, p0, count);
}

// ---- With the head's last 1x1 convs (yolo_decode_head) ------------------------------------------
// A block decodes a tile of 64 anchors of one image, as the plain kernel, with a product first:
//   1. the box and class features of the tile's anchors into shared memory (cp.async; rows padded
//      by 8 halves, so the fragment loads below hit 32 different banks);
//   2. logits = features x W^T + bias on the tensor cores (mma.sync m16n8k16, float32 sums): the
//      64 x (4R + nc) outputs are (m16, n8) blocks; with YOLOv8n's widths a warp owns 16 rows of
//      the box or of the class logits, its A fragments in registers, else the blocks go round-robin
//      to the warps with A from shared memory. B fragments come straight from global memory (the
//      weights are packed on the host in fragment order, pack_yolo_decode_head: one coalesced
//      8-byte load a lane per k16 step; a level's ~21 KB are prefetched into L1 and stay there for
//      the level's blocks). The logits are rounded to f16 into shared rows laid out as the plain
//      kernel's f16 rows, as the unfused engine rounds the 1x1 convs' outputs;
//   3. the plain kernel's phases on those rows.
// No weights in shared memory: ~40 KB a block, 4-5 blocks (32-40 warps) an SM to hide the
// latencies of the three dependent phases. Measured at batch 64 (session 12, before the
// register-A kernel): issue-bound, so the instructions a block are what its speed follows.
struct HeadLevelArgs {
    const __half* box = nullptr;  // [n, H, W] pixels of box_ps halves, cb channels used
    const __half* cls = nullptr;
    int64_t box_ps = 0, cls_ps = 0;
    const uint2* frags = nullptr;  // pack_yolo_decode_head's B fragments, then the biases
    const float* bias = nullptr;
};

struct HeadArgs {
    DecodeArgs d;  // level[l].hw / first_anchor / first_tile, the decode's shapes; rows of halves
    HeadLevelArgs head[kMaxLevels];
    int cb = 0, cc = 0;             // feature channels (multiples of 8)
    int kb = 0, kc = 0;             // ... rounded up to 16 (the MMA's k)
    int nb = 0, nt = 0;             // n8 blocks of the box logits, of all logits
    int packed_bytes = 0;           // of a level's pack_yolo_decode_head buffer
    FastDivmod pieces_b, pieces_c;  // by kb / 8, kc / 8: the 16-byte pieces of a feature row
};

constexpr int kHeadPad = 8;  // halves after each shared feature row
constexpr int kHeadBlocksPerSm = 5;
constexpr int kHeadChunk = 2;  // n8 blocks a warp accumulates at once (3 spills at 48 registers)

// The packing's geometry, shared by the host packer and the launch.
struct HeadGeometry {
    int kb, kc, nb, nt;
    int64_t frag_count() const { return 32 * (int64_t{nb} * (kb / 16) + int64_t{nt - nb} * (kc / 16)); }
    int64_t packed_bytes() const { return 8 * frag_count() + 4 * 8 * int64_t{nt}; }  // fragments, biases
};
HeadGeometry head_geometry(int cb, int cc, int reg_max, int nc) {
    const int nb = (4 * reg_max + 7) / 8;
    return {(cb + 15) / 16 * 16, (cc + 15) / 16 * 16, nb, nb + (nc + 7) / 8};
}

__device__ __forceinline__ uint32_t lds32(const __half* p) { return *reinterpret_cast<const uint32_t*>(p); }

// One pass's logits for a warp's 16 rows (see the kernel): A fragments of all KS k16 steps loaded
// once, then per n8 block j its KS B fragments (contiguous: pack_yolo_decode_head) and KS MMAs.
// a_rows: this lane's first A element; frags: block 0's step 0 for this lane.
template <int KS, typename Store>
__device__ __forceinline__ void head_pass(const __half* a_rows, int ld, const uint2* frags, int blocks, Store store) {
    uint32_t a[KS][4];
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
        a[ks][0] = lds32(a_rows + 16 * ks);
        a[ks][1] = lds32(a_rows + 8 * ld + 16 * ks);
        a[ks][2] = lds32(a_rows + 16 * ks + 8);
        a[ks][3] = lds32(a_rows + 8 * ld + 16 * ks + 8);
    }
    for (int j = 0; j < blocks; ++j, frags += 32 * KS) {
        uint2 bf[KS];
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) bf[ks] = __ldg(frags + 32 * ks);
        float d[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int ks = 0; ks < KS; ++ks) mma_16816(d, a[ks], bf[ks].x, bf[ks].y);
        store(d, j);
    }
}

// kStepsBox, kStepsCls: the box and class features' k16 steps (kb / 16, kc / 16) for the widths
// instantiated (YOLOv8n's 64 and 80), A fragments in registers (64 registers: 4 blocks an SM);
// 0, 0: any widths (44 registers: 5 blocks an SM, the shared-memory limit).
template <int kR, int kStepsBox, int kStepsCls>
__global__ void __launch_bounds__(kThreads, kStepsBox > 0 ? 4 : kHeadBlocksPerSm)
    yolo_decode_head_kernel(const __grid_constant__ HeadArgs h) {
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ float dist[4][kTile];
    __shared__ float w[kMaxRegMax];
    const DecodeArgs& p = h.d;
    const int tile = static_cast<int>(blockIdx.x), tid = static_cast<int>(threadIdx.x);
    const int warp = tid / 32, lane = tid % 32, g = lane / 4, t4 = lane % 4;
    const int64_t n = blockIdx.y;
    const int level = tile_level(p, tile);
    const LevelArgs& lv = p.level[level];
    const HeadLevelArgs& hl = h.head[level];
    const int64_t p0 = int64_t{tile - lv.first_tile} * kTile;
    const int count = lv.hw - p0 < kTile ? static_cast<int>(lv.hw - p0) : kTile;
    const int ldb = h.kb + kHeadPad, ldc = h.kc + kHeadPad;  // halves a shared feature row
    const int n_box = 4 * p.reg_max, n_all = n_box + p.nc;
    __half* fb = reinterpret_cast<__half*>(smem);  // box then class feature rows, then the logits rows
    __half* fc = fb + kTile * ldb;
    __half* rows = fc + kTile * ldc;
    if (tid < p.reg_max) w[tid] = p.dfl[tid];
    {
        // The level's B fragments and biases (engine constants, ~21 KB for YOLOv8) into L1 before
        // waiting for the previous kernel: the MMA loop's fragment loads depend on each other through
        // the accumulators, and from L2 each would cost its full latency (batch 1: one block an SM,
        // L1 cold). Prefetches are hints; nothing waits for them.
        const auto* bytes = reinterpret_cast<const char*>(hl.frags);
        for (int i = tid * 128; i < h.packed_bytes; i += kThreads * 128)
            asm volatile("prefetch.global.L1 [%0];" ::"l"(bytes + i));
    }
    wait_for_previous_kernel();

    // 1. Features: 16-byte pieces; anchors past `count` and channels past cb / cc zero-filled.
    {
        const int vb = h.kb / 8, vc = h.kc / 8;  // 16-byte pieces a row
        const __half* srcb = hl.box + (n * lv.hw + p0) * hl.box_ps;
        const __half* srcc = hl.cls + (n * lv.hw + p0) * hl.cls_ps;
        for (int i = tid; i < kTile * (vb + vc); i += kThreads) {
            const bool box = i < kTile * vb;
            int u;
            const int a = box ? h.pieces_b.divmod(i, u) : h.pieces_c.divmod(i - kTile * vb, u);
            __half* dst = (box ? fb + a * ldb : fc + a * ldc) + u * 8;
            if (a < count && u * 8 < (box ? h.cb : h.cc)) {
                cp_async16(static_cast<uint32_t>(__cvta_generic_to_shared(dst)),
                           (box ? srcb + a * hl.box_ps : srcc + a * hl.cls_ps) + u * 8);
            } else {
                *reinterpret_cast<uint4*>(dst) = make_uint4(0, 0, 0, 0);
            }
        }
        cp_async_wait_all();
        __syncthreads();
    }

    // 2. Logits. Block (mt, j) of a pass = anchors 16 mt.., the pass's logits 8 j.. (box pass: the
    //    4R box logits, class pass: the nc class logits). Columns 2 t4, 2 t4 + 1 of rows g and g + 8
    //    go to channel (box ? 0 : 4R) + 8 j + 2 t4 of the rows: 4R is even, so a pair starts on a
    //    4-byte boundary.
    auto store_block = [&](const float(&d)[4], int mt, bool box, int j) {
        const int ch = (box ? 0 : n_box) + 8 * j + 2 * t4, limit = box ? n_box : n_all;
        const int col = 8 * ((box ? 0 : h.nb) + j) + 2 * t4;
        const float b0 = __ldg(hl.bias + col), b1 = __ldg(hl.bias + col + 1);
        __half* out = rows + (16 * mt + g) * p.row + ch;
        const bool whole = ch - 2 * t4 + 8 <= limit;  // the block's 8 columns are all logits
#pragma unroll
        for (int half = 0; half < 2; ++half, out += 8 * p.row) {
            const float v0 = d[2 * half] + b0, v1 = d[2 * half + 1] + b1;
            if (whole || ch + 1 < limit) {
                *reinterpret_cast<__half2*>(out) = __floats2half2_rn(v0, v1);
            } else if (ch < limit) {
                *out = __float2half_rn(v0);
            }
        }
    };
    static_assert(kThreads / 32 == 8, "4 row blocks x 2");
    const uint2* frags_c = hl.frags + 32 * h.nb * (h.kb / 16);  // the class pass's fragments
    if constexpr (kStepsBox > 0) {
        // Warp w: rows mt = w % 4 of the box pass (w < 4) or of the class pass (w >= 4), with the
        // pass's k16 steps known at compile time: its A fragments stay in registers, a block's B
        // fragments are read at constant offsets, nothing is guarded (the v3 chunks re-read A and
        // recomputed 64-bit addresses for each pair of blocks: ~1,000 instructions a warp).
        const int mt = warp % 4;
        if (warp < 4) {
            head_pass<kStepsBox>(fb + (16 * mt + g) * ldb + 2 * t4, ldb, hl.frags + lane, h.nb,
                                 [&](const float(&d)[4], int j) { store_block(d, mt, true, j); });
        } else {
            head_pass<kStepsCls>(fc + (16 * mt + g) * ldc + 2 * t4, ldc, frags_c + lane, h.nt - h.nb,
                                 [&](const float(&d)[4], int j) { store_block(d, mt, false, j); });
        }
    } else {
        // Any K: warp w takes mt = w % 4 and the blocks j = w / 4, w / 4 + 2, ... of each pass,
        // kHeadChunk at a time, an A fragment read from shared memory serving the chunk's blocks.
        const int mt = warp % 4, parity = warp / 4;
        for (int pass = 0; pass < 2; ++pass) {
            const bool box = pass == 0;
            const int blocks = box ? h.nb : h.nt - h.nb;
            const int ld = box ? ldb : ldc, ksteps = (box ? h.kb : h.kc) / 16;
            const __half* a_rows = (box ? fb : fc) + (16 * mt + g) * ld + 2 * t4;
            const uint2* frags = (box ? hl.frags : frags_c) + lane;
            for (int j0 = parity; j0 < blocks; j0 += 2 * kHeadChunk) {
                float d[kHeadChunk][4] = {};
                for (int ks = 0; ks < ksteps; ++ks) {
                    const uint32_t a[4] = {lds32(a_rows + 16 * ks), lds32(a_rows + 8 * ld + 16 * ks),
                                           lds32(a_rows + 16 * ks + 8), lds32(a_rows + 8 * ld + 16 * ks + 8)};
                    uint2 bf[kHeadChunk];
#pragma unroll
                    for (int c = 0; c < kHeadChunk; ++c)
                        bf[c] = j0 + 2 * c < blocks ? __ldg(frags + 32 * ((j0 + 2 * c) * ksteps + ks)) : uint2{};
#pragma unroll
                    for (int c = 0; c < kHeadChunk; ++c)
                        if (j0 + 2 * c < blocks) mma_16816(d[c], a, bf[c].x, bf[c].y);
                }
#pragma unroll
                for (int c = 0; c < kHeadChunk; ++c)
                    if (j0 + 2 * c < blocks) store_block(d[c], mt, box, j0 + 2 * c);
            }
        }
    }
    __syncthreads();
    decode_tile<__half, kR>(p, lv, rows, w, dist, n, p0, count);
}

// Launches a decode kernel on (tiles, images), opting in to more than 48 KB of shared memory where
// it needs it; `what` names the entry point in the error when the device has too little.
template <typename Kernel, typename Args>
void launch_decode(Kernel kernel, const Args& args, int tiles, int images, int smem, const char* what,
                   cudaStream_t stream) {
    if (smem > 48 * 1024) {
        int dev = 0, optin = 0;
        KS_CUDA(cudaGetDevice(&dev));
        KS_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
        KS_CHECK(smem + 2048 <= optin, what, ": a block needs ", smem, " bytes of shared memory; the device has ",
                 optin);
        KS_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    }
    launch_kernel(kernel, dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(images)), kThreads, smem, stream,
                  args);
}

template <typename T>
void launch(const DecodeArgs& p, bool async, int tiles, int images, int smem, cudaStream_t stream) {
    auto go = [&](auto kernel) { launch_decode(kernel, p, tiles, images, smem, "yolo_decode", stream); };
    if (async) {
        if (p.reg_max == 16) {
            go(yolo_decode_kernel<T, true, 16>);
        } else {
            go(yolo_decode_kernel<T, true, 0>);
        }
    } else {
        if (p.reg_max == 16) {
            go(yolo_decode_kernel<T, false, 16>);
        } else {
            go(yolo_decode_kernel<T, false, 0>);
        }
    }
}

void launch_head(const HeadArgs& h, int tiles, int images, int smem, cudaStream_t stream) {
    auto go = [&](auto kernel) { launch_decode(kernel, h, tiles, images, smem, "yolo_decode_head", stream); };
    auto with_steps = [&](auto r) {
        constexpr int R = decltype(r)::value;
        if (h.kb == 64 && h.kc == 80) {
            go(yolo_decode_head_kernel<R, 4, 5>);
        } else {
            go(yolo_decode_head_kernel<R, 0, 0>);
        }
    };
    if (h.d.reg_max == 16) {
        with_steps(std::integral_constant<int, 16>{});
    } else {
        with_steps(std::integral_constant<int, 0>{});
    }
}

void check_decode(bool has_levels, int num_levels, int reg_max, int nc, const char* what) {
    KS_CHECK(has_levels && num_levels >= 1 && num_levels <= kMaxLevels, what, ": ", num_levels, " levels (1..",
             kMaxLevels, " supported)");
    KS_CHECK(reg_max >= 1 && reg_max <= kMaxRegMax && nc >= 1, what, ": reg_max=", reg_max, " nc=", nc, " (reg_max 1..",
             kMaxRegMax, ", nc >= 1)");
}

// The decode's level table, y and constants (shared by both entry points); returns the tiles.
int64_t decode_args(DecodeArgs& p, const int64_t* hw, int num_levels, const float* anchors, const float* strides,
                    const float* dfl_weights, int reg_max, int nc, int images, const StridedTensor& y,
                    const char* what) {
    p.num_levels = num_levels;
    p.reg_max = reg_max;
    p.nc = nc;
    p.c = 4 * reg_max + nc;
    int64_t tiles = 0, total = 0;
    for (int l = 0; l < num_levels; ++l) {
        p.level[l].hw = hw[l];
        p.level[l].first_anchor = total;
        p.level[l].first_tile = static_cast<int>(tiles);
        tiles += ceil_div(hw[l], kTile);
        total += hw[l];
    }
    KS_CHECK(y.rank == 3 && y.shape[0] == images && y.shape[1] == 4 + nc && y.shape[2] == total, what, ": y must be [",
             images, ", ", 4 + nc, ", ", total, "] (rank ", y.rank, ")");
    KS_CHECK(tiles <= 0x7fffffff, what, ": ", total, " anchors is too many");
    p.anchors_total = total;
    p.anchors = anchors;
    p.strides = strides;
    p.dfl = dfl_weights;
    p.y = y.data;
    p.ys_n = y.stride[0];
    p.ys_c = y.stride[1];
    p.ys_a = y.stride[2];
    return tiles;
}

// Shared rows of an odd number of 16-byte units holding c elements of es bytes: see the file comment.
int odd_row(int c, int es) {
    int64_t units = ceil_div(int64_t{c} * es, 16);
    if (units % 2 == 0) ++units;
    return static_cast<int>(units * 16 / es);
}

}  // namespace

void yolo_decode(const NhwcTensor* levels, int num_levels, const float* anchors, const float* strides,
                 const float* dfl_weights, int reg_max, int nc, const StridedTensor& y, cudaStream_t stream) {
    check_decode(levels != nullptr, num_levels, reg_max, nc, "yolo_decode");
    const ElemType type = levels[0].type;
    KS_CHECK(type == ElemType::kF32 || type == ElemType::kF16, "yolo_decode: unknown element type");
    const int images = levels[0].n;
    const int c = 4 * reg_max + nc;
    const int es = elem_size(type);
    // 16-byte copies need each anchor's channels to be whole 16-byte vectors at 16-byte addresses.
    bool async = (c * es) % 16 == 0;
    int64_t hw[kMaxLevels] = {};
    for (int l = 0; l < num_levels; ++l) {
        const NhwcTensor& x = levels[l];
        KS_CHECK(x.type == type && x.n == images && x.c == c && x.h >= 0 && x.w >= 0 && x.pixel_stride >= x.c,
                 "yolo_decode: level ", l, " is [", x.n, ", ", x.h, ", ", x.w, ", ", x.c, "] (pixel stride ",
                 x.pixel_stride, ", ", elem_size(x.type) == 2 ? "f16" : "f32", "); want [", images, ", H, W, ", c,
                 "] of the first level's type");
        hw[l] = int64_t{x.h} * x.w;
        KS_CHECK(hw[l] * images == 0 || x.data != nullptr, "yolo_decode: level ", l, " has no data");
        async = async && (x.pixel_stride * es) % 16 == 0 && reinterpret_cast<uintptr_t>(x.data) % 16 == 0;
    }
    DecodeArgs p;
    const int64_t tiles =
        decode_args(p, hw, num_levels, anchors, strides, dfl_weights, reg_max, nc, images, y, "yolo_decode");
    for (int l = 0; l < num_levels; ++l) {
        p.level[l].data = levels[l].data;
        p.level[l].pixel_stride = levels[l].pixel_stride;
    }
    if (images == 0 || p.anchors_total == 0) return;
    KS_CHECK(anchors != nullptr && strides != nullptr && dfl_weights != nullptr && y.data != nullptr,
             "yolo_decode: missing data");
    KS_CHECK(images <= 65535, "yolo_decode: batch ", images, " is too large");
    p.row = odd_row(c, es);
    const int64_t smem = int64_t{kTile} * p.row * es;
    KS_CHECK(smem <= 200 * 1024, "yolo_decode: ", p.c, " channels per anchor is too many");
    if (type == ElemType::kF16) {
        launch<__half>(p, async, static_cast<int>(tiles), images, static_cast<int>(smem), stream);
    } else {
        launch<float>(p, async, static_cast<int>(tiles), images, static_cast<int>(smem), stream);
    }
}

std::vector<uint8_t> pack_yolo_decode_head(const float* w_box, const float* b_box, const float* w_cls,
                                           const float* b_cls, int cb, int cc, int reg_max, int nc) {
    KS_CHECK(cb > 0 && cc > 0 && reg_max >= 1 && reg_max <= kMaxRegMax && nc >= 1, "pack_yolo_decode_head: ", cb,
             " box and ", cc, " class channels, reg_max ", reg_max, ", nc ", nc);
    const HeadGeometry geo = head_geometry(cb, cc, reg_max, nc);
    const int n_box = 4 * reg_max;
    std::vector<uint8_t> out(static_cast<size_t>(geo.packed_bytes()));
    auto* frag = reinterpret_cast<uint32_t*>(out.data());
    // Block nt's step ks (a block's steps contiguous: the kernel reads them at constant offsets), lane
    // (g, t4): {W[r][k0], W[r][k0 + 1]}, {W[r][k0 + 8], W[r][k0 + 9]} with
    // r = 8 nt + g, k0 = 16 ks + 2 t4 (the m16n8k16 B fragment: column g, rows 2 t4.. of the k16 slab).
    auto put = [&](const float* wm, int rows, int cols, int blocks, int k) {
        for (int nt = 0; nt < blocks; ++nt)
            for (int ks = 0; ks < k / 16; ++ks)
                for (int lane = 0; lane < 32; ++lane) {
                    const int r = 8 * nt + lane / 4, k0 = 16 * ks + 2 * (lane % 4);
                    for (int j = 0; j < 4; ++j) {  // k0, k0 + 1, k0 + 8, k0 + 9
                        const int c = k0 + (j & 1) + (j >= 2 ? 8 : 0);
                        const uint16_t v = float_to_half(r < rows && c < cols ? wm[int64_t{r} * cols + c] : 0.f);
                        reinterpret_cast<uint16_t*>(frag)[j] = v;
                    }
                    frag += 2;
                }
    };
    put(w_box, n_box, cb, geo.nb, geo.kb);
    put(w_cls, nc, cc, geo.nt - geo.nb, geo.kc);
    auto* bias = reinterpret_cast<float*>(frag);
    for (int i = 0; i < geo.nt * 8; ++i)
        bias[i] = i < n_box ? b_box[i] : (i >= geo.nb * 8 && i - geo.nb * 8 < nc ? b_cls[i - geo.nb * 8] : 0.f);
    return out;
}

void yolo_decode_head(const HeadLevel* levels, int num_levels, const float* anchors, const float* strides,
                      const float* dfl_weights, int reg_max, int nc, const StridedTensor& y, cudaStream_t stream) {
    check_decode(levels != nullptr, num_levels, reg_max, nc, "yolo_decode_head");
    HeadArgs h;
    const int images = levels[0].box.n;
    h.cb = levels[0].box.c;
    h.cc = levels[0].cls.c;
    KS_CHECK(h.cb % 8 == 0 && h.cc % 8 == 0 && h.cb > 0 && h.cc > 0, "yolo_decode_head: ", h.cb, " box and ", h.cc,
             " class feature channels (want multiples of 8)");
    const HeadGeometry geo = head_geometry(h.cb, h.cc, reg_max, nc);
    h.kb = geo.kb;
    h.kc = geo.kc;
    h.nb = geo.nb;
    h.nt = geo.nt;
    KS_CHECK(geo.packed_bytes() < (int64_t{1} << 30), "yolo_decode_head: ", h.cb, " + ", h.cc, " channels, ", nc,
             " classes is too many");
    h.packed_bytes = static_cast<int>(geo.packed_bytes());
    h.pieces_b = FastDivmod(h.kb / 8);
    h.pieces_c = FastDivmod(h.kc / 8);
    int64_t hw[kMaxLevels] = {};
    for (int l = 0; l < num_levels; ++l) {
        const HeadLevel& v = levels[l];
        for (const NhwcTensor* x : {&v.box, &v.cls}) {
            const bool box = x == &v.box;
            KS_CHECK(x->type == ElemType::kF16 && x->n == images && x->c == (box ? h.cb : h.cc) && x->h == v.box.h &&
                         x->w == v.box.w && x->pixel_stride >= x->c && x->pixel_stride % 8 == 0 &&
                         reinterpret_cast<uintptr_t>(x->data) % 16 == 0,
                     "yolo_decode_head: level ", l, "'s ", box ? "box" : "class", " features are [", x->n, ", ", x->h,
                     ", ", x->w, ", ", x->c, "] (pixel stride ", x->pixel_stride,
                     "); want f16 16-byte aligned pixels, the same size for both and the first level's channels");
        }
        KS_CHECK(v.weights != nullptr && reinterpret_cast<uintptr_t>(v.weights) % 8 == 0, "yolo_decode_head: level ", l,
                 " has no packed head conv weights");
        hw[l] = int64_t{v.box.h} * v.box.w;
        const auto* frags = static_cast<const uint2*>(v.weights);
        h.head[l] = {static_cast<const __half*>(v.box.data),
                     static_cast<const __half*>(v.cls.data),
                     v.box.pixel_stride,
                     v.cls.pixel_stride,
                     frags,
                     reinterpret_cast<const float*>(frags + geo.frag_count())};
    }
    const int64_t tiles =
        decode_args(h.d, hw, num_levels, anchors, strides, dfl_weights, reg_max, nc, images, y, "yolo_decode_head");
    if (images == 0 || h.d.anchors_total == 0) return;
    KS_CHECK(anchors != nullptr && strides != nullptr && dfl_weights != nullptr && y.data != nullptr,
             "yolo_decode_head: missing data");
    KS_CHECK(images <= 65535, "yolo_decode_head: batch ", images, " is too large");
    h.d.row = odd_row(h.d.c, 2);
    const int64_t smem = int64_t{kTile} * (h.kb + h.kc + 2 * kHeadPad + h.d.row) * 2;
    KS_CHECK(smem <= 200 * 1024, "yolo_decode_head: ", h.d.c, " logits from ", h.cb, " + ", h.cc,
             " feature channels is too many");
    launch_head(h, static_cast<int>(tiles), images, static_cast<int>(smem), stream);
}

}  // namespace kestrel::cuda
