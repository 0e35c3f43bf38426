// Resize and letterbox against OpenCV: golden checksums from scripts/gen_letterbox_golden.py must match
// byte for byte, plus the letterbox geometry and tensor layout on hand-checked cases.
#include "yolo/preprocess/letterbox.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <utility>
#include <vector>

#include "core/error.h"
#include "golden_data.h"

namespace kestrel::yolo {
namespace {

using testing::golden_cases_for;
using testing::golden_source;
using testing::GoldenCase;
using testing::matches_golden;
using testing::parse_pair;

class ResizeGolden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(ResizeGolden, BitExactWithOpenCv) {
    const GoldenCase& c = GetParam();
    const Image src = golden_source(c);
    const auto [width, height] = parse_pair(c.field("size"));
    const Image out = c.op() == "linear" ? resize_linear(src, width, height) : resize_area(src, width, height);
    ASSERT_EQ(out.width, width);
    ASSERT_EQ(out.height, height);
    EXPECT_TRUE(matches_golden(c, out.data.data(), out.data.size()));
}

std::vector<GoldenCase> resize_cases() {
    std::vector<GoldenCase> cases = golden_cases_for("linear");
    for (GoldenCase& c : golden_cases_for("area")) cases.push_back(std::move(c));
    return cases;
}

INSTANTIATE_TEST_SUITE_P(OpenCv, ResizeGolden, ::testing::ValuesIn(resize_cases()), testing::case_test_name);

class LetterboxGolden : public ::testing::TestWithParam<GoldenCase> {};

TEST_P(LetterboxGolden, BitExactWithUltralytics) {
    const GoldenCase& c = GetParam();
    const Image src = golden_source(c);
    const auto [width, height] = parse_pair(c.field("size"));
    LetterboxTransform transform;
    const Image out = letterbox(src, height, width, &transform);
    ASSERT_EQ(out.width, width);
    ASSERT_EQ(out.height, height);
    const auto [new_width, new_height] = parse_pair(c.field("resized"));
    const auto [pad_left, pad_top] = parse_pair(c.field("pad"));
    EXPECT_EQ(transform.new_width, new_width);
    EXPECT_EQ(transform.new_height, new_height);
    EXPECT_EQ(transform.pad_left, pad_left);
    EXPECT_EQ(transform.pad_top, pad_top);
    EXPECT_TRUE(matches_golden(c, out.data.data(), out.data.size()));
}

INSTANTIATE_TEST_SUITE_P(OpenCv, LetterboxGolden, ::testing::ValuesIn(golden_cases_for("letterbox")),
                         testing::case_test_name);

TEST(LetterboxGoldenData, CoversEveryOperation) {
    // An empty or missing golden file would otherwise instantiate no tests and pass silently.
    EXPECT_GE(golden_cases_for("linear").size(), 10u) << testing::golden_path();
    EXPECT_GE(golden_cases_for("area").size(), 10u);
    EXPECT_GE(golden_cases_for("letterbox").size(), 6u);
    EXPECT_EQ(golden_cases_for("tensor").size(), 1u);
}

TEST(LetterboxToTensor, MatchesNumpyFloat32Division) {
    for (const GoldenCase& c : golden_cases_for("tensor")) {
        const Image src = golden_source(c);
        const auto [width, height] = parse_pair(c.field("size"));
        std::vector<float> tensor(static_cast<size_t>(3) * width * height);
        letterbox_to_tensor(src, height, width, tensor.data());
        EXPECT_TRUE(matches_golden(c, tensor.data(), tensor.size() * sizeof(float)));
    }
}

TEST(LetterboxToTensor, IsPlanarRgbOfTheLetterbox) {
    const Image src = testing::random_image(50, 30, 7);
    LetterboxTransform from_image, from_tensor;
    const Image canvas = letterbox(src, 40, 64, &from_image);
    std::vector<float> tensor(3 * 40 * 64);
    from_tensor = letterbox_to_tensor(src, 40, 64, tensor.data());
    EXPECT_EQ(from_tensor.pad_top, from_image.pad_top);
    EXPECT_EQ(from_tensor.new_height, from_image.new_height);
    for (int y = 0; y < 40; ++y) {
        for (int x = 0; x < 64; ++x) {
            for (int c = 0; c < 3; ++c) {
                ASSERT_EQ(tensor[(c * 40 + y) * 64 + x], canvas.pixel(x, y)[c] / 255.0f) << x << "," << y << "," << c;
            }
        }
    }
}

TEST(Letterbox, BusGeometry) {
    // 810x1080 into 640x640: r = 640/1080, 480x640 content, 80 columns of padding each side.
    const Image src = testing::random_image(810, 1080, 3);
    LetterboxTransform t;
    const Image out = letterbox(src, 640, 640, &t);
    EXPECT_FLOAT_EQ(t.scale, 640.0f / 1080.0f);
    EXPECT_EQ(t.new_width, 480);
    EXPECT_EQ(t.new_height, 640);
    EXPECT_EQ(t.pad_left, 80);
    EXPECT_EQ(t.pad_top, 0);
    EXPECT_NEAR(t.to_original_x(80.0f), 0.0f, 1e-4f);
    EXPECT_NEAR(t.to_original_x(560.0f), 810.0f, 1e-3f);
    EXPECT_NEAR(t.to_original_y(320.0f), 540.0f, 1e-3f);
    EXPECT_EQ(out.pixel(79, 300)[0], 114);
    EXPECT_EQ(out.pixel(560, 300)[2], 114);
}

TEST(Letterbox, OddPaddingPutsTheExtraRowAtTheBottom) {
    // 100x83 into 64x64: r = 0.64, 64x53 content (53.12 rounds down), dh = 5.5: top 5, bottom 6.
    const Image src = testing::random_image(100, 83, 5);
    LetterboxTransform t;
    const Image out = letterbox(src, 64, 64, &t);
    EXPECT_EQ(t.new_height, 53);
    EXPECT_EQ(t.pad_top, 5);
    for (int y : {0, 4, 58, 63}) EXPECT_EQ(out.pixel(10, y)[1], 114) << y;
}

TEST(Letterbox, RoundsHalfToEvenAsPython) {
    // r = 0.5 exactly: 5 * 0.5 = 2.5 rounds to 2, 7 * 0.5 = 3.5 to 4 (Python's round, not half-up).
    LetterboxTransform t;
    letterbox(testing::random_image(5, 4, 1), 2, 10, &t);
    EXPECT_EQ(t.new_width, 2);
    letterbox(testing::random_image(7, 4, 1), 2, 10, &t);
    EXPECT_EQ(t.new_width, 4);
}

TEST(Letterbox, KeepsPixelsWhenNoResizeIsNeeded) {
    const Image src = testing::random_image(64, 48, 9);
    LetterboxTransform t;
    const Image out = letterbox(src, 64, 64, &t);
    EXPECT_EQ(t.pad_top, 8);
    EXPECT_EQ(t.pad_left, 0);
    for (int y = 0; y < 48; ++y) {
        ASSERT_EQ(0, std::memcmp(out.pixel(0, y + 8), src.pixel(0, y), 64 * 3)) << y;
    }
}

TEST(Letterbox, RejectsImpossibleSizes) {
    const Image src = testing::random_image(4, 4, 1);
    EXPECT_THROW(letterbox(src, 0, 64, nullptr), Error);
    EXPECT_THROW(letterbox(Image{}, 64, 64, nullptr), Error);
    // 1x2000 into 64x64 would keep round(0.032) = 0 columns.
    EXPECT_THROW(letterbox(testing::random_image(1, 2000, 1), 64, 64, nullptr), Error);
    EXPECT_THROW(resize_linear(src, -1, 4), Error);
    EXPECT_THROW(resize_area(src, 4, 0), Error);
}

TEST(Resize, SameSizeIsACopy) {
    const Image src = testing::random_image(13, 7, 2);
    EXPECT_EQ(resize_linear(src, 13, 7).data, src.data);
    EXPECT_EQ(resize_area(src, 13, 7).data, src.data);
}

TEST(Resize, ConstantImageStaysConstant) {
    Image src = testing::random_image(97, 61, 1);
    std::fill(src.data.begin(), src.data.end(), uint8_t{200});
    for (const auto& [w, h] : std::vector<std::pair<int, int>>{{640, 480}, {31, 17}, {48, 30}, {1, 1}}) {
        for (const Image& out : {resize_linear(src, w, h), resize_area(src, w, h)}) {
            for (uint8_t v : out.data) ASSERT_EQ(v, 200) << w << "x" << h;
        }
    }
}

}  // namespace
}  // namespace kestrel::yolo
