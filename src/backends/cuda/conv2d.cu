// Convolution kernels (see conv2d.h). Three families share one packed weight layout per type,
// [k][kh][kw][c/groups] (the GEMM's B matrix stored N x K, K contiguous), so the auto-tuner can time
// every tactic on one packed copy:
//   - SIMT: float32 FMA on register tiles, any shape and any groups. With float tensors it is the
//     exact f32 path; with f16 tensors it is the generic fallback (grouped and depthwise convs).
//   - MMA: f16 tensor cores (mma.sync m16n8k16, f32 accumulators) fed by cp.async 16-byte copies
//     into a multi-stage, XOR-swizzled shared-memory ring and read back with ldmatrix. Needs
//     groups == 1, (c/groups) % 8 == 0, at most 32 filter taps and 16-byte aligned input pixels.
//   - MMA gather: the same tensor-core main loop, but A and B are gathered element by element, so it
//     runs any groups == 1 conv (the 3-channel stem, odd channel counts, misaligned slices).
//   - MMA INT8 ("s8mma"): the MMA kernel with int8 weights; x (f16) arrives through the same
//     cp.async ring and is quantised where ldmatrix reads it into registers, so feature maps stay
//     f16 in memory. mma.sync m16n8k32 (s8 x s8 -> s32); the epilogue dequantises per channel.
//   - Split-K (MMA and f32 SIMT, "_splitk<S>_" in the name): the same kernels with the reduction
//     spread over S CTAs per output tile, summed in a caller-provided float32 workspace (see
//     conv2d_workspace_bytes); for small-M, long-K layers (batch-1 deep layers). Never picked by the
//     heuristic, which has no workspace to give.
// Every kernel fuses the epilogue (bias, optional SiLU, optional residual) and stores through the
// output's pixel stride; the tensor-core kernels stage the tile in shared memory so that they store
// 16 bytes at a time when the output and residual are aligned for it.
// Packed weights must be 16-byte aligned (cudaMalloc'd, or at a 16-byte offset in a larger blob).
// The vectorised MMA tactics also need x 16-byte aligned with pixel_stride % 8 == 0, spanning less
// than 4 GiB (32-bit offsets); ConvShape
// cannot say so, so conv2d_tactic_supports() accepts them and conv2d_nhwc() throws for such an x
// (the heuristic, tactic < 0, falls back to the gather tactics).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cmath>
#include <cstring>
#include <sstream>
#include <type_traits>

#include "backends/cuda/activations.cuh"
#include "backends/cuda/conv2d.h"
#include "backends/cuda/device_convert.cuh"
#include "backends/cuda/fast_divmod.h"
#include "backends/cuda/launch.cuh"
#include "backends/cuda/mma_sync.cuh"
#include "backends/cuda/stem_mma.cuh"
#include "backends/cuda/wgmma.cuh"
#include "core/half.h"

namespace kestrel::cuda {
namespace {

// Everything a kernel needs, by value in the constant bank. Channel counts are per group.
struct ConvParams {
    const void* x = nullptr;
    const void* wgt = nullptr;
    const float* bias = nullptr;
    const void* res = nullptr;
    void* y = nullptr;
    int in_h = 0, in_w = 0;
    int64_t x_ps = 0, y_ps = 0, res_ps = 0;
    int out_h = 0, out_w = 0;
    int kh = 1, kw = 1, sh = 1, sw = 1, pt = 0, pl = 0, dh = 1, dw = 1;
    int cg = 0, kg = 0;  // input and output channels per group
    int gemm_k = 0;      // kh * kw * cg
    int gemm_m = 0;      // n * out_h * out_w
    int silu = 0;
    int y_vec = 0;               // y allows 16-byte stores (pixel stride % 8 == 0, 16-byte aligned base)
    int res_vec = 0;             // likewise for residual loads
    int bias_vec = 0;            // bias 16-byte aligned (float4 loads)
    int pointwise = 0;           // 1x1, stride 1, no padding: GEMM row m is input pixel m (no index arithmetic)
    FastDivmod div_ohw, div_ow;  // GEMM row -> (image, output pixel) -> (output y, output x)
    int a_via_l1 = 0;            // cache input loads in L1 (filters with several taps re-read their neighbours' pixels)
    // INT8 tactics: 1 / input scale, per-channel dequantisation factors, and the packed weights'
    // row length (gemm_k rounded up to whole 32-wide k-tiles, zero-filled).
    float inv_scale = 0.f;
    const float* dequant = nullptr;
    int w_ld = 0;
    // Split-K tactics: zero-filled float32 partial-sum tiles (one per output tile, BM * BN floats,
    // row-major) followed by one arrival counter per tile. Left zero-filled again by the kernel.
    float* ws = nullptr;
    // conv2d_upsampled_concat_nhwc (1x1 tensor-core tactics): input channels [0, up_c) come from the
    // half-size map at element offset up_off from x (pixel stride up_ps), output pixel (oy, ox)
    // reading its pixel (oy / 2, ox / 2); the rest from x's own pixels, which start at element
    // offset x_off (x is then the lower of the two addresses). up_c = 0: x alone.
    int up_c = 0;
    int64_t up_off = 0, up_ps = 0, x_off = 0;
};

// An output row (pixel) that does not exist gets this input row origin, so every tap of it fails
// the bounds test and loads zero; dilated taps cannot bring it back into range.
constexpr int kDeadRow = -(1 << 29);

template <bool kPrecise>
__device__ __forceinline__ float silu_act(float v) {
    return kPrecise ? silu_exact(v) : silu_approx(v);
}

// ---- PTX wrappers ----------------------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes from global src to shared dst. !valid zero-fills dst and ignores src entirely (the
// ignore-src operand): nothing is read, so src may be any address, e.g. a padding tap's, which lies
// outside the tensor. kViaL1 caches the read in L1 (.ca): neighbouring taps of a filter read mostly
// the same input pixels; otherwise it goes to L2 only (.cg).
template <bool kViaL1>
__device__ __forceinline__ void cp_async16(uint32_t dst, uint64_t src, bool valid) {
    if constexpr (kViaL1) {
        asm volatile(
            "{\n .reg .pred skip;\n setp.eq.u32 skip, %2, 0;\n cp.async.ca.shared.global [%0], [%1], 16, skip;\n}\n" ::
                "r"(dst),
            "l"(src), "r"(static_cast<unsigned>(valid)));
    } else {
        asm volatile(
            "{\n .reg .pred skip;\n setp.eq.u32 skip, %2, 0;\n cp.async.cg.shared.global [%0], [%1], 16, skip;\n}\n" ::
                "r"(dst),
            "l"(src), "r"(static_cast<unsigned>(valid)));
    }
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// One ldmatrix.x4 of B (stored n-major, mma's "col" operand, 16 n x 16 k): the (b0, b1)
// fragments of n8 blocks n and n + 8.
__device__ __forceinline__ void ldmatrix_b_pair(uint32_t (&lo)[2], uint32_t (&hi)[2], uint32_t addr) {
    uint32_t t[4];
    ldmatrix_x4(t, addr);
    lo[0] = t[0], lo[1] = t[1], hi[0] = t[2], hi[1] = t[3];
}

// Four f16 values (two half2 registers) -> four int8 in one register, x * inv rounded to nearest
// even and clamped to [-128, 127]; lo's pair lands in bytes 0-1, hi's in bytes 2-3.
__device__ __forceinline__ uint32_t quantize4_s8(uint32_t lo, uint32_t hi, float inv) {
    const float2 a = __half22float2(*reinterpret_cast<const __half2*>(&lo));
    const float2 b = __half22float2(*reinterpret_cast<const __half2*>(&hi));
    auto q = [inv](float v) { return static_cast<uint32_t>(min(127, max(-128, __float2int_rn(v * inv)))) & 0xffu; };
    return q(a.x) | (q(a.y) << 8) | (q(b.x) << 16) | (q(b.y) << 24);
}

// ---- epilogue ---------------------------------------------------------------------------------------

// v += the 8 halves packed in r.
__device__ __forceinline__ void add_half8(float (&v)[8], const uint4& r) {
    const __half2* rh = reinterpret_cast<const __half2*>(&r);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const float2 f = __half22float2(rh[j]);
        v[2 * j] += f.x;
        v[2 * j + 1] += f.y;
    }
}

// v plus the 8 halves at res (if any) -> 8 halves at y: one 16-byte load and one 16-byte store.
__device__ __forceinline__ void store8_vec(float (&v)[8], const uint4* res, uint4* y) {
    if (res) add_half8(v, *res);
    uint4 out;
    __half2* oh = reinterpret_cast<__half2*>(&out);
#pragma unroll
    for (int j = 0; j < 4; ++j) oh[j] = __floats2half2_rn(v[2 * j], v[2 * j + 1]);
    *y = out;
}

// Bias and activation (kBiasAct; otherwise v has them already), residual and store for 8
// consecutive output channels [n, n + 8) of pixel m, clipped to the k channels that exist. 16-byte
// accesses when the tensors' strides and bases allow.
template <bool kBiasAct>
__device__ __forceinline__ void store8_f16(const ConvParams& p, int m, int n, float (&v)[8]) {
    const int cnt = min(8, p.kg - n);
    if constexpr (kBiasAct) {
        if (cnt == 8 && p.bias_vec) {
            const float4 b0 = __ldg(reinterpret_cast<const float4*>(p.bias + n));
            const float4 b1 = __ldg(reinterpret_cast<const float4*>(p.bias + n + 4));
            v[0] += b0.x, v[1] += b0.y, v[2] += b0.z, v[3] += b0.w;
            v[4] += b1.x, v[5] += b1.y, v[6] += b1.z, v[7] += b1.w;
        } else {
#pragma unroll
            for (int j = 0; j < 8; ++j)
                if (j < cnt) v[j] += __ldg(p.bias + n + j);
        }
        if (p.silu) {
#pragma unroll
            for (int j = 0; j < 8; ++j) v[j] = silu_act<false>(v[j]);
        }
    }
    __half* y = static_cast<__half*>(p.y) + static_cast<int64_t>(m) * p.y_ps + n;
    const __half* res = p.res ? static_cast<const __half*>(p.res) + static_cast<int64_t>(m) * p.res_ps + n : nullptr;
    if (cnt == 8 && p.y_vec && (!res || p.res_vec)) {
        store8_vec(v, reinterpret_cast<const uint4*>(res), reinterpret_cast<uint4*>(y));
    } else {
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            if (j < cnt) {
                float o = v[j];
                if (res) o += __half2float(res[j]);
                y[j] = __float2half_rn(o);
            }
        }
    }
}

// ---- split-K ---------------------------------------------------------------------------------------
//
// grid.z (tensor cores) or grid.y (SIMT) is the split: CTA z of an output tile multiplies k-tiles
// [z * T / S, (z + 1) * T / S) of the T = ceil(K / BK) and adds its partial tile into the float32
// workspace tile with vector reductions (red.global.add.v4.f32, performed at L2). Then every thread
// fences (release), the CTA bumps the tile's counter, and the CTA that arrives last fences again
// (acquire), reads the complete sums from L2 (ld.global.cg; L1 is not coherent), writes zeros back,
// resets the counter and runs the usual epilogue. So one launch, no memset, and the workspace is
// zero-filled again when the kernel ends.

// The workspace is laid out as [tiles][BM * BN] floats, then [tiles] unsigned counters.
__device__ __forceinline__ void red_add4(float* dst, float4 v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float4*>(dst), v);  // result unused: compiles to red.global.add.v4.f32
#else
    atomicAdd(dst, v.x);
    atomicAdd(dst + 1, v.y);
    atomicAdd(dst + 2, v.z);
    atomicAdd(dst + 3, v.w);
#endif
}

// Called by every thread of the CTA after its partial sums were added into the workspace.
// Returns true in every thread of the CTA that completed the tile (the others may exit).
__device__ __forceinline__ bool splitk_arrive(unsigned* counter, unsigned splits, int* s_flag) {
    __threadfence();  // release: this thread's reductions are visible device-wide before the count
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned old = atomicAdd(counter, 1u);
        const bool last = old == splits - 1;
        if (last) *counter = 0;  // every other split has arrived: nobody touches it again this launch
        *s_flag = last ? 1 : 0;
    }
    __syncthreads();
    const bool last = *s_flag != 0;
    if (last) __threadfence();  // acquire: the other splits' sums, ordered after the counter
    return last;
}

// Takes the summed 4 floats at src and leaves zeros there.
__device__ __forceinline__ float4 take4(float* src) {
    const float4 v = __ldcg(reinterpret_cast<const float4*>(src));
    __stcg(reinterpret_cast<float4*>(src), make_float4(0.f, 0.f, 0.f, 0.f));
    return v;
}

__device__ __forceinline__ void splitk_range(int k_tiles, int z, int splits, int& begin, int& end) {
    begin = static_cast<int>(static_cast<int64_t>(k_tiles) * z / splits);
    end = static_cast<int>(static_cast<int64_t>(k_tiles) * (z + 1) / splits);
}

// ---- tensor-core implicit GEMM ---------------------------------------------------------------------
//
// CTA tile BM x BN x 32, WARPS_M x WARPS_N warps each owning a (BM / WARPS_M) x (BN / WARPS_N) block
// of m16n8 accumulators. Shared memory rows are 32 halves (64 bytes, four 16-byte chunks); chunk c of
// row r is stored at chunk c ^ ((r >> 1) & 3), which spreads the eight rows of every ldmatrix phase
// and every cp.async wavefront over all 32 banks.

constexpr int kMmaBK = 32;

constexpr int mma_smem_bytes(int bm, int bn, int stages, bool int8, bool wgmma = false) {
    // The epilogue stages the float accumulator tile in the same memory as the pipeline ring. wgmma
    // tactics align the ring to 512 bytes (the swizzle's period) inside it.
    return std::max(stages * (bm * 2 + bn * (int8 ? 1 : 2)) * kMmaBK + (wgmma ? 512 : 0), bm * (bn + 8) * 4);
}

// INT8 tactics keep the f16 A fragments that ldmatrix gives for k16 halves: thread (g, t) holds k
// {2t, 2t+1, 2t+8, 2t+9} of each half, where m16n8k32's s8 fragment wants 4t..4t+3. A dot product
// does not care about the order of k, so the kernel quantises those four into slots 4t..4t+3 and
// the weights are packed with the same permutation within every 16 k: slot p holds k perm(p).
__host__ __device__ constexpr int s8_slot_to_k(int p) {
    return (p & ~15) + 2 * ((p & 15) >> 2) + (p & 1) + (((p >> 1) & 1) << 3);
}

__device__ __forceinline__ int swz(int row, int chunk) { return row * kMmaBK + ((chunk ^ ((row >> 1) & 3)) << 3); }

