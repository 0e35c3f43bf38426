// Executes an ExecutionPlan (built for Target::kCuda) on an NVIDIA GPU, TensorRT-style:
//   CudaModel   - the engine on the device: weights packed and uploaded once, conv tactics chosen
//                 (auto-tuned at build, read from the engine at load). Shared by all sessions.
//   CudaSession - an execution context: its own stream, activation arena and I/O buffers, and one
//                 CUDA graph per batch size (captured on the first run of that batch, replayed
//                 after; the plan's stream-1 nodes on a side stream inside it). One per thread; any
//                 number per model.
//
//   auto model = std::make_shared<runtime::CudaModel>(plan, device, /*tune=*/false);
//   runtime::CudaSession s(model);
//   s.run(input, batch, {output0});     // host in, host out (pinned staging, async copies)
#pragma once

#include <cuda_runtime_api.h>

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "backends/cuda/tensors.h"
#include "plan/execution_plan.h"
#include "runtime/session.h"

namespace kestrel::cuda {
struct ConvInt8;
}

namespace kestrel::runtime {

int cuda_device_count();  // 0 without a driver or GPU
// "sm_90" for the GPU `device`; throws when there is no usable CUDA device.
std::string cuda_device_arch(int device);
std::string cuda_device_name(int device);
// What conv timings depend on besides the problem, for the timing cache (runtime/timing_cache.h):
// GPU name, architecture, SM count, CUDA runtime version, conv kernel code version.
std::string cuda_timing_environment(int device);
// The batch sizes a CUDA engine's convolutions are tuned at: the powers of two below max_batch, then
// max_batch. A batch runs the tactics tuned at the smallest of them that is at least as large.
std::vector<int> cuda_tuning_batches(int max_batch);

// YOLOv8's bottleneck: nodes i and i + 1 of the plan are 3x3, stride-1, padding-1 SiLU convs of
// c -> c -> c channels (16 or 32) on f16 NHWC feature maps with 16-byte aligned pixels, the second
// reading the first's output t and adding, if anything, the first's input x; t is read by nothing
// else (consumers: p.graph.consumers()) and is not a graph output; x and the second's output y are
// not the same channels of one buffer. Such a pair may run as one kernel (cuda::conv3x3_pair_nhwc)
// at node i, node i + 1 launching nothing: t never leaves the SM (its arena bytes stay planned,
// unused); tuning decides per batch (CudaModel::bottleneck_pairs). gemm: each conv's GEMM type after
// tuning (only f16 pairs; an INT8 conv that tuning kept in FP16 counts as f16).
bool cuda_bottleneck_pair_at(const plan::ExecutionPlan& p, const std::vector<std::vector<int>>& consumers,
                             const std::function<cuda::ElemType(size_t)>& gemm, size_t i);

// YOLOv8n's model.0 and model.1: node i is the stem (3 -> 16, 3x3 stride 2, SiLU) reading the plain
// float32 image, node i + 1 an f16 SiLU conv (16 -> 32, 3x3 stride 2, gemm as for the pairs) of the
// stem's output and nothing else reads that output; the conv's output f16 NHWC with 16-byte
// aligned pixels. They may run as one kernel (cuda::stem_conv3x3s2_nhwc) at node i, node i + 1
// launching nothing; tuning decides per batch (CudaModel::stem_convs).
bool cuda_stem_conv_at(const plan::ExecutionPlan& p, const std::vector<std::vector<int>>& consumers,
                       const std::function<cuda::ElemType(size_t)>& gemm, size_t i);

// YOLOv8n's model.2: a C2f block with one bottleneck (plan::c2f_block_at) at nodes i..i + 5 whose
// cv1 is a 1x1 conv of 32 -> 32 channels, whose bottleneck is a pair of 16 channels
// (cuda_bottleneck_pair_at) and whose cv2 is a 1x1 conv of 48 -> 32, all SiLU, f16 (gemm as for
// the pairs), on 16-byte aligned f16 NHWC maps, x and y apart. It may run as one kernel
// (cuda::c2f_n1_nhwc) at node i, its convs at i + 2, i + 3 and i + 5 launching nothing (the split
// and the concat are views); tuning decides per batch (CudaModel::c2f_blocks).
bool cuda_c2f_at(const plan::ExecutionPlan& p, const std::vector<std::vector<int>>& consumers,
                 const std::function<cuda::ElemType(size_t)>& gemm, size_t i);

// YOLOv8's neck: node i is an upsample, i + 1 its concat and i + 2 a 1x1 conv
// (plan::upsample_concat_conv_at), the conv f16 (gemm as for the pairs) without residual; the
// upsample's input and the concat's output f16 NHWC arena tensors with 16-byte aligned pixels, the
// upsample's output the concat buffer's first channels (a multiple of 32; the concat copies nothing
// into them) and the arena under 4 GiB. Where the Resize is the nearest 2x upsample (its index maps
// are o / 2), it may launch nothing: the conv reads the upsampled channels from the
// upsample's input (cuda::conv2d_upsampled_concat_nhwc), at the batches whose tuned tactic can
// (CudaModel::upsample_conv). No tuning decides it: the same tactic reads a quarter of those bytes
// and the upsample's write and read-back are gone.
bool cuda_upsample_conv_at(const plan::ExecutionPlan& p, const std::vector<std::vector<int>>& consumers,
                           const std::function<cuda::ElemType(size_t)>& gemm, size_t i);

class TimingCache;

class CudaModel {
   public:
    // tune: time every conv tactic at the plan's batch and keep the fastest (build time); with a
    // timing cache (of cuda_timing_environment(device)), times found there are not measured again
    // and new ones are added to it.
    CudaModel(std::shared_ptr<const plan::ExecutionPlan> plan, int device, bool tune, std::ostream* log = nullptr,
              TimingCache* timing_cache = nullptr);
    ~CudaModel();
    CudaModel(const CudaModel&) = delete;
    CudaModel& operator=(const CudaModel&) = delete;

