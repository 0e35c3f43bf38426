// kestrel: Ultralytics' `yolo` command line over Kestrel engines.
//   kestrel export model=yolov8n.onnx format=engine
//   kestrel predict model=yolov8n.engine source=bus.jpg
//   kestrel val model=yolov8n.engine data=coco128.yaml
#include <iostream>

#include "cli/modes.h"
#include "core/error.h"

int main(int argc, char** argv) {
    using namespace kestrel::cli;
    try {
        Options opts = parse_args(argc, argv);
        switch (opts.mode()) {
            case Mode::kHelp: std::cout << help_text(); return 0;
            case Mode::kExport: return run_export(opts);
            case Mode::kPredict: return run_predict(opts);
            case Mode::kBenchmark: return run_benchmark(opts);
            case Mode::kVal: return run_val(opts);
        }
    } catch (const kestrel::Error& e) {
        std::cerr << "Error: " << e.what() << "\n";
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "Error: " << e.what() << "\n";
        return 1;
    }
    return 1;
}
