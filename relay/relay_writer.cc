// Relay, the writer thread: batches in, SEQs given, committed (fenced by the
// lease, retried through outages, a refused row set aside), then published.
#include "relay.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>

#include <signal.h>
#include <unistd.h>

#include "core/log.h"
#include "relay_parts.h"
#include "store/store_errors.h"

namespace seqrelay {

using namespace relay_parts;

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

bool Relay::Retry(const char* what, const std::function<Status()>& attempt) {
  return Retry(what, attempt, [](const MysqlStore::Progress&) { return AfterReconnect::kRetry; });
}

uint64_t Relay::AckedWatermark() {
  std::lock_guard lock(publish_mu_);
  return tracker_.watermark();
}

bool Relay::DropResends(std::vector<Message>& batch) {
  std::vector<MysqlStore::MsgIdKey> keys;
  for (const Message& m : batch) {
    if (!m.msg_id.empty()) keys.push_back({m.topic, m.msg_id});
  }
  if (keys.empty()) return true;
  // Sequenced before: committed (by this relay or any before it; the lease
  // keeps every other writer out from here to this batch's commit), or
  // earlier in this batch.
  Result<std::vector<MysqlStore::MsgIdKey>> found = Status::Ok();
  if (!Retry("look up msg-ids", [&] { return (found = store_.FindSequencedMsgIds(keys)).status(); })) {
    return false;
  }
  struct KeyHash {
    std::size_t operator()(const MysqlStore::MsgIdKey& k) const {
      return std::hash<std::string_view>()(k.topic) * 31 + std::hash<std::string_view>()(k.msg_id);
    }
  };
  // Views into the batch's messages: decided for all before any moves.
  std::unordered_set<MysqlStore::MsgIdKey, KeyHash> sequenced(found->begin(), found->end());
  std::vector<bool> resend(batch.size(), false);
  std::size_t dropped = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    const Message& m = batch[i];
    if (m.msg_id.empty() || sequenced.insert({m.topic, m.msg_id}).second) continue;
    resend[i] = true;
    ++dropped;
  }
  if (dropped == 0) return true;
  std::size_t kept = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    Message& m = batch[i];
    if (!resend[i]) {
      if (kept != i) batch[kept] = std::move(m);
      ++kept;
      continue;
    }
    dropped_journal_end_ = std::max(dropped_journal_end_, m.journal_end);
    if (!m.pending_journal.empty()) dropped_pending_.emplace_back(m.pending_journal, m.pending_end);
    static RateLimit limit(std::chrono::seconds(10));
    if (auto suppressed = limit.Allow()) {
      LogInfo("dedupe: dropped a resend on '{}' (msg-id '{:.40}' was sequenced before){}", m.topic, m.msg_id,
              SuppressedNote(*suppressed));
    }
  }
  batch.erase(batch.begin() + static_cast<std::ptrdiff_t>(kept), batch.end());
  counters_.dedupe_dropped += dropped;
  resends_dropped_ += dropped;
  return true;
}

void Relay::ForgetDroppedResends(bool committed) {
  if (dropped_pending_.empty()) return;
  // A kill before this delete leaves the rows to the next holder, which
  // finds their msg-ids committed and drops them again.
  if (committed) Retry("delete handed-over resends", [&] { return store_.DeletePending(dropped_pending_); });
  dropped_pending_.clear();
}

