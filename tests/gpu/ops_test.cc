// The CUDA kernels of src/backends/cuda/ops.h against the reference oracle (reference::evaluate on
// NCHW float tensors), layouts converted on the host. Every NHWC kernel runs in f32 and f16 (f16:
// the oracle sees the f16-rounded inputs), on YOLOv8 shapes and odd ones, and on channel slices of
// wider buffers: those buffers start poisoned, and the checks require every element inside the
// slice written and every one outside it untouched. Tolerances are relative L2 errors: f32 1e-6
// (1e-5 where a sum is involved), f16 1e-3. Without a CUDA device the GPU suites skip.
#include "backends/cuda/ops.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "common/rng.h"
#include "core/half.h"
#include "core/shape.h"
#include "gpu/gpu_test.h"
#include "ir/graph.h"
#include "reference/reference.h"

namespace kestrel::cuda {
namespace {

using test::DeviceBuffer;
using test::rel_l2;

using ir::Op;
using ir::Tensor;
using Ints = std::vector<int64_t>;

constexpr double kTolExact = 1e-6;  // f32, no sums
constexpr double kTolSum = 1e-5;    // f32 softmax, gemm, pooling, conv_transpose
constexpr double kTolF16 = 1e-3;

const char* type_name(ElemType t) { return t == ElemType::kF16 ? "f16" : "f32"; }

// The worst error seen per kernel and type, printed once at the end of the run.
std::map<std::string, double>& worst_errors() {
    static std::map<std::string, double> m;
    return m;
}

class ErrorSummary : public ::testing::Environment {
   public:
    void TearDown() override {
        if (worst_errors().empty()) return;
        std::printf("[ CudaOps ] worst relative L2 error per kernel:\n");
        for (const auto& [k, v] : worst_errors()) std::printf("[ CudaOps ]   %-32s %.3g\n", k.c_str(), v);
    }
};
[[maybe_unused]] ::testing::Environment* const kSummary = ::testing::AddGlobalTestEnvironment(new ErrorSummary);

// Equal element counts (shapes may differ by unit dims, e.g. GlobalAveragePool's [n, c, 1, 1])
// and rel_l2 <= tol; records the error under `key`.
::testing::AssertionResult close(const std::string& key, const Tensor& got, const Tensor& want, double tol) {
    if (got.size() != want.size())
        return ::testing::AssertionFailure() << key << ": " << got.size() << " elements, expected " << want.size();
    double r = rel_l2(got, want);
    double& w = worst_errors()[key];
    w = std::max(w, std::isnan(r) ? INFINITY : r);
    if (r <= tol) return ::testing::AssertionSuccess();
    int64_t worst = 0;
    double wd = -1;
    for (int64_t i = 0; i < want.size(); ++i) {
        double d = std::fabs(static_cast<double>(got.data<float>()[i]) - want.data<float>()[i]);
        if (!(d <= wd)) {
            wd = d;
            worst = i;
            if (std::isnan(d)) break;
        }
    }
    return ::testing::AssertionFailure() << key << ": rel L2 " << r << " > " << tol << ", worst at flat index " << worst
                                         << " (got " << got.data<float>()[worst] << ", want "
                                         << want.data<float>()[worst] << "), shape " << shape_str(want.shape);
}

std::string key(const char* kernel, ElemType t) { return std::string(kernel) + " " + type_name(t); }

// ---- host data ---------------------------------------------------------------------------------

float round_half(float v) { return half_to_float(float_to_half(v)); }

// What the kernel sees of `t` when stored as `type`.
Tensor as_type(Tensor t, ElemType type) {
    if (type == ElemType::kF16)
        for (int64_t i = 0; i < t.size(); ++i) t.data<float>()[i] = round_half(t.data<float>()[i]);
    return t;
}

// Uniform in [lo, hi): fresh data for every case, never zeros.
Tensor random_tensor(test::Rng& rng, Shape s, float lo, float hi) {
    const size_t count = static_cast<size_t>(num_elements(s));
    return Tensor::from_floats(std::move(s), rng.uniform_floats(count, lo, hi));
}

// Magnitudes in [lo, hi) with random signs (divisors).
Tensor random_away_from_zero(test::Rng& rng, Shape s, float lo, float hi) {
    Tensor t = random_tensor(rng, std::move(s), lo, hi);
    for (int64_t i = 0; i < t.size(); ++i)
        if (rng.uniform(0.f, 1.f) < 0.5f) t.data<float>()[i] = -t.data<float>()[i];
    return t;
}

ir::Node make_node(Op op, const std::vector<std::pair<std::string, ir::Attribute>>& attrs = {}) {
    ir::Node n;
    n.op = op;
    n.name = std::string(ir::op_name(op));
    n.outputs = {0};
    for (const auto& [k, v] : attrs) n.attrs.set(k, v);
    return n;
}

Tensor ref(const ir::Node& node, const std::vector<const Tensor*>& in) { return reference::evaluate(node, in)[0]; }

// ---- device buffers ----------------------------------------------------------------------------

void sync() {
    KS_CUDA(cudaGetLastError());
    KS_CUDA(cudaDeviceSynchronize());
}

// NaN patterns no kernel produces from finite data: an element still holding one was not written.
constexpr uint32_t kPoisonF32 = 0x7fc0deadu;
constexpr uint16_t kPoisonF16 = 0x7e5au;

// A channel slice [offset, offset + c) of an NHWC buffer with c + extra channels per pixel.
struct Slice {
    int64_t extra = 0;
    int64_t offset = 0;
};

// An NHWC tensor (possibly a slice) on the device, with a host mirror of its whole buffer.
class NhwcBuf {
   public:
    NhwcBuf(ElemType type, int64_t n, int64_t h, int64_t w, int64_t c, Slice s = {})
        : type_(type),
          n_(n),
          h_(h),
          w_(w),
          c_(c),
          ps_(c + s.extra),
          off_(s.offset),
          es_(static_cast<size_t>(elem_size(type))),
          host_(static_cast<size_t>(n * h * w * ps_) * es_),
          dev_(host_.size()) {
        KS_CHECK(s.offset >= 0 && s.offset <= s.extra, "bad test slice");
        for (size_t i = 0; i < host_.size() / es_; ++i) put_bits(i, poison());
        dev_.upload(host_.data());
    }

    NhwcTensor view() const {
        NhwcTensor t;
        t.data = static_cast<char*>(dev_.get()) + static_cast<size_t>(off_) * es_;
        t.type = type_;
        t.n = static_cast<int>(n_);
        t.h = static_cast<int>(h_);
        t.w = static_cast<int>(w_);
        t.c = static_cast<int>(c_);
        t.pixel_stride = ps_;
        return t;
    }

    // Stores NCHW `t` into the slice (rounded to the element type); the rest stays poisoned.
    void set(const Tensor& t) {
        KS_CHECK(t.shape == Shape({n_, c_, h_, w_}), "NhwcBuf::set: shape ", shape_str(t.shape));
        for (int64_t n = 0; n < n_; ++n)
            for (int64_t ch = 0; ch < c_; ++ch)
                for (int64_t p = 0; p < h_ * w_; ++p)
                    put(index(n, p, ch), t.data<float>()[(n * c_ + ch) * h_ * w_ + p]);
        dev_.upload(host_.data());
    }