// kWgmma: the same ring and loader, multiplied by warpgroup MMAs (wgmma.cuh) instead of ldmatrix +
// mma.sync: warpgroup g (warps 4g..4g+3, WARPS_M = 4 x warpgroups, WARPS_N = 1) owns rows
// [64g, 64g + 64) of the tile and all BN columns, one m64nBNk16 per 16 k.
template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, bool kGather, bool kSplitK, bool kInt8, bool kWgmma>
__global__ void __launch_bounds__(WARPS_M* WARPS_N * 32, kGather || WARPS_M * WARPS_N == 8 ? 2 : 4)
    conv_mma_kernel(const ConvParams p) {
    wait_for_previous_kernel();
    static_assert(!(kGather && kInt8), "INT8 tactics read aligned f16 inputs");
    static_assert(!kWgmma || (WARPS_N == 1 && WARPS_M % 4 == 0 && BM == 16 * WARPS_M && !kGather && !kInt8),
                  "wgmma tactics: f16 vectorised loads, one warpgroup per 64 rows, all columns");
    constexpr int kThreads = WARPS_M * WARPS_N * 32;
    constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N;
    constexpr int MI = WM / 16, NI = WN / 8;
    static_assert(WM % 16 == 0 && WN % 16 == 0, "a warp owns whole m16 rows and pairs of n8 columns");
    constexpr int kRowsPerPass = kThreads / 4;  // four 16-byte chunks per 32-wide k row
    static_assert(BM % kRowsPerPass == 0, "every thread loads the same number of A rows");
    constexpr int kAPasses = BM / kRowsPerPass;
    constexpr int kStageA = BM * kMmaBK;  // halves
    // B rows: f16 weights are 64-byte rows like A's; INT8 weights are rows of 32 bytes (two 16-byte
    // chunks), chunk c of row r stored at chunk c ^ ((r >> 2) & 1), so the 8 rows an ldmatrix phase
    // reads cover all 32 banks.
    constexpr int kBRowBytes = kInt8 ? kMmaBK : 2 * kMmaBK;
    constexpr int kBRowsPerPass = kThreads / (kBRowBytes / 16);
    constexpr int kBPasses = (BN + kBRowsPerPass - 1) / kBRowsPerPass;
    constexpr int kStageBBytes = BN * kBRowBytes;

    extern __shared__ __align__(128) unsigned char smem[];
    // wgmma reads the swizzle from address bits, so its tiles start at multiples of 512 bytes (every
    // stage of A and B is a multiple of 512 bytes long).
    const uint32_t s_a_addr = kWgmma ? (smem_addr(smem) + 511) & ~511u : smem_addr(smem);
    const uint32_t s_b_addr = s_a_addr + STAGES * kStageA * 2;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int wm = warp % WARPS_M, wn = warp / WARPS_M;
    const int n_tiles = (p.kg + BN - 1) / BN;
    const int tile_n = static_cast<int>(blockIdx.x % n_tiles), tile_m = static_cast<int>(blockIdx.x / n_tiles);

    const unsigned short* x = static_cast<const unsigned short*>(p.x);
    const unsigned short* wgt = static_cast<const unsigned short*>(p.wgt);

    // Loader assignment: thread t copies chunk (t % 4) of A rows t / 4 + i * kRowsPerPass, so the
    // k offset it loads is the same for all its rows and advances by 32 per k-tile; likewise for B
    // (chunk t % 2 of rows t / 2 + j * kBRowsPerPass for INT8 weights).
    const int chunk = tid & 3, row0 = tid >> 2;
    const int chunk_b = kInt8 ? tid & 1 : chunk, row0_b = kInt8 ? tid >> 1 : row0;
    // Rows are loaded kRowsPerPass (a multiple of 8) apart, so one swizzled offset serves all passes.
    const uint32_t a_st = 2 * swz(row0, chunk);
    const uint32_t b_st = kInt8 ? row0_b * kMmaBK + ((chunk_b ^ ((row0_b >> 2) & 1)) << 4) : a_st;

    // This CTA's k-tiles: all of them, or its split's share.
    int kt_begin = 0, kt_end = (p.gemm_k + kMmaBK - 1) / kMmaBK;
    if constexpr (kSplitK)
        splitk_range(kt_end, static_cast<int>(blockIdx.z), static_cast<int>(gridDim.z), kt_begin, kt_end);

    // The k index this thread loads next, as (filter row, filter column, channel).
    int kidx = kt_begin * kMmaBK + chunk * 8;
    int ci = kidx % p.cg, fs = (kidx / p.cg) % p.kw, fr = kidx / p.cg / p.kw;

    // Vectorised tactics keep one 32-bit byte offset per A row (from x) and per B row (from the
    // weights) and advance them with the k-tiles, so a 16-byte copy costs a mask test, the copy and
    // an add (x and the weights span less than 4 GiB: conv2d_nhwc checks). An A row's offset is its
    // window's top-left input pixel (outside the image where the window overhangs the padding, so
    // it may wrap around) plus the current tap's offset; its 32-bit mask has one bit per filter tap
    // that lands inside the image. A copy whose tap is outside ignores its source (cp_async16), so
    // the offset may point anywhere then. The four threads that load a row's four chunks need the
    // same two words: each row is worked out once, by one thread, in shared memory.
    [[maybe_unused]] uint32_t a_off[kAPasses], a_taps[kAPasses], b_off[kBPasses];
    [[maybe_unused]] unsigned b_live = 0;  // bit j: B row pass j is an output channel that exists
    [[maybe_unused]] int tap = 0;          // filter row * kw + filter column of k index kidx
    [[maybe_unused]] int64_t tap_off = 0;  // its offset from a window's top-left pixel, in elements
    auto tap_offset = [&] { return static_cast<int64_t>(fr * p.dh * p.in_w + fs * p.dw) * p.x_ps + ci; };
    [[maybe_unused]] const uint32_t* x_rows = nullptr;  // the rows' offsets in x (where up_c channels end)
    if constexpr (!kGather) {
        __shared__ uint32_t s_row_off[BM], s_row_taps[BM], s_row_up[BM];
        x_rows = s_row_off;
        for (int r = tid; r < BM; r += kThreads) {
            const int m = tile_m * BM + r;
            int64_t off = 0, up = 0;
            uint32_t taps = 0;
            if (m < p.gemm_m && p.pointwise) {
                off = static_cast<int64_t>(m) * p.x_ps;  // 1x1, stride 1: row m is input pixel m
                taps = 1;
                if (p.up_c) {
                    int rem, ox;
                    const int img = p.div_ohw.divmod(m, rem);
                    const int oy = p.div_ow.divmod(rem, ox);
                    up =
                        ((static_cast<int64_t>(img) * (p.in_h >> 1) + (oy >> 1)) * (p.in_w >> 1) + (ox >> 1)) * p.up_ps;
                }
            } else if (m < p.gemm_m) {
                int rem, ox;
                const int img = p.div_ohw.divmod(m, rem);
                const int oy = p.div_ow.divmod(rem, ox);
                const int ih0 = oy * p.sh - p.pt, iw0 = ox * p.sw - p.pl;
                off = ((static_cast<int64_t>(img) * p.in_h + ih0) * p.in_w + iw0) * p.x_ps;
                uint32_t cols = 0;  // the filter columns inside the image, then shifted to each row inside it
                for (int c = 0; c < p.kw; ++c)
                    if (static_cast<unsigned>(iw0 + c * p.dw) < static_cast<unsigned>(p.in_w)) cols |= 1u << c;
                for (int fy = 0; fy < p.kh; ++fy)
                    if (static_cast<unsigned>(ih0 + fy * p.dh) < static_cast<unsigned>(p.in_h))
                        taps |= cols << (fy * p.kw);
            }
            s_row_off[r] = static_cast<uint32_t>(2 * (p.x_off + off));
            s_row_taps[r] = taps;
            s_row_up[r] = static_cast<uint32_t>(2 * (p.up_off + up));
        }
        __syncthreads();
        tap = fr * p.kw + fs;
        tap_off = tap_offset();
        const uint32_t* rows = kidx < p.up_c ? s_row_up : s_row_off;  // a 1x1 conv's k is its channel
#pragma unroll
        for (int i = 0; i < kAPasses; ++i) {
            a_off[i] = rows[row0 + i * kRowsPerPass] + static_cast<uint32_t>(2 * tap_off);
            a_taps[i] = s_row_taps[row0 + i * kRowsPerPass];
        }
#pragma unroll
        for (int j = 0; j < kBPasses; ++j) {
            const int n = tile_n * BN + row0_b + j * kBRowsPerPass;
            const bool live = n < p.kg && (BN % kBRowsPerPass == 0 || row0_b + j * kBRowsPerPass < BN);
            b_live |= live ? 1u << j : 0u;
            const int64_t off = kInt8 ? static_cast<int64_t>(n) * p.w_ld + kt_begin * kMmaBK + chunk_b * 16
                                      : 2 * (static_cast<int64_t>(n) * p.gemm_k + kidx);
            b_off[j] = live ? static_cast<uint32_t>(off) : 0u;
        }
    }
    // Gather tactics: per A row, its image and the window's top-left input pixel.
    [[maybe_unused]] const unsigned short* a_img[kAPasses];
    [[maybe_unused]] int a_ih0[kAPasses], a_iw0[kAPasses];
    if constexpr (kGather) {
#pragma unroll
        for (int i = 0; i < kAPasses; ++i) {
            const int m = tile_m * BM + row0 + i * kRowsPerPass;
            if (m < p.gemm_m) {
                int rem, ox;
                const int img = p.div_ohw.divmod(m, rem);
                const int oy = p.div_ow.divmod(rem, ox);
                a_img[i] = x + static_cast<int64_t>(img) * p.in_h * p.in_w * p.x_ps;
                a_ih0[i] = oy * p.sh - p.pt;
                a_iw0[i] = ox * p.sw - p.pl;
            } else {
                a_img[i] = x;
                a_ih0[i] = kDeadRow;
                a_iw0[i] = 0;
            }
        }
    }

    // Copies k-tile kidx into the given stage and steps to the next k-tile. kViaL1: A through L1.
    auto load_tile = [&](int stage, auto via_l1) {
        if constexpr (!kGather) {
            // A tap past the filter (k past gemm_k) has no bit: such copies zero-fill.
            const uint32_t tap_bit = tap < 32 ? 1u << tap : 0u;
            const uint64_t xb = reinterpret_cast<uint64_t>(x), wb = reinterpret_cast<uint64_t>(p.wgt);
            const uint32_t a_dst = s_a_addr + stage * (2 * kStageA) + a_st;
#pragma unroll
            for (int i = 0; i < kAPasses; ++i)
                cp_async16<decltype(via_l1)::value>(a_dst + i * (2 * kRowsPerPass * kMmaBK), xb + a_off[i],
                                                    (a_taps[i] & tap_bit) != 0);
            // INT8 weights are whole zero-filled k-tile rows (up to w_ld); f16 ones end at gemm_k.
            const bool kvalid = kInt8 || kidx < p.gemm_k;
            const uint32_t b_dst = s_b_addr + stage * kStageBBytes + b_st;
#pragma unroll
            for (int j = 0; j < kBPasses; ++j) {
                if (BN % kBRowsPerPass == 0 || row0_b + j * kBRowsPerPass < BN)
                    cp_async16<false>(b_dst + j * (kBRowsPerPass * kBRowBytes), wb + b_off[j],
                                      kvalid && ((b_live >> j) & 1));
                b_off[j] += kBRowBytes;
            }
            // cg % 8 == 0 here, so a chunk never straddles two taps; step to the next k-tile's tap.
            const int64_t prev = tap_off;
            kidx += kMmaBK;
            ci += kMmaBK;
            tap_off += kMmaBK;
            if (ci >= p.cg) {
                do {
                    ci -= p.cg;
                    ++tap;
                    if (++fs == p.kw) {
                        fs = 0;
                        ++fr;
                    }
                } while (ci >= p.cg);
                tap_off = tap_offset();
            }
            if (kidx == p.up_c + chunk * 8) {  // the k-tile after the upsampled channels: x's own pixels from here
#pragma unroll
                for (int i = 0; i < kAPasses; ++i)
                    a_off[i] = x_rows[row0 + i * kRowsPerPass] + static_cast<uint32_t>(2 * tap_off);
            } else {
#pragma unroll
                for (int i = 0; i < kAPasses; ++i) a_off[i] += static_cast<uint32_t>(2 * (tap_off - prev));
            }
        } else {
            // Any channel count: the chunk's 8 k indices may span several taps. Work out each
            // element's tap once, then gather it for every row.
            __half* s_a = reinterpret_cast<__half*>(smem);
            __half* s_b = s_a + STAGES * kStageA;
            const int st_off = a_st / 2;
            int dy[8], dx[8], dc[8];
            bool kv[8];
            {
                int c = ci, s = fs, r = fr;
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    kv[e] = kidx + e < p.gemm_k;
                    dy[e] = r * p.dh;
                    dx[e] = s * p.dw;
                    dc[e] = c;
                    if (++c == p.cg) {
                        c = 0;
                        if (++s == p.kw) {
                            s = 0;
                            ++r;
                        }
                    }
                }
            }
#pragma unroll
            for (int i = 0; i < kAPasses; ++i) {
                uint32_t packed[4] = {0, 0, 0, 0};
#pragma unroll
                for (int e = 0; e < 8; ++e) {
                    const int ih = a_ih0[i] + dy[e], iw = a_iw0[i] + dx[e];
                    if (kv[e] && static_cast<unsigned>(ih) < static_cast<unsigned>(p.in_h) &&
                        static_cast<unsigned>(iw) < static_cast<unsigned>(p.in_w)) {
                        const uint32_t h = __ldg(a_img[i] + (static_cast<int64_t>(ih) * p.in_w + iw) * p.x_ps + dc[e]);
                        packed[e >> 1] |= h << (16 * (e & 1));
                    }
                }
                *reinterpret_cast<uint4*>(s_a + stage * kStageA + st_off + i * kRowsPerPass * kMmaBK) =
                    make_uint4(packed[0], packed[1], packed[2], packed[3]);
            }
#pragma unroll
            for (int j = 0; j < kBPasses; ++j) {
                const int nrow = row0 + j * kRowsPerPass;
                if (BN % kRowsPerPass == 0 || nrow < BN) {
                    const int n = tile_n * BN + nrow;
                    uint32_t packed[4] = {0, 0, 0, 0};
                    if (n < p.kg) {
                        const unsigned short* src = wgt + static_cast<int64_t>(n) * p.gemm_k + kidx;
#pragma unroll
                        for (int e = 0; e < 8; ++e)
                            if (kv[e]) packed[e >> 1] |= static_cast<uint32_t>(__ldg(src + e)) << (16 * (e & 1));
                    }
                    *reinterpret_cast<uint4*>(s_b + BN * kMmaBK * stage + st_off + j * kRowsPerPass * kMmaBK) =
                        make_uint4(packed[0], packed[1], packed[2], packed[3]);
                }
            }
            // The channel count may be below 32, so one k-tile can cross several taps.
            kidx += kMmaBK;
            ci += kMmaBK;
            if (ci >= p.cg) {
                const int q = ci / p.cg;
                ci -= q * p.cg;
                fs += q;
                if (fs >= p.kw) {
                    const int q2 = fs / p.kw;
                    fs -= q2 * p.kw;
                    fr += q2;
                }
            }
        }
    };

    // ldmatrix addresses (bytes, stage 0, k16 step 0): lanes 0-15 give rows 0-15 of the k-low chunk,
    // lanes 16-31 the k-high chunk (A, row-major m16k16); for B (stored n-major, which is mma's
    // "col" operand) lanes 0-7 / 8-15 give n 0-7 at k-low / k-high and lanes 16-31 the same for
    // n 8-15. Row bits 1-2, which pick the swizzle, come from the lane alone because the tiles start
    // at multiples of 16 rows. Step 1 reads chunk c + 2 of the same row, which the swizzle puts 32
    // bytes after or before step 0's (c ^ 2 = c + 2 for c < 2, and XOR commutes).
    auto ld_addr = [](int row, int chunk0, int& step1) {
        const int sw = chunk0 ^ ((row >> 1) & 3);
        step1 = (sw & 2) ? -32 : 32;
        return static_cast<uint32_t>(row * 2 * kMmaBK + sw * 16);
    };
    int a_ks1, b_ks1;
    const uint32_t a_ld = ld_addr(wm * WM + (lane & 15), lane >> 4, a_ks1);
    const uint32_t b_ld = ld_addr(wn * WN + ((lane >> 4) << 3) + (lane & 7), (lane >> 3) & 1, b_ks1);
    // INT8 weights, one ldmatrix.x4 per 16 n: matrices (n 0-7, k 0-15), (n 0-7, k 16-31),
    // (n 8-15, k 0-15), (n 8-15, k 16-31); lane l addresses row l % 8 of matrix l / 8. Bytes.
    [[maybe_unused]] uint32_t b8_ld;
    {
        const int mat = lane >> 3, nrow = wn * WN + ((mat >> 1) << 3) + (lane & 7);
        b8_ld = nrow * kMmaBK + (((mat & 1) ^ ((nrow >> 2) & 1)) << 4);
    }

    // wgmma tactics leave the accumulators to the first k-tile's MMA (accumulate = false), see wgmma.cuh:
    // every split-K share has k-tiles (tactic_fits, checked at launch: kMinTilesPerSplit a split).
    // Zeroing them here instead would serialise the wgmmas (ptxas C7515).
    using Acc = std::conditional_t<kInt8, int, float>;
    Acc acc[MI][NI][4];
    if constexpr (!kWgmma) {
#pragma unroll
        for (int mi = 0; mi < MI; ++mi)
#pragma unroll
            for (int ni = 0; ni < NI; ++ni)
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[mi][ni][e] = 0;
    }

    const int k_tiles = kt_end - kt_begin;
    // The pipeline, instantiated per A cache policy so that the choice is not made per copy.
    // Tiles are loaded kAhead k-tiles ahead of the multiply. wgmma tactics leave each k-tile's MMAs
    // running while the next one is loaded and multiplied (wgmma_wait<1>), so the stage they read is
    // refilled one k-tile later: one stage fewer ahead.
    constexpr int kAhead = kWgmma ? STAGES - 2 : STAGES - 1;
    static_assert(kAhead >= 1, "wgmma tactics need at least 3 stages");
    auto main_loop = [&](auto via_l1) {
#pragma unroll
        for (int s = 0; s < kAhead; ++s) {
            if (s < k_tiles) load_tile(s, via_l1);
            cp_async_commit();
        }
        int rd = 0, wr = kAhead;  // the stage read now, and the one refilled
        for (int kt = 0; kt < k_tiles; ++kt) {
            cp_async_wait<kAhead - 1>();
            if constexpr (kWgmma) fence_proxy_async_shared();  // this thread's copies, visible to wgmma
            // Tile kt has landed for every thread, and every warp is done reading the stage refilled
            // below (wgmma: every warpgroup's MMAs of k-tile kt - 2 have completed).
            __syncthreads();
            if (kt + kAhead < k_tiles) load_tile(wr, via_l1);
            cp_async_commit();
            wr = wr + 1 == STAGES ? 0 : wr + 1;

            const uint32_t a_stage = s_a_addr + rd * (2 * kStageA);
            [[maybe_unused]] const uint32_t a_base = a_stage + a_ld;
            const uint32_t b_stage = s_b_addr + rd * kStageBBytes;
            rd = rd + 1 == STAGES ? 0 : rd + 1;
            if constexpr (kWgmma) {
                // This warpgroup's 64 rows of A, all of B; the second 16 k are 32 bytes into each row.
                const uint32_t a_wg = a_stage + (warp / 4) * 64 * 2 * kMmaBK;
                wgmma_fence();
#pragma unroll
                for (int ks = 0; ks < 2; ++ks)
                    wgmma_m64k16_f32_f16<BN>(acc[0], wgmma_desc_k64b(a_wg + 32 * ks),
                                             wgmma_desc_k64b(b_stage + 32 * ks), kt > 0 || ks > 0);
                wgmma_commit();
                wgmma_wait<1>();  // k-tile kt - 1's MMAs are done; kt's may still run
            } else if constexpr (kInt8) {
                // Both k16 halves of A as f16 fragments, quantised into one k32 s8 fragment (see s8_slot_to_k).
                uint32_t af[2][MI][4], aq[MI][4], bq[NI][2];
#pragma unroll
                for (int ks = 0; ks < 2; ++ks)
#pragma unroll
                    for (int mi = 0; mi < MI; ++mi)
                        ldmatrix_x4(af[ks][mi], a_base + (ks ? a_ks1 : 0) + mi * 16 * 2 * kMmaBK);
#pragma unroll
                for (int mi = 0; mi < MI; ++mi) {
                    aq[mi][0] = quantize4_s8(af[0][mi][0], af[0][mi][2], p.inv_scale);  // rows g, k 0-15
                    aq[mi][1] = quantize4_s8(af[0][mi][1], af[0][mi][3], p.inv_scale);  // rows g + 8
                    aq[mi][2] = quantize4_s8(af[1][mi][0], af[1][mi][2], p.inv_scale);  // rows g, k 16-31
                    aq[mi][3] = quantize4_s8(af[1][mi][1], af[1][mi][3], p.inv_scale);
                }
#pragma unroll
                for (int nj = 0; nj < NI / 2; ++nj)
                    ldmatrix_b_pair(bq[2 * nj], bq[2 * nj + 1], b_stage + b8_ld + nj * 16 * kMmaBK);
#pragma unroll
                for (int mi = 0; mi < MI; ++mi)
#pragma unroll
                    for (int ni = 0; ni < NI; ++ni) mma_16832_s8(acc[mi][ni], aq[mi], bq[ni][0], bq[ni][1]);
            } else {
                const uint32_t b_base = b_stage + b_ld;
#pragma unroll
                for (int ks = 0; ks < 2; ++ks) {
                    uint32_t af[MI][4], bf[NI][2];
#pragma unroll
                    for (int mi = 0; mi < MI; ++mi)
                        ldmatrix_x4(af[mi], a_base + (ks ? a_ks1 : 0) + mi * 16 * 2 * kMmaBK);
#pragma unroll
                    for (int nj = 0; nj < NI / 2; ++nj)
                        ldmatrix_b_pair(bf[2 * nj], bf[2 * nj + 1], b_base + (ks ? b_ks1 : 0) + nj * 16 * 2 * kMmaBK);
#pragma unroll
                    for (int mi = 0; mi < MI; ++mi)
#pragma unroll
                        for (int ni = 0; ni < NI; ++ni) mma_16816(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
                }
            }
        }
    };
    if (!kGather && p.a_via_l1) {
        main_loop(std::true_type{});
    } else {
        main_loop(std::false_type{});
    }
    if constexpr (kWgmma) wgmma_wait<0>();  // the last k-tile's MMAs, before the ring is reused below

    // Epilogue: accumulators -> shared (float) -> 8-channel chunks, so the global stores and residual
    // loads are whole 16-byte runs of a pixel instead of 4-byte pieces scattered over 8 pixels.
    cp_async_wait<0>();
    __syncthreads();
    constexpr int kLdc = BN + 8;  // +8 floats: the 4 rows of a half-warp's float2 stores hit distinct banks
    float* s_c = reinterpret_cast<float*>(smem);
    // A thread's accumulator columns are fixed per ni: its per-channel factors load once. Without
    // split-K the bias and activation are applied here, once per element on registers, so the store
    // loop below only adds the residual, converts and stores; split-K tiles hold partial sums, and
    // the CTA that completes a tile applies them when it stores.
#pragma unroll
    for (int ni = 0; ni < NI; ++ni) {
        const int col = wn * WN + ni * 8 + (lane & 3) * 2, n = tile_n * BN + col;
        float s0 = 1.f, s1 = 1.f;  // INT8: int32 sums -> real units, per output channel
        if constexpr (kInt8) {
            s0 = n < p.kg ? __ldg(p.dequant + n) : 0.f;
            s1 = n + 1 < p.kg ? __ldg(p.dequant + n + 1) : 0.f;
        }
        float b0 = 0.f, b1 = 0.f;
        if constexpr (!kSplitK) {
            b0 = n < p.kg ? __ldg(p.bias + n) : 0.f;
            b1 = n + 1 < p.kg ? __ldg(p.bias + n + 1) : 0.f;
        }
#pragma unroll
        for (int mi = 0; mi < MI; ++mi) {
            const int row = wm * WM + mi * 16 + (lane >> 2);
            float v[4] = {static_cast<float>(acc[mi][ni][0]) * s0 + b0, static_cast<float>(acc[mi][ni][1]) * s1 + b1,
                          static_cast<float>(acc[mi][ni][2]) * s0 + b0, static_cast<float>(acc[mi][ni][3]) * s1 + b1};
            if (!kSplitK && p.silu) {
#pragma unroll
                for (int e = 0; e < 4; ++e) v[e] = silu_act<false>(v[e]);
            }
            *reinterpret_cast<float2*>(&s_c[row * kLdc + col]) = make_float2(v[0], v[1]);
            *reinterpret_cast<float2*>(&s_c[(row + 8) * kLdc + col]) = make_float2(v[2], v[3]);
        }
    }
    __syncthreads();
    constexpr int kChunksN = BN / 8;
    if constexpr (kSplitK) {
        // Add the partial tile into the workspace (rows and 4-channel runs that exist), 16 bytes a
        // thread, consecutive threads on consecutive addresses.
        float* ws = p.ws + static_cast<int64_t>(blockIdx.x) * (BM * BN);
        constexpr int kChunks4 = BN / 4;
#pragma unroll 1
        for (int idx = tid; idx < BM * kChunks4; idx += kThreads) {
            const int row = idx / kChunks4, c4 = idx % kChunks4;
            if (tile_m * BM + row >= p.gemm_m || tile_n * BN + c4 * 4 >= p.kg) continue;
            red_add4(ws + row * BN + c4 * 4, *reinterpret_cast<const float4*>(&s_c[row * kLdc + c4 * 4]));
        }
        __shared__ int s_last;
        unsigned* counters = reinterpret_cast<unsigned*>(p.ws + static_cast<int64_t>(gridDim.x) * (BM * BN));
        if (!splitk_arrive(counters + blockIdx.x, gridDim.z, &s_last)) return;
#pragma unroll 1
        for (int idx = tid; idx < BM * kChunksN; idx += kThreads) {
            const int row = idx / kChunksN, c8 = idx % kChunksN;
            const int m = tile_m * BM + row, n = tile_n * BN + c8 * 8;
            if (m >= p.gemm_m || n >= p.kg) continue;
            const float4 lo = take4(ws + row * BN + c8 * 8);
            const float4 hi = take4(ws + row * BN + c8 * 8 + 4);
            float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
            store8_f16<true>(p, m, n, v);
        }
    } else if constexpr (kThreads % kChunksN == 0) {
        // Each thread keeps one 8-channel chunk and walks rows kThreads / kChunksN apart, so its
        // output (and residual) address just advances by a fixed stride.
        constexpr int kRowStep = kThreads / kChunksN;
        const int c8 = tid % kChunksN, n = tile_n * BN + c8 * 8;
        if (n >= p.kg) return;
        int row = tid / kChunksN;
        const bool vec = n + 8 <= p.kg && p.y_vec && (!p.res || p.res_vec);
        const int64_t m0 = static_cast<int64_t>(tile_m) * BM + row;
        uint4* y = reinterpret_cast<uint4*>(static_cast<__half*>(p.y) + m0 * p.y_ps + n);
        const uint4* res =
            p.res ? reinterpret_cast<const uint4*>(static_cast<const __half*>(p.res) + m0 * p.res_ps + n) : nullptr;
        const int64_t y_step = kRowStep * p.y_ps / 8, res_step = kRowStep * p.res_ps / 8;  // in uint4
#pragma unroll 2
        for (; row < BM && tile_m * BM + row < p.gemm_m; row += kRowStep) {
            const float4 lo = *reinterpret_cast<const float4*>(&s_c[row * kLdc + c8 * 8]);
            const float4 hi = *reinterpret_cast<const float4*>(&s_c[row * kLdc + c8 * 8 + 4]);
            float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
            if (vec) {
                store8_vec(v, res, y);
                if (res) res += res_step;
                y += y_step;
            } else {
                store8_f16<false>(p, tile_m * BM + row, n, v);
            }
        }
    } else {
#pragma unroll 1
        for (int idx = tid; idx < BM * kChunksN; idx += kThreads) {
            const int row = idx / kChunksN, c8 = idx % kChunksN;
            const int m = tile_m * BM + row, n = tile_n * BN + c8 * 8;
            if (m >= p.gemm_m || n >= p.kg) continue;
            const float4 lo = *reinterpret_cast<const float4*>(&s_c[row * kLdc + c8 * 8]);
            const float4 hi = *reinterpret_cast<const float4*>(&s_c[row * kLdc + c8 * 8 + 4]);
            float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
            store8_f16<false>(p, m, n, v);
        }
    }
}

// ---- SIMT implicit GEMM (f32 exact; f16 generic) ---------------------------------------------------
//
// TY x TX threads, each owning a TM x TN register tile (BM = TY * TM, BN = TX * TN), BK = 16. Tiles
// are staged k-major in shared memory (so the inner loop reads float4 runs of m and of n), double
// buffered, with the next tile's global loads in registers while the current one is multiplied.
// blockIdx.z is the group: a block multiplies one group's output channels by its input channels.

constexpr int kSimtBK = 16;

template <typename T, int TY, int TX, int TM, int TN, bool kSplitK>
__global__ void __launch_bounds__(TY* TX, TY* TX >= 256 ? 1 : 256 / (TY * TX)) conv_simt_kernel(const ConvParams p) {
    wait_for_previous_kernel();
    constexpr int kThreads = TY * TX, BM = TY * TM, BN = TX * TN, BK = kSimtBK;
    static_assert(kThreads % BK == 0 && TM % 4 == 0 && TN % 4 == 0, "float4 shared reads");
    constexpr int kRowStep = kThreads / BK;
    static_assert(BM % kRowStep == 0 && BN % kRowStep == 0, "every thread loads whole columns");
    constexpr int kAPer = BM / kRowStep, kBPer = BN / kRowStep;

    __shared__ __align__(16) float s_a[2][BK][BM + 4];
    __shared__ __align__(16) float s_b[2][BK][BN + 4];
    // Per output pixel of the tile: first pixel of its image, and the input position of tap (0, 0).
    __shared__ int s_pix[BM], s_ih[BM], s_iw[BM];

    const int tid = threadIdx.x;
    const int group = blockIdx.z;
    const int n_tiles = (p.kg + BN - 1) / BN;
    const int tile_n = static_cast<int>(blockIdx.x % n_tiles), tile_m = static_cast<int>(blockIdx.x / n_tiles);
    for (int r = tid; r < BM; r += kThreads) {
        const int m = tile_m * BM + r;
        if (m < p.gemm_m) {
            int rem, ox;
            const int img = p.div_ohw.divmod(m, rem);
            const int oy = p.div_ow.divmod(rem, ox);
            s_pix[r] = img * p.in_h * p.in_w;
            s_ih[r] = oy * p.sh - p.pt;
            s_iw[r] = ox * p.sw - p.pl;
        } else {
            s_pix[r] = 0;
            s_ih[r] = kDeadRow;
            s_iw[r] = 0;
        }
    }
    __syncthreads();

    const T* x = static_cast<const T*>(p.x) + static_cast<int64_t>(group) * p.cg;
    const T* wgt = static_cast<const T*>(p.wgt) + static_cast<int64_t>(group) * p.kg * p.gemm_k;
    // Thread t loads k column t % 16 (consecutive channels of one pixel across a half-warp) of
    // rows t / 16 + i * kRowStep.
    const int kk = tid % BK, rbase = tid / BK;
    // This CTA's k-tiles: all of them, or its split's share (blockIdx.y).
    int kt_begin = 0, kt_end = (p.gemm_k + BK - 1) / BK;
    if constexpr (kSplitK)
        splitk_range(kt_end, static_cast<int>(blockIdx.y), static_cast<int>(gridDim.y), kt_begin, kt_end);
    int kidx = kt_begin * BK + kk;
    int ci = kidx % p.cg, fs = (kidx / p.cg) % p.kw, fr = kidx / p.cg / p.kw;
    float ra[kAPer], rb[kBPer];

    auto load_global = [&]() {
        const bool kvalid = kidx < p.gemm_k;
        const int dy = fr * p.dh, dx = fs * p.dw;
#pragma unroll
        for (int i = 0; i < kAPer; ++i) {
            const int row = rbase + i * kRowStep;
            const int ih = s_ih[row] + dy, iw = s_iw[row] + dx;
            ra[i] = 0.f;
            if (kvalid && static_cast<unsigned>(ih) < static_cast<unsigned>(p.in_h) &&
                static_cast<unsigned>(iw) < static_cast<unsigned>(p.in_w))
                ra[i] = to_float(x[static_cast<int64_t>(s_pix[row] + ih * p.in_w + iw) * p.x_ps + ci]);
        }
#pragma unroll
        for (int j = 0; j < kBPer; ++j) {
            const int n = tile_n * BN + rbase + j * kRowStep;
            rb[j] = kvalid && n < p.kg ? to_float(wgt[static_cast<int64_t>(n) * p.gemm_k + kidx]) : 0.f;
        }
        kidx += BK;
        ci += BK;
        if (ci >= p.cg) {
            const int q = ci / p.cg;
            ci -= q * p.cg;
            fs += q;
            if (fs >= p.kw) {
                const int q2 = fs / p.kw;
                fs -= q2 * p.kw;
                fr += q2;
            }
        }
    };
    auto store_shared = [&](int buf) {
#pragma unroll
        for (int i = 0; i < kAPer; ++i) s_a[buf][kk][rbase + i * kRowStep] = ra[i];
#pragma unroll
        for (int j = 0; j < kBPer; ++j) s_b[buf][kk][rbase + j * kRowStep] = rb[j];
    };

    const int tx = tid % TX, ty = tid / TX;
    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

    const int k_tiles = kt_end - kt_begin;
    load_global();
    store_shared(0);
    __syncthreads();
    for (int kt = 0; kt < k_tiles; ++kt) {
        const int buf = kt & 1;
        if (kt + 1 < k_tiles) load_global();
#pragma unroll
        for (int k = 0; k < BK; ++k) {
            float a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM; i += 4) {
                const float4 v = *reinterpret_cast<const float4*>(&s_a[buf][k][ty * TM + i]);
                a[i] = v.x, a[i + 1] = v.y, a[i + 2] = v.z, a[i + 3] = v.w;
            }
#pragma unroll
            for (int j = 0; j < TN; j += 4) {
                const float4 v = *reinterpret_cast<const float4*>(&s_b[buf][k][tx * TN + j]);
                b[j] = v.x, b[j + 1] = v.y, b[j + 2] = v.z, b[j + 3] = v.w;
            }
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        // The other buffer was last read in iteration kt - 1, which every thread has finished.
        if (kt + 1 < k_tiles) store_shared(buf ^ 1);
        __syncthreads();
    }

    if constexpr (kSplitK) {
        // Each thread adds its own TM x TN block (rows that exist) into the workspace tile and, in
        // the CTA that completes the tile, takes the same block back.
        const int64_t tile = static_cast<int64_t>(group) * gridDim.x + blockIdx.x;
        float* ws = p.ws + tile * (BM * BN);
#pragma unroll
        for (int i = 0; i < TM; ++i) {
            if (tile_m * BM + ty * TM + i >= p.gemm_m) continue;
#pragma unroll
            for (int j = 0; j < TN; j += 4)
                red_add4(ws + (ty * TM + i) * BN + tx * TN + j,
                         make_float4(acc[i][j], acc[i][j + 1], acc[i][j + 2], acc[i][j + 3]));
        }
        __shared__ int s_last;
        unsigned* counters =
            reinterpret_cast<unsigned*>(p.ws + static_cast<int64_t>(gridDim.x) * gridDim.z * (BM * BN));
        if (!splitk_arrive(counters + tile, gridDim.y, &s_last)) return;
#pragma unroll
        for (int i = 0; i < TM; ++i) {
            if (tile_m * BM + ty * TM + i >= p.gemm_m) continue;
#pragma unroll
            for (int j = 0; j < TN; j += 4) {
                const float4 v = take4(ws + (ty * TM + i) * BN + tx * TN + j);
                acc[i][j] = v.x;
                acc[i][j + 1] = v.y;
                acc[i][j + 2] = v.z;
                acc[i][j + 3] = v.w;
            }
        }
    }

    T* y = static_cast<T*>(p.y);
    const T* res = static_cast<const T*>(p.res);
    constexpr bool kPrecise = std::is_same_v<T, float>;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = tile_m * BM + ty * TM + i;
        if (m >= p.gemm_m) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int n = tile_n * BN + tx * TN + j;
            if (n >= p.kg) continue;
            const int oc = group * p.kg + n;
            float v = acc[i][j] + __ldg(p.bias + oc);
            if (p.silu) v = silu_act<kPrecise>(v);
            if (res) v += to_float(res[static_cast<int64_t>(m) * p.res_ps + oc]);
            y[static_cast<int64_t>(m) * p.y_ps + oc] = from_float<T>(v);
        }
    }
}

