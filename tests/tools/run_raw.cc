// Test tool: runs an engine (or ONNX file) through the public API on a raw float32 input file and
// writes each output as raw float32, for comparison against ONNX Runtime by tests/models/*.py.
//   kestrel_run_raw MODEL INPUT.bin BATCH OUT_PREFIX [SAVE_ENGINE]
// With SAVE_ENGINE, the engine is also saved there (for round-trip checks).
#include <fstream>
#include <iostream>
#include <iterator>
#include <vector>

#include "kestrel/engine.h"

int main(int argc, char** argv) {
    if (argc < 5) {
        std::cerr << "usage: kestrel_run_raw MODEL INPUT.bin BATCH OUT_PREFIX [SAVE_ENGINE]\n";
        return 2;
    }
    kestrel::BuildOptions opt;
    opt.batch = std::stoi(argv[3]);
    opt.dynamic = true;
    std::string model = argv[1];
    bool onnx = model.size() > 5 && model.substr(model.size() - 5) == ".onnx";
    auto engine = onnx ? kestrel::Engine::build(model, opt) : kestrel::Engine::load(model);
    if (!engine.ok()) {
        std::cerr << engine.status().message() << "\n";
        return 1;
    }
    if (argc > 5) {
        auto st = engine->save(argv[5]);
        if (!st.ok()) {
            std::cerr << st.message() << "\n";
            return 1;
        }
    }
    std::ifstream f(argv[2], std::ios::binary);
    std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::vector<float> input(bytes.size() / 4);
    std::copy(bytes.begin(), bytes.end(), reinterpret_cast<char*>(input.data()));
    auto session = kestrel::Session::create(engine.value());
    if (!session.ok()) {
        std::cerr << session.status().message() << "\n";
        return 1;
    }
    std::vector<std::vector<float>> outputs;
    auto st = session->run(input.data(), std::stoi(argv[3]), &outputs);
    if (!st.ok()) {
        std::cerr << st.message() << "\n";
        return 1;
    }
    for (size_t k = 0; k < outputs.size(); ++k) {
        std::ofstream o(std::string(argv[4]) + std::to_string(k) + ".bin", std::ios::binary);
        o.write(reinterpret_cast<const char*>(outputs[k].data()), static_cast<std::streamsize>(outputs[k].size() * 4));
    }
    return 0;
}
