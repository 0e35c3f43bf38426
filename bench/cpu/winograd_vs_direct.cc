// Winograd F(4x4, 3x3) against oneDNN's direct convolution on a real model's 3x3 stride-1 layers,
// side by side in one process: the model planned twice (the second with algorithm="direct" on
// every conv the Winograd kernel takes), one image, the two sessions run alternately; per layer
// and for the whole model, the median over rounds.
//
//   kestrel_winograd_bench ../shared/models/yolov8n.onnx [rounds=30]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/cpu/winograd_conv_kernel.h"
#include "core/error.h"
#include "onnx/model_importer.h"
#include "passes/pipeline.h"
#include "plan/execution_plan.h"
#include "runtime/session.h"

namespace {

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    using namespace kestrel;
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s model.onnx [rounds]\n", argv[0]);
        return 2;
    }
    const int rounds = argc > 2 ? std::atoi(argv[2]) : 30;
    try {
        ir::Graph g = onnx::import_model(argv[1], {});
        passes::run_pipeline(g, nullptr, {});
        auto wino = std::make_shared<const plan::ExecutionPlan>(plan::build(g));
        std::vector<std::string> layers;
        for (const ir::Node& n : wino->graph.nodes)
            if (cpu::winograd_applies(*wino, n)) layers.push_back(n.name);
        for (ir::Node& n : g.nodes)
            if (std::find(layers.begin(), layers.end(), n.name) != layers.end())
                n.attrs.set("algorithm", std::string("direct"));
        KS_CHECK(!layers.empty(),
                 "no convolution here is one the Winograd kernel computes (or this CPU lacks AVX2/FMA)");
        auto direct = std::make_shared<const plan::ExecutionPlan>(plan::build(g));

        runtime::Session sw(wino), sd(direct);
        std::vector<float> image(static_cast<size_t>(sw.input_elements()));
        for (size_t i = 0; i < image.size(); ++i) image[i] = static_cast<float>((i * 2654435761u) % 1000) / 1000.f;
        std::vector<std::vector<float>> outs;
        std::vector<float*> ptrs;
        for (int64_t e : sw.output_elements()) {
            outs.emplace_back(static_cast<size_t>(e));
            ptrs.push_back(outs.back().data());
        }
        sw.set_profiling(true);
        sd.set_profiling(true);
        std::map<std::string, std::vector<double>> tw, td;
        std::vector<double> whole_w, whole_d;
        auto timed = [&](runtime::Session& s, std::map<std::string, std::vector<double>>& t,
                         std::vector<double>& whole) {
            auto t0 = std::chrono::steady_clock::now();
            s.run(image.data(), 1, ptrs);
            whole.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
            for (const auto& lt : s.layer_times()) t[lt.name].push_back(lt.ms);
        };
        for (int w = 0; w < 3; ++w) {  // warm-up
            sw.run(image.data(), 1, ptrs);
            sd.run(image.data(), 1, ptrs);
        }
        for (int r = 0; r < rounds; ++r) {
            timed(sw, tw, whole_w);
            timed(sd, td, whole_d);
        }
        std::printf("%-40s %10s %10s %7s\n", "layer (3x3 stride 1)", "direct ms", "wino ms", "ratio");
        double sum_d = 0, sum_w = 0;
        for (const auto& name : layers) {
            const double d = median(td[name]), w = median(tw[name]);
            sum_d += d;
            sum_w += w;
            std::printf("%-40s %10.3f %10.3f %7.3f\n", name.c_str(), d, w, w / d);
        }
        std::printf("%-40s %10.3f %10.3f %7.3f\n", "all 3x3 stride-1 layers", sum_d, sum_w, sum_w / sum_d);
        std::printf("%-40s %10.3f %10.3f %7.3f\n", "whole model (profiled run)", median(whole_d), median(whole_w),
                    median(whole_w) / median(whole_d));
        std::printf("%d rounds, medians; %zu layers\n", rounds, layers.size());
    } catch (const Error& e) {
        std::fprintf(stderr, "Error: %s\n", e.what());
        return 1;
    }
    return 0;
}
