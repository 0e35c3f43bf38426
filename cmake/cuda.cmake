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
  src/backends/cuda/letterbox.cu
  src/backends/cuda/nms.cu
  src/backends/cuda/jpeg_decoder.cc
  src/runtime/cuda_session.cc
  src/runtime/timing_cache.cc)
target_compile_options(kestrel_cuda PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${KESTREL_CUDA_FLAGS}>)
target_include_directories(kestrel_cuda PUBLIC src)
target_link_libraries(kestrel_cuda PUBLIC kestrel_plan kestrel_engine CUDA::cudart_static)
# nvJPEG is opened at run time (jpeg_decoder.cc): no build dependency on it.
target_link_libraries(kestrel_cuda PRIVATE ${CMAKE_DL_LIBS})

# The conv kernels' code version, part of the timing cache's environment (src/runtime/timing_cache.h):
# times measured with other kernel code, or another nvcc, do not apply. A digest of the sources the
# conv tactics are made of; editing one of them re-runs CMake, which recomputes it.
file(GLOB KESTREL_CONV_KERNEL_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/backends/cuda/conv2d*
     ${PROJECT_SOURCE_DIR}/src/backends/cuda/*.cuh ${PROJECT_SOURCE_DIR}/src/backends/cuda/tensors.h)
list(SORT KESTREL_CONV_KERNEL_SOURCES)
set(_kestrel_conv_digest "nvcc ${CMAKE_CUDA_COMPILER_VERSION}")
foreach(f ${KESTREL_CONV_KERNEL_SOURCES})
  file(SHA256 ${f} _h)
  string(APPEND _kestrel_conv_digest " ${_h}")
endforeach()
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${KESTREL_CONV_KERNEL_SOURCES})
string(SHA256 _kestrel_conv_digest "${_kestrel_conv_digest}")
string(SUBSTRING ${_kestrel_conv_digest} 0 16 KESTREL_CONV_KERNELS_VERSION)
set_property(SOURCE src/runtime/cuda_session.cc APPEND PROPERTY COMPILE_DEFINITIONS
             KESTREL_CONV_KERNELS_VERSION="${KESTREL_CONV_KERNELS_VERSION}")

# The GPU's measured ceilings (DRAM bandwidth, cuBLAS FP16/INT8 GEMM) for BENCHMARKS.md's floors.
add_executable(kestrel_gpu_ceilings bench/gpu/ceilings.cu)
target_compile_options(kestrel_gpu_ceilings PRIVATE ${KESTREL_CUDA_FLAGS})
target_link_libraries(kestrel_gpu_ceilings PRIVATE CUDA::cudart_static CUDA::cublas)