bool Relay::DropCommittedResends(std::vector<Message>& batch) {
  if (std::none_of(batch.begin(), batch.end(), [](const Message& m) { return m.resume_connect != 0; })) {
    return true;  // the usual batch: nothing came before a resumed session's SUBACK
  }
  std::vector<bool> resend(batch.size(), false);
  std::size_t dropped = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    Message& m = batch[i];
    // Only in a session this process found kept (session 0): one it began
    // itself delivered everything to it, and its RedeliveryFilter knows its
    // own resends. QoS 0 is never resent. Checked once (CommitOneByOne
    // sequences the batch again).
    const uint32_t connect = std::exchange(m.resume_connect, 0);
    if (connect == 0 || m.intake_session != 0 || m.mid == 0) continue;
    if (connect != resends_connect_) {
      // The first early delivery of a resumed session: everything this
      // process took before it is committed (sessions it began are not
      // checked), so the session's newest rows are in MSG.
      resends_connect_ = connect;
      Result<std::vector<MysqlStore::LiveRow>> tail = Status::Ok();
      auto read_tail = [&] {
        return (tail = store_.ReadSessionTail(sequencer_.last_idx(), CommittedResends::kWindow)).status();
      };
      if (!Retry("read the session's newest rows", read_tail)) {
        return false;
      }
      std::vector<CommittedResends::Row> rows;
      rows.reserve(tail->size());
      for (const auto& row : *tail) rows.push_back({row.idx, row.mid});
      committed_resends_.Start(rows);
    }
    const std::optional<uint64_t> idx = committed_resends_.Candidate(m.mid);
    if (!idx) continue;
    Result<std::optional<MysqlStore::RowContent>> row = Status::Ok();
    if (!Retry("read a row", [&] { return (row = store_.ReadRow(*idx)).status(); })) {
      return false;
    }
    // A resend carries the Subscription Identifier of its first delivery
    // (schema 008), so on a v5 intake a message of a newer session,
    // subscribed under another, is never taken for an older session's row
    // (a 3.1.1 intake has none: every tag is 0).
    // Compared as bytes of one type: uint8_t against (signed) char took
    // every byte >= 0x80 for a difference.
    const std::span<const uint8_t> payload = m.payload();
    const bool same = row->has_value() && (*row)->sub_tag == m.sub_tag && (*row)->topic == m.topic &&
                      std::string_view(reinterpret_cast<const char*>(payload.data()), payload.size()) ==
                          (*row)->payload;
    committed_resends_.Confirm(same);
    if (!same) continue;
    resend[i] = true;
    ++dropped;
    LogInfo("intake: dropped mosquitto's resend of message {} on '{}': committed already (idx {}) by a relay whose "
            "connection ended before mosquitto read its PUBACK", m.mid, m.topic, *idx);
  }
  if (dropped == 0) return true;
  std::size_t kept = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    if (resend[i]) {
      dropped_journal_end_ = std::max(dropped_journal_end_, batch[i].journal_end);
      continue;
    }
    if (kept != i) batch[kept] = std::move(batch[i]);
    ++kept;
  }
  batch.erase(batch.begin() + static_cast<std::ptrdiff_t>(kept), batch.end());
  counters_.redeliveries += dropped;
  resends_dropped_ += dropped;
  return true;
}

bool Relay::SaveDroppedJournalPosition() {
  if (!journal_ || dropped_journal_end_ <= saved_dropped_end_) return true;
  const uint64_t watermark = AckedWatermark();
  const uint64_t position = dropped_journal_end_;
  if (!Retry("save the journal's position past dropped resends",
             [&] { return store_.CommitBatch({}, watermark, position); })) {
    return false;
  }
  saved_dropped_end_ = position;
  journal_->Release(position);
  return true;
}

bool Relay::MarkSession(uint32_t session) {
  stored_session_ = session;  // rows from here on: this session's ids only
  store_.BeginSession(sequencer_.last_idx() + 1);
  if (++session_marks_ == kill_before_session_mark_) {
    // The window under test: a delivery of the new session read, its
    // PUBACK held until this mark commits.
    for (int i = 0; i < 1200 && !mark_awaited_; ++i) std::this_thread::sleep_for(milliseconds(50));
    LogWarn("fault injection: SIGKILL before committing the mark of a new MQTT session ({})",
            mark_awaited_ ? "a delivery waits for it" : "no delivery came in 60 s");
    kill(getpid(), SIGKILL);
  }
  const uint64_t watermark = AckedWatermark();
  if (!Retry("mark the intake's new MQTT session", [&] { return store_.SavePublished(watermark); })) {
    return false;
  }
  LogInfo("intake: a new MQTT session; its rows begin at idx {}", store_.session_start());
  {
    std::lock_guard lock(session_mark_mu_);
    session_marked_ = session;
    marked_session_no_ = store_.session_no();
  }
  session_mark_cv_.notify_all();
  return true;
}

void Relay::GiveVerdicts(uint64_t ticket) {
  {
    std::lock_guard lock(verdict_mu_);
    verdicts_ = std::max(verdicts_, ticket);
  }
  verdict_cv_.notify_all();
}

