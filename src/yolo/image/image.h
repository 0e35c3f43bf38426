// 8-bit RGB images: decoding (JPEG via libturbojpeg, PNG via libpng), JPEG encoding.
//
//   Image im = read_image("bus.jpg");     // throws kestrel::Error("cannot read image ...") on any failure
//   write_jpeg("out.jpg", im, 95);        // written to a temporary file, then renamed (atomic)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kestrel::yolo {

// Interleaved RGB, row-major: pixel (x, y) channel c is data[(y * width + x) * 3 + c].
struct Image {
    int width = 0;
    int height = 0;
    std::vector<uint8_t> data;

    uint8_t* pixel(int x, int y) { return data.data() + (static_cast<size_t>(y) * width + x) * 3; }
    const uint8_t* pixel(int x, int y) const { return data.data() + (static_cast<size_t>(y) * width + x) * 3; }
};

// Decodes a JPEG or PNG file (detected by content, not extension) to the pixels cv2.imread gives
// (libjpeg's default islow IDCT and fancy upsampling; PNG alpha dropped, 16-bit cut to the high byte).
// EXIF orientation is ignored: pixels come as stored. cv2.imread, which Ultralytics uses, applies the
// EXIF orientation of JPEG and PNG files (OpenCV 4.10 and 5.0), so rotated-tag files differ from it.
// A JPEG whose data ends early is an error (libjpeg would pad it with grey); other libjpeg warnings,
// such as extraneous bytes before a marker, are logged and the image is returned.
Image read_image(const std::string& path);
// Decodes from memory; `what` names the source in error messages.
Image decode_image(const uint8_t* bytes, size_t size, const std::string& what);
void write_jpeg(const std::string& path, const Image& image, int quality = 95);

// True for file names Ultralytics treats as images (bmp dng jpeg jpg mpo png tif tiff webp pfm, any case).
bool has_image_extension(const std::string& path);

}  // namespace kestrel::yolo