// ---- 3x3 convolutions (stride 1 or 2, padding 1) on halo tiles ------------------------------------
//
// The implicit GEMM copies every input pixel into shared memory once per filter tap (nine times for
// a 3x3 conv) and the small-channel 3x3 convs (YOLOv8's C2f bottlenecks: 16 channels at 160x160, 32
// at 80x80) are bound by that traffic through L1/shared memory. Here a CTA loads an output tile's
// input window once, with its one-pixel border (the halo, (TH + 2) x (TW + 2) pixels at stride 1,
// zeros outside the image), and the nine taps are nine shifted views of it: ldmatrix takes one row
// address per lane, so the A fragment of tap (dy, dx) is read straight from the halo. The CTA keeps
// the whole filter (K rows of 9 x C halves) in shared memory and walks over tiles (persistent),
// loading the next tiles' halos while it multiplies the current one.
//
// Tile: TH = 8 output rows of TW = 16 pixels; warp w owns rows 2w and 2w + 1 (one m16 tile each) and
// all K columns. Channels: C and K multiples of 16. Halo pixels are C halves, 16-byte chunk c of
// pixel p stored at chunk c ^ ((p * CH / 8) % CH) (CH = C / 8 chunks), so the 8 consecutive pixels
// an ldmatrix phase reads cover all 32 banks. Filter rows are padded by 16 bytes for the same reason.
//
// A tile's bytes are few (10x18 pixels of 16 channels: 5.6 KB), so one tile in flight per CTA leaves
// DRAM idle (Nsight Compute, H100: 62 % of DRAM bandwidth with two buffers, occupancy 16 warps an SM,
// registers-bound): the halos go through a ring of STAGES buffers, STAGES - 1 tiles ahead. The
// residual, where there is one (16-byte aligned), is a tile of its own in the same ring rather than a
// load in the epilogue, whose latency nothing else hid (the residual convs took 1.5x as long).

constexpr int kHaloTH = 8, kHaloTW = 16, kHaloThreads = 128;
// The input window of a tile at stride s: (TH - 1) s + 3 rows of (TW - 1) s + 3 pixels.
constexpr int halo_in_h(int s) { return (kHaloTH - 1) * s + 3; }
constexpr int halo_in_w(int s) { return (kHaloTW - 1) * s + 3; }

// One ring stage: the halo (C halves a pixel, swizzled) and the residual tile (K halves a pixel).
constexpr int halo_stage_bytes(int c, int k, int s) {
    return halo_in_h(s) * halo_in_w(s) * c * 2 + kHaloTH * kHaloTW * k * 2;
}

// A warp's epilogue staging row: 16 pixels of K halves, padded by 8 halves (16 bytes) so that the
// half2 stores of the m16n8 accumulator layout (8 pixels x 4 lanes) hit 32 distinct banks.
constexpr int halo_staging_ld(int k) { return k + 8; }
constexpr int halo_staging_bytes(int k) { return 16 * halo_staging_ld(k) * 2; }

// The ring, the filter, and a staging row per warp.
constexpr int halo_smem_bytes(int c, int k, int stages, int s) {
    return stages * halo_stage_bytes(c, k, s) + k * (9 * c * 2 + 16) + (kHaloThreads / 32) * halo_staging_bytes(k);
}

// 80 channels (10 chunks, 160 bytes a pixel): 8 consecutive pixels start 8 banks apart, so pixels p
// and p + 4 would share banks; swapping the chunks of each pair (c ^ 1) in the second group of four
// moves those 4 banks along.
template <int C>
__device__ __forceinline__ uint32_t halo_chunk_offset(int pixel, int chunk) {
    constexpr int CH = C / 8;
    static_assert((CH & (CH - 1)) == 0 || C == 80, "a power-of-two number of chunks, or 80 channels");
    const int swizzled = C == 80 ? chunk ^ ((pixel >> 2) & 1) : chunk ^ ((pixel * CH >> 3) & (CH - 1));
    return static_cast<uint32_t>(pixel * C * 2 + (swizzled << 4));
}

// CTAs an SM (up to 4) that the shared memory allows (228 KB an SM, 1 KB of it reserved per CTA): the
// register budget the launch bounds give ptxas.
constexpr int halo_ctas_per_sm(int c, int k, int stages, int s) {
    const int fit = 228 * 1024 / (halo_smem_bytes(c, k, stages, s) + 1024);
    return fit < 1 ? 1 : fit > 4 ? 4 : fit;
}

// The bias of a thread's accumulator columns in the m16n8 layout (n8 block nb: columns 8 nb + 2t and
// + 1, t = lane % 4), loaded once per kernel.
template <int NB>
__device__ __forceinline__ void load_column_bias(const float* bias, int lane, float (&b)[NB][2]) {
#pragma unroll
    for (int nb = 0; nb < NB; ++nb) {
        b[nb][0] = __ldg(bias + nb * 8 + (lane & 3) * 2);
        b[nb][1] = __ldg(bias + nb * 8 + (lane & 3) * 2 + 1);
    }
}

// The halo kernels' epilogue, one m16 row (16 output pixels) of a warp at a time. Lane (g, t) holds
// pixels g and g + 8, channels 8 nb + 2t and + 1: bias and SiLU on the registers, rounded to f16
// into the warp's staging row, so that each lane then stores whole 16-byte runs of a pixel (8
// channels). Staged as halves rather than floats: half the shared-memory traffic (counted, not
// measured: a 64 -> 64 tile's float staging moved 64 KB through a pipe of 128 bytes a cycle) and
// half the space.
template <int NB>
__device__ __forceinline__ void stage_row_halves(const float (&acc)[NB][4], const float (&bias)[NB][2], bool silu,
                                                 __half* row, int lane) {
    constexpr int kLd = halo_staging_ld(NB * 8);
    auto put = [&](auto act) {
#pragma unroll
        for (int nb = 0; nb < NB; ++nb)
#pragma unroll
            for (int half = 0; half < 2; ++half) {
                float v0 = acc[nb][half * 2] + bias[nb][0], v1 = acc[nb][half * 2 + 1] + bias[nb][1];
                if constexpr (decltype(act)::value) {
                    v0 = silu_act<false>(v0);
                    v1 = silu_act<false>(v1);
                }
                *reinterpret_cast<__half2*>(&row[((lane >> 2) + half * 8) * kLd + nb * 8 + (lane & 3) * 2]) =
                    __floats2half2_rn(v0, v1);
            }
    };
    if (silu) {
        put(std::true_type{});
    } else {
        put(std::false_type{});
    }
}

// 8 halves (staged output channels [n, n + 8) of pixel m) plus the residual -> y, clipped to the k
// channels that exist. The residual comes from ring_res (a 16-byte copy already in shared memory)
// or else from p.res, if any; it is added in f16 (the exact sum of two halves, rounded once).
__device__ __forceinline__ void store8_halves(const ConvParams& p, int m, int n, uint4 v, const uint4* ring_res) {
    __half2* vh = reinterpret_cast<__half2*>(&v);
    if (ring_res) {
        const __half2* rh = reinterpret_cast<const __half2*>(ring_res);
#pragma unroll
        for (int j = 0; j < 4; ++j) vh[j] = __hadd2(vh[j], rh[j]);
    }
    __half* y = static_cast<__half*>(p.y) + static_cast<int64_t>(m) * p.y_ps + n;
    const __half* res =
        !ring_res && p.res ? static_cast<const __half*>(p.res) + static_cast<int64_t>(m) * p.res_ps + n : nullptr;
    const int cnt = min(8, p.kg - n);
    if (cnt == 8 && p.y_vec && (!res || p.res_vec)) {
        if (res) {
            const uint4 r = *reinterpret_cast<const uint4*>(res);
            const __half2* rh = reinterpret_cast<const __half2*>(&r);
#pragma unroll
            for (int j = 0; j < 4; ++j) vh[j] = __hadd2(vh[j], rh[j]);
        }
        *reinterpret_cast<uint4*>(y) = v;
    } else {
        const __half* h = reinterpret_cast<const __half*>(&v);
#pragma unroll
        for (int j = 0; j < 8; ++j)
            if (j < cnt) y[j] = res ? __hadd(h[j], res[j]) : h[j];
    }
}

// A staged row's pixels [0, npx) -> y from output pixel m0 on; ring_res: the row's residual in
// shared memory (16 pixels x NB 16-byte runs), or null.
template <int NB>
__device__ __forceinline__ void store_row_halves(const ConvParams& p, const __half* row, int lane, int m0, int npx,
                                                 const unsigned char* ring_res) {
    constexpr int kLd = halo_staging_ld(NB * 8);
#pragma unroll
    for (int q = lane; q < 16 * NB; q += 32) {
        const int px = q / NB, n = (q % NB) * 8;
        if (px >= npx) continue;
        store8_halves(p, m0 + px, n, *reinterpret_cast<const uint4*>(&row[px * kLd + n]),
                      ring_res ? reinterpret_cast<const uint4*>(ring_res + (px * NB + n / 8) * 16) : nullptr);
    }
}

// A persistent halo CTA's first STAGES - 1 tiles (tile, tile + step, ...) into ring stages 0, 1, ...,
// one cp.async group each (empty past the last tile, so that the group count stays the same).
template <int STAGES, typename LoadTile>
__device__ __forceinline__ void fill_halo_ring(int tile, int step, int tiles, LoadTile&& load_tile) {
#pragma unroll
    for (int s = 0; s < STAGES - 1; ++s) {
        if (tile + s * step < tiles) load_tile(tile + s * step, s);
        cp_async_commit();
    }
}

// Where halo column hx is stored. Stride 2: a halo row keeps its even columns, then its odd ones, so
// that the 16 pixels of an m16 row that a tap reads (every other column) are consecutive, as at
// stride 1, for the swizzle.
template <int S>
__device__ __forceinline__ int halo_column(int hx) {
    constexpr int kInW = halo_in_w(S);
    return S == 1 ? hx : (hx & 1) ? (kInW + 1) / 2 + hx / 2 : hx / 2;
}

// An input window of IN_H x IN_W pixels (C halves each) whose top-left pixel is (y0, x0) of image img
// of p.x (H x W pixels), into shared memory at dst: window pixel (wy, wx) at row wy, column
// halo_column<S>(wx), 16-byte chunks swizzled by halo_chunk_offset; zeros outside the image. One
// cp.async a chunk, the CTA's threads taking chunks tid, tid + THREADS, ...
template <int C, int IN_H, int IN_W, int S, int THREADS>
__device__ __forceinline__ void copy_window(uint32_t dst, const ConvParams& p, int H, int W, int img, int y0, int x0,
                                            int tid) {
    constexpr int CH = C / 8;
    const uint64_t xb = reinterpret_cast<uint64_t>(p.x);
    for (int q = tid; q < IN_H * IN_W * CH; q += THREADS) {
        const int wp = q / CH, c = q % CH, wy = wp / IN_W, wx = wp % IN_W;
        const int iy = y0 + wy, ix = x0 + wx;
        const bool inside = static_cast<unsigned>(iy) < static_cast<unsigned>(H) &&
                            static_cast<unsigned>(ix) < static_cast<unsigned>(W);
        const int64_t pix = (static_cast<int64_t>(img) * H + iy) * W + ix;
        cp_async16<false>(dst + halo_chunk_offset<C>(S == 1 ? wp : wy * IN_W + halo_column<S>(wx), c),
                          xb + static_cast<uint64_t>(pix * p.x_ps + c * 8) * 2, inside);
    }
}

// The nine taps of warp `warp`'s two output rows (2 warp and 2 warp + 1, one m16 tile each, 16
// pixels) times the resident filter s_w (K rows of kWRow bytes: 9 x C halves and 16 bytes of
// padding), read from the halo at shared address `halo`: output pixel (r, c), tap (dy, dx) is halo
// row S r + dy, column S c + dx, stored at halo_column<S>(...) (stride 2: even columns, then odd ones). Per
// lane the ldmatrix.x4 addressing of conv3x3_halo_kernel (A: rows 0-7 / 8-15 at k 0-7, then k 8-15;
// B: n 0-7 at k 0-7 / 8-15, then n 8-15).
template <int C, int K, int S>
__device__ __forceinline__ void halo_rows_mma(float (&acc)[2][K / 8][4], uint32_t halo, uint32_t s_w, int warp,
                                              int lane) {
    constexpr int kInW = halo_in_w(S), kWRow = 9 * C * 2 + 16;
    const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8, a_khalf = lane >> 4;
    const uint32_t b_lane = static_cast<uint32_t>(((lane >> 4) * 8 + (lane & 7)) * kWRow + ((lane >> 3) & 1) * 16);
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
        for (int nb = 0; nb < K / 8; ++nb)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[mt][nb][e] = 0.f;
#pragma unroll
    for (int tap = 0; tap < 9; ++tap) {
        const int dy = tap / 3, dx = tap % 3;
#pragma unroll
        for (int cb = 0; cb < C / 16; ++cb) {
            uint32_t af[2][4];
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
                const int hp = ((warp * 2 + mt) * S + dy) * kInW + halo_column<S>(dx) + a_row;
                ldmatrix_x4(af[mt], halo + halo_chunk_offset<C>(hp, cb * 2 + a_khalf));
            }
#pragma unroll
            for (int nj = 0; nj < K / 16; ++nj) {
                uint32_t t[4];
                ldmatrix_x4(t, s_w + b_lane + nj * 16 * kWRow + (tap * C + cb * 16) * 2);
#pragma unroll
                for (int mt = 0; mt < 2; ++mt) {
                    mma_16816(acc[mt][2 * nj], af[mt], t[0], t[1]);
                    mma_16816(acc[mt][2 * nj + 1], af[mt], t[2], t[3]);
                }
            }
        }
    }
}

template <int C, int K, int STAGES, int S>
__global__ void __launch_bounds__(kHaloThreads, halo_ctas_per_sm(C, K, STAGES, S))
    conv3x3_halo_kernel(const ConvParams p) {
    static_assert(C % 16 == 0 && K % 16 == 0, "whole k16 and n16 blocks");
    static_assert(STAGES >= 2, "at least one tile loads while another is multiplied");
    static_assert(S == 1 || S == 2, "stride 1 or 2");
    constexpr int kInH = halo_in_h(S), kInW = halo_in_w(S);
    constexpr int CH = C / 8, KH = K / 8, kHaloBytes = kInH * kInW * C * 2, kWRow = 9 * C * 2 + 16;
    constexpr int kStageBytes = halo_stage_bytes(C, K, S);
    constexpr int NB = K / 8;  // n8 blocks
    extern __shared__ __align__(128) unsigned char smem[];
    const uint32_t s_ring = smem_addr(smem), s_w = s_ring + STAGES * kStageBytes;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    // Tiles cover the output; input rows and columns outside the image (padding) read as zeros.
    const int H = p.in_h, W = p.in_w, OH = p.out_h, OW = p.out_w;
    const int tiles_x = (OW + kHaloTW - 1) / kHaloTW, tiles_y = (OH + kHaloTH - 1) / kHaloTH;
    const int tiles_img = tiles_x * tiles_y, tiles = (p.gemm_m / (OH * OW)) * tiles_img;
    const uint64_t wb = reinterpret_cast<uint64_t>(p.wgt);
    const uint64_t rb = reinterpret_cast<uint64_t>(p.res);
    const bool res_in_ring = p.res && p.res_vec;

    // The filter, once: row n is output channel n's 9 x C halves (the packed layout), 16-byte chunks.
    for (int q = tid; q < K * 9 * CH; q += kHaloThreads) {
        const int n = q / (9 * CH), c = q % (9 * CH);
        cp_async16<false>(s_w + n * kWRow + c * 16, wb + (static_cast<uint64_t>(n) * 9 * CH + c) * 16, true);
    }
    cp_async_commit();
    // The filter is constant: its loads may start before the kernel before this one is done (launch.cuh).
    wait_for_previous_kernel();

    // A tile into ring stage `stage`: halo pixel (hy, hx) is input pixel (S ty0 - 1 + hy, S tx0 - 1 +
    // hx), stored at row hy, column halo_column<S>(hx); residual pixel (ry, rx) is output pixel (ty0 + ry, tx0 + rx).
    auto load_tile = [&](int tile, int stage) {
        const int img = tile / tiles_img, rem = tile % tiles_img;
        const int ty0 = (rem / tiles_x) * kHaloTH, tx0 = (rem % tiles_x) * kHaloTW;
        const uint32_t dst = s_ring + stage * kStageBytes;
        copy_window<C, kInH, kInW, S, kHaloThreads>(dst, p, H, W, img, ty0 * S - 1, tx0 * S - 1, tid);
        if (res_in_ring)
            for (int q = tid; q < kHaloTH * kHaloTW * KH; q += kHaloThreads) {
                const int rp = q / KH, c = q % KH;
                const int oy = ty0 + rp / kHaloTW, ox = tx0 + rp % kHaloTW;
                const bool inside = oy < OH && ox < OW;
                const int64_t pix = (static_cast<int64_t>(img) * OH + oy) * OW + ox;
                cp_async16<false>(dst + kHaloBytes + q * 16, rb + static_cast<uint64_t>(pix * p.res_ps + c * 8) * 2,
                                  inside);
            }
    };

    float bias[NB][2];
    load_column_bias(p.bias, lane, bias);

    // The ring: this CTA's tiles are blockIdx.x + i * gridDim.x; tile i sits in stage i % STAGES, and
    // cp.async group i + 1 (group 0 is the filter) brings it.
    const int step = static_cast<int>(gridDim.x);
    int tile = static_cast<int>(blockIdx.x), stage = 0;
    fill_halo_ring<STAGES>(tile, step, tiles, load_tile);
    for (; tile < tiles; tile += step) {
        cp_async_wait<STAGES - 2>();  // the filter and this tile
        __syncthreads();              // ... from every thread; and every warp is done with the previous tile
        const int ahead = tile + (STAGES - 1) * step;
        const int refill = stage == 0 ? STAGES - 1 : stage - 1;  // the previous tile's stage
        if (ahead < tiles) load_tile(ahead, refill);
        cp_async_commit();

        float acc[2][NB][4];
        halo_rows_mma<C, K, S>(acc, s_ring + stage * kStageBytes, s_w, warp, lane);

        // Epilogue, one m16 row at a time through this warp's staging row (stage_row_halves), the
        // residual from the ring where it is there.
        const int img = tile / tiles_img, rem = tile % tiles_img;
        const int ty0 = (rem / tiles_x) * kHaloTH, tx0 = (rem % tiles_x) * kHaloTW;
        __half* staging =
            reinterpret_cast<__half*>(smem + STAGES * kStageBytes + K * kWRow + warp * halo_staging_bytes(K));
        const unsigned char* res_tile = smem + stage * kStageBytes + kHaloBytes;
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
            stage_row_halves(acc[mt], bias, p.silu, staging, lane);
            __syncwarp();
            const int ry = warp * 2 + mt, oy = ty0 + ry;
            store_row_halves<NB>(p, staging, lane, (img * OH + oy) * OW + tx0, oy < OH ? min(kHaloTW, OW - tx0) : 0,
                                 res_in_ring ? res_tile + ry * kHaloTW * KH * 16 : nullptr);
            __syncwarp();  // the next row overwrites the staging tile
        }
        stage = stage == STAGES - 1 ? 0 : stage + 1;
    }
    cp_async_wait<0>();
}

