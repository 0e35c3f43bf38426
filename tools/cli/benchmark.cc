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
#include "runtime/cuda_session.h"

namespace kestrel::cli {

namespace {

// Datasheet peaks (dense, no sparsity; boost clock, so a card held at lower clocks stays below
// them): the roofline the GPU profile compares each layer with.
struct GpuPeaks {
    const char* card;
    double fp16_tensor_tflops;  // FP16 tensor core, FP32 accumulate
    double int8_tensor_tops;    // INT8 tensor core
    double fp32_tflops;         // FP32 (FFMA) on the CUDA cores, no TF32
    double hbm_gbs;             // memory bandwidth, GB/s
};
constexpr GpuPeaks kH100Sxm{"H100 SXM5", 989.4, 1978.9, 66.9, 3350};
constexpr GpuPeaks kH100Pcie{"H100 PCIe", 756.5, 1513.0, 51.2, 2000};
constexpr GpuPeaks kH200Sxm{"H200 SXM", 989.4, 1978.9, 66.9, 4800};

// The card's figures by its CUDA name ("NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe", "NVIDIA H200");
// nullptr for a card without figures here.
const GpuPeaks* datasheet_peaks(const std::string& name) {
    auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
    if (has("NVL")) return nullptr;
    if (has("H200")) return &kH200Sxm;
    if (has("H100")) return has("PCIe") ? &kH100Pcie : &kH100Sxm;
    return nullptr;
}

// The compute peak a kernel can reach, by its name (conv2d's names state the instruction).
double peak_tflops(const GpuPeaks& g, const std::string& kernel) {
    if (kernel.find("s8mma") != std::string::npos) return g.int8_tensor_tops;
    if (kernel.find("mma_") != std::string::npos) return g.fp16_tensor_tflops;
    return g.fp32_tflops;
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
    const bool gpu = info.device.rfind("cuda", 0) == 0;
    const std::string gpu_name = gpu ? runtime::cuda_device_name(0) : std::string();  // engines run on GPU 0
    std::cout << "Kestrel benchmark: " << opts.get_string("model") << " (" << info.task << ", " << info.precision
              << ", device=" << info.device << (gpu ? " " + gpu_name : std::string()) << ", imgsz " << info.imgsz[0]
              << "x" << info.imgsz[1] << ")\n";
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
            const Status st = session->run(input.data(), b, &outputs);
            KS_CHECK(st.ok(), "inference failed: ", st.message());
            layers = session->profile();
            sum.resize(layers.size(), 0.0);
            for (size_t k = 0; k < layers.size(); ++k) sum[k] += layers[k].ms;
        }
        double total = std::accumulate(sum.begin(), sum.end(), 0.0);
        printf("\nPer-layer profile (batch %d, mean of 10 runs, total %.3f ms)\n", b, total / 10);
        const GpuPeaks* card = gpu ? datasheet_peaks(gpu_name) : nullptr;
        const GpuPeaks& peaks = card ? *card : kH100Sxm;
        if (gpu)
            printf(
                "GB/s: activations read and written at their stored types (each tensor once) plus weights once a "
                "batch.\nbound: the roofline's limit at the layer's FLOP/byte against %s datasheet peaks%s (FP16 "
                "tensor %.0f, INT8 tensor %.0f, FP32 %.1f TFLOP/s; memory %.0f GB/s); roof%%: the share of that "
                "limit reached.\n",
                peaks.card, card ? "" : (" (no figures for " + gpu_name + " here)").c_str(), peaks.fp16_tensor_tflops,
                peaks.int8_tensor_tops, peaks.fp32_tflops, peaks.hbm_gbs);
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
                const double peak = peak_tflops(peaks, layers[k].kernel);
                const double intensity = layers[k].flops * b / bytes;  // FLOP per byte
                const bool compute_bound = intensity * peaks.hbm_gbs / 1e3 >= peak;
                const double roof = compute_bound ? tflops / peak : gbs / peaks.hbm_gbs;
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
