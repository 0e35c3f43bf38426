// `kestrel benchmark`'s end-to-end figure for CUDA detect engines: image files (read into memory
// first) -> boxes on the host through api::CudaDetectPipeline (nvJPEG decode, letterbox kernel,
// inference, GPU NMS), in images/s of wall time per batch size.
#pragma once

#include <string>
#include <vector>

#include "cli/options.h"
#include "kestrel/engine.h"

namespace kestrel::cli {

// Prints the end-to-end table for the images of `source=` (a file or folder); without source= it
// prints how to ask for it. Engines other than CUDA detect engines print why there is none.
void benchmark_end_to_end(const Options& opts, const Engine& engine, const std::vector<int>& batches);

}  // namespace kestrel::cli
