// Ultralytics' detection metrics on hand-computed cases, and the dataset reader's pieces.
//
// A note on "perfect" AP: compute_ap appends the sentinel (recall 1, precision 0) after the last real point, and
// np.interp at recall 1.0 returns that sentinel, so the last 0.01 of the 101-point trapezoid is a triangle:
// a perfect class scores 0.99 + 0.005 = 0.995, as in `yolo val` (its mAP50 of a perfect model is 0.995).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "yolo/dataset/dataset.h"
#include "yolo/metrics/detection_metrics.h"

namespace kestrel::yolo {
namespace {

constexpr double kTol = 1e-12;

EvalBox box(float x1, float y1, float x2, float y2, int cls, float conf = 0) { return {x1, y1, x2, y2, cls, conf}; }

TEST(Metrics, IouThresholdsAreTorchLinspace) {
    const auto& t = iou_thresholds();
    EXPECT_EQ(t[0], 0.5f);
    EXPECT_EQ(t[2], 0.6f);
    EXPECT_EQ(t[6], 0.8f);  // the second half counts down from 0.95: the nearest float, not 0.79999995f
    EXPECT_EQ(t[9], 0.95f);
}

TEST(Metrics, BoxIou) {
    EXPECT_FLOAT_EQ(box_iou(box(0, 0, 10, 10, 0), box(5, 0, 15, 10, 0)), 50.0f / 150.0f);
    EXPECT_FLOAT_EQ(box_iou(box(0, 0, 10, 10, 0), box(0, 0, 10, 10, 0)), 1.0f);
    EXPECT_EQ(box_iou(box(0, 0, 10, 10, 0), box(20, 20, 30, 30, 0)), 0.0f);
}

TEST(Metrics, PerfectPredictions) {
    DetectionStats s;
    s.add_image({box(10, 10, 50, 50, 0, 0.9f)}, {box(10, 10, 50, 50, 0)});
    s.add_image({box(0, 0, 20, 30, 0, 0.8f)}, {box(0, 0, 20, 30, 0)});
    const DetectionMetrics m = s.compute();
    EXPECT_EQ(s.images(), 2);
    EXPECT_EQ(s.instances(), 2);
    EXPECT_DOUBLE_EQ(m.precision, 1.0);
    EXPECT_DOUBLE_EQ(m.recall, 1.0);
    EXPECT_NEAR(m.map50, 0.995, kTol);
    EXPECT_NEAR(m.map50_95, 0.995, kTol);
    ASSERT_EQ(m.classes.size(), 1u);
    EXPECT_EQ(m.classes[0].class_id, 0);
}

TEST(Metrics, OneFalsePositiveAfterTheHit) {
    // Same confidence: the F1 peak lies below it, where P and R are the final ones: P = 1/2, R = 1/1. The FP ranks
    // after the TP (stable order), so the precision envelope stays 1 up to full recall.
    DetectionStats s;
    s.add_image({box(0, 0, 10, 10, 0, 0.5f), box(100, 100, 110, 110, 0, 0.5f)}, {box(0, 0, 10, 10, 0)});
    const DetectionMetrics m = s.compute();
    EXPECT_NEAR(m.precision, 0.5, kTol);
    EXPECT_NEAR(m.recall, 1.0, kTol);
    EXPECT_NEAR(m.map50, 0.995, kTol);
}

TEST(Metrics, OneFalsePositiveBeforeTheHit) {
    // recall (0, 1), precision (0, 1/2): the envelope is 1/2 over recall (0, 1); AP = 0.99 * 0.5 + 0.01 * 0.25.
    DetectionStats s;
    s.add_image({box(100, 100, 110, 110, 0, 0.9f), box(0, 0, 10, 10, 0, 0.8f)}, {box(0, 0, 10, 10, 0)});
    const DetectionMetrics m = s.compute();
    EXPECT_NEAR(m.map50, 0.4975, kTol);
    EXPECT_NEAR(m.map50_95, 0.4975, kTol);
}

TEST(Metrics, TwoClasses) {
    // Class 0: one label, found. Class 1: two labels, one found: recall 1/2 at precision 1, so its AP is the area
    // under the envelope 1 up to recall 0.5, then the straight line to the sentinel (1, 0): 0.5 + 0.25 = 0.75.
    DetectionStats s;
    s.add_image({box(0, 0, 10, 10, 0, 0.5f), box(20, 20, 40, 40, 1, 0.5f)},
                {box(0, 0, 10, 10, 0), box(20, 20, 40, 40, 1), box(60, 60, 80, 80, 1)});
    // A prediction of a class without labels is ignored.
    s.add_image({box(0, 0, 10, 10, 5, 0.5f)}, {});
    const DetectionMetrics m = s.compute();
    ASSERT_EQ(m.classes.size(), 2u);
    EXPECT_NEAR(m.classes[0].ap50(), 0.995, kTol);
    EXPECT_NEAR(m.classes[1].ap50(), 0.75, kTol);
    EXPECT_NEAR(m.classes[1].precision, 1.0, kTol);
    EXPECT_NEAR(m.classes[1].recall, 0.5, kTol);
    EXPECT_NEAR(m.map50, (0.995 + 0.75) / 2, kTol);
    EXPECT_NEAR(m.map50_95, (0.995 + 0.75) / 2, kTol);
    EXPECT_NEAR(m.precision, 1.0, kTol);
    EXPECT_NEAR(m.recall, 0.75, kTol);
    EXPECT_EQ(s.images_with(1), 1);
    EXPECT_EQ(s.instances_of(1), 2);
    EXPECT_EQ(s.instances(), 3);
}

TEST(Metrics, IouPointSixMatchesUpToPointSix) {
    // IoU = 60 / 100 exactly in float32 (the 1e-7 vanishes next to 100), equal to the 0.6 threshold: it counts for
    // 0.50, 0.55 and 0.60 and for nothing above.
    const EvalBox label = box(0, 0, 10, 10, 0), pred = box(0, 0, 6, 10, 0, 0.7f);
    EXPECT_EQ(box_iou(label, pred), 0.6f);
    const auto correct = match_predictions({0}, {0}, {box_iou(label, pred)});
    ASSERT_EQ(correct.size(), 1u);
    for (int t = 0; t < kNumIouThresholds; ++t) EXPECT_EQ(correct[0][static_cast<size_t>(t)], t <= 2) << t;

    DetectionStats s;
    s.add_image({pred}, {label});
    const DetectionMetrics m = s.compute();
    EXPECT_NEAR(m.map50, 0.995, kTol);
    EXPECT_NEAR(m.map50_95, 3 * 0.995 / 10, kTol);
}

TEST(Metrics, MatchingIsUltralyticsGreedy) {
    // Labels x predictions. Prediction 0 (higher confidence) prefers label 1 (0.9); prediction 1 fits only label 1
    // (0.8). Each prediction keeps its best label, then each label its first prediction: only prediction 0 is a
    // TP, although 0->label 0 and 1->label 1 would match both (Ultralytics' use_scipy=False behaviour).
    const std::vector<float> iou = {0.6f, 0.0f,   // label 0
                                    0.9f, 0.8f};  // label 1
    const auto correct = match_predictions({0, 0}, {0, 0}, iou);
    EXPECT_TRUE(correct[0][0]);
    EXPECT_FALSE(correct[1][0]);
    // Different classes never match.
    const auto other = match_predictions({1}, {0}, {0.95f});
    EXPECT_FALSE(other[0][0]);
}

TEST(Metrics, NoTruePositivesGivesZeros) {
    DetectionStats s;
    s.add_image({box(50, 50, 60, 60, 0, 0.9f)}, {box(0, 0, 10, 10, 0)});
    s.add_image({}, {box(0, 0, 10, 10, 1)});
    const DetectionMetrics m = s.compute();
    EXPECT_EQ(m.map50, 0.0);
    EXPECT_EQ(m.precision, 0.0);
    EXPECT_TRUE(m.classes.empty());
    EXPECT_EQ(s.instances(), 2);
}

TEST(Metrics, ComputeApOfAStep) {
    // recall 0.5 at precision 1, then recall 1 at precision 0.5: envelope 1 up to 0.5, then a straight line from
    // (0.5, 1) to (1, 0.5) and the sentinel triangle at the end: 0.5 + 0.49 * 0.75 ... computed point by point.
    const double ap = compute_ap({0.5, 1.0}, {1.0, 0.5});
    double expected = 0;
    for (int i = 0; i < 100; ++i) {
        auto y = [](double x) { return x <= 0.5 ? 1.0 : (x < 1.0 ? 1.0 - (x - 0.5) : 0.0); };
        // At x = 1 np.interp returns the last point (the sentinel's precision, 0).
        const double x0 = i / 100.0, x1 = (i + 1) / 100.0;
        expected += (x1 - x0) * (y(x0) + (i + 1 == 100 ? 0.0 : y(x1))) / 2;
    }
    EXPECT_NEAR(ap, expected, 1e-9);
}

// ------------------------------------------------------------------------------------------------ dataset

TEST(Dataset, LabelPaths) {
    EXPECT_EQ(label_path("/d/images/train2017/000000000009.jpg"), "/d/labels/train2017/000000000009.txt");
    // Only the last "/images/" changes.
    EXPECT_EQ(label_path("/images/a/images/b.x.png"), "/images/a/labels/b.x.txt");
    EXPECT_EQ(label_path("/d/pics/a.jpg"), "/d/pics/a.txt");
}

TEST(Dataset, ValLoadGeometry) {
    // 500x375 enlarged to 640x480 (ceil), INTER_LINEAR; gain is the height ratio.
    ValLoadGeometry g = val_load_geometry(500, 375, 640, 640);
    EXPECT_TRUE(g.resize);
    EXPECT_FALSE(g.shrink);
    EXPECT_EQ(g.width, 640);
    EXPECT_EQ(g.height, 480);
    EXPECT_DOUBLE_EQ(g.gain, 480.0 / 375.0);
    EXPECT_DOUBLE_EQ(g.scale, g.gain);
    // 1280x853 shrunk with INTER_AREA: 853 * 0.5 = 426.5 rounds up.
    g = val_load_geometry(1280, 853, 640, 640);
    EXPECT_TRUE(g.shrink);
    EXPECT_EQ(g.width, 640);
    EXPECT_EQ(g.height, 427);
    // Already 640 on the long side: untouched.
    g = val_load_geometry(480, 640, 640, 640);
    EXPECT_FALSE(g.resize);
    EXPECT_DOUBLE_EQ(g.scale, 1.0);
    // A label in the middle of the image maps back to the original pixels.
    const PixelBox b = label_box_pixels({0, 0.5f, 0.5f, 0.5f, 0.5f}, val_load_geometry(500, 375, 640, 640), 500, 375);
    EXPECT_NEAR(b.x1, 125, 1e-3);
    EXPECT_NEAR(b.y2, 281.25, 1e-3);
}

TEST(Dataset, Coco91Map) {
    const auto& m = coco80_to_coco91_class();
    ASSERT_EQ(m.size(), 80u);
    EXPECT_EQ(m[0], 1);
    EXPECT_EQ(m[11], 13);
    EXPECT_EQ(m[79], 90);
}

class DatasetFiles : public ::testing::Test {
   protected:
    void SetUp() override {
        dir_ = std::filesystem::temp_directory_path() /
               ("kestrel_dataset_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        std::filesystem::remove_all(dir_);
        std::filesystem::create_directories(dir_ / "images" / "val");
        std::filesystem::create_directories(dir_ / "labels" / "val");
    }
    void TearDown() override { std::filesystem::remove_all(dir_); }
    std::string write(const std::string& rel, const std::string& text) {
        const auto p = dir_ / rel;
        std::ofstream(p) << text;
        return p.string();
    }
    std::filesystem::path dir_;
};

TEST_F(DatasetFiles, YamlNamesAndSplits) {
    write("images/val/b.jpg", "x");
    write("images/val/a.png", "x");
    write("images/val/notes.md", "x");
    write("images/val/.hidden.jpg", "x");
    const std::string yaml = write("d.yaml", "path: .\nval: images/val\nnames:\n  0: cat\n  1: dog\n");
    const DatasetConfig d = load_dataset_config(yaml);
    EXPECT_EQ(d.names, (std::vector<std::string>{"cat", "dog"}));
    const auto files = split_image_files(d, "val");
    ASSERT_EQ(files.size(), 2u);
    EXPECT_EQ(std::filesystem::path(files[0]).filename(), "a.png");
    EXPECT_THROW(split_image_files(d, "test"), Error);
}

TEST_F(DatasetFiles, BadYamls) {
    EXPECT_THROW(load_dataset_config((dir_ / "missing.yaml").string()), Error);
    EXPECT_THROW(load_dataset_config(write("bad.yaml", "val: [images\nnames: {0: a")), Error);
    EXPECT_THROW(load_dataset_config(write("nc.yaml", "val: images/val\nnames: [a, b]\nnc: 3\n")), Error);
    EXPECT_THROW(load_dataset_config(write("gap.yaml", "val: images/val\nnames: {0: a, 2: b}\n")), Error);
    const DatasetConfig empty = load_dataset_config(write("e.yaml", "val: labels/val\nnames: [a]\n"));
    EXPECT_THROW(split_image_files(empty, "val"), Error);
}

TEST_F(DatasetFiles, LabelScan) {
    const std::string yaml = write("d.yaml", "val: images/val\nnames: [a, b]\n");
    const DatasetConfig d = load_dataset_config(yaml);
    const std::string ok = write("images/val/ok.jpg", ""), dup = write("images/val/dup.jpg", "");
    const std::string bad = write("images/val/bad.jpg", ""), none = write("images/val/none.jpg", "");
    const std::string poly = write("images/val/poly.jpg", "");
    write("labels/val/ok.txt", "1 0.5 0.5 0.2 0.4\n0 0.1 0.1 0.1 0.1\n");
    write("labels/val/dup.txt", "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n");
    write("labels/val/bad.txt", "2 0.5 0.5 0.2 0.2\n");  // class 2 of a 2-class dataset
    write("labels/val/poly.txt", "1 0.1 0.2 0.5 0.2 0.5 0.6 0.1 0.6\n");
    const LabelScan s = scan_labels({ok, dup, bad, none, poly}, d);
    EXPECT_EQ(s.found, 3);
    EXPECT_EQ(s.backgrounds, 1);
    EXPECT_EQ(s.corrupt, 1);
    ASSERT_EQ(s.images.size(), 4u);
    EXPECT_EQ(s.images[0].labels.size(), 2u);
    EXPECT_EQ(s.images[1].labels.size(), 1u);  // duplicate removed
    EXPECT_TRUE(s.images[2].labels.empty());
    ASSERT_EQ(s.images[3].labels.size(), 1u);  // polygon -> box
    EXPECT_FLOAT_EQ(s.images[3].labels[0].cx, 0.3f);
    EXPECT_FLOAT_EQ(s.images[3].labels[0].h, 0.4f);
    EXPECT_EQ(s.warnings.size(), 2u);
}

}  // namespace
}  // namespace kestrel::yolo
