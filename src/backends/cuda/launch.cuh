// Kernel launches with programmatic dependent launch (PDL, sm_90+) inside CUDA graphs.
//
// In a graph a kernel normally starts only once the kernel before it has finished and its writes
// are flushed; the next grid's launch and CTA dispatch then wait on an idle GPU. At batch 1, where
// YOLOv8n is ~70 kernels of a few microseconds each, those gaps add up. A kernel that
// launch_kernel() captures into a graph is joined to the kernel before it by a programmatic edge: it
// is launched as that kernel's last CTAs exit, and its threads wait in wait_for_previous_kernel()
// for that kernel's completion and memory flush.
//
// The contract, for every kernel launched here: each thread calls wait_for_previous_kernel() before
// its first access to memory that a kernel writes (activations, workspaces, split-K counters); only
// the engine's constant weights may be read before it. A kernel cannot finish before its threads
// have waited, so kernels still finish in stream order, and reading the output of a kernel two or
// more launches back (a residual, a concat slice) is as safe as without PDL. Launched without the
// attribute the wait returns at once.
//
// Measured on the H100 (BENCHMARKS.md): batch 1 0.367 -> 0.358 ms, batch 8 -1.3 %, batch 32-128
// level. Releasing the next kernel early instead (griddepcontrol.launch_dependents at the top of
// each kernel, so its CTAs become resident beside the running kernel's) was 2-5 % slower at batch
// 8-128 (not profiled; a likely cause is that the waiting CTAs hold shared memory on SMs whose
// shared-memory carveout then cannot change for the next kernel).
#pragma once

#include <cuda_runtime.h>

#include "backends/cuda/tensors.h"

namespace kestrel::cuda {

__device__ __forceinline__ void wait_for_previous_kernel() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

namespace detail {
inline thread_local bool plain_graph_launches = false;  // ScopedPlainGraphLaunches

// PDL only while the stream is being captured into a CUDA graph (the engine's replays), and not
// into the auto-tuner's timing graphs (ScopedPlainGraphLaunches). The tuner times one kernel
// launched back to back; with PDL those launches overlap each other's prologue: on the H100 the
// tuned batch-1 layer times summed 14 % less than without, the picks changed and the graphs got
// slower. The per-layer profile launches kernels one after another outside graphs.
inline cudaLaunchConfig_t launch_config(dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                                        cudaLaunchAttribute& attr) {
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    KS_CUDA(cudaStreamIsCapturing(stream, &capture));
    attr = {};
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = &attr;
    cfg.numAttrs = capture == cudaStreamCaptureStatusActive && !plain_graph_launches ? 1 : 0;
    return cfg;
}
}  // namespace detail

// While one lives, the kernels this thread captures into a graph launch without PDL.
class ScopedPlainGraphLaunches {
   public:
    ScopedPlainGraphLaunches() : previous_(detail::plain_graph_launches) { detail::plain_graph_launches = true; }
    ~ScopedPlainGraphLaunches() { detail::plain_graph_launches = previous_; }
    ScopedPlainGraphLaunches(const ScopedPlainGraphLaunches&) = delete;
    ScopedPlainGraphLaunches& operator=(const ScopedPlainGraphLaunches&) = delete;

   private:
    bool previous_;
};

// kernel<<<grid, block, smem, stream>>>(args...) with PDL; the kernel keeps the contract above.
template <typename... Params, typename... Args>
void launch_kernel(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args&&... args) {
    cudaLaunchAttribute attr;
    const cudaLaunchConfig_t cfg = detail::launch_config(grid, block, smem, stream, attr);
    KS_CUDA(cudaLaunchKernelEx(&cfg, kernel, static_cast<Params>(args)...));
}

// The same for a kernel known by address, its arguments as pointers (cudaLaunchKernel's form).
inline void launch_kernel(const void* kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t stream, void** args) {
    cudaLaunchAttribute attr;
    const cudaLaunchConfig_t cfg = detail::launch_config(grid, block, smem, stream, attr);
    KS_CUDA(cudaLaunchKernelExC(&cfg, kernel, args));
}

}  // namespace kestrel::cuda
