// cuda::yolo_decode (the fused Detect-head decode) against reference::evaluate of a YoloDecode
// node on NCHW float tensors: f32 and f16 level maps (f16: the oracle sees the f16-rounded maps),
// YOLOv8's 80x80/40x40/20x20 levels and odd ones, batch 1 and 3, nc 80 and 1, reg_max 16 and 7,
// level maps as channel slices of wider buffers and y as a strided window of a wider buffer. Every
// buffer starts poisoned: y's window must be written entirely and nothing outside it. Tolerances
// (relative L2): f32 1e-5, f16 1e-3. Also: an image's result is bit-identical at batch 1 and 3,
// bad shapes throw, and a last test times batch 64 and 1 at yolov8n's shapes (printed).
// Without a CUDA device the suite skips.
#include "backends/cuda/yolo_decode.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/rng.h"
#include "core/error.h"
#include "core/half.h"
#include "core/shape.h"
#include "gpu/gpu_test.h"
#include "ir/graph.h"
#include "reference/reference.h"

namespace kestrel::cuda {
namespace {

using test::DeviceBuffer;
using test::rel_l2;

using ir::Tensor;

constexpr double kTolF32 = 1e-5;
constexpr double kTolF16 = 1e-3;
constexpr uint32_t kPoisonF32 = 0x7fc0deadu;  // a NaN no kernel makes from finite data
constexpr uint16_t kPoisonF16 = 0x7e5au;

const char* type_name(ElemType t) { return t == ElemType::kF16 ? "f16" : "f32"; }
size_t idx(int64_t v) { return static_cast<size_t>(v); }

// A level map [n, h, w, c] stored NHWC as channels [offset, offset + c) of pixels of c + extra
// channels (a slice of a wider buffer, the rest poisoned).
class LevelBuf {
   public:
    LevelBuf(ElemType type, const Tensor& nchw, int64_t extra, int64_t offset)
        : type_(type),
          n_(nchw.shape[0]),
          c_(nchw.shape[1]),
          h_(nchw.shape[2]),
          w_(nchw.shape[3]),
          ps_(c_ + extra),
          off_(offset),
          es_(static_cast<size_t>(elem_size(type))),
          host_(idx(n_ * h_ * w_ * ps_) * es_),
          dev_(host_.size()) {
        for (size_t i = 0; i < host_.size() / es_; ++i) {
            if (type_ == ElemType::kF16) {
                std::memcpy(host_.data() + i * 2, &kPoisonF16, 2);
            } else {
                std::memcpy(host_.data() + i * 4, &kPoisonF32, 4);
            }
        }
        const int64_t hw = h_ * w_;
        for (int64_t b = 0; b < n_; ++b)
            for (int64_t ch = 0; ch < c_; ++ch)
                for (int64_t p = 0; p < hw; ++p) {
                    const float v = nchw.data<float>()[(b * c_ + ch) * hw + p];
                    const size_t at = idx((b * hw + p) * ps_ + off_ + ch);
                    if (type_ == ElemType::kF16) {
                        const uint16_t hv = float_to_half(v);
                        std::memcpy(host_.data() + at * 2, &hv, 2);
                    } else {
                        std::memcpy(host_.data() + at * 4, &v, 4);
                    }
                }
        dev_.upload(host_.data());
    }

    NhwcTensor view() const {
        NhwcTensor t;
        t.data = static_cast<char*>(dev_.get()) + idx(off_) * es_;
        t.type = type_;
        t.n = static_cast<int>(n_);
        t.h = static_cast<int>(h_);
        t.w = static_cast<int>(w_);
        t.c = static_cast<int>(c_);
        t.pixel_stride = ps_;
        return t;
    }

