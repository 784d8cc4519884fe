// Relay, the intake stage: taking a message from the intake link (before
// its PUBACK leaves), and what a journal held beyond the database, handed
// over to the shard's active through PENDING.
#include "relay.h"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/log.h"
#include "intake/intake.h"
#include "relay_parts.h"

namespace seqrelay {

using namespace relay_parts;

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
    std::string topic, payload, msg_id;
    SessionNo session_no;
  };
  std::vector<Owned> left;
  const uint64_t committed = progress->journal_pos;
  // Only the newest session's records: mosquitto resends nothing of an
  // earlier one.
  const Journal::Session session = journal_->session();
  // (None is journaled in a session before it is numbered.)
  auto session_of = [&](uint64_t end) { return end <= session.start ? kUnknownSession : session.number; };
  Status replayed = journal_->Replay(0, [&](const Journal::Record& r) {
    const SessionNo taken_in = session_of(r.end);
    std::lock_guard lock(redelivery_mu_);
    if (taken_in != kUnknownSession) {
      redelivery_.RememberFromJournal(r.mid, r.topic, r.payload, /*committed=*/r.end <= committed);
    }
    if (r.end <= committed) return;
    left.push_back({r.end, r.mid, std::string(r.topic),
                    std::string(reinterpret_cast<const char*>(r.payload.data()), r.payload.size()),
                    std::string(r.msg_id), taken_in});
  }, /*report_after=*/committed);
  if (!replayed.ok()) {
    LogError("{}: the messages recorded there are lost; every intact record is handed over", replayed.message());
  }
  if (left.empty()) return Status::Ok();
  // Handed over through PENDING to whichever relay is the shard's active
  // (this one, if it becomes active): it stores them after the topics'
  // current ends, each once.
  constexpr std::size_t kChunk = 500;
  std::string shard = config_.shard;
  for (std::size_t at = 0; at < left.size(); at += kChunk) {
    std::vector<MysqlStore::HandedOver> chunk;
    for (std::size_t i = at; i < std::min(left.size(), at + kChunk); ++i) {
      chunk.push_back({left[i].end, left[i].mid, left[i].topic,
                       {reinterpret_cast<const uint8_t*>(left[i].payload.data()), left[i].payload.size()},
                       left[i].msg_id, left[i].session_no});
    }
    auto to = HandOverChunk(chunk);
    if (!to.ok()) return to.status();
    shard = std::move(to).value();
  }
  journal_->Release(left.back().end);
  LogInfo("journal: {} messages received before the last stop but not committed handed over to shard '{}''s "
          "active, which stores them at the end of their topics{}", left.size(), shard,
          shard == config_.shard ? "" : " (the shard this journal's relay took them for)");
  return Status::Ok();
}

Result<std::string> Relay::HandOverChunk(std::span<const MysqlStore::HandedOver> chunk) {
  // A takeover of the shard moves this journal's position too (it folds the
  // SHARD row's into JOURNAL, schema 006), in the same JOURNAL row: on a
  // Galera cluster the two transactions can conflict (1213), elsewhere one
  // can wait out the lock timeout (1205). Either rolls back whole, so the
  // chunk is tried again, a few times.
  constexpr int kAttempts = 5;
  Backoff backoff;
  for (int attempt = 1;; ++attempt) {
    Status s = Status::Ok();
    // The writer's connection, kept when the relay becomes active (with
    // its limits, which every connect applies).
    if (!store_.connected()) s = store_.Connect(false);
    if (s.ok()) {
      auto shard = store_.HandOver(chunk, chunk.back().end);
      if (shard.ok()) return shard;
      s = shard.status();
    }
    if ((s.database_code() != 1213 && s.database_code() != 1205) || attempt == kAttempts) return s;
    LogWarn("{}; trying again", s.message());
    std::this_thread::sleep_for(backoff.Next());
  }
}

