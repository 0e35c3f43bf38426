// Ultralytics-style annotation: coloured boxes with a filled label ("person 0.91"), keypoints and
// the COCO pose skeleton, drawn into an RGB image with Ultralytics' 20-colour palette.
#pragma once

#include <string>
#include <vector>

#include "yolo/image/image.h"

namespace kestrel::yolo {

struct Rgb {
    uint8_t r, g, b;
};

// Ultralytics' Colors() palette: colour i % 20.
Rgb palette_color(int index);

// Line width as Ultralytics' Annotator on an HxWx3 array: max(round((h + w + 3) / 2 * 0.003), 2).
int default_line_width(const Image& image);

void draw_box(Image& image, float x1, float y1, float x2, float y2, Rgb color, int line_width);
// Filled label box above the top-left corner (inside the box when there is no room above), white text
// (black on a near-white box, which white text would leave blank). Text is an embedded 5x7 bitmap font
// scaled by the line width; bytes outside printable ASCII show as '?'.
void draw_label(Image& image, float x1, float y1, const std::string& text, Rgb color, int line_width);

struct Keypoint {
    float x, y, visibility;
};
// Draws keypoints (radius from line width; visibility < 0.5 hidden) and, for 17-point COCO poses,
// the skeleton with Ultralytics' limb colours.
void draw_keypoints(Image& image, const std::vector<Keypoint>& keypoints, int line_width);

}  // namespace kestrel::yolo
