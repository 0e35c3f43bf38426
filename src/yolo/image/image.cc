#include "yolo/image/image.h"

#include <png.h>
#include <turbojpeg.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string_view>

#include "core/error.h"
#include "core/logging.h"

namespace kestrel::yolo {
namespace {

// A corrupt header can claim up to 65535 x 65535 pixels (12 GiB as RGB); refuse such sizes before
// allocating rather than let a damaged file exhaust memory. 2^28 pixels is far above any camera.
constexpr int64_t kMaxPixels = int64_t{1} << 28;

[[noreturn]] void fail_read(const std::string& what, std::string_view reason) {
    KS_FAIL("cannot read image '", what, "': ", reason);
}

[[noreturn]] void fail_write(const std::string& path, std::string_view reason) {
    KS_FAIL("cannot write image '", path, "': ", reason);
}

bool has_jpeg_signature(const uint8_t* bytes, size_t size) {
    return size >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF;
}

bool has_png_signature(const uint8_t* bytes, size_t size) {
    static constexpr std::array<uint8_t, 8> kSignature = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    return size >= kSignature.size() && std::equal(kSignature.begin(), kSignature.end(), bytes);
}

Image allocate_rgb(int width, int height, const std::string& what) {
    if (width <= 0 || height <= 0) fail_read(what, "image has zero width or height");
    if (int64_t{width} * height > kMaxPixels) {
        KS_FAIL("cannot read image '", what, "': ", width, "x", height, " pixels is larger than supported");
    }
    Image image;
    image.width = width;
    image.height = height;
    image.data.resize(static_cast<size_t>(width) * height * 3);
    return image;
}

// ---------------------------------------------------------------------------------------------- JPEG

struct TjDestroy {
    void operator()(void* handle) const { tjDestroy(handle); }
};
using TjHandle = std::unique_ptr<void, TjDestroy>;

// libjpeg's JWRN_JPEG_EOF: the data ended before the image did.
constexpr std::string_view kPrematureEnd = "Premature end of JPEG file";

struct TjFree {
    void operator()(unsigned char* buffer) const { tjFree(buffer); }
};

// Converts Adobe (inverted) CMYK, as libjpeg returns it, to RGB with OpenCV's formula
// (icvCvt_CMYK2BGR_8u_C4C3R) so that CMYK JPEGs decode to the pixels cv2.imread gives.
void cmyk_to_rgb(const std::vector<uint8_t>& cmyk, Image& image) {
    const size_t pixels = static_cast<size_t>(image.width) * image.height;
    for (size_t i = 0; i < pixels; ++i) {
        const int k = cmyk[i * 4 + 3];
        for (int c = 0; c < 3; ++c) {
            const int ink = cmyk[i * 4 + c];
            image.data[i * 3 + c] = static_cast<uint8_t>(k - ((255 - ink) * k >> 8));
        }
    }
}

Image decode_jpeg(const uint8_t* bytes, size_t size, const std::string& what) {
    TjHandle tj(tjInitDecompress());
    if (!tj) fail_read(what, "cannot initialise libturbojpeg");

    int width = 0, height = 0, subsampling = 0, colorspace = 0;
    const int header_status = tjDecompressHeader3(tj.get(), bytes, size, &width, &height, &subsampling, &colorspace);
    if (width <= 0 || height <= 0) {
        // libturbojpeg 2.1 reports success with a zero size for a stream without a frame (tables only),
        // and also when the data ends before the frame header, leaving only a warning behind. Its error
        // string is only current when this call failed or warned.
        const bool warned = tjGetErrorCode(tj.get()) == TJERR_WARNING;
        const std::string message = header_status != 0 || warned ? tjGetErrorStr2(tj.get()) : "no image in the data";
        if (message.starts_with(kPrematureEnd)) fail_read(what, "truncated JPEG data");
        KS_FAIL("cannot read image '", what, "': corrupt JPEG data (", message, ")");
    }
    Image image = allocate_rgb(width, height, what);

    // libjpeg cannot convert CMYK to RGB itself, so those are decoded as CMYK and converted here.
    const bool cmyk = colorspace == TJCS_CMYK || colorspace == TJCS_YCCK;
    std::vector<uint8_t> cmyk_pixels(cmyk ? image.data.size() / 3 * 4 : 0);
    // ACCURATEDCT (islow IDCT) without FASTUPSAMPLE is libjpeg's default, which cv2.imread uses: the
    // pixels match OpenCV's. LIMITSCANS rejects progressive files built to take minutes to decode.
    auto decompress = [&](int extra_flags) {
        const int flags = TJFLAG_ACCURATEDCT | TJFLAG_LIMITSCANS | extra_flags;
        return cmyk
                   ? tjDecompress2(tj.get(), bytes, size, cmyk_pixels.data(), width, width * 4, height, TJPF_CMYK,
                                   flags)
                   : tjDecompress2(tj.get(), bytes, size, image.data.data(), width, width * 3, height, TJPF_RGB, flags);
    };
    // libturbojpeg 2.x reports TJERR_WARNING whenever a warning came first, even when a fatal error
    // followed, so a first pass stopping at the first problem tells a fatal error from a warning.
    if (decompress(TJFLAG_STOPONWARNING) != 0) {
        const std::string first_problem = tjGetErrorStr2(tj.get());
        if (tjGetErrorCode(tj.get()) == TJERR_FATAL) {
            KS_FAIL("cannot read image '", what, "': corrupt JPEG data (", first_problem, ")");
        }
        // Running out of data makes libjpeg fill the missing rows with grey: a truncated file is an
        // error, not an image. After other warnings (extraneous bytes before a marker, a damaged
        // entropy-coded segment) libjpeg still delivers every row, as cv2.imread would.
        if (first_problem.starts_with(kPrematureEnd)) fail_read(what, "truncated JPEG data");
        // libjpeg reports only its first warning, so any other message after decoding through the
        // warnings is the fatal error that ended the decode.
        if (decompress(0) != 0 && first_problem != tjGetErrorStr2(tj.get())) {
            KS_FAIL("cannot read image '", what, "': corrupt JPEG data (", tjGetErrorStr2(tj.get()), ")");
        }
        log_warning("image '" + what + "': " + first_problem + " (decoded anyway)");
    }
    if (cmyk) cmyk_to_rgb(cmyk_pixels, image);
    return image;
}

// ----------------------------------------------------------------------------------------------- PNG

struct PngSource {
    const uint8_t* bytes;
    size_t size;
    size_t offset;
};

struct PngError {
    char message[200];
};

void read_png_bytes(png_structp png, png_bytep out, size_t count) {
    auto* source = static_cast<PngSource*>(png_get_io_ptr(png));
    if (count > source->size - source->offset) png_error(png, "truncated PNG data");
    std::memcpy(out, source->bytes + source->offset, count);
    source->offset += count;
}

void record_png_error(png_structp png, png_const_charp message) {
    auto* error = static_cast<PngError*>(png_get_error_ptr(png));
    std::snprintf(error->message, sizeof(error->message), "%s", message);
    png_longjmp(png, 1);
}

// Warnings concern ancillary data (e.g. an sRGB profile libpng thinks is wrong); the pixels are fine.
void ignore_png_warning(png_structp, png_const_charp) {}

// Decodes with libpng, which reports errors by longjmp back into this function. Only the libpng structs
// and caller-owned objects are touched between setjmp and a possible longjmp, so no destructor is skipped.
// Returns false with `error` filled on failure.
bool read_png(png_structp png, png_infop info, PngSource& source, Image& image, std::vector<png_bytep>& rows,
              PngError& error, const std::string& what) {
    if (setjmp(png_jmpbuf(png))) return false;
    png_set_read_fn(png, &source, read_png_bytes);
    png_read_info(png, info);

    // The same transformations as OpenCV's PngDecoder for IMREAD_COLOR: 16-bit keeps its high byte,
    // alpha is dropped (not composited), palette and gray expand to RGB; no gamma correction.
    const int color_type = png_get_color_type(png, info);
    if (png_get_bit_depth(png, info) == 16) png_set_strip_16(png);
    png_set_strip_alpha(png);
    if (color_type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if ((color_type & PNG_COLOR_MASK_COLOR) == 0) {
        png_set_expand_gray_1_2_4_to_8(png);
        png_set_gray_to_rgb(png);
    }
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8) {
        std::snprintf(error.message, sizeof(error.message), "unsupported PNG pixel format");
        return false;
    }

    // libpng guarantees both are below 2^31.
    image = allocate_rgb(static_cast<int>(png_get_image_width(png, info)),
                         static_cast<int>(png_get_image_height(png, info)), what);
    rows.resize(static_cast<size_t>(image.height));
    for (int y = 0; y < image.height; ++y) rows[static_cast<size_t>(y)] = image.pixel(0, y);
    png_read_image(png, rows.data());
    png_read_end(png, nullptr);
    return true;
}

Image decode_png(const uint8_t* bytes, size_t size, const std::string& what) {
    PngError error{};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &error, record_png_error, ignore_png_warning);
    if (png == nullptr) fail_read(what, "cannot initialise libpng");
    png_infop info = png_create_info_struct(png);
    if (info == nullptr) {
        png_destroy_read_struct(&png, nullptr, nullptr);
        fail_read(what, "cannot initialise libpng");
    }
    PngSource source{bytes, size, 0};
    Image image;
    std::vector<png_bytep> rows;
    bool ok = false;
    try {
        ok = read_png(png, info, source, image, rows, error, what);
    } catch (...) {
        png_destroy_read_struct(&png, &info, nullptr);
        throw;
    }
    png_destroy_read_struct(&png, &info, nullptr);
    if (!ok) KS_FAIL("cannot read image '", what, "': corrupt PNG data (", error.message, ")");
    return image;
}

}  // namespace

