// YOLO on top of an engine: letterbox, inference, decode, NMS, boxes in original-image pixels.
//
//   auto engine = kestrel::Engine::load("yolov8n.engine");
//   auto predictor = kestrel::Predictor::create(*engine);
//   kestrel::PredictOptions opt;                      // conf 0.25, iou 0.7, max_det 300, as Ultralytics
//   auto r = predictor->predict_file("bus.jpg", opt);
//   for (const auto& d : r->detections) printf("%s %.2f\n", engine->info().names[d.class_id].c_str(), d.confidence);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kestrel/engine.h"
#include "kestrel/status.h"

namespace kestrel {

struct Box {
    float x1 = 0, y1 = 0, x2 = 0, y2 = 0;  // original-image pixels
};

struct Keypoint {
    float x = 0, y = 0, confidence = 0;
};

struct Detection {
    int class_id = 0;
    float confidence = 0;
    Box box;
    std::vector<Keypoint> keypoints;  // pose only
};

struct ClassScore {
    int class_id = 0;
    float score = 0;
};

struct Speed {
    double preprocess_ms = 0, inference_ms = 0, postprocess_ms = 0;
};

struct Prediction {
    int width = 0, height = 0;            // original image size
    std::vector<Detection> detections;    // detect / segment (boxes) / pose, by decreasing confidence
    std::vector<ClassScore> top5;         // classify
    Speed speed;
};

struct PredictOptions {
    float conf = 0.25f;
    float iou = 0.7f;
    int max_det = 300;
    std::vector<int> classes;   // keep only these class ids (empty: all)
    bool agnostic_nms = false;
    bool multi_label = false;   // one box per class above conf (as `val`)
    // Ultralytics' val loader: long side to imgsz with INTER_AREA, then letterbox without upscaling.
    bool val_letterbox = false;
};

// An RGB 8-bit image in memory, row-major interleaved.
struct ImageRgb {
    int width = 0, height = 0;
    std::vector<uint8_t> pixels;
};

Result<ImageRgb> read_image(const std::string& path);

class Predictor {
   public:
    static Result<Predictor> create(const Engine& engine);
    Result<Prediction> predict(const ImageRgb& image, const PredictOptions& options);
    Result<Prediction> predict_file(const std::string& path, const PredictOptions& options);
    const ModelInfo& info() const;

    struct Impl;

   private:
    explicit Predictor(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<Impl> impl_;
};

struct PlotOptions {
    bool labels = true, conf = true, boxes = true;
    int line_width = 0;  // 0: from the image size, as Ultralytics
};

// Draws a prediction as Ultralytics' Results.plot() and writes it as JPEG (atomically).
Status save_annotated(const ImageRgb& image, const Prediction& prediction, const ModelInfo& info,
                      const PlotOptions& options, const std::string& path);

}  // namespace kestrel
