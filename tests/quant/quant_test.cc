// src/quant on synthetic data: the |x| histogram (growth keeps every value, max stays exact, a first
// batch fed image by image bins as the whole batch), the four calibrators (MinMax exact; Legacy against
// the sorted-sample quantile; ENTROPY / ENTROPY_2 against an independent brute-force KL search written
// with plain per-candidate loops; ENTROPY_2 on a SiLU output), the TensorRT calibration cache (round
// trip, a hand-written TensorRT file, every malformed-file error), and the precision policy's
// arithmetic (error measures on hand-computed outputs, layer order, the budget search).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "quant/calibration_cache.h"
#include "quant/calibrators.h"
#include "quant/histogram.h"
#include "quant/precision_policy.h"

namespace kestrel::quant {
namespace {

namespace fs = std::filesystem;

constexpr size_t kSamples = 1'000'000;
constexpr size_t kBatches = 10;

std::vector<float> gaussian(size_t n, uint32_t seed, float sigma = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, sigma);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng);
    return v;
}

// Laplace(0, b): a random sign times Exp(1/b).
std::vector<float> laplace(size_t n, uint32_t seed, float b = 1.0f) {
    std::mt19937 rng(seed);
    std::exponential_distribution<float> magnitude(1.0f / b);
    std::bernoulli_distribution negative(0.5);
    std::vector<float> v(n);
    for (float& x : v) x = negative(rng) ? -magnitude(rng) : magnitude(rng);
    return v;
}

// Calibration-style collection: the data in equal batches.
AbsHistogram collect(const std::vector<float>& data, size_t batches = kBatches) {
    AbsHistogram h;
    const size_t per = data.size() / batches;
    for (size_t b = 0; b < batches; ++b) h.add(data.data() + b * per, b + 1 == batches ? data.size() - b * per : per);
    return h;
}

float exact_max_abs(const std::vector<float>& data) {
    float m = 0.0f;
    for (float x : data) m = std::max(m, std::fabs(x));
    return m;
}

// ---- independent brute-force KL search ------------------------------------------------------------
// Written from the description in docs/calibration.md with explicit loops per candidate and
// normalised probability vectors, sharing nothing with the library's prefix-sum formulation.
struct Brute {
    size_t bins = 0;
    double divergence = std::numeric_limits<double>::infinity();
};

double brute_divergence(const std::vector<double>& hist, size_t i) {
    // Reference P: first i bins, the outliers folded into bin i-1.
    std::vector<double> p(hist.begin(), hist.begin() + static_cast<std::ptrdiff_t>(i));
    for (size_t j = i; j < hist.size(); ++j) p[i - 1] += hist[j];
    // Candidate Q: 128 groups of the unclipped bins, each group's sum shared by its bins with P > 0.
    std::vector<double> group_sum(128, 0.0), group_nonzero(128, 0.0);
    std::vector<size_t> group_of(i);
    for (size_t j = 0; j < i; ++j) {
        group_of[j] = static_cast<size_t>(std::floor(static_cast<double>(j) * 128.0 / static_cast<double>(i)));
        group_sum[group_of[j]] += hist[j];
        if (p[j] > 0) group_nonzero[group_of[j]] += 1.0;
    }
    std::vector<double> q(i, 0.0);
    for (size_t j = 0; j < i; ++j) {
        if (p[j] > 0) q[j] = group_sum[group_of[j]] / group_nonzero[group_of[j]];
    }
    double p_total = 0.0, q_total = 0.0;
    for (size_t j = 0; j < i; ++j) {
        p_total += p[j];
        q_total += q[j];
    }
    if (q_total == 0.0) return std::numeric_limits<double>::infinity();
    double kl = 0.0;
    for (size_t j = 0; j < i; ++j) {
        if (p[j] == 0.0) continue;
        const double pn = p[j] / p_total, qn = q[j] / q_total;
        if (qn == 0.0) return std::numeric_limits<double>::infinity();
        kl += pn * std::log(pn / qn);
    }
    return kl;
}

Brute brute_search(const std::vector<double>& hist, size_t first, size_t last) {
    Brute best;
    for (size_t i = first; i <= last; ++i) {
        const double d = brute_divergence(hist, i);
        if (d <= best.divergence) best = {i, d};  // ties to the larger i
    }
    return best;
}

std::vector<double> as_double(const std::vector<uint64_t>& counts) { return {counts.begin(), counts.end()}; }

// ENTROPY_2 by hand: bin 0 discarded, i in [128, N], threshold = i * width (capped at max|x|).
double brute_entropy2(const AbsHistogram& h, Brute* out = nullptr) {
    std::vector<double> hist = as_double(h.counts());
    hist[0] = 0.0;
    const Brute b = brute_search(hist, 128, hist.size());
    if (out) *out = b;
    return std::min(static_cast<double>(b.bins) * h.bin_width(), static_cast<double>(h.max_abs()));
}

