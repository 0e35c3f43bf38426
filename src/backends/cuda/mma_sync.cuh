// The warp-level tensor-core MMAs (mma.sync, sm_80+) that the convolution kernels share.
#pragma once

#include <cstdint>

namespace kestrel::cuda {

// d += a (16 x 16 f16, row-major fragment) * b (16 x 8 f16, "col" fragment), float32 accumulators.
// Fragments (lane l, g = l / 4, t = l % 4): a[0] = row g, k 2t..2t+1; a[1] = row g + 8; a[2] and a[3]
// the same at k + 8. b0 = k 2t..2t+1 of column g, b1 = k + 8. d = rows g (d[0], d[1]) and g + 8
// (d[2], d[3]), columns 2t and 2t + 1.
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 b16 matrices from shared memory (lanes 8i..8i+7 give matrix i's row addresses): with
// lane l pointing at row l % 16, column 8 (l / 16) of a 16 x 16 row-major f16 tile, r is that tile's
// mma A fragment.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// The int8 counterpart, m16n8k32: s8 x s8 into int32 accumulators, fragments as above with k
// doubled (each 32-bit register holds 4 int8 values).
__device__ __forceinline__ void mma_16832_s8(int (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace kestrel::cuda
