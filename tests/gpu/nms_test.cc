// GPU detect post-processing (cuda::DetectPostprocess) against the CPU's yolo::decode_detections
// (candidates, stable score order, max_nms, class-offset NMS, max_det), bit for bit: the same boxes,
// scores and classes in the same order. Cases: zero candidates; overlapping boxes of one class and
// of several (class-aware and agnostic); an IoU exactly at the threshold (kept: the test is >);
// equal scores (the lower anchor first, as the CPU's stable sort); more candidates than max_det;
// more than max_nms (30000) candidates; the classes= filter (with an id outside the model); a
// batch of 3 against each image alone; and the real yolov8n output for bus.jpg and zidane.jpg,
// computed by the CPU engine, at predict's and val's thresholds.
// Without a CUDA device the GPU tests skip.
#include "backends/cuda/nms.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "backends/cuda/tensors.h"
#include "common/rng.h"
#include "core/error.h"
#include "gpu/gpu_test.h"
#include "kestrel/detector.h"
#include "kestrel/engine.h"
#include "yolo/image/image.h"
#include "yolo/preprocess/letterbox.h"
#include "yolo/tasks/postprocess.h"

namespace kestrel::cuda {
namespace {

// A detect output on the host: batch x (4 + nc) x anchors.
struct Output {
    int batch = 1, nc = 1, anchors = 1;
    std::vector<float> data;
    Output(int b, int c, int a) : batch(b), nc(c), anchors(a), data(static_cast<size_t>(b) * (4 + c) * a, 0.f) {}
    int channels() const { return 4 + nc; }
    float& at(int image, int row, int anchor) {
        return data[(static_cast<size_t>(image) * channels() + row) * anchors + anchor];
    }
    void set_box(int image, int anchor, float cx, float cy, float w, float h) {
        at(image, 0, anchor) = cx, at(image, 1, anchor) = cy, at(image, 2, anchor) = w, at(image, 3, anchor) = h;
    }
};

// The image size detections are clipped to; identity letterbox, so the CPU maps nothing.
constexpr int kImageW = 640, kImageH = 640;

std::vector<Detection> cpu_detections(Output& out, int image, const PredictOptions& opt) {
    yolo::DecodeLayout layout;
    layout.channels = out.channels();
    layout.anchors = out.anchors;
    layout.num_classes = out.nc;
    const float* p = out.data.data() + static_cast<size_t>(image) * out.channels() * out.anchors;
    return yolo::decode_detections(p, layout, opt, yolo::LetterboxTransform{}, kImageW, kImageH);
}

// The GPU's kept boxes, clipped as the CPU clips them (the pipeline's mapping with an identity letterbox).
std::vector<std::vector<Detection>> gpu_detections(const Output& out, const PredictOptions& opt, int max_batch = 0) {
    DetectPostprocess post(std::max(max_batch, out.batch), out.channels(), out.anchors, out.nc);
    float* d = nullptr;
    KS_CUDA(cudaMalloc(reinterpret_cast<void**>(&d), out.data.size() * sizeof(float)));
    KS_CUDA(cudaMemcpy(d, out.data.data(), out.data.size() * sizeof(float), cudaMemcpyHostToDevice));
    NmsOptions nms{opt.conf, opt.iou, opt.max_det, opt.agnostic_nms};
    std::vector<std::vector<NmsResult>> kept;
    try {
        kept = post.run(d, out.batch, nms, opt.classes, nullptr);
    } catch (...) {
        cudaFree(d);
        throw;
    }
    cudaFree(d);
    std::vector<std::vector<Detection>> dets(kept.size());
    auto cx = [](float x) { return std::clamp(x, 0.f, static_cast<float>(kImageW)); };
    auto cy = [](float y) { return std::clamp(y, 0.f, static_cast<float>(kImageH)); };
    for (size_t i = 0; i < kept.size(); ++i)
        for (const NmsResult& r : kept[i]) {
            Detection det;
            det.class_id = r.class_id;
            det.confidence = r.score;
            det.box = {cx(r.x1), cy(r.y1), cx(r.x2), cy(r.y2)};
            dets[i].push_back(det);
        }
    return dets;
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

void expect_same(const std::vector<Detection>& gpu, const std::vector<Detection>& cpu, const std::string& what) {
    SCOPED_TRACE(what);
    ASSERT_EQ(gpu.size(), cpu.size());
    for (size_t k = 0; k < cpu.size(); ++k) {
        const Detection &g = gpu[k], &c = cpu[k];
        EXPECT_EQ(g.class_id, c.class_id) << "detection " << k;
        EXPECT_TRUE(same_bits(g.confidence, c.confidence))
            << "detection " << k << ": " << g.confidence << " vs " << c.confidence;
        EXPECT_TRUE(same_bits(g.box.x1, c.box.x1) && same_bits(g.box.y1, c.box.y1) && same_bits(g.box.x2, c.box.x2) &&
                    same_bits(g.box.y2, c.box.y2))
            << "detection " << k << ": gpu (" << g.box.x1 << ", " << g.box.y1 << ", " << g.box.x2 << ", " << g.box.y2
            << ") cpu (" << c.box.x1 << ", " << c.box.y1 << ", " << c.box.x2 << ", " << c.box.y2 << ")";
    }
}

// Every image of `out` through both, at the given options.
void expect_gpu_matches_cpu(Output& out, const PredictOptions& opt, const std::string& what) {
    auto gpu = gpu_detections(out, opt);
    for (int i = 0; i < out.batch; ++i)
        expect_same(gpu[static_cast<size_t>(i)], cpu_detections(out, i, opt), what + ", image " + std::to_string(i));
}

PredictOptions options(float conf, float iou, int max_det = 300, bool agnostic = false) {
    PredictOptions o;
    o.conf = conf, o.iou = iou, o.max_det = max_det, o.agnostic_nms = agnostic;
    return o;
}

class GpuNms : public ::testing::Test {
   protected:
    void SetUp() override {
        if (!test::gpu_available()) GTEST_SKIP() << "no CUDA device";
    }
};

TEST_F(GpuNms, ZeroCandidates) {
    Output out(2, 3, 100);
    for (int a = 0; a < 100; ++a) {
        out.set_box(0, a, 50, 50, 10, 10), out.set_box(1, a, 50, 50, 10, 10);
        out.at(0, 4, a) = 0.25f;  // not > conf
        out.at(1, 6, a) = 0.1f;
    }
    auto gpu = gpu_detections(out, options(0.25f, 0.7f));
    ASSERT_EQ(gpu.size(), 2u);
    EXPECT_TRUE(gpu[0].empty());
    EXPECT_TRUE(gpu[1].empty());
    expect_gpu_matches_cpu(out, options(0.25f, 0.7f), "zero candidates");
}

TEST_F(GpuNms, OverlapsClassesAndTies) {
    Output out(1, 3, 12);
    // Anchors 0-3: class 0, a chain of boxes shifted by 2 px (IoU with the first 0.67, 0.43, ...).
    for (int a = 0; a < 4; ++a) out.set_box(0, a, 100 + 2.0f * a, 100, 10, 10), out.at(0, 4, a) = 0.9f - 0.1f * a;
    // Anchors 4-5: class 1 boxes on top of anchor 0's: kept by class-aware NMS, not by agnostic.
    out.set_box(0, 4, 100, 100, 10, 10), out.at(0, 5, 4) = 0.85f;
    out.set_box(0, 5, 101, 100, 10, 10), out.at(0, 5, 5) = 0.5f;
    // Anchors 6-8: identical boxes with equal scores: the lowest anchor wins.
    for (int a = 6; a < 9; ++a) out.set_box(0, a, 300, 300, 40, 20), out.at(0, 6, a) = 0.7f;
    // Anchors 9-10: IoU exactly 0.5 ([0,0,10,10] and [0,0,10,5]): kept at iou=0.5, dropped below.
    out.set_box(0, 9, 5, 5, 10, 10), out.at(0, 4, 9) = 0.6f;
    out.set_box(0, 10, 5, 2.5f, 10, 5), out.at(0, 4, 10) = 0.55f;
    // Anchor 11: a box off the image, clipped.
    out.set_box(0, 11, 650, -5, 30, 30), out.at(0, 5, 11) = 0.95f;
    // Class scores tie inside one anchor: the first maximum is the class.
    out.at(0, 6, 3) = out.at(0, 4, 3);
    for (float iou : {0.3f, 0.45f, 0.5f, 0.7f, 0.99f})
        for (bool agnostic : {false, true})
            expect_gpu_matches_cpu(out, options(0.25f, iou, 300, agnostic),
                                   "iou " + std::to_string(iou) + (agnostic ? " agnostic" : ""));
    // Spot checks of the rule itself (not only agreement): at iou 0.5 both boxes 9 and 10 stay.
    auto kept = gpu_detections(out, options(0.25f, 0.5f))[0];
    int class0_at_origin = 0;
    for (const Detection& d : kept) class0_at_origin += d.class_id == 0 && d.box.x1 == 0.f && d.box.y1 == 0.f;
    EXPECT_EQ(class0_at_origin, 2);
}

TEST_F(GpuNms, MoreCandidatesThanMaxDet) {
    test::Rng rng;
    SCOPED_TRACE(rng.trace());
    Output out(1, 4, 2000);
    for (int a = 0; a < 2000; ++a) {
        // A grid of small boxes that hardly overlap, a few duplicates.
        out.set_box(0, a, 8.0f + 16.0f * static_cast<float>(a % 40), 8.0f + 16.0f * static_cast<float>(a / 40 % 40),
                    rng.uniform(6, 20), rng.uniform(6, 20));
        out.at(0, 4 + static_cast<int>(rng.uniform_int(0, 3)), a) = rng.uniform(0.3f, 1.0f);
    }
    for (int max_det : {1, 7, 300, 5000}) expect_gpu_matches_cpu(out, options(0.25f, 0.7f, max_det), "max_det");
    EXPECT_EQ(gpu_detections(out, options(0.25f, 0.7f, 7))[0].size(), 7u);
}

TEST_F(GpuNms, RandomDenseBatchAndClassFilter) {
    test::Rng rng;
    SCOPED_TRACE(rng.trace());
    Output out(3, 80, 8400);
    for (int i = 0; i < 3; ++i)
        for (int a = 0; a < 8400; ++a) {
            out.set_box(i, a, rng.uniform(0, 640), rng.uniform(0, 640), rng.uniform(2, 300), rng.uniform(2, 300));
            for (int c = 0; c < 80; ++c)
                out.at(i, 4 + c, a) = rng.uniform(0, 1) < 0.97f ? rng.uniform(0, 0.01f) : rng.uniform(0, 1);
            // Quantised scores make exact ties between anchors common.
            if (a % 3 == 0) out.at(i, 4, a) = 0.5f;
        }
    expect_gpu_matches_cpu(out, options(0.25f, 0.7f), "conf 0.25");
    expect_gpu_matches_cpu(out, options(0.001f, 0.7f), "conf 0.001");
    expect_gpu_matches_cpu(out, options(0.001f, 0.45f, 300, true), "conf 0.001 agnostic");
    PredictOptions filtered = options(0.05f, 0.6f);
    filtered.classes = {0, 2, 79, 100};
    expect_gpu_matches_cpu(out, filtered, "classes");
    // A batch gives each image what it gets alone (and a larger pipeline capacity changes nothing).
    auto batch = gpu_detections(out, options(0.01f, 0.7f), 5);
    for (int i = 0; i < 3; ++i) {
        Output one(1, 80, 8400);
        std::copy_n(out.data.begin() + static_cast<std::ptrdiff_t>(i) * 84 * 8400, 84 * 8400, one.data.begin());
        expect_same(batch[static_cast<size_t>(i)], gpu_detections(one, options(0.01f, 0.7f))[0],
                    "batch vs alone, image " + std::to_string(i));
    }
}

TEST_F(GpuNms, MoreThanMaxNmsCandidates) {
    // 40000 candidates: the CPU keeps the best 30000 (stable order) before NMS; so must the GPU.
    test::Rng rng;
    SCOPED_TRACE(rng.trace());
    Output out(1, 2, 40000);
    for (int a = 0; a < 40000; ++a) {
        out.set_box(0, a, rng.uniform(0, 1280), rng.uniform(0, 1280), rng.uniform(4, 60), rng.uniform(4, 60));
        out.at(0, 4 + (a & 1), a) = 0.3f + 0.0001f * static_cast<float>(rng.uniform_int(0, 6000));
    }
    expect_gpu_matches_cpu(out, options(0.25f, 0.7f, 300), "40000 candidates");
    expect_gpu_matches_cpu(out, options(0.25f, 0.2f, 5000, true), "40000 candidates, agnostic, max_det 5000");
}

TEST_F(GpuNms, RejectsBadArguments) {
    EXPECT_THROW(DetectPostprocess(0, 84, 8400, 80), Error);
    EXPECT_THROW(DetectPostprocess(1, 83, 8400, 80), Error);
    DetectPostprocess post(2, 84, 100, 80);
    EXPECT_THROW(post.run(nullptr, 3, NmsOptions{}, {}, nullptr), Error);
}

// yolov8n's real output, from the CPU engine (independent of every CUDA kernel), for each image.
TEST_F(GpuNms, RealModelOutputMatchesCpu) {
    auto engine = Engine::load(test::shared_file("models/yolov8n.onnx"));
    ASSERT_TRUE(engine.ok()) << engine.status().message();
    auto session = Session::create(engine.value());
    ASSERT_TRUE(session.ok()) << session.status().message();
    const auto& shape = engine->info().outputs.at(0).shape;
    ASSERT_EQ(shape.size(), 3u);
    Output out(2, static_cast<int>(shape[1]) - 4, static_cast<int>(shape[2]));
    const int h = engine->info().imgsz[0], w = engine->info().imgsz[1];
    std::vector<float> input(3 * static_cast<size_t>(h) * w);
    int image = 0;
    for (const char* name : {"bus.jpg", "zidane.jpg"}) {
        yolo::letterbox_to_tensor(yolo::read_image(test::shared_file(std::string("images/") + name)), h, w,
                                  input.data());
        std::vector<std::vector<float>> outputs;
        ASSERT_TRUE(session->run(input.data(), 1, &outputs).ok());
        ASSERT_EQ(outputs[0].size(), static_cast<size_t>(out.channels()) * out.anchors);
        std::copy(outputs[0].begin(), outputs[0].end(),
                  out.data.begin() + static_cast<std::ptrdiff_t>(image++) * out.channels() * out.anchors);
    }
    expect_gpu_matches_cpu(out, options(0.25f, 0.7f), "predict defaults");
    expect_gpu_matches_cpu(out, options(0.001f, 0.7f), "val thresholds");
    expect_gpu_matches_cpu(out, options(0.001f, 0.5f, 5, true), "agnostic, max_det 5");
    PredictOptions persons = options(0.25f, 0.45f);
    persons.classes = {0};
    expect_gpu_matches_cpu(out, persons, "classes=0");
    // Not vacuous: bus.jpg has people and a bus at the defaults.
    EXPECT_GE(gpu_detections(out, options(0.25f, 0.7f))[0].size(), 4u);
}

}  // namespace
}  // namespace kestrel::cuda
