#include "replay/retransmit_service.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "core/frame.h"
#include "core/log.h"
#include "store/mysql_store.h"

namespace seqrelay {
namespace {

constexpr std::size_t kReadChunk = 1000;  // rows per range query
// A reply's memory is bounded in bytes, not only in rows: payloads read per
// query (beyond a first row of any size), and reply bytes handed to the
// broker and not yet acknowledged (libmosquitto keeps a copy of each
// publish, its topic and properties included, until its PUBACK, connected
// or not), for all replies together.
constexpr std::size_t kReadBytes = 8 * 1024 * 1024;
constexpr std::size_t kMaxUnackedBytes = 16 * 1024 * 1024;
// And in count: libmosquitto numbers publishes with a 16-bit counter that
// does not pass over ids still in flight, so past 65,535 unacknowledged a
// new frame would share its id with an older one (untracked, and its
// PUBACK taken for the other's). Small frames reach that long before the
// bytes bound (a 30-byte frame on a short reply topic holds about 50).
constexpr std::size_t kMaxUnackedFrames = 20000;
// How long a reply is served while other clients wait: kTurn while a few
// do, shorter with more (never below kMinTurn), so that a client waits
// about kTurn between its turns, well under the client libraries' reply
// timeout (2 s), which a reply waiting for its next turn must not run into.
// (Until 2026-12-06 every turn was kTurn: with 24 clients on 2 workers a
// client heard nothing for 3 s between turns, and asked again.)
constexpr auto kTurn = std::chrono::milliseconds(250);
constexpr auto kMinTurn = std::chrono::milliseconds(25);

// What libmosquitto holds of a reply's publish until its PUBACK: the
// payload, and the topic and correlation data it carries (a v5 request may
// bring 64 KiB of each, for every frame of its reply).
std::size_t HeldBytes(std::size_t payload, std::string_view topic,
                      const std::optional<std::span<const uint8_t>>& correlation) {
  return payload + topic.size() + (correlation ? correlation->size() : 0);
}

// The error of a reply a stop cut short, or of a request it left unserved.
ReplyStatus Stopping(ReplyStatus status, uint64_t next) {
  status.error = fmt::format("relay stopping after {} frames, ask again from {}", status.sent, next);
  status.code = ErrorCode::kStopping;
  status.next = next;
  return status;
}

std::span<const uint8_t> AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

RetransmitService::RetransmitService(const Config& config)
    : config_(config),
      fail_oldest_lookup_(std::getenv("SEQTEST_FAIL_OLDEST_LOOKUP") != nullptr),
      governor_({.target = std::chrono::microseconds(config.replay_live_delay_us)}) {}

RetransmitService::~RetransmitService() { Stop(); }

void RetransmitService::Start(MqttLink& link) {
  {
    std::lock_guard lock(mu_);
    link_ = &link;
  }
  started_.notify_all();
  for (int i = 0; i < config_.replay_workers; ++i) workers_.emplace_back([this] { Worker(); });
}

void RetransmitService::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  work_.notify_all();
  stop_cv_.notify_all();
  started_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
  // Every request still waiting gets its one status, saying where to ask
  // again (after the frames of its first turns, if it had some).
  std::lock_guard lock(mu_);
  for (auto& [client, jobs] : pending_) {
    for (Job& job : jobs) {
      Answer(job, job.progress ? Stopping(job.progress->status, job.progress->next)
                               : Stopping({}, job.fields.from.value_or(1)));
    }
  }
  pending_.clear();
  pending_jobs_ = pending_bytes_ = 0;
  pending_per_user_.clear();
  turns_.clear();
}

void RetransmitService::OnRequest(const InboundMessage& in) {
  {
    // The link's thread runs from MqttLink::Start, before Start() here has
    // the link to answer on: a request that comes first waits for it.
    std::unique_lock lock(mu_);
    started_.wait(lock, [&] { return link_ != nullptr || stopping_; });
    if (link_ == nullptr) return;  // stopped before it started
  }
  if (in.retain) {
    // A stored request replayed on subscribe: answering it would replay on
    // every relay restart.
    ++counters_.ignored_retained;
    return;
  }
  std::optional<Requester> requester = ParseRequestTopic(config_.control_prefix, in.topic);
  if (!requester) {
    // Subscribed filters allow only R and U/C, but a level may be empty.
    ++counters_.ignored_topic;
    static RateLimit limit(std::chrono::minutes(1));
    if (auto suppressed = limit.Allow()) {
      LogWarn("retransmit: ignored a request on '{}': not {}/retransmit/R or {}/retransmit/U/C{}", in.topic,
              config_.control_prefix, config_.control_prefix, SuppressedNote(*suppressed));
    }
    return;
  }
  ++counters_.requests;
  Job job;
  job.client = std::move(requester->key);
  job.user = std::move(requester->user);
  job.topics = DefaultReplyTopics(config_.control_prefix, job.client);
  if (in.correlation_data) job.correlation = std::string(in.correlation_data->begin(), in.correlation_data->end());

  auto reply_topics = ChooseReplyTopics(config_.control_prefix, job.client, in.response_topic);
  ParsedRequest request = ParseRetransmitRequest(
      std::string_view(reinterpret_cast<const char*>(in.payload.data()), in.payload.size()));
  job.fields = request.fields;
  if (!reply_topics.ok()) {
    // On the requester's own status topic.
    Answer(job, ReplyStatus::Refused(ErrorCode::kBadResponseTopic, reply_topics.error()));
    return;
  }
  job.topics = std::move(reply_topics).value();
  if (!request.ok()) {
    Answer(job, ReplyStatus::Refused(request.code, request.error));
    return;
  }
  std::unique_lock lock(mu_);
  if (stopping_) {
    lock.unlock();
    Answer(job, Stopping({}, *job.fields.from));
    return;
  }
  if (std::optional<std::string> why = OverPendingBoundLocked(job)) {
    lock.unlock();
    Answer(job, ReplyStatus::Refused(ErrorCode::kBusy, *why));
    return;
  }
  auto& queue = pending_[job.client];
  if (queue.empty() && !serving_.count(job.client)) turns_.push_back(job.client);
  CountPendingLocked(job, true);
  queue.push_back(std::move(job));
  work_.notify_one();
}

std::size_t RetransmitService::BytesOf(const Job& job) {
  return sizeof(Job) + job.client.size() + (job.user ? job.user->size() : 0) + job.topics.frames.size() +
         job.topics.status.size() + (job.correlation ? job.correlation->size() : 0) +
         (job.fields.topic ? job.fields.topic->size() : 0);
}

void RetransmitService::CountPendingLocked(const Job& job, bool in) {
  const std::size_t bytes = BytesOf(job);
  if (in) {
    ++pending_jobs_;
    pending_bytes_ += bytes;
    ++pending_per_user_[UserOf(job)];
    return;
  }
  --pending_jobs_;
  pending_bytes_ -= bytes;
  if (auto it = pending_per_user_.find(UserOf(job)); --it->second == 0) pending_per_user_.erase(it);
}

std::optional<std::string> RetransmitService::OverPendingBoundLocked(const Job& job) const {
  if (auto it = pending_per_user_.find(UserOf(job));
      it != pending_per_user_.end() && it->second >= kMaxPendingPerUser) {
    return fmt::format("too many requests pending (at most {} per user)", kMaxPendingPerUser);
  }
  if (pending_jobs_ >= kMaxPendingInAll || pending_bytes_ + BytesOf(job) > kMaxPendingBytes) {
    return fmt::format("too many requests pending (at most {} or {} MiB in all)", kMaxPendingInAll,
                       kMaxPendingBytes >> 20);
  }
  return std::nullopt;
}

void RetransmitService::Worker() {
  MysqlStore store(config_);
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      work_.wait(lock, [&] { return stopping_ || !turns_.empty(); });
      if (stopping_) return;
      std::string client = std::move(turns_.front());
      turns_.pop_front();
      auto it = pending_.find(client);
      job = std::move(it->second.front());
      it->second.pop_front();
      if (it->second.empty()) pending_.erase(it);
      CountPendingLocked(job, false);
      serving_.insert(std::move(client));
    }
    const bool done = Serve(job, store);
    const std::string client = job.client;
    std::lock_guard lock(mu_);
    serving_.erase(client);
    if (!done) {
      CountPendingLocked(job, true);  // a job already taken is never refused: it may go over the bounds
      pending_[client].push_front(std::move(job));  // goes on before the client's next request
    }
    if (auto it = pending_.find(client); it != pending_.end()) {
      turns_.push_back(it->first);  // its next turn waits for everyone else's
      work_.notify_one();
    }
  }
}