// ---- A C2f bottleneck's two 3x3 convs in one kernel, on halo tiles ---------------------------------
//
// YOLOv8's bottleneck is t = silu(conv3x3(x, w1) + b1), y = silu(conv3x3(t, w2) + b2) (+ x). As two
// halo kernels, t makes a round trip through DRAM (16 channels at 160x160, batch 64: 52 MB each way)
// and the second kernel starts when the first drains. Here a CTA computes t on its 8x16 output tile
// plus a one-pixel border ((TH + 2) x (TW + 2) pixels) from an x window with a two-pixel border
// ((TH + 4) x (TW + 4)), keeps it in shared memory, zero where it lies outside the image (the second
// conv's padding), and runs the second conv on it as conv3x3_halo_kernel runs on its halo; the
// residual is the window's centre. The border's t is computed by the neighbouring tiles too:
// (10 x 18) / (8 x 16) = 1.4x the first conv's MMAs, and t is rounded to f16 as the two kernels
// would store it.
//
// Warps: the first conv's 180 pixels are 12 m16 row blocks (rows past the 180th read a clamped
// pixel and are not stored), block warp + 4 j for j < 3; the second conv's 8 output rows are 2 a
// warp, as in conv3x3_halo_kernel. C = K, 16 or 32 channels; the x windows go through a ring of
// STAGES buffers as the halos do there.
constexpr int kPairInH = kHaloTH + 4, kPairInW = kHaloTW + 4;    // the x window
constexpr int kPairMidH = kHaloTH + 2, kPairMidW = kHaloTW + 2;  // t
static_assert(kPairMidW == halo_in_w(1) && kPairMidH == halo_in_h(1), "t is the second conv's stride-1 halo");
constexpr int kPairMidPx = kPairMidH * kPairMidW;       // 180
constexpr int kPairMidBlocks = (kPairMidPx + 15) / 16;  // 12 m16 blocks
constexpr int kPairBlocksPerWarp = kPairMidBlocks / (kHaloThreads / 32);
static_assert(kPairMidBlocks % (kHaloThreads / 32) == 0, "the first conv's blocks split evenly over the warps");

constexpr int pair_stage_bytes(int c) { return kPairInH * kPairInW * c * 2; }
constexpr int pair_filter_bytes(int c) { return c * (9 * c * 2 + 16); }
// The ring, t, both filters and a staging row per warp.
constexpr int pair_smem_bytes(int c, int stages) {
    return stages * pair_stage_bytes(c) + kPairMidPx * c * 2 + 2 * pair_filter_bytes(c) +
           (kHaloThreads / 32) * halo_staging_bytes(c);
}
constexpr int pair_ctas_per_sm(int c, int stages) {
    const int fit = 228 * 1024 / (pair_smem_bytes(c, stages) + 1024);
    return fit < 1 ? 1 : fit > 4 ? 4 : fit;
}

// The second conv's fields in p (weights, bias, y and its epilogue's fields, sizes: in = out), the
// first conv's weights and bias, and whether x is added to y.
struct PairParams {
    ConvParams p;
    const void* wgt1 = nullptr;
    const float* bias1 = nullptr;
    int residual = 0;
};

// The window pixel of each of the lane's first-conv A rows at tap (0, 0): t pixel mp of block
// warp + 4 j (clamped to the last) is window pixel (mp / 18, mp % 18).
__device__ __forceinline__ void pair_first_rows(int warp, int lane, int (&a_base)[kPairBlocksPerWarp]) {
    const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8;
#pragma unroll
    for (int j = 0; j < kPairBlocksPerWarp; ++j) {
        const int mp = min((warp + 4 * j) * 16 + a_row, kPairMidPx - 1);
        a_base[j] = (mp / kPairMidW) * kPairInW + mp % kPairMidW;
    }
}

// The bottleneck's first conv, t = silu(conv3x3(x, w1) + b1), on the 10x18 pixels of a tile and its
// one-pixel border from the 12x20 x window at shared address `win` (C channels, halo_chunk_offset)
// and the resident filter s_w1 (rows of 9 C halves + 16 bytes), rounded to f16 into `mid` (same
// layout, zeros outside the H x W image: the second conv's padding). The tile's top-left output
// pixel is (ty0, tx0); the warp's blocks are warp + 4 j (pair_first_rows).
template <int C>
__device__ __forceinline__ void pair_first_conv(uint32_t win, uint32_t s_w1, unsigned char* mid,
                                                const float (&bias)[C / 8][2], const int (&a_base)[kPairBlocksPerWarp],
                                                int warp, int lane, int ty0, int tx0, int H, int W) {
    constexpr int NB = C / 8, kWRow = 9 * C * 2 + 16;
    const int a_khalf = lane >> 4;
    const uint32_t b_lane = static_cast<uint32_t>(((lane >> 4) * 8 + (lane & 7)) * kWRow + ((lane >> 3) & 1) * 16);
    float acc[kPairBlocksPerWarp][NB][4];
#pragma unroll
    for (int j = 0; j < kPairBlocksPerWarp; ++j)
#pragma unroll
        for (int nb = 0; nb < NB; ++nb)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[j][nb][e] = 0.f;
#pragma unroll
    for (int tap = 0; tap < 9; ++tap) {
        const int shift = (tap / 3) * kPairInW + tap % 3;
#pragma unroll
        for (int cb = 0; cb < C / 16; ++cb) {
            uint32_t af[kPairBlocksPerWarp][4];
#pragma unroll
            for (int j = 0; j < kPairBlocksPerWarp; ++j)
                ldmatrix_x4(af[j], win + halo_chunk_offset<C>(a_base[j] + shift, cb * 2 + a_khalf));
#pragma unroll
            for (int nj = 0; nj < C / 16; ++nj) {
                uint32_t t[4];
                ldmatrix_x4(t, s_w1 + b_lane + nj * 16 * kWRow + (tap * C + cb * 16) * 2);
#pragma unroll
                for (int j = 0; j < kPairBlocksPerWarp; ++j) {
                    mma_16816(acc[j][2 * nj], af[j], t[0], t[1]);
                    mma_16816(acc[j][2 * nj + 1], af[j], t[2], t[3]);
                }
            }
        }
    }
    // Lane (g, t) holds t pixels g and g + 8 of its blocks, channels 8 nb + 2t and + 1.
#pragma unroll
    for (int j = 0; j < kPairBlocksPerWarp; ++j)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const int mp = (warp + 4 * j) * 16 + (lane >> 2) + half * 8;
            if (mp >= kPairMidPx) continue;
            const int iy = ty0 - 1 + mp / kPairMidW, ix = tx0 - 1 + mp % kPairMidW;
            const bool inside = static_cast<unsigned>(iy) < static_cast<unsigned>(H) &&
                                static_cast<unsigned>(ix) < static_cast<unsigned>(W);
#pragma unroll
            for (int nb = 0; nb < NB; ++nb) {
                const float v0 = silu_act<false>(acc[j][nb][half * 2] + bias[nb][0]);
                const float v1 = silu_act<false>(acc[j][nb][half * 2 + 1] + bias[nb][1]);
                *reinterpret_cast<__half2*>(mid + halo_chunk_offset<C>(mp, nb) + (lane & 3) * 4) =
                    inside ? __floats2half2_rn(v0, v1) : __float2half2_rn(0.f);
            }
        }
}

template <int C, int STAGES>
__global__ void __launch_bounds__(kHaloThreads, pair_ctas_per_sm(C, STAGES))
    conv3x3_pair_halo_kernel(const __grid_constant__ PairParams pp) {
    static_assert(C == 16 || C == 32, "the bottlenecks of YOLOv8n's 160x160 and 80x80 C2f blocks");
    static_assert(STAGES >= 2, "at least one window loads while another is multiplied");
    const ConvParams& p = pp.p;
    constexpr int CH = C / 8, NB = C / 8, kWRow = 9 * C * 2 + 16, kStageBytes = pair_stage_bytes(C);
    extern __shared__ __align__(128) unsigned char smem[];
    const uint32_t s_ring = smem_addr(smem), s_mid = s_ring + STAGES * kStageBytes;
    const uint32_t s_w1 = s_mid + kPairMidPx * C * 2, s_w2 = s_w1 + pair_filter_bytes(C);
    unsigned char* const mid = smem + STAGES * kStageBytes;

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int H = p.out_h, W = p.out_w;
    const int tiles_x = (W + kHaloTW - 1) / kHaloTW, tiles_y = (H + kHaloTH - 1) / kHaloTH;
    const int tiles_img = tiles_x * tiles_y, tiles = (p.gemm_m / (H * W)) * tiles_img;

    // Both filters, once (row n: output channel n's 9 x C halves, as conv3x3_halo_kernel keeps one).
    for (int q = tid; q < C * 9 * CH; q += kHaloThreads) {
        const int n = q / (9 * CH), c = q % (9 * CH);
        const uint64_t src = (static_cast<uint64_t>(n) * 9 * CH + c) * 16;
        cp_async16<false>(s_w1 + n * kWRow + c * 16, reinterpret_cast<uint64_t>(pp.wgt1) + src, true);
        cp_async16<false>(s_w2 + n * kWRow + c * 16, reinterpret_cast<uint64_t>(p.wgt) + src, true);
    }
    cp_async_commit();
    wait_for_previous_kernel();  // after the constant filters' loads, as in conv3x3_halo_kernel

    // A tile's x window into ring stage `stage`: window pixel (wy, wx) is x pixel (ty0 - 2 + wy,
    // tx0 - 2 + wx), zeros outside the image.
    auto load_tile = [&](int tile, int stage) {
        const int img = tile / tiles_img, rem = tile % tiles_img;
        const int ty0 = (rem / tiles_x) * kHaloTH, tx0 = (rem % tiles_x) * kHaloTW;
        copy_window<C, kPairInH, kPairInW, 1, kHaloThreads>(s_ring + stage * kStageBytes, p, H, W, img, ty0 - 2,
                                                            tx0 - 2, tid);
    };

    int a_base[kPairBlocksPerWarp];
    pair_first_rows(warp, lane, a_base);
    float bias1[NB][2], bias2[NB][2];
    load_column_bias(pp.bias1, lane, bias1);
    load_column_bias(p.bias, lane, bias2);

    const int step = static_cast<int>(gridDim.x);
    int tile = static_cast<int>(blockIdx.x), stage = 0;
    fill_halo_ring<STAGES>(tile, step, tiles, load_tile);
    for (; tile < tiles; tile += step) {
        cp_async_wait<STAGES - 2>();  // the filters and this tile's window
        __syncthreads();              // ... from every thread; every warp is done with the previous tile's t
        const int ahead = tile + (STAGES - 1) * step;
        const int refill = stage == 0 ? STAGES - 1 : stage - 1;
        if (ahead < tiles) load_tile(ahead, refill);
        cp_async_commit();
        const int img = tile / tiles_img, rem = tile % tiles_img;
        const int ty0 = (rem / tiles_x) * kHaloTH, tx0 = (rem % tiles_x) * kHaloTW;
        const uint32_t win = s_ring + stage * kStageBytes;

        // The first conv: t on the 10x18 pixels, rounded to f16 into shared memory.
        pair_first_conv<C>(win, s_w1, mid, bias1, a_base, warp, lane, ty0, tx0, H, W);
        __syncthreads();  // t whole

        // The second conv on t, which is a stride-1 halo of the output tile (10x18 pixels).
        float acc[2][NB][4];
        halo_rows_mma<C, C, 1>(acc, s_mid, s_w2, warp, lane);

        // Epilogue through the warp's staging row; the residual is x at window pixel (r + 2, c + 2).
        constexpr int kLd = halo_staging_ld(C);
        __half* staging = reinterpret_cast<__half*>(smem + STAGES * kStageBytes + kPairMidPx * C * 2 +
                                                    2 * pair_filter_bytes(C) + warp * halo_staging_bytes(C));
        const unsigned char* window = smem + stage * kStageBytes;
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
            stage_row_halves(acc[mt], bias2, true, staging, lane);
            __syncwarp();
            const int ry = warp * 2 + mt, oy = ty0 + ry;
            const int npx = oy < H ? min(kHaloTW, W - tx0) : 0, m0 = (img * H + oy) * W + tx0;
#pragma unroll
            for (int q = lane; q < 16 * NB; q += 32) {
                const int px = q / NB, n = (q % NB) * 8;
                if (px >= npx) continue;
                const uint4* res = pp.residual ? reinterpret_cast<const uint4*>(
                                                     window + halo_chunk_offset<C>((ry + 2) * kPairInW + px + 2, n / 8))
                                               : nullptr;
                store8_halves(p, m0 + px, n, *reinterpret_cast<const uint4*>(&staging[px * kLd + n]), res);
            }
            __syncwarp();  // the next row overwrites the staging row
        }
        stage = stage == STAGES - 1 ? 0 : stage + 1;
    }
    cp_async_wait<0>();
}

// ---- A C2f block with one bottleneck, 32 -> 32 channels, in one kernel ----------------------------
//
// YOLOv8n's model.2 at 160x160: v = silu(cv1(x)) (1x1, 32 -> 32), split into a and b (16 channels
// each); t = silu(m.cv1(b)) and m = silu(m.cv2(t)) (+ b) (3x3, 16 -> 16), the bottleneck pair above;
// y = silu(cv2([a, b, m])) (1x1, 48 -> 32). As three kernels (cv1, the pair, cv2) v and m make a
// round trip through DRAM and cv2 reads 48 channels to write 32 (batch 64: 366 MB moved besides
// x and y's 210 MB). Here a CTA takes an 8x16 output tile and a 12x20 window of x (a two-pixel
// border, as the pair kernel's): b on the whole window into shared memory (zero outside the image:
// m.cv1's padding), t on its 10x18 centre and m on the tile as in conv3x3_pair_halo_kernel, then a
// on the tile and cv2. a and m never leave registers: the m16n8 accumulators of two adjacent n8
// blocks, after bias, SiLU and f16 rounding, are the m16k16 A fragment of the next MMA (lane (g, t)
// holds rows g and g + 8, columns 2t, 2t + 1 of each: a0..a3 of the A layout), so cv2's k blocks
// are a (registers), b (ldmatrix of the window's centre) and m (registers). Every intermediate is
// rounded to f16 where the three kernels would store it. The border's b and t are computed by the
// neighbouring tiles too ((12 x 20) / (8 x 16) = 1.9x cv1's b half, 1.4x m.cv1).
constexpr int kC2fIn = 32, kC2fHalf = 16, kC2fOut = 32;  // cv1 32 -> 2 x 16, cv2 48 -> 32
constexpr int kC2fWinPx = kPairInH * kPairInW;           // 240 window pixels: 15 m16 blocks
static_assert(kC2fWinPx % 16 == 0, "the window is whole m16 blocks");
constexpr int kC2fCv1Row = kC2fIn * 2 + 16, kC2fMRow = 9 * kC2fHalf * 2 + 16, kC2fCv2Row = 3 * kC2fHalf * 2 + 16;
constexpr int kC2fStageBytes = kC2fWinPx * kC2fIn * 2;
// The ring of x windows, b on the window, t, the four filters (rows padded by 16 bytes: an odd
// number of 16-byte chunks, conflict-free ldmatrix), a staging row per warp.
constexpr int c2f_smem_bytes(int stages) {
    return stages * kC2fStageBytes + kC2fWinPx * kC2fHalf * 2 + kPairMidPx * kC2fHalf * 2 + kC2fOut * kC2fCv1Row +
           2 * kC2fHalf * kC2fMRow + kC2fOut * kC2fCv2Row + (kHaloThreads / 32) * halo_staging_bytes(kC2fOut);
}
constexpr int c2f_ctas_per_sm(int stages) {
    const int fit = 228 * 1024 / (c2f_smem_bytes(stages) + 1024);
    return fit < 1 ? 1 : fit > 4 ? 4 : fit;
}

// cv2's fields in p (its weights, bias, y; x and the sizes: in = out), the other three convs'
// weights and biases, and whether the bottleneck adds b.
struct C2fParams {
    ConvParams p;
    const void* w_cv1 = nullptr;
    const float* b_cv1 = nullptr;
    const void* w_m1 = nullptr;
    const float* b_m1 = nullptr;
    const void* w_m2 = nullptr;
    const float* b_m2 = nullptr;
    int shortcut = 0;
};

// Two n8 blocks of m16n8 accumulators (plus bias, SiLU, rounded to f16) as an m16k16 A fragment.
__device__ __forceinline__ void acc_to_a_fragment(const float (&acc)[2][4], const float (&bias)[2][2],
                                                  uint32_t (&a)[4]) {
#pragma unroll
    for (int nb = 0; nb < 2; ++nb)
#pragma unroll
        for (int half = 0; half < 2; ++half) {
            const __half2 h = __floats2half2_rn(silu_act<false>(acc[nb][half * 2] + bias[nb][0]),
                                                silu_act<false>(acc[nb][half * 2 + 1] + bias[nb][1]));
            a[nb * 2 + half] = *reinterpret_cast<const uint32_t*>(&h);
        }
}

template <int STAGES>
__global__ void __launch_bounds__(kHaloThreads, c2f_ctas_per_sm(STAGES))
    c2f_n1_halo_kernel(const __grid_constant__ C2fParams cp) {
    static_assert(STAGES >= 2, "at least one window loads while another is multiplied");
    constexpr int CI = kC2fIn, C = kC2fHalf, NB = kC2fOut / 8;
    const ConvParams& p = cp.p;
    extern __shared__ __align__(128) unsigned char smem[];
    const uint32_t s_ring = smem_addr(smem), s_b = s_ring + STAGES * kC2fStageBytes;
    const uint32_t s_mid = s_b + kC2fWinPx * C * 2, s_cv1 = s_mid + kPairMidPx * C * 2;
    const uint32_t s_m1 = s_cv1 + kC2fOut * kC2fCv1Row, s_m2 = s_m1 + C * kC2fMRow, s_cv2 = s_m2 + C * kC2fMRow;
    unsigned char* const b_win = smem + STAGES * kC2fStageBytes;
    unsigned char* const mid = b_win + kC2fWinPx * C * 2;
    __half* const staging = reinterpret_cast<__half*>(smem + (s_cv2 - s_ring) + kC2fOut * kC2fCv2Row) +
                            (threadIdx.x >> 5) * (halo_staging_bytes(kC2fOut) / 2);

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int H = p.out_h, W = p.out_w;
    const int tiles_x = (W + kHaloTW - 1) / kHaloTW, tiles_y = (H + kHaloTH - 1) / kHaloTH;
    const int tiles_img = tiles_x * tiles_y, tiles = (p.gemm_m / (H * W)) * tiles_img;

    // The four filters, once: packed rows (output channel n: taps x input channels halves) into
    // rows of `ld` bytes.
    auto load_filter = [&](uint32_t dst, const void* src, int rows, int row_bytes, int ld) {
        const int chunks = row_bytes / 16;
        for (int q = tid; q < rows * chunks; q += kHaloThreads)
            cp_async16<false>(dst + (q / chunks) * ld + (q % chunks) * 16,
                              reinterpret_cast<uint64_t>(src) + static_cast<uint64_t>(q) * 16, true);
    };
    load_filter(s_cv1, cp.w_cv1, kC2fOut, CI * 2, kC2fCv1Row);
    load_filter(s_m1, cp.w_m1, C, 9 * C * 2, kC2fMRow);
    load_filter(s_m2, cp.w_m2, C, 9 * C * 2, kC2fMRow);
    load_filter(s_cv2, p.wgt, kC2fOut, 3 * C * 2, kC2fCv2Row);
    cp_async_commit();
    wait_for_previous_kernel();  // after the constant filters' loads, as in conv3x3_halo_kernel

    // A tile's x window into ring stage `stage`: window pixel (wy, wx) is x pixel (ty0 - 2 + wy,
    // tx0 - 2 + wx), zeros outside the image.
    auto load_tile = [&](int tile, int stage) {
        const int img = tile / tiles_img, rem = tile % tiles_img;
        const int ty0 = (rem / tiles_x) * kHaloTH, tx0 = (rem % tiles_x) * kHaloTW;
        copy_window<CI, kPairInH, kPairInW, 1, kHaloThreads>(s_ring + stage * kC2fStageBytes, p, H, W, img, ty0 - 2,
                                                             tx0 - 2, tid);
    };

    // ldmatrix lanes as in conv3x3_halo_kernel: A rows a_row, k half a_khalf; B rows of ld bytes.
    const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8, a_khalf = lane >> 4;
    auto b_lane = [&](int ld) {
        return static_cast<uint32_t>(((lane >> 4) * 8 + (lane & 7)) * ld + ((lane >> 3) & 1) * 16);
    };
    int t_base[kPairBlocksPerWarp];  // m.cv1's A rows
    pair_first_rows(warp, lane, t_base);
    float bias_a[2][2], bias_b[2][2], bias_m1[2][2], bias_m2[2][2], bias_y[NB][2];
    load_column_bias(cp.b_cv1, lane, bias_a);
    load_column_bias(cp.b_cv1 + C, lane, bias_b);
    load_column_bias(cp.b_m1, lane, bias_m1);
    load_column_bias(cp.b_m2, lane, bias_m2);
    load_column_bias(p.bias, lane, bias_y);

    const int step = static_cast<int>(gridDim.x);
    int tile = static_cast<int>(blockIdx.x), stage = 0;
    fill_halo_ring<STAGES>(tile, step, tiles, load_tile);
    for (; tile < tiles; tile += step) {
        cp_async_wait<STAGES - 2>();  // the filters and this tile's window
        __syncthreads();              // ... from every thread; every warp is done with the previous tile
        const int ahead = tile + (STAGES - 1) * step;
        const int refill = stage == 0 ? STAGES - 1 : stage - 1;
        if (ahead < tiles) load_tile(ahead, refill);
        cp_async_commit();
        const int img = tile / tiles_img, rem = tile % tiles_img;
        const int ty0 = (rem / tiles_x) * kHaloTH, tx0 = (rem % tiles_x) * kHaloTW;
        const uint32_t win = s_ring + stage * kC2fStageBytes;
        // Whether window pixel wp (of a window whose top-left is (y0, x0), width kPairInW) lies in the image.
        auto inside = [&](int wp, int y0, int x0, int width) {
            const int iy = y0 + wp / width, ix = x0 + wp % width;
            return static_cast<unsigned>(iy) < static_cast<unsigned>(H) &&
                   static_cast<unsigned>(ix) < static_cast<unsigned>(W);
        };

        // cv1's b half on the 240 window pixels: blocks warp + 4 j (15 blocks: warp 3 has three).
        {
            float acc[4][2][4];
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
                for (int nb = 0; nb < 2; ++nb)
#pragma unroll
                    for (int e = 0; e < 4; ++e) acc[j][nb][e] = 0.f;
#pragma unroll
            for (int kb = 0; kb < CI / 16; ++kb) {
                uint32_t t[4];
                ldmatrix_x4(t, s_cv1 + C * kC2fCv1Row + b_lane(kC2fCv1Row) + kb * 32);
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    if (j == 3 && warp == 3) continue;
                    uint32_t af[4];
                    ldmatrix_x4(af, win + halo_chunk_offset<CI>((warp + 4 * j) * 16 + a_row, kb * 2 + a_khalf));
                    mma_16816(acc[j][0], af, t[0], t[1]);
                    mma_16816(acc[j][1], af, t[2], t[3]);
                }
            }
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                if (j == 3 && warp == 3) continue;
#pragma unroll
                for (int half = 0; half < 2; ++half) {
                    const int wp = (warp + 4 * j) * 16 + (lane >> 2) + half * 8;
                    const bool in = inside(wp, ty0 - 2, tx0 - 2, kPairInW);
#pragma unroll
                    for (int nb = 0; nb < 2; ++nb) {
                        const float v0 = silu_act<false>(acc[j][nb][half * 2] + bias_b[nb][0]);
                        const float v1 = silu_act<false>(acc[j][nb][half * 2 + 1] + bias_b[nb][1]);
                        *reinterpret_cast<__half2*>(b_win + halo_chunk_offset<C>(wp, nb) + (lane & 3) * 4) =
                            in ? __floats2half2_rn(v0, v1) : __float2half2_rn(0.f);
                    }
                }
            }
        }
        __syncthreads();  // b whole

        // m.cv1: t on the 10x18 pixels, rounded to f16 into shared memory (zero outside the image).
        pair_first_conv<C>(s_b, s_m1, mid, bias_m1, t_base, warp, lane, ty0, tx0, H, W);
        __syncthreads();  // t whole

        // m.cv2 on t for the warp's two output rows; m = its f16 result (+ b, added in f16) as A fragments.
        uint32_t m_frag[2][4];
        {
            float acc[2][2][4];
            halo_rows_mma<C, C, 1>(acc, s_mid, s_m2, warp, lane);
#pragma unroll
            for (int mt = 0; mt < 2; ++mt) {
                acc_to_a_fragment(acc[mt], bias_m2, m_frag[mt]);
                if (cp.shortcut)
#pragma unroll
                    for (int nb = 0; nb < 2; ++nb)
#pragma unroll
                        for (int half = 0; half < 2; ++half) {
                            const int wp = (warp * 2 + mt + 2) * kPairInW + (lane >> 2) + half * 8 + 2;
                            const __half2 b = *reinterpret_cast<const __half2*>(b_win + halo_chunk_offset<C>(wp, nb) +
                                                                                (lane & 3) * 4);
                            __half2& m = *reinterpret_cast<__half2*>(&m_frag[mt][nb * 2 + half]);
                            m = __hadd2(m, b);
                        }
            }
        }

        // Per output row: cv1's a half on it (registers), then cv2 over [a, b, m], the epilogue
        // through the warp's staging row.
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
            const int ry = warp * 2 + mt, centre = (ry + 2) * kPairInW + 2;
            uint32_t a_frag[4];
            {
                float acc[2][4] = {};
#pragma unroll
                for (int kb = 0; kb < CI / 16; ++kb) {
                    uint32_t af[4], t[4];
                    ldmatrix_x4(af, win + halo_chunk_offset<CI>(centre + a_row, kb * 2 + a_khalf));
                    ldmatrix_x4(t, s_cv1 + b_lane(kC2fCv1Row) + kb * 32);
                    mma_16816(acc[0], af, t[0], t[1]);
                    mma_16816(acc[1], af, t[2], t[3]);
                }
                acc_to_a_fragment(acc, bias_a, a_frag);
            }
            uint32_t b_frag[4];
            ldmatrix_x4(b_frag, s_b + halo_chunk_offset<C>(centre + a_row, a_khalf));
            float acc[NB][4];
