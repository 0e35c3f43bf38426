// Execution contexts and tuning on a real graph (yolov8n from the shared models, KESTREL_SHARED):
//   - several threads, each with its own CudaSession on ONE CudaModel (TensorRT's execution
//     contexts on one engine), running different batches at once: each result must be the one a
//     single thread gets for the same images and batch;
//   - the timing cache: a build that reads every time from the cache picks the tactics the fresh
//     tuning that filled it picked, and another model reuses the timings of the layers it shares;
//   - the side stream: a graph running the heads beside the neck gives the one-stream results.
// Results are compared by relative L2 (1e-3), not bit for bit: split-K tactics sum their partial
// products with atomics, in an order that varies from run to run. A session reading another
// thread's buffers or workspace would be off by O(1).
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/rng.h"
#include "gpu/gpu_test.h"
#include "kestrel/engine.h"
#include "onnx/model_importer.h"
#include "passes/pipeline.h"
#include "plan/execution_plan.h"
#include "runtime/cuda_session.h"
#include "runtime/timing_cache.h"

namespace kestrel::test {
namespace {

std::string model(const std::string& name) {
    const std::string path = shared_file("models/" + name);
    // A missing model is a broken setup, not a reason to pass.
    EXPECT_TRUE(std::filesystem::exists(path)) << path << " not found (KESTREL_SHARED)";
    return path;
}

// The CUDA plan of an ONNX model, as `kestrel export device=0` makes it.
std::shared_ptr<const plan::ExecutionPlan> cuda_plan(const std::string& onnx, int max_batch, bool half) {
    ir::Graph g = onnx::import_model(onnx, {});
    passes::run_pipeline(g, nullptr, {.fuse_yolo_decode = true, .fuse_yolo_head_convs = half});
    return std::make_shared<const plan::ExecutionPlan>(
        plan::build(g, {.target = plan::Target::kCuda, .batch = max_batch, .half = half}));
}

using Outputs = std::vector<std::vector<float>>;

Outputs run(runtime::CudaSession& s, const float* input, int batch) {
    Outputs out;
    std::vector<float*> ptrs;
    for (int64_t e : s.output_elements()) out.emplace_back(static_cast<size_t>(e * batch), std::nanf(""));
    for (auto& o : out) ptrs.push_back(o.data());
    s.run(input, batch, ptrs);
    return out;
}

TEST(CudaSessions, ThreadsOnOneModelGetTheSingleThreadedResults) {
    SKIP_WITHOUT_GPU();
    constexpr int kMaxBatch = 8, kThreads = 4, kRounds = 6;
    auto plan = cuda_plan(model("yolov8n.onnx"), kMaxBatch, /*half=*/true);
    auto m = std::make_shared<const runtime::CudaModel>(plan, 0, /*tune=*/true);
    const ir::Value& in = plan->graph.value(plan->graph.inputs[0]);
    const size_t image = static_cast<size_t>(in.shape[1] * in.shape[2] * in.shape[3]);

    // Every thread its own images (so that reading another thread's would show) and batches.
    Rng rng;
    SCOPED_TRACE(rng.trace());
    const std::vector<std::vector<int>> batches = {{1, 8}, {3, 5}, {8, 2}, {5, 1}};
    const int images = kThreads * 2 + kMaxBatch;
    const std::vector<float> pixels = rng.uniform_floats(image * static_cast<size_t>(images), 0.f, 1.f);
    auto input = [&](int thread) { return pixels.data() + image * static_cast<size_t>(thread) * 2; };

    // The results of one thread, one session, run one after the other.
    std::vector<std::vector<Outputs>> want(kThreads);
    {
        runtime::CudaSession s(m);
        for (int t = 0; t < kThreads; ++t)
            for (int b : batches[static_cast<size_t>(t)]) want[static_cast<size_t>(t)].push_back(run(s, input(t), b));
    }
    for (const auto& w : want)
        for (const Outputs& o : w)
            for (const auto& v : o)
                for (float x : v) ASSERT_TRUE(std::isfinite(x)) << "the single-threaded run wrote a non-finite value";

    std::mutex mu;
    std::vector<std::string> failures;
    std::vector<double> worst(kThreads, 0.0);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            try {
                runtime::CudaSession s(m);  // made while the other threads run theirs
                for (int r = 0; r < kRounds; ++r)
                    for (size_t k = 0; k < batches[static_cast<size_t>(t)].size(); ++k) {
                        Outputs got = run(s, input(t), batches[static_cast<size_t>(t)][k]);
                        const Outputs& w = want[static_cast<size_t>(t)][k];
                        for (size_t o = 0; o < w.size(); ++o)
                            worst[static_cast<size_t>(t)] =
                                std::max(worst[static_cast<size_t>(t)], rel_l2(got[o], w[o]));
                    }
            } catch (const std::exception& e) {
                std::lock_guard<std::mutex> lock(mu);
                failures.push_back("thread " + std::to_string(t) + ": " + e.what());
            }
        });
    for (auto& th : threads) th.join();
    EXPECT_TRUE(failures.empty()) << failures.front();
    for (int t = 0; t < kThreads; ++t)
        EXPECT_LE(worst[static_cast<size_t>(t)], 1e-3)
            << "thread " << t << " (batches " << batches[static_cast<size_t>(t)][0] << ", "
            << batches[static_cast<size_t>(t)][1] << ")";
}