namespace {

// Runs a database call, reconnecting once if it fails. One reconnect per
// call is enough here: a client whose request fails on a database outage
// asks again.
template <typename Call>
auto WithDb(MysqlStore& store, Call&& call) {
  auto r = store.connected() ? call() : decltype(call())(Status::Error("not connected"));
  if (!r.ok()) {
    if (Status c = store.Connect(false); c.ok()) r = call();
  }
  return r;
}

}  // namespace

bool RetransmitService::Prepare(Job& job, MysqlStore& store) {
  RequestFields& f = job.fields;
  if (f.topic && !MayRead(job, *f.topic)) {  // before the database: not even "unknown topic"
    Answer(job, ReplyStatus::Refused(ErrorCode::kForbidden, std::string(kErrorForbidden)));
    return false;
  }
  auto topic = WithDb(store, [&] { return store.FindTopic(f.topic, f.id); });
  if (!topic.ok()) {
    LogWarn("retransmit for {}: {}", job.client, topic.error());
    Answer(job, ReplyStatus::Refused(ErrorCode::kUnavailable, "database unavailable, try again"));
    return false;
  }
  if (!topic.value()) {
    Answer(job, f.topic ? ReplyStatus::Refused(ErrorCode::kUnknownTopic, std::string(kErrorUnknownTopic))
                        : ReplyStatus::Refused(ErrorCode::kUnknownId, std::string(kErrorUnknownId)));
    return false;
  }
  const MysqlStore::TopicRow& t = **topic;
  if (!MayRead(job, t.topic)) {
    // By id: the client learns neither the topic's name nor its last SEQ.
    Answer(job, ReplyStatus::Refused(ErrorCode::kForbidden, std::string(kErrorForbidden)));
    return false;
  }
  f.topic = t.topic;
  f.id = t.id;
  Job::Progress p;
  p.status.last = t.last_seq;
  // The oldest SEQ still stored (retention deletes from the start); last +
  // 1 when nothing is. A request from below it is served from it; its
  // status keeps "from" as asked and says "first".
  p.status.first = t.first_seq != 0 ? t.first_seq : t.last_seq + 1;
  const uint64_t from = std::max(*f.from, *p.status.first);
  const uint64_t to = std::min(f.to.value_or(t.last_seq), t.last_seq);
  if (!f.to) f.to = t.last_seq;
  if (from > to) {
    Answer(job, p.status);  // nothing that new yet: ok, sent 0
    return false;
  }
  const uint64_t cap = static_cast<uint64_t>(config_.replay_max);
  p.next = from;
  p.end = (to - from + 1 > cap) ? from + cap - 1 : to;
  if (p.end < to) p.status.next = p.end + 1;
  job.progress = std::move(p);
  return true;
}