bool Relay::Sequence(std::vector<Message>& batch, std::vector<Sequencer::Topic*>& topics) {
  if (!DropCommittedResends(batch)) return false;
  if (config_.dedupe_window_s > 0 && !DropResends(batch)) return false;
  // Topics this process has not seen yet: one round trip for all of them.
  std::vector<std::string_view> unknown;
  std::unordered_set<std::string_view> seen;
  for (const Message& m : batch) {
    if (sequencer_.Find(m.topic) == nullptr && seen.insert(m.topic).second) unknown.push_back(m.topic);
  }
  if (!unknown.empty()) {
    Result<std::vector<MysqlStore::TopicRow>> rows = Status::Ok();
    // Rows past this relay's last: another writer. (Fewer is no sign of
    // one: another shard's retention deletes this shard's acknowledged rows
    // of a topic that moved there, its newest among them.)
    auto expect_unchanged = [this](const MysqlStore::Progress& p) {
      if (p.max_idx > sequencer_.last_idx()) {
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
      Refuse(m);
      continue;
    }
    if (sequencer_.last_idx() >= store_.idx_base() + MysqlStore::kShardIdxSpan - 1) {
      // Every row number of the shard's range is used (2^40 rows, deleted
      // by retention or not): the next would be another shard's, or no
      // shard's. Nothing more can be stored in this shard: the relay stops,
      // and what it holds is kept for the next start (journal, mosquitto).
      Fail(fmt::format("shard '{}' has used every row number of its range (MSG.idx up to {}): sequence its topics "
                       "under a new --shard name", config_.shard, sequencer_.last_idx()));
      for (std::size_t j = i; j < batch.size(); ++j, ++kept) {
        if (kept != j) batch[kept] = std::move(batch[j]);
      }
      batch.erase(batch.begin() + static_cast<std::ptrdiff_t>(kept), batch.end());
      return false;
    }
    auto seq = sequencer_.NextSeq(*topic);
    if (!seq.ok()) {
      ++counters_.refused_seq;
      LogError("refused a message: {}", seq.error());
      Refuse(m);
      continue;
    }
    m.seq = seq.value();
    m.idx = sequencer_.NextIdx();
    // Packet ids mean something only within their MQTT session: a message
    // of an older one, still queued, is stored without its id.
    if (m.intake_session != stored_session_) m.mid = 0;
    (void)EncodeHeader({topic->id, m.seq, topic->ordering}, m.frame);  // SEQ checked above
    if (kept != i) batch[kept] = std::move(m);
    topics.push_back(topic);
    ++kept;
  }
  batch.erase(batch.begin() + static_cast<std::ptrdiff_t>(kept), batch.end());
  return true;
}

Relay::Committed Relay::Commit(std::span<Message> batch, Status* refused, uint64_t journal_cap) {
  const uint64_t first = batch.front().idx, last = batch.back().idx;
  const uint64_t watermark = AckedWatermark();
  // If the connection broke during COMMIT the outcome is unknown: the
  // database's MAX(idx) tells. This relay is the only writer, so it is
  // either `last` (committed) or below `first` (not: `first - 1`, or less
  // when another shard's retention has deleted this shard's newest rows, of
  // a topic that moved there; none of the batch's can go, as none is
  // acknowledged yet); anything else breaks the single-writer invariant.
  // (Until 2026-12-07 only `first - 1` counted as not committed: the relay
  // aborted after such a delete.)
  auto resolve = [&](const MysqlStore::Progress& p) {
    if (p.max_idx == last) {
      LogInfo("database: batch idx {}..{} was committed before the connection broke", first, last);
      return AfterReconnect::kDone;
    }
    if (p.max_idx < first) return AfterReconnect::kRetry;
    LogError("MSG has rows up to idx {}, expected {} or below {}: another writer? Restarting from the database is "
             "the only safe way on", p.max_idx, last, first);
    std::abort();
  };
  uint64_t journal_pos = dropped_journal_end_;
  for (const Message& m : batch) journal_pos = std::max(journal_pos, m.journal_end);
  journal_pos = std::min(journal_pos, journal_cap);
  const auto started = Clock::now();
  Status why;
  MysqlStore::CommitTiming timing;
  bool seq_taken = false;
  auto attempt = [&] {
    if (seq_taken) {
      if (Status s = NumberAgain(batch); !s.ok()) return s;
      seq_taken = false;
    }
    Status s = store_.CommitBatch(batch, watermark, journal_pos, &timing);
    seq_taken = ClassifyDatabaseError(s.database_code()) == DatabaseFailure::kSeqTaken;
    return s;
  };
  if (!Retry("commit", attempt, resolve, &why)) {
    if (why.ok()) return Committed::kGaveUp;
    if (refused) *refused = why;
    return Committed::kRefused;
  }
  const auto took = Clock::now() - started;
  if (timing.commit.count() > 0) {  // zero when the COMMIT's outcome was learnt after a reconnect
    stage_insert_.Observe(timing.statements);
    stage_commit_.Observe(timing.commit);
  }
  commit_ms_.Add(std::chrono::duration<double, std::milli>(took).count());
  // A sum and its count, per transaction (one by one, a batch is several).
  counters_.commit_us += static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(took).count());
  ++counters_.batches;
  batch_rows_.Add(static_cast<double>(batch.size()));
  if (journal_ && journal_pos > 0) journal_->Release(journal_pos);
  if (journal_pos >= dropped_journal_end_) saved_dropped_end_ = std::max(saved_dropped_end_, dropped_journal_end_);
  return Committed::kYes;
}

