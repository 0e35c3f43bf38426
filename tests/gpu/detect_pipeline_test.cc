// api::CudaDetectPipeline (images or files -> letterbox kernel -> CUDA inference -> GPU NMS) on
// yolov8n (FP32 CUDA model, heuristic tactics), against the CPU path on the same CUDA inference:
// yolo::letterbox_to_tensor -> CudaSession::run -> yolo::decode_detections.
//   - decoded images (bus.jpg, zidane.jpg, a grey image) as one batch: the same detections (the
//     letterbox is bit-exact and the NMS the CPU's), mapped to original pixels the same way;
//   - JPEG files through nvJPEG: the confident CPU detections found again (same class, IoU >= 0.9,
//     confidence within 0.05): nvJPEG's pixels differ a little from libjpeg-turbo's;
//   - a PNG file goes to the CPU decoder: exactly predict_images' result for its pixels;
//   - one-line errors naming the file for a broken JPEG (no CPU fallback) and a non-image, and for
//     batches outside the profile; CPU engines and other tasks are refused.
// Without a CUDA device the suite skips.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "api/cuda_detect_pipeline.h"
#include "core/error.h"
#include "gpu/gpu_test.h"
#include "ir/graph.h"
#include "onnx/model_importer.h"
#include "passes/pipeline.h"
#include "plan/execution_plan.h"
#include "runtime/cuda_session.h"
#include "yolo/image/image.h"
#include "yolo/preprocess/letterbox.h"
#include "yolo/tasks/postprocess.h"

