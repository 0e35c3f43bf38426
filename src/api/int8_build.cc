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
#include <tuple>
#include <utility>

#include "api/model_info.h"
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

// Calibration images on which each layer's error alone is measured (it only ranks the layers).
constexpr int kRankImages = 8;
// Calibration images on which the whole model's error is checked against the budget.
constexpr int kBudgetImages = 16;
// Whole-model detection_error allowed. Set from yolov8n on COCO128 (docs/calibration.md, table of
// INT8 configurations): engines measured at 0.06-0.09 lost 0.004-0.009 mAP50-95, at 0.09-0.13
// 0.006-0.017, at 0.43 0.119; roughly 0.1 mAP50-95 per unit, so 0.08 aims at a loss below 0.010.
constexpr double kErrorBudget = 0.08;
// Timing: the minimum over this many runs of one image (the minimum resists other processes' noise).
constexpr int kTimingRounds = 10;
// Where the INT8 layer choice is stored in the cache's metadata (names joined by '\n'), per target.
constexpr const char* kMetaInt8LayersPrefix = "int8_layers:";

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

// Up to `n` calibration images, letterboxed as at calibration (unreadable ones skipped).
std::vector<float> load_images(const std::vector<std::string>& files, int n, int64_t h, int64_t w, int* loaded) {
    const auto per_image = static_cast<size_t>(3 * h * w);
    std::vector<float> out;
    *loaded = 0;
    for (const auto& f : files) {
        if (*loaded == n) break;
        try {
            yolo::Image im = yolo::read_image(f);
            out.resize(static_cast<size_t>(*loaded + 1) * per_image);
            yolo::letterbox_to_tensor(im, static_cast<int>(h), static_cast<int>(w),
                                      out.data() + static_cast<size_t>(*loaded) * per_image);
            ++*loaded;
        } catch (const Error&) {
        }
    }
    return out;
}

// output0 of `graph` (batch-1 shapes) for `n` images.
std::vector<float> output0(const ir::Graph& graph, const std::vector<float>& images, int n) {
    auto p = std::make_shared<plan::ExecutionPlan>(plan::build(graph));
    runtime::Session session(p);
    std::vector<std::vector<float>> outs;
    std::vector<float*> ptrs;
    for (int k : graph.outputs) {
        outs.emplace_back(static_cast<size_t>(num_elements(graph.value(k).shape) * n));
        ptrs.push_back(outs.back().data());
    }
    session.run(images.data(), n, ptrs);
    return std::move(outs[0]);
}

// The policy's error measure for this model's output0 (quant::detection_error, or
// classification_error for a classifier), over the first `n` images of both arrays.
std::function<double(const std::vector<float>&, const std::vector<float>&, int)> output_error(const ir::Graph& g) {
    const Shape& shape = g.value(g.outputs[0]).shape;
    if (shape.size() == 2) {
        const int64_t classes = shape[1];
        return [classes](const std::vector<float>& ref, const std::vector<float>& q, int n) {
            return quant::classification_error(ref.data(), q.data(), n, classes);
        };
    }
    KS_CHECK(shape.size() == 3 && shape[1] > 4, "INT8 precision policy: output0 ", shape_str(shape),
             " is not a YOLO detection output [1, 4 + classes (+ extra), anchors]");
    quant::DetectionLayout layout{shape[1], shape[2], shape[1] - 4};
    // Segment and pose outputs carry mask coefficients / keypoints after the class scores: the
    // class count comes from the model's names when it has them.
    auto names = g.metadata.find("names");
    if (names != g.metadata.end()) {
        try {
            const auto nc = static_cast<int64_t>(parse_names(names->second).size());
            if (nc > 0 && 4 + nc <= shape[1]) layout.num_classes = nc;
        } catch (const Error&) {
        }
    }
    return [layout](const std::vector<float>& ref, const std::vector<float>& q, int n) {
        return quant::detection_error(ref.data(), q.data(), n, layout);
    };
}

// Per-layer times (ms) of the float graph and of `int8_graph` (the candidates in INT8) on one
// image: the minimum over kTimingRounds runs each, the two alternating. Keyed by node name.
std::map<std::string, std::pair<double, double>> time_layers(const ir::Graph& g, const ir::Graph& int8_graph,
                                                             const float* image) {
    auto fp = std::make_shared<plan::ExecutionPlan>(plan::build(g));
    auto q = std::make_shared<plan::ExecutionPlan>(plan::build(int8_graph));
    runtime::Session sf(fp), sq(q);
    std::vector<std::vector<float>> outs;
    std::vector<float*> ptrs;
    for (int k : g.outputs) {
        outs.emplace_back(static_cast<size_t>(num_elements(g.value(k).shape)));
        ptrs.push_back(outs.back().data());
    }
    sf.run(image, 1, ptrs);  // warm-up: first-touch of buffers and caches
    sq.run(image, 1, ptrs);
    sf.set_profiling(true);
    sq.set_profiling(true);
    std::map<std::string, std::pair<double, double>> t;
    auto take = [&](const runtime::Session& s, bool int8) {
        for (const runtime::LayerTime& lt : s.layer_times()) {
            auto [it, fresh] = t.try_emplace(lt.name, 1e300, 1e300);
            double& slot = int8 ? it->second.second : it->second.first;
            slot = std::min(slot, lt.ms);
        }
    };
    for (int r = 0; r < kTimingRounds; ++r) {
        sf.run(image, 1, ptrs);
        take(sf, false);
        sq.run(image, 1, ptrs);
        take(sq, true);
    }
    return t;
}

