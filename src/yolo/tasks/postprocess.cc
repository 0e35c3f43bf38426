#include "yolo/tasks/postprocess.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "yolo/nms/nms.h"

namespace kestrel::yolo {

namespace {
// Ultralytics' max_nms: at most this many candidates enter NMS.
constexpr size_t kMaxNms = 30000;
}  // namespace

std::vector<Detection> decode_detections(const float* out, const DecodeLayout& L, const PredictOptions& opt,
                                         const LetterboxTransform& t, int orig_w, int orig_h) {
    const int N = L.anchors;
    auto at = [&](int row, int a) { return out[static_cast<size_t>(row) * N + a]; };
    struct Cand {
        int anchor;
        int cls;
        float score;
    };
    std::vector<Cand> cands;
    auto wanted = [&](int c) { return opt.classes.empty() || std::find(opt.classes.begin(), opt.classes.end(), c) != opt.classes.end(); };
    for (int a = 0; a < N; ++a) {
        if (opt.multi_label) {
            for (int c = 0; c < L.num_classes; ++c) {
                float s = at(4 + c, a);
                if (s > opt.conf && wanted(c)) cands.push_back({a, c, s});
            }
            continue;
        }
        int best = 0;
        float bs = at(4, a);
        for (int c = 1; c < L.num_classes; ++c)
            if (at(4 + c, a) > bs) bs = at(4 + c, a), best = c;
        if (bs > opt.conf && wanted(best)) cands.push_back({a, best, bs});
    }
    if (cands.size() > kMaxNms) {
        std::stable_sort(cands.begin(), cands.end(), [](const Cand& x, const Cand& y) { return x.score > y.score; });
        cands.resize(kMaxNms);
    }
    std::vector<NmsBox> boxes;
    boxes.reserve(cands.size());
    for (const Cand& c : cands) {
        float cx = at(0, c.anchor), cy = at(1, c.anchor), w = at(2, c.anchor), h = at(3, c.anchor);
        boxes.push_back({cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, c.score, c.cls});
    }
    std::vector<int> keep = nms(boxes, opt.iou, opt.agnostic_nms, opt.max_det);
    auto clip_x = [&](float x) { return std::clamp(x, 0.f, static_cast<float>(orig_w)); };
    auto clip_y = [&](float y) { return std::clamp(y, 0.f, static_cast<float>(orig_h)); };
    std::vector<Detection> dets;
    for (int k : keep) {
        const NmsBox& b = boxes[k];
        Detection d;
        d.class_id = b.class_id;
        d.confidence = b.score;
        d.box = {clip_x(t.to_original_x(b.x1)), clip_y(t.to_original_y(b.y1)), clip_x(t.to_original_x(b.x2)),
                 clip_y(t.to_original_y(b.y2))};
        int a = cands[k].anchor;
        int base = 4 + L.num_classes;
        for (int i = 0; i < L.num_keypoints; ++i) {
            Keypoint kp;
            kp.x = clip_x(t.to_original_x(at(base + i * L.keypoint_dims, a)));
            kp.y = clip_y(t.to_original_y(at(base + i * L.keypoint_dims + 1, a)));
            kp.confidence = L.keypoint_dims == 3 ? at(base + i * L.keypoint_dims + 2, a) : 1.f;
            d.keypoints.push_back(kp);
        }
        dets.push_back(std::move(d));
    }
    return dets;
}

std::vector<ClassScore> decode_top5(const float* probs, int nc) {
    std::vector<int> idx(static_cast<size_t>(nc));
    std::iota(idx.begin(), idx.end(), 0);
    int k = std::min(5, nc);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) { return probs[a] > probs[b]; });
    std::vector<ClassScore> top;
    for (int i = 0; i < k; ++i) top.push_back({idx[static_cast<size_t>(i)], probs[idx[static_cast<size_t>(i)]]});
    return top;
}

}  // namespace kestrel::yolo
