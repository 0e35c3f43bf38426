// JPEG decoding on the GPU with NVIDIA's nvJPEG, to interleaved RGB uint8 in device memory.
//
// nvJPEG is loaded at run time (dlopen of libnvjpeg.so.13, CUDA 13's, found through LD_LIBRARY_PATH
// or the system's library path; pip's `nvidia-nvjpeg` package ships it): Kestrel builds without
// nvJPEG's header or library (CI's toolkit has neither), and only the GPU pipeline needs it. When the
// library is missing or fails to start, constructing a JpegDecoder throws a one-line kestrel::Error.
//
// Pixels: nvJPEG's IDCT and chroma upsampling are its own, so a decoded image differs slightly from
// libjpeg-turbo's (the CPU decoder, src/yolo/image) - by a few levels, mostly at chroma edges.
// EXIF orientation is ignored, as by the CPU decoder.
//
//   JpegDecoder dec;
//   auto size = dec.size(bytes, n, "bus.jpg");                          // from the header
//   dec.decode(bytes, n, "bus.jpg", d_rgb, size.width * 3, stream);     // asynchronous on stream
//   dec.decode_batch({{bytes, n, &name, d_rgb, pitch}, ...}, stream);     // a batch, on the JPEG engines
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kestrel::cuda {

// True when the bytes start like a JPEG file (the SOI marker FF D8 followed by a marker).
bool is_jpeg(const uint8_t* bytes, size_t size);

class JpegDecoder {
   public:
    JpegDecoder();
    ~JpegDecoder();
    JpegDecoder(const JpegDecoder&) = delete;
    JpegDecoder& operator=(const JpegDecoder&) = delete;

    struct Size {
        int width = 0, height = 0;
    };
    // The image size from the JPEG header. Throws "cannot decode <what>: ..." for a stream nvJPEG
    // cannot read, or one of other than 1 (grey) or 3 components.
    Size size(const uint8_t* bytes, size_t n, const std::string& what);
    // Decodes to RGB (grey replicated) at dst: device, height rows of `pitch` >= 3 * width bytes.
    // The host part (Huffman decoding) runs in the call; the rest is enqueued on `stream`.
    void decode(const uint8_t* bytes, size_t n, const std::string& what, uint8_t* dst, size_t pitch,
                cudaStream_t stream);

    // Several images, each as decode() does. Where the GPU has JPEG engines (A100, H100: nvJPEG's
    // hardware backend) the baseline JPEGs they take are decoded by them in one batched call; the
    // others (progressive, 4:1:0 / 4:1:1 chroma, non-JPEG bytes) and every image on other GPUs go
    // through decode(), one by one. Errors name the file, as decode()'s do.
    struct Job {
        const uint8_t* bytes = nullptr;
        size_t n = 0;
        const std::string* what = nullptr;
        uint8_t* dst = nullptr;
        size_t pitch = 0;
    };
    void decode_batch(const std::vector<Job>& jobs, cudaStream_t stream);
    // Whether decode_batch has the hardware decoder.
    bool hardware() const;

   private:
    void release_hardware();
    // Throws unless the header reads and rows of `pitch` bytes hold the image's RGB pixels.
    void check_destination(const uint8_t* bytes, size_t n, const std::string& what, size_t pitch);
    struct State;
    State* state_ = nullptr;
};

}  // namespace kestrel::cuda
