// The arithmetic follows Ultralytics' NumPy/PyTorch code step by step (float32 where it uses float32 tensors,
// float64 where NumPy does, NumPy's interp and pairwise summation), so that the printed metrics agree with
// `yolo val` to the last digit for the same predictions.
#include "yolo/metrics/detection_metrics.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>

#include "core/error.h"

namespace kestrel::yolo {

namespace {

constexpr int kCurvePoints = 1000;  // np.linspace(0, 1, 1000): the confidence grid of the P, R, F1 curves
constexpr double kEps = 1e-16;      // ap_per_class's eps

// NumPy's pairwise summation (pairwise_sum_DOUBLE), which np.sum / np.mean / np.trapz use on a contiguous axis.
double pairwise_sum(const double* a, size_t n) {
    if (n < 8) {
        double s = 0;
        for (size_t i = 0; i < n; ++i) s += a[i];
        return s;
    }
    if (n <= 128) {
        double r[8];
        for (size_t j = 0; j < 8; ++j) r[j] = a[j];
        size_t i = 8;
        for (; i < n - n % 8; i += 8)
            for (size_t j = 0; j < 8; ++j) r[j] += a[i + j];
        double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; ++i) s += a[i];
        return s;
    }
    size_t half = n / 2;
    half -= half % 8;
    return pairwise_sum(a, half) + pairwise_sum(a + half, n - half);
}

double np_mean(const std::vector<double>& v) {
    return v.empty() ? 0.0 : pairwise_sum(v.data(), v.size()) / static_cast<double>(v.size());
}

// np.linspace(0, 1, n): i * (1 / (n - 1)), the last point exactly 1.
std::vector<double> np_linspace01(int n) {
    std::vector<double> x(static_cast<size_t>(n));
    const double step = 1.0 / (n - 1);
    for (int i = 0; i < n; ++i) x[static_cast<size_t>(i)] = i * step;
    x.back() = 1.0;
    return x;
}

// np.interp(x, xp, fp, left, right) for non-decreasing xp (repeats allowed), as NumPy's C loop computes it: the
// last j with xp[j] <= x; fp[j] on an exact hit or at the last point, else the slope between j and j + 1.
double np_interp(double x, const std::vector<double>& xp, const std::vector<double>& fp, double left, double right) {
    const size_t n = xp.size();
    if (x < xp.front()) return left;
    if (x > xp.back()) return right;
    const size_t j = static_cast<size_t>(std::upper_bound(xp.begin(), xp.end(), x) - xp.begin()) - 1;
    if (j == n - 1 || xp[j] == x) return fp[j];
    const double slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j]);
    return slope * (x - xp[j]) + fp[j];
}

// smooth(y, f): box filter of nf = round(len * f * 2) // 2 + 1 taps over y padded with its end values.
std::vector<double> smooth(const std::vector<double>& y, double f) {
    const auto nf = static_cast<int>(std::nearbyint(static_cast<double>(y.size()) * f * 2)) / 2 + 1;
    const int pad = nf / 2;
    std::vector<double> yp;
    yp.insert(yp.end(), static_cast<size_t>(pad), y.front());
    yp.insert(yp.end(), y.begin(), y.end());
    yp.insert(yp.end(), static_cast<size_t>(pad), y.back());
    const double w = 1.0 / nf;
    std::vector<double> out(y.size());
    for (size_t k = 0; k < out.size(); ++k) {
        double s = 0;
        for (int m = 0; m < nf; ++m) s += yp[k + static_cast<size_t>(m)] * w;
        out[k] = s;
    }
    return out;
}

}  // namespace

const std::array<float, kNumIouThresholds>& iou_thresholds() {
    // torch.linspace's CPU kernel in float: start + step * i for the first half, end - step * (steps - 1 - i)
    // for the second (0.8f and 0.85f come out as the nearest floats, not 0.79999995f).
    static const std::array<float, kNumIouThresholds> v = [] {
        std::array<float, kNumIouThresholds> t{};
        const float start = 0.5f, end = 0.95f;
        const float step = (end - start) / static_cast<float>(kNumIouThresholds - 1);
        for (int i = 0; i < kNumIouThresholds; ++i)
            t[static_cast<size_t>(i)] = i < kNumIouThresholds / 2
                                            ? start + step * static_cast<float>(i)
                                            : end - step * static_cast<float>(kNumIouThresholds - 1 - i);
        return t;
    }();
    return v;
}

float box_iou(const EvalBox& a, const EvalBox& b) {
    const float iw = std::max(std::min(a.x2, b.x2) - std::max(a.x1, b.x1), 0.0f);
    const float ih = std::max(std::min(a.y2, b.y2) - std::max(a.y1, b.y1), 0.0f);
    const float inter = iw * ih;
    const float area_a = (a.x2 - a.x1) * (a.y2 - a.y1);
    const float area_b = (b.x2 - b.x1) * (b.y2 - b.y1);
    return inter / (area_a + area_b - inter + 1e-7f);
}

