// CPU backend: one Kernel per plan node, created once per session (weights reordered into the
// layout oneDNN prefers at creation) and run once per image with the tensors' addresses.
//
//   auto k = cpu::create_kernel(plan, i, context);   // throws "unsupported on cpu" with the op named
//   k->run(addresses);                               // addresses[v]: where value v lives for this image
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "plan/execution_plan.h"

namespace kestrel::cpu {

struct CpuContext;  // oneDNN engine and stream (cpu_context.h); kept out of this header

using Addresses = std::vector<uint8_t*>;

class Kernel {
   public:
    Kernel() = default;
    Kernel(const Kernel&) = delete;
    Kernel& operator=(const Kernel&) = delete;
    virtual ~Kernel() = default;
    virtual void run(const Addresses& addr) = 0;
};

// The kernel for node `index` of the plan, and its name (recorded in engines as the chosen tactic;
// names encode op, implementation, dtype and layouts: conv2d_onednn_f32_nChw8c_k3x3s2_silu).
std::unique_ptr<Kernel> create_kernel(const plan::ExecutionPlan& plan, size_t index, CpuContext& ctx);
std::string kernel_name(const plan::ExecutionPlan& plan, size_t index);

// Owns the oneDNN CPU engine and stream. One per session.
std::shared_ptr<CpuContext> make_context();

}  // namespace kestrel::cpu
