#include "cli/options.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <optional>
#include <sstream>

#include "core/error.h"

namespace kestrel::cli {
namespace {

enum class Kind { kBool, kInt, kFloat, kString, kIntList, kImgsz, kDevice, kChoice };

// Constraint checked on every number of a value, each element of a list included.
enum class Bound { kNone, kFraction, kPositive, kAtLeastOne, kNonNegative };

struct ModeDefault {
    Mode mode;
    std::string_view value;
};

struct KeySpec {
    std::string_view key;
    Kind kind;
    // Written as on the command line and parsed like user input, so defaults and help text cannot drift apart.
    // "None" makes the key optional: it may be left without a value.
    std::string_view default_value;
    std::string_view help;
    Bound bound = Bound::kNone;
    std::vector<std::string_view> choices = {};   // kChoice: accepted values, in their canonical spelling
    std::vector<ModeDefault> mode_defaults = {};  // replace default_value in these modes
    bool list_only_in_benchmark = false;          // several values make sense only when benchmarking
};

// Inference-related keys of Ultralytics' default.yaml (plus Kestrel's TensorRT build keys), in the order the
// help text and the "Valid arguments" list show them. Defaults follow Ultralytics' CLI: conf and batch depend on
// the mode there too (Model.predict sets conf=0.25 and batch=1, the validator keeps default.yaml's batch=16 and
// uses conf=0.001).
const std::vector<KeySpec>& key_table() {
    static const std::vector<KeySpec> table = {
        {.key = "model",
         .kind = Kind::kString,
         .default_value = "None",
         .help = "path to the model file, i.e. yolov8n.onnx or yolov8n.engine"},
        {.key = "data",
         .kind = Kind::kString,
         .default_value = "None",
         .help = "path to the dataset yaml, i.e. coco8.yaml"},
        {.key = "imgsz",
         .kind = Kind::kImgsz,
         .default_value = "640",
         .help = "input image size as an integer or [h, w]",
         .bound = Bound::kAtLeastOne},
        {.key = "batch",
         .kind = Kind::kIntList,
         .default_value = "1",
         .help = "number of images per batch; benchmark accepts a list, i.e. batch=1,8,32",
         .bound = Bound::kAtLeastOne,
         .mode_defaults = {{Mode::kVal, "16"}},
         .list_only_in_benchmark = true},
        {.key = "device",
         .kind = Kind::kDevice,
         .default_value = "None",
         .help = "device to run on, i.e. cpu, 0 or cuda:0 (None: automatic)"},
        {.key = "half", .kind = Kind::kBool, .default_value = "False", .help = "use FP16 half-precision"},
        {.key = "int8", .kind = Kind::kBool, .default_value = "False", .help = "use INT8 quantization"},
        {.key = "dynamic",
         .kind = Kind::kBool,
         .default_value = "False",
         .help = "build with dynamic batch and image size"},
        {.key = "workspace",
         .kind = Kind::kFloat,
         .default_value = "4",
         .help = "TensorRT builder workspace size in GiB",
         .bound = Bound::kPositive},
        {.key = "format",
         .kind = Kind::kChoice,
         .default_value = "engine",
         .help = "export format (TensorRT engine)",
         .choices = {"engine"}},
        {.key = "conf",
         .kind = Kind::kFloat,
         .default_value = "None",
         .help = "object confidence threshold for detection",
         .bound = Bound::kFraction,
         .mode_defaults = {{Mode::kPredict, "0.25"}, {Mode::kVal, "0.001"}}},
        {.key = "iou",
         .kind = Kind::kFloat,
         .default_value = "0.7",
         .help = "intersection over union (IoU) threshold for NMS",
         .bound = Bound::kFraction},
        {.key = "max_det",
         .kind = Kind::kInt,
         .default_value = "300",
         .help = "maximum number of detections per image",
         .bound = Bound::kAtLeastOne},
        {.key = "classes",
         .kind = Kind::kIntList,
         .default_value = "None",
         .help = "filter results by class, i.e. classes=0 or classes=[0,2]",
         .bound = Bound::kNonNegative},
        {.key = "agnostic_nms", .kind = Kind::kBool, .default_value = "False", .help = "class-agnostic NMS"},
        {.key = "source",
         .kind = Kind::kString,
         .default_value = "None",
         .help = "image or video file, or directory, to predict on"},
        {.key = "save", .kind = Kind::kBool, .default_value = "True", .help = "save annotated result images"},
        {.key = "save_txt",
         .kind = Kind::kBool,
         .default_value = "False",
         .help = "save results as YOLO .txt label files"},
        {.key = "save_conf",
         .kind = Kind::kBool,
         .default_value = "False",
         .help = "save confidence scores in the .txt labels"},
        {.key = "save_json",
         .kind = Kind::kBool,
         .default_value = "False",
         .help = "save results to a COCO-style JSON file"},
        {.key = "show_labels",
         .kind = Kind::kBool,
         .default_value = "True",
         .help = "show class labels on result images"},
        {.key = "show_conf",
         .kind = Kind::kBool,
         .default_value = "True",
         .help = "show confidence scores on result images"},
        {.key = "show_boxes", .kind = Kind::kBool, .default_value = "True", .help = "show boxes on result images"},
        {.key = "line_width",
         .kind = Kind::kInt,
         .default_value = "None",
         .help = "box line width in pixels (None: scaled to the image size)",
         .bound = Bound::kAtLeastOne},
        {.key = "project",
         .kind = Kind::kString,
         .default_value = "None",
         .help = "project directory (None: runs/<task>)"},
        {.key = "name",
         .kind = Kind::kString,
         .default_value = "None",
         .help = "run directory name under the project (None: the mode)"},
        {.key = "exist_ok",
         .kind = Kind::kBool,
         .default_value = "False",
         .help = "reuse an existing project/name directory instead of numbering a new one"},
        {.key = "verbose", .kind = Kind::kBool, .default_value = "True", .help = "print verbose output"},
        {.key = "plots", .kind = Kind::kBool, .default_value = "True", .help = "save plots during val"},
        {.key = "split",
         .kind = Kind::kChoice,
         .default_value = "val",
         .help = "dataset split to validate on",
         .choices = {"val", "test", "train"}},
        {.key = "trt_quant_algo",
         .kind = Kind::kChoice,
         .default_value = "ENTROPY_CALIBRATION_2",
         .help = "TensorRT INT8 calibration algorithm",
         .choices = {"MINMAX_CALIBRATION", "ENTROPY_CALIBRATION", "ENTROPY_CALIBRATION_2", "LEGACY_CALIBRATION"}},
        {.key = "fraction",
         .kind = Kind::kFloat,
         .default_value = "1.0",
         .help = "fraction of the dataset images to use",
         .bound = Bound::kFraction},
        {.key = "sensitivity",
         .kind = Kind::kBool,
         .default_value = "False",
         .help = "analyse per-layer INT8 sensitivity"},
        {.key = "timing_cache",
         .kind = Kind::kString,
         .default_value = "None",
         .help = "timing cache file (TensorRT's --timingCacheFile) for GPU exports: kernel timings are read from "
                 "it, reused, and saved back; i.e. timing_cache=kestrel.timing (not for device=cpu)"},
        {.key = "profile", .kind = Kind::kBool, .default_value = "False", .help = "profile per-layer times"},
    };
    return table;
}

constexpr std::array<std::pair<Mode, std::string_view>, 5> kModes = {{
    {Mode::kExport, "export"},
    {Mode::kPredict, "predict"},
    {Mode::kVal, "val"},
    {Mode::kBenchmark, "benchmark"},
    {Mode::kHelp, "help"},
}};

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

std::string_view trim(std::string_view s) {
    const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
    while (!s.empty() && space(s.front())) s.remove_prefix(1);
    while (!s.empty() && space(s.back())) s.remove_suffix(1);
    return s;
}

// Ultralytics evaluates values as Python literals, so name='exp' means exp.
std::string_view strip_quotes(std::string_view s) {
    if (s.size() >= 2 && (s.front() == '\'' || s.front() == '"') && s.back() == s.front()) {
        return s.substr(1, s.size() - 2);
    }
    return s;
}

template <typename Range>
std::string join(const Range& items, std::string_view separator) {
    std::string out;
    for (const auto& item : items) {
        if (!out.empty()) out += separator;
        out += item;
    }
    return out;
}

std::vector<std::string_view> mode_names() {
    std::vector<std::string_view> names;
    for (const auto& [mode, name] : kModes) names.push_back(name);
    return names;
}

std::string mode_list() { return join(mode_names(), ", "); }

size_t edit_distance(std::string_view a, std::string_view b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t substitute = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
            diagonal = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitute});
        }
    }
    return row[b.size()];
}