bool RetransmitService::Serve(Job& job, MysqlStore& store) {
  if (!job.progress && !Prepare(job, store)) return true;
  Job::Progress& p = *job.progress;
  const std::string& topic = *job.fields.topic;
  const uint32_t id = *job.fields.id;

  // A frame goes out no earlier than k / rate seconds after the turn's
  // first (--replay-rate), and then when the governor's slot for it comes.
  using Clock = std::chrono::steady_clock;
  const auto turn_started = Clock::now();
  auto turn_ends = turn_started + TurnLength();
  uint64_t turn_sent = 0;
  // Returns false when the relay is stopping: a slow reply must not hold
  // the shutdown up.
  auto wait_until = [&](Clock::time_point due) {
    if (due <= Clock::now()) return !stopping_.load();
    std::unique_lock lock(mu_);
    return !stop_cv_.wait_until(lock, due, [&] { return stopping_.load(); });
  };
  auto pace = [&] {
    if (config_.replay_rate > 0 &&
        !wait_until(turn_started + std::chrono::microseconds(static_cast<int64_t>(turn_sent) * 1000000 /
                                                             config_.replay_rate))) {
      return false;
    }
    return wait_until(governor_.Reserve(Clock::now()));
  };
  // The database failed: the client asks again from where the reply got.
  auto unavailable = [&](const std::string& why) {
    LogWarn("retransmit for {} of '{}' from {}: {}", job.client, topic, p.next, why);
    p.status.error = fmt::format("database unavailable after {} frames, ask again from {}", p.status.sent, p.next);
    p.status.code = ErrorCode::kUnavailable;
    p.status.next = p.next;
  };
  while (p.next <= p.end) {
    auto rows = WithDb(store, [&] { return store.ReadRange(topic, p.next, p.end, kReadChunk, kReadBytes); });
    if (!rows.ok()) {
      unavailable(rows.error());
      break;
    }
    if (rows->empty()) {
      // Nothing from p.next to p.end, or (the read's two statements see two
      // snapshots) retention deleted what its first one counted: the rows
      // from the topic's oldest now on are still to send. (Until 2026-12-06
      // the reply ended here, "ok", without them; until 2026-12-07 it did
      // so still when this lookup failed.)
      const std::optional<uint64_t> oldest = MissingFrom(p.next, job, store);
      if (!oldest) {
        unavailable("the topic's oldest row could not be read");
        break;
      }
      if (*oldest > p.next && *oldest <= p.end) {
        p.next = *oldest;
        continue;
      }
      break;
    }
    for (const auto& row : *rows) {
      // (A failed lookup leaves `first` as it is: the hole stays one.)
      if (row.seq != p.next) (void)MissingFrom(p.next, job, store);
      auto frame = EncodeFrame({id, row.seq, static_cast<Ordering>(row.ordering & 1)}, AsBytes(row.payload));
      if (!frame.ok()) {  // a SEQ outside 1..2^40-1, which the relay never writes: passed over
        p.next = row.seq + 1;
        continue;
      }
      if (!pace()) {
        p.status.sent -= SettleFrames(job);
        Answer(job, Stopping(p.status, row.seq));
        return true;
      }
      if (PublishFrame(job, AsBytes(frame.value()))) ++p.status.sent;
      ++turn_sent;
      p.next = row.seq + 1;
      if (p.next <= p.end && Clock::now() >= turn_ends) {
        if (OthersWaiting()) return false;  // the rest in a later turn
        turn_ends = Clock::now() + TurnLength();
      }
    }
  }
  // `sent` counts what reached the broker: a frame it refused (too large
  // for its message_size_limit, say) is not sent, whatever libmosquitto did.
  p.status.sent -= SettleFrames(job);
  Answer(job, p.status);
  return true;
}

