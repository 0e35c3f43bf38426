// The INT8 convolution kernel against the fake-quantised reference (reference conv with
// precision="int8": input rounded to its per-tensor scale, weights to per-output-channel scales).
// Integer accumulation is exact, so the only differences are float rounding of the scales and
// ties in rounding the input: a tight tolerance applies.
#include <gtest/gtest.h>

#include <ostream>
#include <string>

#include "common/graph_builder.h"

namespace kestrel::test {
namespace {

struct Int8Case {
    int64_t ic, oc, hw, k, stride;
    bool silu, residual, blocked;
};

// gtest prints a parameter's bytes (padding included) unless told how: the listing that ctest's
// test names come from must not change between runs.
void PrintTo(const Int8Case& c, std::ostream* os) {
    *os << "ic " << c.ic << " oc " << c.oc << " hw " << c.hw << " k " << c.k << " s " << c.stride << " silu " << c.silu
        << " res " << c.residual << " blocked " << c.blocked;
}

class Int8Conv : public ::testing::TestWithParam<Int8Case> {};

TEST_P(Int8Conv, MatchesFakeQuantisedReference) {
    const Int8Case c = GetParam();
    Rng rng;
    GraphBuilder b(rng);
    int x = c.blocked ? b.blocked_input({1, c.ic, c.hw, c.hw}) : b.input({1, c.ic, c.hw, c.hw});
    // The residual comes from the same input (the session runs one-input graphs): a 1x1 conv with
    // the same stride has the main conv's output size.
    int r = c.residual ? b.conv(x, c.ic, c.oc, {.k = 1, .stride = c.stride}) : -1;
    int y = b.conv(x, c.ic, c.oc,
                   {.k = c.k, .stride = c.stride, .pad = c.k / 2, .activation = c.silu ? "silu" : "", .residual = r});
    b.output(y);
    ir::Graph& g = b.graph();
    for (auto& n : g.nodes)
        if (n.op == ir::Op::kConv && n.outputs[0] == y) {
            n.attrs.set("precision", std::string("int8"));
            n.attrs.set("input_scale", 0.02f);
        }
    auto in = random_inputs(g, rng);
    auto got = run_cpu(g, in);
    auto want = run_reference(g, in);
    SCOPED_TRACE(rng.trace());
    EXPECT_LE(rel_l2(got[0], want[0]), 2e-3) << "ic " << c.ic << " oc " << c.oc << " hw " << c.hw << " k " << c.k
                                             << " s " << c.stride << " silu " << c.silu << " res " << c.residual;
}

INSTANTIATE_TEST_SUITE_P(Cases, Int8Conv,
                         ::testing::Values(Int8Case{16, 16, 8, 1, 1, false, false, true},
                                           Int8Case{16, 32, 10, 3, 1, true, false, true},
                                           Int8Case{32, 16, 12, 3, 2, true, false, true},
                                           Int8Case{16, 16, 9, 3, 1, true, true, true},
                                           Int8Case{8, 24, 7, 3, 1, false, false, false}),
                         [](const ::testing::TestParamInfo<Int8Case>& info) {
                             const Int8Case& c = info.param;
                             return "ic" + std::to_string(c.ic) + "_oc" + std::to_string(c.oc) + "_hw" +
                                    std::to_string(c.hw) + "_k" + std::to_string(c.k) + "_s" +
                                    std::to_string(c.stride) + (c.silu ? "_silu" : "") + (c.residual ? "_res" : "") +
                                    (c.blocked ? "_blocked" : "_plain");
                         });

}  // namespace
}  // namespace kestrel::test