// "Similar: 'conf'. " for the closest candidate within edit distance 2 (the first one on ties), else "".
template <typename Range>
std::string similar_hint(std::string_view word, const Range& candidates) {
    std::string_view best;
    size_t best_distance = 3;
    for (std::string_view candidate : candidates) {
        const size_t distance = edit_distance(word, candidate);
        if (distance < best_distance) {
            best = candidate;
            best_distance = distance;
        }
    }
    return best.empty() ? std::string() : "Similar: '" + std::string(best) + "'. ";
}

std::vector<std::string_view> key_names() {
    std::vector<std::string_view> names;
    for (const KeySpec& spec : key_table()) names.push_back(spec.key);
    return names;
}

std::optional<size_t> find_key(std::string_view key) {
    const auto& table = key_table();
    for (size_t i = 0; i < table.size(); ++i) {
        if (table[i].key == key) return i;
    }
    return std::nullopt;
}

size_t key_index(std::string_view key) {
    const std::optional<size_t> index = find_key(key);
    KS_CHECK(index, "unknown option '", key, "'");
    return *index;
}

[[noreturn]] void fail_unknown_key(std::string_view key) {
    const std::vector<std::string_view> names = key_names();
    KS_FAIL("'", key, "' is not a valid kestrel argument. ", similar_hint(key, names),
            "Valid arguments: ", join(names, ", "));
}

