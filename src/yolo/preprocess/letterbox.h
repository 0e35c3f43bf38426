// Letterbox exactly as Ultralytics' LetterBox (auto=False, scaleup=True, center=True):
//   r = min(out_h / h, out_w / w); new_unpad = (round(w * r), round(h * r));
//   the image is resized with OpenCV's cv2.resize INTER_LINEAR (bit-exact: its fixed-point
//   11-bit coefficients), then padded with 114 split as top = round(dh - 0.1), bottom = round(dh + 0.1)
//   (likewise left/right), where dh = (out_h - new_h) / 2.
//
//   +--------------------- out_w ---------------------+
//   |                 pad (114,114,114)                |
//   |      +----------- new_w -----------+             |
//   | left |  resized image (new_h rows)  |   right     |
//   |      +------------------------------+             |
//   |                   pad                             |
//   +---------------------------------------------------+
#pragma once

#include "yolo/image/image.h"

namespace kestrel::yolo {

// Where the original image lies in the letterboxed one: x_in = x_orig * scale + pad_left.
struct LetterboxTransform {
    float scale = 1.0f;
    int pad_left = 0;
    int pad_top = 0;
    int new_width = 0;   // resized image size inside the canvas
    int new_height = 0;

    // Maps a point of the network input back to the original image.
    float to_original_x(float x) const { return (x - static_cast<float>(pad_left)) / scale; }
    float to_original_y(float y) const { return (y - static_cast<float>(pad_top)) / scale; }
};

// Letterboxes `src` into a out_h x out_w RGB uint8 canvas.
Image letterbox(const Image& src, int out_h, int out_w, LetterboxTransform* transform);

// Writes a letterboxed image as the network input: planar NCHW float32 RGB in [0, 1]
// (dst holds 3 * out_h * out_w floats). Returns the transform.
LetterboxTransform letterbox_to_tensor(const Image& src, int out_h, int out_w, float* dst);

// cv2.resize(src, (w, h), interpolation=INTER_LINEAR) on 8-bit RGB, bit-exact with OpenCV 4.x.
Image resize_linear(const Image& src, int out_w, int out_h);
// cv2.resize(..., INTER_AREA), bit-exact with OpenCV 4.x for downscaling (Ultralytics' val loader
// uses it when shrinking the long side to imgsz).
Image resize_area(const Image& src, int out_w, int out_h);

}  // namespace kestrel::yolo
