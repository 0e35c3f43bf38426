// Reading Ultralytics' metadata_props (Python literals as `yolo export` writes them) into ModelInfo.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "kestrel/engine.h"

namespace kestrel::api {

// Parses "{0: 'person', 1: 'bicycle'}" into names by id (ids must be 0..n-1).
std::vector<std::string> parse_names(const std::string& literal);
// Parses "[640, 640]" / "[17, 3]" / "640" into integers.
std::vector<int> parse_int_list(const std::string& literal);

// Fills task, names, stride, imgsz and kpt_shape from the metadata (with the task inferred from the
// output shapes when the metadata lacks it).
void fill_from_metadata(const std::map<std::string, std::string>& metadata, ModelInfo* info);

}  // namespace kestrel::api