Status Relay::NumberAgain(std::span<Message> batch) {
  // Each topic of the batch and its first SEQ there (the batch is in idx
  // order, each topic's SEQs rising).
  std::vector<std::string_view> names;
  std::unordered_map<std::string_view, uint64_t> first;
  for (const Message& m : batch) {
    if (first.try_emplace(m.topic, m.seq).second) names.push_back(m.topic);
  }
  auto rows = store_.ResolveTopics(names, 0);  // (known topics: none is created)
  if (!rows.ok()) return rows.status();
  static RateLimit limit(std::chrono::seconds(10));
  for (const auto& row : *rows) {
    Sequencer::Topic* topic = sequencer_.Find(row.topic);
    const uint64_t before = first.at(row.topic) - 1;
    topic->last_seq = std::max(before, row.last_seq);
    if (row.last_seq > before) {
      if (auto suppressed = limit.Allow()) {
        LogWarn("topic '{}': SEQ {} to {} were committed by another writer meanwhile (a topic that moved between "
                "shards, for a while); this relay's messages of it go after them{}",
                row.topic, before + 1, row.last_seq, SuppressedNote(*suppressed));
      }
    }
  }
  for (Message& m : batch) {
    Sequencer::Topic* topic = sequencer_.Find(m.topic);
    auto seq = sequencer_.NextSeq(*topic);
    if (!seq.ok()) return Status::Error(seq.error());  // (past 2^40-1: retried, as any failure)
    m.seq = *seq;
    (void)EncodeHeader({topic->id, m.seq, topic->ordering}, m.frame);
  }
  return Status::Ok();
}

bool Relay::CommitOneByOne(std::vector<Message>& batch, std::vector<Sequencer::Topic*>& topics) {
  // Give the batch's SEQs and idx back (the rows were not committed), then
  // number and commit each message on its own: a refused one is set aside
  // and gives its SEQ back too, so its topic stays gapless.
  for (std::size_t i = batch.size(); i-- > 0;) topics[i]->last_seq = batch[i].seq - 1;
  sequencer_.SetLastIdx(batch.front().idx - 1);
  std::vector<Message> kept, one;
  std::vector<Sequencer::Topic*> kept_topics, one_topic;
  // Giving up at message i: those before it are committed or refused, so
  // the caller counts only the rest as lost (the committed ones are
  // published by the next active, from above the acknowledged watermark).
  auto give_up_at = [&](std::size_t i) {
    counters_.committed += kept.size();  // (not published by this relay)
    // Message i may be in `one` already: back into the batch, whole, for
    // the caller's count (a handed-over one moved out has no PENDING key
    // left, and would be counted lost rather than deferred).
    if (!one.empty()) batch[i] = std::move(one.front());
    batch.erase(batch.begin(), batch.begin() + static_cast<std::ptrdiff_t>(i));
    return false;
  };
  // The journal position each commit saves: never past a record of the
  // batch not committed yet (a resend dropped from it may end later: that
  // end is saved with the last message, or by the next batch).
  uint64_t reached = 0;
  for (std::size_t i = 0; i < batch.size(); ++i) {
    reached = std::max(reached, batch[i].journal_end);
    one.clear();
    one.push_back(std::move(batch[i]));
    if (!Sequence(one, one_topic)) return give_up_at(i);
    if (one.empty()) continue;  // out of SEQs: refused and counted by Sequence
    Status refused;
    switch (Commit(one, &refused, i + 1 < batch.size() ? reached : UINT64_MAX)) {
      case Committed::kYes:
        kept.push_back(std::move(one.front()));
        kept_topics.push_back(one_topic.front());
        break;
      case Committed::kRefused:
        one_topic.front()->last_seq = one.front().seq - 1;
        sequencer_.SetLastIdx(one.front().idx - 1);
        SetAside(one.front(), refused);
        Refuse(one.front());
        break;
      case Committed::kGaveUp:
        return give_up_at(i);
    }
  }
  batch = std::move(kept);
  topics = std::move(kept_topics);
  return true;
}

