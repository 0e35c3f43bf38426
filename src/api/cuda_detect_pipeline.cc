#include "api/cuda_detect_pipeline.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <utility>

#include "api/engine_internal.h"
#include "backends/cuda/jpeg_decoder.h"
#include "backends/cuda/letterbox.h"
#include "backends/cuda/nms.h"
#include "backends/cuda/tensors.h"
#include "core/error.h"
#include "runtime/cuda_session.h"
#include "yolo/image/image.h"
#include "yolo/preprocess/letterbox.h"

namespace kestrel::api {

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// A grow-only buffer, on the device or pinned on the host.
struct Buffer {
    uint8_t* data = nullptr;
    size_t bytes = 0;
    bool pinned = false;

    explicit Buffer(bool host_pinned) : pinned(host_pinned) {}
    ~Buffer() { release(); }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    Buffer(Buffer&& o) noexcept : data(o.data), bytes(o.bytes), pinned(o.pinned) { o.data = nullptr, o.bytes = 0; }

    void release() {
        if (data) pinned ? cudaFreeHost(data) : cudaFree(data);
        data = nullptr, bytes = 0;
    }
    uint8_t* reserve(size_t n) {
        if (n <= bytes) return data;
        release();
        void* p = nullptr;
        KS_CUDA(pinned ? cudaMallocHost(&p, n) : cudaMalloc(&p, n));
        data = static_cast<uint8_t*>(p), bytes = n;
        return data;
    }
};

}  // namespace

struct CudaDetectPipeline::Impl {
    std::shared_ptr<const runtime::CudaModel> model;
    runtime::CudaSession session;
    int channels = 0, anchors = 0, num_classes = 0;
    int in_h = 0, in_w = 0;
    cuda::DetectPostprocess post;
    std::unique_ptr<cuda::JpegDecoder> jpeg;  // made at the first JPEG: image-only use needs no nvJPEG
    std::vector<Buffer> device_images, staging;
    std::vector<cuda::LetterboxParams> geometry;

    Impl(std::shared_ptr<const runtime::CudaModel> m, int c, int a, int nc, int h, int w, int max_batch)
        : model(m), session(m), channels(c), anchors(a), num_classes(nc), in_h(h), in_w(w), post(max_batch, c, a, nc) {
        for (int i = 0; i < max_batch; ++i) device_images.emplace_back(false), staging.emplace_back(true);
        geometry.resize(static_cast<size_t>(max_batch));
    }

    float* input_slot(size_t i) { return session.device_input() + static_cast<int64_t>(i) * session.input_elements(); }

    // Uploads RGB pixels (through pinned staging, so the copy is asynchronous) and letterboxes them.
    void upload_and_letterbox(size_t i, const uint8_t* pixels, int width, int height) {
        const size_t bytes = static_cast<size_t>(width) * height * 3;
        uint8_t* host = staging[i].reserve(bytes);
        std::memcpy(host, pixels, bytes);
        uint8_t* dev = device_images[i].reserve(bytes);
        KS_CUDA(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, session.stream()));
        letterbox(i, dev, width, height);
    }
    void letterbox(size_t i, const uint8_t* dev, int width, int height) {
        geometry[i] = cuda::letterbox_params(width, height, in_h, in_w);
        cuda::letterbox_to_nchw(dev, static_cast<int64_t>(width) * 3, geometry[i], input_slot(i), session.stream());
    }

    // Inference and NMS of the `batch` letterboxed images; `pre_ms` is the time their preparation took.
    std::vector<Prediction> finish(int batch, const PredictOptions& opt, std::chrono::steady_clock::time_point t0) {
        KS_CUDA(cudaStreamSynchronize(session.stream()));
        const double pre_ms = ms_since(t0);
        auto t1 = std::chrono::steady_clock::now();
        session.enqueue(batch);
        KS_CUDA(cudaStreamSynchronize(session.stream()));
        const double infer_ms = ms_since(t1);
        auto t2 = std::chrono::steady_clock::now();
        cuda::NmsOptions nms{opt.conf, opt.iou, opt.max_det, opt.agnostic_nms};
        auto kept = post.run(session.device_output(0), batch, nms, opt.classes, session.stream());
        // Back to original-image pixels exactly as yolo::decode_detections does.
        std::vector<Prediction> out(static_cast<size_t>(batch));
        for (size_t i = 0; i < out.size(); ++i) {
            const cuda::LetterboxParams& g = geometry[i];
            const yolo::LetterboxTransform t{g.ratio, g.left, g.top, g.new_w, g.new_h};
            auto clip_x = [&](float x) { return std::clamp(x, 0.f, static_cast<float>(g.src_w)); };
            auto clip_y = [&](float y) { return std::clamp(y, 0.f, static_cast<float>(g.src_h)); };
            Prediction& p = out[i];
            p.width = g.src_w, p.height = g.src_h;
            for (const cuda::NmsResult& r : kept[i]) {
                Detection d;
                d.class_id = r.class_id;
                d.confidence = r.score;
                d.box = {clip_x(t.to_original_x(r.x1)), clip_y(t.to_original_y(r.y1)), clip_x(t.to_original_x(r.x2)),
                         clip_y(t.to_original_y(r.y2))};
                p.detections.push_back(d);
            }
        }
        const double post_ms = ms_since(t2);
        for (Prediction& p : out) p.speed = {pre_ms / batch, infer_ms / batch, post_ms / batch};
        return out;
    }
};

