// End-to-end tests through the public API on the real models in ../shared: golden detections
// (../shared/README.md, measured with ONNX Runtime and Ultralytics), engine round trip, and the
// engine file's defences against damaged or foreign files.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "kestrel/detector.h"
#include "kestrel/engine.h"

namespace {

namespace fs = std::filesystem;

std::string shared(const std::string& rel) {
    const char* env = std::getenv("KESTREL_SHARED");
    return (env ? std::string(env) : std::string(KESTREL_SOURCE_DIR) + "/../shared") + "/" + rel;
}

std::string temp_path(const std::string& name) {
    fs::path dir = fs::temp_directory_path() / ("kestrel_api_test_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    return (dir / name).string();
}

std::string read_bytes(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& p, const std::string& b) {
    std::ofstream f(p, std::ios::binary);
    f.write(b.data(), static_cast<std::streamsize>(b.size()));
}

// One engine per model for the whole suite: building takes a moment.
// Takes const char*: a temporary class argument makes GCC 13 warn of a dangling result.
const kestrel::Engine& engine_for(const char* model) {
    static std::map<std::string, kestrel::Engine> cache;
    auto it = cache.find(model);
    if (it == cache.end()) {
        auto e = kestrel::Engine::build(shared(std::string("models/") + model), {});
        if (!e.ok()) throw std::runtime_error(e.status().message());
        it = cache.emplace(model, e.value()).first;
    }
    return it->second;
}

kestrel::PredictOptions iou45() {
    kestrel::PredictOptions opt;
    opt.iou = 0.45f;
    return opt;
}

struct Golden {
    int cls;
    float score;
    kestrel::Box box;
};

void expect_detections(const std::string& model, const std::string& image, float iou, const std::vector<Golden>& want) {
    auto pred = kestrel::Predictor::create(engine_for(model.c_str()));
    ASSERT_TRUE(pred.ok()) << pred.status().message();
    kestrel::PredictOptions opt;
    opt.iou = iou;
    auto r = pred->predict_file(shared("images/" + image), opt);
    ASSERT_TRUE(r.ok()) << r.status().message();
    ASSERT_EQ(r->detections.size(), want.size()) << model << " on " << image;
    for (size_t i = 0; i < want.size(); ++i) {
        const auto& d = r->detections[i];
        SCOPED_TRACE(model + " " + image + " detection " + std::to_string(i));
        EXPECT_EQ(d.class_id, want[i].cls);
        EXPECT_NEAR(d.confidence, want[i].score, 0.005);
        // Golden boxes are printed to 0.1 px: allow 1 px.
        EXPECT_NEAR(d.box.x1, want[i].box.x1, 1.0);
        EXPECT_NEAR(d.box.y1, want[i].box.y1, 1.0);
        EXPECT_NEAR(d.box.x2, want[i].box.x2, 1.0);
        EXPECT_NEAR(d.box.y2, want[i].box.y2, 1.0);
    }
}

TEST(GoldenDetections, BusDetect) {
    std::vector<Golden> want = {{0, 0.905f, {221.7f, 407.4f, 343.2f, 855.7f}},
                                {0, 0.905f, {669.9f, 379.1f, 810.1f, 879.9f}},
                                {0, 0.897f, {50.7f, 396.7f, 244.3f, 905.4f}},
                                {5, 0.875f, {28.7f, 230.5f, 801.5f, 782.9f}},
                                {0, 0.429f, {0.4f, 549.4f, 58.4f, 868.2f}}};
    // The two 0.905 persons may come in either order; match the reference's order by x1 when tied.
    auto pred = kestrel::Predictor::create(engine_for("yolov8n.onnx"));
    ASSERT_TRUE(pred.ok());
    auto r = pred->predict_file(shared("images/bus.jpg"), iou45());
    ASSERT_TRUE(r.ok()) << r.status().message();
    ASSERT_EQ(r->detections.size(), 5u);
    if (r->detections[0].box.x1 > r->detections[1].box.x1) std::swap(want[0], want[1]);
    expect_detections("yolov8n.onnx", "bus.jpg", 0.45f, want);
    expect_detections("yolov8n.onnx", "bus.jpg", 0.7f, want);  // "The same at IoU 0.7"
}

TEST(GoldenDetections, ZidaneDetect) {
    expect_detections("yolov8n.onnx", "zidane.jpg", 0.45f,
                      {{0, 0.822f, {746.9f, 40.9f, 1144.5f, 708.8f}},
                       {0, 0.802f, {117.7f, 196.4f, 1113.1f, 710.4f}},
                       {27, 0.403f, {436.3f, 437.2f, 523.2f, 714.3f}}});
}

TEST(GoldenDetections, BusPose) {
    expect_detections("yolov8n-pose.onnx", "bus.jpg", 0.45f,
                      {{0, 0.886f, {47.8f, 396.9f, 244.2f, 905.9f}},
                       {0, 0.874f, {221.2f, 406.4f, 345.5f, 857.7f}},
                       {0, 0.870f, {669.0f, 396.8f, 810.7f, 876.6f}},
                       {0, 0.322f, {1.5f, 559.8f, 70.5f, 875.5f}}});
    auto pred = kestrel::Predictor::create(engine_for("yolov8n-pose.onnx"));
    auto r = pred->predict_file(shared("images/bus.jpg"), iou45());
    ASSERT_TRUE(r.ok());
    const auto& k = r->detections.at(0).keypoints;
    ASSERT_EQ(k.size(), 17u);
    // First person's first keypoints per the README (to 0.1 px / 0.01).
    const float want[3][3] = {{143.5f, 443.5f, 0.98f}, {149.3f, 434.7f, 0.90f}, {134.8f, 432.4f, 0.97f}};
    for (int i = 0; i < 3; ++i) {
        EXPECT_NEAR(k[i].x, want[i][0], 1.0);
        EXPECT_NEAR(k[i].y, want[i][1], 1.0);
        EXPECT_NEAR(k[i].confidence, want[i][2], 0.01);
    }
}

TEST(GoldenDetections, ClassFilterAndMaxDet) {
    auto pred = kestrel::Predictor::create(engine_for("yolov8n.onnx"));
    kestrel::PredictOptions opt;
    opt.classes = {5};
    auto r = pred->predict_file(shared("images/bus.jpg"), opt);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->detections.size(), 1u);
    EXPECT_EQ(r->detections[0].class_id, 5);
    opt.classes.clear();
    opt.max_det = 2;
    r = pred->predict_file(shared("images/bus.jpg"), opt);
    EXPECT_EQ(r->detections.size(), 2u);
}

TEST(EngineFile, RoundTripIsBitIdentical) {
    const kestrel::Engine& built = engine_for("yolov8n.onnx");
    std::string path = temp_path("roundtrip.engine");
    ASSERT_TRUE(built.save(path).ok());
    auto loaded = kestrel::Engine::load(path);
    ASSERT_TRUE(loaded.ok()) << loaded.status().message();
    std::vector<float> input(3 * 640 * 640);
    for (size_t i = 0; i < input.size(); ++i) input[i] = static_cast<float>((i * 7919) % 1000) / 1000.f;
    std::vector<std::vector<float>> a, b;
    auto s1 = kestrel::Session::create(built);
    auto s2 = kestrel::Session::create(loaded.value());
    ASSERT_TRUE(s1->run(input.data(), 1, &a).ok());
    ASSERT_TRUE(s2->run(input.data(), 1, &b).ok());
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(0, std::memcmp(a[0].data(), b[0].data(), a[0].size() * sizeof(float)));
    // Saving the loaded engine reproduces the same bytes.
    std::string again = temp_path("roundtrip2.engine");
    ASSERT_TRUE(loaded->save(again).ok());
    EXPECT_EQ(read_bytes(path), read_bytes(again));
    EXPECT_EQ(loaded->info().task, "detect");
    EXPECT_EQ(loaded->info().names.size(), 80u);
    EXPECT_EQ(loaded->info().names[5], "bus");
}

class DamagedEngine : public ::testing::Test {
   protected:
    void SetUp() override {
        good_ = temp_path("good.engine");
        ASSERT_TRUE(engine_for("yolov8n.onnx").save(good_).ok());
        bytes_ = read_bytes(good_);
    }
    std::string load_error(const std::string& bytes) {
        std::string p = temp_path("damaged.engine");
        write_bytes(p, bytes);
        auto e = kestrel::Engine::load(p);
        return e.ok() ? "" : e.status().message();
    }
    std::string good_, bytes_;
};

TEST_F(DamagedEngine, FlippedByteAnywhereIsDetected) {
    for (size_t at : {size_t{40}, bytes_.size() / 2, bytes_.size() - 20}) {
        std::string b = bytes_;
        b[at] = static_cast<char>(b[at] ^ 0x10);
        EXPECT_NE(load_error(b).find("corrupt"), std::string::npos) << "flip at " << at;
    }
}

TEST_F(DamagedEngine, TruncatedOrMissingBytes) {
    EXPECT_NE(load_error(bytes_.substr(0, bytes_.size() - 1)).find("truncated"), std::string::npos);
    EXPECT_NE(load_error(bytes_.substr(0, 20)).find("truncated"), std::string::npos);
    std::string gap = bytes_;
    gap.erase(1000, 10);
    EXPECT_FALSE(load_error(gap).empty());
    EXPECT_FALSE(load_error("").empty());
}

TEST_F(DamagedEngine, ForeignNewerAndOlderFiles) {
    EXPECT_NE(load_error("TRT engine bytes").find("not a Kestrel engine"), std::string::npos);
    std::string newer = bytes_;
    newer[8] = 99;  // format version field
    EXPECT_NE(load_error(newer).find("newer"), std::string::npos);
    std::string older = bytes_;
    older[8] = 1;  // version 1: refused with "re-export", not reported as corrupted
    EXPECT_NE(load_error(older).find("older than this Kestrel's"), std::string::npos);
}

TEST(BadInput, MissingAndInvalidModels) {
    auto e = kestrel::Engine::load(temp_path("does_not_exist.engine"));
    ASSERT_FALSE(e.ok());
    EXPECT_NE(e.status().message().find("not found"), std::string::npos);
    std::string txt = temp_path("not_a_model.onnx");
    write_bytes(txt, "this is not a protobuf at all \x01\x02\x03");
    auto b = kestrel::Engine::build(txt, {});
    ASSERT_FALSE(b.ok());
    EXPECT_NE(b.status().message().find("not a valid ONNX model"), std::string::npos);
    std::string trunc = temp_path("truncated.onnx");
    write_bytes(trunc, read_bytes(shared("models/yolov8n.onnx")).substr(0, 100000));
    b = kestrel::Engine::build(trunc, {});
    ASSERT_FALSE(b.ok());
    EXPECT_EQ(b.status().message().find('\n'), std::string::npos);
}

TEST(BadInput, BatchOutsideProfile) {
    auto s = kestrel::Session::create(engine_for("yolov8n.onnx"));
    std::vector<float> input(2 * 3 * 640 * 640);
    std::vector<std::vector<float>> out;
    auto st = s->run(input.data(), 2, &out);
    ASSERT_FALSE(st.ok());
    EXPECT_NE(st.message().find("outside the engine's profile"), std::string::npos);
}

// A model exported with a fixed batch of 1 serves larger batches on the CPU (images run one by
// one through the batch-1 plan): each image's output equals its batch-1 output.
TEST(Batch, StaticBatchOneModelRunsLargerBatches) {
    kestrel::BuildOptions opt;
    opt.batch = 3;
    auto e = kestrel::Engine::build(shared("models/yolov8n.onnx"), opt);
    ASSERT_TRUE(e.ok()) << e.status().message();
    EXPECT_EQ(e->info().min_batch, 3);
    EXPECT_EQ(e->info().max_batch, 3);
    const size_t per = 3 * 640 * 640;
    std::vector<float> input(3 * per);
    for (size_t i = 0; i < input.size(); ++i) input[i] = static_cast<float>((i * 2654435761u) % 997) / 997.f;
    auto s = kestrel::Session::create(e.value());
    std::vector<std::vector<float>> batch3, single;
    ASSERT_TRUE(s->run(input.data(), 3, &batch3).ok());
    auto one = kestrel::Session::create(engine_for("yolov8n.onnx"));
    for (size_t b = 0; b < 3; ++b) {
        ASSERT_TRUE(one->run(input.data() + b * per, 1, &single).ok());
        EXPECT_EQ(0, std::memcmp(single[0].data(), batch3[0].data() + b * single[0].size(), single[0].size() * 4))
            << "image " << b;
    }
}

TEST(BadInput, UnreadableImages) {
    std::string empty = temp_path("empty.jpg");
    write_bytes(empty, "");
    EXPECT_FALSE(kestrel::read_image(empty).ok());
    std::string text = temp_path("text.jpg");
    write_bytes(text, "hello");
    EXPECT_FALSE(kestrel::read_image(text).ok());
    EXPECT_FALSE(kestrel::read_image(temp_path("missing.jpg")).ok());
}

}  // namespace
