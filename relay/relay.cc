// Relay: start-up (database, shard, journal, links), the standby wait and
// the takeover, the main thread's loop, and the orderly stop.
#include "relay.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "core/log.h"
#include "core/topic_filter.h"
#include "relay_parts.h"
#include "store/store_errors.h"

namespace seqrelay {

using namespace relay_parts;

Relay::Relay(Config config)
    : config_(std::move(config)),
      own_filters_(RemoveCoveredFilters(config_.sources)),
      rules_{config_.seq_prefix, config_.control_prefix, static_cast<std::size_t>(config_.max_payload)},
      queue_(config_.buffer_max, config_.buffer_max_bytes),
      store_(config_),
      sequencer_(config_.seq_prefix, config_.immediate),
      retransmit_(config_) {
  // The sessions' limit, applied at every connect: the writer's, frozen
  // mid-commit, must not hold its shard's row against a takeover, nor the
  // main thread's (it deletes PENDING rows and purges DEDUPE) those rows
  // against the next active's commits.
  store_.LimitIdleTransaction(IdleTransactionLimit(config_.lease_ms));
  pending_store_.LimitIdleTransaction(IdleTransactionLimit(config_.lease_ms));
  store_.LeadTheNode();  // (SharedNode: the writer and the lease stay on one node)
  if (const char* n = std::getenv("SEQTEST_KILL_AFTER_JOURNAL")) kill_after_journal_ = std::strtoull(n, nullptr, 10);
  if (const char* n = std::getenv("SEQTEST_BREAK_INTAKE_AFTER")) break_intake_after_ = std::strtoull(n, nullptr, 10);
  if (const char* n = std::getenv("SEQTEST_THROW_IN_INTAKE")) throw_in_intake_at_ = std::strtoull(n, nullptr, 10);
  if (const char* n = std::getenv("SEQTEST_THROW_AFTER_JOURNAL")) {
    char* end = nullptr;
    throw_after_journal_ = std::strtoull(n, &end, 10);
    throw_after_journal_error_ = std::string_view(end) == ":error";
  }
  if (const char* n = std::getenv("SEQTEST_THROW_AFTER_QUEUE")) throw_after_queue_ = std::strtoull(n, nullptr, 10);
  kill_after_resend_drop_ = std::getenv("SEQTEST_KILL_AFTER_RESEND_DROP") != nullptr;
  if (const char* n = std::getenv("SEQTEST_KILL_BEFORE_SESSION_MARK")) {
    kill_before_session_mark_ = std::strtoull(n, nullptr, 10);
  }
  if (const char* n = std::getenv("SEQTEST_KILL_AFTER_COMMIT")) {
    kill_after_commit_ = std::strtoull(n, nullptr, 10);
    break_intake_after_ = kill_after_commit_;
  }
  lose_frames_while_away_ = std::getenv("SEQTEST_LOSE_FRAMES_WHILE_AWAY") != nullptr;
  if (const char* n = std::getenv("SEQTEST_LOSE_FRAME_AT")) lose_frame_at_ = std::strtoull(n, nullptr, 10);
  if (const char* n = std::getenv("SEQTEST_HOLD_FIRST_FRAME_MS")) {
    hold_first_frame_ = milliseconds(std::strtoull(n, nullptr, 10));
  }
  if (const char* n = std::getenv("SEQTEST_UNACKNOWLEDGED_S")) unacknowledged_after_ = std::chrono::seconds(std::atoi(n));
  if (const char* n = std::getenv("SEQTEST_REPUBLISH_DELAY_MS")) {
    republish_delay_ = milliseconds(std::strtoull(n, nullptr, 10));
  }
  const char* retention_bytes = std::getenv("SEQTEST_RETENTION_MAX_BYTES");
  retention_max_bytes_ = retention_bytes ? std::strtoull(retention_bytes, nullptr, 10) : kRetentionMaxBytes;
  if (const char* n = std::getenv("SEQTEST_KILL_DB_BEFORE_COMMIT")) {
    store_.InjectKillBeforeCommit(std::strtoull(n, nullptr, 10));
  }
}

Relay::~Relay() {
  {
    // Past Run's shutdown, or leaving it early: whatever still waits (an
    // intake callback for its verdict or its session's mark) gives up now.
    std::lock_guard lock(stop_mu_);
    if (!stop_requested_ || give_up_at_ > Clock::now()) give_up_at_ = Clock::now();
    stop_requested_ = true;
    stopping_ = true;
  }
  metrics_.reset();
  queue_.Close();
  if (intake_) intake_->Stop();
  if (writer_.joinable()) writer_.join();
  retransmit_.Stop();
  if (replay_) replay_->Stop();
  if (output_) output_->Stop();
}

void Relay::RequestStop() {
  std::lock_guard lock(stop_mu_);
  if (!stop_requested_) {
    stop_requested_ = true;
    give_up_at_ = Clock::now() + std::chrono::seconds(config_.shutdown_timeout_s);
    stopping_ = true;
  }
  stop_cv_.notify_all();
  acked_cv_.notify_all();
}

void Relay::Fail(const std::string& why, int exit_code) {
  {
    std::lock_guard lock(stop_mu_);
    if (fatal_.empty()) {
      fatal_ = why;
      fatal_code_ = exit_code;
    }
  }
  RequestStop();
}

std::optional<std::chrono::steady_clock::time_point> Relay::StopDeadline() const {
  std::lock_guard lock(stop_mu_);
  if (!stop_requested_ || stepped_down_) return std::nullopt;
  return give_up_at_ + kStopMargin;
}

bool Relay::GivingUp() const {
  if (!stopping_) return false;
  std::lock_guard lock(stop_mu_);
  return Clock::now() >= give_up_at_;
}

void Relay::SleepUnlessGivingUp(milliseconds d) {
  std::unique_lock lock(stop_mu_);
  const auto until = Clock::now() + d;
  stop_cv_.wait_until(lock, until, [&] { return stop_requested_ && Clock::now() >= give_up_at_; });
}

// ---- Start-up ---------------------------------------------------------------

Status Relay::ConnectDatabase(MysqlStore::Progress& progress) {
  if (Status s = store_.Connect(config_.migrate); !s.ok()) return s;
  auto p = store_.ReadProgress();
  if (!p.ok()) return p.status();
  progress = p.value();
  return Status::Ok();
}

Status Relay::OpenDatabase() {
  Backoff backoff;
  RateLimit limit(std::chrono::seconds(10));
  const std::string target = config_.db_socket.empty() ? fmt::format("{}:{}", config_.db_host, config_.db_port)
                                                       : "unix:" + config_.db_socket;
  for (;;) {
    Status s = store_.Connect(config_.migrate);
    if (s.ok()) s = store_.Migrate(config_.migrate);
    if (s.ok()) s = CheckPacketLimit();
    if (s.ok()) {
      // The shard: its filters recorded (and checked against every other
      // shard's), its number (where its rows' idx lie).
      auto num = store_.RegisterShard(config_.shard, own_filters_);
      if (num.ok()) shard_num_ = *num;
      shard_refused_ = num.status().permanent();
      s = num.status();
    }
    if (s.ok()) {
      auto identity = store_.DatabaseIdentity();
      if (identity.ok()) replay_group_ = ReplayShareGroup(config_, *identity);
      s = identity.status();
    }
    if (s.ok()) return s;
    if (s.permanent()) return s;
    if (IsLoginRefusal(s.database_code())) {
      // A setting to change, not a server still starting: said once, and
      // the process ends (a supervisor's restart tries again).
      return Status::Permanent(fmt::format(
          "{} refused the relay's login: {} (check --db-user, its password in SEQRELAY_DB_PASSWORD or "
          "--db-password, and the user's grants on '{}')", target, s.message(), config_.db_name));
    }
    if (auto suppressed = limit.Allow()) {
      LogWarn("database {} not ready: {}; retrying", target, s.message());
    }
    // A migration that waited for a table (MysqlStore::Migrate) held the
    // running relays' statements on it behind its ALTER meanwhile: it tries
    // again only after they have had a while to themselves.
    const auto wait = s.database_code() == kLockWaitTimeout ? std::max<std::chrono::milliseconds>(
                                                                  backoff.Next(), kMigrationRetryAfter)
                                                            : backoff.Next();
    std::unique_lock lock(stop_mu_);
    if (stop_cv_.wait_for(lock, wait, [&] { return stop_requested_; })) {
      return Status::Error("stopped before the database was ready");
    }
  }
}

Status Relay::CheckPacketLimit() {
  auto limit = store_.ReadMaxAllowedPacket();
  if (!limit.ok()) return limit.status();
  // One row: the payload and the topic as hex (two bytes of text each,
  // multi_statement.h) and the statement around them.
  const uint64_t row = 2 * (static_cast<uint64_t>(config_.max_payload) + 255) + kStatementOverhead;
  if (row > *limit) {
    return Status::Permanent(fmt::format(
        "--max-payload {} does not fit the database's max_allowed_packet of {} bytes (a row needs up to {}): raise "
        "max_allowed_packet (SET GLOBAL and the server's configuration) or lower --max-payload",
        config_.max_payload, *limit, row));
  }
  // A batch stays well under it, so that no batch of acceptable rows can
  // ever be too large.
  batch_max_bytes_ = std::min<std::size_t>(kBatchMaxBytes, static_cast<std::size_t>(*limit / 2));
  return Status::Ok();
}

int Relay::Run() {
  for (const auto& line : Describe(config_)) LogInfo("config: {}", line);
  // Configuration files first: a bad one stops the relay before it connects.
  // Both are settings to change, as a bad option is (exit 2; until
  // 2026-12-07 exit 1, which a supervisor takes for a failure to restart).
  if (!LoadAcl()) return 2;
  // Before the database: a relay that waits for it answers scrapes meanwhile
  // (seqrelay_database_up 0).
  if (!StartMetrics()) return 2;
  step_ = "opening the database and the journal";
  if (std::optional<int> exit_code = OpenStorage()) return *exit_code;
  ConfigureLinks();
  step_ = "connecting to mosquitto";
  if (!StartServing()) return 1;
  ServeUntilStopped();
  ShutDown();
  return ExitCode();
}

bool Relay::LoadAcl(bool reload) {
  if (config_.acl_file.empty()) return true;
  const std::string_view kept = reload ? "; the rules read before stay in force" : "";
  std::ifstream file(config_.acl_file);
  std::error_code ec;
  if (!file || std::filesystem::is_directory(config_.acl_file, ec)) {  // (a directory opens, and reads as empty)
    LogError("--acl-file: cannot read '{}'{}{}", config_.acl_file,
             std::filesystem::is_directory(config_.acl_file, ec) ? ": a directory" : "", kept);
    return false;
  }
  std::stringstream text;
  text << file.rdbuf();
  auto acl = Acl::Parse(text.str());
  if (!acl.ok()) {
    LogError("--acl-file {}: {}{}", config_.acl_file, acl.error(), kept);
    return false;
  }
  LogInfo("replay access control: {} rules from {}{}", acl->rule_count(), config_.acl_file,
          reload ? " (read again)" : "");
  retransmit_.SetAcl(std::make_shared<const Acl>(std::move(acl).value()));
  return true;
}

void Relay::ReloadAcl() {
  if (config_.acl_file.empty()) {
    LogInfo("replay access control: no --acl-file to read again");
    return;
  }
  LoadAcl(/*reload=*/true);
}

std::optional<int> Relay::OpenStorage() {
  if (Status s = OpenDatabase(); !s.ok()) {
    if (!s.permanent() && stopping_) return 0;
    if (shard_refused_) {
      LogError("{}", s.message());
      return 2;
    }
    LogError("database: {}", s.message());
    return 1;
  }
  if (!config_.journal_dir.empty()) {
    journal_ = std::make_unique<Journal>(config_.journal_dir);
    auto identity = journal_->Identify();
    if (!identity.ok()) {  // the directory cannot be made, written or locked: a setting to change
      LogError("{}", identity.error());
      return 2;
    }
    journal_id_ = identity->id;
    journal_created_ = identity->created;
  } else {
    LogWarn("--no-journal: messages received but not yet committed are lost if the relay is killed");
  }
  store_.UseShard(config_.shard, shard_num_, journal_id_);
  lease_ = std::make_unique<LeaseKeeper>(config_, shard_num_, journal_id_);
  pending_store_.UseShard(config_.shard, shard_num_, "");
  if (journal_) {
    if (Status s = HandOverJournal(); !s.ok()) {
      LogError("{}", s.message());
      return 1;
    }
  }
  database_up_ = true;
  storage_open_.store(true, std::memory_order_release);  // lease_ is set
  return std::nullopt;
}

void Relay::ConfigureLinks() {
  output_options_.host = config_.mqtt_host;
  output_options_.port = config_.mqtt_port;
  output_options_.user = config_.mqtt_user;
  output_options_.password = config_.mqtt_password;
  output_options_.keepalive_s = config_.mqtt_keepalive_s;
  output_options_.client_id = OwnClientId(config_, "out");
  output_options_.clean_session = true;
  output_options_.name = "output";
  // v5 on the output link shows a frame the broker refused (PUBACK reason
  // code). The intake is on v5 (with a session that never expires, as
  // 3.1.1's clean session off) to read the publishers' msg-ids and, dedupe
  // or not, to subscribe under Subscription Identifiers: a resend of a
  // new session's message is never taken for an older session's row
  // (docs/faults.md, "Known bounds").
  output_options_.mqtt_v5 = true;
  intake_options_ = output_options_;
  intake_options_.client_id = IntakeClientId(config_);
  if (!config_.mqtt_intake_user.empty()) {
    intake_options_.user = config_.mqtt_intake_user;
    intake_options_.password =
        config_.mqtt_intake_password.empty() ? config_.mqtt_password : config_.mqtt_intake_password;
  }
  intake_options_.clean_session = false;  // persistent: the broker queues for us while we are away
  intake_options_.name = "intake";
  // (Its filters: PlanIntakeFilters, at each takeover.)
  for (const auto& f : config_.sources) {
    if (std::find(own_filters_.begin(), own_filters_.end(), f) == own_filters_.end()) {
      LogInfo("source '{}' is covered by another source; not subscribed separately", f);
    }
  }
}

bool Relay::StartServing() {
  // Retransmit: every relay, active or standby, serves replays of any topic
  // from the database. The request topic is a shared subscription, so that
  // the broker hands each request to exactly one of them; its group is one
  // only the database's relays can name (ReplayShareGroup).
  MqttLink::Options rep = output_options_;
  rep.client_id = OwnClientId(config_, "replay");
  rep.name = "replay";
  rep.mqtt_v5 = true;  // to honour Response Topic and Correlation Data
  rep.subscriptions = {fmt::format("$share/{}/{}/retransmit/+", replay_group_, config_.control_prefix),
                       fmt::format("$share/{}/{}/retransmit/+/+", replay_group_, config_.control_prefix)};
  // The shard's retained report too, to learn of a successor (PublishStats).
  const std::string shard_stats = config_.stats_interval_s > 0 ? ShardStatsTopic() : std::string();
  if (!shard_stats.empty()) rep.subscriptions.push_back(shard_stats);
  auto replay = MqttLink::Start(rep, {.on_connect = nullptr,
                                      .on_connected = nullptr,
                                      .on_message =
                                          [this, shard_stats](const InboundMessage& m) {
                                            if (!shard_stats.empty() && m.topic == shard_stats) {
                                              OnShardReport(m);
                                            } else {
                                              retransmit_.OnRequest(m);
                                            }
                                            return MqttLink::AfterMessage::kReadOn;
                                          },
                                      .on_subscribed = nullptr,
                                      .subscription_tag = nullptr,
                                      .on_published =
                                          [this](int mid, int reason) {
                                            if (mid == last_stats_mid_.load()) {
                                              std::lock_guard lock(stop_mu_);
                                              last_stats_acked_ = true;
                                              stop_cv_.notify_all();
                                            }
                                            retransmit_.OnPublished(mid, reason);
                                          },
                                      .on_fatal = [this](const std::string& why) { Fail("replay link: " + why); },
                                      .may_connect = nullptr});
  if (!replay.ok()) {
    LogError("{}", replay.error());
    return false;
  }
  {
    std::lock_guard lock(links_mu_);  // the metrics thread reads it
    replay_ = std::move(replay).value();
  }
  retransmit_.Start(*replay_);
  return true;
}

bool Relay::StartMetrics() {
  if (config_.metrics_port <= 0) return true;
  auto metrics =
      MetricsHttp::Start(config_.metrics_bind, config_.metrics_port, [this] { return PrometheusText(Snapshot()); });
  if (!metrics.ok()) {
    LogError("{}", metrics.error());
    return false;
  }
  metrics_ = std::move(metrics).value();
  LogInfo("metrics: serving http://{}:{}/metrics", config_.metrics_bind, metrics_->port());
  return true;
}

void Relay::ServeUntilStopped() {
  const auto interval = std::chrono::seconds(config_.stats_interval_s);
  auto next_stats = Clock::now() + interval;
  auto stats_if_due = [&] {
    const auto now = Clock::now();
    if (interval.count() > 0 && now >= next_stats) {
      // One report for intervals missed (the main thread held up by a
      // takeover, say), not one each in a burst.
      next_stats = std::max(next_stats + interval, now + interval);
      PublishStats();
    }
  };
  // Standby until this relay holds the shard's lease; with --broker-grace,
  // only while it reaches mosquitto (its replay link is up).
  std::function<bool()> may_take;
  if (config_.broker_grace_s > 0) may_take = [this] { return replay_->connected(); };
  step_ = "waiting for the shard's lease";
  if (!stopping_ && lease_->Acquire([this] { return stopping_.load(); }, stats_if_due, may_take,
                                    "no connection to mosquitto (a relay cut off from it sequences nothing)")) {
    step_ = "taking the shard over";
    if (!BecomeActive()) Fail("could not take the shard over");
  } else if (!lease_->refusal().empty()) {
    Fail(lease_->refusal(), kBadConfiguration);
  }
  if (!intake_after_hand_over_) step_ = "serving";

  std::unique_lock lock(stop_mu_);
  while (!stop_requested_) {
    // Woken for the stats, a resume, and every second while active to
    // store what a relay of the shard handed over from its journal.
    auto until = Clock::now() + std::chrono::seconds(1);
    if (interval.count() > 0) until = std::min(until, next_stats);
    stop_cv_.wait_until(lock, until, [&] {
      return stop_requested_ || resume_intake_ || republish_due_ ||
             // a round of the hand-over committed (a failed one is tried again a second on)
             (intake_after_hand_over_ && !hand_over_round_failed_ && pending_queued_.load() == 0);
    });
    if (stop_requested_) break;
    const bool republish = std::exchange(republish_due_, false) || std::exchange(republish_retry_, false);
    if (republish && active_) {
      lock.unlock();
      RepublishUnconfirmed();
      lock.lock();
    }
    if (resume_intake_) {
      resume_intake_ = false;
      lock.unlock();
      LogInfo("intake: buffer down to {} messages; resuming the intake link", queue_.size());
      if (intake_) intake_->Resume();
      lock.lock();
    }
    lock.unlock();
    // Also here, not only after the writer's batches: the intake may flag
    // its pause after the batch that emptied the queue looked.
    ResumeIntakeIfDrained();
    if (active_) {
      const PendingRound round = PumpPending();
      if (intake_after_hand_over_) StartIntakeOnceHandedOverStored(round);
      PurgeMsgIds();
      TrackSubscriptions();
      ApplyRetention();
      WatchUnacknowledged();
    }
    stats_if_due();
    lock.lock();
  }
}

void Relay::ShutDown() {
  // 1. Stop taking messages: DISCONNECT the intake. Whatever the broker had
  //    already delivered is still pushed; the rest stays queued in our session.
  if (active_ || stepped_down_) LogInfo("stopping: no new messages; committing and publishing {} held", queue_.size());
  step_ = "closing the intake";
  if (intake_) intake_->Disconnect();
  // The output link reconnected and its republish is not done yet: done
  // now while the link is up, so that the rows sent again go before most
  // of the writer's last frames (which, at a stop, no longer wait for it).
  if (active_ && output_ && output_->connected() && republished_reconnects_.load() != output_reconnects_.load()) {
    RepublishUnconfirmed();
  }
  // 2. Wait until the intake link has disconnected: its callback may be
  //    blocked on a full queue while the writer drains it. If the deadline
  //    passes first, closing the queue unblocks the callback (that message is
  //    lost and counted) and makes the writer give up.
  if (intake_) {
    while (intake_->connected() && !GivingUp()) SleepUnlessGivingUp(milliseconds(20));
    if (GivingUp()) queue_.Close();
    intake_->Stop();
  }
  queue_.Close();  // the writer drains what is left, then ends
  step_ = "committing what it holds";
  if (writer_.joinable()) writer_.join();
  // 3. Wait for the broker to acknowledge what was published, then save the
  //    watermark so the next active republishes as little as possible, and
  //    hand the lease over at once.
  if (active_) {
    const auto until = [&] {
      std::lock_guard lock(stop_mu_);  // the lease's thread may step down meanwhile
      return give_up_at_ + std::chrono::seconds(2);
    }();
    step_ = "waiting for the broker to acknowledge its last frames";
    {
      std::unique_lock lock(publish_mu_);
      acked_cv_.wait_until(lock, until, [&] { return tracker_.in_flight() == 0; });
    }
    const uint64_t watermark = AckedWatermark();
    step_ = "saving the published watermark";
    if (store_.connected()) {
      if (Status s = store_.SavePublished(watermark); !s.ok()) {
        LogWarn("could not save the published watermark: {}", s.message());
      }
    }
  }
  // The final figures, taken by the broker (2 s at most, if the replay link
  // is connected) before the lease goes: a standby that takes the shard
  // over at the release publishes its own report on the shard's retained
  // topic after this one, not before it; and they stay retained.
  if (config_.stats_interval_s > 0) {
    {
      std::lock_guard lock(stop_mu_);
      last_stats_acked_ = false;
    }
    PublishStats();
    step_ = "publishing the final stats";
    std::unique_lock lock(stop_mu_);
    if (replay_->connected()) stop_cv_.wait_for(lock, std::chrono::seconds(2), [&] { return last_stats_acked_; });
  }
  step_ = "releasing the lease";
  lease_->Stop(/*release=*/active_ && !stepped_down_);
  metrics_.reset();
  step_ = "sending the last retransmit replies";
  retransmit_.Stop();  // while the replay link can still send the last statuses
  if (std::size_t n = retransmit_.WaitAcknowledged(std::chrono::seconds(2)); n > 0) {
    LogWarn("stopping: {} retransmit replies not acknowledged by the broker", n);
  }
  step_ = "closing its links";
  replay_->Stop();
  if (output_) output_->Stop();
  step_ = "stopped";
}

int Relay::ExitCode() {
  const Counters& c = counters_;
  LogInfo("stopped: received {}, committed {} in {} batches, published {} ({} republished), acknowledged {}, "
          "refused {} (topic too long {}, payload too large {}, out of SEQ {}, over --max-topics {}), set aside {}, "
          "ignored {} (own topics {}, retained {}), publishers' resends dropped {}; retransmit requests {} (ok {}, "
          "error {}, frames {})",
          c.received.load(), c.committed.load(), c.batches.load(), c.published.load(), c.republished.load(),
          c.acked.load(), c.refused_topic + c.refused_payload + c.refused_seq + c.refused_topics,
          c.refused_topic.load(), c.refused_payload.load(), c.refused_seq.load(), c.refused_topics.load(),
          c.set_aside.load(), c.ignored_own + c.ignored_retained, c.ignored_own.load(),
          c.ignored_retained.load(), c.dedupe_dropped.load(), retransmit_.counters().requests.load(), retransmit_.counters().served.load(),
          retransmit_.counters().failed(), retransmit_.counters().frames.load());
  if (c.deferred > 0) {
    LogWarn("{} received messages were not committed before {}: kept for the shard's next active (journaled ones "
            "are handed over at this relay's next start; the others mosquitto sends again, or stay handed over)",
            c.deferred.load(), stepped_down_ ? "the lease was lost" : fmt::format("--shutdown-timeout ({} s)",
                                                                                  config_.shutdown_timeout_s));
  }
  if (stepped_down_) {
    if (c.lost > 0) {
      LogError("stepped down with {} received messages not committed, acknowledged and held in memory only "
               "(no --journal-dir, or the journal failed): they are lost", c.lost.load());
    }
    return kSteppedDown;
  }
  std::string fatal;
  int fatal_code = 1;
  {
    std::lock_guard lock(stop_mu_);
    fatal = fatal_;
    fatal_code = fatal_code_;
  }
  if (c.lost > 0) {
    LogError("{} received messages could not be committed before --shutdown-timeout ({} s), were acknowledged "
             "and held in memory only (no --journal-dir, or the journal failed): they are lost",
             c.lost.load(), config_.shutdown_timeout_s);
    return 1;
  }
  if (!fatal.empty()) {
    LogError("stopped because of: {}", fatal);
    return fatal_code;
  }
  return 0;
}

bool Relay::BecomeActive() {
  const uint32_t epoch = lease_->epoch();
  store_.SetEpoch(epoch);
  // Renewed from the moment it is taken: the reads below wait as long as
  // the database makes them (a lock, a Galera node catching up), and a lease
  // left to lapse meanwhile goes to the next standby, which waits the same.
  std::function<bool()> may_renew;
  if (config_.broker_grace_s > 0) may_renew = [this] { return BrokerReachable(); };
  lease_->StartRenewing([this](const std::string& why) { StepDown(why); }, std::move(may_renew),
                        fmt::format("no connection to mosquitto for {} s (--broker-grace); a standby that reaches it "
                                    "may take the shard over",
                                    config_.broker_grace_s));
  MysqlStore::Progress progress;
  if (!Retry("read the shard's progress", [&] {
        auto p = store_.ReadProgress();
        if (p.ok()) progress = *p;
        return p.status();
      })) {
    return false;
  }
  // Retried as the progress is: a database error here ended the process
  // (exit 1), its lease held until it lapsed.
  if (!Retry("count the topics", [&] {
        auto n = store_.CountTopics();
        if (n.ok()) topic_rows_ = *n;
        return n.status();
      })) {
    return false;
  }
  if (config_.max_topics > 0 && topic_rows_ >= static_cast<uint64_t>(config_.max_topics)) {
    LogWarn("the database holds {} topics, --max-topics is {}: messages on new topics will be refused", topic_rows_,
            config_.max_topics);
  }
  if (Status s = store_.PruneTaken(epoch); !s.ok()) LogWarn("{}", s.message());
  if (stepped_down_) return true;  // lost meanwhile: the stop that StepDown asked for follows
  intake_session_no_.store(progress.session_no, std::memory_order_relaxed);
  if (journal_ && journal_->session().number != progress.session_no) {
    // What this relay's journal remembers was taken in an MQTT session that
    // has been replaced since (another holder began a new one after the
    // broker forgot it): nothing of it can be resent, and a new message
    // matching a record would be dropped as a resend.
    std::lock_guard lock(redelivery_mu_);
    redelivery_.ForgetAll();
  } else if (lease_->previous_journal() != journal_id_) {
    // What this relay's journal remembers of the shard's session is from an
    // earlier stint: another relay took deliveries since, under packet ids
    // that may have wrapped round to remembered ones, and a new message
    // matching a committed record would be dropped as a resend. Its
    // uncommitted records stay: mosquitto may still hold them unacknowledged
    // (resent to the other relay, which died before committing them) and
    // resend them here, while they are stored from PENDING.
    std::lock_guard lock(redelivery_mu_);
    redelivery_.ForgetCommitted();
  }
  // The next row's idx follows every one this shard has used: its newest
  // row may be gone (another shard's retention deletes this shard's
  // acknowledged rows of a topic that moved there), and a number used
  // again below PUBLISHED_IDX or the session's first row would be taken for
  // one acknowledged, or for one of an earlier session. max_idx is at least
  // the shard's base (COALESCE in ReadProgress).
  const uint64_t range_end = store_.idx_base() + MysqlStore::kShardIdxSpan - 1;
  const uint64_t session_before = progress.session_idx > 0 ? std::min(progress.session_idx, range_end + 1) - 1 : 0;
  const uint64_t last_idx =
      std::max({progress.max_idx, std::min(progress.published_idx, range_end), session_before});
  sequencer_.SetLastIdx(last_idx);
  tracker_ = PublishTracker(std::clamp(progress.published_idx, store_.idx_base(), last_idx));
  // A successor this relay saw in an earlier stint is one no more (and
  // epochs may have begun again with the database).
  successor_epoch_.store(0);
  active_ = true;
  ++takeovers_;
  ++Takeovers();
  // (Idx numbers, not row counts: retention deletes rows below them.)
  LogInfo("active: holding shard '{}' (epoch {}); its rows committed up to idx {}, confirmed published up to {}",
          config_.shard, epoch, progress.max_idx, tracker_.watermark());

  auto output = MqttLink::Start(output_options_,
                                {.on_connect =
                                     [this](bool) {
                                       // Counted before the probe's flag is read; CheckFrameLimit
                                       // sets the flag, then reads the count: one of the two sends it.
                                       const bool first = output_connects_.fetch_add(1) == 0;
                                       if (probe_on_connect_.exchange(false)) {
                                         if (Status s = SendProbe(); !s.ok()) Fail(s.message());
                                       }
                                       // Before the link counts as connected: the writer's next
                                       // frame waits for this reconnect's republish.
                                       if (!first) ++output_reconnects_;
                                     },
                                 .on_connected =
                                     [this] {
                                       // After libmosquitto's resends: the rows sent again go next.
                                       acked_cv_.notify_all();  // a writer waiting for the link
                                       if (republished_reconnects_.load() == output_reconnects_.load()) return;
                                       {
                                         std::lock_guard lock(stop_mu_);
                                         republish_due_ = true;
                                       }
                                       stop_cv_.notify_all();
                                     },
                                 .on_message = nullptr,
                                 .on_subscribed = nullptr,
                                 .subscription_tag = nullptr,
                                 .on_published = [this](int mid, int reason) { OnPublished(mid, reason); },
                                 .on_fatal = [this](const std::string& why) { Fail("output link: " + why); },
                                 .may_connect = nullptr});
  if (!output.ok()) {
    LogError("{}", output.error());
    return false;
  }
  {
    std::lock_guard lock(links_mu_);
    output_ = std::move(output).value();
  }
  if (Status s = CheckFrameLimit(); !s.ok()) {
    LogError("{}", s.message());
    return false;
  }
  if (tracker_.watermark() < sequencer_.last_idx()) {
    LogInfo("republishing rows {}..{}, committed before the last stop but not confirmed as published",
            tracker_.watermark() + 1, sequencer_.last_idx());
    if (Status s = Republish(tracker_.watermark(), sequencer_.last_idx(), false); !s.ok()) LogWarn("{}", s.message());
  }

  writer_ = std::thread([this] { WriterLoop(); });
  // What this relay's journal (handed over at start) or another relay's
  // holds for the shard was taken before anything the intake will take:
  // stored first, round after round (the main loop queues each once the
  // writer has committed the one before), and then the intake starts.
  if (const PendingRound round = PumpPending();
      round == PendingRound::kProgress || (round == PendingRound::kFailed && !stopping_)) {
    intake_after_hand_over_ = true;  // a failed read is tried again, for kHandOverStall
    hand_over_round_failed_ = round == PendingRound::kFailed;
    hand_over_progress_at_ = Clock::now();
    step_ = "storing the messages handed over to the shard";
    return true;
  }
  if (stopping_) return true;
  return StartIntake();
}

void Relay::StartIntakeOnceHandedOverStored(PendingRound round) {
  // Until 2026-12-07 the intake started after the first round (1,000
  // messages, 8 MiB): the rest of a larger journal was stored after newer
  // messages (a helper's review). A database that fails for kHandOverStall
  // (no round queued or committed meanwhile) lets the intake start all the
  // same: what is left is then stored after newer messages, recovered late,
  // rather than new ones left in the broker's queue for the outage. Time
  // the writer waits for the broker (the output link away, too many frames
  // unacknowledged) does not count.
  if (stopping_) return;
  hand_over_round_failed_ = round == PendingRound::kFailed;
  const auto now = Clock::now();
  const Clock::time_point unstalled_at{Clock::duration(writer_unstalled_at_.load(std::memory_order_relaxed))};
  if (round == PendingRound::kProgress || !output_->connected()) hand_over_progress_at_ = now;
  hand_over_progress_at_ = std::max(hand_over_progress_at_, unstalled_at);
  if (round != PendingRound::kNone && now - hand_over_progress_at_ < kHandOverStall) {
    step_ = "storing the messages handed over to the shard";
    return;
  }
  if (round != PendingRound::kNone) {
    LogWarn("taking new messages before all that was handed over to shard '{}' is stored (no round stored for {} "
            "s{}): the rest is stored after them, recovered late",
            config_.shard, kHandOverStall.count(),
            round == PendingRound::kFailed ? ", the database failing" : "");
  }
  intake_after_hand_over_ = false;
  step_ = "serving";
  if (!StartIntake()) Fail("could not start the intake link");
}

bool Relay::StartIntake() {
  PlanIntakeFilters();
  resumed_left_ = kResumedWindow;  // before the intake's thread exists
  auto intake = MqttLink::Start(intake_options_,
                                {.on_connect =
                                     [this](bool session_present) { OnIntakeConnected(session_present); },
                                 .on_connected = nullptr,
                                 .on_message = [this](const InboundMessage& m) { return OnIntake(m); },
                                 .on_subscribed =
                                     [this] {
                                       before_suback_ = false;
                                       intake_subscribed_ = true;
                                       std::lock_guard lock(redelivery_mu_);
                                       redelivery_.Subscribed();
                                     },
                                 .subscription_tag = [this] { return IntakeSubscriptionTag(); },
                                 .on_published = nullptr,
                                 .on_fatal = [this](const std::string& why) { Fail("intake link: " + why); },
                                 // The shard's session only while the lease is surely ours:
                                 // a relay that lost it must not take the session back from its successor.
                                 .may_connect = [this] { return lease_->valid() && !intake_held_; }});
  if (!intake.ok()) {
    LogError("{}", intake.error());
    return false;
  }
  {
    std::lock_guard lock(links_mu_);
    intake_ = std::move(intake).value();
  }
  return true;
}

void Relay::StepDown(const std::string& why) {
  if (stepped_down_.exchange(true)) return;
  active_ = false;
  ++StepDowns();
  LogError("stepping down to standby: {}; this relay commits and publishes nothing more", why);
  {
    std::lock_guard lock(stop_mu_);
    stop_requested_ = true;
    give_up_at_ = Clock::now();  // no commit can succeed without the lease: do not wait for one
    stopping_ = true;
  }
  stop_cv_.notify_all();
  acked_cv_.notify_all();
}

void Relay::ResumeIntakeIfDrained() {
  // The flag is taken once: one resume per pause (a second Resume() would
  // find the link running and cancel the next pause).
  if (!intake_paused_.load(std::memory_order_relaxed) || !queue_.below_resume_mark()) return;
  if (!intake_paused_.exchange(false)) return;
  std::lock_guard lock(stop_mu_);
  resume_intake_ = true;  // the main thread owns the links
  stop_cv_.notify_all();
}

bool Relay::BrokerReachable() {
  if (replay_->connected()) {
    broker_lost_at_ns_ = 0;
    return true;
  }
  const int64_t now = Clock::now().time_since_epoch().count();
  int64_t lost_at = broker_lost_at_ns_.load();
  if (lost_at == 0) {
    broker_lost_at_ns_ = now;
    return true;
  }
  return std::chrono::nanoseconds(now - lost_at) < std::chrono::seconds(config_.broker_grace_s);
}

std::atomic<uint64_t>& Relay::Takeovers() {
  static std::atomic<uint64_t> count{0};
  return count;
}

std::atomic<uint64_t>& Relay::StepDowns() {
  static std::atomic<uint64_t> n{0};
  return n;
}

}  // namespace seqrelay