void Relay::Refuse(const Message& m) {
  dropped_journal_end_ = std::max(dropped_journal_end_, m.journal_end);
  if (!m.pending_journal.empty()) refused_pending_.emplace_back(m.pending_journal, m.pending_end);
}

void Relay::GiveUp(std::vector<Message>& batch) {
  // Nothing is committed once the relay gives up, so no journal position
  // passes a journaled message, and a handed-over one's PENDING row stays.
  // Lost: acknowledged to mosquitto and held in memory only (--no-journal,
  // a journal that failed, QoS 0).
  for (const Message& m : batch) {
    const bool kept = m.journal_end > 0 || !m.pending_journal.empty() || m.verdict_ticket != 0;
    ++(kept ? counters_.deferred : counters_.lost);
  }
  batch.clear();
}

void Relay::ForgetRefused() {
  if (refused_pending_.empty()) return;
  // After the batch's commit: a kill before this delete leaves the rows to
  // the next holder, which refuses them again.
  if (Retry("delete handed-over messages refused for good", [&] { return store_.DeletePending(refused_pending_); })) {
    LogWarn("{} messages handed over from a journal were refused for good (logged above); their PENDING rows are "
            "deleted", refused_pending_.size());
  }
  refused_pending_.clear();  // else given up: the relay is stopping, and the next holder meets them again
}

namespace {

// `bytes`, whole, in the file at `path` (created or emptied), closed: false
// if any of it failed (a full disk shows at the close, when the buffer goes).
bool WriteWholeFile(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  return !out.fail();
}

}  // namespace

void Relay::SetAside(const Message& m, const Status& why) {
  ++counters_.set_aside;
  const std::span<const uint8_t> payload = m.payload();
  std::string where = "logged only (no --journal-dir)";
  bool kept = false;
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
    kept = WriteWholeFile(base + ".topic", m.topic) &&
           WriteWholeFile(base + ".payload",
                          std::string_view(reinterpret_cast<const char*>(payload.data()), payload.size()));
    if (kept) {
      where = "kept in " + base + ".{topic,payload}";
    } else {
      // Not half a copy that mosquitto_pub would send as if whole.
      std::filesystem::remove(base + ".topic", ec);
      std::filesystem::remove(base + ".payload", ec);
      where = "could not be written to " + base + ".{topic,payload}";
    }
  }
  // With no copy, the log is the only one left: the payload follows in hex,
  // 1 KiB of it a line, its first 64 KiB at most (a log, not a store). A
  // line stays under PIPE_BUF (4 KiB) with a topic of 255 bytes, so its one
  // write(2) is never interleaved with another thread's line on a pipe, and
  // a log collector keeps it whole. (2 KiB a line until 2026-12-06: 4.2 KB.)
  constexpr std::size_t kLoggedMax = 64 * 1024, kLoggedPerLine = 1024;
  const std::size_t logged = kept ? 0 : std::min(payload.size(), kLoggedMax);
  const std::size_t lines = (logged + kLoggedPerLine - 1) / kLoggedPerLine;
  LogError("database refused a message on '{}' ({} bytes) for good: {}; set aside, {}; the topic goes on without it{}",
           m.topic, payload.size(), why.message(), where,
           kept ? std::string()
                : fmt::format("; its payload follows in hex ({} line{}{})", lines, lines == 1 ? "" : "s",
                              logged < payload.size() ? fmt::format(", its first {} bytes", logged) : ""));
  for (std::size_t at = 0; at < logged; at += kLoggedPerLine) {
    const std::size_t n = std::min(kLoggedPerLine, logged - at);
    LogError("set-aside payload of '{}', bytes {}..{} of {}: {:02x}", m.topic, at, at + n, payload.size(),
             fmt::join(payload.subspan(at, n), ""));
  }
}