// A profiled run names, for each conv, the kernel tuned for its batch: the engine's name lists the
// max batch's kernel, then "| batch <= b: kernel" for each smaller tuning batch whose kernel
// differs, and a run of batch b uses the kernel of the smallest listed batch >= b (else the max's).
TEST(CudaSessions, ProfileNamesTheKernelTunedForTheBatch) {
    SKIP_WITHOUT_GPU();
    constexpr int kMaxBatch = 8;
    auto plan = cuda_plan(model("yolov8n.onnx"), kMaxBatch, /*half=*/true);
    auto m = std::make_shared<const runtime::CudaModel>(plan, 0, /*tune=*/true);
    runtime::CudaSession s(m);
    s.set_profiling(true);
    const ir::Value& in = plan->graph.value(plan->graph.inputs[0]);
    const std::vector<float> pixels(static_cast<size_t>(kMaxBatch * in.shape[1] * in.shape[2] * in.shape[3]), 0.5f);
    const std::string sep = " | batch <= ";
    int listed = 0;
    for (int batch : {1, 3, kMaxBatch}) {
        SCOPED_TRACE("batch " + std::to_string(batch));
        run(s, pixels.data(), batch);
        const auto& times = s.layer_times();
        ASSERT_EQ(times.size(), m->kernel_names().size());
        for (size_t i = 0; i < times.size(); ++i) {
            const std::string& all = m->kernel_names()[i];
            std::string want = all.substr(0, all.find(sep));
            int want_batch = INT_MAX;
            for (size_t at = all.find(sep); at != std::string::npos; at = all.find(sep, at + 1)) {
                const int b = std::stoi(all.substr(at + sep.size()));
                const size_t name = all.find(": ", at) + 2;
                if (batch == 1) ++listed;
                if (b >= batch && b < want_batch) want_batch = b, want = all.substr(name, all.find(sep, name) - name);
            }
            EXPECT_EQ(times[i].kernel.rfind(want, 0), 0u)
                << times[i].name << ": ran " << times[i].kernel << ", want " << want << " (engine: " << all << ")";
            EXPECT_EQ(times[i].kernel.find(sep), std::string::npos) << times[i].name;
        }
    }
    EXPECT_GT(listed, 0) << "no conv's kernel differs between tuning batches: the test checks nothing";
}

// A graph replay runs the plan's stream-1 nodes (the heads' branches) beside stream 0; a profiled
// run launches every node in node order on one stream. Same kernels, so the same results (to the
// order of the split-K atomics); buffers of the two streams sharing bytes while both run, a missing
// wait, or one split-K workspace for convs of both streams would be off by O(1).
TEST(CudaSessions, GraphWithASideStreamMatchesTheOneStreamRun) {
    SKIP_WITHOUT_GPU();
    for (const auto& [name, max_batch] :
         std::vector<std::pair<std::string, int>>{{"yolov8n.onnx", 8}, {"yolov8n-seg-320.onnx", 4}}) {
        SCOPED_TRACE(name);
        auto plan = cuda_plan(model(name), max_batch, /*half=*/true);
        ASSERT_GE(std::count(plan->streams.begin(), plan->streams.end(), 1), 10) << "nothing on the side stream";
        auto m = std::make_shared<const runtime::CudaModel>(plan, 0, /*tune=*/true);
        runtime::CudaSession s(m);
        const ir::Value& in = plan->graph.value(plan->graph.inputs[0]);
        Rng rng;
        SCOPED_TRACE(rng.trace());
        const std::vector<float> pixels =
            rng.uniform_floats(static_cast<size_t>(max_batch * in.shape[1] * in.shape[2] * in.shape[3]), 0.f, 1.f);
        for (int batch : {1, max_batch})
            for (int round = 0; round < 3; ++round) {
                SCOPED_TRACE("batch " + std::to_string(batch) + ", round " + std::to_string(round));
                s.set_profiling(false);
                const Outputs graph = run(s, pixels.data(), batch);
                s.set_profiling(true);
                const Outputs one_stream = run(s, pixels.data(), batch);
                for (size_t o = 0; o < graph.size(); ++o)
                    EXPECT_LE(rel_l2(graph[o], one_stream[o]), 1e-3) << "output " << o;
            }
    }
}

