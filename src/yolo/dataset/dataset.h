// YOLO datasets for `val`, read the way Ultralytics reads them (ultralytics/data/utils.py check_det_dataset,
// img2label_paths, verify_image_label; ultralytics/data/base.py get_img_files, load_image):
//
//   DatasetConfig data = load_dataset_config("coco128.yaml");   // throws kestrel::Error, one line
//   std::vector<std::string> files = split_image_files(data, "val");
//   LabelScan scan = scan_labels(files, data);                   // corrupt label files are dropped, with a warning
//   for (const ImageLabels& im : scan.images) { ... im.image, im.labels ... }
//
// A dataset yaml:
//   path: ../datasets/coco128   # dataset root; relative to the yaml's folder (absent: the yaml's folder)
//   val: images/train2017       # relative to path: a folder (searched recursively), a .txt list of images, or a list
//   names: {0: person, 1: bicycle}   # or a list; nc optional (must then match)
#pragma once

#include <map>
#include <string>
#include <vector>

namespace kestrel::yolo {

struct DatasetConfig {
    std::string yaml_path;
    std::string root;  // `path`, resolved
    // train / val / test / minival, each as one or more resolved paths (a folder, a .txt list or an image).
    std::map<std::string, std::vector<std::string>> splits;
    // The split's value as written, resolved, when it is a single string (Ultralytics' is_coco test needs it).
    std::map<std::string, std::string> split_strings;
    std::vector<std::string> names;  // class names by id
    std::vector<int> kpt_shape;      // pose datasets: {keypoints, dims}
};

// Reads and checks a dataset yaml. Throws kestrel::Error for a missing or malformed file, names that are neither
// a list nor a {index: name} map of consecutive indices, or names that disagree with nc.
DatasetConfig load_dataset_config(const std::string& yaml_path);

// The image files of a split, sorted, as Ultralytics' get_img_files lists them: folders recursively (hidden
// entries skipped), .txt files as one path per line ("./x" relative to the list's folder), then only the image
// extensions. Throws kestrel::Error when the split key is missing, a path does not exist, or no image is found.
std::vector<std::string> split_image_files(const DatasetConfig& data, const std::string& split);

// Ultralytics' img2label_paths: the last "/images/" becomes "/labels/" and the extension ".txt".
std::string label_path(const std::string& image_path);

// One label in YOLO format: class and box centre/size normalised to the image (0..1).
struct LabelBox {
    int cls = 0;
    float cx = 0, cy = 0, w = 0, h = 0;
};

struct ImageLabels {
    std::string image;
    std::vector<LabelBox> labels;  // empty for a background image (no or empty label file)
};

struct LabelScan {
    std::vector<ImageLabels> images;  // the usable images, in file order
    int found = 0;                    // label files read (Ultralytics' "images" count)
    int backgrounds = 0;              // images without a label file or with an empty one
    int corrupt = 0;                  // images dropped for a bad label file
    std::vector<std::string> warnings;
};

// Reads the label file of every image (verify_image_label): rows of "cls cx cy w h"; polygon rows (more than six
// values, not a pose dataset) become their bounding boxes; pose rows need 5 + keypoints x dims values, of which the
// box is kept. A label file with unreadable numbers, the wrong column count, negative values, coordinates above 1 or
// a class outside the dataset's names drops its image with a warning; duplicate rows are removed with a warning.
LabelScan scan_labels(const std::vector<std::string>& images, const DatasetConfig& data);

// Ultralytics' val loader geometry for an image of width x height and a network input of out_h x out_w.
// load_image resizes the long side to imgsz (here max(out_h, out_w)): new size min(ceil(side * r), imgsz) with
// r = imgsz / long side, INTER_AREA when shrinking and INTER_LINEAR when enlarging; LetterBox(auto=False,
// scaleup=False) then pads it into the input (and shrinks it only for a non-square input).
struct ValLoadGeometry {
    int width = 0, height = 0;  // after load_image
    bool resize = false;        // load_image resizes (r != 1)
    bool shrink = false;        // with INTER_AREA (r < 1); else INTER_LINEAR
    double gain = 1;            // Ultralytics' ratio_pad[0][0]: loaded height / original height
    double scale = 1;           // original to network pixels: gain times the letterbox ratio (1 for a square input)
};
ValLoadGeometry val_load_geometry(int width, int height, int out_h, int out_w);

// A label's box in original-image pixels as Ultralytics' validator rebuilds it (denormalised by the loaded image
// size, divided by the gain, clipped to the image), in float32 like its tensors: {x1, y1, x2, y2}.
struct PixelBox {
    float x1 = 0, y1 = 0, x2 = 0, y2 = 0;
};
PixelBox label_box_pixels(const LabelBox& label, const ValLoadGeometry& geometry, int width, int height);

// Ultralytics' coco80_to_coco91_class: COCO's 80 detection classes to its 91 category ids.
const std::vector<int>& coco80_to_coco91_class();

// Ultralytics' is_coco test: the split is one path containing "coco" and ending in "/val2017.txt".
bool is_coco_split(const DatasetConfig& data, const std::string& split);

}  // namespace kestrel::yolo
