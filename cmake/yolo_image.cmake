# YOLO image stage: decoding/encoding (src/yolo/image), letterbox and OpenCV-exact resize
# (src/yolo/preprocess), annotation (src/yolo/draw), and their tests.
#
# Included from the root CMakeLists.txt; KESTREL_ROOT (the repository root) defaults to
# PROJECT_SOURCE_DIR so the file can also be included from a scratch project elsewhere.
# Needs Debian's libturbojpeg0-dev and libpng-dev; the tests need libgtest-dev and ../shared.

if(NOT DEFINED KESTREL_ROOT)
    set(KESTREL_ROOT "${PROJECT_SOURCE_DIR}")
endif()

find_package(PNG REQUIRED)
find_path(KESTREL_TURBOJPEG_INCLUDE_DIR turbojpeg.h REQUIRED)
find_library(KESTREL_TURBOJPEG_LIBRARY turbojpeg REQUIRED)

add_library(kestrel_yolo_image STATIC
    "${KESTREL_ROOT}/src/yolo/image/image.cc"
    "${KESTREL_ROOT}/src/yolo/preprocess/letterbox.cc"
    "${KESTREL_ROOT}/src/yolo/draw/annotate.cc")
target_include_directories(kestrel_yolo_image PUBLIC "${KESTREL_ROOT}/src")
target_include_directories(kestrel_yolo_image PRIVATE "${KESTREL_TURBOJPEG_INCLUDE_DIR}")
target_link_libraries(kestrel_yolo_image PRIVATE "${KESTREL_TURBOJPEG_LIBRARY}" PNG::PNG)
target_compile_features(kestrel_yolo_image PUBLIC cxx_std_20)
# The resize reproduces OpenCV's float rounding step by step; a contracted multiply-add (e.g. under
# -march=native) would round differently and break bit-exactness.
target_compile_options(kestrel_yolo_image PRIVATE $<$<CXX_COMPILER_ID:GNU,Clang>:-ffp-contract=off>)

# Tests follow the root's KESTREL_BUILD_TESTS option, and are built when it is not defined.
if(NOT DEFINED KESTREL_BUILD_TESTS OR KESTREL_BUILD_TESTS)
    find_package(GTest REQUIRED)
    include(GoogleTest)
    add_executable(yolo_image_tests
        "${KESTREL_ROOT}/tests/yolo/image_test.cc"
        "${KESTREL_ROOT}/tests/yolo/letterbox_test.cc"
        "${KESTREL_ROOT}/tests/yolo/annotate_test.cc")
    # Test data: golden files under tests/data, sample images under ../shared (or $KESTREL_SHARED).
    target_compile_definitions(yolo_image_tests PRIVATE KESTREL_SOURCE_DIR="${KESTREL_ROOT}")
    target_include_directories(yolo_image_tests PRIVATE "${KESTREL_TURBOJPEG_INCLUDE_DIR}")
    target_link_libraries(yolo_image_tests PRIVATE kestrel_yolo_image "${KESTREL_TURBOJPEG_LIBRARY}" PNG::PNG
                          GTest::gtest_main)
    gtest_discover_tests(yolo_image_tests DISCOVERY_MODE PRE_TEST)
endif()
