// The CUDA kernels for every IR op other than convolution. NHWC kernels take f16 or f32 tensors
// (a tensor's ElemType; input and output types may differ only in the conversions); strided
// kernels work on float32 (see tensors.h). All launches are asynchronous on `stream` and check the
// launch; shape mismatches throw kestrel::Error.
#pragma once

#include <cstdint>

#include "backends/cuda/tensors.h"

namespace kestrel::cuda {

// ---- NHWC feature maps -------------------------------------------------------------------------
// Max pooling (padding never wins: out-of-range taps are skipped).
void maxpool2d_nhwc(const NhwcTensor& x, const NhwcTensor& y, int kh, int kw, int stride_h, int stride_w, int pad_top,
                    int pad_left, cudaStream_t stream);
// SPPF's chain of three k x k stride-1 max-pools with k / 2 padding (k = 3 or 5): y1 = pool(x),
// y2 = pool(y1), y3 = pool(y2), the values of those three maxpool2d_nhwc calls, in one launch where
// two planes of an image's channel vector fit in 48 KB of shared memory (else the three calls).
void sppf_maxpool_nhwc(const NhwcTensor& x, const NhwcTensor& y1, const NhwcTensor& y2, const NhwcTensor& y3, int k,
                       cudaStream_t stream);
// Nearest resize: y(n, oy, ox, c) = x(n, src_y[oy], src_x[ox], c). The index maps (int32, on the
// device, y.h and y.w entries) are computed on the host from ONNX's coordinate rules.
void resize_nearest_nhwc(const NhwcTensor& x, const NhwcTensor& y, const int32_t* src_y, const int32_t* src_x,
                         cudaStream_t stream);
enum class UnaryOp : uint8_t { kSigmoid, kRelu, kSilu, kSin, kCos, kCopy };
enum class BinaryOp : uint8_t { kAdd, kSub, kMul, kDiv };
// Same-shape elementwise ops; kCopy also converts between f16 and f32 and writes into slices.
void unary_nhwc(UnaryOp op, const NhwcTensor& x, const NhwcTensor& y, cudaStream_t stream);
void binary_nhwc(BinaryOp op, const NhwcTensor& a, const NhwcTensor& b, const NhwcTensor& y, cudaStream_t stream);
// Transposed convolution, groups 1, dilation 1 (YOLOv8-seg's 2x2 stride-2 upsampling of the
// protos): w float32 [x.c, y.c, kh, kw] (ONNX layout) and bias float32[y.c] or null, on the device.
void conv_transpose2d_nhwc(const NhwcTensor& x, const float* w, const float* bias, int kh, int kw, int stride_h,
                           int stride_w, int pad_top, int pad_left, const NhwcTensor& y, cudaStream_t stream);
// Global average pooling: y is float32 [n, c] (row-major, contiguous).
void global_avgpool_nhwc(const NhwcTensor& x, float* y, cudaStream_t stream);

// ---- layout conversions ------------------------------------------------------------------------
// x: float32 NCHW contiguous [y.n, x_channels, y.h, y.w] -> y (NHWC, f16 or f32). x_channels < 0
// means y.c; fewer (y.c <= 8 only) pads channels [x_channels, y.c) with zeros.
void nchw_to_nhwc(const float* x, const NhwcTensor& y, cudaStream_t stream, int x_channels = -1);
// x (NHWC, f16 or f32) -> y: float32 NCHW contiguous [x.n, x.c, x.h, x.w].
void nhwc_to_nchw(const NhwcTensor& x, float* y, cudaStream_t stream);

// ---- strided float32 tensors -------------------------------------------------------------------
// y (contiguous or strided) = op(x); with kCopy this is transpose, slice, broadcast and
// copy-into-a-concat-slice, depending on the strides. x and y have the same rank and shape.
void unary_strided(UnaryOp op, const StridedTensor& x, const StridedTensor& y, cudaStream_t stream);
// y = a op b; a, b broadcast to y's shape through zero strides (same rank as y).
void binary_strided(BinaryOp op, const StridedTensor& a, const StridedTensor& b, const StridedTensor& y,
                    cudaStream_t stream);
// Softmax of contiguous float32 data viewed as [outer, len, inner] along the middle axis.
void softmax(const float* x, float* y, int64_t outer, int64_t len, int64_t inner, cudaStream_t stream);
// y[m, n] = alpha * sum_k x[m, k] * w'[k, n] + beta * bias[n] (bias may be null); w is [n, k] when
// trans_w, else [k, n]. All contiguous float32 (the classify head's Linear).
void gemm_f32(const float* x, const float* w, const float* bias, float* y, int m, int n, int k, bool trans_w,
              float alpha, float beta, cudaStream_t stream);

}  // namespace kestrel::cuda
