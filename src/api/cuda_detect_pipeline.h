// A whole detect batch on the GPU, on one CudaSession's stream:
//   image files (JPEG: nvJPEG; other formats: the CPU decoder, then uploaded) or decoded RGB images
//   -> letterbox kernel into the session's input slot i -> inference (CUDA graph) -> GPU NMS
//   -> only the kept boxes to the host, mapped to original-image pixels as the CPU path maps them.
// Given the same pixels, the detections are those of Predictor (CPU letterbox and NMS) on the same
// engine: the letterbox is bit-exact and the NMS does the CPU's float operations. JPEG files decoded
// by nvJPEG have slightly different pixels than libjpeg-turbo's (backends/cuda/jpeg_decoder.h).
//
// For CUDA detect engines (task detect, one output [batch, 4 + nc, anchors]); val's multi-label NMS
// and letterbox stay on the CPU. Not thread-safe: one pipeline per thread.
//
//   auto pipe = api::CudaDetectPipeline::open(engine);  // a loaded CUDA detect engine
//   std::vector<kestrel::Prediction> p = pipe->predict_files(bytes_of_each_file, names, options);
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kestrel/detector.h"
#include "kestrel/engine.h"

namespace kestrel::runtime {
class CudaModel;
}

namespace kestrel::api {

class CudaDetectPipeline {
   public:
    // The pipeline of a loaded CUDA engine (on its weights: nothing is uploaded again). Throws a
    // one-line kestrel::Error for a CPU engine or another task.
    static std::unique_ptr<CudaDetectPipeline> open(const Engine& engine);
    CudaDetectPipeline(std::shared_ptr<const runtime::CudaModel> model, const ModelInfo& info);
    ~CudaDetectPipeline();
    CudaDetectPipeline(const CudaDetectPipeline&) = delete;
    CudaDetectPipeline& operator=(const CudaDetectPipeline&) = delete;

    int min_batch() const { return info_.min_batch; }
    int max_batch() const { return info_.max_batch; }

    // One batch of encoded image files (their bytes; names for error messages). A file that starts
    // with a JPEG marker is decoded by nvJPEG, and an nvJPEG failure is an error (no fallback); any
    // other file goes to the CPU decoder (PNG; anything else is an error there). Errors are one-line
    // kestrel::Error naming the file. Speed: wall time per image of each stage (decode + letterbox,
    // inference, NMS), each stage waited for.
    std::vector<Prediction> predict_files(const std::vector<std::vector<uint8_t>>& files,
                                          const std::vector<std::string>& names, const PredictOptions& options);
    // Which decoder JPEG files went through (for reports): nvJPEG's hardware or hybrid backend.
    std::string jpeg_decoder() const;
    // One batch of decoded RGB images, uploaded.
    std::vector<Prediction> predict_images(const std::vector<const ImageRgb*>& images, const PredictOptions& options);

   private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
    ModelInfo info_;
};

}  // namespace kestrel::api
