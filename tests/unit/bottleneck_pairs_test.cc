// Which convolutions a CUDA session may run as one bottleneck-pair kernel
// (runtime::cuda_bottleneck_pair_at), on yolov8n's CUDA plans, without a GPU: the 16- and
// 32-channel C2f bottlenecks of the FP16 plan and nothing else; no pair in the FP32 plan, where an
// INT8 conv stays INT8, or where the intermediate has another reader.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <functional>
#include <string>
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

// The first convs' names of the pairs found, every conv's GEMM in `type` except node `other` (kI8).
std::vector<std::string> pairs(const plan::ExecutionPlan& p, ElemType type, size_t other = SIZE_MAX,
                               std::vector<std::vector<int>> consumers = {}) {
    if (consumers.empty()) consumers = p.graph.consumers();
    const std::function<ElemType(size_t)> gemm = [&](size_t k) { return k == other ? ElemType::kI8 : type; };
    std::vector<std::string> found;
    for (size_t i = 0; i < p.graph.nodes.size(); ++i)
        if (runtime::cuda_bottleneck_pair_at(p, consumers, gemm, i)) found.push_back(p.graph.nodes[i].name);
    return found;
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

}  // namespace
}  // namespace kestrel::test
