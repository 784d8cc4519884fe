#include "relay.h"

#include <fmt/format.h>

#include <algorithm>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "log.h"
#include "store_errors.h"
#include "topic_filter.h"

namespace seqrelay {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Bytes per transaction, at most: keeps every INSERT well under MariaDB's
// default max_allowed_packet (16 MiB); lowered to half the server's own
// limit at start. A single larger row still goes alone.
constexpr std::size_t kBatchMaxBytes = 4 * 1024 * 1024;

// What an INSERT adds to a row's payload and topic, with room to spare.
constexpr uint64_t kStatementOverhead = 1024;

// Publishes awaiting the broker's acknowledgement at once. MQTT message ids
// are 16-bit, so this must stay well under 65535.
constexpr std::size_t kMaxUnacked = 20000;

// Rows read per query when publishing again what a previous run committed.
constexpr std::size_t kRepublishChunk = 1000;

// Exponential backoff for database reconnects: 100 ms doubling to 5 s.
class Backoff {
 public:
  milliseconds Next() {
    milliseconds d = next_;
    next_ = std::min(next_ * 2, milliseconds(5000));
    return d;
  }

 private:
  milliseconds next_{100};
};

// The writer's session may idle inside a transaction this long (seconds,
// whole, at least 1) before the server ends it: about one lease.
int IdleTransactionLimit(int lease_ms) { return std::max(1, (lease_ms + 999) / 1000); }

double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

Relay::Relay(Config config)
    : config_(std::move(config)),
      rules_{config_.seq_prefix, config_.control_prefix, static_cast<std::size_t>(config_.max_payload)},
      queue_(config_.buffer_max, config_.buffer_max_bytes),
      store_(config_),
      sequencer_(config_.seq_prefix, config_.immediate),
      retransmit_(config_) {
  if (const char* n = std::getenv("SEQTEST_KILL_AFTER_JOURNAL")) kill_after_journal_ = std::strtoull(n, nullptr, 10);
  if (const char* n = std::getenv("SEQTEST_BREAK_INTAKE_AFTER")) break_intake_after_ = std::strtoull(n, nullptr, 10);
  if (const char* n = std::getenv("SEQTEST_KILL_DB_BEFORE_COMMIT")) {
    store_.InjectKillBeforeCommit(std::strtoull(n, nullptr, 10));
  }
}

Relay::~Relay() {
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

void Relay::Fail(const std::string& why) {
  {
    std::lock_guard lock(stop_mu_);
    if (fatal_.empty()) fatal_ = why;
  }
  RequestStop();
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
  if (Status s = store_.LimitIdleTransaction(IdleTransactionLimit(config_.lease_ms)); !s.ok()) return s;
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
    if (s.ok()) s = store_.LimitIdleTransaction(IdleTransactionLimit(config_.lease_ms));
    if (s.ok()) s = store_.Migrate(config_.migrate);
    if (s.ok()) s = CheckPacketLimit();
    if (s.ok()) {
      // The shard: its filters recorded (and checked against every other
      // shard's), its number (where its rows' idx lie).
      auto num = store_.RegisterShard(config_.shard, RemoveCoveredFilters(config_.sources));
      if (num.ok()) shard_num_ = *num;
      shard_refused_ = num.status().permanent();
      s = num.status();
    }
    if (s.ok()) return s;
    if (s.permanent()) return s;
    if (auto suppressed = limit.Allow()) {
      LogWarn("database {} not ready: {}; retrying", target, s.message());
    }
    std::unique_lock lock(stop_mu_);
    if (stop_cv_.wait_for(lock, backoff.Next(), [&] { return stop_requested_; })) {
      return Status::Error("stopped before the database was ready");
    }
  }
}

Status Relay::CheckPacketLimit() {
  auto limit = store_.ReadMaxAllowedPacket();
  if (!limit.ok()) return limit.status();
  // One row: the payload, the topic and the statement around them.
  const uint64_t row = static_cast<uint64_t>(config_.max_payload) + 255 + kStatementOverhead;
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

Status Relay::Republish() {
  // Rows committed but perhaps never acknowledged on seq/T by the broker:
  // publish them again (clients drop duplicates by SEQ).
  uint64_t after = tracker_.watermark();
  const uint64_t last = sequencer_.last_idx();
  if (after >= last) return Status::Ok();
  LogInfo("republishing rows {}..{}, committed before the last stop but not confirmed as published", after + 1, last);
  while (after < last) {
    Result<std::vector<MysqlStore::StoredRow>> rows = Status::Ok();
    bool ok = Retry(
        "read rows to republish", [&] { return (rows = store_.ReadRowsAfter(after, kRepublishChunk)).status(); },
        [](const MysqlStore::Progress&) { return AfterReconnect::kRetry; });
    if (!ok) return Status::Error("stopped while republishing");
    if (rows->empty()) break;  // rows deleted behind the watermark: nothing left to send
    for (const auto& row : *rows) {
      auto frame = EncodeFrame({row.topic_id, row.seq, static_cast<Ordering>(row.ordering & 1)},
                               {reinterpret_cast<const uint8_t*>(row.payload.data()), row.payload.size()});
      if (!frame.ok()) {
        LogError("row idx {} of '{}' cannot be framed: {}", row.idx, row.topic, frame.error());
        continue;
      }
      const std::string topic = fmt::format("{}/{}", config_.seq_prefix, row.topic);
      const auto& bytes = frame.value();
      if (!Publish(topic, {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, row.idx)) {
        return Status::Error("stopped while republishing");
      }
      ++counters_.republished;
      after = row.idx;
    }
  }
  return Status::Ok();
}

int Relay::Run() {
  for (const auto& line : Describe(config_)) LogInfo("config: {}", line);

  // Configuration files first: a bad one stops the relay before it connects.
  if (!config_.acl_file.empty()) {
    std::ifstream file(config_.acl_file);
    if (!file) {
      LogError("--acl-file: cannot read '{}'", config_.acl_file);
      return 1;
    }
    std::stringstream text;
    text << file.rdbuf();
    auto acl = Acl::Parse(text.str());
    if (!acl.ok()) {
      LogError("--acl-file {}: {}", config_.acl_file, acl.error());
      return 1;
    }
    LogInfo("replay access control: {} rules from {}", acl->rule_count(), config_.acl_file);
    retransmit_.SetAcl(std::make_shared<const Acl>(std::move(acl).value()));
  }

  if (Status s = OpenDatabase(); !s.ok()) {
    if (!s.permanent() && stopping_) return 0;
    if (shard_refused_) {
      LogError("{}", s.message());
      return 2;
    }
    LogError("database: {}", s.message());
    return 1;
  }
  std::string journal_id;
  if (!config_.journal_dir.empty()) {
    journal_ = std::make_unique<Journal>(config_.journal_dir);
    auto identity = journal_->Identify();
    if (!identity.ok()) {
      LogError("{}", identity.error());
      return 1;
    }
    journal_id = identity->id;
    journal_created_ = identity->created;
  } else {
    LogWarn("no --journal-dir: messages received but not yet committed are lost if the relay is killed");
  }
  store_.UseShard(config_.shard, shard_num_, journal_id);
  lease_ = std::make_unique<LeaseKeeper>(config_, shard_num_);
  pending_store_.UseShard(config_.shard, shard_num_, "");
  if (journal_) {
    if (Status s = HandOverJournal(); !s.ok()) {
      LogError("{}", s.message());
      return 1;
    }
  }
  database_up_ = true;

  output_options_.host = config_.mqtt_host;
  output_options_.port = config_.mqtt_port;
  output_options_.user = config_.mqtt_user;
  output_options_.password = config_.mqtt_password;
  output_options_.keepalive_s = config_.mqtt_keepalive_s;
  output_options_.client_id = OwnClientId(config_, "out");
  output_options_.clean_session = true;
  output_options_.name = "output";
  // v5 on the output link shows a frame the broker refused (PUBACK reason
  // code). The intake stays on 3.1.1, whose clean-session-off keeps the
  // session without a v5 session expiry interval.
  output_options_.mqtt_v5 = true;
  intake_options_ = output_options_;
  intake_options_.mqtt_v5 = false;
  intake_options_.client_id = IntakeClientId(config_);
  if (!config_.mqtt_intake_user.empty()) {
    intake_options_.user = config_.mqtt_intake_user;
    intake_options_.password =
        config_.mqtt_intake_password.empty() ? config_.mqtt_password : config_.mqtt_intake_password;
  }
  intake_options_.clean_session = false;  // persistent: the broker queues for us while we are away
  intake_options_.name = "intake";
  intake_options_.subscriptions = RemoveCoveredFilters(config_.sources);
  for (const auto& f : config_.sources) {
    if (std::find(intake_options_.subscriptions.begin(), intake_options_.subscriptions.end(), f) ==
        intake_options_.subscriptions.end()) {
      LogInfo("source '{}' is covered by another source; not subscribed separately", f);
    }
  }

  // Retransmit: every relay, active or standby, serves replays of any topic
  // from the database. The request topic is a shared subscription, so that
  // the broker hands each request to exactly one of them.
  MqttLink::Options rep = output_options_;
  rep.client_id = OwnClientId(config_, "replay");
  rep.name = "replay";
  rep.mqtt_v5 = true;  // to honour Response Topic and Correlation Data
  rep.subscriptions = {fmt::format("$share/{}/{}/retransmit/+", config_.mqtt_client_id, config_.control_prefix)};
  auto replay = MqttLink::Start(rep, {.on_connect = nullptr,
                                      .on_message =
                                          [this](const InboundMessage& m) {
                                            retransmit_.OnRequest(m);
                                            return MqttLink::AfterMessage::kReadOn;
                                          },
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
    return 1;
  }
  replay_ = std::move(replay).value();
  retransmit_.Start(*replay_);
  if (config_.metrics_port > 0) {
    auto metrics = MetricsHttp::Start(config_.metrics_bind, config_.metrics_port,
                                      [this] { return PrometheusText(Snapshot()); });
    if (!metrics.ok()) {
      Fail(metrics.error());
    } else {
      metrics_ = std::move(metrics).value();
      LogInfo("metrics: serving http://{}:{}/metrics", config_.metrics_bind, metrics_->port());
    }
  }

  const auto interval = std::chrono::seconds(config_.stats_interval_s);
  auto next_stats = Clock::now() + interval;
  auto stats_if_due = [&] {
    if (interval.count() > 0 && Clock::now() >= next_stats) {
      next_stats += interval;
      PublishStats();
    }
  };
  // Standby until this relay holds the shard's lease.
  if (!stopping_ && lease_->Acquire([this] { return stopping_.load(); }, stats_if_due)) {
    if (!BecomeActive()) Fail("could not take the shard over");
  }

  {
    std::unique_lock lock(stop_mu_);
    while (!stop_requested_) {
      // Woken for the stats, a resume, and every second while active to
      // store what a relay of the shard handed over from its journal.
      auto until = Clock::now() + std::chrono::seconds(1);
      if (interval.count() > 0) until = std::min(until, next_stats);
      stop_cv_.wait_until(lock, until, [&] { return stop_requested_ || resume_intake_; });
      if (stop_requested_) break;
      if (resume_intake_) {
        resume_intake_ = false;
        lock.unlock();
        intake_paused_ = false;
        LogInfo("intake: buffer down to {} messages; resuming the intake link", queue_.size());
        if (intake_) intake_->Resume();
        lock.lock();
      }
      lock.unlock();
      if (active_) PumpPending();
      stats_if_due();
      lock.lock();
    }
  }

  // ---- Orderly shutdown ----------------------------------------------------
  // 1. Stop taking messages: DISCONNECT the intake. Whatever the broker had
  //    already delivered is still pushed; the rest stays queued in our session.
  if (active_ || stepped_down_) LogInfo("stopping: no new messages; committing and publishing {} held", queue_.size());
  if (intake_) intake_->Disconnect();
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
  if (writer_.joinable()) writer_.join();
  // 3. Wait for the broker to acknowledge what was published, then save the
  //    watermark so the next active republishes as little as possible, and
  //    hand the lease over at once.
  if (active_) {
    {
      std::unique_lock lock(publish_mu_);
      acked_cv_.wait_until(lock, give_up_at_ + std::chrono::seconds(2), [&] { return tracker_.in_flight() == 0; });
    }
    uint64_t watermark;
    {
      std::lock_guard lock(publish_mu_);
      watermark = tracker_.watermark();
    }
    if (store_.connected()) {
      if (Status s = store_.SavePublished(watermark); !s.ok()) {
        LogWarn("could not save the published watermark: {}", s.message());
      }
    }
  }
  lease_->Stop(/*release=*/active_ && !stepped_down_);
  if (config_.stats_interval_s > 0) {
    // The final figures stay retained: wait (2 s at most) for the broker to
    // take them before the replay link goes.
    {
      std::lock_guard lock(stop_mu_);
      last_stats_acked_ = false;
    }
    PublishStats();
    std::unique_lock lock(stop_mu_);
    stop_cv_.wait_for(lock, std::chrono::seconds(2), [&] { return last_stats_acked_; });
  }
  metrics_.reset();
  retransmit_.Stop();  // while the replay link can still send the last statuses
  if (std::size_t n = retransmit_.WaitAcknowledged(std::chrono::seconds(2)); n > 0) {
    LogWarn("stopping: {} retransmit replies not acknowledged by the broker", n);
  }
  replay_->Stop();
  if (output_) output_->Stop();

  const Counters& c = counters_;
  LogInfo("stopped: received {}, committed {} in {} batches, published {} ({} republished), acknowledged {}, "
          "refused {} (topic too long {}, payload too large {}, out of SEQ {}, over --max-topics {}), set aside {}, "
          "ignored {} (own topics {}, retained {}); retransmit requests {} (ok {}, error {}, frames {})",
          c.received.load(), c.committed.load(), c.batches.load(), c.published.load(), c.republished.load(),
          c.acked.load(), c.refused_topic + c.refused_payload + c.refused_seq + c.refused_topics,
          c.refused_topic.load(), c.refused_payload.load(), c.refused_seq.load(), c.refused_topics.load(),
          c.set_aside.load(), c.ignored_own + c.ignored_retained, c.ignored_own.load(),
          c.ignored_retained.load(), retransmit_.counters().requests.load(), retransmit_.counters().served.load(),
          retransmit_.counters().failed(), retransmit_.counters().frames.load());
  if (stepped_down_) {
    if (c.lost > 0) {
      if (journal_) {
        LogWarn("stepped down with {} received messages not committed: they stay in the journal and are stored "
                "when this relay is active again", c.lost.load());
      } else {
        LogError("stepped down with {} received messages not committed and no --journal-dir: they are lost",
                 c.lost.load());
      }
    }
    return kSteppedDown;
  }
  std::string fatal;
  {
    std::lock_guard lock(stop_mu_);
    fatal = fatal_;
  }
  if (c.lost > 0) {
    LogError("{} received messages could not be committed before --shutdown-timeout ({} s) and are lost",
             c.lost.load(), config_.shutdown_timeout_s);
    return 1;
  }
  if (!fatal.empty()) {
    LogError("stopped because of: {}", fatal);
    return 1;
  }
  return 0;
}

bool Relay::BecomeActive() {
  const uint32_t epoch = lease_->epoch();
  store_.SetEpoch(epoch);
  MysqlStore::Progress progress;
  if (!Retry("read the shard's progress", [&] {
        auto p = store_.ReadProgress();
        if (p.ok()) progress = *p;
        return p.status();
      }, [](const MysqlStore::Progress&) { return AfterReconnect::kRetry; })) {
    return false;
  }
  auto topic_rows = store_.CountTopics();
  if (!topic_rows.ok()) {
    LogError("database: {}", topic_rows.error());
    return false;
  }
  topic_rows_ = *topic_rows;
  if (config_.max_topics > 0 && topic_rows_ >= static_cast<uint64_t>(config_.max_topics)) {
    LogWarn("the database holds {} topics, --max-topics is {}: messages on new topics will be refused", topic_rows_,
            config_.max_topics);
  }
  sequencer_.SetLastIdx(progress.max_idx);
  tracker_ = PublishTracker(std::clamp(progress.published_idx, std::min(progress.max_idx, store_.idx_base()),
                                       progress.max_idx));
  active_ = true;
  ++takeovers_;
  LogInfo("active: holding shard '{}' (epoch {}); {} rows of it committed up to idx {}, confirmed published up to {}",
          config_.shard, epoch, progress.max_idx - store_.idx_base(), progress.max_idx, tracker_.watermark());
  lease_->StartRenewing([this](const std::string& why) { StepDown(why); });

  auto output = MqttLink::Start(output_options_,
                                {.on_connect = nullptr,
                                 .on_message = nullptr,
                                 .on_published = [this](int mid, int reason) { OnPublished(mid, reason); },
                                 .on_fatal = [this](const std::string& why) { Fail("output link: " + why); },
                                 .may_connect = nullptr});
  if (!output.ok()) {
    LogError("{}", output.error());
    return false;
  }
  output_ = std::move(output).value();
  if (Status s = CheckFrameLimit(); !s.ok()) {
    LogError("{}", s.message());
    return false;
  }
  if (Status s = Republish(); !s.ok()) LogWarn("{}", s.message());

  writer_ = std::thread([this] { WriterLoop(); });
  // What this relay's journal (handed over at start) or another relay's
  // holds for the shard: stored before anything new is taken.
  PumpPending();
  if (stopping_) return true;
  auto intake = MqttLink::Start(intake_options_,
                                {.on_connect = [this](bool session_present) { redelivery_.Connected(session_present); },
                                 .on_message = [this](const InboundMessage& m) { return OnIntake(m); },
                                 .on_published = nullptr,
                                 .on_fatal = [this](const std::string& why) { Fail("intake link: " + why); },
                                 // The shard's session only while the lease is surely ours:
                                 // a relay that lost it must not take the session back from its successor.
                                 .may_connect = [this] { return lease_->valid(); }});
  if (!intake.ok()) {
    LogError("{}", intake.error());
    return false;
  }
  intake_ = std::move(intake).value();
  return true;
}

Status Relay::HandOverJournal() {
  auto progress = store_.ReadProgress();
  if (!progress.ok()) return progress.status();
  // A journal from before journal ids had the database's one position.
  const uint64_t initial = journal_created_ && config_.shard == "default" ? progress->legacy_journal_pos : 0;
  if (Status s = store_.RegisterJournal(initial); !s.ok()) return s;
  progress = store_.ReadProgress();
  if (!progress.ok()) return progress.status();
  if (Status s = journal_->Open(progress->journal_pos, progress->instance); !s.ok()) return s;
  // The whole journal is read: its last records are remembered to recognise
  // the broker's resends; those past the database's position were taken
  // (and acknowledged to mosquitto) but never committed.
  struct Owned {
    uint64_t end;
    uint16_t mid;
    std::string topic, payload;
  };
  std::vector<Owned> left;
  const uint64_t committed = progress->journal_pos;
  Status replayed = journal_->Replay(0, [&](const Journal::Record& r) {
    redelivery_.Remember(r.mid, r.topic, r.payload);
    if (r.end <= committed) return;
    left.push_back({r.end, r.mid, std::string(r.topic),
                    std::string(reinterpret_cast<const char*>(r.payload.data()), r.payload.size())});
  });
  if (!replayed.ok()) LogError("{}; the records after the damage are not stored", replayed.message());
  if (left.empty()) return Status::Ok();
  // Handed over through PENDING to whichever relay is the shard's active
  // (this one, if it becomes active): it stores them after the topics'
  // current ends, each once.
  constexpr std::size_t kChunk = 500;
  for (std::size_t at = 0; at < left.size(); at += kChunk) {
    std::vector<MysqlStore::HandedOver> chunk;
    for (std::size_t i = at; i < std::min(left.size(), at + kChunk); ++i) {
      chunk.push_back({left[i].end, left[i].mid, left[i].topic,
                       {reinterpret_cast<const uint8_t*>(left[i].payload.data()), left[i].payload.size()}});
    }
    if (Status s = store_.HandOver(chunk, chunk.back().end); !s.ok()) return s;
  }
  journal_->Release(left.back().end);
  LogInfo("journal: {} messages received before the last stop but not committed handed over to shard '{}''s "
          "active, which stores them at the end of their topics", left.size(), config_.shard);
  return Status::Ok();
}

void Relay::PumpPending() {
  // One round at a time: rows go to the queue only once the previous
  // round's are committed (each commit deletes its rows).
  if (pending_queued_.load() > 0 || stopping_) return;
  if (!pending_store_.connected() && !pending_store_.Connect(false).ok()) return;
  auto rows = pending_store_.ReadPending(1000);
  if (!rows.ok()) {
    static RateLimit limit(std::chrono::seconds(30));
    if (auto suppressed = limit.Allow()) LogWarn("{}{}", rows.error(), SuppressedNote(*suppressed));
    return;
  }
  if (rows->empty()) return;
  LogInfo("storing {} messages a relay of shard '{}' took but did not commit (handed over from its journal; "
          "recovered late, at the end of their topics)", rows->size(), config_.shard);
  pending_queued_ += rows->size();
  for (auto& row : *rows) {
    Message m(row.topic, row.payload.data(), row.payload.size());
    m.pending_journal = std::move(row.journal_id);
    m.pending_end = row.end;
    if (queue_.Push(std::move(m))) {
      ++counters_.journal_replayed;
    } else {
      --pending_queued_;
    }
  }
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

std::atomic<uint64_t>& Relay::StepDowns() {
  static std::atomic<uint64_t> n{0};
  return n;
}

RelayStats Relay::Snapshot() const {
  const Counters& c = counters_;
  const auto& r = retransmit_.counters();
  RelayStats s;
  s.shard = config_.shard;
  s.relay_id = config_.relay_id;
  s.active = active_;
  s.epoch = lease_ ? lease_->epoch() : 0;
  s.lease_age_s = lease_ && active_ ? lease_->age_s() : 0;
  s.takeovers = takeovers_;
  s.step_downs = StepDowns();
  s.uptime_s = SecondsSince(started_);
  s.interval_s = config_.stats_interval_s;
  s.received = c.received;
  s.committed = c.committed;
  s.published = c.published;
  s.acked = c.acked;
  s.broker_refused = c.broker_refused;
  s.replay_broker_refused = r.broker_refused;
  s.republished = c.republished;
  s.lost = c.lost;
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
  s.replay_requests = r.requests;
  s.replay_served = r.served;
  s.replay_failed = r.failed();
  s.replay_forbidden = r.forbidden;
  s.replay_refused = r.refused;
  s.replay_frames = r.frames;
  s.replay_rate = retransmit_.governor().enabled() ? retransmit_.governor().rate() : 0;
  s.journal_errors = c.journal_errors;
  s.journal_replayed = c.journal_replayed;
  s.redeliveries = c.redeliveries;
  s.database_up = database_up_;
  s.intake_connected = intake_ && intake_->connected();
  s.output_connected = output_ && output_->connected();
  s.replay_connected = replay_ && replay_->connected();
  return s;
}

void Relay::PublishStats() {
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
  if (takeovers_ > 0) {  // active in this run (its final report too)
    topics.emplace_back(fmt::format("{}/{}", base, config_.shard), true);
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

// ---- Intake (intake link's network thread) -----------------------------------

MqttLink::AfterMessage Relay::OnIntake(const InboundMessage& in) {
  if (!lease_->valid()) {
    // The lease has lapsed: not ours to take. The broken connection leaves
    // its PUBACK unsent, so the broker keeps it in the session, for this
    // relay once the lease is renewed (the link stays away until then) or
    // for the shard's next active.
    return MqttLink::AfterMessage::kBreakConnection;
  }
  ++counters_.received;
  switch (rules_.Classify(in.topic, in.payload.size(), in.retain)) {
    case Verdict::kAccept:
      break;
    case Verdict::kOwnTopic:
      if (counters_.ignored_own++ == 0) {
        LogWarn("intake: mosquitto delivers the relay's own topics back to it (first: '{}'), e.g. with --source "
                "'#': each is dropped, but it doubles the broker's traffic to the relay. Give the intake its own "
                "user (--mqtt-intake-user) and deny it read access on {}/# and {}/# in the broker's ACL, as "
                "docker/mosquitto/acl does, or narrow --source", in.topic, config_.seq_prefix, config_.control_prefix);
      }
      return MqttLink::AfterMessage::kReadOn;
    case Verdict::kRetained:
      ++counters_.ignored_retained;
      return MqttLink::AfterMessage::kReadOn;
    case Verdict::kTopicTooLong:
      ++counters_.refused_topic;
      if (auto suppressed = topic_refusals_log_.Allow()) {
        LogWarn("refused a message: topic of {} bytes is over the limit of 255 ('{:.40}...'){}", in.topic.size(),
                in.topic, SuppressedNote(*suppressed));
      }
      return MqttLink::AfterMessage::kReadOn;
    case Verdict::kPayloadTooLarge:
      ++counters_.refused_payload;
      if (auto suppressed = payload_refusals_log_.Allow()) {
        LogWarn("refused a message on '{}': payload of {} bytes is over --max-payload {}{}", in.topic,
                in.payload.size(), config_.max_payload, SuppressedNote(*suppressed));
      }
      return MqttLink::AfterMessage::kReadOn;
  }
  if (redelivery_.IsRedelivery(in.mid, in.topic, in.payload)) {
    ++counters_.redeliveries;
    LogInfo("intake: dropped the broker's resend of message {} on '{}', already taken", in.mid, in.topic);
    return MqttLink::AfterMessage::kReadOn;
  }
  redelivery_.Remember(in.mid, in.topic, in.payload);
  const bool break_link = ++taken_ == break_intake_after_;
  Message m(in.topic, in.payload.data(), in.payload.size());
  m.received = Clock::now();
  if (journal_) {
    // Before this callback returns, so before libmosquitto sends the PUBACK.
    if (auto end = journal_->Append(in.topic, in.payload, in.mid); end.ok()) {
      m.journal_end = end.value();
      if (++journaled_ == kill_after_journal_) {
        LogWarn("fault injection: SIGKILL after journaling message {} on '{}'", in.mid, in.topic);
        kill(getpid(), SIGKILL);
      }
    } else {
      ++counters_.journal_errors;
      static RateLimit limit(std::chrono::seconds(10));
      if (auto suppressed = limit.Allow()) {
        LogError("{}; the message is kept in memory only{}", end.error(), SuppressedNote(*suppressed));
      }
    }
  }
  // A full buffer holds this thread (and so the reading) only for a third
  // of the keepalive: held longer, libmosquitto would send no PINGREQ and
  // mosquitto would drop the link after 1.5x the keepalive with our PUBACKs
  // unsent. Past that, the link pauses (a clean DISCONNECT) until the
  // writer has drained the buffer to half.
  const auto max_wait = Clock::duration(std::chrono::seconds(config_.mqtt_keepalive_s)) / 3;
  Clock::duration waited{};
  switch (queue_.PushWithin(std::move(m), max_wait, &waited)) {
    case IntakeQueue::Pushed::kQueued:
      break;
    case IntakeQueue::Pushed::kClosed:
      ++counters_.lost;  // only after the shutdown deadline closed the queue
      return MqttLink::AfterMessage::kReadOn;
    case IntakeQueue::Pushed::kOverLimit:
      // The link takes nothing more once it has queued its DISCONNECT
      // (MqttLink::Loop), so this one message is all the queue holds over
      // its limit.
      intake_paused_ = true;
      ++counters_.intake_pauses;
      LogWarn("intake: buffer full for {:.1f} s (--buffer-max {}); pausing the intake link until it is half empty "
              "(mosquitto holds further messages in the relay's session)",
              std::chrono::duration<double>(waited).count(), config_.buffer_max);
      return MqttLink::AfterMessage::kPause;
  }
  if (waited > milliseconds(100)) {
    ++counters_.intake_pauses;
    LogWarn("intake: was paused {:.1f} s on a full buffer (--buffer-max {}); mosquitto held further messages in "
            "the relay's session meanwhile", std::chrono::duration<double>(waited).count(), config_.buffer_max);
  }
  if (break_link) {
    LogWarn("fault injection: breaking the intake connection after message {} on '{}', its PUBACK unsent", in.mid,
            in.topic);
    return MqttLink::AfterMessage::kBreakConnection;
  }
  return MqttLink::AfterMessage::kReadOn;
}

// ---- Writer thread -------------------------------------------------------------

bool Relay::Retry(const char* what, const std::function<Status()>& attempt,
                  const std::function<AfterReconnect(const MysqlStore::Progress&)>& check, Status* refused) {
  Backoff backoff;
  RateLimit limit(std::chrono::seconds(10));
  std::optional<Clock::time_point> failing_since;
  bool unreachable = false;  // a connection attempt failed since the last success
  for (;;) {
    if (store_.connected()) {
      Status s = attempt();
      database_up_ = s.ok();
      if (s.ok()) {
        if (failing_since) {
          LogInfo("database: {} succeeded after {:.1f} s of failures; {} messages waiting", what,
                  SecondsSince(*failing_since), queue_.size());
        }
        return true;
      }
      if (ClassifyDatabaseError(s.database_code()) == DatabaseFailure::kLeaseLost) {
        StepDown(s.message());
        return false;
      }
      if (refused && ClassifyDatabaseError(s.database_code()) == DatabaseFailure::kRowRefused) {
        *refused = s;  // retrying would fail the same way forever
        return false;
      }
      if (!failing_since) {
        failing_since = Clock::now();
        limit.Allow();  // the interval starts with this line
        LogWarn("database: {} failed: {}; holding messages and retrying", what, s.message());
      } else if (auto suppressed = limit.Allow()) {
        // The server answers but refuses (e.g. a user without INSERT right).
        LogWarn("database: {} still failing after {:.1f} s: {}; {} messages held, intake {}", what,
                SecondsSince(*failing_since), s.message(), queue_.size(),
                queue_.full_now() ? "paused (buffer full)" : "running");
      }
    }
    if (GivingUp()) return false;
    SleepUnlessGivingUp(backoff.Next());
    MysqlStore::Progress progress;
    Status s = ConnectDatabase(progress);
    if (!s.ok()) {
      database_up_ = false;
      if (!failing_since) failing_since = Clock::now();
      unreachable = true;
      if (auto suppressed = limit.Allow()) {
        LogWarn("database: still unavailable after {:.1f} s ({}); {} messages held, intake {}",
                SecondsSince(*failing_since), s.message(), queue_.size(),
                queue_.full_now() ? "paused (buffer full)" : "running");
      }
      continue;
    }
    database_up_ = true;  // reachable again, even if `check` ends the retry without another attempt
    if (unreachable) LogInfo("database: reconnected; {} rows committed", progress.max_idx);
    unreachable = false;
    if (store_.epoch() != 0 && progress.epoch != store_.epoch()) {
      // Whatever this attempt did, the shard is another relay's now.
      StepDown(fmt::format("another relay took over shard '{}' (epoch {} after this relay's {}) while the database "
                           "was away", config_.shard, progress.epoch, store_.epoch()));
      return false;
    }
    if (check(progress) == AfterReconnect::kDone) {
      // The work was done before the connection broke: the same recovery
      // line as when a retry succeeds, so the log always says it is over.
      if (failing_since) {
        LogInfo("database: {} succeeded after {:.1f} s of failures (done before the connection broke); {} messages "
                "waiting", what, SecondsSince(*failing_since), queue_.size());
      }
      return true;
    }
  }
}

bool Relay::Sequence(std::vector<Message>& batch, std::vector<Sequencer::Topic*>& topics) {
  // Topics this process has not seen yet: one round trip for all of them.
  std::vector<std::string_view> unknown;
  std::unordered_set<std::string_view> seen;
  for (const Message& m : batch) {
    if (sequencer_.Find(m.topic) == nullptr && seen.insert(m.topic).second) unknown.push_back(m.topic);
  }
  if (!unknown.empty()) {
    Result<std::vector<MysqlStore::TopicRow>> rows = Status::Ok();
    auto expect_unchanged = [this](const MysqlStore::Progress& p) {
      if (p.max_idx != sequencer_.last_idx()) {
        LogError("MSG has rows up to idx {} but this relay committed up to {}: another writer? Restarting from the "
                 "database is the only safe way on", p.max_idx, sequencer_.last_idx());
        std::abort();
      }
      return AfterReconnect::kRetry;
    };
    // --max-topics: the database may gain only so many new topics.
    const uint64_t bound = static_cast<uint64_t>(config_.max_topics);
    const std::size_t max_new = bound == 0 ? SIZE_MAX : static_cast<std::size_t>(bound - std::min(bound, topic_rows_));
    if (!Retry("look up topics", [&] { return (rows = store_.ResolveTopics(unknown, max_new)).status(); },
               expect_unchanged)) {
      return false;
    }
    for (const auto& row : *rows) {
      sequencer_.Add(row.topic, row.id, row.last_seq);
      topic_rows_ += row.created;
      LogDebug("topic '{}' has id {}, last SEQ {}", row.topic, row.id, row.last_seq);
    }
  }

  topics.clear();
  std::size_t kept = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    Message& m = batch[i];
    Sequencer::Topic* topic = sequencer_.Find(m.topic);
    if (topic == nullptr) {  // a new topic over --max-topics
      ++counters_.refused_topics;
      static RateLimit limit(std::chrono::seconds(10));
      if (auto suppressed = limit.Allow()) {
        LogWarn("refused a message on '{}': the database holds --max-topics {} topics, and this one would be new{}",
                m.topic, config_.max_topics, SuppressedNote(*suppressed));
      }
      continue;
    }
    auto seq = sequencer_.NextSeq(*topic);
    if (!seq.ok()) {
      ++counters_.refused_seq;
      LogError("refused a message: {}", seq.error());
      continue;
    }
    m.seq = seq.value();
    m.idx = sequencer_.NextIdx();
    (void)EncodeHeader({topic->id, m.seq, topic->ordering}, m.frame);  // SEQ checked above
    if (kept != i) batch[kept] = std::move(m);
    topics.push_back(topic);
    ++kept;
  }
  batch.erase(batch.begin() + static_cast<std::ptrdiff_t>(kept), batch.end());
  return true;
}

Relay::Committed Relay::Commit(std::span<Message> batch, Status* refused) {
  const uint64_t first = batch.front().idx, last = batch.back().idx;
  uint64_t watermark;
  {
    std::lock_guard lock(publish_mu_);
    watermark = tracker_.watermark();
  }
  // If the connection broke during COMMIT the outcome is unknown: the
  // database's MAX(idx) tells. This relay is the only writer, so it is
  // either `last` (committed) or `first - 1` (not); anything else breaks the
  // single-writer invariant.
  auto resolve = [&](const MysqlStore::Progress& p) {
    if (p.max_idx == last) {
      LogInfo("database: batch idx {}..{} was committed before the connection broke", first, last);
      return AfterReconnect::kDone;
    }
    if (p.max_idx == first - 1) return AfterReconnect::kRetry;
    LogError("MSG has rows up to idx {}, expected {} or {}: another writer? Restarting from the database is the "
             "only safe way on", p.max_idx, first - 1, last);
    std::abort();
  };
  uint64_t journal_pos = 0;
  for (const Message& m : batch) journal_pos = std::max(journal_pos, m.journal_end);
  const auto started = Clock::now();
  Status why;
  if (!Retry("commit", [&] { return store_.CommitBatch(batch, watermark, journal_pos); }, resolve, &why)) {
    if (why.ok()) return Committed::kGaveUp;
    if (refused) *refused = why;
    return Committed::kRefused;
  }
  const auto took = Clock::now() - started;
  commit_ms_.Add(std::chrono::duration<double, std::milli>(took).count());
  counters_.commit_us += static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(took).count());
  batch_rows_.Add(static_cast<double>(batch.size()));
  if (journal_ && journal_pos > 0) journal_->Release(journal_pos);
  return Committed::kYes;
}

bool Relay::CommitOneByOne(std::vector<Message>& batch, std::vector<Sequencer::Topic*>& topics) {
  // Give the batch's SEQs and idx back (the rows were not committed), then
  // number and commit each message on its own: a refused one is set aside
  // and gives its SEQ back too, so its topic stays gapless.
  for (std::size_t i = batch.size(); i-- > 0;) topics[i]->last_seq = batch[i].seq - 1;
  sequencer_.SetLastIdx(batch.front().idx - 1);
  std::vector<Message> kept, one;
  std::vector<Sequencer::Topic*> kept_topics, one_topic;
  for (Message& m : batch) {
    one.clear();
    one.push_back(std::move(m));
    if (!Sequence(one, one_topic)) return false;
    if (one.empty()) continue;  // out of SEQs: refused and counted by Sequence
    Status refused;
    switch (Commit(one, &refused)) {
      case Committed::kYes:
        kept.push_back(std::move(one.front()));
        kept_topics.push_back(one_topic.front());
        break;
      case Committed::kRefused:
        one_topic.front()->last_seq = one.front().seq - 1;
        sequencer_.SetLastIdx(one.front().idx - 1);
        SetAside(one.front(), refused);
        break;
      case Committed::kGaveUp:
        return false;
    }
  }
  batch = std::move(kept);
  topics = std::move(kept_topics);
  return true;
}

void Relay::SetAside(const Message& m, const Status& why) {
  ++counters_.set_aside;
  std::string where = "logged only (no --journal-dir)";
  if (!config_.journal_dir.empty()) {
    // <journal-dir>/set-aside/<ms since epoch>-<n>.topic and .payload: the
    // raw topic and payload bytes, ready for mosquitto_pub -t ... -f ...
    const std::string dir = config_.journal_dir + "/set-aside";
    const std::string base = fmt::format(
        "{}/{}-{}", dir,
        std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count(),
        counters_.set_aside.load());
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    std::ofstream(base + ".topic", std::ios::binary) << m.topic;
    std::ofstream payload(base + ".payload", std::ios::binary);
    payload.write(reinterpret_cast<const char*>(m.payload().data()), static_cast<std::streamsize>(m.payload().size()));
    where = payload ? "kept in " + base + ".{topic,payload}" : "could not be written to " + base + ".payload";
  }
  LogError("database refused a message on '{}' ({} bytes) for good: {}; set aside, {}; the topic goes on without it",
           m.topic, m.payload().size(), why.message(), where);
}

bool Relay::Publish(const std::string& topic, std::span<const uint8_t> frame, uint64_t idx) {
  // Committed under the lease, but once it has lapsed a successor may be
  // publishing: wait for the renewal (the writer holds back meanwhile); if
  // the lease is lost instead, the next active republishes every row above
  // the acknowledged watermark.
  while (!lease_->valid()) {
    if (stepped_down_ || GivingUp()) return false;
    SleepUnlessGivingUp(milliseconds(20));
  }
  std::unique_lock lock(publish_mu_);
  while (tracker_.in_flight() >= kMaxUnacked) {
    // No one wakes us when the stop deadline passes (the broker may be
    // gone): wait in slices and look at the deadline between them.
    if (GivingUp()) return false;
    acked_cv_.wait_for(lock, milliseconds(100));
  }
  auto mid = output_->Publish(topic, frame, config_.publish_qos);
  if (config_.publish_qos == 0) {
    // Nothing will confirm it: never wait for it (the watermark would stop
    // here for good when the connection drops with it queued).
    tracker_.SentUnconfirmed(idx);
    if (mid.ok()) ++counters_.published;
    return true;
  }
  if (!mid.ok()) {
    // Only a QoS 0 publish while disconnected, or a broken client: the row
    // is committed, so a client can still fetch it by retransmit.
    static RateLimit limit(std::chrono::seconds(10));
    if (auto suppressed = limit.Allow()) LogWarn("{}{}", mid.error(), SuppressedNote(*suppressed));
    return true;
  }
  tracker_.Sent(idx, mid.value());
  // Under publish_mu_, like the PUBACK's LiveAcked: the ack cannot overtake this.
  retransmit_.governor().LiveSent(mid.value());
  ++counters_.published;
  return true;
}

Status Relay::CheckFrameLimit() {
  // The largest frame the relay can make: --max-payload plus the header. A
  // broker whose message_size_limit is smaller drops it (while still
  // acknowledging it), and every subscriber loses that message for good:
  // find out now, before taking any message.
  const std::vector<uint8_t> probe(static_cast<std::size_t>(config_.max_payload) + kFrameHeaderSize, 0);
  const std::string topic = fmt::format("{}/replay/{}/probe", config_.control_prefix, config_.mqtt_client_id);
  {
    std::lock_guard lock(publish_mu_);
    auto mid = output_->Publish(topic, probe, 1);
    if (!mid.ok()) return Status::Error(fmt::format("frame size check: {}", mid.error()));
    probe_mid_ = mid.value();
  }
  std::unique_lock lock(publish_mu_);
  if (!acked_cv_.wait_for(lock, std::chrono::seconds(5), [&] { return probe_reason_.has_value() || stopping_; })) {
    LogWarn("frame size check: mosquitto has not answered in 5 s; checked when it does");
    probe_late_ = true;
    return Status::Ok();
  }
  return probe_reason_ ? FrameLimitVerdict(*probe_reason_) : Status::Ok();
}

Status Relay::FrameLimitVerdict(int reason) const {
  const std::size_t bytes = static_cast<std::size_t>(config_.max_payload) + kFrameHeaderSize;
  if (reason == 0x87) {  // not authorised: the ACL, not the size
    LogWarn("frame size check: mosquitto's ACL denies the relay's user {}/replay/{}/probe; the frame size limit was "
            "not checked (frames are up to {} bytes)", config_.control_prefix, config_.mqtt_client_id, bytes);
    return Status::Ok();
  }
  if (reason >= 0x80) {
    return Status::Error(fmt::format(
        "mosquitto refuses a frame of {} bytes (--max-payload {} + the {}-byte header; PUBACK reason 0x{:02x}): set "
        "its message_size_limit to at least {}, or lower --max-payload", bytes, config_.max_payload,
        kFrameHeaderSize, reason, bytes));
  }
  LogInfo("frame size check: mosquitto takes frames of {} bytes (--max-payload {} + header)", bytes,
          config_.max_payload);
  return Status::Ok();
}

void Relay::OnPublished(int mid, int reason) {
  {
    std::lock_guard lock(publish_mu_);
    if (mid == probe_mid_ && !probe_reason_) {
      probe_reason_ = reason;
      if (probe_late_) {  // the start did not wait for this answer
        if (Status s = FrameLimitVerdict(reason); !s.ok()) Fail(s.message());
      }
      acked_cv_.notify_all();
      return;
    }
    tracker_.Acked(mid);
    ReplayGovernor& governor = retransmit_.governor();
    if (governor.Timing(mid)) governor.LiveAcked(mid, Clock::now());
  }
  ++counters_.acked;
  acked_cv_.notify_all();
  if (reason >= 0x80) {
    ++counters_.broker_refused;
    static RateLimit limit(std::chrono::seconds(10));
    if (auto suppressed = limit.Allow()) {
      LogError("mosquitto refused a frame it acknowledged (PUBACK reason 0x{:02x}; check its message_size_limit and "
               "ACL): live subscribers do not get it{}", reason, SuppressedNote(*suppressed));
    }
  }
}

void Relay::WriterLoop() {
  std::vector<Message> batch;
  std::vector<Sequencer::Topic*> topics;
  batch.reserve(config_.batch_max);
  const auto linger = std::chrono::microseconds(config_.batch_delay_us);
  Clock::duration lingered{};
  ReplayGovernor& governor = retransmit_.governor();
  while (queue_.PopBatch(batch, config_.batch_max, batch_max_bytes_, linger, &lingered)) {
    // Timed from its oldest message's arrival, less the linger --batch-delay-us asked for.
    const auto now = Clock::now();
    const auto arrived = batch.front().received;
    governor.LiveBatchTaken(arrived == Clock::time_point{} ? now : arrived + lingered, now);
    const auto handed_over = static_cast<std::size_t>(
        std::count_if(batch.begin(), batch.end(), [](const Message& m) { return !m.pending_journal.empty(); }));
    bool ok = Sequence(batch, topics);
    if (ok && !batch.empty()) {
      Status refused;
      switch (Commit(batch, &refused)) {
        case Committed::kYes:
          break;
        case Committed::kGaveUp:
          ok = false;
          break;
        case Committed::kRefused:
          LogWarn("database refused a batch of {} rows for good ({}); committing them one by one to find the row",
                  batch.size(), refused.message());
          ok = CommitOneByOne(batch, topics);
          break;
      }
    }
    counters_.topics = sequencer_.topic_count();
    pending_queued_ -= handed_over;  // committed, set aside or given up: the next round may go
    if (!ok) {
      counters_.lost += batch.size();
      batch.clear();
      governor.LiveBatchDone();
      continue;  // giving up: drain the rest of the queue the same way
    }
    counters_.committed += batch.size();
    ++counters_.batches;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (!Publish(topics[i]->seq_topic, batch[i].frame, batch[i].idx)) break;
    }
    governor.LiveBatchDone();
    batch.clear();
    // Every SEQ given out is committed and no Topic* is held: the cache may shrink.
    counters_.topics_evicted += sequencer_.EvictIdle(static_cast<std::size_t>(config_.topic_cache));
    counters_.topics = sequencer_.topic_count();
    if (intake_paused_.load(std::memory_order_relaxed) && queue_.below_resume_mark()) {
      std::lock_guard lock(stop_mu_);
      resume_intake_ = true;  // the main thread owns the links
      stop_cv_.notify_all();
    }
  }
}

}  // namespace seqrelay
