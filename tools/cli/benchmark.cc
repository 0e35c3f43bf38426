// `kestrel benchmark`: latency and throughput of an engine per batch size, as trtexec reports them
// (median, mean, min, max, p99 over timed runs after warm-up; GPU compute time for CUDA engines),
// and a per-layer profile with profile=True (on CUDA with achieved TFLOP/s and GB/s, and where each
// layer sits on the H100's roofline).
#include <algorithm>
#include <iostream>
#include <numeric>
#include <string>

#include "cli/end_to_end.h"
#include "cli/modes.h"
#include "core/error.h"
#include "kestrel/engine.h"

namespace kestrel::cli {

namespace {

// NVIDIA H100 SXM5 datasheet peaks (dense, no sparsity), the roofline the profile compares with;
// boost clock, so a card held at lower clocks stays below them.
constexpr double kH100Fp16TensorTflops = 989.4;  // FP16 tensor core, FP32 accumulate
constexpr double kH100Int8TensorTops = 1978.9;   // INT8 tensor core
constexpr double kH100Fp32Tflops = 66.9;         // FP32 (FFMA) on the CUDA cores, no TF32
constexpr double kH100HbmGBs = 3350;             // HBM3 bandwidth, GB/s

// The compute peak a kernel can reach, by its name (conv2d's names state the instruction).
double peak_tflops(const std::string& kernel) {
    if (kernel.find("s8mma") != std::string::npos) return kH100Int8TensorTops;
    if (kernel.find("mma_") != std::string::npos) return kH100Fp16TensorTflops;
    return kH100Fp32Tflops;
}

}  // namespace

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
    printf("%8s %12s %12s %12s %12s %12s %14s   (%d runs; %s)\n", "batch", "median ms", "mean ms", "min ms", "max ms",
           "p99 ms", "images/s", runs, gpu ? "GPU compute time, CUDA events" : "wall time");
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
        printf("%8d %12.4f %12.4f %12.4f %12.4f %12.4f %14.1f\n", b, median, mean, ms.front(), ms.back(), p99,
               1000.0 * b / median);
    }
    benchmark_end_to_end(opts, engine.value(), batches);  // CUDA detect engines with source=: image files -> boxes
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
        printf("\nPer-layer profile (batch %d, mean of 10 runs, total %.3f ms)\n", b, total / 10);
        if (gpu)
            printf(
                "GB/s: activations read and written at their stored types (each tensor once) plus weights once a "
                "batch.\nbound: the roofline's limit at the layer's FLOP/byte against H100 SXM5 datasheet peaks "
                "(FP16 tensor %.0f, INT8 tensor %.0f, FP32 %.1f TFLOP/s; HBM3 %.0f GB/s); roof%%: the share of that "
                "limit reached.\n",
                kH100Fp16TensorTflops, kH100Int8TensorTops, kH100Fp32Tflops, kH100HbmGBs);
        printf("%-40s %-52s %9s %6s %9s", "layer", "kernel", "ms", "%", "TFLOP/s");
        if (gpu) printf(" %9s %8s %6s", "GB/s", "bound", "roof%");
        printf("\n");
        for (size_t k = 0; k < layers.size(); ++k) {
            double ms = sum[k] / 10;
            double tflops = ms > 0 && layers[k].flops > 0 ? layers[k].flops * b / (ms * 1e9) : 0;
            printf("%-40.40s %-52.52s %9.4f %5.1f%% %9.1f", layers[k].name.c_str(), layers[k].kernel.c_str(), ms,
                   100.0 * sum[k] / total, tflops);
            const double bytes = layers[k].bytes * b + layers[k].constant_bytes;
            if (gpu && ms > 0 && bytes > 0) {
                const double gbs = bytes / (ms * 1e6);
                // Roofline: attainable = min(peak compute, FLOP/byte x bandwidth).
                const double peak = peak_tflops(layers[k].kernel);
                const double intensity = layers[k].flops * b / bytes;  // FLOP per byte
                const bool compute_bound = intensity * kH100HbmGBs / 1e3 >= peak;
                const double roof = compute_bound ? tflops / peak : gbs / kH100HbmGBs;
                printf(" %9.1f %8s %5.1f%%", gbs, compute_bound ? "compute" : "memory", 100 * roof);
            } else if (gpu) {
                printf(" %9s %8s %6s", "-", "-", "-");
            }
            printf("\n");
        }
    }
    return 0;
}

}  // namespace kestrel::cli
