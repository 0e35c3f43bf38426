// Greedy non-maximum suppression as torchvision.ops.nms: boxes sorted by decreasing score, a box
// is dropped when its IoU with a kept box is greater than the threshold. Class-aware NMS offsets
// each box by class_id * kMaxWh (Ultralytics' trick) so boxes of different classes never overlap.
#pragma once

#include <vector>

namespace kestrel::yolo {

struct NmsBox {
    float x1, y1, x2, y2;
    float score;
    int class_id;
};

constexpr float kMaxWh = 7680.f;

// Returns indices into `boxes` of the kept boxes, by decreasing score, at most max_det.
std::vector<int> nms(const std::vector<NmsBox>& boxes, float iou_threshold, bool agnostic, int max_det);

float iou(const NmsBox& a, const NmsBox& b);

}  // namespace kestrel::yolo
