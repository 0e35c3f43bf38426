// `kestrel benchmark`: latency and throughput of an engine on random input, per batch size, as
// trtexec reports them (median, mean, p99 over timed runs after warm-up), and a per-layer profile
// with profile=True.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <numeric>
#include <random>

#include "cli/modes.h"
#include "core/error.h"
#include "kestrel/engine.h"

namespace kestrel::cli {

int run_benchmark(const Options& opts) {
    KS_CHECK(opts.has_value("model"), "benchmark needs model=<file.engine or file.onnx>");
    auto engine = Engine::load(opts.get_string("model"));
    KS_CHECK(engine.ok(), engine.status().message());
    const ModelInfo& info = engine->info();
    auto session = Session::create(engine.value());
    KS_CHECK(session.ok(), session.status().message());
    std::vector<int> batches = opts.is_set("batch") ? opts.get_int_list("batch") : std::vector<int>{info.max_batch};
    bool profile = opts.get_bool("profile");
    const int warmup = 5, runs = 30;
    std::cout << "Kestrel benchmark: " << opts.get_string("model") << " (" << info.task << ", " << info.precision
              << ", device=" << info.device << ", imgsz " << info.imgsz[0] << "x" << info.imgsz[1] << ")\n";
    printf("%8s %12s %12s %12s %14s\n", "batch", "median ms", "mean ms", "p99 ms", "images/s");
    std::mt19937 rng(0);
    std::uniform_real_distribution<float> dist(0.f, 1.f);
    for (int b : batches) {
        KS_CHECK(b >= info.min_batch && b <= info.max_batch, "batch=", b, " is outside the engine's profile ",
                 info.min_batch, "..", info.max_batch);
        std::vector<float> input(static_cast<size_t>(b) * 3 * info.imgsz[0] * info.imgsz[1]);
        for (float& v : input) v = dist(rng);
        std::vector<std::vector<float>> outputs;
        for (int i = 0; i < warmup; ++i) KS_CHECK(session->run(input.data(), b, &outputs).ok(), "inference failed");
        std::vector<double> ms;
        for (int i = 0; i < runs; ++i) {
            auto t0 = std::chrono::steady_clock::now();
            Status st = session->run(input.data(), b, &outputs);
            ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
            KS_CHECK(st.ok(), st.message());
        }
        std::sort(ms.begin(), ms.end());
        double median = ms[ms.size() / 2], mean = std::accumulate(ms.begin(), ms.end(), 0.0) / runs;
        double p99 = ms[std::min(ms.size() - 1, static_cast<size_t>(0.99 * static_cast<double>(ms.size())))];
        printf("%8d %12.2f %12.2f %12.2f %14.1f\n", b, median, mean, p99, 1000.0 * b / median);
    }
    if (profile) {
        session->set_profiling(true);
        std::vector<float> input(static_cast<size_t>(3 * info.imgsz[0] * info.imgsz[1]), 0.5f);
        std::vector<std::vector<float>> outputs;
        std::vector<double> sum;
        std::vector<LayerProfile> layers;
        for (int i = 0; i < 10; ++i) {
            KS_CHECK(session->run(input.data(), 1, &outputs).ok(), "inference failed");
            layers = session->profile();
            sum.resize(layers.size(), 0.0);
            for (size_t k = 0; k < layers.size(); ++k) sum[k] += layers[k].ms;
        }
        double total = std::accumulate(sum.begin(), sum.end(), 0.0);
        printf("\nPer-layer profile (batch 1, mean of 10 runs, total %.2f ms)\n%-40s %-48s %9s %6s\n", total / 10,
               "layer", "kernel", "ms", "%");
        for (size_t k = 0; k < layers.size(); ++k)
            printf("%-40.40s %-48.48s %9.3f %5.1f%%\n", layers[k].name.c_str(), layers[k].kernel.c_str(), sum[k] / 10,
                   100.0 * sum[k] / total);
    }
    return 0;
}

}  // namespace kestrel::cli
