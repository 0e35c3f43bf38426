// The timing cache (runtime/timing_cache.h), without a GPU: the file format round trip, what the
// keys depend on, and what happens to corrupt, foreign, unreadable and unwritable files; and the
// batch sizes a CUDA engine is tuned at (runtime/cuda_session.h).
#include "runtime/timing_cache.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "kestrel/engine.h"
#include "runtime/cuda_session.h"

namespace kestrel::test {
namespace {

namespace fs = std::filesystem;
using runtime::ConvProblem;
using runtime::TimingCache;

const std::string kEnv = "gpu=NVIDIA H100 80GB HBM3;arch=sm_90;sms=132;cudart=13000;kernels=0123456789abcdef";

// A fresh directory per test, removed afterwards.
class TempDir {
   public:
    TempDir() {
        path_ = fs::temp_directory_path() / ("kestrel_timing_cache_test_" + std::to_string(::getpid()) + "_" +
                                             ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(path_);
        fs::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    std::string file(const std::string& name) const { return (path_ / name).string(); }
    std::vector<std::string> entries() const {
        std::vector<std::string> out;
        for (const auto& e : fs::directory_iterator(path_)) out.push_back(e.path().filename().string());
        return out;
    }

   private:
    fs::path path_;
};

void write(const std::string& path, const std::string& bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << bytes;
}

ConvProblem base_problem() {
    ConvProblem p;
    p.type = "f16";
    p.batch = 64;
    p.in_h = 80, p.in_w = 80, p.c = 64, p.k = 128, p.kh = 3, p.kw = 3;
    p.stride_h = 2, p.stride_w = 2, p.pad_top = 1, p.pad_left = 1, p.dil_h = 1, p.dil_w = 1, p.groups = 1;
    p.out_h = 40, p.out_w = 40;
    p.silu = true, p.residual = false;
    p.x_stride = 64, p.y_stride = 128;
    return p;
}

TimingCache sample_cache() {
    TimingCache c(kEnv);
    const std::string a = base_problem().key();
    ConvProblem q = base_problem();
    q.batch = 1;
    c.insert(a, 8, "conv2d_nhwc_f16_mma_m16n8k16_128x128x32_s3", 0.0123456789012345);
    c.insert(a, 9, "conv2d_nhwc_f16_mma_m16n8k16_128x64x32_s3", 0.01);
    c.insert(q.key(), 18, "conv2d_nhwc_f16_mma_m16n8k16_splitk2_64x64x32_s3", 3.0517578125e-05);
    c.insert(q.key(), 0, "conv2d_nhwc_f16_simt_64x64x8_s2", 0.0);
    return c;
}

std::string error_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

TEST(TimingCache, RoundTripsExactly) {
    TimingCache c = sample_cache();
    const std::string text = c.serialize();
    EXPECT_EQ(text.rfind("kestrel-timing-cache 1\nenvironment " + kEnv + "\n", 0), 0u) << text;
    TimingCache back = TimingCache::parse(text);
    EXPECT_EQ(back.environment(), kEnv);
    ASSERT_EQ(back.size(), 4u);
    ConvProblem q = base_problem();
    q.batch = 1;
    // Times come back bit for bit (the tuner's choice from cached times must equal its first choice).
    EXPECT_EQ(back.find(base_problem().key(), 8, "conv2d_nhwc_f16_mma_m16n8k16_128x128x32_s3"), 0.0123456789012345);
    EXPECT_EQ(back.find(base_problem().key(), 9, "conv2d_nhwc_f16_mma_m16n8k16_128x64x32_s3"), 0.01);
    EXPECT_EQ(back.find(q.key(), 18, "conv2d_nhwc_f16_mma_m16n8k16_splitk2_64x64x32_s3"), 3.0517578125e-05);
    EXPECT_EQ(back.find(q.key(), 0, "conv2d_nhwc_f16_simt_64x64x8_s2"), 0.0);
    EXPECT_EQ(back.serialize(), text);

    TimingCache empty(kEnv);
    EXPECT_EQ(TimingCache::parse(empty.serialize()).size(), 0u);
}

TEST(TimingCache, SaveAndLoadThroughAFile) {
    TempDir dir;
    const std::string path = dir.file("kestrel.timing");
    TimingCache::check_writable(path);
    EXPECT_EQ(dir.entries().size(), 0u) << "the probe must not stay behind";
    sample_cache().save(path);
    EXPECT_EQ(dir.entries(), std::vector<std::string>{"kestrel.timing"}) << "no temporary file may stay behind";
    std::string warning = "stale";
    TimingCache loaded = TimingCache::load(path, kEnv, &warning);
    EXPECT_EQ(warning, "");
    EXPECT_EQ(loaded.serialize(), sample_cache().serialize());
}

TEST(TimingCache, MissingFileIsAnEmptyCacheWithoutWarning) {
    TempDir dir;
    std::string warning;
    TimingCache c = TimingCache::load(dir.file("absent.timing"), kEnv, &warning);
    EXPECT_EQ(warning, "");
    EXPECT_EQ(c.size(), 0u);
    EXPECT_EQ(c.environment(), kEnv);
}

TEST(TimingCache, LookupNeedsTheSameTacticIdAndName) {
    TimingCache c = sample_cache();
    const std::string key = base_problem().key();
    EXPECT_TRUE(c.find(key, 8, "conv2d_nhwc_f16_mma_m16n8k16_128x128x32_s3").has_value());
    EXPECT_FALSE(c.find(key, 10, "conv2d_nhwc_f16_mma_m16n8k16_128x128x32_s3").has_value());
    // An id whose kernel changed configuration is a different tactic.
    EXPECT_FALSE(c.find(key, 8, "conv2d_nhwc_f16_mma_m16n8k16_128x128x64_s4").has_value());
    ConvProblem other = base_problem();
    other.batch = 32;
    EXPECT_FALSE(c.find(other.key(), 8, "conv2d_nhwc_f16_mma_m16n8k16_128x128x32_s3").has_value());
}

// Every field of the problem changes the key, and no two changes give the same key.
TEST(TimingCache, ProblemKeyDependsOnEveryField) {
    const std::vector<std::pair<std::string, std::function<void(ConvProblem&)>>> changes = {
        {"type", [](ConvProblem& p) { p.type = "f32"; }},
        {"type i8", [](ConvProblem& p) { p.type = "i8"; }},
        {"batch", [](ConvProblem& p) { p.batch = 1; }},
        {"in_h", [](ConvProblem& p) { p.in_h = 81; }},
        {"in_w", [](ConvProblem& p) { p.in_w = 81; }},
        {"c", [](ConvProblem& p) { p.c = 32; }},
        {"k", [](ConvProblem& p) { p.k = 64; }},
        {"kh", [](ConvProblem& p) { p.kh = 1; }},
        {"kw", [](ConvProblem& p) { p.kw = 1; }},
        {"stride_h", [](ConvProblem& p) { p.stride_h = 1; }},
        {"stride_w", [](ConvProblem& p) { p.stride_w = 1; }},
        {"pad_top", [](ConvProblem& p) { p.pad_top = 0; }},
        {"pad_left", [](ConvProblem& p) { p.pad_left = 0; }},
        {"dil_h", [](ConvProblem& p) { p.dil_h = 2; }},
        {"dil_w", [](ConvProblem& p) { p.dil_w = 2; }},
        {"groups", [](ConvProblem& p) { p.groups = 2; }},
        {"out_h", [](ConvProblem& p) { p.out_h = 41; }},
        {"out_w", [](ConvProblem& p) { p.out_w = 41; }},
        {"silu", [](ConvProblem& p) { p.silu = false; }},
        {"residual", [](ConvProblem& p) { p.residual = true; }},
        {"x_stride", [](ConvProblem& p) { p.x_stride = 128; }},
        {"y_stride", [](ConvProblem& p) { p.y_stride = 256; }},
        {"residual_stride", [](ConvProblem& p) { p.residual_stride = 128; }},
        {"x_align", [](ConvProblem& p) { p.x_align = 8; }},
        {"y_align", [](ConvProblem& p) { p.y_align = 8; }},
        {"residual_align", [](ConvProblem& p) { p.residual_align = 8; }},
    };
    const std::string base = base_problem().key();
    EXPECT_EQ(base, base_problem().key());
    std::set<std::string> keys{base};
    for (const auto& [field, change] : changes) {
        ConvProblem p = base_problem();
        change(p);
        const std::string key = p.key();
        EXPECT_NE(key, base) << field;
        EXPECT_TRUE(keys.insert(key).second) << field << " gives the key of another change: " << key;
        EXPECT_EQ(key.find_first_of("\t\n"), std::string::npos) << key;
    }
}

TEST(TimingCache, RejectsEntriesTheFileCannotHold) {
    TimingCache c(kEnv);
    EXPECT_NE(error_of([&] { c.insert("a\tb", 0, "t", 1.0); }), "");
    EXPECT_NE(error_of([&] { c.insert("a", 0, "t\n", 1.0); }), "");
    EXPECT_NE(error_of([&] { c.insert("", 0, "t", 1.0); }), "");
    EXPECT_NE(error_of([&] { c.insert("a", -1, "t", 1.0); }), "");
    EXPECT_NE(error_of([&] { c.insert("a", 0, "t", -1.0); }), "");
    EXPECT_NE(error_of([&] { c.insert("a", 0, "t", std::nan("")); }), "");
    EXPECT_EQ(c.size(), 0u);
    EXPECT_NE(error_of([] { TimingCache bad("two\nlines"); }), "");
}

// Each damaged text fails to parse with a one-line message saying what is wrong.
TEST(TimingCache, CorruptTextIsRejectedWithOneLine) {
    const std::string good = sample_cache().serialize();
    std::string flipped = good;
    flipped[flipped.find("0.01\n")] = '9';  // a time changed behind the checksum's back
    std::string extra = good;
    extra.insert(extra.find("checksum"), "x\t1\tt\t1\n");  // a line added without updating the checksum
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"", "empty"},
        {"garbage\n", "not a Kestrel timing cache"},
        {"\x7f"
         "ELF\x02\x01\x01",
         "truncated"},
        {"kestrel-timing-cache 2\nenvironment x\nchecksum 0000000000000000\n", "format version '2'"},
        {good.substr(0, good.size() - 1), "truncated"},
        {good.substr(0, good.find("checksum")), "no checksum"},
        {flipped, "checksum mismatch"},
        {extra, "checksum mismatch"},
    };
    for (const auto& [text, expected] : cases) {
        const std::string e = error_of([&] { TimingCache::parse(text, "timing cache 'x'"); });
        EXPECT_NE(e.find(expected), std::string::npos) << "got '" << e << "' for " << text.substr(0, 40);
        EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    }
}

// A corrupt, foreign or unreadable file is a warning and an empty cache; the next save rebuilds it.
TEST(TimingCache, UnusableFilesWarnAndAreRebuilt) {
    TempDir dir;
    const std::string path = dir.file("kestrel.timing");
    TimingCache foreign("gpu=NVIDIA A100-SXM4-80GB;arch=sm_80;sms=108;cudart=13000;kernels=0123456789abcdef");
    foreign.insert("k", 1, "t", 1.0);
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"garbage\n", "not a Kestrel timing cache"},
        {sample_cache().serialize().substr(0, 100), "truncated"},
        {foreign.serialize(), "was made for another GPU or Kestrel build"},
    };
    for (const auto& [bytes, expected] : cases) {
        write(path, bytes);
        std::string warning;
        TimingCache c = TimingCache::load(path, kEnv, &warning);
        EXPECT_NE(warning.find(expected), std::string::npos) << warning;
        EXPECT_NE(warning.find("'" + path + "'"), std::string::npos) << warning;
        EXPECT_NE(warning.find("rewriting it"), std::string::npos) << warning;
        EXPECT_EQ(warning.find('\n'), std::string::npos) << warning;
        EXPECT_EQ(c.size(), 0u);
        EXPECT_EQ(c.environment(), kEnv);
        // Rebuilt: the next save writes a valid file for this environment, keeping nothing of the old one.
        c.insert(base_problem().key(), 3, "conv2d_nhwc_f16_simt_64x64x8_s2", 0.5);
        c.save(path);
        TimingCache again = TimingCache::load(path, kEnv, &warning);
        EXPECT_EQ(warning, "");
        EXPECT_EQ(again.size(), 1u);
        EXPECT_EQ(again.find(base_problem().key(), 3, "conv2d_nhwc_f16_simt_64x64x8_s2"), 0.5);
    }
    // A directory where the file should be cannot be read (and is no place to write).
    const std::string sub = dir.file("sub.timing");
    fs::create_directories(sub);
    std::string warning;
    EXPECT_EQ(TimingCache::load(sub, kEnv, &warning).size(), 0u);
    EXPECT_NE(warning.find("not a regular file"), std::string::npos) << warning;
    EXPECT_NE(error_of([&] { TimingCache::check_writable(sub); }).find("is a directory"), std::string::npos);
}

