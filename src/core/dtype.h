// Element types of tensors in the IR and the engine file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace kestrel {

enum class DType : uint8_t { kFloat32 = 0, kFloat16 = 1, kInt8 = 2, kInt32 = 3, kInt64 = 4, kUInt8 = 5, kBool = 6 };

constexpr size_t dtype_size(DType t) {
    switch (t) {
        case DType::kFloat32: return 4;
        case DType::kFloat16: return 2;
        case DType::kInt8: return 1;
        case DType::kInt32: return 4;
        case DType::kInt64: return 8;
        case DType::kUInt8: return 1;
        case DType::kBool: return 1;
    }
    return 0;
}

constexpr std::string_view dtype_name(DType t) {
    switch (t) {
        case DType::kFloat32: return "float32";
        case DType::kFloat16: return "float16";
        case DType::kInt8: return "int8";
        case DType::kInt32: return "int32";
        case DType::kInt64: return "int64";
        case DType::kUInt8: return "uint8";
        case DType::kBool: return "bool";
    }
    return "?";
}

}  // namespace kestrel
