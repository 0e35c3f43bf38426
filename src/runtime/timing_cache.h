// The timing cache of `kestrel export ... device=0 timing_cache=<file>` (docs/cuda.md): the measured
// times of conv tactics, kept across builds so that a later export of the same or of another model
// reuses them instead of timing again, as TensorRT's timing cache (trtexec --timingCacheFile) does.
//
// A time depends on what ran and where, and the cache is keyed by exactly that:
//   - once per file, the environment (CudaModel: GPU name, architecture, SM count, CUDA runtime
//     version, and a digest of the conv kernel sources with the nvcc version);
//   - per entry, the convolution problem (ConvProblem::key(): batch, shapes, strides, pads,
//     dilations, groups, element type, fused epilogue, the pixel strides and 16-byte alignment of
//     x, y and the residual), then the tactic id, with the tactic's name checked on lookup.
// A file made in another environment is not used (and is rebuilt): its times do not apply here.
//
// The file is text, one entry a line, written atomically (temporary file, then rename):
//   kestrel-timing-cache 1
//   environment gpu=NVIDIA H100 80GB HBM3;arch=sm_90;sms=132;cudart=13000;kernels=3f2a...;timing=graphs
//   <problem key>\t<tactic id>\t<tactic name>\t<median ms>
//   ...
//   checksum <FNV-1a-64 of every byte before this line, 16 hex digits>
//
//   std::string warning;
//   TimingCache::check_writable(path);                         // before any work
//   TimingCache cache = TimingCache::load(path, environment, &warning);  // empty if absent or unusable
//   if (!warning.empty()) log_warning(warning);
//   if (auto ms = cache.find(problem.key(), tactic, name)) ... else cache.insert(problem.key(), tactic, name, timed);
//   cache.save(path);
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace kestrel::runtime {

// What a convolution's time depends on, as the tuner runs it (and the session later does).
struct ConvProblem {
    std::string type;  // element type: "f16" | "f32"
    int batch = 0;
    int in_h = 0, in_w = 0, c = 0;  // c: stored input channels (all groups)
    int k = 0, kh = 0, kw = 0;
    int stride_h = 1, stride_w = 1, pad_top = 0, pad_left = 0, dil_h = 1, dil_w = 1, groups = 1;
    int out_h = 0, out_w = 0;  // the bottom/right padding follows from them
    bool silu = false, residual = false;
    // Pixel strides (elements) and the byte address of the first element mod 16, of x, y and the
    // residual (0 without one): channel slices of concat buffers change both, and the kernels take
    // 16-byte paths only where they allow.
    int64_t x_stride = 0, y_stride = 0, residual_stride = 0;
    int x_align = 0, y_align = 0, residual_align = 0;

    // Every field, in a fixed order: "f16 n64 x80x80x64 k128 f3x3 s2x2 p1x1 d1x1 g1 y40x40 silu0 res0 xs64@0 ...".
    std::string key() const;
};

class TimingCache {
   public:
    explicit TimingCache(std::string environment = "");

    const std::string& environment() const { return environment_; }
    size_t size() const { return entries_.size(); }

    // The cached median time of `tactic` on the problem, if there is one made by a tactic of the same
    // name (an id whose kernel changed configuration does not match).
    std::optional<double> find(const std::string& problem_key, int tactic, const std::string& tactic_name) const;
    // Adds or replaces an entry. Throws for a key or name with a tab or line break, a negative
    // tactic, or a time that is not finite and >= 0.
    void insert(const std::string& problem_key, int tactic, const std::string& tactic_name, double ms);

    // The file's bytes, and back. parse throws a one-line kestrel::Error naming `source` and the
    // line for anything else than what serialize writes (times round-trip exactly).
    std::string serialize() const;
    static TimingCache parse(std::string_view text, std::string_view source = "timing cache");

    // The cache at `path` for `environment`. A missing file gives an empty cache; an unreadable or
    // corrupt file, or one made in another environment, gives an empty cache and a one-line
    // *warning saying why (the next save() replaces the file).
    static TimingCache load(const std::string& path, const std::string& environment, std::string* warning);
    // Throws a one-line error when save(path) could not write: an empty path, a directory, a
    // missing or read-only directory. Creates nothing that stays behind.
    static void check_writable(const std::string& path);
    // Writes atomically (a temporary file in the same directory, then rename). Entries another build
    // saved to the file since it was loaded (same environment) are kept; this cache's win on a tie.
    void save(const std::string& path) const;

   private:
    struct Entry {
        std::string tactic_name;
        double ms = 0;
    };
    std::string environment_;
    std::map<std::pair<std::string, int>, Entry> entries_;  // (problem key, tactic id)
};

}  // namespace kestrel::runtime
