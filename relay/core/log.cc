#include "core/log.h"

#include <unistd.h>

#include <ctime>
#include <nlohmann/json.hpp>
#include <utility>

namespace seqrelay {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::atomic<int> g_format{static_cast<int>(LogFormat::kText)};

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "?";
}

}  // namespace

std::optional<LogLevel> ParseLogLevel(std::string_view name) {
  for (auto level : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError}) {
    if (name == LevelName(level)) return level;
  }
  return std::nullopt;
}

std::optional<LogFormat> ParseLogFormat(std::string_view name) {
  if (name == "text") return LogFormat::kText;
  if (name == "json") return LogFormat::kJson;
  return std::nullopt;
}

void SetLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }
void SetLogFormat(LogFormat format) { g_format.store(static_cast<int>(format)); }

std::string FormatLogLine(LogFormat format, std::string_view when, LogLevel level, std::string_view text) {
  if (format == LogFormat::kText) return fmt::format("{} {:5} {}", when, LevelName(level), text);
  // A topic in a message may hold any bytes: invalid UTF-8 becomes U+FFFD
  // rather than an exception.
  nlohmann::json line = {{"ts", when}, {"level", LevelName(level)}, {"msg", text}};
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(std::memory_order_relaxed); }

void LogLine(LogLevel level, std::string_view text) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm utc{};
  gmtime_r(&ts.tv_sec, &utc);
  char seconds[32];
  strftime(seconds, sizeof seconds, "%Y-%m-%dT%H:%M:%S", &utc);
  const std::string when = fmt::format("{}.{:03}Z", seconds, ts.tv_nsec / 1000000);
  std::string line = FormatLogLine(static_cast<LogFormat>(g_format.load(std::memory_order_relaxed)), when, level, text);
  line += '\n';
  // One write per line keeps lines whole across threads; a short write to a
  // terminal or pipe is not worth retrying for a log line.
  [[maybe_unused]] ssize_t n = write(STDERR_FILENO, line.data(), line.size());
}

std::string SuppressedNote(uint64_t suppressed) {
  return suppressed == 0 ? std::string() : fmt::format(" ({} more like it suppressed)", suppressed);
}

std::optional<uint64_t> RateLimit::Allow() {
  std::lock_guard lock(mu_);
  auto now = std::chrono::steady_clock::now();
  if (now < next_) {
    ++suppressed_;
    return std::nullopt;
  }
  next_ = now + interval_;
  return std::exchange(suppressed_, 0);
}

}  // namespace seqrelay
