#include "observe/metrics.h"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace seqrelay {
namespace {

nlohmann::json ToJson(const Summary& s) {
  return {{"count", s.count}, {"p50", s.p50}, {"p99", s.p99}, {"max", s.max}};
}

// Rounded for reading: three decimals are enough for milliseconds and rows.
double Round3(double v) { return std::round(v * 1000) / 1000; }

}  // namespace

Summary Summarize(std::vector<double>& values) {
  Summary s;
  s.count = values.size();
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  auto rank = [&](double p) {
    // Nearest rank: the smallest value with at least p of the samples at or below it.
    std::size_t r = static_cast<std::size_t>(std::ceil(p * static_cast<double>(values.size())));
    return values[std::clamp<std::size_t>(r, 1, values.size()) - 1];
  };
  s.p50 = Round3(rank(0.50));
  s.p99 = Round3(rank(0.99));
  s.max = Round3(values.back());
  return s;
}

void LatencyHistogram::Observe(std::chrono::nanoseconds d) {
  const double s = std::chrono::duration<double>(d).count();
  std::size_t i = 0;
  while (i < kBounds.size() && s > kBounds[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(static_cast<uint64_t>(std::max<int64_t>(d.count(), 0)), std::memory_order_relaxed);
}

LatencyHistogram::Snapshot LatencyHistogram::Take() const {
  Snapshot s;
  for (std::size_t i = 0; i < buckets_.size(); ++i) {
    s.counts[i] = buckets_[i].load(std::memory_order_relaxed);
    s.count += s.counts[i];
  }
  s.sum_s = static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
  return s;
}

void SampleWindow::Add(double value) {
  std::lock_guard lock(mu_);
  ++seen_;
  if (values_.size() < capacity_) {
    values_.push_back(value);
    return;
  }
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  const uint64_t slot = rng_ % seen_;
  if (slot < capacity_) values_[slot] = value;
}

Summary SampleWindow::Take() {
  std::vector<double> values;
  uint64_t seen;
  {
    std::lock_guard lock(mu_);
    values.swap(values_);
    seen = seen_;
    seen_ = 0;
  }
  Summary s = Summarize(values);
  s.count = seen;  // every sample counts, not only those the reservoir kept
  return s;
}

std::string StatsJson(const RelayStats& s) {
  auto up = [](bool connected) { return connected ? "connected" : "disconnected"; };
  nlohmann::json j = {
      {"shard", s.shard},
      {"relay_id", s.relay_id},
      {"role", s.active ? "active" : "standby"},
      {"lease", {{"epoch", s.epoch}, {"age_s", Round3(s.lease_age_s)}, {"takeovers", s.takeovers},
                 {"step_downs", s.step_downs}}},
      {"uptime_s", Round3(s.uptime_s)},
      {"interval_s", s.interval_s},
      {"messages",
       {{"received", s.received},
        {"committed", s.committed},
        {"published", s.published},
        {"acknowledged", s.acked},
        {"refused_by_broker", s.broker_refused},
        {"unacknowledged_reconnects", s.unacknowledged_reconnects},
        {"republished", s.republished},
        {"lost", s.lost},
        {"deferred", s.deferred},
        {"set_aside", s.set_aside},
        {"refused", {{"topic_too_long", s.refused_topic}, {"payload_too_large", s.refused_payload},
                     {"out_of_seq", s.refused_seq}, {"too_many_topics", s.refused_topics}}},
        {"ignored", {{"own_topics", s.ignored_own}, {"retained", s.ignored_retained}}}}},
      {"topics", s.topics},
      {"topics_evicted", s.topics_evicted},
      {"batches", s.batches},
      {"batch_rows", ToJson(s.batch_rows)},
      {"commit_ms", ToJson(s.commit_ms)},
      {"buffer", {{"messages", s.buffer_messages}, {"max", s.buffer_max}, {"intake_pauses", s.intake_pauses},
                  {"intake_errors", s.intake_errors}}},
      {"replay",
       {{"requests", s.replay_requests}, {"served", s.replay_served}, {"failed", s.replay_failed},
        {"forbidden", s.replay_forbidden}, {"ignored", s.replay_ignored},
        {"frames", s.replay_frames}, {"refused_by_broker", s.replay_broker_refused},
        {"rate", std::lround(s.replay_rate)}}},
      {"journal", {{"errors", s.journal_errors}, {"replayed", s.journal_replayed}, {"redeliveries", s.redeliveries}}},
      {"dedupe", {{"dropped", s.dedupe_dropped}, {"invalid_msg_ids", s.msg_ids_invalid},
                  {"purged", s.msg_ids_purged}}},
      {"retention", {{"deleted", s.retention_deleted}, {"transactions", s.retention_transactions}}},
      {"database", s.database_up ? "up" : "down"},
      {"database_node", s.database_node},
      {"broker", {{"intake", up(s.intake.connected)}, {"output", up(s.output.connected)},
                  {"replay", up(s.replay.connected)}}},
  };
  return j.dump();
}

std::optional<ReportHolder> ParseReportHolder(std::string_view json) {
  const nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  const auto id = j.find("relay_id");
  const auto role = j.find("role");
  const auto lease = j.find("lease");
  if (id == j.end() || !id->is_string() || role == j.end() || !role->is_string() || lease == j.end() ||
      !lease->is_object()) {
    return std::nullopt;
  }
  const auto epoch = lease->find("epoch");
  if (epoch == lease->end() || !epoch->is_number_unsigned() || epoch->get<uint64_t>() > UINT32_MAX) return std::nullopt;
  return ReportHolder{id->get<std::string>(), role->get<std::string>() == "active", epoch->get<uint32_t>()};
}

std::string PrometheusText(const RelayStats& s) {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, auto value, const char* labels = "") {
    if (out.find(fmt::format("# TYPE {} ", name)) == std::string::npos) {
      out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
    }
    out += fmt::format("{}{} {}\n", name, labels, value);
  };
  metric("seqrelay_uptime_seconds", "gauge", "Seconds since the relay started.", Round3(s.uptime_s));
  const std::string who = fmt::format("{{shard=\"{}\",relay=\"{}\"}}", s.shard, s.relay_id);
  metric("seqrelay_active", "gauge", "1 while this relay holds its shard's lease (active), 0 as a standby.",
         s.active ? 1 : 0, who.c_str());
  metric("seqrelay_lease_epoch", "gauge", "The epoch of the shard's lease this relay holds or last held.", s.epoch,
         who.c_str());
  metric("seqrelay_lease_age_seconds", "gauge", "Seconds since the lease was last taken or renewed.",
         Round3(s.lease_age_s), who.c_str());
  metric("seqrelay_takeovers_total", "counter", "Times this process took its shard's lease.", s.takeovers,
         who.c_str());
  metric("seqrelay_step_downs_total", "counter", "Times this process lost its shard's lease and stood down.",
         s.step_downs, who.c_str());
  metric("seqrelay_messages_received_total", "counter", "Messages the broker delivered to the relay.", s.received);
  metric("seqrelay_messages_committed_total", "counter", "Rows committed to MSG.", s.committed);
  metric("seqrelay_messages_published_total", "counter", "Frames handed to the broker on the sequenced topics.",
         s.published);
  metric("seqrelay_messages_acknowledged_total", "counter", "Frames the broker acknowledged.", s.acked);
  const char* broker_refused = "Frames the broker acknowledged but refused (message_size_limit, ACL), by link.";
  metric("seqrelay_frames_refused_by_broker_total", "counter", broker_refused, s.broker_refused, "{link=\"output\"}");
  metric("seqrelay_frames_refused_by_broker_total", "counter", broker_refused, s.replay_broker_refused,
         "{link=\"replay\"}");
  metric("seqrelay_output_unacknowledged_reconnects_total", "counter",
         "Output reconnects for a frame the broker left unacknowledged while it acknowledged later ones.",
         s.unacknowledged_reconnects);
  metric("seqrelay_messages_republished_total", "counter", "Rows of an earlier run published again at start.",
         s.republished);
  metric("seqrelay_messages_lost_total", "counter",
         "Messages given up at shutdown (--shutdown-timeout) and kept nowhere (held in memory only).", s.lost);
  metric("seqrelay_messages_deferred_total", "counter",
         "Messages given up at shutdown or a step-down but kept for the shard's next active (journal, mosquitto).",
         s.deferred);
  metric("seqrelay_messages_set_aside_total", "counter",
         "Messages the database refused for good (constraint, size), set aside for the operator.", s.set_aside);
  const char* refused = "Messages refused, by reason.";
  metric("seqrelay_messages_refused_total", "counter", refused, s.refused_topic, "{reason=\"topic_too_long\"}");
  metric("seqrelay_messages_refused_total", "counter", refused, s.refused_payload, "{reason=\"payload_too_large\"}");
  metric("seqrelay_messages_refused_total", "counter", refused, s.refused_seq, "{reason=\"out_of_seq\"}");
  metric("seqrelay_messages_refused_total", "counter", refused, s.refused_topics, "{reason=\"too_many_topics\"}");
  const char* ignored = "Messages not sequenced, by reason.";
  metric("seqrelay_messages_ignored_total", "counter", ignored, s.ignored_own, "{reason=\"own_topic\"}");
  metric("seqrelay_messages_ignored_total", "counter", ignored, s.ignored_retained, "{reason=\"retained\"}");
  metric("seqrelay_topics", "gauge", "Topics the writer holds in memory (at most --topic-cache).", s.topics);
  metric("seqrelay_topics_evicted_total", "counter", "Idle topics the writer forgot to stay within --topic-cache.",
         s.topics_evicted);
  // A summary without quantiles (those are in the stats report's windows).
  out += "# HELP seqrelay_commit_seconds Time from a batch's first commit attempt to its confirmed commit.\n"
         "# TYPE seqrelay_commit_seconds summary\n";
  out += fmt::format("seqrelay_commit_seconds_sum {}\nseqrelay_commit_seconds_count {}\n", s.commit_seconds_total,
                     s.batches);
  metric("seqrelay_buffer_messages", "gauge", "Messages held between intake and commit.", s.buffer_messages);
  metric("seqrelay_buffer_max_messages", "gauge", "The buffer's bound (--buffer-max).", s.buffer_max);
  metric("seqrelay_intake_pauses_total", "counter", "Times intake paused on a full buffer.", s.intake_pauses);
  metric("seqrelay_intake_errors_total", "counter",
         "Deliveries whose handling failed (memory ran out: left unacknowledged for mosquitto to send again; "
         "any other failure: counted as lost too).",
         s.intake_errors);
  const char* replay = "Retransmit requests, by outcome.";
  metric("seqrelay_replay_requests_total", "counter", replay, s.replay_served, "{outcome=\"ok\"}");
  metric("seqrelay_replay_requests_total", "counter", replay, s.replay_refused, "{outcome=\"error\"}");
  metric("seqrelay_replay_requests_total", "counter", replay, s.replay_forbidden, "{outcome=\"forbidden\"}");
  metric("seqrelay_replay_requests_total", "counter", replay, s.replay_ignored, "{outcome=\"ignored\"}");
  metric("seqrelay_replay_frames_total", "counter", "Frames sent in retransmit replies.", s.replay_frames);
  metric("seqrelay_replay_rate", "gauge", "Frames per second replies may go at now, as the live traffic allows.",
         std::lround(s.replay_rate));
  metric("seqrelay_replay_unacknowledged", "gauge",
         "Reply frames and statuses handed to mosquitto and not yet acknowledged (at most 20,000 frames and 16 MiB).",
         s.replay_unacknowledged);
  metric("seqrelay_journal_errors_total", "counter", "Messages that could not be journaled.", s.journal_errors);
  metric("seqrelay_dedupe_dropped_total", "counter",
         "Publishers' resends dropped: their topic and msg-id were sequenced before.", s.dedupe_dropped);
  metric("seqrelay_dedupe_invalid_msg_ids_total", "counter",
         "msg-ids ignored as invalid (empty, over 128 bytes, not UTF-8); the messages were sequenced.",
         s.msg_ids_invalid);
  metric("seqrelay_dedupe_purged_total", "counter", "msg-id records deleted past --dedupe-window.",
         s.msg_ids_purged);
  metric("seqrelay_retention_deleted_total", "counter", "MSG rows deleted by --retention.", s.retention_deleted);
  metric("seqrelay_retention_transactions_total", "counter",
         "Transactions in which --retention deleted rows (each at most 1,000 rows and 8 MiB of payload).",
         s.retention_transactions);
  metric("seqrelay_database_up", "gauge", "1 while the writer's last database call succeeded.",
         s.database_up ? 1 : 0);
  if (!s.database_node.empty()) {
    const std::string node = fmt::format("{{node=\"{}\"}}", s.database_node);
    metric("seqrelay_database_node", "gauge", "The database node the writer uses (label node): always 1.", 1,
           node.c_str());
  }
  if (!s.stages.empty()) {
    out += "# HELP seqrelay_stage_seconds Time per pipeline stage: intake_queue (a message from its intake to its "
           "batch), sequence (a batch's topic lookups, dedupe and SEQs), insert (a batch's query before "
           "COMMIT: the fence and its rows), commit (its COMMIT), puback (a frame from publish to the broker's PUBACK).\n"
           "# TYPE seqrelay_stage_seconds histogram\n";
    for (const auto& [stage, h] : s.stages) {
      uint64_t cumulative = 0;
      for (std::size_t i = 0; i < h.counts.size(); ++i) {
        cumulative += h.counts[i];
        const std::string le = i < LatencyHistogram::kBounds.size() ? fmt::format("{}", LatencyHistogram::kBounds[i])
                                                                    : std::string("+Inf");
        out += fmt::format("seqrelay_stage_seconds_bucket{{stage=\"{}\",le=\"{}\"}} {}\n", stage, le, cumulative);
      }
      out += fmt::format("seqrelay_stage_seconds_sum{{stage=\"{}\"}} {}\n", stage, h.sum_s);
      out += fmt::format("seqrelay_stage_seconds_count{{stage=\"{}\"}} {}\n", stage, h.count);
    }
  }
  const std::pair<const char*, const RelayStats::Link&> links[] = {
      {"{link=\"intake\"}", s.intake}, {"{link=\"output\"}", s.output}, {"{link=\"replay\"}", s.replay}};
  for (const auto& [label, link] : links) {
    metric("seqrelay_broker_connected", "gauge", "1 while the relay's MQTT link is connected.",
           link.connected ? 1 : 0, label);
  }
  for (const auto& [label, link] : links) {
    metric("seqrelay_broker_socket_reads_total", "counter", "Reads libmosquitto made of the link's socket.",
           link.reads, label);
  }
  for (const auto& [label, link] : links) {
    metric("seqrelay_broker_socket_read_calls_total", "counter",
           "System calls those reads took (the others were served from the link's read-ahead).", link.read_calls,
           label);
  }
  return out;
}

}  // namespace seqrelay
