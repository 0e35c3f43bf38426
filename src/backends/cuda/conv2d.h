// Convolution on NHWC activations, as an implicit GEMM (M = batch * out pixels, N = out channels,
// K = kh * kw * in channels per group) with the epilogue fused:
//   y = silu?(conv(x, w) + bias) + residual?          (accumulation in float32)
// x, y and residual are NHWC tensors of one ElemType (f16 or f32); any of them may be a channel
// slice of a wider buffer (pixel_stride > c), which is how Concat inputs and Split outputs are
// read and written in place. f16 runs on the tensor cores (mma.sync, float32 accumulators);
// f32 is exact float32 arithmetic (no TF32). INT8 convolutions (ConvInt8) read and write f16
// tensors and multiply in int8 on the tensor cores (mma.sync m16n8k32, int32 sums): x is quantised
// as the kernel loads it, so no int8 copy of a feature map is ever stored.
//
//   auto packed = cuda::pack_conv_weights(oihw_host, shape, ElemType::kF16);   // once
//   cuda::conv2d_nhwc(x, d_packed, d_bias, shape, /*silu=*/true, nullptr, y, tactic, stream);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backends/cuda/tensors.h"

namespace kestrel::cuda {

struct ConvShape {
    int k = 0, c = 0;  // output and input channels (c counts all groups)
    int kh = 1, kw = 1;
    int stride_h = 1, stride_w = 1;
    int pad_top = 0, pad_left = 0;  // bottom/right padding follow from the output size
    int dil_h = 1, dil_w = 1;
    int groups = 1;
};

// Host-side weight packing, once per session: OIHW float32 -> the kernels' layout and type.
// The result is copied to the device as is and passed to conv2d_nhwc. kI8: symmetric int8 per
// output channel, scale max|w| / 127, returned in *channel_scales (required for kI8).
std::vector<uint8_t> pack_conv_weights(const float* oihw, const ConvShape& s, ElemType type,
                                       std::vector<float>* channel_scales = nullptr);

// An INT8 convolution (TensorRT's quantise-dequantise semantics, symmetric, per-tensor input scale):
//   q(x) = clamp(round_half_even(x / input_scale), -128, 127)
//   y    = silu?(sum(q(x) * q(w)) * dequant[k] + bias) + residual?,  dequant[k] = input_scale * w_scale[k]
// with x, y, residual f16 tensors and the weights packed with ElemType::kI8.
struct ConvInt8 {
    float input_scale = 0.f;
    const float* dequant = nullptr;  // device float32[k]
};

// Tactics are the kernel variants (tile shapes, implementations) that can run a convolution; the
// auto-tuner times each supported one. tactic < 0 picks by heuristic. Tactics are keyed by the
// GEMM's type: kF32 and kF16 (the tensors' type) or kI8 (an INT8 convolution on f16 tensors).
int conv2d_tactic_count();
bool conv2d_tactic_supports(int tactic, const ConvShape& s, ElemType type);
std::string conv2d_tactic_name(int tactic, const ConvShape& s, ElemType type);  // states its configuration

// Device scratch a tactic needs for this conv at batch n (0 for most): float32 partial sums and
// per-tile counters. The caller passes a zero-filled buffer of at least this size; a tactic must
// leave it zero-filled again when it finishes (so one buffer serves every conv of a stream).
// The split-K tactics ("_splitk<S>_" in their names) need one: they spread the reduction over S
// CTAs per output tile for small-M, long-K convolutions (batch-1 deep layers). Their size is
// about 4 bytes per output element (rounded up to whole tiles), so it grows with the batch.
size_t conv2d_workspace_bytes(int tactic, const ConvShape& s, ElemType type, int n, int out_h, int out_w);

// bias: float32[k] on the device (never null). residual: null or an NHWC tensor shaped like y.
// int8: null, or this is an INT8 convolution (f16 tensors, kI8 weights and tactics).
// Shapes must agree (y.h/y.w follow from x, padding and strides); violations throw kestrel::Error.
// workspace: 16-byte aligned, zero-filled, at least conv2d_workspace_bytes(tactic, ...) bytes,
// used by the stream's kernels in order (not by two concurrent launches); a tactic that needs one
// throws without it. The heuristic (tactic < 0) never picks a tactic that needs one.
void conv2d_nhwc(const NhwcTensor& x, const void* packed_weights, const float* bias, const ConvShape& s, bool silu,
                 const NhwcTensor* residual, const NhwcTensor& y, int tactic, cudaStream_t stream,
                 void* workspace = nullptr, const ConvInt8* int8 = nullptr);

// A 1x1 convolution (stride 1, no padding, one group) of concat(upsample2x(up), x[..., up.c:]) along
// channels, where upsample2x is the nearest 2x upsample (output pixel (oy, ox) reads up's (oy / 2,
// ox / 2)): YOLOv8's neck (Upsample -> Concat -> C2f cv1) without the upsampled map ever stored. x
// is the concat's whole buffer (x.c = s.c channels), its first up.c channels not read. f16 tensors
// with 16-byte aligned pixels, up.c a multiple of 32 and fewer than s.c, x's map twice up's height
// and width; tactic: one of the tensor-core implicit-GEMM tactics (the *_mma_* and *_wgmma_* ones
// without "halo"), as tuned for the plain conv on x. No residual, not INT8.
bool conv2d_upsampled_concat_supported(int tactic, const ConvShape& s, const NhwcTensor& up, const NhwcTensor& x);
bool conv2d_tactic_reads_upsampled(int tactic);  // the tactic is one of those
void conv2d_upsampled_concat_nhwc(const NhwcTensor& up, const NhwcTensor& x, const void* packed_weights,
                                  const float* bias, const ConvShape& s, bool silu, const NhwcTensor& y, int tactic,
                                  cudaStream_t stream, void* workspace = nullptr);

// A C2f bottleneck's two convolutions as one kernel (YOLOv8: 3x3, stride 1, padding 1, SiLU, c -> c
// -> c, its shortcut adding x):
//   t = silu(conv(x, w1) + b1),   y = silu(conv(t, w2) + b2) + (residual ? x : 0)
// t stays in shared memory, rounded to f16 as a stored tensor would be (each CTA computes it on its
// tile and a one-pixel border). f16 x and y of c = 16 or 32 channels (slices allowed) with 16-byte
// aligned pixels, y not overlapping x; weights packed with ElemType::kF16, biases float32[c].
bool conv3x3_pair_supported(int c, const NhwcTensor& x, const NhwcTensor& y);
std::string conv3x3_pair_kernel_name(int c);
void conv3x3_pair_nhwc(const NhwcTensor& x, const void* w1, const float* b1, const void* w2, const float* b2,
                       bool residual, const NhwcTensor& y, cudaStream_t stream);

// YOLOv8n's model.0 and model.1 as one kernel: the stem (3 -> 16, 3x3 stride 2 padding 1, SiLU)
// read from the float32 NCHW image x ([y.n, 3, h, w], contiguous) and the conv after it (16 -> 32,
// 3x3 stride 2 padding 1, SiLU): the stem's output stays on the SM, rounded to f16 as the stem
// kernel (conv2d_nchw_input) stores it. Stem weights OIHW float32 and bias on the HOST (launch
// parameters, as conv2d_nchw_input takes them); the conv's weights packed with ElemType::kF16 and
// its bias float32 on the device; y: f16 NHWC of 32 channels with 16-byte aligned pixels. The
// image's width a multiple of 4 and x 16-byte aligned (the kernel copies its rows in 16-byte chunks).
bool stem_conv3x3s2_supported(const ConvShape& stem, const ConvShape& conv, int image_w, const NhwcTensor& y);
std::string stem_conv3x3s2_kernel_name();
void stem_conv3x3s2_nhwc(const float* x, int h, int w, const float* stem_weights, const float* stem_bias,
                         const ConvShape& stem, const void* conv_weights, const float* conv_bias, const ConvShape& conv,
                         const NhwcTensor& y, cudaStream_t stream);

// A C2f block with one bottleneck, YOLOv8n's model.2 (all SiLU convs):
//   [a, b] = cv1(x) (1x1, 32 -> 2 x 16),  m = m2(m1(b)) (+ b if shortcut) (3x3, padding 1, 16 -> 16),
//   y = cv2([a, b, m]) (1x1, 48 -> 32)
// as one kernel: a, b, m and m1's output stay on the SM, each rounded to f16 as a stored tensor
// would be. f16 x and y of 32 channels (slices allowed) with 16-byte aligned pixels, y's bytes
// apart from x's; weights packed with ElemType::kF16, biases float32.
struct C2fWeights {
    const void *cv1 = nullptr, *m1 = nullptr, *m2 = nullptr, *cv2 = nullptr;
    const float *cv1_bias = nullptr, *m1_bias = nullptr, *m2_bias = nullptr, *cv2_bias = nullptr;
    bool shortcut = true;
};
bool c2f_n1_supported(const NhwcTensor& x, const NhwcTensor& y);
std::string c2f_n1_kernel_name();
void c2f_n1_nhwc(const NhwcTensor& x, const C2fWeights& w, const NhwcTensor& y, cudaStream_t stream);

// The image stem read straight from the float32 NCHW image (3 input channels, 3x3 kernel, groups 1,
// no dilation, k <= 64): no NHWC conversion of the image and no channel padding. f16 outputs with
// 16-byte aligned pixels and 16, 32, 48 or 64 channels: taps and weights rounded to f16 and
// multiplied on the tensor cores; others: one thread per output pixel, float32 FMA (exact for f32).
bool conv2d_nchw_input_supported(const ConvShape& s);
// The kernel conv2d_nchw_input runs for an output of type `out` whose pixels are (or are not)
// 16-byte aligned (data and pixel stride).
std::string conv2d_nchw_input_kernel_name(const ConvShape& s, ElemType out, bool aligned);
// x: [y.n, 3, h, w] float32 contiguous on the device; weights (OIHW float32) and bias (float32[k]) on
// the HOST: they are passed to the kernel as launch parameters (a CUDA graph captures them by value).
// y: NHWC (slices allowed).
void conv2d_nchw_input(const float* x, int h, int w, const float* weights, const float* bias, const ConvShape& s,
                       bool silu, const NhwcTensor& y, cudaStream_t stream);

}  // namespace kestrel::cuda
