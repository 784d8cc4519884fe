// Status and Result<T>: expected failures as values.
//
// Every fallible operation in the relay's core returns one of these instead
// of throwing; exceptions stop at the adapters that meet throwing APIs
// (Connector/C++, Boost.Program_options). Both types are plain values and may
// be moved between threads.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace seqrelay {

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  static Status Ok() { return Status(); }
  static Status Error(std::string message) { return Status(std::move(message), false); }
  // An error that retrying will not fix (a configuration or schema problem).
  static Status Permanent(std::string message) { return Status(std::move(message), true); }
  // An error the database server reported, with its error number (e.g.
  // 1153 for a packet over max_allowed_packet), so that callers can tell a
  // row the server will never take from a passing failure.
  static Status Database(std::string message, int code) {
    Status s(std::move(message), false);
    s.code_ = code;
    return s;
  }

  bool ok() const { return message_.empty(); }
  bool permanent() const { return permanent_; }
  const std::string& message() const { return message_; }
  int database_code() const { return code_; }  // 0 unless made by Database()

 private:
  Status(std::string message, bool permanent)
      : message_(message.empty() ? "unknown error" : std::move(message)), permanent_(permanent) {}
  std::string message_;     // empty = ok
  bool permanent_ = false;  // meaningful only when !ok()
  int code_ = 0;            // the server's error number; 0 = none
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status error) : v_(std::move(error)) {}  // NOLINT: must not be ok

  bool ok() const { return std::holds_alternative<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T& value() & { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  const T& operator*() const& { return value(); }
  T& operator*() & { return value(); }
  const T* operator->() const { return &value(); }
  T* operator->() { return &value(); }
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(v_); }
  const std::string& error() const { return std::get<Status>(v_).message(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace seqrelay
