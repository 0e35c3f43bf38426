#include "runtime/cuda_session.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <numeric>
#include <optional>
#include <random>
#include <set>

#include "backends/cuda/conv2d.h"
#include "backends/cuda/launch.cuh"
#include "backends/cuda/ops.h"
#include "backends/cuda/yolo_decode.h"
#include "core/error.h"
#include "core/half.h"
#include "reference/reference.h"
#include "runtime/timing_cache.h"

namespace kestrel::runtime {

namespace {

using cuda::ElemType;
using cuda::NhwcTensor;
using cuda::StridedTensor;
using ir::Node;
using ir::Op;
using plan::Layout;

size_t sz(int64_t v) { return static_cast<size_t>(v); }

template <typename T>
void device_alloc(T** p, size_t bytes) {
    void* d = nullptr;
    KS_CUDA(cudaMalloc(&d, bytes));
    *p = static_cast<T*>(d);
}
template <typename T>
void host_alloc(T** p, size_t bytes) {
    void* h = nullptr;
    KS_CUDA(cudaMallocHost(&h, bytes));
    *p = static_cast<T*>(h);
}

ElemType elem_type(const plan::ValuePlan& vp) { return vp.dtype == DType::kFloat16 ? ElemType::kF16 : ElemType::kF32; }

// The conv as the kernels see it: over the input's stored channels (the stem's are padded).
cuda::ConvShape conv_shape(const plan::ExecutionPlan& p, const Node& n) {
    const ir::Graph& g = p.graph;
    const Shape& w = g.value(n.inputs[1]).shape;
    auto strides = n.attrs.get_ints("strides", {1, 1});
    auto pads = n.attrs.get_ints("pads", {0, 0, 0, 0});
    auto dil = n.attrs.get_ints("dilations", {1, 1});
    cuda::ConvShape s;
    s.groups = static_cast<int>(n.attrs.get_int("group", 1));
    s.k = static_cast<int>(w[0]);
    s.c = static_cast<int>(w[1]) * s.groups;
    s.kh = static_cast<int>(w[2]);
    s.kw = static_cast<int>(w[3]);
    s.stride_h = static_cast<int>(strides[0]);
    s.stride_w = static_cast<int>(strides[1]);
    s.pad_top = static_cast<int>(pads[0]);
    s.pad_left = static_cast<int>(pads[1]);
    s.dil_h = static_cast<int>(dil[0]);
    s.dil_w = static_cast<int>(dil[1]);
    int64_t stored = p.values[sz(n.inputs[0])].channels;
    if (s.groups == 1 && stored > s.c) s.c = static_cast<int>(stored);
    return s;
}

// OIHW weights with input channels zero-padded to s.c (as the stored input is).
std::vector<float> padded_weights(const ir::Tensor& w, const cuda::ConvShape& s) {
    const int64_t k = w.shape[0], c = w.shape[1], taps = w.shape[2] * w.shape[3];
    std::vector<float> out(sz(k * s.c * taps), 0.f);
    for (int64_t o = 0; o < k; ++o)
        for (int64_t i = 0; i < c; ++i)
            std::copy_n(w.data<float>() + (o * c + i) * taps, taps, out.begin() + (o * s.c + i) * taps);
    return out;
}

bool is_int8(const Node& n) { return n.attrs.get_string("precision", "fp32") == "int8"; }

// The GEMM type of a conv: its tactics' key (an INT8 conv reads and writes f16 tensors).
ElemType conv_type(const plan::ExecutionPlan& p, const Node& n) {
    return is_int8(n) ? ElemType::kI8 : elem_type(p.values[sz(n.outputs[0])]);
}

std::string conv_suffix(const Node& n) {
    std::string s;
    if (n.attrs.get_string("activation", "") == "silu") s += "_silu";
    if (n.input(3) >= 0) s += "_residual";
    return s;
}

// Where a session binds NHWC value v: its pixel stride (the root buffer's channels) and the byte
// address of its first element mod 16 (arena, I/O and constant buffers are cudaMalloc'd, so
// 256-byte aligned: only offsets count).
struct Binding {
    int64_t pixel_stride = 0;
    int align = 0;
};
Binding binding(const plan::ExecutionPlan& p, int v) {
    const plan::ValuePlan& vp = p.values[sz(v)];
    const bool view = vp.storage == plan::Storage::kView;
    const plan::ValuePlan& root = p.values[sz(view ? vp.root : v)];
    const int64_t offset = (view ? vp.offset : 0) + (root.storage == plan::Storage::kArena ? root.offset : 0);
    return {root.channels, static_cast<int>(offset % 16)};
}

std::string lower(std::string_view name) {
    std::string s(name);
    std::transform(s.begin(), s.end(), s.begin(), [](char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

// YOLOv8's SPPF: nodes i, i + 1 and i + 2 are k x k stride-1 max-pools with k / 2 padding (k = 3 or
// 5), each pooling the one before, and the first one's input and all three outputs are slices of
// one buffer (the concat they feed, elided). Such a chain runs as one kernel
// (cuda::sppf_maxpool_nhwc) at node i, and nodes i + 1 and i + 2 launch nothing: at batch 1 two
// kernels fewer. Writing the later pools' outputs at node i is safe because the buffer holding them
// is alive from the input's write on (the arena plans a buffer's bytes over all its tensors'
// lifetimes). Returns k, or 0 where node i does not start such a chain.
int sppf_chain_at(const ir::Graph& g, const plan::ExecutionPlan& p, size_t i) {
    if (i + 2 >= g.nodes.size()) return 0;
    auto pool_size = [&](const Node& n) -> int64_t {
        if (n.op != Op::kMaxPool || n.inputs.empty() || n.outputs.size() != 1) return 0;
        const auto k = n.attrs.get_ints("kernel_shape", {});
        if (k.size() != 2 || k[0] != k[1] || (k[0] != 3 && k[0] != 5)) return 0;
        const int64_t h = k[0] / 2;
        const bool same = n.attrs.get_ints("strides", {1, 1}) == std::vector<int64_t>{1, 1} &&
                          n.attrs.get_ints("pads", {0, 0, 0, 0}) == std::vector<int64_t>{h, h, h, h} &&
                          n.attrs.get_ints("dilations", {1, 1}) == std::vector<int64_t>{1, 1};
        return same && p.values[sz(n.inputs[0])].layout == Layout::kNhwc ? k[0] : 0;
    };
    const Node &a = g.nodes[i], &b = g.nodes[i + 1], &c = g.nodes[i + 2];
    const int64_t k = pool_size(a);
    if (k == 0 || pool_size(b) != k || pool_size(c) != k || b.inputs[0] != a.outputs[0] || c.inputs[0] != b.outputs[0])
        return 0;
    auto root = [&](int v) { return p.values[sz(v)].storage == plan::Storage::kView ? p.values[sz(v)].root : v; };
    const int r = root(a.inputs[0]);
    for (int v : {a.outputs[0], b.outputs[0], c.outputs[0]})
        if (root(v) != r) return 0;
    return static_cast<int>(k);
}

}  // namespace

namespace {

// Node k is a SiLU conv in f16 (gemm: its GEMM type after tuning) from and to f16 NHWC tensors with
// 16-byte aligned pixels: what the fused kernels (pairs, C2f blocks, stem + conv) take.
bool f16_silu_conv(const plan::ExecutionPlan& p, const std::function<cuda::ElemType(size_t)>& gemm, size_t k) {
    const Node& n = p.graph.nodes[k];
    if (n.op != Op::kConv || n.attrs.get_string("activation", "") != "silu" || gemm(k) != ElemType::kF16) return false;
    auto fits = [&](int v) {
        const plan::ValuePlan& vp = p.values[sz(v)];
        const Binding b = binding(p, v);
        return vp.layout == Layout::kNhwc && vp.dtype == DType::kFloat16 && b.align == 0 && b.pixel_stride % 8 == 0;
    };
    return fits(n.input(0)) && fits(n.outputs[0]);
}

// A C2f block's four convs' device weights and biases, and whether it adds b, for cuda::c2f_n1_nhwc.
cuda::C2fWeights c2f_weights(const CudaModel& m, const plan::C2fBlock& b) {
    cuda::C2fWeights w;
    w.cv1 = m.conv_weights(b.cv1);
    w.cv1_bias = m.conv_bias(b.cv1);
    w.m1 = m.conv_weights(b.m1);
    w.m1_bias = m.conv_bias(b.m1);
    w.m2 = m.conv_weights(b.m2);
    w.m2_bias = m.conv_bias(b.m2);
    w.cv2 = m.conv_weights(b.cv2);
    w.cv2_bias = m.conv_bias(b.cv2);
    w.shortcut = m.plan().graph.nodes[b.m2].input(3) >= 0;
    return w;
}

// A conv's k biases as the graph holds them (zeros without a bias input): on the host, for the
// stem kernels' launch parameters.
std::vector<float> host_bias(const ir::Graph& g, const Node& n, int k) {
    std::vector<float> b(sz(k), 0.f);
    if (n.input(2) >= 0) std::copy_n(g.value(n.inputs[2]).constant->data<float>(), k, b.begin());
    return b;
}

}  // namespace

bool cuda_bottleneck_pair_at(const plan::ExecutionPlan& p, const std::vector<std::vector<int>>& consumers,
                             const std::function<cuda::ElemType(size_t)>& gemm, size_t i) {
    const ir::Graph& g = p.graph;
    if (i + 1 >= g.nodes.size()) return false;
    auto fits = [&](size_t k) {
        if (!f16_silu_conv(p, gemm, k)) return false;
        const Node& n = g.nodes[k];
        const cuda::ConvShape s = conv_shape(p, n);
        const Shape &xs = g.value(n.input(0)).shape, &ys = g.value(n.outputs[0]).shape;
        return s.kh == 3 && s.kw == 3 && s.stride_h == 1 && s.stride_w == 1 && s.pad_top == 1 && s.pad_left == 1 &&
               s.dil_h == 1 && s.dil_w == 1 && s.groups == 1 && s.c == s.k && (s.c == 16 || s.c == 32) &&
               xs.size() == 4 && xs[1] == s.c && xs == ys;
    };
    const Node &a = g.nodes[i], &b = g.nodes[i + 1];
    if (!fits(i) || !fits(i + 1) || a.input(3) >= 0 || b.inputs[0] != a.outputs[0]) return false;
    if (b.input(3) >= 0 && b.inputs[3] != a.inputs[0]) return false;
    const int t = a.outputs[0];
    if (consumers[sz(t)].size() != 1 || std::find(g.outputs.begin(), g.outputs.end(), t) != g.outputs.end())
        return false;
    // x and y in one buffer: disjoint channel ranges (a view's offset is its first channel's byte).
    auto root = [&](int v) { return p.values[sz(v)].storage == plan::Storage::kView ? p.values[sz(v)].root : v; };
    auto first_byte = [&](int v) {
        return p.values[sz(v)].storage == plan::Storage::kView ? p.values[sz(v)].offset : 0;
    };
    const int x = a.inputs[0], y = b.outputs[0];
    if (root(x) == root(y) && std::abs(first_byte(x) - first_byte(y)) < 2 * g.value(x).shape[1]) return false;
    return true;
}

bool cuda_stem_conv_at(const plan::ExecutionPlan& p, const std::vector<std::vector<int>>& consumers,
                       const std::function<cuda::ElemType(size_t)>& gemm, size_t i) {
    const ir::Graph& g = p.graph;
    if (i + 1 >= g.nodes.size()) return false;
    const Node &stem = g.nodes[i], &conv = g.nodes[i + 1];
    if (stem.op != Op::kConv || stem.input(3) >= 0 || stem.attrs.get_string("activation", "") != "silu" ||
        p.values[sz(stem.inputs[0])].layout != Layout::kPlain || !plan::reads_plain_image(g, stem) ||
        !f16_silu_conv(p, gemm, i + 1) || conv.input(3) >= 0 || conv.inputs[0] != stem.outputs[0])
        return false;
    const int s = stem.outputs[0];
    if (consumers[sz(s)] != std::vector<int>{static_cast<int>(i + 1)} || g.is_graph_output(s)) return false;
    const Shape& xs = g.value(stem.inputs[0]).shape;
    const Binding y = binding(p, conv.outputs[0]);
    return xs.size() == 4 && xs[1] == 3 && y.align == 0 && y.pixel_stride % 8 == 0 &&
           cuda::stem_conv3x3s2_supported(conv_shape(p, stem), conv_shape(p, conv), static_cast<int>(xs[3]),
                                          NhwcTensor{nullptr, ElemType::kF16, 1, 1, 1, 32, y.pixel_stride}) &&
           g.value(s).shape[1] == 16;
}

bool cuda_c2f_at(const plan::ExecutionPlan& p, const std::vector<std::vector<int>>& consumers,
                 const std::function<cuda::ElemType(size_t)>& gemm, size_t i) {
    const ir::Graph& g = p.graph;
    const std::optional<plan::C2fBlock> c2f = plan::c2f_block_at(g, consumers, i);
    if (!c2f || !cuda_bottleneck_pair_at(p, consumers, gemm, c2f->m1)) return false;
    auto pointwise = [&](size_t k, int c, int out) {
        const Node& n = g.nodes[k];
        if (!f16_silu_conv(p, gemm, k) || n.input(3) >= 0) return false;
        const cuda::ConvShape s = conv_shape(p, n);
        return s.kh == 1 && s.kw == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_top == 0 && s.pad_left == 0 &&
               s.groups == 1 && s.c == c && s.k == out && g.value(n.input(0)).shape[1] == c;
    };
    if (conv_shape(p, g.nodes[c2f->m1]).c != 16 || !pointwise(c2f->cv1, 32, 32) || !pointwise(c2f->cv2, 48, 32))
        return false;
    // x is read while y is written: separate buffers, whose bytes the planner keeps apart
    // (plan::c2f_block_at), checked here for the engine's plan.
    auto root = [&](int v) { return p.values[sz(v)].storage == plan::Storage::kView ? p.values[sz(v)].root : v; };
    const plan::ValuePlan &x = p.values[sz(root(g.nodes[i].inputs[0]))],
                          &y = p.values[sz(root(g.nodes[c2f->cv2].outputs[0]))];
    if (&x == &y) return false;
    if (x.storage == plan::Storage::kArena && y.storage == plan::Storage::kArena) {
        const int64_t batch = p.options.batch;
        return x.offset + x.bytes / batch <= y.offset || y.offset + y.bytes / batch <= x.offset;
    }
    return true;
}

bool cuda_upsample_conv_at(const plan::ExecutionPlan& p, const std::vector<std::vector<int>>& consumers,
                           const std::function<cuda::ElemType(size_t)>& gemm, size_t i) {
    const ir::Graph& g = p.graph;
    const std::optional<size_t> j = plan::upsample_concat_conv_at(g, consumers, i);
    if (!j || gemm(*j) != ElemType::kF16 || p.arena_bytes >= (int64_t{1} << 32)) return false;
    const int up = g.nodes[i].outputs[0], cat = g.nodes[i + 1].outputs[0];
    auto arena_f16 = [&](int v) {
        const plan::ValuePlan& vp = p.values[sz(v)];
        const plan::ValuePlan& root = vp.storage == plan::Storage::kView ? p.values[sz(vp.root)] : vp;
        const Binding b = binding(p, v);
        return vp.layout == Layout::kNhwc && vp.dtype == DType::kFloat16 && root.storage == plan::Storage::kArena &&
               b.align == 0 && b.pixel_stride % 8 == 0;
    };
    // The upsampled channels: the first ones of the concat's buffer, at the concat's own offset in it.
    const plan::ValuePlan &u = p.values[sz(up)], &c = p.values[sz(cat)];
    const int cat_root = c.storage == plan::Storage::kView ? c.root : cat;
    const int64_t cat_offset = c.storage == plan::Storage::kView ? c.offset : 0;
    return arena_f16(g.nodes[i].inputs[0]) && arena_f16(cat) && u.storage == plan::Storage::kView &&
           u.root == cat_root && u.offset == cat_offset && g.value(up).shape[1] % 32 == 0 &&
           g.value(up).shape[1] < g.value(cat).shape[1] &&
           p.values[sz(g.nodes[i].inputs[0])].channels == g.value(up).shape[1];  // no padding channels
}

int cuda_device_count() {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();  // no driver or no device: not an error to carry into later calls
        return 0;
    }
    return count;
}

std::string cuda_device_arch(int device) {
    int count = cuda_device_count();
    KS_CHECK(count > 0, "device=", device, ": no CUDA GPU found; use device=cpu");
    KS_CHECK(device >= 0 && device < count, "device=", device, " does not exist (", count, " CUDA GPU(s))");
    cudaDeviceProp p{};
    KS_CUDA(cudaGetDeviceProperties(&p, device));
    return "sm_" + std::to_string(p.major) + std::to_string(p.minor);
}

std::string cuda_device_name(int device) {
    cudaDeviceProp p{};
    KS_CUDA(cudaGetDeviceProperties(&p, device));
    return p.name;
}

std::string cuda_timing_environment(int device) {
    cuda_device_arch(device);  // a clear error when there is no GPU
    cudaDeviceProp p{};
    KS_CUDA(cudaGetDeviceProperties(&p, device));
    int runtime = 0;
    KS_CUDA(cudaRuntimeGetVersion(&runtime));
    // KESTREL_CONV_KERNELS_VERSION: a digest of the conv kernel sources and nvcc's version (cmake/cuda.cmake).
    return std::string("gpu=") + p.name + ";arch=sm_" + std::to_string(p.major) + std::to_string(p.minor) +
           ";sms=" + std::to_string(p.multiProcessorCount) + ";cudart=" + std::to_string(runtime) +
           ";kernels=" KESTREL_CONV_KERNELS_VERSION ";timing=graphs";
}

std::vector<int> cuda_tuning_batches(int max_batch) {
    KS_CHECK(max_batch >= 1, "CUDA: the max batch must be at least 1");
    std::vector<int> batches;
    for (int b = 1; b < max_batch; b *= 2) batches.push_back(b);
    batches.push_back(max_batch);
    return batches;
}

namespace {
// The timing cache's key fields of a conv (or of a kernel run on the conv's shape) on these tensors
// at their batch; align: the byte address mod 16 of x, y and the residual (runtime/timing_cache.h).
ConvProblem conv_problem(const char* type, const cuda::ConvShape& s, const NhwcTensor& x, const NhwcTensor& y,
                         bool silu, const NhwcTensor* residual, std::array<int, 3> align) {
    return {.type = type,
            .batch = y.n,
            .in_h = x.h,
            .in_w = x.w,
            .c = s.c,
            .k = s.k,
            .kh = s.kh,
            .kw = s.kw,
            .stride_h = s.stride_h,
            .stride_w = s.stride_w,
            .pad_top = s.pad_top,
            .pad_left = s.pad_left,
            .dil_h = s.dil_h,
            .dil_w = s.dil_w,
            .groups = s.groups,
            .out_h = y.h,
            .out_w = y.w,
            .silu = silu,
            .residual = residual != nullptr,
            .x_stride = x.pixel_stride,
            .y_stride = y.pixel_stride,
            .residual_stride = residual ? residual->pixel_stride : 0,
            .x_align = align[0],
            .y_align = align[1],
            .residual_align = align[2]};
}

// The tuning slot a batch runs with: the smallest tuning batch >= it.
size_t tuning_slot(const std::vector<int>& batches, int batch) {
    return static_cast<size_t>(std::lower_bound(batches.begin(), batches.end(), batch) - batches.begin());
}

// What `launch` enqueues on `stream`, captured and instantiated as a CUDA graph.
cudaGraphExec_t capture_graph(cudaStream_t stream, const std::function<void()>& launch) {
    cudaGraph_t graph = nullptr;
    KS_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    try {
        launch();
    } catch (...) {
        cudaStreamEndCapture(stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        throw;
    }
    KS_CUDA(cudaStreamEndCapture(stream, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    KS_CUDA(e);
    return exec;
}
}  // namespace

// ---- CudaModel ----------------------------------------------------------------------------------

CudaModel::CudaModel(std::shared_ptr<const plan::ExecutionPlan> plan, int device, bool tune, std::ostream* log,
                     TimingCache* timing_cache)
    : plan_(std::move(plan)), device_(device) {
    cuda_device_arch(device);  // a clear error when there is no GPU
    KS_CUDA(cudaSetDevice(device));
    const ir::Graph& g = plan_->graph;
    try {
        std::set<size_t> upsamples_2x;  // Resizes that are the nearest 2x upsample: out (oy, ox) = in (oy / 2, ox / 2)
        for (size_t i = 0; i < g.nodes.size(); ++i) {
            const Node& n = g.nodes[i];
            if (n.op == Op::kConv) {
                const ir::Value& w = g.value(n.inputs[1]);
                KS_CHECK(w.constant && w.dtype == DType::kFloat32, "'", n.name, "': conv weights must be constant");
                cuda::ConvShape s = conv_shape(*plan_, n);
                if (plan_->values[sz(n.inputs[0])].layout == Layout::kPlain) {
                    // The stem reads the image as it is; its OIHW float weights go to the kernel as
                    // launch parameters (from the host, see stem_conv.cu): no upload, no tactics.
                    KS_CHECK(cuda::conv2d_nchw_input_supported(s), "'", n.name, "': no CUDA kernel for this conv");
                    if (n.attrs.has("cuda_stem_conv")) {
                        const std::vector<int64_t> stored = n.attrs.get_ints("cuda_stem_conv");
                        stem_convs_[i].assign(stored.begin(), stored.end());
                    }
                    continue;
                }
                const ElemType type = conv_type(*plan_, n);
                std::vector<float> w_scales;
                auto packed = cuda::pack_conv_weights(padded_weights(*w.constant, s).data(), s, type, &w_scales);
                std::vector<float> bias(sz(s.k), 0.f);
                if (n.input(2) >= 0) {
                    const ir::Value& b = g.value(n.inputs[2]);
                    KS_CHECK(b.constant && b.constant->size() == s.k, "'", n.name, "': conv bias must be constant");
                    std::copy_n(b.constant->data<float>(), s.k, bias.begin());
                }
                convs_[i] = {upload(packed.data(), packed.size()),
                             static_cast<const float*>(upload(bias.data(), bias.size() * sizeof(float))), nullptr,
                             type};
                if (type == ElemType::kI8) {
                    KS_CHECK(elem_type(plan_->values[sz(n.outputs[0])]) == ElemType::kF16, "'", n.name,
                             "': INT8 convolutions on CUDA read and write float16 feature maps");
                    auto q = std::make_shared<cuda::ConvInt8>();
                    q->input_scale = static_cast<float>(n.attrs.get_float("input_scale", 0.f));
                    KS_CHECK(std::isfinite(q->input_scale) && q->input_scale > 0, "'", n.name,
                             "': no INT8 input scale");
                    std::vector<float> dequant(w_scales.size());
                    for (size_t k = 0; k < dequant.size(); ++k) dequant[k] = q->input_scale * w_scales[k];
                    q->dequant = static_cast<const float*>(upload(dequant.data(), dequant.size() * sizeof(float)));
                    convs_[i].int8 = std::move(q);
                    if (tune && !n.attrs.has("cuda_tactics")) {
                        auto f16 = cuda::pack_conv_weights(padded_weights(*w.constant, s).data(), s, ElemType::kF16);
                        convs_[i].weights_f16 = upload(f16.data(), f16.size());
                    }
                }
                if (n.attrs.has("cuda_tactics")) {
                    const std::vector<int64_t> stored = n.attrs.get_ints("cuda_tactics");
                    tactics_[i].assign(stored.begin(), stored.end());
                }
                if (n.attrs.has("cuda_bottleneck_pair")) {
                    const std::vector<int64_t> stored = n.attrs.get_ints("cuda_bottleneck_pair");
                    pairs_[i].assign(stored.begin(), stored.end());
                }
                if (n.attrs.has("cuda_c2f")) {
                    const std::vector<int64_t> stored = n.attrs.get_ints("cuda_c2f");
                    c2fs_[i].assign(stored.begin(), stored.end());
                }
                continue;
            }
            if (n.op == Op::kResize) {
                const Shape& is = g.value(n.inputs[0]).shape;
                const Shape& os = g.value(n.outputs[0]).shape;
                std::string cm = n.attrs.get_string("coordinate_transformation_mode", "half_pixel");
                std::string nm = n.attrs.get_string("nearest_mode", "round_prefer_floor");
                KS_CHECK(n.attrs.get_string("mode", "nearest") == "nearest", "'", n.name,
                         "': only nearest Resize runs on CUDA");
                std::array<const int32_t*, 2> maps{};
                bool doubles = true;  // both axes the nearest 2x upsample
                for (int a = 0; a < 2; ++a) {
                    int64_t in_len = is[sz(2 + a)], out_len = os[sz(2 + a)];
                    std::string key = a == 0 ? "scale_h" : "scale_w";
                    double scale = n.attrs.has(key) ? n.attrs.get_float(key, 1) : double(out_len) / double(in_len);
                    std::vector<int32_t> m(sz(out_len));
                    doubles = doubles && out_len == 2 * in_len;
                    for (int64_t o = 0; o < out_len; ++o) {
                        m[sz(o)] = static_cast<int32_t>(reference::nearest_source(o, scale, in_len, out_len, cm, nm));
                        doubles = doubles && m[sz(o)] == o / 2;
                    }
                    maps[sz(a)] = static_cast<const int32_t*>(upload(m.data(), m.size() * sizeof(int32_t)));
                }
                resize_maps_[i] = maps;
                if (doubles) upsamples_2x.insert(i);
            }
            size_t packed_begin = 0, packed_end = 0;  // inputs packed here, not uploaded as they are
            if (n.op == Op::kYoloDecode && n.attrs.get_int("head_convs", 0) != 0) {
                // The head's 1x1 convs (passes/fuse_yolo_head_convs.cc), packed for the decode kernel:
                // inputs box_l, cls_l for every level, then w_box_l, b_box_l, w_cls_l, b_cls_l.
                const size_t levels = sz(n.attrs.get_int("num_levels", 0));
                const int reg_max = static_cast<int>(n.attrs.get_int("reg_max", 0));
                const int nc = static_cast<int>(n.attrs.get_int("nc", 0));
                KS_CHECK(levels >= 1 && n.inputs.size() == 6 * levels + 3, "'", n.name, "': bad YoloDecode inputs");
                auto weights = [&](size_t k, int64_t rows, int64_t cols) {
                    const ir::Value& v = g.value(n.inputs[k]);
                    KS_CHECK(v.constant && v.dtype == DType::kFloat32 && v.constant->size() == rows * cols, "'", n.name,
                             "': head conv input ", k, " must be a constant float32 ", rows, " x ", cols);
                    return v.constant->data<float>();
                };
                for (size_t l = 0; l < levels; ++l) {
                    const size_t w0 = 2 * levels + 4 * l;
                    const int cb = static_cast<int>(g.value(n.inputs[2 * l]).shape[1]);
                    const int cc = static_cast<int>(g.value(n.inputs[2 * l + 1]).shape[1]);
                    auto packed = cuda::pack_yolo_decode_head(weights(w0, 4 * reg_max, cb),
                                                              weights(w0 + 1, 4 * reg_max, 1), weights(w0 + 2, nc, cc),
                                                              weights(w0 + 3, nc, 1), cb, cc, reg_max, nc);
                    decode_heads_[i].push_back(upload(packed.data(), packed.size()));
                }
                packed_begin = 2 * levels;
                packed_end = 6 * levels;
            }
            for (size_t k = 0; k < n.inputs.size(); ++k) {
                const int in = n.inputs[k];
                if (k >= packed_begin && k < packed_end) continue;
                if (!g.is_constant(in) || constants_.count(in)) continue;
                const ir::Value& v = g.value(in);
                if (v.dtype != DType::kFloat32) continue;  // shape-like inputs are attributes by now
                constants_[in] = upload(v.constant->bytes.data(), v.constant->bytes.size());
            }
        }
        if (tune) this->tune(log, timing_cache);
        kernel_names_.resize(g.nodes.size());
        const std::vector<int> batches = cuda_tuning_batches(plan_->options.batch);
        for (size_t i = 0; i < g.nodes.size(); ++i) {
            const Node& n = g.nodes[i];
            const plan::ValuePlan& out = plan_->values[sz(n.outputs[0])];
            std::string io = std::string("_") + (out.dtype == DType::kFloat16 ? "f16" : "f32") + "_" +
                             std::string(plan::layout_name(out.layout));
            if (n.op == Op::kConv && plan_->values[sz(n.inputs[0])].layout == Layout::kPlain) {
                // The session's address of the output: its root's (arena offsets are per image, so any
                // batch keeps their alignment) plus a view's offset; the pixel stride is the root's channels.
                const plan::ValuePlan& root = out.storage == plan::Storage::kView ? plan_->values[sz(out.root)] : out;
                const bool aligned = out.layout == Layout::kNhwc && root.offset % 16 == 0 &&
                                     (out.storage != plan::Storage::kView || out.offset % 16 == 0) &&
                                     root.channels * (out.dtype == DType::kFloat16 ? 2 : 4) % 16 == 0;
                kernel_names_[i] = cuda::conv2d_nchw_input_kernel_name(conv_shape(*plan_, n), elem_type(out), aligned) +
                                   conv_suffix(n);
            } else if (n.op == Op::kConv) {
                auto it = tactics_.find(i);
                cuda::ConvShape s = conv_shape(*plan_, n);
                KS_CHECK(it != tactics_.end() && it->second.size() == batches.size(), "'", n.name,
                         "': no tuned CUDA conv kernels for batches 1-", plan_->options.batch,
                         "; re-export the engine");
                const ElemType type = convs_.at(i).gemm;
                for (int t : it->second)
                    KS_CHECK(t >= 0 && t < cuda::conv2d_tactic_count() && cuda::conv2d_tactic_supports(t, s, type), "'",
                             n.name, "': tactic ", t, " does not run this convolution; re-export the engine");
                // The max batch's kernel, then each smaller tuning batch whose kernel differs from the
                // next larger one's ("| batch <= 8: ...").
                kernel_names_[i] = cuda::conv2d_tactic_name(it->second.back(), s, type) + conv_suffix(n);
                for (size_t j = batches.size() - 1; j-- > 0;)
                    if (it->second[j] != it->second[j + 1])
                        kernel_names_[i] += " | batch <= " + std::to_string(batches[j]) + ": " +
                                            cuda::conv2d_tactic_name(it->second[j], s, type);
            } else if (n.op == Op::kIdentity) {
                Layout from = plan_->values[sz(n.inputs[0])].layout;
                kernel_names_[i] =
                    from == out.layout ? "copy" + io : "reorder_" + std::string(plan::layout_name(from)) + "_to" + io;
            } else if (n.op == Op::kConcat) {
                // Elided when every input was planned inside the output: nothing runs.
                auto root = [&](int v) {
                    return plan_->values[sz(v)].storage == plan::Storage::kView ? plan_->values[sz(v)].root : v;
                };
                bool elided = true;
                for (int in : n.inputs)
                    elided = elided && !g.is_constant(in) && plan_->values[sz(in)].storage == plan::Storage::kView &&
                             root(in) == root(n.outputs[0]);
                kernel_names_[i] = (elided ? "elided_concat" : "concat") + io;
            } else if (n.op == Op::kYoloDecode && n.attrs.get_int("head_convs", 0) != 0) {
                kernel_names_[i] = "yolodecode_head1x1_mma_m16n8k16_f16_nhwc_to_f32_nchw";
            } else if (plan_->values[sz(n.outputs[0])].storage == plan::Storage::kView) {
                kernel_names_[i] = "view_" + lower(ir::op_name(n.op)) + io;
            } else {
                kernel_names_[i] = lower(ir::op_name(n.op)) + io;
            }
        }
        // The bottleneck pairs: checked again on this plan (an engine's choice for a graph it no
        // longer fits is not run), named per tuning batch as the convs are.
        const std::vector<std::vector<int>> consumers = g.consumers();
        auto gemm = [&](size_t k) { return convs_.count(k) ? convs_.at(k).gemm : ElemType::kF32; };
        for (const auto& [i, fused] : pairs_)
            KS_CHECK(fused.size() == batches.size() && cuda_bottleneck_pair_at(*plan_, consumers, gemm, i) &&
                         !pairs_.count(i + 1) && !pairs_.count(i - 1),
                     "'", g.nodes[i].name,
                     "': its stored bottleneck pair does not fit this graph; re-export the engine");
        for (const auto& [i, fused] : c2fs_)
            KS_CHECK(fused.size() == batches.size() && cuda_c2f_at(*plan_, consumers, gemm, i), "'", g.nodes[i].name,
                     "': its stored C2f block does not fit this graph; re-export the engine");
        for (const auto& [i, fused] : stem_convs_)
            KS_CHECK(fused.size() == batches.size() && cuda_stem_conv_at(*plan_, consumers, gemm, i), "'",
                     g.nodes[i].name, "': its stored stem + conv kernel does not fit this graph; re-export the engine");
        // The convs that pairs, C2f blocks and the stem + conv kernel may run: a name per tuning
        // batch (the conv's own kernel where none runs it), joined as "name | batch <= b: name ...".
        std::map<size_t, std::vector<std::string>> by_batch;
        auto names_of = [&](size_t k) -> std::vector<std::string>& {
            auto [it, added] = by_batch.try_emplace(k);
            if (added && !tactics_.count(k)) it->second.assign(batches.size(), kernel_names_[k]);  // the stem
            if (added && tactics_.count(k))
                for (size_t j = 0; j < batches.size(); ++j)
                    it->second.push_back(
                        cuda::conv2d_tactic_name(tactics_.at(k)[j], conv_shape(*plan_, g.nodes[k]), convs_.at(k).gemm) +
                        conv_suffix(g.nodes[k]));
            return it->second;
        };
        for (const auto& [i, fused] : pairs_) {
            const std::string pair = cuda::conv3x3_pair_kernel_name(static_cast<int>(conv_shape(*plan_, g.nodes[i]).c));
            for (size_t j = 0; j < batches.size(); ++j)
                if (fused[j]) {
                    names_of(i)[j] = pair;
                    names_of(i + 1)[j] = "in_" + pair;
                }
        }
        const std::string stem_conv = cuda::stem_conv3x3s2_kernel_name();
        for (const auto& [i, fused] : stem_convs_)
            for (size_t j = 0; j < batches.size(); ++j)
                if (fused[j]) {
                    names_of(i)[j] = stem_conv;
                    names_of(i + 1)[j] = "in_" + stem_conv;
                }
        const std::string c2f = cuda::c2f_n1_kernel_name();
        for (const auto& [i, fused] : c2fs_) {
            const plan::C2fBlock b = *plan::c2f_block_at(g, consumers, i);
            for (size_t j = 0; j < batches.size(); ++j)
                if (fused[j]) {
                    names_of(b.cv1)[j] = c2f;
                    for (size_t k : {b.m1, b.m2, b.cv2}) names_of(k)[j] = "in_" + c2f;
                }
        }
        // The neck's upsamples that the conv after their concat runs (cuda_upsample_conv_at): at the
        // tuning batches where that conv's tactic reads an upsampled input and no fused kernel takes
        // the conv.
        for (size_t i = 0; i < g.nodes.size(); ++i) {
            if (!upsamples_2x.count(i) || !cuda_upsample_conv_at(*plan_, consumers, gemm, i)) continue;
            const size_t j = i + 2;
            if (by_batch.count(j)) continue;  // a pair, C2f block or stem + conv kernel may run it
            std::vector<int> fused(batches.size());
            const cuda::ConvShape s = conv_shape(*plan_, g.nodes[j]);
            for (size_t b = 0; b < batches.size(); ++b)
                if ((fused[b] = cuda::conv2d_tactic_reads_upsampled(tactics_.at(j)[b]) ? 1 : 0))
                    names_of(i)[b] = "in_" + cuda::conv2d_tactic_name(tactics_.at(j)[b], s, ElemType::kF16) +
                                     conv_suffix(g.nodes[j]);
            upsample_convs_[i] = std::move(fused);
        }
        for (const auto& [k, names] : by_batch) {
            kernel_names_[k] = names.back();
            for (size_t j = names.size() - 1; j-- > 0;)
                if (names[j] != names[j + 1])
                    kernel_names_[k] += " | batch <= " + std::to_string(batches[j]) + ": " + names[j];
        }
        for (size_t i = 0; i < g.nodes.size(); ++i)
            if (const int k = sppf_chain_at(g, *plan_, i)) {
                const std::string type =
                    plan_->values[sz(g.nodes[i].outputs[0])].dtype == DType::kFloat16 ? "f16" : "f32";
                kernel_names_[i] =
                    "sppf_3x_maxpool" + std::to_string(k) + "x" + std::to_string(k) + "_" + type + "_nhwc";
                kernel_names_[i + 1] = kernel_names_[i + 2] = "in_" + kernel_names_[i];
                i += 2;
            }
    } catch (...) {
        for (void* p : allocations_) cudaFree(p);
        throw;
    }
}

bool CudaModel::chosen_at(const std::map<size_t, std::vector<int>>& choices, size_t node, int batch) const {
    auto it = choices.find(node);
    if (it == choices.end()) return false;
    const size_t slot = tuning_slot(cuda_tuning_batches(plan_->options.batch), batch);
    return slot < it->second.size() && it->second[slot] != 0;
}

bool CudaModel::stem_conv(size_t node, int batch) const { return chosen_at(stem_convs_, node, batch); }
bool CudaModel::c2f_block(size_t node, int batch) const { return chosen_at(c2fs_, node, batch); }
bool CudaModel::upsample_conv(size_t node, int batch) const { return chosen_at(upsample_convs_, node, batch); }
bool CudaModel::bottleneck_pair(size_t node, int batch) const { return chosen_at(pairs_, node, batch); }

int64_t CudaModel::run_by_c2f(size_t node, int batch) const {
    for (const auto& [i, fused] : c2fs_)
        if ((node == i + 2 || node == i + 3 || node == i + 5) && c2f_block(i, batch)) return static_cast<int64_t>(i);
    return -1;
}

CudaModel::~CudaModel() {
    cudaSetDevice(device_);
    for (void* p : allocations_) cudaFree(p);
}

void CudaModel::release(const void* p) {
    auto it = std::find(allocations_.begin(), allocations_.end(), p);
    if (it == allocations_.end()) return;
    cudaFree(*it);
    allocations_.erase(it);
}

void* CudaModel::upload(const void* data, size_t bytes) {
    void* p = nullptr;
    KS_CUDA(cudaMalloc(&p, std::max<size_t>(bytes, 16)));
    allocations_.push_back(p);
    KS_CUDA(cudaMemcpy(p, data, bytes, cudaMemcpyHostToDevice));
    return p;
}

const cuda::ConvInt8* CudaModel::conv_int8(size_t node) const { return convs_.at(node).int8.get(); }

const void* CudaModel::constant(int value) const {
    auto it = constants_.find(value);
    KS_CHECK(it != constants_.end(), "CUDA: constant '", plan_->graph.value(value).name, "' is not on the device");
    return it->second;
}

// Auto-tuning: each conv on random tensors laid out as the session binds them (pixel strides and
// 16-byte alignment of channel slices, which decide the kernels' vector paths), every supported
// tactic timed with CUDA events (median of 5 after 2 warm-ups), at each of cuda_tuning_batches(the
// plan's max batch), largest first: the fastest at each is kept, and a run uses the one tuned at
// the smallest of those batches that is at least its own. Large tiles win big batches; at batch 1
// they leave most SMs idle, and between the two the winners change layer by layer (tuning at batch
// 1 and the max batch only ran batch 8 with batch 1's split-K tactics). Times found in the timing
// cache are used as measured; the others are measured and added to it.
void CudaModel::tune(std::ostream* log, TimingCache* cache) {
    const ir::Graph& g = plan_->graph;
    const int max_batch = plan_->options.batch;
    auto tunable = [&](const Node& n) {
        return n.op == Op::kConv && plan_->values[sz(n.inputs[0])].layout == Layout::kNhwc;
    };
    // Scratch bytes for one NHWC operand at `batch`, with room for its slice's misalignment.
    auto region = [&](int v, int batch) {
        const Shape& s = g.value(v).shape;
        const int64_t es = static_cast<int64_t>(dtype_size(plan_->values[sz(v)].dtype));
        const int64_t bytes = int64_t{batch} * s[2] * s[3] * binding(*plan_, v).pixel_stride * es + 16;
        return (bytes + 255) / 256 * 256;
    };
    int64_t scratch_bytes = 0;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        const Node& n = g.nodes[i];
        if (!tunable(n)) continue;
        int64_t b = region(n.inputs[0], max_batch) + region(n.outputs[0], max_batch);
        if (n.input(3) >= 0) b += region(n.inputs[3], max_batch);
        scratch_bytes = std::max(scratch_bytes, b);
        // A bottleneck pair's operands (below): the first conv's input, the second's output.
        const Node* next = i + 1 < g.nodes.size() ? &g.nodes[i + 1] : nullptr;
        if (next && tunable(*next) && next->inputs[0] == n.outputs[0])
            scratch_bytes =
                std::max(scratch_bytes, region(n.inputs[0], max_batch) + region(next->outputs[0], max_batch));
        // A C2f block's (below): cv1's input, cv2's output.
        if (i + 5 < g.nodes.size() && tunable(g.nodes[i + 5]))
            scratch_bytes =
                std::max(scratch_bytes, region(n.inputs[0], max_batch) + region(g.nodes[i + 5].outputs[0], max_batch));
    }
    // The stem + conv kernel's (below): the float32 image, the stem's output (the stem alone is timed
    // too) and the conv's output.
    auto image_region = [&](int v, int batch) {
        return (int64_t{batch} * num_elements(g.value(v).shape) * 4 + 255) / 256 * 256;
    };
    for (size_t i = 0; i + 1 < g.nodes.size(); ++i)
        if (g.nodes[i].op == Op::kConv && plan_->values[sz(g.nodes[i].inputs[0])].layout == Layout::kPlain &&
            tunable(g.nodes[i + 1]) && g.nodes[i + 1].inputs[0] == g.nodes[i].outputs[0])
            scratch_bytes = std::max(scratch_bytes, image_region(g.nodes[i].inputs[0], max_batch) +
                                                        region(g.nodes[i].outputs[0], max_batch) +
                                                        region(g.nodes[i + 1].outputs[0], max_batch));
    if (scratch_bytes == 0) return;
    // Split-K tactics need a zero-filled workspace (they leave it zero-filled): the largest any
    // candidate needs at the max batch, after the activations in one allocation.
    int64_t workspace_bytes = 0;
    for (const Node& n : g.nodes) {
        if (!tunable(n)) continue;
        cuda::ConvShape s = conv_shape(*plan_, n);
        const Shape& ys = g.value(n.outputs[0]).shape;
        for (ElemType type : {conv_type(*plan_, n), elem_type(plan_->values[sz(n.outputs[0])])})
            for (int t = 0; t < cuda::conv2d_tactic_count(); ++t)
                if (cuda::conv2d_tactic_supports(t, s, type))
                    workspace_bytes = std::max<int64_t>(
                        workspace_bytes, static_cast<int64_t>(cuda::conv2d_workspace_bytes(
                                             t, s, type, max_batch, static_cast<int>(ys[2]), static_cast<int>(ys[3]))));
    }
    uint8_t* scratch = nullptr;
    device_alloc(&scratch, sz(scratch_bytes + workspace_bytes));
    void* workspace = scratch + scratch_bytes;
    cudaStream_t stream = nullptr;
    cudaEvent_t start = nullptr, stop = nullptr;
    try {
        {
            // Random halves/floats in [-1, 1): zeros would time a different (faster) machine.
            std::mt19937 rng(7);
            std::uniform_real_distribution<float> u(-1.f, 1.f);
            std::vector<uint16_t> host(sz(scratch_bytes / 2));
            for (auto& h : host) h = float_to_half(u(rng));
            KS_CUDA(cudaMemcpy(scratch, host.data(), host.size() * 2, cudaMemcpyHostToDevice));
            KS_CUDA(cudaMemset(workspace, 0, sz(workspace_bytes)));
        }
        KS_CUDA(cudaStreamCreate(&stream));
        KS_CUDA(cudaEventCreate(&start));
        KS_CUDA(cudaEventCreate(&stop));
        const std::vector<int> batches = cuda_tuning_batches(max_batch);
        // A group of back-to-back launches, captured into a CUDA graph without PDL (launch.cuh) and
        // replayed between events: the median of 5 replays after 2 warm-up ones. Launched by the host
        // one at a time they took at least ~4.3 us each on the H100 (the host's launch path), longer
        // than most batch-1 convs run, so batch-1 times were the host's and tactics tied. One plain
        // launch first sets up what a kernel's first launch does (shared-memory limits, occupancy).
        auto time_ms = [&](int batch, const std::function<void()>& launch) {
            const int group = std::max(3, 20 / batch);
            launch();
            cudaGraphExec_t exec = nullptr;
            {
                const cuda::ScopedPlainGraphLaunches plain;
                exec = capture_graph(stream, [&] {
                    for (int k = 0; k < group; ++k) launch();
                });
            }
            std::vector<float> ms;
            try {
                for (int rep = 0; rep < 7; ++rep) {
                    KS_CUDA(cudaEventRecord(start, stream));
                    KS_CUDA(cudaGraphLaunch(exec, stream));
                    KS_CUDA(cudaEventRecord(stop, stream));
                    KS_CUDA(cudaEventSynchronize(stop));
                    float e = 0;
                    KS_CUDA(cudaEventElapsedTime(&e, start, stop));
                    if (rep >= 2) ms.push_back(e / static_cast<float>(group));
                }
            } catch (...) {
                cudaGraphExecDestroy(exec);
                throw;
            }
            KS_CUDA(cudaGraphExecDestroy(exec));
            std::nth_element(ms.begin(), ms.begin() + static_cast<long>(ms.size() / 2), ms.end());
            return static_cast<double>(ms[ms.size() / 2]);
        };
        // The convs that can read an upsample's output in place (cuda_upsample_conv_at) time only the
        // tactics that do (conv2d_tactic_reads_upsampled): with another, the upsample would run as a
        // kernel of its own, which the conv's time leaves out.
        std::set<size_t> after_upsample;
        {
            const std::vector<std::vector<int>> consumers = g.consumers();
            auto gemm = [&](size_t k) { return convs_.count(k) ? convs_.at(k).gemm : ElemType::kF32; };
            for (size_t i = 0; i + 2 < g.nodes.size(); ++i)
                if (g.nodes[i].op == Op::kResize && cuda_upsample_conv_at(*plan_, consumers, gemm, i))
                    after_upsample.insert(i + 2);
        }
        // Each conv tuned here, its best time at every tuning batch (the bottleneck pairs below).
        std::map<size_t, std::vector<double>> best_times;
        for (size_t i = 0; i < g.nodes.size(); ++i) {
            if (!tunable(g.nodes[i]) || tactics_.count(i)) continue;  // not a tuned conv, or tuned in the engine
            tactics_[i].assign(batches.size(), -1);
            best_times[i].assign(batches.size(), 0.0);
            for (size_t slot = batches.size(); slot-- > 0;) {
                const Node& n = g.nodes[i];
                const int batch = batches[slot];
                const bool largest = slot + 1 == batches.size();
                // Tensors of the feature maps' type; tactics of the GEMM's (kI8 for INT8 convs). An
                // INT8 conv is timed in INT8 and in FP16 at the max batch and runs in the faster, as
                // TensorRT picks each layer's precision ("INT8 where faster"); smaller batches then
                // tune the type chosen.
                ConvData& cd = convs_[i];
                const ElemType type = elem_type(plan_->values[sz(n.outputs[0])]);
                std::vector<ElemType> gemms = {cd.gemm};
                if (cd.gemm == ElemType::kI8 && cd.weights_f16 && largest) gemms.push_back(type);
                cuda::ConvShape s = conv_shape(*plan_, n);
                const bool has_res = n.input(3) >= 0;
                // Each operand in its own region of the scratch, at its binding's alignment.
                auto operand = [&](int v, int64_t at) {
                    const Shape& shape = g.value(v).shape;
                    NhwcTensor t;
                    t.data = scratch + at + binding(*plan_, v).align;
                    t.type = type;
                    t.n = batch;
                    t.c = static_cast<int>(plan_->values[sz(v)].channels);
                    t.h = static_cast<int>(shape[2]);
                    t.w = static_cast<int>(shape[3]);
                    t.pixel_stride = binding(*plan_, v).pixel_stride;
                    return t;
                };
                const int64_t xb = region(n.inputs[0], batch), yb = region(n.outputs[0], batch);
                NhwcTensor x = operand(n.inputs[0], 0), y = operand(n.outputs[0], xb);
                NhwcTensor r = has_res ? operand(n.inputs[3], xb + yb) : NhwcTensor{};
                const NhwcTensor* res = has_res ? &r : nullptr;
                bool silu = n.attrs.get_string("activation", "") == "silu";

                int best = -1;
                double best_ms = 0;
                bool measured = false;
                ElemType best_gemm = cd.gemm;
                double best_by_gemm[2] = {-1, -1};  // INT8, FP16 (for the log)
                for (ElemType gemm : gemms) {
                    const void* weights = gemm == cd.gemm ? cd.weights : cd.weights_f16;
                    const cuda::ConvInt8* int8 = gemm == ElemType::kI8 ? cd.int8.get() : nullptr;
                    const ConvProblem problem =
                        conv_problem(gemm == ElemType::kI8    ? "i8"
                                     : type == ElemType::kF16 ? "f16"
                                                              : "f32",
                                     s, x, y, silu, res,
                                     {binding(*plan_, n.inputs[0]).align, binding(*plan_, n.outputs[0]).align,
                                      has_res ? binding(*plan_, n.inputs[3]).align : 0});
                    const std::string key = cache ? problem.key() : std::string();
                    // The vectorised tensor-core tactics ("mma_" in their names, not "_gather") need x 16-byte
                    // aligned with a pixel stride that is a multiple of 8; conv2d_tactic_supports() cannot
                    // tell (conv2d.h), their names can.
                    const bool x_vec = problem.x_align == 0 && x.pixel_stride % 8 == 0;

                    for (int t = 0; t < cuda::conv2d_tactic_count(); ++t) {
                        if (!cuda::conv2d_tactic_supports(t, s, gemm)) continue;
                        const std::string name = cuda::conv2d_tactic_name(t, s, gemm);
                        if (!x_vec && name.find("mma_") != std::string::npos &&
                            name.find("_gather") == std::string::npos)
                            continue;
                        if (after_upsample.count(i) && gemm == ElemType::kF16 &&
                            !cuda::conv2d_tactic_reads_upsampled(t))
                            continue;
                        std::optional<double> cached = cache ? cache->find(key, t, name) : std::nullopt;
                        double med = 0;
                        if (cached) {
                            med = *cached;
                        } else {
                            med = time_ms(batch, [&] {
                                cuda::conv2d_nhwc(x, weights, cd.bias, s, silu, res, y, t, stream, workspace, int8);
                            });
                            measured = true;
                            if (cache) cache->insert(key, t, name, med);
                        }
                        if (best < 0 || med < best_ms) best = t, best_ms = med, best_gemm = gemm;
                        double& by = best_by_gemm[gemm == ElemType::kI8 ? 0 : 1];
                        if (by < 0 || med < by) by = med;
                    }
                }
                if (best_gemm != cd.gemm) {
                    cd.gemm = best_gemm;
                    release(cd.weights);
                    release(cd.int8->dequant);
                    cd.weights = cd.weights_f16;
                    cd.weights_f16 = nullptr;
                    cd.int8.reset();
                    if (log)
                        *log << "precision " << n.name << ": FP16 (" << best_by_gemm[1] * 1000
                             << " us) is faster than INT8 (" << best_by_gemm[0] * 1000 << " us) at batch " << batch
                             << "\n";
                } else if (cd.weights_f16) {
                    release(cd.weights_f16);  // INT8 won: the FP16 packing is not needed
                    cd.weights_f16 = nullptr;
                }
                KS_CHECK(best >= 0, "'", n.name, "': no CUDA conv kernel supports this convolution");
                tactics_[i][slot] = best;
                best_times[i][slot] = best_ms;
                ++(measured ? tune_stats_.timed : tune_stats_.reused);
                if (log)
                    *log << "tactic " << n.name << ": " << cuda::conv2d_tactic_name(best, s, best_gemm) << " "
                         << best_ms * 1000 << " us at batch " << batch << (measured ? "" : " (timing cache)") << "\n";
            }
        }
        // An f16 NHWC operand of the fused kernels below at `batch`, `at` bytes into the scratch, at
        // its binding's alignment.
        auto f16_operand = [&](int v, int batch, int64_t at) {
            const Shape& shape = g.value(v).shape;
            return NhwcTensor{scratch + at + binding(*plan_, v).align,
                              ElemType::kF16,
                              batch,
                              static_cast<int>(shape[2]),
                              static_cast<int>(shape[3]),
                              static_cast<int>(shape[1]),
                              binding(*plan_, v).pixel_stride};
        };
        // C2f bottleneck pairs of convs tuned here (bottleneck_pair_at, with the GEMM types tuning
        // chose): at each tuning batch the one kernel against the two convs' best times; it runs
        // where it is faster. Its time is cached under the first conv's problem with the pair's
        // output and residual, keyed "pair ...".
        const std::vector<std::vector<int>> consumers = g.consumers();
        auto gemm = [&](size_t k) { return convs_.count(k) ? convs_.at(k).gemm : ElemType::kF32; };
        std::map<size_t, std::vector<double>> pair_times;
        for (size_t i = 0; i + 1 < g.nodes.size(); ++i) {
            if (!best_times.count(i) || !best_times.count(i + 1) ||
                !cuda_bottleneck_pair_at(*plan_, consumers, gemm, i))
                continue;
            const Node &a = g.nodes[i], &b = g.nodes[i + 1];
            const cuda::ConvShape s = conv_shape(*plan_, a);
            const std::string name = cuda::conv3x3_pair_kernel_name(s.c);
            const bool residual = b.input(3) >= 0;
            pairs_[i].assign(batches.size(), 0);
            pair_times[i].assign(batches.size(), 0.0);
            for (size_t slot = 0; slot < batches.size(); ++slot) {
                const int batch = batches[slot];
                const NhwcTensor x = f16_operand(a.inputs[0], batch, 0),
                                 y = f16_operand(b.outputs[0], batch, region(a.inputs[0], batch));
                const std::string key =
                    "pair " + conv_problem("f16", s, x, y, true, residual ? &x : nullptr, {0, 0, 0}).key();
                std::optional<double> cached = cache ? cache->find(key, 0, name) : std::nullopt;
                const double ms = cached ? *cached : time_ms(batch, [&] {
                    cuda::conv3x3_pair_nhwc(x, convs_.at(i).weights, convs_.at(i).bias, convs_.at(i + 1).weights,
                                            convs_.at(i + 1).bias, residual, y, stream);
                });
                if (cache && !cached) cache->insert(key, 0, name, ms);
                const double two = best_times.at(i)[slot] + best_times.at(i + 1)[slot];
                pairs_[i][slot] = ms < two ? 1 : 0;
                pair_times[i][slot] = ms;
                if (log)
                    *log << "bottleneck pair " << a.name << " + " << b.name << ": " << name << " " << ms * 1000
                         << " us, the two convs " << two * 1000 << " us at batch " << batch
                         << (cached ? " (timing cache)" : "") << "\n";
            }
            ++i;  // a conv belongs to one pair at most
        }
        // The stem and the conv after it (cuda_stem_conv_at): at each tuning batch the one kernel
        // against the stem kernel's time plus the conv's best. Cached under the conv's problem,
        // keyed "stem+conv ..." (the stem alone: its own problem, keyed "stem ...").
        const std::string stem_conv_name = cuda::stem_conv3x3s2_kernel_name();
        for (size_t i = 0; i + 1 < g.nodes.size(); ++i) {
            if (!best_times.count(i + 1) || !cuda_stem_conv_at(*plan_, consumers, gemm, i)) continue;
            const Node &a = g.nodes[i], &b = g.nodes[i + 1];
            const Shape& xs = g.value(a.inputs[0]).shape;
            const int h = static_cast<int>(xs[2]), w = static_cast<int>(xs[3]);
            const cuda::ConvShape s0 = conv_shape(*plan_, a), s1 = conv_shape(*plan_, b);
            const float* w0 = g.value(a.inputs[1]).constant->data<float>();
            const std::vector<float> b0 = host_bias(g, a, s0.k);
            const std::string stem_name = cuda::conv2d_nchw_input_kernel_name(s0, ElemType::kF16, true);
            stem_convs_[i].assign(batches.size(), 0);
            for (size_t slot = 0; slot < batches.size(); ++slot) {
                const int batch = batches[slot];
                const float* image = reinterpret_cast<const float*>(scratch);
                const int64_t at = image_region(a.inputs[0], batch);
                const NhwcTensor s = f16_operand(a.outputs[0], batch, at),
                                 y = f16_operand(b.outputs[0], batch, at + region(a.outputs[0], batch));
                const NhwcTensor x{scratch, ElemType::kF32, batch, h, w, 3, 3};
                auto timed = [&](const std::string& key, const std::string& name, const std::function<void()>& launch) {
                    std::optional<double> cached = cache ? cache->find(key, 0, name) : std::nullopt;
                    const double ms = cached ? *cached : time_ms(batch, launch);
                    if (cache && !cached) cache->insert(key, 0, name, ms);
                    return ms;
                };
                const double stem_ms =
                    timed("stem " + conv_problem("f16", s0, x, s, true, nullptr, {0, 0, 0}).key(), stem_name,
                          [&] { cuda::conv2d_nchw_input(image, h, w, w0, b0.data(), s0, true, s, stream); });
                const double ms = timed(
                    "stem+conv " + conv_problem("f16", s1, s, y, true, nullptr, {0, 0, 0}).key(), stem_conv_name, [&] {
                        cuda::stem_conv3x3s2_nhwc(image, h, w, w0, b0.data(), s0, convs_.at(i + 1).weights,
                                                  convs_.at(i + 1).bias, s1, y, stream);
                    });
                const double two = stem_ms + best_times.at(i + 1)[slot];
                stem_convs_[i][slot] = ms < two ? 1 : 0;
                if (log)
                    *log << "stem + conv " << a.name << " + " << b.name << ": " << stem_conv_name << " " << ms * 1000
                         << " us, the two kernels " << two * 1000 << " us at batch " << batch << "\n";
            }
        }
        // C2f blocks (cuda_c2f_at) whose convs were tuned here: at each tuning batch the one kernel
        // against cv1, the bottleneck as tuned (its pair or its two convs) and cv2; it runs where
        // it is faster. Its time is cached under cv1's problem with cv2's output, keyed "c2f ...".
        const std::string c2f_name = cuda::c2f_n1_kernel_name();
        for (size_t i = 0; i < g.nodes.size(); ++i) {
            if (!cuda_c2f_at(*plan_, consumers, gemm, i)) continue;
            const plan::C2fBlock b = *plan::c2f_block_at(g, consumers, i);
            if (!best_times.count(b.cv1) || !best_times.count(b.m1) || !best_times.count(b.m2) ||
                !best_times.count(b.cv2))
                continue;
            const cuda::C2fWeights w = c2f_weights(*this, b);
            const cuda::ConvShape s = conv_shape(*plan_, g.nodes[b.cv1]);
            c2fs_[i].assign(batches.size(), 0);
            for (size_t slot = 0; slot < batches.size(); ++slot) {
                const int batch = batches[slot];
                const int xv = g.nodes[b.cv1].inputs[0];
                const NhwcTensor x = f16_operand(xv, batch, 0),
                                 y = f16_operand(g.nodes[b.cv2].outputs[0], batch, region(xv, batch));
                const std::string key = "c2f " + conv_problem("f16", s, x, y, true, nullptr, {0, 0, 0}).key();
                std::optional<double> cached = cache ? cache->find(key, 0, c2f_name) : std::nullopt;
                const double ms = cached ? *cached : time_ms(batch, [&] { cuda::c2f_n1_nhwc(x, w, y, stream); });
                if (cache && !cached) cache->insert(key, 0, c2f_name, ms);
                const bool pair = pairs_.count(b.m1) && pairs_.at(b.m1)[slot];
                const double parts =
                    best_times.at(b.cv1)[slot] +
                    (pair ? pair_times.at(b.m1)[slot] : best_times.at(b.m1)[slot] + best_times.at(b.m2)[slot]) +
                    best_times.at(b.cv2)[slot];
                c2fs_[i][slot] = ms < parts ? 1 : 0;
                if (log)
                    *log << "c2f block " << g.nodes[b.cv1].name << " .. " << g.nodes[b.cv2].name << ": " << c2f_name
                         << " " << ms * 1000 << " us, its convs " << parts * 1000 << " us at batch " << batch
                         << (cached ? " (timing cache)" : "") << "\n";
            }
        }
    } catch (...) {
        cudaFree(scratch);
        if (stream) cudaStreamDestroy(stream);
        if (start) cudaEventDestroy(start);
        if (stop) cudaEventDestroy(stop);
        throw;
    }
    cudaFree(scratch);
    cudaStreamDestroy(stream);
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
}

// ---- CudaSession --------------------------------------------------------------------------------

CudaSession::CudaSession(std::shared_ptr<const CudaModel> model) : model_(std::move(model)) {
    KS_CUDA(cudaSetDevice(model_->device()));
    const plan::ExecutionPlan& p = model_->plan();
    const ir::Graph& g = p.graph;
    const int batch = p.options.batch;
    try {
        KS_CUDA(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
        device_alloc(&arena_, sz(std::max<int64_t>(p.arena_bytes, 256)));
        auto alloc_io = [&](int v) {
            uint8_t* d = nullptr;
            device_alloc(&d, sz(p.values[sz(v)].bytes));
            io_.push_back(d);
        };
        alloc_io(g.inputs.at(0));
        for (int o : g.outputs) alloc_io(o);
        input_elements_ = num_elements(g.value(g.inputs[0]).shape);
        host_alloc(&host_in_, sz(input_elements_ * batch) * sizeof(float));
        for (int64_t e : output_elements()) {
            float* h = nullptr;
            host_alloc(&h, sz(e * batch) * sizeof(float));
            host_out_.push_back(h);
        }
        const bool side = std::find(p.streams.begin(), p.streams.end(), 1) != p.streams.end();
        for (int s : p.streams) KS_CHECK(s == 0 || s == 1, "CUDA: plan stream ", s, " (0 or 1)");
        producers_ = g.producers();
        done_.assign(g.nodes.size(), nullptr);
        if (side) {
            KS_CUDA(cudaStreamCreateWithFlags(&side_stream_, cudaStreamNonBlocking));
            KS_CUDA(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming));
            KS_CUDA(cudaEventCreateWithFlags(&join_, cudaEventDisableTiming));
            for (size_t i = 0; i < g.nodes.size(); ++i)
                for (int in : g.nodes[i].inputs) {
                    const int from = in < 0 ? -1 : producers_[sz(in)];
                    if (from >= 0 && p.streams[sz(from)] != p.streams[i] && !done_[sz(from)])
                        KS_CUDA(cudaEventCreateWithFlags(&done_[sz(from)], cudaEventDisableTiming));
                }
        }
        steps_.emplace(batch, build_steps(batch));  // checks every step, sizes the workspace
        for (size_t s = 0; s < (side ? 2 : 1) && workspace_bytes_ > 0; ++s) {
            device_alloc(&workspaces_[s], workspace_bytes_);
            KS_CUDA(cudaMemset(workspaces_[s], 0, workspace_bytes_));  // split-K kernels keep it zero-filled
        }
    } catch (...) {
        release();
        throw;
    }
}

CudaSession::~CudaSession() { release(); }

void CudaSession::release() {
    cudaSetDevice(model_->device());
    for (auto& [b, e] : graphs_) cudaGraphExecDestroy(e);
    graphs_.clear();
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
    events_.clear();
    for (cudaEvent_t e : done_)
        if (e) cudaEventDestroy(e);
    done_.clear();
    for (cudaEvent_t* e : {&fork_, &join_})
        if (*e) cudaEventDestroy(*e);
    fork_ = join_ = nullptr;
    for (uint8_t* d : io_) cudaFree(d);
    io_.clear();
    if (host_in_) cudaFreeHost(host_in_);
    host_in_ = nullptr;
    for (float* h : host_out_) cudaFreeHost(h);
    host_out_.clear();
    if (arena_) cudaFree(arena_);
    arena_ = nullptr;
    for (void*& w : workspaces_)
        if (w) cudaFree(w);
    workspaces_ = {nullptr, nullptr};
    for (cudaStream_t* s : {&stream_, &side_stream_})
        if (*s) cudaStreamDestroy(*s);
    stream_ = side_stream_ = nullptr;
}

std::vector<int64_t> CudaSession::output_elements() const {
    std::vector<int64_t> out;
    for (int o : model_->plan().graph.outputs) out.push_back(num_elements(model_->plan().graph.value(o).shape));
    return out;
}

float* CudaSession::device_input() const { return reinterpret_cast<float*>(io_.at(0)); }
float* CudaSession::device_output(size_t k) const { return reinterpret_cast<float*>(io_.at(k + 1)); }

uint8_t* CudaSession::address(int v, int batch) const {
    const plan::ExecutionPlan& p = model_->plan();
    const plan::ValuePlan& vp = p.values[sz(v)];
    switch (vp.storage) {
        case plan::Storage::kArena:
            return arena_ + vp.offset * batch;  // planned per image (plan::ValuePlan::offset)
        case plan::Storage::kView:
            return address(vp.root, batch) + vp.offset;
        case plan::Storage::kInput:
            return io_[0];
        case plan::Storage::kOutput: {
            const auto& outs = p.graph.outputs;
            return io_[1 + sz(std::find(outs.begin(), outs.end(), v) - outs.begin())];
        }
        case plan::Storage::kConstant:
            return static_cast<uint8_t*>(const_cast<void*>(model_->constant(v)));
    }
    return nullptr;
}

// The steps of a run of `batch` images: the arena's tensors are placed for that batch (packed at
// its start), so each batch size has its own steps, as it has its own CUDA graph.
std::vector<CudaSession::Step> CudaSession::build_steps(int batch) {
    const plan::ExecutionPlan& p = model_->plan();
    const ir::Graph& g = p.graph;
    const CudaModel& m = *model_;
    std::vector<Step> steps;
    auto addr = [&](int v) { return address(v, batch); };

    // Descriptors are made for one image and given the steps' batch in the launches: dim 0 is the batch.
    auto nhwc = [&](int v) {
        const plan::ValuePlan& vp = p.values[sz(v)];
        KS_CHECK(vp.layout == Layout::kNhwc, "CUDA: '", g.value(v).name, "' is not NHWC");
        const Shape& s = g.value(v).shape;
        NhwcTensor t;
        t.data = addr(v);
        t.type = elem_type(vp);
        t.n = 1;
        t.c = static_cast<int>(vp.channels);
        t.h = static_cast<int>(s[2]);
        t.w = static_cast<int>(s[3]);
        int root = vp.storage == plan::Storage::kView ? vp.root : v;
        t.pixel_stride = p.values[sz(root)].channels;
        return t;
    };
    auto strided = [&](int v) {
        const plan::ValuePlan& vp = p.values[sz(v)];
        KS_CHECK(vp.layout == Layout::kPlain && vp.dtype == DType::kFloat32, "CUDA: '", g.value(v).name,
                 "' is not plain float32");
        const Shape& s = g.value(v).shape;
        KS_CHECK(s.size() <= sz(cuda::kMaxRank) && !s.empty(), "CUDA: rank ", s.size(), " of '", g.value(v).name,
                 "' is not supported");
        StridedTensor t;
        t.data = reinterpret_cast<float*>(addr(v));
        t.rank = static_cast<int>(s.size());
        int64_t st = 1;
        for (int a = t.rank - 1; a >= 0; --a) {
            t.shape[a] = s[sz(a)];
            t.stride[a] = st;
            st *= s[sz(a)];
        }
        return t;
    };
    // An operand of a broadcasting op seen with y's shape (zero strides where it broadcasts, the
    // leading dims it lacks included): activations carry the batch in dim 0, constants broadcast it.
    auto operand = [&](int v, const StridedTensor& y) {
        const Shape& s = g.value(v).shape;  // may be a scalar (rank 0) constant
        StridedTensor r = y;
        r.data = reinterpret_cast<float*>(addr(v));
        int rank = static_cast<int>(s.size());
        int shift = y.rank - rank;
        KS_CHECK(shift >= 0, "CUDA: '", g.value(v).name, "' has a higher rank than the result");
        int64_t stride = 1;
        for (int a = y.rank - 1; a >= 0; --a) {
            int src = a - shift;
            r.stride[a] = src >= 0 && s[sz(src)] != 1 ? stride : 0;
            if (src >= 0) stride *= s[sz(src)];
        }
        if (!g.is_constant(v)) {
            KS_CHECK(shift == 0, "CUDA: '", g.value(v).name, "' broadcasts over the batch");
            r.stride[0] = stride;  // one image's elements
        }
        return r;
    };
    auto with_batch = [](StridedTensor t, int batch) {
        t.shape[0] *= batch;
        return t;
    };
    auto with_n = [](NhwcTensor t, int batch) {
        t.n = batch;
        return t;
    };
    auto unary_op = [](Op op) {
        switch (op) {
            case Op::kSigmoid:
                return cuda::UnaryOp::kSigmoid;
            case Op::kRelu:
                return cuda::UnaryOp::kRelu;
            case Op::kSin:
                return cuda::UnaryOp::kSin;
            case Op::kCos:
                return cuda::UnaryOp::kCos;
            default:
                return cuda::UnaryOp::kCopy;
        }
    };
    auto binary_op = [](Op op) {
        switch (op) {
            case Op::kAdd:
                return cuda::BinaryOp::kAdd;
            case Op::kSub:
                return cuda::BinaryOp::kSub;
            case Op::kMul:
                return cuda::BinaryOp::kMul;
            default:
                return cuda::BinaryOp::kDiv;
        }
    };
    // A copy of x (strided) into y's slot at `start` along `axis` (Concat) or of x's slot into y (Split).
    auto slot = [](StridedTensor t, int axis, int64_t start, int64_t len) {
        t.data += start * t.stride[axis];
        t.shape[axis] = len;
        return t;
    };

    // The batches the conv tactics were tuned at (CudaModel::tactics() holds one tactic per batch).
    const std::vector<int> batches = cuda_tuning_batches(p.options.batch);

    flops_.assign(g.nodes.size(), 0.0);
    bytes_.assign(g.nodes.size(), 0.0);
    constant_bytes_.assign(g.nodes.size(), 0.0);
    // One image of an activation as stored (NHWC: its stored channels in the feature-map type).
    auto image_bytes = [&](int v) {
        const plan::ValuePlan& vp = p.values[sz(v)];
        const Shape& s = g.value(v).shape;
        const double es = static_cast<double>(dtype_size(vp.dtype));
        return vp.layout == Layout::kNhwc ? static_cast<double>(s[2] * s[3] * vp.channels) * es
                                          : static_cast<double>(num_elements(s)) * es;
    };
    int64_t sppf_until = -1;  // the last node of an SPPF chain being run as one kernel
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        const Node& n = g.nodes[i];
        Step st{n.name, m.kernel_names()[i], nullptr, i, i};
        int in = n.input(0), out = n.outputs[0];
        const plan::ValuePlan& op = p.values[sz(out)];
        const bool nhwc_out = op.layout == Layout::kNhwc;
        switch (n.op) {
            case Op::kConv: {
                cuda::ConvShape s = conv_shape(p, n);
                if (i > 0 && m.stem_conv(i - 1, batch)) {  // run by the stem's kernel
                    st.kernel = "in_" + cuda::stem_conv3x3s2_kernel_name();
                    break;
                }
                if (m.stem_conv(i, batch)) {
                    st.kernel = cuda::stem_conv3x3s2_kernel_name();
                    const Node& b = g.nodes[i + 1];
                    const float* x = reinterpret_cast<const float*>(addr(in));
                    const int h = static_cast<int>(g.value(in).shape[2]), w = static_cast<int>(g.value(in).shape[3]);
                    auto b0 = std::make_shared<std::vector<float>>(host_bias(g, n, s.k));
                    const float* w0 = g.value(n.inputs[1]).constant->data<float>();
                    const cuda::ConvShape s1 = conv_shape(p, b);
                    const void* w1 = m.conv_weights(i + 1);
                    const float* b1 = m.conv_bias(i + 1);
                    NhwcTensor y = nhwc(b.outputs[0]);
                    flops_[i] = 2.0 * (double(g.value(n.outputs[0]).shape[2] * g.value(n.outputs[0]).shape[3]) *
                                           double(num_elements(g.value(n.inputs[1]).shape)) +
                                       double(y.h) * y.w * double(num_elements(g.value(b.inputs[1]).shape)));
                    // Per image: the image read and y written (the stem's output stays on the SM); the conv's filter.
                    bytes_[i] = image_bytes(in) + image_bytes(b.outputs[0]);
                    constant_bytes_[i] = 2.0 * double(num_elements(g.value(b.inputs[1]).shape)) + 4.0 * s1.k;
                    st.launch = [=](cudaStream_t stream) {
                        cuda::stem_conv3x3s2_nhwc(x, h, w, w0, b0->data(), s, w1, b1, s1, with_n(y, batch), stream);
                    };
                    st.last = i + 1;
                    steps.push_back(std::move(st));
                    continue;
                }
                if (m.run_by_c2f(i, batch) >= 0) {  // run by its C2f block's kernel, at cv1
                    st.kernel = "in_" + cuda::c2f_n1_kernel_name();
                    break;
                }
                if (m.c2f_block(i, batch)) {
                    const plan::C2fBlock b = *plan::c2f_block_at(g, g.consumers(), i);
                    st.kernel = cuda::c2f_n1_kernel_name();
                    const cuda::C2fWeights w = c2f_weights(m, b);
                    const int yv = g.nodes[b.cv2].outputs[0];
                    NhwcTensor x = nhwc(in), y = nhwc(yv);
                    double weights = 0;
                    for (size_t k : {b.cv1, b.m1, b.m2, b.cv2}) {
                        const double count = double(num_elements(g.value(g.nodes[k].inputs[1]).shape));
                        flops_[i] += 2.0 * y.h * y.w * count;
                        weights += 2.0 * count + 4.0 * double(g.value(g.nodes[k].outputs[0]).shape[1]);
                    }
                    // Per image: x read and y written (everything between stays on the SM); the four filters.
                    bytes_[i] = image_bytes(in) + image_bytes(yv);
                    constant_bytes_[i] = weights;
                    st.launch = [=](cudaStream_t stream) {
                        cuda::c2f_n1_nhwc(with_n(x, batch), w, with_n(y, batch), stream);
                    };
                    st.last = b.cv2;
                    steps.push_back(std::move(st));
                    continue;  // its bytes are counted here, not by the generic accounting below
                }
                if (i > 0 && m.bottleneck_pair(i - 1, batch)) {  // run by its pair's first conv
                    st.kernel = "in_" + cuda::conv3x3_pair_kernel_name(s.c);
                    break;
                }
                if (m.bottleneck_pair(i, batch)) {
                    st.kernel = cuda::conv3x3_pair_kernel_name(s.c);
                    const Node& b = g.nodes[i + 1];
                    NhwcTensor x = nhwc(in), y = nhwc(b.outputs[0]);
                    const void *w1 = m.conv_weights(i), *w2 = m.conv_weights(i + 1);
                    const float *b1 = m.conv_bias(i), *b2 = m.conv_bias(i + 1);
                    const bool residual = b.input(3) >= 0;
                    flops_[i] = 2.0 * 2.0 * y.h * y.w * double(num_elements(g.value(n.inputs[1]).shape));
                    // Per image: x read and y written (t stays on the SM); both filters' constants.
                    bytes_[i] = image_bytes(in) + image_bytes(b.outputs[0]);
                    constant_bytes_[i] = 2.0 * (2.0 * double(num_elements(g.value(n.inputs[1]).shape)) + 4.0 * s.k);
                    st.launch = [=](cudaStream_t stream) {
                        cuda::conv3x3_pair_nhwc(with_n(x, batch), w1, b1, w2, b2, residual, with_n(y, batch), stream);
                    };
                    st.last = i + 1;
                    steps.push_back(std::move(st));
                    continue;  // its bytes are counted here, not by the generic accounting below
                }
                if (p.values[sz(in)].layout == Layout::kPlain) {
                    const float* x = reinterpret_cast<const float*>(addr(in));
                    NhwcTensor y = nhwc(out);
                    int h = static_cast<int>(g.value(in).shape[2]), w = static_cast<int>(g.value(in).shape[3]);
                    // Host weights (the plan's constants outlive the session): they become launch parameters.
                    const float* wt = g.value(n.inputs[1]).constant->data<float>();
                    auto b = std::make_shared<std::vector<float>>(host_bias(g, n, s.k));
                    bool silu = n.attrs.get_string("activation", "") == "silu";
                    flops_[i] = 2.0 * y.h * y.w * double(num_elements(g.value(n.inputs[1]).shape));
                    st.launch = [=](cudaStream_t stream) {
                        cuda::conv2d_nchw_input(x, h, w, wt, b->data(), s, silu, with_n(y, batch), stream);
                    };
                    break;
                }
                NhwcTensor x = nhwc(in), y = nhwc(out);
                bool has_res = n.input(3) >= 0;
                NhwcTensor r = has_res ? nhwc(n.inputs[3]) : NhwcTensor{};
                bool silu = n.attrs.get_string("activation", "") == "silu";
                const void* w = m.conv_weights(i);
                const float* b = m.conv_bias(i);
                const cuda::ConvInt8* q = m.conv_int8(i);
                const ElemType type = m.conv_gemm_type(i);
                const std::vector<int> tactics = m.tactics().at(i);
                // Split-K tactics' workspace: each tactic at the largest batch that runs it.
                for (size_t j = 0; j < batches.size(); ++j)
                    workspace_bytes_ = std::max(
                        workspace_bytes_, cuda::conv2d_workspace_bytes(tactics[j], s, type, batches[j], y.h, y.w));
                void* const* workspace = &workspaces_[sz(p.streams[i])];
                flops_[i] = 2.0 * y.h * y.w * double(num_elements(g.value(n.inputs[1]).shape));
                // The tactic tuned at the smallest tuning batch >= this batch; the profile names it.
                const int t = tactics[tuning_slot(batches, batch)];
                st.kernel = cuda::conv2d_tactic_name(t, s, type) + conv_suffix(n);
                if (i >= 2 && m.upsample_conv(i - 2, batch)) {
                    const Node &resize = g.nodes[i - 2], &concat = g.nodes[i - 1];
                    const NhwcTensor up = nhwc(resize.inputs[0]);
                    st.launch = [=](cudaStream_t stream) {
                        cuda::conv2d_upsampled_concat_nhwc(with_n(up, batch), with_n(x, batch), w, b, s, silu,
                                                           with_n(y, batch), t, stream, *workspace);
                    };
                    st.first = i - 2;
                    // Per image: the upsample's input, the concat's other inputs and y; the filter.
                    bytes_[i] = image_bytes(resize.inputs[0]) + image_bytes(out);
                    for (size_t k = 1; k < concat.inputs.size(); ++k) bytes_[i] += image_bytes(concat.inputs[k]);
                    constant_bytes_[i] = 2.0 * s.k * s.c + 4.0 * s.k;
                    steps.push_back(std::move(st));
                    continue;  // its bytes are counted here, not by the generic accounting below
                }
                st.launch = [=](cudaStream_t stream) {
                    NhwcTensor rb = with_n(r, batch);
                    cuda::conv2d_nhwc(with_n(x, batch), w, b, s, silu, has_res ? &rb : nullptr, with_n(y, batch), t,
                                      stream, *workspace, q);
                };
                break;
            }
            case Op::kConvTranspose: {
                KS_CHECK(n.attrs.get_int("group", 1) == 1, "'", n.name,
                         "': grouped ConvTranspose is not supported on CUDA");
                NhwcTensor x = nhwc(in), y = nhwc(out);
                const Shape& ws = g.value(n.inputs[1]).shape;
                auto k = n.attrs.get_ints("kernel_shape", {ws[2], ws[3]});
                auto strides = n.attrs.get_ints("strides", {1, 1});
                auto pads = n.attrs.get_ints("pads", {0, 0, 0, 0});
                const float* w = static_cast<const float*>(m.constant(n.inputs[1]));
                const float* b = n.input(2) >= 0 ? static_cast<const float*>(m.constant(n.inputs[2])) : nullptr;
                flops_[i] = 2.0 * x.h * x.w * x.c * y.c * k[0] * k[1];
                st.launch = [=](cudaStream_t stream) {
                    cuda::conv_transpose2d_nhwc(with_n(x, batch), w, b, int(k[0]), int(k[1]), int(strides[0]),
                                                int(strides[1]), int(pads[0]), int(pads[1]), with_n(y, batch), stream);
                };
                break;
            }
            case Op::kMaxPool: {
                if (sppf_until >= static_cast<int64_t>(i)) break;  // pooled by its chain's first node
                if (const int k = sppf_chain_at(g, p, i)) {
                    const int out2 = g.nodes[i + 1].outputs[0], out3 = g.nodes[i + 2].outputs[0];
                    NhwcTensor x = nhwc(in), y1 = nhwc(out), y2 = nhwc(out2), y3 = nhwc(out3);
                    bytes_[i] += image_bytes(out2) + image_bytes(out3);
                    sppf_until = static_cast<int64_t>(i) + 2;
                    st.last = i + 2;
                    st.launch = [=](cudaStream_t stream) {
                        cuda::sppf_maxpool_nhwc(with_n(x, batch), with_n(y1, batch), with_n(y2, batch),
                                                with_n(y3, batch), k, stream);
                    };
                    break;
                }
                NhwcTensor x = nhwc(in), y = nhwc(out);
                auto k = n.attrs.get_ints("kernel_shape");
                auto strides = n.attrs.get_ints("strides", {1, 1});
                auto pads = n.attrs.get_ints("pads", {0, 0, 0, 0});
                KS_CHECK(n.attrs.get_ints("dilations", {1, 1}) == std::vector<int64_t>({1, 1}), "'", n.name,
                         "': dilated MaxPool is not supported on CUDA");
                st.launch = [=](cudaStream_t stream) {
                    cuda::maxpool2d_nhwc(with_n(x, batch), with_n(y, batch), int(k[0]), int(k[1]), int(strides[0]),
                                         int(strides[1]), int(pads[0]), int(pads[1]), stream);
                };
                break;
            }
            case Op::kResize: {
                if (m.upsample_conv(i, batch)) {  // run by the conv after its concat
                    const Node& conv = g.nodes[i + 2];
                    st.kernel = "in_" +
                                cuda::conv2d_tactic_name(m.tactics().at(i + 2)[tuning_slot(batches, batch)],
                                                         conv_shape(p, conv), ElemType::kF16) +
                                conv_suffix(conv);
                    break;
                }
                NhwcTensor x = nhwc(in), y = nhwc(out);
                const int32_t* my = m.resize_map(i, 0);
                const int32_t* mx = m.resize_map(i, 1);
                st.launch = [=](cudaStream_t stream) {
                    cuda::resize_nearest_nhwc(with_n(x, batch), with_n(y, batch), my, mx, stream);
                };
                break;
            }
            case Op::kSigmoid:
            case Op::kRelu:
            case Op::kSin:
            case Op::kCos: {
                cuda::UnaryOp u = unary_op(n.op);
                if (nhwc_out) {
                    NhwcTensor x = nhwc(in), y = nhwc(out);
                    st.launch = [=](cudaStream_t stream) {
                        cuda::unary_nhwc(u, with_n(x, batch), with_n(y, batch), stream);
                    };
                } else {
                    StridedTensor x = strided(in), y = strided(out);
                    st.launch = [=](cudaStream_t stream) {
                        cuda::unary_strided(u, with_batch(x, batch), with_batch(y, batch), stream);
                    };
                }
                break;
            }
            case Op::kAdd:
            case Op::kSub:
            case Op::kMul:
            case Op::kDiv: {
                cuda::BinaryOp b = binary_op(n.op);
                if (nhwc_out) {
                    NhwcTensor a = nhwc(n.inputs[0]), c = nhwc(n.inputs[1]), y = nhwc(out);
                    st.launch = [=](cudaStream_t stream) {
                        cuda::binary_nhwc(b, with_n(a, batch), with_n(c, batch), with_n(y, batch), stream);
                    };
                } else {
                    StridedTensor y = strided(out);
                    StridedTensor a = operand(n.inputs[0], y), c = operand(n.inputs[1], y);
                    st.launch = [=](cudaStream_t stream) {
                        cuda::binary_strided(b, with_batch(a, batch), with_batch(c, batch), with_batch(y, batch),
                                             stream);
                    };
                }
                break;
            }
            case Op::kSplit:
            case Op::kConcat: {
                // Copies only for the parts the planner could not place in their slot (constants,
                // graph inputs, plain tensors at batch > 1).
                bool split = n.op == Op::kSplit;
                int axis = static_cast<int>(n.attrs.get_int("axis", 0));
                int whole = split ? in : out;
                bool nhwc_whole = p.values[sz(whole)].layout == Layout::kNhwc;
                std::vector<std::function<void(cudaStream_t)>> copies;
                int64_t start = 0;
                for (int v : split ? n.outputs : n.inputs) {
                    int64_t len = g.value(v).shape[sz(axis)];
                    int64_t at = start;
                    start += len;
                    if (nhwc_whole) {
                        KS_CHECK(axis == 1, "'", n.name, "': NHWC ", ir::op_name(n.op), " must be along channels");
                        NhwcTensor part = nhwc(v), slice = nhwc(whole);
                        slice.data = static_cast<uint8_t*>(slice.data) + at * cuda::elem_size(slice.type);
                        slice.c = static_cast<int>(len);
                        if (part.data == slice.data && part.pixel_stride == slice.pixel_stride) continue;
                        NhwcTensor from = split ? slice : part, to = split ? part : slice;
                        copies.push_back([=](cudaStream_t stream) {
                            cuda::unary_nhwc(cuda::UnaryOp::kCopy, with_n(from, batch), with_n(to, batch), stream);
                        });
                    } else {
                        StridedTensor slice = slot(strided(whole), axis, at, len);
                        if (!g.is_constant(v) && addr(v) == reinterpret_cast<uint8_t*>(slice.data) &&
                            p.options.batch == 1)
                            continue;
                        StridedTensor part = g.is_constant(v) ? operand(v, slice) : strided(v);
                        StridedTensor from = split ? slice : part, to = split ? part : slice;
                        copies.push_back([=](cudaStream_t stream) {
                            cuda::unary_strided(cuda::UnaryOp::kCopy, with_batch(from, batch), with_batch(to, batch),
                                                stream);
                        });
                    }
                }
                if (copies.empty()) break;
                st.launch = [copies](cudaStream_t stream) {
                    for (const auto& c : copies) c(stream);
                };
                break;
            }
            case Op::kSlice: {
                if (op.storage == plan::Storage::kView) break;
                StridedTensor x = strided(in), y = strided(out);
                auto starts = n.attrs.get_ints("starts"), steps = n.attrs.get_ints("steps");
                KS_CHECK(starts[0] == 0 && steps[0] == 1, "'", n.name, "': slicing the batch is not supported on CUDA");
                StridedTensor s = x;
                for (int a = 0; a < x.rank; ++a) {
                    s.data += starts[sz(a)] * x.stride[a];
                    s.stride[a] = x.stride[a] * steps[sz(a)];
                    s.shape[a] = y.shape[a];
                }
                st.launch = [=](cudaStream_t stream) {
                    cuda::unary_strided(cuda::UnaryOp::kCopy, with_batch(s, batch), with_batch(y, batch), stream);
                };
                break;
            }
            case Op::kReshape:
            case Op::kFlatten:
            case Op::kSqueeze:
            case Op::kUnsqueeze: {
                if (op.storage == plan::Storage::kView) break;
                const uint8_t* x = addr(in);
                uint8_t* y = addr(out);
                int64_t bytes = num_elements(g.value(out).shape) * 4;
                st.launch = [=](cudaStream_t stream) {
                    KS_CUDA(cudaMemcpyAsync(y, x, sz(bytes * batch), cudaMemcpyDeviceToDevice, stream));
                };
                break;
            }
            case Op::kIdentity: {
                Layout from = p.values[sz(in)].layout;
                if (from == Layout::kPlain && nhwc_out) {
                    const float* x = reinterpret_cast<const float*>(addr(in));
                    NhwcTensor y = nhwc(out);
                    int xc = static_cast<int>(g.value(in).shape[1]);
                    st.launch = [=](cudaStream_t stream) { cuda::nchw_to_nhwc(x, with_n(y, batch), stream, xc); };
                } else if (from == Layout::kNhwc && !nhwc_out) {
                    NhwcTensor x = nhwc(in);
                    float* y = reinterpret_cast<float*>(addr(out));
                    st.launch = [=](cudaStream_t stream) { cuda::nhwc_to_nchw(with_n(x, batch), y, stream); };
                } else if (nhwc_out) {
                    NhwcTensor x = nhwc(in), y = nhwc(out);
                    st.launch = [=](cudaStream_t stream) {
                        cuda::unary_nhwc(cuda::UnaryOp::kCopy, with_n(x, batch), with_n(y, batch), stream);
                    };
                } else {
                    StridedTensor x = strided(in), y = strided(out);
                    st.launch = [=](cudaStream_t stream) {
                        cuda::unary_strided(cuda::UnaryOp::kCopy, with_batch(x, batch), with_batch(y, batch), stream);
                    };
                }
                break;
            }
            case Op::kTranspose: {
                StridedTensor x = strided(in), y = strided(out);
                auto perm = n.attrs.get_ints("perm");
                KS_CHECK(!perm.empty() && perm[0] == 0, "'", n.name,
                         "': a Transpose that moves the batch is not supported on CUDA");
                StridedTensor s = x;
                for (int a = 0; a < x.rank; ++a) {
                    s.shape[a] = x.shape[perm[sz(a)]];
                    s.stride[a] = x.stride[perm[sz(a)]];
                }
                st.launch = [=](cudaStream_t stream) {
                    cuda::unary_strided(cuda::UnaryOp::kCopy, with_batch(s, batch), with_batch(y, batch), stream);
                };
                break;
            }
            case Op::kSoftmax: {
                const Shape& s = g.value(in).shape;
                int rank = static_cast<int>(s.size());
                int axis = static_cast<int>(n.attrs.get_int("axis", -1));
                if (axis < 0) axis += rank;
                KS_CHECK(axis >= 1, "'", n.name, "': a Softmax over the batch is not supported on CUDA");
                bool flat = n.attrs.get_int("coerce_2d", 0) != 0;
                int64_t outer = 1, len = 1, inner = 1;
                for (int a = 0; a < rank; ++a) {
                    int64_t d = s[sz(a)];
                    if (a < axis)
                        outer *= d;
                    else if (a == axis || flat)
                        len *= d;
                    else
                        inner *= d;
                }
                const float* x = reinterpret_cast<const float*>(addr(in));
                float* y = reinterpret_cast<float*>(addr(out));
                st.launch = [=](cudaStream_t stream) { cuda::softmax(x, y, outer * batch, len, inner, stream); };
                break;
            }
            case Op::kGlobalAveragePool: {
                NhwcTensor x = nhwc(in);
                float* y = reinterpret_cast<float*>(addr(out));
                st.launch = [=](cudaStream_t stream) { cuda::global_avgpool_nhwc(with_n(x, batch), y, stream); };
                break;
            }
            case Op::kGemm: {
                KS_CHECK(n.attrs.get_int("transA", 0) == 0, "'", n.name,
                         "': Gemm with transA is not supported on CUDA");
                const Shape& ws = g.value(n.inputs[1]).shape;
                bool tw = n.attrs.get_int("transB", 0) != 0;
                int k = static_cast<int>(tw ? ws[1] : ws[0]), nn = static_cast<int>(tw ? ws[0] : ws[1]);
                const float* x = reinterpret_cast<const float*>(addr(in));
                const float* w = static_cast<const float*>(m.constant(n.inputs[1]));
                const float* b = n.input(2) >= 0 ? static_cast<const float*>(m.constant(n.inputs[2])) : nullptr;
                KS_CHECK(n.input(2) < 0 || num_elements(g.value(n.inputs[2]).shape) == nn, "'", n.name,
                         "': Gemm bias must have one value per output");
                float alpha = n.attrs.get_float("alpha", 1.f), beta = n.attrs.get_float("beta", 1.f);
                float* y = reinterpret_cast<float*>(addr(out));
                flops_[i] = 2.0 * k * nn;
                st.launch = [=](cudaStream_t stream) {
                    cuda::gemm_f32(x, w, b, y, batch, nn, k, tw, alpha, beta, stream);
                };
                break;
            }
            case Op::kYoloDecode: {
                const int levels = static_cast<int>(n.attrs.get_int("num_levels", 0));
                const int reg_max = static_cast<int>(n.attrs.get_int("reg_max", 0));
                const int nc = static_cast<int>(n.attrs.get_int("nc", 0));
                // Inputs: the level maps, or with head_convs (passes/fuse_yolo_head_convs.cc) box_l, cls_l
                // for every level and then their convs' weights (packed by the model); then anchors,
                // strides and DFL weights.
                const bool head = n.attrs.get_int("head_convs", 0) != 0;
                const size_t k = (head ? 6 : 1) * sz(levels);
                KS_CHECK(levels >= 1 && n.inputs.size() == k + 3, "'", n.name, "': bad YoloDecode inputs");
                auto constant = [&](size_t c) { return static_cast<const float*>(m.constant(n.inputs[c])); };
                const float *anchors = constant(k), *strides = constant(k + 1), *dfl = constant(k + 2);
                const StridedTensor y = with_batch(strided(out), batch);
                // A map's own channels: a padded map stores more, and the decode reads these.
                auto features = [&](int v, int channels) {
                    NhwcTensor x = nhwc(v);
                    KS_CHECK(x.c >= channels, "'", n.name, "': input '", g.value(v).name, "' has ", x.c, " channels");
                    x.c = channels;
                    return with_n(x, batch);
                };
                if (head) {
                    std::vector<cuda::HeadLevel> hs;
                    for (size_t l = 0; l < sz(levels); ++l) {
                        const Shape &box = g.value(n.inputs[2 * l]).shape, &cls = g.value(n.inputs[2 * l + 1]).shape;
                        hs.push_back({features(n.inputs[2 * l], static_cast<int>(box[1])),
                                      features(n.inputs[2 * l + 1], static_cast<int>(cls[1])), m.decode_head(i, l)});
                        flops_[i] += 2.0 * double(box[2] * box[3]) * (4.0 * reg_max * box[1] + double(nc) * cls[1]);
                    }
                    st.launch = [=](cudaStream_t stream) {
                        cuda::yolo_decode_head(hs.data(), levels, anchors, strides, dfl, reg_max, nc, y, stream);
                    };
                } else {
                    std::vector<NhwcTensor> xs;
                    for (size_t l = 0; l < sz(levels); ++l) xs.push_back(features(n.inputs[l], 4 * reg_max + nc));
                    st.launch = [=](cudaStream_t stream) {
                        cuda::yolo_decode(xs.data(), levels, anchors, strides, dfl, reg_max, nc, y, stream);
                    };
                }
                break;
            }
            default:
                KS_FAIL("'", n.name, "': ", ir::op_name(n.op), " is not supported on CUDA");
        }
        if (st.launch) {
            for (int v : n.outputs) bytes_[i] += image_bytes(v);
            for (size_t k = 0; k < n.inputs.size(); ++k) {
                const int v = n.inputs[k];
                if (v < 0) continue;
                if (!g.is_constant(v)) {
                    bytes_[i] += image_bytes(v);
                    continue;
                }
                const ir::Value& c = g.value(v);
                if (c.dtype != DType::kFloat32) continue;  // shape-like: attributes by now, not on the device
                double b = static_cast<double>(num_elements(c.shape)) * 4;
                if (n.op == Op::kConv && k == 1 && p.values[sz(in)].layout == Layout::kNhwc) {
                    // Packed over the stored (padded) input channels, in the GEMM's type.
                    const cuda::ConvShape s = conv_shape(p, n);
                    b = static_cast<double>(num_elements(c.shape) / c.shape[1] * (s.c / s.groups) *
                                            cuda::elem_size(m.conv_gemm_type(i)));
                }
                constant_bytes_[i] += b;
            }
        }
        steps.push_back(std::move(st));
    }
    return steps;
}

const std::vector<CudaSession::Step>& CudaSession::steps(int batch) {
    auto it = steps_.find(batch);
    if (it == steps_.end()) it = steps_.emplace(batch, build_steps(batch)).first;
    return it->second;
}

// The steps of `batch` on stream_ (being captured into a graph): each node's work on its plan
// stream, after waiting for the nodes on the other stream whose outputs it reads. Waiting for a
// node's event covers the nodes before it on its stream, so only a later one is waited for again.
void CudaSession::launch_all(int batch) {
    const plan::ExecutionPlan& p = model_->plan();
    const std::array<cudaStream_t, 2> on = {stream_, side_stream_};
    if (side_stream_) {
        KS_CUDA(cudaEventRecord(fork_, stream_));
        KS_CUDA(cudaStreamWaitEvent(side_stream_, fork_));
    }
    std::array<int64_t, 2> waited = {-1, -1};  // the latest node of the other stream each has waited for
    const std::vector<Step>& steps_of_batch = steps(batch);
    for (size_t i = 0; i < steps_of_batch.size(); ++i) {
        const Step& st = steps_of_batch[i];
        const size_t s = sz(p.streams[i]);
        for (size_t k = st.first; k <= st.last; ++k) {
            KS_CHECK(sz(p.streams[k]) == s, "CUDA: '", st.name, "' runs nodes of two streams");
            for (int in : p.graph.nodes[k].inputs) {
                const int64_t from = in < 0 ? -1 : producers_[sz(in)];
                if (from < 0 || sz(p.streams[sz(from)]) == s || from <= waited[s]) continue;
                KS_CUDA(cudaStreamWaitEvent(on[s], done_[sz(from)]));
                waited[s] = from;
            }
        }
        if (st.launch) st.launch(on[s]);
        if (done_[i]) KS_CUDA(cudaEventRecord(done_[i], on[s]));
    }
    if (side_stream_) {
        KS_CUDA(cudaEventRecord(join_, side_stream_));
        KS_CUDA(cudaStreamWaitEvent(stream_, join_));
    }
}

void CudaSession::enqueue(int batch) {
    const int max_batch = model_->plan().options.batch;
    KS_CHECK(batch >= 1 && batch <= max_batch, "batch ", batch, " is outside 1..", max_batch);
    KS_CUDA(cudaSetDevice(model_->device()));
    if (profiling_) {
        const std::vector<Step>& st = steps(batch);
        if (events_.empty()) {
            events_.resize(st.size() + 1);
            for (cudaEvent_t& e : events_) KS_CUDA(cudaEventCreate(&e));
        }
        KS_CUDA(cudaEventRecord(events_[0], stream_));
        for (size_t i = 0; i < st.size(); ++i) {
            if (st[i].launch) st[i].launch(stream_);
            KS_CUDA(cudaEventRecord(events_[i + 1], stream_));
        }
        KS_CUDA(cudaEventSynchronize(events_.back()));
        times_.clear();
        for (size_t i = 0; i < st.size(); ++i) {
            float ms = 0;
            KS_CUDA(cudaEventElapsedTime(&ms, events_[i], events_[i + 1]));
            times_.push_back({st[i].name, st[i].kernel, double(ms)});
        }
        return;
    }
    auto it = graphs_.find(batch);
    if (it == graphs_.end()) {
        // One graph per batch size: every launch's grid depends on the batch.
        it = graphs_.emplace(batch, capture_graph(stream_, [&] { launch_all(batch); })).first;
    }
    KS_CUDA(cudaGraphLaunch(it->second, stream_));
}

std::vector<double> CudaSession::time_compute(int batch, int iterations) {
    KS_CUDA(cudaSetDevice(model_->device()));
    bool profiling = profiling_;
    profiling_ = false;
    std::vector<cudaEvent_t> ev(sz(iterations) + 1, nullptr);
    std::vector<double> ms;
    try {
        for (cudaEvent_t& e : ev) KS_CUDA(cudaEventCreate(&e));
        for (int i = 0; i < 10; ++i) enqueue(batch);  // capture and warm up
        KS_CUDA(cudaEventRecord(ev[0], stream_));
        for (int i = 0; i < iterations; ++i) {
            enqueue(batch);
            KS_CUDA(cudaEventRecord(ev[sz(i) + 1], stream_));
        }
        KS_CUDA(cudaEventSynchronize(ev.back()));
        for (int i = 0; i < iterations; ++i) {
            float e = 0;
            KS_CUDA(cudaEventElapsedTime(&e, ev[sz(i)], ev[sz(i) + 1]));
            ms.push_back(e);
        }
    } catch (...) {
        for (cudaEvent_t e : ev)
            if (e) cudaEventDestroy(e);
        profiling_ = profiling;
        throw;
    }
    for (cudaEvent_t e : ev) cudaEventDestroy(e);
    profiling_ = profiling;
    return ms;
}

void CudaSession::run(const float* input, int batch, const std::vector<float*>& outputs) {
    KS_CUDA(cudaSetDevice(model_->device()));
    size_t in_bytes = sz(input_elements_ * batch) * sizeof(float);
    std::memcpy(host_in_, input, in_bytes);
    KS_CUDA(cudaMemcpyAsync(io_[0], host_in_, in_bytes, cudaMemcpyHostToDevice, stream_));
    enqueue(batch);
    auto sizes = output_elements();
    for (size_t k = 0; k < sizes.size(); ++k)
        KS_CUDA(cudaMemcpyAsync(host_out_[k], io_[k + 1], sz(sizes[k] * batch) * sizeof(float), cudaMemcpyDeviceToHost,
                                stream_));
    KS_CUDA(cudaStreamSynchronize(stream_));
    for (size_t k = 0; k < sizes.size(); ++k)
        std::memcpy(outputs.at(k), host_out_[k], sz(sizes[k] * batch) * sizeof(float));
}

}  // namespace kestrel::runtime
