// Decoding of YOLOv8 outputs into detections in original-image pixels.
//
// Detect / segment / pose output0, one image, channel-major (C rows of N anchors):
//
//        anchor 0   anchor 1  ...  anchor N-1
//   0    cx         cx             cx           box centre, width, height in input pixels
//   1    cy
//   2    w
//   3    h
//   4    score(class 0)                         class scores (after sigmoid)
//   ...
//   4+nc-1 score(class nc-1)
//   4+nc  extra[0]                              segment: 32 mask coefficients;
//   ...                                         pose: kpt x, y, visibility per keypoint
//
// Classify output0: nc probabilities (softmax inside the model).
#pragma once

#include <vector>

#include "kestrel/detector.h"
#include "yolo/preprocess/letterbox.h"

namespace kestrel::yolo {

struct DecodeLayout {
    int channels = 0;  // rows of output0
    int anchors = 0;   // columns of output0
    int num_classes = 0;
    int num_keypoints = 0;  // pose
    int keypoint_dims = 3;
};

// Candidates above conf -> NMS -> boxes (and keypoints) scaled to the original image and clipped.
std::vector<Detection> decode_detections(const float* output, const DecodeLayout& layout, const PredictOptions& options,
                                         const LetterboxTransform& transform, int orig_width, int orig_height);

// The five best classes.
std::vector<ClassScore> decode_top5(const float* probs, int num_classes);

}  // namespace kestrel::yolo
