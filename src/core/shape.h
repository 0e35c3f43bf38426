// Tensor shapes and checked element counts.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"

namespace kestrel {

using Shape = std::vector<int64_t>;

// Product of dims; throws on negative dims or overflow past 2^40 elements (no YOLO tensor is near it,
// so a larger count means a corrupt model or engine).
inline int64_t num_elements(const Shape& shape) {
    int64_t n = 1;
    for (int64_t d : shape) {
        KS_CHECK(d >= 0, "invalid negative dimension ", d);
        KS_CHECK(d == 0 || n <= (int64_t{1} << 40) / d, "tensor too large");
        n *= d;
    }
    return n;
}

inline std::string shape_str(const Shape& shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// Numpy-style broadcast of two shapes; throws when they are incompatible.
inline Shape broadcast_shapes(const Shape& a, const Shape& b) {
    size_t r = std::max(a.size(), b.size());
    Shape out(r);
    for (size_t i = 0; i < r; ++i) {
        int64_t da = i < r - a.size() ? 1 : a[i - (r - a.size())];
        int64_t db = i < r - b.size() ? 1 : b[i - (r - b.size())];
        KS_CHECK(da == db || da == 1 || db == 1, "shapes ", shape_str(a), " and ", shape_str(b),
                 " cannot be broadcast");
        out[i] = da == 1 ? db : da;
    }
    return out;
}

// Element strides of a dense row-major tensor.
inline std::vector<int64_t> row_major_strides(const Shape& s) {
    std::vector<int64_t> st(s.size(), 1);
    for (size_t i = s.size(); i-- > 1;) st[i - 1] = st[i] * s[i];
    return st;
}

// Normalises a possibly negative axis against rank; throws when out of range.
inline int normalize_axis(int64_t axis, size_t rank) {
    int64_t r = static_cast<int64_t>(rank);
    KS_CHECK(axis >= -r && axis < r, "axis ", axis, " out of range for rank ", r);
    return static_cast<int>(axis < 0 ? axis + r : axis);
}

}  // namespace kestrel
