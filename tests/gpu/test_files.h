// Test data for the GPU pipeline suites (preprocess, NMS, detect pipeline): the shared images and
// models, found under $KESTREL_SHARED, else CMake's KESTREL_SHARED (KESTREL_SHARED_DIR), else
// .gpu/shared in the checkout (what scripts/stage_gpu.sh stages for the GPU machine).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace kestrel::test {

inline std::string shared_file(const std::string& rel) {
    if (const char* env = std::getenv("KESTREL_SHARED"); env && *env) return std::string(env) + "/" + rel;
    const std::string root = KESTREL_SOURCE_DIR;
    for (const std::string& dir : {std::string(KESTREL_SHARED_DIR), root + "/.gpu/shared"})
        if (std::filesystem::exists(dir + "/" + rel)) return dir + "/" + rel;
    return std::string(KESTREL_SHARED_DIR) + "/" + rel;
}

inline std::vector<uint8_t> read_file_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

inline bool gpu_available() {
    static const bool ok = [] {
        int n = 0;
        return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
    }();
    return ok;
}

}  // namespace kestrel::test