std::string join_lines(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : "\n") + x;
    return s;
}

// The precision policy's analysis (docs/calibration.md, "Precision policy"): of `layers` (candidate
// convs with a scale), which run INT8. `make_int8` marks one node of a graph copy INT8.
std::vector<size_t> choose_int8_layers(const ir::Graph& g, const std::vector<size_t>& layers,
                                       const std::function<void(ir::Graph&, size_t)>& make_int8,
                                       const std::vector<std::string>& files, const Int8BuildOptions& o) {
    const ir::Value& input = g.value(g.inputs[0]);
    int n_budget = 0;
    std::vector<float> sample = load_images(files, kBudgetImages, input.shape[2], input.shape[3], &n_budget);
    KS_CHECK(n_budget > 0, "no calibration image could be read for the INT8 precision policy");
    const int n_rank = std::min(kRankImages, n_budget);
    auto error_of = output_error(g);
    const std::vector<float> reference = output0(g, sample, n_budget);

    const bool timed = o.target == "cpu";
    std::map<std::string, std::pair<double, double>> times;
    if (timed) {
        ir::Graph all = g;
        for (size_t i : layers) make_int8(all, i);
        times = time_layers(g, all, sample.data());
    }
    std::vector<quant::LayerMeasure> measures;
    for (size_t i : layers) {
        quant::LayerMeasure m;
        m.node = i;
        if (timed) {
            auto it = times.find(g.nodes[i].name);
            KS_CHECK(it != times.end(), "INT8 precision policy: layer '", g.nodes[i].name, "' was not timed");
            std::tie(m.float_ms, m.int8_ms) = it->second;
        }
        // A layer that stays float for speed needs no error, except for the sensitivity table.
        if (!timed || m.int8_ms < m.float_ms || o.sensitivity) {
            ir::Graph one = g;
            make_int8(one, i);
            m.error = error_of(reference, output0(one, sample, n_rank), n_rank);
        }
        measures.push_back(m);
    }
    // INT8 only where faster; the others enter the accuracy selection.
    std::vector<quant::LayerMeasure> fast;
    for (const auto& m : measures)
        if (!timed || m.int8_ms < m.float_ms) fast.push_back(m);
    const std::vector<size_t> order = quant::float_order(fast, timed);
    auto int8_set = [&](size_t keep_float) {
        std::vector<size_t> out;
        for (size_t r = keep_float; r < order.size(); ++r) out.push_back(fast[order[r]].node);
        std::sort(out.begin(), out.end());
        return out;
    };
    double model_error = 0;
    const size_t k = quant::smallest_float_prefix(
        order.size(), kErrorBudget,
        [&](size_t keep_float) {
            ir::Graph q = g;
            for (size_t i : int8_set(keep_float)) make_int8(q, i);
            return error_of(reference, output0(q, sample, n_budget), n_budget);
        },
        &model_error);
    std::vector<size_t> chosen = int8_set(k);

    if (o.sensitivity) {
        std::map<size_t, std::string> decision;
        for (const auto& m : measures) decision[m.node] = "float (not faster in INT8)";
        for (size_t r = 0; r < order.size(); ++r) decision[fast[order[r]].node] = r < k ? "float (accuracy)" : "int8";
        std::fprintf(stdout,
                     "INT8 precision policy, %s: %zu layers with a scale.\n"
                     "  time: %s\n"
                     "  error: this layer alone in INT8, its detections against the float model's (score-weighted "
                     "1 - IoU + |score difference|), %d images\n",
                     o.algorithm.c_str(), layers.size(),
                     timed ? "float and INT8 on this CPU, 1 image, min of 10 runs; INT8 only where faster"
                           : "not measured for this target",
                     n_rank);
        std::fprintf(stdout, "  %-44s %9s %9s %9s %11s  %s\n", "layer", "float ms", "int8 ms", "error", "error/ms",
                     "precision");
        for (const auto& m : measures) {
            const double saved = std::max(m.float_ms - m.int8_ms, quant::kMinSavedMs);
            std::fprintf(stdout, "  %-44s %9.3f %9.3f %9.5f %11.4f  %s\n", g.nodes[m.node].name.c_str(), m.float_ms,
                         m.int8_ms, m.error, timed ? m.error / saved : m.error, decision[m.node].c_str());
        }
        std::fprintf(stdout,
                     "  kept float for accuracy: %zu of %zu (highest error%s first) until the whole model's error on "
                     "%d images is <= %.3f: %.5f with %zu INT8 layers\n",
                     k, order.size(), timed ? " per ms saved" : "", n_budget, kErrorBudget, model_error, chosen.size());
    }
    if (o.log)
        *o.log << "Kestrel: INT8 precision policy: " << chosen.size() << " of " << layers.size()
               << " layers in INT8 (whole-model error " << model_error << " on " << n_budget << " images)\n";
    return chosen;
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
    quant::CalibrationCache cache;
    bool foreign = false;  // a cache without Kestrel's sidecar: used as is, never rewritten
    std::error_code ec;
    if (fs::exists(o.cache_path, ec)) {
        try {
            cache = quant::read_cache(o.cache_path);
            // A cache without Kestrel's sidecar was written by TensorRT (or by hand): trust its tensor names.
            foreign = cache.kestrel_meta.empty();
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
            foreign = false;
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
        auto value_floats = [&](int v) { return static_cast<size_t>(fp32->values[static_cast<size_t>(v)].bytes / 4); };
        auto collect = [&](int v, const uint8_t* data) {
            auto it = hist.find(v);
            if (it == hist.end()) return;
            it->second.add(reinterpret_cast<const float*>(data), value_floats(v));
        };
        std::cerr << "Kestrel: INT8 calibration with " << o.algorithm << " on " << files.size() << " images from "
                  << yaml << " (batch " << calib_batch << ")\n";
        int64_t per_image = 3 * input.shape[2] * input.shape[3];
        std::vector<float> batch(static_cast<size_t>(calib_batch * per_image));
        std::vector<std::vector<float>> outs;
        for (int k : g.outputs) outs.emplace_back(static_cast<size_t>(num_elements(g.value(k).shape) * calib_batch));
        std::vector<float*> out_ptrs;
        for (auto& v : outs) out_ptrs.push_back(v.data());
        size_t done = 0, used = 0;
        bool range_fixed = false;
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
            if (n && !range_fixed) {
                // TensorRT fixes each histogram's bin width from its whole first batch; the CPU
                // session runs a batch image by image, so find the batch's max |x| first.
                std::map<int, float> first_max;
                session.set_observer([&](int v, const uint8_t* data) {
                    if (!hist.count(v)) return;
                    const auto* x = reinterpret_cast<const float*>(data);
                    float& m = first_max[v];
                    for (size_t k = 0, e = value_floats(v); k < e; ++k) m = std::max(m, std::fabs(x[k]));
                });
                session.run(batch.data(), n, out_ptrs);
                for (auto& [v, m] : first_max) hist.at(v).set_first_batch_max(m);
                range_fixed = true;
            }
            session.set_observer(collect);
            if (n) session.run(batch.data(), n, out_ptrs);
            used += static_cast<size_t>(n);
            done = std::min(files.size(), i + calib_batch);
            progress(done, files.size());
        }
        KS_CHECK(used > 0, "no calibration image could be read from ", yaml);
        cache = quant::CalibrationCache();
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
    if (layers.empty()) return 0;

    // The layer choice depends on timing, so it is stored with the cache: a second export with the
    // same cache builds the same engine (and skips the analysis).
    const std::string key = kMetaInt8LayersPrefix + o.target;
    std::vector<size_t> chosen;
    bool stored = false;
    auto it = cache.kestrel_meta.find(key);
    if (!o.sensitivity && !foreign && it != cache.kestrel_meta.end()) {
        std::map<std::string, size_t> by_name;
        for (size_t i : layers) by_name[g.nodes[i].name] = i;
        stored = true;
        std::istringstream names(it->second);
        for (std::string name; std::getline(names, name);) {
            auto n = by_name.find(name);
            if (n == by_name.end()) {
                stored = false;  // not this model's layers: decide afresh
                break;
            }
            chosen.push_back(n->second);
        }
        if (stored && o.log) *o.log << "Kestrel: INT8 layers as chosen when the cache was made (" << key << ")\n";
    }
    if (!stored) {
        chosen = choose_int8_layers(g, layers, make_int8, files, o);
        std::vector<std::string> names;
        bool storable = true;
        for (size_t i : chosen) {
            names.push_back(g.nodes[i].name);
            storable &= names.back().find('\n') == std::string::npos && !names.back().empty();
        }
        if (!foreign && storable) {
            cache.kestrel_meta[key] = join_lines(names);
            quant::write_cache(o.cache_path, cache);
        }
    }
    for (size_t i : chosen) make_int8(g, i);
    return static_cast<int>(chosen.size());
}

}  // namespace kestrel::api
