#include "yolo/draw/annotate.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <utility>

#include "core/error.h"

namespace kestrel::yolo {
namespace {

// ultralytics.utils.plotting.Colors: FF3838 FF9D97 FF701F ... as RGB.
constexpr std::array<Rgb, 20> kPalette = {
    {{0xFF, 0x38, 0x38}, {0xFF, 0x9D, 0x97}, {0xFF, 0x70, 0x1F}, {0xFF, 0xB2, 0x1D}, {0xCF, 0xD2, 0x31},
     {0x48, 0xF9, 0x0A}, {0x92, 0xCC, 0x17}, {0x3D, 0xDB, 0x86}, {0x1A, 0x93, 0x34}, {0x00, 0xD4, 0xBB},
     {0x2C, 0x99, 0xA8}, {0x00, 0xC2, 0xFF}, {0x34, 0x45, 0x93}, {0x64, 0x73, 0xFF}, {0x00, 0x18, 0xEC},
     {0x84, 0x38, 0xFF}, {0x52, 0x00, 0x85}, {0xCB, 0x38, 0xFF}, {0xFF, 0x95, 0xC8}, {0xFF, 0x37, 0xC7}}};

// Colors.pose_palette, and the indices into it that Annotator uses for COCO keypoints and limbs.
constexpr std::array<Rgb, 20> kPosePalette = {{{255, 128, 0},   {255, 153, 51},  {255, 178, 102}, {230, 230, 0},
                                               {255, 153, 255}, {153, 204, 255}, {255, 102, 255}, {255, 51, 255},
                                               {102, 178, 255}, {51, 153, 255},  {255, 153, 153}, {255, 102, 102},
                                               {255, 51, 51},   {153, 255, 153}, {102, 255, 102}, {51, 255, 51},
                                               {0, 255, 0},     {0, 0, 255},     {255, 0, 0},     {255, 255, 255}}};
constexpr int kCocoKeypoints = 17;
constexpr std::array<int, kCocoKeypoints> kKeypointColor = {16, 16, 16, 16, 16, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9, 9, 9};
constexpr std::array<int, 19> kLimbColor = {9, 9, 9, 9, 7, 7, 7, 0, 0, 0, 0, 0, 16, 16, 16, 16, 16, 16, 16};
// Annotator.skeleton, 1-based keypoint numbers as Ultralytics writes them.
// clang-format off
constexpr std::array<std::pair<int, int>, 19> kSkeleton = {{
    {16, 14}, {14, 12}, {17, 15}, {15, 13}, {12, 13}, {6, 12}, {7, 13}, {6, 7}, {6, 8}, {7, 9},
    {8, 10}, {9, 11}, {2, 3}, {1, 2}, {1, 3}, {2, 4}, {3, 5}, {4, 6}, {5, 7}}};
// clang-format on

constexpr Rgb kTextColor = {255, 255, 255};
constexpr Rgb kTextColorOnLight = {0, 0, 0};
// Above this luma (BT.601) white text would be unreadable; every palette colour is below it (max 191).
constexpr int kLightLuma = 200;

// 5x7 glyphs for ASCII 32..126, one byte per column, bit r set = row r lit (bit 0 at the top). Each
// glyph cell is 6 columns wide (one blank) and is scaled by an integer factor.
constexpr int kGlyphColumns = 5;
constexpr int kGlyphRows = 7;
constexpr int kGlyphAdvance = 6;
constexpr char kFirstGlyph = ' ';
constexpr char kLastGlyph = '~';
constexpr std::array<std::array<uint8_t, kGlyphColumns>, kLastGlyph - kFirstGlyph + 1> kFont = {{
    {0x00, 0x00, 0x00, 0x00, 0x00},  // ' '
    {0x00, 0x00, 0x5F, 0x00, 0x00},  // '!'
    {0x00, 0x07, 0x00, 0x07, 0x00},  // '"'
    {0x14, 0x7F, 0x14, 0x7F, 0x14},  // '#'
    {0x24, 0x2A, 0x7F, 0x2A, 0x12},  // '$'
    {0x23, 0x13, 0x08, 0x64, 0x62},  // '%'
    {0x36, 0x49, 0x55, 0x22, 0x50},  // '&'
    {0x00, 0x05, 0x03, 0x00, 0x00},  // '''
    {0x00, 0x1C, 0x22, 0x41, 0x00},  // '('
    {0x00, 0x41, 0x22, 0x1C, 0x00},  // ')'
    {0x14, 0x08, 0x3E, 0x08, 0x14},  // '*'
    {0x08, 0x08, 0x3E, 0x08, 0x08},  // '+'
    {0x00, 0x50, 0x30, 0x00, 0x00},  // ','
    {0x08, 0x08, 0x08, 0x08, 0x08},  // '-'
    {0x00, 0x60, 0x60, 0x00, 0x00},  // '.'
    {0x20, 0x10, 0x08, 0x04, 0x02},  // '/'
    {0x3E, 0x51, 0x49, 0x45, 0x3E},  // '0'
    {0x00, 0x42, 0x7F, 0x40, 0x00},  // '1'
    {0x42, 0x61, 0x51, 0x49, 0x46},  // '2'
    {0x21, 0x41, 0x45, 0x4B, 0x31},  // '3'
    {0x18, 0x14, 0x12, 0x7F, 0x10},  // '4'
    {0x27, 0x45, 0x45, 0x45, 0x39},  // '5'
    {0x3C, 0x4A, 0x49, 0x49, 0x30},  // '6'
    {0x01, 0x71, 0x09, 0x05, 0x03},  // '7'
    {0x36, 0x49, 0x49, 0x49, 0x36},  // '8'
    {0x06, 0x49, 0x49, 0x29, 0x1E},  // '9'
    {0x00, 0x36, 0x36, 0x00, 0x00},  // ':'
    {0x00, 0x56, 0x36, 0x00, 0x00},  // ';'
    {0x08, 0x14, 0x22, 0x41, 0x00},  // '<'
    {0x14, 0x14, 0x14, 0x14, 0x14},  // '='
    {0x00, 0x41, 0x22, 0x14, 0x08},  // '>'
    {0x02, 0x01, 0x51, 0x09, 0x06},  // '?'
    {0x32, 0x49, 0x79, 0x41, 0x3E},  // '@'
    {0x7E, 0x11, 0x11, 0x11, 0x7E},  // 'A'
    {0x7F, 0x49, 0x49, 0x49, 0x36},  // 'B'
    {0x3E, 0x41, 0x41, 0x41, 0x22},  // 'C'
    {0x7F, 0x41, 0x41, 0x22, 0x1C},  // 'D'
    {0x7F, 0x49, 0x49, 0x49, 0x41},  // 'E'
    {0x7F, 0x09, 0x09, 0x09, 0x01},  // 'F'
    {0x3E, 0x41, 0x49, 0x49, 0x7A},  // 'G'
    {0x7F, 0x08, 0x08, 0x08, 0x7F},  // 'H'
    {0x00, 0x41, 0x7F, 0x41, 0x00},  // 'I'
    {0x20, 0x40, 0x41, 0x3F, 0x01},  // 'J'
    {0x7F, 0x08, 0x14, 0x22, 0x41},  // 'K'
    {0x7F, 0x40, 0x40, 0x40, 0x40},  // 'L'
    {0x7F, 0x02, 0x0C, 0x02, 0x7F},  // 'M'
    {0x7F, 0x04, 0x08, 0x10, 0x7F},  // 'N'
    {0x3E, 0x41, 0x41, 0x41, 0x3E},  // 'O'
    {0x7F, 0x09, 0x09, 0x09, 0x06},  // 'P'
    {0x3E, 0x41, 0x51, 0x21, 0x5E},  // 'Q'
    {0x7F, 0x09, 0x19, 0x29, 0x46},  // 'R'
    {0x46, 0x49, 0x49, 0x49, 0x31},  // 'S'
    {0x01, 0x01, 0x7F, 0x01, 0x01},  // 'T'
    {0x3F, 0x40, 0x40, 0x40, 0x3F},  // 'U'
    {0x1F, 0x20, 0x40, 0x20, 0x1F},  // 'V'
    {0x3F, 0x40, 0x38, 0x40, 0x3F},  // 'W'
    {0x63, 0x14, 0x08, 0x14, 0x63},  // 'X'
    {0x07, 0x08, 0x70, 0x08, 0x07},  // 'Y'
    {0x61, 0x51, 0x49, 0x45, 0x43},  // 'Z'
    {0x00, 0x7F, 0x41, 0x41, 0x00},  // '['
    {0x02, 0x04, 0x08, 0x10, 0x20},  // '\'
    {0x00, 0x41, 0x41, 0x7F, 0x00},  // ']'
    {0x04, 0x02, 0x01, 0x02, 0x04},  // '^'
    {0x40, 0x40, 0x40, 0x40, 0x40},  // '_'
    {0x00, 0x01, 0x02, 0x04, 0x00},  // '`'
    {0x20, 0x54, 0x54, 0x54, 0x78},  // 'a'
    {0x7F, 0x48, 0x44, 0x44, 0x38},  // 'b'
    {0x38, 0x44, 0x44, 0x44, 0x20},  // 'c'
    {0x38, 0x44, 0x44, 0x48, 0x7F},  // 'd'
    {0x38, 0x54, 0x54, 0x54, 0x18},  // 'e'
    {0x08, 0x7E, 0x09, 0x01, 0x02},  // 'f'
    {0x0C, 0x52, 0x52, 0x52, 0x3E},  // 'g'
    {0x7F, 0x08, 0x04, 0x04, 0x78},  // 'h'
    {0x00, 0x44, 0x7D, 0x40, 0x00},  // 'i'
    {0x20, 0x40, 0x44, 0x3D, 0x00},  // 'j'
    {0x7F, 0x10, 0x28, 0x44, 0x00},  // 'k'
    {0x00, 0x41, 0x7F, 0x40, 0x00},  // 'l'
    {0x7C, 0x04, 0x18, 0x04, 0x78},  // 'm'
    {0x7C, 0x08, 0x04, 0x04, 0x78},  // 'n'
    {0x38, 0x44, 0x44, 0x44, 0x38},  // 'o'
    {0x7C, 0x14, 0x14, 0x14, 0x08},  // 'p'
    {0x08, 0x14, 0x14, 0x18, 0x7C},  // 'q'
    {0x7C, 0x08, 0x04, 0x04, 0x08},  // 'r'
    {0x48, 0x54, 0x54, 0x54, 0x20},  // 's'
    {0x04, 0x3F, 0x44, 0x40, 0x20},  // 't'
    {0x3C, 0x40, 0x40, 0x20, 0x7C},  // 'u'
    {0x1C, 0x20, 0x40, 0x20, 0x1C},  // 'v'
    {0x3C, 0x40, 0x30, 0x40, 0x3C},  // 'w'
    {0x44, 0x28, 0x10, 0x28, 0x44},  // 'x'
    {0x0C, 0x50, 0x50, 0x50, 0x3C},  // 'y'
    {0x44, 0x64, 0x54, 0x4C, 0x44},  // 'z'
    {0x00, 0x08, 0x36, 0x41, 0x00},  // '{'
    {0x00, 0x00, 0x7F, 0x00, 0x00},  // '|'
    {0x00, 0x41, 0x36, 0x08, 0x00},  // '}'
    {0x08, 0x04, 0x08, 0x10, 0x08},  // '~'
}};

// Coordinates come from model outputs and may be NaN or huge. Converting such a float to int is
// undefined behaviour, so they are clamped to a range far outside any image first; Python's int()
// (as Ultralytics uses) truncates toward zero, and so does the cast.
constexpr float kCoordinateLimit = 1 << 24;
// Line widths and label scales beyond this only cover the image; the cap keeps arithmetic small.
constexpr int kMaxLineWidth = 1 << 12;

bool to_pixel(float value, int64_t* pixel) {
    if (!std::isfinite(value)) return false;
    *pixel = static_cast<int64_t>(std::clamp(value, -kCoordinateLimit, kCoordinateLimit));
    return true;
}

void check_image(const Image& image) {
    KS_CHECK(image.width >= 0 && image.height >= 0 &&
                 image.data.size() == static_cast<size_t>(image.width) * image.height * 3,
             "draw: image size does not match its pixel data");
}

// Fills [x0, x1) x [y0, y1), clipped to the image.
void fill_rect(Image& image, int64_t x0, int64_t y0, int64_t x1, int64_t y1, Rgb color) {
    x0 = std::max<int64_t>(x0, 0);
    y0 = std::max<int64_t>(y0, 0);
    x1 = std::min<int64_t>(x1, image.width);
    y1 = std::min<int64_t>(y1, image.height);
    for (int64_t y = y0; y < y1; ++y) {
        for (int64_t x = x0; x < x1; ++x) {
            uint8_t* p = image.pixel(static_cast<int>(x), static_cast<int>(y));
            p[0] = color.r;
            p[1] = color.g;
            p[2] = color.b;
        }
    }
}

void fill_circle(Image& image, int64_t cx, int64_t cy, int radius, Rgb color) {
    for (int64_t dy = -radius; dy <= radius; ++dy) {
        const auto half_width = static_cast<int64_t>(std::sqrt(static_cast<double>(radius * radius - dy * dy)));
        fill_rect(image, cx - half_width, cy + dy, cx + half_width + 1, cy + dy + 1, color);
    }
}

// Liang-Barsky: clips the segment to [lo, hi] on both axes; false when nothing is left.
bool clip_segment(double& x0, double& y0, double& x1, double& y1, double lo_x, double lo_y, double hi_x, double hi_y) {
    const double dx = x1 - x0, dy = y1 - y0;
    double t0 = 0.0, t1 = 1.0;
    const std::array<std::pair<double, double>, 4> edges = {
        {{-dx, x0 - lo_x}, {dx, hi_x - x0}, {-dy, y0 - lo_y}, {dy, hi_y - y0}}};
    for (const auto& [p, q] : edges) {
        if (p == 0.0) {
            if (q < 0.0) return false;
            continue;
        }
        const double t = q / p;
        if (p < 0.0) {
            t0 = std::max(t0, t);
        } else {
            t1 = std::min(t1, t);
        }
        if (t0 > t1) return false;
    }
    x1 = x0 + t1 * dx;
    y1 = y0 + t1 * dy;
    x0 = x0 + t0 * dx;
    y0 = y0 + t0 * dy;
    return true;
}

// A line `thickness` pixels wide: discs stamped along the Bresenham path of the segment, clipped first
// so that far-away endpoints cost nothing.
void draw_line(Image& image, int64_t ax, int64_t ay, int64_t bx, int64_t by, int thickness, Rgb color) {
    const int radius = thickness / 2;
    double x0 = static_cast<double>(ax), y0 = static_cast<double>(ay);
    double x1 = static_cast<double>(bx), y1 = static_cast<double>(by);
    const double margin = radius + 1.0;
    if (!clip_segment(x0, y0, x1, y1, -margin, -margin, image.width - 1 + margin, image.height - 1 + margin)) return;
    auto x = static_cast<int64_t>(std::lround(x0)), y = static_cast<int64_t>(std::lround(y0));
    const auto end_x = static_cast<int64_t>(std::lround(x1)), end_y = static_cast<int64_t>(std::lround(y1));
    const int64_t dx = std::abs(end_x - x), dy = -std::abs(end_y - y);
    const int64_t step_x = x < end_x ? 1 : -1, step_y = y < end_y ? 1 : -1;
    int64_t error = dx + dy;
    while (true) {
        fill_circle(image, x, y, radius, color);
        if (x == end_x && y == end_y) break;
        const int64_t doubled = 2 * error;
        if (doubled >= dy) {
            error += dy;
            x += step_x;
        }
        if (doubled <= dx) {
            error += dx;
            y += step_y;
        }
    }
}

void draw_text(Image& image, int64_t x, int64_t y, const std::string& text, int scale, Rgb color) {
    for (size_t i = 0; i < text.size(); ++i) {
        const int64_t glyph_x = x + static_cast<int64_t>(i) * kGlyphAdvance * scale;
        if (glyph_x >= image.width) break;
        const char c = text[i];
        const auto& glyph = kFont[static_cast<size_t>((c >= kFirstGlyph && c <= kLastGlyph ? c : '?') - kFirstGlyph)];
        for (int column = 0; column < kGlyphColumns; ++column) {
            for (int row = 0; row < kGlyphRows; ++row) {
                if ((glyph[static_cast<size_t>(column)] >> row & 1) == 0) continue;
                const int64_t px = glyph_x + column * scale, py = y + row * scale;
                fill_rect(image, px, py, px + scale, py + scale, color);
            }
        }
    }
}

// Ultralytics hides keypoints below its confidence threshold and those with a zero coordinate, which
// is how missing keypoints are written.
Rgb text_color_on(Rgb background) {
    const int luma = (299 * background.r + 587 * background.g + 114 * background.b) / 1000;
    return luma > kLightLuma ? kTextColorOnLight : kTextColor;
}

bool is_shown(const Keypoint& k) { return k.visibility >= 0.5f && k.x != 0.0f && k.y != 0.0f; }

}  // namespace

Rgb palette_color(int index) { return kPalette[static_cast<size_t>((index % 20 + 20) % 20)]; }

int default_line_width(const Image& image) {
    // sum(im.shape) of an HxWx3 array, halved, times 0.003, rounded half to even as Python's round().
    const double size = static_cast<double>(image.height) + image.width + 3;
    return std::max(static_cast<int>(std::nearbyint(size / 2 * 0.003)), 2);
}

void draw_box(Image& image, float x1, float y1, float x2, float y2, Rgb color, int line_width) {
    check_image(image);
    int64_t left = 0, top = 0, right = 0, bottom = 0;
    if (!to_pixel(x1, &left) || !to_pixel(y1, &top) || !to_pixel(x2, &right) || !to_pixel(y2, &bottom)) return;
    if (left > right) std::swap(left, right);
    if (top > bottom) std::swap(top, bottom);
    // Like cv2.rectangle, each side is a band `width` pixels thick centred on the box edge.
    const int64_t width = std::clamp(line_width, 1, kMaxLineWidth);
    const int64_t before = width / 2;
    fill_rect(image, left - before, top - before, right - before + width, top - before + width, color);
    fill_rect(image, left - before, bottom - before, right - before + width, bottom - before + width, color);
    fill_rect(image, left - before, top - before, left - before + width, bottom - before + width, color);
    fill_rect(image, right - before, top - before, right - before + width, bottom - before + width, color);
}

void draw_label(Image& image, float x1, float y1, const std::string& text, Rgb color, int line_width) {
    check_image(image);
    int64_t x = 0, y = 0;
    if (text.empty() || !to_pixel(x1, &x) || !to_pixel(y1, &y)) return;
    // Glyphs scaled by the line width come out the size of cv2.putText's at Ultralytics' font scale
    // (line_width / 3): 7 * 3 = 21 pixels tall at the default width 3.
    const int scale = std::clamp(line_width, 1, kMaxLineWidth);
    const int64_t margin = std::max(1, scale / 2);
    const int64_t text_width = (kGlyphAdvance * static_cast<int64_t>(text.size()) - 1) * scale;
    const int64_t label_width = text_width + 2 * margin;
    const int64_t label_height = kGlyphRows * scale + 2 * margin;
    // As Annotator.box_label: above the box if it fits, else inside it; moved left to stay in the image.
    const int64_t label_top = y >= label_height ? y - label_height : y;
    const int64_t label_left = std::max<int64_t>(std::min<int64_t>(x, image.width - label_width), 0);
    fill_rect(image, label_left, label_top, label_left + label_width, label_top + label_height, color);
    draw_text(image, label_left + margin, label_top + margin, text, scale, text_color_on(color));
}

void draw_keypoints(Image& image, const std::vector<Keypoint>& keypoints, int line_width) {
    check_image(image);
    const int width = std::clamp(line_width, 1, kMaxLineWidth);
    // Ultralytics' radius 5 and limb thickness 2 at its default line width 3, scaled with it.
    const int radius = (5 * width + 1) / 3;
    const int limb_thickness = (width + 1) / 2;
    const bool coco_pose = keypoints.size() == kCocoKeypoints;

    for (size_t i = 0; i < keypoints.size(); ++i) {
        const Keypoint& k = keypoints[i];
        int64_t x = 0, y = 0;
        if (!is_shown(k) || !to_pixel(k.x, &x) || !to_pixel(k.y, &y)) continue;
        const Rgb color =
            coco_pose ? kPosePalette[static_cast<size_t>(kKeypointColor[i])] : palette_color(static_cast<int>(i));
        fill_circle(image, x, y, radius, color);
    }
    if (!coco_pose) return;
    for (size_t i = 0; i < kSkeleton.size(); ++i) {
        const Keypoint& a = keypoints[static_cast<size_t>(kSkeleton[i].first - 1)];
        const Keypoint& b = keypoints[static_cast<size_t>(kSkeleton[i].second - 1)];
        int64_t ax = 0, ay = 0, bx = 0, by = 0;
        if (!is_shown(a) || !is_shown(b) || !to_pixel(a.x, &ax) || !to_pixel(a.y, &ay) || !to_pixel(b.x, &bx) ||
            !to_pixel(b.y, &by)) {
            continue;
        }
        draw_line(image, ax, ay, bx, by, limb_thickness, kPosePalette[static_cast<size_t>(kLimbColor[i])]);
    }
}

}  // namespace kestrel::yolo