TEST(TimingCache, UnwritablePathsFailUpFrontWithOneLine) {
    TempDir dir;
    EXPECT_NE(error_of([] { TimingCache::check_writable(""); }).find("needs a file name"), std::string::npos);
    const std::string e = error_of([&] { TimingCache::check_writable(dir.file("missing/kestrel.timing")); });
    EXPECT_NE(e.find("does not exist"), std::string::npos) << e;
    // /proc takes no new files, not even from root.
    const std::string p = error_of([] { TimingCache::check_writable("/proc/kestrel.timing"); });
    EXPECT_NE(p.find("cannot be written"), std::string::npos) << p;
    EXPECT_EQ(p.find('\n'), std::string::npos) << p;
    if (::geteuid() != 0) {
        fs::create_directories(dir.file("ro"));
        fs::permissions(dir.file("ro"), fs::perms::owner_read | fs::perms::owner_exec);
        const std::string r = error_of([&] { TimingCache::check_writable(dir.file("ro/kestrel.timing")); });
        EXPECT_NE(r.find("cannot be written"), std::string::npos) << r;
        fs::permissions(dir.file("ro"), fs::perms::owner_all);
    }
    // And save() itself reports a failed write as one line too.
    TimingCache c(kEnv);
    const std::string s = error_of([&] { c.save(dir.file("missing/kestrel.timing")); });
    EXPECT_NE(s.find("cannot write timing cache"), std::string::npos) << s;
}

