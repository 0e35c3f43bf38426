// Public-API detections as the result writers' Det records (labels txt, predictions.json).
#pragma once

#include <vector>

#include "cli/result_writers.h"
#include "kestrel/detector.h"

namespace kestrel::cli {

inline std::vector<Det> to_dets(const Prediction& p) {
    std::vector<Det> dets;
    for (const auto& d : p.detections) {
        Det x{d.box.x1, d.box.y1, d.box.x2, d.box.y2, d.confidence, d.class_id, {}};
        for (const auto& k : d.keypoints) x.kpts.push_back({k.x, k.y, k.confidence});
        dets.push_back(std::move(x));
    }
    return dets;
}

}  // namespace kestrel::cli
