// Engines and sessions: the compiled model and the contexts that run it.
//
//   kestrel::BuildOptions opt;                        // as `kestrel export`: batch, dynamic, imgsz, device...
//   auto engine = kestrel::Engine::build("yolov8n.onnx", opt);
//   if (!engine.ok()) { std::cerr << engine.status().message(); return 1; }
//   engine->save("yolov8n.engine");                   // atomic: a temporary file, then rename
//   auto loaded = kestrel::Engine::load("yolov8n.engine");  // .engine, or .onnx compiled in memory
//   auto session = kestrel::Session::create(*loaded); // one per thread; they share the engine
//   std::vector<std::vector<float>> outputs;
//   session->run(input.data(), /*batch=*/1, &outputs);
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "kestrel/status.h"

namespace kestrel {

struct BuildOptions {
    int batch = 1;               // max batch of the profile
    bool dynamic = false;        // a profile of 1..batch (else exactly batch)
    std::array<int, 2> imgsz{};  // {h, w}; 0 = the model's own
    std::string device = "cpu";  // "cpu" or "cuda:N" (a CUDA engine for GPU N: tuned there, runs there)
    bool half = false;           // FP16 weights (binary16 storage; CPUs compute them in float32)
    bool int8 = false;           // INT8 post-training quantisation (implies dynamic)
    std::string data;            // int8: calibration dataset yaml (empty: coco128.yaml, with a warning)
    std::string trt_quant_algo = "ENTROPY_CALIBRATION_2";  // MINMAX_, ENTROPY_, ENTROPY_CALIBRATION_2, LEGACY_
    std::string calibration_cache;                         // int8: cache path (empty: <model>.cache beside the model)
    bool sensitivity = false;                              // int8: print each layer's measured sensitivity
    double workspace_gib = 4;                              // cap on build memory
    std::string timing_cache;     // CUDA: conv timings file to reuse and update (empty: none); not for device=cpu
    std::ostream* log = nullptr;  // verbose build log (layer tables before and after optimisation)
};

struct TensorInfo {
    std::string name;
    std::vector<int64_t> shape;  // with the batch dimension at the profile's max
};

// What Ultralytics records in its exports, plus what the engine was built for.
struct ModelInfo {
    std::string task;                // detect | segment | pose | obb | classify
    std::vector<std::string> names;  // class names by id
    int stride = 32;
    std::array<int, 2> imgsz{};  // {h, w}
    int min_batch = 1, max_batch = 1;
    std::vector<int> kpt_shape;  // pose: {17, 3}
    std::string precision;       // fp32 | fp16 | int8
    std::string device;          // cpu | cuda:sm_90 (the GPU architecture the engine was built for)
    TensorInfo input;
    std::vector<TensorInfo> outputs;
    int64_t arena_bytes = 0;                      // activation memory per session
    std::map<std::string, std::string> metadata;  // all of Ultralytics' metadata_props
};

class Engine {
   public:
    static Result<Engine> build(const std::string& onnx_path, const BuildOptions& options);
    // Loads a .engine file, or compiles a .onnx file in memory with default options.
    static Result<Engine> load(const std::string& path);
    Status save(const std::string& path) const;

    const ModelInfo& info() const;
    // The layer table (name, op, kernel, output shape, layout), as `verbose=True` prints it.
    std::string layer_table() const;

    struct Impl;
    const std::shared_ptr<const Impl>& impl() const { return impl_; }

   private:
    explicit Engine(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<const Impl> impl_;
};

struct LayerProfile {
    std::string name, kernel;
    double ms = 0;
    double flops = 0;  // CUDA: floating-point operations per image (convs and gemms), 0 elsewhere
    // CUDA: bytes the layer reads and writes at their stored types, each tensor once: activations
    // per image, constants (weights, bias) per inference. 0 elsewhere and for layers that run nothing.
    double bytes = 0, constant_bytes = 0;
};

// An execution context: owns activation memory; not thread-safe, so use one per thread.
class Session {
   public:
    static Result<Session> create(const Engine& engine);
    // input: batch x 3 x H x W floats (RGB, 0..1). outputs[k]: batch x the per-image size of output k.
    Status run(const float* input, int batch, std::vector<std::vector<float>>* outputs);
    void set_profiling(bool on);
    std::vector<LayerProfile> profile() const;  // per layer, last run
    // Compute time of `iterations` inferences of `batch` images on the bound buffers, in ms each:
    // on CUDA, GPU time of one CUDA-graph replay between two events (no host copies); on the CPU,
    // wall time of run().
    Result<std::vector<double>> time_compute(int batch, int iterations);

    struct Impl;

   private:
    explicit Session(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<Impl> impl_;
};

}  // namespace kestrel
