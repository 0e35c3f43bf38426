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

set(KESTREL_PYTHON ${PROJECT_SOURCE_DIR}/.venv/bin/python)
foreach(script ort_compare cli_test val_test quant_test)
  add_test(NAME py_${script}
           COMMAND ${KESTREL_PYTHON} ${PROJECT_SOURCE_DIR}/tests/models/${script}.py --build ${PROJECT_BINARY_DIR}
                   --shared ${PROJECT_SOURCE_DIR}/../shared)
  set_tests_properties(py_${script} PROPERTIES TIMEOUT 900)
endforeach()
