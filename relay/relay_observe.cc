// Relay, observed: the figures of the stats report and /metrics.
#include "relay.h"

#include <fmt/format.h>

#include <utility>
#include <vector>

#include "core/log.h"
#include "relay_parts.h"

namespace seqrelay {

using namespace relay_parts;

RelayStats Relay::Snapshot() const {
  const Counters& c = counters_;
  const auto& r = retransmit_.counters();
  RelayStats s;
  s.shard = config_.shard;
  s.relay_id = config_.relay_id;
  s.active = active_;
  // Served from before the database is open (StartMetrics): the lease is
  // read once it is made.
  const LeaseKeeper* lease = storage_open_.load(std::memory_order_acquire) ? lease_.get() : nullptr;
  s.epoch = lease ? lease->epoch() : 0;
  s.lease_age_s = lease && active_ ? lease->age_s() : 0;
  s.takeovers = Takeovers();
  s.step_downs = StepDowns();
  s.uptime_s = SecondsSince(started_);
  s.interval_s = config_.stats_interval_s;
  s.received = c.received;
  s.committed = c.committed;
  s.published = c.published;
  s.acked = c.acked;
  s.broker_refused = c.broker_refused;
  s.unacknowledged_reconnects = c.unacknowledged_reconnects;
  s.replay_broker_refused = r.broker_refused;
  s.republished = c.republished;
  s.lost = c.lost;
  s.deferred = c.deferred;
  s.set_aside = c.set_aside;
  s.refused_topic = c.refused_topic;
  s.refused_payload = c.refused_payload;
  s.refused_seq = c.refused_seq;
  s.refused_topics = c.refused_topics;
  s.topics_evicted = c.topics_evicted;
  s.ignored_own = c.ignored_own;
  s.ignored_retained = c.ignored_retained;
  s.topics = c.topics;
  s.batches = c.batches;
  s.commit_seconds_total = static_cast<double>(c.commit_us.load()) / 1e6;
  s.buffer_messages = queue_.size();
  s.buffer_max = static_cast<uint64_t>(config_.buffer_max);
  s.intake_pauses = c.intake_pauses;
  s.intake_errors = c.intake_errors;
  s.replay_requests = r.requests;
  s.replay_served = r.served;
  s.replay_failed = r.failed();
  s.replay_forbidden = r.forbidden;
  s.replay_ignored = r.ignored_topic;
  s.replay_refused = r.refused;
  s.replay_frames = r.frames;
  s.replay_rate = retransmit_.governor().enabled() ? retransmit_.governor().rate() : 0;
  s.replay_unacknowledged = retransmit_.Unacknowledged();
  s.journal_errors = c.journal_errors;
  s.journal_replayed = c.journal_replayed;
  s.redeliveries = c.redeliveries;
  s.dedupe_dropped = c.dedupe_dropped;
  s.msg_ids_invalid = c.msg_ids_invalid;
  s.msg_ids_purged = c.msg_ids_purged;
  s.retention_deleted = c.retention_deleted;
  s.retention_transactions = c.retention_transactions;
  s.stages = {{"intake_queue", stage_intake_queue_.Take()},
              {"sequence", stage_sequence_.Take()},
              {"insert", stage_insert_.Take()},
              {"commit", stage_commit_.Take()},
              {"puback", stage_puback_.Take()}};
  // The writer's last call, and the lease's (every third of a lease, also
  // on a standby, which has no writer, and on an idle active).
  s.database_up = database_up_ && (!lease || lease->reaches_database());
  s.database_node = store_.endpoint();
  const auto link = [](const std::unique_ptr<MqttLink>& l) {
    return l ? RelayStats::Link{l->connected(), l->socket_reads(), l->socket_read_calls()} : RelayStats::Link{};
  };
  std::lock_guard lock(links_mu_);
  s.intake = link(intake_);
  s.output = link(output_);
  s.replay = link(replay_);
  return s;
}

void Relay::PublishStats() {
  // Not while the replay link is away: libmosquitto would keep every
  // report (QoS 1) for the reconnect, without bound, and send them all then
  // (until 2026-12-07: a report an interval for as long as the broker was
  // away; a helper's review). The interval's figures go into the next
  // report, made once the link is back.
  if (!replay_->connected()) return;
  RelayStats s = Snapshot();
  s.batch_rows = batch_rows_.Take();
  s.commit_ms = commit_ms_.Take();
  const std::string body = StatsJson(s);
  const std::span<const uint8_t> bytes(reinterpret_cast<const uint8_t*>(body.data()), body.size());
  // Every relay's own report, not retained (relay ids change with every
  // start); the shard's active's, retained on <control>/stats/<shard>; and
  // the default shard's active's on <control>/stats, as before shards.
  const std::string base = config_.control_prefix + "/stats";
  std::vector<std::pair<std::string, bool>> topics = {
      {fmt::format("{}/{}/{}", base, config_.shard, config_.relay_id), false}};
  // Active in this run (its final report too), and not replaced: a relay
  // resumed after a pause past its lease publishes before it learns it
  // lost the shard, and must not put its report over its successor's. A
  // lease lapsed because the database cannot be reached still reports
  // ("database": "down" is the news then), until another relay reports
  // itself active under a newer epoch: cut off from the database but not
  // from the broker, this relay would otherwise put "down" over its
  // successor's report every interval (until 2026-12-07).
  const bool lapsed_unreached = lease_ && !lease_->valid() && !lease_->reaches_database() &&
                                successor_epoch_.load() <= lease_->epoch();
  if (takeovers_ > 0 && !stepped_down_ && lease_ && (lease_->valid() || lapsed_unreached)) {
    topics.emplace_back(ShardStatsTopic(), true);
    if (config_.shard == "default") topics.emplace_back(base, true);
  }
  for (const auto& [topic, retain] : topics) {
    auto sent = replay_->Publish(topic, bytes, 1, std::nullopt, retain);
    if (sent.ok()) last_stats_mid_ = sent.value();
    if (!sent.ok()) {
      static RateLimit limit(std::chrono::minutes(1));
      if (auto suppressed = limit.Allow()) LogWarn("stats: {}{}", sent.error(), SuppressedNote(*suppressed));
    }
  }
}

std::string Relay::ShardStatsTopic() const { return fmt::format("{}/stats/{}", config_.control_prefix, config_.shard); }

void Relay::OnShardReport(const InboundMessage& report) {
  // Live reports only: the one the broker kept (retained, sent at each
  // subscribe) may be of another database's relays, an older deployment's,
  // with epochs of their own. A successor reports every interval.
  if (report.retain) return;
  const std::string_view body(reinterpret_cast<const char*>(report.payload.data()), report.payload.size());
  const auto holder = ParseReportHolder(body);
  // This relay's own reports come back to it. (A twin's, another process
  // started under the same id, come back as its own: the lease's twin
  // check, not this, stops such a pair.)
  if (!holder || !holder->active || holder->relay_id == config_.relay_id) return;
  uint32_t seen = successor_epoch_.load();
  while (holder->epoch > seen && !successor_epoch_.compare_exchange_weak(seen, holder->epoch)) {
  }
}

}  // namespace seqrelay
