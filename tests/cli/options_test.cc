// Tests of the kestrel CLI layer: argument parsing (options.h), run directories (run_dir.h) and result files
// (result_writers.h), checked against the Ultralytics behaviour each one mimics.
#include "cli/options.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "cli/result_writers.h"
#include "cli/run_dir.h"
#include "core/error.h"

namespace kestrel::cli {
namespace {

namespace fs = std::filesystem;

using Args = std::vector<std::string>;

constexpr const char* kValidArguments =
    "Valid arguments: model, data, imgsz, batch, device, half, int8, dynamic, workspace, format, conf, iou, max_det, "
    "classes, agnostic_nms, source, save, save_txt, save_conf, save_json, show_labels, show_conf, show_boxes, "
    "line_width, project, name, exist_ok, verbose, plots, split, trt_quant_algo, fraction, sensitivity, "
    "timing_cache, profile";

// The message parse_args throws for `args`; every message must be a single line.
std::string parse_error(const Args& args) {
    try {
        parse_args(args);
    } catch (const Error& e) {
        const std::string message = e.what();
        EXPECT_EQ(message.find('\n'), std::string::npos) << message;
        return message;
    }
    return "<no error>";
}

// The message for one key=value pair given to `kestrel predict`.
std::string value_error(const std::string& pair) { return parse_error({"predict", pair}); }

std::string thrown_by(const std::function<void()>& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "<no error>";
}

// ---------------------------------------------------------------------------------------------------------------
// Modes

TEST(CliModes, EachModeIsRecognised) {
    EXPECT_EQ(parse_args(Args{"export"}).mode(), Mode::kExport);
    EXPECT_EQ(parse_args(Args{"predict"}).mode(), Mode::kPredict);
    EXPECT_EQ(parse_args(Args{"val"}).mode(), Mode::kVal);
    EXPECT_EQ(parse_args(Args{"benchmark"}).mode(), Mode::kBenchmark);
    EXPECT_EQ(parse_args(Args{"help"}).mode(), Mode::kHelp);
}

TEST(CliModes, ModeNames) {
    EXPECT_EQ(mode_name(Mode::kExport), "export");
    EXPECT_EQ(mode_name(Mode::kPredict), "predict");
    EXPECT_EQ(mode_name(Mode::kVal), "val");
    EXPECT_EQ(mode_name(Mode::kBenchmark), "benchmark");
    EXPECT_EQ(mode_name(Mode::kHelp), "help");
}

TEST(CliModes, NoArgumentsMeansHelp) { EXPECT_EQ(parse_args(Args{}).mode(), Mode::kHelp); }

TEST(CliModes, HelpAnywhereWinsAndSkipsValidation) {
    EXPECT_EQ(parse_args(Args{"-h"}).mode(), Mode::kHelp);
    EXPECT_EQ(parse_args(Args{"--help"}).mode(), Mode::kHelp);
    EXPECT_EQ(parse_args(Args{"HELP"}).mode(), Mode::kHelp);
    EXPECT_EQ(parse_args(Args{"predict", "conf=7", "foo=1", "--help"}).mode(), Mode::kHelp);
}

TEST(CliModes, ModeMayFollowPairs) {
    const Options opts = parse_args(Args{"model=a.engine", "predict"});
    EXPECT_EQ(opts.mode(), Mode::kPredict);
    EXPECT_EQ(opts.get_string("model"), "a.engine");
}

TEST(CliModes, UnknownMode) {
    EXPECT_EQ(parse_error({"foo"}),
              "'foo' is not a valid kestrel mode. Valid modes: export, predict, val, benchmark, help");
    EXPECT_EQ(parse_error({"train", "model=a.onnx"}),
              "'train' is not a valid kestrel mode. Valid modes: export, predict, val, benchmark, help");
}

TEST(CliModes, UnknownModeSuggestsClosest) {
    EXPECT_EQ(
        parse_error({"predcit"}),
        "'predcit' is not a valid kestrel mode. Similar: 'predict'. Valid modes: export, predict, val, benchmark, "
        "help");
}

TEST(CliModes, MissingMode) {
    EXPECT_EQ(parse_error({"model=a.engine", "conf=0.5"}),
              "missing kestrel mode. Valid modes: export, predict, val, benchmark, help");
}

TEST(CliModes, TwoModes) {
    EXPECT_EQ(parse_error({"predict", "val"}), "only one kestrel mode may be given, got 'predict' and 'val'");
}

TEST(CliModes, BareKeyNeedsEquals) {
    EXPECT_EQ(parse_error({"predict", "half"}),
              "'half' is a valid kestrel argument but is missing an '=' sign to set its value, i.e. try 'half=False'");
    EXPECT_EQ(parse_error({"val", "conf"}),
              "'conf' is a valid kestrel argument but is missing an '=' sign to set its value, i.e. try 'conf=0.001'");
}

TEST(CliModes, BareOptionalKeyNeedsEquals) {
    EXPECT_EQ(parse_error({"predict", "model"}),
              "'model' is a valid kestrel argument but is missing an '=' sign to set its value");
}

TEST(CliModes, BareUnknownTokenAfterMode) {
    EXPECT_EQ(parse_error({"predict", "xyz"}),
              std::string("'xyz' is not a valid kestrel argument. ") + kValidArguments);
}

// ---------------------------------------------------------------------------------------------------------------
// Keys, merging and repetition

TEST(CliArgs, UnknownKeyListsAllValidArguments) {
    EXPECT_EQ(value_error("xyz=1"), std::string("'xyz' is not a valid kestrel argument. ") + kValidArguments);
}

TEST(CliArgs, UnknownKeySuggestsClosestWithinTwoEdits) {
    EXPECT_EQ(value_error("cnf=0.5"),
              std::string("'cnf' is not a valid kestrel argument. Similar: 'conf'. ") + kValidArguments);
    EXPECT_EQ(value_error("imgsze=640"),
              std::string("'imgsze' is not a valid kestrel argument. Similar: 'imgsz'. ") + kValidArguments);
    // Two edits is still close enough: foo -> iou.
    EXPECT_EQ(value_error("foo=1"),
              std::string("'foo' is not a valid kestrel argument. Similar: 'iou'. ") + kValidArguments);
    // Three edits away from every key: no suggestion.
    EXPECT_EQ(value_error("epochs=3"), std::string("'epochs' is not a valid kestrel argument. ") + kValidArguments);
}

TEST(CliArgs, KeysAreCaseSensitive) {
    EXPECT_EQ(value_error("Conf=0.5"),
              std::string("'Conf' is not a valid kestrel argument. Similar: 'conf'. ") + kValidArguments);
}

TEST(CliArgs, MissingValue) {
    EXPECT_EQ(value_error("conf="), "missing 'conf' value, i.e. 'conf=0.25'");
    EXPECT_EQ(value_error("model="), "missing 'model' value");
}

TEST(CliArgs, MergesEqualsSplitOverTokens) {
    EXPECT_DOUBLE_EQ(parse_args(Args{"predict", "conf", "=", "0.5"}).get_float("conf"), 0.5);
    EXPECT_DOUBLE_EQ(parse_args(Args{"predict", "conf=", "0.5"}).get_float("conf"), 0.5);
    EXPECT_DOUBLE_EQ(parse_args(Args{"predict", "conf", "=0.5"}).get_float("conf"), 0.5);
    const Options opts = parse_args(Args{"predict", "conf", "=", "0.5", "iou=", "0.6", "max_det", "=10"});
    EXPECT_DOUBLE_EQ(opts.get_float("conf"), 0.5);
    EXPECT_DOUBLE_EQ(opts.get_float("iou"), 0.6);
    EXPECT_EQ(opts.get_int("max_det"), 10);
}

TEST(CliArgs, KeyEqualsFollowedByPairIsNotMerged) {
    // As merge_equals_args: 'conf=' is left alone when the next token has its own '='.
    EXPECT_EQ(parse_error({"predict", "conf=", "iou=0.5"}), "missing 'conf' value, i.e. 'conf=0.25'");
}

TEST(CliArgs, JoinsBracketedListsSplitByTheShell) {
    EXPECT_EQ(parse_args(Args{"predict", "imgsz=[640,", "480]"}).get_imgsz(), (std::array<int, 2>{640, 480}));
    EXPECT_EQ(parse_args(Args{"predict", "classes=[0,", "2,", "5]"}).get_int_list("classes"),
              (std::vector<int>{0, 2, 5}));
}

TEST(CliArgs, WhitespaceAroundKeyAndValueIsIgnored) {
    EXPECT_DOUBLE_EQ(parse_args(Args{"predict", " conf = 0.5 "}).get_float("conf"), 0.5);
}

TEST(CliArgs, QuotedStringsAreUnquoted) {
    const Options opts = parse_args(Args{"predict", "name='exp'", "model=\"my model.onnx\""});
    EXPECT_EQ(opts.get_string("name"), "exp");
    EXPECT_EQ(opts.get_string("model"), "my model.onnx");
}

TEST(CliArgs, LastValueWinsAndUserArgsKeepFirstPosition) {
    const Options opts = parse_args(Args{"predict", "conf=0.3", "iou=0.5", "conf=0.6"});
    EXPECT_DOUBLE_EQ(opts.get_float("conf"), 0.6);
    using Pairs = std::vector<std::pair<std::string, std::string>>;
    EXPECT_EQ(opts.user_args(), (Pairs{{"conf", "0.6"}, {"iou", "0.5"}}));
}

TEST(CliArgs, UserArgsAreNormalized) {
    const Options opts = parse_args(Args{"predict", "half=1", "device=0", "imgsz=640,480", "conf=.5", "classes=[3]",
                                         "trt_quant_algo=minmax_calibration", "model=a.engine", "line_width=None"});
    using Pairs = std::vector<std::pair<std::string, std::string>>;
    EXPECT_EQ(opts.user_args(), (Pairs{{"half", "True"},
                                       {"device", "cuda:0"},
                                       {"imgsz", "[640, 480]"},
                                       {"conf", "0.5"},
                                       {"classes", "3"},
                                       {"trt_quant_algo", "MINMAX_CALIBRATION"},
                                       {"model", "a.engine"},
                                       {"line_width", "None"}}));
}

TEST(CliArgs, ArgcArgvSkipsProgramName) {
    const char* argv[] = {"kestrel", "val", "conf=0.01", "batch=4"};
    const Options opts = parse_args(4, argv);
    EXPECT_EQ(opts.mode(), Mode::kVal);
    EXPECT_DOUBLE_EQ(opts.get_float("conf"), 0.01);
    EXPECT_EQ(opts.get_int("batch"), 4);
    // main's plain char** converts too.
    char program[] = "kestrel";
    char mode[] = "export";
    char* mutable_argv[] = {program, mode};
    EXPECT_EQ(parse_args(2, mutable_argv).mode(), Mode::kExport);
}

// ---------------------------------------------------------------------------------------------------------------
// Defaults, is_set and has_value

TEST(CliDefaults, PredictDefaults) {
    const Options opts = parse_args(Args{"predict"});
    EXPECT_EQ(opts.get_imgsz(), (std::array<int, 2>{640, 640}));
    EXPECT_EQ(opts.get_int("batch"), 1);
    EXPECT_DOUBLE_EQ(opts.get_float("conf"), 0.25);
    EXPECT_DOUBLE_EQ(opts.get_float("iou"), 0.7);
    EXPECT_EQ(opts.get_int("max_det"), 300);
    EXPECT_DOUBLE_EQ(opts.get_float("workspace"), 4.0);
    EXPECT_DOUBLE_EQ(opts.get_float("fraction"), 1.0);
    EXPECT_EQ(opts.get_string("format"), "engine");
    EXPECT_EQ(opts.get_string("split"), "val");
    EXPECT_EQ(opts.get_string("trt_quant_algo"), "ENTROPY_CALIBRATION_2");
    for (const char* key : {"save", "show_labels", "show_conf", "show_boxes", "verbose", "plots"}) {
        EXPECT_TRUE(opts.get_bool(key)) << key;
    }
    for (const char* key : {"half", "int8", "dynamic", "agnostic_nms", "save_txt", "save_conf", "save_json", "exist_ok",
                            "sensitivity", "profile"}) {
        EXPECT_FALSE(opts.get_bool(key)) << key;
    }
    for (const char* key :
         {"model", "data", "device", "classes", "source", "line_width", "project", "name", "timing_cache"}) {
        EXPECT_FALSE(opts.has_value(key)) << key;
    }
    EXPECT_TRUE(opts.user_args().empty());
}

TEST(CliDefaults, ModeDependentDefaults) {
    const Options val = parse_args(Args{"val"});
    EXPECT_DOUBLE_EQ(val.get_float("conf"), 0.001);
    EXPECT_EQ(val.get_int("batch"), 16);
    const Options exp = parse_args(Args{"export"});
    EXPECT_FALSE(exp.has_value("conf"));
    EXPECT_EQ(exp.get_int("batch"), 1);
    EXPECT_FALSE(parse_args(Args{"benchmark"}).has_value("conf"));
}

TEST(CliDefaults, IsSetOnlyForGivenKeys) {
    const Options opts = parse_args(Args{"predict", "conf=0.25", "model=a.engine"});
    EXPECT_TRUE(opts.is_set("conf"));
    EXPECT_TRUE(opts.is_set("model"));
    EXPECT_FALSE(opts.is_set("iou"));
    EXPECT_TRUE(opts.has_value("iou"));
}

TEST(CliDefaults, NoneMeansUnset) {
    for (const char* none : {"None", "none", "null", "NONE"}) {
        const Options opts = parse_args(Args{"predict", std::string("conf=") + none, std::string("model=") + none});
        EXPECT_FALSE(opts.is_set("conf")) << none;
        EXPECT_DOUBLE_EQ(opts.get_float("conf"), 0.25) << none;  // back to the mode default
        EXPECT_FALSE(opts.has_value("model")) << none;
    }
    // A later None undoes an earlier value.
    const Options opts = parse_args(Args{"predict", "classes=1", "classes=None"});
    EXPECT_FALSE(opts.is_set("classes"));
    EXPECT_FALSE(opts.has_value("classes"));
}

TEST(CliDefaults, NoneIsInvalidForKeysWithoutOptionalValue) {
    EXPECT_EQ(value_error("half=None"), "'half=None' is an invalid value: expected True or False");
    EXPECT_EQ(value_error("imgsz=None"), "'imgsz=None' is an invalid value: expected an integer or [h, w]");
}

// ---------------------------------------------------------------------------------------------------------------
// Typed values

TEST(CliValues, Booleans) {
    for (const char* t : {"True", "true", "TRUE", "1", "'True'"}) {
        EXPECT_TRUE(parse_args(Args{"export", std::string("half=") + t}).get_bool("half")) << t;
    }
    for (const char* f : {"False", "false", "FaLsE", "0"}) {
        EXPECT_FALSE(parse_args(Args{"predict", std::string("save=") + f}).get_bool("save")) << f;
    }
    EXPECT_EQ(value_error("half=yes"), "'half=yes' is an invalid value: expected True or False");
    EXPECT_EQ(value_error("save=2"), "'save=2' is an invalid value: expected True or False");
}

TEST(CliValues, Integers) {
    EXPECT_EQ(parse_args(Args{"predict", "max_det=50"}).get_int("max_det"), 50);
    EXPECT_EQ(parse_args(Args{"predict", "line_width=3"}).get_int("line_width"), 3);
    EXPECT_EQ(value_error("max_det=1.5"), "'max_det=1.5' is an invalid value: expected an integer");
    EXPECT_EQ(value_error("max_det=ten"), "'max_det=ten' is an invalid value: expected an integer");
    EXPECT_EQ(value_error("max_det=99999999999"), "'max_det=99999999999' is an invalid value: expected an integer");
}

TEST(CliValues, Floats) {
    EXPECT_DOUBLE_EQ(parse_args(Args{"predict", "conf=.5"}).get_float("conf"), 0.5);
    EXPECT_DOUBLE_EQ(parse_args(Args{"predict", "conf=1e-3"}).get_float("conf"), 0.001);
    EXPECT_DOUBLE_EQ(parse_args(Args{"export", "workspace=2"}).get_float("workspace"), 2.0);
    EXPECT_EQ(value_error("workspace=big"), "'workspace=big' is an invalid value: expected a number");
    EXPECT_EQ(value_error("conf=nan"), "'conf=nan' is an invalid value: expected a number");
    EXPECT_EQ(value_error("conf=inf"), "'conf=inf' is an invalid value: expected a number");
}

TEST(CliValues, Ranges) {
    EXPECT_EQ(value_error("conf=2"), "'conf=2' is an invalid value: must be between 0.0 and 1.0");
    EXPECT_EQ(value_error("conf=-0.1"), "'conf=-0.1' is an invalid value: must be between 0.0 and 1.0");
    EXPECT_EQ(value_error("iou=1.01"), "'iou=1.01' is an invalid value: must be between 0.0 and 1.0");
    EXPECT_EQ(value_error("fraction=1.5"), "'fraction=1.5' is an invalid value: must be between 0.0 and 1.0");
    EXPECT_EQ(value_error("batch=0"), "'batch=0' is an invalid value: must be at least 1");
    EXPECT_EQ(value_error("batch=-1"), "'batch=-1' is an invalid value: must be at least 1");
    EXPECT_EQ(value_error("max_det=0"), "'max_det=0' is an invalid value: must be at least 1");
    EXPECT_EQ(value_error("line_width=0"), "'line_width=0' is an invalid value: must be at least 1");
    EXPECT_EQ(value_error("workspace=0"), "'workspace=0' is an invalid value: must be greater than 0");
    EXPECT_EQ(value_error("imgsz=0"), "'imgsz=0' is an invalid value: must be at least 1");
    EXPECT_EQ(value_error("imgsz=[640,-480]"), "'imgsz=[640,-480]' is an invalid value: must be at least 1");
    // Bounds are inclusive.
    const Options opts = parse_args(Args{"predict", "conf=0", "iou=1", "fraction=0.0"});
    EXPECT_DOUBLE_EQ(opts.get_float("conf"), 0.0);
    EXPECT_DOUBLE_EQ(opts.get_float("iou"), 1.0);
}

TEST(CliValues, ImgszForms) {
    const auto imgsz = [](const std::string& value) {
        return parse_args(Args{"predict", "imgsz=" + value}).get_imgsz();
    };
    using Hw = std::array<int, 2>;
    EXPECT_EQ(imgsz("320"), (Hw{320, 320}));
    EXPECT_EQ(imgsz("[640,480]"), (Hw{640, 480}));
    EXPECT_EQ(imgsz("[640, 480]"), (Hw{640, 480}));
    EXPECT_EQ(imgsz("640,480"), (Hw{640, 480}));
    EXPECT_EQ(imgsz("(384, 640)"), (Hw{384, 640}));
    EXPECT_EQ(imgsz("[512]"), (Hw{512, 512}));
}

TEST(CliValues, ImgszErrors) {
    EXPECT_EQ(value_error("imgsz=abc"), "'imgsz=abc' is an invalid value: expected an integer or [h, w]");
    EXPECT_EQ(value_error("imgsz=[1,2,3]"), "'imgsz=[1,2,3]' is an invalid value: expected an integer or [h, w]");
    EXPECT_EQ(value_error("imgsz=640.5"), "'imgsz=640.5' is an invalid value: expected an integer or [h, w]");
    EXPECT_EQ(value_error("imgsz=[640,480"), "'imgsz=[640,480' is an invalid value: expected an integer or [h, w]");
    EXPECT_EQ(value_error("imgsz=[]"), "'imgsz=[]' is an invalid value: expected an integer or [h, w]");
}

TEST(CliValues, ClassesForms) {
    const auto classes = [](const std::string& value) {
        return parse_args(Args{"predict", "classes=" + value}).get_int_list("classes");
    };
    EXPECT_EQ(classes("0"), (std::vector<int>{0}));
    EXPECT_EQ(classes("[0,2]"), (std::vector<int>{0, 2}));
    EXPECT_EQ(classes("0,2"), (std::vector<int>{0, 2}));
    EXPECT_EQ(classes("[0, 2, 7]"), (std::vector<int>{0, 2, 7}));
    EXPECT_EQ(parse_args(Args{"predict", "classes=5"}).get_int("classes"), 5);
}

TEST(CliValues, ClassesErrors) {
    const std::string expected = "is an invalid value: expected an integer or a list of integers like [0, 2]";
    EXPECT_EQ(value_error("classes=person"), "'classes=person' " + expected);
    EXPECT_EQ(value_error("classes=[]"), "'classes=[]' " + expected);
    EXPECT_EQ(value_error("classes=0,,2"), "'classes=0,,2' " + expected);
    EXPECT_EQ(value_error("classes=-1"), "'classes=-1' is an invalid value: must be non-negative");
}

TEST(CliValues, BatchListOnlyInBenchmark) {
    const Options bench = parse_args(Args{"benchmark", "batch=1,8,32"});
    EXPECT_EQ(bench.get_int_list("batch"), (std::vector<int>{1, 8, 32}));
    EXPECT_EQ(parse_args(Args{"benchmark", "batch=[1, 8]"}).get_int_list("batch"), (std::vector<int>{1, 8}));
    EXPECT_EQ(parse_args(Args{"benchmark"}).get_int_list("batch"), (std::vector<int>{1}));
    EXPECT_EQ(parse_args(Args{"predict", "batch=[8]"}).get_int("batch"), 8);
    EXPECT_EQ(value_error("batch=1,8"),
              "'batch=1,8' is an invalid value: a list of values is only valid in benchmark mode");
    EXPECT_EQ(parse_error({"benchmark", "batch=1,0"}), "'batch=1,0' is an invalid value: must be at least 1");
}

TEST(CliValues, DeviceNormalization) {
    const auto device = [](const std::string& value) {
        return parse_args(Args{"predict", "device=" + value}).get_string("device");
    };
    EXPECT_EQ(device("cpu"), "cpu");
    EXPECT_EQ(device("CPU"), "cpu");
    EXPECT_EQ(device("0"), "cuda:0");
    EXPECT_EQ(device("1"), "cuda:1");
    EXPECT_EQ(device("cuda"), "cuda:0");
    EXPECT_EQ(device("cuda:0"), "cuda:0");
    EXPECT_EQ(device("CUDA:2"), "cuda:2");
    for (const char* bad : {"mps", "0,1", "-1", "cuda:x", "gpu"}) {
        EXPECT_EQ(value_error(std::string("device=") + bad),
                  std::string("'device=") + bad + "' is an invalid value: expected cpu, a GPU index like 0, or cuda:0");
    }
}

TEST(CliValues, Choices) {
    for (const char* algo :
         {"MINMAX_CALIBRATION", "ENTROPY_CALIBRATION", "ENTROPY_CALIBRATION_2", "LEGACY_CALIBRATION"}) {
        EXPECT_EQ(parse_args(Args{"export", std::string("trt_quant_algo=") + algo}).get_string("trt_quant_algo"), algo);
    }
    EXPECT_EQ(parse_args(Args{"export", "trt_quant_algo=entropy_calibration"}).get_string("trt_quant_algo"),
              "ENTROPY_CALIBRATION");
    EXPECT_EQ(parse_error({"export", "trt_quant_algo=KL"}),
              "'trt_quant_algo=KL' is an invalid value: expected one of MINMAX_CALIBRATION, ENTROPY_CALIBRATION, "
              "ENTROPY_CALIBRATION_2, LEGACY_CALIBRATION");
    EXPECT_EQ(parse_args(Args{"export", "format=ENGINE"}).get_string("format"), "engine");
    EXPECT_EQ(parse_error({"export", "format=onnx"}), "'format=onnx' is an invalid value: expected one of engine");
    EXPECT_EQ(parse_args(Args{"val", "split=test"}).get_string("split"), "test");
    EXPECT_EQ(parse_error({"val", "split=holdout"}),
              "'split=holdout' is an invalid value: expected one of val, test, train");
}

TEST(CliValues, Strings) {
    const Options opts = parse_args(
        Args{"predict", "source=images/", "project=out", "name=run", "timing_cache=t.cache", "data=coco.yaml"});
    EXPECT_EQ(opts.get_string("source"), "images/");
    EXPECT_EQ(opts.get_string("project"), "out");
    EXPECT_EQ(opts.get_string("name"), "run");
    EXPECT_EQ(opts.get_string("timing_cache"), "t.cache");
    EXPECT_EQ(opts.get_string("data"), "coco.yaml");
}

// ---------------------------------------------------------------------------------------------------------------
// Getter misuse (programming errors) also throws kestrel::Error

TEST(CliGetters, Misuse) {
    const Options opts = parse_args(Args{"benchmark", "batch=1,8"});
    EXPECT_EQ(thrown_by([&] { opts.get_float("nope"); }), "unknown option 'nope'");
    EXPECT_EQ(thrown_by([&] { opts.get_bool("iou"); }), "option 'iou' is not a boolean");
    EXPECT_EQ(thrown_by([&] { opts.get_float("half"); }), "option 'half' is not a number");
    EXPECT_EQ(thrown_by([&] { opts.get_string("iou"); }), "option 'iou' is not a string");
    EXPECT_EQ(thrown_by([&] { opts.get_int("batch"); }), "option 'batch' is not a single integer");
    EXPECT_EQ(thrown_by([&] { opts.get_int_list("imgsz"); }), "option 'imgsz' is not an integer list");
    EXPECT_EQ(thrown_by([&] { opts.get_string("model"); }), "option 'model' has no value (None)");
    EXPECT_EQ(thrown_by([&] { opts.is_set("nope"); }), "unknown option 'nope'");
    EXPECT_EQ(thrown_by([&] { opts.has_value("nope"); }), "unknown option 'nope'");
}

// ---------------------------------------------------------------------------------------------------------------
// Help text

TEST(CliHelp, ListsSyntaxModesAndEveryKeyWithDefault) {
    const std::string text = help_text();
    EXPECT_NE(text.find("Usage: kestrel MODE ARGS"), std::string::npos);
    EXPECT_NE(text.find("export, predict, val, benchmark, help"), std::string::npos);
    EXPECT_NE(text.find("kestrel benchmark model=yolov8n.onnx batch=1,8,32"), std::string::npos);

    // Every valid argument has a "    key=default  help" line.
    std::string keys = std::string(kValidArguments).substr(std::string("Valid arguments: ").size());
    std::istringstream list(keys);
    for (std::string key; std::getline(list, key, ',');) {
        if (key.front() == ' ') key.erase(0, 1);
        EXPECT_NE(text.find("\n    " + key + "="), std::string::npos) << key;
    }
    EXPECT_NE(text.find("    imgsz=640 "), std::string::npos);
    EXPECT_NE(text.find("    trt_quant_algo=ENTROPY_CALIBRATION_2 "), std::string::npos);
    EXPECT_NE(text.find("object confidence threshold for detection (predict: 0.25, val: 0.001)"), std::string::npos);
    EXPECT_NE(text.find("(val: 16)"), std::string::npos);
    EXPECT_NE(text.find("(MINMAX_CALIBRATION, ENTROPY_CALIBRATION, ENTROPY_CALIBRATION_2, LEGACY_CALIBRATION)"),
              std::string::npos);
}

// ---------------------------------------------------------------------------------------------------------------
// Run directories

class RunDirTest : public ::testing::Test {
   protected:
    void SetUp() override {
        previous_ = fs::current_path();
        root_ = fs::temp_directory_path() / ("kestrel_run_dir_" + std::to_string(::getpid()) + "_" +
                                             ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(root_);
        fs::create_directories(root_);
        fs::current_path(root_);
    }
    void TearDown() override {
        fs::current_path(previous_);
        fs::remove_all(root_);
    }

    fs::path previous_;
    fs::path root_;
};

TEST_F(RunDirTest, DefaultProjectAndNameIncrement) {
    EXPECT_EQ(run_dir("", "detect", "predict", "", false), "runs/detect/predict");
    EXPECT_EQ(run_dir("", "detect", "predict", "", false), "runs/detect/predict2");
    EXPECT_EQ(run_dir("", "detect", "predict", "", false), "runs/detect/predict3");
    EXPECT_EQ(run_dir("", "pose", "val", "", false), "runs/pose/val");
    EXPECT_TRUE(fs::is_directory("runs/detect/predict3"));
    EXPECT_TRUE(fs::is_directory("runs/pose/val"));
}

TEST_F(RunDirTest, ExistOkReusesTheDirectory) {
    EXPECT_EQ(run_dir("", "detect", "val", "", true), "runs/detect/val");
    EXPECT_EQ(run_dir("", "detect", "val", "", true), "runs/detect/val");
    EXPECT_FALSE(fs::exists("runs/detect/val2"));
}

TEST_F(RunDirTest, ProjectAndName) {
    const std::string project = (root_ / "out").string();
    EXPECT_EQ(run_dir(project, "detect", "predict", "exp", false), project + "/exp");
    EXPECT_EQ(run_dir(project, "detect", "predict", "exp", false), project + "/exp2");
}

TEST_F(RunDirTest, TakesTheFirstFreeNumberAndSkipsFiles) {
    fs::create_directories("runs/detect/predict");
    std::ofstream("runs/detect/predict2") << "a file, not a run";
    fs::create_directories("runs/detect/predict4");
    EXPECT_EQ(run_dir("", "detect", "predict", "", false), "runs/detect/predict3");
    EXPECT_EQ(run_dir("", "detect", "predict", "", false), "runs/detect/predict5");
}

TEST_F(RunDirTest, ExistOkOnAFileFails) {
    fs::create_directories("runs/detect");
    std::ofstream("runs/detect/predict") << "a file";
    const std::string message = thrown_by([] { run_dir("", "detect", "predict", "", true); });
    EXPECT_EQ(message.rfind("cannot create run directory 'runs/detect/predict': ", 0), 0u) << message;
}

// ---------------------------------------------------------------------------------------------------------------
// YOLO .txt labels

// 640x480 image, box (100, 50)-(300, 250): centre (200, 150), size 200x200, so
// xc = 200/640 = 0.3125, yc = 150/480 = 0.3125, w = 200/640 = 0.3125, h = 200/480 = 0.41666.. -> %g 0.416667.
const Det kBox{.x1 = 100, .y1 = 50, .x2 = 300, .y2 = 250, .score = 0.9f, .cls = 0, .kpts = {}};

TEST(LabelsTxt, DetectLine) {
    EXPECT_EQ(labels_txt_line(kBox, 640, 480, false), "0 0.3125 0.3125 0.3125 0.416667");
    // float 0.9 is 0.89999997..., which %g prints as 0.9.
    EXPECT_EQ(labels_txt_line(kBox, 640, 480, true), "0 0.3125 0.3125 0.3125 0.416667 0.9");
}

TEST(LabelsTxt, SixSignificantDigitsAndExponents) {
    // Box (0, 0)-(0.01, 0.02) in 640x480: xc = 0.005/640 = 7.8125e-06, yc = 0.01/480 = 2.08333e-05,
    // w = 0.01/640 = 1.5625e-05, h = 0.02/480 = 4.16667e-05; score 0.87654321 -> 0.876543; class 17.
    const Det tiny{.x1 = 0, .y1 = 0, .x2 = 0.01f, .y2 = 0.02f, .score = 0.87654321f, .cls = 17, .kpts = {}};
    EXPECT_EQ(labels_txt_line(tiny, 640, 480, true), "17 7.8125e-06 2.08333e-05 1.5625e-05 4.16667e-05 0.876543");
}

TEST(LabelsTxt, PoseLine) {
    Det pose = kBox;
    pose.score = 0.8f;
    // (320, 240) is the image centre: 0.5 0.5; the second point has visibility < 0.5, so Ultralytics zeroes it.
    pose.kpts = {{320.0f, 240.0f, 0.9f}, {64.0f, 48.0f, 0.3f}};
    EXPECT_EQ(labels_txt_line(pose, 640, 480, false), "0 0.3125 0.3125 0.3125 0.416667 0.5 0.5 0.9 0 0 0.3");
    EXPECT_EQ(labels_txt_line(pose, 640, 480, true), "0 0.3125 0.3125 0.3125 0.416667 0.5 0.5 0.9 0 0 0.3 0.8");
}

TEST(LabelsTxt, FileContents) {
    const Det whole{.x1 = 160, .y1 = 120, .x2 = 480, .y2 = 360, .score = 0.5f, .cls = 2, .kpts = {}};
    EXPECT_EQ(labels_txt({kBox, whole}, 640, 480, false), "0 0.3125 0.3125 0.3125 0.416667\n2 0.5 0.5 0.5 0.5\n");
    EXPECT_EQ(labels_txt({}, 640, 480, false), "");
}

TEST(LabelsTxt, RejectsEmptyImage) {
    EXPECT_EQ(thrown_by([] { labels_txt_line(kBox, 0, 480, false); }), "invalid image size 0x480");
}

// ---------------------------------------------------------------------------------------------------------------
// COCO JSON records

TEST(JsonRecords, RoundsLikePython) {
    // x1 = 10.0625 and w = 100.375 are exact in binary; round(10.0625, 3) is a tie that Python rounds to even:
    // 10.062. y1 = 20.98765 -> 20.988, h = 220.25 - 20.98765 = 199.26235 -> 199.262, score 0.87654321 -> 0.87654.
    const Det det{
        .x1 = 10.0625f, .y1 = 20.98765f, .x2 = 110.4375f, .y2 = 220.25f, .score = 0.87654321f, .cls = 1, .kpts = {}};
    const nlohmann::json records = json_records("images/000000000139.jpg", {det});
    ASSERT_EQ(records.size(), 1u);
    const nlohmann::json& r = records[0];
    EXPECT_EQ(r["image_id"], 139);
    EXPECT_TRUE(r["image_id"].is_number_integer());
    EXPECT_EQ(r["category_id"], 1);
    EXPECT_EQ(r["bbox"].dump(), "[10.062,20.988,100.375,199.262]");
    EXPECT_EQ(r["score"].dump(), "0.87654");
    EXPECT_FALSE(r.contains("keypoints"));
}

TEST(JsonRecords, ScoreRounding) {
    const Det det{.x1 = 0, .y1 = 0, .x2 = 1, .y2 = 1, .score = 0.123456f, .cls = 0, .kpts = {}};
    EXPECT_EQ(json_records("a.jpg", {det})[0]["score"].dump(), "0.12346");
}

TEST(JsonRecords, ImageIdFromStem) {
    const Det det = kBox;
    EXPECT_EQ(json_records("data/bus.jpg", {det})[0]["image_id"], "bus");
    EXPECT_EQ(json_records("data/0012b.jpg", {det})[0]["image_id"], "0012b");
    EXPECT_EQ(json_records("7.png", {det})[0]["image_id"], 7);
    EXPECT_EQ(json_records("a/b.c/42.jpeg", {det})[0]["image_id"], 42);
}

TEST(JsonRecords, ClassMap) {
    Det det = kBox;
    det.cls = 11;
    const std::vector<int> coco80_to_91 = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13};
    EXPECT_EQ(json_records("1.jpg", {det}, coco80_to_91)[0]["category_id"], 13);
    det.cls = 12;
    EXPECT_EQ(thrown_by([&] { json_records("1.jpg", {det}, coco80_to_91); }),
              "class 12 is outside the class map of 12 classes");
}

TEST(JsonRecords, PoseKeypointsUnrounded) {
    Det det = kBox;
    det.kpts = {{320.5f, 240.25f, 0.9f}, {1.0f / 3.0f, 2.0f, 0.1f}};
    const nlohmann::json r = json_records("5.jpg", {det})[0];
    const std::vector<double> expected = {
        320.5, 240.25, static_cast<double>(0.9f), static_cast<double>(1.0f / 3.0f), 2.0, static_cast<double>(0.1f)};
    EXPECT_EQ(r["keypoints"].get<std::vector<double>>(), expected);
    EXPECT_EQ(r["bbox"].dump(), "[100.0,50.0,200.0,200.0]");
    EXPECT_EQ(r["score"].dump(), "0.9");
}

TEST(JsonRecords, NoDetectionsGiveAnEmptyArray) {
    const nlohmann::json records = json_records("1.jpg", {});
    EXPECT_TRUE(records.is_array());
    EXPECT_TRUE(records.empty());
}

// ---------------------------------------------------------------------------------------------------------------
// Atomic writes

TEST_F(RunDirTest, WriteFileAtomic) {
    write_file_atomic("labels.txt", "0 0.5 0.5 0.5 0.5\n");
    write_file_atomic("labels.txt", "1 0.5 0.5 0.5 0.5\n");  // replaces the old contents
    std::ifstream in("labels.txt");
    std::stringstream contents;
    contents << in.rdbuf();
    EXPECT_EQ(contents.str(), "1 0.5 0.5 0.5 0.5\n");
    EXPECT_FALSE(fs::exists("labels.txt.tmp"));
}

TEST_F(RunDirTest, WriteFileAtomicReportsFailure) {
    EXPECT_EQ(thrown_by([] { write_file_atomic("missing/labels.txt", "x"); }),
              "cannot write 'missing/labels.txt.tmp': No such file or directory");
    fs::create_directories("dir");
    // A directory cannot be replaced by a file: the rename fails and the temporary file is removed.
    const std::string message = thrown_by([] { write_file_atomic("dir", "x"); });
    EXPECT_EQ(message.rfind("cannot rename 'dir.tmp' to 'dir': ", 0), 0u) << message;
    EXPECT_FALSE(fs::exists("dir.tmp"));
}

}  // namespace
}  // namespace kestrel::cli
