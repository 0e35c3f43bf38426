# INT8 calibration library (src/quant): |x| histograms, TensorRT's four calibrators, the calibration
# cache. Depends only on src/core (and nlohmann_json for the cache's metadata sidecar).
#
# Included from the root CMakeLists.txt; KESTREL_ROOT (the repository root) defaults to
# PROJECT_SOURCE_DIR so the file can also be included from a scratch project elsewhere.
include_guard(GLOBAL)

if(NOT DEFINED KESTREL_ROOT)
    set(KESTREL_ROOT "${PROJECT_SOURCE_DIR}")
endif()

find_package(nlohmann_json 3 REQUIRED)

add_library(kestrel_quant STATIC
    "${KESTREL_ROOT}/src/quant/histogram.cc"
    "${KESTREL_ROOT}/src/quant/calibrators.cc"
    "${KESTREL_ROOT}/src/quant/calibration_cache.cc")
target_include_directories(kestrel_quant PUBLIC "${KESTREL_ROOT}/src")
target_compile_features(kestrel_quant PUBLIC cxx_std_20)
target_link_libraries(kestrel_quant PRIVATE nlohmann_json::nlohmann_json)

# Tests follow the root's KESTREL_BUILD_TESTS option, and are built when it is not defined.
if(NOT DEFINED KESTREL_BUILD_TESTS OR KESTREL_BUILD_TESTS)
    find_package(GTest REQUIRED)
    include(GoogleTest)
    add_executable(kestrel_quant_tests "${KESTREL_ROOT}/tests/quant/quant_test.cc")
    target_link_libraries(kestrel_quant_tests PRIVATE kestrel_quant GTest::gtest_main)
    gtest_discover_tests(kestrel_quant_tests DISCOVERY_TIMEOUT 60)
endif()