// Reads "R layer tunings reused, T timed" from a verbose build log.
// (sscanf, not std::regex: GCC 12's <regex> trips -Wmaybe-uninitialized under the sanitizers.)
std::pair<int, int> reuse_counts(const std::string& log) {
    const std::string key = " layer tunings reused, ";
    const size_t at = log.find(key);
    if (at == std::string::npos) return {-1, -1};
    size_t start = at;
    while (start > 0 && std::isdigit(static_cast<unsigned char>(log[start - 1]))) --start;
    int reused = -1, timed = -1;
    if (std::sscanf(log.c_str() + start, "%d layer tunings reused, %d timed", &reused, &timed) != 2) return {-1, -1};
    return {reused, timed};
}

struct Built {
    std::string table, log;
};

Built build(const std::string& onnx, int batch, const std::string& cache) {
    std::ostringstream log;
    BuildOptions o;
    o.device = "cuda:0";
    o.half = true;
    o.batch = batch;
    o.dynamic = true;
    o.timing_cache = cache;
    o.log = &log;
    auto e = Engine::build(onnx, o);
    EXPECT_TRUE(e.ok()) << e.status().message();
    return {e.ok() ? e->layer_table() : "", log.str()};
}

TEST(CudaSessions, TimingCacheGivesTheTacticsOfFreshTuning) {
    SKIP_WITHOUT_GPU();
    constexpr int kMaxBatch = 4;
    auto plan = cuda_plan(model("yolov8n.onnx"), kMaxBatch, /*half=*/true);
    int convs = 0;
    for (const ir::Node& n : plan->graph.nodes)
        if (n.op == ir::Op::kConv && plan->values[static_cast<size_t>(n.inputs[0])].layout == plan::Layout::kNhwc)
            ++convs;
    ASSERT_GT(convs, 50);
    // Every conv is tuned at batches 1, 2 and 4.
    const int tunings = convs * static_cast<int>(runtime::cuda_tuning_batches(kMaxBatch).size());
    ASSERT_EQ(tunings, 3 * convs);

    // Fresh tuning fills the cache; every distinct (conv problem, batch) is timed once: YOLOv8 repeats
    // some problems (same shapes, epilogue and strides), and the repeats reuse the first timing.
    runtime::TimingCache cache(runtime::cuda_timing_environment(0));
    runtime::CudaModel fresh(plan, 0, /*tune=*/true, nullptr, &cache);
    const int distinct = fresh.tune_stats().timed;
    EXPECT_EQ(distinct + fresh.tune_stats().reused, tunings);
    EXPECT_GT(distinct, convs);
    ASSERT_GT(cache.size(), static_cast<size_t>(tunings));

    // Through the file and back, then a build that times nothing and picks the same tactics.
    const std::string path =
        (std::filesystem::temp_directory_path() / ("kestrel_sessions_test_" + std::to_string(::getpid()) + ".timing"))
            .string();
    std::filesystem::remove(path);
    cache.save(path);
    std::string warning;
    runtime::TimingCache loaded = runtime::TimingCache::load(path, runtime::cuda_timing_environment(0), &warning);
    EXPECT_EQ(warning, "");
    EXPECT_EQ(loaded.size(), cache.size());
    runtime::CudaModel cached(plan, 0, /*tune=*/true, nullptr, &loaded);
    EXPECT_EQ(cached.tune_stats().reused, tunings);
    EXPECT_EQ(cached.tune_stats().timed, 0);
    EXPECT_EQ(cached.tactics(), fresh.tactics());
    EXPECT_EQ(cached.kernel_names(), fresh.kernel_names());
    EXPECT_EQ(loaded.size(), cache.size()) << "nothing new was timed";

    // The same through the public API, as `kestrel export ... timing_cache=` runs it.
    std::filesystem::remove(path);
    Built first = build(model("yolov8n.onnx"), kMaxBatch, path);
    EXPECT_EQ(reuse_counts(first.log), std::make_pair(tunings - distinct, distinct)) << first.log;
    Built second = build(model("yolov8n.onnx"), kMaxBatch, path);
    EXPECT_EQ(reuse_counts(second.log), std::make_pair(tunings, 0)) << second.log;
    EXPECT_EQ(second.table, first.table);

    // Another model with the same backbone: its shared layers come from the cache, its own are timed.
    if (!std::filesystem::exists(shared_file("models/yolov8n-pose.onnx"))) {
        std::filesystem::remove(path);
        GTEST_SKIP() << "yolov8n-pose.onnx is not staged; the cross-model part is skipped";
    }
    Built pose = build(model("yolov8n-pose.onnx"), kMaxBatch, path);
    auto [reused, timed] = reuse_counts(pose.log);
    EXPECT_GT(reused, convs) << pose.log;  // the backbone and neck at both batches
    EXPECT_GT(timed, 0) << pose.log;       // the keypoint head
    std::filesystem::remove(path);
}

}  // namespace
}  // namespace kestrel::test
