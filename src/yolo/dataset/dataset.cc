#include "yolo/dataset/dataset.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "core/error.h"
#include "yolo/image/image.h"

namespace kestrel::yolo {

namespace fs = std::filesystem;

namespace {

constexpr const char* kSplitKeys[] = {"train", "val", "test", "minival"};

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    KS_CHECK(in, "cannot read '", path, "'");
    std::ostringstream os;
    os << in.rdbuf();
    return os.str();
}

std::string_view strip(std::string_view s) {
    const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
    while (!s.empty() && space(s.front())) s.remove_prefix(1);
    while (!s.empty() && space(s.back())) s.remove_suffix(1);
    return s;
}

// Python's text.strip().splitlines() for \n, \r\n and \r line ends.
std::vector<std::string> stripped_lines(const std::string& text) {
    std::vector<std::string> lines;
    std::string_view s = strip(text);
    while (!s.empty()) {
        const size_t end = s.find_first_of("\r\n");
        lines.emplace_back(s.substr(0, end));
        if (end == std::string_view::npos) break;
        s.remove_prefix(end + (s[end] == '\r' && end + 1 < s.size() && s[end + 1] == '\n' ? 2 : 1));
    }
    return lines;
}

std::vector<std::string> split_whitespace(const std::string& line) {
    std::istringstream is(line);
    std::vector<std::string> out;
    for (std::string token; is >> token;) out.push_back(token);
    return out;
}

// Path.resolve() of a path that may not exist: absolute, symlinks of the existing part resolved, normalised.
std::string resolve(const fs::path& p) {
    std::error_code ec;
    fs::path r = fs::weakly_canonical(fs::absolute(p), ec);
    return (ec ? fs::absolute(p).lexically_normal() : r).string();
}

// yaml-cpp's messages start with "yaml-cpp: error at line L, column C: ..."; keep the position and reason.
std::string yaml_reason(const YAML::Exception& e) {
    std::string what = e.what();
    const std::string prefix = "yaml-cpp: ";
    if (what.rfind(prefix, 0) == 0) what.erase(0, prefix.size());
    std::replace(what.begin(), what.end(), '\n', ' ');
    return what;
}

std::vector<std::string> read_names(const YAML::Node& node, const std::string& yaml) {
    std::vector<std::string> names;
    if (node.IsSequence()) {
        for (const YAML::Node& n : node) names.push_back(n.as<std::string>());
        return names;
    }
    KS_CHECK(node.IsMap(), "dataset '", yaml, "': 'names' must be a list or a map of class index to name");
    // Ultralytics' check_class_names: integer keys 0..n-1.
    std::map<long, std::string> by_index;
    for (const auto& kv : node) {
        long index = -1;
        try {
            index = kv.first.as<long>();
        } catch (const YAML::Exception&) {
            KS_FAIL("dataset '", yaml, "': class index '", kv.first.as<std::string>(),
                    "' in 'names' is not an integer");
        }
        by_index[index] = kv.second.as<std::string>();
    }
    const long n = static_cast<long>(by_index.size());
    KS_CHECK(by_index.empty() || (by_index.begin()->first >= 0 && by_index.rbegin()->first < n), "dataset '", yaml,
             "': a ", n, "-class dataset requires class indices 0-", n - 1, " in 'names'");
    for (auto& [index, name] : by_index) names.push_back(std::move(name));
    return names;
}

double parse_number(const std::string& token) {
    const char* begin = token.c_str();
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(begin, &end);
    KS_CHECK(end != begin && *end == '\0', "could not convert string to float: '", token, "'");
    return v;
}

// The checks of Ultralytics' verify_image_label on one label file; returns its rows (class first) or throws
// kestrel::Error with the reason the file is unusable.
std::vector<std::vector<float>> read_label_rows(const std::string& path, int num_classes, const std::vector<int>& kpt,
                                                int* duplicates) {
    std::vector<std::vector<float>> rows;
    for (const std::string& line : stripped_lines(read_text(path))) {
        if (line.empty()) continue;
        std::vector<float> row;
        for (const std::string& token : split_whitespace(line)) row.push_back(static_cast<float>(parse_number(token)));
        if (!row.empty()) rows.push_back(std::move(row));
    }
    if (rows.empty()) return rows;
    const bool keypoints = kpt.size() == 2;
    const bool segments =
        !keypoints && std::any_of(rows.begin(), rows.end(), [](const std::vector<float>& r) { return r.size() > 6; });
    if (segments) {
        // segments2boxes: each polygon's min/max corners, as centre and size.
        for (auto& row : rows) {
            KS_CHECK(row.size() >= 3 && (row.size() - 1) % 2 == 0, "polygon label needs x y pairs after the class");
            float x1 = row[1], y1 = row[2], x2 = row[1], y2 = row[2];
            for (size_t i = 1; i + 1 < row.size(); i += 2) {
                x1 = std::min(x1, row[i]), x2 = std::max(x2, row[i]);
                y1 = std::min(y1, row[i + 1]), y2 = std::max(y2, row[i + 1]);
            }
            row = {row[0], (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1};
        }
    }
    const size_t columns = keypoints ? static_cast<size_t>(5 + kpt[0] * kpt[1]) : 5;
    float max_point = 0, min_value = 0, max_class = 0;
    for (const auto& row : rows) {
        KS_CHECK(row.size() == columns, "labels require ", columns, " columns, ", row.size(), " columns detected");
        for (float v : row) {
            KS_CHECK(std::isfinite(v), "non-finite label value");
            min_value = std::min(min_value, v);
        }
        max_class = std::max(max_class, row[0]);
        if (keypoints) {
            // Pose: only the keypoints' x, y must be normalised (as Ultralytics checks them).
            for (int k = 0; k < kpt[0]; ++k)
                for (int d = 0; d < 2; ++d)
                    max_point = std::max(max_point, row[static_cast<size_t>(5 + k * kpt[1] + d)]);
        } else {
            for (size_t i = 1; i < 5; ++i) max_point = std::max(max_point, row[i]);
        }
    }
    KS_CHECK(max_point <= 1, "non-normalized or out of bounds coordinates (", max_point, ")");
    KS_CHECK(min_value >= 0, "negative label values (", min_value, ")");
    KS_CHECK(static_cast<int>(max_class) < num_classes, "Label class ", static_cast<int>(max_class),
             " exceeds dataset class count ", num_classes, ". Possible class labels are 0-", num_classes - 1);
    // np.unique(lb, axis=0): duplicate rows go, and the survivors come sorted; only applied when there are any.
    std::vector<std::vector<float>> unique = rows;
    std::sort(unique.begin(), unique.end());
    unique.erase(std::unique(unique.begin(), unique.end()), unique.end());
    *duplicates = static_cast<int>(rows.size() - unique.size());
    return *duplicates > 0 ? unique : rows;
}

}  // namespace

DatasetConfig load_dataset_config(const std::string& yaml_path) {
    std::error_code ec;
    KS_CHECK(fs::is_regular_file(yaml_path, ec), "dataset '", yaml_path, "' not found");
    YAML::Node root;
    try {
        root = YAML::LoadFile(yaml_path);
    } catch (const YAML::BadFile&) {
        KS_FAIL("cannot read dataset '", yaml_path, "'");
    } catch (const YAML::Exception& e) {
        KS_FAIL("dataset '", yaml_path, "' is not valid YAML: ", yaml_reason(e));
    }
    KS_CHECK(root.IsMap(), "dataset '", yaml_path, "' must be a YAML mapping with 'path', 'val' and 'names' keys");

    DatasetConfig data;
    data.yaml_path = yaml_path;
    try {
        // The root: `path` (relative to the yaml's folder), or the yaml's folder itself.
        const fs::path yaml_dir = fs::absolute(yaml_path).parent_path();
        fs::path root_dir = yaml_dir;
        if (root["path"] && root["path"].IsScalar() && !root["path"].as<std::string>().empty()) {
            const fs::path p = root["path"].as<std::string>();
            root_dir = p.is_absolute() ? p : yaml_dir / p;
        }
        data.root = resolve(root_dir);

        for (const char* key : kSplitKeys) {
            YAML::Node node = root[key];
            // Ultralytics accepts 'validation' for 'val'.
            if (std::string(key) == "val" && (!node || node.IsNull()) && root["validation"]) node = root["validation"];
            if (!node || node.IsNull()) continue;
            std::vector<std::string> paths;
            if (node.IsSequence()) {
                for (const YAML::Node& n : node) paths.push_back(resolve(fs::path(data.root) / n.as<std::string>()));
            } else {
                const std::string s = node.as<std::string>();
                if (s.empty()) continue;
                std::string x = resolve(fs::path(data.root) / s);
                // check_det_dataset: "../x" that does not exist is retried as "x".
                if (!fs::exists(x, ec) && s.rfind("../", 0) == 0) x = resolve(fs::path(data.root) / s.substr(3));
                paths.push_back(x);
                data.split_strings[key] = x;
            }
            data.splits[key] = std::move(paths);
        }

        const YAML::Node names = root["names"];
        const YAML::Node nc = root["nc"];
        const bool has_names = names && !names.IsNull();
        const bool has_nc = nc && !nc.IsNull();
        KS_CHECK(has_names || has_nc, "dataset '", yaml_path, "' needs 'names' (or 'nc')");
        if (has_names) {
            data.names = read_names(names, yaml_path);
            KS_CHECK(!has_nc || nc.as<int>() == static_cast<int>(data.names.size()), "dataset '", yaml_path,
                     "': 'names' has ", data.names.size(), " entries but nc is ", nc.as<int>());
        } else {
            const int n = nc.as<int>();
            KS_CHECK(n > 0, "dataset '", yaml_path, "': nc must be positive");
            for (int i = 0; i < n; ++i) data.names.push_back("class_" + std::to_string(i));
        }
        KS_CHECK(!data.names.empty(), "dataset '", yaml_path, "' has no class names");

        if (const YAML::Node kpt = root["kpt_shape"]; kpt && !kpt.IsNull()) {
            KS_CHECK(kpt.IsSequence() && kpt.size() == 2, "dataset '", yaml_path,
                     "': kpt_shape must be [keypoints, dims]");
            data.kpt_shape = {kpt[0].as<int>(), kpt[1].as<int>()};
            KS_CHECK(data.kpt_shape[0] > 0 && (data.kpt_shape[1] == 2 || data.kpt_shape[1] == 3), "dataset '",
                     yaml_path, "': kpt_shape must be [keypoints, 2 or 3]");
        }
    } catch (const YAML::Exception& e) {
        KS_FAIL("dataset '", yaml_path, "' is malformed: ", yaml_reason(e));
    }
    return data;
}

std::vector<std::string> split_image_files(const DatasetConfig& data, const std::string& split) {
    const auto it = data.splits.find(split);
    KS_CHECK(it != data.splits.end(), "dataset '", data.yaml_path, "' has no '", split, ":' key (split=", split, ")");
    std::vector<std::string> files;
    std::error_code ec;
    for (const std::string& p : it->second) {
        if (fs::is_directory(p, ec)) {
            // glob("**/*.*", recursive=True): hidden files and folders are not matched.
            auto dir = fs::recursive_directory_iterator(p, fs::directory_options::follow_directory_symlink, ec);
            KS_CHECK(!ec, "cannot list '", p, "': ", ec.message());
            for (auto e = fs::begin(dir); e != fs::end(dir); e.increment(ec)) {
                KS_CHECK(!ec, "cannot list '", p, "': ", ec.message());
                const std::string name = e->path().filename().string();
                if (!name.empty() && name[0] == '.') {
                    if (e->is_directory(ec)) e.disable_recursion_pending();
                    continue;
                }
                if (e->is_regular_file(ec) && name.find('.') != std::string::npos) files.push_back(e->path().string());
            }
        } else if (fs::is_regular_file(p, ec)) {
            if (has_image_extension(p)) {
                files.push_back(p);
                continue;
            }
            // A list of images; "./x" is relative to the list's folder, other relative paths to the working folder.
            const std::string parent = fs::path(p).parent_path().string() + "/";
            for (std::string line : stripped_lines(read_text(p))) {
                if (line.rfind("./", 0) == 0) line = parent + line.substr(2);
                files.push_back(line);
            }
        } else {
            KS_FAIL("'", p, "' does not exist (", split, " split of dataset '", data.yaml_path, "')");
        }
    }
    std::erase_if(files, [](const std::string& f) { return !has_image_extension(f); });
    std::sort(files.begin(), files.end());
    KS_CHECK(!files.empty(), "no images found in '", it->second.front(), "' (", split, " split of dataset '",
             data.yaml_path, "')");
    return files;
}

std::string label_path(const std::string& image_path) {
    std::string p = image_path;
    const std::string images = "/images/";
    if (const size_t at = p.rfind(images); at != std::string::npos) p.replace(at, images.size(), "/labels/");
    if (const size_t dot = p.rfind('.'); dot != std::string::npos) p.erase(dot);
    return p + ".txt";
}

LabelScan scan_labels(const std::vector<std::string>& images, const DatasetConfig& data) {
    LabelScan scan;
    const int nc = static_cast<int>(data.names.size());
    for (const std::string& image : images) {
        const std::string lb = label_path(image);
        std::error_code ec;
        ImageLabels entry{image, {}};
        if (!fs::is_regular_file(lb, ec)) {
            ++scan.backgrounds;
            scan.images.push_back(std::move(entry));
            continue;
        }
        int duplicates = 0;
        std::vector<std::vector<float>> rows;
        try {
            rows = read_label_rows(lb, nc, data.kpt_shape, &duplicates);
        } catch (const Error& e) {
            ++scan.corrupt;
            scan.warnings.push_back("WARNING ⚠️ " + image + ": ignoring corrupt image/label: " + e.what());
            continue;
        }
        ++scan.found;
        if (rows.empty()) ++scan.backgrounds;
        if (duplicates > 0)
            scan.warnings.push_back("WARNING ⚠️ " + image + ": " + std::to_string(duplicates) +
                                    " duplicate labels removed");
        for (const auto& r : rows) entry.labels.push_back({static_cast<int>(r[0]), r[1], r[2], r[3], r[4]});
        scan.images.push_back(std::move(entry));
    }
    return scan;
}

ValLoadGeometry val_load_geometry(int width, int height, int out_h, int out_w) {
    KS_CHECK(width > 0 && height > 0 && out_h > 0 && out_w > 0, "invalid image or input size");
    const int imgsz = std::max(out_h, out_w);
    ValLoadGeometry g;
    g.width = width;
    g.height = height;
    // Python floats: r = imgsz / max(h0, w0); (min(ceil(w0 * r), imgsz), min(ceil(h0 * r), imgsz)).
    const double r = static_cast<double>(imgsz) / std::max(width, height);
    if (r != 1) {
        g.resize = true;
        g.shrink = r < 1;
        g.width = std::min(static_cast<int>(std::ceil(width * r)), imgsz);
        g.height = std::min(static_cast<int>(std::ceil(height * r)), imgsz);
    }
    g.gain = static_cast<double>(g.height) / height;
    const double letterbox =
        std::min({1.0, static_cast<double>(out_h) / g.height, static_cast<double>(out_w) / g.width});
    g.scale = g.gain * letterbox;
    return g;
}

PixelBox label_box_pixels(const LabelBox& l, const ValLoadGeometry& g, int width, int height) {
    const auto w1 = static_cast<float>(g.width);
    const auto h1 = static_cast<float>(g.height);
    const auto gain = static_cast<float>(g.gain);
    const auto clip = [](float v, int hi) { return std::clamp(v, 0.0f, static_cast<float>(hi)); };
    // Instances.convert_bbox("xyxy") then denormalize(w, h); the validator's scale_boxes divides by the gain.
    const float dw = l.w / 2, dh = l.h / 2;
    return {clip((l.cx - dw) * w1 / gain, width), clip((l.cy - dh) * h1 / gain, height),
            clip((l.cx + dw) * w1 / gain, width), clip((l.cy + dh) * h1 / gain, height)};
}

const std::vector<int>& coco80_to_coco91_class() {
    static const std::vector<int> map = {
        1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31,
        32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
        60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90};
    return map;
}

bool is_coco_split(const DatasetConfig& data, const std::string& split) {
    const auto it = data.split_strings.find(split);
    if (it == data.split_strings.end()) return false;
    const std::string& s = it->second;
    const std::string tail = "/val2017.txt";
    return s.find("coco") != std::string::npos && s.size() >= tail.size() &&
           s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace kestrel::yolo
