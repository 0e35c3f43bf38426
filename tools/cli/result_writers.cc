#include "cli/result_writers.h"

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <system_error>

#include "core/error.h"

namespace kestrel::cli {
namespace {

// Python's '%g' and C's are the same conversion: 6 significant digits, trailing zeros dropped.
void append_g(std::string& line, double value) {
    char buffer[32];
    const int n = std::snprintf(buffer, sizeof(buffer), "%g", value);
    if (!line.empty()) line += ' ';
    line.append(buffer, static_cast<size_t>(n));
}

// Python's round(x, digits): the correctly rounded decimal (ties to even on the exact binary value), which glibc's
// printf produces, read back as the nearest double.
double round_to(double value, int digits) {
    char buffer[64];
    std::snprintf(buffer, sizeof(buffer), "%.*f", digits, value);
    return std::strtod(buffer, nullptr);
}

// Path(filename).stem, as an int when it is all digits (Ultralytics: int(stem) if stem.isnumeric() else stem).
nlohmann::json image_id(const std::string& image_path) {
    const std::string stem = std::filesystem::path(image_path).stem().string();
    int64_t id = 0;
    const auto [end, ec] = std::from_chars(stem.data(), stem.data() + stem.size(), id);
    const bool all_digits = !stem.empty() && stem.find_first_not_of("0123456789") == std::string::npos;
    if (all_digits && ec == std::errc() && end == stem.data() + stem.size()) return id;
    return stem;
}

}  // namespace

std::string labels_txt_line(const Det& det, int image_width, int image_height, bool save_conf) {
    KS_CHECK(image_width > 0 && image_height > 0, "invalid image size ", image_width, "x", image_height);
    // float32 arithmetic in Ultralytics' order (xyxy2xywh, then /= orig_shape) so the printed digits match.
    const auto w = static_cast<float>(image_width);
    const auto h = static_cast<float>(image_height);
    std::string line;
    append_g(line, det.cls);
    append_g(line, (det.x1 + det.x2) / 2.0f / w);
    append_g(line, (det.y1 + det.y2) / 2.0f / h);
    append_g(line, (det.x2 - det.x1) / w);
    append_g(line, (det.y2 - det.y1) / h);
    for (const auto& [x, y, v] : det.kpts) {
        // Ultralytics' Keypoints zeroes the coordinates of points with visibility < 0.5.
        const bool visible = v >= 0.5f;
        append_g(line, visible ? x / w : 0.0f);
        append_g(line, visible ? y / h : 0.0f);
        append_g(line, v);
    }
    if (save_conf) append_g(line, det.score);
    return line;
}

std::string labels_txt(const std::vector<Det>& dets, int image_width, int image_height, bool save_conf) {
    std::string text;
    for (const Det& det : dets) text += labels_txt_line(det, image_width, image_height, save_conf) + "\n";
    return text;
}

nlohmann::json json_records(const std::string& image_path, const std::vector<Det>& dets,
                            std::span<const int> class_map) {
    const nlohmann::json id = image_id(image_path);
    nlohmann::json records = nlohmann::json::array();
    for (const Det& det : dets) {
        int category = det.cls;
        if (!class_map.empty()) {
            KS_CHECK(det.cls >= 0 && static_cast<size_t>(det.cls) < class_map.size(), "class ", det.cls,
                     " is outside the class map of ", class_map.size(), " classes");
            category = class_map[static_cast<size_t>(det.cls)];
        }
        // float32 as in Ultralytics: xyxy2xywh, then the centre moved to the top-left corner.
        const float bw = det.x2 - det.x1;
        const float bh = det.y2 - det.y1;
        const float left = (det.x1 + det.x2) / 2.0f - bw / 2.0f;
        const float top = (det.y1 + det.y2) / 2.0f - bh / 2.0f;
        nlohmann::json record = {
            {"image_id", id},
            {"category_id", category},
            {"bbox", {round_to(left, 3), round_to(top, 3), round_to(bw, 3), round_to(bh, 3)}},
            {"score", round_to(det.score, 5)},
        };
        if (!det.kpts.empty()) {
            // The pose validator writes keypoints unrounded.
            nlohmann::json keypoints = nlohmann::json::array();
            for (const auto& [x, y, v] : det.kpts) {
                keypoints.push_back(static_cast<double>(x));
                keypoints.push_back(static_cast<double>(y));
                keypoints.push_back(static_cast<double>(v));
            }
            record["keypoints"] = std::move(keypoints);
        }
        records.push_back(std::move(record));
    }
    return records;
}

void write_file_atomic(const std::string& path, std::string_view contents) {
    const std::string tmp = path + ".tmp";
    std::error_code ec;
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        KS_CHECK(out, "cannot write '", tmp, "': ", std::strerror(errno));
        out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
        out.close();
        if (!out) {
            std::filesystem::remove(tmp, ec);
            KS_FAIL("cannot write '", tmp, "'");
        }
    }
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        const std::string reason = ec.message();
        std::filesystem::remove(tmp, ec);
        KS_FAIL("cannot rename '", tmp, "' to '", path, "': ", reason);
    }
}

}  // namespace kestrel::cli
