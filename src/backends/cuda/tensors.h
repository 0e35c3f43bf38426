// Device tensor descriptors shared by the CUDA kernels and the CUDA runtime. Host-only code may
// include this header (it needs only the CUDA runtime API types).
//
// Two kinds of activations live on the GPU:
//   - NHWC ("the body" of YOLOv8: convolutions, pooling, resize, elementwise on feature maps), in
//     the engine's compute type (f16 or f32). A tensor may be a channel slice of a wider buffer:
//     element (n, y, x, c) is at data[((n * h + y) * w + x) * pixel_stride + c], pixel_stride >= c.
//     Split outputs and Concat inputs are such slices, so concatenation costs no copy.
//   - Strided ("plain", row-major NCHW-style, always f32): the small tensors of the heads (reshape,
//     transpose, softmax, decode). A descriptor with arbitrary element strides (0 = broadcast) lets
//     one kernel do transpose, slice, broadcast and copy-into-slice.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "core/error.h"

namespace kestrel::cuda {

// kI8 is an int8 GEMM's operand type (conv2d's INT8 tactics); feature maps are f32 or f16.
enum class ElemType : uint8_t { kF32 = 0, kF16 = 1, kI8 = 2 };

inline int elem_size(ElemType t) { return t == ElemType::kF32 ? 4 : t == ElemType::kF16 ? 2 : 1; }

struct NhwcTensor {
    void* data = nullptr;  // first element of this tensor (a slice starts at its channel offset)
    ElemType type = ElemType::kF32;
    int n = 0, h = 0, w = 0, c = 0;
    int64_t pixel_stride = 0;  // elements between (n, y, x, c) and (n, y, x + 1, c)
};

constexpr int kMaxRank = 6;

// A float32 tensor view: element (i0..i{rank-1}) at data[sum(i_k * stride[k])].
struct StridedTensor {
    float* data = nullptr;
    int rank = 0;
    int64_t shape[kMaxRank] = {};
    int64_t stride[kMaxRank] = {};  // in elements; 0 broadcasts
};

// Throws kestrel::Error naming the call when a CUDA runtime call fails.
inline void check_cuda(cudaError_t e, const char* what) {
    if (e != cudaSuccess) KS_FAIL("CUDA error in ", what, ": ", cudaGetErrorString(e));
}
#define KS_CUDA(call) ::kestrel::cuda::check_cuda((call), #call)

}  // namespace kestrel::cuda
