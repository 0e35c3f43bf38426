# Test suites (ctest). C++ suites use GoogleTest; model-level checks against ONNX Runtime are Python
# scripts that need the test venv (scripts/setup_test_venv.sh) and run the kestrel binaries.
find_package(GTest REQUIRED)
include(GoogleTest)

include(cmake/unit_tests.cmake OPTIONAL)
include(cmake/yolo_metrics.cmake)

add_executable(kestrel_run_raw tests/tools/run_raw.cc)
target_link_libraries(kestrel_run_raw PRIVATE kestrel)

add_executable(kestrel_api_tests tests/models/api_test.cc)
target_link_libraries(kestrel_api_tests PRIVATE kestrel GTest::gtest_main)
target_compile_definitions(kestrel_api_tests PRIVATE KESTREL_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
gtest_discover_tests(kestrel_api_tests DISCOVERY_TIMEOUT 60 PROPERTIES TIMEOUT 600)

set(KESTREL_PYTHON ${PROJECT_SOURCE_DIR}/.venv/bin/python CACHE FILEPATH "Python with the test venv's packages")
set(KESTREL_SHARED ${PROJECT_SOURCE_DIR}/../shared CACHE PATH "The shared models, datasets and images")
foreach(script ort_compare cli_test val_test quant_test gpu_compare)
  add_test(NAME py_${script}
           COMMAND ${KESTREL_PYTHON} ${PROJECT_SOURCE_DIR}/tests/models/${script}.py --build ${PROJECT_BINARY_DIR}
                   --shared ${KESTREL_SHARED})
  set_tests_properties(py_${script} PROPERTIES TIMEOUT 900)
endforeach()
set_tests_properties(py_gpu_compare PROPERTIES LABELS gpu)

# The CUDA timing cache's file format and error handling (no GPU needed).
add_executable(kestrel_timing_cache_tests tests/unit/timing_cache_test.cc)
target_include_directories(kestrel_timing_cache_tests PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_link_libraries(kestrel_timing_cache_tests PRIVATE kestrel GTest::gtest_main)
gtest_discover_tests(kestrel_timing_cache_tests DISCOVERY_TIMEOUT 60)

# The CUDA kernels' division by a launch-time constant, on the host (no GPU needed).
add_executable(kestrel_fast_divmod_tests tests/unit/fast_divmod_test.cc)
target_include_directories(kestrel_fast_divmod_tests PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_link_libraries(kestrel_fast_divmod_tests PRIVATE kestrel GTest::gtest_main)
gtest_discover_tests(kestrel_fast_divmod_tests DISCOVERY_TIMEOUT 60)

# Which convs a CUDA session may run as one bottleneck-pair kernel, on yolov8n's plans (no GPU needed).
add_executable(kestrel_bottleneck_pairs_tests tests/unit/bottleneck_pairs_test.cc)
target_include_directories(kestrel_bottleneck_pairs_tests PRIVATE ${PROJECT_SOURCE_DIR}/src)
target_link_libraries(kestrel_bottleneck_pairs_tests PRIVATE kestrel GTest::gtest_main)
target_compile_definitions(kestrel_bottleneck_pairs_tests PRIVATE KESTREL_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
gtest_discover_tests(kestrel_bottleneck_pairs_tests DISCOVERY_TIMEOUT 60)

# GPU suite: every CUDA kernel against the reference (tests/gpu). Needs a GPU, so it carries the
# label "gpu": scripts/test.sh excludes it here and scripts/gpu_round.sh runs it on the GPU machine.
file(GLOB KESTREL_GPU_TEST_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/tests/gpu/*.cc)
add_executable(kestrel_gpu_tests ${KESTREL_GPU_TEST_SOURCES})
target_include_directories(kestrel_gpu_tests PRIVATE ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/tests)
# zlib: the detect-pipeline test writes a PNG to exercise the CPU-decoder path.
target_link_libraries(kestrel_gpu_tests PRIVATE kestrel GTest::gtest_main ZLIB::ZLIB)
target_compile_definitions(kestrel_gpu_tests PRIVATE KESTREL_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
                           KESTREL_SHARED_DIR="${KESTREL_SHARED}")
add_test(NAME gpu_tests COMMAND kestrel_gpu_tests)
set_tests_properties(gpu_tests PROPERTIES LABELS gpu TIMEOUT 900)
