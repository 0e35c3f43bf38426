#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "cli/modes.h"
#include "core/error.h"
#include "kestrel/engine.h"

namespace kestrel::cli {

namespace {
std::string shape_text(const std::vector<int64_t>& s) {
    std::ostringstream os;
    os << "(";
    for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
    os << ")";
    return os.str();
}
double file_mb(const std::string& p) {
    std::error_code ec;
    return static_cast<double>(std::filesystem::file_size(p, ec)) / 1e6;
}
}  // namespace

int run_export(const Options& opts) {
    KS_CHECK(opts.has_value("model"), "export needs model=<file.onnx>");
    std::string model = opts.get_string("model");
    KS_CHECK(opts.get_string("format") == "engine", "format='", opts.get_string("format"),
             "' is not supported; use format=engine");
    BuildOptions bo;
    bo.batch = opts.get_int("batch");
    bo.dynamic = opts.get_bool("dynamic");
    if (opts.is_set("imgsz")) bo.imgsz = opts.get_imgsz();
    if (opts.has_value("device")) bo.device = opts.get_string("device");
    bo.half = opts.get_bool("half");
    bo.int8 = opts.get_bool("int8");
    if (opts.has_value("data")) bo.data = opts.get_string("data");
    bo.trt_quant_algo = opts.get_string("trt_quant_algo");
    bo.sensitivity = opts.get_bool("sensitivity");
    bo.workspace_gib = opts.get_float("workspace");
    if (opts.has_value("timing_cache")) bo.timing_cache = opts.get_string("timing_cache");
    bool verbose = opts.is_set("verbose") && opts.get_bool("verbose");
    if (verbose) bo.log = &std::cout;
    std::filesystem::path onnx_path(model);
    KS_CHECK(onnx_path.extension() == ".onnx", "model='", model, "': export reads an ONNX file (.onnx)");
    std::string out = onnx_path.replace_extension(".engine").string();

    auto t0 = std::chrono::steady_clock::now();
    std::cout << "Kestrel: starting from '" << model << "' (" << file_mb(model) << " MB)\n";
    auto engine = Engine::build(model, bo);
    KS_CHECK(engine.ok(), engine.status().message());
    const ModelInfo& info = engine->info();
    std::cout << "Kestrel: input shape " << shape_text(info.input.shape) << " BCHW and output shape(s)";
    for (const auto& o : info.outputs) std::cout << " " << shape_text(o.shape);
    std::cout << ", task=" << info.task << ", precision=" << info.precision << ", device=" << info.device << ", batch "
              << info.min_batch << ".." << info.max_batch << "\n";
    Status st = engine->save(out);
    KS_CHECK(st.ok(), st.message());
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << "Kestrel: export success ✅ " << secs << "s, saved as '" << out << "' (" << file_mb(out) << " MB)\n"
              << "\nExport complete (" << secs << "s)\n"
              << "Results saved to " << std::filesystem::absolute(out).parent_path().string() << "\n"
              << "Predict:         kestrel predict task=" << info.task << " model=" << out << " imgsz=" << info.imgsz[0]
              << "\n";
    return 0;
}

}  // namespace kestrel::cli
