#include "yolo/nms/nms.h"

#include <algorithm>
#include <numeric>

namespace kestrel::yolo {

float iou(const NmsBox& a, const NmsBox& b) {
    float iw = std::max(0.f, std::min(a.x2, b.x2) - std::max(a.x1, b.x1));
    float ih = std::max(0.f, std::min(a.y2, b.y2) - std::max(a.y1, b.y1));
    float inter = iw * ih;
    float uni = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter;
    return uni > 0.f ? inter / uni : 0.f;
}

std::vector<int> nms(const std::vector<NmsBox>& boxes, float iou_threshold, bool agnostic, int max_det) {
    std::vector<int> order(boxes.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return boxes[a].score > boxes[b].score; });
    std::vector<NmsBox> shifted(boxes);
    if (!agnostic)
        for (NmsBox& b : shifted) {
            float off = static_cast<float>(b.class_id) * kMaxWh;
            b.x1 += off, b.y1 += off, b.x2 += off, b.y2 += off;
        }
    std::vector<int> keep;
    std::vector<bool> dropped(boxes.size(), false);
    for (size_t i = 0; i < order.size() && static_cast<int>(keep.size()) < max_det; ++i) {
        int a = order[i];
        if (dropped[a]) continue;
        keep.push_back(a);
        for (size_t j = i + 1; j < order.size(); ++j) {
            int b = order[j];
            if (!dropped[b] && iou(shifted[a], shifted[b]) > iou_threshold) dropped[b] = true;
        }
    }
    return keep;
}

}  // namespace kestrel::yolo
