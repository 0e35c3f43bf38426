#include "quant/calibrators.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

#include "core/error.h"

namespace kestrel::quant {
namespace {

struct AlgorithmNames {
    CalibrationAlgorithm algorithm;
    std::string_view api;    // TensorRT's CalibrationAlgoType / Ultralytics spelling
    std::string_view cache;  // calibration cache header
};

constexpr std::array<AlgorithmNames, 4> kNames = {{
    {CalibrationAlgorithm::kMinMax, "MINMAX_CALIBRATION", "MinMaxCalibration"},
    {CalibrationAlgorithm::kEntropy, "ENTROPY_CALIBRATION", "EntropyCalibration"},
    {CalibrationAlgorithm::kEntropy2, "ENTROPY_CALIBRATION_2", "EntropyCalibration2"},
    {CalibrationAlgorithm::kLegacy, "LEGACY_CALIBRATION", "LegacyCalibration"},
}};

// 2^(8-1): the positive half of signed 8-bit, the number of levels Q is built from.
constexpr size_t kLevels = 128;
// ENTROPY (v1) searches the GTC 2017 (S7310) histogram of 2048 bins.
constexpr size_t kEntropyV1Bins = 2048;

double xlogx(double c) { return c > 0.0 ? c * std::log(c) : 0.0; }

size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

float entropy_v2(const AbsHistogram& h) {
    // [MLP]: the first bin (exact zeros and near-zero noise, a huge spike after ReLU-like ops) is
    // discarded before the search; left in, it would dominate P and Q's first group and so the KL.
    std::vector<uint64_t> counts = h.counts();
    counts[0] = 0;
    // Everything in bin 0: nothing left to search; the exact max is the only sensible threshold.
    if (std::all_of(counts.begin(), counts.end(), [](uint64_t c) { return c == 0; })) return h.max_abs();
    const KlSearchResult best = kl_search(counts, kLevels, counts.size());
    // Right edge of the last kept bin (pytorch-quantization's bin_edges[i]): every value in the kept
    // bins is representable; never above the exact max, where levels would only be wasted.
    const double threshold = static_cast<double>(best.bins) * h.bin_width();
    return static_cast<float>(std::min(threshold, static_cast<double>(h.max_abs())));
}

float entropy_v1(const AbsHistogram& h) {
    // S7310 searches exactly 2048 bins. A histogram that grew has 2048 * 2^k bins (power-of-two bin
    // counts), so merging runs of 2^k bins gives 2048 bins over the same range, edges exact.
    const std::vector<uint64_t>& fine = h.counts();
    const size_t factor = ceil_div(fine.size(), kEntropyV1Bins);
    std::vector<uint64_t> counts(ceil_div(fine.size(), factor), 0);
    for (size_t j = 0; j < fine.size(); ++j) counts[j / factor] += fine[j];
    const double width = h.bin_width() * static_cast<double>(factor);
    // S7310 loops i over range(128, 2048), i.e. never keeps every bin, and takes (i + 0.5) * width,
    // the centre of the first clipped bin. Bin 0 is used as collected.
    const size_t last = std::max(kLevels, counts.size() - 1);
    const KlSearchResult best = kl_search(counts, kLevels, last);
    const double threshold = (static_cast<double>(best.bins) + 0.5) * width;
    return static_cast<float>(std::min(threshold, static_cast<double>(h.max_abs())));
}

float legacy(const AbsHistogram& h, const LegacyParams& p) {
    KS_CHECK(p.quantile > 0.0 && p.quantile <= 1.0, "legacy calibration quantile must be in (0, 1], got ", p.quantile);
    KS_CHECK(p.regression_cutoff > 0.0 && p.regression_cutoff <= 1.0,
             "legacy calibration regression cutoff must be in (0, 1], got ", p.regression_cutoff);
    const std::vector<uint64_t>& counts = h.counts();
    uint64_t total = 0;
    for (uint64_t c : counts) total += c;
    // First bin whose cumulative fraction reaches the quantile; its upper edge bounds at least that
    // fraction of |x| (pytorch-quantization's percentile takes the lower edge, which bounds less).
    size_t idx = counts.size() - 1;
    uint64_t cumulative = 0;
    for (size_t j = 0; j < counts.size(); ++j) {
        cumulative += counts[j];
        if (static_cast<double>(cumulative) / static_cast<double>(total) >= p.quantile) {
            idx = j;
            break;
        }
    }
    const double threshold = static_cast<double>(idx + 1) * h.bin_width();
    const double cap = p.regression_cutoff * static_cast<double>(h.max_abs());
    return static_cast<float>(std::min(threshold, cap));
}

}  // namespace

std::string_view algorithm_name(CalibrationAlgorithm algorithm) {
    for (const AlgorithmNames& n : kNames) {
        if (n.algorithm == algorithm) return n.api;
    }
    KS_FAIL("invalid calibration algorithm ", static_cast<int>(algorithm));
}

CalibrationAlgorithm parse_algorithm(std::string_view name) {
    for (const AlgorithmNames& n : kNames) {
        if (n.api == name) return n.algorithm;
    }
    KS_FAIL("unknown calibration algorithm '", name,
            "' (expected MINMAX_CALIBRATION, ENTROPY_CALIBRATION, ENTROPY_CALIBRATION_2 or LEGACY_CALIBRATION)");
}

std::string_view cache_algorithm_name(CalibrationAlgorithm algorithm) {
    for (const AlgorithmNames& n : kNames) {
        if (n.algorithm == algorithm) return n.cache;
    }
    KS_FAIL("invalid calibration algorithm ", static_cast<int>(algorithm));
}

CalibrationAlgorithm parse_cache_algorithm_name(std::string_view name) {
    for (const AlgorithmNames& n : kNames) {
        if (n.cache == name) return n.algorithm;
    }
    KS_FAIL("unknown calibration algorithm '", name,
            "' in calibration cache header (expected MinMaxCalibration, EntropyCalibration, EntropyCalibration2 or "
            "LegacyCalibration)");
}

KlSearchResult kl_search(const std::vector<uint64_t>& counts, size_t first, size_t last) {
    const size_t n = counts.size();
    KS_CHECK(first >= kLevels && first <= last && last <= n, "invalid KL search range [", first, ", ", last,
             "] for a histogram of ", n, " bins");
    // Prefix sums make each candidate O(128) instead of O(i): a grown histogram can have 2^17 bins.
    std::vector<uint64_t> mass(n + 1, 0), nonzero(n + 1, 0);
    std::vector<double> plogp(n + 1, 0.0);
    for (size_t j = 0; j < n; ++j) {
        mass[j + 1] = mass[j] + counts[j];
        nonzero[j + 1] = nonzero[j] + (counts[j] > 0 ? 1 : 0);
        plogp[j + 1] = plogp[j] + xlogx(static_cast<double>(counts[j]));
    }
    const uint64_t total = mass[n];
    KS_CHECK(total > 0, "cannot run the entropy search on an empty histogram");

    // With unnormalised P' (sum T) and Q' (sum T_q = mass of the first i bins), and within a group of
    // z bins where P > 0 and Q-mass G each such bin has Q' = G / z:
    //   KL(P||Q) = (1/T) * sum_groups [ sum P' ln P' - (sum P') ln(G / z) ] - ln T + ln T_q.
    KlSearchResult best;
    bool found = false;
    for (size_t i = first; i <= last; ++i) {
        const uint64_t kept = mass[i];
        if (kept == 0) continue;  // Q would be all zero
        const uint64_t outliers = total - kept;
        double acc = 0.0;
        bool finite = true;
        for (size_t g = 0; g < kLevels; ++g) {
            // Bin j is in group floor(128 j / i); i >= 128 so every group has at least one bin.
            const size_t a = ceil_div(g * i, kLevels);
            const size_t b = ceil_div((g + 1) * i, kLevels);
            const uint64_t q_mass = mass[b] - mass[a];
            uint64_t z = nonzero[b] - nonzero[a];
            double p_mass = static_cast<double>(q_mass);
            double p_log_p = plogp[b] - plogp[a];
            if (b == i && outliers > 0) {
                // P's last bin also holds the clipped mass; Q is built from the unclipped counts.
                const uint64_t c = counts[i - 1];
                if (c == 0) ++z;
                p_log_p += xlogx(static_cast<double>(c + outliers)) - xlogx(static_cast<double>(c));
                p_mass += static_cast<double>(outliers);
            }
            if (z == 0) continue;
            if (q_mass == 0) {
                finite = false;  // P > 0 where Q = 0: infinite divergence
                break;
            }
            acc += p_log_p - p_mass * std::log(static_cast<double>(q_mass) / static_cast<double>(z));
        }
        if (!finite) continue;
        const double kl = acc / static_cast<double>(total) - std::log(static_cast<double>(total)) +
                          std::log(static_cast<double>(kept));
        if (!found || kl <= best.divergence) {  // <=: ties go to the larger i
            best = {i, kl};
            found = true;
        }
    }
    KS_CHECK(found, "entropy search found no candidate threshold with finite divergence");
    return best;
}

float compute_amax(const AbsHistogram& histogram, CalibrationAlgorithm algorithm, const LegacyParams& legacy_params) {
    KS_CHECK(histogram.count() > 0, "cannot calibrate a tensor with no collected values");
    // All zeros: no threshold is meaningful; callers decide (docs/calibration.md).
    if (histogram.empty_range()) return 0.0f;
    switch (algorithm) {
        case CalibrationAlgorithm::kMinMax:
            return histogram.max_abs();
        case CalibrationAlgorithm::kEntropy:
            return entropy_v1(histogram);
        case CalibrationAlgorithm::kEntropy2:
            return entropy_v2(histogram);
        case CalibrationAlgorithm::kLegacy:
            return legacy(histogram, legacy_params);
    }
    KS_FAIL("invalid calibration algorithm ", static_cast<int>(algorithm));
}

}  // namespace kestrel::quant