// Two builds sharing one file: what another build saved meanwhile is kept; ours wins a tie.
TEST(TimingCache, SaveKeepsEntriesAnotherBuildSaved) {
    TempDir dir;
    const std::string path = dir.file("kestrel.timing");
    TimingCache first(kEnv), second(kEnv);
    first.insert("a", 1, "t1", 1.0);
    first.insert("shared", 2, "t2", 2.0);
    second.insert("b", 3, "t3", 3.0);
    second.insert("shared", 2, "t2", 4.0);
    first.save(path);
    second.save(path);
    std::string warning;
    TimingCache both = TimingCache::load(path, kEnv, &warning);
    EXPECT_EQ(warning, "");
    EXPECT_EQ(both.size(), 3u);
    EXPECT_EQ(both.find("a", 1, "t1"), 1.0);
    EXPECT_EQ(both.find("b", 3, "t3"), 3.0);
    EXPECT_EQ(both.find("shared", 2, "t2"), 4.0);
    // A file of another environment is replaced, not merged.
    TimingCache other("gpu=other");
    other.insert("c", 5, "t5", 5.0);
    other.save(path);
    TimingCache replaced = TimingCache::load(path, "gpu=other", &warning);
    EXPECT_EQ(warning, "");
    EXPECT_EQ(replaced.size(), 1u);
}

