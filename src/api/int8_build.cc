#include "api/int8_build.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <sstream>

#include "core/error.h"
#include "core/logging.h"
#include "engine/engine_file.h"
#include "plan/execution_plan.h"
#include "quant/calibration_cache.h"
#include "quant/calibrators.h"
#include "quant/histogram.h"
#include "quant/precision_policy.h"
#include "runtime/session.h"
#include "yolo/dataset/dataset.h"
#include "yolo/image/image.h"
#include "yolo/preprocess/letterbox.h"

namespace kestrel::api {

namespace fs = std::filesystem;

namespace {

// Calibration images used for the per-layer sensitivity analysis.
constexpr int kSensitivityImages = 8;
// A layer whose error alone exceeds this multiple of the median layer's stays float.
constexpr double kSensitivityOutlier = 4.0;

std::string hex64(uint64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

std::string file_fingerprint(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    std::string s = ss.str();
    return hex64(engine::fnv1a64(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}

// The calibration images: their paths and sizes (a changed, added or removed image changes it).
std::string dataset_fingerprint(const std::vector<std::string>& files) {
    std::string all;
    for (const auto& f : files) {
        std::error_code ec;
        all += fs::absolute(f).string() + ":" + std::to_string(fs::file_size(f, ec)) + "\n";
    }
    return hex64(engine::fnv1a64(reinterpret_cast<const uint8_t*>(all.data()), all.size()));
}

void progress(size_t done, size_t total) {
    int width = 30, fill = total ? static_cast<int>(width * done / total) : width;
    std::fprintf(stderr, "\rKestrel INT8 calibration: %3d%%|%s%s| %zu/%zu",
                 total ? static_cast<int>(100 * done / total) : 100,
                 std::string(static_cast<size_t>(fill), '#').c_str(),
                 std::string(static_cast<size_t>(width - fill), ' ').c_str(), done, total);
    if (done == total) std::fprintf(stderr, "\n");
    std::fflush(stderr);
}

}  // namespace

std::string default_calibration_yaml() {
    std::vector<fs::path> dirs;
    if (const char* env = std::getenv("KESTREL_DATASETS_DIR")) dirs.emplace_back(env);
    dirs.emplace_back("datasets");
    dirs.emplace_back("../shared/datasets");
    for (const auto& d : dirs) {
        fs::path p = d / "coco128" / "coco128.yaml";
        std::error_code ec;
        if (fs::is_regular_file(p, ec)) return p.string();
    }
    KS_FAIL(
        "int8=True needs calibration data: give data=<dataset.yaml> (coco128.yaml was not found in "
        "$KESTREL_DATASETS_DIR, ./datasets or ../shared/datasets)");
}

int quantize_int8(ir::Graph& g, const Int8BuildOptions& o) {
    quant::CalibrationAlgorithm algo = quant::parse_algorithm(o.algorithm);
    std::string yaml = o.data_yaml;
    if (yaml.empty()) {
        yaml = default_calibration_yaml();
        log_warning("int8=True without data=: calibrating on " + yaml);
    }
    yolo::DatasetConfig data = yolo::load_dataset_config(yaml);
    std::vector<std::string> files = yolo::split_image_files(data, "val");
    // The calibration batch as Ultralytics' TensorRT export: 2x the export batch, batch 1 as 4.
    int calib_batch = 2 * (o.batch == 1 ? 4 : o.batch);

    std::vector<int> values = quant::calibration_values(g);
    const ir::Value& input = g.value(g.inputs[0]);
    std::map<std::string, std::string> meta = {
        {std::string(quant::kMetaModelFingerprint), file_fingerprint(o.model_path)},
        {std::string(quant::kMetaDatasetFingerprint), dataset_fingerprint(files)},
        {std::string(quant::kMetaImgsz), std::to_string(input.shape[2]) + "x" + std::to_string(input.shape[3])},
        {std::string(quant::kMetaCalibrationBatch), std::to_string(calib_batch)}};

    std::map<std::string, float> scales;
    std::error_code ec;
    if (fs::exists(o.cache_path, ec)) {
        try {
            quant::CalibrationCache cache = quant::read_cache(o.cache_path);
            // A cache without Kestrel's sidecar was written by TensorRT (or by hand): trust its tensor names.
            bool foreign = cache.kestrel_meta.empty();
            quant::validate_cache(cache, algo, meta, foreign);
            for (const auto& [name, s] : cache.scales) scales[name] = s;
            for (int v : values)
                KS_CHECK(scales.count(g.value(v).name), "it has no scale for tensor '", g.value(v).name, "'");
            if (foreign) log_warning("using calibration cache " + o.cache_path + " as written (no Kestrel metadata)");
            if (o.log) *o.log << "Kestrel: reusing calibration cache " << o.cache_path << "\n";
        } catch (const Error& e) {
            log_warning("calibration cache " + o.cache_path + " does not match this export (" + e.what() +
                        "); recalibrating");
            scales.clear();
        }
    }

    if (scales.empty()) {
        auto fp32 = std::make_shared<plan::ExecutionPlan>(plan::build(g));
        int64_t need = fp32->arena_bytes + static_cast<int64_t>(calib_batch) * 3 * input.shape[2] * input.shape[3] * 4;
        KS_CHECK(static_cast<double>(need) / (1 << 30) <= o.workspace_gib, "workspace=", o.workspace_gib,
                 " GiB is too small for calibration at batch ", calib_batch);
        runtime::Session session(fp32);
        std::map<int, quant::AbsHistogram> hist;
        for (int v : values) hist.emplace(v, quant::AbsHistogram());
        session.set_observer([&](int v, const uint8_t* data) {
            auto it = hist.find(v);
            if (it == hist.end()) return;
            size_t n = static_cast<size_t>(fp32->values[static_cast<size_t>(v)].bytes / 4);
            it->second.add(reinterpret_cast<const float*>(data), n);
        });
        std::cerr << "Kestrel: INT8 calibration with " << o.algorithm << " on " << files.size() << " images from "
                  << yaml << " (batch " << calib_batch << ")\n";
        int64_t per_image = 3 * input.shape[2] * input.shape[3];
        std::vector<float> batch(static_cast<size_t>(calib_batch * per_image));
        std::vector<float> out0(static_cast<size_t>(num_elements(g.value(g.outputs[0]).shape) * calib_batch));
        std::vector<std::vector<float>> outs;
        for (int k : g.outputs) outs.emplace_back(static_cast<size_t>(num_elements(g.value(k).shape) * calib_batch));
        std::vector<float*> out_ptrs;
        for (auto& v : outs) out_ptrs.push_back(v.data());
        size_t done = 0, used = 0;
        progress(0, files.size());
        for (size_t i = 0; i < files.size(); i += static_cast<size_t>(calib_batch)) {
            int n = 0;
            for (size_t j = i; j < std::min(files.size(), i + calib_batch); ++j) {
                try {
                    yolo::Image im = yolo::read_image(files[j]);
                    yolo::letterbox_to_tensor(im, static_cast<int>(input.shape[2]), static_cast<int>(input.shape[3]),
                                              batch.data() + n * per_image);
                    ++n;
                } catch (const Error& e) {
                    log_warning(std::string("skipping calibration image: ") + e.what());
                }
            }
            if (n) session.run(batch.data(), n, out_ptrs);
            used += static_cast<size_t>(n);
            done = std::min(files.size(), i + calib_batch);
            progress(done, files.size());
        }
        KS_CHECK(used > 0, "no calibration image could be read from ", yaml);
        quant::CalibrationCache cache;
        cache.algorithm = algo;
        cache.kestrel_meta = meta;
        for (int v : values) {
            float amax = quant::compute_amax(hist.at(v), algo);
            if (amax <= 0) continue;  // an all-zero tensor: its conv stays float
            float s = quant::scale_from_amax(amax);
            scales[g.value(v).name] = s;
            cache.scales.emplace_back(g.value(v).name, s);
        }
        quant::write_cache(o.cache_path, cache);
        if (o.log) *o.log << "Kestrel: wrote calibration cache " << o.cache_path << "\n";
    }

    std::vector<size_t> layers;
    for (size_t i : quant::int8_conv_candidates(g))
        if (scales.count(g.value(g.nodes[i].inputs[0]).name)) layers.push_back(i);
    auto make_int8 = [&](ir::Graph& graph, size_t i) {
        ir::Node& n = graph.nodes[i];
        n.attrs.set("precision", std::string("int8"));
        n.attrs.set("input_scale", scales.at(graph.value(n.inputs[0]).name));
    };

    // Sensitivity: each layer alone in INT8, the rest float, on a few calibration images; the
    // relative L2 error of output0 against the float model says how much that layer's quantisation
    // costs. Layers far above the others stay float (the precision policy's data-driven part).
    std::vector<float> sample;
    int n_sample = 0;
    for (const auto& f : files) {
        if (n_sample == kSensitivityImages) break;
        try {
            yolo::Image im = yolo::read_image(f);
            sample.resize(static_cast<size_t>((n_sample + 1) * 3 * input.shape[2] * input.shape[3]));
            yolo::letterbox_to_tensor(
                im, static_cast<int>(input.shape[2]), static_cast<int>(input.shape[3]),
                sample.data() + static_cast<size_t>(n_sample) * 3 * input.shape[2] * input.shape[3]);
            ++n_sample;
        } catch (const Error&) {
        }
    }
    auto output0 = [&](const ir::Graph& graph) {
        auto p = std::make_shared<plan::ExecutionPlan>(plan::build(graph));
        runtime::Session session(p);
        std::vector<std::vector<float>> outs;
        std::vector<float*> ptrs;
        for (int k : graph.outputs) {
            outs.emplace_back(static_cast<size_t>(num_elements(graph.value(k).shape) * n_sample));
            ptrs.push_back(outs.back().data());
        }
        session.run(sample.data(), n_sample, ptrs);
        return outs[0];
    };
    // Detection outputs are [C, N] per image: box rows (pixels) and score rows (0..1) are measured
    // separately, else the box magnitudes would hide every error in the class scores.
    const Shape& out_shape = g.value(g.outputs[0]).shape;
    int64_t rows = out_shape.size() == 3 ? out_shape[1] : 1, cols = out_shape.back();
    auto rel_error = [&](const std::vector<float>& a, const std::vector<float>& b) {
        double num[2] = {0, 0}, den[2] = {0, 0};
        for (size_t i = 0; i < a.size(); ++i) {
            int part = rows > 4 && (static_cast<int64_t>(i) / cols) % rows >= 4 ? 1 : 0;
            num[part] += (a[i] - b[i]) * double(a[i] - b[i]);
            den[part] += double(b[i]) * b[i];
        }
        double e = 0;
        for (int k = 0; k < 2; ++k) e += den[k] > 0 ? std::sqrt(num[k] / den[k]) : 0.0;
        return e;
    };
    std::vector<float> reference = output0(g);
    std::vector<std::pair<double, size_t>> errors;
    for (size_t i : layers) {
        ir::Graph one = g;
        make_int8(one, i);
        errors.emplace_back(rel_error(output0(one), reference), i);
    }
    std::vector<double> sorted;
    for (auto& e : errors) sorted.push_back(e.first);
    std::sort(sorted.begin(), sorted.end());
    double median = sorted.empty() ? 0 : sorted[sorted.size() / 2];
    double limit = kSensitivityOutlier * median;
    if (o.sensitivity) {
        std::sort(errors.begin(), errors.end(), std::greater<>());
        std::fprintf(
            stdout,
            "INT8 sensitivity (output0 relative L2 error, boxes + scores, with only this layer in INT8, %d images; "
            "median %.4f, float above %.4f):\n",
            n_sample, median, limit);
        for (auto& [err, i] : errors)
            std::fprintf(stdout, "  %-48s %.5f %s\n", g.nodes[i].name.c_str(), err, err > limit ? "-> float" : "int8");
    }
    int count = 0;
    for (auto& [err, i] : errors) {
        if (err > limit) continue;
        make_int8(g, i);
        ++count;
    }
    return count;
}

}  // namespace kestrel::api