std::optional<Mode> find_mode(std::string_view token) {
    for (const auto& [mode, name] : kModes) {
        if (name == token) return mode;
    }
    return std::nullopt;
}

bool is_help_token(std::string_view token) {
    const std::string l = lower(token);
    return l == "help" || l == "-h" || l == "--help";
}

std::optional<int> to_int(std::string_view s) {
    int value = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return value;
}

std::optional<double> to_double(std::string_view s) {
    double value = 0.0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    // from_chars accepts "inf" and "nan"; NaN would slip through every range check.
    if (s.empty() || ec != std::errc() || end != s.data() + s.size() || !std::isfinite(value)) return std::nullopt;
    return value;
}

// "0,2", "[0,2]", "[0, 2]", "(0, 2)" or "0"; an empty list or an empty element is rejected.
std::optional<std::vector<int>> to_int_list(std::string_view s) {
    if (s.size() >= 2 && ((s.front() == '[' && s.back() == ']') || (s.front() == '(' && s.back() == ')'))) {
        s = s.substr(1, s.size() - 2);
    }
    std::vector<int> values;
    size_t start = 0;
    while (true) {
        const size_t comma = s.find(',', start);
        const std::optional<int> value = to_int(trim(s.substr(start, comma - start)));
        if (!value) return std::nullopt;
        values.push_back(*value);
        if (comma == std::string_view::npos) return values;
        start = comma + 1;
    }
}

// Ultralytics' select_device accepts "cpu", "0" and "cuda:0"; Kestrel runs on one device, so lists are rejected.
std::optional<std::string> normalize_device(std::string_view s) {
    const std::string device = lower(s);
    if (device == "cpu") return device;
    if (device == "cuda") return "cuda:0";
    std::string_view index = device;
    if (index.starts_with("cuda:")) index.remove_prefix(5);
    const std::optional<int> n = to_int(index);
    if (!n || *n < 0) return std::nullopt;
    return "cuda:" + std::to_string(*n);
}

bool is_none(std::string_view s) {
    const std::string l = lower(s);
    return l == "none" || l == "null";
}

std::string type_reason(const KeySpec& spec) {
    switch (spec.kind) {
        case Kind::kBool:
            return "expected True or False";
        case Kind::kInt:
            return "expected an integer";
        case Kind::kFloat:
            return "expected a number";
        case Kind::kString:
            return "expected a string";
        case Kind::kIntList:
            return "expected an integer or a list of integers like [0, 2]";
        case Kind::kImgsz:
            return "expected an integer or [h, w]";
        case Kind::kDevice:
            return "expected cpu, a GPU index like 0, or cuda:0";
        case Kind::kChoice:
            return "expected one of " + join(spec.choices, ", ");
    }
    return {};
}

