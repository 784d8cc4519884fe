#include "core/config.h"

#include <arpa/inet.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <string_view>

#include "core/topic_filter.h"
#include "core/utf8.h"

namespace seqrelay {
namespace {

Status CheckRange(const char* option, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) {
    return Status::Error(fmt::format("--{} must be between {} and {}, got {}", option, lo, hi, value));
  }
  return Status::Ok();
}

Status CheckPrefix(const char* option, const std::string& prefix) {
  if (prefix.empty()) return Status::Error(fmt::format("--{} must not be empty", option));
  if (prefix.find('\0') != std::string::npos || !IsValidUtf8(prefix)) {
    return Status::Error(fmt::format("--{} must be UTF-8 without NUL bytes (a topic)", option));
  }
  if (prefix.find_first_of("+#") != std::string::npos || prefix.front() == '/' || prefix.back() == '/' ||
      prefix.front() == '$') {
    return Status::Error(fmt::format(
        "--{} '{}' must be a plain topic prefix: no '+', '#', leading '$' or leading/trailing '/'", option,
        prefix));
  }
  return Status::Ok();
}

// The metrics endpoint listens on an address, not a name (checked here so
// that a typo is an option error, not a failure once the database is up).
Status CheckAddress(const char* option, const std::string& value) {
  unsigned char bytes[16];
  if (inet_pton(AF_INET, value.c_str(), bytes) == 1 || inet_pton(AF_INET6, value.c_str(), bytes) == 1) {
    return Status::Ok();
  }
  return Status::Error(
      fmt::format("--{} must be an IP address (127.0.0.1, 0.0.0.0 or ::, say), got '{}'", option, value));
}

// Names that go into client ids, topics and the SHARD table: 1..64 of
// letters, digits, '_', '.' and '-'.
Status CheckName(const char* option, const std::string& value) {
  const bool ok = !value.empty() && value.size() <= 64 &&
                  std::all_of(value.begin(), value.end(), [](char ch) {
                    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.' || ch == '-';
                  });
  if (ok) return Status::Ok();
  return Status::Error(
      fmt::format("--{} '{}': use 1 to 64 letters, digits, '_', '.' or '-'", option, value));
}

}  // namespace

std::string IntakeClientId(const Config& c) {
  return c.shard == "default" ? c.mqtt_client_id : c.mqtt_client_id + "-" + c.shard;
}

std::string OwnClientId(const Config& c, std::string_view suffix) {
  return fmt::format("{}-{}-{}", c.mqtt_client_id, c.relay_id, suffix);
}

std::string ReplayShareGroup(const Config& c, std::string_view database_identity) {
  std::string group = c.mqtt_client_id + "-";
  for (const char ch : database_identity) {
    const auto c8 = static_cast<unsigned char>(ch);
    if (std::isxdigit(c8)) group += static_cast<char>(std::tolower(c8));
  }
  return group;
}

