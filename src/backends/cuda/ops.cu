// The non-convolution CUDA kernels (see ops.h). Almost all of them are memory-bound, so the design
// goals are: full-width (16-byte) accesses where the layout allows, coalesced reads and writes, and
// enough resident threads to cover 132 SMs. Arithmetic is float32 throughout; f16 is a storage type.
//
// Grid-stride loops keep the grid at a few waves whatever the tensor size. Their index decomposition
// (flat index -> n, y, x, channel) would cost 64-bit divisions per element; instead each thread
// splits its first index once and then advances its digits by the (fixed) grid stride with
// carries: a mixed-radix counter (Radix below).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "backends/cuda/device_convert.cuh"
#include "backends/cuda/launch.cuh"
#include "backends/cuda/ops.h"

namespace kestrel::cuda {
namespace {

constexpr int kThreads = 256;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The current device's SMs.
int sm_count() {
    int dev = 0, sms = 0;
    KS_CUDA(cudaGetDevice(&dev));
    KS_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    return std::max(sms, 1);
}

// Blocks for a grid-stride loop over `items`: no more than fill every SM to its thread limit
// (2048 threads on sm_90), since more only adds scheduling overhead.
int grid_blocks(int64_t items, int threads = kThreads) {
    int64_t cap = int64_t{sm_count()} * (2048 / threads);
    return static_cast<int>(std::clamp<int64_t>(ceil_div(items, threads), 1, cap));
}

// ---- element access ----------------------------------------------------------------------------

// V consecutive elements moved as one aligned access (up to 16 bytes: one LDG/STG.128).
template <typename T, int V>
struct alignas(sizeof(T) * V) Vec {
    T v[V];
};

template <int V, typename T>
__device__ __forceinline__ void load_vec(const T* p, float (&out)[V]) {
    const Vec<T, V> v = *reinterpret_cast<const Vec<T, V>*>(p);
#pragma unroll
    for (int i = 0; i < V; ++i) out[i] = to_float(v.v[i]);
}

template <int V, typename T>
__device__ __forceinline__ void store_vec(T* p, const float (&in)[V]) {
    Vec<T, V> v;
#pragma unroll
    for (int i = 0; i < V; ++i) v.v[i] = from_float<T>(in[i]);
    *reinterpret_cast<Vec<T, V>*>(p) = v;
}

// ---- mixed-radix grid-stride counter -----------------------------------------------------------

// Digits least significant first; the last digit is unbounded. `step` is the grid stride written
// in the same digits, so advancing is R additions with carry instead of R divisions.
template <int R>
struct Radix {
    int64_t radix[R] = {};
    int64_t step[R] = {};
};

template <int R>
Radix<R> make_radix(const std::array<int64_t, R - 1>& radices, int64_t stride) {
    Radix<R> r;
    for (int k = 0; k < R - 1; ++k) {
        r.radix[k] = radices[static_cast<size_t>(k)];
        r.step[k] = stride % r.radix[k];
        stride /= r.radix[k];
    }
    r.radix[R - 1] = 0;
    r.step[R - 1] = stride;
    return r;
}

template <int R>
__device__ __forceinline__ void split_index(int64_t i, const Radix<R>& r, int64_t (&d)[R]) {
#pragma unroll
    for (int k = 0; k < R - 1; ++k) {
        d[k] = i % r.radix[k];
        i /= r.radix[k];
    }
    d[R - 1] = i;
}

template <int R>
__device__ __forceinline__ void advance(const Radix<R>& r, int64_t (&d)[R]) {
    int64_t carry = 0;
#pragma unroll
    for (int k = 0; k < R - 1; ++k) {
        // d < radix and step < radix, so one subtraction restores the digit.
        d[k] += r.step[k] + carry;
        carry = d[k] >= r.radix[k];
        if (carry) d[k] -= r.radix[k];
    }
    d[R - 1] += r.step[R - 1] + carry;
}

__device__ __forceinline__ int64_t global_thread() {
    return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

// ---- ops ---------------------------------------------------------------------------------------

template <UnaryOp kOp>
__device__ __forceinline__ float unary_apply(float v) {
    // Full-precision expf/sinf/cosf: the f32 engine must match the reference to ~1e-6, and these
    // kernels are bound by memory, not by the math.
    if constexpr (kOp == UnaryOp::kSigmoid) return 1.f / (1.f + expf(-v));
    if constexpr (kOp == UnaryOp::kRelu) return v > 0.f ? v : 0.f;
    if constexpr (kOp == UnaryOp::kSilu) return v / (1.f + expf(-v));
    if constexpr (kOp == UnaryOp::kSin) return sinf(v);
    if constexpr (kOp == UnaryOp::kCos) return cosf(v);
    return v;
}

template <BinaryOp kOp>
__device__ __forceinline__ float binary_apply(float a, float b) {
    if constexpr (kOp == BinaryOp::kAdd) return a + b;
    if constexpr (kOp == BinaryOp::kSub) return a - b;
    if constexpr (kOp == BinaryOp::kMul) return a * b;
    return a / b;
}

// Hoists the op switch out of the element loops: `f` receives the op as a compile-time constant.
template <typename F>
__device__ __forceinline__ void with_unary(UnaryOp op, F&& f) {
    switch (op) {
        case UnaryOp::kSigmoid:
            f(std::integral_constant<UnaryOp, UnaryOp::kSigmoid>{});
            break;
        case UnaryOp::kRelu:
            f(std::integral_constant<UnaryOp, UnaryOp::kRelu>{});
            break;
        case UnaryOp::kSilu:
            f(std::integral_constant<UnaryOp, UnaryOp::kSilu>{});
            break;
        case UnaryOp::kSin:
            f(std::integral_constant<UnaryOp, UnaryOp::kSin>{});
            break;
        case UnaryOp::kCos:
            f(std::integral_constant<UnaryOp, UnaryOp::kCos>{});
            break;
        case UnaryOp::kCopy:
            f(std::integral_constant<UnaryOp, UnaryOp::kCopy>{});
            break;
    }
}

template <typename F>
__device__ __forceinline__ void with_binary(BinaryOp op, F&& f) {
    switch (op) {
        case BinaryOp::kAdd:
            f(std::integral_constant<BinaryOp, BinaryOp::kAdd>{});
            break;
        case BinaryOp::kSub:
            f(std::integral_constant<BinaryOp, BinaryOp::kSub>{});
            break;
        case BinaryOp::kMul:
            f(std::integral_constant<BinaryOp, BinaryOp::kMul>{});
            break;
        case BinaryOp::kDiv:
            f(std::integral_constant<BinaryOp, BinaryOp::kDiv>{});
            break;
    }
}

bool valid_unary(UnaryOp op) { return static_cast<uint8_t>(op) <= static_cast<uint8_t>(UnaryOp::kCopy); }
bool valid_binary(BinaryOp op) { return static_cast<uint8_t>(op) <= static_cast<uint8_t>(BinaryOp::kDiv); }

// ---- host-side dispatch ------------------------------------------------------------------------

template <typename F>
void with_type(ElemType t, F&& f) {
    if (t == ElemType::kF16) {
        f(std::type_identity<__half>{});
    } else {
        f(std::type_identity<float>{});
    }
}

// v from pick_vec; kMaxV (16 bytes of the widest type) skips instantiations that can never run.
template <int kMaxV, typename F>
void with_vec(int v, F&& f) {
    if constexpr (kMaxV >= 8) {
        if (v == 8) return f(std::integral_constant<int, 8>{});
    }
    if (v == 4) return f(std::integral_constant<int, 4>{});
    if (v == 2) return f(std::integral_constant<int, 2>{});
    f(std::integral_constant<int, 1>{});
}

template <typename... T>
constexpr int max_vec() {
    return 16 / static_cast<int>(std::max({sizeof(T)...}));
}

int64_t numel(const NhwcTensor& t) { return int64_t{t.n} * t.h * t.w * t.c; }

void check_nhwc(const NhwcTensor& t, const char* op, const char* name) {
    KS_CHECK(t.n >= 0 && t.h >= 0 && t.w >= 0 && t.c >= 0 && t.pixel_stride >= t.c, op, ": ", name,
             " has an invalid NHWC shape [", t.n, ", ", t.h, ", ", t.w, ", ", t.c, "] with pixel stride ",
             t.pixel_stride);
    KS_CHECK(t.type == ElemType::kF32 || t.type == ElemType::kF16, op, ": ", name, " has an unknown element type");
    KS_CHECK(numel(t) == 0 || t.data != nullptr, op, ": ", name, " has no data");
}

bool same_shape(const NhwcTensor& a, const NhwcTensor& b) {
    return a.n == b.n && a.h == b.h && a.w == b.w && a.c == b.c;
}

// The widest vector (elements) that every tensor's channel count, pixel stride and base address
// allow, at most 16 bytes of the widest element type.
int pick_vec(std::initializer_list<const NhwcTensor*> ts) {
    int max_size = 1;
    for (const NhwcTensor* t : ts) max_size = std::max(max_size, elem_size(t->type));
    for (int v = 16 / max_size; v > 1; v /= 2) {
        bool ok = true;
        for (const NhwcTensor* t : ts)
            ok = ok && t->c % v == 0 && t->pixel_stride % v == 0 &&
                 reinterpret_cast<uintptr_t>(t->data) % static_cast<uintptr_t>(v * elem_size(t->type)) == 0;
        if (ok) return v;
    }
    return 1;
}

// ---- NHWC kernels ------------------------------------------------------------------------------

struct Geom {
    int h, w;
    int64_t ps;  // pixel stride
};

struct PoolParams {
    int kh, kw, sh, sw, pt, pl;
};

// SPPF's chain of three K x K stride-1 max-pools with K/2 padding (same size), in one launch: CTA
// (channel vector, image) copies its H x W plane into shared memory and pools it three times,
// separably (horizontal maxima into the second plane, then vertical maxima back into the first),
// storing each result: the values of three maxpool2d launches (the same fmaxf over the same windows,
// out-of-range taps skipped). Planes: two of H x W x V elements.
struct SppfOutputs {
    void* y[3];
    int64_t ps[3];  // pixel strides
};

// m = the maxima of the vectors at centre + d * step, d = -R..R, where the line coordinate c + d
// stays in [0, len) (out-of-range taps skipped: -inf padding).
template <int V, int R, typename T>
__device__ __forceinline__ void line_max(const T* centre, int c, int len, int step, float (&m)[V]) {
#pragma unroll
    for (int k = 0; k < V; ++k) m[k] = -INFINITY;
#pragma unroll
    for (int d = -R; d <= R; ++d) {
        if (c + d < 0 || c + d >= len) continue;
        float v[V];
        load_vec<V>(centre + d * step, v);
#pragma unroll
        for (int k = 0; k < V; ++k) m[k] = fmaxf(m[k], v[k]);
    }
}

template <typename T, int V, int K>
__global__ void __launch_bounds__(kThreads)
    sppf_maxpool_kernel(const T* __restrict__ x, Geom xg, SppfOutputs out, int cvecs) {
    wait_for_previous_kernel();
    extern __shared__ __align__(16) unsigned char sppf_planes[];
    const int H = xg.h, W = xg.w, P = H * W;
    T* const a = reinterpret_cast<T*>(sppf_planes);  // [P][V]: the plane being pooled
    T* const b = a + static_cast<int64_t>(P) * V;    // [P][V]: its horizontal maxima
    const int cv = static_cast<int>(blockIdx.x % static_cast<unsigned>(cvecs));
    const int64_t n = blockIdx.x / static_cast<unsigned>(cvecs);
    const int64_t first = n * P;  // the image's first pixel
    for (int q = threadIdx.x; q < P; q += kThreads) {
        float v[V];
        load_vec<V>(x + (first + q) * xg.ps + cv * V, v);
        store_vec<V>(a + q * V, v);
    }
    __syncthreads();
#pragma unroll 1
    for (int round = 0; round < 3; ++round) {
        for (int q = threadIdx.x; q < P; q += kThreads) {
            float m[V];
            line_max<V, K / 2>(a + q * V, q % W, W, V, m);
            store_vec<V>(b + q * V, m);
        }
        __syncthreads();
        T* const y = static_cast<T*>(out.y[round]);
        for (int q = threadIdx.x; q < P; q += kThreads) {
            float m[V];
            line_max<V, K / 2>(b + q * V, q / W, H, W * V, m);
            store_vec<V>(a + q * V, m);
            store_vec<V>(y + (first + q) * out.ps[round] + cv * V, m);
        }
        __syncthreads();
    }
}

// Digits: (channel vector, x, y, n).
template <typename T, int V>
__global__ void __launch_bounds__(kThreads) maxpool_kernel(const T* __restrict__ x, Geom xg, T* __restrict__ y, Geom yg,
                                                           PoolParams p, Radix<4> r, int64_t total) {
    wait_for_previous_kernel();
    int64_t d[4];
    int64_t i = global_thread();
    split_index(i, r, d);
    for (; i < total; i += grid_threads(), advance(r, d)) {
        const int64_t c = d[0] * V;
        const int ox = static_cast<int>(d[1]), oy = static_cast<int>(d[2]);
        const int64_t n = d[3];
        float m[V];
#pragma unroll
        for (int k = 0; k < V; ++k) m[k] = -INFINITY;
        const int iy0 = oy * p.sh - p.pt, ix0 = ox * p.sw - p.pl;
        for (int ky = 0; ky < p.kh; ++ky) {
            const int iy = iy0 + ky;
            if (iy < 0 || iy >= xg.h) continue;
            const T* row = x + (n * xg.h + iy) * xg.w * xg.ps + c;
            for (int kx = 0; kx < p.kw; ++kx) {
                const int ix = ix0 + kx;
                if (ix < 0 || ix >= xg.w) continue;
                float v[V];
                load_vec<V>(row + ix * xg.ps, v);
#pragma unroll
                for (int k = 0; k < V; ++k) m[k] = fmaxf(m[k], v[k]);
            }
        }
        store_vec<V>(y + ((n * yg.h + oy) * yg.w + ox) * yg.ps + c, m);
    }
}

// Stride-1 K x K max-pool (SPPF's 5x5), separably: a thread owns RB consecutive output rows of one
// output column and channel vector, takes the horizontal max of each of the RB + K - 1 input rows
// they read (K loads a row), then the vertical max of K of those per output row: (RB + K - 1) K
// loads for RB outputs instead of K^2 each. Rows and columns outside the input are skipped (the
// padding is -inf); every window reaches the input (checked on the host).
// Thread i: channel vector i % cvecs, then output column, row block, image.
template <typename T, int V, int K, int RB>
__global__ void __launch_bounds__(kThreads)
    maxpool_s1_rows_kernel(const T* __restrict__ x, Geom xg, T* __restrict__ y, Geom yg, int cvecs, int pt, int pl,
                           int row_blocks, int64_t total) {
    wait_for_previous_kernel();
    for (int64_t i = global_thread(); i < total; i += grid_threads()) {
        const int cv = static_cast<int>(i % cvecs);
        int64_t t = i / cvecs;
        const int ox = static_cast<int>(t % yg.w);
        t /= yg.w;
        const int oy0 = static_cast<int>(t % row_blocks) * RB;
        const int64_t n = t / row_blocks;
        float hm[RB + K - 1][V];  // horizontal maxima of input rows oy0 - pt + r
#pragma unroll
        for (int r = 0; r < RB + K - 1; ++r) {
#pragma unroll
            for (int k = 0; k < V; ++k) hm[r][k] = -INFINITY;
            const int iy = oy0 - pt + r;
            if (iy < 0 || iy >= xg.h) continue;
            const T* row = x + (n * xg.h + iy) * xg.w * xg.ps + cv * V;
#pragma unroll
            for (int kx = 0; kx < K; ++kx) {
                const int ix = ox - pl + kx;
                if (ix < 0 || ix >= xg.w) continue;
                float v[V];
                load_vec<V>(row + ix * xg.ps, v);
#pragma unroll
                for (int k = 0; k < V; ++k) hm[r][k] = fmaxf(hm[r][k], v[k]);
            }
        }
#pragma unroll
        for (int r = 0; r < RB; ++r) {
            const int oy = oy0 + r;
            if (oy >= yg.h) break;
            float m[V];
#pragma unroll
            for (int k = 0; k < V; ++k) {
                m[k] = hm[r][k];
#pragma unroll
                for (int j = 1; j < K; ++j) m[k] = fmaxf(m[k], hm[r + j][k]);
            }
            store_vec<V>(y + ((n * yg.h + oy) * yg.w + ox) * yg.ps + cv * V, m);
        }
    }
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    resize_nearest_kernel(const T* __restrict__ x, Geom xg, T* __restrict__ y, Geom yg,
                          const int32_t* __restrict__ src_y, const int32_t* __restrict__ src_x, Radix<4> r,
                          int64_t total) {
    wait_for_previous_kernel();
    int64_t d[4];
    int64_t i = global_thread();
    split_index(i, r, d);
    for (; i < total; i += grid_threads(), advance(r, d)) {
        const int64_t c = d[0] * V;
        const int ox = static_cast<int>(d[1]), oy = static_cast<int>(d[2]);
        const int64_t n = d[3];
        const int iy = __ldg(src_y + oy), ix = __ldg(src_x + ox);
        float v[V];
        load_vec<V>(x + ((n * xg.h + iy) * xg.w + ix) * xg.ps + c, v);
        store_vec<V>(y + ((n * yg.h + oy) * yg.w + ox) * yg.ps + c, v);
    }
}

// Digits: (channel vector, pixel). Pixel strides may differ: slices of different buffers.
template <typename Tx, typename Ty, int V>
__global__ void __launch_bounds__(kThreads)
    unary_nhwc_kernel(UnaryOp op, const Tx* __restrict__ x, int64_t xps, Ty* __restrict__ y, int64_t yps, Radix<2> r,
                      int64_t total) {
    wait_for_previous_kernel();
    auto body = [&](auto kop) {
        int64_t d[2];
        int64_t i = global_thread();
        split_index(i, r, d);
        for (; i < total; i += grid_threads(), advance(r, d)) {
            const int64_t c = d[0] * V;
            float v[V];
            load_vec<V>(x + d[1] * xps + c, v);
#pragma unroll
            for (int k = 0; k < V; ++k) v[k] = unary_apply<decltype(kop)::value>(v[k]);
            store_vec<V>(y + d[1] * yps + c, v);
        }
    };
    if constexpr (std::is_same_v<Tx, Ty>) {
        with_unary(op, body);
    } else {  // conversions are copies (checked on the host)
        body(std::integral_constant<UnaryOp, UnaryOp::kCopy>{});
    }
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
    binary_nhwc_kernel(BinaryOp op, const T* __restrict__ a, int64_t aps, const T* __restrict__ b, int64_t bps,
                       T* __restrict__ y, int64_t yps, Radix<2> r, int64_t total) {
    wait_for_previous_kernel();
    with_binary(op, [&](auto kop) {
        int64_t d[2];
        int64_t i = global_thread();
        split_index(i, r, d);
        for (; i < total; i += grid_threads(), advance(r, d)) {
            const int64_t c = d[0] * V;
            float va[V], vb[V];
            load_vec<V>(a + d[1] * aps + c, va);
            load_vec<V>(b + d[1] * bps + c, vb);
#pragma unroll
            for (int k = 0; k < V; ++k) va[k] = binary_apply<decltype(kop)::value>(va[k], vb[k]);
            store_vec<V>(y + d[1] * yps + c, va);
        }
    });
}

// One block per (32 channels, image); 8 rows of threads split the pixels, then reduce in shared
// memory. Channels on threadIdx.x keep every load coalesced along the NHWC pixel.
constexpr int kPoolRows = 8;

template <typename T>
__global__ void __launch_bounds__(32 * kPoolRows)
    global_avgpool_kernel(const T* __restrict__ x, int64_t hw, int c, int64_t ps, float* __restrict__ y) {
    wait_for_previous_kernel();
    __shared__ float partial[kPoolRows][32];
    const int ch = static_cast<int>(blockIdx.x) * 32 + static_cast<int>(threadIdx.x);
    const int64_t n = blockIdx.y;
    float sum = 0.f;
    if (ch < c) {
        const T* base = x + n * hw * ps + ch;
        for (int64_t p = threadIdx.y; p < hw; p += kPoolRows) sum += to_float(base[p * ps]);
    }
    partial[threadIdx.y][threadIdx.x] = sum;
    __syncthreads();
    if (threadIdx.y == 0 && ch < c) {
#pragma unroll
        for (int k = 1; k < kPoolRows; ++k) sum += partial[k][threadIdx.x];
        y[n * c + ch] = sum / static_cast<float>(hw);
    }
}

// ---- tiled SIMT GEMM core (conv_transpose2d and gemm_f32) ---------------------------------------

// 256 threads as 16x16; each owns a (BM/16) x 4 block of outputs at rows ty + 16 i, columns
// tx + 16 j. That spread keeps shared-memory reads conflict-free (A: broadcast, B: consecutive).
constexpr int kTileN = 64, kTileK = 16;

template <int BM>
struct GemmTile {
    static constexpr int kTM = BM / 16, kTN = kTileN / 16;
    float a[kTileK][BM + 4];  // +4: fewer bank conflicts on the transposing store
    float b[kTileK][kTileN];
};

template <int BM>
__device__ __forceinline__ void tile_fma(const GemmTile<BM>& s, float (&acc)[BM / 16][kTileN / 16]) {
    const int tx = static_cast<int>(threadIdx.x) % 16, ty = static_cast<int>(threadIdx.x) / 16;
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
        float a[GemmTile<BM>::kTM], b[GemmTile<BM>::kTN];
#pragma unroll
        for (int i = 0; i < GemmTile<BM>::kTM; ++i) a[i] = s.a[kk][ty + 16 * i];
#pragma unroll
        for (int j = 0; j < GemmTile<BM>::kTN; ++j) b[j] = s.b[kk][tx + 16 * j];
#pragma unroll
        for (int i = 0; i < GemmTile<BM>::kTM; ++i)
#pragma unroll
            for (int j = 0; j < GemmTile<BM>::kTN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
}

template <int BM>
__global__ void __launch_bounds__(kThreads)
    gemm_kernel(const float* __restrict__ x, const float* __restrict__ w, const float* __restrict__ bias,
                float* __restrict__ y, int m, int n, int k, bool trans_w, float alpha, float beta) {
    wait_for_previous_kernel();
    __shared__ GemmTile<BM> s;
    const int tid = static_cast<int>(threadIdx.x), tx = tid % 16, ty = tid / 16;
    const int m0 = static_cast<int>(blockIdx.y) * BM, n0 = static_cast<int>(blockIdx.x) * kTileN;
    float acc[BM / 16][kTileN / 16] = {};
    for (int k0 = 0; k0 < k; k0 += kTileK) {
        // Loads run along k for x and for w [n, k] and along n for w [k, n]: coalesced either way.
        for (int e = tid; e < BM * kTileK; e += kThreads) {
            const int row = e / kTileK, kk = e % kTileK, gm = m0 + row, gk = k0 + kk;
            s.a[kk][row] = gm < m && gk < k ? x[int64_t{gm} * k + gk] : 0.f;
        }
        for (int e = tid; e < kTileN * kTileK; e += kThreads) {
            const int col = trans_w ? e / kTileK : e % kTileN, kk = trans_w ? e % kTileK : e / kTileN;
            const int gn = n0 + col, gk = k0 + kk;
            s.b[kk][col] = gn < n && gk < k ? w[trans_w ? int64_t{gn} * k + gk : int64_t{gk} * n + gn] : 0.f;
        }
        __syncthreads();
        tile_fma<BM>(s, acc);
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < BM / 16; ++i) {
        const int gm = m0 + ty + 16 * i;
        if (gm >= m) continue;
#pragma unroll
        for (int j = 0; j < kTileN / 16; ++j) {
            const int gn = n0 + tx + 16 * j;
            if (gn < n) y[int64_t{gm} * n + gn] = alpha * acc[i][j] + (bias ? beta * bias[gn] : 0.f);
        }
    }
}

struct ConvTParams {
    int kh, kw, sh, sw, pt, pl;
    int n, ih, iw, ci;  // input
    int oh, ow, co;     // output
};

// Transposed convolution as one GEMM per output phase: outputs with the same (oy mod sh, ox mod sw)
// read the same kernel taps, so a block takes 64 pixels of one phase (blockIdx.z) and 64 output
// channels, and K runs over just that phase's taps times the input channels. For YOLOv8-seg's
// 2x2 stride-2 layer every phase has exactly one tap: no multiply is wasted on a zero.
constexpr int kConvTBM = 64;

// Three blocks per SM: a bare __launch_bounds__(256) lets ptxas cap registers so low that it spills.
template <typename Tx, typename Ty>
__global__ void __launch_bounds__(kThreads, 3)
    conv_transpose_kernel(const Tx* __restrict__ x, int64_t xps, const float* __restrict__ w,
                          const float* __restrict__ bias, ConvTParams p, Ty* __restrict__ y, int64_t yps) {
    wait_for_previous_kernel();
    __shared__ GemmTile<kConvTBM> s;
    __shared__ int pix_n[kConvTBM], pix_jy[kConvTBM], pix_jx[kConvTBM];
    __shared__ int64_t pix_x[kConvTBM];  // input pixel offset for the current tap, -1 outside
    const int ry = static_cast<int>(blockIdx.z) / p.sw, rx = static_cast<int>(blockIdx.z) % p.sw;
    const int cy = ry < p.oh ? (p.oh - ry + p.sh - 1) / p.sh : 0, cx = rx < p.ow ? (p.ow - rx + p.sw - 1) / p.sw : 0;
    const int pixels = p.n * cy * cx;  // < 2^31: checked on the host
    const int m0 = static_cast<int>(blockIdx.x) * kConvTBM;
    if (m0 >= pixels) return;  // phases differ in size; the grid covers the largest
    const int n0 = static_cast<int>(blockIdx.y) * kTileN;
    const int tid = static_cast<int>(threadIdx.x), tx = tid % 16, ty = tid / 16;
    if (tid < kConvTBM) {
        const int m = m0 + tid;
        pix_n[tid] = -1;
        if (m < pixels) {
            pix_jx[tid] = m % cx;
            pix_jy[tid] = m / cx % cy;
            pix_n[tid] = m / cx / cy;
        }
    }
    __syncthreads();  // a phase without taps (k < stride) goes straight to the epilogue
    float acc[kConvTBM / 16][kTileN / 16] = {};
    // Taps of this phase: ky = ky0 + sh * t; then iy = jy + (ry + pt - ky) / sh exactly.
    const int ky0 = (ry + p.pt) % p.sh, kx0 = (rx + p.pl) % p.sw;
    for (int ky = ky0; ky < p.kh; ky += p.sh) {
        const int dy = (ry + p.pt - ky) / p.sh;
        for (int kx = kx0; kx < p.kw; kx += p.sw) {
            const int dx = (rx + p.pl - kx) / p.sw;
            __syncthreads();  // the previous tap's pix_x is no longer read
            if (tid < kConvTBM) {
                int64_t off = -1;
                if (pix_n[tid] >= 0) {
                    const int iy = pix_jy[tid] + dy, ix = pix_jx[tid] + dx;
                    if (iy >= 0 && iy < p.ih && ix >= 0 && ix < p.iw)
                        off = ((int64_t{pix_n[tid]} * p.ih + iy) * p.iw + ix) * xps;
                }
                pix_x[tid] = off;
            }
            __syncthreads();
            for (int c0 = 0; c0 < p.ci; c0 += kTileK) {
#pragma unroll
                for (int e = tid; e < kConvTBM * kTileK; e += kThreads) {
                    const int row = e / kTileK, kk = e % kTileK, ci = c0 + kk;
                    const int64_t off = pix_x[row];
                    s.a[kk][row] = off >= 0 && ci < p.ci ? to_float(x[off + ci]) : 0.f;
                }
#pragma unroll
                for (int e = tid; e < kTileN * kTileK; e += kThreads) {
                    const int kk = e / kTileN, col = e % kTileN, ci = c0 + kk, co = n0 + col;
                    s.b[kk][col] =
                        ci < p.ci && co < p.co ? w[((int64_t{ci} * p.co + co) * p.kh + ky) * p.kw + kx] : 0.f;
                }
                __syncthreads();
                tile_fma<kConvTBM>(s, acc);
                __syncthreads();
            }
        }
    }
#pragma unroll
    for (int i = 0; i < kConvTBM / 16; ++i) {
        const int row = ty + 16 * i;
        if (pix_n[row] < 0) continue;
        const int oy = ry + p.sh * pix_jy[row], ox = rx + p.sw * pix_jx[row];
        Ty* out = y + ((int64_t{pix_n[row]} * p.oh + oy) * p.ow + ox) * yps;
#pragma unroll
        for (int j = 0; j < kTileN / 16; ++j) {
            const int co = n0 + tx + 16 * j;
            if (co < p.co) out[co] = from_float<Ty>(acc[i][j] + (bias ? bias[co] : 0.f));
        }
    }
}

// ---- layout conversions ------------------------------------------------------------------------

// 32x32 tiles through shared memory: the NCHW side is read/written along pixels and the NHWC side
// along channels, each warp touching 32 consecutive elements. +1 column: no bank conflicts.
constexpr int kTile = 32, kTileRows = 8;

template <typename T>
__global__ void __launch_bounds__(kTile* kTileRows)
    nchw_to_nhwc_tiled(const float* __restrict__ x, T* __restrict__ y, int c, int64_t hw, int64_t ps) {
    wait_for_previous_kernel();
    __shared__ float tile[kTile][kTile + 1];
    const int64_t p0 = int64_t{blockIdx.x} * kTile, n = blockIdx.z;
    const int c0 = static_cast<int>(blockIdx.y) * kTile;
    const int tx = static_cast<int>(threadIdx.x);
    const float* xn = x + n * c * hw;
    for (int j = static_cast<int>(threadIdx.y); j < kTile; j += kTileRows) {
        const int ch = c0 + j;
        const int64_t p = p0 + tx;
        if (ch < c && p < hw) tile[j][tx] = xn[ch * hw + p];
    }
    __syncthreads();
    T* yn = y + n * hw * ps;
    for (int j = static_cast<int>(threadIdx.y); j < kTile; j += kTileRows) {
        const int64_t p = p0 + j;
        const int ch = c0 + tx;
        if (ch < c && p < hw) yn[p * ps + ch] = from_float<T>(tile[tx][j]);
    }
}

template <typename T>
__global__ void __launch_bounds__(kTile* kTileRows)
    nhwc_to_nchw_tiled(const T* __restrict__ x, int c, int64_t hw, int64_t ps, float* __restrict__ y) {
    wait_for_previous_kernel();
    __shared__ float tile[kTile][kTile + 1];
    const int64_t p0 = int64_t{blockIdx.x} * kTile, n = blockIdx.z;
    const int c0 = static_cast<int>(blockIdx.y) * kTile;
    const int tx = static_cast<int>(threadIdx.x);
    const T* xn = x + n * hw * ps;
    for (int j = static_cast<int>(threadIdx.y); j < kTile; j += kTileRows) {
        const int64_t p = p0 + j;
        const int ch = c0 + tx;
        if (ch < c && p < hw) tile[j][tx] = to_float(xn[p * ps + ch]);
    }
    __syncthreads();
    float* yn = y + n * c * hw;
    for (int j = static_cast<int>(threadIdx.y); j < kTile; j += kTileRows) {
        const int ch = c0 + j;
        const int64_t p = p0 + tx;
        if (ch < c && p < hw) yn[ch * hw + p] = tile[tx][j];
    }
}

// Few channels (the 3-channel image): a tile would idle most of its threads, so one thread per
// pixel instead. The planar side stays coalesced; the interleaved side is a dense run per warp
// that L2 merges into full sectors. Digits: (pixel in image, n).
constexpr int kSmallChannels = 8;

// Channels [c_src, c) are written as zeros: the padding that lets the stem conv take the
// vectorised tensor-core path (its packed weights are zero there too).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    nchw_to_nhwc_small(const float* __restrict__ x, T* __restrict__ y, int c_src, int c, int64_t hw, int64_t ps,
                       Radix<2> r, int64_t total) {
    wait_for_previous_kernel();
    int64_t d[2];
    int64_t i = global_thread();
    split_index(i, r, d);
    // 8 stored channels at an aligned pixel (the padded stem input) leave as one 16-byte (f16) or
    // two 16-byte (f32) stores instead of 8 narrow ones.
    const bool vec8 = c == 8 && ps % 8 == 0 && reinterpret_cast<uintptr_t>(y) % (8 * sizeof(T)) == 0;
    for (; i < total; i += grid_threads(), advance(r, d)) {
        const float* src = x + d[1] * c_src * hw + d[0];
        T* dst = y + (d[1] * hw + d[0]) * ps;
        if (vec8) {
            float v[8];
#pragma unroll
            for (int ch = 0; ch < 8; ++ch) v[ch] = ch < c_src ? src[ch * hw] : 0.f;
            if constexpr (sizeof(T) == 2) {
                store_vec<8>(dst, v);
            } else {
                store_vec<4>(dst, reinterpret_cast<const float(&)[4]>(v[0]));
                store_vec<4>(dst + 4, reinterpret_cast<const float(&)[4]>(v[4]));
            }
            continue;
        }
        for (int ch = 0; ch < c; ++ch) dst[ch] = from_float<T>(ch < c_src ? src[ch * hw] : 0.f);
    }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) nhwc_to_nchw_small(const T* __restrict__ x, int c, int64_t hw, int64_t ps,
                                                               float* __restrict__ y, Radix<2> r, int64_t total) {
    wait_for_previous_kernel();
    int64_t d[2];
    int64_t i = global_thread();
    split_index(i, r, d);
    for (; i < total; i += grid_threads(), advance(r, d)) {
        const T* src = x + (d[1] * hw + d[0]) * ps;
        float* dst = y + d[1] * c * hw + d[0];
        for (int ch = 0; ch < c; ++ch) dst[ch * hw] = to_float(src[ch]);
    }
}

// ---- strided float32 kernels -------------------------------------------------------------------

// Up to three tensors (y, then inputs) over one canonical shape, digits least significant first.
template <int R>
struct StridedArgs {
    Radix<R> r;
    int64_t stride[3][R];
};

template <int R>
__device__ __forceinline__ int64_t strided_offset(const StridedArgs<R>& a, int t, const int64_t (&d)[R]) {
    int64_t off = 0;
#pragma unroll
    for (int k = 0; k < R; ++k) off += d[k] * a.stride[t][k];
    return off;
}

template <int R>
__global__ void __launch_bounds__(kThreads)
    unary_strided_kernel(UnaryOp op, const float* __restrict__ x, float* __restrict__ y, StridedArgs<R> a,
                         int64_t total) {
    wait_for_previous_kernel();
    with_unary(op, [&](auto kop) {
        int64_t d[R];
        int64_t i = global_thread();
        split_index(i, a.r, d);
        for (; i < total; i += grid_threads(), advance(a.r, d))
            y[strided_offset(a, 0, d)] = unary_apply<decltype(kop)::value>(x[strided_offset(a, 1, d)]);
    });
}

template <int R>
__global__ void __launch_bounds__(kThreads)
    binary_strided_kernel(BinaryOp op, const float* __restrict__ a_data, const float* __restrict__ b_data,
                          float* __restrict__ y, StridedArgs<R> a, int64_t total) {
    wait_for_previous_kernel();
    with_binary(op, [&](auto kop) {
        int64_t d[R];
        int64_t i = global_thread();
        split_index(i, a.r, d);
        for (; i < total; i += grid_threads(), advance(a.r, d))
            y[strided_offset(a, 0, d)] =
                binary_apply<decltype(kop)::value>(a_data[strided_offset(a, 1, d)], b_data[strided_offset(a, 2, d)]);
    });
}

// The canonical form of a strided op: size-1 dims dropped and dims merged wherever every tensor is
// contiguous across them (a plain copy becomes rank 1), so the kernels do the fewest digit steps.
struct Canonical {
    int rank = 0;
    int64_t total = 0;
    int64_t shape[kMaxRank] = {};      // outermost first
    int64_t stride[3][kMaxRank] = {};  // per tensor: y, then inputs
};

Canonical canonicalize(const char* op, const StridedTensor& y, std::initializer_list<const StridedTensor*> inputs,
                       bool broadcast) {
    KS_CHECK(y.rank >= 0 && y.rank <= kMaxRank, op, ": output rank ", y.rank, " is outside [0, ", kMaxRank, "]");
    std::array<const StridedTensor*, 3> ts = {&y, nullptr, nullptr};
    int count = 1;
    for (const StridedTensor* t : inputs) ts[static_cast<size_t>(count++)] = t;
    Canonical c;
    c.total = 1;
    for (int d = 0; d < y.rank; ++d) {
        KS_CHECK(y.shape[d] >= 0, op, ": negative output dimension ", y.shape[d]);
        c.total *= y.shape[d];
    }
    for (int t = 1; t < count; ++t) {
        const StridedTensor& x = *ts[static_cast<size_t>(t)];
        KS_CHECK(x.rank == y.rank, op, ": input ", t - 1, " has rank ", x.rank, ", the output ", y.rank);
        for (int d = 0; d < y.rank; ++d)
            KS_CHECK(x.shape[d] == y.shape[d] || (broadcast && x.shape[d] == 1), op, ": input ", t - 1, " dimension ",
                     d, " is ", x.shape[d], ", the output's ", y.shape[d]);
    }
    if (c.total == 0) return c;
    for (int t = 0; t < count; ++t)
        KS_CHECK(ts[static_cast<size_t>(t)]->data != nullptr, op, ": tensor ", t, " has no data");
    for (int d = 0; d < y.rank; ++d) {
        if (y.shape[d] == 1) continue;
        int64_t st[3] = {};
        for (int t = 0; t < count; ++t) {
            const StridedTensor& x = *ts[static_cast<size_t>(t)];
            st[t] = x.shape[d] == 1 ? 0 : x.stride[d];
        }
        bool merge = c.rank > 0;
        for (int t = 0; t < count && merge; ++t) merge = c.stride[t][c.rank - 1] == st[t] * y.shape[d];
        if (merge) {
            c.shape[c.rank - 1] *= y.shape[d];
            for (int t = 0; t < count; ++t) c.stride[t][c.rank - 1] = st[t];
        } else {
            c.shape[c.rank] = y.shape[d];
            for (int t = 0; t < count; ++t) c.stride[t][c.rank] = st[t];
            ++c.rank;
        }
    }
    if (c.rank == 0) {  // a single element
        c.rank = 1;
        c.shape[0] = 1;
    }
    return c;
}

template <int R>
StridedArgs<R> strided_args(const Canonical& c, int64_t grid_stride) {
    StridedArgs<R> a;
    std::array<int64_t, R - 1> radices{};
    for (int k = 0; k < R - 1; ++k) radices[static_cast<size_t>(k)] = c.shape[R - 1 - k];
    a.r = make_radix<R>(radices, grid_stride);
    for (int t = 0; t < 3; ++t)
        for (int k = 0; k < R; ++k) a.stride[t][k] = c.stride[t][R - 1 - k];
    return a;
}

template <typename F>
void with_rank(int rank, F&& f) {
    switch (rank) {
        case 1:
            f(std::integral_constant<int, 1>{});
            break;
        case 2:
            f(std::integral_constant<int, 2>{});
            break;
        case 3:
            f(std::integral_constant<int, 3>{});
            break;
        case 4:
            f(std::integral_constant<int, 4>{});
            break;
        case 5:
            f(std::integral_constant<int, 5>{});
            break;
        default:
            f(std::integral_constant<int, 6>{});
            break;
    }
}

// ---- softmax -----------------------------------------------------------------------------------

// Online softmax (Milakov & Gimelshein): a running max m and sum s of exp(v - m), rescaled when the
// max grows, so one pass finds both and a second writes; never exp of a positive number.
__device__ __forceinline__ void online_add(float& m, float& s, float v) {
    if (v > m) {
        s = s * expf(m - v) + 1.f;
        m = v;
    } else {
        s += expf(v - m);
    }
}

__device__ __forceinline__ void online_merge(float& m, float& s, float m2, float s2) {
    const float mm = fmaxf(m, m2);
    // An empty partial (s == 0, m == -inf) must not contribute exp(-inf - -inf) = NaN.
    s = (s > 0.f ? s * expf(m - mm) : 0.f) + (s2 > 0.f ? s2 * expf(m2 - mm) : 0.f);
    m = mm;
}

__device__ __forceinline__ void warp_merge(float& m, float& s) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, off), s2 = __shfl_xor_sync(0xffffffffu, s, off);
        online_merge(m, s, m2, s2);
    }
}

// inner == 1, short rows (the classify head: len 1000): one warp per row.
__global__ void __launch_bounds__(kThreads)
    softmax_rows_warp(const float* __restrict__ x, float* __restrict__ y, int64_t rows, int64_t len) {
    wait_for_previous_kernel();
    const int lane = static_cast<int>(threadIdx.x) % 32;
    const int64_t warps = grid_threads() / 32;
    // The loop bound is uniform across a warp, so every lane reaches the shuffles.
    for (int64_t r = global_thread() / 32; r < rows; r += warps) {
        const float* xr = x + r * len;
        float* yr = y + r * len;
        float m = -INFINITY, s = 0.f;
        for (int64_t l = lane; l < len; l += 32) online_add(m, s, xr[l]);
        warp_merge(m, s);
        for (int64_t l = lane; l < len; l += 32) yr[l] = expf(xr[l] - m) / s;
    }
}

// inner == 1, long rows: one block per row.
__global__ void __launch_bounds__(kThreads)
    softmax_rows_block(const float* __restrict__ x, float* __restrict__ y, int64_t rows, int64_t len) {
    wait_for_previous_kernel();
    __shared__ float sm[kThreads / 32], ss[kThreads / 32];
    const int lane = static_cast<int>(threadIdx.x) % 32, warp = static_cast<int>(threadIdx.x) / 32;
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const float* xr = x + r * len;
        float* yr = y + r * len;
        float m = -INFINITY, s = 0.f;
        for (int64_t l = threadIdx.x; l < len; l += kThreads) online_add(m, s, xr[l]);
        warp_merge(m, s);
        __syncthreads();  // the previous row's totals have been read
        if (lane == 0) {
            sm[warp] = m;
            ss[warp] = s;
        }
        __syncthreads();
        m = sm[0];
        s = ss[0];
        for (int k = 1; k < kThreads / 32; ++k) online_merge(m, s, sm[k], ss[k]);
        for (int64_t l = threadIdx.x; l < len; l += kThreads) yr[l] = expf(xr[l] - m) / s;
    }
}

// inner > 1 (DFL: len 16 over 4 * anchors): one thread per column; neighbouring threads read
// neighbouring columns, so every access is coalesced. Columns of up to kCache values stay in
// registers between the two passes. Digits: (column in the inner axis, outer).
template <int kCache>
__global__ void __launch_bounds__(kThreads) softmax_columns(const float* __restrict__ x, float* __restrict__ y,
                                                            int64_t len, int64_t inner, Radix<2> r, int64_t total) {
    wait_for_previous_kernel();
    int64_t d[2];
    int64_t i = global_thread();
    split_index(i, r, d);
    for (; i < total; i += grid_threads(), advance(r, d)) {
        const int64_t base = d[1] * len * inner + d[0];
        float m = -INFINITY, s = 0.f;
        if constexpr (kCache > 0) {
            float v[kCache];
#pragma unroll
            for (int l = 0; l < kCache; ++l)
                if (l < len) {
                    v[l] = x[base + l * inner];
                    online_add(m, s, v[l]);
                }
#pragma unroll
            for (int l = 0; l < kCache; ++l)
                if (l < len) y[base + l * inner] = expf(v[l] - m) / s;
        } else {
            for (int64_t l = 0; l < len; ++l) online_add(m, s, x[base + l * inner]);
            for (int64_t l = 0; l < len; ++l) y[base + l * inner] = expf(x[base + l * inner] - m) / s;
        }
    }
}

}  // namespace

