#include "api/model_info.h"

#include <cctype>

#include "core/error.h"

namespace kestrel::api {

std::vector<std::string> parse_names(const std::string& s) {
    std::vector<std::string> names;
    size_t i = 0;
    auto skip_ws = [&] {
        while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
    };
    skip_ws();
    KS_CHECK(i < s.size() && s[i] == '{', "metadata 'names' is not a dict literal");
    ++i;
    while (true) {
        skip_ws();
        if (i < s.size() && s[i] == '}') break;
        size_t start = i;
        while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
        KS_CHECK(i > start && i - start < 9, "metadata 'names': expected a class id");
        size_t id = std::stoul(s.substr(start, i - start));
        skip_ws();
        KS_CHECK(i < s.size() && s[i] == ':', "metadata 'names': expected ':'");
        ++i;
        skip_ws();
        KS_CHECK(i < s.size() && (s[i] == '\'' || s[i] == '"'), "metadata 'names': expected a quoted name");
        char q = s[i++];
        std::string name;
        while (i < s.size() && s[i] != q) {
            if (s[i] == '\\' && i + 1 < s.size()) ++i;
            name += s[i++];
        }
        KS_CHECK(i < s.size(), "metadata 'names': unterminated string");
        ++i;
        KS_CHECK(id == names.size(), "metadata 'names': class ids must be 0..n-1 in order");
        names.push_back(name);
        skip_ws();
        if (i < s.size() && s[i] == ',') ++i;
    }
    return names;
}

std::vector<int> parse_int_list(const std::string& s) {
    std::vector<int> v;
    std::string cur;
    for (char c : s) {
        if (std::isdigit(static_cast<unsigned char>(c)) || c == '-') {
            cur += c;
        } else if (!cur.empty()) {
            v.push_back(std::stoi(cur));
            cur.clear();
        }
    }
    if (!cur.empty()) v.push_back(std::stoi(cur));
    return v;
}

void fill_from_metadata(const std::map<std::string, std::string>& md, ModelInfo* info) {
    auto get = [&](const char* k) -> std::string {
        auto it = md.find(k);
        return it == md.end() ? "" : it->second;
    };
    try {
        info->task = get("task");
        if (!get("names").empty()) info->names = parse_names(get("names"));
        if (!get("stride").empty()) info->stride = parse_int_list(get("stride")).at(0);
        if (!get("kpt_shape").empty()) info->kpt_shape = parse_int_list(get("kpt_shape"));
    } catch (const std::exception& e) {
        KS_FAIL("cannot read the model's Ultralytics metadata: ", e.what());
    }
    if (info->task.empty()) {
        // Without metadata: a 2-D output is a classifier, two outputs a segmenter, else a detector.
        info->task = info->outputs.size() == 2 ? "segment" : info->outputs.at(0).shape.size() == 2 ? "classify" : "detect";
    }
    KS_CHECK(info->task == "detect" || info->task == "segment" || info->task == "pose" || info->task == "obb" ||
                 info->task == "classify",
             "unknown task '", info->task, "' in the model metadata");
}

}  // namespace kestrel::api
