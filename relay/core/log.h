// Logging: one line per event on stderr, with a UTC timestamp and a level;
// as text, or with --log-format json as one JSON object per line
// ({"ts": "...Z", "level": "warn", "msg": "..."}) for log collectors.
//
// Thread-safe: each line is formatted first and written with one write(2), so
// lines from different threads never interleave. The level and format are
// process-wide and set once at start, before other threads exist.
//
// RateLimit keeps a repeated error from flooding the log: it lets one line
// through per interval and counts what it held back, so the next line that
// passes can say "(N more suppressed)".
#pragma once

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace seqrelay {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };
enum class LogFormat { kText, kJson };

std::optional<LogLevel> ParseLogLevel(std::string_view name);
std::optional<LogFormat> ParseLogFormat(std::string_view name);
void SetLogLevel(LogLevel level);
void SetLogFormat(LogFormat format);
// The line LogLine writes, without the newline; `when` is the UTC time as
// "YYYY-MM-DDTHH:MM:SS.mmmZ". Exposed for tests.
std::string FormatLogLine(LogFormat format, std::string_view when, LogLevel level, std::string_view text);
bool LogEnabled(LogLevel level);
void LogLine(LogLevel level, std::string_view text);

template <typename... Args>
void Log(LogLevel level, fmt::format_string<Args...> f, Args&&... args) {
  if (LogEnabled(level)) LogLine(level, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void LogDebug(fmt::format_string<Args...> f, Args&&... args) {
  Log(LogLevel::kDebug, f, std::forward<Args>(args)...);
}
template <typename... Args>
void LogInfo(fmt::format_string<Args...> f, Args&&... args) {
  Log(LogLevel::kInfo, f, std::forward<Args>(args)...);
}
template <typename... Args>
void LogWarn(fmt::format_string<Args...> f, Args&&... args) {
  Log(LogLevel::kWarn, f, std::forward<Args>(args)...);
}
template <typename... Args>
void LogError(fmt::format_string<Args...> f, Args&&... args) {
  Log(LogLevel::kError, f, std::forward<Args>(args)...);
}
// For a path that runs when memory is short: a line that cannot be made is
// not written, and what the caller does next still happens.
template <typename... Args>
void LogErrorNoThrow(fmt::format_string<Args...> f, Args&&... args) noexcept {
  try {
    Log(LogLevel::kError, f, std::forward<Args>(args)...);
  } catch (...) {
  }
}

// Lets one event through per interval. Any thread may call Allow().
class RateLimit {
 public:
  explicit RateLimit(std::chrono::milliseconds interval) : interval_(interval) {}

  // Returns nullopt to suppress this event, else how many were suppressed
  // since the last one let through.
  std::optional<uint64_t> Allow();

 private:
  const std::chrono::milliseconds interval_;
  std::mutex mu_;
  std::chrono::steady_clock::time_point next_{};  // guarded by mu_
  uint64_t suppressed_ = 0;                       // guarded by mu_
};

// "" when nothing was suppressed, else " (N more like it suppressed)".
std::string SuppressedNote(uint64_t suppressed);

}  // namespace seqrelay
