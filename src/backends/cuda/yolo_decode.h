// Ultralytics' Detect-head decode as one kernel: the IR's YoloDecode (passes/fuse_yolo_decode.cc
// makes it, reference::evaluate defines it). For anchor a of image n (levels in order, pixels row-major):
//   d_j = sum_k w_k softmax_k(x[j R + k])   (j = 0..3, R = reg_max: the DFL distances l, t, r, b)
//   y[n, 0..3, a] = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1) * strides[a]
//       with x1 = ax - d0, y1 = ay - d1, x2 = ax + d2, y2 = ay + d3, (ax, ay) = (anchors[a], anchors[A + a])
//   y[n, 4 + c, a] = sigmoid(x[4 R + c])
#pragma once

#include <cstdint>
#include <vector>

#include "backends/cuda/tensors.h"

namespace kestrel::cuda {

// levels[l]: NHWC f16 or f32 (all one type), [n, H_l, W_l, 4 * reg_max + nc], possibly channel
// slices (pixel_stride); anchors (2 * A floats), strides (A) and dfl_weights (reg_max) on the
// device; y float32 [n, 4 + nc, A], any strides. At most 8 levels and reg_max <= 64. Asynchronous
// on `stream`; shape mismatches throw kestrel::Error.
void yolo_decode(const NhwcTensor* levels, int num_levels, const float* anchors, const float* strides,
                 const float* dfl_weights, int reg_max, int nc, const StridedTensor& y, cudaStream_t stream);

// The decode of YoloDecode with head_convs = 1 (passes/fuse_yolo_head_convs.cc): level l's map is
//   x[4R + nc] = (w_box box_l + b_box, w_cls cls_l + b_cls)      (1x1 convs, per pixel)
// computed on the tensor cores (f16 features and weights, float32 sums, logits rounded to f16 as the
// unfused convs round their outputs), then decoded as above, so the logits never go to memory.
// box and cls: NHWC f16, 16-byte aligned pixels (slices allowed), channels a multiple of 8, the same
// for every level; weights: the level's 1x1 convs packed by pack_yolo_decode_head for those channel
// counts, on the device (8-byte aligned).
struct HeadLevel {
    NhwcTensor box, cls;
    const void* weights = nullptr;
};
void yolo_decode_head(const HeadLevel* levels, int num_levels, const float* anchors, const float* strides,
                      const float* dfl_weights, int reg_max, int nc, const StridedTensor& y, cudaStream_t stream);

// One level's head convs in the kernel's order (host side, once per engine): w_box [4 reg_max][cb]
// and w_cls [nc][cc] row-major float32 as the f16 B fragments of mma.sync m16n8k16, zero-padded to
// whole fragments, then the biases b_box [4 reg_max] and b_cls [nc] as float32.
std::vector<uint8_t> pack_yolo_decode_head(const float* w_box, const float* b_box, const float* w_cls,
                                           const float* b_cls, int cb, int cc, int reg_max, int nc);

}  // namespace kestrel::cuda
