// Executes an ExecutionPlan on the CPU backend: one kernel per plan node, one activation arena,
// images of a batch run one after another through the same plan.
//
//   auto plan = std::make_shared<plan::ExecutionPlan>(plan::build(graph));
//   runtime::Session s(plan);
//   s.run(input, batch, {output0});        // input: batch x C x H x W floats; outputs: batch x ...
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backends/cpu/kernel.h"
#include "plan/execution_plan.h"

namespace kestrel::runtime {

struct LayerTime {
    std::string name;
    std::string kernel;
    double ms = 0;
};

class Session {
   public:
    explicit Session(std::shared_ptr<const plan::ExecutionPlan> plan);
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Runs `batch` images. outputs[k] holds batch x (per-image size of graph output k) floats.
    void run(const float* input, int batch, const std::vector<float*>& outputs);

    // Called after each node with each value it wrote (for calibration): value id and address.
    using Observer = std::function<void(int value, const uint8_t* data)>;
    void set_observer(Observer observer) { observer_ = std::move(observer); }

    // Per-layer times of the last run when profiling is on (summed over the batch).
    void set_profiling(bool on) { profiling_ = on; }
    const std::vector<LayerTime>& layer_times() const { return times_; }

    int64_t input_elements() const { return input_elements_; }  // per image
    std::vector<int64_t> output_elements() const;                // per image, per output

   private:
    std::shared_ptr<const plan::ExecutionPlan> plan_;
    std::shared_ptr<cpu::CpuContext> ctx_;
    std::vector<std::unique_ptr<cpu::Kernel>> kernels_;
    std::vector<uint8_t> arena_storage_;
    uint8_t* arena_ = nullptr;
    cpu::Addresses addr_;
    int64_t input_elements_ = 0;
    bool profiling_ = false;
    Observer observer_;
    std::vector<LayerTime> times_;
};

}  // namespace kestrel::runtime
