// Minimal logging to stderr: warnings are visible by default, info only when verbose.
#pragma once

#include <iostream>
#include <string>

namespace kestrel {

inline void log_warning(const std::string& message) { std::cerr << "WARNING ⚠️ " << message << "\n"; }

}  // namespace kestrel
