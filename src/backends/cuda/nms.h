// Detect post-processing on the GPU, the same detections as the CPU's yolo::decode_detections
// (src/yolo/tasks/postprocess.cc with yolo::nms), from a detect output [batch, 4 + nc (+ extra), anchors]
// (float32 on the device) to each image's kept boxes, of which only the kept ones reach the host:
//   1. candidates: per anchor the best class (first maximum) and its score; kept when score > conf
//      and the class is wanted; key = (score descending, anchor ascending), the CPU's stable order.
//   2. a segmented radix sort of the keys per image (CUB); the first max_nms (30000) enter NMS.
//   3. greedy NMS, one block per image: boxes offset by class * 7680 unless agnostic, a box is dropped
//      when its IoU with a kept box is > iou (IoU in the CPU's float operations, no contraction),
//      at most max_det kept.
//   4. the kept boxes of all images packed together, then copied to the host with their counts.
// Multi-label candidates (val) stay on the CPU.
//
//   DetectPostprocess post(max_batch, channels, anchors, num_classes);
//   auto boxes = post.run(session.device_output(0), batch, {conf, iou, max_det, agnostic}, classes, stream);
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <vector>

namespace kestrel::cuda {

struct NmsOptions {
    float conf = 0.25f;
    float iou = 0.7f;
    int max_det = 300;
    bool agnostic = false;
    int max_nms = 30000;  // Ultralytics' max_nms: at most this many candidates enter NMS
};

// A kept box in network-input pixels (x1, y1, x2, y2: centre -/+ half the size, not offset).
struct NmsResult {
    float x1, y1, x2, y2;
    float score;
    int class_id;
};

class DetectPostprocess {
   public:
    // For outputs of `channels` rows (4 + num_classes + extra) of `anchors` columns, up to max_batch images.
    DetectPostprocess(int max_batch, int channels, int anchors, int num_classes);
    ~DetectPostprocess();
    DetectPostprocess(const DetectPostprocess&) = delete;
    DetectPostprocess& operator=(const DetectPostprocess&) = delete;

    // output: device, batch x channels x anchors floats. classes: keep only these ids (empty: all).
    // Enqueues on `stream`, then waits for it: returns each image's kept boxes by decreasing score.
    std::vector<std::vector<NmsResult>> run(const float* output, int batch, const NmsOptions& options,
                                            const std::vector<int>& classes, cudaStream_t stream);

   private:
    void reserve_results(int max_det);
    void release();

    int max_batch_, channels_, anchors_, num_classes_;
    uint64_t* keys_ = nullptr;    // candidate keys, max_batch segments of `anchors`
    uint64_t* sorted_ = nullptr;  // the same, sorted per segment
    int* begin_ = nullptr;        // segment i starts at i * anchors
    int* end_ = nullptr;          // ... and ends at its start + its candidate count
    int* best_class_ = nullptr;   // each candidate's class, by image and anchor
    float4* boxes_ = nullptr;     // NMS scratch: the sorted candidates' class-offset boxes
    uint8_t* wanted_ = nullptr;   // num_classes flags (the classes= filter)
    void* sort_temp_ = nullptr;   // CUB's temporary storage
    size_t sort_temp_bytes_ = 0;
    NmsResult* results_ = nullptr;  // max_batch x max_det slots
    NmsResult* packed_ = nullptr;   // the kept boxes of all images, image after image
    int* counts_ = nullptr;         // kept per image
    int results_max_det_ = 0;
    NmsResult* host_packed_ = nullptr;  // pinned
    int* host_counts_ = nullptr;        // pinned
    std::vector<uint8_t> host_wanted_;
};

}  // namespace kestrel::cuda