std::unique_ptr<CudaDetectPipeline> CudaDetectPipeline::open(const Engine& engine) {
    const ModelInfo& info = engine.info();
    std::shared_ptr<const runtime::CudaModel> model = cuda_model(engine);
    KS_CHECK(model != nullptr, "the GPU pipeline runs CUDA engines; this is a ", info.device, " engine");
    return std::make_unique<CudaDetectPipeline>(std::move(model), info);
}

CudaDetectPipeline::CudaDetectPipeline(std::shared_ptr<const runtime::CudaModel> model, const ModelInfo& info)
    : info_(info) {
    KS_CHECK(info.task == "detect", "the GPU pipeline runs detect models; this one is '", info.task, "'");
    KS_CHECK(info.outputs.size() == 1 && info.outputs[0].shape.size() == 3,
             "the GPU pipeline needs one detect output [batch, 4 + classes, anchors]");
    const auto& shape = info.outputs[0].shape;
    const int channels = static_cast<int>(shape[1]), anchors = static_cast<int>(shape[2]);
    KS_CHECK(channels > 4 && anchors > 0, "detect output [", shape[0], ", ", channels, ", ", anchors,
             "] has no class rows");
    impl_ = std::make_unique<Impl>(std::move(model), channels, anchors, channels - 4, info.imgsz[0], info.imgsz[1],
                                   info.max_batch);
    KS_CHECK(impl_->session.input_elements() == 3LL * info.imgsz[0] * info.imgsz[1], "the engine's input is not 3 x ",
             info.imgsz[0], " x ", info.imgsz[1]);
}

CudaDetectPipeline::~CudaDetectPipeline() = default;

std::string CudaDetectPipeline::jpeg_decoder() const {
    if (!impl_->jpeg) return "none yet (no JPEG file seen)";
    return impl_->jpeg->hardware() ? "nvJPEG hardware (the GPU's JPEG engines, one batched call)"
                                   : "nvJPEG hybrid (CPU Huffman + GPU IDCT, one image at a time)";
}

std::vector<Prediction> CudaDetectPipeline::predict_files(const std::vector<std::vector<uint8_t>>& files,
                                                          const std::vector<std::string>& names,
                                                          const PredictOptions& options) {
    const int batch = static_cast<int>(files.size());
    KS_CHECK(batch >= info_.min_batch && batch <= info_.max_batch, "batch ", batch, " is outside the engine's profile ",
             info_.min_batch, "..", info_.max_batch);
    KS_CHECK(names.size() == files.size(), "predict_files: ", names.size(), " names for ", files.size(), " files");
    KS_CHECK(!options.multi_label && !options.val_letterbox,
             "the GPU pipeline does not do multi-label NMS or val's letterbox; run those through Predictor");
    Impl& m = *impl_;
    KS_CUDA(cudaSetDevice(m.model->device()));
    auto t0 = std::chrono::steady_clock::now();
    // The JPEG files are decoded together (one batched call on the GPU's JPEG engines where it has
    // them), then letterboxed; the other files one by one on the CPU meanwhile.
    std::vector<cuda::JpegDecoder::Job> jobs;
    std::vector<std::pair<size_t, cuda::JpegDecoder::Size>> jpegs;  // slot, image size
    for (size_t i = 0; i < files.size(); ++i) {
        const std::vector<uint8_t>& f = files[i];
        if (cuda::is_jpeg(f.data(), f.size())) {
            if (!m.jpeg) m.jpeg = std::make_unique<cuda::JpegDecoder>();
            const cuda::JpegDecoder::Size s = m.jpeg->size(f.data(), f.size(), names[i]);
            const size_t pitch = static_cast<size_t>(s.width) * 3;
            jobs.push_back({f.data(), f.size(), &names[i], m.device_images[i].reserve(pitch * s.height), pitch});
            jpegs.emplace_back(i, s);
        } else {
            const yolo::Image im = yolo::decode_image(f.data(), f.size(), names[i]);
            m.upload_and_letterbox(i, im.data.data(), im.width, im.height);
        }
    }
    if (!jobs.empty()) m.jpeg->decode_batch(jobs, m.session.stream());
    for (size_t k = 0; k < jpegs.size(); ++k)
        m.letterbox(jpegs[k].first, jobs[k].dst, jpegs[k].second.width, jpegs[k].second.height);
    return m.finish(batch, options, t0);
}

std::vector<Prediction> CudaDetectPipeline::predict_images(const std::vector<const ImageRgb*>& images,
                                                           const PredictOptions& options) {
    const int batch = static_cast<int>(images.size());
    KS_CHECK(batch >= info_.min_batch && batch <= info_.max_batch, "batch ", batch, " is outside the engine's profile ",
             info_.min_batch, "..", info_.max_batch);
    KS_CHECK(!options.multi_label && !options.val_letterbox,
             "the GPU pipeline does not do multi-label NMS or val's letterbox; run those through Predictor");
    Impl& m = *impl_;
    KS_CUDA(cudaSetDevice(m.model->device()));
    auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < images.size(); ++i) {
        const ImageRgb& im = *images[i];
        KS_CHECK(im.width > 0 && im.height > 0 && im.pixels.size() == static_cast<size_t>(im.width) * im.height * 3,
                 "invalid image buffer");
        m.upload_and_letterbox(i, im.pixels.data(), im.width, im.height);
    }
    return m.finish(batch, options, t0);
}

}  // namespace kestrel::api
