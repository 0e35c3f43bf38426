#pragma once

#include <oneapi/dnnl/dnnl.hpp>

namespace kestrel::cpu {

struct CpuContext {
    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
};

}  // namespace kestrel::cpu