bool RetransmitService::OthersWaiting() {
  std::lock_guard lock(mu_);
  return !turns_.empty();
}

std::chrono::steady_clock::duration RetransmitService::TurnLength() {
  const std::size_t workers = static_cast<std::size_t>(std::max(config_.replay_workers, 1));
  std::size_t waiting = 0;
  {
    std::lock_guard lock(mu_);
    waiting = turns_.size();  // clients waiting for a turn, each for one
  }
  // A client's next turn comes after those of the clients before it, a
  // turn per worker at a time.
  if (waiting <= workers) return kTurn;
  return std::max<std::chrono::steady_clock::duration>(kMinTurn, kTurn * workers / waiting);
}

std::optional<uint64_t> RetransmitService::MissingFrom(uint64_t seq, Job& job, MysqlStore& store) {
  // Retention deletes a topic's rows from its oldest on, maybe while a
  // reply goes: if everything before the oldest row stored now is gone,
  // `first` says where the history starts now (PROTOCOL.md 5.2). A hole
  // above older rows (an operator's purge) stays a hole: the client asks
  // for it and hears that the relay has no such SEQ.
  if (fail_oldest_lookup_) return std::nullopt;
  auto now = WithDb(store, [&] { return store.FindTopic(*job.fields.topic, std::nullopt); });
  if (!now.ok()) return std::nullopt;
  if (!now.value()) return 0;  // no such topic now: nothing to send
  const MysqlStore::TopicRow& t = **now;
  const uint64_t oldest = t.first_seq != 0 ? t.first_seq : t.last_seq + 1;
  Job::Progress& p = *job.progress;
  // At most the reply's `last` + 1 (nothing stored up to it): rows deleted
  // past it are newer than the reply, whose `last` stays as it began.
  if (oldest > seq) p.status.first = std::min(std::max(p.status.first.value_or(0), oldest), p.status.last + 1);
  return oldest;
}

bool RetransmitService::MayRead(const Job& job, std::string_view topic) const {
  const std::shared_ptr<const Acl> acl = acl_.load();
  if (!acl) return true;
  const std::string frames = config_.seq_prefix + "/" + std::string(topic);
  // v1: the client id is the username (the broker makes it so); per user:
  // the username the broker tied to the topic, and no client id.
  if (job.user) return acl->MayRead(*job.user, std::nullopt, frames);
  return acl->MayRead(job.client, job.client, frames);
}

bool RetransmitService::PublishFrame(Job& job, std::span<const uint8_t> frame) {
  std::optional<std::span<const uint8_t>> correlation;
  if (job.correlation) correlation = AsBytes(*job.correlation);
  const std::size_t held = HeldBytes(frame.size(), job.topics.frames, correlation);
  std::unique_lock lock(unacked_mu_);  // held across the publish: its PUBACK cannot come before the insert
  if (job.serial == 0) job.serial = ++next_serial_;
  // Room for it among the frames and bytes in flight (one frame alone
  // always goes). Waits in slices, so that a stop is seen even if no PUBACK
  // ever comes. (Statuses do not wait: one a job, at most kMaxPendingInAll
  // and the workers' in all, which keeps every id in flight distinct.)
  while (unacked_bytes_ > 0 && (unacked_bytes_ + held > kMaxUnackedBytes || unacked_count_ >= kMaxUnackedFrames) &&
         !stopping_) {
    acked_cv_.wait_for(lock, std::chrono::milliseconds(100));
  }
  auto mid = link_->Publish(job.topics.frames, frame, 1, correlation);
  if (!mid.ok()) {
    static RateLimit limit(std::chrono::minutes(1));
    if (auto suppressed = limit.Allow()) {
      LogError("retransmit for {}: a frame of {} bytes was not sent: {}{}", job.client, frame.size(), mid.error(),
               SuppressedNote(*suppressed));
    }
    return false;
  }
  ++counters_.frames;
  MarkUnackedLocked(mid.value(), held, job.serial);
  return true;
}