void Relay::WriterLoop() {
  std::vector<Message> batch;
  std::vector<Sequencer::Topic*> topics;
  batch.reserve(config_.batch_max);
  const auto linger = std::chrono::microseconds(config_.batch_delay_us);
  Clock::duration lingered{};
  ReplayGovernor& governor = retransmit_.governor();
  // Cleared when a frame could not be given to the broker (the stop's
  // deadline passed while the broker held back its PUBACKs, or the lease
  // went): no frame after it is published either, so that the acknowledged
  // watermark stops below the frames left unsent, which the next active
  // republishes. (The tracker takes rows it never saw below a later one for
  // rows deleted.)
  bool publishing = true;
  // Idle, the writer keeps its database session (KeepAlive): one the server
  // ended meanwhile (wait_timeout) would cost the next batch a reconnect.
  while (queue_.PopBatch(batch, config_.batch_max, batch_max_bytes_, linger, &lingered, store_.keep_alive_due())) {
    uint32_t wanted;
    {
      std::lock_guard lock(session_mark_mu_);
      wanted = session_mark_wanted_;
    }
    if (wanted != stored_session_ && !MarkSession(wanted)) {
      GiveUp(batch);
      continue;  // giving up: drain the rest of the queue the same way
    }
    if (batch.empty()) {  // woken for the mark, or idle for a while
      (void)store_.KeepAlive();  // a failure: the next batch reconnects
      continue;
    }
    // Timed from its oldest message's arrival, less the linger --batch-delay-us asked for.
    const auto now = Clock::now();
    const auto arrived = batch.front().received;
    governor.LiveBatchTaken(arrived == Clock::time_point{} ? now : arrived + lingered, now);
    const auto handed_over = static_cast<std::size_t>(
        std::count_if(batch.begin(), batch.end(), [](const Message& m) { return !m.pending_journal.empty(); }));
    for (const Message& m : batch) {
      if (m.received != Clock::time_point{}) stage_intake_queue_.Observe(now - m.received);
    }
    uint64_t verdicts = 0;  // the newest delivery whose PUBACK waits for this batch
    uint64_t delivered = 0;  // the batch's newest delivery (Message::delivery)
    for (const Message& m : batch) {
      verdicts = std::max(verdicts, m.verdict_ticket);
      delivered = std::max(delivered, m.delivery);
    }
    const uint64_t dropped_before = resends_dropped_;
    bool ok = Sequence(batch, topics);
    stage_sequence_.Observe(Clock::now() - now);
    if (ok && batch.empty()) ok = SaveDroppedJournalPosition();
    if (kill_after_resend_drop_ && resends_dropped_ > dropped_before) {
      LogWarn("fault injection: SIGKILL after dropping a resend");
      kill(getpid(), SIGKILL);
    }
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
    // A message refused after the batch's last commit (one by one) ends
    // the journal's run of done records: saved now, not at the next batch.
    if (ok) ok = SaveDroppedJournalPosition();
    counters_.topics = sequencer_.topic_count();
    ForgetRefused();
    ForgetDroppedResends(ok);
    if (handed_over != 0) {
      pending_queued_ -= handed_over;  // committed, refused or given up: the next round may go
      writer_unstalled_at_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
      std::lock_guard lock(stop_mu_);  // the main loop queues the next round (intake_after_hand_over_)
      stop_cv_.notify_all();
    }
    if (!ok) {
      GiveUp(batch);
      governor.LiveBatchDone();
      continue;  // giving up: drain the rest of the queue the same way
    }
    if (verdicts != 0) GiveVerdicts(verdicts);  // committed, dropped as committed already, or set aside
    if (delivered != 0) committed_delivery_.store(delivered, std::memory_order_release);
    counters_.committed += batch.size();
    if (kill_after_commit_ != 0 && intake_held_ && counters_.committed >= kill_after_commit_) {
      LogWarn("fault injection: SIGKILL after committing {} messages", counters_.committed.load());
      kill(getpid(), SIGKILL);
    }
    for (std::size_t i = 0; publishing && i < batch.size(); ++i) {
      publishing = Publish(topics[i]->seq_topic, batch[i].frame, batch[i].idx, Sending::kNew);
    }
    output_->Flush();  // the batch's frames leave together
    governor.LiveBatchDone();
    batch.clear();
    // Every SEQ given out is committed and no Topic* is held: the cache may shrink.
    counters_.topics_evicted += sequencer_.EvictIdle(static_cast<std::size_t>(config_.topic_cache));
    counters_.topics = sequencer_.topic_count();
    ResumeIntakeIfDrained();
  }
}

}  // namespace seqrelay