   private:
    ElemType type_;
    int64_t n_, c_, h_, w_, ps_, off_;
    size_t es_;
    std::vector<uint8_t> host_;
    DeviceBuffer dev_;
};

// y [n, rows, a] as a window of a poisoned float buffer. Dense: [n, rows + extra_rows, a + extra_a]
// with the window at (row0, a0). Transposed: the buffer is [n, a, rows] (anchor-major), so the
// window's anchor stride is `rows` and its row stride 1.
class OutBuf {
   public:
    OutBuf(int64_t n, int64_t rows, int64_t a, int64_t extra_rows, int64_t extra_a, bool transposed)
        : n_(n), rows_(rows), a_(a), transposed_(transposed) {
        if (transposed_) {
            tr_ = rows_;
            ta_ = a_;
            stride_ = {a_ * rows_, 1, rows_};
            start_ = 0;
        } else {
            tr_ = rows_ + extra_rows;
            ta_ = a_ + extra_a;
            row0_ = extra_rows / 2;
            a0_ = extra_a / 2;
            stride_ = {tr_ * ta_, ta_, 1};
            start_ = row0_ * ta_ + a0_;
        }
        host_.resize(idx(n_ * tr_ * ta_));
        for (float& v : host_) std::memcpy(&v, &kPoisonF32, 4);
        dev_ = std::make_unique<DeviceBuffer>(host_.size() * 4);
        dev_->upload(host_.data());
    }

    StridedTensor view() const {
        StridedTensor t;
        t.data = static_cast<float*>(dev_->get()) + start_;
        t.rank = 3;
        t.shape[0] = n_;
        t.shape[1] = rows_;
        t.shape[2] = a_;
        for (int k = 0; k < 3; ++k) t.stride[k] = stride_[idx(k)];
        return t;
    }

    // The window as [n, rows, a]; counts poisoned elements inside and overwritten ones outside.
    Tensor get(int64_t* unwritten, int64_t* clobbered) {
        dev_->download(host_.data());
        std::vector<bool> inside(host_.size(), false);
        Tensor t(DType::kFloat32, {n_, rows_, a_});
        for (int64_t b = 0; b < n_; ++b)
            for (int64_t r = 0; r < rows_; ++r)
                for (int64_t a = 0; a < a_; ++a) {
                    const size_t at = idx(start_ + b * stride_[0] + r * stride_[1] + a * stride_[2]);
                    inside[at] = true;
                    t.data<float>()[(b * rows_ + r) * a_ + a] = host_[at];
                }
        *unwritten = *clobbered = 0;
        for (size_t i = 0; i < host_.size(); ++i) {
            uint32_t bits;
            std::memcpy(&bits, &host_[i], 4);
            *unwritten += inside[i] && bits == kPoisonF32;
            *clobbered += !inside[i] && bits != kPoisonF32;
        }
        return t;
    }

