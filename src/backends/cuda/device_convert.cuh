// Device-side conversions between the storage types of activations (float, __half) and the float
// the kernels compute in, shared by every CUDA kernel file.
#pragma once

#include <cuda_fp16.h>

#include <type_traits>

namespace kestrel::cuda {

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v) {
    if constexpr (std::is_same_v<T, float>) {
        return v;
    } else {
        return __float2half_rn(v);  // round to nearest even, as every other f16 conversion here
    }
}

}  // namespace kestrel::cuda
