#include <algorithm>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>

#include "api/cuda_detect_pipeline.h"
#include "cli/detections.h"
#include "cli/modes.h"
#include "cli/result_writers.h"
#include "cli/run_dir.h"
#include "core/error.h"
#include "kestrel/detector.h"

namespace kestrel::cli {

namespace fs = std::filesystem;

namespace {

bool is_image_file(const fs::path& p) {
    std::string e = p.extension().string();
    std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (const char* x : {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm"})
        if (e == x) return true;
    return false;
}

std::vector<std::string> list_sources(const std::string& source) {
    std::error_code ec;
    KS_CHECK(fs::exists(source, ec), "source '", source, "' does not exist");
    if (!fs::is_directory(source, ec)) return {source};
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(source, ec))
        if (e.is_regular_file() && is_image_file(e.path())) files.push_back(e.path().string());
    std::sort(files.begin(), files.end());
    KS_CHECK(!files.empty(), "no images found in '", source, "'");
    return files;
}

std::string summary(const Prediction& p, const ModelInfo& info) {
    if (!p.top5.empty()) {
        std::string s;
        for (const auto& c : p.top5) {
            char buf[32];
            std::snprintf(buf, sizeof buf, " %.2f, ", static_cast<double>(c.score));
            s += info.names.at(static_cast<size_t>(c.class_id)) + buf;
        }
        return s;
    }
    if (p.detections.empty()) return "(no detections), ";
    std::map<int, int> counts;
    for (const auto& d : p.detections) counts[d.class_id]++;
    std::string s;
    for (auto [c, n] : counts)
        s += std::to_string(n) + " " + info.names.at(static_cast<size_t>(c)) + (n > 1 ? "s" : "") + ", ";
    return s;
}

}  // namespace

int run_predict(const Options& opts) {
    KS_CHECK(opts.has_value("model"), "predict needs model=<file.engine or file.onnx>");
    KS_CHECK(opts.has_value("source"), "predict needs source=<image or folder>");
    auto engine = Engine::load(opts.get_string("model"));
    KS_CHECK(engine.ok(), engine.status().message());
    const ModelInfo& info = engine->info();
    KS_CHECK(!opts.is_set("imgsz") || opts.get_imgsz() == info.imgsz, "imgsz=", opts.get_imgsz()[0], "x",
             opts.get_imgsz()[1], " differs from the engine's ", info.imgsz[0], "x", info.imgsz[1],
             "; re-export with that imgsz");
    // CUDA detect engines run letterbox and NMS on the GPU too (api::CudaDetectPipeline), giving the
    // detections of Predictor's CPU letterbox and NMS; every other engine runs through Predictor.
    std::unique_ptr<api::CudaDetectPipeline> pipeline;
    std::optional<Predictor> predictor;
    if (info.device.rfind("cuda:", 0) == 0 && info.task == "detect") {
        pipeline = api::CudaDetectPipeline::open(engine.value());
    } else {
        auto created = Predictor::create(engine.value());
        KS_CHECK(created.ok(), created.status().message());
        predictor.emplace(std::move(created).value());
    }
    auto files = list_sources(opts.get_string("source"));

    PredictOptions po;
    po.conf = opts.is_set("conf") ? static_cast<float>(opts.get_float("conf")) : 0.25f;
    po.iou = static_cast<float>(opts.get_float("iou"));
    po.max_det = opts.get_int("max_det");
    if (opts.has_value("classes")) po.classes = opts.get_int_list("classes");
    po.agnostic_nms = opts.get_bool("agnostic_nms");
    bool save = opts.get_bool("save"), save_txt = opts.get_bool("save_txt"), save_conf = opts.get_bool("save_conf");
    bool save_json = opts.get_bool("save_json");
    PlotOptions plot;
    plot.labels = opts.get_bool("show_labels");
    plot.conf = opts.get_bool("show_conf");
    plot.boxes = opts.get_bool("show_boxes");
    if (opts.has_value("line_width")) plot.line_width = opts.get_int("line_width");

    std::string dir;
    if (save || save_txt || save_json)
        dir = run_dir(opts.has_value("project") ? opts.get_string("project") : "", info.task, "predict",
                      opts.has_value("name") ? opts.get_string("name") : "", opts.get_bool("exist_ok"));
    if (save_txt) fs::create_directories(fs::path(dir) / "labels");

    Speed total;
    int done = 0;
    nlohmann::json records = nlohmann::json::array();
    for (size_t i = 0; i < files.size(); ++i) {
        const std::string& f = files[i];
        auto image = read_image(f);
        if (!image.ok()) {
            KS_CHECK(files.size() > 1, image.status().message());
            std::cerr << "WARNING ⚠️ skipping " << image.status().message() << "\n";
            continue;
        }
        Result<Prediction> p = predictor ? predictor->predict(image.value(), po)
                                         : Result<Prediction>(pipeline->predict_images({&image.value()}, po).at(0));
        KS_CHECK(p.ok(), p.status().message());
        printf("image %zu/%zu %s: %dx%d %s%.1fms\n", i + 1, files.size(), fs::absolute(f).string().c_str(),
               info.imgsz[0], info.imgsz[1], summary(p.value(), info).c_str(), p->speed.inference_ms);
        std::fflush(stdout);
        total.preprocess_ms += p->speed.preprocess_ms;
        total.inference_ms += p->speed.inference_ms;
        total.postprocess_ms += p->speed.postprocess_ms;
        ++done;
        std::string name = fs::path(f).filename().string();
        if (save) {
            fs::path out = fs::path(dir) / name;
            if (out.extension() != ".jpg" && out.extension() != ".jpeg") out.replace_extension(".jpg");
            Status st = save_annotated(image.value(), p.value(), info, plot, out.string());
            KS_CHECK(st.ok(), st.message());
        }
        auto dets = to_dets(p.value());
        if (save_txt && !dets.empty())
            write_file_atomic((fs::path(dir) / "labels" / (fs::path(f).stem().string() + ".txt")).string(),
                              labels_txt(dets, image->width, image->height, save_conf));
        if (save_json)
            for (auto& r : json_records(f, dets)) records.push_back(std::move(r));
    }
    KS_CHECK(done > 0, "no image could be read from '", opts.get_string("source"), "'");
    if (save_json) write_file_atomic((fs::path(dir) / "predictions.json").string(), records.dump());
    printf("Speed: %.1fms preprocess, %.1fms inference, %.1fms postprocess per image at shape (1, 3, %d, %d)\n",
           total.preprocess_ms / done, total.inference_ms / done, total.postprocess_ms / done, info.imgsz[0],
           info.imgsz[1]);
    if (!dir.empty()) std::cout << "Results saved to " << dir << "\n";
    if (save_txt) std::cout << done << " labels saved to " << (fs::path(dir) / "labels").string() << "\n";
    return 0;
}

}  // namespace kestrel::cli
