// FastDivmod (backends/cuda/fast_divmod.h) on the host, where it computes the same multiply-high and
// shift as on the device: against / and % for every divisor up to 4096, YOLO-sized and extreme
// divisors, and dividends at the edges of [0, 2^31).
#include "backends/cuda/fast_divmod.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

namespace kestrel::cuda {
namespace {

void expect_exact(int d, int n) {
    const FastDivmod f(d);
    int rem = -1;
    const int q = f.divmod(n, rem);
    ASSERT_EQ(q, n / d) << "n=" << n << " d=" << d;
    ASSERT_EQ(rem, n % d) << "n=" << n << " d=" << d;
}

TEST(FastDivmod, MatchesIntegerDivision) {
    std::mt19937 rng(20261126);
    std::uniform_int_distribution<int> any(0, INT32_MAX);
    std::vector<int> divisors;
    for (int d = 1; d <= 4096; ++d) divisors.push_back(d);
    for (int d : {6400, 25600, 102400, 409600, 1638400, 3 * 640 * 640, 65535, 65536, 65537, 1 << 30, (1 << 30) + 1,
                  INT32_MAX - 1, INT32_MAX})
        divisors.push_back(d);
    for (int d : divisors) {
        const int64_t d64 = d;
        for (int64_t n : {int64_t{0}, int64_t{1}, d64 - 1, d64, d64 + 1, 2 * d64 - 1, int64_t{INT32_MAX},
                          int64_t{INT32_MAX} - 1, int64_t{INT32_MAX} - d64})
            if (n >= 0 && n <= INT32_MAX) expect_exact(d, static_cast<int>(n));
        for (int i = 0; i < 64; ++i) expect_exact(d, any(rng));
        // Multiples and their neighbours, where a multiplier rounded the wrong way would show.
        for (int i = 0; i < 16; ++i) {
            const int64_t k = std::uniform_int_distribution<int64_t>(0, INT32_MAX / d)(rng);
            for (int64_t n : {k * d - 1, k * d, k * d + d - 1})
                if (n >= 0 && n <= INT32_MAX) expect_exact(d, static_cast<int>(n));
        }
        if (HasFatalFailure()) return;
    }
}

TEST(FastDivmod, RejectsNonPositiveDivisors) {
    EXPECT_THROW(FastDivmod(0), Error);
    EXPECT_THROW(FastDivmod(-3), Error);
}

}  // namespace
}  // namespace kestrel::cuda