#pragma unroll
            for (int nb = 0; nb < NB; ++nb)
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[nb][e] = 0.f;
#pragma unroll
            for (int kb = 0; kb < 3; ++kb) {
                const uint32_t(&af)[4] = kb == 0 ? a_frag : kb == 1 ? b_frag : m_frag[mt];
#pragma unroll
                for (int nj = 0; nj < NB / 2; ++nj) {
                    uint32_t t[4];
                    ldmatrix_x4(t, s_cv2 + b_lane(kC2fCv2Row) + nj * 16 * kC2fCv2Row + kb * 32);
                    mma_16816(acc[2 * nj], af, t[0], t[1]);
                    mma_16816(acc[2 * nj + 1], af, t[2], t[3]);
                }
            }
            stage_row_halves(acc, bias_y, true, staging, lane);
            __syncwarp();
            const int oy = ty0 + ry;
            store_row_halves<NB>(p, staging, lane, (img * H + oy) * W + tx0, oy < H ? min(kHaloTW, W - tx0) : 0,
                                 nullptr);
            __syncwarp();  // the next row overwrites the staging row
        }
        stage = stage == STAGES - 1 ? 0 : stage + 1;
    }
    cp_async_wait<0>();
}

// ---- The image stem and the first downsampling conv in one kernel ---------------------------------
//
// YOLOv8n's model.0 (3 -> 16 channels, 3x3 stride 2, from the float32 NCHW image) and model.1
// (16 -> 32, 3x3 stride 2) at 640x640: as two kernels the stem's 320x320x16 f16 output makes a
// round trip through DRAM (batch 64: 210 MB each way, against the image's 315 MB read and
// model.1's 105 MB written). Here a CTA takes an 8x16 tile of model.1's output: the 17x33 stem
// pixels of its stride-2 halo are computed on the tensor cores (a warp multiplies 32 pixels' 27
// taps, as f16, by the stem's filters with mma.sync; B fragments in the launch parameters), rounded
// to f16 (as the stem kernel stores them) straight into the halo layout of conv3x3_halo_kernel
// (zeros outside the stem's map: model.1's padding); then model.1 runs on that halo as the stride-2
// halo kernel does. The halo's border column and row are computed by the neighbouring tiles too:
// 561 / 512 = 1.1x the stem's work.
//
// The image under a tile's halo (3 planes of 35 rows x 72 columns, 30 KB) comes into shared memory
// with 16-byte cp.async (zeros outside the image: the stem's padding), and the next tile's window is
// loaded while model.1 runs on this tile's halo. Each lane then builds its A fragments from the
// window directly. Gathering the 27 taps a pixel from global memory instead (27 scalar loads a
// lane, stride-2 columns) left the kernel latency-bound at 44 % of the memory roofline (Nsight
// Compute: DRAM 37 %, L1 68 %, 7.2 cycles between a warp's issues); with the window it was bound by
// issuing its instructions (4.6 cycles between issues at 3 warps a scheduler), so a pixel's offsets
// come from a per-CTA table rather than divisions, and the bias and the SiLU's halving ride in the
// MMA (k = 27 and 28): 390 -> 239 SASS instructions a 32-pixel unit, 0.271 -> 0.228 ms at batch 64.
constexpr int kStemK = 16, kStemConvK = 32;
constexpr int kStemHaloPx = halo_in_h(2) * halo_in_w(2);  // 17 x 33
constexpr int kStemUnits = (kStemHaloPx + 31) / 32;       // 32-pixel units a tile
// The window: image rows 4 ty0 - 3 .. + 34 and columns 4 tx0 - 4 .. + 71 (the taps start at 4 tx0
// - 3; one column earlier makes whole 16-byte chunks of an image whose width is a multiple of 4).
constexpr int kStemWinRows = 2 * (halo_in_h(2) - 1) + 3, kStemWinW = 72;
static_assert(kStemWinW >= 2 * (halo_in_w(2) - 1) + 3 + 1 && kStemWinW % 4 == 0, "the window covers the taps");
constexpr int kStemWinPlane = kStemWinRows * kStemWinW;
constexpr int kStemConvWRow = 9 * kStemK * 2 + 16;
constexpr int kStemHaloBytes = kStemHaloPx * kStemK * 2;
constexpr int kStemWinBytes = kStemC * kStemWinPlane * 4;
// A table of the halo's pixels' offsets, the same for every tile (stem_pixel_entry).
constexpr int kStemTabBytes = kStemUnits * 32 * 8;
constexpr int kStemSmemBytes = kStemHaloBytes + kStemWinBytes + kStemConvK * kStemConvWRow +
                               (kHaloThreads / 32) * halo_staging_bytes(kStemConvK) + kStemTabBytes;
constexpr int kStemCtasPerSm = 228 * 1024 / (kStemSmemBytes + 1024);  // 3
static_assert(kStemCtasPerSm >= 3, "three CTAs an SM");

// model.1's fields in p (its weights, bias, y, sizes: in = the stem's map), the image and the
// stem's packed filters, halved with the halved bias in k = 27 and 28
// (pack_stem_mma_fragments_half_bias): the MMA gives the SiLU's h.
struct StemConvParams {
    ConvParams p;
    const float* image = nullptr;
    int image_h = 0, image_w = 0;
    StemMmaFragments<kStemK> stem;
};

// Halo pixel hp's (the unit loop's) tile-invariant part, once per CTA: x = its window offset in
// bytes (row 2 hy, column 2 hx) | its halo byte offset for channels 0-7 << 16 (8-15: ^ 16, as
// halo_chunk_offset<16> swizzles); y = hy | hx << 8 | 1 << 16 past the halo's 17 x 33 pixels.
__device__ __forceinline__ uint2 stem_pixel_entry(int hp) {
    constexpr int kInW = halo_in_w(2);
    const int hc = min(hp, kStemHaloPx - 1), hy = hc / kInW, hx = hc % kInW;
    const uint32_t win = static_cast<uint32_t>((hy * 2 * kStemWinW + hx * 2) * 4);
    const uint32_t halo = halo_chunk_offset<kStemK>(hy * kInW + halo_column<2>(hx), 0);
    return make_uint2(win | halo << 16,
                      static_cast<uint32_t>(hy) | static_cast<uint32_t>(hx) << 8 | (hp >= kStemHaloPx ? 1u << 16 : 0u));
}
static_assert(kStemWinBytes < (1 << 16) && kStemHaloBytes < (1 << 16), "16-bit offsets in the pixel table");

// The image under the halo of the tile at (ty0, tx0) into the window at s_win: 16-byte chunks, zeros
// outside the image (image_w % 4 == 0, so a chunk is wholly in or out).
__device__ __forceinline__ void load_stem_window(uint32_t s_win, const StemConvParams& sp, const float* image, int ty0,
                                                 int tx0) {
    constexpr int kChunks = kStemWinW / 4, kPlaneChunks = kStemWinRows * kChunks;
    const int h = sp.image_h, w = sp.image_w, iy0 = 4 * ty0 - 3, ix0 = 4 * tx0 - 4;
    for (int q = static_cast<int>(threadIdx.x); q < kStemC * kPlaneChunks; q += kHaloThreads) {
        const int c = q / kPlaneChunks, iy = iy0 + q % kPlaneChunks / kChunks, ix = ix0 + 4 * (q % kChunks);
        const bool in = static_cast<unsigned>(iy) < static_cast<unsigned>(h) &&
                        static_cast<unsigned>(ix) < static_cast<unsigned>(w);
        const float* src = in ? image + ((c * h + iy) * w + ix) : image;
        cp_async16<false>(s_win + static_cast<uint32_t>(q) * 16, reinterpret_cast<uint64_t>(src), in);
    }
    cp_async_commit();
}

// A lane's k indices in the m16n8k16 A layout (lane (g, t): 2t, 2t + 1, 2t + 8, 2t + 9, + 16 for
// ks = 1) as taps of the window: tap_at[j], k index j's byte offset from a pixel's window offset
// (k < 27: the tap (c, ky, kx); else 0), and for j = 6, 7 (k 24 + 2t, 25 + 2t, the only ones that
// can pass 26) whether k is a tap (keep) or else the value it holds: 1 at k = 27 and 28 (the
// bias's rows of pack_stem_mma_fragments_half_bias), 0 above.
struct StemLaneTaps {
    uint32_t tap_at[8];
    bool keep[2];
    float value[2];
};
__device__ __forceinline__ StemLaneTaps stem_lane_taps(int lane) {
    StemLaneTaps lt;
    const int t4 = lane & 3;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
        const int k = 2 * t4 + (j & 1) + 8 * ((j >> 1) & 1) + 16 * (j >> 2);
        lt.tap_at[j] = k < kStemC * kStemTaps
                           ? static_cast<uint32_t>(((k / 9) * kStemWinPlane + (k % 9 / 3) * kStemWinW + k % 3 + 1) * 4)
                           : 0u;
        if (j >= 6) {
            lt.keep[j - 6] = k < kStemC * kStemTaps;
            lt.value[j - 6] = k == kStemC * kStemTaps || k == kStemC * kStemTaps + 1 ? 1.f : 0.f;
        }
    }
    return lt;
}

// A fragments of the lane's pixels g and g + 8 (window byte offsets px[0], px[1]) of a 16-pixel block.
__device__ __forceinline__ void stem_window_fragments(const unsigned char* win, const StemLaneTaps& lt,
                                                      const uint32_t (&px)[2], uint32_t (&afr)[2][4]) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
        float v[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = *reinterpret_cast<const float*>(win + (px[half] + lt.tap_at[j]));
        v[6] = lt.keep[0] ? v[6] : lt.value[0];
        v[7] = lt.keep[1] ? v[7] : lt.value[1];
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            const __half2 h2 = __floats2half2_rn(v[2 * q], v[2 * q + 1]);
            afr[q >> 1][(q & 1) * 2 + half] = *reinterpret_cast<const uint32_t*>(&h2);
        }
    }
}

__global__ void __launch_bounds__(kHaloThreads, kStemCtasPerSm)
    stem_halo3x3s2_kernel(const __grid_constant__ StemConvParams sp) {
    const ConvParams& p = sp.p;
    constexpr int NB0 = kStemK / 8, NB = kStemConvK / 8;
    extern __shared__ __align__(128) unsigned char smem[];
    const uint32_t s_halo = smem_addr(smem), s_win = s_halo + kStemHaloBytes, s_w = s_win + kStemWinBytes;
    unsigned char* const halo = smem;
    const unsigned char* const win = smem + kStemHaloBytes;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t4 = lane & 3;
    constexpr int kStagingAt = kStemHaloBytes + kStemWinBytes + kStemConvK * kStemConvWRow;
    __half* const staging = reinterpret_cast<__half*>(smem + kStagingAt + warp * halo_staging_bytes(kStemConvK));
    uint2* const tab =
        reinterpret_cast<uint2*>(smem + kStagingAt + (kHaloThreads / 32) * halo_staging_bytes(kStemConvK));
    const int SH = p.in_h, SW = p.in_w, OH = p.out_h, OW = p.out_w;  // the stem's map, model.1's
    const int tiles_x = (OW + kHaloTW - 1) / kHaloTW, tiles_y = (OH + kHaloTH - 1) / kHaloTH;
    const int tiles_img = tiles_x * tiles_y, tiles = (p.gemm_m / (OH * OW)) * tiles_img;
    const int plane = sp.image_h * sp.image_w;
    auto tile_origin = [&](int tile, int& img, int& ty0, int& tx0) {
        img = tile / tiles_img;
        const int rem = tile % tiles_img;
        ty0 = (rem / tiles_x) * kHaloTH;
        tx0 = (rem % tiles_x) * kHaloTW;
    };

    // model.1's filter, once (as conv3x3_halo_kernel keeps it).
    for (int q = tid; q < kStemConvK * 9 * (kStemK / 8); q += kHaloThreads) {
        const int n = q / (9 * kStemK / 8), c = q % (9 * kStemK / 8);
        cp_async16<false>(s_w + n * kStemConvWRow + c * 16,
                          reinterpret_cast<uint64_t>(p.wgt) + static_cast<uint64_t>(q) * 16, true);
    }
    cp_async_commit();
    uint32_t b0[NB0][2][2];
#pragma unroll
    for (int nb = 0; nb < NB0; ++nb)
#pragma unroll
        for (int ks = 0; ks < 2; ++ks)
            b0[nb][ks][0] = sp.stem.frag[nb][ks][lane][0], b0[nb][ks][1] = sp.stem.frag[nb][ks][lane][1];
    float bias[NB][2];
    load_column_bias(p.bias, lane, bias);
    const StemLaneTaps lt = stem_lane_taps(lane);
    for (int hp = tid; hp < kStemUnits * 32; hp += kHaloThreads) tab[hp] = stem_pixel_entry(hp);
    wait_for_previous_kernel();  // the image is the previous kernel's output
    int tile = static_cast<int>(blockIdx.x), img, ty0, tx0;
    if (tile < tiles) {
        tile_origin(tile, img, ty0, tx0);
        load_stem_window(s_win, sp, sp.image + static_cast<int64_t>(img) * kStemC * plane, ty0, tx0);
    }

    for (; tile < tiles; tile += static_cast<int>(gridDim.x)) {
        tile_origin(tile, img, ty0, tx0);
        cp_async_wait<0>();
        __syncthreads();  // the window (and the filter) landed; every warp is done with the previous halo
        // The stem on the halo's pixels: halo pixel hp = (hy, hx) is stem pixel (2 ty0 - 1 + hy,
        // 2 tx0 - 1 + hx), stored at row hy, column halo_column<2>(hx).
        const int sy0 = 2 * ty0 - 1, sx0 = 2 * tx0 - 1;
        for (int u = warp; u < kStemUnits; u += kHaloThreads / 32) {
#pragma unroll
            for (int mb = 0; mb < 2; ++mb) {
                const uint2 e[2] = {tab[u * 32 + 16 * mb + g], tab[u * 32 + 16 * mb + g + 8]};
                uint32_t afr[2][4];
                stem_window_fragments(win, lt, {e[0].x & 0xffffu, e[1].x & 0xffffu}, afr);
                float d[NB0][4];  // h = (the stem's conv + bias) / 2
#pragma unroll
                for (int nb = 0; nb < NB0; ++nb) stem_mma(d[nb], afr, b0[nb]);
#pragma unroll
                for (int half = 0; half < 2; ++half) {
                    if (e[half].y >> 16) continue;  // past the halo
                    const bool in =
                        static_cast<unsigned>(sy0 + static_cast<int>(e[half].y & 0xff)) < static_cast<unsigned>(SH) &&
                        static_cast<unsigned>(sx0 + static_cast<int>((e[half].y >> 8) & 0xff)) <
                            static_cast<unsigned>(SW);
                    const uint32_t at = (e[half].x >> 16) + t4 * 4;
#pragma unroll
                    for (int nb = 0; nb < NB0; ++nb) {
                        const float v0 = silu_approx_of_half(d[nb][2 * half]);
                        const float v1 = silu_approx_of_half(d[nb][2 * half + 1]);
                        *reinterpret_cast<__half2*>(halo + (at ^ (nb << 4))) =
                            in ? __floats2half2_rn(v0, v1) : __float2half2_rn(0.f);
                    }
                }
            }
        }
        __syncthreads();  // the halo whole, the window free
        const int next = tile + static_cast<int>(gridDim.x);
        if (next < tiles) {
            int nimg, ny0, nx0;
            tile_origin(next, nimg, ny0, nx0);
            load_stem_window(s_win, sp, sp.image + static_cast<int64_t>(nimg) * kStemC * plane, ny0, nx0);
        }

        // model.1 on the halo, epilogue as conv3x3_halo_kernel's.
        float acc[2][NB][4];
        halo_rows_mma<kStemK, kStemConvK, 2>(acc, s_halo, s_w, warp, lane);
#pragma unroll
        for (int mt = 0; mt < 2; ++mt) {
            stage_row_halves(acc[mt], bias, true, staging, lane);
            __syncwarp();
            const int oy = ty0 + warp * 2 + mt;
            store_row_halves<NB>(p, staging, lane, (img * OH + oy) * OW + tx0, oy < OH ? min(kHaloTW, OW - tx0) : 0,
                                 nullptr);
            __syncwarp();
        }
    }
}

// ---- 3x3 stride-1 convs with 64 or 80 channels on halo tiles, warpgroup MMAs (sm_90a) -------------
//
// The detect head's 3x3 convs (64 -> 64, 64 -> 80, 80 -> 80 at 80x80, 40x40 and 20x20) have a
// filter too large for several CTAs an SM, and with one CTA of 4 warps the mma.sync halo kernel
// above is latency-bound (measured: slower than the implicit-GEMM wgmma tactics). Here the same 8x16
// halo tile is multiplied by wgmma with A from registers: CTA = 2 warpgroups, warp w owns output
// row w of the tile (16 pixels, its 16 rows of the warpgroup's m64 A), and for each k16 step
// (tap, 16 channels) loads its A fragment with one ldmatrix.x4 of the shifted halo view. B is the
// resident filter in the wgmma tactics' 64B-swizzled k-tile layout (wgmma.cuh): k-tile t holds k
// [32t, 32t + 32) of all K rows, K x 64 bytes, so a k16 step is one descriptor. A tap's C / 16 MMAs
// are one commit group; the next tap's fragments load while it runs (double-buffered registers).
// A residual (the C2f bottlenecks' second convs at 40x40) in 16-byte aligned pixels is copied into
// shared memory while the tile's taps run, each warp its output row's (a cp.async group between the
// ring's, waited for before the epilogue): read from global memory in the epilogue, with nothing to
// hide its latency, it made these convs ~1.6x as long (timing cache, batch 64: 47 against 29 us).
constexpr int kHaloWgThreads = 256;

constexpr int halo_wg_filter_bytes(int c, int k) { return (9 * c / 16 + 1) / 2 * k * 64; }
constexpr int halo_wg_stage_bytes(int c) { return halo_in_h(1) * halo_in_w(1) * c * 2; }
// 512 bytes of slack to align the filter for the descriptors, the filter, the ring, and a staging
// row per warp.
constexpr int halo_wg_smem_bytes(int c, int k, int stages) {
    return 512 + halo_wg_filter_bytes(c, k) + stages * halo_wg_stage_bytes(c) +
           (kHaloWgThreads / 32) * halo_staging_bytes(k);
}
// After those, with a residual copied into shared memory: a warp's output row of it, 16 pixels of k
// halves (store_row_halves' ring_res layout).
constexpr int halo_wg_res_row_bytes(int k) { return 16 * k * 2; }
constexpr int halo_wg_res_bytes(int k) { return (kHaloWgThreads / 32) * halo_wg_res_row_bytes(k); }