[[noreturn]] void fail_value(const KeySpec& spec, std::string_view raw, std::string_view reason) {
    KS_FAIL("'", spec.key, "=", raw, "' is an invalid value: ", reason);
}

void check_bound(const KeySpec& spec, std::string_view raw, double value) {
    switch (spec.bound) {
        case Bound::kNone:
            return;
        case Bound::kFraction:
            if (value < 0.0 || value > 1.0) fail_value(spec, raw, "must be between 0.0 and 1.0");
            return;
        case Bound::kPositive:
            if (value <= 0.0) fail_value(spec, raw, "must be greater than 0");
            return;
        case Bound::kAtLeastOne:
            if (value < 1.0) fail_value(spec, raw, "must be at least 1");
            return;
        case Bound::kNonNegative:
            if (value < 0.0) fail_value(spec, raw, "must be non-negative");
            return;
    }
}

// The same type as Options::Value, which is private.
using Value = std::variant<std::monostate, bool, int, double, std::string, std::vector<int>>;

// Parses `raw` (trimmed, as written after '=') for `spec`; None gives std::monostate for optional keys.
Value parse_value(const KeySpec& spec, std::string_view raw, Mode mode) {
    const std::string_view text = strip_quotes(raw);
    if (is_none(text)) {
        if (spec.default_value == "None") return std::monostate();
        fail_value(spec, raw, type_reason(spec));
    }
    switch (spec.kind) {
        case Kind::kBool: {
            const std::string l = lower(text);
            if (l == "true" || l == "1") return true;
            if (l == "false" || l == "0") return false;
            break;
        }
        case Kind::kInt:
            if (const std::optional<int> value = to_int(text)) {
                check_bound(spec, raw, *value);
                return *value;
            }
            break;
        case Kind::kFloat:
            if (const std::optional<double> value = to_double(text)) {
                check_bound(spec, raw, *value);
                return *value;
            }
            break;
        case Kind::kString:
            return std::string(text);
        case Kind::kIntList:
        case Kind::kImgsz:
            if (std::optional<std::vector<int>> values = to_int_list(text)) {
                if (spec.kind == Kind::kImgsz && values->size() > 2) break;
                for (int value : *values) check_bound(spec, raw, value);
                if (spec.list_only_in_benchmark && values->size() > 1 && mode != Mode::kBenchmark) {
                    fail_value(spec, raw, "a list of values is only valid in benchmark mode");
                }
                return std::move(*values);
            }
            break;
        case Kind::kDevice:
            if (std::optional<std::string> device = normalize_device(text)) return std::move(*device);
            break;
        case Kind::kChoice:
            for (std::string_view choice : spec.choices) {
                if (lower(choice) == lower(text)) return std::string(choice);
            }
            break;
    }
    fail_value(spec, raw, type_reason(spec));
}

std::string_view default_text(const KeySpec& spec, Mode mode) {
    for (const ModeDefault& d : spec.mode_defaults) {
        if (d.mode == mode) return d.value;
    }
    return spec.default_value;
}

// "<lead>'key=default'" to show how a key is written; empty when the default is None, which is no useful example.
std::string example_hint(const KeySpec& spec, Mode mode, std::string_view lead) {
    const std::string_view value = default_text(spec, mode);
    if (value == "None") return {};
    return std::string(lead) + "'" + std::string(spec.key) + "=" + std::string(value) + "'";
}

// Python spellings (True, [640, 480]) as Ultralytics prints and records its arguments.
std::string format_value(const Value& value) {
    struct Formatter {
        std::string operator()(std::monostate) const { return "None"; }
        std::string operator()(bool b) const { return b ? "True" : "False"; }
        std::string operator()(int i) const { return std::to_string(i); }
        std::string operator()(double d) const {
            std::array<char, 32> buffer{};
            const auto result = std::to_chars(buffer.data(), buffer.data() + buffer.size(), d);
            return std::string(buffer.data(), result.ptr);
        }
        std::string operator()(const std::string& s) const { return s; }
        std::string operator()(const std::vector<int>& list) const {
            if (list.size() == 1) return std::to_string(list[0]);
            std::vector<std::string> items;
            for (int v : list) items.push_back(std::to_string(v));
            return "[" + join(items, ", ") + "]";
        }
    };
    return std::visit(Formatter{}, value);
}

