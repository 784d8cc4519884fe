// Metrics: what the relay reports about itself on <control-prefix>/stats.
//
// SampleWindow collects values (commit latency, batch size) between two
// reports and summarises them when the report is made; RelayStats is one
// report, and StatsJson its wire form (a JSON object, documented in the
// README's "Observability" section).
//
// SampleWindow is thread-safe: the writer thread adds samples, the stats
// reporter takes the summary. The rest is plain data. Pure: no I/O here.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace seqrelay {

struct Summary {
  uint64_t count = 0;  // samples in the window; the figures below are 0 when it is empty
  double p50 = 0;
  double p99 = 0;
  double max = 0;
};

// Nearest-rank percentiles of `values` (sorted in place).
Summary Summarize(std::vector<double>& values);

// LatencyHistogram: the time a pipeline stage takes, in Prometheus-style
// buckets (seconds), for /metrics. Observe is lock-free (relaxed atomic
// increments), cheap enough for every message; any thread.
class LatencyHistogram {
 public:
  // Upper bounds of the buckets, in seconds; one more bucket (+Inf) follows.
  static constexpr std::array<double, 16> kBounds = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                     0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                                     0.5,     1,      2.5,     5};
  struct Snapshot {
    std::array<uint64_t, kBounds.size() + 1> counts{};  // per bucket (not cumulative); the last is +Inf
    uint64_t count = 0;
    double sum_s = 0;
  };

  void Observe(std::chrono::nanoseconds d);
  Snapshot Take() const;  // since start (Prometheus counters never reset)

 private:
  std::array<std::atomic<uint64_t>, kBounds.size() + 1> buckets_{};
  std::atomic<uint64_t> sum_ns_{0};
};

class SampleWindow {
 public:
  // At most `capacity` samples are kept per window; beyond that every
  // further sample replaces one already held (reservoir sampling), so the
  // memory is bounded and the percentiles stay unbiased.
  explicit SampleWindow(std::size_t capacity = 4096) : capacity_(capacity) {}

  void Add(double value);
  // The window's summary; starts the next window.
  Summary Take();

 private:
  const std::size_t capacity_;
  std::mutex mu_;
  std::vector<double> values_;  // guarded by mu_
  uint64_t seen_ = 0;           // samples added in this window; guarded by mu_
  uint64_t rng_ = 0x9E3779B97F4A7C15u;  // xorshift state for the reservoir; guarded by mu_
};

// One report. Counters are totals since start; windows cover the time
// since the previous report (PrometheusText does not use them: Prometheus
// wants totals, so commit time is also kept as a running sum).
struct RelayStats {
  // High availability: which shard, whether this relay holds its lease, under
  // which epoch, how long since the lease was last renewed, and how many
  // times this process took the shard over.
  std::string shard = "default";
  std::string relay_id;
  bool active = false;
  uint32_t epoch = 0;
  double lease_age_s = 0;
  uint64_t takeovers = 0, step_downs = 0;
  double uptime_s = 0;
  int interval_s = 0;
  uint64_t received = 0, committed = 0, published = 0, acked = 0, republished = 0, lost = 0, deferred = 0;
  uint64_t refused_topic = 0, refused_payload = 0, refused_seq = 0;
  uint64_t set_aside = 0;
  uint64_t refused_topics = 0, topics_evicted = 0;  // --max-topics refusals; --topic-cache evictions  // refused by the database for good, kept aside
  // Frames the broker acknowledged but refused (v5 PUBACK reason >= 0x80), live and in replies.
  uint64_t broker_refused = 0, replay_broker_refused = 0;
  // Output reconnects for a row mosquitto left unacknowledged while it acknowledged later ones.
  uint64_t unacknowledged_reconnects = 0;
  uint64_t ignored_own = 0, ignored_retained = 0;
  uint64_t topics = 0, batches = 0;
  Summary batch_rows;  // rows per committed batch
  Summary commit_ms;   // time from a batch's first commit attempt to its confirmed commit
  double commit_seconds_total = 0;  // the same, summed over every batch since start
  uint64_t buffer_messages = 0, buffer_max = 0, intake_pauses = 0, intake_errors = 0;
  uint64_t replay_requests = 0, replay_served = 0, replay_failed = 0, replay_forbidden = 0, replay_refused = 0,
           replay_frames = 0;
  uint64_t replay_ignored = 0;  // requests on a topic that names no requester (an empty level)
  double replay_rate = 0;  // frames per second the governor allows replies now; 0 when it is off
  uint64_t replay_unacknowledged = 0;  // replies handed to the broker and not yet acknowledged (/metrics only)
  uint64_t journal_errors = 0, journal_replayed = 0, redeliveries = 0;
  uint64_t dedupe_dropped = 0, msg_ids_invalid = 0, msg_ids_purged = 0;
  uint64_t retention_deleted = 0, retention_transactions = 0;
  // Time per pipeline stage since start, by stage name (/metrics only).
  std::vector<std::pair<std::string, LatencyHistogram::Snapshot>> stages;
  bool database_up = false;
  std::string database_node;  // the writer's node, "host:port" (several --db-host entries: a cluster)
  // One of the relay's MQTT links: whether it is connected, and the reads
  // libmosquitto made of its socket with the system calls they took
  // (broker/read_ahead.h; those two in /metrics only).
  struct Link {
    bool connected = false;
    uint64_t reads = 0, read_calls = 0;
  };
  Link intake, output, replay;
};

std::string StatsJson(const RelayStats& stats);

// Who made a shard's report (StatsJson's), as another relay of the shard
// reads it off the shard's retained topic: nullopt for anything else.
struct ReportHolder {
  std::string relay_id;
  bool active = false;
  uint32_t epoch = 0;
};
std::optional<ReportHolder> ParseReportHolder(std::string_view json);

// The same figures in Prometheus' text exposition format (version 0.0.4),
// for --metrics-port: counters as *_total, states as 0/1 gauges.
std::string PrometheusText(const RelayStats& stats);

}  // namespace seqrelay