// ENTROPY by hand: 2048 bins, bin 0 kept, i in [128, 2047], threshold = (i + 0.5) * width.
double brute_entropy1(const AbsHistogram& h) {
    const std::vector<uint64_t>& fine = h.counts();
    const size_t factor = std::max<size_t>(1, fine.size() / 2048);
    std::vector<double> hist(fine.size() / factor, 0.0);
    for (size_t j = 0; j < fine.size(); ++j) hist[j / factor] += static_cast<double>(fine[j]);
    const Brute b = brute_search(hist, 128, hist.size() - 1);
    return std::min((static_cast<double>(b.bins) + 0.5) * h.bin_width() * static_cast<double>(factor),
                    static_cast<double>(h.max_abs()));
}

template <typename F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "<no error>";
}

// ---- algorithm names ------------------------------------------------------------------------------

TEST(CalibrationAlgorithmTest, NamesRoundTrip) {
    const CalibrationAlgorithm all[] = {CalibrationAlgorithm::kMinMax, CalibrationAlgorithm::kEntropy,
                                        CalibrationAlgorithm::kEntropy2, CalibrationAlgorithm::kLegacy};
    for (CalibrationAlgorithm a : all) {
        EXPECT_EQ(parse_algorithm(algorithm_name(a)), a);
        EXPECT_EQ(parse_cache_algorithm_name(cache_algorithm_name(a)), a);
    }
    EXPECT_EQ(algorithm_name(CalibrationAlgorithm::kEntropy2), "ENTROPY_CALIBRATION_2");
    EXPECT_EQ(algorithm_name(CalibrationAlgorithm::kMinMax), "MINMAX_CALIBRATION");
    EXPECT_EQ(cache_algorithm_name(CalibrationAlgorithm::kEntropy2), "EntropyCalibration2");
    EXPECT_EQ(cache_algorithm_name(CalibrationAlgorithm::kLegacy), "LegacyCalibration");
    EXPECT_NE(error_of([] { parse_algorithm("entropy_calibration_2"); }).find("unknown calibration algorithm"),
              std::string::npos);
    EXPECT_NE(error_of([] { parse_cache_algorithm_name("PercentileCalibration"); }).find("PercentileCalibration"),
              std::string::npos);
}

// ---- histogram ------------------------------------------------------------------------------------