// ---- NHWC entry points -------------------------------------------------------------------------

void maxpool2d_nhwc(const NhwcTensor& x, const NhwcTensor& y, int kh, int kw, int stride_h, int stride_w, int pad_top,
                    int pad_left, cudaStream_t stream) {
    check_nhwc(x, "maxpool2d", "x");
    check_nhwc(y, "maxpool2d", "y");
    KS_CHECK(x.type == y.type, "maxpool2d: x and y types differ");
    KS_CHECK(x.n == y.n && x.c == y.c, "maxpool2d: x [", x.n, ", ", x.c, "] and y [", y.n, ", ", y.c,
             "] differ in batch or channels");
    KS_CHECK(kh > 0 && kw > 0 && stride_h > 0 && stride_w > 0 && pad_top >= 0 && pad_left >= 0 && pad_top < kh &&
                 pad_left < kw,
             "maxpool2d: invalid window ", kh, "x", kw, " stride ", stride_h, "x", stride_w, " pad ", pad_top, ",",
             pad_left);
    if (numel(y) == 0) return;
    // Every window must reach the input, or its max would be -inf.
    KS_CHECK(int64_t{y.h - 1} * stride_h - pad_top < x.h && int64_t{y.w - 1} * stride_w - pad_left < x.w,
             "maxpool2d: output ", y.h, "x", y.w, " does not fit input ", x.h, "x", x.w);
    const int v = pick_vec({&x, &y});
    constexpr int kRows = 4;  // output rows a thread of the separable stride-1 kernel
    const int row_blocks = (y.h + kRows - 1) / kRows;
    const int64_t rows_threads = int64_t{y.n} * row_blocks * y.w * (y.c / v);
    // Stride 1 (SPPF): the separable kernel, where its threads fill a quarter of the GPU's thread
    // slots; below that (SPPF at batch 1-32 on an H100) the one-output-a-thread kernel's 4x more
    // threads hide more latency (measured on the H100 with yolov8n's SPPF, 5x5 on 20x20x128: separably
    // at every batch, batch 1 took 0.378 -> 0.394 ms and batch 8 0.844 -> 0.861; at batch 64 a pool
    // 27 -> 22 us).
    if (kh == kw && (kh == 3 || kh == 5) && stride_h == 1 && stride_w == 1 &&
        rows_threads >= int64_t{sm_count()} * 512) {
        const int64_t total = rows_threads;
        with_type(x.type, [&](auto tt) {
            using T = typename decltype(tt)::type;
            with_vec<max_vec<T>()>(v, [&](auto vv) {
                constexpr int V = decltype(vv)::value;
                auto launch = [&](auto k) {
                    launch_kernel(maxpool_s1_rows_kernel<T, V, decltype(k)::value, kRows>, grid_blocks(total), kThreads,
                                  0, stream, static_cast<const T*>(x.data), Geom{x.h, x.w, x.pixel_stride},
                                  static_cast<T*>(y.data), Geom{y.h, y.w, y.pixel_stride}, y.c / V, pad_top, pad_left,
                                  row_blocks, total);
                };
                if (kh == 5) {
                    launch(std::integral_constant<int, 5>{});
                } else {
                    launch(std::integral_constant<int, 3>{});
                }
            });
        });
        return;
    }
    const int64_t total = numel(y) / v;
    const int blocks = grid_blocks(total);
    const PoolParams p{kh, kw, stride_h, stride_w, pad_top, pad_left};
    with_type(x.type, [&](auto tt) {
        using T = typename decltype(tt)::type;
        with_vec<max_vec<T>()>(v, [&](auto vv) {
            constexpr int V = decltype(vv)::value;
            const auto r = make_radix<4>({y.c / V, y.w, y.h}, int64_t{blocks} * kThreads);
            launch_kernel(maxpool_kernel<T, V>, blocks, kThreads, 0, stream, static_cast<const T*>(x.data),
                          Geom{x.h, x.w, x.pixel_stride}, static_cast<T*>(y.data), Geom{y.h, y.w, y.pixel_stride}, p, r,
                          total);
        });
    });
}

