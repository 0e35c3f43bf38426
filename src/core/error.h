// Internal error model: library code throws kestrel::Error with a one-line, user-facing message;
// the public API (include/kestrel) catches it at the boundary and returns a Status. Nothing throws
// through the public API.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace kestrel {

class Error : public std::runtime_error {
   public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

namespace detail {
template <typename... Args>
[[noreturn]] void throw_error(const Args&... args) {
    std::ostringstream os;
    (os << ... << args);
    throw Error(os.str());
}
}  // namespace detail

}  // namespace kestrel

// KS_FAIL("message ", value, ...) throws kestrel::Error with the streamed message.
#define KS_FAIL(...) ::kestrel::detail::throw_error(__VA_ARGS__)
// KS_CHECK(condition, "message ", value, ...) throws when condition is false.
#define KS_CHECK(cond, ...)                            \
    do {                                               \
        if (!(cond)) ::kestrel::detail::throw_error(__VA_ARGS__); \
    } while (0)
