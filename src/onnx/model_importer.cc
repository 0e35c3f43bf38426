#include "onnx/model_importer.h"

#include <google/protobuf/io/coded_stream.h>
#include <onnx/onnx_pb.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/error.h"

namespace kestrel::onnx {

namespace {

using ir::Graph;
using ir::Node;
using ir::Op;
using ir::Tensor;

// ONNX TensorProto.DataType -> IR dtype.
DType convert_dtype(int t, const std::string& name) {
    switch (t) {
        case ::onnx::TensorProto::FLOAT: return DType::kFloat32;
        case ::onnx::TensorProto::INT64: return DType::kInt64;
        case ::onnx::TensorProto::INT32: return DType::kInt32;
        case ::onnx::TensorProto::INT8: return DType::kInt8;
        case ::onnx::TensorProto::UINT8: return DType::kUInt8;
        case ::onnx::TensorProto::BOOL: return DType::kBool;
        default: KS_FAIL("tensor '", name, "' has data type ", t, ", which Kestrel does not support");
    }
}

Tensor convert_tensor(const ::onnx::TensorProto& tp) {
    KS_CHECK(tp.data_location() != ::onnx::TensorProto::EXTERNAL,
             "tensor '", tp.name(), "' uses external data, which Kestrel does not support");
    Shape shape(tp.dims().begin(), tp.dims().end());
    Tensor t(convert_dtype(tp.data_type(), tp.name()), shape);
    size_t n = static_cast<size_t>(t.size());
    if (!tp.raw_data().empty()) {
        KS_CHECK(tp.raw_data().size() == t.bytes.size(), "tensor '", tp.name(), "' has ", tp.raw_data().size(),
                 " bytes of data, expected ", t.bytes.size());
        std::memcpy(t.bytes.data(), tp.raw_data().data(), t.bytes.size());
        return t;
    }
    auto check = [&](int have) {
        KS_CHECK(static_cast<size_t>(have) == n, "tensor '", tp.name(), "' has ", have, " values, expected ", n);
    };
    switch (t.dtype) {
        case DType::kFloat32:
            check(tp.float_data_size());
            for (size_t i = 0; i < n; ++i) t.data<float>()[i] = tp.float_data(static_cast<int>(i));
            break;
        case DType::kInt64:
            check(tp.int64_data_size());
            for (size_t i = 0; i < n; ++i) t.data<int64_t>()[i] = tp.int64_data(static_cast<int>(i));
            break;
        case DType::kInt32:
            check(tp.int32_data_size());
            for (size_t i = 0; i < n; ++i) t.data<int32_t>()[i] = tp.int32_data(static_cast<int>(i));
            break;
        case DType::kInt8:
        case DType::kUInt8:
        case DType::kBool:
            check(tp.int32_data_size());
            for (size_t i = 0; i < n; ++i) t.data<uint8_t>()[i] = static_cast<uint8_t>(tp.int32_data(static_cast<int>(i)));
            break;
        case DType::kFloat16: KS_FAIL("float16 initializers are not supported");
    }
    return t;
}

ir::Attributes convert_attributes(const ::onnx::NodeProto& np) {
    ir::Attributes attrs;
    for (const auto& a : np.attribute()) {
        switch (a.type()) {
            case ::onnx::AttributeProto::INT: attrs.set(a.name(), static_cast<int64_t>(a.i())); break;
            case ::onnx::AttributeProto::FLOAT: attrs.set(a.name(), a.f()); break;
            case ::onnx::AttributeProto::STRING: attrs.set(a.name(), a.s()); break;
            case ::onnx::AttributeProto::INTS:
                attrs.set(a.name(), std::vector<int64_t>(a.ints().begin(), a.ints().end()));
                break;
            case ::onnx::AttributeProto::FLOATS:
                attrs.set(a.name(), std::vector<float>(a.floats().begin(), a.floats().end()));
                break;
            case ::onnx::AttributeProto::TENSOR:
                // Only ConstantOfShape's `value` reaches here (Constant is handled by the caller).
                if (np.op_type() == "ConstantOfShape" && a.name() == "value") {
                    Tensor t = convert_tensor(a.t());
                    KS_CHECK(t.size() == 1, "ConstantOfShape value must have one element");
                    attrs.set("value", t.to_floats()[0]);
                    attrs.set("value_type", std::string(t.dtype == DType::kFloat32 ? "float32" : "int64"));
                    break;
                }
                [[fallthrough]];
            default:
                KS_FAIL("node '", np.name(), "' (", np.op_type(), "): attribute '", a.name(),
                        "' has a type Kestrel does not support");
        }
    }
    return attrs;
}

Tensor constant_node_value(const ::onnx::NodeProto& np) {
    KS_CHECK(np.attribute_size() == 1, "Constant node '", np.name(), "' must have exactly one attribute");
    const auto& a = np.attribute(0);
    if (a.name() == "value") return convert_tensor(a.t());
    if (a.name() == "value_float") return Tensor::from_floats({}, {a.f()});
    if (a.name() == "value_floats") return Tensor::from_floats({a.floats_size()}, {a.floats().begin(), a.floats().end()});
    if (a.name() == "value_int") return Tensor::from_int64s({}, {a.i()});
    if (a.name() == "value_ints") return Tensor::from_int64s({a.ints_size()}, {a.ints().begin(), a.ints().end()});
    KS_FAIL("Constant node '", np.name(), "': attribute '", a.name(), "' is not supported");
}

// Ops whose ONNX semantics depend on the opset in a way the IR resolves later.
bool needs_opset(Op op) {
    return op == Op::kSlice || op == Op::kSoftmax || op == Op::kSqueeze || op == Op::kUnsqueeze;
}

Graph convert_model(const ::onnx::ModelProto& model, const std::string& what, const ImportOptions& options) {
    int opset = -1;
    for (const auto& os : model.opset_import())
        if (os.domain().empty() || os.domain() == "ai.onnx") opset = static_cast<int>(os.version());
    KS_CHECK(opset >= 0, what, ": the model declares no ONNX opset");
    KS_CHECK(opset >= kMinOpset && opset <= kMaxOpset, what, ": opset ", opset, " is not supported (Kestrel supports opsets ",
             kMinOpset, "-", kMaxOpset, ")");
    const auto& gp = model.graph();
    KS_CHECK(gp.node_size() > 0, what, ": the model graph has no nodes");

    Graph g;
    for (const auto& p : model.metadata_props()) g.metadata[p.key()] = p.value();
    g.metadata["opset"] = std::to_string(opset);
    std::map<std::string, int> ids;

    for (const auto& init : gp.initializer()) ids[init.name()] = g.add_constant(init.name(), convert_tensor(init));

    for (const auto& in : gp.input()) {
        if (ids.count(in.name())) continue;  // initializers may be listed as inputs (IR version < 4)
        const auto& tt = in.type().tensor_type();
        KS_CHECK(in.type().has_tensor_type(), what, ": input '", in.name(), "' is not a tensor");
        ir::Value v;
        v.name = in.name();
        v.dtype = convert_dtype(tt.elem_type(), in.name());
        KS_CHECK(v.dtype == DType::kFloat32, what, ": input '", in.name(), "' must be float32");
        const auto& dims = tt.shape().dim();
        KS_CHECK(dims.size() == 4, what, ": input '", in.name(), "' must be 4-D (N, C, H, W), has rank ", dims.size());
        for (int i = 0; i < dims.size(); ++i) {
            const auto& d = dims[i];
            bool symbolic = !d.has_dim_value() || d.dim_value() <= 0;
            int64_t size = d.dim_value();
            if (i == 0 && symbolic) {
                size = options.batch;
                g.metadata["dynamic_batch"] = "True";
            } else if (i >= 2 && (symbolic || options.imgsz[static_cast<size_t>(i - 2)] > 0)) {
                int64_t want = options.imgsz[static_cast<size_t>(i - 2)];
                KS_CHECK(want > 0, what, ": input '", in.name(), "' has a dynamic size; give imgsz=");
                KS_CHECK(symbolic || want == size, what, ": the model's input is fixed at ", dims[2].dim_value(), "x",
                         dims[3].dim_value(), " but imgsz asks for ", options.imgsz[0], "x", options.imgsz[1]);
                size = want;
            }
            KS_CHECK(!symbolic || i != 1, what, ": input '", in.name(), "' has a symbolic channel dimension");
            v.shape.push_back(size);
        }
        v.shape_known = true;
        int id = g.add_value(std::move(v));
        ids[in.name()] = id;
        g.inputs.push_back(id);
    }
    KS_CHECK(g.inputs.size() == 1, what, ": expected one image input, found ", g.inputs.size());

    for (int i = 0; i < gp.node_size(); ++i) {
        const auto& np = gp.node(i);
        std::string name = np.name().empty() ? np.op_type() + "_" + std::to_string(i) : np.name();
        KS_CHECK(np.domain().empty() || np.domain() == "ai.onnx", what, ": node '", name, "' uses op domain '",
                 np.domain(), "', which Kestrel does not support");
        if (np.op_type() == "Constant") {
            KS_CHECK(np.output_size() == 1, what, ": Constant node '", name, "' must have one output");
            ids[np.output(0)] = g.add_constant(np.output(0), constant_node_value(np));
            continue;
        }
        Node n;
        KS_CHECK(ir::op_from_name(np.op_type(), &n.op), what, ": node '", name, "' uses op '", np.op_type(),
                 "', which Kestrel does not support (see docs/op-support.md)");
        n.name = name;
        n.attrs = convert_attributes(np);
        if (needs_opset(n.op)) n.attrs.set("_opset", static_cast<int64_t>(opset));
        for (const auto& in : np.input()) {
            if (in.empty()) {
                n.inputs.push_back(-1);
                continue;
            }
            auto it = ids.find(in);
            KS_CHECK(it != ids.end(), what, ": node '", name, "' reads '", in, "', which no earlier node produces");
            n.inputs.push_back(it->second);
        }
        for (const auto& out : np.output()) {
            if (out.empty()) continue;  // an omitted optional output
            KS_CHECK(!ids.count(out), what, ": value '", out, "' is produced twice");
            ir::Value v;
            v.name = out;
            int id = g.add_value(std::move(v));
            ids[out] = id;
            n.outputs.push_back(id);
        }
        KS_CHECK(!n.outputs.empty(), what, ": node '", name, "' has no outputs");
        g.nodes.push_back(std::move(n));
    }

    for (const auto& out : gp.output()) {
        auto it = ids.find(out.name());
        KS_CHECK(it != ids.end(), what, ": graph output '", out.name(), "' is never produced");
        g.outputs.push_back(it->second);
    }
    KS_CHECK(!g.outputs.empty(), what, ": the model has no outputs");
    return g;
}

}  // namespace

Graph import_model_bytes(const std::string& bytes, const std::string& what, const ImportOptions& options) {
    KS_CHECK(!bytes.empty(), what, ": file is empty");
    ::onnx::ModelProto model;
    google::protobuf::io::CodedInputStream stream(reinterpret_cast<const uint8_t*>(bytes.data()),
                                                  static_cast<int>(bytes.size()));
    stream.SetTotalBytesLimit(INT32_MAX);
    KS_CHECK(model.ParseFromCodedStream(&stream) && stream.ConsumedEntireMessage(), what,
             ": not a valid ONNX model (cannot parse the protobuf; truncated or not an .onnx file?)");
    KS_CHECK(model.has_graph(), what, ": not a valid ONNX model (no graph)");
    return convert_model(model, what, options);
}

Graph import_model(const std::string& path, const ImportOptions& options) {
    std::error_code ec;
    KS_CHECK(std::filesystem::exists(path, ec), "model file '", path, "' not found");
    KS_CHECK(std::filesystem::is_regular_file(path, ec), "model '", path, "' is not a file");
    std::ifstream f(path, std::ios::binary);
    KS_CHECK(f, "cannot open model file '", path, "'");
    std::stringstream ss;
    ss << f.rdbuf();
    return import_model_bytes(ss.str(), "'" + path + "'", options);
}

}  // namespace kestrel::onnx
