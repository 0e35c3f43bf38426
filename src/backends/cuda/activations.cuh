// Device-side activations shared by the CUDA kernels that fuse them into their epilogues.
#pragma once

namespace kestrel::cuda {

// x * sigmoid(x) as float32 computes it: the float engines' path.
__device__ __forceinline__ float silu_exact(float v) { return v / (1.f + expf(-v)); }

// The f16 engines' SiLU: x sigmoid(x) = h + h tanh(h) with h = x / 2, one SFU tanh and two FMA-pipe
// instructions. The SFU (16 lanes an SM) is what a conv epilogue waits on: the 64 -> 64 halo tile's
// epilogue issued 2 SFU instructions an element (exp2 and reciprocal), by instruction count ~1,000
// cycles of each SM sub-partition's SFU a tile against ~2,300 cycles of tensor-core work at peak
// (counted from the datasheet rates, not measured). The GPU test
// SiluEpilogueElementwiseF16 bounds each f16 result's error by 2^-11 (|silu(x)| + |x|), f16
// rounding included; on the H100 the worst element reaches 0.49 of it, so the rounding of the
// result, not tanh.approx, dominates. tanh(+-inf) = +-1: very negative v gives 0, very positive v.
// silu_approx of v = 2 h, from h (a kernel that gets v / 2 for free, e.g. from halved weights).
__device__ __forceinline__ float silu_approx_of_half(float h) {
    float t;
    asm("tanh.approx.f32 %0, %1;" : "=f"(t) : "f"(h));
    return fmaf(h, t, h);
}
__device__ __forceinline__ float silu_approx(float v) { return silu_approx_of_half(0.5f * v); }

}  // namespace kestrel::cuda