// Port of Ultralytics' merge_equals_args: ['a', '=', 'b'], ['a=', 'b'] and ['a', '=b'] become 'a=b', and tokens
// are concatenated while '[' is unbalanced so that `imgsz=[640, 480]` split by the shell is one argument again.
std::vector<std::string> merge_equals_args(const std::vector<std::string>& args) {
    std::vector<std::string> merged;
    std::string current;
    std::ptrdiff_t depth = 0;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        const bool has_next = i + 1 < args.size();
        if (arg == "=" && i > 0 && has_next && !merged.empty()) {
            merged.back() += "=" + args[i + 1];
            ++i;
            continue;
        }
        if (arg.ends_with('=') && has_next && args[i + 1].find('=') == std::string::npos) {
            merged.push_back(arg + args[i + 1]);
            ++i;
            continue;
        }
        if (arg.starts_with('=') && i > 0 && !merged.empty()) {
            merged.back() += arg;
            continue;
        }
        depth += std::count(arg.begin(), arg.end(), '[') - std::count(arg.begin(), arg.end(), ']');
        current += arg;
        if (depth == 0) {
            merged.push_back(current);
            current.clear();
        }
    }
    if (!current.empty()) merged.push_back(current);
    return merged;
}

}  // namespace

std::string_view mode_name(Mode mode) {
    for (const auto& [m, name] : kModes) {
        if (m == mode) return name;
    }
    KS_FAIL("unknown mode ", static_cast<int>(mode));
}

const Options::Value& Options::value_of(std::string_view key) const {
    const Value& value = values_[key_index(key)];
    KS_CHECK(!std::holds_alternative<std::monostate>(value), "option '", key, "' has no value (None)");
    return value;
}

bool Options::get_bool(std::string_view key) const {
    const bool* value = std::get_if<bool>(&value_of(key));
    KS_CHECK(value, "option '", key, "' is not a boolean");
    return *value;
}

int Options::get_int(std::string_view key) const {
    const Value& value = value_of(key);
    if (const int* i = std::get_if<int>(&value)) return *i;
    const auto* list = std::get_if<std::vector<int>>(&value);
    KS_CHECK(list && list->size() == 1, "option '", key, "' is not a single integer");
    return list->front();
}

double Options::get_float(std::string_view key) const {
    const double* value = std::get_if<double>(&value_of(key));
    KS_CHECK(value, "option '", key, "' is not a number");
    return *value;
}

const std::string& Options::get_string(std::string_view key) const {
    const std::string* value = std::get_if<std::string>(&value_of(key));
    KS_CHECK(value, "option '", key, "' is not a string");
    return *value;
}

std::vector<int> Options::get_int_list(std::string_view key) const {
    KS_CHECK(key_table()[key_index(key)].kind == Kind::kIntList, "option '", key, "' is not an integer list");
    return std::get<std::vector<int>>(value_of(key));
}

std::array<int, 2> Options::get_imgsz() const {
    const auto& hw = std::get<std::vector<int>>(value_of("imgsz"));
    return {hw.front(), hw.back()};
}

bool Options::is_set(std::string_view key) const { return user_set_[key_index(key)]; }

bool Options::has_value(std::string_view key) const {
    return !std::holds_alternative<std::monostate>(values_[key_index(key)]);
}

Options parse_args(int argc, const char* const* argv) {
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
    return parse_args(args);
}

