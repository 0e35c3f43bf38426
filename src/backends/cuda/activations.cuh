// Device-side activations shared by the CUDA kernels that fuse them into their epilogues.
#pragma once

namespace kestrel::cuda {

// x * sigmoid(x) as float32 computes it: the float engines' path.
__device__ __forceinline__ float silu_exact(float v) { return v / (1.f + expf(-v)); }

// The same with the SFU's exp2 and reciprocal (relative error ~1e-7, far below f16's rounding):
// five instructions, where an IEEE division and expf's range handling take four times as many, most
// of a small conv's epilogue. exp overflowing to inf gives rcp 0 and so -0 for very negative v.
__device__ __forceinline__ float silu_approx(float v) {
    float e, r;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(e) : "f"(v * -1.44269504088896341f));  // exp(-v)
    asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(1.f + e));
    return v * r;
}

}  // namespace kestrel::cuda
