// GPU detect post-processing (see nms.h). The CPU code it must match is yolo::decode_detections and
// yolo::nms; the float operations that decide a box or an IoU use explicit round-to-nearest
// intrinsics so that nvcc does not contract them into fused multiply-adds (the CPU build has none).
#include <cuda_runtime.h>

#include <algorithm>
#include <cub/device/device_segmented_radix_sort.cuh>

#include "backends/cuda/nms.h"
#include "backends/cuda/tensors.h"

namespace kestrel::cuda {
namespace {

constexpr float kMaxWh = 7680.f;  // yolo::kMaxWh: the class offset of class-aware NMS
constexpr int kNmsThreads = 512;

// Bits of an anchor index in a key (below the score's 32).
int anchor_bits(int anchors) {
    int bits = 1;
    while ((int64_t{1} << bits) < anchors) ++bits;
    return bits;
}

// Ascending keys = scores descending, then anchors ascending: the CPU's stable sort by score.
__device__ __forceinline__ uint64_t candidate_key(float score, int anchor, int shift) {
    if (score == 0.0f) score = 0.0f;  // -0 and +0 compare equal on the CPU: one key for both
    const uint32_t u = __float_as_uint(score);
    const uint32_t ordered = (u & 0x80000000u) ? ~u : (u | 0x80000000u);  // float order as unsigned
    return (static_cast<uint64_t>(~ordered) << shift) | static_cast<uint32_t>(anchor);
}

__global__ void candidates_kernel(const float* __restrict__ out, int channels, int anchors, int nc, float conf,
                                  const uint8_t* __restrict__ wanted, int shift, uint64_t* __restrict__ keys,
                                  int* __restrict__ best_class, int* __restrict__ end) {
    const int a = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
    const int image = static_cast<int>(blockIdx.y);
    if (a >= anchors) return;
    const float* o = out + static_cast<int64_t>(image) * channels * anchors + a;
    // The first maximum, as the CPU's strict comparison from class 0.
    int best = 0;
    float score = o[4 * static_cast<int64_t>(anchors)];
    for (int c = 1; c < nc; ++c) {
        const float s = o[(4 + c) * static_cast<int64_t>(anchors)];
        if (s > score) score = s, best = c;
    }
    if (!(score > conf) || (wanted != nullptr && wanted[best] == 0)) return;
    const int slot = atomicAdd(&end[image], 1);
    keys[slot] = candidate_key(score, a, shift);
    best_class[static_cast<int64_t>(image) * anchors + a] = best;
}

// yolo::iou, operation for operation.
__device__ __forceinline__ float box_iou(float4 a, float4 b) {
    const float iw = fmaxf(0.f, __fsub_rn(fminf(a.z, b.z), fmaxf(a.x, b.x)));
    const float ih = fmaxf(0.f, __fsub_rn(fminf(a.w, b.w), fmaxf(a.y, b.y)));
    const float inter = __fmul_rn(iw, ih);
    const float area_a = __fmul_rn(__fsub_rn(a.z, a.x), __fsub_rn(a.w, a.y));
    const float area_b = __fmul_rn(__fsub_rn(b.z, b.x), __fsub_rn(b.w, b.y));
    const float uni = __fsub_rn(__fadd_rn(area_a, area_b), inter);
    return uni > 0.f ? __fdiv_rn(inter, uni) : 0.f;
}

// decode_detections' box: centre -/+ half the size.
__device__ __forceinline__ float4 anchor_box(const float* o, int anchors, int a) {
    const float cx = o[a], cy = o[anchors + a], w = o[2 * anchors + a], h = o[3 * anchors + a];
    const float hw = __fdiv_rn(w, 2.f), hh = __fdiv_rn(h, 2.f);
    return make_float4(__fsub_rn(cx, hw), __fsub_rn(cy, hh), __fadd_rn(cx, hw), __fadd_rn(cy, hh));
}

// One block per image: greedy NMS over the image's sorted candidates. `removed` (shared) marks the
// suppressed ones; after each kept box every thread sweeps a share of the later candidates. All
// threads walk the same flags, so they agree on the next kept box without communicating.
__global__ void nms_kernel(const float* __restrict__ out, int channels, int anchors,
                           const uint64_t* __restrict__ sorted, const int* __restrict__ end,
                           const int* __restrict__ best_class, float iou_threshold, int max_det, int max_nms,
                           bool agnostic, int shift, float4* __restrict__ boxes, NmsResult* __restrict__ results,
                           int* __restrict__ counts) {
    extern __shared__ uint8_t removed[];
    const int image = static_cast<int>(blockIdx.x);
    const int64_t base = static_cast<int64_t>(image) * anchors;
    const int n = min(end[image] - static_cast<int>(base), max_nms);
    const float* o = out + base * channels;
    const uint64_t* keys = sorted + base;
    float4* bx = boxes + base;
    const int* cls = best_class + base;
    const uint64_t anchor_mask = (uint64_t{1} << shift) - 1;
    for (int i = static_cast<int>(threadIdx.x); i < n; i += blockDim.x) {
        const int a = static_cast<int>(keys[i] & anchor_mask);
        float4 b = anchor_box(o, anchors, a);
        if (!agnostic) {
            const float off = static_cast<float>(cls[a]) * kMaxWh;
            b = make_float4(__fadd_rn(b.x, off), __fadd_rn(b.y, off), __fadd_rn(b.z, off), __fadd_rn(b.w, off));
        }
        bx[i] = b;
        removed[i] = 0;
    }
    __syncthreads();
    int kept = 0;
    for (int i = 0;; ++i) {
        while (i < n && removed[i]) ++i;
        if (i >= n || kept >= max_det) break;
        const int a = static_cast<int>(keys[i] & anchor_mask);
        if (threadIdx.x == 0) {
            const float4 b = anchor_box(o, anchors, a);
            const int c = cls[a];
            results[static_cast<int64_t>(image) * max_det + kept] =
                NmsResult{b.x, b.y, b.z, b.w, o[(4 + c) * static_cast<int64_t>(anchors) + a], c};
        }
        ++kept;
        const float4 k = bx[i];
        for (int j = i + 1 + static_cast<int>(threadIdx.x); j < n; j += blockDim.x)
            if (!removed[j] && box_iou(k, bx[j]) > iou_threshold) removed[j] = 1;
        __syncthreads();
    }
    if (threadIdx.x == 0) counts[image] = kept;
}

// Image i's kept boxes go after those of images 0..i-1.
__global__ void pack_kernel(const NmsResult* __restrict__ results, const int* __restrict__ counts, int max_det,
                            NmsResult* __restrict__ packed) {
    __shared__ int offset;
    const int image = static_cast<int>(blockIdx.x);
    if (threadIdx.x == 0) {
        int sum = 0;
        for (int k = 0; k < image; ++k) sum += counts[k];
        offset = sum;
    }
    __syncthreads();
    for (int k = static_cast<int>(threadIdx.x); k < counts[image]; k += blockDim.x)
        packed[offset + k] = results[static_cast<int64_t>(image) * max_det + k];
}

template <typename T>
T* device_alloc(size_t count) {
    void* p = nullptr;
    KS_CUDA(cudaMalloc(&p, std::max<size_t>(count * sizeof(T), 16)));
    return static_cast<T*>(p);
}

}  // namespace

DetectPostprocess::DetectPostprocess(int max_batch, int channels, int anchors, int num_classes)
    : max_batch_(max_batch), channels_(channels), anchors_(anchors), num_classes_(num_classes) {
    KS_CHECK(max_batch >= 1 && anchors >= 1 && num_classes >= 1 && channels >= 4 + num_classes,
             "GPU NMS: bad detect output layout (", channels, " channels, ", anchors, " anchors, ", num_classes,
             " classes, batch ", max_batch, ")");
    KS_CHECK(static_cast<int64_t>(max_batch) * anchors < (int64_t{1} << 31), "GPU NMS: ", max_batch, " x ", anchors,
             " candidates are too many");
    const size_t slots = static_cast<size_t>(max_batch) * anchors;
    try {
        keys_ = device_alloc<uint64_t>(slots);
        sorted_ = device_alloc<uint64_t>(slots);
        best_class_ = device_alloc<int>(slots);
        boxes_ = device_alloc<float4>(slots);
        begin_ = device_alloc<int>(static_cast<size_t>(max_batch));
        end_ = device_alloc<int>(static_cast<size_t>(max_batch));
        wanted_ = device_alloc<uint8_t>(static_cast<size_t>(num_classes));
        counts_ = device_alloc<int>(static_cast<size_t>(max_batch));
        KS_CUDA(cudaMallocHost(reinterpret_cast<void**>(&host_counts_), sizeof(int) * static_cast<size_t>(max_batch)));
        std::vector<int> begin(static_cast<size_t>(max_batch));
        for (int i = 0; i < max_batch; ++i) begin[static_cast<size_t>(i)] = i * anchors;
        KS_CUDA(cudaMemcpy(begin_, begin.data(), begin.size() * sizeof(int), cudaMemcpyHostToDevice));
    } catch (...) {
        release();
        throw;
    }
}

DetectPostprocess::~DetectPostprocess() { release(); }

void DetectPostprocess::release() {
    for (void* p :
         {static_cast<void*>(keys_), static_cast<void*>(sorted_), static_cast<void*>(best_class_),
          static_cast<void*>(boxes_), static_cast<void*>(begin_), static_cast<void*>(end_), static_cast<void*>(wanted_),
          sort_temp_, static_cast<void*>(results_), static_cast<void*>(packed_), static_cast<void*>(counts_)})
        if (p) cudaFree(p);
    if (host_packed_) cudaFreeHost(host_packed_);
    if (host_counts_) cudaFreeHost(host_counts_);
    keys_ = sorted_ = nullptr;
    best_class_ = begin_ = end_ = counts_ = nullptr;
    boxes_ = nullptr;
    wanted_ = nullptr;
    sort_temp_ = nullptr;
    results_ = packed_ = host_packed_ = nullptr;
    host_counts_ = nullptr;
}

void DetectPostprocess::reserve_results(int max_det) {
    if (max_det <= results_max_det_) return;
    const size_t slots = static_cast<size_t>(max_batch_) * static_cast<size_t>(max_det);
    if (results_) cudaFree(results_);
    if (packed_) cudaFree(packed_);
    if (host_packed_) cudaFreeHost(host_packed_);
    results_ = packed_ = host_packed_ = nullptr;
    results_max_det_ = 0;
    results_ = device_alloc<NmsResult>(slots);
    packed_ = device_alloc<NmsResult>(slots);
    KS_CUDA(cudaMallocHost(reinterpret_cast<void**>(&host_packed_), sizeof(NmsResult) * slots));
    results_max_det_ = max_det;
}

std::vector<std::vector<NmsResult>> DetectPostprocess::run(const float* output, int batch, const NmsOptions& opt,
                                                           const std::vector<int>& classes, cudaStream_t stream) {
    KS_CHECK(batch >= 1 && batch <= max_batch_, "GPU NMS: batch ", batch, " is outside 1..", max_batch_);
    KS_CHECK(opt.max_nms >= 1, "GPU NMS: max_nms must be positive");
    std::vector<std::vector<NmsResult>> kept(static_cast<size_t>(batch));
    if (opt.max_det <= 0) return kept;
    reserve_results(opt.max_det);
    const uint8_t* wanted = nullptr;
    if (!classes.empty()) {
        // Ids outside 0..nc-1 match no box, as on the CPU.
        host_wanted_.assign(static_cast<size_t>(num_classes_), 0);
        for (int c : classes)
            if (c >= 0 && c < num_classes_) host_wanted_[static_cast<size_t>(c)] = 1;
        KS_CUDA(cudaMemcpyAsync(wanted_, host_wanted_.data(), host_wanted_.size(), cudaMemcpyHostToDevice, stream));
        wanted = wanted_;
    }
    const int shift = anchor_bits(anchors_);
    KS_CUDA(cudaMemcpyAsync(end_, begin_, sizeof(int) * static_cast<size_t>(batch), cudaMemcpyDeviceToDevice, stream));
    candidates_kernel<<<dim3(static_cast<unsigned>((anchors_ + 255) / 256), static_cast<unsigned>(batch)), 256, 0,
                        stream>>>(output, channels_, anchors_, num_classes_, opt.conf, wanted, shift, keys_,
                                  best_class_, end_);
    KS_CUDA(cudaGetLastError());

    const int items = batch * anchors_;
    size_t temp_bytes = 0;
    KS_CUDA(cub::DeviceSegmentedRadixSort::SortKeys(nullptr, temp_bytes, keys_, sorted_, items, batch, begin_, end_, 0,
                                                    32 + shift, stream));
    if (temp_bytes > sort_temp_bytes_) {
        if (sort_temp_) KS_CUDA(cudaFree(sort_temp_));
        sort_temp_ = nullptr;
        sort_temp_bytes_ = 0;
        KS_CUDA(cudaMalloc(&sort_temp_, temp_bytes));
        sort_temp_bytes_ = temp_bytes;
    }
    KS_CUDA(cub::DeviceSegmentedRadixSort::SortKeys(sort_temp_, temp_bytes, keys_, sorted_, items, batch, begin_, end_,
                                                    0, 32 + shift, stream));

    const size_t flags = static_cast<size_t>(std::min(anchors_, opt.max_nms));
    KS_CHECK(flags <= 48 * 1024, "GPU NMS: max_nms ", opt.max_nms, " exceeds the 49152 candidates one block holds");
    nms_kernel<<<static_cast<unsigned>(batch), kNmsThreads, flags, stream>>>(
        output, channels_, anchors_, sorted_, end_, best_class_, opt.iou, opt.max_det, opt.max_nms, opt.agnostic, shift,
        boxes_, results_, counts_);
    KS_CUDA(cudaGetLastError());
    pack_kernel<<<static_cast<unsigned>(batch), 128, 0, stream>>>(results_, counts_, opt.max_det, packed_);
    KS_CUDA(cudaGetLastError());

    // Counts first (to know how much to copy), then only the kept boxes.
    KS_CUDA(cudaMemcpyAsync(host_counts_, counts_, sizeof(int) * static_cast<size_t>(batch), cudaMemcpyDeviceToHost,
                            stream));
    KS_CUDA(cudaStreamSynchronize(stream));
    size_t total = 0;
    for (int i = 0; i < batch; ++i) total += static_cast<size_t>(host_counts_[i]);
    if (total > 0) {
        KS_CUDA(cudaMemcpyAsync(host_packed_, packed_, sizeof(NmsResult) * total, cudaMemcpyDeviceToHost, stream));
        KS_CUDA(cudaStreamSynchronize(stream));
    }
    const NmsResult* r = host_packed_;
    for (int i = 0; i < batch; ++i) {
        kept[static_cast<size_t>(i)].assign(r, r + host_counts_[i]);
        r += host_counts_[i];
    }
    return kept;
}

}  // namespace kestrel::cuda