// kResCopy: p.res is set and p.res_vec holds; the residual is copied into shared memory (the launch
// gives the CTA halo_wg_res_bytes(K) more). A separate instantiation: with the copy as a run-time
// branch in one kernel, the convs without a residual ran ~10 % slower (A/B, session 16).
template <int C, int K, int STAGES, bool kResCopy>
__global__ void __launch_bounds__(kHaloWgThreads, 1) conv3x3_halo_wgmma_kernel(const ConvParams p) {
    static_assert((C == 64 || C == 80) && (K == 64 || K == 80), "the RS wgmma wrappers and halo swizzles that exist");
    static_assert(STAGES >= 2, "at least one tile loads while another is multiplied");
    constexpr int kInH = halo_in_h(1), kInW = halo_in_w(1);
    constexpr int CH = C / 8, CB = C / 16, NB = K / 8, kStageBytes = halo_wg_stage_bytes(C);
    constexpr int kKTileBytes = K * 64;
    extern __shared__ __align__(128) unsigned char smem[];
    const uint32_t s_w = (smem_addr(smem) + 511) & ~511u;  // wgmma reads the swizzle from address bits
    const uint32_t s_ring = s_w + halo_wg_filter_bytes(C, K);
    unsigned char* const smem_w = smem + (s_w - smem_addr(smem));

    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int H = p.in_h, W = p.in_w, OH = p.out_h, OW = p.out_w;
    const int tiles_x = (OW + kHaloTW - 1) / kHaloTW, tiles_y = (OH + kHaloTH - 1) / kHaloTH;
    const int tiles_img = tiles_x * tiles_y, tiles = (p.gemm_m / (OH * OW)) * tiles_img;
    const uint64_t xb = reinterpret_cast<uint64_t>(p.x), wb = reinterpret_cast<uint64_t>(p.wgt);

    // The filter, once: packed row n (9 x C halves, tap-major) -> k-tiles of 32 halves, 16-byte chunk
    // c of row n at chunk c ^ ((n >> 1) & 3) (the 64-byte swizzle).
    for (int q = tid; q < K * 9 * CH; q += kHaloWgThreads) {
        const int n = q / (9 * CH), c = q % (9 * CH);
        cp_async16<false>(s_w + (c >> 2) * kKTileBytes + n * 64 + (((c & 3) ^ ((n >> 1) & 3)) << 4),
                          wb + (static_cast<uint64_t>(n) * 9 * CH + c) * 16, true);
    }
    cp_async_commit();
    wait_for_previous_kernel();  // after the constant filter's loads, as in conv3x3_halo_kernel

    // The halo loads: thread t copies chunks q = t + 256 i of every tile, i < kLoads; what a chunk is
    // (halo row and column, channel chunk, place in the stage) is the same for every tile, so it is
    // worked out once, packed into a register: bits 0-14 the offset in the stage, 15-18 the row, 19-23
    // the column, 24-27 the chunk, 28 valid. A tile then costs a few instructions a chunk, and the
    // chunks are issued between the taps' MMAs (after tap i), whose tensor-core time hides them.
    constexpr int kLoads = (kInH * kInW * CH + kHaloWgThreads - 1) / kHaloWgThreads;
    static_assert(kLoads <= 9, "one tap's MMAs hide each chunk");
    static_assert(kStageBytes <= (1 << 15) && kInH <= 16 && kInW <= 32 && CH <= 16, "the packed chunk fields");
    uint32_t chunk_info[kLoads];
    int chunk_rel[kLoads];  // the chunk's pixel relative to the halo's corner: hy W + hx
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
        const int q = tid + i * kHaloWgThreads, hp = q / CH, c = q % CH, hy = hp / kInW, hx = hp % kInW;
        chunk_info[i] =
            q < kInH * kInW * CH ? halo_chunk_offset<C>(hp, c) | hy << 15 | hx << 19 | c << 24 | 1u << 28 : 0;
        chunk_rel[i] = hy * W + hx;
    }
    // Chunk i of a tile whose halo corner is input pixel (oy, ox) of image img (corner = its index).
    auto load_chunk = [&](int i, uint32_t dst, int64_t corner, int oy, int ox) {
        const uint32_t info = chunk_info[i];
        if (!(info >> 28)) return;
        const int iy = oy + static_cast<int>((info >> 15) & 15), ix = ox + static_cast<int>((info >> 19) & 31);
        const bool inside = static_cast<unsigned>(iy) < static_cast<unsigned>(H) &&
                            static_cast<unsigned>(ix) < static_cast<unsigned>(W);
        cp_async16<false>(dst + (info & 0x7fff),
                          xb + static_cast<uint64_t>((corner + chunk_rel[i]) * p.x_ps + ((info >> 24) & 15) * 8) * 2,
                          inside);
    };
    struct TileLoad {
        uint32_t dst;
        int64_t corner;
        int oy, ox;
    };
    auto tile_load = [&](int tile, int stage) {
        const int img = tile / tiles_img, rem = tile % tiles_img;
        const int oy = (rem / tiles_x) * kHaloTH - 1, ox = (rem % tiles_x) * kHaloTW - 1;
        return TileLoad{s_ring + stage * kStageBytes, (static_cast<int64_t>(img) * H + oy) * W + ox, oy, ox};
    };
    auto load_tile = [&](int tile, int stage) {
        const TileLoad t = tile_load(tile, stage);
#pragma unroll
        for (int i = 0; i < kLoads; ++i) load_chunk(i, t.dst, t.corner, t.oy, t.ox);
    };

    // Per lane: the A row (pixel of this warp's output row) and k half it addresses for ldmatrix.x4.
    const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8, a_khalf = lane >> 4;
    float bias[NB][2];
    load_column_bias(p.bias, lane, bias);
    // This warp's output row of the residual, where it is copied into shared memory.
    unsigned char* const res_row = smem_w + halo_wg_filter_bytes(C, K) + STAGES * kStageBytes +
                                   (kHaloWgThreads / 32) * halo_staging_bytes(K) + warp * halo_wg_res_row_bytes(K);
    const uint64_t rb = reinterpret_cast<uint64_t>(p.res);

    // The ring, as in conv3x3_halo_kernel: tile i in stage i % STAGES, cp.async group i + 1; with a
    // residual copied, tile i's residual is a group of its own just before the one that loads tile
    // i + STAGES - 1, and the epilogue waits for it (leaving only that load in flight).
    const int step = static_cast<int>(gridDim.x);
    int tile = static_cast<int>(blockIdx.x), stage = 0;
    fill_halo_ring<STAGES>(tile, step, tiles, load_tile);
    for (; tile < tiles; tile += step) {
        cp_async_wait<STAGES - 2>();  // the filter and this tile
        fence_proxy_async_shared();   // the filter's copies, visible to wgmma
        __syncthreads();              // ... from every thread; and every warp is done with the previous tile
        if constexpr (kResCopy) {
            // This warp's output row: pixels [m0, m0 + npx) of y.
            const int img = tile / tiles_img, rem = tile % tiles_img;
            const int oy = (rem / tiles_x) * kHaloTH + warp, tx0 = (rem % tiles_x) * kHaloTW;
            const int m0 = (img * OH + oy) * OW + tx0, npx = oy < OH ? min(kHaloTW, OW - tx0) : 0;
#pragma unroll
            for (int q = lane; q < 16 * NB; q += 32) {
                const int px = q / NB, n = (q % NB) * 8;
                cp_async16<false>(smem_addr(res_row) + q * 16,
                                  rb + (static_cast<uint64_t>(m0 + (px < npx ? px : 0)) * p.res_ps + n) * 2, px < npx);
            }
            cp_async_commit();
        }
        // The tile STAGES - 1 ahead goes into the previous tile's stage, its chunks issued between the
        // taps below (a tile past the end loads nothing).
        const int ahead = tile + (STAGES - 1) * step;
        const TileLoad next = tile_load(ahead < tiles ? ahead : 0, stage == 0 ? STAGES - 1 : stage - 1);

        const uint32_t halo = s_ring + stage * kStageBytes;
        float acc[NB][4];
        uint32_t af[2][CB][4];
#pragma unroll
        for (int tap = 0; tap < 9; ++tap) {
            const int dy = tap / 3, dx = tap % 3;
            const int hp = (warp + dy) * kInW + dx + a_row;
#pragma unroll
            for (int cb = 0; cb < CB; ++cb)
                ldmatrix_x4(af[tap & 1][cb], halo + halo_chunk_offset<C>(hp, cb * 2 + a_khalf));
            wgmma_fence();  // the fragments just loaded (and the accumulators the last epilogue read)
#pragma unroll
            for (int cb = 0; cb < CB; ++cb) {
                const int ks = tap * CB + cb;  // k16 step: k [16 ks, 16 ks + 16) = tap, channels 16 cb..
                wgmma_m64k16_f32_f16_rs<K>(acc, af[tap & 1][cb],
                                           wgmma_desc_k64b(s_w + (ks >> 1) * kKTileBytes + (ks & 1) * 32), ks > 0);
            }
            wgmma_commit();
            if (tap < kLoads && ahead < tiles) load_chunk(tap, next.dst, next.corner, next.oy, next.ox);
            wgmma_wait<1>();  // the previous tap's MMAs are done: its fragment registers are free
        }
        cp_async_commit();
        wgmma_wait<0>();

        // Epilogue, as in conv3x3_halo_kernel: warp w's accumulators are output row w, staged per warp
        // for 16-byte stores of 8 channels; the residual from shared memory (copied, its group the
        // second newest) or else, if any, from global memory.
        const int img = tile / tiles_img, rem = tile % tiles_img;
        const int oy = (rem / tiles_x) * kHaloTH + warp, tx0 = (rem % tiles_x) * kHaloTW;
        __half* staging = reinterpret_cast<__half*>(smem_w + halo_wg_filter_bytes(C, K) + STAGES * kStageBytes +
                                                    warp * halo_staging_bytes(K));
        if constexpr (kResCopy) cp_async_wait<1>();
        stage_row_halves(acc, bias, p.silu, staging, lane);
        __syncwarp();  // the staged row (and the residual row's copies) from every lane
        store_row_halves<NB>(p, staging, lane, (img * OH + oy) * OW + tx0, oy < OH ? min(kHaloTW, OW - tx0) : 0,
                             kResCopy ? res_row : nullptr);
        __syncwarp();  // the next tile overwrites the staging row
        stage = stage == STAGES - 1 ? 0 : stage + 1;
    }
    cp_async_wait<0>();
}

// ---- 1x1 convs as a stream of pixel tiles, warpgroup MMAs (sm_90a) -------------------------------
//
// A 1x1 conv is a GEMM whose A is the input's pixels (rows of C halves) and whose B, the filter
// (K x C), is small. The implicit-GEMM tactics give a CTA one tile and loop over its 32-wide k-tiles:
// with C = 64-256 that is 2-8 k-tiles, so each CTA fills its pipeline, drains it and stores, and a
// layer is a few waves of CTAs whose loads, MMAs and stores barely overlap (YOLOv8n's 1x1 convs ran
// at 1,250-2,350 GB/s at batch 64, against ~2,800 for a copy). Here CTAs are persistent (one wave)
// and keep the filter in shared memory; a CTA walks its 128-pixel tiles (tile, tile + grid, ...)
// through a ring of STAGES whole tiles (128 pixels x C halves), the tile STAGES - 1 ahead loading
// while this one is multiplied and stored, as the halo kernels' rings do.
//
// CTA = 2 warpgroups; warp w owns pixels [16 w, 16 w + 16) of the tile (its 16 rows of its
// warpgroup's m64 A) and loads their A fragments with ldmatrix.x4 (a pixel's row is C halves and 16
// bytes of padding, an odd number of 16-byte chunks, so an ldmatrix phase's 8 rows hit distinct
// banks); wgmma m64nKk16 takes A from registers and B from the resident filter in the wgmma tactics'
// 64B-swizzled k-tile layout. A k-tile's two k16 steps are one commit group, the next k-tile's
// fragments load while it runs, and the ahead tile's 16-byte copies are issued between the groups.
// The epilogue stages a warp's 16 pixels in its own rows of the tile's stage (free once its A
// fragments are in registers, and the ring refills that stage only after the next __syncthreads),
// as the halo kernels' staging row (K + 8 halves a pixel: K <= C), and stores 16-byte runs. C is a
// run-time multiple of 32 from K up; the launch sizes the filter and the ring for it.
constexpr int kStreamThreads = 256, kStreamTilePx = 128;
constexpr int stream_row_bytes(int c) { return 2 * c + 16; }
// 512 bytes of slack to align the filter for the descriptors, the filter, the ring.
constexpr int stream_smem_bytes(int c, int k, int stages) {
    return 512 + k * c * 2 + stages * kStreamTilePx * stream_row_bytes(c);
}
constexpr int kStreamMaxSmem = 227 * 1024;
// The widest C whose filter and ring fit.
constexpr int stream_max_c(int k, int stages) {
    return (kStreamMaxSmem - 512 - stages * kStreamTilePx * 16) / (2 * k + stages * kStreamTilePx * 2) / 32 * 32;
}

template <int K, int STAGES>
__global__ void __launch_bounds__(kStreamThreads, K == 64 ? 2 : 1) conv1x1_stream_wgmma_kernel(const ConvParams p) {
    static_assert(K == 64 || K == 128, "the RS wgmma wrappers that exist");
    static_assert(STAGES >= 2, "at least one tile loads while another is multiplied");
    constexpr int NB = K / 8, kKTileBytes = K * 64;
    const int C = p.cg, CH = C / 8, RB = stream_row_bytes(C), stage_bytes = kStreamTilePx * RB;
    extern __shared__ __align__(128) unsigned char smem[];
    const uint32_t s_w = (smem_addr(smem) + 511) & ~511u;  // wgmma reads the swizzle from address bits
    const uint32_t s_ring = s_w + K * C * 2;
    unsigned char* const smem_ring = smem + (s_ring - smem_addr(smem));
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int M = p.gemm_m, tiles = (M + kStreamTilePx - 1) / kStreamTilePx;
    const uint64_t xb = reinterpret_cast<uint64_t>(p.x), wb = reinterpret_cast<uint64_t>(p.wgt);

    // The filter, once: packed row n (C halves) -> k-tiles of 32 halves, 16-byte chunk c of row n at
    // chunk c ^ ((n >> 1) & 3) (the 64-byte swizzle).
    for (int q = tid; q < K * CH; q += kStreamThreads) {
        const int n = q / CH, c = q - n * CH;
        cp_async16<false>(s_w + (c >> 2) * kKTileBytes + n * 64 + (((c & 3) ^ ((n >> 1) & 3)) << 4),
                          wb + static_cast<uint64_t>(q) * 16, true);
    }
    cp_async_commit();
    wait_for_previous_kernel();  // after the constant filter's loads, as in conv3x3_halo_kernel

    // A tile's copies: thread t takes chunks q = t + 256 i (pixel q / CH, channel chunk q % CH) for
    // i < C / 16; the cursor (pixel, chunk) steps by 256 chunks without a division.
    const int px0 = tid / CH, c0 = tid - px0 * CH, dpx = kStreamThreads / CH, dc = kStreamThreads - dpx * CH;
    struct Cursor {
        int px, c;
    };
    auto load_chunk = [&](uint32_t dst, int m0, Cursor& at) {
        const int m = m0 + at.px;
        cp_async16<false>(dst + at.px * RB + at.c * 16,
                          xb + static_cast<uint64_t>(static_cast<int64_t>(m < M ? m : 0) * p.x_ps + at.c * 8) * 2,
                          m < M);
        at.px += dpx;
        at.c += dc;
        if (at.c >= CH) at.c -= CH, ++at.px;
    };
    auto load_tile = [&](int tile, int stage) {
        Cursor at{px0, c0};
        for (int i = 0; i < C / 16; ++i) load_chunk(s_ring + stage * stage_bytes, tile * kStreamTilePx, at);
    };

    // Per lane: the A row (pixel of this warp's 16) and k half it addresses for ldmatrix.x4.
    const int a_row = (lane & 7) + ((lane >> 3) & 1) * 8, a_khalf = lane >> 4;
    float bias[NB][2];
    load_column_bias(p.bias, lane, bias);

    // The ring, as in conv3x3_halo_kernel: tile i in stage i % STAGES, cp.async group i + 1.
    const int step = static_cast<int>(gridDim.x), k_tiles = C / 32;
    int tile = static_cast<int>(blockIdx.x), stage = 0;
    fill_halo_ring<STAGES>(tile, step, tiles, load_tile);
    for (; tile < tiles; tile += step) {
        cp_async_wait<STAGES - 2>();  // the filter and this tile
        fence_proxy_async_shared();   // the filter's copies, visible to wgmma
        __syncthreads();              // ... from every thread; and every warp is done with the previous tile
        // The tile STAGES - 1 ahead goes into the previous tile's stage, two copies a thread after
        // each k-tile's MMAs (C / 16 in all).
        const int ahead = tile + (STAGES - 1) * step;
        const uint32_t ahead_dst = s_ring + (stage == 0 ? STAGES - 1 : stage - 1) * stage_bytes;
        Cursor at{px0, c0};

        const uint32_t a_at = s_ring + stage * stage_bytes + (warp * 16 + a_row) * RB + a_khalf * 16;
        float acc[NB][4];
        uint32_t af[2][2][4];
        // k-tile kt (channels [32 kt, 32 kt + 32)) from fragment buffer B.
        auto k_tile = [&](int kt, auto buffer) {
            constexpr int B = decltype(buffer)::value;
            ldmatrix_x4(af[B][0], a_at + kt * 64);
            ldmatrix_x4(af[B][1], a_at + kt * 64 + 32);
            wgmma_fence();  // the fragments just loaded (and the accumulators the last epilogue read)
            wgmma_m64k16_f32_f16_rs<K>(acc, af[B][0], wgmma_desc_k64b(s_w + kt * kKTileBytes), kt > 0);
            wgmma_m64k16_f32_f16_rs<K>(acc, af[B][1], wgmma_desc_k64b(s_w + kt * kKTileBytes + 32), true);
            wgmma_commit();
            if (ahead < tiles) {
                load_chunk(ahead_dst, ahead * kStreamTilePx, at);
                load_chunk(ahead_dst, ahead * kStreamTilePx, at);
            }
            wgmma_wait<1>();  // the previous k-tile's MMAs are done: its fragment registers are free
        };
        // Unrolled to the widest C, so the accumulators stay in place (in a loop ptxas serialises the
        // MMAs: C7513).
#pragma unroll
        for (int kt = 0; kt < stream_max_c(K, STAGES) / 32; ++kt)
            if (kt < k_tiles) {
                if (kt & 1) {
                    k_tile(kt, std::integral_constant<int, 1>{});
                } else {
                    k_tile(kt, std::integral_constant<int, 0>{});
                }
            }
        cp_async_commit();
        wgmma_wait<0>();

        // Epilogue: warp w's accumulators are pixels [m0, m0 + 16), staged in the warp's own rows.
        __half* const staging = reinterpret_cast<__half*>(smem_ring + stage * stage_bytes + warp * 16 * RB);
        const int m0 = tile * kStreamTilePx + warp * 16;
        stage_row_halves(acc, bias, p.silu, staging, lane);
        __syncwarp();  // the staged rows from every lane
        store_row_halves<NB>(p, staging, lane, m0, min(16, M - m0), nullptr);
        stage = stage == STAGES - 1 ? 0 : stage + 1;
    }
    cp_async_wait<0>();
}

// ---- tactics -----------------------------------------------------------------------------------------

enum class Family : uint8_t { kSimt, kMma, kMmaGather, kWgmma, kHalo, kHaloWgmma, kStreamWgmma };

// A split-K tactic runs only where each split gets at least this many k-tiles.
constexpr int kMinTilesPerSplit = 2;

using Launch = void (*)(const ConvParams&, int groups, cudaStream_t);

struct Tactic {
    ElemType type;
    Family family;
    int bm, bn, bk, stages, threads;
    double sm_eff;  // guessed throughput of an SM full of this kernel, relative (for the heuristic)
    const void* kernel;
    int smem;  // dynamic shared memory
    Launch launch;
    int splits;      // > 1: split-K over grid.z (tensor cores) or grid.y (SIMT), with a workspace
    int stride = 1;  // halo tactics: the convolution's stride (1 or 2)
};

// Sets a kernel's dynamic shared memory limit to what its launches ask for, once per device (a
// per-device function attribute): past 48 KB, static and dynamic together, a launch needs it, and
// the tensor-core kernels have a few KB of static shared memory besides. The L1/shared split is
// left to the driver, which sizes shared memory for occupancy and leaves the rest to L1 (the input
// loads of 3x3 filters use it).
void prepare_kernel(const void* kernel, int smem, std::atomic<uint64_t>& done) {
    if (smem <= 0) return;
    int dev = 0;
    KS_CUDA(cudaGetDevice(&dev));
    const uint64_t bit = dev < 64 ? uint64_t{1} << dev : 0;
    if (bit && (done.load(std::memory_order_relaxed) & bit)) return;
    KS_CUDA(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    done.fetch_or(bit, std::memory_order_relaxed);
}

template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, bool kGather, int SPLITS, bool kInt8, bool kWgmma>
void launch_mma(const ConvParams& p, int groups, cudaStream_t stream) {
    KS_CHECK(groups == 1, "conv2d: tensor-core tactics need groups == 1");
    constexpr int kSmem = mma_smem_bytes(BM, BN, STAGES, kInt8, kWgmma);
    auto kernel = conv_mma_kernel<BM, BN, WARPS_M, WARPS_N, STAGES, kGather, (SPLITS > 1), kInt8, kWgmma>;
    static std::atomic<uint64_t> prepared{0};
    prepare_kernel(reinterpret_cast<const void*>(kernel), kSmem, prepared);
    const int64_t blocks = static_cast<int64_t>((p.gemm_m + BM - 1) / BM) * ((p.kg + BN - 1) / BN);
    KS_CHECK(blocks <= INT_MAX, "conv2d: too many output tiles (", blocks, ")");
    dim3 grid(static_cast<unsigned>(blocks), 1, SPLITS);
    launch_kernel(kernel, grid, WARPS_M * WARPS_N * 32, kSmem, stream, p);
}

template <typename T, int TY, int TX, int TM, int TN, int SPLITS>
void launch_simt(const ConvParams& p, int groups, cudaStream_t stream) {
    constexpr int BM = TY * TM, BN = TX * TN;
    const int64_t blocks = static_cast<int64_t>((p.gemm_m + BM - 1) / BM) * ((p.kg + BN - 1) / BN);
    KS_CHECK(blocks <= INT_MAX, "conv2d: too many output tiles (", blocks, ")");
    KS_CHECK(groups <= 65535, "conv2d: at most 65535 groups");
    dim3 grid(static_cast<unsigned>(blocks), SPLITS, static_cast<unsigned>(groups));
    launch_kernel(conv_simt_kernel<T, TY, TX, TM, TN, (SPLITS > 1)>, grid, TY * TX, 0, stream, p);
}

int num_sms();

// The halo kernels' launch: one wave of persistent CTAs over the output's 8x16 tiles (the occupancy
// query once per kernel and process: per_sm and prepared are the caller's statics).
void launch_halo_grid(const void* kernel, int threads, int smem, const ConvParams& p, cudaStream_t stream,
                      std::atomic<uint64_t>& prepared, std::atomic<int>& per_sm, const void* arg = nullptr) {
    prepare_kernel(kernel, smem, prepared);
    const int64_t tiles = static_cast<int64_t>(p.gemm_m / (p.out_h * p.out_w)) * ((p.out_h + kHaloTH - 1) / kHaloTH) *
                          ((p.out_w + kHaloTW - 1) / kHaloTW);
    KS_CHECK(tiles <= INT_MAX, "conv2d: too many halo tiles (", tiles, ")");
    if (per_sm.load(std::memory_order_relaxed) == 0) {
        int v = 0;
        KS_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&v, kernel, threads, smem));
        per_sm.store(std::max(v, 1), std::memory_order_relaxed);
    }
    const int64_t grid =
        std::min<int64_t>(tiles, static_cast<int64_t>(per_sm.load(std::memory_order_relaxed)) * num_sms());
    void* args[] = {const_cast<void*>(arg ? arg : &p)};  // the kernel's one parameter: p, or what embeds it
    launch_kernel(kernel, dim3(static_cast<unsigned>(grid)), dim3(threads), smem, stream, args);
}

template <int C, int K, int STAGES, int S>
void launch_halo(const ConvParams& p, int groups, cudaStream_t stream) {
    KS_CHECK(groups == 1, "conv2d: halo tactics need groups == 1");
    static std::atomic<uint64_t> prepared{0};
    static std::atomic<int> per_sm{0};
    launch_halo_grid(reinterpret_cast<const void*>(conv3x3_halo_kernel<C, K, STAGES, S>), kHaloThreads,
                     halo_smem_bytes(C, K, STAGES, S), p, stream, prepared, per_sm);
}

template <int C, int STAGES>
void launch_pair(const PairParams& pp, cudaStream_t stream) {
    static std::atomic<uint64_t> prepared{0};
    static std::atomic<int> per_sm{0};
    launch_halo_grid(reinterpret_cast<const void*>(conv3x3_pair_halo_kernel<C, STAGES>), kHaloThreads,
                     pair_smem_bytes(C, STAGES), pp.p, stream, prepared, per_sm, &pp);
}
constexpr int kPairStages16 = 3, kPairStages32 = 3;

void launch_stem_conv(const StemConvParams& sp, cudaStream_t stream) {
    static std::atomic<uint64_t> prepared{0};
    static std::atomic<int> per_sm{0};
    launch_halo_grid(reinterpret_cast<const void*>(stem_halo3x3s2_kernel), kHaloThreads, kStemSmemBytes, sp.p, stream,
                     prepared, per_sm, &sp);
}

constexpr int kC2fStages = 2;  // 65 KB: 3 CTAs an SM
void launch_c2f(const C2fParams& cp, cudaStream_t stream) {
    static std::atomic<uint64_t> prepared{0};
    static std::atomic<int> per_sm{0};
    launch_halo_grid(reinterpret_cast<const void*>(c2f_n1_halo_kernel<kC2fStages>), kHaloThreads,
                     c2f_smem_bytes(kC2fStages), cp.p, stream, prepared, per_sm, &cp);
}

template <int C, int K, int STAGES>
void launch_halo_wgmma(const ConvParams& p, int groups, cudaStream_t stream) {
    KS_CHECK(groups == 1, "conv2d: halo tactics need groups == 1");
    static std::atomic<uint64_t> prepared{0};
    static std::atomic<int> per_sm{0};
    static std::atomic<uint64_t> prepared_res{0};
    static std::atomic<int> per_sm_res{0};
    constexpr int kResSmem = halo_wg_smem_bytes(C, K, STAGES) + halo_wg_res_bytes(K);
    static_assert(kResSmem <= 227 * 1024, "the residual rows fit beside the filter and the ring");
    if (p.res && p.res_vec) {
        launch_halo_grid(reinterpret_cast<const void*>(conv3x3_halo_wgmma_kernel<C, K, STAGES, true>), kHaloWgThreads,
                         kResSmem, p, stream, prepared_res, per_sm_res);
    } else {
        launch_halo_grid(reinterpret_cast<const void*>(conv3x3_halo_wgmma_kernel<C, K, STAGES, false>), kHaloWgThreads,
                         halo_wg_smem_bytes(C, K, STAGES), p, stream, prepared, per_sm);
    }
}

