// The public Engine/Session API over the pipeline: onnx -> passes -> plan -> engine -> runtime.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <iomanip>
#include <optional>
#include <sstream>

#include "api/engine_internal.h"
#include "api/int8_build.h"
#include "api/model_info.h"
#include "backends/cpu/kernel.h"
#include "core/error.h"
#include "core/half.h"
#include "core/logging.h"
#include "engine/engine_file.h"
#include "ir/graph.h"
#include "kestrel/engine.h"
#include "onnx/model_importer.h"
#include "passes/pipeline.h"
#include "plan/execution_plan.h"
#include "runtime/cuda_session.h"
#include "runtime/session.h"
#include "runtime/timing_cache.h"

namespace kestrel {

struct Engine::Impl {
    engine::EngineData data;
    std::shared_ptr<const plan::ExecutionPlan> plan;
    std::shared_ptr<const runtime::CudaModel> cuda;  // CUDA engines: weights on the GPU, tactics
    std::vector<std::string> kernels;                // the kernel of each plan node
    ModelInfo info;
};

namespace api {
std::shared_ptr<const runtime::CudaModel> cuda_model(const Engine& engine) { return engine.impl()->cuda; }
}  // namespace api

// A CPU session or a CUDA execution context, by the engine's target.
struct Session::Impl {
    std::shared_ptr<const Engine::Impl> engine;
    std::unique_ptr<runtime::Session> cpu;
    std::unique_ptr<runtime::CudaSession> gpu;
    explicit Impl(std::shared_ptr<const Engine::Impl> e) : engine(std::move(e)) {
        if (engine->cuda)
            gpu = std::make_unique<runtime::CudaSession>(engine->cuda);
        else
            cpu = std::make_unique<runtime::Session>(engine->plan);
    }
    std::vector<int64_t> output_elements() const { return gpu ? gpu->output_elements() : cpu->output_elements(); }
    const std::vector<runtime::LayerTime>& layer_times() const { return gpu ? gpu->layer_times() : cpu->layer_times(); }
};

namespace {

std::string layer_table_of(const ir::Graph& g, const std::vector<std::string>* kernels) {
    const bool p = kernels != nullptr;
    std::ostringstream os;
    os << std::left << std::setw(5) << "#" << std::setw(34) << "layer" << std::setw(20) << "op" << std::setw(22)
       << "output" << (p ? "kernel" : "") << "\n";
    size_t i = 0;
    for (size_t k = 0; k < g.nodes.size(); ++k) {
        const ir::Node& n = g.nodes[k];
        if (n.removed) continue;
        std::string op(ir::op_name(n.op));
        if (n.attrs.get_string("activation", "") == "silu") op += "+SiLU";
        if (n.op == ir::Op::kConv && n.input(3) >= 0) op += "+Add";
        if (n.attrs.get_string("precision", "fp32") == "int8") op += " int8";
        std::string name = n.name.size() > 32 ? "..." + n.name.substr(n.name.size() - 29) : n.name;
        os << std::setw(5) << i++ << std::setw(34) << name << std::setw(20) << op << std::setw(22)
           << (g.value(n.outputs[0]).shape_known ? shape_str(g.value(n.outputs[0]).shape) : "?")
           << (p ? (*kernels)[k] : "") << "\n";
    }
    return os.str();
}

ModelInfo make_info(const engine::EngineData& d, const plan::ExecutionPlan& p) {
    ModelInfo info;
    const ir::Graph& g = d.graph;
    auto with_batch = [&](const ir::Value& v) {
        TensorInfo t{v.name, v.shape};
        if (!t.shape.empty()) t.shape[0] = d.max_batch;
        return t;
    };
    info.input = with_batch(g.value(g.inputs[0]));
    for (int o : g.outputs) info.outputs.push_back(with_batch(g.value(o)));
    info.metadata = g.metadata;
    api::fill_from_metadata(g.metadata, &info);
    info.imgsz = {static_cast<int>(info.input.shape[2]), static_cast<int>(info.input.shape[3])};
    info.min_batch = static_cast<int>(d.min_batch);
    info.max_batch = static_cast<int>(d.max_batch);
    info.precision = d.precision;
    info.device = d.target;
    info.arena_bytes = p.arena_bytes;
    if (info.names.empty()) {
        int64_t c = info.outputs[0].shape.size() == 2 ? info.outputs[0].shape[1] : info.outputs[0].shape[1] - 4;
        if (info.task == "segment") c -= 32;
        if (info.task == "pose" && info.kpt_shape.size() == 2) c -= info.kpt_shape[0] * info.kpt_shape[1];
        for (int64_t i = 0; i < c; ++i) info.names.push_back("class" + std::to_string(i));
    }
    return info;
}

// -1 for "cpu", N for "cuda:N" (the CLI normalises Ultralytics' "0" and "cuda" to this).
int device_index(const std::string& device) {
    if (device == "cpu") return -1;
    if (device.rfind("cuda:", 0) == 0 && device.size() > 5 &&
        device.find_first_not_of("0123456789", 5) == std::string::npos)
        return std::stoi(device.substr(5));
    if (!device.empty() && device.find_first_not_of("0123456789") == std::string::npos) return std::stoi(device);
    KS_FAIL("device='", device, "' is not a device: use cpu, 0 or cuda:0");
}

// The plan (and for CUDA the model on the GPU: weights, tuned tactics) of an engine's data.
void lower(Engine::Impl& impl, int device, bool tune, std::ostream* log, runtime::TimingCache* cache = nullptr) {
    const engine::EngineData& d = impl.data;
    if (device < 0) {
        impl.plan = std::make_shared<const plan::ExecutionPlan>(plan::build(d.graph));
        impl.kernels.clear();
        for (size_t i = 0; i < impl.plan->graph.nodes.size(); ++i)
            impl.kernels.push_back(cpu::kernel_name(*impl.plan, i));
        return;
    }
    // INT8 engines keep float16 feature maps: INT8 convs quantise their input as they load it, and
    // every other layer runs in FP16 (TensorRT's INT8 + FP16 builder flags).
    plan::PlanOptions po{plan::Target::kCuda, static_cast<int>(d.max_batch),
                         d.precision == "fp16" || d.precision == "int8"};
    impl.plan = std::make_shared<const plan::ExecutionPlan>(plan::build(d.graph, po));
    impl.cuda = std::make_shared<const runtime::CudaModel>(impl.plan, device, tune, log, cache);
    impl.kernels = impl.cuda->kernel_names();
}

std::shared_ptr<Engine::Impl> finish(engine::EngineData data) {
    auto impl = std::make_shared<Engine::Impl>();
    int device = -1;
    if (data.target.rfind("cuda:", 0) == 0) {
        // Engines are tuned for one GPU architecture, like TensorRT's: refuse any other.
        device = 0;
        KS_CHECK(runtime::cuda_device_count() > 0, "this engine runs on a CUDA GPU (", data.target.substr(5),
                 ") and no CUDA GPU was found; export one with device=cpu for this machine");
        std::string arch = runtime::cuda_device_arch(device);
        KS_CHECK(data.target == "cuda:" + arch, "this engine was built for ", data.target.substr(5), " but GPU 0 is ",
                 arch, " (", runtime::cuda_device_name(device), "); re-export it on this GPU");
    } else {
        KS_CHECK(data.target == "cpu", "unknown engine target '", data.target, "'");
    }
    impl->data = std::move(data);
    lower(*impl, device, /*tune=*/false, nullptr);
    impl->info = make_info(impl->data, *impl->plan);
    return impl;
}

std::shared_ptr<Engine::Impl> build_impl(const std::string& path, const BuildOptions& o) {
    const int device = device_index(o.device);
    if (device >= 0) runtime::cuda_device_arch(device);  // fail before any work without a GPU
    // Like trtexec's --timingCacheFile, a cache of kernel timings: only GPU builds time kernels.
    KS_CHECK(o.timing_cache.empty() || device >= 0, "timing_cache='", o.timing_cache,
             "' is for CUDA engines (device=0): a CPU engine times no kernels; leave timing_cache out for device=",
             o.device);
    std::optional<runtime::TimingCache> timing_cache;
    if (!o.timing_cache.empty()) {
        runtime::TimingCache::check_writable(o.timing_cache);  // before any work, not after minutes of it
        std::string warning;
        timing_cache = runtime::TimingCache::load(o.timing_cache, runtime::cuda_timing_environment(device), &warning);
        if (!warning.empty()) log_warning(warning);
        if (o.log)
            *o.log << "Kestrel: timing cache '" << o.timing_cache << "': " << timing_cache->size()
                   << " tactic timings loaded\n";
    }

    KS_CHECK(o.batch >= 1, "batch must be at least 1");
    KS_CHECK(o.workspace_gib > 0, "workspace must be positive");
    // Like TensorRT's UNSUPPORTED_STATE for a workspace larger than the device: refuse up front.
    double machine_gib = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE)) /
                         (1024.0 * 1024 * 1024);
    KS_CHECK(machine_gib <= 0 || o.workspace_gib <= machine_gib, "workspace=", o.workspace_gib,
             " GiB is more than this machine's memory (", static_cast<int>(machine_gib), " GiB); lower workspace");
    onnx::ImportOptions io;
    io.imgsz = {o.imgsz[0], o.imgsz[1]};
    engine::EngineData d;
    d.graph = onnx::import_model(path, io);
    // Plans are made at batch 1 (CPU engines run a batch image by image through it; CUDA plans size
    // their buffers for max_batch), so a model exported with a fixed batch of 1 serves any batch:
    // its images never interact.
    d.max_batch = o.batch;
    d.min_batch = o.dynamic || o.int8 ? 1 : o.batch;  // int8 enables dynamic, as Ultralytics does
    d.opt_batch = o.batch;
    if (o.log)
        *o.log << "Layers before optimisation (" << d.graph.nodes.size() << "):\n" << layer_table_of(d.graph, nullptr);
    // The fused Detect-head decode has a CUDA kernel only; CPU engines keep the exported ops.
    // INT8 calibrates on the CPU (FP32), which runs the unfused decode: fuse after quantising.
    // FP16 engines also move the head's last 1x1 convs into the decode (its kernel reads f16 maps).
    passes::run_pipeline(d.graph, o.log,
                         {.fuse_yolo_decode = device >= 0 && !o.int8, .fuse_yolo_head_convs = o.half && !o.int8});
    if (o.half && !o.int8) {
        // FP16: weights stored as binary16 (half the file). On the CPU the arithmetic stays float32 —
        // x86 CPUs without AVX512-FP16 have no FP16 arithmetic, and oneDNN computes f16 as f32 there;
        // on CUDA the feature maps are float16 and convolutions run on the tensor cores.
        for (ir::Value& v : d.graph.values) {
            if (!v.constant || v.dtype != DType::kFloat32 || v.shape.size() != 4) continue;
            ir::Tensor t = *v.constant;
            for (int64_t i = 0; i < t.size(); ++i)
                t.data<float>()[i] = half_to_float(float_to_half(t.data<float>()[i]));
            v.constant = std::make_shared<const ir::Tensor>(std::move(t));
        }
        d.precision = "fp16";
    }
    if (o.int8) {
        api::Int8BuildOptions q;
        q.model_path = path;
        q.data_yaml = o.data;
        q.algorithm = o.trt_quant_algo;
        q.batch = o.batch;
        q.cache_path = o.calibration_cache.empty() ? std::filesystem::path(path).replace_extension(".cache").string()
                                                   : o.calibration_cache;
        q.workspace_gib = o.workspace_gib;
        q.sensitivity = o.sensitivity;
        // The CPU's INT8-or-float timing is not the GPU's: a CUDA build ranks layers by accuracy
        // alone here and then keeps INT8 only where its own INT8 kernel beats FP16 (tune()).
        q.target = device >= 0 ? "cuda" : "cpu";
        q.log = o.log;
        int n = api::quantize_int8(d.graph, q);
        if (device >= 0) {
            // The CUDA INT8 kernels: 8-bit weights (scale max|w| / 127; the CPU's are 7-bit, see
            // int8_conv_kernel.cc) and inputs of a multiple of 8 channels; other convs stay FP16.
            for (ir::Node& node : d.graph.nodes) {
                if (node.attrs.get_string("precision", "fp32") != "int8") continue;
                if (d.graph.value(node.inputs[1]).shape[1] % 8 == 0) {
                    node.attrs.set("weight_qmax", int64_t{127});
                    continue;
                }
                node.attrs.erase("precision");
                node.attrs.erase("input_scale");
                --n;
                if (o.log) *o.log << "precision " << node.name << ": FP16 (no CUDA INT8 kernel for its channels)\n";
            }
        }
        d.precision = "int8";
        d.graph.metadata["int8_layers"] = std::to_string(n);
        if (device >= 0) passes::run_pipeline(d.graph, o.log, {.fuse_yolo_decode = true, .fuse_yolo_head_convs = true});
    }
    auto impl = std::make_shared<Engine::Impl>();
    if (device >= 0) d.target = "cuda:" + runtime::cuda_device_arch(device);
    impl->data = d;
    lower(*impl, device, /*tune=*/true, o.log, timing_cache ? &*timing_cache : nullptr);
    if (timing_cache) {
        timing_cache->save(o.timing_cache);
        if (o.log) {
            const auto& st = impl->cuda->tune_stats();
            *o.log << "Kestrel: timing cache '" << o.timing_cache << "': " << st.reused << " layer tunings reused, "
                   << st.timed << " timed (each conv at batch 1"
                   << (d.max_batch > 1 ? " and at batch " + std::to_string(d.max_batch) : std::string()) << "); "
                   << timing_cache->size() << " tactic timings saved\n";
        }
    }
    if (impl->cuda) {
        // The tuned tactics travel in the engine as node attributes, so loading re-tunes nothing.
        // So does each INT8-calibrated conv's precision: one that tuning found faster in FP16 is an
        // FP16 conv in the engine (its scale dropped), as TensorRT keeps INT8 only where it wins.
        std::map<std::string, std::vector<int>> by_name, pair_by_name, c2f_by_name, stem_by_name;
        std::map<std::string, bool> int8_by_name;
        for (const auto& [node, fused] : impl->cuda->bottleneck_pairs())
            pair_by_name[impl->plan->graph.nodes[node].name] = fused;
        for (const auto& [node, fused] : impl->cuda->c2f_blocks())
            c2f_by_name[impl->plan->graph.nodes[node].name] = fused;
        for (const auto& [node, fused] : impl->cuda->stem_convs())
            stem_by_name[impl->plan->graph.nodes[node].name] = fused;
        for (auto [node, tactic] : impl->cuda->tactics()) {
            by_name[impl->plan->graph.nodes[node].name] = tactic;
            int8_by_name[impl->plan->graph.nodes[node].name] = impl->cuda->conv_int8(node) != nullptr;
        }
        int int8_layers = 0;
        for (ir::Node& n : d.graph.nodes) {
            if (auto stem = stem_by_name.find(n.name); stem != stem_by_name.end())  // the stem has no tactics
                n.attrs.set("cuda_stem_conv", std::vector<int64_t>(stem->second.begin(), stem->second.end()));
            auto it = by_name.find(n.name);
            if (it == by_name.end()) continue;
            n.attrs.set("cuda_tactics", std::vector<int64_t>(it->second.begin(), it->second.end()));
            if (auto pair = pair_by_name.find(n.name); pair != pair_by_name.end())
                n.attrs.set("cuda_bottleneck_pair", std::vector<int64_t>(pair->second.begin(), pair->second.end()));
            if (auto c2f = c2f_by_name.find(n.name); c2f != c2f_by_name.end())
                n.attrs.set("cuda_c2f", std::vector<int64_t>(c2f->second.begin(), c2f->second.end()));
            if (n.attrs.get_string("precision", "fp32") != "int8") continue;
            if (int8_by_name.at(n.name)) {
                ++int8_layers;
                continue;
            }
            for (const char* attr : {"precision", "input_scale", "weight_qmax"}) n.attrs.erase(attr);
        }
        if (d.precision == "int8") {
            d.graph.metadata["int8_layers"] = std::to_string(int8_layers);
            if (o.log) *o.log << "INT8 layers on CUDA: " << int8_layers << " (the others were faster in FP16)\n";
            // Lower once more from what the engine file will hold, as a load would, so that this
            // Engine's plan and layer table show the precisions chosen.
            impl->data = d;
            lower(*impl, device, /*tune=*/false, nullptr);
        }
    }
    d.kernels = impl->kernels;
    int64_t weights = 0;
    for (const auto& v : d.graph.values)
        if (v.constant) weights += static_cast<int64_t>(v.constant->bytes.size());
    double need = static_cast<double>(impl->plan->arena_bytes + weights) / (1024.0 * 1024 * 1024);
    KS_CHECK(need <= o.workspace_gib, "workspace=", o.workspace_gib, " GiB is too small: the engine needs ", need,
             " GiB");
    if (o.log) {
        *o.log << "Layers after optimisation (" << impl->plan->graph.nodes.size() << ", with layout conversions):\n"
               << layer_table_of(impl->plan->graph, &impl->kernels);
        *o.log << "Activation arena: " << impl->plan->arena_bytes / 1024
               << " KiB (without reuse: " << impl->plan->naive_bytes / 1024 << " KiB), weights " << weights / 1024
               << " KiB\n";
    }
    impl->data = std::move(d);
    impl->info = make_info(impl->data, *impl->plan);
    return impl;
}

