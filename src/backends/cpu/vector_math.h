// Elementwise math written so that GCC vectorises the loops that call it (no libm calls, no
// branches; the CPU backend compiles with -fno-trapping-math so comparisons vectorise): exp with Cody-Waite range reduction and a degree-7 polynomial, accurate to about
// 2 ulp over the float range (std::exp in a loop stays scalar and was 2.5% of yolov8n's time).
#pragma once

#include <bit>
#include <algorithm>
#include <cstdint>

namespace kestrel::cpu {

inline float exp_poly(float x) {
    // Beyond these bounds exp under/overflows float; clamping keeps the bit tricks valid.
    x = std::min(std::max(x, -87.3f), 88.7f);
    // n = round(x / ln2) with the 1.5 * 2^23 trick (exact for |x / ln2| < 2^22, no rounding mode calls).
    float n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;
    // r = x - n ln2 in two steps, so r keeps full precision.
    float r = x - n * 0.693359375f;
    r = r + n * 2.12194440e-4f;
    // exp(r) for |r| <= ln2 / 2.
    float p = 1.f / 5040.f;
    p = p * r + 1.f / 720.f;
    p = p * r + 1.f / 120.f;
    p = p * r + 1.f / 24.f;
    p = p * r + 1.f / 6.f;
    p = p * r + 0.5f;
    p = p * r + 1.f;
    p = p * r + 1.f;
    // 2^n, built in the exponent field.
    int32_t e = (static_cast<int32_t>(n) + 127) << 23;
    return p * std::bit_cast<float>(e);
}

inline float sigmoid_poly(float x) { return 1.f / (1.f + exp_poly(-x)); }

}  // namespace kestrel::cpu
