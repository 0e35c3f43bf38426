# kestrel_unit_tests: GoogleTest suite for the compiler core: CPU kernels vs the reference
# (tests/ops), hand-checked reference values, each optimisation pass, and the memory planner.
#
# Included from cmake/tests.cmake (which has already found GTest and included GoogleTest); it finds
# them itself too so a scratch project can include it on its own. KESTREL_ROOT is the repository
# root and defaults to PROJECT_SOURCE_DIR. Needs the targets kestrel_passes, kestrel_plan, kestrel_cpu.
include_guard(GLOBAL)

if(NOT DEFINED KESTREL_ROOT)
  set(KESTREL_ROOT ${PROJECT_SOURCE_DIR})
endif()

find_package(GTest REQUIRED)
include(GoogleTest)

add_executable(kestrel_unit_tests
  ${KESTREL_ROOT}/tests/ops/ops_test.cc
  ${KESTREL_ROOT}/tests/ops/int8_conv_test.cc
  ${KESTREL_ROOT}/tests/ops/winograd_conv_test.cc
  ${KESTREL_ROOT}/tests/ops/reference_test.cc
  ${KESTREL_ROOT}/tests/passes/passes_test.cc
  ${KESTREL_ROOT}/tests/passes/fuse_yolo_decode_test.cc
  ${KESTREL_ROOT}/tests/unit/plan_test.cc)
target_include_directories(kestrel_unit_tests PRIVATE ${KESTREL_ROOT}/src ${KESTREL_ROOT}/tests)
target_compile_features(kestrel_unit_tests PRIVATE cxx_std_20)
target_link_libraries(kestrel_unit_tests PRIVATE kestrel_passes kestrel_plan kestrel_cpu GTest::gtest_main)
# With the ONNX importer and the engine file at hand, the pass tests also run on the real models in
# ../shared/models and through an engine round trip.
if(TARGET kestrel_onnx AND TARGET kestrel_engine)
  target_link_libraries(kestrel_unit_tests PRIVATE kestrel_onnx kestrel_engine)
  target_compile_definitions(kestrel_unit_tests PRIVATE KESTREL_SOURCE_DIR="${KESTREL_ROOT}")
endif()
gtest_discover_tests(kestrel_unit_tests DISCOVERY_TIMEOUT 60)
