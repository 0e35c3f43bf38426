#include "ir/graph.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

namespace kestrel::ir {

namespace {
struct OpInfo {
    std::string_view name;
    OpCategory category;
};
constexpr OpInfo kOps[] = {
#define X(name, category) {#name, OpCategory::category},
#include "ir/ops.def"
#undef X
};
}  // namespace

std::string_view op_name(Op op) { return kOps[static_cast<size_t>(op)].name; }
OpCategory op_category(Op op) { return kOps[static_cast<size_t>(op)].category; }

bool op_from_name(std::string_view name, Op* op) {
    for (size_t i = 0; i < std::size(kOps); ++i) {
        if (kOps[i].name == name) {
            *op = static_cast<Op>(i);
            return true;
        }
    }
    return false;
}

Tensor Tensor::from_floats(Shape s, const std::vector<float>& v) {
    Tensor t(DType::kFloat32, std::move(s));
    KS_CHECK(static_cast<int64_t>(v.size()) == t.size(), "tensor data size mismatch");
    if (!v.empty()) std::memcpy(t.bytes.data(), v.data(), v.size() * sizeof(float));
    return t;
}

Tensor Tensor::from_int64s(Shape s, const std::vector<int64_t>& v) {
    Tensor t(DType::kInt64, std::move(s));
    KS_CHECK(static_cast<int64_t>(v.size()) == t.size(), "tensor data size mismatch");
    if (!v.empty()) std::memcpy(t.bytes.data(), v.data(), v.size() * sizeof(int64_t));
    return t;
}

std::vector<int64_t> Tensor::to_int64s() const {
    std::vector<int64_t> out(static_cast<size_t>(size()));
    for (size_t i = 0; i < out.size(); ++i) {
        switch (dtype) {
            case DType::kInt64: out[i] = data<int64_t>()[i]; break;
            case DType::kInt32: out[i] = data<int32_t>()[i]; break;
            case DType::kFloat32: out[i] = static_cast<int64_t>(data<float>()[i]); break;
            case DType::kBool:
            case DType::kUInt8: out[i] = data<uint8_t>()[i]; break;
            case DType::kInt8: out[i] = data<int8_t>()[i]; break;
            case DType::kFloat16: KS_FAIL("float16 constant used as an integer tensor");
        }
    }
    return out;
}

std::vector<float> Tensor::to_floats() const {
    std::vector<float> out(static_cast<size_t>(size()));
    for (size_t i = 0; i < out.size(); ++i) {
        switch (dtype) {
            case DType::kFloat32: out[i] = data<float>()[i]; break;
            case DType::kInt64: out[i] = static_cast<float>(data<int64_t>()[i]); break;
            case DType::kInt32: out[i] = static_cast<float>(data<int32_t>()[i]); break;
            case DType::kBool:
            case DType::kUInt8: out[i] = data<uint8_t>()[i]; break;
            case DType::kInt8: out[i] = data<int8_t>()[i]; break;
            case DType::kFloat16: KS_FAIL("float16 constants are not supported");
        }
    }
    return out;
}

int64_t Attributes::get_int(const std::string& name, int64_t fallback) const {
    auto it = map_.find(name);
    if (it == map_.end()) return fallback;
    if (auto* v = std::get_if<int64_t>(&it->second)) return *v;
    KS_FAIL("attribute '", name, "' is not an integer");
}

float Attributes::get_float(const std::string& name, float fallback) const {
    auto it = map_.find(name);
    if (it == map_.end()) return fallback;
    if (auto* v = std::get_if<float>(&it->second)) return *v;
    if (auto* v = std::get_if<int64_t>(&it->second)) return static_cast<float>(*v);
    KS_FAIL("attribute '", name, "' is not a float");
}

std::string Attributes::get_string(const std::string& name, const std::string& fallback) const {
    auto it = map_.find(name);
    if (it == map_.end()) return fallback;
    if (auto* v = std::get_if<std::string>(&it->second)) return *v;
    KS_FAIL("attribute '", name, "' is not a string");
}

std::vector<int64_t> Attributes::get_ints(const std::string& name, const std::vector<int64_t>& fallback) const {
    auto it = map_.find(name);
    if (it == map_.end()) return fallback;
    if (auto* v = std::get_if<std::vector<int64_t>>(&it->second)) return *v;
    if (auto* v = std::get_if<int64_t>(&it->second)) return {*v};
    KS_FAIL("attribute '", name, "' is not a list of integers");
}

int Graph::add_value(Value v) {
    values.push_back(std::move(v));
    return static_cast<int>(values.size()) - 1;
}

int Graph::add_constant(const std::string& name, Tensor t) {
    Value v;
    v.name = name;
    v.dtype = t.dtype;
    v.shape = t.shape;
    v.shape_known = true;
    v.constant = std::make_shared<const Tensor>(std::move(t));
    return add_value(std::move(v));
}

int Graph::find_value(const std::string& name) const {
    for (size_t i = 0; i < values.size(); ++i)
        if (values[i].name == name) return static_cast<int>(i);
    return -1;
}

bool Graph::is_graph_output(int id) const { return std::find(outputs.begin(), outputs.end(), id) != outputs.end(); }

std::vector<std::vector<int>> Graph::consumers() const {
    std::vector<std::vector<int>> result(values.size());
    for (size_t n = 0; n < nodes.size(); ++n) {
        if (nodes[n].removed) continue;
        for (int in : nodes[n].inputs)
            if (in >= 0) result[static_cast<size_t>(in)].push_back(static_cast<int>(n));
    }
    return result;
}

std::vector<int> Graph::producers() const {
    std::vector<int> result(values.size(), -1);
    for (size_t n = 0; n < nodes.size(); ++n) {
        if (nodes[n].removed) continue;
        for (int out : nodes[n].outputs) result[static_cast<size_t>(out)] = static_cast<int>(n);
    }
    return result;
}

void Graph::compact() {
    std::erase_if(nodes, [](const Node& n) { return n.removed; });
}

void Graph::replace_uses(int from, int to) {
    for (Node& n : nodes) {
        if (n.removed) continue;
        for (int& in : n.inputs)
            if (in == from) in = to;
    }
    for (int& out : outputs)
        if (out == from) out = to;
}

size_t Graph::live_node_count() const {
    return static_cast<size_t>(std::count_if(nodes.begin(), nodes.end(), [](const Node& n) { return !n.removed; }));
}

}  // namespace kestrel::ir