TEST(AbsHistogramTest, FirstBatchFixesRange) {
    const std::vector<float> data = gaussian(100'000, 1);
    AbsHistogram h;
    h.add(data.data(), data.size());
    EXPECT_EQ(h.num_bins(), 2048u);
    EXPECT_EQ(h.range(), static_cast<double>(exact_max_abs(data)));
    EXPECT_EQ(h.bin_width(), h.range() / 2048.0);
    EXPECT_EQ(h.count(), data.size());
    // The first batch's max lands in the last bin, not past it.
    EXPECT_GT(h.counts().back(), 0u);
}

TEST(AbsHistogramTest, FirstBatchMaxThenImagesEqualsWholeBatch) {
    // 16 "images" of different spread, as a calibration batch of 16 run image by image.
    std::vector<std::vector<float>> images;
    std::vector<float> batch;
    float batch_max = 0.0f;
    for (uint32_t i = 0; i < 16; ++i) {
        images.push_back(gaussian(5'000, 40 + i, 0.5f + 0.25f * static_cast<float>(i % 5)));
        batch.insert(batch.end(), images.back().begin(), images.back().end());
        batch_max = std::max(batch_max, exact_max_abs(images.back()));
    }
    const std::vector<float> later = gaussian(5'000, 99, 6.0f);  // forces growth afterwards
    AbsHistogram whole, by_image, naive;
    whole.add(batch.data(), batch.size());
    whole.add(later.data(), later.size());
    by_image.set_first_batch_max(batch_max);
    for (const auto& im : images) by_image.add(im.data(), im.size());
    by_image.add(later.data(), later.size());
    EXPECT_EQ(by_image.bin_width(), whole.bin_width());
    EXPECT_EQ(by_image.range(), whole.range());
    EXPECT_EQ(by_image.counts(), whole.counts());
    EXPECT_EQ(by_image.max_abs(), whole.max_abs());
    EXPECT_EQ(by_image.count(), whole.count());
    // Without it, the first image alone fixes a finer grid: a different histogram (and thresholds).
    for (const auto& im : images) naive.add(im.data(), im.size());
    EXPECT_LT(naive.bin_width(), whole.bin_width());
    // Only before the range is fixed; 0 leaves it open; non-finite or negative is an error.
    EXPECT_THROW(by_image.set_first_batch_max(1.0f), Error);
    AbsHistogram open;
    open.set_first_batch_max(0.0f);
    EXPECT_TRUE(open.empty_range());
    EXPECT_THROW(open.set_first_batch_max(std::numeric_limits<float>::quiet_NaN()), Error);
    EXPECT_THROW(open.set_first_batch_max(std::numeric_limits<float>::infinity()), Error);
    EXPECT_THROW(open.set_first_batch_max(-1.0f), Error);
}

TEST(AbsHistogramTest, GrowthKeepsEveryValueAndExactMax) {
    // Batches of growing spread force several doublings; bins keep width w0 and their indices.
    AbsHistogram h;
    std::vector<std::vector<float>> batches;
    std::vector<size_t> bins_after;
    uint64_t total = 0;
    float max_abs = 0.0f;
    const float sigmas[] = {0.1f, 0.1f, 0.35f, 1.0f, 0.5f, 4.0f};
    for (size_t b = 0; b < std::size(sigmas); ++b) {
        batches.push_back(gaussian(50'000, 100 + static_cast<uint32_t>(b), sigmas[b]));
        h.add(batches.back().data(), batches.back().size());
        bins_after.push_back(h.num_bins());
        total += batches.back().size();
        max_abs = std::max(max_abs, exact_max_abs(batches.back()));
        ASSERT_GE(h.range(), static_cast<double>(max_abs));
    }
    const double w0 = static_cast<double>(exact_max_abs(batches[0])) / 2048.0;
    EXPECT_EQ(h.bin_width(), w0);
    EXPECT_GT(h.num_bins(), 2048u);
    EXPECT_TRUE(std::has_single_bit(h.num_bins() / 2048) && h.num_bins() % 2048 == 0);
    EXPECT_EQ(h.range(), static_cast<double>(exact_max_abs(batches[0])) * static_cast<double>(h.num_bins() / 2048));
    EXPECT_EQ(h.max_abs(), max_abs);
    EXPECT_EQ(h.count(), total);
    uint64_t sum = 0;
    for (uint64_t c : h.counts()) sum += c;
    EXPECT_EQ(sum, total);
    // Each value is in bin floor(|x| / w0), clamped to the bin count at the time it was added.
    std::vector<uint64_t> expected(h.num_bins(), 0);
    for (size_t b = 0; b < batches.size(); ++b) {
        for (float x : batches[b]) {
            const auto bin = static_cast<size_t>(std::fabs(static_cast<double>(x)) / w0);
            ++expected[std::min(bin, bins_after[b] - 1)];
        }
    }
    EXPECT_EQ(h.counts(), expected);
    EXPECT_EQ(compute_amax(h, CalibrationAlgorithm::kMinMax), max_abs);
}

TEST(AbsHistogramTest, CapMergesPairsInsteadOfGrowing) {
    AbsHistogram h(128, 256);
    const std::vector<float> small = gaussian(10'000, 7, 0.01f);
    const std::vector<float> large = gaussian(10'000, 8, 10.0f);
    h.add(small.data(), small.size());
    const double w0 = h.bin_width();
    h.add(large.data(), large.size());
    EXPECT_EQ(h.num_bins(), 256u);
    EXPECT_GT(h.bin_width(), w0);
    EXPECT_TRUE(std::has_single_bit(static_cast<uint64_t>(h.bin_width() / w0)));
    EXPECT_EQ(h.range(), h.bin_width() * 256.0);
    EXPECT_GE(h.range(), static_cast<double>(exact_max_abs(large)));
    uint64_t sum = 0;
    for (uint64_t c : h.counts()) sum += c;
    EXPECT_EQ(sum, 20'000u);
    EXPECT_EQ(h.max_abs(), std::max(exact_max_abs(small), exact_max_abs(large)));
}

TEST(AbsHistogramTest, ZerosBeforeRangeAndNonFinite) {
    AbsHistogram h;
    const std::vector<float> zeros(1000, 0.0f);
    h.add(zeros.data(), zeros.size());
    EXPECT_TRUE(h.empty_range());
    EXPECT_EQ(h.count(), 1000u);
    EXPECT_EQ(compute_amax(h, CalibrationAlgorithm::kEntropy2), 0.0f);
    const std::vector<float> data = {0.5f, -2.0f, 1.0f};
    h.add(data.data(), data.size());
    EXPECT_FALSE(h.empty_range());
    EXPECT_EQ(h.counts()[0], 1000u);
    EXPECT_EQ(h.max_abs(), 2.0f);
    const std::vector<float> bad = {1.0f, std::numeric_limits<float>::quiet_NaN()};
    EXPECT_NE(error_of([&] { h.add(bad.data(), bad.size()); }).find("non-finite"), std::string::npos);
    const std::vector<float> inf = {-std::numeric_limits<float>::infinity()};
    EXPECT_THROW(h.add(inf.data(), inf.size()), Error);
    EXPECT_EQ(h.count(), 1003u);  // unchanged by the rejected batches
    EXPECT_THROW(AbsHistogram(100), Error);
    EXPECT_THROW(AbsHistogram(2048, 3000), Error);
    EXPECT_THROW(compute_amax(AbsHistogram(), CalibrationAlgorithm::kMinMax), Error);
}

TEST(AbsHistogramTest, MergeEqualsOneHistogram) {
    const std::vector<float> a = gaussian(20'000, 11, 1.0f), b = gaussian(20'000, 12, 3.0f);
    AbsHistogram whole;
    whole.add(a.data(), a.size());
    whole.add(a.data(), a.size());
    whole.add(b.data(), b.size());
    // Two collectors that saw the same first batch (so their widths agree) merge exactly.
    AbsHistogram left, right;
    left.add(a.data(), a.size());
    right.add(a.data(), a.size());
    right.add(b.data(), b.size());
    left.merge(right);
    EXPECT_EQ(left.counts(), whole.counts());
    EXPECT_EQ(left.count(), whole.count());
    EXPECT_EQ(left.max_abs(), whole.max_abs());
    AbsHistogram other;
    const std::vector<float> c = {0.3f};
    other.add(c.data(), c.size());
    EXPECT_THROW(left.merge(other), Error);  // widths not related by a power of two
}

// ---- calibrators ----------------------------------------------------------------------------------

TEST(CalibratorTest, MinMaxIsExactMax) {
    const std::vector<float> data = laplace(kSamples, 21);
    const AbsHistogram h = collect(data);
    EXPECT_EQ(compute_amax(h, CalibrationAlgorithm::kMinMax), exact_max_abs(data));
}

TEST(CalibratorTest, LegacyPercentileOfGaussian) {
    const std::vector<float> data = gaussian(kSamples, 22);
    const AbsHistogram h = collect(data);
    const float amax = compute_amax(h, CalibrationAlgorithm::kLegacy);
    // The sample's own 99.99 % point of |x|: the upper edge of its bin is within one bin width.
    std::vector<float> mags(data.size());
    for (size_t k = 0; k < data.size(); ++k) mags[k] = std::fabs(data[k]);
    std::sort(mags.begin(), mags.end());
    const float sample_q = mags[static_cast<size_t>(std::ceil(0.9999 * static_cast<double>(mags.size()))) - 1];
    EXPECT_GE(amax, sample_q);
    EXPECT_LE(amax, sample_q + h.bin_width() * 1.0001);
    // Population value 3.8906 (Phi^-1(0.99995)); the sample quantile's standard error is ~0.024.
    EXPECT_NEAR(amax, 3.8906, 0.1);
    // The cutoff caps the threshold at a fraction of the max.
    EXPECT_EQ(compute_amax(h, CalibrationAlgorithm::kLegacy, {0.9999, 0.5}), 0.5f * exact_max_abs(data));
    EXPECT_EQ(compute_amax(h, CalibrationAlgorithm::kLegacy, {1.0, 1.0}), exact_max_abs(data));
    EXPECT_THROW(compute_amax(h, CalibrationAlgorithm::kLegacy, {0.0, 1.0}), Error);
    EXPECT_THROW(compute_amax(h, CalibrationAlgorithm::kLegacy, {0.9999, 1.5}), Error);
}

void check_entropy2(const std::vector<float>& data, const char* what, double lo, double hi) {
    const AbsHistogram h = collect(data);
    const float amax = compute_amax(h, CalibrationAlgorithm::kEntropy2);
    Brute brute;
    const double expected = brute_entropy2(h, &brute);
    std::printf("[ %s ] ENTROPY_CALIBRATION_2 amax = %.6f (brute force %.6f, %zu of %zu bins, KL %.6g; max|x| %.4f)\n",
                what, amax, expected, brute.bins, h.num_bins(), brute.divergence, h.max_abs());
    EXPECT_NEAR(amax, expected, h.bin_width());
    EXPECT_LT(amax, h.max_abs());
    EXPECT_GE(amax, lo);
    EXPECT_LE(amax, hi);
    // The library's divergence agrees with the brute force at its own optimum.
    std::vector<uint64_t> counts = h.counts();
    counts[0] = 0;
    const KlSearchResult lib = kl_search(counts, 128, counts.size());
    EXPECT_NEAR(lib.divergence, brute_divergence(as_double(counts), lib.bins), 1e-9);
    EXPECT_NEAR(lib.divergence, brute.divergence, 1e-9);
}

// Sanity ranges in units of sigma / b. For N(0,1) this P/Q construction balances clipping against
// quantization and bin noise near 4.5-4.8 sigma at 1e6-4e7 samples, not at the folklore ~3 sigma
// (docs/calibration.md, "Behaviour on synthetic data").
TEST(CalibratorTest, Entropy2GaussianMatchesBruteForce) { check_entropy2(gaussian(kSamples, 31), "N(0,1)", 3.5, 5.0); }

TEST(CalibratorTest, Entropy2LaplaceMatchesBruteForce) {
    check_entropy2(laplace(kSamples, 32), "Laplace(1)", 6.0, 13.0);
}

TEST(CalibratorTest, Entropy1MatchesBruteForce) {
    for (uint32_t seed : {41u, 42u}) {
        const std::vector<float> data = seed == 41 ? gaussian(kSamples / 4, seed) : laplace(kSamples / 4, seed);
        const AbsHistogram h = collect(data);
        const float amax = compute_amax(h, CalibrationAlgorithm::kEntropy);
        const double width = h.bin_width() * static_cast<double>(std::max<size_t>(1, h.num_bins() / 2048));
        EXPECT_NEAR(amax, brute_entropy1(h), width) << "seed " << seed;
        EXPECT_LT(amax, h.max_abs());
    }
}

TEST(CalibratorTest, Entropy2OnSiluOutputSnapsToItsNegativeLobe) {
    // Why ENTROPY_CALIBRATION_2 costs YOLOv8 accuracy (docs/calibration.md): SiLU's outputs are >= its
    // minimum -0.27846 (at x = -1.2785), so |x| piles up below 0.27846 and the histogram has a sharp
    // edge there. The KL search then favours thresholds that put a group boundary on that edge; for
    // an input mostly below zero the whole 128-level grid collapses onto the lobe, and every positive
    // output above 0.28 is clipped (yolov8n's model.4.m.1.cv2 input gets this threshold).
    const double lobe = 0.27846454;
    std::mt19937 rng(7);
    std::normal_distribution<float> pre(-1.0f, 1.0f);
    std::vector<float> data(kSamples);
    for (float& x : data) {
        const float z = pre(rng);
        x = z / (1.0f + std::exp(-z));
    }
    const AbsHistogram h = collect(data);
    const float e2 = compute_amax(h, CalibrationAlgorithm::kEntropy2);
    EXPECT_NEAR(e2, lobe, 0.01 * lobe);
    EXPECT_GT(compute_amax(h, CalibrationAlgorithm::kLegacy), 2.4f);  // 99.99 % of |x|
    EXPECT_GT(h.max_abs(), 3.5f);
    // This is the KL criterion's own choice: the independent brute-force search agrees.
    EXPECT_NEAR(e2, brute_entropy2(h), h.bin_width());
}

TEST(CalibratorTest, Entropy2DiscardsZeroBin) {
    // A ReLU-like spike of exact zeros changes only bin 0, which ENTROPY_2 ignores.
    const std::vector<float> data = gaussian(200'000, 51);
    const std::vector<float> zeros(500'000, 0.0f);
    AbsHistogram plain, spiked;
    plain.add(data.data(), data.size());
    spiked.add(data.data(), data.size());
    spiked.add(zeros.data(), zeros.size());
    EXPECT_EQ(compute_amax(spiked, CalibrationAlgorithm::kEntropy2),
              compute_amax(plain, CalibrationAlgorithm::kEntropy2));
    // ENTROPY (v1) sees the spike.
    EXPECT_NE(compute_amax(spiked, CalibrationAlgorithm::kEntropy),
              compute_amax(plain, CalibrationAlgorithm::kEntropy));
}

TEST(CalibratorTest, KlSearchTiesGoToLargerCandidate) {
    // 128 bins of count 1, then empty bins: every candidate's Q equals P, so all divergences are 0.
    std::vector<uint64_t> counts(256, 0);
    std::fill(counts.begin(), counts.begin() + 128, 1);
    const KlSearchResult r = kl_search(counts, 128, 256);
    EXPECT_EQ(r.bins, 256u);
    EXPECT_EQ(r.divergence, 0.0);
    EXPECT_THROW(kl_search(counts, 100, 256), Error);
}

// ---- precision policy -----------------------------------------------------------------------------

TEST(PrecisionPolicyTest, DetectionErrorByHand) {
    // One image, 3 anchors, 2 classes and one extra row (e.g. a keypoint value), channel-major.
    const DetectionLayout layout{7, 3, 2};
    // Rows: cx, cy, w, h, score 0, score 1, extra; columns: anchors 0..2.
    const std::vector<float> ref = {100,  50,     300,   //
                                    100,  50,     300,   //
                                    20,   10,     40,    //
                                    20,   10,     40,    //
                                    0.8f, 0.005f, 0.2f,  //
                                    0.1f, 0.002f, 0.4f,  //
                                    1,    1,      1};
    std::vector<float> q = ref;
    EXPECT_EQ(detection_error(ref.data(), q.data(), 1, layout), 0.0);
    q[0] = 110;           // anchor 0: box moved by half its width -> IoU 200 / 600 = 1/3
    q[4 * 3] = 0.7f;      // anchor 0: class 0 score -0.1
    q[5 * 3 + 2] = 0.1f;  // anchor 2: class 1 score -0.3
    // Anchor 1 (best float score 0.005 < 0.01) and the extra row do not count, however wrong.
    q[1] = 900;
    q[4 * 3 + 1] = 0.9f;
    q[6 * 3 + 0] = 50;
    // Weights 0.8 and 0.4: (0.8 * (2/3 + 0.1) + 0.4 * 0.3) / 1.2.
    const double expected = (0.8 * (2.0 / 3.0 + 0.1) + 0.4 * 0.3) / 1.2;
    EXPECT_NEAR(detection_error(ref.data(), q.data(), 1, layout), expected, 1e-6);
    // Two images: the second identical to the float one adds weight but no error.
    std::vector<float> ref2 = ref, q2 = q;
    ref2.insert(ref2.end(), ref.begin(), ref.end());
    q2.insert(q2.end(), ref.begin(), ref.end());
    EXPECT_NEAR(detection_error(ref2.data(), q2.data(), 2, layout), expected / 2, 1e-6);
    // No relevant anchor: no error; a layout without room for the classes is an error.
    const std::vector<float> empty(7 * 3, 0.0f);
    EXPECT_EQ(detection_error(empty.data(), q.data(), 1, layout), 0.0);
    EXPECT_THROW(detection_error(ref.data(), q.data(), 1, DetectionLayout{5, 3, 2}), Error);
}

TEST(PrecisionPolicyTest, ClassificationErrorIsMeanL1) {
    const std::vector<float> ref = {0.7f, 0.2f, 0.1f, 0.1f, 0.1f, 0.8f};
    const std::vector<float> q = {0.6f, 0.3f, 0.1f, 0.1f, 0.1f, 0.8f};
    EXPECT_NEAR(classification_error(ref.data(), q.data(), 2, 3), 0.1, 1e-6);
}

TEST(PrecisionPolicyTest, FloatOrderIsErrorPerMillisecondSaved) {
    const std::vector<LayerMeasure> layers = {{10, 2.0, 1.0, 0.10},   // 0.1 per ms
                                              {11, 1.0, 0.9, 0.05},   // 0.5 per ms
                                              {12, 1.0, 1.0, 0.20},   // saves nothing: kMinSavedMs, first
                                              {13, 3.0, 2.0, 0.10}};  // ties with node 10: input order kept
    EXPECT_EQ(float_order(layers, true), (std::vector<size_t>{2, 1, 0, 3}));
    EXPECT_EQ(float_order(layers, false), (std::vector<size_t>{2, 0, 3, 1}));
    EXPECT_TRUE(float_order({}, true).empty());
}

TEST(PrecisionPolicyTest, SmallestFloatPrefixBisects) {
    std::vector<size_t> asked;
    auto falling = [&](size_t k) {
        asked.push_back(k);
        return 1.0 / static_cast<double>(k + 1);
    };
    double err = -1;
    EXPECT_EQ(smallest_float_prefix(40, 0.1, falling, &err), 9u);  // 1/10 <= 0.1 < 1/9
    EXPECT_DOUBLE_EQ(err, 0.1);
    EXPECT_LE(asked.size(), 6u);               // ceil(log2(41))
    for (size_t k : asked) EXPECT_LT(k, 40u);  // all float (k = n) is never run: its error is 0
    // Met with every layer INT8; never met short of all float.
    EXPECT_EQ(smallest_float_prefix(40, 2.0, falling, &err), 0u);
    EXPECT_DOUBLE_EQ(err, 1.0);
    EXPECT_EQ(smallest_float_prefix(
                  40, 0.0, [](size_t) { return 1.0; }, &err),
              40u);
    EXPECT_EQ(err, 0.0);
    asked.clear();
    EXPECT_EQ(smallest_float_prefix(0, 0.1, falling), 0u);
    EXPECT_TRUE(asked.empty());
}

// ---- calibration cache ----------------------------------------------------------------------------

class CacheTest : public ::testing::Test {
   protected:
    void SetUp() override {
        dir_ = fs::temp_directory_path() /
               ("kestrel_quant_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir_);
        fs::create_directories(dir_);
    }
    void TearDown() override { fs::remove_all(dir_); }
    std::string path(const std::string& name) const { return (dir_ / name).string(); }
    void write_text(const std::string& p, const std::string& text) const { std::ofstream(p, std::ios::binary) << text; }
    std::string read_text(const std::string& p) const {
        std::ifstream in(p, std::ios::binary);
        return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    }
    fs::path dir_;
};

uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }

TEST_F(CacheTest, RoundTripIsBitExact) {
    CalibrationCache cache;
    cache.algorithm = CalibrationAlgorithm::kMinMax;
    std::mt19937 rng(61);
    std::uniform_real_distribution<float> amax(1e-4f, 300.0f);
    for (int k = 0; k < 50; ++k) {
        cache.scales.emplace_back("/model." + std::to_string(k) + "/conv/Conv_output_0", scale_from_amax(amax(rng)));
    }
    cache.scales.emplace_back("(Unnamed Layer* 12) [Convolution]_output", std::bit_cast<float>(0x3c008912u));
    cache.scales.emplace_back("odd: name: with colons", 1.0f);
    cache.kestrel_meta = {{"model_fingerprint", "sha256:abc"}, {"imgsz", "640"}, {"note", "quote \" and \\ ok"}};
    const std::string p = path("yolov8n.cache");
    write_cache(p, cache);
    EXPECT_FALSE(fs::exists(p + ".tmp"));
    EXPECT_TRUE(fs::exists(cache_meta_path(p)));
    const CalibrationCache back = read_cache(p);
    EXPECT_EQ(back.version, "8601");
    EXPECT_EQ(back.algorithm, CalibrationAlgorithm::kMinMax);
    ASSERT_EQ(back.scales.size(), cache.scales.size());
    for (size_t k = 0; k < cache.scales.size(); ++k) {
        EXPECT_EQ(back.scales[k].first, cache.scales[k].first);
        EXPECT_EQ(bits(back.scales[k].second), bits(cache.scales[k].second));
    }
    EXPECT_EQ(back.kestrel_meta, cache.kestrel_meta);
    // The cache file itself is pure TensorRT text.
    const std::string text = read_text(p);
    EXPECT_EQ(text.rfind("TRT-8601-MinMaxCalibration\n", 0), 0u);
    EXPECT_NE(text.find("(Unnamed Layer* 12) [Convolution]_output: 3c008912\n"), std::string::npos);
    EXPECT_EQ(text, format_cache(cache));

    // Rewriting without metadata drops the sidecar.
    cache.kestrel_meta.clear();
    write_cache(p, cache);
    EXPECT_FALSE(fs::exists(cache_meta_path(p)));
    EXPECT_TRUE(read_cache(p).kestrel_meta.empty());
}

TEST_F(CacheTest, ReadsTensorRtFile) {
    const std::string trt =
        "TRT-8601-EntropyCalibration2\ndata: 3c008912\n(Unnamed Layer* 3) [Convolution]_output: 3e691968\n";
    const std::string p = path("trt.cache");
    write_text(p, trt);
    const CalibrationCache c = read_cache(p);
    EXPECT_EQ(c.version, "8601");
    EXPECT_EQ(c.algorithm, CalibrationAlgorithm::kEntropy2);
    EXPECT_TRUE(c.kestrel_meta.empty());
    ASSERT_EQ(c.scales.size(), 2u);
    EXPECT_EQ(c.scales[0].first, "data");
    EXPECT_EQ(bits(c.scales[0].second), 0x3c008912u);
    EXPECT_NEAR(c.scales[0].second, 0.0078452, 1e-7);
    EXPECT_NEAR(amax_from_scale(c.scales[0].second), 0.99634, 1e-4);
    EXPECT_EQ(c.scales[1].first, "(Unnamed Layer* 3) [Convolution]_output");
    EXPECT_NEAR(c.scales[1].second, 0.22764, 1e-5);
    EXPECT_EQ(format_cache(c), trt);  // byte-identical when written back

    // Other versions and algorithms, uppercase hex, CRLF, a name containing ": ", trailing blank lines.
    const CalibrationCache old = parse_cache("TRT-7000-EntropyCalibration2\r\nprob: 3C010A14\r\n\r\n");
    EXPECT_EQ(old.version, "7000");
    EXPECT_EQ(bits(old.scales.at(0).second), 0x3c010a14u);
    const CalibrationCache mm = parse_cache("TRT-8601-MinMaxCalibration\na: b: 3f800000\n");
    EXPECT_EQ(mm.algorithm, CalibrationAlgorithm::kMinMax);
    EXPECT_EQ(mm.scales.at(0).first, "a: b");
    EXPECT_EQ(mm.scales.at(0).second, 1.0f);
    EXPECT_EQ(parse_cache("TRT-100100-LegacyCalibration\n").algorithm, CalibrationAlgorithm::kLegacy);
    EXPECT_EQ(parse_cache("TRT-5100-EntropyCalibration\nx: 3f800000").algorithm, CalibrationAlgorithm::kEntropy);
}

TEST_F(CacheTest, MalformedFilesNameTheLine) {
    struct Case {
        const char* text;
        const char* message;
    };
    const Case cases[] = {
        {"", "is empty"},
        {"\n\n", "is empty"},
        {"TRT8601-EntropyCalibration2\n", "line 1: expected header"},
        {"TRT-86a1-EntropyCalibration2\n", "line 1: expected header"},
        {"TRT--EntropyCalibration2\n", "line 1: expected header"},
        {"data: 3c008912\n", "line 1: expected header"},
        {"TRT-8601-PercentileCalibration\n", "line 1: unknown calibration algorithm 'PercentileCalibration'"},
        {"TRT-8601-EntropyCalibration2\ndata 3c008912\n", "line 2: expected '<tensor name>: <hex scale>'"},
        {"TRT-8601-EntropyCalibration2\ndata:3c008912\n", "line 2: expected '<tensor name>: <hex scale>'"},
        {"TRT-8601-EntropyCalibration2\ndata: 3c00zz12\n", "line 2: bad hex scale '3c00zz12'"},
        {"TRT-8601-EntropyCalibration2\na: 3c008912\ndata: 3c0089120\n", "line 3: bad hex scale"},
        {"TRT-8601-EntropyCalibration2\ndata: \n", "line 2: bad hex scale ''"},
        {"TRT-8601-EntropyCalibration2\n: 3c008912\n", "line 2: empty tensor name"},
        {"TRT-8601-EntropyCalibration2\ndata: 7f800000\n", "line 2: scale 7f800000"},
        {"TRT-8601-EntropyCalibration2\ndata: 7fc00000\n", "not finite and positive"},
        {"TRT-8601-EntropyCalibration2\ndata: 00000000\n", "line 2: scale 00000000"},
        {"TRT-8601-EntropyCalibration2\ndata: bf800000\n", "not finite and positive"},
        {"TRT-8601-EntropyCalibration2\n\ndata: 3c008912\ndata: 3c008912\n", "line 4: tensor 'data' appears twice"},
    };
    for (const Case& c : cases) {
        const std::string p = path("bad.cache");
        write_text(p, c.text);
        const std::string e = error_of([&] { read_cache(p); });
        EXPECT_NE(e.find(c.message), std::string::npos) << "text: " << c.text << "\nerror: " << e;
        EXPECT_NE(e.find(p), std::string::npos) << e;
        EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    }
    EXPECT_NE(error_of([&] { read_cache(path("missing.cache")); }).find("cannot read calibration cache"),
              std::string::npos);
}

TEST_F(CacheTest, WriteErrors) {
    CalibrationCache cache;
    cache.scales = {{"a", 0.5f}};
    const std::string e = error_of([&] { write_cache(path("no/such/dir/x.cache"), cache); });
    EXPECT_NE(e.find("cannot write calibration cache"), std::string::npos) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos);
    const auto invalid = [&](auto mutate, const char* message) {
        CalibrationCache c = cache;
        mutate(c);
        const std::string err = error_of([&] { write_cache(path("x.cache"), c); });
        EXPECT_NE(err.find(message), std::string::npos) << err;
        EXPECT_FALSE(fs::exists(path("x.cache")));
    };
    invalid([](CalibrationCache& c) { c.version = "8.6"; }, "version must be digits");
    invalid([](CalibrationCache& c) { c.scales.emplace_back("a", 1.0f); }, "lists tensor 'a' twice");
    invalid([](CalibrationCache& c) { c.scales.emplace_back("", 1.0f); }, "empty tensor name");
    invalid([](CalibrationCache& c) { c.scales.emplace_back("x\ny", 1.0f); }, "line break");
    invalid([](CalibrationCache& c) { c.scales.emplace_back("n", std::nanf("")); }, "finite and positive");
    invalid([](CalibrationCache& c) { c.scales.emplace_back("z", 0.0f); }, "finite and positive");
}

TEST_F(CacheTest, SidecarMustMatchCache) {
    CalibrationCache cache;
    cache.scales = {{"images", 0.0078740157f}};
    cache.kestrel_meta = {{std::string(kMetaModelFingerprint), "m1"}};
    const std::string p = path("c.cache");
    write_cache(p, cache);
    // TensorRT (or a user) rewrites the cache: the sidecar no longer describes it.
    write_text(p, "TRT-8601-EntropyCalibration2\nimages: 3c010a14\n");
    EXPECT_NE(error_of([&] { read_cache(p); }).find("does not match its cache"), std::string::npos);
    write_text(cache_meta_path(p), "{ not json");
    EXPECT_NE(error_of([&] { read_cache(p); }).find("malformed calibration metadata"), std::string::npos);
    write_text(cache_meta_path(p), "{\"format\": \"other\"}");
    EXPECT_NE(error_of([&] { read_cache(p); }).find("malformed calibration metadata"), std::string::npos);
}

TEST(CacheValidationTest, ChecksAlgorithmAndMetadata) {
    CalibrationCache cache;
    cache.scales = {{"images", 0.0078740157f}};
    const std::map<std::string, std::string> expected = {{"model_fingerprint", "m1"}, {"imgsz", "640"}};
    // A TensorRT cache carries no metadata: usable only when the user passed it explicitly.
    EXPECT_NE(
        error_of([&] { validate_cache(cache, CalibrationAlgorithm::kEntropy2, expected); }).find("no Kestrel metadata"),
        std::string::npos);
    EXPECT_NO_THROW(validate_cache(cache, CalibrationAlgorithm::kEntropy2, expected, true));
    cache.kestrel_meta = expected;
    cache.kestrel_meta["calibration_batch"] = "8";  // extra keys are fine
    EXPECT_NO_THROW(validate_cache(cache, CalibrationAlgorithm::kEntropy2, expected));
    EXPECT_NE(error_of([&] {
                  validate_cache(cache, CalibrationAlgorithm::kMinMax, expected);
              }).find("made by ENTROPY_CALIBRATION_2, not MINMAX_CALIBRATION"),
              std::string::npos);
    cache.kestrel_meta["imgsz"] = "320";
    EXPECT_NE(error_of([&] {
                  validate_cache(cache, CalibrationAlgorithm::kEntropy2, expected);
              }).find("made for imgsz=320, not 640"),
              std::string::npos);
    cache.kestrel_meta["imgsz"] = "640";
    cache.kestrel_meta.erase("model_fingerprint");
    EXPECT_NE(error_of([&] {
                  validate_cache(cache, CalibrationAlgorithm::kEntropy2, expected);
              }).find("lacks 'model_fingerprint'"),
              std::string::npos);
}

}  // namespace
}  // namespace kestrel::quant
