#include "metrics.h"

#include <algorithm>
#include <cmath>
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
      {"uptime_s", Round3(s.uptime_s)},
      {"interval_s", s.interval_s},
      {"messages",
       {{"received", s.received},
        {"committed", s.committed},
        {"published", s.published},
        {"acknowledged", s.acked},
        {"republished", s.republished},
        {"lost", s.lost},
        {"refused", {{"topic_too_long", s.refused_topic}, {"payload_too_large", s.refused_payload},
                     {"out_of_seq", s.refused_seq}}},
        {"ignored", {{"own_topics", s.ignored_own}, {"retained", s.ignored_retained}}}}},
      {"topics", s.topics},
      {"batches", s.batches},
      {"batch_rows", ToJson(s.batch_rows)},
      {"commit_ms", ToJson(s.commit_ms)},
      {"buffer", {{"messages", s.buffer_messages}, {"max", s.buffer_max}, {"intake_pauses", s.intake_pauses}}},
      {"replay",
       {{"requests", s.replay_requests}, {"served", s.replay_served}, {"failed", s.replay_failed},
        {"forbidden", s.replay_forbidden},
        {"frames", s.replay_frames}}},
      {"journal", {{"errors", s.journal_errors}, {"replayed", s.journal_replayed}, {"redeliveries", s.redeliveries}}},
      {"database", s.database_up ? "up" : "down"},
      {"broker", {{"intake", up(s.intake_connected)}, {"output", up(s.output_connected)},
                  {"replay", up(s.replay_connected)}}},
  };
  return j.dump();
}

}  // namespace seqrelay
