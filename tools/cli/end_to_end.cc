#include "cli/end_to_end.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "api/cuda_detect_pipeline.h"
#include "core/error.h"
#include "yolo/image/image.h"

namespace kestrel::cli {

namespace fs = std::filesystem;

namespace {

std::vector<std::string> image_files(const std::string& source) {
    std::error_code ec;
    KS_CHECK(fs::exists(source, ec), "source '", source, "' does not exist");
    if (!fs::is_directory(source, ec)) return {source};
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(source, ec))
        if (e.is_regular_file() && yolo::has_image_extension(e.path().string())) files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    KS_CHECK(!files.empty(), "no images found in '", source, "'");
    return files;
}

std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    KS_CHECK(f, "cannot read '", path, "'");
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

}  // namespace

void benchmark_end_to_end(const Options& opts, const Engine& engine, const std::vector<int>& batches) {
    const ModelInfo& info = engine.info();
    if (info.device.rfind("cuda:", 0) != 0) return;  // CPU engines: the compute table is the whole story
    if (info.task != "detect") {
        std::printf("\nEnd-to-end: the GPU pipeline runs detect engines; none for task '%s'\n", info.task.c_str());
        return;
    }
    if (!opts.has_value("source")) {
        std::printf("\nEnd-to-end (image files -> boxes on the GPU): give source=<image or folder> to measure it\n");
        return;
    }
    const std::string source = opts.get_string("source");
    const std::vector<std::string> paths = image_files(source);
    std::vector<std::vector<uint8_t>> files;
    size_t bytes = 0;
    for (const std::string& p : paths) {
        files.push_back(read_bytes(p));
        bytes += files.back().size();
    }
    auto pipeline = api::CudaDetectPipeline::open(engine);
    PredictOptions po;
    po.conf = opts.has_value("conf") ? static_cast<float>(opts.get_float("conf")) : 0.25f;
    po.iou = static_cast<float>(opts.get_float("iou"));
    po.max_det = opts.get_int("max_det");

    std::printf(
        "\nEnd-to-end: %zu files from %s (%.1f MB, read into memory first) -> boxes on the host: nvJPEG decode "
        "(other formats: CPU decode + upload), letterbox kernel, inference, GPU NMS (conf %.3g, iou %.3g); wall "
        "time, one batch at a time, each stage waited for\n",
        files.size(), source.c_str(), static_cast<double>(bytes) / 1e6, static_cast<double>(po.conf),
        static_cast<double>(po.iou));
    std::printf("%8s %8s %12s %14s %14s %12s %12s %10s\n", "batch", "batches", "ms/batch", "images/s", "decode+lb ms",
                "infer ms", "nms ms", "boxes/img");
    for (int b : batches) {
        // Every file at least once and at least 256 images, the files in turn; two batches of warm-up
        // (nvJPEG's and the session's buffers, the CUDA graph of this batch size).
        const size_t images = std::max<size_t>(files.size(), 256);
        const size_t count = std::max<size_t>(3, (images + static_cast<size_t>(b) - 1) / static_cast<size_t>(b));
        std::vector<std::vector<std::vector<uint8_t>>> batch_files(count);
        std::vector<std::vector<std::string>> batch_names(count);
        for (size_t k = 0; k < count; ++k)
            for (size_t j = 0; j < static_cast<size_t>(b); ++j) {
                const size_t f = (k * static_cast<size_t>(b) + j) % files.size();
                batch_files[k].push_back(files[f]);
                batch_names[k].push_back(paths[f]);
            }
        for (size_t k = 0; k < std::min<size_t>(2, count); ++k)
            pipeline->predict_files(batch_files[k], batch_names[k], po);
        double pre = 0, infer = 0, post = 0;
        size_t boxes = 0;
        const auto t0 = std::chrono::steady_clock::now();
        for (size_t k = 0; k < count; ++k) {
            for (const Prediction& p : pipeline->predict_files(batch_files[k], batch_names[k], po)) {
                pre += p.speed.preprocess_ms, infer += p.speed.inference_ms, post += p.speed.postprocess_ms;
                boxes += p.detections.size();
            }
        }
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        const double n = static_cast<double>(count);
        std::printf("%8d %8zu %12.3f %14.1f %14.3f %12.3f %12.3f %10.2f\n", b, count, ms / n, 1000.0 * n * b / ms,
                    pre / n, infer / n, post / n, static_cast<double>(boxes) / (n * b));
        std::fflush(stdout);
    }
    std::printf("JPEG decoder: %s\n", pipeline->jpeg_decoder().c_str());
}

}  // namespace kestrel::cli
