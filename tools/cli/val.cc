// `kestrel val`: Ultralytics' DetectionValidator over a YOLO dataset yaml. Each image goes through the val loader
// (long side to imgsz, letterbox without upscaling), the engine, and multi-label NMS (conf 0.001, IoU 0.7, 300 boxes);
// predictions and labels, both in original-image pixels, feed Ultralytics' metrics. Pose models are scored on
// their boxes. Prints what `yolo val` prints:
//
//   val: 100%|██████████| 128/128 [00:15<00:00,  8.41it/s]                 (stderr)
//                    Class     Images  Instances          P          R      mAP50  mAP50-95
//                      all        128        929      0.652      0.571      0.621      0.472
//                   person         61        254      ...
//   Speed: 2.1ms preprocess, 95.0ms inference, 1.0ms postprocess per image at shape (1, 3, 640, 640)
//   Results saved to runs/detect/val
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <span>

#include "cli/detections.h"
#include "cli/modes.h"
#include "cli/result_writers.h"
#include "cli/run_dir.h"
#include "core/error.h"
#include "kestrel/detector.h"
#include "yolo/dataset/dataset.h"
#include "yolo/metrics/detection_metrics.h"

namespace kestrel::cli {

namespace fs = std::filesystem;

namespace {

// tqdm's bar as Ultralytics configures it ("{l_bar}{bar:10}{r_bar}"), redrawn in place with '\r' on stderr at
// most every 0.1 s (tqdm's mininterval).
class ProgressBar {
   public:
    ProgressBar(std::string desc, size_t total) : desc_(std::move(desc)), total_(total) { draw(0); }

    void update(size_t n) {
        n_ = n;
        if (n == total_ || seconds(last_draw_) >= 0.1) draw(n);
    }
    // Ends the bar's line so that a warning can be printed; the next update redraws it.
    void break_line() {
        if (drawn_ > 0) std::cerr << "\n";
        drawn_ = 0;
    }
    void finish() {
        if (shown_ != n_ || drawn_ == 0) draw(n_);
        std::cerr << "\n" << std::flush;
    }

   private:
    using Clock = std::chrono::steady_clock;
    static double seconds(Clock::time_point since) {
        return std::chrono::duration<double>(Clock::now() - since).count();
    }
    // tqdm.format_interval: mm:ss, or h:mm:ss.
    static std::string interval(double t) {
        const int s = static_cast<int>(t), h = s / 3600, m = s / 60 % 60, sec = s % 60;
        char buf[32];
        if (h > 0)
            std::snprintf(buf, sizeof buf, "%d:%02d:%02d", h, m, sec);
        else
            std::snprintf(buf, sizeof buf, "%02d:%02d", m, sec);
        return buf;
    }

