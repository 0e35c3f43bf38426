// Annotation: Ultralytics' colours and sizes, and that nothing is ever drawn outside the image.
#include "yolo/draw/annotate.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

namespace kestrel::yolo {
namespace {

Image blank(int width, int height) {
    Image image;
    image.width = width;
    image.height = height;
    image.data.assign(static_cast<size_t>(width) * height * 3, 0);
    return image;
}

bool is(const Image& image, int x, int y, Rgb c) {
    const uint8_t* p = image.pixel(x, y);
    return p[0] == c.r && p[1] == c.g && p[2] == c.b;
}

int count_color(const Image& image, Rgb c) {
    int n = 0;
    for (int y = 0; y < image.height; ++y) {
        for (int x = 0; x < image.width; ++x) n += is(image, x, y, c);
    }
    return n;
}

constexpr Rgb kBlack = {0, 0, 0};
constexpr Rgb kWhite = {255, 255, 255};
constexpr Rgb kRed = {255, 56, 56};

TEST(Palette, IsUltralyticsColors) {
    EXPECT_TRUE((palette_color(0).r == 0xFF && palette_color(0).g == 0x38 && palette_color(0).b == 0x38));
    EXPECT_TRUE((palette_color(11).r == 0x00 && palette_color(11).g == 0xC2 && palette_color(11).b == 0xFF));
    EXPECT_TRUE((palette_color(19).r == 0xFF && palette_color(19).g == 0x37 && palette_color(19).b == 0xC7));
    EXPECT_EQ(palette_color(20).g, palette_color(0).g);
    EXPECT_EQ(palette_color(-1).b, palette_color(19).b);
}

TEST(DefaultLineWidth, IsAnnotatorFormula) {
    // max(round(sum((h, w, 3)) / 2 * 0.003), 2)
    EXPECT_EQ(default_line_width(blank(810, 1080)), 3);
    EXPECT_EQ(default_line_width(blank(640, 640)), 2);
    EXPECT_EQ(default_line_width(blank(4000, 3000)), 11);
    EXPECT_EQ(default_line_width(blank(10, 10)), 2);
}

TEST(DrawBox, DrawsABandCentredOnEachEdge) {
    Image image = blank(100, 100);
    draw_box(image, 20.7f, 30.2f, 60.0f, 70.0f, kRed, 3);  // int() truncates to (20, 30)
    for (int x : {19, 20, 21}) EXPECT_TRUE(is(image, x, 50, kRed)) << x;
    EXPECT_TRUE(is(image, 18, 50, kBlack));
    EXPECT_TRUE(is(image, 22, 50, kBlack));
    EXPECT_TRUE(is(image, 40, 29, kRed));
    EXPECT_TRUE(is(image, 40, 71, kRed));
    EXPECT_TRUE(is(image, 61, 50, kRed));
    EXPECT_TRUE(is(image, 40, 50, kBlack));
    EXPECT_TRUE(is(image, 19, 29, kRed));                    // corners are closed
    EXPECT_EQ(count_color(image, kRed), 43 * 43 - 37 * 37);  // outer 19..61, inner 22..58
}

TEST(DrawBox, ClipsAndIgnoresNonFiniteCoordinates) {
    Image image = blank(50, 40);
    draw_box(image, -1e30f, 5.0f, 1e30f, 1e9f, kRed, 4);  // only the top edge, rows 3..6, is visible
    EXPECT_TRUE(is(image, 0, 3, kRed));
    EXPECT_TRUE(is(image, 49, 6, kRed));
    EXPECT_EQ(count_color(image, kRed), 50 * 4);
    Image untouched = blank(50, 40);
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const float inf = std::numeric_limits<float>::infinity();
    draw_box(untouched, nan, 1, 10, 10, kRed, 3);
    draw_box(untouched, 1, 1, inf, 10, kRed, 3);
    draw_box(untouched, 500, 500, 900, 900, kRed, 3);
    EXPECT_EQ(count_color(untouched, kRed), 0);
    draw_box(untouched, -90, -90, -10, -10, kRed, 1000000);  // a huge width just covers the image
    EXPECT_EQ(count_color(untouched, kRed), 50 * 40);
}

TEST(DrawLabel, SitsAboveTheBoxWithWhiteText) {
    Image image = blank(200, 100);
    draw_label(image, 10, 60, "person 0.91", kRed, 2);
    int white_above = 0, red_above = 0;
    for (int y = 0; y < 60; ++y) {
        for (int x = 0; x < 200; ++x) {
            white_above += is(image, x, y, kWhite);
            red_above += is(image, x, y, kRed);
        }
    }
    EXPECT_GT(white_above, 50);
    EXPECT_GT(red_above, 200);
    EXPECT_EQ(count_color(image, kRed) + count_color(image, kWhite), white_above + red_above);
    EXPECT_TRUE(is(image, 10, 59, kRed));
    EXPECT_TRUE(is(image, 9, 59, kBlack));
}

TEST(DrawLabel, GoesInsideWhenThereIsNoRoomAboveAndStaysInTheImage) {
    Image image = blank(120, 80);
    draw_label(image, 100, 3, "car 0.50", kRed, 3);
    EXPECT_TRUE(is(image, 119, 4, kRed) || is(image, 119, 4, kWhite));
    EXPECT_TRUE(is(image, 60, 2, kBlack));  // nothing above the box corner
    int white = count_color(image, kWhite);
    EXPECT_GT(white, 100);
}

TEST(DrawLabel, DifferentTextDrawsDifferentGlyphs) {
    Image a = blank(60, 30), b = blank(60, 30);
    draw_label(a, 0, 29, "AB", kRed, 1);
    draw_label(b, 0, 29, "AC", kRed, 1);
    EXPECT_NE(a.data, b.data);
    // Every printable character renders (space aside) and unprintable bytes render as '?'.
    for (char c = '!'; c <= '~'; ++c) {
        Image g = blank(12, 12);
        draw_label(g, 0, 11, std::string(1, c), kRed, 1);
        EXPECT_GT(count_color(g, kWhite), 0) << c;
    }
    Image odd = blank(40, 12), question = blank(40, 12);
    draw_label(odd, 0, 11, std::string("\x01\xff"), kRed, 1);
    draw_label(question, 0, 11, "??", kRed, 1);
    EXPECT_EQ(odd.data, question.data);
}

TEST(DrawLabel, UsesBlackTextOnANearWhiteBox) {
    Image image = blank(60, 30);
    draw_label(image, 0, 29, "top1", kWhite, 1);
    EXPECT_GT(count_color(image, kWhite), 0);
    int black_in_label = 0;
    for (int y = 20; y < 29; ++y) {
        for (int x = 1; x < 24; ++x) black_in_label += is(image, x, y, kBlack);
    }
    EXPECT_GT(black_in_label, 10);
    // Palette colours keep Ultralytics' white text.
    for (int i = 0; i < 20; ++i) {
        Image colored = blank(30, 12);
        draw_label(colored, 0, 11, "a", palette_color(i), 1);
        EXPECT_GT(count_color(colored, kWhite), 0) << i;
    }
}

TEST(DrawLabel, SurvivesTinyImagesAndHugeScales) {
    Image tiny = blank(1, 1);
    draw_label(tiny, 0, 0, "person", kRed, 3);
    draw_label(tiny, 1e20f, -1e20f, std::string(10000, 'x'), kRed, 1 << 30);
    draw_box(tiny, 0, 0, 0, 0, kRed, 1);
    draw_keypoints(tiny, std::vector<Keypoint>(17, Keypoint{0.5f, 0.5f, 1.0f}), 3);
    Image empty;
    draw_label(empty, 0, 0, "x", kRed, 2);
    draw_box(empty, 0, 0, 5, 5, kRed, 2);
    SUCCEED();
}

std::vector<Keypoint> standing_person() {
    // COCO order: nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles.
    return {{50, 20, 0.9f}, {47, 18, 0.9f}, {53, 18, 0.9f}, {44, 20, 0.9f}, {56, 20, 0.9f}, {40, 35, 0.9f},
            {60, 35, 0.9f}, {35, 50, 0.9f}, {65, 50, 0.9f}, {32, 65, 0.9f}, {68, 65, 0.9f}, {43, 70, 0.9f},
            {57, 70, 0.9f}, {42, 85, 0.9f}, {58, 85, 0.9f}, {41, 98, 0.9f}, {59, 98, 0.9f}};
}

TEST(DrawKeypoints, UsesPosePaletteAndSkeleton) {
    Image image = blank(100, 110);
    draw_keypoints(image, standing_person(), 3);
    // Pixels inside keypoint discs away from any limb, then pixels on limbs away from any disc.
    EXPECT_TRUE(is(image, 50, 23, Rgb{0, 255, 0}));     // nose: pose_palette[16]
    EXPECT_TRUE(is(image, 36, 33, Rgb{255, 128, 0}));   // left shoulder: pose_palette[0]
    EXPECT_TRUE(is(image, 45, 99, Rgb{51, 153, 255}));  // left ankle: pose_palette[9]
    EXPECT_TRUE(is(image, 50, 35, Rgb{255, 128, 0}));   // shoulder to shoulder: pose_palette[0]
    EXPECT_TRUE(is(image, 42, 77, Rgb{51, 153, 255}));  // left knee to hip: pose_palette[9]
    EXPECT_TRUE(is(image, 50, 70, Rgb{255, 51, 255}));  // hip to hip: pose_palette[7]
}

TEST(DrawKeypoints, HidesLowVisibilityAndZeroPointsAndTheirLimbs) {
    std::vector<Keypoint> person = standing_person();
    person[5].visibility = 0.3f;      // left shoulder hidden
    person[6] = {0.0f, 35.0f, 1.0f};  // right shoulder missing
    Image image = blank(100, 110);
    draw_keypoints(image, person, 3);
    EXPECT_TRUE(is(image, 40, 35, kBlack));
    EXPECT_TRUE(is(image, 50, 35, kBlack));  // no shoulder-shoulder limb
    EXPECT_TRUE(is(image, 0, 35, kBlack));
    EXPECT_TRUE(is(image, 41, 98, Rgb{51, 153, 255}));
}

TEST(DrawKeypoints, OtherCountsUsePaletteColoursAndNoSkeleton) {
    Image image = blank(60, 20);
    draw_keypoints(image, {{10, 10, 1.0f}, {50, 10, 1.0f}}, 2);
    EXPECT_TRUE(is(image, 10, 10, palette_color(0)));
    EXPECT_TRUE(is(image, 50, 10, palette_color(1)));
    EXPECT_TRUE(is(image, 30, 10, kBlack));
}

TEST(DrawKeypoints, ClipsLimbsReachingFarOutside) {
    std::vector<Keypoint> person = standing_person();
    person[15] = {-1e9f, 5e8f, 1.0f};
    person[16] = {std::numeric_limits<float>::quiet_NaN(), 10.0f, 1.0f};
    Image image = blank(100, 110);
    draw_keypoints(image, person, 3);
    EXPECT_TRUE(is(image, 42, 77, Rgb{51, 153, 255}));  // the rest of the skeleton is unaffected
    EXPECT_TRUE(is(image, 58, 98, kBlack));             // the NaN ankle is not drawn
}

}  // namespace
}  // namespace kestrel::yolo
