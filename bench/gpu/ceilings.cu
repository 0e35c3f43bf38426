// The GPU's measured ceilings, the denominators of BENCHMARKS.md's floors: what this card actually
// sustains, not its datasheet.
//   - DRAM bandwidth: a 16-byte-vector copy kernel over 2 GiB (bytes read + bytes written), and a
//     read-only sum over 2 GiB.
//   - Tensor-core GEMM: cuBLAS at 8192^3, FP16 inputs with FP32 accumulation (what Kestrel's FP16
//     convs compute) and INT8 inputs with INT32 accumulation.
// Each figure is the median of 20 timed runs (CUDA events) after 3 warm-ups.
//
//   build/kestrel_gpu_ceilings            # prints one line per ceiling
#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

namespace {

void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
        std::fprintf(stderr, "Error: %s: %s\n", what, cudaGetErrorString(e));
        std::exit(1);
    }
}
void check(cublasStatus_t s, const char* what) {
    if (s != CUBLAS_STATUS_SUCCESS) {
        std::fprintf(stderr, "Error: %s: cuBLAS status %d\n", what, static_cast<int>(s));
        std::exit(1);
    }
}

__global__ void copy16(const uint4* __restrict__ in, uint4* __restrict__ out, size_t n) {
    for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x)
        out[i] = in[i];
}

__global__ void sum16(const uint4* __restrict__ in, size_t n, unsigned* out) {
    unsigned s = 0;
    for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n; i += size_t{gridDim.x} * blockDim.x) {
        const uint4 v = in[i];
        s ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (s == 0x9e3779b9u) atomicAdd(out, s);  // keeps the loads; practically never taken
}

// Median milliseconds of `fn` over 20 runs after 3 warm-ups.
double median_ms(const std::function<void()>& fn) {
    cudaEvent_t a, b;
    check(cudaEventCreate(&a), "event");
    check(cudaEventCreate(&b), "event");
    for (int i = 0; i < 3; ++i) fn();
    std::vector<float> ms;
    for (int i = 0; i < 20; ++i) {
        check(cudaEventRecord(a), "record");
        fn();
        check(cudaEventRecord(b), "record");
        check(cudaEventSynchronize(b), "sync");
        float t = 0;
        check(cudaEventElapsedTime(&t, a, b), "elapsed");
        ms.push_back(t);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::nth_element(ms.begin(), ms.begin() + 10, ms.end());
    return ms[10];
}

}  // namespace

int main() {
    int dev = 0, sms = 0;
    cudaDeviceProp prop{};
    if (cudaGetDeviceCount(&dev) != cudaSuccess || dev == 0) {
        std::fprintf(stderr, "Error: no CUDA GPU\n");
        return 1;
    }
    check(cudaGetDeviceProperties(&prop, 0), "properties");
    sms = prop.multiProcessorCount;
    std::printf("GPU: %s, %d SMs\n", prop.name, sms);

    const size_t bytes = size_t{2} << 30, n16 = bytes / 16;
    void *a = nullptr, *b = nullptr;
    unsigned* sink = nullptr;
    check(cudaMalloc(&a, bytes), "malloc");
    check(cudaMalloc(&b, bytes), "malloc");
    check(cudaMalloc(&sink, sizeof(unsigned)), "malloc");
    check(cudaMemset(a, 1, bytes), "memset");
    const int blocks = sms * 8, threads = 512;
    const double copy_ms =
        median_ms([&] { copy16<<<blocks, threads>>>(static_cast<const uint4*>(a), static_cast<uint4*>(b), n16); });
    const double read_ms = median_ms([&] { sum16<<<blocks, threads>>>(static_cast<const uint4*>(a), n16, sink); });
    std::printf("DRAM copy (read + write, 2 GiB each way): %.0f GB/s\n", 2.0 * bytes / copy_ms / 1e6);
    std::printf("DRAM read (2 GiB): %.0f GB/s\n", double(bytes) / read_ms / 1e6);
    cudaFree(a);
    cudaFree(b);
    cudaFree(sink);

    cublasHandle_t h;
    check(cublasCreate(&h), "cublasCreate");
    const int m = 8192, n = 8192, k = 8192;
    void *A = nullptr, *B = nullptr, *C = nullptr;
    check(cudaMalloc(&A, size_t{m} * k * 2), "malloc");
    check(cudaMalloc(&B, size_t{k} * n * 2), "malloc");
    check(cudaMalloc(&C, size_t{m} * n * 4), "malloc");
    check(cudaMemset(A, 0x3c, size_t{m} * k * 2), "memset");  // 1.0-ish halves, 0x3c int8s
    check(cudaMemset(B, 0x3c, size_t{k} * n * 2), "memset");
    const float one = 1.f, zero = 0.f;
    const double f16_ms = median_ms([&] {
        check(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, A, CUDA_R_16F, m, B, CUDA_R_16F, k, &zero, C,
                           CUDA_R_32F, m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
              "gemm f16");
    });
    std::printf("cuBLAS GEMM FP16 in, FP32 accumulate, %dx%dx%d: %.0f TFLOP/s\n", m, n, k,
                2.0 * m * n * k / f16_ms / 1e9);
    const int32_t ione = 1, izero = 0;
    // INT8 GEMM wants A transposed (TN) with k a multiple of 4.
    const double i8_ms = median_ms([&] {
        check(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, m, n, k, &ione, A, CUDA_R_8I, k, B, CUDA_R_8I, k, &izero, C,
                           CUDA_R_32I, m, CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT),
              "gemm int8");
    });
    std::printf("cuBLAS GEMM INT8 in, INT32 accumulate, %dx%dx%d: %.0f TOPS\n", m, n, k, 2.0 * m * n * k / i8_ms / 1e9);
    cublasDestroy(h);
    cudaFree(A);
    cudaFree(B);
    cudaFree(C);
    return 0;
}
