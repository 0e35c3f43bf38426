// Histogram of |x| for one activation tensor, collected batch by batch over a calibration set the way
// TensorRT's calibrators do (docs/calibration.md, "Histogram"):
//   - the bin width is fixed once, by the first batch that has a non-zero value: width = max|x| / N0
//     (N0 = initial_bins, 2048 by default), so the range is [0, max|x| of that batch];
//   - when a later batch exceeds the range, the range doubles (repeatedly, until the value fits) by
//     doubling the bin count at the same width, as TensorRT's production calibrator does; bins keep
//     their indices, so the histogram only ever has N0 * 2^k bins of width w0;
//   - past max_bins the bin count stops growing and adjacent pairs of bins merge instead (width
//     doubles), which bounds memory for pathological tensors and keeps bin edges on multiples of w0;
//   - every value lands in a bin: bin = min(floor(|x| / width), bins - 1), so |x| == range goes to
//     the last bin.
// It also tracks the exact running max |x| (for MinMax) and the number of values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kestrel::quant {

class AbsHistogram {
   public:
    static constexpr size_t kDefaultInitialBins = 2048;
    // 64x the first batch's range at the default N0; 1 MiB of counts per tensor.
    static constexpr size_t kDefaultMaxBins = size_t{1} << 17;

    // initial_bins: a power of two >= 128 (the entropy search needs 128 bins to merge into 128
    // levels); max_bins: initial_bins times a power of two.
    explicit AbsHistogram(size_t initial_bins = kDefaultInitialBins, size_t max_bins = kDefaultMaxBins);

    // A histogram with given counts (a power of two >= 128 of them, which become its N0) over
    // [0, counts.size() * bin_width), e.g. a saved one; max_abs must lie inside that range.
    static AbsHistogram from_counts(std::vector<uint64_t> counts, double bin_width, float max_abs);

    // Adds |data[k]| for k < n. Throws kestrel::Error on NaN or infinity (a broken model or input,
    // which no scale can represent); the histogram is unchanged then.
    void add(const float* data, size_t n);

    // Fixes the bin grid as a first batch whose max |x| is `first_batch_max` would: TensorRT fixes
    // the width from its whole first calibration batch, and a caller that feeds that batch image by
    // image (the CPU engine runs a batch one image at a time) first finds the batch's max, calls
    // this, then add()s the images. Only while empty_range(); 0 leaves the range open; NaN, infinity
    // or a negative value throw.
    void set_first_batch_max(float first_batch_max);

    // Adds another histogram's values. Only histograms whose bin width is a power-of-two multiple
    // of each other's (e.g. same initial_bins and first-batch range) merge; anything else throws.
    void merge(const AbsHistogram& other);

    // True until a non-zero value has fixed the bin width; zeros seen so far are still counted.
    bool empty_range() const { return counts_.empty(); }
    size_t initial_bins() const { return initial_bins_; }
    size_t max_bins() const { return max_bins_; }
    size_t num_bins() const { return counts_.size(); }
    double bin_width() const { return width_; }
    // Upper edge of the last bin: num_bins() * bin_width() (exactly; both double by doublings).
    double range() const { return range_; }
    const std::vector<uint64_t>& counts() const { return counts_; }
    // Exact max |x| over everything added.
    float max_abs() const { return max_abs_; }
    // Number of values added (including zeros counted before the range was fixed).
    uint64_t count() const { return count_; }

   private:
    void fix_range(double first_max);
    void grow_to(double value);

    size_t initial_bins_;
    size_t max_bins_;
    std::vector<uint64_t> counts_;  // empty until the range is fixed
    double width_ = 0.0;
    double range_ = 0.0;
    float max_abs_ = 0.0f;
    uint64_t count_ = 0;
    uint64_t pending_zeros_ = 0;  // zeros seen before the range was fixed; they go to bin 0
};

}  // namespace kestrel::quant
