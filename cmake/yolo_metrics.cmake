# yolo_metrics_tests: GoogleTest suite for Ultralytics' detection metrics (src/yolo/metrics: matching,
# AP, P/R at max F1) on hand-computed cases, and the dataset reader (src/yolo/dataset).
#
# Included from cmake/tests.cmake (GTest already found); needs the kestrel_yolo target.
include_guard(GLOBAL)

if(NOT DEFINED KESTREL_ROOT)
  set(KESTREL_ROOT ${PROJECT_SOURCE_DIR})
endif()

find_package(GTest REQUIRED)
include(GoogleTest)

add_executable(yolo_metrics_tests ${KESTREL_ROOT}/tests/yolo/metrics_test.cc)
target_include_directories(yolo_metrics_tests PRIVATE ${KESTREL_ROOT}/src)
target_compile_features(yolo_metrics_tests PRIVATE cxx_std_20)
target_link_libraries(yolo_metrics_tests PRIVATE kestrel_yolo GTest::gtest_main)
gtest_discover_tests(yolo_metrics_tests DISCOVERY_TIMEOUT 60)
