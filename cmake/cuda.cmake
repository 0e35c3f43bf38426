# The CUDA backend (src/backends/cuda) and the CUDA runtime session, built for Hopper (sm_90a).
# nvcc is required: CI has no GPU but compiles all CUDA code; GPU tests (label "gpu") run on the
# GPU machine through scripts/gpu_round.sh.
if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
endif()
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
# CMake 3.25 does not know nvcc 12+'s C++20 flag; tell it.
set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION -std=c++20)
set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION -std=c++20)
list(APPEND CMAKE_CUDA_COMPILE_FEATURES cuda_std_20)
set(CMAKE_CUDA_STANDARD 20)
# sm_90a for Hopper's own instructions; compute_90 PTX so a newer chip can still JIT the kernels
# (engines record the architecture they were tuned on and refuse any other).
set(CMAKE_CUDA_ARCHITECTURES OFF)
set(KESTREL_CUDA_FLAGS -gencode=arch=compute_90a,code=sm_90a -gencode=arch=compute_90,code=compute_90
    --Werror=all-warnings -Xcompiler=-Wall,-Wextra,-Werror --expt-relaxed-constexpr -lineinfo)

add_library(kestrel_cuda STATIC
  src/backends/cuda/conv2d.cu
  src/backends/cuda/stem_conv.cu
  src/backends/cuda/ops.cu
  src/backends/cuda/yolo_decode.cu
  src/runtime/cuda_session.cc)
target_compile_options(kestrel_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${KESTREL_CUDA_FLAGS}>)
target_include_directories(kestrel_cuda PUBLIC src)
target_link_libraries(kestrel_cuda PUBLIC kestrel_plan CUDA::cudart_static)
