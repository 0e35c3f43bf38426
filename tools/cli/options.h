// Command-line options of the `kestrel` CLI, parsed the way the Ultralytics `yolo` CLI parses its arguments
// (ultralytics/cfg/__init__.py, defaults from ultralytics/cfg/default.yaml):
//
//   kestrel predict model=yolov8n.engine source=bus.jpg conf=0.4 imgsz=[480,640]
//
//   Options opts = parse_args(argc, argv);   // throws kestrel::Error with a one-line message on bad input
//   if (opts.mode() == Mode::kHelp) std::cout << help_text();
//   double conf = opts.get_float("conf");    // 0.4 here; 0.25 (predict) or 0.001 (val) when not given
//   std::array<int, 2> hw = opts.get_imgsz(); // {480, 640}
//
// Every known key always has a value (its default when not given) except optional keys whose default is None
// (model, source, classes, ...): check has_value() before reading those.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace kestrel::cli {

enum class Mode { kExport, kPredict, kVal, kBenchmark, kHelp };

// "export", "predict", "val", "benchmark" or "help".
std::string_view mode_name(Mode mode);

class Options {
   public:
    Mode mode() const { return mode_; }

    // Typed access to a key's value. Throws kestrel::Error for an unknown key, a key of another type, or a key
    // without a value (an optional key left at None).
    bool get_bool(std::string_view key) const;
    // Also reads a list key holding exactly one element (batch=8 outside benchmark).
    int get_int(std::string_view key) const;
    double get_float(std::string_view key) const;
    // String keys, including the normalized device ("cpu" or "cuda:N") and the enum keys.
    const std::string& get_string(std::string_view key) const;
    // List keys: batch and classes; a single value is a one-element list.
    std::vector<int> get_int_list(std::string_view key) const;
    // imgsz as {h, w}; a single integer n means {n, n}.
    std::array<int, 2> get_imgsz() const;

    // True when the user gave the key a value other than None.
    bool is_set(std::string_view key) const;
    // True when the key has a value, given or default (false only for optional keys left at None).
    bool has_value(std::string_view key) const;

    // The key=value pairs the user gave, in first-given order with the last value of a repeated key, values
    // normalized (True/False, cuda:0, [640, 480]) so they can be printed or recorded.
    const std::vector<std::pair<std::string, std::string>>& user_args() const { return user_args_; }

   private:
    // Index 0 (std::monostate) is None.
    using Value = std::variant<std::monostate, bool, int, double, std::string, std::vector<int>>;

    friend Options parse_args(const std::vector<std::string>& args);
    // Only parse_args builds Options, so every known key always has its slot in values_.
    Options() = default;

    const Value& value_of(std::string_view key) const;

    Mode mode_ = Mode::kHelp;
    std::vector<Value> values_;  // one per known key, in the order of the key table
    std::vector<bool> user_set_;
    std::vector<std::pair<std::string, std::string>> user_args_;
};

// Parses argv as `kestrel MODE key=value ...` (argv[0] is the program name). `key = value` and `key= value`
// split over several tokens, and lists split by the shell (`imgsz=[640, 480]`) are merged back as Ultralytics'
// merge_equals_args does. No arguments, or `help`, `-h`, `--help` anywhere, gives Mode::kHelp.
Options parse_args(int argc, const char* const* argv);
// Same, for the arguments after the program name.
Options parse_args(const std::vector<std::string>& args);

// Usage text for `kestrel help`: syntax, modes, examples and every key with its default and a help line.
std::string help_text();

}  // namespace kestrel::cli
