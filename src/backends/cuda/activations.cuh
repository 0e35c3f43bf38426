// Device-side activations shared by the CUDA kernels that fuse them into their epilogues.
#pragma once

namespace kestrel::cuda {

// x * sigmoid(x) as float32 computes it: the float engines' path.
__device__ __forceinline__ float silu_exact(float v) { return v / (1.f + expf(-v)); }

// The f16 engines' SiLU: x sigmoid(x) = h + h tanh(h) with h = x / 2, one SFU tanh and two FMA-pipe
// instructions. The SFU (16 lanes an SM) is what a conv epilogue waits on: the 64 -> 64 halo tile's
// epilogue issued 2 SFU instructions an element (exp2 and reciprocal) for ~1,000 cycles of each SM
// sub-partition's SFU a tile, against ~2,300 cycles of tensor-core work. tanh.approx.f32's error
// makes the result's absolute error about |x| 2^-12, the size of x's own f16 rounding; the GPU
// test SiluEpilogue bounds it element by element. tanh(+-inf) = +-1, so very negative v gives -0
// and very positive v gives v.
__device__ __forceinline__ float silu_approx(float v) {
    const float h = 0.5f * v;
    float t;
    asm("tanh.approx.f32 %0, %1;" : "=f"(t) : "f"(h));
    return fmaf(h, t, h);
}

}  // namespace kestrel::cuda