Relay::PendingRound Relay::PumpPending() {
  // One round at a time: rows go to the queue only once the previous
  // round's are committed (each commit deletes its rows).
  if (pending_queued_.load() > 0 || stopping_) return PendingRound::kWaiting;
  if (!pending_store_.connected() && !pending_store_.Connect(false).ok()) return PendingRound::kFailed;
  // A round of at most 1,000 messages and 8 MiB (but for a larger one
  // alone): it goes to the queue past --buffer-max-bytes.
  auto rows = pending_store_.ReadPending(1000, std::size_t{8} << 20);
  if (!rows.ok()) {
    static RateLimit limit(std::chrono::seconds(30));
    if (auto suppressed = limit.Allow()) LogWarn("{}{}", rows.error(), SuppressedNote(*suppressed));
    return PendingRound::kFailed;
  }
  if (rows->empty()) return PendingRound::kNone;
  // A message a relay took and journaled but never acknowledged was also
  // resent by mosquitto to the shard's next active, in the shard's session,
  // with the same packet id. Stored already if that resend is in TAKEN
  // (committed by any relay), or among the messages this relay took and has
  // committed (or handed over, in a round before this one, all committed
  // by now; or has in its journal). One this relay took and has not
  // committed yet waits in PENDING until it has: deleted now, the message
  // would be lost with this relay, should it die before that commit
  // without a journal (or with its disk). Those it queues here are
  // remembered: the resend, if it comes after (before the intake's first
  // SUBACK), is dropped by the intake like any other, and a second
  // hand-over of the same message is found stored already.
  std::vector<std::pair<std::string, uint64_t>> stored_already;
  std::vector<MysqlStore::PendingRow> fresh;
  std::size_t awaiting = 0;
  {
    std::lock_guard lock(redelivery_mu_);
    for (auto& row : *rows) {
      const std::span<const uint8_t> payload(reinterpret_cast<const uint8_t*>(row.payload.data()),
                                             row.payload.size());
      if (row.taken) {  // its resend was committed, by this relay or another (TAKEN)
        stored_already.emplace_back(std::move(row.journal_id), row.end);
      } else if (row.journal_id == journal_id_) {  // this relay's own: remembered from its journal at start
        // ... in the run of its deliveries, which the resends of messages
        // it took before the SUBACK and acknowledged only once committed
        // (in no journal) come before and break. Remembered as handed over
        // too: found anywhere before the first SUBACK, as another relay's
        // would be (until 2026-12-07 its resend was stored a second time:
        // its stored copy has no packet id for the writer's check).
        if (SessionMayResend(row.session_no)) redelivery_.RememberHandedOver(row.mid, row.topic, payload);
        fresh.push_back(std::move(row));
      } else if (!SessionMayResend(row.session_no)) {  // taken in a session the shard has left
        fresh.push_back(std::move(row));
      } else if (const auto match = redelivery_.Find(row.mid, row.topic, payload);
                 match.kind == RedeliveryFilter::Match::Kind::kNone) {
        redelivery_.RememberHandedOver(row.mid, row.topic, payload);
        fresh.push_back(std::move(row));
      } else if (match.kind == RedeliveryFilter::Match::Kind::kDelivery &&
                 match.delivery > committed_delivery_.load(std::memory_order_acquire)) {
        ++awaiting;  // taken here, not committed yet
      } else {
        stored_already.emplace_back(std::move(row.journal_id), row.end);
      }
    }
  }
  if (!stored_already.empty()) {
    // A failed DELETE leaves those rows for the next round, which finds them
    // stored already again; the fresh ones go to the queue all the same:
    // they are remembered as handed over (above), so the next round would
    // take them for resends this relay took, and store them nowhere.
    if (Status s = pending_store_.DeletePending(stored_already); !s.ok()) {
      static RateLimit limit(std::chrono::seconds(30));
      if (auto suppressed = limit.Allow()) {
        LogWarn("{}; retried with the next round{}", s.message(), SuppressedNote(*suppressed));
      }
      if (fresh.empty()) return PendingRound::kFailed;
    } else {
      LogInfo("{} messages handed over from another relay's journal were stored already (mosquitto resent them "
              "to this relay); not stored again", stored_already.size());
    }
  }
  if (awaiting > 0) {
    static RateLimit limit(std::chrono::seconds(30));
    if (auto suppressed = limit.Allow()) {
      LogInfo("{} messages handed over from another relay's journal are among those this relay took (mosquitto "
              "resent them here) and has not committed yet; kept until it has{}", awaiting,
              SuppressedNote(*suppressed));
    }
  }
  if (fresh.empty()) return stored_already.empty() ? PendingRound::kNone : PendingRound::kProgress;
  LogInfo("storing {} messages a relay of shard '{}' took but did not commit (handed over from its journal; "
          "recovered late, at the end of their topics)", fresh.size(), config_.shard);
  pending_queued_ += fresh.size();
  for (auto& row : fresh) {
    Message m(row.topic, row.payload.data(), row.payload.size());
    m.pending_journal = std::move(row.journal_id);
    m.pending_end = row.end;
    // As at the intake: with --dedupe-window 0 no msg-id is looked up or
    // recorded.
    if (config_.dedupe_window_s > 0) m.msg_id = std::move(row.msg_id);
    // Never waits for room (the main thread must not block): at most one
    // round over --buffer-max and --buffer-max-bytes.
    if (queue_.PushWithin(std::move(m), Clock::duration::zero()) != IntakeQueue::Pushed::kClosed) {
      ++counters_.journal_replayed;
    } else {
      --pending_queued_;
    }
  }
  return PendingRound::kProgress;
}