std::vector<IouFlags> match_predictions(const std::vector<int>& pred_classes, const std::vector<int>& true_classes,
                                        const std::vector<float>& iou) {
    const size_t nd = pred_classes.size(), nl = true_classes.size();
    KS_CHECK(iou.size() == nd * nl, "match_predictions: IoU matrix is ", iou.size(), " values, expected ", nl, "x", nd);
    std::vector<IouFlags> correct(nd, IouFlags{});
    struct Pair {
        size_t label, det;
        float iou;
    };
    // iou * correct_class: pairs of different classes can never match.
    auto masked = [&](size_t l, size_t d) { return true_classes[l] == pred_classes[d] ? iou[l * nd + d] : 0.0f; };
    for (int t = 0; t < kNumIouThresholds; ++t) {
        const float threshold = iou_thresholds()[static_cast<size_t>(t)];
        std::vector<Pair> matches;  // np.nonzero order: by label, then prediction
        for (size_t l = 0; l < nl; ++l)
            for (size_t d = 0; d < nd; ++d)
                if (masked(l, d) >= threshold) matches.push_back({l, d, masked(l, d)});
        if (matches.size() > 1) {
            // argsort()[::-1]: decreasing IoU; equal IoUs (a stable ascending sort, reversed) in reverse order.
            std::reverse(matches.begin(), matches.end());
            std::stable_sort(matches.begin(), matches.end(),
                             [](const Pair& a, const Pair& b) { return a.iou > b.iou; });
            // np.unique(matches[:, 1], return_index=True): each prediction's first (best) pair, by prediction index.
            std::vector<Pair> by_det;
            std::set<size_t> seen;
            for (const Pair& p : matches)
                if (seen.insert(p.det).second) by_det.push_back(p);
            std::sort(by_det.begin(), by_det.end(), [](const Pair& a, const Pair& b) { return a.det < b.det; });
            // np.unique(matches[:, 0], return_index=True): each label's first pair in that order, i.e. its
            // highest-confidence prediction, not its best IoU (Ultralytics' behaviour, kept).
            std::vector<Pair> kept;
            seen.clear();
            for (const Pair& p : by_det)
                if (seen.insert(p.label).second) kept.push_back(p);
            matches = std::move(kept);
        }
        for (const Pair& p : matches) correct[p.det][static_cast<size_t>(t)] = true;
    }
    return correct;
}

double compute_ap(const std::vector<double>& recall, const std::vector<double>& precision) {
    std::vector<double> mrec{0.0}, mpre{1.0};
    mrec.insert(mrec.end(), recall.begin(), recall.end());
    mpre.insert(mpre.end(), precision.begin(), precision.end());
    mrec.push_back(1.0);
    mpre.push_back(0.0);
    // np.flip(np.maximum.accumulate(np.flip(mpre))): the precision envelope.
    for (size_t i = mpre.size() - 1; i-- > 0;) mpre[i] = std::max(mpre[i], mpre[i + 1]);
    const std::vector<double> x = np_linspace01(101);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) y[i] = np_interp(x[i], mrec, mpre, mpre.front(), mpre.back());
    // np.trapz: add.reduce(d * (y[1:] + y[:-1]) / 2.0).
    std::vector<double> areas(x.size() - 1);
    for (size_t i = 0; i + 1 < x.size(); ++i) areas[i] = (x[i + 1] - x[i]) * (y[i + 1] + y[i]) / 2.0;
    return pairwise_sum(areas.data(), areas.size());
}

double ClassMetrics::ap50_95() const {
    std::vector<double> v(ap.begin(), ap.end());
    return np_mean(v);
}