template <typename F>
auto guarded(F&& f) -> Result<decltype(f())> {
    try {
        return f();
    } catch (const Error& e) {
        return Status::Error(e.what());
    } catch (const std::bad_alloc&) {
        return Status::Error("out of memory");
    } catch (const std::exception& e) {
        return Status::Error(std::string("internal error: ") + e.what());
    }
}

}  // namespace

Result<Engine> Engine::build(const std::string& onnx_path, const BuildOptions& options) {
    auto r = guarded([&] { return build_impl(onnx_path, options); });
    if (!r.ok()) return r.status();
    return Engine(r.value());
}

Result<Engine> Engine::load(const std::string& path) {
    auto r = guarded([&]() -> std::shared_ptr<Engine::Impl> {
        std::error_code ec;
        KS_CHECK(std::filesystem::exists(path, ec), "model '", path, "' not found");
        bool is_onnx = std::filesystem::path(path).extension() == ".onnx";
        if (is_onnx && !engine::looks_like_engine(path)) return build_impl(path, BuildOptions());
        engine::EngineData d = engine::read_engine(path);
        auto impl = finish(std::move(d));
        KS_CHECK(impl->kernels == impl->data.kernels, "'", path,
                 "' was built by a Kestrel with other kernels; re-export it with this version");
        return impl;
    });
    if (!r.ok()) return r.status();
    return Engine(r.value());
}