    // Downloads the buffer; returns the slice as NCHW float.
    Tensor get() {
        dev_.download(host_.data());
        Tensor t(DType::kFloat32, {n_, c_, h_, w_});
        for (int64_t n = 0; n < n_; ++n)
            for (int64_t ch = 0; ch < c_; ++ch)
                for (int64_t p = 0; p < h_ * w_; ++p)
                    t.data<float>()[(n * c_ + ch) * h_ * w_ + p] = value(index(n, p, ch));
        return t;
    }

    // After get(): every element of the slice written, every other one untouched.
    ::testing::AssertionResult only_slice_written() const {
        int64_t unwritten = 0, clobbered = 0;
        for (int64_t px = 0; px < n_ * h_ * w_; ++px)
            for (int64_t ch = 0; ch < ps_; ++ch) {
                bool inside = ch >= off_ && ch < off_ + c_;
                bool poisoned = bits(static_cast<size_t>(px * ps_ + ch)) == poison();
                unwritten += inside && poisoned;
                clobbered += !inside && !poisoned;
            }
        if (unwritten == 0 && clobbered == 0) return ::testing::AssertionSuccess();
        return ::testing::AssertionFailure()
               << unwritten << " elements of the slice not written, " << clobbered << " outside it overwritten (slice "
               << off_ << "+" << c_ << " of " << ps_ << " channels)";
    }

   private:
    size_t index(int64_t n, int64_t p, int64_t ch) const {
        return static_cast<size_t>((n * h_ * w_ + p) * ps_ + off_ + ch);
    }
    uint32_t poison() const { return type_ == ElemType::kF16 ? kPoisonF16 : kPoisonF32; }
    uint32_t bits(size_t i) const {
        if (type_ == ElemType::kF16) {
            uint16_t b;
            std::memcpy(&b, host_.data() + i * 2, 2);
            return b;
        }
        uint32_t b;
        std::memcpy(&b, host_.data() + i * 4, 4);
        return b;
    }
    void put_bits(size_t i, uint32_t b) {
        if (type_ == ElemType::kF16) {
            uint16_t h = static_cast<uint16_t>(b);
            std::memcpy(host_.data() + i * 2, &h, 2);
        } else {
            std::memcpy(host_.data() + i * 4, &b, 4);
        }
    }
    void put(size_t i, float v) {
        if (type_ == ElemType::kF16) {
            put_bits(i, float_to_half(v));
        } else {
            std::memcpy(host_.data() + i * 4, &v, 4);
        }
    }
    float value(size_t i) const {
        if (type_ == ElemType::kF16) return half_to_float(static_cast<uint16_t>(bits(i)));
        float v;
        std::memcpy(&v, host_.data() + i * 4, 4);
        return v;
    }

    ElemType type_;
    int64_t n_, h_, w_, c_, ps_, off_;
    size_t es_;
    std::vector<uint8_t> host_;
    DeviceBuffer dev_;
};

// A float buffer with poisoned guard elements after `size` (for kernels writing plain NCHW data).
class FloatBuf {
   public:
    static constexpr int64_t kGuard = 64;
    explicit FloatBuf(int64_t size) : size_(size), host_(static_cast<size_t>(size + kGuard)), dev_(host_.size() * 4) {
        for (float& v : host_) std::memcpy(&v, &kPoisonF32, 4);
        dev_.upload(host_.data());
    }
    explicit FloatBuf(const Tensor& t) : FloatBuf(t.size()) {
        std::memcpy(host_.data(), t.data<float>(), static_cast<size_t>(t.size()) * 4);
        dev_.upload(host_.data());
    }
    float* get() const { return dev_.f(); }
    Tensor download(Shape s) {
        dev_.download(host_.data());
        KS_CHECK(num_elements(s) == size_, "FloatBuf: shape ", shape_str(s), " for ", size_, " elements");
        return Tensor::from_floats(std::move(s), std::vector<float>(host_.begin(), host_.begin() + size_));
    }
    // After download(): the guard is intact.
    bool guard_intact() const {
        for (int64_t i = size_; i < size_ + kGuard; ++i) {
            uint32_t b;
            std::memcpy(&b, &host_[static_cast<size_t>(i)], 4);
            if (b != kPoisonF32) return false;
        }
        return true;
    }

