// Resizing reproduces OpenCV 4.x/5.x imgproc/src/resize.cpp (cv::hal::resize) for 8-bit 3-channel
// images operation for operation, so that the network sees the bytes Ultralytics' Python pipeline
// gives it. Every rounding step below mirrors one in OpenCV; the comments name the OpenCV piece.
// This file is compiled with -ffp-contract=off: a fused multiply-add would round differently.
#include "yolo/preprocess/letterbox.h"

#include <algorithm>
#include <array>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstring>

#include "core/error.h"

namespace kestrel::yolo {
namespace {

constexpr int kCoefBits = 11;  // INTER_RESIZE_COEF_BITS
constexpr int kCoefScale = 1 << kCoefBits;
constexpr uint8_t kPadValue = 114;

// cvRound / saturate_cast from floating point: round half to even (cvtss2si in the default mode).
int round_half_even(float value) { return static_cast<int>(std::lrint(value)); }
int round_half_even(double value) { return static_cast<int>(std::lrint(value)); }

uint8_t saturate_u8(float value) { return static_cast<uint8_t>(std::clamp(round_half_even(value), 0, 255)); }

// The fixed-point weight of one tap: saturate_cast<short>(weight * INTER_RESIZE_COEF_SCALE).
int16_t fixed_weight(float weight) {
    return static_cast<int16_t>(std::clamp(round_half_even(weight * kCoefScale), SHRT_MIN, SHRT_MAX));
}

void check_arguments(const char* operation, const Image& src, int out_w, int out_h) {
    KS_CHECK(src.width > 0 && src.height > 0 && src.data.size() == static_cast<size_t>(src.width) * src.height * 3,
             operation, ": source image is empty or its size does not match its pixel data");
    KS_CHECK(out_w > 0 && out_h > 0, operation, ": output size ", out_w, "x", out_h, " must be positive");
}

Image make_image(int width, int height) {
    Image image;
    image.width = width;
    image.height = height;
    image.data.resize(static_cast<size_t>(width) * height * 3);
    return image;
}

// The scale factors and OpenCV's test for an integer downscaling factor, computed exactly as
// hal::resize does (the double round trip decides whether the integer "area fast" path is taken).
struct ScaleFactors {
    double inv_x, inv_y;  // dst / src
    double x, y;          // src / dst
    int integer_x, integer_y;
    bool integer_factors;
};

ScaleFactors scale_factors(const Image& src, int out_w, int out_h) {
    ScaleFactors s{};
    s.inv_x = static_cast<double>(out_w) / src.width;
    s.inv_y = static_cast<double>(out_h) / src.height;
    s.x = 1.0 / s.inv_x;
    s.y = 1.0 / s.inv_y;
    s.integer_x = round_half_even(s.x);
    s.integer_y = round_half_even(s.y);
    s.integer_factors = std::abs(s.x - s.integer_x) < DBL_EPSILON && std::abs(s.y - s.integer_y) < DBL_EPSILON;
    return s;
}

// ------------------------------------------------------------------- two-tap separable (INTER_LINEAR)

// One output coordinate: value = in[first] * w0 + in[second] * w1 with 11-bit weights.
struct Tap {
    int first, second;
    int16_t w0, w1;
};

// Where destination coordinate d samples the source: the pixel index and the fraction towards the next
// one, as OpenCV's coefficient loop in hal::resize computes them. Linear: src = (d + 0.5) * scale - 0.5.
// INTER_AREA when upscaling ("area mode"): the fraction of the source pixel that the destination cell
// boundary leaves.
struct SourcePosition {
    int index;
    float fraction;
};

SourcePosition source_position(int d, double scale, double inv_scale, bool area_mode) {
    if (!area_mode) {
        const auto f = static_cast<float>((d + 0.5) * scale - 0.5);
        const auto index = static_cast<int>(std::floor(f));
        return {index, f - static_cast<float>(index)};
    }
    const auto index = static_cast<int>(std::floor(d * scale));
    const auto f = static_cast<float>((d + 1) - (index + 1) * inv_scale);
    return {index, f <= 0 ? 0.0f : f - std::floor(f)};
}

// Column taps that fall off an image edge sample the edge pixel with weights (1, 0).
Tap column_tap(int d, double scale, double inv_scale, int src_size, bool area_mode) {
    SourcePosition p = source_position(d, scale, inv_scale, area_mode);
    if (p.index < 0) p = {0, 0.0f};
    if (p.index >= src_size - 1) p = {src_size - 1, 0.0f};
    return Tap{p.index, std::min(p.index + 1, src_size - 1), fixed_weight(1.0f - p.fraction), fixed_weight(p.fraction)};
}

// Row taps keep their weights when clamped: OpenCV clamps only the row index (clip() in
// resizeGeneric_Invoker), so a top row blends the first source row with itself, weights unchanged.
Tap row_tap(int d, double scale, double inv_scale, int src_size, bool area_mode) {
    const SourcePosition p = source_position(d, scale, inv_scale, area_mode);
    return Tap{std::clamp(p.index, 0, src_size - 1), std::clamp(p.index + 1, 0, src_size - 1),
               fixed_weight(1.0f - p.fraction), fixed_weight(p.fraction)};
}

// HResizeLinear: exact integer sums (up to 255 * 2048) for one source row.
void horizontal_pass(const Image& src, int y, const std::vector<Tap>& columns, std::vector<int>& out) {
    const uint8_t* row = src.pixel(0, y);
    for (size_t x = 0; x < columns.size(); ++x) {
        const Tap& t = columns[x];
        for (int c = 0; c < 3; ++c) {
            out[x * 3 + c] = row[t.first * 3 + c] * t.w0 + row[t.second * 3 + c] * t.w1;
        }
    }
}

// VResizeLinear<uchar, int, short, FixedPtCast<...>, VResizeLinearVec_32s8u>: the SIMD kernel drops
// 4 bits of each row sum, multiplies keeping the high 16 bits (v_mul_hi), adds, and rounds off the
// last 2 bits; OpenCV's scalar tail uses the same arithmetic so that all columns agree.
uint8_t vertical_blend(int upper, int lower, int w0, int w1) {
    return static_cast<uint8_t>((((w0 * (upper >> 4)) >> 16) + ((w1 * (lower >> 4)) >> 16) + 2) >> 2);
}

Image resize_two_tap(const Image& src, int out_w, int out_h, const ScaleFactors& s, bool area_mode) {
    std::vector<Tap> columns(static_cast<size_t>(out_w));
    for (int x = 0; x < out_w; ++x) columns[static_cast<size_t>(x)] = column_tap(x, s.x, s.inv_x, src.width, area_mode);

    Image dst = make_image(out_w, out_h);
    // Horizontal sums of the two source rows in use, kept while consecutive output rows share them.
    std::array<std::vector<int>, 2> sums{std::vector<int>(static_cast<size_t>(out_w) * 3),
                                         std::vector<int>(static_cast<size_t>(out_w) * 3)};
    std::array<int, 2> sum_rows{-1, -1};
    auto row_sums = [&](int y, int keep) -> const std::vector<int>& {
        for (size_t k = 0; k < 2; ++k) {
            if (sum_rows[k] == y) return sums[k];
        }
        const size_t slot = sum_rows[0] == keep ? 1 : 0;
        horizontal_pass(src, y, columns, sums[slot]);
        sum_rows[slot] = y;
        return sums[slot];
    };

    for (int y = 0; y < out_h; ++y) {
        const Tap t = row_tap(y, s.y, s.inv_y, src.height, area_mode);
        const std::vector<int>& upper = row_sums(t.first, t.second);
        const std::vector<int>& lower = row_sums(t.second, t.first);
        uint8_t* out = dst.pixel(0, y);
        for (size_t i = 0; i < upper.size(); ++i) out[i] = vertical_blend(upper[i], lower[i], t.w0, t.w1);
    }
    return dst;
}

// ----------------------------------------------------------------------- integer factors (area fast)

// resizeAreaFast_: the mean of each factor_x x factor_y block. For 2x2 the SIMD kernel (and its
// scalar tail) rounds half up with (sum + 2) >> 2; other factors multiply by a float 1/area and round
// half to even. Only reached when the source size is an exact multiple of the destination size.
Image resize_integer_factors(const Image& src, int out_w, int out_h, int factor_x, int factor_y) {
    Image dst = make_image(out_w, out_h);
    const bool two_by_two = factor_x == 2 && factor_y == 2;
    const float inv_area = 1.0f / static_cast<float>(factor_x * factor_y);
    for (int y = 0; y < out_h; ++y) {
        for (int x = 0; x < out_w; ++x) {
            for (int c = 0; c < 3; ++c) {
                int sum = 0;
                for (int dy = 0; dy < factor_y; ++dy) {
                    const uint8_t* row = src.pixel(x * factor_x, y * factor_y + dy);
                    for (int dx = 0; dx < factor_x; ++dx) sum += row[dx * 3 + c];
                }
                dst.pixel(x, y)[c] =
                    two_by_two ? static_cast<uint8_t>((sum + 2) >> 2) : saturate_u8(static_cast<float>(sum) * inv_area);
            }
        }
    }
    return dst;
}

// ------------------------------------------------------------------- true area (non-integer factors)

// One contribution of a source pixel to a destination pixel (DecimateAlpha).
struct AreaWeight {
    int dst, src;
    float weight;
};

// computeResizeAreaTab: each destination cell [d * scale, (d + 1) * scale) takes the source pixels it
// covers, weighted by the covered fraction over the cell width; partial pixels under 1e-3 are ignored.
std::vector<AreaWeight> area_weights(int src_size, int dst_size, double scale) {
    std::vector<AreaWeight> weights;
    for (int d = 0; d < dst_size; ++d) {
        const double start = d * scale;
        const double end = start + scale;
        const double cell_width = std::min(scale, src_size - start);
        int first = static_cast<int>(std::ceil(start));
        int last = static_cast<int>(std::floor(end));
        last = std::min(last, src_size - 1);
        first = std::min(first, last);
        if (first - start > 1e-3) {
            weights.push_back({d, first - 1, static_cast<float>((first - start) / cell_width)});
        }
        for (int s = first; s < last; ++s) weights.push_back({d, s, static_cast<float>(1.0 / cell_width)});
        if (end - last > 1e-3) {
            weights.push_back(
                {d, last, static_cast<float>(std::min(std::min(end - last, 1.0), cell_width) / cell_width)});
        }
    }
    return weights;
}

// ResizeArea_Invoker<uchar, float>: float accumulation in OpenCV's order (row by row: horizontal
// weighted sum, then scaled by the row weight and added), rounded half to even at the end.
Image resize_area_weights(const Image& src, int out_w, int out_h, const ScaleFactors& s) {
    const std::vector<AreaWeight> columns = area_weights(src.width, out_w, s.x);
    const std::vector<AreaWeight> rows = area_weights(src.height, out_h, s.y);
    Image dst = make_image(out_w, out_h);
    const size_t row_size = static_cast<size_t>(out_w) * 3;
    std::vector<float> row_sum(row_size), block_sum(row_size);

    for (size_t r = 0; r < rows.size(); ++r) {
        const AreaWeight& row = rows[r];
        std::fill(row_sum.begin(), row_sum.end(), 0.0f);
        const uint8_t* in = src.pixel(0, row.src);
        for (const AreaWeight& column : columns) {
            for (int c = 0; c < 3; ++c) {
                float& acc = row_sum[static_cast<size_t>(column.dst) * 3 + c];
                acc = acc + static_cast<float>(in[column.src * 3 + c]) * column.weight;
            }
        }
        const bool first_of_block = r == 0 || rows[r - 1].dst != row.dst;
        for (size_t i = 0; i < row_size; ++i) {
            const float weighted = row.weight * row_sum[i];
            block_sum[i] = first_of_block ? weighted : block_sum[i] + weighted;
        }
        const bool last_of_block = r + 1 == rows.size() || rows[r + 1].dst != row.dst;
        if (last_of_block) {
            uint8_t* out = dst.pixel(0, row.dst);
            for (size_t i = 0; i < row_size; ++i) out[i] = saturate_u8(block_sum[i]);
        }
    }
    return dst;
}

}  // namespace

Image resize_linear(const Image& src, int out_w, int out_h) {
    check_arguments("resize", src, out_w, out_h);
    if (out_w == src.width && out_h == src.height) return src;
    const ScaleFactors s = scale_factors(src, out_w, out_h);
    // hal::resize: an exact 2x2 downscale is the same as INTER_AREA and takes its integer path.
    if (s.integer_factors && s.integer_x == 2 && s.integer_y == 2)
        return resize_integer_factors(src, out_w, out_h, 2, 2);
    return resize_two_tap(src, out_w, out_h, s, /*area_mode=*/false);
}

Image resize_area(const Image& src, int out_w, int out_h) {
    check_arguments("resize", src, out_w, out_h);
    if (out_w == src.width && out_h == src.height) return src;
    const ScaleFactors s = scale_factors(src, out_w, out_h);
    // OpenCV implements true area averaging only when neither axis grows; otherwise it runs the
    // two-tap path with area-style weights.
    if (s.x >= 1 && s.y >= 1) {
        if (s.integer_factors) return resize_integer_factors(src, out_w, out_h, s.integer_x, s.integer_y);
        return resize_area_weights(src, out_w, out_h, s);
    }
    return resize_two_tap(src, out_w, out_h, s, /*area_mode=*/true);
}

Image letterbox(const Image& src, int out_h, int out_w, LetterboxTransform* transform) {
    check_arguments("letterbox", src, out_w, out_h);
    // Ultralytics computes in Python floats (double) and rounds with round(): half to even, which is
    // what nearbyint does in the default rounding mode.
    const double r = std::min(static_cast<double>(out_h) / src.height, static_cast<double>(out_w) / src.width);
    const int new_w = static_cast<int>(std::nearbyint(src.width * r));
    const int new_h = static_cast<int>(std::nearbyint(src.height * r));
    KS_CHECK(new_w > 0 && new_h > 0, "letterbox: a ", src.width, "x", src.height, " image shrinks to nothing at ",
             out_w, "x", out_h);
    const double dw = (out_w - new_w) / 2.0;
    const double dh = (out_h - new_h) / 2.0;
    const int top = static_cast<int>(std::nearbyint(dh - 0.1));
    const int left = static_cast<int>(std::nearbyint(dw - 0.1));

    Image canvas = make_image(out_w, out_h);
    std::fill(canvas.data.begin(), canvas.data.end(), kPadValue);
    const bool same_size = new_w == src.width && new_h == src.height;
    const Image resized = same_size ? Image{} : resize_linear(src, new_w, new_h);
    const Image& content = same_size ? src : resized;
    for (int y = 0; y < new_h; ++y) {
        std::memcpy(canvas.pixel(left, top + y), content.pixel(0, y), static_cast<size_t>(new_w) * 3);
    }
    if (transform != nullptr) *transform = LetterboxTransform{static_cast<float>(r), left, top, new_w, new_h};
    return canvas;
}

LetterboxTransform letterbox_to_tensor(const Image& src, int out_h, int out_w, float* dst) {
    LetterboxTransform transform;
    const Image canvas = letterbox(src, out_h, out_w, &transform);
    // Ultralytics divides the float32 tensor by 255 (im /= 255): correctly rounded x / 255.0f, which a
    // multiplication by the rounded reciprocal would not always reproduce.
    std::array<float, 256> normalized;
    for (int v = 0; v < 256; ++v) normalized[static_cast<size_t>(v)] = static_cast<float>(v) / 255.0f;
    const size_t plane = static_cast<size_t>(out_h) * out_w;
    for (size_t i = 0; i < plane; ++i) {
        for (size_t c = 0; c < 3; ++c) dst[c * plane + i] = normalized[canvas.data[i * 3 + c]];
    }
    return transform;
}

}  // namespace kestrel::yolo