Status Engine::save(const std::string& path) const {
    auto r = guarded([&] {
        engine::write_engine(path, impl_->data);
        return 0;
    });
    return r.ok() ? Status::Ok() : r.status();
}

const ModelInfo& Engine::info() const { return impl_->info; }

std::string Engine::layer_table() const { return layer_table_of(impl_->plan->graph, &impl_->kernels); }

Result<Session> Session::create(const Engine& engine) {
    auto r = guarded([&] { return std::make_shared<Session::Impl>(engine.impl()); });
    if (!r.ok()) return r.status();
    return Session(r.value());
}

Status Session::run(const float* input, int batch, std::vector<std::vector<float>>* outputs) {
    const ModelInfo& info = impl_->engine->info;
    if (batch < info.min_batch || batch > info.max_batch)
        return Status::Error("batch " + std::to_string(batch) + " is outside the engine's profile " +
                             std::to_string(info.min_batch) + ".." + std::to_string(info.max_batch));
    auto r = guarded([&] {
        auto sizes = impl_->output_elements();
        outputs->resize(sizes.size());
        std::vector<float*> ptrs;
        for (size_t k = 0; k < sizes.size(); ++k) {
            (*outputs)[k].resize(static_cast<size_t>(sizes[k] * batch));
            ptrs.push_back((*outputs)[k].data());
        }
        if (impl_->gpu)
            impl_->gpu->run(input, batch, ptrs);
        else
            impl_->cpu->run(input, batch, ptrs);
        return 0;
    });
    return r.ok() ? Status::Ok() : r.status();
}

