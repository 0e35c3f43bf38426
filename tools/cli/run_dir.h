// Output directory of a run, chosen as Ultralytics' BaseValidator/BasePredictor get_save_dir and increment_path:
//
//   run_dir("", "detect", "predict", "", false)  // runs/detect/predict, else predict2, predict3, ...
#pragma once

#include <string>

namespace kestrel::cli {

// Creates and returns <project>/<name>. An empty project means "runs/<task>", an empty name means mode_name.
// When the directory exists and !exist_ok, the first free <name>2, <name>3, ... (up to <name>9999) is used
// instead. Claiming a numbered name is atomic, so concurrent runs never share a directory. Throws kestrel::Error
// when no directory can be created.
std::string run_dir(const std::string& project, const std::string& task, const std::string& mode_name,
                    const std::string& name, bool exist_ok);

}  // namespace kestrel::cli
