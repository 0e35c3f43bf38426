// The public Predictor: letterbox -> session -> decode/NMS, and Ultralytics-style plotting.
#include <chrono>
#include <cmath>
#include <cstdio>

#include "core/error.h"
#include "kestrel/detector.h"
#include "yolo/dataset/dataset.h"
#include "yolo/draw/annotate.h"
#include "yolo/image/image.h"
#include "yolo/preprocess/letterbox.h"
#include "yolo/tasks/postprocess.h"

namespace kestrel {

struct Predictor::Impl {
    Engine engine;
    Session session;
    yolo::DecodeLayout layout;
    std::vector<float> input;
    std::vector<std::vector<float>> outputs;
};

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

yolo::Image to_image(const ImageRgb& im) { return yolo::Image{im.width, im.height, im.pixels}; }

// Ultralytics' val loader: load_image resizes the long side to imgsz (INTER_AREA when shrinking, INTER_LINEAR
// when enlarging), then LetterBox(scaleup=False) pads it. Boxes map back with the validator's ratio_pad, whose
// gain is load_image's height ratio, so the transform's scale is that gain rather than the letterbox ratio.
yolo::LetterboxTransform val_letterbox_to_tensor(const yolo::Image& src, int out_h, int out_w, float* dst) {
    const yolo::ValLoadGeometry g = yolo::val_load_geometry(src.width, src.height, out_h, out_w);
    yolo::LetterboxTransform tr;
    if (g.resize) {
        const yolo::Image loaded =
            g.shrink ? yolo::resize_area(src, g.width, g.height) : yolo::resize_linear(src, g.width, g.height);
        tr = yolo::letterbox_to_tensor(loaded, out_h, out_w, dst);
    } else {
        tr = yolo::letterbox_to_tensor(src, out_h, out_w, dst);
    }
    tr.scale = static_cast<float>(g.scale);
    return tr;
}

}  // namespace

Result<ImageRgb> read_image(const std::string& path) {
    try {
        yolo::Image im = yolo::read_image(path);
        return ImageRgb{im.width, im.height, std::move(im.data)};
    } catch (const Error& e) {
        return Status::Error(e.what());
    }
}

Result<Predictor> Predictor::create(const Engine& engine) {
    const ModelInfo& info = engine.info();
    auto session = Session::create(engine);
    if (!session.ok()) return session.status();
    yolo::DecodeLayout L;
    const auto& out0 = info.outputs.at(0).shape;
    if (info.task == "classify") {
        if (out0.size() != 2) return Status::Error("classify model output must be 2-D");
        L.num_classes = static_cast<int>(out0[1]);
    } else {
        if (out0.size() != 3) return Status::Error("detection model output0 must be 3-D (batch, channels, anchors)");
        if (info.task == "obb") return Status::Error("task 'obb' is not supported yet");
        L.channels = static_cast<int>(out0[1]);
        L.anchors = static_cast<int>(out0[2]);
        int extra = 0;
        if (info.task == "segment") extra = static_cast<int>(info.outputs.size() > 1 ? info.outputs[1].shape[1] : 32);
        if (info.task == "pose") {
            if (info.kpt_shape.size() != 2) return Status::Error("pose model metadata lacks kpt_shape");
            L.num_keypoints = info.kpt_shape[0];
            L.keypoint_dims = info.kpt_shape[1];
            extra = L.num_keypoints * L.keypoint_dims;
        }
        L.num_classes = L.channels - 4 - extra;
        if (L.num_classes <= 0) return Status::Error("output0 has too few channels for task '" + info.task + "'");
    }
    auto impl = std::make_shared<Impl>(Impl{engine, std::move(session.value()), L, {}, {}});
    impl->input.resize(static_cast<size_t>(3 * info.imgsz[0] * info.imgsz[1]));
    return Predictor(impl);
}

const ModelInfo& Predictor::info() const { return impl_->engine.info(); }