DetectionMetrics ap_per_class(const std::vector<IouFlags>& tp_in, const std::vector<float>& conf_in,
                              const std::vector<int>& pred_cls_in, const std::vector<int>& target_cls) {
    const size_t n = tp_in.size();
    KS_CHECK(conf_in.size() == n && pred_cls_in.size() == n, "ap_per_class: tp, conf and pred_cls differ in length");
    // np.argsort(-conf): by decreasing confidence (ties kept in order).
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return -conf_in[a] < -conf_in[b]; });

    std::map<int, int64_t> labels_per_class;  // np.unique(target_cls, return_counts=True)
    for (int c : target_cls) ++labels_per_class[c];
    const size_t nc = labels_per_class.size();

    const std::vector<double> grid = np_linspace01(kCurvePoints);
    DetectionMetrics m;
    std::vector<std::vector<double>> p_curve(nc, std::vector<double>(kCurvePoints, 0.0));
    std::vector<std::vector<double>> r_curve = p_curve;
    size_t ci = 0;
    for (const auto& [c, n_l] : labels_per_class) {
        ClassMetrics cm;
        cm.class_id = c;
        std::vector<size_t> idx;  // this class's predictions, by decreasing confidence
        for (size_t i : order)
            if (pred_cls_in[i] == c) idx.push_back(i);
        if (!idx.empty() && n_l > 0) {
            const size_t np_ = idx.size();
            std::vector<double> neg_conf(np_);
            for (size_t k = 0; k < np_; ++k) neg_conf[k] = -static_cast<double>(conf_in[idx[k]]);
            std::vector<std::vector<double>> recall(kNumIouThresholds, std::vector<double>(np_));
            std::vector<std::vector<double>> precision = recall;
            for (size_t t = 0; t < kNumIouThresholds; ++t) {
                int64_t tpc = 0, fpc = 0;
                for (size_t k = 0; k < np_; ++k) {
                    tp_in[idx[k]][t] ? ++tpc : ++fpc;
                    recall[t][k] = static_cast<double>(tpc) / (static_cast<double>(n_l) + kEps);
                    precision[t][k] = static_cast<double>(tpc) / static_cast<double>(tpc + fpc);
                }
            }
            // P and R against confidence at IoU 0.5 (np.interp on the negated, increasing confidences).
            for (int g = 0; g < kCurvePoints; ++g) {
                const double x = -grid[static_cast<size_t>(g)];
                r_curve[ci][static_cast<size_t>(g)] = np_interp(x, neg_conf, recall[0], 0.0, recall[0].back());
                p_curve[ci][static_cast<size_t>(g)] = np_interp(x, neg_conf, precision[0], 1.0, precision[0].back());
            }
            for (size_t t = 0; t < kNumIouThresholds; ++t) cm.ap[t] = compute_ap(recall[t], precision[t]);
        }
        m.classes.push_back(cm);
        ++ci;
    }
    if (nc == 0) return m;

    // F1 per class, its mean over classes (np.mean over axis 0: rows added in order), smoothed; the first maximum.
    std::vector<std::vector<double>> f1(nc, std::vector<double>(kCurvePoints));
    std::vector<double> mean_f1(kCurvePoints, 0.0);
    for (size_t c = 0; c < nc; ++c)
        for (size_t g = 0; g < kCurvePoints; ++g) {
            const double p = p_curve[c][g], r = r_curve[c][g];
            f1[c][g] = 2 * p * r / (p + r + kEps);
            mean_f1[g] += f1[c][g];
        }
    for (double& v : mean_f1) v /= static_cast<double>(nc);
    const std::vector<double> smoothed = smooth(mean_f1, 0.1);
    const auto best = static_cast<size_t>(std::max_element(smoothed.begin(), smoothed.end()) - smoothed.begin());

    std::vector<double> ps, rs, ap50, ap_all;
    for (size_t c = 0; c < nc; ++c) {
        ClassMetrics& cm = m.classes[c];
        cm.precision = p_curve[c][best];
        cm.recall = r_curve[c][best];
        cm.f1 = f1[c][best];
        ps.push_back(cm.precision);
        rs.push_back(cm.recall);
        ap50.push_back(cm.ap[0]);
        ap_all.insert(ap_all.end(), cm.ap.begin(), cm.ap.end());
    }
    m.precision = np_mean(ps);
    m.recall = np_mean(rs);
    m.map50 = np_mean(ap50);
    m.map50_95 = np_mean(ap_all);
    return m;
}

void DetectionStats::add_image(const std::vector<EvalBox>& predictions, const std::vector<EvalBox>& labels) {
    ++images_;
    std::set<int> classes_here;
    for (const EvalBox& l : labels) {
        target_cls_.push_back(l.cls);
        ++instances_per_class_[l.cls];
        classes_here.insert(l.cls);
    }
    for (int c : classes_here) ++images_per_class_[c];
    if (predictions.empty()) return;
    std::vector<int> pred_classes, true_classes;
    for (const EvalBox& p : predictions) {
        pred_classes.push_back(p.cls);
        conf_.push_back(p.conf);
        pred_cls_.push_back(p.cls);
    }
    if (labels.empty()) {
        tp_.insert(tp_.end(), predictions.size(), IouFlags{});
        return;
    }
    for (const EvalBox& l : labels) true_classes.push_back(l.cls);
    std::vector<float> iou(labels.size() * predictions.size());
    for (size_t l = 0; l < labels.size(); ++l)
        for (size_t d = 0; d < predictions.size(); ++d)
            iou[l * predictions.size() + d] = box_iou(labels[l], predictions[d]);
    const std::vector<IouFlags> correct = match_predictions(pred_classes, true_classes, iou);
    tp_.insert(tp_.end(), correct.begin(), correct.end());
}

DetectionMetrics DetectionStats::compute() const {
    // get_stats: ap_per_class only runs when some prediction is correct at some threshold.
    const bool any_tp = std::any_of(tp_.begin(), tp_.end(), [](const IouFlags& f) {
        return std::any_of(f.begin(), f.end(), [](bool b) { return b; });
    });
    if (!any_tp) return DetectionMetrics{};
    return ap_per_class(tp_, conf_, pred_cls_, target_cls_);
}

int DetectionStats::instances_of(int cls) const {
    const auto it = instances_per_class_.find(cls);
    return it == instances_per_class_.end() ? 0 : it->second;
}

int DetectionStats::images_with(int cls) const {
    const auto it = images_per_class_.find(cls);
    return it == images_per_class_.end() ? 0 : it->second;
}

}  // namespace kestrel::yolo
