#include "runtime/session.h"

#include <chrono>
#include <cstring>

#include "core/error.h"

namespace kestrel::runtime {

Session::Session(std::shared_ptr<const plan::ExecutionPlan> plan) : plan_(std::move(plan)), ctx_(cpu::make_context()) {
    const ir::Graph& g = plan_->graph;
    // 64-byte aligned arena (oneDNN's preference); over-allocate and align by hand.
    arena_storage_.resize(static_cast<size_t>(plan_->arena_bytes) + 64);
    arena_ = arena_storage_.data() + (64 - reinterpret_cast<uintptr_t>(arena_storage_.data()) % 64) % 64;
    addr_.assign(g.values.size(), nullptr);
    for (size_t v = 0; v < g.values.size(); ++v) {
        const plan::ValuePlan& vp = plan_->values[v];
        if (vp.storage == plan::Storage::kArena) addr_[v] = arena_ + vp.offset;
        if (vp.storage == plan::Storage::kConstant)
            addr_[v] = const_cast<uint8_t*>(g.values[v].constant->bytes.data());  // kernels only read constants
    }
    for (size_t i = 0; i < g.nodes.size(); ++i) kernels_.push_back(cpu::create_kernel(*plan_, i, *ctx_));
    input_elements_ = num_elements(g.value(g.inputs[0]).shape);
}

std::vector<int64_t> Session::output_elements() const {
    std::vector<int64_t> r;
    for (int o : plan_->graph.outputs) r.push_back(num_elements(plan_->graph.value(o).shape));
    return r;
}

void Session::run(const float* input, int batch, const std::vector<float*>& outputs) {
    const ir::Graph& g = plan_->graph;
    KS_CHECK(outputs.size() == g.outputs.size(), "session: expected ", g.outputs.size(), " output buffers");
    auto out_elems = output_elements();
    if (profiling_) {
        times_.assign(g.nodes.size(), {});
        for (size_t i = 0; i < g.nodes.size(); ++i) times_[i].name = g.nodes[i].name;
    }
    for (int b = 0; b < batch; ++b) {
        addr_[static_cast<size_t>(g.inputs[0])] =
            reinterpret_cast<uint8_t*>(const_cast<float*>(input + static_cast<int64_t>(b) * input_elements_));
        for (size_t k = 0; k < outputs.size(); ++k)
            addr_[static_cast<size_t>(g.outputs[k])] = reinterpret_cast<uint8_t*>(outputs[k] + b * out_elems[k]);
        for (size_t v = 0; v < addr_.size(); ++v) {
            const plan::ValuePlan& vp = plan_->values[v];
            if (vp.storage == plan::Storage::kView) addr_[v] = addr_[static_cast<size_t>(vp.root)] + vp.offset;
        }
        for (size_t i = 0; i < kernels_.size(); ++i) {
            if (observer_) {
                kernels_[i]->run(addr_);
                for (int o : g.nodes[i].outputs) observer_(o, addr_[static_cast<size_t>(o)]);
                continue;
            }
            if (!profiling_) {
                kernels_[i]->run(addr_);
                continue;
            }
            auto t0 = std::chrono::steady_clock::now();
            kernels_[i]->run(addr_);
            times_[i].ms += std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        }
    }
}

}  // namespace kestrel::runtime
