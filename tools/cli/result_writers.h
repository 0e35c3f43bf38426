// Result files in Ultralytics' formats: YOLO .txt labels as Results.save_txt writes them, and COCO-style JSON
// records as the validators' pred_to_json builds them (save_json).
//
//   Det det{.x1 = 100, .y1 = 50, .x2 = 300, .y2 = 250, .score = 0.9f, .cls = 0};
//   labels_txt_line(det, 640, 480, true);  // "0 0.3125 0.3125 0.3125 0.416667 0.9"
//   write_file_atomic("runs/detect/predict/labels/bus.txt", labels_txt(dets, 640, 480, false));
#pragma once

#include <array>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kestrel::cli {

// One detection in original-image pixels.
struct Det {
    float x1, y1, x2, y2;  // box corners
    float score;
    int cls;
    std::vector<std::array<float, 3>> kpts;  // pose only: x, y, visibility score per keypoint
};

// "cls xc yc w h" normalized by the image size, then for pose "x y v" per keypoint (x, y normalized), then
// " score" when save_conf; each number printed with %g, as Ultralytics' ('%g ' * len(line)).rstrip() % line.
std::string labels_txt_line(const Det& det, int image_width, int image_height, bool save_conf);
// One labels_txt_line per detection, each ending in '\n'; empty when there are no detections (Ultralytics then
// writes no file).
std::string labels_txt(const std::vector<Det>& dets, int image_width, int image_height, bool save_conf);

// COCO result records for one image: {"image_id", "category_id", "bbox": [x, y, w, h] (top-left corner, rounded to
// 3 decimals), "score" (rounded to 5 decimals)} plus unrounded "keypoints" [x, y, v, ...] for pose. image_id is
// the file stem, as an integer when it is all digits (COCO's 000000000139.jpg gives 139). category_id is
// class_map[cls] when class_map is given (COCO's 80-to-91 ids), else cls.
nlohmann::json json_records(const std::string& image_path, const std::vector<Det>& dets,
                            std::span<const int> class_map = {});

// Writes "<path>.tmp" and renames it over path, so readers never see a partial file. Throws kestrel::Error.
void write_file_atomic(const std::string& path, std::string_view contents);

}  // namespace kestrel::cli
