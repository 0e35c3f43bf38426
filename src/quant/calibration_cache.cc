#include "quant/calibration_cache.h"

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "core/error.h"

namespace kestrel::quant {
namespace {

constexpr std::string_view kSidecarFormat = "kestrel-calibration-meta";
constexpr int kSidecarFormatVersion = 1;

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s) {
        if (c < '0' || c > '9') return false;
    }
    return true;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// FNV-1a, 64 bit: detects a cache rewritten behind the sidecar's back (not an integrity guarantee
// against deliberate tampering, which is not the threat here).
std::string fnv1a64_hex(std::string_view bytes) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (unsigned char c : bytes) {
        h ^= c;
        h *= 0x100000001b3ULL;
    }
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

std::string read_file(const std::string& path, std::string_view what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) KS_FAIL("cannot read ", what, " '", path, "': ", std::strerror(errno));
    std::ostringstream os;
    os << in.rdbuf();
    if (in.bad()) KS_FAIL("cannot read ", what, " '", path, "'");
    return os.str();
}

void write_file_atomic(const std::string& path, std::string_view bytes, std::string_view what) {
    // Readers (another build, TensorRT) see either the old file or the complete new one.
    const std::string tmp = path + ".tmp";
    std::FILE* f = std::fopen(tmp.c_str(), "wb");
    if (f == nullptr) KS_FAIL("cannot write ", what, " '", path, "': ", std::strerror(errno));
    const bool written = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() && std::fflush(f) == 0;
    const int write_errno = errno;
    if (std::fclose(f) != 0 || !written) {
        std::remove(tmp.c_str());
        KS_FAIL("cannot write ", what, " '", path, "': ", std::strerror(written ? errno : write_errno));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int rename_errno = errno;
        std::remove(tmp.c_str());
        KS_FAIL("cannot write ", what, " '", path, "': ", std::strerror(rename_errno));
    }
}

std::map<std::string, std::string> parse_sidecar(const std::string& meta_path, std::string_view cache_bytes) {
    const std::string text = read_file(meta_path, "calibration metadata");
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    const auto bad = [&](std::string_view why) { KS_FAIL("malformed calibration metadata '", meta_path, "': ", why); };
    if (j.is_discarded() || !j.is_object()) bad("not a JSON object");
    if (!j.contains("format") || j["format"] != kSidecarFormat) bad("missing \"format\": \"kestrel-calibration-meta\"");
    if (!j.contains("format_version") || j["format_version"] != kSidecarFormatVersion) {
        bad("unsupported \"format_version\" (expected 1)");
    }
    if (!j.contains("cache_fnv1a64") || !j["cache_fnv1a64"].is_string()) bad("missing \"cache_fnv1a64\"");
    if (!j.contains("meta") || !j["meta"].is_object()) bad("missing \"meta\" object");
    if (j["cache_fnv1a64"].get<std::string>() != fnv1a64_hex(cache_bytes)) {
        KS_FAIL("calibration metadata '", meta_path,
                "' does not match its cache (the cache was rewritten by another tool?); delete one of them");
    }
    std::map<std::string, std::string> meta;
    for (const auto& [key, value] : j["meta"].items()) {
        if (!value.is_string()) bad("meta value for '" + key + "' is not a string");
        meta[key] = value.get<std::string>();
    }
    return meta;
}

}  // namespace

std::string format_cache(const CalibrationCache& cache) {
    KS_CHECK(all_digits(cache.version), "calibration cache version must be digits (e.g. 8601), got '", cache.version,
             "'");
    std::string out = "TRT-" + cache.version + "-" + std::string(cache_algorithm_name(cache.algorithm)) + "\n";
    std::set<std::string_view> seen;
    for (const auto& [name, scale] : cache.scales) {
        KS_CHECK(!name.empty(), "calibration cache has an empty tensor name");
        KS_CHECK(name.find_first_of("\r\n") == std::string::npos, "tensor name '", name,
                 "' contains a line break and cannot be written to a calibration cache");
        KS_CHECK(seen.insert(name).second, "calibration cache lists tensor '", name, "' twice");
        KS_CHECK(std::isfinite(scale) && scale > 0.0f, "calibration scale for tensor '", name,
                 "' must be finite and positive, got ", scale);
        char hex[9];
        std::snprintf(hex, sizeof(hex), "%08x", static_cast<unsigned>(std::bit_cast<uint32_t>(scale)));
        out += name;
        out += ": ";
        out += hex;
        out += '\n';
    }
    return out;
}

