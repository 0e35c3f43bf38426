// GPU pre-processing against the CPU implementations:
//   - cuda::letterbox_params gives yolo::letterbox's geometry (sizes, pads, ratio) for many sizes;
//   - the letterbox kernel gives yolo::letterbox_to_tensor's floats bit for bit, on bus.jpg and
//     zidane.jpg decoded on the CPU (downscale; zidane's 1280x720 -> 640x360 is OpenCV's exact-2x2
//     path) and on random images of odd sizes (upscale, copy, extreme aspect ratios, 1x1), written
//     into slot i of a poisoned batch buffer: the slot entirely, nothing else;
//   - nvJPEG decodes bus.jpg and zidane.jpg to the CPU decoder's size with pixels a few levels
//     apart (IDCT and chroma upsampling differ; statistics printed), and refuses non-JPEG bytes and
//     a broken JPEG with one-line errors naming the file.
// Without a CUDA device the GPU tests skip.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "backends/cuda/jpeg_decoder.h"
#include "backends/cuda/letterbox.h"
#include "backends/cuda/tensors.h"
#include "common/rng.h"
#include "core/error.h"
#include "gpu/gpu_test.h"
#include "yolo/image/image.h"
#include "yolo/preprocess/letterbox.h"

namespace kestrel::cuda {
namespace {

constexpr uint32_t kPoison = 0x7fc0beefu;  // a NaN no letterbox produces

template <typename T>
struct DeviceArray {
    T* p = nullptr;
    size_t n = 0;  // elements
    explicit DeviceArray(size_t count) : n(count) {
        KS_CUDA(cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(n, 1) * sizeof(T)));
    }
    ~DeviceArray() { cudaFree(p); }
    DeviceArray(const DeviceArray&) = delete;
    DeviceArray& operator=(const DeviceArray&) = delete;
};

yolo::Image random_image(test::Rng& rng, int w, int h) {
    yolo::Image im;
    im.width = w, im.height = h;
    im.data.resize(static_cast<size_t>(w) * h * 3);
    for (auto& v : im.data) v = static_cast<uint8_t>(rng.uniform_int(0, 255));
    return im;
}

// Letterboxes `im` on the GPU into slot `slot` of a 3-image batch buffer and checks it against the
// CPU, bit for bit, and that the other slots keep their poison.
void expect_letterbox_matches_cpu(const yolo::Image& im, int out_h, int out_w, int slot, const std::string& what) {
    SCOPED_TRACE(what + " " + std::to_string(im.width) + "x" + std::to_string(im.height) + " -> " +
                 std::to_string(out_w) + "x" + std::to_string(out_h));
    const size_t per_image = 3 * static_cast<size_t>(out_h) * out_w;
    std::vector<float> cpu(per_image);
    const yolo::LetterboxTransform t = yolo::letterbox_to_tensor(im, out_h, out_w, cpu.data());

    const LetterboxParams p = letterbox_params(im.width, im.height, out_h, out_w);
    EXPECT_EQ(p.ratio, t.scale);
    EXPECT_EQ(p.left, t.pad_left);
    EXPECT_EQ(p.top, t.pad_top);
    EXPECT_EQ(p.new_w, t.new_width);
    EXPECT_EQ(p.new_h, t.new_height);

    DeviceArray<uint8_t> src(im.data.size());
    KS_CUDA(cudaMemcpy(src.p, im.data.data(), im.data.size(), cudaMemcpyHostToDevice));
    DeviceArray<float> dst(3 * per_image);
    std::vector<uint32_t> poison(3 * per_image, kPoison);
    KS_CUDA(cudaMemcpy(dst.p, poison.data(), poison.size() * 4, cudaMemcpyHostToDevice));
    letterbox_to_nchw(src.p, static_cast<int64_t>(im.width) * 3, p, dst.p + slot * per_image, nullptr);
    KS_CUDA(cudaDeviceSynchronize());
    std::vector<float> gpu(3 * per_image);
    KS_CUDA(cudaMemcpy(gpu.data(), dst.p, gpu.size() * 4, cudaMemcpyDeviceToHost));

    size_t mismatches = 0, first = per_image;
    for (size_t i = 0; i < per_image; ++i) {
        if (std::memcmp(&gpu[slot * per_image + i], &cpu[i], 4) != 0) {
            if (mismatches++ == 0) first = i;
        }
    }
    EXPECT_EQ(mismatches, 0u) << "first at element " << first << ": gpu "
                              << (first < per_image ? gpu[slot * per_image + first] : 0.f) << " cpu "
                              << (first < per_image ? cpu[first] : 0.f);
    size_t touched = 0;
    for (int s = 0; s < 3; ++s) {
        if (s == slot) continue;
        for (size_t i = 0; i < per_image; ++i) {
            uint32_t bits;
            std::memcpy(&bits, &gpu[s * per_image + i], 4);
            touched += bits != kPoison;
        }
    }
    EXPECT_EQ(touched, 0u) << "elements written outside slot " << slot;
}

TEST(LetterboxGeometry, MatchesCpuLetterbox) {
    // Host only: the geometry for sizes around every rounding case of the CPU rule.
    for (int w : {1, 2, 3, 17, 320, 639, 640, 641, 810, 1279, 1280, 1920, 4000})
        for (int h : {1, 5, 360, 479, 480, 720, 1080, 1281})
            for (auto [oh, ow] : {std::pair{640, 640}, std::pair{320, 480}, std::pair{384, 640}}) {
                yolo::Image im;
                im.width = w, im.height = h;
                im.data.assign(static_cast<size_t>(w) * h * 3, 0);
                const double r = std::min(static_cast<double>(oh) / h, static_cast<double>(ow) / w);
                if (std::nearbyint(w * r) < 1 || std::nearbyint(h * r) < 1) {
                    EXPECT_THROW(letterbox_params(w, h, oh, ow), Error);
                    continue;
                }
                yolo::LetterboxTransform t;
                yolo::letterbox(im, oh, ow, &t);
                const LetterboxParams p = letterbox_params(w, h, oh, ow);
                EXPECT_EQ(p.ratio, t.scale) << w << "x" << h;
                EXPECT_EQ(p.left, t.pad_left) << w << "x" << h;
                EXPECT_EQ(p.top, t.pad_top) << w << "x" << h;
                EXPECT_EQ(p.new_w, t.new_width) << w << "x" << h;
                EXPECT_EQ(p.new_h, t.new_height) << w << "x" << h;
            }
    EXPECT_EQ(letterbox_params(1280, 720, 640, 640).resize, LetterboxParams::Resize::kHalve);
    EXPECT_EQ(letterbox_params(640, 480, 640, 640).resize, LetterboxParams::Resize::kCopy);
    EXPECT_EQ(letterbox_params(810, 1080, 640, 640).resize, LetterboxParams::Resize::kLinear);
    EXPECT_THROW(letterbox_params(0, 10, 640, 640), Error);
    EXPECT_THROW(letterbox_params(10, 10, 0, 640), Error);
}

TEST(LetterboxKernel, RealImagesMatchCpuExactly) {
    if (!test::gpu_available()) GTEST_SKIP() << "no CUDA device";
    for (const char* name : {"bus.jpg", "zidane.jpg"}) {
        const yolo::Image im = yolo::read_image(test::shared_file(std::string("images/") + name));
        expect_letterbox_matches_cpu(im, 640, 640, 1, name);
        expect_letterbox_matches_cpu(im, 320, 480, 2, name);
        expect_letterbox_matches_cpu(im, 1280, 1280, 0, name);  // upscale
    }
}

TEST(LetterboxKernel, RandomImagesMatchCpuExactly) {
    if (!test::gpu_available()) GTEST_SKIP() << "no CUDA device";
    test::Rng rng;
    SCOPED_TRACE(rng.trace());
    const std::vector<std::pair<int, int>> sizes = {{1, 1},       {7, 3},      {640, 640}, {320, 240},
                                                    {1280, 1280}, {1000, 10},  {10, 1000}, {333, 517},
                                                    {641, 639},   {1281, 719}, {2, 2},     {4000, 3000}};
    int slot = 0;
    for (auto [w, h] : sizes) {
        const yolo::Image im = random_image(rng, w, h);
        expect_letterbox_matches_cpu(im, 640, 640, slot++ % 3, "random");
        expect_letterbox_matches_cpu(im, 256, 416, slot++ % 3, "random");
    }
}

TEST(LetterboxKernel, RejectsShortPitch) {
    const LetterboxParams p = letterbox_params(100, 50, 640, 640);
    EXPECT_THROW(letterbox_to_nchw(nullptr, 299, p, nullptr, nullptr), Error);
}

TEST(JpegDecoder, RecognisesJpegSignature) {
    const uint8_t jpeg[] = {0xFF, 0xD8, 0xFF, 0xE0};
    const uint8_t png[] = {0x89, 'P', 'N', 'G'};
    EXPECT_TRUE(is_jpeg(jpeg, sizeof jpeg));
    EXPECT_FALSE(is_jpeg(jpeg, 2));
    EXPECT_FALSE(is_jpeg(png, sizeof png));
    EXPECT_FALSE(is_jpeg(nullptr, 0));
}

// The decoded pixels at `out` (device, `pitch`-byte rows) against libjpeg-turbo's decode of `path`:
// same picture, other arithmetic: a mean of a few levels at most (the measured values are printed).
void expect_like_cpu_decoder(const uint8_t* out, size_t pitch, const std::string& path, const std::string& label) {
    const yolo::Image cpu = yolo::read_image(path);
    std::vector<uint8_t> gpu(pitch * cpu.height);
    KS_CUDA(cudaMemcpy(gpu.data(), out, gpu.size(), cudaMemcpyDeviceToHost));
    double sum = 0;
    int max_diff = 0;
    size_t over8 = 0;
    for (int y = 0; y < cpu.height; ++y)
        for (int x = 0; x < cpu.width * 3; ++x) {
            const int d =
                std::abs(int{gpu[y * pitch + x]} - int{cpu.data[(static_cast<size_t>(y) * cpu.width * 3) + x]});
            sum += d;
            max_diff = std::max(max_diff, d);
            over8 += d > 8;
        }
    const double n = 3.0 * cpu.width * cpu.height;
    std::printf("[ nvJPEG   ] %s: mean |gpu - cpu| %.3f, max %d, %.3f%% of values off by more than 8\n", label.c_str(),
                sum / n, max_diff, 100.0 * static_cast<double>(over8) / n);
    EXPECT_LT(sum / n, 2.0) << label;
    EXPECT_LT(static_cast<double>(over8) / n, 0.01) << label;
}

TEST(JpegDecoder, DecodesLikeCpuDecoder) {
    if (!test::gpu_available()) GTEST_SKIP() << "no CUDA device";
    JpegDecoder dec;
    for (const char* name : {"bus.jpg", "zidane.jpg"}) {
        SCOPED_TRACE(name);
        const std::string path = test::shared_file(std::string("images/") + name);
        const std::vector<uint8_t> bytes = test::read_file_bytes(path);
        ASSERT_FALSE(bytes.empty()) << path;
        const yolo::Image cpu = yolo::read_image(path);
        const JpegDecoder::Size size = dec.size(bytes.data(), bytes.size(), name);
        ASSERT_EQ(size.width, cpu.width);
        ASSERT_EQ(size.height, cpu.height);
        // A pitch wider than the row: decode must honour it.
        const size_t pitch = static_cast<size_t>(size.width) * 3 + 64;
        DeviceArray<uint8_t> out(pitch * size.height);
        dec.decode(bytes.data(), bytes.size(), name, out.p, pitch, nullptr);
        KS_CUDA(cudaDeviceSynchronize());
        expect_like_cpu_decoder(out.p, pitch, path, name);
    }
}

// A batch (bus.jpg twice, once with a wider pitch, and zidane.jpg) through decode_batch: on GPUs
// with JPEG engines, their batched decode; each image like the CPU decoder's.
TEST(JpegDecoder, DecodesABatchLikeCpuDecoder) {
    if (!test::gpu_available()) GTEST_SKIP() << "no CUDA device";
    JpegDecoder dec;
    cudaDeviceProp prop{};
    KS_CUDA(cudaGetDeviceProperties(&prop, 0));
    const std::string gpu = prop.name;
    std::printf("[ nvJPEG   ] %s: batched decode on %s\n", gpu.c_str(),
                dec.hardware() ? "the hardware JPEG engines" : "the hybrid decoder, one image at a time");
    // The data-centre GPUs with JPEG engines must use them: no silent fallback there.
    for (const char* with_engines : {"A100", "H100", "H200"})
        if (gpu.find(with_engines) != std::string::npos) {
            EXPECT_TRUE(dec.hardware()) << gpu;
        }
    const std::vector<std::string> names = {"bus.jpg", "zidane.jpg", "bus.jpg"};
    std::vector<std::string> paths;
    std::vector<std::vector<uint8_t>> bytes;
    std::vector<std::unique_ptr<DeviceArray<uint8_t>>> outs;
    std::vector<JpegDecoder::Job> jobs;
    for (size_t i = 0; i < names.size(); ++i) {
        paths.push_back(test::shared_file("images/" + names[i]));
        bytes.push_back(test::read_file_bytes(paths.back()));
        ASSERT_FALSE(bytes.back().empty()) << paths.back();
    }
    for (size_t i = 0; i < names.size(); ++i) {
        const JpegDecoder::Size size = dec.size(bytes[i].data(), bytes[i].size(), names[i]);
        const size_t pitch = static_cast<size_t>(size.width) * 3 + (i == 2 ? 96 : 0);
        outs.push_back(std::make_unique<DeviceArray<uint8_t>>(pitch * size.height));
        jobs.push_back({bytes[i].data(), bytes[i].size(), &names[i], outs.back()->p, pitch});
    }
    for (int round = 0; round < 2; ++round) {  // the second batch reuses the initialised batch state
        for (auto& o : outs) KS_CUDA(cudaMemset(o->p, 0, o->n * sizeof(uint8_t)));
        dec.decode_batch(jobs, nullptr);
        KS_CUDA(cudaDeviceSynchronize());
        for (size_t i = 0; i < jobs.size(); ++i)
            expect_like_cpu_decoder(jobs[i].dst, jobs[i].pitch, paths[i],
                                    names[i] + " #" + std::to_string(i) + " round " + std::to_string(round));
    }
    // A batch of one after a batch of three.
    dec.decode_batch({jobs[1]}, nullptr);
    KS_CUDA(cudaDeviceSynchronize());
    expect_like_cpu_decoder(jobs[1].dst, jobs[1].pitch, paths[1], "zidane.jpg alone");
}

TEST(JpegDecoder, RejectsBadInputWithOneLineErrors) {
    if (!test::gpu_available()) GTEST_SKIP() << "no CUDA device";
    JpegDecoder dec;
    auto expect_error = [&](const std::vector<uint8_t>& bytes, const std::string& name) {
        try {
            dec.size(bytes.data(), bytes.size(), name);
            ADD_FAILURE() << name << " was accepted";
        } catch (const Error& e) {
            const std::string m = e.what();
            EXPECT_NE(m.find(name), std::string::npos) << m;
            EXPECT_EQ(m.find('\n'), std::string::npos) << m;
        }
    };
    expect_error({}, "empty.jpg");
    expect_error({0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A}, "image.png");
    std::vector<uint8_t> junk = {0xFF, 0xD8, 0xFF, 0xE0};
    for (int i = 0; i < 200; ++i) junk.push_back(static_cast<uint8_t>(i * 37));
    expect_error(junk, "junk.jpg");
    // The header of a real JPEG cut before its frame header: no size to read.
    std::vector<uint8_t> bus = test::read_file_bytes(test::shared_file("images/bus.jpg"));
    ASSERT_GT(bus.size(), 40u);
    bus.resize(20);
    expect_error(bus, "cut.jpg");
}

}  // namespace
}  // namespace kestrel::cuda
