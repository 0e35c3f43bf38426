#pragma once

#include "backends/cpu/cpu_context.h"
#include "backends/cpu/kernel.h"

namespace kestrel::cpu {

std::unique_ptr<Kernel> make_conv_kernel(const plan::ExecutionPlan& plan, const ir::Node& n, CpuContext& ctx,
                                         bool transposed);
// A Conv with attribute precision="int8" and its input_scale (see int8_conv_kernel.cc).
std::unique_ptr<Kernel> make_int8_conv_kernel(const plan::ExecutionPlan& plan, const ir::Node& n, CpuContext& ctx);
std::unique_ptr<Kernel> make_maxpool_kernel(const plan::ExecutionPlan& plan, const ir::Node& n, CpuContext& ctx);

}  // namespace kestrel::cpu