CalibrationCache parse_cache(std::string_view text, std::string_view source) {
    CalibrationCache cache;
    std::set<std::string, std::less<>> seen;
    bool have_header = false;
    size_t line_no = 0;
    size_t pos = 0;
    while (pos < text.size()) {
        size_t end = text.find('\n', pos);
        if (end == std::string_view::npos) end = text.size();
        std::string_view line = text.substr(pos, end - pos);
        pos = end + 1;
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.find_first_not_of(" \t") == std::string_view::npos) continue;  // blank

        if (!have_header) {
            // TRT-<digits>-<AlgorithmName>
            const size_t dash = line.size() > 4 ? line.find('-', 4) : std::string_view::npos;
            if (line.substr(0, 4) != "TRT-" || dash == std::string_view::npos ||
                !all_digits(line.substr(4, dash - 4))) {
                KS_FAIL(source, " line ", line_no, ": expected header 'TRT-<version>-<algorithm>', got '", line, "'");
            }
            cache.version = std::string(line.substr(4, dash - 4));
            const std::string_view name = line.substr(dash + 1);
            try {
                cache.algorithm = parse_cache_algorithm_name(name);
            } catch (const Error& e) {
                KS_FAIL(source, " line ", line_no, ": ", e.what());
            }
            have_header = true;
            continue;
        }

        // Tensor names may themselves contain ": ", the hex never does.
        const size_t sep = line.rfind(": ");
        if (sep == std::string_view::npos) {
            KS_FAIL(source, " line ", line_no, ": expected '<tensor name>: <hex scale>', got '", line, "'");
        }
        const std::string_view name = line.substr(0, sep);
        std::string_view hex = line.substr(sep + 2);
        while (!hex.empty() && (hex.back() == ' ' || hex.back() == '\t')) hex.remove_suffix(1);
        if (name.empty()) KS_FAIL(source, " line ", line_no, ": empty tensor name");
        if (hex.empty() || hex.size() > 8) {
            KS_FAIL(source, " line ", line_no, ": bad hex scale '", hex, "' for tensor '", name,
                    "' (expected up to 8 hex digits)");
        }
        uint32_t bits = 0;
        for (char c : hex) {
            const int v = hex_value(c);
            if (v < 0) {
                KS_FAIL(source, " line ", line_no, ": bad hex scale '", hex, "' for tensor '", name,
                        "' (expected up to 8 hex digits)");
            }
            bits = (bits << 4) | static_cast<uint32_t>(v);
        }
        const float scale = std::bit_cast<float>(bits);
        if (!std::isfinite(scale) || scale <= 0.0f) {
            KS_FAIL(source, " line ", line_no, ": scale ", hex, " (", scale, ") for tensor '", name,
                    "' is not finite and positive");
        }
        if (!seen.insert(std::string(name)).second) {
            KS_FAIL(source, " line ", line_no, ": tensor '", name, "' appears twice");
        }
        cache.scales.emplace_back(std::string(name), scale);
    }
    if (!have_header) KS_FAIL(source, " is empty (expected a 'TRT-<version>-<algorithm>' header)");
    return cache;
}

std::string cache_meta_path(const std::string& cache_path) { return cache_path + ".json"; }

void write_cache(const std::string& path, const CalibrationCache& cache) {
    const std::string text = format_cache(cache);
    const std::string meta_path = cache_meta_path(path);
    if (cache.kestrel_meta.empty()) {
        write_file_atomic(path, text, "calibration cache");
        // A leftover sidecar would describe an older cache (and fail the digest check on read).
        std::error_code ec;
        std::filesystem::remove(meta_path, ec);
        return;
    }
    nlohmann::json j;
    j["format"] = kSidecarFormat;
    j["format_version"] = kSidecarFormatVersion;
    j["cache_fnv1a64"] = fnv1a64_hex(text);
    j["meta"] = nlohmann::json::object();
    for (const auto& [key, value] : cache.kestrel_meta) j["meta"][key] = value;
    // Sidecar first: if we stop between the two renames, the digest no longer matches and the next
    // read fails loudly rather than pairing new metadata with the old cache silently.
    write_file_atomic(meta_path, j.dump(2) + "\n", "calibration metadata");
    write_file_atomic(path, text, "calibration cache");
}

CalibrationCache read_cache(const std::string& path) {
    const std::string text = read_file(path, "calibration cache");
    CalibrationCache cache = parse_cache(text, "calibration cache '" + path + "'");
    const std::string meta_path = cache_meta_path(path);
    std::error_code ec;
    if (std::filesystem::exists(meta_path, ec)) cache.kestrel_meta = parse_sidecar(meta_path, text);
    return cache;
}

void validate_cache(const CalibrationCache& cache, CalibrationAlgorithm algorithm,
                    const std::map<std::string, std::string>& expected_meta, bool allow_without_meta) {
    KS_CHECK(cache.algorithm == algorithm, "calibration cache was made by ", algorithm_name(cache.algorithm), ", not ",
             algorithm_name(algorithm), "; recalibrate or pick the cache's algorithm");
    if (cache.kestrel_meta.empty()) {
        KS_CHECK(allow_without_meta,
                 "calibration cache has no Kestrel metadata (written by TensorRT?), so it cannot be checked against "
                 "this model and dataset; pass it explicitly to use it anyway");
        return;
    }
    for (const auto& [key, value] : expected_meta) {
        const auto it = cache.kestrel_meta.find(key);
        KS_CHECK(it != cache.kestrel_meta.end(), "calibration cache metadata lacks '", key, "'; recalibrate");
        KS_CHECK(it->second == value, "calibration cache was made for ", key, "=", it->second, ", not ", value,
                 "; recalibrate");
    }
}

}  // namespace kestrel::quant
