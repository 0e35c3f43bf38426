// Test helpers: build small IR graphs by hand, run them on the CPU backend (the whole build path:
// fold/infer, optional pass pipeline, planner, session) and on the reference, and compare results.
//
//   test::Rng rng;
//   test::GraphBuilder b(rng);
//   int x = b.input({1, 16, 8, 8});
//   int y = b.conv(x, 16, 32, {.k = 3, .pad = 1});
//   b.output(y);
//   auto in = test::random_inputs(b.graph(), rng);
//   EXPECT_TRUE(test::all_close(test::run_cpu(b.graph(), in), test::run_reference(b.graph(), in), 1e-5));
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "common/rng.h"
#include "ir/graph.h"
#include "ir/verifier.h"
#include "passes/passes.h"
#include "passes/pipeline.h"
#include "plan/execution_plan.h"
#include "reference/reference.h"
#include "runtime/session.h"

namespace kestrel::test {

using Ints = std::vector<int64_t>;
using AttrList = std::vector<std::pair<std::string, ir::Attribute>>;

struct ConvSpec {
    int64_t k = 3;
    int64_t stride = 1;
    int64_t pad = 0;
    int64_t group = 1;
    bool bias = true;
    std::string activation = "";  // or "silu": the fused epilogue the passes produce
    int residual = -1;            // value added after the activation (4th input), or -1
};

class GraphBuilder {
   public:
    explicit GraphBuilder(Rng& rng) : rng_(rng) {}

    // A float32 graph input of a static shape.
    int input(Shape shape, std::string name = "") {
        ir::Value v;
        v.name = name.empty() ? "input" + std::to_string(g_.inputs.size()) : std::move(name);
        v.shape = std::move(shape);
        v.shape_known = true;
        int id = g_.add_value(std::move(v));
        g_.inputs.push_back(id);
        return id;
    }

    int constant(ir::Tensor t, std::string name = "") {
        return g_.add_constant(fresh(std::move(name), "const"), std::move(t));
    }
    // Uniform random float weights; the default range keeps conv sums of ~100 terms O(1).
    int random_constant(Shape s, float lo = -0.5f, float hi = 0.5f, std::string name = "") {
        size_t n = static_cast<size_t>(num_elements(s));
        return constant(ir::Tensor::from_floats(std::move(s), rng_.uniform_floats(n, lo, hi)), std::move(name));
    }
    int floats(Shape s, const std::vector<float>& v, std::string name = "") {
        return constant(ir::Tensor::from_floats(std::move(s), v), std::move(name));
    }
    // A 1-D int64 constant: the shape-describing inputs of Reshape, Split, Slice.
    int ints(const Ints& v, std::string name = "") {
        return constant(ir::Tensor::from_int64s({static_cast<int64_t>(v.size())}, v), std::move(name));
    }

    // A node with `num_outputs` fresh outputs (shapes left to inference); returns their ids.
    std::vector<int> node_n(ir::Op op, std::vector<int> inputs, size_t num_outputs, const AttrList& attrs = {},
                            std::string name = "") {
        ir::Node n;
        n.op = op;
        n.name = fresh(std::move(name), std::string(ir::op_name(op)));
        n.inputs = std::move(inputs);
        for (const auto& [k, v] : attrs) n.attrs.set(k, v);
        for (size_t i = 0; i < num_outputs; ++i) {
            ir::Value v;
            v.name = n.name + ":" + std::to_string(i);
            n.outputs.push_back(g_.add_value(std::move(v)));
        }
        g_.nodes.push_back(std::move(n));
        return g_.nodes.back().outputs;
    }
    int node(ir::Op op, std::vector<int> inputs, const AttrList& attrs = {}, std::string name = "") {
        return node_n(op, std::move(inputs), 1, attrs, std::move(name))[0];
    }

    // Conv with random OIHW weights and bias; symmetric padding. Weights are uniform in
    // +-sqrt(3 / fan_in) (unit gain), so activations stay O(1) through chains of convs and a relative
    // tolerance measures kernel error rather than the conditioning of ever larger values.
    int conv(int x, int64_t ic, int64_t oc, const ConvSpec& s, std::string name = "") {
        float bound = std::sqrt(3.f / static_cast<float>(ic / s.group * s.k * s.k));
        int w = random_constant({oc, ic / s.group, s.k, s.k}, -bound, bound);
        std::vector<int> in = {x, w};
        if (s.bias || s.residual >= 0) in.push_back(s.bias ? random_constant({oc}) : -1);
        if (s.residual >= 0) in.push_back(s.residual);
        AttrList a = {{"kernel_shape", Ints{s.k, s.k}},
                      {"strides", Ints{s.stride, s.stride}},
                      {"pads", Ints{s.pad, s.pad, s.pad, s.pad}},
                      {"group", s.group}};
        if (!s.activation.empty()) a.emplace_back("activation", s.activation);
        return node(ir::Op::kConv, std::move(in), a, std::move(name));
    }

    // A graph input followed by a 1x1 conv from 3 channels: a value of shape `s` (s[1] % 8 == 0)
    // that the planner lays out nChw8c, for testing ops on blocked tensors. It starts from 3
    // channels because a conv from a plain tensor of >= 8 channels to a blocked output has no
    // optimised oneDNN implementation on AVX2 (the planner still picks it; see ops_test's plain rows).
    int blocked_input(const Shape& s) {
        KS_CHECK(s.size() == 4 && s[0] == 1 && s[1] % 8 == 0, "blocked_input: want [1, 8k, H, W]");
        return conv(input({1, 3, s[2], s[3]}), 3, s[1], {.k = 1});
    }

