// The Winograd F(4x4, 3x3) convolution kernel against the reference (double-accumulated direct
// convolution). Winograd's transforms add float rounding that a direct convolution does not have
// (the points +-2 scale some terms by up to 8 before they cancel), so the tolerance is a little
// above the direct kernel's, far below anything the models' comparisons would notice.
#include <gtest/gtest.h>

#include <ostream>
#include <string>

#include "backends/cpu/kernel.h"
#include "backends/cpu/winograd_conv_kernel.h"
#include "common/graph_builder.h"

namespace kestrel::test {
namespace {

struct WinogradCase {
    int64_t ic, oc, h, w;
    bool silu, residual, concat;
};

void PrintTo(const WinogradCase& c, std::ostream* os) {
    *os << "ic " << c.ic << " oc " << c.oc << " " << c.h << "x" << c.w << " silu " << c.silu << " res " << c.residual
        << " concat " << c.concat;
}

bool cpu_has_avx2_fma() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

class WinogradConv : public ::testing::TestWithParam<WinogradCase> {};

TEST_P(WinogradConv, MatchesReference) {
    if (!cpu_has_avx2_fma()) GTEST_SKIP() << "the Winograd kernel needs AVX2 and FMA";
    const WinogradCase c = GetParam();
    Rng rng;
    GraphBuilder b(rng);
    int x = b.blocked_input({1, c.ic, c.h, c.w});
    int r = c.residual ? b.conv(x, c.ic, c.oc, {.k = 1}) : -1;
    int y = b.conv(x, c.ic, c.oc, {.k = 3, .pad = 1, .activation = c.silu ? "silu" : "", .residual = r}, "wino");
    // A consumer in nChw8c keeps the conv's output blocked (a graph output is planned plain); with
    // `concat` the conv writes into the second channel slice of the concat's buffer.
    if (c.concat) y = b.node(ir::Op::kConcat, {b.conv(x, c.ic, 8, {.k = 1}), y}, {{"axis", int64_t{1}}});
    b.output(b.conv(y, c.concat ? c.oc + 8 : c.oc, 8, {.k = 1}));
    ir::Graph& g = b.graph();

    auto plan = plan::build(prepare(g));
    bool found = false;
    for (size_t i = 0; i < plan.graph.nodes.size(); ++i)
        if (plan.graph.nodes[i].name == "wino") {
            found = true;
            ASSERT_TRUE(cpu::winograd_applies(plan, plan.graph.nodes[i])) << cpu::kernel_name(plan, i);
            EXPECT_NE(cpu::kernel_name(plan, i).find("winograd_f4x4"), std::string::npos) << cpu::kernel_name(plan, i);
        }
    ASSERT_TRUE(found);

    auto in = random_inputs(g, rng);
    auto got = run_cpu(g, in);
    auto want = run_reference(g, in);
    SCOPED_TRACE(rng.trace());
    EXPECT_LE(rel_l2(got[0], want[0]), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, WinogradConv,
    ::testing::Values(WinogradCase{8, 8, 4, 4, false, false, false}, WinogradCase{8, 16, 1, 1, true, false, false},
                      WinogradCase{16, 24, 9, 7, true, false, false}, WinogradCase{16, 16, 13, 10, true, true, false},
                      WinogradCase{32, 80, 20, 20, true, false, false}, WinogradCase{64, 64, 12, 17, true, true, true},
                      WinogradCase{128, 40, 5, 3, false, true, false}, WinogradCase{256, 64, 6, 6, true, false, true}),
    [](const ::testing::TestParamInfo<WinogradCase>& info) {
        const WinogradCase& c = info.param;
        return "ic" + std::to_string(c.ic) + "_oc" + std::to_string(c.oc) + "_" + std::to_string(c.h) + "x" +
               std::to_string(c.w) + (c.silu ? "_silu" : "") + (c.residual ? "_res" : "") + (c.concat ? "_concat" : "");
    });

// Only what the kernel computes is sent to it: other shapes keep oneDNN's direct convolution.
TEST(WinogradConv, AppliesOnlyTo3x3Stride1Pad1) {
    Rng rng;
    GraphBuilder b(rng);
    int x = b.blocked_input({1, 16, 8, 8});
    int s2 = b.conv(x, 16, 16, {.k = 3, .stride = 2, .pad = 1}, "stride2");
    int p0 = b.conv(x, 16, 16, {.k = 3, .pad = 0}, "pad0");
    int k1 = b.conv(x, 16, 16, {.k = 1}, "k1");
    int gr = b.conv(x, 16, 16, {.k = 3, .pad = 1, .group = 2}, "group2");
    int ok = b.conv(x, 16, 16, {.k = 3, .pad = 1}, "ok");
    for (int v : {s2, p0, k1, gr, ok}) b.output(b.conv(v, 16, 8, {.k = 1}));
    auto plan = plan::build(prepare(b.graph()));
    for (size_t i = 0; i < plan.graph.nodes.size(); ++i) {
        const ir::Node& n = plan.graph.nodes[i];
        if (n.name == "stride2" || n.name == "pad0" || n.name == "k1" || n.name == "group2") {
            EXPECT_FALSE(cpu::winograd_applies(plan, n)) << n.name;
        } else if (n.name == "ok") {
            EXPECT_EQ(cpu::winograd_applies(plan, n), cpu_has_avx2_fma());
        }
    }
}

}  // namespace
}  // namespace kestrel::test
