// `kestrel benchmark`: latency and throughput of an engine per batch size, as trtexec reports them
// (median, mean, p99 over timed runs after warm-up; GPU compute time for CUDA engines), and a
// per-layer profile with profile=True (with achieved TFLOP/s on CUDA).
#include <algorithm>
#include <iostream>
#include <numeric>

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
    std::cout << "Kestrel benchmark: " << opts.get_string("model") << " (" << info.task << ", " << info.precision
              << ", device=" << info.device << ", imgsz " << info.imgsz[0] << "x" << info.imgsz[1] << ")\n";
    const bool gpu = info.device.rfind("cuda", 0) == 0;
    // GPU: compute time of CUDA-graph replays between events (trtexec's "GPU Compute Time"); CPU:
    // wall time of whole inferences.
    const int runs = gpu ? 200 : 30;
    printf("%8s %12s %12s %12s %14s   (%s)\n", "batch", "median ms", "mean ms", "p99 ms", "images/s",
           gpu ? "GPU compute time, CUDA events" : "wall time");
    for (int b : batches) {
        KS_CHECK(b >= info.min_batch && b <= info.max_batch, "batch=", b, " is outside the engine's profile ",
                 info.min_batch, "..", info.max_batch);
        auto timed = session->time_compute(b, runs);
        KS_CHECK(timed.ok(), timed.status().message());
        std::vector<double> ms = timed.value();
        std::sort(ms.begin(), ms.end());
        double median = ms[ms.size() / 2];
        double mean = std::accumulate(ms.begin(), ms.end(), 0.0) / static_cast<double>(ms.size());
        double p99 = ms[std::min(ms.size() - 1, static_cast<size_t>(0.99 * static_cast<double>(ms.size())))];
        printf("%8d %12.4f %12.4f %12.4f %14.1f\n", b, median, mean, p99, 1000.0 * b / median);
    }
    if (profile) {
        // Per-layer times: on CUDA, events around each kernel without a graph (launch gaps count).
        const int b = gpu ? batches.front() : 1;
        session->set_profiling(true);
        std::vector<float> input(static_cast<size_t>(b) * 3 * info.imgsz[0] * info.imgsz[1], 0.5f);
        std::vector<std::vector<float>> outputs;
        std::vector<double> sum;
        std::vector<LayerProfile> layers;
        for (int i = 0; i < 10; ++i) {
            KS_CHECK(session->run(input.data(), b, &outputs).ok(), "inference failed");
            layers = session->profile();
            sum.resize(layers.size(), 0.0);
            for (size_t k = 0; k < layers.size(); ++k) sum[k] += layers[k].ms;
        }
        double total = std::accumulate(sum.begin(), sum.end(), 0.0);
        printf("\nPer-layer profile (batch %d, mean of 10 runs, total %.3f ms)\n%-40s %-52s %9s %6s %9s\n", b,
               total / 10, "layer", "kernel", "ms", "%", "TFLOP/s");
        for (size_t k = 0; k < layers.size(); ++k) {
            double ms = sum[k] / 10;
            double tflops = ms > 0 && layers[k].flops > 0 ? layers[k].flops * b / (ms * 1e9) : 0;
            printf("%-40.40s %-52.52s %9.4f %5.1f%% %9.1f\n", layers[k].name.c_str(), layers[k].kernel.c_str(), ms,
                   100.0 * sum[k] / total, tflops);
        }
    }
    return 0;
}

}  // namespace kestrel::cli
