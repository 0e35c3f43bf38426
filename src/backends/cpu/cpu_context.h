#pragma once

#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

namespace kestrel::cpu {

struct CpuContext {
    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    // Scratch shared by kernels that run one after another (the INT8 conv's quantised input and
    // its NHWC output); grown at kernel creation, never during a run.
    std::vector<uint8_t> scratch;
    uint8_t* scratch_at(size_t offset) { return scratch.data() + offset; }
    void reserve_scratch(size_t bytes) {
        if (scratch.size() < bytes) scratch.resize(bytes);
    }
};

}  // namespace kestrel::cpu