void sppf_maxpool_nhwc(const NhwcTensor& x, const NhwcTensor& y1, const NhwcTensor& y2, const NhwcTensor& y3, int k,
                       cudaStream_t stream) {
    check_nhwc(x, "sppf_maxpool", "x");
    const NhwcTensor* ys[3] = {&y1, &y2, &y3};
    for (const NhwcTensor* y : ys) {
        check_nhwc(*y, "sppf_maxpool", "y");
        KS_CHECK(y->type == x.type && same_shape(x, *y), "sppf_maxpool: x [", x.n, ", ", x.h, ", ", x.w, ", ", x.c,
                 "] and an output [", y->n, ", ", y->h, ", ", y->w, ", ", y->c, "] differ in shape or type");
    }
    KS_CHECK(k == 3 || k == 5, "sppf_maxpool: ", k, "x", k, " pools are not instantiated (3 and 5 are)");
    if (numel(x) == 0) return;
    int v = pick_vec({&x, &y1, &y2, &y3});
    // A CTA per (channel vector, image): at batch 1 SPPF's 128 f16 channels are 16 CTAs of 8-channel
    // vectors, most SMs idle and every pass 8 channels a pixel for each thread. Narrower vectors
    // (valid wherever wider ones are) give up to 4x the CTAs, each with a quarter of the work a pass.
    int dev = 0, sms = 0;
    KS_CUDA(cudaGetDevice(&dev));
    KS_CUDA(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    while (v > 2 && int64_t{x.n} * (x.c / v) < 2 * int64_t{sms}) v /= 2;
    const int64_t plane_bytes = int64_t{x.h} * x.w * v * elem_size(x.type);
    const int64_t blocks = int64_t{x.n} * (x.c / v);
    // Two planes in the default 48 KB of shared memory (SPPF at 640: 20 x 20 x 16 bytes, 6.4 KB a
    // plane); larger maps get the three launches.
    if (2 * plane_bytes > 48 * 1024 || blocks > INT_MAX) {
        maxpool2d_nhwc(x, y1, k, k, 1, 1, k / 2, k / 2, stream);
        maxpool2d_nhwc(y1, y2, k, k, 1, 1, k / 2, k / 2, stream);
        maxpool2d_nhwc(y2, y3, k, k, 1, 1, k / 2, k / 2, stream);
        return;
    }
    const SppfOutputs out{{y1.data, y2.data, y3.data}, {y1.pixel_stride, y2.pixel_stride, y3.pixel_stride}};
    with_type(x.type, [&](auto tt) {
        using T = typename decltype(tt)::type;
        with_vec<max_vec<T>()>(v, [&](auto vv) {
            constexpr int V = decltype(vv)::value;
            auto launch = [&](auto kk) {
                launch_kernel(sppf_maxpool_kernel<T, V, decltype(kk)::value>, static_cast<unsigned>(blocks), kThreads,
                              static_cast<size_t>(2 * plane_bytes), stream, static_cast<const T*>(x.data),
                              Geom{x.h, x.w, x.pixel_stride}, out, x.c / V);
            };
            if (k == 5) {
                launch(std::integral_constant<int, 5>{});
            } else {
                launch(std::integral_constant<int, 3>{});
            }
        });
    });
}

void resize_nearest_nhwc(const NhwcTensor& x, const NhwcTensor& y, const int32_t* src_y, const int32_t* src_x,
                         cudaStream_t stream) {
    check_nhwc(x, "resize_nearest", "x");
    check_nhwc(y, "resize_nearest", "y");
    KS_CHECK(x.type == y.type, "resize_nearest: x and y types differ");
    KS_CHECK(x.n == y.n && x.c == y.c, "resize_nearest: x [", x.n, ", ", x.c, "] and y [", y.n, ", ", y.c,
             "] differ in batch or channels");
    if (numel(y) == 0) return;
    KS_CHECK(x.h > 0 && x.w > 0, "resize_nearest: empty input for a non-empty output");
    KS_CHECK(src_y != nullptr && src_x != nullptr, "resize_nearest: missing index maps");
    const int v = pick_vec({&x, &y});
    const int64_t total = numel(y) / v;
    const int blocks = grid_blocks(total);
    with_type(x.type, [&](auto tt) {
        using T = typename decltype(tt)::type;
        with_vec<max_vec<T>()>(v, [&](auto vv) {
            constexpr int V = decltype(vv)::value;
            const auto r = make_radix<4>({y.c / V, y.w, y.h}, int64_t{blocks} * kThreads);
            launch_kernel(resize_nearest_kernel<T, V>, blocks, kThreads, 0, stream, static_cast<const T*>(x.data),
                          Geom{x.h, x.w, x.pixel_stride}, static_cast<T*>(y.data), Geom{y.h, y.w, y.pixel_stride},
                          src_y, src_x, r, total);
        });
    });
}

void unary_nhwc(UnaryOp op, const NhwcTensor& x, const NhwcTensor& y, cudaStream_t stream) {
    check_nhwc(x, "unary", "x");
    check_nhwc(y, "unary", "y");
    KS_CHECK(valid_unary(op), "unary: unknown op ", static_cast<int>(op));
    KS_CHECK(same_shape(x, y), "unary: x [", x.n, ", ", x.h, ", ", x.w, ", ", x.c, "] and y [", y.n, ", ", y.h, ", ",
             y.w, ", ", y.c, "] differ");
    KS_CHECK(x.type == y.type || op == UnaryOp::kCopy, "unary: only copy converts between element types");
    if (numel(y) == 0) return;
    const int v = pick_vec({&x, &y});
    const int64_t total = numel(y) / v;
    const int blocks = grid_blocks(total);
    with_type(x.type, [&](auto tx) {
        using Tx = typename decltype(tx)::type;
        with_type(y.type, [&](auto ty) {
            using Ty = typename decltype(ty)::type;
            with_vec<max_vec<Tx, Ty>()>(v, [&](auto vv) {
                constexpr int V = decltype(vv)::value;
                const auto r = make_radix<2>({y.c / V}, int64_t{blocks} * kThreads);
                launch_kernel(unary_nhwc_kernel<Tx, Ty, V>, blocks, kThreads, 0, stream, op,
                              static_cast<const Tx*>(x.data), x.pixel_stride, static_cast<Ty*>(y.data), y.pixel_stride,
                              r, total);
            });
        });
    });
}

void binary_nhwc(BinaryOp op, const NhwcTensor& a, const NhwcTensor& b, const NhwcTensor& y, cudaStream_t stream) {
    check_nhwc(a, "binary", "a");
    check_nhwc(b, "binary", "b");
    check_nhwc(y, "binary", "y");
    KS_CHECK(valid_binary(op), "binary: unknown op ", static_cast<int>(op));
    KS_CHECK(same_shape(a, y) && same_shape(b, y), "binary: a [", a.n, ", ", a.h, ", ", a.w, ", ", a.c, "], b [", b.n,
             ", ", b.h, ", ", b.w, ", ", b.c, "] and y [", y.n, ", ", y.h, ", ", y.w, ", ", y.c, "] differ");
    KS_CHECK(a.type == y.type && b.type == y.type, "binary: element types differ");
    if (numel(y) == 0) return;
    const int v = pick_vec({&a, &b, &y});
    const int64_t total = numel(y) / v;
    const int blocks = grid_blocks(total);
    with_type(y.type, [&](auto tt) {
        using T = typename decltype(tt)::type;
        with_vec<max_vec<T>()>(v, [&](auto vv) {
            constexpr int V = decltype(vv)::value;
            const auto r = make_radix<2>({y.c / V}, int64_t{blocks} * kThreads);
            launch_kernel(binary_nhwc_kernel<T, V>, blocks, kThreads, 0, stream, op, static_cast<const T*>(a.data),
                          a.pixel_stride, static_cast<const T*>(b.data), b.pixel_stride, static_cast<T*>(y.data),
                          y.pixel_stride, r, total);
        });
    });
}

void conv_transpose2d_nhwc(const NhwcTensor& x, const float* w, const float* bias, int kh, int kw, int stride_h,
                           int stride_w, int pad_top, int pad_left, const NhwcTensor& y, cudaStream_t stream) {
    check_nhwc(x, "conv_transpose2d", "x");
    check_nhwc(y, "conv_transpose2d", "y");
    KS_CHECK(x.n == y.n, "conv_transpose2d: batch ", x.n, " in, ", y.n, " out");
    KS_CHECK(kh > 0 && kw > 0 && stride_h > 0 && stride_w > 0 && pad_top >= 0 && pad_left >= 0,
             "conv_transpose2d: invalid kernel ", kh, "x", kw, " stride ", stride_h, "x", stride_w, " pad ", pad_top,
             ",", pad_left);
    KS_CHECK(int64_t{stride_h} * stride_w <= 65535, "conv_transpose2d: stride ", stride_h, "x", stride_w,
             " is too large");
    if (numel(y) == 0) return;
    KS_CHECK(w != nullptr, "conv_transpose2d: missing weights");
    // Output positions past the last tap (output_padding, over-large outputs) get the bias alone,
    // as in ONNX; the bound only rules out outputs no input can ever reach.
    KS_CHECK(int64_t{y.h} <= int64_t{x.h} * stride_h + kh && int64_t{y.w} <= int64_t{x.w} * stride_w + kw,
             "conv_transpose2d: output ", y.h, "x", y.w, " is too large for input ", x.h, "x", x.w);
    const ConvTParams p{kh, kw, stride_h, stride_w, pad_top, pad_left, x.n, x.h, x.w, x.c, y.h, y.w, y.c};
    // The largest phase: rows oy = 0, sh, ... and columns likewise.
    const int64_t pixels = int64_t{y.n} * ceil_div(y.h, stride_h) * ceil_div(y.w, stride_w);
    KS_CHECK(pixels + kConvTBM <= 0x7fffffff, "conv_transpose2d: output too large");
    const int64_t mtiles = ceil_div(pixels, kConvTBM);
    const dim3 grid(static_cast<unsigned>(mtiles), static_cast<unsigned>(ceil_div(y.c, kTileN)),
                    static_cast<unsigned>(stride_h * stride_w));
    KS_CHECK(grid.y <= 65535, "conv_transpose2d: too many output channels");
    with_type(x.type, [&](auto tx) {
        using Tx = typename decltype(tx)::type;
        with_type(y.type, [&](auto ty) {
            using Ty = typename decltype(ty)::type;
            launch_kernel(conv_transpose_kernel<Tx, Ty>, grid, kThreads, 0, stream, static_cast<const Tx*>(x.data),
                          x.pixel_stride, w, bias, p, static_cast<Ty*>(y.data), y.pixel_stride);
        });
    });
}

void global_avgpool_nhwc(const NhwcTensor& x, float* y, cudaStream_t stream) {
    check_nhwc(x, "global_avgpool", "x");
    if (int64_t{x.n} * x.c == 0) return;
    KS_CHECK(int64_t{x.h} * x.w > 0, "global_avgpool: empty spatial extent");
    KS_CHECK(y != nullptr, "global_avgpool: missing output");
    KS_CHECK(x.n <= 65535, "global_avgpool: batch ", x.n, " is too large");
    const dim3 grid(static_cast<unsigned>(ceil_div(x.c, 32)), static_cast<unsigned>(x.n));
    with_type(x.type, [&](auto tt) {
        using T = typename decltype(tt)::type;
        launch_kernel(global_avgpool_kernel<T>, grid, dim3(32, kPoolRows), 0, stream, static_cast<const T*>(x.data),
                      int64_t{x.h} * x.w, x.c, x.pixel_stride, y);
    });
}

// ---- layout conversions ------------------------------------------------------------------------

void nchw_to_nhwc(const float* x, const NhwcTensor& y, cudaStream_t stream, int x_channels) {
    check_nhwc(y, "nchw_to_nhwc", "y");
    if (numel(y) == 0) return;
    KS_CHECK(x != nullptr, "nchw_to_nhwc: missing input");
    if (x_channels < 0) x_channels = y.c;
    KS_CHECK(x_channels >= 1 && x_channels <= y.c && (x_channels == y.c || y.c <= kSmallChannels),
             "nchw_to_nhwc: ", x_channels, " input channels cannot be padded to ", y.c);
    const int64_t hw = int64_t{y.h} * y.w;
    with_type(y.type, [&](auto tt) {
        using T = typename decltype(tt)::type;
        T* out = static_cast<T*>(y.data);
        if (y.c <= kSmallChannels) {
            const int64_t total = y.n * hw;
            const int blocks = grid_blocks(total);
            const auto r = make_radix<2>({hw}, int64_t{blocks} * kThreads);
            launch_kernel(nchw_to_nhwc_small<T>, blocks, kThreads, 0, stream, x, out, x_channels, y.c, hw,
                          y.pixel_stride, r, total);
        } else {
            KS_CHECK(y.n <= 65535, "nchw_to_nhwc: batch ", y.n, " is too large");
            const dim3 grid(static_cast<unsigned>(ceil_div(hw, kTile)), static_cast<unsigned>(ceil_div(y.c, kTile)),
                            static_cast<unsigned>(y.n));
            launch_kernel(nchw_to_nhwc_tiled<T>, grid, dim3(kTile, kTileRows), 0, stream, x, out, y.c, hw,
                          y.pixel_stride);
        }
    });
}

void nhwc_to_nchw(const NhwcTensor& x, float* y, cudaStream_t stream) {
    check_nhwc(x, "nhwc_to_nchw", "x");
    if (numel(x) == 0) return;
    KS_CHECK(y != nullptr, "nhwc_to_nchw: missing output");
    const int64_t hw = int64_t{x.h} * x.w;
    with_type(x.type, [&](auto tt) {
        using T = typename decltype(tt)::type;
        const T* in = static_cast<const T*>(x.data);
        if (x.c <= kSmallChannels) {
            const int64_t total = x.n * hw;
            const int blocks = grid_blocks(total);
            const auto r = make_radix<2>({hw}, int64_t{blocks} * kThreads);
            launch_kernel(nhwc_to_nchw_small<T>, blocks, kThreads, 0, stream, in, x.c, hw, x.pixel_stride, y, r, total);
        } else {
            KS_CHECK(x.n <= 65535, "nhwc_to_nchw: batch ", x.n, " is too large");
            const dim3 grid(static_cast<unsigned>(ceil_div(hw, kTile)), static_cast<unsigned>(ceil_div(x.c, kTile)),
                            static_cast<unsigned>(x.n));
            launch_kernel(nhwc_to_nchw_tiled<T>, grid, dim3(kTile, kTileRows), 0, stream, in, x.c, hw, x.pixel_stride,
                          y);
        }
    });
}

// ---- strided float32 entry points --------------------------------------------------------------

void unary_strided(UnaryOp op, const StridedTensor& x, const StridedTensor& y, cudaStream_t stream) {
    KS_CHECK(valid_unary(op), "unary_strided: unknown op ", static_cast<int>(op));
    const Canonical c = canonicalize("unary_strided", y, {&x}, /*broadcast=*/false);
    if (c.total == 0) return;
    const int blocks = grid_blocks(c.total);
    with_rank(c.rank, [&](auto rr) {
        constexpr int R = decltype(rr)::value;
        launch_kernel(unary_strided_kernel<R>, blocks, kThreads, 0, stream, op, x.data, y.data,
                      strided_args<R>(c, int64_t{blocks} * kThreads), c.total);
    });
}

void binary_strided(BinaryOp op, const StridedTensor& a, const StridedTensor& b, const StridedTensor& y,
                    cudaStream_t stream) {
    KS_CHECK(valid_binary(op), "binary_strided: unknown op ", static_cast<int>(op));
    const Canonical c = canonicalize("binary_strided", y, {&a, &b}, /*broadcast=*/true);
    if (c.total == 0) return;
    const int blocks = grid_blocks(c.total);
    with_rank(c.rank, [&](auto rr) {
        constexpr int R = decltype(rr)::value;
        launch_kernel(binary_strided_kernel<R>, blocks, kThreads, 0, stream, op, a.data, b.data, y.data,
                      strided_args<R>(c, int64_t{blocks} * kThreads), c.total);
    });
}

void softmax(const float* x, float* y, int64_t outer, int64_t len, int64_t inner, cudaStream_t stream) {
    KS_CHECK(outer >= 0 && len >= 0 && inner >= 0, "softmax: invalid shape [", outer, ", ", len, ", ", inner, "]");
    if (outer == 0 || len == 0 || inner == 0) return;
    KS_CHECK(x != nullptr && y != nullptr, "softmax: missing data");
    if (inner == 1) {
        if (len <= 1024) {
            const int blocks = grid_blocks(outer * 32);
            launch_kernel(softmax_rows_warp, blocks, kThreads, 0, stream, x, y, outer, len);
        } else {
            const int blocks = static_cast<int>(std::min<int64_t>(outer, grid_blocks(outer * kThreads)));
            launch_kernel(softmax_rows_block, blocks, kThreads, 0, stream, x, y, outer, len);
        }
    } else {
        const int64_t total = outer * inner;
        const int blocks = grid_blocks(total);
        const auto r = make_radix<2>({inner}, int64_t{blocks} * kThreads);
        if (len <= 16) {
            launch_kernel(softmax_columns<16>, blocks, kThreads, 0, stream, x, y, len, inner, r, total);
        } else {
            launch_kernel(softmax_columns<0>, blocks, kThreads, 0, stream, x, y, len, inner, r, total);
        }
    }
}

void gemm_f32(const float* x, const float* w, const float* bias, float* y, int m, int n, int k, bool trans_w,
              float alpha, float beta, cudaStream_t stream) {
    KS_CHECK(m >= 0 && n >= 0 && k >= 0, "gemm_f32: invalid shape m=", m, " n=", n, " k=", k);
    if (m == 0 || n == 0) return;
    KS_CHECK(y != nullptr && (k == 0 || (x != nullptr && w != nullptr)), "gemm_f32: missing data");
    // Small m (the classify head at small batch): 16-row tiles, so blocks do not idle on padding rows.
    const bool small = m <= 16;
    const int bm = small ? 16 : 64;
    KS_CHECK(ceil_div(m, bm) <= 65535, "gemm_f32: m=", m, " is too large");
    const dim3 grid(static_cast<unsigned>(ceil_div(n, kTileN)), static_cast<unsigned>(ceil_div(m, bm)));
    if (small) {
        launch_kernel(gemm_kernel<16>, grid, kThreads, 0, stream, x, w, bias, y, m, n, k, trans_w, alpha, beta);
    } else {
        launch_kernel(gemm_kernel<64>, grid, kThreads, 0, stream, x, w, bias, y, m, n, k, trans_w, alpha, beta);
    }
}

}  // namespace kestrel::cuda
