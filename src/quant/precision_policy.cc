#include "quant/precision_policy.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace kestrel::quant {

std::vector<size_t> int8_conv_candidates(const ir::Graph& g) {
    std::vector<size_t> out;
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        const ir::Node& n = g.nodes[i];
        if (n.removed || n.op != ir::Op::kConv) continue;
        bool is_graph_input = std::find(g.inputs.begin(), g.inputs.end(), n.inputs[0]) != g.inputs.end();
        if (n.attrs.get_string("activation", "") != "silu" || n.attrs.get_int("group", 1) != 1 || is_graph_input)
            continue;
        out.push_back(i);
    }
    return out;
}

std::vector<int> calibration_values(const ir::Graph& g) {
    std::vector<int> values;
    for (size_t i : int8_conv_candidates(g)) {
        int v = g.nodes[i].inputs[0];
        if (std::find(values.begin(), values.end(), v) == values.end()) values.push_back(v);
    }
    return values;
}

namespace {

// IoU of two boxes given as centre x, y, width, height.
double iou_xywh(double ax, double ay, double aw, double ah, double bx, double by, double bw, double bh) {
    const double ix = std::min(ax + aw / 2, bx + bw / 2) - std::max(ax - aw / 2, bx - bw / 2);
    const double iy = std::min(ay + ah / 2, by + bh / 2) - std::max(ay - ah / 2, by - bh / 2);
    const double inter = std::max(0.0, ix) * std::max(0.0, iy);
    const double uni = std::max(0.0, aw) * std::max(0.0, ah) + std::max(0.0, bw) * std::max(0.0, bh) - inter;
    return uni > 0 ? inter / uni : 0.0;
}

}  // namespace

double detection_error(const float* ref, const float* q, int64_t images, const DetectionLayout& l) {
    KS_CHECK(l.anchors > 0 && l.num_classes > 0 && l.rows >= 4 + l.num_classes, "detection_error: output0 has ", l.rows,
             " rows, too few for 4 box rows and ", l.num_classes, " classes");
    const int64_t n = l.anchors, per_image = l.rows * n;
    double weight = 0, sum = 0;
    for (int64_t b = 0; b < images; ++b) {
        const float* r = ref + b * per_image;
        const float* x = q + b * per_image;
        for (int64_t a = 0; a < n; ++a) {
            float w = 0;
            for (int64_t c = 0; c < l.num_classes; ++c) w = std::max(w, r[(4 + c) * n + a]);
            if (!(w >= kRelevantScore)) continue;
            const double box_loss =
                1.0 - iou_xywh(r[a], r[n + a], r[2 * n + a], r[3 * n + a], x[a], x[n + a], x[2 * n + a], x[3 * n + a]);
            double score_loss = 0;
            for (int64_t c = 0; c < l.num_classes; ++c)
                score_loss += std::fabs(static_cast<double>(x[(4 + c) * n + a]) - r[(4 + c) * n + a]);
            weight += w;
            sum += w * (box_loss + score_loss);
        }
    }
    return weight > 0 ? sum / weight : 0.0;
}

double classification_error(const float* ref, const float* q, int64_t images, int64_t classes) {
    KS_CHECK(images > 0 && classes > 0, "classification_error: no outputs");
    double sum = 0;
    for (int64_t i = 0; i < images * classes; ++i) sum += std::fabs(static_cast<double>(q[i]) - ref[i]);
    return sum / static_cast<double>(images);
}

std::vector<size_t> float_order(const std::vector<LayerMeasure>& layers, bool use_time) {
    std::vector<double> key(layers.size());
    for (size_t i = 0; i < layers.size(); ++i) {
        const LayerMeasure& m = layers[i];
        key[i] = use_time ? m.error / std::max(m.float_ms - m.int8_ms, kMinSavedMs) : m.error;
    }
    std::vector<size_t> order(layers.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return key[a] > key[b]; });
    return order;
}

size_t smallest_float_prefix(size_t n, double budget, const std::function<double(size_t)>& model_error, double* error) {
    size_t lo = 0, hi = n;
    double at_hi = 0.0;  // all float: no error
    while (lo < hi) {
        const size_t mid = lo + (hi - lo) / 2;
        const double e = model_error(mid);
        if (e <= budget) {
            hi = mid;
            at_hi = e;
        } else {
            lo = mid + 1;
        }
    }
    if (error) *error = at_hi;
    return hi;
}

}  // namespace kestrel::quant