Result<Prediction> Predictor::predict(const ImageRgb& image, const PredictOptions& opt) {
    const ModelInfo& info = impl_->engine.info();
    if (image.width <= 0 || image.height <= 0 || image.pixels.size() != static_cast<size_t>(image.width) * image.height * 3)
        return Status::Error("invalid image buffer");
    Prediction p;
    p.width = image.width;
    p.height = image.height;
    try {
        auto t0 = std::chrono::steady_clock::now();
        yolo::LetterboxTransform tr;
        if (info.task == "classify") {
            // Ultralytics' classify transform: resize the short side to imgsz, centre crop, RGB 0..1.
            yolo::Image src = to_image(image);
            int size = info.imgsz[0];
            float s = static_cast<float>(size) / static_cast<float>(std::min(image.width, image.height));
            int w = std::max(size, static_cast<int>(std::lround(image.width * s)));
            int h = std::max(size, static_cast<int>(std::lround(image.height * s)));
            yolo::Image r = yolo::resize_linear(src, w, h);
            int x0 = (w - size) / 2, y0 = (h - size) / 2;
            for (int c = 0; c < 3; ++c)
                for (int y = 0; y < size; ++y)
                    for (int x = 0; x < size; ++x)
                        impl_->input[static_cast<size_t>((c * size + y) * size + x)] = r.pixel(x0 + x, y0 + y)[c] / 255.0f;
        } else if (opt.val_letterbox) {
            tr = val_letterbox_to_tensor(to_image(image), info.imgsz[0], info.imgsz[1], impl_->input.data());
        } else {
            tr = yolo::letterbox_to_tensor(to_image(image), info.imgsz[0], info.imgsz[1], impl_->input.data());
        }
        p.speed.preprocess_ms = ms_since(t0);
        t0 = std::chrono::steady_clock::now();
        Status st = impl_->session.run(impl_->input.data(), 1, &impl_->outputs);
        if (!st.ok()) return st;
        p.speed.inference_ms = ms_since(t0);
        t0 = std::chrono::steady_clock::now();
        if (info.task == "classify")
            p.top5 = yolo::decode_top5(impl_->outputs[0].data(), impl_->layout.num_classes);
        else
            p.detections = yolo::decode_detections(impl_->outputs[0].data(), impl_->layout, opt, tr, image.width, image.height);
        p.speed.postprocess_ms = ms_since(t0);
    } catch (const Error& e) {
        return Status::Error(e.what());
    }
    return p;
}

Result<Prediction> Predictor::predict_file(const std::string& path, const PredictOptions& opt) {
    auto im = read_image(path);
    if (!im.ok()) return im.status();
    return predict(im.value(), opt);
}

Status save_annotated(const ImageRgb& image, const Prediction& pred, const ModelInfo& info, const PlotOptions& opt,
                      const std::string& path) {
    try {
        yolo::Image im = to_image(image);
        int lw = opt.line_width > 0 ? opt.line_width : yolo::default_line_width(im);
        for (const Detection& d : pred.detections) {
            yolo::Rgb color = yolo::palette_color(d.class_id);
            if (opt.boxes) yolo::draw_box(im, d.box.x1, d.box.y1, d.box.x2, d.box.y2, color, lw);
            if (opt.labels) {
                std::string label = d.class_id < static_cast<int>(info.names.size()) ? info.names[static_cast<size_t>(d.class_id)]
                                                                                       : std::to_string(d.class_id);
                if (opt.conf) {
                    char buf[16];
                    std::snprintf(buf, sizeof buf, " %.2f", static_cast<double>(d.confidence));
                    label += buf;
                }
                yolo::draw_label(im, d.box.x1, d.box.y1, label, color, lw);
            }
            if (!d.keypoints.empty()) {
                std::vector<yolo::Keypoint> kps;
                for (const Keypoint& k : d.keypoints) kps.push_back({k.x, k.y, k.confidence});
                yolo::draw_keypoints(im, kps, lw);
            }
        }
        if (!pred.top5.empty()) {
            int y = 10;
            for (const ClassScore& c : pred.top5) {
                char buf[96];
                std::snprintf(buf, sizeof buf, "%s %.2f",
                              c.class_id < static_cast<int>(info.names.size()) ? info.names[static_cast<size_t>(c.class_id)].c_str() : "?",
                              static_cast<double>(c.score));
                yolo::draw_label(im, 10, static_cast<float>(y + 30), buf, yolo::Rgb{255, 255, 255}, lw);
                y += 30;
            }
        }
        yolo::write_jpeg(path, im, 95);
    } catch (const Error& e) {
        return Status::Error(e.what());
    }
    return Status::Ok();
}

}  // namespace kestrel
