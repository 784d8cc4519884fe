// Config: everything the relay is told at start, and its validation.
//
// Filled once by ParseOptions (options.h) from flags, environment and config
// file, validated, then read-only for the life of the process, so any thread
// may read it without locking. Pure: no I/O here.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/log.h"
#include "core/status.h"

namespace seqrelay {

// --retention FILTER=LIMIT (PROTOCOL.md 5.2): topics matching FILTER keep
// at most `max_age_s` seconds and/or `max_count` messages; 0 = no such
// limit. A topic's newest message is always kept (SEQ never restarts).
struct RetentionRule {
  std::string filter;
  uint64_t max_age_s = 0;
  uint64_t max_count = 0;
  bool operator==(const RetentionRule&) const = default;
};

struct Config {
  // mosquitto
  std::string mqtt_host = "127.0.0.1";
  int mqtt_port = 1883;
  std::string mqtt_user;
  std::string mqtt_password;
  // The intake link's own login, so that the broker's ACL can keep the
  // relay's frames (seq/#, relay/#) from it; empty: mqtt_user/mqtt_password.
  std::string mqtt_intake_user;
  std::string mqtt_intake_password;
  std::string mqtt_client_id = "seqrelay";  // intake session (of the default shard); see IntakeClientId

  int mqtt_keepalive_s = 30;
  int publish_qos = 1;  // MQTT QoS of frames on seq/T

  // MySQL / MariaDB
  std::string db_host = "127.0.0.1";  // or a list "h1:3306,h2,h3:3307" (a cluster's nodes); see DbEndpoints
  int db_port = 3306;                 // for entries of db_host without a port
  std::string db_socket;  // unix socket; wins over host/port when set
  std::string db_user = "seqrelay";
  std::string db_password;
  std::string db_name = "seqrelay";
  bool migrate = true;

  // High availability: relays of one shard share its sources and its
  // intake session; the one holding the shard's lease is active, the others
  // stand by.
  std::string shard = "default";
  std::string relay_id;  // this process among the shard's relays; empty: <hostname>-<pid>
  int lease_ms = 3000;   // a lease not renewed for this long may be taken over
  // The active renews its lease only while it reaches mosquitto (or lost it
  // less than this long ago), and a standby takes a shard over only while it
  // reaches mosquitto; 0: the lease does not depend on mosquitto.
  int broker_grace_s = 10;

  // Sequencing
  std::vector<std::string> sources = {"#"};
  std::vector<std::string> immediate;
  std::string seq_prefix = "seq";
  std::string control_prefix = "relay";
  int max_payload = 1024 * 1024;
  int max_topics = 1000000;  // topics the database may hold; a message on a further new topic is refused; 0 = no bound
  int topic_cache = 100000;  // topics the writer keeps in memory; the least recently used beyond are forgotten
  // Publishers' msg-ids (PROTOCOL.md 5.1) are remembered this long; a
  // resend within it gets no SEQ. 0: msg-ids are ignored.
  uint64_t dedupe_window_s = 24 * 3600;
  // Retention per topic filter; empty: keep everything. Every rule whose
  // filter matches a topic applies to it.
  std::vector<RetentionRule> retention;

  // Pipeline
  int batch_max = 1000;
  int batch_delay_us = 0;  // 0: commit what has arrived as soon as the writer is free
  int buffer_max = 100000;
  int64_t buffer_max_bytes = int64_t{256} * 1024 * 1024;
  int shutdown_timeout_s = 30;
  std::string journal_dir;  // empty: no journal (messages in memory are lost on a kill)

  // Retransmit service
  int replay_max = 10000;   // most frames in one reply; beyond: truncated + next
  int replay_workers = 2;   // concurrent replies, each with its own database connection
  int replay_rate = 0;      // frames per second per reply; 0 = as fast as the broker takes them
  int replay_live_delay_us = 2000;  // extra live delay before replays slow down; 0 = never slow down
  std::string acl_file;     // mosquitto ACL file; empty: every client may replay every topic

  // Observability
  int stats_interval_s = 10;  // retained report on <control-prefix>/stats; 0 = off
  int metrics_port = 0;       // Prometheus /metrics; 0 = off
  std::string metrics_bind = "127.0.0.1";
  LogLevel log_level = LogLevel::kInfo;
  LogFormat log_format = LogFormat::kText;
};

// Limits that follow from the storage and protocol, shared with --help.
inline constexpr int kMaxBatchRows = 10000;            // 5 placeholders a row, 65535 per statement
inline constexpr int kMaxPayloadLimit = 16 * 1024 * 1024 - 1;  // MEDIUMBLOB

// The intake session's client id: --mqtt-client-id for the default shard,
// ID-<shard> for the others. Every relay of a shard uses it (one at a time).
std::string IntakeClientId(const Config& config);
// Client ids of this process's own links: ID-<relay-id>-<suffix>.
std::string OwnClientId(const Config& config, std::string_view suffix);
// The share group of the retransmit subscription: ID-<the hex digits of
// the database's identity>. Every relay of a database is in it, and no
// client can join it without reading the database: a member that may not
// read a request (the broker's ACL) makes mosquitto drop it for the whole
// group, so a group anyone could name (ID alone, until 2026-12-07) let any
// user make every other request vanish.
std::string ReplayShareGroup(const Config& config, std::string_view database_identity);

// Checks ranges and cross-field rules. The message names the option.
// One database server of --db-host.
struct DbEndpoint {
  std::string host;
  int port = 3306;
  bool operator==(const DbEndpoint&) const = default;
};
// --db-host as a list: comma-separated entries "host", "host:port" or
// "[v6 address]:port" (db_port where no port is given). An error names a
// bad entry.
Result<std::vector<DbEndpoint>> DbEndpoints(const std::string& db_host, int db_port);

Status Validate(const Config& config);

// A duration such as "90s", "30m", "24h", "7d" or a plain number of
// seconds, in seconds. An error names what is wrong with it.
Result<uint64_t> ParseDuration(std::string_view text);
// Ages (--retention, --dedupe-window) are at most 100 years: the database's
// NOW(6) - INTERVAL leaves its date range some millennia back, and a
// cutoff out of range is NULL, which finds no row young (retention then
// deleted all but each topic's newest row).
inline constexpr uint64_t kMaxAgeS = uint64_t{36500} * 86400;
// ParseDuration, refusing more than kMaxAgeS.
Result<uint64_t> ParseAge(std::string_view text);
// The same, written back the shortest way ("86400" -> "1d", "90" -> "90s").
std::string FormatDuration(uint64_t seconds);

// Parses --retention entries "FILTER=30d" (an age: a number with s, m, h or
// d) or "FILTER=100000" (a count, at least 1). Entries of the same filter
// merge into one rule (an age and a count); a second age or count for it is
// an error. Errors name the entry.
Result<std::vector<RetentionRule>> ParseRetention(const std::vector<std::string>& entries);
// "chat/#=30d,100000 messages" and the like, for the start-up log.
std::string DescribeRetention(const std::vector<RetentionRule>& rules);

// One line per setting for the start-up log, passwords masked.
std::vector<std::string> Describe(const Config& config);

}  // namespace seqrelay
