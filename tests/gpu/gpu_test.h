// What the GPU suites (kestrel_gpu_tests) share: whether a GPU is here, device buffers, the relative
// L2 error they all measure, and the shared test data (images and models), found under
// $KESTREL_SHARED, else CMake's KESTREL_SHARED (KESTREL_SHARED_DIR), else .gpu/shared in the checkout
// (what scripts/stage_gpu.sh stages for the GPU machine).
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "backends/cuda/tensors.h"
#include "core/error.h"
#include "ir/graph.h"

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

// False without a driver or a device (CI's machine): the GPU suites then skip, saying why.
inline bool gpu_available() {
    static const bool ok = [] {
        int n = 0;
        const bool found = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
        (void)cudaGetLastError();  // no driver: not an error to carry into later calls
        return found;
    }();
    return ok;
}

#define SKIP_WITHOUT_GPU()                                                                                  \
    do {                                                                                                    \
        if (!::kestrel::test::gpu_available()) GTEST_SKIP() << "no CUDA device: the GPU tests are skipped"; \
    } while (0)

// A device allocation of a fixed size, copied whole to and from the host.
class DeviceBuffer {
   public:
    explicit DeviceBuffer(size_t bytes) : bytes_(bytes) { KS_CUDA(cudaMalloc(&p_, std::max<size_t>(bytes_, 16))); }
    ~DeviceBuffer() { cudaFree(p_); }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;

    void* get() const { return p_; }
    uint8_t* bytes() const { return static_cast<uint8_t*>(p_); }  // for byte offsets
    float* f() const { return static_cast<float*>(p_); }
    size_t size() const { return bytes_; }

    void upload(const void* src) {
        if (bytes_) KS_CUDA(cudaMemcpy(p_, src, bytes_, cudaMemcpyHostToDevice));
    }
    void upload(const std::vector<uint8_t>& host) {
        KS_CHECK(host.size() == bytes_, "DeviceBuffer: uploading ", host.size(), " bytes into ", bytes_);
        upload(host.data());
    }
    void download(void* dst) const {
        if (bytes_) KS_CUDA(cudaMemcpy(dst, p_, bytes_, cudaMemcpyDeviceToHost));
    }
    std::vector<uint8_t> download() const {
        std::vector<uint8_t> host(bytes_);
        download(host.data());
        return host;
    }

   private:
    void* p_ = nullptr;
    size_t bytes_ = 0;
};

// A dense NHWC tensor (pixel stride = channels) at device address `data`.
inline cuda::NhwcTensor dense_nhwc(void* data, cuda::ElemType type, int n, int h, int w, int c) {
    cuda::NhwcTensor t;
    t.data = data;
    t.type = type;
    t.n = n;
    t.h = h;
    t.w = w;
    t.c = c;
    t.pixel_stride = c;
    return t;
}

// ||got - want|| / ||want|| over n floats (NaN in got makes it NaN, so a tolerance check fails).
inline double rel_l2(const float* got, const float* want, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; ++i) {
        const double d = static_cast<double>(got[i]) - want[i];
        num += d * d;
        den += static_cast<double>(want[i]) * want[i];
    }
    return std::sqrt(num / std::max(den, 1e-30));
}
inline double rel_l2(const std::vector<float>& got, const std::vector<float>& want) {
    return rel_l2(got.data(), want.data(), want.size());
}
inline double rel_l2(const ir::Tensor& got, const ir::Tensor& want) {
    return rel_l2(got.data<float>(), want.data<float>(), static_cast<size_t>(want.size()));
}

}  // namespace kestrel::test