   private:
    int64_t n_, rows_, a_;
    bool transposed_;
    int64_t tr_ = 0, ta_ = 0, row0_ = 0, a0_ = 0, start_ = 0;
    std::vector<int64_t> stride_;
    std::vector<float> host_;
    std::unique_ptr<DeviceBuffer> dev_;
};

struct Case {
    std::vector<std::pair<int64_t, int64_t>> levels;
    int64_t n = 1, nc = 80, reg_max = 16;
    int64_t extra = 0, offset = 0;  // level maps as slices: channels [offset, offset + c) of c + extra
    int64_t extra_rows = 0, extra_a = 0;
    bool transposed_y = false;
};

std::string describe(const Case& c, ElemType t) {
    std::string s = std::string(type_name(t)) + " n=" + std::to_string(c.n) + " nc=" + std::to_string(c.nc) +
                    " R=" + std::to_string(c.reg_max) + " levels";
    for (auto [h, w] : c.levels) s += " " + std::to_string(h) + "x" + std::to_string(w);
    if (c.extra) s += " slice " + std::to_string(c.offset) + "+c of c+" + std::to_string(c.extra);
    if (c.extra_rows || c.extra_a) s += " y window";
    if (c.transposed_y) s += " y transposed";
    return s;
}

// Ultralytics' anchors (cell centres) and strides, levels in order.
void make_anchors(const Case& c, std::vector<float>* anchors, std::vector<float>* strides) {
    std::vector<float> ax, ay;
    float stride = 8;
    for (auto [h, w] : c.levels) {
        for (int64_t y = 0; y < h; ++y)
            for (int64_t x = 0; x < w; ++x) {
                ax.push_back(static_cast<float>(x) + 0.5f);
                ay.push_back(static_cast<float>(y) + 0.5f);
                strides->push_back(stride);
            }
        stride *= 2;
    }
    *anchors = ax;
    anchors->insert(anchors->end(), ay.begin(), ay.end());
}

// The YoloDecode node a case's oracle evaluates.
ir::Node decode_node(const Case& c, bool head_convs) {
    ir::Node node;
    node.op = ir::Op::kYoloDecode;
    node.name = "decode";
    node.outputs = {0};
    node.attrs.set("num_levels", static_cast<int64_t>(c.levels.size()));
    node.attrs.set("reg_max", c.reg_max);
    node.attrs.set("nc", c.nc);
    if (head_convs) node.attrs.set("head_convs", int64_t{1});
    return node;
}

class CudaYoloDecode : public ::testing::Test {
   protected:
    void SetUp() override { SKIP_WITHOUT_GPU(); }
    test::Rng rng;
};

// Runs one case; returns the relative L2 error (and fails the test on poison or tolerance).
double run_case(test::Rng& rng, const Case& c, ElemType t) {
    SCOPED_TRACE(describe(c, t));
    const int64_t ch = 4 * c.reg_max + c.nc;
    std::vector<Tensor> maps;
    for (auto [h, w] : c.levels) {
        // Box logits in [-6, 6] (peaked and flat softmaxes), class logits in [-9, 4] (mostly low,
        // as trained heads are); f16 runs see the rounded values, and so does the oracle.
        Tensor x(DType::kFloat32, {c.n, ch, h, w});
        const int64_t hw = h * w;
        for (int64_t b = 0; b < c.n; ++b)
            for (int64_t k = 0; k < ch; ++k)
                for (int64_t p = 0; p < hw; ++p) {
                    float v = k < 4 * c.reg_max ? rng.uniform(-6.f, 6.f) : rng.uniform(-9.f, 4.f);
                    if (t == ElemType::kF16) v = half_to_float(float_to_half(v));
                    x.data<float>()[(b * ch + k) * hw + p] = v;
                }
        maps.push_back(std::move(x));
    }
    std::vector<float> anchors, strides, w;
    make_anchors(c, &anchors, &strides);
    const int64_t a = static_cast<int64_t>(strides.size());
    for (int64_t k = 0; k < c.reg_max; ++k) w.push_back(static_cast<float>(k) + rng.uniform(-0.1f, 0.1f));

    const ir::Node node = decode_node(c, /*head_convs=*/false);
    Tensor at = Tensor::from_floats({1, 2, a}, anchors), st = Tensor::from_floats({1, a}, strides),
           wt = Tensor::from_floats({1, c.reg_max, 1, 1}, w);
    std::vector<const Tensor*> in;
    for (const Tensor& m : maps) in.push_back(&m);
    in.insert(in.end(), {&at, &st, &wt});
    const Tensor want = reference::evaluate(node, in)[0];

    std::vector<std::unique_ptr<LevelBuf>> bufs;
    std::vector<NhwcTensor> views;
    for (const Tensor& m : maps) {
        bufs.push_back(std::make_unique<LevelBuf>(t, m, c.extra, c.offset));
        views.push_back(bufs.back()->view());
    }
    DeviceBuffer da(anchors.size() * 4), ds(strides.size() * 4), dw(w.size() * 4);
    da.upload(anchors.data());
    ds.upload(strides.data());
    dw.upload(w.data());
    OutBuf y(c.n, 4 + c.nc, a, c.extra_rows, c.extra_a, c.transposed_y);
    yolo_decode(views.data(), static_cast<int>(views.size()), static_cast<const float*>(da.get()),
                static_cast<const float*>(ds.get()), static_cast<const float*>(dw.get()), static_cast<int>(c.reg_max),
                static_cast<int>(c.nc), y.view(), nullptr);
    KS_CUDA(cudaGetLastError());
    KS_CUDA(cudaDeviceSynchronize());
    int64_t unwritten = 0, clobbered = 0;
    const Tensor got = y.get(&unwritten, &clobbered);
    EXPECT_EQ(unwritten, 0) << "elements of y not written";
    EXPECT_EQ(clobbered, 0) << "elements outside y overwritten";
    const double err = rel_l2(got, want);
    const double tol = t == ElemType::kF16 ? kTolF16 : kTolF32;
    if (!(err <= tol)) {
        int64_t worst = 0;
        double wd = -1;
        for (int64_t i = 0; i < want.size(); ++i) {
            const double d = std::fabs(static_cast<double>(got.data<float>()[i]) - want.data<float>()[i]);
            if (!(d <= wd)) {
                wd = d;
                worst = i;
            }
        }
        ADD_FAILURE() << "rel L2 " << err << " > " << tol << ", worst at flat index " << worst << " of "
                      << shape_str(want.shape) << ": got " << got.data<float>()[worst] << ", want "
                      << want.data<float>()[worst];
    }
    return err;
}

TEST_F(CudaYoloDecode, MatchesReference) {
    SCOPED_TRACE(rng.trace());
    const std::vector<std::pair<int64_t, int64_t>> yolo = {{80, 80}, {40, 40}, {20, 20}};
    const std::vector<std::pair<int64_t, int64_t>> odd = {{13, 7}, {5, 3}, {1, 1}};
    std::vector<Case> cases;
    for (int64_t n : {1, 3}) {
        cases.push_back({.levels = yolo, .n = n});
        cases.push_back({.levels = odd, .n = n});
        cases.push_back({.levels = odd, .n = n, .nc = 1});
    }
    cases.push_back({.levels = yolo, .n = 1, .nc = 1});
    // Level maps as channel slices: aligned (16-byte copies) and odd (element copies).
    cases.push_back({.levels = odd, .n = 3, .extra = 16, .offset = 8});
    cases.push_back({.levels = odd, .n = 2, .extra = 5, .offset = 3});
    cases.push_back({.levels = odd, .n = 2, .nc = 1, .extra = 7, .offset = 7});
    // y as a window of a wider buffer, and anchor-major.
    cases.push_back({.levels = yolo, .n = 2, .extra_rows = 6, .extra_a = 10});
    cases.push_back({.levels = odd, .n = 3, .nc = 1, .extra_rows = 3, .extra_a = 1});
    cases.push_back({.levels = odd, .n = 2, .transposed_y = true});
    // Another reg_max (the generic DFL path; 16-byte copies or element copies), one level, five.
    cases.push_back({.levels = odd, .n = 2, .nc = 3, .reg_max = 7});
    cases.push_back({.levels = odd, .n = 2, .nc = 16, .reg_max = 8});
    cases.push_back({.levels = {{9, 11}}, .n = 1, .nc = 2, .reg_max = 8, .extra = 8, .offset = 0});
    cases.push_back({.levels = {{16, 16}, {8, 8}, {4, 4}, {2, 2}, {1, 1}}, .n = 2, .nc = 20});
    double worst[2] = {0, 0};
    for (ElemType t : {ElemType::kF32, ElemType::kF16})
        for (const Case& c : cases) {
            const double e = run_case(rng, c, t);
            double& w = worst[t == ElemType::kF16 ? 1 : 0];
            w = std::max(w, std::isnan(e) ? INFINITY : e);
        }
    std::printf("[ YoloDecode ] worst relative L2 error: f32 %.3g, f16 %.3g (%zu cases each)\n", worst[0], worst[1],
                cases.size());
}

// yolo_decode_head (the head's last 1x1 convs inside the decode) against reference::evaluate of a
// YoloDecode node with head_convs = 1: f16 features (YOLOv8n's 64 box and 80 class channels, which
// have their own kernel, and others), weights and features rounded to f16 for the oracle as the
// kernel rounds them, features as 16-byte-aligned slices of wider buffers, batches of 1, 3 and 9.
// Tolerance 1e-3 relative L2, as for f16 level maps (the kernel rounds the logits to f16, as the
// unfused convs do). Also: an image alone equals itself in a batch, bit for bit, and shapes the
// kernel cannot take throw.
struct HeadCase {
    Case c;
    int64_t cb = 64, cc = 80;
};

struct HeadData {
    std::vector<Tensor> box, cls, wb, bb, wc, bc;  // NCHW features, [k, c, 1, 1] weights, biases
    std::vector<float> anchors, strides, dfl;
};

HeadData make_head(test::Rng& rng, const HeadCase& hc) {
    const Case& c = hc.c;
    HeadData d;
    auto f16 = [](float v) { return half_to_float(float_to_half(v)); };
    auto tensor = [&](Shape shape, float lo, float hi) {
        Tensor t(DType::kFloat32, std::move(shape));
        for (int64_t i = 0; i < t.size(); ++i) t.data<float>()[i] = f16(rng.uniform(lo, hi));
        return t;
    };
    for (auto [h, w] : c.levels) {
        // SiLU outputs (>= -0.28) as features; weights scaled so that logits span a few units.
        d.box.push_back(tensor({c.n, hc.cb, h, w}, -0.28f, 3.f));
        d.cls.push_back(tensor({c.n, hc.cc, h, w}, -0.28f, 3.f));
        d.wb.push_back(tensor({4 * c.reg_max, hc.cb, 1, 1}, -0.3f, 0.3f));
        d.bb.push_back(tensor({4 * c.reg_max}, -1.f, 1.f));
        d.wc.push_back(tensor({c.nc, hc.cc, 1, 1}, -0.3f, 0.2f));
        d.bc.push_back(tensor({c.nc}, -4.f, 0.f));
    }
    make_anchors(c, &d.anchors, &d.strides);
    for (int64_t k = 0; k < c.reg_max; ++k) d.dfl.push_back(static_cast<float>(k));
    return d;
}

// The kernel's result for data d (features as slices per hc.c.extra/offset); y poison-checked.
Tensor run_head(const HeadCase& hc, const HeadData& d, int64_t images) {
    const Case& c = hc.c;
    const size_t levels = c.levels.size();
    std::vector<std::unique_ptr<LevelBuf>> bufs;
    std::vector<std::unique_ptr<DeviceBuffer>> consts;
    auto upload = [&](const std::vector<float>& v) {
        consts.push_back(std::make_unique<DeviceBuffer>(v.size() * 4));
        consts.back()->upload(v.data());
        return static_cast<const float*>(consts.back()->get());
    };
    auto first_images = [&](const Tensor& t) {
        Shape s = t.shape;
        s[0] = images;
        Tensor r(DType::kFloat32, s);
        std::copy_n(t.data<float>(), r.size(), r.data<float>());
        return r;
    };
    std::vector<HeadLevel> hl(levels);
    for (size_t l = 0; l < levels; ++l) {
        bufs.push_back(std::make_unique<LevelBuf>(ElemType::kF16, first_images(d.box[l]), c.extra, c.offset));
        hl[l].box = bufs.back()->view();
        bufs.push_back(std::make_unique<LevelBuf>(ElemType::kF16, first_images(d.cls[l]), c.extra, c.offset));
        hl[l].cls = bufs.back()->view();
        const std::vector<uint8_t> packed = pack_yolo_decode_head(
            d.wb[l].data<float>(), d.bb[l].data<float>(), d.wc[l].data<float>(), d.bc[l].data<float>(),
            static_cast<int>(hc.cb), static_cast<int>(hc.cc), static_cast<int>(c.reg_max), static_cast<int>(c.nc));
        consts.push_back(std::make_unique<DeviceBuffer>(packed.size()));
        consts.back()->upload(packed.data());
        hl[l].weights = consts.back()->get();
    }
    const int64_t a = static_cast<int64_t>(d.strides.size());
    OutBuf y(images, 4 + c.nc, a, c.extra_rows, c.extra_a, c.transposed_y);
    yolo_decode_head(hl.data(), static_cast<int>(levels), upload(d.anchors), upload(d.strides), upload(d.dfl),
                     static_cast<int>(c.reg_max), static_cast<int>(c.nc), y.view(), nullptr);
    KS_CUDA(cudaGetLastError());
    KS_CUDA(cudaDeviceSynchronize());
    int64_t unwritten = 0, clobbered = 0;
    Tensor got = y.get(&unwritten, &clobbered);
    EXPECT_EQ(unwritten, 0) << "elements of y not written";
    EXPECT_EQ(clobbered, 0) << "elements outside y overwritten";
    return got;
}

TEST_F(CudaYoloDecode, HeadConvsMatchReference) {
    SCOPED_TRACE(rng.trace());
    const std::vector<std::pair<int64_t, int64_t>> yolo = {{80, 80}, {40, 40}, {20, 20}};
    const std::vector<std::pair<int64_t, int64_t>> odd = {{13, 7}, {5, 3}, {1, 1}};
    std::vector<HeadCase> cases = {
        {{.levels = yolo, .n = 1}},
        {{.levels = yolo, .n = 3, .extra = 16, .offset = 8}},              // features as slices
        {{.levels = odd, .n = 9, .extra_rows = 3, .extra_a = 5}},          // y a window
        {{.levels = odd, .n = 2, .nc = 1, .transposed_y = true}, 32, 24},  // k padding (24 -> 32), nc 1
        {{.levels = odd, .n = 2, .nc = 20, .reg_max = 7}, 8, 40},          // reg_max 7: 28 box logits
        {{.levels = odd, .n = 2, .nc = 20, .reg_max = 7}, 64, 80},         // partial blocks, 64/80 kernel
    };
    double worst = 0;
    for (const HeadCase& hc : cases) {
        const Case& c = hc.c;
        SCOPED_TRACE(describe(c, ElemType::kF16) + " cb=" + std::to_string(hc.cb) + " cc=" + std::to_string(hc.cc));
        const HeadData d = make_head(rng, hc);
        const ir::Node node = decode_node(c, /*head_convs=*/true);
        const int64_t a = static_cast<int64_t>(d.strides.size());
        Tensor at = Tensor::from_floats({1, 2, a}, d.anchors), st = Tensor::from_floats({1, a}, d.strides),
               wt = Tensor::from_floats({1, c.reg_max, 1, 1}, d.dfl);
        std::vector<const Tensor*> in;
        for (size_t l = 0; l < c.levels.size(); ++l) in.insert(in.end(), {&d.box[l], &d.cls[l]});
        for (size_t l = 0; l < c.levels.size(); ++l) in.insert(in.end(), {&d.wb[l], &d.bb[l], &d.wc[l], &d.bc[l]});
        in.insert(in.end(), {&at, &st, &wt});
        const Tensor want = reference::evaluate(node, in)[0];
        const Tensor got = run_head(hc, d, c.n);
        const double err = rel_l2(got, want);
        EXPECT_LE(err, kTolF16);
        worst = std::max(worst, std::isnan(err) ? INFINITY : err);
        if (c.n > 1) {
            // Image 0 alone: the same bits as in the batch.
            const Tensor one = run_head(hc, d, 1);
            const int64_t per = one.size();
            EXPECT_EQ(std::memcmp(one.data<float>(), got.data<float>(), idx(per) * 4), 0)
                << "image 0 alone differs from image 0 in a batch of " << c.n;
        }
    }
    std::printf("[ YoloDecode ] head convs: worst relative L2 error %.3g (%zu cases)\n", worst, cases.size());

    // Shapes the kernel cannot take: channels not a multiple of 8, f32 features.
    const HeadCase bad{{.levels = {{2, 2}}, .n = 1}};
    const HeadData d = make_head(rng, bad);
    LevelBuf box(ElemType::kF16, d.box[0], 0, 0), cls(ElemType::kF16, d.cls[0], 0, 0),
        box32(ElemType::kF32, d.box[0], 0, 0);
    DeviceBuffer dummy(1 << 16);
    const float* p = static_cast<const float*>(dummy.get());
    HeadLevel hl{box.view(), cls.view(), p};
    OutBuf y(1, 84, 4, 0, 0, false);
    HeadLevel odd_c = hl;
    odd_c.box.c = 60;
    HeadLevel f32 = hl;
    f32.box = box32.view();
    EXPECT_THROW(yolo_decode_head(&odd_c, 1, p, p, p, 16, 80, y.view(), nullptr), Error);
    EXPECT_THROW(yolo_decode_head(&f32, 1, p, p, p, 16, 80, y.view(), nullptr), Error);
    EXPECT_THROW(yolo_decode_head(&hl, 0, p, p, p, 16, 80, y.view(), nullptr), Error);
    HeadLevel unpacked = hl;
    unpacked.weights = nullptr;
    EXPECT_THROW(yolo_decode_head(&unpacked, 1, p, p, p, 16, 80, y.view(), nullptr), Error);
}

// An image's result does not depend on the batch it runs in (engines replay one plan at any batch):
// image 0 of a batch of 3 equals image 0 alone, bit for bit.
TEST_F(CudaYoloDecode, ImageResultIndependentOfBatch) {
    SCOPED_TRACE(rng.trace());
    const std::vector<std::pair<int64_t, int64_t>> yolo = {{80, 80}, {40, 40}, {20, 20}};
    std::vector<float> anchors, strides, w;
    make_anchors({.levels = yolo}, &anchors, &strides);
    for (int k = 0; k < 16; ++k) w.push_back(static_cast<float>(k));
    DeviceBuffer da(anchors.size() * 4), ds(strides.size() * 4), dw(w.size() * 4);
    da.upload(anchors.data());
    ds.upload(strides.data());
    dw.upload(w.data());
    const int64_t a = static_cast<int64_t>(strides.size());
    for (ElemType t : {ElemType::kF32, ElemType::kF16}) {
        SCOPED_TRACE(type_name(t));
        std::vector<std::unique_ptr<LevelBuf>> bufs;
        std::vector<NhwcTensor> views;
        for (auto [h, wd] : yolo) {
            bufs.push_back(std::make_unique<LevelBuf>(
                t, Tensor::from_floats({3, 144, h, wd}, rng.uniform_floats(idx(3 * 144 * h * wd), -6.f, 6.f)), 0, 0));
            views.push_back(bufs.back()->view());
        }
        std::vector<Tensor> image0;
        for (int n : {3, 1}) {
            for (NhwcTensor& v : views) v.n = n;
            OutBuf y(n, 84, a, 0, 0, false);
            yolo_decode(views.data(), 3, static_cast<const float*>(da.get()), static_cast<const float*>(ds.get()),
                        static_cast<const float*>(dw.get()), 16, 80, y.view(), nullptr);
            KS_CUDA(cudaDeviceSynchronize());
            int64_t unwritten = 0, clobbered = 0;
            Tensor out = y.get(&unwritten, &clobbered);
            EXPECT_EQ(unwritten + clobbered, 0);
            out.shape[0] = 1;
            out.bytes.resize(idx(84 * a) * 4);
            image0.push_back(std::move(out));
        }
        EXPECT_EQ(image0[0].bytes, image0[1].bytes);
    }
}

TEST_F(CudaYoloDecode, BadShapesAreRejected) {
    const int64_t a = 4 * 4;
    DeviceBuffer x(a * 144 * 4), f(a * 2 * 4 + 64), y(a * 84 * 4);
    KS_CUDA(cudaMemset(x.get(), 0, a * 144 * 4));
    KS_CUDA(cudaMemset(f.get(), 0, a * 2 * 4 + 64));
    NhwcTensor level;
    level.data = x.get();
    level.type = ElemType::kF32;
    level.n = 1;
    level.h = 4;
    level.w = 4;
    level.c = 144;
    level.pixel_stride = 144;
    StridedTensor out;
    out.data = static_cast<float*>(y.get());
    out.rank = 3;
    out.shape[0] = 1;
    out.shape[1] = 84;
    out.shape[2] = a;
    out.stride[0] = 84 * a;
    out.stride[1] = a;
    out.stride[2] = 1;
    const float* p = static_cast<const float*>(f.get());
    EXPECT_NO_THROW(yolo_decode(&level, 1, p, p, p, 16, 80, out, nullptr));
    StridedTensor wrong = out;
    wrong.shape[2] = a + 1;
    EXPECT_THROW(yolo_decode(&level, 1, p, p, p, 16, 80, wrong, nullptr), Error);
    EXPECT_THROW(yolo_decode(&level, 1, p, p, p, 16, 79, out, nullptr), Error);  // 4 R + nc != channels
    EXPECT_THROW(yolo_decode(&level, 0, p, p, p, 16, 80, out, nullptr), Error);
    KS_CUDA(cudaDeviceSynchronize());
}

}  // namespace
}  // namespace kestrel::cuda
