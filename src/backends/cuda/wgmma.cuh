// Hopper's warpgroup MMA (wgmma.mma_async, sm_90a): a warpgroup (4 warps) multiplies a 64 x 16
// f16 A tile by a 16 x N f16 B tile, both read straight from shared memory through descriptors,
// into float32 accumulators in registers. The conv kernels stage A (M rows) and B (N rows) as rows
// of 32 halves, K contiguous, 16-byte chunk c of row r at chunk c ^ ((r >> 1) & 3): that is the
// 64-byte swizzle of TMA and wgmma (address bits 4-5 XOR bits 7-8) when each tile starts at a
// multiple of 512 bytes, so the same ring feeds ldmatrix (mma.sync) and wgmma.
//
// Accumulator layout (per warp w of the warpgroup, lane l, g = l / 4, t = l % 4): d[j][0..3] are
// rows 16w + g, 16w + g, 16w + g + 8, 16w + g + 8 and columns 8j + 2t, 8j + 2t + 1 (repeated), the
// m16n8 layout of mma.sync, so the same epilogue stores both.
//
// The wrappers below are the instruction with its N / 2 accumulator operands spelled out (inline
// PTX cannot loop over operands); only the N the tactics use are here.
#pragma once

#include <cstdint>

namespace kestrel::cuda {

// The shared-memory matrix descriptor of a K-major tile with the 64-byte swizzle: start address,
// leading byte offset (unused when K fits in the swizzle width), stride byte offset 512 (8 rows of
// 64 bytes to the next 8 rows), swizzle mode 2 (64B). Addresses are bytes in the shared window.
__device__ __forceinline__ uint64_t wgmma_desc_k64b(uint32_t smem_addr) {
    return static_cast<uint64_t>((smem_addr & 0x3ffff) >> 4) | (uint64_t{1} << 16) | (uint64_t{512 >> 4} << 32) |
           (uint64_t{2} << 62);
}

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define KESTREL_WGMMA 1
#endif

// Orders this warpgroup's register accesses before the wgmma that follow (required before the first
// wgmma that reads accumulators written by other instructions).
__device__ __forceinline__ void wgmma_fence() {
#ifdef KESTREL_WGMMA
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#ifdef KESTREL_WGMMA
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
// Waits until at most N committed wgmma groups are pending (their shared-memory reads and
// accumulator writes done).
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#ifdef KESTREL_WGMMA
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// Makes this thread's earlier generic-proxy shared-memory writes (st.shared, cp.async) visible to
// the async proxy that wgmma reads through.
__device__ __forceinline__ void fence_proxy_async_shared() {
#ifdef KESTREL_WGMMA
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}

// d = A(64 x 16) * B(16 x N) + (accumulate ? d : 0), A and B K-major in shared memory (descriptors
// a, b). The first MMA of a tile passes accumulate = false instead of zeroing d: an instruction
// other than wgmma writing the accumulators would make ptxas serialise the whole pipeline.
template <int N>
__device__ __forceinline__ void wgmma_m64k16_f32_f16(float (&d)[N / 8][4], uint64_t a, uint64_t b, bool accumulate);

template <>
__device__ __forceinline__ void wgmma_m64k16_f32_f16<32>(float (&d)[4][4], uint64_t a, uint64_t b, bool accumulate) {
#ifdef KESTREL_WGMMA
    asm volatile(
        "{\n .reg .pred scale_d;\n setp.ne.b32 scale_d, %18, 0;\n wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
        "}, %16, %17, scale_d, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
          "+f"(d[3][2]), "+f"(d[3][3])
        : "l"(a), "l"(b), "r"(static_cast<unsigned>(accumulate)));
#else
    (void)d, (void)a, (void)b, (void)accumulate;
    __trap();
#endif
}

template <>
__device__ __forceinline__ void wgmma_m64k16_f32_f16<64>(float (&d)[8][4], uint64_t a, uint64_t b, bool accumulate) {
#ifdef KESTREL_WGMMA
    asm volatile(
        "{\n .reg .pred scale_d;\n setp.ne.b32 scale_d, %34, 0;\n wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
        "}, %32, %33, scale_d, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),
          "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
          "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
        : "l"(a), "l"(b), "r"(static_cast<unsigned>(accumulate)));
#else
    (void)d, (void)a, (void)b, (void)accumulate;
    __trap();
#endif
}

template <>
__device__ __forceinline__ void wgmma_m64k16_f32_f16<80>(float (&d)[10][4], uint64_t a, uint64_t b, bool accumulate) {
#ifdef KESTREL_WGMMA
    asm volatile(
        "{\n .reg .pred scale_d;\n setp.ne.b32 scale_d, %42, 0;\n wgmma.mma_async.sync.aligned.m64n80k16.f32.f16.f16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39"
        "}, %40, %41, scale_d, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),
          "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
          "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]),
          "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3])
        : "l"(a), "l"(b), "r"(static_cast<unsigned>(accumulate)));
#else
    (void)d, (void)a, (void)b, (void)accumulate;
    __trap();
#endif
}

template <>
__device__ __forceinline__ void wgmma_m64k16_f32_f16<128>(float (&d)[16][4], uint64_t a, uint64_t b, bool accumulate) {
#ifdef KESTREL_WGMMA
    asm volatile(
        "{\n .reg .pred scale_d;\n setp.ne.b32 scale_d, %66, 0;\n wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
        "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
        "}, %64, %65, scale_d, 1, 1, 0, 0;\n}\n"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),
          "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
          "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]),
          "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]),
          "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
          "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]),
          "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]),
          "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
        : "l"(a), "l"(b), "r"(static_cast<unsigned>(accumulate)));
#else
    (void)d, (void)a, (void)b, (void)accumulate;
    __trap();
#endif
}

// The same with A from registers (the "RS" form): each warp w of the warpgroup holds rows 16w..16w+15
// of A as an mma.sync m16n8k16 A fragment (mma_sync.cuh), e.g. from ldmatrix.x4; B from shared memory.
// A's registers must not change until the MMA has completed (wgmma_wait).
template <int N>
__device__ __forceinline__ void wgmma_m64k16_f32_f16_rs(float (&d)[N / 8][4], const uint32_t (&a)[4], uint64_t b,
                                                        bool accumulate);

template <>
__device__ __forceinline__ void wgmma_m64k16_f32_f16_rs<64>(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b,
                                                            bool accumulate) {
#ifdef KESTREL_WGMMA
    asm volatile(
        "{\n .reg .pred scale_d;\n setp.ne.b32 scale_d, %37, 0;\n wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
        "}, {%32, %33, %34, %35}, %36, scale_d, 1, 1, 0;\n}\n"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),
          "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
          "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(static_cast<unsigned>(accumulate)));
#else
    (void)d, (void)a, (void)b, (void)accumulate;
    __trap();
#endif
}

template <>
__device__ __forceinline__ void wgmma_m64k16_f32_f16_rs<80>(float (&d)[10][4], const uint32_t (&a)[4], uint64_t b,
                                                            bool accumulate) {
#ifdef KESTREL_WGMMA
    asm volatile(
        "{\n .reg .pred scale_d;\n setp.ne.b32 scale_d, %45, 0;\n wgmma.mma_async.sync.aligned.m64n80k16.f32.f16.f16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
        "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
        "%32, %33, %34, %35, %36, %37, %38, %39"
        "}, {%40, %41, %42, %43}, %44, scale_d, 1, 1, 0;\n}\n"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),
          "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
          "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]),
          "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(static_cast<unsigned>(accumulate)));
#else
    (void)d, (void)a, (void)b, (void)accumulate;
    __trap();
#endif
}

template <>
__device__ __forceinline__ void wgmma_m64k16_f32_f16_rs<128>(float (&d)[16][4], const uint32_t (&a)[4], uint64_t b,
                                                             bool accumulate) {
#ifdef KESTREL_WGMMA
    asm volatile(
        "{\n .reg .pred scale_d;\n setp.ne.b32 scale_d, %69, 0;\n wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {"
        "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, "
        "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "
        "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
        "}, {%64, %65, %66, %67}, %68, scale_d, 1, 1, 0;\n}\n"
        : "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]), "+f"(d[1][2]),
          "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]), "+f"(d[3][0]), "+f"(d[3][1]),
          "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]), "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]),
          "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]), "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]),
          "+f"(d[7][0]), "+f"(d[7][1]), "+f"(d[7][2]), "+f"(d[7][3]), "+f"(d[8][0]), "+f"(d[8][1]), "+f"(d[8][2]),
          "+f"(d[8][3]), "+f"(d[9][0]), "+f"(d[9][1]), "+f"(d[9][2]), "+f"(d[9][3]), "+f"(d[10][0]), "+f"(d[10][1]),
          "+f"(d[10][2]), "+f"(d[10][3]), "+f"(d[11][0]), "+f"(d[11][1]), "+f"(d[11][2]), "+f"(d[11][3]),
          "+f"(d[12][0]), "+f"(d[12][1]), "+f"(d[12][2]), "+f"(d[12][3]), "+f"(d[13][0]), "+f"(d[13][1]),
          "+f"(d[13][2]), "+f"(d[13][3]), "+f"(d[14][0]), "+f"(d[14][1]), "+f"(d[14][2]), "+f"(d[14][3]),
          "+f"(d[15][0]), "+f"(d[15][1]), "+f"(d[15][2]), "+f"(d[15][3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(static_cast<unsigned>(accumulate)));
#else
    (void)d, (void)a, (void)b, (void)accumulate;
    __trap();
#endif
}

}  // namespace kestrel::cuda
