// Detection metrics exactly as Ultralytics' DetectionValidator computes them (ultralytics/engine/validator.py
// match_predictions with use_scipy=False; ultralytics/utils/metrics.py box_iou, ap_per_class, compute_ap, smooth):
//
//   DetectionStats stats;
//   for (each image) stats.add_image(predictions, labels);   // boxes in original-image pixels
//   DetectionMetrics m = stats.compute();
//   printf("%.3g %.3g %.3g %.3g\n", m.precision, m.recall, m.map50, m.map50_95);
//
// Per class c with labels: predictions sorted by confidence, cumulative TP/FP give recall = TP / labels and
// precision = TP / (TP + FP); AP is the area under the precision envelope sampled at 101 recall points
// (linear interpolation, trapezoidal integration). P and R are read at the one confidence that maximises the
// mean F1 over classes (F1 smoothed by a 101-wide box filter over a 1000-point confidence grid).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <vector>

namespace kestrel::yolo {

constexpr int kNumIouThresholds = 10;
// One flag per IoU threshold 0.50, 0.55, ..., 0.95: the prediction is a true positive at that threshold.
using IouFlags = std::array<bool, kNumIouThresholds>;

// torch.linspace(0.5, 0.95, 10) in float32, as Ultralytics' iouv.
const std::array<float, kNumIouThresholds>& iou_thresholds();

struct EvalBox {
    float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
    int cls = 0;
    float conf = 0;  // predictions only
};

// Ultralytics' box_iou in float32: intersection / (area a + area b - intersection + 1e-7).
float box_iou(const EvalBox& a, const EvalBox& b);

// Ultralytics' match_predictions (use_scipy=False). iou holds labels x predictions, row-major
// (iou[l * pred_classes.size() + d]). At each threshold, every (label, prediction) pair of the same class with
// IoU >= threshold is a candidate; candidates sorted by decreasing IoU keep the first pair of each prediction,
// then (ordered by prediction index, i.e. by confidence) the first pair of each label. Returns one IouFlags per
// prediction.
std::vector<IouFlags> match_predictions(const std::vector<int>& pred_classes, const std::vector<int>& true_classes,
                                        const std::vector<float>& iou);

// Ultralytics' compute_ap: sentinels (recall 0 -> precision 1, recall 1 -> precision 0), precision envelope,
// np.trapz of np.interp at 101 recall points 0, 0.01, ..., 1.
double compute_ap(const std::vector<double>& recall, const std::vector<double>& precision);

struct ClassMetrics {
    int class_id = 0;
    double precision = 0, recall = 0, f1 = 0;    // at the max mean-F1 confidence
    std::array<double, kNumIouThresholds> ap{};  // AP at each IoU threshold
    double ap50() const { return ap[0]; }
    double ap50_95() const;  // mean over the thresholds
};

struct DetectionMetrics {
    // Means over the classes that have labels (Ultralytics' mp, mr, map50, map).
    double precision = 0, recall = 0, map50 = 0, map50_95 = 0;
    std::vector<ClassMetrics> classes;  // the classes that have labels, by increasing id (ap_class_index)
};

// Ultralytics' ap_per_class over all predictions of a dataset: tp[i], conf[i], pred_cls[i] per prediction and
// the class of every label. Classes without labels are ignored; a class with labels but no predictions has
// P = R = AP = 0 and still counts in the means.
DetectionMetrics ap_per_class(const std::vector<IouFlags>& tp, const std::vector<float>& conf,
                              const std::vector<int>& pred_cls, const std::vector<int>& target_cls);

// The validator's running statistics (DetectionValidator.update_metrics / get_stats).
class DetectionStats {
   public:
    // One image: its predictions (by decreasing confidence, as NMS returns them) and its labels.
    void add_image(const std::vector<EvalBox>& predictions, const std::vector<EvalBox>& labels);
    // All zeros, and no classes, when no prediction is a true positive at IoU 0.5 (Ultralytics then skips
    // ap_per_class).
    DetectionMetrics compute() const;

    int images() const { return images_; }
    int64_t instances() const { return static_cast<int64_t>(target_cls_.size()); }
    int instances_of(int cls) const;  // labels of class cls
    int images_with(int cls) const;   // images with at least one label of class cls

   private:
    int images_ = 0;
    std::vector<IouFlags> tp_;
    std::vector<float> conf_;
    std::vector<int> pred_cls_, target_cls_;
    std::map<int, int> instances_per_class_, images_per_class_;
};

}  // namespace kestrel::yolo