// TensorRT's timing cache belongs to GPU builds; a CPU export times no kernels, so the option is
// refused (rather than silently ignored) before any work: the model is not even opened.
TEST(TimingCache, CpuExportRefusesTheOption) {
    BuildOptions o;
    o.device = "cpu";
    o.timing_cache = "kestrel.timing";
    auto e = Engine::build("never-opened.onnx", o);
    ASSERT_FALSE(e.ok());
    EXPECT_EQ(e.status().message(),
              "timing_cache='kestrel.timing' is for CUDA engines (device=0): a CPU engine times no kernels; leave "
              "timing_cache out for device=cpu");
}

// Powers of two below the max batch, then the max batch: the benchmark's batches (1, 8, 32, 64, 128)
// each run the tactics tuned at their own size.
TEST(CudaTuningBatches, PowersOfTwoThenTheMaxBatch) {
    EXPECT_EQ(runtime::cuda_tuning_batches(1), (std::vector<int>{1}));
    EXPECT_EQ(runtime::cuda_tuning_batches(2), (std::vector<int>{1, 2}));
    EXPECT_EQ(runtime::cuda_tuning_batches(48), (std::vector<int>{1, 2, 4, 8, 16, 32, 48}));
    EXPECT_EQ(runtime::cuda_tuning_batches(128), (std::vector<int>{1, 2, 4, 8, 16, 32, 64, 128}));
    EXPECT_THROW(runtime::cuda_tuning_batches(0), Error);
}

}  // namespace
}  // namespace kestrel::test
