// The IR: a graph of Values (tensors with a shape, dtype and optional constant data) and Nodes
// (operators in topological order). Nodes refer to values by index; index -1 is an omitted optional
// input. Passes rewrite nodes in place and mark removed ones; compact() drops them.
//
//   Graph g = onnx::import_model("yolov8n.onnx", {.batch = 1});
//   passes::run_pipeline(g, {});      // fold, fuse, eliminate
//   ir::verify(g);                    // every pass leaves a valid graph
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "core/dtype.h"
#include "core/shape.h"

namespace kestrel::ir {

enum class Op : uint8_t {
#define X(name, category) k##name,
#include "ir/ops.def"
#undef X
};
enum class OpCategory : uint8_t { kCompute, kShape };

std::string_view op_name(Op op);
OpCategory op_category(Op op);
// Returns false when `name` is not an IR op.
bool op_from_name(std::string_view name, Op* op);

// Dense constant data in row-major order.
struct Tensor {
    DType dtype = DType::kFloat32;
    Shape shape;
    std::vector<uint8_t> bytes;

    Tensor() = default;
    Tensor(DType t, Shape s) : dtype(t), shape(std::move(s)), bytes(num_elements(shape) * dtype_size(t)) {}
    static Tensor from_floats(Shape s, const std::vector<float>& v);
    static Tensor from_int64s(Shape s, const std::vector<int64_t>& v);

    int64_t size() const { return num_elements(shape); }
    template <typename T>
    T* data() {
        return reinterpret_cast<T*>(bytes.data());
    }
    template <typename T>
    const T* data() const {
        return reinterpret_cast<const T*>(bytes.data());
    }
    // Integer contents (int64, int32 or float truncated), for shape-like inputs.
    std::vector<int64_t> to_int64s() const;
    std::vector<float> to_floats() const;
};

using Attribute = std::variant<int64_t, float, std::string, std::vector<int64_t>, std::vector<float>>;

class Attributes {
   public:
    void set(const std::string& name, Attribute value) { map_[name] = std::move(value); }
    bool has(const std::string& name) const { return map_.count(name) != 0; }
    void erase(const std::string& name) { map_.erase(name); }
    int64_t get_int(const std::string& name, int64_t fallback) const;
    float get_float(const std::string& name, float fallback) const;
    std::string get_string(const std::string& name, const std::string& fallback) const;
    std::vector<int64_t> get_ints(const std::string& name, const std::vector<int64_t>& fallback = {}) const;
    const std::map<std::string, Attribute>& all() const { return map_; }

   private:
    std::map<std::string, Attribute> map_;
};

struct Value {
    std::string name;
    DType dtype = DType::kFloat32;
    Shape shape;
    bool shape_known = false;
    std::shared_ptr<const Tensor> constant;  // set for initializers and folded values
};

struct Node {
    Op op{};
    std::string name;
    std::vector<int> inputs;  // -1: omitted optional input
    std::vector<int> outputs;
    Attributes attrs;
    bool removed = false;

    int input(size_t i) const { return i < inputs.size() ? inputs[i] : -1; }
};

class Graph {
   public:
    std::vector<Value> values;
    std::vector<Node> nodes;
    std::vector<int> inputs;
    std::vector<int> outputs;
    std::map<std::string, std::string> metadata;  // Ultralytics' metadata_props

    int add_value(Value v);
    int add_constant(const std::string& name, Tensor t);
    int find_value(const std::string& name) const;  // -1 when absent

    const Value& value(int id) const { return values.at(static_cast<size_t>(id)); }
    Value& value(int id) { return values.at(static_cast<size_t>(id)); }
    bool is_constant(int id) const { return id >= 0 && values[static_cast<size_t>(id)].constant != nullptr; }
    bool is_graph_output(int id) const;

    // For each value, the indices of live nodes that read it.
    std::vector<std::vector<int>> consumers() const;
    // For each value, the index of the live node that writes it, or -1.
    std::vector<int> producers() const;
    // Drops removed nodes and renumbers nothing else (value ids stay stable).
    void compact();
    // Makes every reader of `from` (nodes and graph outputs) read `to` instead.
    void replace_uses(int from, int to);
    size_t live_node_count() const;
};

}  // namespace kestrel::ir