void Session::set_profiling(bool on) {
    if (impl_->gpu)
        impl_->gpu->set_profiling(on);
    else
        impl_->cpu->set_profiling(on);
}

std::vector<LayerProfile> Session::profile() const {
    std::vector<LayerProfile> out;
    const auto& times = impl_->layer_times();
    for (size_t i = 0; i < times.size(); ++i) {
        // A CUDA session names the kernel that ran at the profiled batch; the engine's list names
        // every tuning batch's.
        LayerProfile l{times[i].name, times[i].kernel.empty() ? impl_->engine->kernels[i] : times[i].kernel,
                       times[i].ms, 0};
        if (impl_->gpu) {
            l.flops = impl_->gpu->layer_flops()[i];
            l.bytes = impl_->gpu->layer_bytes()[i];
            l.constant_bytes = impl_->gpu->layer_constant_bytes()[i];
        }
        out.push_back(l);
    }
    return out;
}

Result<std::vector<double>> Session::time_compute(int batch, int iterations) {
    return guarded([&] {
        const ModelInfo& info = impl_->engine->info;
        KS_CHECK(batch >= info.min_batch && batch <= info.max_batch, "batch ", batch,
                 " is outside the engine's profile ", info.min_batch, "..", info.max_batch);
        std::vector<double> ms;
        if (!impl_->gpu) {
            std::vector<float> input(static_cast<size_t>(impl_->cpu->input_elements() * batch), 0.5f);
            std::vector<std::vector<float>> outputs;
            for (int i = 0; i < 3; ++i) {
                const Status st = run(input.data(), batch, &outputs);
                KS_CHECK(st.ok(), "inference failed: ", st.message());
            }
            for (int i = 0; i < iterations; ++i) {
                auto t0 = std::chrono::steady_clock::now();
                Status st = run(input.data(), batch, &outputs);
                KS_CHECK(st.ok(), st.message());
                ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
            }
            return ms;
        }
        return impl_->gpu->time_compute(batch, iterations);
    });
}

}  // namespace kestrel
