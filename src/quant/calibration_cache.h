// TensorRT's calibration cache (text), plus Kestrel's validation metadata in a JSON sidecar.
//
// The cache itself is exactly what TensorRT reads and writes, so caches move both ways:
//   TRT-8601-EntropyCalibration2
//   images: 3c010a14
//   (Unnamed Layer* 12) [Convolution]_output: 3c008912
// Line 1 is TRT-<version>-<algorithm>; each further line is "<tensor name>: <hex>", the hex being the
// IEEE-754 float32 bit pattern of scale = amax / 127 written most significant digit first. Tensor
// names may contain spaces, colons and brackets, so a line is split at its LAST ": ".
//
// TensorRT rejects any other line, so Kestrel's metadata (model/dataset fingerprints, imgsz, batch)
// lives in "<cache>.json" beside it, which records a digest of the cache bytes: a cache rewritten by
// another tool no longer matches its sidecar, and reading it fails instead of trusting stale metadata.
// A plain TensorRT cache (no sidecar) reads with empty kestrel_meta. See docs/calibration.md.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "quant/calibrators.h"

namespace kestrel::quant {

struct CalibrationCache {
    std::string version = "8601";  // TensorRT 8.6.1; any string of digits
    CalibrationAlgorithm algorithm = CalibrationAlgorithm::kEntropy2;
    std::vector<std::pair<std::string, float>> scales;  // tensor name -> scale (amax / 127), file order
    std::map<std::string, std::string> kestrel_meta;    // from the sidecar; empty for TensorRT's files
};

// Metadata keys Kestrel writes and checks (values are opaque strings compared exactly).
inline constexpr std::string_view kMetaModelFingerprint = "model_fingerprint";
inline constexpr std::string_view kMetaDatasetFingerprint = "dataset_fingerprint";
inline constexpr std::string_view kMetaImgsz = "imgsz";
inline constexpr std::string_view kMetaCalibrationBatch = "calibration_batch";
// Legacy caches depend on the knobs too (TensorRT rejects a legacy cache whose knobs differ).
inline constexpr std::string_view kMetaLegacyQuantile = "legacy_quantile";
inline constexpr std::string_view kMetaLegacyRegressionCutoff = "legacy_regression_cutoff";

// TensorRT's text for the cache (header and scales; kestrel_meta is not part of it). Throws on an
// invalid cache: version not digits, empty or duplicate name, a name with a line break, or a scale
// that is not finite and positive.
std::string format_cache(const CalibrationCache& cache);

// Parses TensorRT's text (CRLF and blank lines accepted; hex 1-8 digits, either case). `source`
// names the text in errors, which are one line and give the line number. kestrel_meta is empty.
CalibrationCache parse_cache(std::string_view text, std::string_view source = "calibration cache");

// The sidecar holding kestrel_meta: cache_path + ".json".
std::string cache_meta_path(const std::string& cache_path);

// Writes the cache to `path` and, when kestrel_meta is non-empty, the sidecar; each file atomically
// (written to "<file>.tmp", then renamed). With empty kestrel_meta an existing sidecar is removed so
// it cannot describe the new cache. Throws a one-line error if a file cannot be written.
void write_cache(const std::string& path, const CalibrationCache& cache);

// Reads a cache written by TensorRT or Kestrel; the sidecar, if present, must match the cache bytes.
CalibrationCache read_cache(const std::string& path);

// Checks that a cache may be used for a build: same algorithm, and every expected metadata entry
// present with the same value. A cache without metadata (TensorRT's) passes only when
// allow_without_meta is set, i.e. the user supplied the cache explicitly. Throws a one-line error
// naming the first mismatch.
void validate_cache(const CalibrationCache& cache, CalibrationAlgorithm algorithm,
                    const std::map<std::string, std::string>& expected_meta, bool allow_without_meta = false);

}  // namespace kestrel::quant