Options parse_args(const std::vector<std::string>& args) {
    const std::vector<std::string> tokens = merge_equals_args(args);
    const auto is_pair = [](const std::string& token) { return token.find('=') != std::string::npos; };
    const bool help = tokens.empty() || std::any_of(tokens.begin(), tokens.end(), [&](const std::string& token) {
                          return !is_pair(token) && is_help_token(token);
                      });

    // The mode is the first bare token, wherever it is, as Ultralytics accepts `yolo model=x predict`.
    std::optional<Mode> mode = help ? std::optional<Mode>(Mode::kHelp) : std::nullopt;
    std::string_view mode_token;
    for (const std::string& token : tokens) {
        if (help || is_pair(token)) continue;
        if (!mode) {
            mode = find_mode(token);
            KS_CHECK(mode, "'", token, "' is not a valid kestrel mode. ", similar_hint(token, mode_names()),
                     "Valid modes: ", mode_list());
            mode_token = token;
        } else if (find_mode(token)) {
            KS_FAIL("only one kestrel mode may be given, got '", mode_token, "' and '", token, "'");
        } else if (const std::optional<size_t> index = find_key(token)) {
            // Ultralytics turns a bare boolean key into key=True; Kestrel asks for the explicit form instead.
            KS_FAIL("'", token, "' is a valid kestrel argument but is missing an '=' sign to set its value",
                    example_hint(key_table()[*index], *mode, ", i.e. try "));
        } else {
            fail_unknown_key(token);
        }
    }
    KS_CHECK(mode, "missing kestrel mode. Valid modes: ", mode_list());

    Options opts;
    opts.mode_ = *mode;
    for (const KeySpec& spec : key_table()) opts.values_.push_back(parse_value(spec, default_text(spec, *mode), *mode));
    opts.user_set_.assign(key_table().size(), false);
    if (help) return opts;

    for (const std::string& token : tokens) {
        if (!is_pair(token)) continue;
        const size_t equals = token.find('=');
        const std::string key(trim(std::string_view(token).substr(0, equals)));
        const std::string_view raw = trim(std::string_view(token).substr(equals + 1));
        const std::optional<size_t> index = find_key(key);
        if (!index) fail_unknown_key(key);
        const KeySpec& spec = key_table()[*index];
        KS_CHECK(!raw.empty(), "missing '", key, "' value", example_hint(spec, *mode, ", i.e. "));

        Value value = parse_value(spec, raw, *mode);
        const bool given = !std::holds_alternative<std::monostate>(value);
        const std::string text = format_value(value);
        opts.user_set_[*index] = given;
        opts.values_[*index] = given ? std::move(value) : parse_value(spec, default_text(spec, *mode), *mode);

        // A repeated key keeps its first position and takes the last value, like the dict Ultralytics builds.
        auto& user_args = opts.user_args_;
        const auto it = std::find_if(user_args.begin(), user_args.end(), [&](const auto& p) { return p.first == key; });
        if (it != user_args.end()) {
            it->second = text;
        } else {
            user_args.emplace_back(key, text);
        }
    }
    return opts;
}

std::string help_text() {
    std::ostringstream os;
    os << "Usage: kestrel MODE ARGS\n"
          "\n"
          "    MODE (required) is one of: "
       << mode_list()
       << "\n"
          "    ARGS (optional) are any number of custom 'arg=value' pairs like 'imgsz=320' that override defaults\n"
          "\n"
          "Examples:\n"
          "    1. Export an ONNX model to a TensorRT engine with FP16\n"
          "        kestrel export model=yolov8n.onnx format=engine half=True\n"
          "    2. Predict on an image and save YOLO .txt labels\n"
          "        kestrel predict model=yolov8n.engine source=bus.jpg conf=0.25 save_txt=True\n"
          "    3. Validate on a dataset\n"
          "        kestrel val model=yolov8n.engine data=coco8.yaml imgsz=640\n"
          "    4. Benchmark several batch sizes\n"
          "        kestrel benchmark model=yolov8n.onnx batch=1,8,32 half=True\n"
          "    5. Show this help\n"
          "        kestrel help\n"
          "\n"
          "Arguments (key=default  description):\n";

    std::vector<std::string> columns;
    size_t width = 0;
    for (const KeySpec& spec : key_table()) {
        columns.push_back(std::string(spec.key) + "=" + std::string(spec.default_value));
        width = std::max(width, columns.back().size());
    }
    for (size_t i = 0; i < columns.size(); ++i) {
        const KeySpec& spec = key_table()[i];
        os << "    " << columns[i] << std::string(width + 2 - columns[i].size(), ' ') << spec.help;
        if (spec.kind == Kind::kChoice && spec.choices.size() > 1) os << " (" << join(spec.choices, ", ") << ")";
        if (!spec.mode_defaults.empty()) {
            std::vector<std::string> notes;
            for (const ModeDefault& d : spec.mode_defaults) {
                notes.push_back(std::string(mode_name(d.mode)) + ": " + std::string(d.value));
            }
            os << " (" << join(notes, ", ") << ")";
        }
        os << "\n";
    }
    return os.str();
}

}  // namespace kestrel::cli