void RetransmitService::MarkUnackedLocked(int mid, std::size_t bytes, uint64_t job) {
  if (mid < 0 || mid >= static_cast<int>(unacked_.size()) || unacked_[mid] > 0) return;
  unacked_[mid] = static_cast<uint32_t>(std::max<std::size_t>(bytes, 1));
  unacked_bytes_ += unacked_[mid];
  ++unacked_count_;
  owner_[mid] = job;
  if (job != 0) ++frame_acks_[job].pending;
}

uint64_t RetransmitService::SettleFrames(const Job& job) {
  if (job.serial == 0) return 0;
  std::unique_lock lock(unacked_mu_);
  auto it = frame_acks_.find(job.serial);
  if (it == frame_acks_.end()) return 0;
  // The element, not the iterator: other workers insert while this one
  // waits, and a rehash moves iterators, not elements.
  const FrameAcks& acks = it->second;
  acked_cv_.wait_for(lock, std::chrono::seconds(2), [&] { return acks.pending == 0; });
  const uint64_t refused = acks.refused;
  frame_acks_.erase(job.serial);  // a PUBACK still to come finds no entry and changes nothing
  return refused;
}

void RetransmitService::OnPublished(int mid, int reason_code) {
  if (reason_code >= 0x80) {
    ++counters_.broker_refused;
    static RateLimit limit(std::chrono::seconds(10));
    if (auto suppressed = limit.Allow()) {
      LogError("mosquitto refused a retransmit reply it acknowledged (PUBACK reason 0x{:02x}; check its "
               "message_size_limit and ACL){}", reason_code, SuppressedNote(*suppressed));
    }
  }
  std::lock_guard lock(unacked_mu_);
  if (mid < 0 || mid >= static_cast<int>(unacked_.size()) || unacked_[mid] == 0) return;
  unacked_bytes_ -= unacked_[mid];
  unacked_[mid] = 0;
  --unacked_count_;
  if (owner_[mid] != 0) {
    if (auto it = frame_acks_.find(owner_[mid]); it != frame_acks_.end()) {
      --it->second.pending;
      if (reason_code >= 0x80) ++it->second.refused;
    }
    owner_[mid] = 0;
  }
  acked_cv_.notify_all();  // a worker waiting for room, or WaitAcknowledged
}

std::size_t RetransmitService::Unacknowledged() const {
  std::lock_guard lock(unacked_mu_);
  return unacked_count_;
}

std::size_t RetransmitService::WaitAcknowledged(std::chrono::milliseconds deadline) {
  std::unique_lock lock(unacked_mu_);
  acked_cv_.wait_for(lock, deadline, [&] { return unacked_count_ == 0; });
  return unacked_count_;
}

void RetransmitService::Answer(const Job& job, const ReplyStatus& status) {
  if (status.error.empty()) {
    ++counters_.served;
  } else {
    ++(status.error == kErrorForbidden ? counters_.forbidden : counters_.refused);
  }
  if (!status.error.empty()) {
    static RateLimit limit(std::chrono::seconds(10));
    if (auto suppressed = limit.Allow()) {
      LogInfo("retransmit request from '{}' refused: {}{}", job.client, status.error, SuppressedNote(*suppressed));
    }
  }
  const std::string body = StatusJson(job.fields, status);
  std::optional<std::span<const uint8_t>> correlation;
  if (job.correlation) correlation = AsBytes(*job.correlation);
  std::unique_lock lock(unacked_mu_);
  auto mid = link_->Publish(job.topics.status, AsBytes(body), 1, correlation);
  if (mid.ok()) MarkUnackedLocked(mid.value(), HeldBytes(body.size(), job.topics.status, correlation), 0);
  lock.unlock();
  if (!mid.ok()) {
    LogWarn("retransmit status for '{}': {}", job.client, mid.error());
  }
}

}  // namespace seqrelay