// ---- Intake (intake link's network thread) -----------------------------------

bool Relay::SessionMayResend(SessionNo taken_in) const {
  const SessionNo now = intake_session_no_.load(std::memory_order_relaxed);
  return now != kUnknownSession && taken_in == now;
}

void Relay::AskForSessionMark() {
  std::lock_guard lock(session_mark_mu_);
  if (session_mark_wanted_ != intake_session_) {
    session_mark_wanted_ = intake_session_;
    queue_.Wake();
  }
}

bool Relay::AwaitSessionMark(Clock::duration max_wait) {
  // A session found kept was marked by whoever began it; one seen marked
  // stays so. The mark was asked for at the connect; asking again is free.
  if (IntakeSessionMarked()) return true;
  AskForSessionMark();
  mark_awaited_ = true;
  std::unique_lock lock(session_mark_mu_);
  // In slices, so that a stop (the writer gone) is seen at once.
  const auto deadline = Clock::now() + max_wait;
  while (session_marked_ != intake_session_) {
    if (stopping_ || Clock::now() >= deadline) return false;
    session_mark_cv_.wait_for(lock, milliseconds(50));
  }
  intake_marked_ = intake_session_;
  intake_session_no_.store(marked_session_no_, std::memory_order_relaxed);
  return true;
}

void Relay::OnIntakeConnected(bool session_present) {
  {
    // Together: PumpPending, under the same lock, must not remember a
    // handed-over message of the old session in the new session's filter.
    std::lock_guard lock(redelivery_mu_);
    redelivery_.Connected(session_present);
    if (!session_present) intake_session_no_.store(kUnknownSession, std::memory_order_relaxed);
  }
  // Another holder's resends come only in a session this relay resumed
  // after taking the shard (StartIntake sets the count); in one it began
  // itself, every delivery is a message of its own stint.
  if (!session_present) resumed_left_ = 0;
  ++intake_connects_;
  before_suback_ = session_present;
  if (session_present) return;
  // A new session: what the journal holds so far is of sessions that can
  // resend nothing. Failing to record that here, the journal records it
  // with the session's first record (Journal::InSession), from the same
  // position: nothing is journaled in between, as the first delivery waits
  // for the session's number. (A relay that dies before that record, with
  // the session's mark below not committed either, remembers the old
  // session's records at its next start.)
  if (journal_) {
    if (Status s = journal_->NewSession(); !s.ok()) LogWarn("{}", s.message());
  }
  ++intake_session_;
  // Numbered at once, not at its first delivery, so that a holder dying
  // before that leaves the session with a number of its own.
  AskForSessionMark();
}

uint32_t Relay::IntakeSubscriptionTag() const {
  // One per subscription of the shard's session: the holder's epoch (every
  // holder has its own) and its connect count, in 27 of the 28 bits MQTT
  // allows.
  // A collision needs 32,768 epochs or 4,096 connects between two sessions
  // whose rows are both among the last 1,000 (CommittedResends::kWindow).
  return 1 + (((lease_->epoch() & 0x7FFFu) << 12) | (intake_connects_ & 0xFFFu));
}

