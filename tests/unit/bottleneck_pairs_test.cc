// Which convolutions a CUDA session may run as one bottleneck-pair kernel
// (runtime::cuda_bottleneck_pair_at), on yolov8n's CUDA plans, without a GPU: the 16- and
// 32-channel C2f bottlenecks of the FP16 plan and nothing else; no pair in the FP32 plan, where an
// INT8 conv stays INT8, or where the intermediate has another reader. Likewise the C2f blocks
// (plan::c2f_block_at, runtime::cuda_c2f_at): the planner's view of all of yolov8n's one-bottleneck
// C2f blocks, model.2 the one the fused kernel takes, and x's bytes kept apart from y's. And the
// neck's upsample -> concat -> 1x1 conv chains (plan::upsample_concat_conv_at).
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "onnx/model_importer.h"
#include "passes/pipeline.h"
#include "plan/execution_plan.h"
#include "runtime/cuda_session.h"

namespace kestrel::test {
namespace {

using cuda::ElemType;

std::string model_path() {
    const char* env = std::getenv("KESTREL_SHARED");
    return (env ? std::string(env) : std::string(KESTREL_SOURCE_DIR) + "/../shared") + "/models/yolov8n.onnx";
}

plan::ExecutionPlan cuda_plan(bool half) {
    ir::Graph g = onnx::import_model(model_path(), {});
    passes::run_pipeline(g, nullptr, {.fuse_yolo_decode = true, .fuse_yolo_head_convs = half});
    return plan::build(g, {.target = plan::Target::kCuda, .batch = 8, .half = half});
}

using FusionAt = bool (*)(const plan::ExecutionPlan&, const std::vector<std::vector<int>>&,
                          const std::function<ElemType(size_t)>&, size_t);

// The names of the nodes where `at` finds a fused group, every conv's GEMM in `type` except node
// `other` (kI8).
std::vector<std::string> found_at(FusionAt at, const plan::ExecutionPlan& p, ElemType type, size_t other,
                                  std::vector<std::vector<int>> consumers) {
    if (consumers.empty()) consumers = p.graph.consumers();
    const std::function<ElemType(size_t)> gemm = [&](size_t k) { return k == other ? ElemType::kI8 : type; };
    std::vector<std::string> found;
    for (size_t i = 0; i < p.graph.nodes.size(); ++i)
        if (at(p, consumers, gemm, i)) found.push_back(p.graph.nodes[i].name);
    return found;
}

// The first convs' names of the pairs found.
std::vector<std::string> pairs(const plan::ExecutionPlan& p, ElemType type, size_t other = SIZE_MAX,
                               std::vector<std::vector<int>> consumers = {}) {
    return found_at(runtime::cuda_bottleneck_pair_at, p, type, other, std::move(consumers));
}

size_t node_named(const plan::ExecutionPlan& p, const std::string& name) {
    for (size_t i = 0; i < p.graph.nodes.size(); ++i)
        if (p.graph.nodes[i].name == name) return i;
    ADD_FAILURE() << "no node " << name;
    return 0;
}

TEST(BottleneckPairs, Yolov8nFp16HasFourPairs) {
    const plan::ExecutionPlan p = cuda_plan(/*half=*/true);
    const std::vector<std::string> want = {"/model/2/m/0/cv1/conv/Conv/Conv", "/model/4/m/0/cv1/conv/Conv/Conv",
                                           "/model/4/m/1/cv1/conv/Conv/Conv", "/model/15/m/0/cv1/conv/Conv/Conv"};
    EXPECT_EQ(pairs(p, ElemType::kF16), want);
    // The pair's second conv is the next node and reads the first's output.
    for (const std::string& name : want) {
        const size_t i = node_named(p, name);
        EXPECT_EQ(p.graph.nodes[i + 1].inputs[0], p.graph.nodes[i].outputs[0]) << name;
    }
}

TEST(BottleneckPairs, NoneInFp32OrWithAnInt8Conv) {
    EXPECT_TRUE(pairs(cuda_plan(/*half=*/false), ElemType::kF32).empty());
    const plan::ExecutionPlan p = cuda_plan(/*half=*/true);
    // model.4's first bottleneck with its second conv in INT8: the other three pairs remain.
    const size_t second = node_named(p, "/model/4/m/0/cv2/conv/Conv/Conv");
    EXPECT_EQ(pairs(p, ElemType::kF16, second),
              (std::vector<std::string>{"/model/2/m/0/cv1/conv/Conv/Conv", "/model/4/m/1/cv1/conv/Conv/Conv",
                                        "/model/15/m/0/cv1/conv/Conv/Conv"}));
}

TEST(BottleneckPairs, NoneWhereTheIntermediateHasAnotherReader) {
    const plan::ExecutionPlan p = cuda_plan(/*half=*/true);
    std::vector<std::vector<int>> consumers = p.graph.consumers();
    const size_t first = node_named(p, "/model/2/m/0/cv1/conv/Conv/Conv");
    consumers[static_cast<size_t>(p.graph.nodes[first].outputs[0])].push_back(0);  // a second reader of t
    EXPECT_EQ(pairs(p, ElemType::kF16, SIZE_MAX, consumers),
              (std::vector<std::string>{"/model/4/m/0/cv1/conv/Conv/Conv", "/model/4/m/1/cv1/conv/Conv/Conv",
                                        "/model/15/m/0/cv1/conv/Conv/Conv"}));
}

// The first nodes (cv1) of the blocks plan::c2f_block_at finds, and of those cuda_c2f_at takes.
std::vector<std::string> c2f_blocks(const plan::ExecutionPlan& p, bool cuda_kernel, ElemType type = ElemType::kF16,
                                    size_t other = SIZE_MAX, std::vector<std::vector<int>> consumers = {}) {
    const FusionAt planned = [](const plan::ExecutionPlan& q, const std::vector<std::vector<int>>& readers,
                                const std::function<ElemType(size_t)>&,
                                size_t i) { return plan::c2f_block_at(q.graph, readers, i).has_value(); };
    return found_at(cuda_kernel ? runtime::cuda_c2f_at : planned, p, type, other, std::move(consumers));
}

TEST(C2fBlocks, Yolov8nHasSixOneBottleneckBlocksAndTheKernelTakesModel2) {
    const plan::ExecutionPlan p = cuda_plan(/*half=*/true);
    // model.4 and model.6 have two bottlenecks; the other six one.
    EXPECT_EQ(c2f_blocks(p, false),
              (std::vector<std::string>{"/model/2/cv1/conv/Conv/Conv", "/model/8/cv1/conv/Conv/Conv",
                                        "/model/12/cv1/conv/Conv/Conv", "/model/15/cv1/conv/Conv/Conv",
                                        "/model/18/cv1/conv/Conv/Conv", "/model/21/cv1/conv/Conv/Conv"}));
    EXPECT_EQ(c2f_blocks(p, true), std::vector<std::string>{"/model/2/cv1/conv/Conv/Conv"});
    const size_t cv1 = node_named(p, "/model/2/cv1/conv/Conv/Conv");
    const plan::C2fBlock b = *plan::c2f_block_at(p.graph, p.graph.consumers(), cv1);
    EXPECT_EQ(p.graph.nodes[b.m1].name, "/model/2/m/0/cv1/conv/Conv/Conv");
    EXPECT_EQ(p.graph.nodes[b.cv2].name, "/model/2/cv2/conv/Conv/Conv");
    // The planner keeps x (cv1's input) and y (cv2's output) apart in the arena: the kernel reads
    // one while writing the other (without the kept lifetime y took some of x's bytes).
    const plan::ValuePlan &x = p.values[static_cast<size_t>(p.graph.nodes[cv1].inputs[0])],
                          &y = p.values[static_cast<size_t>(p.graph.nodes[b.cv2].outputs[0])];
    ASSERT_EQ(x.storage, plan::Storage::kArena);
    ASSERT_EQ(y.storage, plan::Storage::kArena);
    const int64_t batch = p.options.batch;
    EXPECT_TRUE(x.offset + x.bytes / batch <= y.offset || y.offset + y.bytes / batch <= x.offset);
}

TEST(C2fBlocks, NoneInFp32WithAnInt8ConvOrASecondReader) {
    EXPECT_TRUE(c2f_blocks(cuda_plan(/*half=*/false), true, ElemType::kF32).empty());
    const plan::ExecutionPlan p = cuda_plan(/*half=*/true);
    for (const char* conv :
         {"/model/2/cv1/conv/Conv/Conv", "/model/2/m/0/cv2/conv/Conv/Conv", "/model/2/cv2/conv/Conv/Conv"})
        EXPECT_TRUE(c2f_blocks(p, true, ElemType::kF16, node_named(p, conv)).empty()) << conv;
    // A second reader of a (the split's first half): not a block for the planner either.
    std::vector<std::vector<int>> consumers = p.graph.consumers();
    const size_t split = node_named(p, "/model/2/Split/Split");
    consumers[static_cast<size_t>(p.graph.nodes[split].outputs[0])].push_back(0);
    EXPECT_TRUE(c2f_blocks(p, true, ElemType::kF16, SIZE_MAX, consumers).empty());
    EXPECT_EQ(c2f_blocks(p, false, ElemType::kF16, SIZE_MAX, consumers).size(), 5u);
}

// The stem + first conv kernel (runtime::cuda_stem_conv_at): yolov8n's model.0 in the FP16 plan only.
std::vector<std::string> stem_convs(const plan::ExecutionPlan& p, ElemType type, size_t other = SIZE_MAX,
                                    std::vector<std::vector<int>> consumers = {}) {
    return found_at(runtime::cuda_stem_conv_at, p, type, other, std::move(consumers));
}

TEST(StemConvs, Yolov8nFp16HasTheStemAndModel1Only) {
    const plan::ExecutionPlan p = cuda_plan(/*half=*/true);
    EXPECT_EQ(stem_convs(p, ElemType::kF16), std::vector<std::string>{"/model/0/conv/Conv/Conv"});
    EXPECT_TRUE(stem_convs(cuda_plan(/*half=*/false), ElemType::kF32).empty());
    EXPECT_TRUE(stem_convs(p, ElemType::kF16, node_named(p, "/model/1/conv/Conv/Conv")).empty());  // INT8 model.1
    std::vector<std::vector<int>> consumers = p.graph.consumers();
    consumers[static_cast<size_t>(p.graph.nodes[node_named(p, "/model/0/conv/Conv/Conv")].outputs[0])].push_back(0);
    EXPECT_TRUE(stem_convs(p, ElemType::kF16, SIZE_MAX, consumers).empty());  // a second reader of the stem's output
}

// The neck's upsamples whose conv may read the upsampled channels itself (plan::upsample_concat_conv_at,
// cuda::conv2d_upsampled_concat_nhwc): yolov8n's two, each placed by the planner as the first
// channels of its concat's buffer (what the CUDA session also requires: the concat copies nothing
// into them); none where the upsampled map has a second reader.
TEST(UpsampleConcatConvs, Yolov8nHasTheNecksTwo) {
    const plan::ExecutionPlan p = cuda_plan(/*half=*/true);
    const ir::Graph& g = p.graph;
    const std::vector<std::vector<int>> readers = g.consumers();
    std::vector<std::pair<std::string, std::string>> found;
    for (size_t i = 0; i < g.nodes.size(); ++i)
        if (const std::optional<size_t> conv = plan::upsample_concat_conv_at(g, readers, i)) {
            found.emplace_back(g.nodes[i].name, g.nodes[*conv].name);
            const int up = g.nodes[i].outputs[0], cat = g.nodes[i + 1].outputs[0];
            const plan::ValuePlan& v = p.values[static_cast<size_t>(up)];
            EXPECT_EQ(v.storage, plan::Storage::kView) << g.nodes[i].name;
            EXPECT_EQ(v.root, cat) << g.nodes[i].name;
            EXPECT_EQ(v.offset, 0) << g.nodes[i].name;
        }
    const std::vector<std::pair<std::string, std::string>> want = {
        {"/model.10/Resize/Resize", "/model/12/cv1/conv/Conv/Conv"},
        {"/model.13/Resize/Resize", "/model/15/cv1/conv/Conv/Conv"}};
    EXPECT_EQ(found, want);
    std::vector<std::vector<int>> consumers = readers;
    const size_t resize = node_named(p, "/model.10/Resize/Resize");
    consumers[static_cast<size_t>(g.nodes[resize].outputs[0])].push_back(0);
    EXPECT_FALSE(plan::upsample_concat_conv_at(g, consumers, resize).has_value());
    EXPECT_TRUE(plan::upsample_concat_conv_at(g, readers, node_named(p, "/model.13/Resize/Resize")).has_value());
    // The CUDA session's further conditions (runtime::cuda_upsample_conv_at): an f16 conv, f16
    // arena tensors with aligned pixels.
    const std::vector<std::string> resizes = {"/model.10/Resize/Resize", "/model.13/Resize/Resize"};
    EXPECT_EQ(found_at(runtime::cuda_upsample_conv_at, p, ElemType::kF16, SIZE_MAX, {}), resizes);
    EXPECT_EQ(
        found_at(runtime::cuda_upsample_conv_at, p, ElemType::kF16, node_named(p, "/model/12/cv1/conv/Conv/Conv"), {}),
        std::vector<std::string>{"/model.13/Resize/Resize"});  // model.12's cv1 in INT8
    EXPECT_TRUE(
        found_at(runtime::cuda_upsample_conv_at, cuda_plan(/*half=*/false), ElemType::kF32, SIZE_MAX, {}).empty());
}

}  // namespace
}  // namespace kestrel::test
