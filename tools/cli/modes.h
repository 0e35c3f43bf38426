// The CLI's modes; each returns the process exit code and throws kestrel::Error on bad input.
#pragma once

#include "cli/options.h"

namespace kestrel::cli {

int run_export(const Options& opts);
int run_predict(const Options& opts);
int run_benchmark(const Options& opts);
int run_val(const Options& opts);

}  // namespace kestrel::cli