Result<std::vector<DbEndpoint>> DbEndpoints(const std::string& db_host, int db_port) {
  std::vector<DbEndpoint> out;
  std::string_view rest = db_host;
  for (;;) {
    const std::size_t comma = rest.find(',');
    std::string_view entry = rest.substr(0, comma);
    while (!entry.empty() && entry.front() == ' ') entry.remove_prefix(1);
    while (!entry.empty() && entry.back() == ' ') entry.remove_suffix(1);
    DbEndpoint e{std::string(entry), db_port};
    std::string_view port;
    if (entry.starts_with('[')) {  // [v6]:port
      const std::size_t close = entry.find(']');
      if (close == std::string_view::npos || (close + 1 < entry.size() && entry[close + 1] != ':')) {
        return Status::Error(fmt::format("--db-host entry '{}': write an IPv6 address as [address]:port", entry));
      }
      e.host = std::string(entry.substr(1, close - 1));
      if (close + 1 < entry.size()) port = entry.substr(close + 2);
    } else if (const std::size_t colon = entry.find(':'); colon != std::string_view::npos) {
      if (entry.find(':', colon + 1) != std::string_view::npos) {
        return Status::Error(fmt::format("--db-host entry '{}': write an IPv6 address as [address]:port", entry));
      }
      e.host = std::string(entry.substr(0, colon));
      port = entry.substr(colon + 1);
    }
    if (e.host.empty()) return Status::Error(fmt::format("--db-host '{}': an entry has no host", db_host));
    if (port.data() != nullptr) {
      int n = 0;
      auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
      if (ec != std::errc() || end != port.data() + port.size() || n < 1 || n > 65535) {
        return Status::Error(fmt::format("--db-host entry '{}': the port must be 1 to 65535", entry));
      }
      e.port = n;
    }
    out.push_back(std::move(e));
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  return out;
}

Status Validate(const Config& c) {
  if (auto endpoints = DbEndpoints(c.db_host, c.db_port); !endpoints.ok()) return endpoints.status();
  const Status checks[] = {
      CheckRange("mqtt-port", c.mqtt_port, 1, 65535),
      CheckRange("db-port", c.db_port, 1, 65535),
      CheckRange("mqtt-keepalive", c.mqtt_keepalive_s, 5, 65535),
      CheckRange("publish-qos", c.publish_qos, 0, 2),
      CheckRange("batch-max", c.batch_max, 1, kMaxBatchRows),
      CheckRange("batch-delay-us", c.batch_delay_us, 0, 1000000),
      CheckRange("max-payload", c.max_payload, 0, kMaxPayloadLimit),
      CheckRange("max-topics", c.max_topics, 0, 2000000000),
      CheckRange("topic-cache", c.topic_cache, 100, 100000000),
      CheckRange("buffer-max", c.buffer_max, 1, 100000000),
      CheckRange("buffer-max-bytes", c.buffer_max_bytes, int64_t{1} << 20, int64_t{1} << 40),
      CheckRange("shutdown-timeout", c.shutdown_timeout_s, 0, 3600),
      CheckRange("replay-max", c.replay_max, 1, 1000000),
      CheckRange("replay-workers", c.replay_workers, 1, 16),
      CheckRange("replay-rate", c.replay_rate, 0, 10000000),
      CheckRange("replay-live-delay-us", c.replay_live_delay_us, 0, 10000000),
      CheckRange("stats-interval", c.stats_interval_s, 0, 86400),
      CheckRange("metrics-port", c.metrics_port, 0, 65535),
      CheckAddress("metrics-bind", c.metrics_bind),
      CheckRange("lease-ms", c.lease_ms, 300, 600000),
      CheckRange("broker-grace", c.broker_grace_s, 0, 3600),
      CheckName("shard", c.shard),
      c.relay_id.empty() ? Status::Ok() : CheckName("relay-id", c.relay_id),
      CheckPrefix("seq-prefix", c.seq_prefix),
      CheckPrefix("control-prefix", c.control_prefix),
  };
  for (const Status& status : checks) {
    if (!status.ok()) return status;
  }
  if (c.mqtt_client_id.empty()) return Status::Error("--mqtt-client-id must not be empty");
  // A password without its user was dropped without a word (the intake's
  // then logged in as the relay's user, whose ACL lets it read the relay's
  // own topics): a setting to change (a helper's review, 2026-12-07).
  if (!c.mqtt_password.empty() && c.mqtt_user.empty()) {
    return Status::Error("--mqtt-password (or SEQRELAY_MQTT_PASSWORD) is given without --mqtt-user");
  }
  if (!c.mqtt_intake_password.empty() && c.mqtt_intake_user.empty()) {
    return Status::Error("--mqtt-intake-password (or SEQRELAY_MQTT_INTAKE_PASSWORD) is given without "
                         "--mqtt-intake-user (the intake logs in as --mqtt-user without one)");
  }
  // It names the replay link's shared subscription ($share/<id>-.../...), whose
  // name MQTT v5 allows no '/', '+' or '#'.
  if (c.mqtt_client_id.find_first_of(std::string_view("/+#\0", 4)) != std::string::npos ||
      !IsValidUtf8(c.mqtt_client_id)) {
    return Status::Error(fmt::format("--mqtt-client-id '{}': no '/', '+', '#' or NUL, and valid UTF-8 (it also names "
                                     "the relay's shared retransmit subscription, $share/<id>/...)",
                                     c.mqtt_client_id));
  }
  if (c.db_name.empty()) return Status::Error("--db-name must not be empty");
  if (c.buffer_max < c.batch_max) {
    return Status::Error(fmt::format("--buffer-max ({}) must be at least --batch-max ({})", c.buffer_max, c.batch_max));
  }
  if (IsUnderPrefix(c.seq_prefix, c.control_prefix) || IsUnderPrefix(c.control_prefix, c.seq_prefix)) {
    return Status::Error(fmt::format("--seq-prefix '{}' and --control-prefix '{}' must not overlap", c.seq_prefix,
                                     c.control_prefix));
  }
  if (c.sources.empty()) return Status::Error("--source: give at least one topic filter");
  for (const auto& filter : c.sources) {
    if (Status s = ValidateFilter(filter); !s.ok()) return Status::Error(fmt::format("--source: {}", s.message()));
    for (const auto& own : {c.seq_prefix, c.control_prefix}) {
      if (FilterCovers(own + "/#", filter)) {
        return Status::Error(
            fmt::format("--source '{}' lies under the relay's own prefix '{}', which is never sequenced", filter, own));
      }
    }
  }
  // mosquitto delivers a message to an MQTT v5 session once for each
  // subscription it matches: a filter another covers is not subscribed
  // (RemoveCoveredFilters), and two that share topics otherwise would have
  // each such message sequenced twice.
  const std::vector<std::string> subscribed = RemoveCoveredFilters(c.sources);
  for (std::size_t i = 0; i < subscribed.size(); ++i) {
    for (std::size_t j = i + 1; j < subscribed.size(); ++j) {
      if (!FiltersOverlap(subscribed[i], subscribed[j])) continue;
      return Status::Error(fmt::format(
          "--source '{}' and '{}' share topics, and neither covers the other: mosquitto would deliver a message "
          "on such a topic once for each, and it would be sequenced twice. Give one filter that covers both, or "
          "filters that share no topic",
          subscribed[i], subscribed[j]));
    }
  }
  for (const auto& filter : c.immediate) {
    if (Status s = ValidateFilter(filter); !s.ok()) return Status::Error(fmt::format("--immediate: {}", s.message()));
  }
  return Status::Ok();
}

std::vector<std::string> Describe(const Config& c) {
  auto mask = [](const std::string& secret) { return secret.empty() ? std::string("(none)") : std::string("****"); };
  const char* levels[] = {"debug", "info", "warn", "error"};
  return {
      fmt::format("mqtt {}:{} user={} password={} intake-user={} client-id={} keepalive={}s publish-qos={}",
                  c.mqtt_host, c.mqtt_port, c.mqtt_user.empty() ? "(none)" : c.mqtt_user, mask(c.mqtt_password),
                  c.mqtt_intake_user.empty() ? "(same)" : c.mqtt_intake_user, c.mqtt_client_id, c.mqtt_keepalive_s,
                  c.publish_qos),
      fmt::format("shard {} relay-id={} lease-ms={} intake session={}", c.shard, c.relay_id, c.lease_ms,
                  IntakeClientId(c)),
      fmt::format("db {} user={} password={} name={} migrate={}",
                  c.db_socket.empty() ? fmt::format("{}:{}", c.db_host, c.db_port) : "unix:" + c.db_socket,
                  c.db_user, mask(c.db_password), c.db_name, c.migrate),
      fmt::format("sources [{}] immediate [{}] seq-prefix={} control-prefix={} max-payload={} max-topics={} "
                  "topic-cache={} dedupe-window={} retention [{}]",
                  fmt::join(c.sources, ", "), fmt::join(c.immediate, ", "), c.seq_prefix, c.control_prefix,
                  c.max_payload, c.max_topics ? std::to_string(c.max_topics) : "unbounded", c.topic_cache,
                  c.dedupe_window_s ? FormatDuration(c.dedupe_window_s) : std::string("off"),
                  DescribeRetention(c.retention)),
      fmt::format("batch-max={} batch-delay-us={} buffer-max={} buffer-max-bytes={} shutdown-timeout={}s "
                  "journal-dir={} replay-max={} replay-workers={} replay-rate={} replay-live-delay-us={} acl-file={} stats-interval={}s metrics={} "
                  "log-level={} log-format={}",
                  c.batch_max, c.batch_delay_us, c.buffer_max, c.buffer_max_bytes, c.shutdown_timeout_s,
                  c.journal_dir.empty() ? "(none)" : c.journal_dir, c.replay_max, c.replay_workers,
                  c.replay_rate, c.replay_live_delay_us, c.acl_file.empty() ? "(none)" : c.acl_file,
                  c.stats_interval_s,
                  c.metrics_port ? fmt::format("{}:{}", c.metrics_bind, c.metrics_port) : std::string("off"),
                  levels[static_cast<int>(c.log_level)],
                  c.log_format == LogFormat::kJson ? "json" : "text"),
  };
}

Result<uint64_t> ParseDuration(std::string_view text) {
  std::size_t digits = 0;
  uint64_t value = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
    if (value > (UINT64_MAX - 9) / 10) return Status::Error(fmt::format("'{}' is too large", text));
    value = value * 10 + static_cast<uint64_t>(text[digits] - '0');
    ++digits;
  }
  const std::string_view unit = text.substr(digits);
  if (digits == 0 || unit.size() > 1) {
    return Status::Error(fmt::format("'{}' is not a duration: a whole number with s, m, h or d (e.g. 90s, 24h, 30d)",
                                     text));
  }
  uint64_t scale = 1;
  if (unit == "m") scale = 60;
  if (unit == "h") scale = 3600;
  if (unit == "d") scale = 86400;
  if (!unit.empty() && unit != "s" && scale == 1) {
    return Status::Error(fmt::format("'{}' has an unknown unit '{}': use s, m, h or d", text, unit));
  }
  if (value > UINT64_MAX / scale / 1000) return Status::Error(fmt::format("'{}' is too large", text));
  return value * scale;
}

