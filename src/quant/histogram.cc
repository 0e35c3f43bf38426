#include "quant/histogram.h"

#include <algorithm>
#include <bit>
#include <cfloat>
#include <cmath>
#include <utility>

#include "core/error.h"

namespace kestrel::quant {

AbsHistogram::AbsHistogram(size_t initial_bins, size_t max_bins) : initial_bins_(initial_bins), max_bins_(max_bins) {
    KS_CHECK(initial_bins >= 128 && std::has_single_bit(initial_bins) && initial_bins <= (size_t{1} << 24),
             "histogram initial bin count must be a power of two in [128, 2^24], got ", initial_bins);
    KS_CHECK(max_bins >= initial_bins && max_bins % initial_bins == 0 && std::has_single_bit(max_bins / initial_bins),
             "histogram max bin count must be the initial count (", initial_bins, ") times a power of two, got ",
             max_bins);
}

AbsHistogram AbsHistogram::from_counts(std::vector<uint64_t> counts, double bin_width, float max_abs) {
    KS_CHECK(counts.size() >= 128 && std::has_single_bit(counts.size()),
             "histogram bin count must be a power of two >= 128, got ", counts.size());
    KS_CHECK(std::isfinite(bin_width) && bin_width > 0.0, "histogram bin width must be positive and finite");
    const double range = bin_width * static_cast<double>(counts.size());
    KS_CHECK(std::isfinite(max_abs) && max_abs >= 0.0f && max_abs <= range, "histogram max |x| ", max_abs,
             " is outside its range [0, ", range, "]");
    // Its bins are N0; later growth (add/merge) follows the usual rules with the default cap.
    const size_t n0 = counts.size();
    AbsHistogram h(n0, std::max(n0, kDefaultMaxBins));
    h.counts_ = std::move(counts);
    h.width_ = bin_width;
    h.range_ = range;
    h.max_abs_ = max_abs;
    for (uint64_t c : h.counts_) h.count_ += c;
    return h;
}

void AbsHistogram::add(const float* data, size_t n) {
    if (n == 0) return;
    // First pass: the batch max decides whether the range must grow before any value is binned.
    float batch_max = 0.0f;
    for (size_t k = 0; k < n; ++k) {
        const float a = std::fabs(data[k]);
        // !(a <= FLT_MAX) is true for NaN and infinity; checked per value so the error can name it.
        if (!(a <= FLT_MAX)) KS_FAIL("calibration data contains a non-finite value (", data[k], " at index ", k, ")");
        batch_max = std::max(batch_max, a);
    }
    count_ += n;
    max_abs_ = std::max(max_abs_, batch_max);
    if (batch_max == 0.0f) {
        // An all-zero batch cannot fix a range; its zeros still belong to bin 0.
        if (counts_.empty()) {
            pending_zeros_ += n;
        } else {
            counts_[0] += n;
        }
        return;
    }
    if (counts_.empty()) {
        fix_range(batch_max);
    } else if (batch_max > range_) {
        grow_to(batch_max);
    }
    const size_t last = counts_.size() - 1;
    const double width = width_;
    for (size_t k = 0; k < n; ++k) {
        const double a = std::fabs(static_cast<double>(data[k]));
        // a <= range_, so a / width <= bins up to rounding; the clamp puts a == range_ in the last bin.
        const auto bin = static_cast<size_t>(a / width);
        ++counts_[std::min(bin, last)];
    }
}

void AbsHistogram::set_first_batch_max(float first_batch_max) {
    KS_CHECK(counts_.empty(), "histogram range is already fixed (", range_,
             "); set the first batch's max before adding");
    KS_CHECK(first_batch_max >= 0.0f && first_batch_max <= FLT_MAX, "first batch max |x| must be finite and >= 0, got ",
             first_batch_max);
    if (first_batch_max > 0.0f) fix_range(first_batch_max);
}

void AbsHistogram::fix_range(double first_max) {
    range_ = first_max;
    width_ = first_max / static_cast<double>(initial_bins_);
    counts_.assign(initial_bins_, 0);
    counts_[0] += pending_zeros_;
    pending_zeros_ = 0;
}

void AbsHistogram::grow_to(double value) {
    while (value > range_) {
        if (counts_.size() < max_bins_) {
            // TensorRT's growth: same width, twice the bins; existing bins keep their indices.
            counts_.resize(counts_.size() * 2, 0);
        } else {
            // Memory cap: same bin count, twice the width; bins 2j and 2j+1 become bin j.
            const size_t half = counts_.size() / 2;
            for (size_t j = 0; j < half; ++j) counts_[j] = counts_[2 * j] + counts_[2 * j + 1];
            std::fill(counts_.begin() + static_cast<std::ptrdiff_t>(half), counts_.end(), 0);
            width_ *= 2.0;
        }
        range_ *= 2.0;  // exact: both rules double the range
    }
}

void AbsHistogram::merge(const AbsHistogram& other) {
    if (other.counts_.empty()) {
        // Only zeros (or nothing) on the other side.
        if (counts_.empty()) {
            pending_zeros_ += other.pending_zeros_;
        } else {
            counts_[0] += other.pending_zeros_;
        }
        count_ += other.count_;
        return;
    }
    if (counts_.empty()) {
        const uint64_t zeros = pending_zeros_;
        const uint64_t count = count_;
        const float max_abs = max_abs_;
        const size_t n0 = initial_bins_, max_bins = max_bins_;
        *this = other;
        initial_bins_ = n0;
        max_bins_ = max_bins;
        counts_[0] += zeros;
        count_ += count;
        max_abs_ = std::max(max_abs_, max_abs);
        // Respect this histogram's cap.
        while (counts_.size() > max_bins_) {
            const size_t half = counts_.size() / 2;
            for (size_t j = 0; j < half; ++j) counts_[j] = counts_[2 * j] + counts_[2 * j + 1];
            counts_.resize(half);
            width_ *= 2.0;
        }
        return;
    }
    // Bin edges line up only if one width is the other times a power of two.
    int e_this = 0, e_other = 0;
    const double m_this = std::frexp(width_, &e_this);
    const double m_other = std::frexp(other.width_, &e_other);
    KS_CHECK(m_this == m_other, "cannot merge histograms whose bin widths (", width_, ", ", other.width_,
             ") are not power-of-two multiples of each other");
    // Coarsen this histogram until it is at least as coarse as the other one and covers its range.
    while (width_ < other.width_ || range_ < other.range_) {
        if (width_ < other.width_ || counts_.size() >= max_bins_) {
            const size_t half = counts_.size() / 2;
            for (size_t j = 0; j < half; ++j) counts_[j] = counts_[2 * j] + counts_[2 * j + 1];
            std::fill(counts_.begin() + static_cast<std::ptrdiff_t>(half), counts_.end(), 0);
            width_ *= 2.0;
        } else {
            counts_.resize(counts_.size() * 2, 0);
        }
        range_ *= 2.0;
    }
    // other's bin j covers [j*w', (j+1)*w'), inside this histogram's bin j*w'/w (w/w' a power of two).
    const auto ratio = static_cast<size_t>(width_ / other.width_);
    for (size_t j = 0; j < other.counts_.size(); ++j) counts_[j / ratio] += other.counts_[j];
    counts_[0] += other.pending_zeros_;
    count_ += other.count_;
    max_abs_ = std::max(max_abs_, other.max_abs_);
}

}  // namespace kestrel::quant
