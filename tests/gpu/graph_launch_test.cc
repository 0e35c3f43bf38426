// Kernels captured into a CUDA graph with programmatic dependent launch (backends/cuda/launch.cuh):
// consecutive kernels are joined by programmatic edges, and every kernel still sees all the writes
// of the kernels before it and overwrites nothing they still read.
//
// The chain is a Fibonacci recurrence over a ring of three buffers, buf[k % 3] = buf[(k - 1) % 3] +
// buf[(k - 2) % 3]: each add reads the outputs of the one and two launches before it (as a residual
// or a concat slice does) and overwrites the buffer the add before it read (the arena's reuse). The
// values are small integers, exact in float32, so any race shows as a wrong element.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "backends/cuda/ops.h"
#include "gpu/gpu_test.h"

namespace kestrel::test {
namespace {

using cuda::BinaryOp;
using cuda::ElemType;
using cuda::NhwcTensor;
using cuda::UnaryOp;

NhwcTensor tensor_at(float* data, int h, int w, int c) { return dense_nhwc(data, ElemType::kF32, 1, h, w, c); }

TEST(CudaGraphLaunch, ChainedKernelsKeepStreamOrder) {
    SKIP_WITHOUT_GPU();
    // 16 MB a buffer: each add runs for several microseconds, long enough for a launch that does not
    // wait to overlap the add before it.
    constexpr int kH = 1024, kW = 1024, kC = 4, kSteps = 24, kReplays = 20;
    constexpr size_t kCount = size_t{kH} * kW * kC;
    std::vector<float> x(kCount), y(kCount);
    for (size_t i = 0; i < kCount; ++i) {
        x[i] = static_cast<float>(i % 7);
        y[i] = static_cast<float>(i % 5 + 1);
    }
    DeviceBuffer xd(kCount * 4), yd(kCount * 4), ring(3 * kCount * 4);
    xd.upload(x.data());
    yd.upload(y.data());
    auto buf = [&](int k) { return tensor_at(ring.f() + (k % 3) * kCount, kH, kW, kC); };

    cudaStream_t stream = nullptr;
    KS_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    KS_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    cuda::unary_nhwc(UnaryOp::kCopy, tensor_at(xd.f(), kH, kW, kC), buf(0), stream);
    cuda::unary_nhwc(UnaryOp::kCopy, tensor_at(yd.f(), kH, kW, kC), buf(1), stream);
    for (int k = 2; k <= kSteps; ++k) cuda::binary_nhwc(BinaryOp::kAdd, buf(k - 1), buf(k - 2), buf(k), stream);
    cudaGraph_t graph = nullptr;
    KS_CUDA(cudaStreamEndCapture(stream, &graph));

    // Every kernel after the first hangs from the one before it by a programmatic edge.
    size_t nodes = 0, edges = 0;
    KS_CUDA(cudaGraphGetNodes(graph, nullptr, &nodes));
    KS_CUDA(cudaGraphGetEdges(graph, nullptr, nullptr, nullptr, &edges));
    std::vector<cudaGraphNode_t> from(edges), to(edges);
    std::vector<cudaGraphEdgeData> data(edges);
    KS_CUDA(cudaGraphGetEdges(graph, from.data(), to.data(), data.data(), &edges));
    int programmatic = 0;
    for (const cudaGraphEdgeData& e : data) programmatic += e.type == cudaGraphDependencyTypeProgrammatic;
    EXPECT_EQ(nodes, size_t{kSteps + 1});
    EXPECT_EQ(edges, size_t{kSteps});
    EXPECT_EQ(programmatic, kSteps);

    cudaGraphExec_t exec = nullptr;
    KS_CUDA(cudaGraphInstantiate(&exec, graph, 0));
    KS_CUDA(cudaGraphDestroy(graph));

    // The host's recurrence, in the same ring.
    std::vector<float> want(3 * kCount);
    std::copy(x.begin(), x.end(), want.begin());
    std::copy(y.begin(), y.end(), want.begin() + kCount);
    for (int k = 2; k <= kSteps; ++k)
        for (size_t i = 0; i < kCount; ++i)
            want[(k % 3) * kCount + i] = want[((k - 1) % 3) * kCount + i] + want[((k - 2) % 3) * kCount + i];

    std::vector<float> got(3 * kCount);
    for (int r = 0; r < kReplays; ++r) {
        KS_CUDA(cudaMemsetAsync(ring.get(), 0xff, ring.size(), stream));  // NaN: stale data cannot pass
        KS_CUDA(cudaGraphLaunch(exec, stream));
        KS_CUDA(cudaStreamSynchronize(stream));
        ring.download(got.data());
        size_t wrong = 0;
        for (size_t i = 0; i < got.size(); ++i) wrong += got[i] != want[i];
        ASSERT_EQ(wrong, 0u) << "replay " << r;
    }
    KS_CUDA(cudaGraphExecDestroy(exec));
    KS_CUDA(cudaStreamDestroy(stream));
}

}  // namespace
}  // namespace kestrel::test