   private:
    int64_t size_;
    std::vector<float> host_;
    DeviceBuffer dev_;
};

class CudaOpsTest : public ::testing::Test {
   protected:
    void SetUp() override { SKIP_WITHOUT_GPU(); }
    test::Rng rng;
};

constexpr ElemType kTypes[] = {ElemType::kF32, ElemType::kF16};

double tol_for(ElemType t, double f32_tol) { return t == ElemType::kF16 ? kTolF16 : f32_tol; }

// ---- NHWC: max pooling -------------------------------------------------------------------------

class CudaOpsPool : public CudaOpsTest {};

struct PoolCase {
    int64_t n, c, h, w, k, s, p;
    Slice in, out;
};

TEST_F(CudaOpsPool, MaxPoolMatchesReference) {
    SCOPED_TRACE(rng.trace());
    const PoolCase cases[] = {
        {1, 128, 20, 20, 5, 1, 2, {}, {}},            // SPPF (yolov8n at 640)
        {3, 64, 20, 20, 5, 1, 2, {}, {}},             // batch 3
        {2, 3, 7, 9, 2, 2, 0, {}, {}},                // odd sizes, 3 channels: scalar path
        {1, 20, 11, 13, 3, 2, 1, {}, {}},             // f16 4-wide, f32 4-wide
        {2, 24, 10, 10, 5, 1, 2, {16, 8}, {24, 16}},  // channel slices, vector path
        {1, 13, 9, 6, 3, 1, 1, {5, 3}, {7, 1}},       // odd slices: scalar path
        {1, 144, 8, 8, 1, 1, 0, {}, {}},              // k1 copy-like
        {3, 40, 5, 5, 5, 1, 2, {8, 8}, {0, 0}},       // window larger than half the map
        // Large enough for the separable stride-1 kernel (it takes over past 512 threads an SM):
        {64, 128, 20, 20, 5, 1, 2, {}, {}},  // SPPF at batch 64
        {48, 128, 23, 30, 3, 1, 1, {}, {}},  // 3x3, rows not a multiple of its 4 a thread
    };
    for (ElemType t : kTypes)
        for (const PoolCase& pc : cases) {
            SCOPED_TRACE(::testing::Message() << type_name(t) << " n=" << pc.n << " c=" << pc.c << " " << pc.h << "x"
                                              << pc.w << " k" << pc.k << "s" << pc.s << "p" << pc.p);
            Tensor x = as_type(random_tensor(rng, {pc.n, pc.c, pc.h, pc.w}, -3.f, 3.f), t);
            Tensor want = ref(make_node(Op::kMaxPool, {{"kernel_shape", Ints{pc.k, pc.k}},
                                                       {"strides", Ints{pc.s, pc.s}},
                                                       {"pads", Ints{pc.p, pc.p, pc.p, pc.p}}}),
                              {&x});
            NhwcBuf xb(t, pc.n, pc.h, pc.w, pc.c, pc.in);
            xb.set(x);
            NhwcBuf yb(t, pc.n, want.shape[2], want.shape[3], pc.c, pc.out);
            maxpool2d_nhwc(xb.view(), yb.view(), static_cast<int>(pc.k), static_cast<int>(pc.k), static_cast<int>(pc.s),
                           static_cast<int>(pc.s), static_cast<int>(pc.p), static_cast<int>(pc.p), nullptr);
            sync();
            EXPECT_TRUE(close(key("maxpool2d", t), yb.get(), want, tol_for(t, kTolExact)));
            EXPECT_TRUE(yb.only_slice_written());
        }
}

// SPPF's three chained pools in one launch: each output is the reference pool of the one before
// (exact: max picks an input value). Outputs as slices of wider buffers, as in SPPF's concat.
TEST_F(CudaOpsPool, SppfChainMatchesThreePools) {
    SCOPED_TRACE(rng.trace());
    struct SppfCase {
        int64_t n, c, h, w, k;
        Slice in, out;
    };
    const SppfCase cases[] = {
        {1, 128, 20, 20, 5, {}, {384, 128}},  // yolov8n at 640, batch 1, outputs in a 512-channel concat
        {64, 128, 20, 20, 5, {}, {}},         // batch 64
        {2, 24, 13, 7, 3, {8, 8}, {16, 0}},   // 3x3, odd map, slices
        {1, 13, 9, 6, 5, {5, 3}, {7, 1}},     // odd channels: scalar path
        {2, 16, 48, 48, 5, {}, {}},           // planes over 48 KB (f32): the three-launch path
        {1, 8, 3, 2, 5, {}, {}},              // window larger than the map
    };
    for (ElemType t : kTypes)
        for (const SppfCase& sc : cases) {
            SCOPED_TRACE(::testing::Message() << type_name(t) << " n=" << sc.n << " c=" << sc.c << " " << sc.h << "x"
                                              << sc.w << " k" << sc.k);
            Tensor x = as_type(random_tensor(rng, {sc.n, sc.c, sc.h, sc.w}, -3.f, 3.f), t);
            auto pool = make_node(Op::kMaxPool, {{"kernel_shape", Ints{sc.k, sc.k}},
                                                 {"strides", Ints{1, 1}},
                                                 {"pads", Ints{sc.k / 2, sc.k / 2, sc.k / 2, sc.k / 2}}});
            Tensor want1 = ref(pool, {&x});
            Tensor want2 = ref(pool, {&want1});
            Tensor want3 = ref(pool, {&want2});
            NhwcBuf xb(t, sc.n, sc.h, sc.w, sc.c, sc.in);
            xb.set(x);
            NhwcBuf y1(t, sc.n, sc.h, sc.w, sc.c, sc.out), y2(t, sc.n, sc.h, sc.w, sc.c, sc.out),
                y3(t, sc.n, sc.h, sc.w, sc.c, sc.out);
            sppf_maxpool_nhwc(xb.view(), y1.view(), y2.view(), y3.view(), static_cast<int>(sc.k), nullptr);
            sync();
            EXPECT_TRUE(close(key("sppf_maxpool y1", t), y1.get(), want1, kTolExact));
            EXPECT_TRUE(close(key("sppf_maxpool y2", t), y2.get(), want2, kTolExact));
            EXPECT_TRUE(close(key("sppf_maxpool y3", t), y3.get(), want3, kTolExact));
            EXPECT_TRUE(y1.only_slice_written() && y2.only_slice_written() && y3.only_slice_written());
        }
}

// ---- NHWC: nearest resize ----------------------------------------------------------------------

// Mirrors the reference's nearest_source (ONNX Resize, mode nearest).
int32_t nearest_source(int64_t out_coord, double scale, int64_t in_len, int64_t out_len, const std::string& cm,
                       const std::string& nm) {
    double x = 0;
    if (cm == "asymmetric") {
        x = out_coord / scale;
    } else if (cm == "half_pixel") {
        x = (out_coord + 0.5) / scale - 0.5;
    } else if (cm == "pytorch_half_pixel") {
        x = out_len > 1 ? (out_coord + 0.5) / scale - 0.5 : 0.0;
    } else if (cm == "align_corners") {
        x = out_len > 1 ? out_coord * static_cast<double>(in_len - 1) / static_cast<double>(out_len - 1) : 0.0;
    }
    int64_t i = 0;
    if (nm == "floor") {
        i = static_cast<int64_t>(std::floor(x));
    } else if (nm == "ceil") {
        i = static_cast<int64_t>(std::ceil(x));
    } else if (nm == "round_prefer_ceil") {
        i = static_cast<int64_t>(std::floor(x + 0.5));
    } else {
        i = static_cast<int64_t>(std::ceil(x - 0.5));
    }
    return static_cast<int32_t>(std::clamp<int64_t>(i, 0, in_len - 1));
}

class CudaOpsResize : public CudaOpsTest {};

struct ResizeCase {
    int64_t n, c, h, w, oh, ow;
    std::string cm, nm;
    float scale = 0;  // > 0: the "scale_h"/"scale_w" attributes (scales input), else sizes input
    Slice in, out;
};

TEST_F(CudaOpsResize, NearestMatchesReference) {
    SCOPED_TRACE(rng.trace());
    const ResizeCase cases[] = {
        {1, 256, 20, 20, 40, 40, "asymmetric", "floor", 2.f, {}, {}},          // YOLOv8 upsample
        {3, 128, 40, 40, 80, 80, "asymmetric", "floor", 2.f, {}, {}},          // batch 3
        {2, 24, 10, 10, 20, 20, "asymmetric", "floor", 2.f, {8, 8}, {40, 0}},  // into a concat slice
        {1, 5, 5, 7, 12, 9, "half_pixel", "round_prefer_floor", 0, {3, 1}, {}},
        {2, 6, 9, 9, 4, 5, "align_corners", "ceil", 0, {}, {2, 2}},
        {1, 16, 6, 4, 11, 3, "pytorch_half_pixel", "round_prefer_ceil", 0, {}, {}},
    };
    for (ElemType t : kTypes)
        for (const ResizeCase& rc : cases) {
            SCOPED_TRACE(::testing::Message()
                         << type_name(t) << " n=" << rc.n << " c=" << rc.c << " " << rc.h << "x" << rc.w << " -> "
                         << rc.oh << "x" << rc.ow << " " << rc.cm << " " << rc.nm);
            Tensor x = as_type(random_tensor(rng, {rc.n, rc.c, rc.h, rc.w}, -2.f, 2.f), t);
            ir::Node node = make_node(Op::kResize, {{"mode", std::string("nearest")},
                                                    {"coordinate_transformation_mode", rc.cm},
                                                    {"nearest_mode", rc.nm},
                                                    {"shape", Ints{rc.n, rc.c, rc.oh, rc.ow}}});
            if (rc.scale > 0) {
                node.attrs.set("scale_h", rc.scale);
                node.attrs.set("scale_w", rc.scale);
            }
            Tensor want = ref(node, {&x});
            double sh = rc.scale > 0 ? rc.scale : static_cast<double>(rc.oh) / static_cast<double>(rc.h);
            double sw = rc.scale > 0 ? rc.scale : static_cast<double>(rc.ow) / static_cast<double>(rc.w);
            std::vector<int32_t> ys, xs;
            for (int64_t o = 0; o < rc.oh; ++o) ys.push_back(nearest_source(o, sh, rc.h, rc.oh, rc.cm, rc.nm));
            for (int64_t o = 0; o < rc.ow; ++o) xs.push_back(nearest_source(o, sw, rc.w, rc.ow, rc.cm, rc.nm));
            DeviceBuffer dys(ys.size() * 4), dxs(xs.size() * 4);
            dys.upload(ys.data());
            dxs.upload(xs.data());
            NhwcBuf xb(t, rc.n, rc.h, rc.w, rc.c, rc.in);
            xb.set(x);
            NhwcBuf yb(t, rc.n, rc.oh, rc.ow, rc.c, rc.out);
            resize_nearest_nhwc(xb.view(), yb.view(), static_cast<const int32_t*>(dys.get()),
                                static_cast<const int32_t*>(dxs.get()), nullptr);
            sync();
            EXPECT_TRUE(close(key("resize_nearest", t), yb.get(), want, tol_for(t, kTolExact)));
            EXPECT_TRUE(yb.only_slice_written());
        }
}

// ---- NHWC: elementwise -------------------------------------------------------------------------

class CudaOpsElementwise : public CudaOpsTest {};

const char* unary_name(UnaryOp op) {
    switch (op) {
        case UnaryOp::kSigmoid:
            return "sigmoid";
        case UnaryOp::kRelu:
            return "relu";
        case UnaryOp::kSilu:
            return "silu";
        case UnaryOp::kSin:
            return "sin";
        case UnaryOp::kCos:
            return "cos";
        case UnaryOp::kCopy:
            return "copy";
    }
    return "?";
}

// The oracle for a unary op (SiLU is no IR op: Sigmoid then Mul, as ONNX exports it).
Tensor unary_reference(UnaryOp op, const Tensor& x) {
    switch (op) {
        case UnaryOp::kSigmoid:
            return ref(make_node(Op::kSigmoid), {&x});
        case UnaryOp::kRelu:
            return ref(make_node(Op::kRelu), {&x});
        case UnaryOp::kSin:
            return ref(make_node(Op::kSin), {&x});
        case UnaryOp::kCos:
            return ref(make_node(Op::kCos), {&x});
        case UnaryOp::kCopy:
            return ref(make_node(Op::kIdentity), {&x});
        case UnaryOp::kSilu: {
            Tensor s = ref(make_node(Op::kSigmoid), {&x});
            return ref(make_node(Op::kMul), {&x, &s});
        }
    }
    return x;
}

struct EwCase {
    int64_t n, c, h, w;
    Slice x, y, b;
};

const EwCase kEwCases[] = {
    {3, 144, 20, 20, {}, {}, {}},               // a YOLOv8 head map, batch 3: vector path
    {1, 5, 7, 3, {}, {}, {}},                   // odd: scalar path
    {2, 64, 9, 11, {64, 32}, {16, 8}, {8, 0}},  // slices of concat buffers, vector path
    {1, 12, 5, 5, {3, 1}, {5, 2}, {1, 1}},      // odd slices: scalar path
    {1, 36, 4, 4, {4, 4}, {}, {}},              // f16 4-wide only
};

TEST_F(CudaOpsElementwise, UnaryMatchesReference) {
    SCOPED_TRACE(rng.trace());
    for (UnaryOp op : {UnaryOp::kSigmoid, UnaryOp::kRelu, UnaryOp::kSilu, UnaryOp::kSin, UnaryOp::kCos, UnaryOp::kCopy})
        for (ElemType t : kTypes)
            for (const EwCase& ec : kEwCases) {
                SCOPED_TRACE(::testing::Message() << unary_name(op) << " " << type_name(t) << " [" << ec.n << ", "
                                                  << ec.c << ", " << ec.h << ", " << ec.w << "]");
                Tensor x = as_type(random_tensor(rng, {ec.n, ec.c, ec.h, ec.w}, -4.f, 4.f), t);
                Tensor want = unary_reference(op, x);
                NhwcBuf xb(t, ec.n, ec.h, ec.w, ec.c, ec.x);
                xb.set(x);
                NhwcBuf yb(t, ec.n, ec.h, ec.w, ec.c, ec.y);
                unary_nhwc(op, xb.view(), yb.view(), nullptr);
                sync();
                EXPECT_TRUE(
                    close(key(unary_name(op), t), yb.get(), want, tol_for(t, op == UnaryOp::kCopy ? 0.0 : kTolExact)));
                EXPECT_TRUE(yb.only_slice_written());
            }
}

TEST_F(CudaOpsElementwise, CopyConvertsTypesIntoSlices) {
    SCOPED_TRACE(rng.trace());
    for (ElemType tx : kTypes)
        for (ElemType ty : kTypes)
            for (const EwCase& ec : kEwCases) {
                SCOPED_TRACE(::testing::Message() << type_name(tx) << " -> " << type_name(ty) << " [" << ec.n << ", "
                                                  << ec.c << ", " << ec.h << ", " << ec.w << "]");
                Tensor x = as_type(random_tensor(rng, {ec.n, ec.c, ec.h, ec.w}, -4.f, 4.f), tx);
                NhwcBuf xb(tx, ec.n, ec.h, ec.w, ec.c, ec.x);
                xb.set(x);
                NhwcBuf yb(ty, ec.n, ec.h, ec.w, ec.c, ec.y);
                unary_nhwc(UnaryOp::kCopy, xb.view(), yb.view(), nullptr);
                sync();
                EXPECT_TRUE(
                    close(std::string("copy ") + type_name(tx) + "->" + type_name(ty), yb.get(), x, tol_for(ty, 0.0)));
                EXPECT_TRUE(yb.only_slice_written());
            }
}

const char* binary_name(BinaryOp op) {
    switch (op) {
        case BinaryOp::kAdd:
            return "add";
        case BinaryOp::kSub:
            return "sub";
        case BinaryOp::kMul:
            return "mul";
        case BinaryOp::kDiv:
            return "div";
    }
    return "?";
}

Op binary_ir_op(BinaryOp op) {
    switch (op) {
        case BinaryOp::kAdd:
            return Op::kAdd;
        case BinaryOp::kSub:
            return Op::kSub;
        case BinaryOp::kMul:
            return Op::kMul;
        case BinaryOp::kDiv:
            return Op::kDiv;
    }
    return Op::kAdd;
}

constexpr BinaryOp kBinaryOps[] = {BinaryOp::kAdd, BinaryOp::kSub, BinaryOp::kMul, BinaryOp::kDiv};

TEST_F(CudaOpsElementwise, BinaryMatchesReference) {
    SCOPED_TRACE(rng.trace());
    for (BinaryOp op : kBinaryOps)
        for (ElemType t : kTypes)
            for (const EwCase& ec : kEwCases) {
                SCOPED_TRACE(::testing::Message() << binary_name(op) << " " << type_name(t) << " [" << ec.n << ", "
                                                  << ec.c << ", " << ec.h << ", " << ec.w << "]");
                Shape s = {ec.n, ec.c, ec.h, ec.w};
                Tensor a = as_type(random_tensor(rng, s, -2.f, 2.f), t);
                // Divisors stay away from zero so the quotients stay O(1).
                Tensor b = as_type(random_away_from_zero(rng, s, 0.5f, 2.f), t);
                Tensor want = ref(make_node(binary_ir_op(op)), {&a, &b});
                NhwcBuf ab(t, ec.n, ec.h, ec.w, ec.c, ec.x), bb(t, ec.n, ec.h, ec.w, ec.c, ec.b);
                ab.set(a);
                bb.set(b);
                NhwcBuf yb(t, ec.n, ec.h, ec.w, ec.c, ec.y);
                binary_nhwc(op, ab.view(), bb.view(), yb.view(), nullptr);
                sync();
                EXPECT_TRUE(close(key(binary_name(op), t), yb.get(), want, tol_for(t, kTolExact)));
                EXPECT_TRUE(yb.only_slice_written());
            }
}

// ---- NHWC: transposed convolution and global pooling -------------------------------------------

class CudaOpsConvTranspose : public CudaOpsTest {};

struct ConvTCase {
    int64_t n, ci, co, h, w, k, s, p, outpad;
    bool bias;
    Slice in, out;
};

TEST_F(CudaOpsConvTranspose, MatchesReference) {
    SCOPED_TRACE(rng.trace());
    const ConvTCase cases[] = {
        {1, 64, 64, 20, 20, 2, 2, 0, 0, true, {}, {}},           // YOLOv8n-seg proto upsample (at 160)
        {3, 32, 40, 9, 7, 2, 2, 0, 0, true, {}, {24, 8}},        // batch 3, output slice
        {2, 5, 7, 5, 6, 3, 2, 1, 1, true, {3, 2}, {}},           // overlapping taps, padding, output_padding
        {1, 17, 70, 4, 5, 3, 1, 1, 0, false, {}, {}},            // stride 1, no bias, > 64 output channels
        {1, 8, 3, 3, 4, 4, 3, 1, 2, true, {}, {5, 4}},           // k > s, uneven phases
        {2, 80, 16, 6, 6, 2, 2, 0, 0, false, {16, 16}, {0, 0}},  // K over several 16-channel chunks
        {1, 6, 5, 4, 4, 1, 2, 0, 1, true, {}, {}},               // k < stride: some phases get the bias alone
    };
    for (ElemType tx : kTypes)
        for (ElemType ty : kTypes)
            for (const ConvTCase& cc : cases) {
                SCOPED_TRACE(::testing::Message()
                             << type_name(tx) << " -> " << type_name(ty) << " n=" << cc.n << " ci=" << cc.ci
                             << " co=" << cc.co << " " << cc.h << "x" << cc.w << " k" << cc.k << "s" << cc.s << "p"
                             << cc.p << " outpad" << cc.outpad << " bias=" << cc.bias);
                float bound = std::sqrt(3.f / static_cast<float>(cc.ci * cc.k * cc.k / (cc.s * cc.s) + 1));
                Tensor x = as_type(random_tensor(rng, {cc.n, cc.ci, cc.h, cc.w}, -1.f, 1.f), tx);
                Tensor w = random_tensor(rng, {cc.ci, cc.co, cc.k, cc.k}, -bound, bound);
                Tensor b = random_tensor(rng, {cc.co}, -0.5f, 0.5f);
                Tensor want = ref(make_node(Op::kConvTranspose, {{"kernel_shape", Ints{cc.k, cc.k}},
                                                                 {"strides", Ints{cc.s, cc.s}},
                                                                 {"pads", Ints{cc.p, cc.p, cc.p, cc.p}},
                                                                 {"output_padding", Ints{cc.outpad, cc.outpad}}}),
                                  {&x, &w, cc.bias ? &b : nullptr});
                NhwcBuf xb(tx, cc.n, cc.h, cc.w, cc.ci, cc.in);
                xb.set(x);
                FloatBuf wb(w), bb(b);
                NhwcBuf yb(ty, cc.n, want.shape[2], want.shape[3], cc.co, cc.out);
                conv_transpose2d_nhwc(xb.view(), wb.get(), cc.bias ? bb.get() : nullptr, static_cast<int>(cc.k),
                                      static_cast<int>(cc.k), static_cast<int>(cc.s), static_cast<int>(cc.s),
                                      static_cast<int>(cc.p), static_cast<int>(cc.p), yb.view(), nullptr);
                sync();
                EXPECT_TRUE(close(std::string("conv_transpose2d ") + type_name(tx) + "->" + type_name(ty), yb.get(),
                                  want, tol_for(ty, kTolSum)));
                EXPECT_TRUE(yb.only_slice_written());
            }
}

class CudaOpsGlobalPool : public CudaOpsTest {};

TEST_F(CudaOpsGlobalPool, AvgMatchesReference) {
    SCOPED_TRACE(rng.trace());
    const EwCase cases[] = {
        {3, 1280, 7, 7, {}, {}, {}},       // classify head (224 input), batch 3
        {1, 64, 20, 20, {}, {}, {}},       //
        {2, 3, 5, 3, {5, 2}, {}, {}},      // odd slice
        {1, 40, 80, 80, {24, 8}, {}, {}},  // many pixels per channel
    };
    for (ElemType t : kTypes)
        for (const EwCase& ec : cases) {
            SCOPED_TRACE(::testing::Message()
                         << type_name(t) << " [" << ec.n << ", " << ec.c << ", " << ec.h << ", " << ec.w << "]");
            // Positive-biased data: a mean near zero would make the relative error meaningless.
            Tensor x = as_type(random_tensor(rng, {ec.n, ec.c, ec.h, ec.w}, -0.5f, 1.5f), t);
            Tensor want = ref(make_node(Op::kGlobalAveragePool), {&x});
            NhwcBuf xb(t, ec.n, ec.h, ec.w, ec.c, ec.x);
            xb.set(x);
            FloatBuf yb(ec.n * ec.c);
            global_avgpool_nhwc(xb.view(), yb.get(), nullptr);
            sync();
            EXPECT_TRUE(close(key("global_avgpool", t), yb.download({ec.n, ec.c}), want, kTolSum));
            EXPECT_TRUE(yb.guard_intact());
        }
}

// ---- layout conversions ------------------------------------------------------------------------

class CudaOpsLayout : public CudaOpsTest {};

const EwCase kLayoutCases[] = {
    {2, 3, 64, 80, {}, {}, {}},         // the image (small-channel path)
    {1, 3, 17, 13, {1, 0}, {}, {}},     // image into 4-channel pixels
    {2, 144, 20, 20, {}, {}, {}},       // a head map (tiled path)
    {1, 33, 7, 9, {}, {}, {}},          // partial tiles
    {3, 64, 10, 10, {96, 40}, {}, {}},  // a slice of a concat buffer
    {1, 8, 5, 5, {3, 3}, {}, {}},       // the largest small-channel case
    {1, 9, 6, 7, {0, 0}, {}, {}},       // the smallest tiled case
};

TEST_F(CudaOpsLayout, NchwToNhwc) {
    SCOPED_TRACE(rng.trace());
    for (ElemType t : kTypes)
        for (const EwCase& ec : kLayoutCases) {
            SCOPED_TRACE(::testing::Message()
                         << type_name(t) << " [" << ec.n << ", " << ec.c << ", " << ec.h << ", " << ec.w << "]");
            Tensor x = random_tensor(rng, {ec.n, ec.c, ec.h, ec.w}, -3.f, 3.f);
            FloatBuf xb(x);
            NhwcBuf yb(t, ec.n, ec.h, ec.w, ec.c, ec.x);
            nchw_to_nhwc(xb.get(), yb.view(), nullptr);
            sync();
            EXPECT_TRUE(close(key("nchw_to_nhwc", t), yb.get(), x, tol_for(t, 0.0)));
            EXPECT_TRUE(yb.only_slice_written());
        }
}

// The stem's input: 3 image channels stored as 8 (zeros after the third) for the tensor cores.
TEST_F(CudaOpsLayout, NchwToNhwcPadsChannelsWithZeros) {
    SCOPED_TRACE(rng.trace());
    for (ElemType t : kTypes) {
        SCOPED_TRACE(type_name(t));
        const int64_t n = 2, c = 3, h = 17, w = 13;
        Tensor x = random_away_from_zero(rng, {n, c, h, w}, -3.f, 3.f);
        Tensor want(DType::kFloat32, {n, 8, h, w});
        for (int64_t i = 0; i < n; ++i)
            for (int64_t ch = 0; ch < 8; ++ch)
                for (int64_t p = 0; p < h * w; ++p)
                    want.data<float>()[(i * 8 + ch) * h * w + p] =
                        ch < c ? x.data<float>()[(i * c + ch) * h * w + p] : 0.f;
        FloatBuf xb(x);
        NhwcBuf yb(t, n, h, w, 8);
        nchw_to_nhwc(xb.get(), yb.view(), nullptr, static_cast<int>(c));
        sync();
        EXPECT_TRUE(close(key("nchw_to_nhwc padded", t), yb.get(), want, tol_for(t, 0.0)));
        EXPECT_TRUE(yb.only_slice_written());
    }
    NhwcBuf wide(ElemType::kF16, 1, 4, 4, 16);
    FloatBuf xb(random_tensor(rng, {1, 3, 4, 4}, 0.f, 1.f));
    EXPECT_THROW(nchw_to_nhwc(xb.get(), wide.view(), nullptr, 3), Error) << "only small channel counts pad";
}

TEST_F(CudaOpsLayout, NhwcToNchw) {
    SCOPED_TRACE(rng.trace());
    for (ElemType t : kTypes)
        for (const EwCase& ec : kLayoutCases) {
            SCOPED_TRACE(::testing::Message()
                         << type_name(t) << " [" << ec.n << ", " << ec.c << ", " << ec.h << ", " << ec.w << "]");
            Tensor x = as_type(random_tensor(rng, {ec.n, ec.c, ec.h, ec.w}, -3.f, 3.f), t);
            NhwcBuf xb(t, ec.n, ec.h, ec.w, ec.c, ec.x);
            xb.set(x);
            FloatBuf yb(x.size());
            nhwc_to_nchw(xb.view(), yb.get(), nullptr);
            sync();
            EXPECT_TRUE(close(key("nhwc_to_nchw", t), yb.download(x.shape), x, 0.0));
            EXPECT_TRUE(yb.guard_intact());
        }
}

// ---- strided float32 ---------------------------------------------------------------------------

class CudaOpsStrided : public CudaOpsTest {};

StridedTensor strided(float* data, const Shape& shape, const std::vector<int64_t>& strides) {
    StridedTensor t;
    t.data = data;
    t.rank = static_cast<int>(shape.size());
    for (size_t i = 0; i < shape.size(); ++i) {
        t.shape[i] = shape[i];
        t.stride[i] = strides[i];
    }
    return t;
}

StridedTensor contiguous(float* data, const Shape& shape) { return strided(data, shape, row_major_strides(shape)); }

Shape permuted(const Shape& s, const Ints& perm) {
    Shape r;
    for (int64_t p : perm) r.push_back(s[static_cast<size_t>(p)]);
    return r;
}

TEST_F(CudaOpsStrided, TransposeMatchesReference) {
    SCOPED_TRACE(rng.trace());
    struct Case {
        Shape s;
        Ints perm;
    };
    const Case cases[] = {
        {{2, 4, 16, 35}, {0, 2, 1, 3}},  // DFL: [b, 4, 16, a] -> [b, 16, 4, a]
        {{2, 144, 50}, {0, 2, 1}},       // innermost axis moves
        {{3, 5}, {1, 0}},
        {{2, 3, 4, 5, 6, 7}, {5, 3, 1, 0, 2, 4}},  // rank 6
        {{1, 7, 1, 9}, {3, 2, 1, 0}},              // unit dims
    };
    for (const Case& c : cases)
        for (UnaryOp op : {UnaryOp::kCopy, UnaryOp::kSigmoid}) {
            SCOPED_TRACE(::testing::Message()
                         << unary_name(op) << " " << shape_str(c.s) << " perm " << shape_str(c.perm));
            Tensor x = random_tensor(rng, c.s, -3.f, 3.f);
            Tensor tr = ref(make_node(Op::kTranspose, {{"perm", c.perm}}), {&x});
            Tensor want = unary_reference(op, tr);
            Shape ys = permuted(c.s, c.perm);
            auto xst = row_major_strides(c.s), yst = row_major_strides(ys);
            FloatBuf xb(x);
            // Gather form: x read through permuted strides, y contiguous.
            {
                FloatBuf yb(x.size());
                std::vector<int64_t> st;
                for (int64_t p : c.perm) st.push_back(xst[static_cast<size_t>(p)]);
                unary_strided(op, strided(xb.get(), ys, st), contiguous(yb.get(), ys), nullptr);
                sync();
                EXPECT_TRUE(close(std::string("strided ") + unary_name(op), yb.download(ys), want, kTolExact));
                EXPECT_TRUE(yb.guard_intact());
            }
            // Scatter form: x contiguous, y written through the inverse permutation.
            {
                FloatBuf yb(x.size());
                std::vector<int64_t> st(c.s.size());
                for (size_t i = 0; i < c.perm.size(); ++i) st[static_cast<size_t>(c.perm[i])] = yst[i];
                unary_strided(op, contiguous(xb.get(), c.s), strided(yb.get(), c.s, st), nullptr);
                sync();
                EXPECT_TRUE(close(std::string("strided ") + unary_name(op), yb.download(ys), want, kTolExact));
                EXPECT_TRUE(yb.guard_intact());
            }
        }
}

TEST_F(CudaOpsStrided, SliceBroadcastAndCopyIntoSlice) {
    SCOPED_TRACE(rng.trace());
    // Slice with steps: x [3, 10, 12], starts (1, 2, 3), steps (1, 3, 2), shape (2, 3, 4).
    {
        Tensor x = random_tensor(rng, {3, 10, 12}, -2.f, 2.f);
        Ints starts = {1, 2, 3}, steps = {1, 3, 2};
        Shape s = {2, 3, 4};
        Tensor want = ref(make_node(Op::kSlice, {{"starts", starts}, {"steps", steps}, {"shape", s}}), {&x});
        FloatBuf xb(x), yb(want.size());
        auto st = row_major_strides(x.shape);
        int64_t off = 0;
        std::vector<int64_t> vst;
        for (size_t i = 0; i < 3; ++i) {
            off += starts[i] * st[i];
            vst.push_back(st[i] * steps[i]);
        }
        unary_strided(UnaryOp::kCopy, strided(xb.get() + off, s, vst), contiguous(yb.get(), s), nullptr);
        sync();
        EXPECT_TRUE(close("strided slice", yb.download(s), want, 0.0));
        EXPECT_TRUE(yb.guard_intact());
    }
    // Broadcast: x [1, 4, 1] -> [3, 4, 5] through zero strides (Expand).
    {
        Tensor x = random_tensor(rng, {1, 4, 1}, -2.f, 2.f);
        Shape s = {3, 4, 5};
        Tensor shape_t = Tensor::from_int64s({3}, s);
        Tensor want = reference::evaluate(make_node(Op::kExpand), {&x, &shape_t})[0];
        FloatBuf xb(x), yb(want.size());
        unary_strided(UnaryOp::kCopy, strided(xb.get(), s, {0, 1, 0}), contiguous(yb.get(), s), nullptr);
        sync();
        EXPECT_TRUE(close("strided broadcast", yb.download(s), want, 0.0));
    }
    // Copy into a concat slice: x [2, 3, 4] into channels [2, 5) of y [2, 7, 4]; the rest untouched.
    {
        Tensor x = random_tensor(rng, {2, 3, 4}, -2.f, 2.f);
        FloatBuf xb(x), yb(2 * 7 * 4);
        auto yst = row_major_strides({2, 7, 4});
        unary_strided(UnaryOp::kCopy, contiguous(xb.get(), x.shape), strided(yb.get() + 2 * yst[1], x.shape, yst),
                      nullptr);
        sync();
        Tensor y = yb.download({2, 7, 4});
        int64_t wrong = 0;
        for (int64_t n = 0; n < 2; ++n)
            for (int64_t c = 0; c < 7; ++c)
                for (int64_t i = 0; i < 4; ++i) {
                    float got = y.data<float>()[(n * 7 + c) * 4 + i];
                    uint32_t bits;
                    std::memcpy(&bits, &got, 4);
                    if (c >= 2 && c < 5)
                        wrong += got != x.data<float>()[(n * 3 + c - 2) * 4 + i];
                    else
                        wrong += bits != kPoisonF32;
                }
        EXPECT_EQ(wrong, 0);
        EXPECT_TRUE(yb.guard_intact());
    }
}

TEST_F(CudaOpsStrided, BinaryBroadcastMatchesReference) {
    SCOPED_TRACE(rng.trace());
    struct Case {
        Shape y, a, b;
        bool b_zero_strides;  // b as y-shaped with zero strides instead of unit dims
    };
    const Case cases[] = {
        {{2, 3, 4, 5}, {2, 3, 4, 5}, {1, 3, 1, 5}, false},
        {{2, 3, 4, 5}, {2, 3, 4, 5}, {1, 3, 1, 5}, true},
        {{2, 2, 8400}, {2, 2, 8400}, {1, 1, 8400}, false},  // anchors times strides (decode)
        {{4, 1, 7}, {1, 1, 7}, {4, 1, 1}, false},           // both operands broadcast
        {{3, 6}, {3, 6}, {1, 1}, false},                    // scalar
    };
    for (const Case& c : cases)
        for (BinaryOp op : kBinaryOps) {
            SCOPED_TRACE(::testing::Message() << binary_name(op) << " " << shape_str(c.a) << " , " << shape_str(c.b)
                                              << " zero_strides=" << c.b_zero_strides);
            Tensor a = random_tensor(rng, c.a, -2.f, 2.f);
            Tensor b = random_away_from_zero(rng, c.b, 0.5f, 2.f);
            Tensor want = ref(make_node(binary_ir_op(op)), {&a, &b});
            FloatBuf ab(a), bb(b), yb(want.size());
            auto bst = row_major_strides(c.b);
            StridedTensor bt = strided(bb.get(), c.b, bst);
            if (c.b_zero_strides) {
                for (size_t i = 0; i < c.y.size(); ++i)
                    if (c.b[i] == 1) bt.stride[i] = 0;
                for (size_t i = 0; i < c.y.size(); ++i) bt.shape[i] = c.y[i];
            }
            binary_strided(op, contiguous(ab.get(), c.a), bt, contiguous(yb.get(), c.y), nullptr);
            sync();
            EXPECT_TRUE(close(std::string("strided ") + binary_name(op), yb.download(c.y), want, kTolExact));
            EXPECT_TRUE(yb.guard_intact());
        }
    // A transposed operand: y = transpose(a, [0, 2, 1]) * b.
    {
        Tensor a = random_tensor(rng, {2, 6, 9}, -2.f, 2.f), b = random_tensor(rng, {2, 9, 6}, -2.f, 2.f);
        Tensor at = ref(make_node(Op::kTranspose, {{"perm", Ints{0, 2, 1}}}), {&a});
        Tensor want = ref(make_node(Op::kMul), {&at, &b});
        FloatBuf ab(a), bb(b), yb(want.size());
        binary_strided(BinaryOp::kMul, strided(ab.get(), {2, 9, 6}, {54, 1, 9}), contiguous(bb.get(), b.shape),
                       contiguous(yb.get(), b.shape), nullptr);
        sync();
        EXPECT_TRUE(close("strided mul", yb.download(b.shape), want, kTolExact));
    }
}

class CudaOpsSoftmax : public CudaOpsTest {};

TEST_F(CudaOpsSoftmax, MatchesReference) {
    SCOPED_TRACE(rng.trace());
    struct Case {
        Shape s;
        int64_t axis;
        float lo, hi;
    };
    const Case cases[] = {
        {{2, 16, 4, 8400}, 1, -8.f, 8.f},  // DFL after the transpose: len 16, inner 4 * 8400
        {{3, 1000}, 1, -10.f, 10.f},       // classify: one warp per row
        {{2, 5000}, 1, -10.f, 10.f},       // long rows: one block per row
        {{2, 17, 33}, 1, -5.f, 5.f},       // columns longer than the register cache
        {{5, 16, 3}, 1, -5.f, 5.f},        // few columns
        {{4, 1, 7}, 1, -5.f, 5.f},         // len 1: all ones
        {{2, 16, 40}, 1, 80.f, 100.f},     // exp would overflow without the max subtracted
        {{3, 700}, 1, 80.f, 100.f},       {{1, 3000}, -1, -100.f, 100.f},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(::testing::Message() << shape_str(c.s) << " axis " << c.axis);
        Tensor x = random_tensor(rng, c.s, c.lo, c.hi);
        Tensor want = ref(make_node(Op::kSoftmax, {{"axis", c.axis}}), {&x});
        int axis = normalize_axis(c.axis, c.s.size());
        int64_t outer = 1, inner = 1;
        for (int i = 0; i < axis; ++i) outer *= c.s[static_cast<size_t>(i)];
        for (size_t i = static_cast<size_t>(axis) + 1; i < c.s.size(); ++i) inner *= c.s[i];
        FloatBuf xb(x), yb(x.size());
        softmax(xb.get(), yb.get(), outer, c.s[static_cast<size_t>(axis)], inner, nullptr);
        sync();
        EXPECT_TRUE(close("softmax", yb.download(c.s), want, kTolSum));
        EXPECT_TRUE(yb.guard_intact());
    }
    // In place (x == y), as a planner reusing the buffer would run it.
    {
        Tensor x = random_tensor(rng, {2, 16, 100}, -5.f, 5.f);
        Tensor want = ref(make_node(Op::kSoftmax, {{"axis", int64_t{1}}}), {&x});
        FloatBuf xb(x);
        softmax(xb.get(), xb.get(), 2, 16, 100, nullptr);
        sync();
        EXPECT_TRUE(close("softmax", xb.download(x.shape), want, kTolSum));
    }
}

class CudaOpsGemm : public CudaOpsTest {};

TEST_F(CudaOpsGemm, MatchesReference) {
    SCOPED_TRACE(rng.trace());
    struct Case {
        int m, n, k;
        bool trans_w, bias;
        float alpha, beta;
    };
    const Case cases[] = {
        {3, 1000, 1280, true, true, 1.f, 1.f},  // classify head (Linear: w [n, k])
        {1, 1000, 1280, true, true, 1.f, 1.f},  {64, 1000, 1280, true, true, 1.f, 1.f},  // batch 64: 64-row tiles
        {37, 50, 33, false, false, 0.5f, 2.f},   // w [k, n], partial tiles everywhere
        {17, 65, 15, false, true, 1.5f, -0.5f},  // just over a 16-row tile
        {5, 7, 1, true, true, 1.f, 1.f},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(::testing::Message() << "m=" << c.m << " n=" << c.n << " k=" << c.k << " trans_w=" << c.trans_w
                                          << " bias=" << c.bias << " alpha=" << c.alpha << " beta=" << c.beta);
        float bound = 1.f / std::sqrt(static_cast<float>(c.k));
        Tensor x = random_tensor(rng, {c.m, c.k}, -1.f, 1.f);
        Tensor w =
            c.trans_w ? random_tensor(rng, {c.n, c.k}, -bound, bound) : random_tensor(rng, {c.k, c.n}, -bound, bound);
        Tensor b = random_tensor(rng, {c.n}, -0.5f, 0.5f);
        Tensor want = ref(make_node(Op::kGemm, {{"transB", int64_t{c.trans_w}}, {"alpha", c.alpha}, {"beta", c.beta}}),
                          {&x, &w, c.bias ? &b : nullptr});
        FloatBuf xb(x), wb(w), bb(b), yb(int64_t{c.m} * c.n);
        gemm_f32(xb.get(), wb.get(), c.bias ? bb.get() : nullptr, yb.get(), c.m, c.n, c.k, c.trans_w, c.alpha, c.beta,
                 nullptr);
        sync();
        EXPECT_TRUE(close("gemm_f32", yb.download({c.m, c.n}), want, kTolSum));
        EXPECT_TRUE(yb.guard_intact());
    }
}

// ---- argument checking (host-only: no launch happens, so these need no GPU) ---------------------

NhwcTensor fake(ElemType t, int n, int h, int w, int c, int64_t ps = -1) {
    static float storage[16];
    NhwcTensor x = test::dense_nhwc(storage, t, n, h, w, c);
    if (ps >= 0) x.pixel_stride = ps;
    return x;
}

TEST(CudaOpsChecks, ShapeMismatchesThrow) {
    const NhwcTensor a = fake(ElemType::kF32, 1, 4, 4, 8), b = fake(ElemType::kF32, 1, 4, 4, 16);
    EXPECT_THROW(binary_nhwc(BinaryOp::kAdd, a, b, a, nullptr), Error);
    EXPECT_THROW(unary_nhwc(UnaryOp::kRelu, a, b, nullptr), Error);
    EXPECT_THROW(unary_nhwc(UnaryOp::kSigmoid, a, fake(ElemType::kF16, 1, 4, 4, 8), nullptr), Error);
    EXPECT_THROW(unary_nhwc(UnaryOp::kCopy, a, fake(ElemType::kF32, 1, 4, 4, 8, 4), nullptr), Error);  // ps < c
    EXPECT_THROW(maxpool2d_nhwc(a, fake(ElemType::kF16, 1, 4, 4, 8), 3, 3, 1, 1, 1, 1, nullptr), Error);
    EXPECT_THROW(maxpool2d_nhwc(a, b, 3, 3, 1, 1, 1, 1, nullptr), Error);
    EXPECT_THROW(maxpool2d_nhwc(a, fake(ElemType::kF32, 1, 9, 9, 8), 3, 3, 1, 1, 1, 1, nullptr), Error);
    EXPECT_THROW(resize_nearest_nhwc(a, b, nullptr, nullptr, nullptr), Error);
    EXPECT_THROW(
        conv_transpose2d_nhwc(a, nullptr, nullptr, 2, 2, 2, 2, 0, 0, fake(ElemType::kF32, 2, 8, 8, 8), nullptr), Error);
    EXPECT_THROW(softmax(nullptr, nullptr, -1, 2, 3, nullptr), Error);
    EXPECT_THROW(gemm_f32(nullptr, nullptr, nullptr, nullptr, -1, 2, 3, false, 1.f, 0.f, nullptr), Error);
    float dummy[4] = {};
    EXPECT_THROW(unary_strided(UnaryOp::kCopy, contiguous(dummy, {2, 2}), contiguous(dummy, {4}), nullptr), Error);
    EXPECT_THROW(unary_strided(UnaryOp::kCopy, contiguous(dummy, {1, 2}), contiguous(dummy, {2, 2}), nullptr),
                 Error);  // unary does not broadcast
    EXPECT_THROW(binary_strided(BinaryOp::kAdd, contiguous(dummy, {2, 3}), contiguous(dummy, {2, 2}),
                                contiguous(dummy, {2, 3}), nullptr),
                 Error);
}

TEST(CudaOpsChecks, ZeroSizeTensorsAreNoOps) {
    NhwcTensor e = fake(ElemType::kF16, 0, 4, 4, 8);
    e.data = nullptr;
    EXPECT_NO_THROW(unary_nhwc(UnaryOp::kSilu, e, e, nullptr));
    EXPECT_NO_THROW(binary_nhwc(BinaryOp::kMul, e, e, e, nullptr));
    EXPECT_NO_THROW(maxpool2d_nhwc(e, e, 5, 5, 1, 1, 2, 2, nullptr));
    EXPECT_NO_THROW(resize_nearest_nhwc(e, e, nullptr, nullptr, nullptr));
    EXPECT_NO_THROW(conv_transpose2d_nhwc(e, nullptr, nullptr, 2, 2, 2, 2, 0, 0, e, nullptr));
    EXPECT_NO_THROW(global_avgpool_nhwc(e, nullptr, nullptr));
    EXPECT_NO_THROW(nchw_to_nhwc(nullptr, e, nullptr));
    EXPECT_NO_THROW(nhwc_to_nchw(e, nullptr, nullptr));
    EXPECT_NO_THROW(softmax(nullptr, nullptr, 0, 16, 4, nullptr));
    EXPECT_NO_THROW(gemm_f32(nullptr, nullptr, nullptr, nullptr, 0, 10, 10, true, 1.f, 1.f, nullptr));
    StridedTensor z = contiguous(nullptr, {3, 0, 2});
    EXPECT_NO_THROW(unary_strided(UnaryOp::kCopy, z, z, nullptr));
    EXPECT_NO_THROW(binary_strided(BinaryOp::kAdd, z, z, z, nullptr));
}

}  // namespace
}  // namespace kestrel::cuda