Image decode_image(const uint8_t* bytes, size_t size, const std::string& what) {
    if (size == 0) fail_read(what, "zero-byte file");
    if (has_jpeg_signature(bytes, size)) return decode_jpeg(bytes, size, what);
    if (has_png_signature(bytes, size)) return decode_png(bytes, size, what);
    fail_read(what, "not a JPEG or PNG file");
}

Image read_image(const std::string& path) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    if (status.type() == std::filesystem::file_type::not_found) fail_read(path, "file not found");
    if (status.type() == std::filesystem::file_type::directory) fail_read(path, "is a directory");

    std::unique_ptr<FILE, int (*)(FILE*)> file(std::fopen(path.c_str(), "rb"), std::fclose);
    if (!file) fail_read(path, std::strerror(errno));
    std::vector<uint8_t> bytes;
    std::array<uint8_t, 1 << 16> chunk;
    size_t count = 0;
    while ((count = std::fread(chunk.data(), 1, chunk.size(), file.get())) > 0) {
        bytes.insert(bytes.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(count));
    }
    if (std::ferror(file.get())) fail_read(path, std::strerror(errno));
    return decode_image(bytes.data(), bytes.size(), path);
}

void write_jpeg(const std::string& path, const Image& image, int quality) {
    if (image.width <= 0 || image.height <= 0 ||
        image.data.size() != static_cast<size_t>(image.width) * image.height * 3) {
        fail_write(path, "image is empty or its size does not match its pixel data");
    }
    if (quality < 1 || quality > 100)
        KS_FAIL("cannot write image '", path, "': JPEG quality ", quality, " not in 1..100");

    TjHandle tj(tjInitCompress());
    if (!tj) fail_write(path, "cannot initialise libturbojpeg");
    unsigned char* jpeg = nullptr;
    unsigned long jpeg_size = 0;
    // 4:2:0 and the accurate DCT are what cv2.imwrite uses by default.
    const int status = tjCompress2(tj.get(), image.data.data(), image.width, image.width * 3, image.height, TJPF_RGB,
                                   &jpeg, &jpeg_size, TJSAMP_420, quality, TJFLAG_ACCURATEDCT);
    std::unique_ptr<unsigned char, TjFree> owned_jpeg(jpeg);
    if (status != 0) KS_FAIL("cannot write image '", path, "': JPEG encoding failed (", tjGetErrorStr2(tj.get()), ")");

    // Readers never see a half-written file: the bytes go to a temporary file renamed over the target.
    const std::string temporary = path + ".tmp";
    FILE* file = std::fopen(temporary.c_str(), "wb");
    if (file == nullptr) fail_write(path, std::strerror(errno));
    const bool written = std::fwrite(jpeg, 1, jpeg_size, file) == jpeg_size;
    const int write_errno = errno;
    const bool closed = std::fclose(file) == 0;
    if (!written || !closed) {
        std::remove(temporary.c_str());
        fail_write(path, std::strerror(written ? errno : write_errno));
    }
    if (std::rename(temporary.c_str(), path.c_str()) != 0) {
        const int rename_errno = errno;
        std::remove(temporary.c_str());
        fail_write(path, std::strerror(rename_errno));
    }
}

bool has_image_extension(const std::string& path) {
    const std::string extension = std::filesystem::path(path).extension().string();
    if (extension.size() < 2) return false;
    std::string lower;
    for (char c : extension.substr(1)) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    static constexpr std::array<std::string_view, 10> kExtensions = {"bmp", "dng", "jpeg", "jpg",  "mpo",
                                                                     "png", "tif", "tiff", "webp", "pfm"};
    return std::find(kExtensions.begin(), kExtensions.end(), lower) != kExtensions.end();
}

}  // namespace kestrel::yolo
