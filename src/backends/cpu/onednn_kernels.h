#pragma once

#include "backends/cpu/cpu_context.h"
#include "backends/cpu/kernel.h"

namespace kestrel::cpu {

std::unique_ptr<Kernel> make_conv_kernel(const plan::ExecutionPlan& plan, const ir::Node& n, CpuContext& ctx,
                                         bool transposed);
std::unique_ptr<Kernel> make_maxpool_kernel(const plan::ExecutionPlan& plan, const ir::Node& n, CpuContext& ctx);

}  // namespace kestrel::cpu
