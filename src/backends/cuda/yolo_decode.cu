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
// anchors in phase 2 hit eight different bank groups (no conflicts). Arithmetic is float32 with
// full-precision expf: the f32 engine matches the reference to ~1e-7.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "backends/cuda/device_convert.cuh"
#include "backends/cuda/launch.cuh"
#include "backends/cuda/yolo_decode.h"

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
            const float p = expf(v[k] - m);
            s += p;
            e = fmaf(p, w[k], e);
        }
    } else {
        for (int k = 0; k < reg_max; ++k) m = fmaxf(m, to_float(row[k]));
        for (int k = 0; k < reg_max; ++k) {
            const float p = expf(to_float(row[k]) - m);
            s += p;
            e = fmaf(p, w[k], e);
        }
    }
    return e / s;
}

// kAsync: every anchor's channels are whole, aligned 16-byte vectors (cp.async); else element copies.
// kR: reg_max as a constant (16: YOLOv8's), or 0 for any.
template <typename T, bool kAsync, int kR>
__global__ void __launch_bounds__(kThreads) yolo_decode_kernel(const DecodeArgs p) {
    wait_for_previous_kernel();
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ float dist[4][kTile];
    __shared__ float w[kMaxRegMax];
    T* rows = reinterpret_cast<T*>(smem);
    constexpr int G = 16 / static_cast<int>(sizeof(T));  // class channels per task: one 16-byte vector

    // This tile's level: the last one starting at or before it (constant indices keep the level
    // table in the parameter bank; a dynamic index would copy it to local memory).
    const int tile = static_cast<int>(blockIdx.x), tid = static_cast<int>(threadIdx.x);
    const int64_t n = blockIdx.y;
    LevelArgs lv = p.level[0];
#pragma unroll
    for (int l = 1; l < kMaxLevels; ++l)
        if (l < p.num_levels && tile >= p.level[l].first_tile) lv = p.level[l];
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
#pragma unroll
        for (int k = 0; k < G; ++k)
            if (c0 + k < p.nc) out[k * p.ys_c] = 1.f / (1.f + expf(-v[k]));
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

template <typename T>
void launch(const DecodeArgs& p, bool async, int tiles, int images, int smem, cudaStream_t stream) {
    auto go = [&](auto kernel) {
        if (smem > 48 * 1024) {
            int dev = 0, optin = 0;
            KS_CUDA(cudaGetDevice(&dev));
            KS_CUDA(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
            KS_CHECK(smem + 2048 <= optin, "yolo_decode: ", p.c, " channels per anchor need ", smem,
                     " bytes of shared memory; the device has ", optin);
            KS_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        }
        launch_kernel(kernel, dim3(static_cast<unsigned>(tiles), static_cast<unsigned>(images)), kThreads, smem, stream,
                      p);
    };
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

}  // namespace

void yolo_decode(const NhwcTensor* levels, int num_levels, const float* anchors, const float* strides,
                 const float* dfl_weights, int reg_max, int nc, const StridedTensor& y, cudaStream_t stream) {
    KS_CHECK(levels != nullptr && num_levels >= 1 && num_levels <= kMaxLevels, "yolo_decode: ", num_levels,
             " levels (1..", kMaxLevels, " supported)");
    KS_CHECK(reg_max >= 1 && reg_max <= kMaxRegMax && nc >= 1, "yolo_decode: reg_max=", reg_max, " nc=", nc,
             " (reg_max 1..", kMaxRegMax, ", nc >= 1)");
    const ElemType type = levels[0].type;
    KS_CHECK(type == ElemType::kF32 || type == ElemType::kF16, "yolo_decode: unknown element type");
    const int images = levels[0].n;
    DecodeArgs p;
    p.num_levels = num_levels;
    p.reg_max = reg_max;
    p.nc = nc;
    p.c = 4 * reg_max + nc;
    const int es = elem_size(type);
    // 16-byte copies need each anchor's channels to be whole 16-byte vectors at 16-byte addresses.
    bool async = (p.c * es) % 16 == 0;
    int64_t tiles = 0, total = 0;
    for (int l = 0; l < num_levels; ++l) {
        const NhwcTensor& x = levels[l];
        KS_CHECK(x.type == type && x.n == images && x.c == p.c && x.h >= 0 && x.w >= 0 && x.pixel_stride >= x.c,
                 "yolo_decode: level ", l, " is [", x.n, ", ", x.h, ", ", x.w, ", ", x.c, "] (pixel stride ",
                 x.pixel_stride, ", ", elem_size(x.type) == 2 ? "f16" : "f32", "); want [", images, ", H, W, ", p.c,
                 "] of the first level's type");
        const int64_t hw = int64_t{x.h} * x.w;
        KS_CHECK(hw * images == 0 || x.data != nullptr, "yolo_decode: level ", l, " has no data");
        async = async && (x.pixel_stride * es) % 16 == 0 && reinterpret_cast<uintptr_t>(x.data) % 16 == 0;
        p.level[l] = {x.data, x.pixel_stride, hw, total, static_cast<int>(tiles)};
        tiles += ceil_div(hw, kTile);
        total += hw;
    }
    KS_CHECK(y.rank == 3 && y.shape[0] == images && y.shape[1] == 4 + nc && y.shape[2] == total,
             "yolo_decode: y must be [", images, ", ", 4 + nc, ", ", total, "] (rank ", y.rank, ")");
    if (images == 0 || total == 0) return;
    KS_CHECK(anchors != nullptr && strides != nullptr && dfl_weights != nullptr && y.data != nullptr,
             "yolo_decode: missing data");
    KS_CHECK(images <= 65535 && tiles <= 0x7fffffff, "yolo_decode: batch ", images, " or ", total,
             " anchors is too large");
    p.anchors_total = total;
    p.anchors = anchors;
    p.strides = strides;
    p.dfl = dfl_weights;
    p.y = y.data;
    p.ys_n = y.stride[0];
    p.ys_c = y.stride[1];
    p.ys_a = y.stride[2];
    // Rows of an odd number of 16-byte units: see the file comment.
    int64_t units = ceil_div(int64_t{p.c} * es, 16);
    if (units % 2 == 0) ++units;
    p.row = static_cast<int>(units * 16 / es);
    const int64_t smem = kTile * units * 16;
    KS_CHECK(smem <= 200 * 1024, "yolo_decode: ", p.c, " channels per anchor is too many");
    if (type == ElemType::kF16) {
        launch<__half>(p, async, static_cast<int>(tiles), images, static_cast<int>(smem), stream);
    } else {
        launch<float>(p, async, static_cast<int>(tiles), images, static_cast<int>(smem), stream);
    }
}

}  // namespace kestrel::cuda