namespace kestrel::api {
namespace {

constexpr int kMaxBatch = 3;

struct Model {
    std::shared_ptr<const runtime::CudaModel> cuda;
    ModelInfo info;
};

// yolov8n as a CUDA engine would run it, built in memory (tuned, as an export tunes).
const Model& model() {
    static const Model m = [] {
        ir::Graph g = onnx::import_model(test::shared_file("models/yolov8n.onnx"), {});
        passes::run_pipeline(g, nullptr, {.fuse_yolo_decode = true});
        auto plan = std::make_shared<const plan::ExecutionPlan>(
            plan::build(g, plan::PlanOptions{plan::Target::kCuda, kMaxBatch, false}));
        Model r;
        r.cuda = std::make_shared<const runtime::CudaModel>(plan, 0, /*tune=*/true);
        const ir::Value& out = g.value(g.outputs.at(0));
        r.info.task = "detect";
        r.info.device = "cuda:" + runtime::cuda_device_arch(0);
        r.info.min_batch = 1, r.info.max_batch = kMaxBatch;
        const ir::Value& in = g.value(g.inputs.at(0));
        r.info.imgsz = {static_cast<int>(in.shape[2]), static_cast<int>(in.shape[3])};
        r.info.outputs = {TensorInfo{out.name, {kMaxBatch, out.shape[1], out.shape[2]}}};
        return r;
    }();
    return m;
}

ImageRgb load(const char* name) {
    yolo::Image im = yolo::read_image(test::shared_file(std::string("images/") + name));
    return ImageRgb{im.width, im.height, std::move(im.data)};
}

// The CPU path around the same CUDA inference, as Predictor runs it.
std::vector<std::vector<Detection>> reference(const std::vector<const ImageRgb*>& images, const PredictOptions& opt) {
    const Model& m = model();
    runtime::CudaSession session(m.cuda);
    const int h = m.info.imgsz[0], w = m.info.imgsz[1];
    const size_t per_image = 3 * static_cast<size_t>(h) * w;
    std::vector<float> input(per_image * images.size());
    std::vector<yolo::LetterboxTransform> t;
    for (size_t i = 0; i < images.size(); ++i)
        t.push_back(yolo::letterbox_to_tensor(yolo::Image{images[i]->width, images[i]->height, images[i]->pixels}, h, w,
                                              input.data() + i * per_image));
    const auto& shape = m.info.outputs[0].shape;
    yolo::DecodeLayout layout;
    layout.channels = static_cast<int>(shape[1]);
    layout.anchors = static_cast<int>(shape[2]);
    layout.num_classes = layout.channels - 4;
    std::vector<float> out(images.size() * static_cast<size_t>(layout.channels) * layout.anchors);
    session.run(input.data(), static_cast<int>(images.size()), {out.data()});
    std::vector<std::vector<Detection>> dets;
    for (size_t i = 0; i < images.size(); ++i)
        dets.push_back(yolo::decode_detections(out.data() + i * layout.channels * layout.anchors, layout, opt, t[i],
                                               images[i]->width, images[i]->height));
    return dets;
}

void expect_same(const std::vector<Detection>& got, const std::vector<Detection>& want, const std::string& what) {
    SCOPED_TRACE(what);
    ASSERT_EQ(got.size(), want.size());
    auto near = [](float a, float b) { return std::abs(a - b) <= 1e-4f * std::max(1.f, std::abs(b)); };
    for (size_t k = 0; k < want.size(); ++k) {
        EXPECT_EQ(got[k].class_id, want[k].class_id) << k;
        EXPECT_TRUE(near(got[k].confidence, want[k].confidence)) << k;
        EXPECT_TRUE(near(got[k].box.x1, want[k].box.x1) && near(got[k].box.y1, want[k].box.y1) &&
                    near(got[k].box.x2, want[k].box.x2) && near(got[k].box.y2, want[k].box.y2))
            << k << ": (" << got[k].box.x1 << ", " << got[k].box.y1 << ", " << got[k].box.x2 << ", " << got[k].box.y2
            << ") vs (" << want[k].box.x1 << ", " << want[k].box.y1 << ", " << want[k].box.x2 << ", " << want[k].box.y2
            << ")";
    }
}

float box_iou(const Box& a, const Box& b) {
    const float iw = std::max(0.f, std::min(a.x2, b.x2) - std::max(a.x1, b.x1));
    const float ih = std::max(0.f, std::min(a.y2, b.y2) - std::max(a.y1, b.y1));
    const float inter = iw * ih;
    return inter / ((a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter);
}

// A PNG of the image (8-bit RGB, no filtering), to send a non-JPEG file through the pipeline.
std::vector<uint8_t> encode_png(const ImageRgb& im) {
    std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    auto be32 = [](std::vector<uint8_t>& v, uint32_t x) {
        for (int s = 24; s >= 0; s -= 8) v.push_back(static_cast<uint8_t>(x >> s));
    };
    auto chunk = [&](const char* type, const std::vector<uint8_t>& data) {
        be32(png, static_cast<uint32_t>(data.size()));
        std::vector<uint8_t> body(type, type + 4);
        body.insert(body.end(), data.begin(), data.end());
        png.insert(png.end(), body.begin(), body.end());
        be32(png, static_cast<uint32_t>(crc32(0, body.data(), static_cast<uInt>(body.size()))));
    };
    std::vector<uint8_t> header;
    be32(header, static_cast<uint32_t>(im.width));
    be32(header, static_cast<uint32_t>(im.height));
    header.insert(header.end(), {8, 2, 0, 0, 0});  // 8 bits, RGB, deflate, no filter method, no interlace
    chunk("IHDR", header);
    std::vector<uint8_t> raw;
    const size_t row = static_cast<size_t>(im.width) * 3;
    for (int y = 0; y < im.height; ++y) {
        raw.push_back(0);
        raw.insert(raw.end(), im.pixels.begin() + static_cast<std::ptrdiff_t>(y * row),
                   im.pixels.begin() + static_cast<std::ptrdiff_t>((y + 1) * row));
    }
    uLongf size = compressBound(static_cast<uLong>(raw.size()));
    std::vector<uint8_t> z(size);
    EXPECT_EQ(compress(z.data(), &size, raw.data(), static_cast<uLong>(raw.size())), Z_OK);
    z.resize(size);
    chunk("IDAT", z);
    chunk("IEND", {});
    return png;
}

class DetectPipeline : public ::testing::Test {
   protected:
    void SetUp() override {
        if (!test::gpu_available()) GTEST_SKIP() << "no CUDA device";
    }
};

TEST_F(DetectPipeline, ImagesMatchCpuPrePostProcessing) {
    const ImageRgb bus = load("bus.jpg"), zidane = load("zidane.jpg");
    ImageRgb grey{300, 200, std::vector<uint8_t>(300 * 200 * 3, 114)};
    CudaDetectPipeline pipe(model().cuda, model().info);
    for (const PredictOptions& opt : {PredictOptions{}, PredictOptions{0.001f, 0.6f, 100, {}, false, false, false},
                                      PredictOptions{0.25f, 0.45f, 300, {0, 5}, true, false, false}}) {
        const std::vector<const ImageRgb*> images = {&bus, &zidane, &grey};
        auto got = pipe.predict_images(images, opt);
        auto want = reference(images, opt);
        ASSERT_EQ(got.size(), 3u);
        for (size_t i = 0; i < 3; ++i) {
            EXPECT_EQ(got[i].width, images[i]->width);
            EXPECT_EQ(got[i].height, images[i]->height);
            expect_same(got[i].detections, want[i], "image " + std::to_string(i) + " conf " + std::to_string(opt.conf));
        }
        if (opt.conf == 0.25f && opt.classes.empty()) {
            EXPECT_GE(got[0].detections.size(), 4u);  // people and a bus
            EXPECT_TRUE(got[2].detections.empty());
        }
    }
    // A smaller batch after a larger one, and the same image again: slots and buffers are reused.
    auto again = pipe.predict_images({&zidane}, PredictOptions{});
    expect_same(again[0].detections, reference({&zidane}, PredictOptions{})[0], "zidane alone");
}

TEST_F(DetectPipeline, JpegFilesThroughNvjpeg) {
    const ImageRgb bus = load("bus.jpg"), zidane = load("zidane.jpg");
    const std::vector<std::vector<uint8_t>> files = {test::read_file_bytes(test::shared_file("images/bus.jpg")),
                                                     test::read_file_bytes(test::shared_file("images/zidane.jpg"))};
    CudaDetectPipeline pipe(model().cuda, model().info);
    auto got = pipe.predict_files(files, {"bus.jpg", "zidane.jpg"}, PredictOptions{});
    auto want = reference({&bus, &zidane}, PredictOptions{});
    ASSERT_EQ(got.size(), 2u);
    for (size_t i = 0; i < 2; ++i) {
        SCOPED_TRACE(i == 0 ? "bus.jpg" : "zidane.jpg");
        EXPECT_EQ(got[i].width, i == 0 ? bus.width : zidane.width);
        EXPECT_EQ(got[i].height, i == 0 ? bus.height : zidane.height);
        std::printf("[ nvJPEG   ] %s: %zu detections (CPU decode: %zu)\n", i == 0 ? "bus.jpg" : "zidane.jpg",
                    got[i].detections.size(), want[i].size());
        int confident = 0;
        for (const Detection& w : want[i]) {
            if (w.confidence < 0.5f) continue;
            ++confident;
            bool found = false;
            for (const Detection& g : got[i].detections)
                found |= g.class_id == w.class_id && box_iou(g.box, w.box) >= 0.9f &&
                         std::abs(g.confidence - w.confidence) <= 0.05f;
            EXPECT_TRUE(found) << "class " << w.class_id << " conf " << w.confidence << " at (" << w.box.x1 << ", "
                               << w.box.y1 << ", " << w.box.x2 << ", " << w.box.y2 << ")";
        }
        EXPECT_GE(confident, 2);
    }
}

TEST_F(DetectPipeline, PngGoesToCpuDecoder) {
    const ImageRgb bus = load("bus.jpg");
    const std::vector<uint8_t> png = encode_png(bus);
    CudaDetectPipeline pipe(model().cuda, model().info);
    auto from_file = pipe.predict_files({png}, {"bus.png"}, PredictOptions{});
    auto from_pixels = pipe.predict_images({&bus}, PredictOptions{});
    ASSERT_EQ(from_file.size(), 1u);
    EXPECT_GE(from_pixels[0].detections.size(), 4u);
    expect_same(from_file[0].detections, from_pixels[0].detections, "bus.png");
}

TEST_F(DetectPipeline, OneLineErrors) {
    CudaDetectPipeline pipe(model().cuda, model().info);
    auto expect_error = [&](const std::vector<uint8_t>& bytes, const std::string& name, const char* expect) {
        try {
            pipe.predict_files({bytes}, {name}, PredictOptions{});
            ADD_FAILURE() << name << " was accepted";
        } catch (const Error& e) {
            const std::string m = e.what();
            EXPECT_NE(m.find(name), std::string::npos) << m;
            EXPECT_NE(m.find(expect), std::string::npos) << m;
            EXPECT_EQ(m.find('\n'), std::string::npos) << m;
        }
    };
    std::vector<uint8_t> junk = {0xFF, 0xD8, 0xFF, 0xE0};
    for (int i = 0; i < 500; ++i) junk.push_back(static_cast<uint8_t>(i * 37));
    expect_error(junk, "broken.jpg", "nvJPEG");  // a JPEG nvJPEG cannot read: an error, no CPU fallback
    expect_error({'h', 'e', 'l', 'l', 'o'}, "notes.txt", "notes.txt");
    expect_error({}, "empty.jpg", "empty.jpg");
    const ImageRgb bus = load("bus.jpg");
    EXPECT_THROW(pipe.predict_images({&bus, &bus, &bus, &bus}, PredictOptions{}), Error);  // > max batch
    EXPECT_THROW(pipe.predict_images({}, PredictOptions{}), Error);
    PredictOptions multi;
    multi.multi_label = true;
    EXPECT_THROW(pipe.predict_images({&bus}, multi), Error);
    // The pipeline still works after errors.
    EXPECT_GE(pipe.predict_images({&bus}, PredictOptions{})[0].detections.size(), 4u);
}

TEST_F(DetectPipeline, RefusesCpuEnginesAndOtherTasks) {
    auto cpu = Engine::build(test::shared_file("models/yolov8n.onnx"), BuildOptions{});
    ASSERT_TRUE(cpu.ok()) << cpu.status().message();
    EXPECT_THROW(CudaDetectPipeline::open(cpu.value()), Error);
    ModelInfo pose = model().info;
    pose.task = "pose";
    EXPECT_THROW(CudaDetectPipeline(model().cuda, pose), Error);
}

}  // namespace
}  // namespace kestrel::api
