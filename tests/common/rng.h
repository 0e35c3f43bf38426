// Seeded random numbers for tests: a std::mt19937 with a fixed default seed so every run draws the
// same data (a failure reproduces), overridable with KESTREL_TEST_SEED=<n> to explore other draws.
// Put SCOPED_TRACE(rng.trace()) in a test so a failure names the seed it ran with.
//
//   test::Rng rng;                        // seed kDefaultSeed, or $KESTREL_TEST_SEED
//   SCOPED_TRACE(rng.trace());
//   auto w = rng.uniform_floats(n, -1.f, 1.f);
#pragma once

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

namespace kestrel::test {

inline constexpr uint32_t kDefaultSeed = 20240607;

// The seed tests start from: $KESTREL_TEST_SEED when set (to rerun with other data), else the default.
inline uint32_t default_seed() {
    if (const char* s = std::getenv("KESTREL_TEST_SEED"); s && *s)
        return static_cast<uint32_t>(std::strtoul(s, nullptr, 0));
    return kDefaultSeed;
}

class Rng {
   public:
    explicit Rng(uint32_t seed = default_seed()) : seed_(seed), engine_(seed) {}

    uint32_t seed() const { return seed_; }
    // For SCOPED_TRACE: gtest prints it with every failure inside the scope.
    std::string trace() const {
        return "rng seed " + std::to_string(seed_) + " (rerun with KESTREL_TEST_SEED=" + std::to_string(seed_) + ")";
    }

    float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(engine_); }
    int64_t uniform_int(int64_t lo, int64_t hi) { return std::uniform_int_distribution<int64_t>(lo, hi)(engine_); }
    std::vector<float> uniform_floats(size_t n, float lo, float hi) {
        std::vector<float> v(n);
        std::uniform_real_distribution<float> d(lo, hi);
        for (float& x : v) x = d(engine_);
        return v;
    }
    std::mt19937& engine() { return engine_; }

   private:
    uint32_t seed_;
    std::mt19937 engine_;
};

}  // namespace kestrel::test
