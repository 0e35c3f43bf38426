#include "engine/engine_file.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/half.h"

namespace kestrel::engine {

namespace {

using nlohmann::json;

constexpr char kMagic[8] = {'K', 'E', 'S', 'T', 'R', 'E', 'L', '\0'};
// magic, version, flags, json size, blob size
constexpr size_t kHeaderSize = 8 + 4 + 4 + 8 + 8;
constexpr size_t kAlign = 64;

template <typename T>
void put(std::string& s, T v) {
    s.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
template <typename T>
T get(const std::string& s, size_t at) {
    T v;
    std::memcpy(&v, s.data() + at, sizeof(T));
    return v;
}

json attr_to_json(const ir::Attribute& a) {
    return std::visit(
        [](const auto& v) -> json {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, int64_t>) return {{"i", v}};
            if constexpr (std::is_same_v<T, float>) return {{"f", v}};
            if constexpr (std::is_same_v<T, std::string>) return {{"s", v}};
            if constexpr (std::is_same_v<T, std::vector<int64_t>>) return {{"ints", v}};
            if constexpr (std::is_same_v<T, std::vector<float>>) return {{"floats", v}};
        },
        a);
}

ir::Attribute attr_from_json(const json& j) {
    if (j.contains("i")) return j["i"].get<int64_t>();
    if (j.contains("f")) return j["f"].get<float>();
    if (j.contains("s")) return j["s"].get<std::string>();
    if (j.contains("ints")) return j["ints"].get<std::vector<int64_t>>();
    if (j.contains("floats")) return j["floats"].get<std::vector<float>>();
    KS_FAIL("malformed attribute");
}

}  // namespace

uint64_t fnv1a64(const uint8_t* data, size_t size) {
    uint64_t h = 14695981039346656037ull;  // FNV-1a's 64-bit offset basis
    for (size_t i = 0; i < size; ++i) {
        h ^= data[i];
        h *= 1099511628211ull;
    }
    return h;
}

std::string serialize(const EngineData& d) {
    const ir::Graph& g = d.graph;
    std::string blob;
    json values = json::array();
    for (const ir::Value& v : g.values) {
        json jv = {{"name", v.name}, {"dtype", static_cast<int>(v.dtype)}, {"shape", v.shape}};
        if (v.constant) {
            blob.resize((blob.size() + kAlign - 1) / kAlign * kAlign, '\0');
            jv["offset"] = blob.size();
            if (d.precision == "fp16" && v.dtype == DType::kFloat32 && v.shape.size() == 4) {
                // FP16 engines store conv weights as binary16; the build already rounded them to
                // half values, so this is lossless and a loaded engine computes what the built one did.
                const float* f = v.constant->data<float>();
                std::vector<uint16_t> h(static_cast<size_t>(v.constant->size()));
                for (size_t i = 0; i < h.size(); ++i) h[i] = float_to_half(f[i]);
                jv["dtype"] = static_cast<int>(DType::kFloat16);
                jv["bytes"] = h.size() * 2;
                blob.append(reinterpret_cast<const char*>(h.data()), h.size() * 2);
            } else {
                jv["bytes"] = v.constant->bytes.size();
                blob.append(reinterpret_cast<const char*>(v.constant->bytes.data()), v.constant->bytes.size());
            }
        }
        values.push_back(std::move(jv));
    }
    json nodes = json::array();
    for (const ir::Node& n : g.nodes) {
        if (n.removed) continue;
        json attrs = json::object();
        for (const auto& [k, a] : n.attrs.all()) attrs[k] = attr_to_json(a);
        nodes.push_back({{"op", std::string(ir::op_name(n.op))},
                         {"name", n.name},
                         {"inputs", n.inputs},
                         {"outputs", n.outputs},
                         {"attrs", attrs}});
    }
    json header = {{"metadata", g.metadata},
                   {"precision", d.precision},
                   {"target", d.target},
                   {"profile", {{"min", d.min_batch}, {"opt", d.opt_batch}, {"max", d.max_batch}}},
                   {"graph", {{"values", values}, {"nodes", nodes}, {"inputs", g.inputs}, {"outputs", g.outputs}}},
                   {"kernels", d.kernels}};
    std::string hs = header.dump();
    std::string out(kMagic, sizeof(kMagic));
    put<uint32_t>(out, kFormatVersion);
    put<uint32_t>(out, 0);
    put<uint64_t>(out, hs.size());
    put<uint64_t>(out, blob.size());
    out += hs;
    out += blob;
    put<uint64_t>(out, fnv1a64(reinterpret_cast<const uint8_t*>(out.data()), out.size()));
    return out;
}

EngineData deserialize(const std::string& s, const std::string& what) {
    KS_CHECK(s.size() >= sizeof(kMagic) && std::memcmp(s.data(), kMagic, sizeof(kMagic)) == 0, what,
             ": not a Kestrel engine (bad magic; engines from TensorRT or other tools are not compatible)");
    KS_CHECK(s.size() >= kHeaderSize + 8, what, ": truncated engine file");
    uint32_t version = get<uint32_t>(s, 8);
    KS_CHECK(version <= kFormatVersion, what, ": engine format version ", version,
             " is newer than this Kestrel supports (", kFormatVersion, "); re-export the model with this version");
    KS_CHECK(version >= 1, what, ": invalid engine format version ", version);
    // Version 1 files carry a checksum seeded with a mistyped offset basis (and CPU-only targets).
    KS_CHECK(version == kFormatVersion, what, ": engine format version ", version, " is older than this Kestrel's (",
             kFormatVersion, "); re-export the model with this version");
    uint64_t hsize = get<uint64_t>(s, 16), bsize = get<uint64_t>(s, 24);
    KS_CHECK(hsize < s.size() && bsize < s.size() && kHeaderSize + hsize + bsize + 8 == s.size(), what,
             ": truncated or corrupted engine file (sizes do not match the file length)");
    uint64_t sum = get<uint64_t>(s, s.size() - 8);
    KS_CHECK(sum == fnv1a64(reinterpret_cast<const uint8_t*>(s.data()), s.size() - 8), what,
             ": corrupted engine file (checksum mismatch)");
    EngineData d;
    try {
        json h = json::parse(s.begin() + kHeaderSize, s.begin() + static_cast<std::ptrdiff_t>(kHeaderSize + hsize));
        const char* blob = s.data() + kHeaderSize + hsize;
        ir::Graph& g = d.graph;
        g.metadata = h["metadata"].get<std::map<std::string, std::string>>();
        d.precision = h["precision"].get<std::string>();
        d.target = h["target"].get<std::string>();
        d.min_batch = h["profile"]["min"].get<int64_t>();
        d.opt_batch = h["profile"]["opt"].get<int64_t>();
        d.max_batch = h["profile"]["max"].get<int64_t>();
        d.kernels = h["kernels"].get<std::vector<std::string>>();
        const json& jg = h["graph"];
        for (const json& jv : jg["values"]) {
            ir::Value v;
            v.name = jv["name"].get<std::string>();
            int dt = jv["dtype"].get<int>();
            KS_CHECK(dt >= 0 && dt <= static_cast<int>(DType::kBool), "bad dtype");
            v.dtype = static_cast<DType>(dt);
            v.shape = jv["shape"].get<Shape>();
            v.shape_known = true;
            if (jv.contains("offset")) {
                uint64_t off = jv["offset"].get<uint64_t>(), n = jv["bytes"].get<uint64_t>();
                KS_CHECK(off <= bsize && n <= bsize - off, "constant out of range");
                if (v.dtype == DType::kFloat16) {  // FP16 weight storage: computed in float32
                    v.dtype = DType::kFloat32;
                    ir::Tensor t(DType::kFloat32, v.shape);
                    KS_CHECK(static_cast<uint64_t>(t.size()) * 2 == n, "constant size mismatch");
                    for (int64_t i = 0; i < t.size(); ++i) {
                        uint16_t h;
                        std::memcpy(&h, blob + off + static_cast<uint64_t>(i) * 2, 2);
                        t.data<float>()[i] = half_to_float(h);
                    }
                    v.constant = std::make_shared<const ir::Tensor>(std::move(t));
                } else {
                    ir::Tensor t(v.dtype, v.shape);
                    KS_CHECK(t.bytes.size() == n, "constant size mismatch");
                    std::memcpy(t.bytes.data(), blob + off, n);
                    v.constant = std::make_shared<const ir::Tensor>(std::move(t));
                }
            }
            g.values.push_back(std::move(v));
        }
        auto check_id = [&](int id, bool optional) {
            KS_CHECK((optional && id == -1) || (id >= 0 && static_cast<size_t>(id) < g.values.size()), "bad value id");
            return id;
        };
        for (const json& jn : jg["nodes"]) {
            ir::Node n;
            KS_CHECK(ir::op_from_name(jn["op"].get<std::string>(), &n.op), "unknown op");
            n.name = jn["name"].get<std::string>();
            for (int id : jn["inputs"].get<std::vector<int>>()) n.inputs.push_back(check_id(id, true));
            for (int id : jn["outputs"].get<std::vector<int>>()) n.outputs.push_back(check_id(id, false));
            for (const auto& [k, a] : jn["attrs"].items()) n.attrs.set(k, attr_from_json(a));
            g.nodes.push_back(std::move(n));
        }
        for (int id : jg["inputs"].get<std::vector<int>>()) g.inputs.push_back(check_id(id, false));
        for (int id : jg["outputs"].get<std::vector<int>>()) g.outputs.push_back(check_id(id, false));
    } catch (const json::exception& e) {
        KS_FAIL(what, ": malformed engine description (", e.what(), ")");
    } catch (const Error& e) {
        KS_FAIL(what, ": malformed engine description (", e.what(), ")");
    }
    return d;
}

void write_engine(const std::string& path, const EngineData& data) {
    std::string bytes = serialize(data);
    std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
        KS_CHECK(f, "cannot write engine '", path, "'");
        f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        f.flush();
        if (!f) {
            f.close();
            std::remove(tmp.c_str());
            KS_FAIL("cannot write engine '", path, "' (disk full?)");
        }
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::remove(tmp.c_str());
        KS_FAIL("cannot write engine '", path, "': ", ec.message());
    }
}

EngineData read_engine(const std::string& path) {
    std::error_code ec;
    KS_CHECK(std::filesystem::is_regular_file(path, ec), "engine file '", path, "' not found");
    std::ifstream f(path, std::ios::binary);
    KS_CHECK(f, "cannot open engine file '", path, "'");
    std::stringstream ss;
    ss << f.rdbuf();
    return deserialize(ss.str(), "'" + path + "'");
}

bool looks_like_engine(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    char m[8] = {};
    f.read(m, 8);
    return f && std::memcmp(m, kMagic, 8) == 0;
}

}  // namespace kestrel::engine