Result<uint64_t> ParseAge(std::string_view text) {
  auto seconds = ParseDuration(text);
  if (seconds.ok() && seconds.value() > kMaxAgeS) {
    return Status::Error(fmt::format("'{}' is over 36500d (100 years)", text));
  }
  return seconds;
}

Result<std::vector<RetentionRule>> ParseRetention(const std::vector<std::string>& entries) {
  std::vector<RetentionRule> rules;
  for (const std::string& entry : entries) {
    const auto eq = entry.rfind('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == entry.size()) {
      return Status::Error(fmt::format("'{}' is not FILTER=AGE or FILTER=COUNT (e.g. 'chat/#=30d', 'sensors/#=100000')",
                                       entry));
    }
    const std::string filter = entry.substr(0, eq), limit = entry.substr(eq + 1);
    if (Status s = ValidateFilter(filter); !s.ok()) return Status::Error(fmt::format("'{}': {}", entry, s.message()));
    const bool is_count = limit.find_first_not_of("0123456789") == std::string::npos;
    auto value = is_count ? ParseDuration(limit) : ParseAge(limit);
    if (!value.ok()) return Status::Error(fmt::format("'{}': {}", entry, value.error()));
    if (value.value() == 0) return Status::Error(fmt::format("'{}': a limit of 0 would keep nothing", entry));
    auto it = std::find_if(rules.begin(), rules.end(), [&](const RetentionRule& r) { return r.filter == filter; });
    if (it == rules.end()) it = rules.insert(rules.end(), RetentionRule{filter, 0, 0});
    uint64_t& field = is_count ? it->max_count : it->max_age_s;
    if (field != 0) {
      return Status::Error(fmt::format("'{}': '{}' has a {} already", entry, filter, is_count ? "count" : "maximum age"));
    }
    field = value.value();
  }
  return rules;
}

std::string DescribeRetention(const std::vector<RetentionRule>& rules) {
  if (rules.empty()) return "keep everything";
  std::vector<std::string> parts;
  for (const RetentionRule& r : rules) {
    std::vector<std::string> limits;
    if (r.max_age_s) limits.push_back(FormatDuration(r.max_age_s));
    if (r.max_count) limits.push_back(fmt::format("{} messages", r.max_count));
    parts.push_back(fmt::format("{}={}", r.filter, fmt::join(limits, " and ")));
  }
  return fmt::format("{}", fmt::join(parts, ", "));
}

std::string FormatDuration(uint64_t seconds) {
  if (seconds != 0 && seconds % 86400 == 0) return fmt::format("{}d", seconds / 86400);
  if (seconds != 0 && seconds % 3600 == 0) return fmt::format("{}h", seconds / 3600);
  if (seconds != 0 && seconds % 60 == 0) return fmt::format("{}m", seconds / 60);
  return fmt::format("{}s", seconds);
}

}  // namespace seqrelay