    void output(int v) { g_.outputs.push_back(v); }

    ir::Graph& graph() { return g_; }

   private:
    std::string fresh(std::string name, const std::string& prefix) {
        return name.empty() ? prefix + "_" + std::to_string(counter_++) : name;
    }

    Rng& rng_;
    ir::Graph g_;
    int counter_ = 0;
};

// One random tensor per graph input, in graph input order.
inline std::vector<ir::Tensor> random_inputs(const ir::Graph& g, Rng& rng, float lo = -1.f, float hi = 1.f) {
    std::vector<ir::Tensor> r;
    for (int in : g.inputs) {
        const Shape& s = g.value(in).shape;
        r.push_back(ir::Tensor::from_floats(s, rng.uniform_floats(static_cast<size_t>(num_elements(s)), lo, hi)));
    }
    return r;
}

// Canonicalises a graph the way every build starts: fold_constants infers all shapes and turns
// shape inputs into attributes (the reference and the planner need that form). With `optimize`, the
// full pass pipeline runs after it.
inline ir::Graph prepare(ir::Graph g, bool optimize = false) {
    passes::fold_constants(g);
    g.compact();
    if (optimize) passes::run_pipeline(g);
    ir::verify(g);
    return g;
}

// The plain oracle on the canonicalised graph.
inline std::vector<ir::Tensor> run_reference(ir::Graph g, const std::vector<ir::Tensor>& inputs) {
    return reference::run_graph(prepare(std::move(g)), inputs);
}

// The CPU backend end to end at batch 1: prepare, plan::build, Session::run. The session takes one
// input (the image), so graphs run here have exactly one input.
inline std::vector<ir::Tensor> run_cpu(ir::Graph g, const std::vector<ir::Tensor>& inputs, bool optimize = false) {
    auto plan = std::make_shared<const plan::ExecutionPlan>(plan::build(prepare(std::move(g), optimize)));
    KS_CHECK(plan->graph.inputs.size() == 1 && inputs.size() == 1, "run_cpu: the session runs one-input graphs");
    runtime::Session session(plan);
    std::vector<ir::Tensor> outs;
    std::vector<float*> ptrs;
    for (int o : plan->graph.outputs) outs.emplace_back(DType::kFloat32, plan->graph.value(o).shape);
    for (ir::Tensor& t : outs) ptrs.push_back(t.data<float>());
    session.run(inputs[0].data<float>(), 1, ptrs);
    return outs;
}

// ||got - want||_2 / ||want||_2 (relative L2 error); the tiny floor keeps an all-zero reference finite.
inline double rel_l2(const ir::Tensor& got, const ir::Tensor& want) {
    double num = 0, den = 0;
    int64_t n = std::min(got.size(), want.size());
    for (int64_t i = 0; i < n; ++i) {
        double d = static_cast<double>(got.data<float>()[i]) - want.data<float>()[i];
        num += d * d;
        den += static_cast<double>(want.data<float>()[i]) * want.data<float>()[i];
    }
    return std::sqrt(num / std::max(den, 1e-30));
}

// Normalised mean squared error: sum (got - want)^2 / sum want^2, i.e. rel_l2 squared.
inline double nmse(const ir::Tensor& got, const ir::Tensor& want) {
    double r = rel_l2(got, want);
    return r * r;
}

inline double max_abs_diff(const ir::Tensor& got, const ir::Tensor& want) {
    double m = 0;
    int64_t n = std::min(got.size(), want.size());
    for (int64_t i = 0; i < n; ++i) {
        double d = std::fabs(static_cast<double>(got.data<float>()[i]) - want.data<float>()[i]);
        if (std::isnan(d)) return d;
        m = std::max(m, d);
    }
    return m;
}

// Same shape and rel_l2 <= tol, reporting both error measures and the worst element on failure.
inline ::testing::AssertionResult close(const ir::Tensor& got, const ir::Tensor& want, double tol) {
    if (got.shape != want.shape)
        return ::testing::AssertionFailure()
               << "shape " << shape_str(got.shape) << ", expected " << shape_str(want.shape);
    double r = rel_l2(got, want);
    if (r <= tol) return ::testing::AssertionSuccess();
    int64_t worst = 0;
    double wd = -1;
    for (int64_t i = 0; i < got.size(); ++i) {
        double d = std::fabs(static_cast<double>(got.data<float>()[i]) - want.data<float>()[i]);
        if (!(d <= wd)) {
            wd = d;
            worst = i;
            if (std::isnan(d)) break;
        }
    }
    return ::testing::AssertionFailure() << "rel L2 " << r << " > tol " << tol << ", max abs diff "
                                         << max_abs_diff(got, want) << " at flat index " << worst << " (got "
                                         << got.data<float>()[worst] << ", want " << want.data<float>()[worst]
                                         << "), shape " << shape_str(want.shape);
}

inline ::testing::AssertionResult all_close(const std::vector<ir::Tensor>& got, const std::vector<ir::Tensor>& want,
                                            double tol) {
    if (got.size() != want.size())
        return ::testing::AssertionFailure() << got.size() << " outputs, expected " << want.size();
    for (size_t i = 0; i < got.size(); ++i)
        if (auto r = close(got[i], want[i], tol); !r)
            return ::testing::AssertionFailure() << "output " << i << ": " << r.message();
    return ::testing::AssertionSuccess();
}

// Live nodes' ops in order, for structural checks after a pass.
inline std::vector<ir::Op> live_ops(const ir::Graph& g) {
    std::vector<ir::Op> ops;
    for (const ir::Node& n : g.nodes)
        if (!n.removed) ops.push_back(n.op);
    return ops;
}

}  // namespace kestrel::test
