// Ultralytics' letterbox on the GPU: a device RGB uint8 image (HWC, interleaved) -> the network
// input, float32 NCHW in [0, 1], written straight into a session's input slot. Same result as the
// CPU yolo::letterbox_to_tensor (src/yolo/preprocess/letterbox.cc), bit for bit: the same geometry
// (r = min(out_h / h, out_w / w), round-half-even sizes, pad split round(d -/+ 0.1)), OpenCV's
// INTER_LINEAR fixed-point arithmetic (11-bit weights, its vertical rounding, its exact-2x2 average
// path), pad 114 and a correctly rounded v / 255.
//
//   LetterboxParams p = letterbox_params(w, h, out_h, out_w);
//   letterbox_to_nchw(d_rgb, w * 3, p, session.device_input() + i * 3 * out_h * out_w, stream);
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace kestrel::cuda {

struct LetterboxParams {
    int src_w = 0, src_h = 0;  // source image
    int out_w = 0, out_h = 0;  // canvas (network input)
    int new_w = 0, new_h = 0;  // resized image inside the canvas
    int left = 0, top = 0;     // its offset
    float ratio = 1;           // new / source, as LetterboxTransform::scale
    // How the source becomes new_w x new_h, as yolo::resize_linear decides it.
    enum class Resize : int { kCopy = 0, kLinear = 1, kHalve = 2 } resize = Resize::kCopy;
    double scale_x = 1, scale_y = 1;  // OpenCV's source/destination scale (1 / (new / src))
};

// The geometry of yolo::letterbox for a src_w x src_h image; throws kestrel::Error for empty sizes
// or an image that would shrink to nothing.
LetterboxParams letterbox_params(int src_w, int src_h, int out_h, int out_w);

// src: device, src_h rows of src_pitch bytes (RGB); dst: device, 3 x out_h x out_w floats.
// Asynchronous on `stream`.
void letterbox_to_nchw(const uint8_t* src, int64_t src_pitch, const LetterboxParams& p, float* dst,
                       cudaStream_t stream);

}  // namespace kestrel::cuda