    void draw(size_t n) {
        const double elapsed = seconds(start_);
        const double frac = total_ > 0 ? static_cast<double>(n) / static_cast<double>(total_) : 1.0;
        // tqdm's Bar: full blocks, one partial block in eighths, then blanks.
        static const char* const kEighths[] = {" ", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
        const int eighths = static_cast<int>(frac * kWidth * 8);
        const int full = eighths / 8;
        std::string bar;
        for (int i = 0; i < full; ++i) bar += "█";
        if (full < kWidth) {
            bar += kEighths[eighths % 8];
            bar += std::string(static_cast<size_t>(kWidth - full - 1), ' ');
        }
        const double rate = elapsed > 0 && n > 0 ? static_cast<double>(n) / elapsed : 0.0;
        char rate_text[32];
        if (rate <= 0)
            std::snprintf(rate_text, sizeof rate_text, "?it/s");
        else if (rate < 1)
            std::snprintf(rate_text, sizeof rate_text, "%5.2fs/it", 1 / rate);
        else
            std::snprintf(rate_text, sizeof rate_text, "%5.2fit/s", rate);
        const std::string remaining = rate > 0 ? interval(static_cast<double>(total_ - n) / rate) : "?";
        char head[64];
        std::snprintf(head, sizeof head, "%s: %3.0f%%|", desc_.c_str(), frac * 100);
        std::string line = head + bar + "| " + std::to_string(n) + "/" + std::to_string(total_) + " [" +
                           interval(elapsed) + "<" + remaining + ", " + rate_text + "]";
        const size_t width = line.size();
        if (width < drawn_) line += std::string(drawn_ - width, ' ');  // blank out a longer previous line
        std::cerr << "\r" << line << std::flush;
        drawn_ = width;
        shown_ = n;
        last_draw_ = Clock::now();
    }

    static constexpr int kWidth = 10;
    std::string desc_;
    size_t total_;
    size_t n_ = 0;
    size_t shown_ = 0;  // the count on screen
    size_t drawn_ = 0;  // characters (bytes) of the line on screen
    Clock::time_point start_ = Clock::now();
    Clock::time_point last_draw_ = Clock::now();
};

// One results row: "%22s" + "%11i" * 2 + "%11.3g" * 4, Ultralytics' print_results format.
void print_row(const std::string& name, long images, long instances, double p, double r, double map50, double map) {
    std::printf("%22s%11ld%11ld%11.3g%11.3g%11.3g%11.3g\n", name.c_str(), images, instances, p, r, map50, map);
}

}  // namespace

int run_val(const Options& opts) {
    KS_CHECK(opts.has_value("model"), "val needs model=<file.engine or file.onnx>");
    KS_CHECK(opts.has_value("data"), "val needs data=<dataset.yaml>, i.e. data=coco8.yaml");
    // The dataset first: its errors are cheap to find, an engine may take seconds to load.
    const std::string data_path = opts.get_string("data");
    const yolo::DatasetConfig data = yolo::load_dataset_config(data_path);
    const std::string split = opts.get_string("split");
    const std::vector<std::string> files = yolo::split_image_files(data, split);

    auto engine = Engine::load(opts.get_string("model"));
    KS_CHECK(engine.ok(), engine.status().message());
    const ModelInfo& info = engine->info();
    KS_CHECK(info.task == "detect" || info.task == "pose", "val supports detect models (and pose models, scored on ",
             "their boxes); task '", info.task, "' is not supported yet");
    KS_CHECK(!opts.is_set("imgsz") || opts.get_imgsz() == info.imgsz, "imgsz=", opts.get_imgsz()[0], "x",
             opts.get_imgsz()[1], " differs from the engine's ", info.imgsz[0], "x", info.imgsz[1],
             "; re-export with that imgsz");
    auto predictor = Predictor::create(engine.value());
    KS_CHECK(predictor.ok(), predictor.status().message());

    // The label scan, reported as Ultralytics' cache step reports it.
    const yolo::LabelScan scan = yolo::scan_labels(files, data);
    const std::string labels_dir = fs::path(yolo::label_path(files.front())).parent_path().string();
    for (const std::string& w : scan.warnings) std::cerr << "val: " << w << "\n";
    std::cerr << "val: Scanning " << labels_dir << "... " << scan.found << " images, " << scan.backgrounds
              << " backgrounds, " << scan.corrupt << " corrupt\n";
    if (scan.found == 0) std::cerr << "val: WARNING ⚠️ No labels found in " << labels_dir << "\n";
    KS_CHECK(!scan.images.empty(), "no usable images in the ", split, " split of dataset '", data_path,
             "' (every label file is corrupt)");

    // DetectionValidator: multi-label NMS; agnostic only on request.
    PredictOptions po;
    po.conf = static_cast<float>(opts.get_float("conf"));
    po.iou = static_cast<float>(opts.get_float("iou"));
    po.max_det = opts.get_int("max_det");
    po.agnostic_nms = opts.get_bool("agnostic_nms");
    po.multi_label = true;
    po.val_letterbox = true;

    const bool is_coco = yolo::is_coco_split(data, split);
    const bool save_json = opts.get_bool("save_json") || is_coco;  // Ultralytics: save_json |= is_coco
    const bool save_txt = opts.get_bool("save_txt"), save_conf = opts.get_bool("save_conf");
    const std::string dir = run_dir(opts.has_value("project") ? opts.get_string("project") : "", info.task, "val",
                                    opts.has_value("name") ? opts.get_string("name") : "", opts.get_bool("exist_ok"));
    if (save_txt) fs::create_directories(fs::path(dir) / "labels");
    std::span<const int> class_map;
    if (is_coco) class_map = yolo::coco80_to_coco91_class();

    yolo::DetectionStats stats;
    Speed total;
    nlohmann::json records = nlohmann::json::array();
    ProgressBar bar("val", scan.images.size());
    try {
        for (size_t i = 0; i < scan.images.size(); ++i) {
            const yolo::ImageLabels& entry = scan.images[i];
            auto image = read_image(entry.image);
            if (!image.ok()) {
                // Ultralytics drops unreadable images when it scans the dataset; they are not counted.
                bar.break_line();
                std::cerr << "val: WARNING ⚠️ " << entry.image
                          << ": ignoring corrupt image/label: " << image.status().message() << "\n";
                bar.update(i + 1);
                continue;
            }
            auto p = predictor->predict(image.value(), po);
            KS_CHECK(p.ok(), p.status().message());
            total.preprocess_ms += p->speed.preprocess_ms;
            total.inference_ms += p->speed.inference_ms;
            total.postprocess_ms += p->speed.postprocess_ms;

            const yolo::ValLoadGeometry g =
                yolo::val_load_geometry(image->width, image->height, info.imgsz[0], info.imgsz[1]);
            std::vector<yolo::EvalBox> labels, preds;
            for (const yolo::LabelBox& l : entry.labels) {
                const yolo::PixelBox b = yolo::label_box_pixels(l, g, image->width, image->height);
                labels.push_back({b.x1, b.y1, b.x2, b.y2, l.cls, 0.0f});
            }
            for (const Detection& d : p->detections)
                preds.push_back({d.box.x1, d.box.y1, d.box.x2, d.box.y2, d.class_id, d.confidence});
            stats.add_image(preds, labels);

            if (save_json || save_txt) {
                const std::vector<Det> dets = to_dets(p.value());
                if (save_json)
                    for (auto& r : json_records(entry.image, dets, class_map)) records.push_back(std::move(r));
                if (save_txt && !dets.empty())
                    write_file_atomic(
                        (fs::path(dir) / "labels" / (fs::path(entry.image).stem().string() + ".txt")).string(),
                        labels_txt(dets, image->width, image->height, save_conf));
            }
            bar.update(i + 1);
        }
    } catch (...) {
        bar.break_line();  // the error message gets a line of its own
        throw;
    }
    bar.finish();
    const int seen = stats.images();
    KS_CHECK(seen > 0, "no image could be read from the ", split, " split of dataset '", data_path, "'");

    const yolo::DetectionMetrics m = stats.compute();
    std::printf("%22s%11s%11s%11s%11s%11s%10s\n", "Class", "Images", "Instances", "P", "R", "mAP50", "mAP50-95");
    print_row("all", seen, static_cast<long>(stats.instances()), m.precision, m.recall, m.map50, m.map50_95);
    if (stats.instances() == 0)
        std::printf("WARNING ⚠️ no labels found in %s set, can not compute metrics without labels\n",
                    info.task.c_str());
    // Ultralytics prints per-class rows when verbose, for a multi-class model, for the classes that have labels.
    if (opts.get_bool("verbose") && info.names.size() > 1) {
        for (const yolo::ClassMetrics& c : m.classes) {
            const auto id = static_cast<size_t>(c.class_id);
            const std::string name = id < info.names.size()   ? info.names[id]
                                     : id < data.names.size() ? data.names[id]
                                                              : std::to_string(c.class_id);
            print_row(name, stats.images_with(c.class_id), stats.instances_of(c.class_id), c.precision, c.recall,
                      c.ap50(), c.ap50_95());
        }
    }
    std::printf("Speed: %.1fms preprocess, %.1fms inference, %.1fms postprocess per image at shape (1, 3, %d, %d)\n",
                total.preprocess_ms / seen, total.inference_ms / seen, total.postprocess_ms / seen, info.imgsz[0],
                info.imgsz[1]);
    if (save_json) {
        const std::string json_path = (fs::path(dir) / "predictions.json").string();
        std::printf("Saving %s...\n", json_path.c_str());
        write_file_atomic(json_path, records.dump());
    }
    if (opts.get_bool("plots") || save_json) std::printf("Results saved to %s\n", dir.c_str());
    std::fflush(stdout);
    return 0;
}

}  // namespace kestrel::cli
