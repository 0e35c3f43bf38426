// TensorRT's four implicit-quantization calibrators as threshold (amax) rules on an AbsHistogram.
// Activations are quantized symmetrically per tensor with scale = amax / 127. The exact rules (search
// range, bin edge, zero-bin handling, ENTROPY vs ENTROPY_2) are in docs/calibration.md.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "quant/histogram.h"

namespace kestrel::quant {

enum class CalibrationAlgorithm { kMinMax, kEntropy, kEntropy2, kLegacy };

// TensorRT's / Ultralytics' enum spelling: MINMAX_CALIBRATION, ENTROPY_CALIBRATION,
// ENTROPY_CALIBRATION_2, LEGACY_CALIBRATION.
std::string_view algorithm_name(CalibrationAlgorithm algorithm);
// Parses the spelling above (exact, case-sensitive); throws kestrel::Error listing the valid names.
CalibrationAlgorithm parse_algorithm(std::string_view name);

// The name in a calibration cache header (TRT-8601-<name>): MinMaxCalibration, EntropyCalibration,
// EntropyCalibration2, LegacyCalibration.
std::string_view cache_algorithm_name(CalibrationAlgorithm algorithm);
// Parses a cache-header name; throws kestrel::Error for an unknown one.
CalibrationAlgorithm parse_cache_algorithm_name(std::string_view name);

// IInt8LegacyCalibrator's two knobs. amax = the upper edge of the bin where the cumulative histogram
// first reaches `quantile` of all values, then capped at regression_cutoff * max|x|. Both in (0, 1].
struct LegacyParams {
    double quantile = 0.9999;
    double regression_cutoff = 1.0;
};

// The threshold amax (>= 0) for the histogram under the algorithm: 0 only when every value was 0.
// Throws kestrel::Error on an empty histogram (nothing added) or invalid LegacyParams.
float compute_amax(const AbsHistogram& histogram, CalibrationAlgorithm algorithm, const LegacyParams& legacy = {});

// Symmetric 8-bit scale for a threshold, as TensorRT stores it: amax / 127 (in float).
inline float scale_from_amax(float amax) { return amax / 127.0f; }
inline float amax_from_scale(float scale) { return scale * 127.0f; }

// The KL search of the entropy calibrators on raw counts, exposed for tests and diagnostics:
// candidate i (bins kept) runs over [first, last]; P = counts[0, i) with counts[i, n) added to bin i-1;
// Q = counts[0, i) merged into 128 groups (bin j in group floor(128 j / i)), each group's sum spread
// evenly over the group's bins where P > 0. Returns the i with the smallest KL(P||Q), ties to the
// larger i, and that divergence (natural log). Candidates with P > 0 where Q = 0 are skipped;
// throws when no candidate is finite.
struct KlSearchResult {
    size_t bins = 0;
    double divergence = 0.0;
};
KlSearchResult kl_search(const std::vector<uint64_t>& counts, size_t first, size_t last);

}  // namespace kestrel::quant
