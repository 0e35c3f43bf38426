// Division by a divisor fixed at launch with a multiply-high and a shift (Granlund and Montgomery,
// "Division by invariant integers using multiplication", 1994), exact for dividends in [0, 2^31).
// Conv tiles use it to turn a GEMM row into (image, output y, output x): an integer division by a
// run-time value is a ~20-instruction sequence, paid per row of every tile.
#pragma once

#include <cstdint>

#include "core/error.h"

#if defined(__CUDACC__)
#define KS_HOST_DEVICE __host__ __device__
#else
#define KS_HOST_DEVICE
#endif

namespace kestrel::cuda {

struct FastDivmod {
    int divisor = 1;
    uint32_t mul = 0;    // ceil(2^(31 + l) / divisor), l = ceil(log2(divisor)); unused for divisor 1
    uint32_t shift = 0;  // l - 1

    FastDivmod() = default;
    explicit FastDivmod(int d) : divisor(d) {
        KS_CHECK(d >= 1, "FastDivmod: divisor must be positive (got ", d, ")");
        if (d == 1) return;
        int l = 0;
        while ((int64_t{1} << l) < d) ++l;
        // m * d - 2^(31 + l) < d <= 2^l, so for n < 2^31 the error n * (m * d - 2^(31 + l)) / (d * 2^(31 + l))
        // stays below 1 / d and floor(n * m / 2^(31 + l)) = floor(n / d). m < 2^32 since d > 2^(l - 1).
        mul = static_cast<uint32_t>(((uint64_t{1} << (31 + l)) + static_cast<uint64_t>(d) - 1) /
                                    static_cast<uint64_t>(d));
        shift = static_cast<uint32_t>(l - 1);
    }

    // n in [0, 2^31).
    KS_HOST_DEVICE int div(int n) const {
        if (divisor == 1) return n;
#if defined(__CUDA_ARCH__)
        return static_cast<int>(__umulhi(static_cast<uint32_t>(n), mul) >> shift);
#else
        return static_cast<int>(((static_cast<uint64_t>(static_cast<uint32_t>(n)) * mul) >> 32) >> shift);
#endif
    }
    // Quotient, and n - quotient * divisor in rem.
    KS_HOST_DEVICE int divmod(int n, int& rem) const {
        const int q = div(n);
        rem = n - q * divisor;
        return q;
    }
};

}  // namespace kestrel::cuda

#undef KS_HOST_DEVICE
