// Test support for the yolo image tests: where test inputs live, and the golden cases that
// scripts/gen_letterbox_golden.py writes to tests/data/letterbox/golden.txt (OpenCV's results as
// FNV-1a-64 checksums plus sampled bytes, and the noise images it resizes).
#pragma once

#include <gtest/gtest.h>

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "yolo/image/image.h"

namespace kestrel::yolo::testing {

// ../shared beside the repository (KESTREL_SHARED overrides it).
inline std::string shared_dir() {
    if (const char* env = std::getenv("KESTREL_SHARED"); env != nullptr && *env != '\0') return env;
    return std::string(KESTREL_SOURCE_DIR) + "/../shared";
}

inline std::string shared_image(const std::string& name) { return shared_dir() + "/images/" + name; }

inline uint64_t fnv1a64(const void* data, size_t size) {
    uint64_t hash = 0xCBF29CE484222325ull;
    const auto* bytes = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < size; ++i) hash = (hash ^ bytes[i]) * 0x100000001B3ull;
    return hash;
}

// RGB noise: the top byte of successive xorshift32 states, as random_image() in the generator.
inline Image random_image(int width, int height, uint32_t seed) {
    Image image;
    image.width = width;
    image.height = height;
    image.data.resize(static_cast<size_t>(width) * height * 3);
    uint32_t state = seed;
    for (uint8_t& byte : image.data) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        byte = static_cast<uint8_t>(state >> 24);
    }
    return image;
}

// One line of golden.txt: name, source ("file:bus.jpg" or "random:WxH:seed"), op, and op-specific
// fields such as size=WxH, resized=WxH, pad=LEFTxTOP.
struct GoldenCase {
    std::map<std::string, std::string> fields;
    uint64_t fnv = 0;
    std::vector<std::pair<size_t, uint8_t>> samples;

    const std::string& field(const std::string& key) const {
        static const std::string kMissing;
        const auto it = fields.find(key);
        return it == fields.end() ? kMissing : it->second;
    }
    const std::string& name() const { return field("name"); }
    const std::string& op() const { return field("op"); }
};

// gtest prints parameters of failing tests; the name says which case it was.
inline void PrintTo(const GoldenCase& c, std::ostream* os) { *os << c.name(); }

inline std::string golden_path() { return std::string(KESTREL_SOURCE_DIR) + "/tests/data/letterbox/golden.txt"; }

// All cases, or none when the file is missing (GoldenData.FileIsPresent reports that).
inline const std::vector<GoldenCase>& golden_cases() {
    static const std::vector<GoldenCase> cases = [] {
        std::vector<GoldenCase> parsed;
        std::ifstream in(golden_path());
        std::string line;
        while (std::getline(in, line)) {
            if (line.empty() || line[0] == '#') continue;
            GoldenCase c;
            std::istringstream fields(line);
            std::string field;
            while (fields >> field) {
                const size_t eq = field.find('=');
                if (eq == std::string::npos) continue;
                c.fields[field.substr(0, eq)] = field.substr(eq + 1);
            }
            c.fnv = std::stoull(c.field("fnv"), nullptr, 16);
            std::istringstream samples(c.field("samples"));
            std::string sample;
            while (std::getline(samples, sample, ',')) {
                const size_t colon = sample.find(':');
                c.samples.emplace_back(std::stoull(sample.substr(0, colon)),
                                       static_cast<uint8_t>(std::stoi(sample.substr(colon + 1))));
            }
            parsed.push_back(std::move(c));
        }
        return parsed;
    }();
    return cases;
}

inline std::vector<GoldenCase> golden_cases_for(const std::string& op) {
    std::vector<GoldenCase> selected;
    for (const GoldenCase& c : golden_cases()) {
        if (c.op() == op) selected.push_back(c);
    }
    return selected;
}

// Parses "WxH" (also used for "LEFTxTOP").
inline std::pair<int, int> parse_pair(const std::string& text) {
    const size_t x = text.find('x');
    return {std::stoi(text.substr(0, x)), std::stoi(text.substr(x + 1))};
}

// The case's input image: a file under ../shared/images or seeded noise.
inline Image golden_source(const GoldenCase& c) {
    const std::string& source = c.field("source");
    if (source.rfind("file:", 0) == 0) return read_image(shared_image(source.substr(5)));
    const std::string spec = source.substr(source.find(':') + 1);  // WxH:seed
    const auto [width, height] = parse_pair(spec.substr(0, spec.find(':')));
    return random_image(width, height, static_cast<uint32_t>(std::stoul(spec.substr(spec.find(':') + 1))));
}

// Bit-exact comparison; on a mismatch says how many of the stored samples differ.
inline ::testing::AssertionResult matches_golden(const GoldenCase& c, const void* data, size_t size) {
    const uint64_t hash = fnv1a64(data, size);
    if (hash == c.fnv) return ::testing::AssertionSuccess();
    const auto* bytes = static_cast<const uint8_t*>(data);
    size_t differing = 0;
    std::ostringstream first;
    for (const auto& [offset, expected] : c.samples) {
        if (offset >= size || bytes[offset] == expected) continue;
        if (differing++ < 4) first << " [" << offset << "] " << int{bytes[offset]} << " != " << int{expected} << ";";
    }
    std::ostringstream hex;
    hex << std::hex << hash << " != " << c.fnv;
    return ::testing::AssertionFailure() << c.name() << ": checksum " << hex.str() << " (" << size << " bytes); "
                                         << differing << " of " << c.samples.size()
                                         << " sampled bytes differ:" << first.str();
}

// gtest parameter names allow only letters, digits and underscores.
inline std::string case_test_name(const ::testing::TestParamInfo<GoldenCase>& info) {
    std::string name = info.param.name();
    for (char& ch : name) {
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
    }
    return name;
}

}  // namespace kestrel::yolo::testing
