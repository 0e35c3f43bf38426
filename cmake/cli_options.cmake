# The kestrel CLI option layer (argument parsing, run directories, result writers) and its GoogleTest suite.
# Include it from a project: KESTREL_ROOT defaults to that project's source directory.
include_guard(GLOBAL)

if(NOT DEFINED KESTREL_ROOT)
  set(KESTREL_ROOT ${PROJECT_SOURCE_DIR})
endif()

find_package(nlohmann_json 3 REQUIRED)

add_library(kestrel_cli_options STATIC
  ${KESTREL_ROOT}/tools/cli/options.cc
  ${KESTREL_ROOT}/tools/cli/run_dir.cc
  ${KESTREL_ROOT}/tools/cli/result_writers.cc)
target_include_directories(kestrel_cli_options PUBLIC ${KESTREL_ROOT}/tools ${KESTREL_ROOT}/src)
target_compile_features(kestrel_cli_options PUBLIC cxx_std_20)
# result_writers.h exposes nlohmann::json.
target_link_libraries(kestrel_cli_options PUBLIC nlohmann_json::nlohmann_json)

# Honour the root project's KESTREL_BUILD_TESTS switch; a project without it (a scratch build) gets the tests.
if(NOT DEFINED KESTREL_BUILD_TESTS OR KESTREL_BUILD_TESTS)
  find_package(GTest REQUIRED)
  include(GoogleTest)
  add_executable(cli_options_tests ${KESTREL_ROOT}/tests/cli/options_test.cc)
  target_link_libraries(cli_options_tests PRIVATE kestrel_cli_options GTest::gtest_main)
  gtest_discover_tests(cli_options_tests)
endif()