// One wave of persistent CTAs over the 128-pixel tiles; the shared memory (so the CTAs an SM) follows
// from C, the occupancy looked up once per C for the process.
template <int K, int STAGES>
void launch_stream(const ConvParams& p, int groups, cudaStream_t stream) {
    KS_CHECK(groups == 1 && p.pointwise && p.cg % 32 == 0 && p.cg >= K && p.kg == K,
             "conv2d: the streamed 1x1 tactic needs a pointwise conv of K = ", K, " and C a multiple of 32 from K");
    const void* kernel = reinterpret_cast<const void*>(conv1x1_stream_wgmma_kernel<K, STAGES>);
    const int smem = stream_smem_bytes(p.cg, K, STAGES);
    KS_CHECK(p.cg <= stream_max_c(K, STAGES), "conv2d: the streamed 1x1 tactic's ring does not fit C = ", p.cg);
    static std::atomic<uint64_t> prepared{0};
    prepare_kernel(kernel, kStreamMaxSmem, prepared);
    static std::atomic<int> per_sm[kStreamMaxSmem / (kStreamTilePx * 64) + 1] = {};  // by C / 32
    std::atomic<int>& fit = per_sm[p.cg / 32];
    if (fit.load(std::memory_order_relaxed) == 0) {
        int v = 0;
        KS_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&v, kernel, kStreamThreads, smem));
        fit.store(std::max(v, 1), std::memory_order_relaxed);
    }
    const int64_t tiles = (static_cast<int64_t>(p.gemm_m) + kStreamTilePx - 1) / kStreamTilePx;
    const int64_t grid =
        std::min<int64_t>(tiles, static_cast<int64_t>(fit.load(std::memory_order_relaxed)) * num_sms());
    void* args[] = {const_cast<ConvParams*>(&p)};
    launch_kernel(kernel, dim3(static_cast<unsigned>(grid)), dim3(kStreamThreads), smem, stream, args);
}

template <int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, bool kGather, int SPLITS = 1, bool kInt8 = false,
          bool kWgmma = false>
Tactic mma_tactic(double sm_eff) {
    return {kInt8 ? ElemType::kI8 : ElemType::kF16,
            kWgmma    ? Family::kWgmma
            : kGather ? Family::kMmaGather
                      : Family::kMma,
            BM,
            BN,
            kMmaBK,
            STAGES,
            WARPS_M * WARPS_N * 32,
            sm_eff,
            reinterpret_cast<const void*>(
                conv_mma_kernel<BM, BN, WARPS_M, WARPS_N, STAGES, kGather, (SPLITS > 1), kInt8, kWgmma>),
            mma_smem_bytes(BM, BN, STAGES, kInt8, kWgmma),
            launch_mma<BM, BN, WARPS_M, WARPS_N, STAGES, kGather, SPLITS, kInt8, kWgmma>,
            SPLITS};
}

template <typename T, int TY, int TX, int TM, int TN, int SPLITS = 1>
Tactic simt_tactic(double sm_eff) {
    return {std::is_same_v<T, float> ? ElemType::kF32 : ElemType::kF16,
            Family::kSimt,
            TY * TM,
            TX * TN,
            kSimtBK,
            2,
            TY * TX,
            sm_eff,
            reinterpret_cast<const void*>(conv_simt_kernel<T, TY, TX, TM, TN, (SPLITS > 1)>),
            0,
            launch_simt<T, TY, TX, TM, TN, SPLITS>,
            SPLITS};
}

// bm: output pixels per tile, bn: output channels (= K), bk: input channels (= C).
template <int C, int K, int STAGES, int S = 1>
Tactic halo_tactic(double sm_eff) {
    return {ElemType::kF16,
            Family::kHalo,
            kHaloTH * kHaloTW,
            K,
            C,
            STAGES,
            kHaloThreads,
            sm_eff,
            reinterpret_cast<const void*>(conv3x3_halo_kernel<C, K, STAGES, S>),
            halo_smem_bytes(C, K, STAGES, S),
            launch_halo<C, K, STAGES, S>,
            1,
            S};
}

template <int C, int K, int STAGES>
Tactic halo_wgmma_tactic(double sm_eff) {
    return {ElemType::kF16,
            Family::kHaloWgmma,
            kHaloTH * kHaloTW,
            K,
            C,
            STAGES,
            kHaloWgThreads,
            sm_eff,
            reinterpret_cast<const void*>(conv3x3_halo_wgmma_kernel<C, K, STAGES, false>),
            halo_wg_smem_bytes(C, K, STAGES),
            launch_halo_wgmma<C, K, STAGES>,
            1,
            1};
}

// bm: pixels a tile, bn: output channels (= K), bk: input channels a k-tile; smem for C = K.
template <int K, int STAGES>
Tactic stream_tactic(double sm_eff) {
    return {ElemType::kF16,
            Family::kStreamWgmma,
            kStreamTilePx,
            K,
            32,
            STAGES,
            kStreamThreads,
            sm_eff,
            reinterpret_cast<const void*>(conv1x1_stream_wgmma_kernel<K, STAGES>),
            stream_smem_bytes(K, K, STAGES),
            launch_stream<K, STAGES>,
            1,
            1};
}

// The order is the tactic id: engines store it, so new tactics go at the end.
const Tactic kTactics[] = {
    // f32, exact.
    simt_tactic<float, 16, 16, 4, 4>(0.8),  // 64x64
    simt_tactic<float, 16, 16, 8, 8>(1.0),  // 128x128
    simt_tactic<float, 64, 4, 4, 4>(0.5),   // 256x16: few output channels, many pixels
    simt_tactic<float, 8, 8, 4, 4>(0.4),    // 32x32: tiny layers
    // f16 fallback for grouped convs.
    simt_tactic<__half, 16, 16, 4, 4>(0.8),  // 64x64
    simt_tactic<__half, 16, 16, 8, 8>(1.0),  // 128x128
    simt_tactic<__half, 64, 4, 4, 4>(0.5),   // 256x16
    simt_tactic<__half, 8, 8, 4, 4>(0.4),    // 32x32
    // f16 tensor cores, vectorised loads.
    mma_tactic<128, 128, 2, 4, 3, false>(1.0), mma_tactic<128, 64, 2, 2, 3, false>(0.92),
    mma_tactic<64, 128, 2, 2, 3, false>(0.9), mma_tactic<64, 64, 2, 2, 3, false>(0.8),
    mma_tactic<128, 32, 4, 1, 3, false>(0.7), mma_tactic<64, 32, 2, 2, 3, false>(0.6),
    mma_tactic<128, 16, 4, 1, 3, false>(0.45),
    // f16 tensor cores, gathered loads (any channel count or alignment, groups == 1).
    mma_tactic<128, 64, 2, 2, 2, true>(0.6), mma_tactic<128, 32, 4, 1, 2, true>(0.45),
    mma_tactic<128, 16, 4, 1, 2, true>(0.3),
    // Split-K (grid.z = splits, float32 workspace): small M with long K, i.e. batch-1 deep layers,
    // where the tiles alone leave most SMs idle.
    mma_tactic<64, 64, 2, 2, 3, false, 2>(0.8),   // 18
    mma_tactic<64, 64, 2, 2, 3, false, 4>(0.8),   // 19
    mma_tactic<64, 64, 2, 2, 3, false, 8>(0.8),   // 20
    mma_tactic<64, 64, 2, 2, 3, false, 16>(0.8),  // 21
    mma_tactic<64, 32, 2, 2, 3, false, 4>(0.6),   // 22
    mma_tactic<64, 32, 2, 2, 3, false, 8>(0.6),   // 23
    mma_tactic<64, 32, 2, 2, 3, false, 16>(0.6),  // 24
    // f32, exact (float32 sums in another order), split-K.
    simt_tactic<float, 16, 16, 4, 4, 4>(0.8),  // 25: 64x64
    simt_tactic<float, 16, 16, 4, 4, 8>(0.8),  // 26: 64x64
    // INT8 on f16 tensors (mma.sync m16n8k32 s8), then its split-K variants.
    mma_tactic<128, 128, 2, 4, 3, false, 1, true>(1.0),  // 27
    mma_tactic<128, 64, 2, 2, 3, false, 1, true>(0.92),  // 28
    mma_tactic<64, 128, 2, 2, 3, false, 1, true>(0.9),   // 29
    mma_tactic<64, 64, 2, 2, 3, false, 1, true>(0.8),    // 30
    mma_tactic<128, 32, 4, 1, 3, false, 1, true>(0.7),   // 31
    mma_tactic<64, 32, 2, 2, 3, false, 1, true>(0.6),    // 32
    mma_tactic<64, 64, 2, 2, 3, false, 4, true>(0.8),    // 33
    mma_tactic<64, 64, 2, 2, 3, false, 8, true>(0.8),    // 34
    mma_tactic<64, 32, 2, 2, 3, false, 8, true>(0.6),    // 35
    // f16 tensor cores: 80 output channels whole (the head's class convs), tall tiles for layers with
    // many pixels and few channels, and a fourth stage for long reductions.
    mma_tactic<64, 80, 2, 1, 3, false>(0.7),    // 36
    mma_tactic<128, 80, 4, 1, 3, false>(0.85),  // 37
    mma_tactic<256, 32, 8, 1, 3, false>(0.75),  // 38
    mma_tactic<256, 64, 4, 2, 3, false>(0.95),  // 39
    mma_tactic<128, 128, 2, 4, 4, false>(1.0),  // 40
    mma_tactic<128, 64, 2, 2, 4, false>(0.92),  // 41
    // Tall tiles for 16 output channels (C2f bottlenecks at 160x160), and split-K for the head's
    // 80-channel convs at batch 1 (80x80 has 50 tiles of 128 rows for 132 SMs).
    mma_tactic<256, 16, 8, 1, 3, false>(0.4),    // 42
    mma_tactic<64, 80, 2, 1, 3, false, 2>(0.7),  // 43
    mma_tactic<64, 80, 2, 1, 3, false, 4>(0.7),  // 44
    // f16 warpgroup MMA (sm_90a): the vectorised ring read by wgmma, one or two warpgroups of 64 rows,
    // at least 4 stages (one k-tile's MMAs stay in flight, so loads run STAGES - 2 ahead).
    mma_tactic<128, 64, 8, 1, 4, false, 1, false, true>(1.0),   // 45
    mma_tactic<128, 80, 8, 1, 4, false, 1, false, true>(1.0),   // 46
    mma_tactic<128, 128, 8, 1, 4, false, 1, false, true>(1.0),  // 47
    mma_tactic<64, 80, 4, 1, 4, false, 1, false, true>(0.8),    // 48
    mma_tactic<64, 64, 4, 1, 4, false, 1, false, true>(0.8),    // 49
    mma_tactic<128, 80, 8, 1, 5, false, 1, false, true>(1.0),   // 50
    mma_tactic<64, 128, 4, 1, 4, false, 1, false, true>(0.8),   // 51
    mma_tactic<64, 32, 4, 1, 4, false, 1, false, true>(0.6),    // 52
    mma_tactic<128, 32, 8, 1, 4, false, 1, false, true>(0.7),   // 53
    // 3x3 stride-1 convs on halo tiles (YOLOv8's C2f bottlenecks): C -> K channels exactly.
    // Rings of 2-4 tiles (smem a CTA: c16 s4 49 KB, c32 s2/s3 68/87 KB, c64 s2 171 KB).
    halo_tactic<16, 16, 4>(1.0),  // 54
    halo_tactic<32, 32, 2>(1.0),  // 55
    halo_tactic<64, 64, 2>(1.0),  // 56: one CTA an SM (the filter is 73 KB)
    halo_tactic<32, 32, 3>(1.0),  // 57
    halo_tactic<16, 16, 3>(1.0),  // 58
    // Stride 2 (YOLOv8's downsampling 16 -> 32 at 320x320 and 32 -> 64 at 160x160): 17x33-pixel halos.
    halo_tactic<16, 32, 3, 2>(1.0),  // 59
    halo_tactic<32, 64, 2, 2>(1.0),  // 60
    halo_tactic<16, 32, 2, 2>(1.0),  // 61
    // The detect head's 3x3 convs on halo tiles with wgmma (sm_90a), one CTA of 2 warpgroups an SM
    // (smem: 64->64 s3 158 KB, s4 181 KB; 64->80 s3 180 KB; 80->80 s2 194 KB).
    halo_wgmma_tactic<64, 64, 3>(1.0),  // 62
    halo_wgmma_tactic<64, 80, 3>(1.0),  // 63
    halo_wgmma_tactic<80, 80, 2>(1.0),  // 64
    halo_wgmma_tactic<64, 64, 4>(1.0),  // 65
    // Split-K on wgmma (sm_90a) for batch 1's long reductions on few tiles (the head's 40x40 128 ->
    // 64/80 3x3 convs: 50-75 CTAs of 18 k-tiles for 132 SMs), as tactics 18-24 are on mma.sync.
    mma_tactic<64, 32, 4, 1, 4, false, 2, false, true>(0.6),  // 66
    mma_tactic<64, 32, 4, 1, 4, false, 4, false, true>(0.6),  // 67
    mma_tactic<64, 32, 4, 1, 4, false, 8, false, true>(0.6),  // 68
    mma_tactic<64, 64, 4, 1, 4, false, 2, false, true>(0.8),  // 69
    mma_tactic<64, 64, 4, 1, 4, false, 4, false, true>(0.8),  // 70
    mma_tactic<64, 80, 4, 1, 4, false, 2, false, true>(0.8),  // 71
    mma_tactic<64, 80, 4, 1, 4, false, 4, false, true>(0.8),  // 72
    // 32-row mma.sync tiles: twice the CTAs of 64-row ones where few output pixels leave SMs idle
    // (batch 1's 20x20 maps: 400 rows are 7 tiles of 64, 13 of 32).
    mma_tactic<32, 32, 2, 2, 3, false>(0.45),     // 73
    mma_tactic<32, 64, 2, 2, 3, false>(0.5),      // 74
    mma_tactic<32, 32, 2, 2, 3, false, 4>(0.45),  // 75
    // 1x1 convs as a stream of 128-pixel tiles through persistent CTAs with the filter resident
    // (sm_90a): K = 64 or 128 output channels, C a multiple of 32 from K up to what the ring leaves
    // room for (K 64: C <= 192 with 4 stages, 224 with 3; K 128: C <= 192 with 3, 288 with 2).
    stream_tactic<64, 4>(1.0),   // 76
    stream_tactic<64, 3>(1.0),   // 77
    stream_tactic<128, 3>(1.0),  // 78
    stream_tactic<128, 2>(1.0),  // 79
};
constexpr int kNumTactics = static_cast<int>(std::size(kTactics));

void check_shape(const ConvShape& s) {
    KS_CHECK(s.k > 0 && s.c > 0 && s.groups > 0, "conv2d: channels and groups must be positive (k=", s.k, " c=", s.c,
             " groups=", s.groups, ")");
    KS_CHECK(s.c % s.groups == 0 && s.k % s.groups == 0, "conv2d: groups (", s.groups, ") must divide c (", s.c,
             ") and k (", s.k, ")");
    KS_CHECK(s.kh > 0 && s.kw > 0 && s.stride_h > 0 && s.stride_w > 0 && s.dil_h > 0 && s.dil_w > 0,
             "conv2d: kernel size, strides and dilations must be positive");
    KS_CHECK(s.pad_top >= 0 && s.pad_left >= 0, "conv2d: negative padding");
    KS_CHECK(static_cast<int64_t>(s.kh) * s.kw * (s.c / s.groups) < (int64_t{1} << 30), "conv2d: filter too large");
}

int64_t gemm_k_of(const ConvShape& s) { return static_cast<int64_t>(s.kh) * s.kw * (s.c / s.groups); }

// The vectorised tensor-core tactics load whole 16-byte runs of one tap (channels % 8), keep one
// bit per filter tap for each output row (a 32-bit mask) and address the weights with 32-bit offsets.
bool vec_shape_ok(const ConvShape& s) {
    const int64_t taps = static_cast<int64_t>(s.kh) * s.kw;
    return s.groups == 1 && s.c % 8 == 0 && taps <= 32 && s.k * taps * s.c * 2 < (int64_t{1} << 32);
}

// wgmma exists on sm_90a only (the library's other code, compute_90 PTX, runs on later chips too).
// The current device's answer, looked up once per process (engines are built for one architecture).
bool device_has_wgmma() {
    static const bool has = [] {
        int dev = 0, major = 0, minor = 0;
        if (cudaGetDevice(&dev) != cudaSuccess) return false;
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
        if (cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) return false;
        return major == 9 && minor == 0;
    }();
    return has;
}

// The families whose A loads are 16-byte copies of x (x 16-byte aligned; vec_shape_ok for the GEMMs).
bool loads_vectorised(Family f) {
    return f == Family::kMma || f == Family::kWgmma || f == Family::kHalo || f == Family::kHaloWgmma ||
           f == Family::kStreamWgmma;
}

bool tactic_fits(const Tactic& t, const ConvShape& s, ElemType type) {
    if (t.type != type) return false;
    if (t.splits > 1) {
        // Every split gets at least kMinTilesPerSplit k-tiles; shorter reductions gain nothing.
        if (gemm_k_of(s) < static_cast<int64_t>(t.splits) * kMinTilesPerSplit * t.bk) return false;
        if (t.family == Family::kWgmma && !device_has_wgmma()) return false;
        if (loads_vectorised(t.family)) return vec_shape_ok(s);
    }
    switch (t.family) {
        case Family::kSimt:
            return true;
        case Family::kMma:
            return vec_shape_ok(s);
        case Family::kWgmma:
            return vec_shape_ok(s) && device_has_wgmma();
        case Family::kHalo:
        case Family::kHaloWgmma:
            if (t.family == Family::kHaloWgmma && !device_has_wgmma()) return false;
            return s.groups == 1 && s.kh == 3 && s.kw == 3 && s.stride_h == t.stride && s.stride_w == t.stride &&
                   s.dil_h == 1 && s.dil_w == 1 && s.pad_top == 1 && s.pad_left == 1 && s.c == t.bk && s.k == t.bn;
        case Family::kMmaGather:
            return s.groups == 1;
        case Family::kStreamWgmma:
            return device_has_wgmma() && s.groups == 1 && s.kh == 1 && s.kw == 1 && s.stride_h == 1 &&
                   s.stride_w == 1 && s.pad_top == 0 && s.pad_left == 0 && s.k == t.bn && s.c % 32 == 0 && s.c >= s.k &&
                   s.c <= stream_max_c(s.k, t.stages);
    }
    return false;
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Device facts for the heuristic, looked up once per tactic on the current device.
int num_sms() {
    static std::atomic<int> cached{0};
    int v = cached.load(std::memory_order_relaxed);
    if (v == 0) {
        int dev = 0;
        KS_CUDA(cudaGetDevice(&dev));
        KS_CUDA(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev));
        cached.store(v, std::memory_order_relaxed);
    }
    return v;
}

int ctas_per_sm(int id) {
    static std::atomic<int> cached[kNumTactics] = {};
    int v = cached[id].load(std::memory_order_relaxed);
    if (v == 0) {
        const Tactic& t = kTactics[id];
        // The occupancy query must see the same shared-memory opt-in as the launch.
        static std::atomic<uint64_t> prepared[kNumTactics] = {};
        prepare_kernel(t.kernel, t.smem, prepared[id]);
        KS_CUDA(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&v, t.kernel, t.threads, t.smem));
        v = std::max(v, 1);
        cached[id].store(v, std::memory_order_relaxed);
    }
    return v;
}

// A rough time model: tiles run in waves over the SMs; a wave lasts as long as one SM needs for its
// CTAs, and an SM with fewer than 8 warps resident does not reach the family's full rate.
double estimate(int id, int64_t m, int64_t n_per_group, int groups, int64_t k) {
    const Tactic& t = kTactics[id];
    const int64_t tiles = ((m + t.bm - 1) / t.bm) * ((n_per_group + t.bn - 1) / t.bn) * groups;
    const int64_t sms = num_sms();
    const int64_t occ = std::min<int64_t>(ctas_per_sm(id), (tiles + sms - 1) / sms);
    const int64_t waves = (tiles + sms * occ - 1) / (sms * occ);
    const double warps = static_cast<double>(occ * t.threads / 32);
    const double rate = t.sm_eff * std::min(1.0, warps / 8.0);
    const double k_tiles = static_cast<double>((k + t.bk - 1) / t.bk);
    return static_cast<double>(waves) * static_cast<double>(occ) * t.bm * t.bn * k_tiles / rate;
}

int pick_tactic(const ConvShape& s, ElemType type, int64_t m, bool vec_ok) {
    Family want = Family::kSimt;
    if (type == ElemType::kF16 && s.groups == 1) want = vec_ok && vec_shape_ok(s) ? Family::kMma : Family::kMmaGather;
    if (type == ElemType::kI8) {
        KS_CHECK(vec_ok,
                 "conv2d: INT8 needs x 16-byte aligned, under 4 GiB, with a pixel stride that is a multiple of 8");
        want = Family::kMma;
    }
    const int64_t k = gemm_k_of(s);
    int best = -1;
    double best_cost = 0;
    for (int i = 0; i < kNumTactics; ++i) {
        // The heuristic has no workspace to give, so it never picks a split-K tactic.
        if (kTactics[i].family != want || kTactics[i].splits > 1 || !tactic_fits(kTactics[i], s, type)) continue;
        const double cost = estimate(i, m, s.k / s.groups, s.groups, k);
        if (best < 0 || cost < best_cost) {
            best = i;
            best_cost = cost;
        }
    }
    KS_CHECK(best >= 0, "conv2d: no tactic for this convolution");
    return best;
}

void check_tensor(const NhwcTensor& t, ElemType type, const char* what) {
    KS_CHECK(t.data != nullptr, "conv2d: ", what, " has no data");
    KS_CHECK(t.type == type, "conv2d: ", what, " has another element type than x");
    KS_CHECK(t.n >= 0 && t.h > 0 && t.w > 0 && t.c > 0, "conv2d: ", what, " has an empty or negative shape [", t.n,
             ", ", t.h, ", ", t.w, ", ", t.c, "]");
    KS_CHECK(t.pixel_stride >= t.c, "conv2d: ", what, " pixel stride ", t.pixel_stride, " < channels ", t.c);
    KS_CHECK(static_cast<int64_t>(t.n) * t.h * t.w < INT_MAX, "conv2d: ", what, " has too many pixels");
    KS_CHECK(reinterpret_cast<uintptr_t>(t.data) % elem_size(type) == 0, "conv2d: ", what, " is misaligned");
}

}  // namespace

std::vector<uint8_t> pack_conv_weights(const float* oihw, const ConvShape& s, ElemType type,
                                       std::vector<float>* channel_scales) {
    check_shape(s);
    KS_CHECK(oihw != nullptr, "pack_conv_weights: no weights");
    const int64_t cg = s.c / s.groups, taps = static_cast<int64_t>(s.kh) * s.kw;
    if (type == ElemType::kI8) {
        // Rows of w_ld = gemm_k rounded up to 32 bytes, zero-filled; k permuted by s8_slot_to_k.
        KS_CHECK(channel_scales != nullptr, "pack_conv_weights: int8 packing returns the channel scales");
        KS_CHECK(s.groups == 1, "pack_conv_weights: int8 convolutions need groups == 1");
        const int64_t gemm_k = taps * cg, ld = (gemm_k + kMmaBK - 1) / kMmaBK * kMmaBK;
        std::vector<uint8_t> out(static_cast<size_t>(s.k * ld), 0);
        channel_scales->assign(static_cast<size_t>(s.k), 1.f);
        for (int64_t o = 0; o < s.k; ++o) {
            float amax = 0.f;
            for (int64_t j = 0; j < gemm_k; ++j) amax = std::max(amax, std::abs(oihw[o * gemm_k + j]));
            const float scale = amax > 0 ? amax / 127.f : 1.f;
            (*channel_scales)[static_cast<size_t>(o)] = scale;
            for (int64_t slot = 0; slot < ld; ++slot) {
                const int64_t k = s8_slot_to_k(static_cast<int>(slot));  // GEMM k = tap * cg + channel
                if (k >= gemm_k) continue;
                const float v = oihw[(o * cg + k % cg) * taps + k / cg];
                const float q = std::clamp(std::nearbyint(v / scale), -127.f, 127.f);
                out[static_cast<size_t>(o * ld + slot)] = static_cast<uint8_t>(static_cast<int8_t>(q));
            }
        }
        return out;
    }
    KS_CHECK(type == ElemType::kF32 || type == ElemType::kF16, "pack_conv_weights: unknown element type");
    const int64_t count = s.k * taps * cg;
    std::vector<uint8_t> out(static_cast<size_t>(count * elem_size(type)));
    for (int64_t o = 0; o < s.k; ++o)
        for (int64_t i = 0; i < cg; ++i)
            for (int64_t t = 0; t < taps; ++t) {
                const float v = oihw[(o * cg + i) * taps + t];
                const int64_t dst = (o * taps + t) * cg + i;
                if (type == ElemType::kF32) {
                    std::memcpy(out.data() + dst * 4, &v, 4);
                } else {
                    const uint16_t h = float_to_half(v);
                    std::memcpy(out.data() + dst * 2, &h, 2);
                }
            }
    return out;
}

