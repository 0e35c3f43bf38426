// Errors across the public API: every fallible call returns a Status or a Result<T>; nothing
// throws through it. Messages are one line, meant to be printed to the user as they are.
#pragma once

#include <optional>
#include <string>
#include <utility>

namespace kestrel {

class Status {
   public:
    static Status Ok() { return Status(); }
    static Status Error(std::string message) { return Status(std::move(message)); }
    bool ok() const { return !message_.has_value(); }
    const std::string& message() const {
        static const std::string kEmpty;
        return message_ ? *message_ : kEmpty;
    }

   private:
    Status() = default;
    explicit Status(std::string m) : message_(std::move(m)) {}
    std::optional<std::string> message_;
};

template <typename T>
class Result {
   public:
    Result(T value) : value_(std::move(value)), status_(Status::Ok()) {}  // NOLINT: implicit by design
    Result(Status error) : status_(std::move(error)) {}                  // NOLINT
    bool ok() const { return status_.ok(); }
    const Status& status() const { return status_; }
    T& value() & { return *value_; }
    const T& value() const& { return *value_; }
    T&& value() && { return std::move(*value_); }
    T* operator->() { return &*value_; }
    const T* operator->() const { return &*value_; }

   private:
    std::optional<T> value_;
    Status status_;
};

}  // namespace kestrel