    const plan::ExecutionPlan& plan() const { return *plan_; }
    int device() const { return device_; }
    // Device copy of constant `value` (float32 as stored; conv weights packed: conv_weights()).
    const void* constant(int value) const;
    const void* conv_weights(size_t node) const { return convs_.at(node).weights; }
    const float* conv_bias(size_t node) const { return convs_.at(node).bias; }
    // An INT8 conv's input scale and dequantisation factors; null for a float conv (including an
    // INT8-calibrated conv that tuning found faster in FP16).
    const cuda::ConvInt8* conv_int8(size_t node) const;
    // The GEMM type a conv runs in (kI8 for INT8 convs), as its tactics are keyed.
    cuda::ElemType conv_gemm_type(size_t node) const { return convs_.at(node).gemm; }
    // A YoloDecode node with head_convs = 1: level l's 1x1 convs packed by cuda::pack_yolo_decode_head.
    const void* decode_head(size_t node, size_t level) const { return decode_heads_.at(node).at(level); }
    const int32_t* resize_map(size_t node, int axis) const { return resize_maps_.at(node)[static_cast<size_t>(axis)]; }
    // Whether upsample `node` launches nothing at `batch`, the conv at node + 2 reading the
    // upsampled channels from its input (cuda_upsample_conv_at; per tuning batch as for the pairs).
    bool upsample_conv(size_t node, int batch) const;
    // The tactics of each conv node (node index -> one per cuda_tuning_batches(max batch)), and every
    // node's kernel name.
    const std::map<size_t, std::vector<int>>& tactics() const { return tactics_; }
    const std::vector<std::string>& kernel_names() const { return kernel_names_; }
    // C2f bottlenecks whose two convs (node i and i + 1) may run as one kernel (cuda::conv3x3_pair_nhwc):
    // node i -> per tuning batch, 1 where tuning found the one kernel faster than the two tuned convs.
    const std::map<size_t, std::vector<int>>& bottleneck_pairs() const { return pairs_; }
    // Whether nodes `node` and `node` + 1 run as one kernel at `batch` (the choice tuned at the
    // smallest tuning batch >= batch, as for the tactics).
    bool bottleneck_pair(size_t node, int batch) const;
    // C2f blocks that may run as one kernel (cuda_c2f_at, cuda::c2f_n1_nhwc): cv1's node -> per
    // tuning batch, 1 where tuning found the one kernel faster than cv1, the bottleneck as tuned
    // and cv2.
    const std::map<size_t, std::vector<int>>& c2f_blocks() const { return c2fs_; }
    // Stems that may run with the conv after them as one kernel (cuda_stem_conv_at): the stem's
    // node -> per tuning batch, 1 where tuning found the one kernel faster than the two.
    const std::map<size_t, std::vector<int>>& stem_convs() const { return stem_convs_; }
    // Whether the stem at `node` and the conv after it run as one kernel at `batch`.
    bool stem_conv(size_t node, int batch) const;
    // Whether the C2f block whose cv1 is `node` runs as one kernel at `batch` (as for the pairs).
    bool c2f_block(size_t node, int batch) const;
    // The cv1 node of the block whose one kernel runs conv `node` (its m1, m2 or cv2) at `batch`, or -1.
    int64_t run_by_c2f(size_t node, int batch) const;
    // Tuning, per (conv, batch) pair: every tactic's time came from the timing cache, or some were measured.
    struct TuneStats {
        int reused = 0, timed = 0;
    };
    const TuneStats& tune_stats() const { return tune_stats_; }

   private:
    void* upload(const void* data, size_t bytes);
    void release(const void* p);  // frees an upload
    void tune(std::ostream* log, TimingCache* cache);
    // Whether `choices` (node -> per tuning batch, 1 where fused) fuses `node` at `batch`: the choice
    // of the smallest tuning batch >= batch.
    bool chosen_at(const std::map<size_t, std::vector<int>>& choices, size_t node, int batch) const;

