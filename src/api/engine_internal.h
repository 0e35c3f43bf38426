// What the library's own pipelines need of a loaded Engine beyond the public API.
#pragma once

#include <memory>

#include "kestrel/engine.h"

namespace kestrel::runtime {
class CudaModel;
}

namespace kestrel::api {

// The GPU side of a CUDA engine (weights on the device, tuned tactics), shared with every session of
// the engine; null for a CPU engine.
std::shared_ptr<const runtime::CudaModel> cuda_model(const Engine& engine);

}  // namespace kestrel::api