int conv2d_tactic_count() { return kNumTactics; }

bool conv2d_tactic_supports(int tactic, const ConvShape& s, ElemType type) {
    if (tactic < 0 || tactic >= kNumTactics) return false;
    return tactic_fits(kTactics[tactic], s, type);
}

std::string conv2d_tactic_name(int tactic, const ConvShape&, ElemType) {
    KS_CHECK(tactic >= 0 && tactic < kNumTactics, "conv2d: no tactic ", tactic, " (there are ", kNumTactics, ")");
    const Tactic& t = kTactics[tactic];
    std::ostringstream name;
    name << "conv2d_nhwc_" << (t.type == ElemType::kF32 ? "f32" : "f16");
    switch (t.family) {
        case Family::kSimt:
            name << "_simt";
            break;
        case Family::kMma:
            name << (t.type == ElemType::kI8 ? "_s8mma_m16n8k32" : "_mma_m16n8k16");
            break;
        case Family::kWgmma:
            name << "_wgmma_m64n" << t.bn << "k16";
            break;
        case Family::kHalo:
            name << "_halo3x3" << (t.stride == 2 ? "s2" : "") << "_mma_m16n8k16_c" << t.bk << "_k" << t.bn << "_"
                 << kHaloTH << "x" << kHaloTW << "_s" << t.stages;
            return name.str();
        case Family::kHaloWgmma:
            name << "_halo3x3_wgmma_m64n" << t.bn << "k16_c" << t.bk << "_k" << t.bn << "_" << kHaloTH << "x" << kHaloTW
                 << "_s" << t.stages;
            return name.str();
        case Family::kMmaGather:
            name << "_mma_m16n8k16_gather";
            break;
        case Family::kStreamWgmma:
            name << "_1x1_stream_wgmma_m64n" << t.bn << "k16_" << kStreamTilePx << "px_s" << t.stages;
            return name.str();
    }
    if (t.splits > 1) name << "_splitk" << t.splits;
    name << "_" << t.bm << "x" << t.bn << "x" << t.bk << "_s" << t.stages;
    return name.str();
}

size_t conv2d_workspace_bytes(int tactic, const ConvShape& s, ElemType type, int n, int out_h, int out_w) {
    KS_CHECK(tactic >= 0 && tactic < kNumTactics, "conv2d: no tactic ", tactic, " (there are ", kNumTactics, ")");
    const Tactic& t = kTactics[tactic];
    if (t.splits <= 1 || t.type != type) return 0;
    check_shape(s);
    KS_CHECK(n >= 0 && out_h >= 0 && out_w >= 0, "conv2d: negative output size");
    const int64_t m = static_cast<int64_t>(n) * out_h * out_w;
    const int64_t tiles = (m + t.bm - 1) / t.bm * ((s.k / s.groups + t.bn - 1) / t.bn) * s.groups;
    // Partial-sum tiles, then one counter per tile, rounded up to 16 bytes.
    const int64_t bytes = tiles * t.bm * t.bn * 4 + tiles * 4;
    return static_cast<size_t>((bytes + 15) / 16 * 16);
}

namespace {

// conv2d_nhwc, and with `up` conv2d_upsampled_concat_nhwc (its arguments checked by the caller).
void run_conv2d(const NhwcTensor& x, const NhwcTensor* up, const void* packed_weights, const float* bias,
                const ConvShape& s, bool silu, const NhwcTensor* residual, const NhwcTensor& y, int tactic,
                cudaStream_t stream, void* workspace, const ConvInt8* int8) {
    check_shape(s);
    // The tensors' type, and the GEMM's (the tactics' key).
    const ElemType io = x.type, type = int8 ? ElemType::kI8 : x.type;
    KS_CHECK(io == ElemType::kF32 || io == ElemType::kF16, "conv2d: unknown element type");
    KS_CHECK(!int8 || io == ElemType::kF16, "conv2d: INT8 convolutions read and write f16 tensors");
    KS_CHECK(!int8 || (std::isfinite(int8->input_scale) && int8->input_scale > 0 && int8->dequant),
             "conv2d: an INT8 convolution needs a positive input scale and dequantisation factors");
    check_tensor(x, io, "x");
    check_tensor(y, io, "y");
    KS_CHECK(packed_weights != nullptr && bias != nullptr, "conv2d: weights and bias are required");
    KS_CHECK(aligned16(packed_weights), "conv2d: packed weights must be 16-byte aligned");
    KS_CHECK(x.c == s.c, "conv2d: x has ", x.c, " channels, the convolution expects ", s.c);
    KS_CHECK(y.c == s.k, "conv2d: y has ", y.c, " channels, the convolution produces ", s.k);
    KS_CHECK(y.n == x.n, "conv2d: batch of y (", y.n, ") differs from x (", x.n, ")");
    // The bottom/right padding is whatever makes y's size. It must be >= 0 for some value in its
    // range [pb, pb + stride), and (a sanity bound that catches a wrong y) at most one window more
    // than the top/left padding.
    const int64_t ext_h = static_cast<int64_t>(s.dil_h) * (s.kh - 1) + 1;
    const int64_t ext_w = static_cast<int64_t>(s.dil_w) * (s.kw - 1) + 1;
    const int64_t pb = (static_cast<int64_t>(y.h) - 1) * s.stride_h + ext_h - x.h - s.pad_top;
    const int64_t pr = (static_cast<int64_t>(y.w) - 1) * s.stride_w + ext_w - x.w - s.pad_left;
    KS_CHECK(pb > -s.stride_h && pb <= s.pad_top + ext_h, "conv2d: output height ", y.h,
             " does not follow from input height ", x.h, ", pad_top ", s.pad_top, ", kernel ", s.kh, ", stride ",
             s.stride_h, ", dilation ", s.dil_h);
    KS_CHECK(pr > -s.stride_w && pr <= s.pad_left + ext_w, "conv2d: output width ", y.w,
             " does not follow from input width ", x.w, ", pad_left ", s.pad_left, ", kernel ", s.kw, ", stride ",
             s.stride_w, ", dilation ", s.dil_w);
    if (residual) {
        check_tensor(*residual, io, "residual");
        KS_CHECK(residual->n == y.n && residual->h == y.h && residual->w == y.w && residual->c == y.c,
                 "conv2d: residual shape differs from y");
    }

    const int64_t m = static_cast<int64_t>(y.n) * y.h * y.w;
    KS_CHECK(m < INT_MAX, "conv2d: too many output pixels (", m, ")");
    if (m == 0 && tactic < 0) return;  // an empty batch: nothing to pick a tactic for
    // The vectorised loads need 16-byte runs of a pixel and address x with 32-bit byte offsets.
    const int64_t x_bytes = (static_cast<int64_t>(x.n) * x.h * x.w - 1) * x.pixel_stride * 2 + x.c * 2;
    const bool x_vec = aligned16(x.data) && x.pixel_stride % 8 == 0 && x_bytes < (int64_t{1} << 32);
    const int id = tactic < 0 ? pick_tactic(s, type, m, x_vec) : tactic;
    KS_CHECK(id < kNumTactics, "conv2d: no tactic ", id, " (there are ", kNumTactics, ")");
    const Tactic& t = kTactics[id];
    KS_CHECK(tactic_fits(t, s, type), "conv2d: tactic ", conv2d_tactic_name(id, s, type),
             " does not support this convolution (c=", s.c, " k=", s.k, " groups=", s.groups, ")");
    KS_CHECK(!loads_vectorised(t.family) || x_vec, "conv2d: tactic ", conv2d_tactic_name(id, s, type),
             " needs x 16-byte aligned, under 4 GiB, with a pixel stride that is a multiple of 8 (got stride ",
             x.pixel_stride, ")");
    KS_CHECK(t.splits <= 1 || workspace != nullptr, "conv2d: tactic ", conv2d_tactic_name(id, s, type),
             " needs a workspace (conv2d_workspace_bytes)");
    KS_CHECK(t.splits <= 1 || aligned16(workspace), "conv2d: the split-K workspace must be 16-byte aligned");
    if (m == 0) return;

    ConvParams p;
    p.x = x.data;
    p.wgt = packed_weights;
    p.bias = bias;
    p.res = residual ? residual->data : nullptr;
    p.y = y.data;
    p.in_h = x.h;
    p.in_w = x.w;
    p.x_ps = x.pixel_stride;
    p.y_ps = y.pixel_stride;
    p.res_ps = residual ? residual->pixel_stride : 0;
    p.out_h = y.h;
    p.out_w = y.w;
    p.kh = s.kh;
    p.kw = s.kw;
    p.sh = s.stride_h;
    p.sw = s.stride_w;
    p.pt = s.pad_top;
    p.pl = s.pad_left;
    p.dh = s.dil_h;
    p.dw = s.dil_w;
    p.cg = s.c / s.groups;
    p.kg = s.k / s.groups;
    p.gemm_k = s.kh * s.kw * p.cg;
    p.gemm_m = static_cast<int>(m);
    p.div_ohw = FastDivmod(std::max(1, y.h * y.w));
    p.div_ow = FastDivmod(std::max(1, y.w));
    p.silu = silu ? 1 : 0;
    p.y_vec = aligned16(y.data) && y.pixel_stride % 8 == 0;
    p.res_vec = residual && aligned16(residual->data) && residual->pixel_stride % 8 == 0;
    p.bias_vec = aligned16(bias);
    p.pointwise = s.kh == 1 && s.kw == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_top == 0 && s.pad_left == 0 &&
                  x.h == y.h && x.w == y.w;
    p.a_via_l1 = s.kh * s.kw > 1 ? 1 : 0;
    p.ws = t.splits > 1 ? static_cast<float*>(workspace) : nullptr;
    if (int8) {
        p.inv_scale = 1.f / int8->input_scale;
        p.dequant = int8->dequant;
        p.w_ld = (p.gemm_k + kMmaBK - 1) / kMmaBK * kMmaBK;
    }
    if (up) {  // both maps as offsets from the lower address (conv2d_upsampled_concat_supported: < 4 GiB apart)
        const auto *xa = static_cast<const uint8_t*>(x.data), *ua = static_cast<const uint8_t*>(up->data);
        const uint8_t* base = std::min(xa, ua);
        p.x = base;
        p.x_off = (xa - base) / 2;
        p.up_off = (ua - base) / 2;
        p.up_ps = up->pixel_stride;
        p.up_c = up->c;
    }
    t.launch(p, s.groups, stream);
}

// The byte range a tensor's pixels span.
std::pair<uintptr_t, uintptr_t> byte_range(const NhwcTensor& t) {
    const auto begin = reinterpret_cast<uintptr_t>(t.data);
    return {begin, begin + static_cast<uintptr_t>(((int64_t{t.n} * t.h * t.w - 1) * t.pixel_stride + t.c) *
                                                  static_cast<int64_t>(elem_size(t.type)))};
}

}  // namespace

void conv2d_nhwc(const NhwcTensor& x, const void* packed_weights, const float* bias, const ConvShape& s, bool silu,
                 const NhwcTensor* residual, const NhwcTensor& y, int tactic, cudaStream_t stream, void* workspace,
                 const ConvInt8* int8) {
    run_conv2d(x, nullptr, packed_weights, bias, s, silu, residual, y, tactic, stream, workspace, int8);
}

bool conv2d_tactic_reads_upsampled(int tactic) {
    if (tactic < 0 || tactic >= kNumTactics) return false;
    const Tactic& t = kTactics[tactic];
    return t.type == ElemType::kF16 && (t.family == Family::kMma || t.family == Family::kWgmma);
}

bool conv2d_upsampled_concat_supported(int tactic, const ConvShape& s, const NhwcTensor& up, const NhwcTensor& x) {
    if (!conv2d_tactic_reads_upsampled(tactic)) return false;
    const Tactic& t = kTactics[tactic];
    auto vec = [](const NhwcTensor& v) {
        return v.type == ElemType::kF16 && aligned16(v.data) && v.pixel_stride % 8 == 0 && v.n >= 1 && v.h >= 1 &&
               v.w >= 1;
    };
    if (!tactic_fits(t, s, ElemType::kF16) || !vec(up) || !vec(x) || s.kh != 1 || s.kw != 1 || s.stride_h != 1 ||
        s.stride_w != 1 || s.pad_top != 0 || s.pad_left != 0 || s.groups != 1 || x.c != s.c || up.c <= 0 ||
        up.c % kMmaBK != 0 || up.c >= s.c || up.n != x.n || x.h != 2 * up.h || x.w != 2 * up.w)
        return false;
    const auto [xb, xe] = byte_range(x);
    const auto [ub, ue] = byte_range(up);
    return std::max(xe, ue) - std::min(xb, ub) < (uintptr_t{1} << 32);
}

void conv2d_upsampled_concat_nhwc(const NhwcTensor& up, const NhwcTensor& x, const void* packed_weights,
                                  const float* bias, const ConvShape& s, bool silu, const NhwcTensor& y, int tactic,
                                  cudaStream_t stream, void* workspace) {
    KS_CHECK(conv2d_upsampled_concat_supported(tactic, s, up, x),
             "conv2d_upsampled_concat: needs a 1x1 f16 conv on a tensor-core tactic, up of a multiple of ", kMmaBK,
             " channels (fewer than x's) at half x's height and width, both with 16-byte aligned pixels and within "
             "4 GiB of each other (up ",
             up.c, "x", up.h, "x", up.w, ", x ", x.c, "x", x.h, "x", x.w, ", tactic ", tactic, ")");
    run_conv2d(x, &up, packed_weights, bias, s, silu, nullptr, y, tactic, stream, workspace, nullptr);
}

bool conv3x3_pair_supported(int c, const NhwcTensor& x, const NhwcTensor& y) {
    auto aligned = [](const NhwcTensor& t) { return aligned16(t.data) && t.pixel_stride % 8 == 0; };
    return (c == 16 || c == 32) && x.type == ElemType::kF16 && y.type == ElemType::kF16 && x.c == c && y.c == c &&
           aligned(x) && aligned(y);
}

std::string conv3x3_pair_kernel_name(int c) {
    return "conv3x3_pair_halo_mma_m16n8k16_c" + std::to_string(c) + "_8x16_s" +
           std::to_string(c == 16 ? kPairStages16 : kPairStages32) + "_silu";
}

void conv3x3_pair_nhwc(const NhwcTensor& x, const void* w1, const float* b1, const void* w2, const float* b2,
                       bool residual, const NhwcTensor& y, cudaStream_t stream) {
    check_tensor(x, ElemType::kF16, "x");
    check_tensor(y, ElemType::kF16, "y");
    KS_CHECK(conv3x3_pair_supported(x.c, x, y),
             "conv3x3_pair: needs f16 x and y of 16 or 32 channels alike, "
             "16-byte aligned pixels (x has ",
             x.c, ", y ", y.c, ")");
    KS_CHECK(x.n == y.n && x.h == y.h && x.w == y.w, "conv3x3_pair: y's shape differs from x's");
    KS_CHECK(w1 && w2 && b1 && b2 && aligned16(w1) && aligned16(w2),
             "conv3x3_pair: both convs' weights (16-byte "
             "aligned) and biases are required");
    // y is written while other CTAs read x's windows: in one buffer they must be disjoint channels.
    const int64_t off = (static_cast<const char*>(y.data) - static_cast<const char*>(x.data)) / 2;
    KS_CHECK(x.pixel_stride != y.pixel_stride || off >= x.c || -off >= y.c, "conv3x3_pair: y overlaps x");
    const int64_t m = static_cast<int64_t>(y.n) * y.h * y.w;
    KS_CHECK(m < INT_MAX && (m - 1) * x.pixel_stride * 2 + x.c * 2 < (int64_t{1} << 32),
             "conv3x3_pair: x too large (32-bit offsets)");
    if (m == 0) return;
    PairParams pp;
    ConvParams& p = pp.p;
    p.x = x.data;
    p.wgt = w2;
    p.bias = b2;
    p.y = y.data;
    p.in_h = p.out_h = y.h;
    p.in_w = p.out_w = y.w;
    p.x_ps = x.pixel_stride;
    p.y_ps = y.pixel_stride;
    p.kh = p.kw = 3;
    p.pt = p.pl = 1;
    p.cg = p.kg = x.c;
    p.gemm_k = 9 * x.c;
    p.gemm_m = static_cast<int>(m);
    p.silu = 1;
    p.y_vec = 1;
    pp.wgt1 = w1;
    pp.bias1 = b1;
    pp.residual = residual ? 1 : 0;
    if (x.c == 16) {
        launch_pair<16, kPairStages16>(pp, stream);
    } else {
        launch_pair<32, kPairStages32>(pp, stream);
    }
}

bool stem_conv3x3s2_supported(const ConvShape& stem, const ConvShape& conv, int image_w, const NhwcTensor& y) {
    auto stride2_pad1 = [](const ConvShape& s) {
        return s.kh == 3 && s.kw == 3 && s.stride_h == 2 && s.stride_w == 2 && s.pad_top == 1 && s.pad_left == 1 &&
               s.dil_h == 1 && s.dil_w == 1 && s.groups == 1;
    };
    return stride2_pad1(stem) && stride2_pad1(conv) && stem.c == kStemC && stem.k == kStemK && conv.c == kStemK &&
           conv.k == kStemConvK && image_w % 4 == 0 && y.type == ElemType::kF16 && y.c == kStemConvK &&
           aligned16(y.data) && y.pixel_stride % 8 == 0;
}

std::string stem_conv3x3s2_kernel_name() {
    return "stem_halo3x3s2_mma_m16n8k16_k" + std::to_string(kStemK) + "_k" + std::to_string(kStemConvK) + "_8x16_silu";
}

void stem_conv3x3s2_nhwc(const float* x, int h, int w, const float* stem_weights, const float* stem_bias,
                         const ConvShape& stem, const void* conv_weights, const float* conv_bias, const ConvShape& conv,
                         const NhwcTensor& y, cudaStream_t stream) {
    check_tensor(y, ElemType::kF16, "y");
    KS_CHECK(stem_conv3x3s2_supported(stem, conv, w, y), "stem_conv3x3s2: needs a 3 -> ", kStemK, " stem and a ",
             kStemK, " -> ", kStemConvK, " conv, both 3x3 stride 2 padding 1, an image width that is a multiple of 4",
             " and an f16 y of ", kStemConvK, " channels with 16-byte aligned pixels");
    KS_CHECK(x && aligned16(x) && stem_weights && stem_bias && conv_weights && conv_bias && aligned16(conv_weights),
             "stem_conv3x3s2: missing or unaligned image, weights or biases");
    const int sh = (h + 2 - 3) / 2 + 1, sw = (w + 2 - 3) / 2 + 1;
    KS_CHECK(h >= 1 && w >= 1 && y.h == (sh + 2 - 3) / 2 + 1 && y.w == (sw + 2 - 3) / 2 + 1, "stem_conv3x3s2: y is ",
             y.h, "x", y.w, ", not the second stride-2 conv's map of a ", h, "x", w, " image");
    const int64_t m = static_cast<int64_t>(y.n) * y.h * y.w;
    KS_CHECK(m < INT_MAX && int64_t{kStemC} * h * w < (int64_t{1} << 31), "stem_conv3x3s2: image or batch too large");
    if (m == 0) return;
    StemConvParams sp;
    ConvParams& p = sp.p;
    p.wgt = conv_weights;
    p.bias = conv_bias;
    p.y = y.data;
    p.in_h = sh;
    p.in_w = sw;
    p.out_h = y.h;
    p.out_w = y.w;
    p.y_ps = y.pixel_stride;
    p.kh = p.kw = 3;
    p.sh = p.sw = 2;
    p.pt = p.pl = 1;
    p.cg = kStemK;
    p.kg = kStemConvK;
    p.gemm_k = 9 * kStemK;
    p.gemm_m = static_cast<int>(m);
    p.silu = 1;
    p.y_vec = 1;
    sp.image = x;
    sp.image_h = h;
    sp.image_w = w;
    sp.stem = pack_stem_mma_fragments_half_bias<kStemK>(stem_weights, stem_bias);
    launch_stem_conv(sp, stream);
}

bool c2f_n1_supported(const NhwcTensor& x, const NhwcTensor& y) {
    auto aligned = [](const NhwcTensor& t) { return aligned16(t.data) && t.pixel_stride % 8 == 0; };
    return x.type == ElemType::kF16 && y.type == ElemType::kF16 && x.c == kC2fIn && y.c == kC2fOut && aligned(x) &&
           aligned(y);
}

std::string c2f_n1_kernel_name() {
    return "c2f_n1_halo_mma_m16n8k16_c" + std::to_string(kC2fIn) + "_b" + std::to_string(kC2fHalf) + "_k" +
           std::to_string(kC2fOut) + "_8x16_s" + std::to_string(kC2fStages) + "_silu";
}

void c2f_n1_nhwc(const NhwcTensor& x, const C2fWeights& w, const NhwcTensor& y, cudaStream_t stream) {
    check_tensor(x, ElemType::kF16, "x");
    check_tensor(y, ElemType::kF16, "y");
    KS_CHECK(c2f_n1_supported(x, y), "c2f_n1: needs f16 x and y of ", kC2fIn, " and ", kC2fOut,
             " channels with 16-byte aligned pixels (x has ", x.c, ", y ", y.c, ")");
    KS_CHECK(x.n == y.n && x.h == y.h && x.w == y.w, "c2f_n1: y's shape differs from x's");
    for (const void* wt : {w.cv1, w.m1, w.m2, w.cv2})
        KS_CHECK(wt && aligned16(wt), "c2f_n1: the four convs' weights (16-byte aligned) are required");
    KS_CHECK(w.cv1_bias && w.m1_bias && w.m2_bias && w.cv2_bias, "c2f_n1: the four convs' biases are required");
    const int64_t m = static_cast<int64_t>(y.n) * y.h * y.w;
    KS_CHECK(m < INT_MAX && (m - 1) * x.pixel_stride * 2 + x.c * 2 < (int64_t{1} << 32),
             "c2f_n1: x too large (32-bit offsets)");
    if (m == 0) return;
    // y is written while other CTAs still read x's windows: their bytes must not meet.
    const char *xb = static_cast<const char*>(x.data), *yb = static_cast<const char*>(y.data);
    KS_CHECK(yb + ((m - 1) * y.pixel_stride + y.c) * 2 <= xb || xb + ((m - 1) * x.pixel_stride + x.c) * 2 <= yb,
             "c2f_n1: y overlaps x");
    C2fParams cp;
    ConvParams& p = cp.p;
    p.x = x.data;
    p.wgt = w.cv2;
    p.bias = w.cv2_bias;
    p.y = y.data;
    p.in_h = p.out_h = y.h;
    p.in_w = p.out_w = y.w;
    p.x_ps = x.pixel_stride;
    p.y_ps = y.pixel_stride;
    p.cg = 3 * kC2fHalf;
    p.kg = kC2fOut;
    p.gemm_k = 3 * kC2fHalf;
    p.gemm_m = static_cast<int>(m);
    p.silu = 1;
    p.y_vec = 1;
    cp.w_cv1 = w.cv1;
    cp.b_cv1 = w.cv1_bias;
    cp.w_m1 = w.m1;
    cp.b_m1 = w.m1_bias;
    cp.w_m2 = w.m2;
    cp.b_m2 = w.m2_bias;
    cp.shortcut = w.shortcut ? 1 : 0;
    launch_c2f(cp, stream);
}

}  // namespace kestrel::cuda
