// The .engine file (format in docs/engine-format.md): a fixed header, a JSON description (metadata,
// precision, target, batch profile, the optimised graph, the chosen kernels), a blob of constant
// data, and an FNV-1a-64 checksum of everything before it. Written atomically (temporary file,
// then rename) so a failed export never leaves a half-written engine behind.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ir/graph.h"

namespace kestrel::engine {

constexpr uint32_t kFormatVersion = 2;

struct EngineData {
    ir::Graph graph;                 // optimised IR at batch 1, with metadata
    std::string precision = "fp32";  // fp32 | fp16 | int8
    std::string target = "cpu";      // cpu | cuda:sm_XX
    int64_t min_batch = 1, opt_batch = 1, max_batch = 1;
    std::vector<std::string> kernels;  // one per plan node, checked on load
};

std::string serialize(const EngineData& data);
// Throws kestrel::Error for a foreign, truncated, corrupted or newer-version file; `what` names it.
EngineData deserialize(const std::string& bytes, const std::string& what);

void write_engine(const std::string& path, const EngineData& data);
EngineData read_engine(const std::string& path);

// True when the file starts with the engine magic (used to tell engines from ONNX files).
bool looks_like_engine(const std::string& path);

uint64_t fnv1a64(const uint8_t* data, size_t size);

}  // namespace kestrel::engine
