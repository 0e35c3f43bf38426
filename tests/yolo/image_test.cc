// Image decoding and encoding: pixels equal to cv2.imread's on the sample images, one-line errors for
// every kind of bad input, and no crash on truncated or corrupted bytes.
#include "yolo/image/image.h"

#include <gtest/gtest.h>
#include <png.h>
#include <turbojpeg.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "golden_data.h"

namespace kestrel::yolo {
namespace {

namespace fs = std::filesystem;

// Collects what the code under test logs to std::cerr while it lives.
class CaptureStderr {
   public:
    CaptureStderr() : previous_(std::cerr.rdbuf(captured_.rdbuf())) {}
    ~CaptureStderr() { std::cerr.rdbuf(previous_); }
    std::string text() const { return captured_.str(); }

   private:
    std::ostringstream captured_;
    std::streambuf* previous_;
};

std::vector<uint8_t> read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string temp_path(const std::string& name) {
    const fs::path dir = fs::path(::testing::TempDir()) / ("kestrel_image_test_" + std::to_string(::getpid()));
    fs::create_directories(dir);
    return (dir / name).string();
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

// The message of the kestrel::Error that reading `path` throws; fails the test if none is thrown.
std::string read_error(const std::string& path) {
    try {
        read_image(path);
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << "no error reading " << path;
    return {};
}

std::string decode_error(const std::vector<uint8_t>& bytes) {
    try {
        decode_image(bytes.data(), bytes.size(), "memory.jpg");
    } catch (const Error& e) {
        return e.what();
    }
    ADD_FAILURE() << "no error decoding " << bytes.size() << " bytes";
    return {};
}

std::vector<uint8_t> encode_jpeg(const std::vector<uint8_t>& pixels, int width, int height, int pixel_format,
                                 int subsampling, int flags = 0) {
    std::unique_ptr<void, int (*)(tjhandle)> tj(tjInitCompress(), tjDestroy);
    unsigned char* jpeg = nullptr;
    unsigned long size = 0;
    const int pitch = width * tjPixelSize[pixel_format];
    EXPECT_EQ(0, tjCompress2(tj.get(), pixels.data(), width, pitch, height, pixel_format, &jpeg, &size, subsampling, 95,
                             flags));
    std::vector<uint8_t> bytes(jpeg, jpeg + size);
    tjFree(jpeg);
    return bytes;
}

// Writes a PNG with libpng's simplified API in the given format (gray, alpha, 16-bit, colormapped...).
std::vector<uint8_t> encode_png(png_uint_32 format, int width, int height, const void* pixels,
                                const std::vector<uint8_t>& colormap = {}) {
    png_image image{};
    image.version = PNG_IMAGE_VERSION;
    image.width = static_cast<png_uint_32>(width);
    image.height = static_cast<png_uint_32>(height);
    image.format = format;
    image.colormap_entries = static_cast<png_uint_32>(colormap.size() / 3);
    png_alloc_size_t size = 0;
    const void* map = colormap.empty() ? nullptr : colormap.data();
    EXPECT_TRUE(png_image_write_to_memory(&image, nullptr, &size, 0, pixels, 0, map)) << image.message;
    std::vector<uint8_t> bytes(size);
    EXPECT_TRUE(png_image_write_to_memory(&image, bytes.data(), &size, 0, pixels, 0, map)) << image.message;
    bytes.resize(size);
    return bytes;
}

class DecodeGolden : public ::testing::TestWithParam<testing::GoldenCase> {};

TEST_P(DecodeGolden, PixelsEqualOpenCvImread) {
    const testing::GoldenCase& c = GetParam();
    const Image image = testing::golden_source(c);
    const auto [width, height] = testing::parse_pair(c.field("size"));
    ASSERT_EQ(image.width, width);
    ASSERT_EQ(image.height, height);
    EXPECT_TRUE(testing::matches_golden(c, image.data.data(), image.data.size()));
}

INSTANTIATE_TEST_SUITE_P(OpenCv, DecodeGolden, ::testing::ValuesIn(testing::golden_cases_for("decode")),
                         testing::case_test_name);

TEST(ReadImage, BusIs810By1080) {
    const Image bus = read_image(testing::shared_image("bus.jpg"));
    EXPECT_EQ(bus.width, 810);
    EXPECT_EQ(bus.height, 1080);
    EXPECT_EQ(bus.data.size(), 810u * 1080u * 3u);
    const std::vector<uint8_t> bytes = read_bytes(testing::shared_image("bus.jpg"));
    EXPECT_EQ(decode_image(bytes.data(), bytes.size(), "bus.jpg").data, bus.data);
}

TEST(ReadImage, ErrorsAreOneLineAndNameTheFile) {
    const std::string missing = temp_path("missing.jpg");
    const std::string empty = temp_path("empty.jpg");
    const std::string text = temp_path("notes.jpg");
    const std::string truncated = temp_path("truncated.jpg");
    write_bytes(empty, {});
    const std::string words = "this is not an image\n";
    write_bytes(text, std::vector<uint8_t>(words.begin(), words.end()));
    std::vector<uint8_t> bus = read_bytes(testing::shared_image("bus.jpg"));
    bus.resize(1000);
    write_bytes(truncated, bus);

    const std::vector<std::pair<std::string, std::string>> cases = {
        {missing, "file not found"},
        {empty, "zero-byte file"},
        {text, "not a JPEG or PNG file"},
        {truncated, "truncated JPEG data"},
        {fs::path(empty).parent_path().string(), "is a directory"}};
    for (const auto& [path, reason] : cases) {
        const std::string message = read_error(path);
        EXPECT_EQ(message, "cannot read image '" + path + "': " + reason);
        EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    }
}

TEST(DecodeImage, BadJpegHeadersAreErrors) {
    const std::string prefix = "cannot read image 'memory.jpg': ";
    EXPECT_EQ(decode_error({0xFF, 0xD8, 0xFF, 0xC0, 0x00, 0x02, 0xFF, 0xD9}),
              prefix + "corrupt JPEG data (Bogus marker length)");
    EXPECT_EQ(decode_error({0xFF, 0xD8, 0xFF, 0xD9}), prefix + "corrupt JPEG data (no image in the data)");
    EXPECT_EQ(decode_error({0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x02, 0x12}), prefix + "truncated JPEG data");
}

TEST(DecodeImage, CorruptPngIsAnError) {
    const uint8_t gray[4] = {1, 2, 3, 4};
    std::vector<uint8_t> png = encode_png(PNG_FORMAT_GRAY, 2, 2, gray);
    png[20] ^= 0xFF;  // inside IHDR: its CRC no longer matches
    EXPECT_EQ(decode_error(png).rfind("cannot read image 'memory.jpg': corrupt PNG data (", 0), 0u);
}

TEST(DecodeImage, NeverCrashesOnTruncatedOrDamagedData) {
    // Run under ASan/UBSan this is the robustness check: every prefix length class and scattered byte
    // damage either decodes or throws kestrel::Error.
    const CaptureStderr quiet;  // damaged JPEGs that still decode log a warning each
    const std::vector<uint8_t> jpeg = read_bytes(testing::shared_image("zidane.jpg"));
    std::vector<uint8_t> pixels(64 * 48 * 3);
    for (size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<uint8_t>(i * 7);
    const std::vector<uint8_t> png = encode_png(PNG_FORMAT_RGB, 64, 48, pixels.data());
    for (const std::vector<uint8_t>* original : {&jpeg, &png}) {
        std::vector<size_t> lengths = {1, 2, 3, 4, 8, 9, 16, 33, 50, 100, 200, 400, 700};
        for (size_t n = 1000; n < original->size(); n += original->size() / 23) lengths.push_back(n);
        lengths.push_back(original->size() - 1);
        for (size_t length : lengths) {
            if (length > original->size()) continue;
            std::vector<uint8_t> prefix(original->begin(), original->begin() + static_cast<std::ptrdiff_t>(length));
            try {
                decode_image(prefix.data(), prefix.size(), "prefix");
            } catch (const Error&) {
            }
        }
        uint32_t state = 12345;
        for (int trial = 0; trial < 40; ++trial) {
            std::vector<uint8_t> damaged = *original;
            for (int k = 0; k < 1 + trial % 5; ++k) {
                state = state * 1664525u + 1013904223u;
                damaged[2 + state % (damaged.size() - 2)] = static_cast<uint8_t>(state >> 24);
            }
            try {
                const Image image = decode_image(damaged.data(), damaged.size(), "damaged");
                EXPECT_EQ(image.data.size(), static_cast<size_t>(image.width) * image.height * 3);
            } catch (const Error&) {
            }
        }
    }
}

TEST(DecodeImage, JpegWithAWarningStillDecodes) {
    // Junk before the first DHT marker: libjpeg warns "Corrupt JPEG data: 2 extraneous bytes before
    // marker 0xc4", skips it and decodes every pixel.
    const std::vector<uint8_t> original = read_bytes(testing::shared_image("bus.jpg"));
    std::vector<uint8_t> damaged = original;
    for (size_t i = 0; i + 1 < damaged.size(); ++i) {
        if (damaged[i] == 0xFF && damaged[i + 1] == 0xC4) {
            damaged.insert(damaged.begin() + static_cast<std::ptrdiff_t>(i), {0x12, 0x34});
            break;
        }
    }
    ASSERT_EQ(damaged.size(), original.size() + 2);
    const Image expected = decode_image(original.data(), original.size(), "bus.jpg");
    const CaptureStderr log;
    EXPECT_EQ(decode_image(damaged.data(), damaged.size(), "damaged.jpg").data, expected.data);
    EXPECT_NE(log.text().find("image 'damaged.jpg': Corrupt JPEG data: 2 extraneous bytes before marker 0xc4"),
              std::string::npos)
        << log.text();
}

TEST(DecodeImage, FatalErrorAfterAWarningIsStillAnError) {
    // libturbojpeg 2.x calls any failure a warning once a warning has been issued; the decoder must not
    // return the half-decoded image. Junk before the DQT marker warns, a bad second progressive scan
    // header is fatal.
    const Image noise = testing::random_image(64, 64, 4);
    std::vector<uint8_t> jpeg = encode_jpeg(noise.data, 64, 64, TJPF_RGB, TJSAMP_420, TJFLAG_PROGRESSIVE);
    std::vector<size_t> scans;
    for (size_t i = 0; i + 1 < jpeg.size(); ++i) {
        if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xDA) scans.push_back(i);
    }
    ASSERT_GE(scans.size(), 2u);
    const size_t components = jpeg[scans[1] + 4];
    jpeg[scans[1] + 5 + 2 * components] = 0x50;  // Ss > 63
    for (size_t i = 0; i + 1 < jpeg.size(); ++i) {
        if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xDB) {
            jpeg.insert(jpeg.begin() + static_cast<std::ptrdiff_t>(i), {0x12, 0x34});
            break;
        }
    }
    const std::string message = decode_error(jpeg);
    EXPECT_EQ(message.rfind("cannot read image 'memory.jpg': corrupt JPEG data (Invalid progressive parameters", 0), 0u)
        << message;
}

TEST(DecodeImage, GrayJpegBecomesRgb) {
    std::vector<uint8_t> gray(16 * 8);
    for (size_t i = 0; i < gray.size(); ++i) gray[i] = static_cast<uint8_t>(i * 2);
    const std::vector<uint8_t> jpeg = encode_jpeg(gray, 16, 8, TJPF_GRAY, TJSAMP_GRAY);
    const Image image = decode_image(jpeg.data(), jpeg.size(), "gray.jpg");
    ASSERT_EQ(image.width, 16);
    for (int i = 0; i < 16 * 8; ++i) {
        EXPECT_EQ(image.data[i * 3], image.data[i * 3 + 1]);
        EXPECT_EQ(image.data[i * 3], image.data[i * 3 + 2]);
        EXPECT_NEAR(image.data[i * 3], gray[i], 4);
    }
}

TEST(DecodeImage, CmykJpegBecomesRgbAsOpenCv) {
    // Adobe CMYK is stored inverted: (0, 255, 255, 255) is full cyan ink only. OpenCV's conversion
    // gives R = k - (255 - c) * k / 256 = 1, G = B = 255.
    std::vector<uint8_t> cmyk(16 * 16 * 4);
    for (size_t i = 0; i < cmyk.size(); i += 4) {
        cmyk[i] = 0;
        cmyk[i + 1] = cmyk[i + 2] = cmyk[i + 3] = 255;
    }
    const std::vector<uint8_t> jpeg = encode_jpeg(cmyk, 16, 16, TJPF_CMYK, TJSAMP_444);
    const Image image = decode_image(jpeg.data(), jpeg.size(), "cmyk.jpg");
    ASSERT_EQ(image.width, 16);
    EXPECT_NEAR(image.pixel(8, 8)[0], 1, 3);
    EXPECT_NEAR(image.pixel(8, 8)[1], 255, 3);
    EXPECT_NEAR(image.pixel(8, 8)[2], 255, 3);
}

TEST(DecodeImage, PngFormatsBecomeRgb) {
    // 8-bit gray, gray + alpha and RGBA: alpha is dropped, not blended, as cv2.imread does.
    const uint8_t gray[2] = {10, 200};
    Image image = [&] {
        const std::vector<uint8_t> png = encode_png(PNG_FORMAT_GRAY, 2, 1, gray);
        return decode_image(png.data(), png.size(), "gray.png");
    }();
    EXPECT_EQ(image.data, (std::vector<uint8_t>{10, 10, 10, 200, 200, 200}));

    const uint8_t gray_alpha[4] = {10, 0, 200, 128};
    std::vector<uint8_t> png = encode_png(PNG_FORMAT_GA, 2, 1, gray_alpha);
    EXPECT_EQ(decode_image(png.data(), png.size(), "ga.png").data, (std::vector<uint8_t>{10, 10, 10, 200, 200, 200}));

    const uint8_t rgba[8] = {1, 2, 3, 0, 250, 251, 252, 255};
    png = encode_png(PNG_FORMAT_RGBA, 2, 1, rgba);
    EXPECT_EQ(decode_image(png.data(), png.size(), "rgba.png").data, (std::vector<uint8_t>{1, 2, 3, 250, 251, 252}));

    // 16-bit keeps the high byte.
    const uint16_t deep[2] = {0xAB12, 0x01FF};
    png = encode_png(PNG_FORMAT_LINEAR_Y, 2, 1, deep);
    EXPECT_EQ(decode_image(png.data(), png.size(), "16.png").data,
              (std::vector<uint8_t>{0xAB, 0xAB, 0xAB, 0x01, 0x01, 0x01}));

    // Palette.
    const uint8_t indices[3] = {2, 0, 1};
    png = encode_png(PNG_FORMAT_RGB_COLORMAP, 3, 1, indices, {255, 0, 0, 0, 255, 0, 0, 0, 255});
    EXPECT_EQ(decode_image(png.data(), png.size(), "palette.png").data,
              (std::vector<uint8_t>{0, 0, 255, 255, 0, 0, 0, 255, 0}));
}

TEST(WriteJpeg, RoundTripsThroughATemporaryFile) {
    const Image original = read_image(testing::shared_image("zidane.jpg"));
    const std::string path = temp_path("roundtrip.jpg");
    write_jpeg(path, original, 95);
    EXPECT_FALSE(fs::exists(path + ".tmp"));
    const Image again = read_image(path);
    ASSERT_EQ(again.width, original.width);
    ASSERT_EQ(again.height, original.height);
    double total_error = 0;
    for (size_t i = 0; i < original.data.size(); ++i) total_error += std::abs(again.data[i] - original.data[i]);
    EXPECT_LT(total_error / static_cast<double>(original.data.size()), 2.0);
}

TEST(WriteJpeg, ReportsUnwritablePathsAndBadArguments) {
    const Image image = testing::random_image(8, 8, 1);
    const std::string bad = temp_path("no_such_dir") + "/out.jpg";
    try {
        write_jpeg(bad, image);
        ADD_FAILURE() << "no error writing " << bad;
    } catch (const Error& e) {
        EXPECT_EQ(std::string(e.what()), "cannot write image '" + bad + "': No such file or directory");
    }
    EXPECT_THROW(write_jpeg(temp_path("q.jpg"), image, 0), Error);
    EXPECT_THROW(write_jpeg(temp_path("empty.jpg"), Image{}), Error);
}

TEST(HasImageExtension, MatchesUltralyticsFormats) {
    for (const char* name :
         {"a.jpg", "b.JPEG", "dir.v2/c.Png", "d.webp", "e.tif", "f.tiff", "g.bmp", "h.mpo", "i.dng", "j.pfm"}) {
        EXPECT_TRUE(has_image_extension(name)) << name;
    }
    for (const char* name : {"a.txt", "jpg", "dir.jpg/file", "b.", "c.jpg.bak", ".png_x", ""}) {
        EXPECT_FALSE(has_image_extension(name)) << name;
    }
}

}  // namespace
}  // namespace kestrel::yolo
