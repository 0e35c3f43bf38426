// Which layers run INT8 (docs/calibration.md, "Precision policy").
//
// 1. Candidates (by construction): convolutions with a fused SiLU, one group, and an input that is
//    not the graph input. So the stem conv (3 channels: int8 gains nothing there), the Detect
//    head's bare final 1x1 convs (box and class outputs) and the DFL conv stay float, as do the
//    sigmoid, softmax and box decode: the layers the evidence names as INT8-sensitive.
// 2. INT8 only where faster (TensorRT's implicit-quantisation rule): the build times each
//    candidate in float and in INT8 and keeps float where INT8 is not faster.
// 3. Accuracy: each remaining layer's error alone in INT8 (detection_error) divided by the time it
//    saves orders them; layers are kept float in that order until the whole model's error is within
//    a budget (smallest_float_prefix). The engine build (api/int8_build.cc) runs the measurements;
//    the arithmetic lives here so it can be tested on its own.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "ir/graph.h"

namespace kestrel::quant {

// Indices (into graph.nodes) of the convolutions that run INT8 when they have an input scale.
std::vector<size_t> int8_conv_candidates(const ir::Graph& graph);

// The values whose scales those layers need (each candidate's input), in node order, unique.
std::vector<int> calibration_values(const ir::Graph& graph);

// A detection output0 per image: `rows` x `anchors`, channel-major (Ultralytics' layout): rows 0-3 box
// centre x, y, width, height in pixels, rows 4 .. 4+num_classes-1 class scores in [0, 1], any further
// rows (mask coefficients, keypoints) ignored.
struct DetectionLayout {
    int64_t rows = 0;
    int64_t anchors = 0;
    int64_t num_classes = 0;
};

// Anchors whose best float class score is below this do not count (they never become detections
// that matter for mAP at conf 0.001 after NMS keeps the 300 best).
inline constexpr float kRelevantScore = 0.01f;

// How far a quantised model's detections are from the float model's, in the terms mAP50-95 scores:
// over the anchors where the float model's best class score w is >= kRelevantScore, the w-weighted
// mean of (1 - IoU(float box, quantised box)) + sum over classes |quantised score - float score|.
// mAP50-95 averages over IoU thresholds 0.5..0.95, so a box that loses IoU loses AP roughly in
// proportion; score errors reorder detections. 0 when no anchor is relevant. Both arrays hold
// `images` outputs of the layout back to back.
double detection_error(const float* reference, const float* quantized, int64_t images, const DetectionLayout& layout);

// For classifiers (output0: `classes` probabilities per image): the mean over images of the L1
// distance between the two probability vectors.
double classification_error(const float* reference, const float* quantized, int64_t images, int64_t classes);

// One INT8-capable layer as the policy sees it.
struct LayerMeasure {
    size_t node = 0;      // index into graph.nodes
    double float_ms = 0;  // time of the layer in float
    double int8_ms = 0;   // time in INT8 (includes quantising its input)
    double error = 0;     // detection_error with only this layer in INT8
};

// Per-layer time saved below which a layer counts as saving this much (avoids dividing by ~0).
inline constexpr double kMinSavedMs = 1e-3;

// The order in which layers are kept float: error per millisecond saved (float_ms - int8_ms, at
// least kMinSavedMs), highest first; with use_time false, error alone. Ties keep the input order.
// Returns indices into `layers`.
std::vector<size_t> float_order(const std::vector<LayerMeasure>& layers, bool use_time);

// The smallest k in [0, n] for which model_error(k) <= budget, where model_error(k) is the whole
// model's error with the first k layers of the float order kept float. Bisection: assumes the error
// does not grow as more layers stay float, evaluates model_error about log2(n) + 1 times and never
// for k = n (all float: error 0). Returns the k found and, in *error (if given), its error.
size_t smallest_float_prefix(size_t n, double budget, const std::function<double(size_t)>& model_error,
                             double* error = nullptr);

}  // namespace kestrel::quant