    std::shared_ptr<const plan::ExecutionPlan> plan_;
    int device_;
    std::vector<void*> allocations_;
    std::map<int, const void*> constants_;
    struct ConvData {
        const void* weights;                         // packed by cuda::pack_conv_weights
        const float* bias;                           // zeros for a conv without bias
        std::shared_ptr<const cuda::ConvInt8> int8;  // INT8 convs (precision="int8")
        cuda::ElemType gemm;                         // the tactics' type
        // Tuning an INT8 conv: its FP16 packing, timed beside the INT8 tactics ("INT8 where faster").
        const void* weights_f16 = nullptr;
    };
    std::map<size_t, ConvData> convs_;
    std::map<size_t, std::array<const int32_t*, 2>> resize_maps_;
    std::map<size_t, std::vector<int>> upsample_convs_;  // upsample node -> per tuning batch, 1: fused
    std::map<size_t, std::vector<const void*>> decode_heads_;
    std::map<size_t, std::vector<int>> tactics_;
    std::vector<std::string> kernel_names_;
    std::map<size_t, std::vector<int>> pairs_;
    std::map<size_t, std::vector<int>> c2fs_;
    std::map<size_t, std::vector<int>> stem_convs_;
    TuneStats tune_stats_;
};

class CudaSession {
   public:
    explicit CudaSession(std::shared_ptr<const CudaModel> model);
    ~CudaSession();
    CudaSession(const CudaSession&) = delete;
    CudaSession& operator=(const CudaSession&) = delete;

    // Host in, host out: input batch x C x H x W floats; outputs[k]: batch x per-image size of output k.
    void run(const float* input, int batch, const std::vector<float*>& outputs);

    // Device side, for benchmarks and GPU pipelines: the bound I/O buffers, and the enqueue of one
    // inference of `batch` images on stream() (a CUDA graph replay unless profiling).
    float* device_input() const;
    float* device_output(size_t k) const;
    void enqueue(int batch);
    cudaStream_t stream() const { return stream_; }
    // GPU time of each of `iterations` enqueues (events around each graph replay), after warm-up.
    std::vector<double> time_compute(int batch, int iterations);

    // Per-layer GPU times (CUDA events) of the last run when profiling is on.
    void set_profiling(bool on) { profiling_ = on; }
    const std::vector<LayerTime>& layer_times() const { return times_; }
    // Floating-point operations of one image (convs and gemms, 2 per multiply-add), per layer.
    const std::vector<double>& layer_flops() const { return flops_; }
    // Bytes a layer moves, at their stored types, each tensor counted once: per image, the
    // activations it reads and writes; per inference, its constants (weights, bias: read once a
    // batch). 0 for layers that run nothing (views, elided concats).
    const std::vector<double>& layer_bytes() const { return bytes_; }
    const std::vector<double>& layer_constant_bytes() const { return constant_bytes_; }

    int64_t input_elements() const { return input_elements_; }  // per image
    std::vector<int64_t> output_elements() const;               // per image, per output

   private:
    struct Step {
        std::string name, kernel;
        std::function<void(cudaStream_t)> launch;  // its kernels for the batch the steps were built for
        size_t first = 0, last = 0;                // the nodes whose work the launch does (a fused kernel's)
    };
    std::vector<Step> build_steps(int batch);
    const std::vector<Step>& steps(int batch);  // built on a batch's first run
    void release();
    uint8_t* address(int value, int batch) const;  // where a run of `batch` images binds the value
    void launch_all(int batch);

    std::shared_ptr<const CudaModel> model_;
    cudaStream_t stream_ = nullptr;
    // The plan's stream 1 (plan::ExecutionPlan::streams), null where every node is on stream 0. In a
    // graph it forks from stream_ at the start and joins it at the end; a node waits for done_[j]
    // of each node j on the other stream whose output it reads (done_[j] null where no such reader).
    cudaStream_t side_stream_ = nullptr;
    cudaEvent_t fork_ = nullptr, join_ = nullptr;
    std::vector<cudaEvent_t> done_;
    std::vector<int> producers_;  // the plan graph's, by value
    uint8_t* arena_ = nullptr;
    // Split-K partial sums, one per plan stream: the convs of a stream never run at once.
    std::array<void*, 2> workspaces_ = {nullptr, nullptr};
    size_t workspace_bytes_ = 0;
    std::vector<uint8_t*> io_;  // graph input then outputs, on the device
    float* host_in_ = nullptr;  // pinned staging
    std::vector<float*> host_out_;
    std::map<int, std::vector<Step>> steps_;  // by batch
    std::map<int, cudaGraphExec_t> graphs_;   // by batch
    std::vector<cudaEvent_t> events_;
    bool profiling_ = false;
    std::vector<LayerTime> times_;
    std::vector<double> flops_;
    std::vector<double> bytes_, constant_bytes_;
    int64_t input_elements_ = 0;
};

}  // namespace kestrel::runtime