bool Relay::AwaitVerdict(uint64_t ticket) {
  // No deadline of its own: the writer gets to it once the batches before
  // it are through (past a database outage, an output link that holds too
  // many frames unacknowledged), or gives up (a step-down, the end of a
  // stop's drain). Meanwhile this link reads nothing and sends no PINGREQ,
  // and mosquitto may drop it after 1.5 keepalives: the PUBACK never
  // leaves, mosquitto keeps the message and sends it again, and by then
  // this process has its verdict (the redelivery filter drops the resend
  // and acknowledges it). A deadline would be wrong: the filter would drop
  // a resend that has no verdict yet, and acknowledge what is in neither
  // MSG nor the journal.
  std::unique_lock lock(verdict_mu_);
  while (verdicts_ < ticket) {
    if (GivingUp()) return false;
    verdict_cv_.wait_for(lock, milliseconds(50));  // in slices, so that giving up is seen at once
  }
  return true;
}

MqttLink::AfterMessage Relay::OnIntake(const InboundMessage& in) {
  if (!lease_->valid()) {
    // The lease has lapsed: not ours to take. The broken connection leaves
    // its PUBACK unsent, so the broker keeps it in the session, for this
    // relay once the lease is renewed (the link stays away until then) or
    // for the shard's next active.
    return MqttLink::AfterMessage::kBreakConnection;
  }
  // Every wait of this callback together stays under a third of the
  // keepalive (see PushWithin below).
  const auto max_wait = Clock::duration(std::chrono::seconds(config_.mqtt_keepalive_s)) / 3;
  Clock::duration mark_wait{};
  if (!IntakeSessionMarked()) {  // a new session's first delivery
    const auto started = Clock::now();
    const bool marked = AwaitSessionMark(max_wait) && lease_->valid();
    mark_wait = Clock::now() - started;
    if (!marked) {
      // The database is away: take nothing of the new session yet. The
      // broken connection leaves this PUBACK unsent; mosquitto keeps the
      // message in the session and the link asks again after reconnecting.
      static RateLimit limit(std::chrono::seconds(10));
      if (auto suppressed = limit.Allow()) {
        LogWarn("intake: a new MQTT session cannot be marked in the database yet (or the lease lapsed); taking "
                "nothing of it until it is{}", SuppressedNote(*suppressed));
      }
      return MqttLink::AfterMessage::kBreakConnection;
    }
  }
  ++counters_.received;
  const Verdict verdict = rules_.Classify(in.topic, in.payload.size(), in.retain);
  // One lock a message: the filter counts every delivery with a packet id
  // (taken or not, the broker spent one on it), then checks and remembers
  // the ones taken.
  std::unique_lock redelivery_lock(redelivery_mu_);
  if (in.mid != 0) redelivery_.Seen();
  if (verdict != Verdict::kAccept) redelivery_lock.unlock();
  switch (verdict) {
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
  TakeProgress progress;
  progress.delivery = redelivery_.Remember(in.mid, in.topic, in.payload);
  redelivery_lock.unlock();
  try {
    return Take(in, max_wait - std::min(max_wait, mark_wait), progress);
  } catch (const std::bad_alloc&) {
    ++counters_.intake_errors;
    if (progress.queued) {
      // Taken: the writer commits it. Only what came after failed. One
      // that is acknowledged only once committed (neither journaled nor
      // known to be new) still waits for that, as Take would have.
      LogErrorNoThrow("intake: message {} on '{}' queued, then memory ran out", in.mid, in.topic);
      if (progress.ticket != 0 && !AwaitVerdict(progress.ticket)) return MqttLink::AfterMessage::kBreakConnection;
      if (!progress.over_limit) return MqttLink::AfterMessage::kReadOn;
      ++counters_.intake_pauses;
      return MqttLink::AfterMessage::kPause;
    }
    if (progress.journaled) EndSoThatTheJournalHandsItOver(in, "memory ran out");
    if (in.mid == 0) {  // QoS 0: nothing will send it again
      ++counters_.lost;
      LogErrorNoThrow("intake: QoS 0 message on '{}' lost: memory ran out taking it", in.topic);
      return MqttLink::AfterMessage::kReadOn;
    }
    // Not taken: its PUBACK must not leave, so the connection is broken with
    // it unsent, and the filter forgets it, so that mosquitto's resend is
    // taken and not dropped as one already taken.
    {
      std::lock_guard lock(redelivery_mu_);
      redelivery_.Forget(in.mid, in.topic, in.payload);
    }
    LogErrorNoThrow("intake: message {} on '{}' not taken: memory ran out; its PUBACK is withheld (the connection "
                    "is broken) and mosquitto sends it again", in.mid, in.topic);
    return MqttLink::AfterMessage::kBreakConnection;
  } catch (const std::exception& e) {
    ++counters_.intake_errors;
    // Journaled and not queued, whatever failed: acknowledged and then
    // passed over by the next commit's journal position, it would be lost.
    if (progress.journaled && !progress.queued) EndSoThatTheJournalHandsItOver(in, e.what());
    // Not a shortage: the resend would fail the same way, for ever. Counted
    // and logged as lost unless it was queued; and forgotten, so that a copy
    // another relay hands over is not taken for it (PumpPending).
    if (!progress.queued) {
      ++counters_.lost;
      std::lock_guard lock(redelivery_mu_);
      redelivery_.Forget(in.mid, in.topic, in.payload);
    }
    LogError("intake: message {} on '{}' {}: {}", in.mid, in.topic,
             progress.queued ? "queued, but its handling failed" : "lost: its handling failed", e.what());
    return MqttLink::AfterMessage::kReadOn;
  }
}

void Relay::EndSoThatTheJournalHandsItOver(const InboundMessage& in, std::string_view why) {
  // In the journal but not queued: this process would never commit it, and
  // the next commit's journal position would pass over it. The path that
  // keeps it is a crash's: the journal hands it over at the next start, and
  // the PUBACK never leaves, so mosquitto's resend (to this relay restarted
  // or to a standby) is recognised as such.
  LogErrorNoThrow("intake: message {} on '{}' journaled, then {} before it was queued; ending the process so that "
                  "its journal hands it over at the next start", in.mid, in.topic, why);
  std::abort();
}

MqttLink::AfterMessage Relay::Take(const InboundMessage& in, Clock::duration max_wait, TakeProgress& progress) {
  const bool break_link = ++taken_ == break_intake_after_;
  if (break_link && kill_after_commit_ != 0) intake_held_ = true;  // before the writer can commit it
  Message m(in.topic, in.payload.data(), in.payload.size());
  if (taken_ == throw_in_intake_at_) throw std::bad_alloc();
  m.received = Clock::now();
  if (in.properties != nullptr && config_.dedupe_window_s > 0) {
    if (auto id = MqttLink::UserProperty(in, kMsgIdProperty)) {
      if (const MsgIdVerdict v = CheckMsgId(*id); v == MsgIdVerdict::kValid) {
        m.msg_id = std::move(*id);
      } else {
        ++counters_.msg_ids_invalid;
        static RateLimit limit(std::chrono::seconds(10));
        if (auto suppressed = limit.Allow()) {
          LogWarn("intake: a message on '{}' has an invalid msg-id ({}); sequenced as if it had none{}", in.topic,
                  MsgIdVerdictName(v), SuppressedNote(*suppressed));
        }
      }
    }
  }
  m.mid = in.mid;
  m.delivery = progress.delivery;
  m.sub_tag = in.subscription_tag;
  m.intake_session = intake_session_;
  m.session_no = intake_session_no_.load(std::memory_order_relaxed);
  if (before_suback_) m.resume_connect = intake_connects_;
  // Early in a session this process found kept, a delivery may be
  // mosquitto's resend of a message another relay (or this process before a
  // reconnect) committed but whose PUBACK mosquitto never read. Only the
  // writer can tell (DropCommittedResends), so its PUBACK waits for the
  // writer's verdict, and it is not journaled: acknowledged, it is in MSG
  // (or refused for good and set aside, as any message can be); not
  // acknowledged (a kill, a stop that gave up), mosquitto sends it again.
  // Journaled and acknowledged before the verdict, a restart would hand it
  // over and store it a second time. At most mosquitto's in-flight window
  // (20 by default) comes before the SUBACK, a commit's wait each.
  const bool await_verdict = before_suback_ && intake_session_ == 0 && in.mid != 0;
  if (await_verdict) m.verdict_ticket = ++verdict_tickets_;
  if (resumed_left_ > 0) {  // perhaps the resend of a message the previous holder journaled
    --resumed_left_;
    m.resumed_mid = in.mid;
  }
  if (journal_ && !await_verdict) {
    // Before this callback returns, so before libmosquitto sends the PUBACK.
    // The journal says which session its newest records are of, or takes none.
    const Status in_session = journal_->InSession(m.session_no);
    auto end = in_session.ok() ? journal_->Append(in.topic, in.payload, in.mid, m.msg_id) : Result<uint64_t>(in_session);
    if (end.ok()) {
      m.journal_end = end.value();
      progress.journaled = true;
      if (++journaled_ == throw_after_journal_) {
        if (throw_after_journal_error_) throw std::runtime_error("injected failure");
        throw std::bad_alloc();
      }
      if (journaled_ == kill_after_journal_) {
        LogWarn("fault injection: SIGKILL after journaling message {} on '{}'", in.mid, in.topic);
        kill(getpid(), SIGKILL);
      }
    } else {
      // In neither the journal nor MSG: acknowledged only once committed,
      // as a delivery awaiting the writer's verdict is (QoS 0 has no
      // acknowledgement to hold). The link reads one commit at a time until
      // the journal takes records again.
      ++counters_.journal_errors;
      if (in.mid != 0) m.verdict_ticket = ++verdict_tickets_;
      static RateLimit limit(std::chrono::seconds(10));
      if (auto suppressed = limit.Allow()) {
        LogError("{}; the message is acknowledged to mosquitto only once committed{}", end.error(),
                 SuppressedNote(*suppressed));
      }
    }
  }
  // A full buffer holds this thread (and so the reading) only for a third
  // of the keepalive: held longer, libmosquitto would send no PINGREQ and
  // mosquitto would drop the link after 1.5x the keepalive with our PUBACKs
  // unsent. Past that, the link pauses (a clean DISCONNECT) until the
  // writer has drained the buffer to half.
  Clock::duration waited{};
  const uint64_t ticket = m.verdict_ticket;
  const IntakeQueue::Pushed pushed = queue_.PushWithin(std::move(m), max_wait, &waited);
  progress.queued = pushed != IntakeQueue::Pushed::kClosed;
  if (progress.queued) progress.ticket = ticket;
  progress.over_limit = pushed == IntakeQueue::Pushed::kOverLimit;
  // Flagged before any wait for a verdict: the writer resumes a paused
  // intake once it finds the flag after a batch, and the batch that gives
  // this verdict may be the last before the queue runs dry. A resume that
  // comes before the link pauses cancels the pause (MqttLink::Resume).
  if (pushed == IntakeQueue::Pushed::kOverLimit) intake_paused_ = true;
  if (taken_ == throw_after_queue_) throw std::bad_alloc();
  if (ticket != 0 && pushed != IntakeQueue::Pushed::kClosed && !AwaitVerdict(ticket)) {
    // The relay gave up before committing it: not acknowledged, so
    // mosquitto keeps it for the next holder.
    return MqttLink::AfterMessage::kBreakConnection;
  }
  switch (pushed) {
    case IntakeQueue::Pushed::kQueued:
      break;
    case IntakeQueue::Pushed::kClosed:
      // Only after the shutdown deadline closed the queue. A message
      // awaiting its verdict is neither journaled nor committed: not
      // acknowledged, so mosquitto keeps it (not lost). A journaled one is
      // handed over at the next start (no commit passes it now).
      if (ticket != 0) return MqttLink::AfterMessage::kBreakConnection;
      ++(progress.journaled ? counters_.deferred : counters_.lost);
      return MqttLink::AfterMessage::kReadOn;
    case IntakeQueue::Pushed::kOverLimit:
      // The link takes nothing more once it has queued its DISCONNECT
      // (MqttLink::Loop), so this one message is all the queue holds over
      // its limit.
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

}  // namespace seqrelay
