#include "seq_client.h"

#include <fmt/format.h>
#include <mosquitto.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <nlohmann/json.hpp>

#include "core/durable_file.h"
#include "core/frame.h"
#include "core/thread_interrupt.h"
#include "core/topic_filter.h"
#include "core/utf8.h"
#include "replay/retransmit.h"

namespace seqclient {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

// A lookup asks from the highest SEQ there can be: the relay answers with
// no frames, and the status says the topic's id and newest SEQ.
constexpr uint64_t kLookupFrom = seqrelay::kMaxSeq;
// The `to` of an open-ended request, until its status names the newest SEQ.
constexpr uint64_t kOpenEnd = UINT64_MAX;
// The most SEQs a state file's "shown" may hold for a topic (an immediate
// topic's frames shown above a gap, kept in memory as they are at run time).
constexpr uint64_t kMaxShownOnResume = uint64_t{1} << 20;

bool HasWildcard(const std::string& filter) { return filter.find_first_of("+#") != std::string::npos; }

// Why a resume at `start` past the topic's newest SEQ `last` is given up:
// the same words in the three client libraries.
std::string ResetReason(uint64_t start, uint64_t last) {
  return fmt::format("resumed at {}, past the topic's newest SEQ {}: its history began again", start, last);
}

std::string RequesterOf(const Options& o) {
  return o.requester.empty() ? DefaultRequester(o.client_id, o.user) : o.requester;
}

// A v1 relay's error without `code` or `retry`: final only if it is one of
// these (any other, the database away say, is asked again).
bool FinalV1Error(const std::string& error) {
  return error == seqrelay::kErrorUnknownTopic || error == seqrelay::kErrorUnknownId ||
         error == seqrelay::kErrorForbidden;
}

// Why the status `s` is not of the protocol's shape (PROTOCOL 3 and 5), or
// nothing: every field it has of the protocol's type, and an ok status
// with the topic's id and newest SEQ. As the JavaScript and Python
// clients' (until 2026-12-07 this client read a missing field as 0 and
// cast a negative or fractional one: an ok lookup without `last` reset a
// resumed topic to SEQ 1, a `first` of -1 gave every SEQ up; a review).
std::optional<std::string> StatusShapeError(const json& s) {
  for (const char* key : {"id", "from", "to", "sent", "last", "first", "next"}) {
    if (s.contains(key) && !s[key].is_number_unsigned()) return fmt::format("'{}' is not a non-negative integer", key);
  }
  if (s.contains("id") && s["id"].get<uint64_t>() > UINT32_MAX) return std::string("'id' is over 2^32 - 1");
  for (const char* key : {"status", "error", "code", "topic"}) {
    if (s.contains(key) && !s[key].is_string()) return fmt::format("'{}' is not a string", key);
  }
  for (const char* key : {"retry", "truncated"}) {
    if (s.contains(key) && !s[key].is_boolean()) return fmt::format("'{}' is not a boolean", key);
  }
  if (s.value("status", "") == "ok") {
    for (const char* key : {"id", "last"}) {
      if (!s.contains(key)) return fmt::format("an ok status without '{}'", key);
    }
  }
  return std::nullopt;
}

}  // namespace

std::string DefaultRequester(const std::string& client_id, const std::string& user) {
  if (!user.empty() && !client_id.empty() && client_id != user) return user + "/" + client_id;
  return user.empty() ? client_id : user;
}

SeqClient::SeqClient(Options options, OnMessage on_message, OnGap on_gap)
    : options_(std::move(options)),
      requests_topic_(options_.control_prefix + "/retransmit/" + RequesterOf(options_)),
      replies_topic_(options_.control_prefix + "/replay/" + RequesterOf(options_)),
      on_message_(std::move(on_message)),
      on_gap_(std::move(on_gap)) {}

SeqClient::~SeqClient() { Stop(); }

std::optional<std::string> CheckOptions(const Options& o) {
  if (o.client_id.empty()) return "a client id is required";
  const std::string requester = RequesterOf(o);
  const auto slash = requester.find('/');
  if (requester.find_first_of("+#") != std::string::npos || requester.empty() || requester.front() == '/' ||
      requester.back() == '/' || (slash != std::string::npos && requester.find('/', slash + 1) != std::string::npos)) {
    return "requester '" + requester + "' is not R or U/C (PROTOCOL 3 and 5.4: one or two non-empty levels, no "
           "wildcard)";
  }
  if (requester.find('\0') != std::string::npos || !seqrelay::IsValidUtf8(requester)) {
    return "requester '" + requester + "' is not valid UTF-8 without NUL";
  }
  // A prefix libmosquitto would refuse in a topic made nothing subscribed,
  // silently (the SUBSCRIBE is sent from the connect callback).
  for (const auto& [name, prefix] : {std::pair{"seq prefix", &o.seq_prefix}, {"control prefix", &o.control_prefix}}) {
    if (prefix->empty() || prefix->find_first_of(std::string_view("+#\0", 3)) != std::string::npos ||
        prefix->front() == '/' || prefix->back() == '/' || !seqrelay::IsValidUtf8(*prefix)) {
      return fmt::format("{} '{}' must be a plain topic prefix: UTF-8, no '+', '#' or NUL, no leading or trailing "
                         "'/'", name, *prefix);
    }
  }
  if (o.filters.empty()) return "give at least one topic";
  for (const auto& f : o.filters) {
    if (auto s = seqrelay::ValidateFilter(f); !s.ok()) return "topic '" + f + "': " + s.message();
  }
  if (o.history != History::kNone || !o.state_file.empty()) {
    for (const auto& f : o.filters) {
      if (HasWildcard(f)) return "history and --state need topics without '+' or '#': '" + f + "'";
    }
  }
  for (const auto& f : o.filters) {
    // PROTOCOL 1: a longer topic is never sequenced, so nothing would come
    // (and its lookup outgrew the relay's request limit: no answer for a
    // minute, then "no reply").
    if (!HasWildcard(f) && f.size() > 255) {
      return fmt::format("topic '{}...' is {} bytes: the relay sequences topics of at most 255 bytes",
                         f.substr(0, 40), f.size());
    }
  }
  if ((o.history == History::kFrom || o.history == History::kLast) &&
      (o.history_n < 1 || o.history_n > seqrelay::kMaxSeq)) {
    return fmt::format("history_n must be 1 to {} (a SEQ, or a count back)", seqrelay::kMaxSeq);
  }
  if (o.qos < 0 || o.qos > 2) return "qos must be 0, 1 or 2";
  if (o.max_outstanding < 1) return "max_outstanding must be at least 1";
  if (o.max_attempts < 1) return "max_attempts must be at least 1";
  constexpr auto kDay = std::chrono::hours(24);
  if (o.gap_wait < std::chrono::milliseconds(0) || o.gap_wait > kDay) return "gap_wait must be 0 to 24 hours";
  if (o.reply_timeout <= std::chrono::milliseconds(0) || o.reply_timeout > kDay) {
    return "reply_timeout must be more than 0 and at most 24 hours";
  }
  std::error_code ec;
  if (!o.state_file.empty() && std::filesystem::is_directory(o.state_file, ec)) {
    return "state file " + o.state_file + " is a directory";
  }
  return std::nullopt;
}

std::optional<std::string> SeqClient::Start() {
  if (auto error = CheckOptions(options_)) return error;
  if (auto error = LoadState()) return error;
  state_loaded_ = true;
  // Written once now: a state file that cannot be written is said at the
  // start, not found out at the end.
  if (auto error = SaveState()) return error;
  // History and resumption: look each topic up first (its id and newest SEQ);
  // live frames for it are held until the answer says where to start. Set
  // before connecting: a live frame that came between the SUBSCRIBE and this
  // would start the topic's stream there, and the history below it would be
  // dropped as old.
  {
    std::lock_guard lock(mu_);
    for (const auto& t : options_.filters) {
      uint64_t start = 0;
      if (auto it = resume_.find(t); it != resume_.end()) {
        start = it->second + 1;
      } else if (options_.history == History::kAll) {
        start = 1;
      } else if (options_.history == History::kFrom) {
        start = std::max<uint64_t>(1, options_.history_n);
      } else if (options_.history != History::kLast) {
        continue;
      }
      lookups_[t].start = start;
    }
  }
  {
    std::lock_guard lock(mu_);
    starting_ = true;
  }
  mosquitto_lib_init();
  mosq_ = mosquitto_new(options_.client_id.c_str(), true, this);
  if (!mosq_) return "cannot create the MQTT client";
  mosquitto_int_option(mosq_, MOSQ_OPT_TCP_NODELAY, 1);
  mosquitto_reconnect_delay_set(mosq_, 1, 30, true);
  if (!options_.user.empty()) {
    mosquitto_username_pw_set(mosq_, options_.user.c_str(),
                              options_.password.empty() ? nullptr : options_.password.c_str());
  }
  mosquitto_connect_callback_set(mosq_, &SeqClient::OnConnect);
  mosquitto_disconnect_callback_set(mosq_, &SeqClient::OnDisconnect);
  mosquitto_message_callback_set(mosq_, &SeqClient::OnMessageTrampoline);
  mosquitto_subscribe_callback_set(mosq_, &SeqClient::OnSubscribe);
  int rc = mosquitto_connect(mosq_, options_.host.c_str(), options_.port, kKeepaliveS);
  if (rc != MOSQ_ERR_SUCCESS) {
    return "cannot connect to " + options_.host + ":" + std::to_string(options_.port) + ": " +
           (rc == MOSQ_ERR_ERRNO ? std::string(strerror(errno)) : mosquitto_strerror(rc));
  }
  // The network thread is the client's own, not mosquitto_loop_start's,
  // so that Stop can interrupt a blocking reconnect (see there).
  mosquitto_threaded_set(mosq_, true);
  network_ = std::thread([this] {
    seqrelay::AcceptInterrupts();  // StopNetwork's, whatever the application's mask
    RunNetwork();
    std::lock_guard lock(mu_);
    network_ended_ = true;
    cv_.notify_all();
  });
  {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, std::chrono::seconds(10), [&] { return connack_ >= 0; })) {
      return "no answer from the broker at " + options_.host + ":" + std::to_string(options_.port);
    }
    if (connack_ != 0) return std::string("the broker refused the connection: ") + mosquitto_connack_string(connack_);
    // Subscribed, or told why not (an ACL that does not let this user read
    // a topic would otherwise deliver nothing, silently).
    const bool answered = cv_.wait_for(lock, std::chrono::seconds(10), [&] {
      return (connected_ && subscribing_.empty()) || !first_subscribe_error_.empty();
    });
    starting_ = false;
    if (!first_subscribe_error_.empty()) return first_subscribe_error_;
    if (!answered) return "no SUBACK from the broker at " + options_.host + ":" + std::to_string(options_.port);
  }
  {
    std::lock_guard lock(mu_);
    for (const auto& [topic, lookup] : lookups_) AskLookupLocked(topic);
  }
  timer_ = std::thread([this] { Timer(); });
  return std::nullopt;
}

void SeqClient::Stop(const std::function<void(bool saved)>& saved) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (timer_.joinable()) timer_.join();
  {
    // Saved before the network thread's stop, which waits for a callback
    // under way (the application's code). A process that cannot wait may
    // end meanwhile (seqsub at a second signal) with its state saved. (The
    // timer, which saves without the lock, has ended.)
    std::unique_lock lock(mu_);
    const bool ok = !SaveState();
    lock.unlock();
    if (saved) saved(ok);
  }
  if (mosq_) {
    StopNetwork();
    mosquitto_destroy(mosq_);
    mosq_ = nullptr;
  }
  std::lock_guard lock(mu_);
  SaveState();
}

void SeqClient::RunNetwork() {
  // mosquitto_loop_forever reconnects after a lost connection, but returns
  // for good on an error it deems fatal: a packet it cannot take (a
  // protocol error), out of memory. The client would then receive nothing
  // more, and say nothing. So, unless Stop ended it, the error is counted
  // and the loop run again after a pause: with the socket closed, it
  // reconnects (after its own reconnect delay), and the catch-up after a
  // reconnect brings what came meanwhile. The pause doubles, 1 s to 30 s,
  // while no connection is made in between (each run of the loop starts
  // its own delay again at 1 s).
  using std::chrono::seconds;
  seconds pause(1);
  uint64_t connections_then = 0;
  for (;;) {
    // The loop returns at once on an errno of EPROTO it finds set, its own
    // or one left from before: cleared, or a run would end as it began.
    errno = 0;
    const int rc = mosquitto_loop_forever(mosq_, kKeepaliveS * 1000, 1);
    const std::string why = rc == MOSQ_ERR_ERRNO ? std::strerror(errno) : mosquitto_strerror(rc);
    std::unique_lock lock(mu_);
    if (stopping_) return;
    ++stats_.network_errors;
    stats_.last_network_error = why;
    pause = connections_ != connections_then ? seconds(1) : std::min(pause * 2, seconds(30));
    connections_then = connections_;
    if (cv_.wait_for(lock, pause, [&] { return stopping_; })) return;
  }
}

void SeqClient::StopNetwork() {
  // mosquitto_disconnect sets the state to disconnected and, with a
  // socket, queues a DISCONNECT: the loop ends once that is written (or the
  // socket fails), or at its next look at the state. A reconnect under way
  // blocks in connect(2) (to a host that drops the SYNs: the kernel's
  // retries, about 2 minutes) on a socket of its own (so a DISCONNECT
  // queued then is not the end), and its start and its failure each set
  // the state again: so, until the loop has ended, the state is set again
  // and the connect (or the backoff's sleep) interrupted, every 50 ms. (A
  // DISCONNECT queued each time while a callback blocks the loop: a few,
  // written or dropped with the socket.) The interrupt is sent with mu_
  // held: the application's callbacks run only under it, so none is under
  // way (a blocking call of its own would fail with EINTR), and the thread
  // takes the signal before it runs on to one. A callback under way is
  // waited for.
  mosquitto_disconnect(mosq_);
  if (!network_.joinable()) return;
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return network_ended_; })) {
    lock.unlock();
    mosquitto_disconnect(mosq_);
    lock.lock();
    if (!network_ended_) seqrelay::InterruptThread(network_);
  }
  lock.unlock();
  network_.join();
}

Stats SeqClient::stats() {
  std::lock_guard lock(mu_);
  Stats s = stats_;
  s.lookups_pending = lookups_.size();
  for (const auto& [id, t] : topics_) s.held_bytes += t.stream.held_bytes();
  for (const auto& [name, held] : held_live_) s.held_bytes += held.bytes;
  return s;
}

void SeqClient::OnDisconnect(mosquitto*, void* obj, int) {
  auto* self = static_cast<SeqClient*>(obj);
  std::lock_guard lock(self->mu_);
  self->connected_ = false;
  self->subscribing_.clear();  // their SUBACKs do not come; the next connect subscribes again
}

void SeqClient::OnConnect(mosquitto* m, void* obj, int rc) {
  auto* self = static_cast<SeqClient*>(obj);
  // The SUBACKs come on this thread, after this returns.
  std::map<int, std::string> subscribing;
  std::vector<std::string> failed;
  if (rc == 0) {
    auto subscribe = [&](const std::string& topic, int qos) {
      int mid = 0;
      if (int src = mosquitto_subscribe(m, &mid, topic.c_str(), qos); src != MOSQ_ERR_SUCCESS) {
        failed.push_back("cannot subscribe to '" + topic + "': " + mosquitto_strerror(src));
      } else {
        subscribing[mid] = topic;
      }
    };
    for (const auto& f : self->options_.filters) subscribe(self->options_.seq_prefix + "/" + f, self->options_.qos);
    subscribe(self->replies_topic_ + "/#", 1);
  }
  std::lock_guard lock(self->mu_);
  if (rc == 0) {
    ++self->connections_;
    self->connected_ = true;
    self->subscribing_ = std::move(subscribing);
    for (const auto& why : failed) self->SubscribeFailedLocked(why);
  }
  if (self->connack_ < 0) {
    self->connack_ = rc;
  } else if (rc == 0) {
    self->CatchUpLocked();
  }
  self->cv_.notify_all();
}

void SeqClient::OnSubscribe(mosquitto*, void* obj, int mid, int count, const int* granted) {
  auto* self = static_cast<SeqClient*>(obj);
  std::lock_guard lock(self->mu_);
  auto it = self->subscribing_.find(mid);
  if (it == self->subscribing_.end()) return;
  // 0x80 (3.1.1) or a v5 reason code >= 0x80: refused, as mosquitto's
  // dynamic-security plugin does with a topic the user may not read (an
  // acl_file never refuses a SUBSCRIBE: it withholds delivery).
  if (count < 1 || granted[0] >= 0x80) {
    self->SubscribeFailedLocked("the broker refused the subscription to '" + it->second +
                                "' (SUBACK " + (count < 1 ? std::string("empty") : std::to_string(granted[0])) +
                                "): its ACL does not let this user read it?");
  }
  self->subscribing_.erase(it);
  self->cv_.notify_all();
}

void SeqClient::SubscribeFailedLocked(const std::string& why) {
  ++stats_.subscribe_errors;
  stats_.last_subscribe_error = why;
  if (starting_ && first_subscribe_error_.empty()) first_subscribe_error_ = why;
  cv_.notify_all();
}

void SeqClient::OnMessageTrampoline(mosquitto*, void* obj, const mosquitto_message* m) {
  auto* self = static_cast<SeqClient*>(obj);
  const std::string topic = m->topic;
  const std::string bytes(static_cast<const char*>(m->payload), m->payloadlen);
  const std::string& replies = self->replies_topic_;
  const std::string live_prefix = self->options_.seq_prefix + "/";
  try {
    if (topic == replies + "/status") {
      self->HandleStatus(bytes);
    } else if (topic == replies) {
      self->HandleFrame("", bytes, /*replayed=*/true);
    } else if (topic.rfind(live_prefix, 0) == 0) {
      self->HandleFrame(topic.substr(live_prefix.size()), bytes, /*replayed=*/false);
    }
  } catch (const std::exception&) {
    std::lock_guard lock(self->mu_);
    ++self->stats_.bad_frames;
  }
}

std::map<uint32_t, SeqClient::Topic>::iterator SeqClient::AddTopicLocked(uint32_t id, const std::string& name,
                                                                        uint64_t start) {
  ids_.emplace(name, id);
  auto it = topics_.emplace(id, Topic{.name = name, .stream = OrderedStream(start)}).first;
  // Resumed from the state file: what an immediate topic showed above its
  // gap there is not shown again (until 2026-12-07 it was, after a restart).
  // The start may be later than the file's (retention deleted SEQs): the
  // stream takes only the SEQs above it.
  if (auto shown = resume_shown_.find(name); shown != resume_shown_.end()) {
    if (auto kept = resume_.find(name); kept != resume_.end() && start != 0 && start > kept->second) {
      for (const Gap& run : shown->second) {
        for (uint64_t seq = run.from; seq <= run.to && seq != 0; ++seq) it->second.stream.MarkShown(seq);
      }
    }
    resume_shown_.erase(shown);
  }
  return it;
}

void SeqClient::HandleFrame(const std::string& name, const std::string& bytes, bool replayed) {
  std::lock_guard lock(mu_);
  OfferLocked(name, bytes, replayed);
  PumpLocked();  // a request answered or done: its place goes to the next waiting
}

void SeqClient::OfferLocked(const std::string& name, const std::string& bytes, bool replayed) {
  auto view = seqrelay::DecodeFrame({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
  if (!view.ok()) {
    ++stats_.bad_frames;
    return;
  }
  if (replayed) busy_rounds_ = 0;  // the relay is serving this client
  if (!replayed && options_.drop_live_frame && options_.drop_live_frame(name, view->header.seq)) return;
  const uint32_t id = view->header.topic_id;
  auto it = topics_.find(id);
  if (it != topics_.end() && !replayed && it->second.name != name) {
    ++stats_.bad_frames;  // another topic's id on seq/<name>: not the relay's frame
    return;
  }
  if (it == topics_.end()) {
    // A live frame of a topic still being looked up waits for the answer
    // (HandleStatus offers it then); a replayed frame of an unknown id was
    // not asked for.
    if (!replayed && lookups_.count(name)) {
      HoldLiveLocked(name, bytes);
      return;
    }
    if (replayed) return;
    if (ids_.count(name)) {
      ++stats_.bad_frames;  // <name> has another id
      return;
    }
    const auto wanted = start_at_.find(name);
    const uint64_t start = wanted == start_at_.end() ? 0 : wanted->second;
    if (start > view->header.seq && unanswered_starts_.erase(name) != 0) {
      // A start kept from a lookup the relay did not answer, and a live
      // frame below it: an old frame sent again (a relay's restart), or one
      // of a database since reset, whose SEQs below the start would all be
      // dropped as duplicates, saying nothing. Only the relay can tell: the
      // frame waits for a lookup, asked now, once (given up, the topic
      // starts at the kept start, as it did for every frame until
      // 2026-12-07).
      lookups_[name] = Lookup{.start = start, .again = true, .check = true};
      HoldLiveLocked(name, bytes);
      AskLookupLocked(name);
      return;
    }
    if (wanted != start_at_.end()) start_at_.erase(wanted);
    unanswered_starts_.erase(name);
    it = AddTopicLocked(id, name, start);
  }
  Topic& t = it->second;
  // A frame of the request out: the relay is serving it, and so it and the
  // requests sent after it wait their turn. (Until 2026-12-06 only a frame
  // of the same topic restarted a request's timeout: a request queued
  // behind another topic's long reply was asked again at each timeout,
  // each time a new job at the relay, and then given up as unanswered.)
  if (replayed && t.asked && t.waiting == 0) HeardLocked(t.sent_seq);
  t.ordered = view->header.ordering == seqrelay::Ordering::kOrdered;
  bool duplicate = false;
  std::string payload(reinterpret_cast<const char*>(view->payload.data()), view->payload.size());
  auto out = t.stream.Offer(view->header.seq, t.ordered, std::move(payload), &duplicate);
  if (duplicate) ++stats_.duplicates;
  Deliver(t, id, std::move(out));
  BoundHeldLocked(id, t);
}

void SeqClient::BoundHeldLocked(uint32_t id, Topic& t) {
  const uint64_t bound = options_.max_held_bytes;
  if (bound == 0 || t.stream.held_bytes() <= bound) return;
  if (t.ordered) {
    // The relay has an ordered topic's frames: those dropped are asked for
    // again in turn, and nothing is lost however long it stays busy. (Over
    // still only by one frame bigger than the bound.)
    const std::size_t shed = t.stream.Shed(bound).size();
    stats_.frames_shed += shed;
    t.shed = t.shed || shed > 0;
    return;
  }
  // An immediate topic's records of frames shown: the oldest gaps given up.
  while (t.stream.held_bytes() > bound && t.stream.gap()) {
    // Each turn moves next() on: the asked range given up (then the gap
    // above it, if the range ended below it), or the gap itself.
    const std::string why = fmt::format("{} bytes held behind the gap, over max_held_bytes", t.stream.held_bytes());
    if (t.asked) {
      AbandonLocked(id, t, why);
    } else {
      const Gap gap = *t.stream.gap();
      LoseLocked(id, t, gap.from, gap.to, why);
    }
  }
}

void SeqClient::ReportGapLocked(const std::string& topic, uint64_t from, uint64_t to, const std::string& why) {
  if (!on_gap_) return;
  try {
    on_gap_(topic, from, to, why);
  } catch (...) {
    ++stats_.callback_errors;  // what follows the report (the give-up, delivery) goes on
  }
}

void SeqClient::Deliver(Topic& t, uint32_t id, std::vector<Delivery> deliveries) {
  for (auto& d : deliveries) {
    if (undelivered_ || (options_.max_messages != 0 && stats_.delivered >= options_.max_messages)) {
      if (t.undelivered_from == 0 || d.seq < t.undelivered_from) t.undelivered_from = d.seq;
      continue;
    }
    ++stats_.delivered;
    // A callback that throws loses no message after it (they are out of the
    // stream already) and ends no thread.
    try {
      on_message_(Message{t.name, id, d.seq, t.ordered, d.late, std::move(d.payload)});
    } catch (const Undelivered&) {
      --stats_.delivered;
      undelivered_ = true;
      if (t.undelivered_from == 0 || d.seq < t.undelivered_from) t.undelivered_from = d.seq;
    } catch (...) {
      ++stats_.callback_errors;
    }
  }
  // The request is done once every SEQ it asked for was delivered (or
  // given up): an empty hold-back set alone says nothing, because a history
  // request starts with nothing held and its first frame would close it.
  if (t.asked && t.stream.next() > t.asked->to) {
    ++stats_.gaps_filled;  // everything asked for has come
    t.asked.reset();
    t.attempts = 0;
  }
  if (!t.stream.gap()) {
    t.gap_seen = {};
    t.shed = false;  // every SEQ shed below the newest has come (or was given up)
  }
}

void SeqClient::HandleStatus(const std::string& text) {
  json s = json::parse(text, nullptr, false);
  if (!s.is_object()) return;
  std::lock_guard lock(mu_);
  if (StatusShapeError(s)) {
    ++stats_.bad_frames;  // not the relay's: acted on, it could give SEQs up or start a topic again
    return;
  }
  if (s.value("status", "") == "ok") busy_rounds_ = 0;
  const std::string name = s.value("topic", "");
  if (s.value("from", uint64_t{0}) == kLookupFrom && lookups_.count(name)) {
    if (const Lookup& l = lookups_[name]; l.waiting == 0 && l.sent != Clock::time_point{}) HeardLocked(l.sent_seq);
    LookupAnsweredLocked(s, name);
  } else {
    RangeAnsweredLocked(s);
  }
  PumpLocked();  // a request answered: its place goes to the next waiting
}

void SeqClient::LookupAnsweredLocked(const json& s, const std::string& name) {
  // The lookup answered: create the topic's stream at its start, then ask
  // for everything from there to the newest SEQ.
  const bool ok = s.value("status", "") == "ok";
  if (!ok && s.value("code", "") == "busy") {
    Lookup& l = lookups_[name];
    if (l.waiting != 0) return;  // waits already (a second copy of the status)
    if (l.attempts > 0) --l.attempts;  // its sending counted one
    RefusedBusyLocked();
    AskLookupLocked(name);
    return;
  }
  if (!ok) {
    // Final answers end the lookup; anything else (the database away, too
    // many requests pending) is asked again by Timer, up to max_attempts.
    // v1.1 relays say whether to ask again (`retry`); v1 relays, by the text.
    const std::string error = s.value("error", "lookup failed");
    const Lookup& lookup = lookups_[name];
    if (s.value("code", "") == "unknown_topic" || error == seqrelay::kErrorUnknownTopic) {
      // Nothing was said yet: the first live frame must be SEQ 1. Nothing
      // is missing for the history or the last N of nothing; a resume from
      // a later SEQ (a state file of a database since reset, or --from)
      // asked for SEQs that do not exist, and is told so.
      if (lookup.start > 1) ReportGapLocked(name, 0, 0, error);
      // A state file saved now starts the topic at SEQ 1 next time, not
      // again at its old position (which the next run would take for one
      // of the new database's SEQs, skipping those below it).
      if (auto kept = resume_.find(name); kept != resume_.end()) kept->second = 0;
      resume_shown_.erase(name);  // of the topic's earlier history
      start_at_[name] = 1;
      unanswered_starts_.erase(name);
      lookups_.erase(name);
      OfferHeldLocked(name);
      return;
    }
    const bool retry = s.contains("retry") ? s.value("retry", true) : !FinalV1Error(error);
    if (!retry || lookups_[name].attempts >= options_.max_attempts) {
      AbandonLookupLocked(name, error, /*refused=*/!retry);
    }
    return;
  }
  // Read before the lookup ends: a status of the wrong shape throws here
  // (a bad frame), and the lookup is asked again.
  const uint32_t id = s.value("id", uint32_t{0});
  const uint64_t last = s.value("last", uint64_t{0});
  // PROTOCOL 5.2: what is older than `first` was deleted; a v1 relay
  // deletes nothing.
  const uint64_t first = s.value("first", uint64_t{1});
  uint64_t start = lookups_[name].start;
  lookups_.erase(name);
  start_at_.erase(name);
  unanswered_starts_.erase(name);
  if (options_.history == History::kLast && start == 0) {
    start = last >= options_.history_n ? last - options_.history_n + 1 : 1;
  }
  if (start > last + 1) {
    // A resume past the topic's newest SEQ (a state file or --from kept
    // across a database reset): the SEQs up to it would be taken for ones
    // delivered before and dropped. The topic began again: told so, and
    // read from its oldest SEQ, as a topic the relay does not know is.
    ReportGapLocked(name, 0, 0, ResetReason(start, last));
    start = first;
    // As for an unknown topic: a state file saved before the first frame
    // comes says where the topic begins now.
    if (auto kept = resume_.find(name); kept != resume_.end()) kept->second = start - 1;
    resume_shown_.erase(name);  // of the topic's earlier history
  }
  if (start != 0 && start < first) {  // reported once, never asked for
    ReportGapLocked(name, start, first - 1, fmt::format("history starts at {}", first));
    ++stats_.gaps_unfilled;
    start = first;
  }
  Topic& t = AddTopicLocked(id, name, std::max<uint64_t>(start, 1))->second;
  if (start <= last) {
    t.asked = Gap{start, last};
    t.attempts = 1;
    AskRangeLocked(id, t);
  }
  OfferHeldLocked(name);
}

void SeqClient::RangeAnsweredLocked(const json& s) {
  const bool ok = s.value("status", "") == "ok";
  const uint64_t from = s.value("from", uint64_t{0});
  const uint32_t id = s.value("id", uint32_t{0});
  auto it = topics_.find(id);
  // A request waiting to be sent has nothing out at the relay to answer.
  if (it == topics_.end() || !it->second.asked || it->second.waiting != 0) return;
  Topic& t = it->second;
  // A status answers the outstanding request only if it names the same
  // range. The status of an earlier request can come after its frames
  // closed that request and the timer asked for the next gap; taken as the
  // answer to the new request, it would give up SEQs that are on their way.
  if (from != t.asked->from || (t.asked->to != kOpenEnd && s.value("to", uint64_t{0}) != t.asked->to)) return;
  HeardLocked(t.sent_seq);
  // The same range asked again (no status within the reply timeout): the
  // statuses of the earlier tries come first. One of them may give nothing
  // up, nor ask again (below): the last try's reply may bring what it did
  // not (until 2026-12-07 the first try's status, its frame dropped by the
  // broker, gave up the SEQ the last try's reply was bringing). What else
  // it says holds for the later tries too.
  const bool earlier_try =
      t.sent && t.sent->from == t.asked->from && t.sent->to == t.asked->to && t.statuses_due > 1;
  t.statuses_due = earlier_try ? t.statuses_due - 1 : 0;
  if (!ok && s.value("code", "") == "busy") {
    RefusedBusyLocked();
    AskRangeLocked(id, t);  // again, behind the others, from its first SEQ still missing
    return;
  }
  const std::string error = s.value("error", "refused");
  // Unavailable, stopping, internal (PROTOCOL 5.3), and a v1 relay's error
  // without `retry` but for the final ones (as for lookups).
  const bool retry = !ok && (s.contains("retry") && s["retry"].is_boolean() ? s["retry"].get<bool>()
                                                                              : !FinalV1Error(error));
  if (retry) {
    // The timer asks again (with its backoff), from where the relay says it
    // stopped, and gives the request up with this reason after max_attempts.
    t.refusal = error;
    const uint64_t resume = s.value("next", t.asked->from);
    if (resume > t.asked->from && (t.asked->to == kOpenEnd || resume <= t.asked->to)) t.asked->from = resume;
    return;
  }
  // The topic's newest SEQ when the relay answered (UINT64_MAX: not said).
  const bool has_last = ok && s.contains("last") && s["last"].is_number_unsigned();
  const uint64_t last = has_last ? s["last"].get<uint64_t>() : UINT64_MAX;
  if (has_last && t.sent && t.sent->from == t.asked->from && t.sent->to == t.asked->to) {
    // `last` is the topic's newest SEQ once the relay had the request. A
    // frame held since before the request was first sent, and above it, was
    // never stored by the relay: not its frame (a publisher on seq/ the
    // broker should not let in). Forgotten, so that the SEQs below it, which
    // do not exist yet, are not given up for it. A frame that came later may
    // be newer than the reply: it stays.
    const std::vector<uint64_t> seqs = t.stream.Forget(last + 1, UINT64_MAX, t.sent_arrivals);
    stats_.bad_frames += seqs.size();
    // Frames shed below a forgotten one (max_held_bytes) may be in no gap
    // now: a catch-up from next() brings them, once this request is done.
    if (!seqs.empty() && t.shed) {
      t.catch_up_owed = true;
      t.shed = false;
    }
    if (!seqs.empty() && options_.on_forged_frames) {
      try {
        options_.on_forged_frames(t.name, seqs);
      } catch (...) {
        ++stats_.callback_errors;
      }
    }
  }
  if (t.asked->to == kOpenEnd && (s.contains("to") || s.contains("last"))) {
    t.asked->to = s.value("to", s.value("last", uint64_t{0}));
  }
  if (const uint64_t first = s.value("first", uint64_t{0});
      ok && first > t.asked->from && first > t.stream.next() && t.stream.next() != 0) {
    // PROTOCOL 5.2: everything below `first` was deleted. Given up now, so
    // delivery goes on from `first` (not after the rest of a truncated
    // reply), and never asked for again; what is left of the request
    // starts at `first`.
    if (first > t.asked->to) {  // all of it given up: the request ends, unfilled
      t.asked.reset();
      t.attempts = 0;
    } else {
      t.asked->from = first;
    }
    // Delivery may end the request too: its frames from `first` on came.
    LoseLocked(id, t, t.stream.next(), first - 1, fmt::format("history starts at {}", first));
    if (!t.asked) return;
  }
  // Sent before the latest reconnect: frames of the reply published while
  // the client was away never came (its session is clean), so what is
  // missing is no sign that the relay lacks it: asked for again.
  const bool stale = t.asked_on != connections_;
  if (ok && s.value("truncated", false)) {
    uint64_t next = s.value("next", uint64_t{0});
    if (stale) next = std::min(next, t.stream.next());
    t.asked = Gap{next, t.asked->to};
    ++stats_.requests;
    RequestRange(id, t);
    return;
  }
  if (t.asked->to == kOpenEnd) {
    // A catch-up refused for good before its end was known: given up as one
    // never answered is (until 2026-12-06 it was dropped unreported). An ok
    // status without `to` or `last` leaves nothing to go by.
    if (!ok) {
      AbandonLocked(id, t, error);
    } else {
      t.asked.reset();
      t.attempts = 0;
    }
    return;
  }
  // Frames come before their status: whatever of the asked range is still
  // missing now, the relay does not have (an operator's purge), or the
  // broker dropped on the way (a reply larger than its queue for a slow
  // client: mosquitto's max_queued_messages, 1,000 by default). The relay
  // keeps no gaps of its own between `first` and `last`, so it is asked for
  // again, up to max_attempts requests, before it is reported.
  auto gap = t.stream.gap();
  const Gap asked = *t.asked;
  const int attempts = t.attempts;
  t.asked.reset();
  t.attempts = 0;
  uint64_t missing_to = asked.to;
  if (gap && gap->from <= asked.to) missing_to = std::min(asked.to, gap->to);
  missing_to = std::min(missing_to, last);  // nothing above it exists yet
  if (t.stream.next() > missing_to) {
    // Everything asked for that exists came (the rest, if any, was above
    // `last`; a catch-up that found nothing new filled nothing).
    if (missing_to >= asked.from) ++stats_.gaps_filled;
    return;
  }
  if (earlier_try) {
    // The request stays out: the last try's status, or its timeout (an
    // earlier try's status lost leaves one due for good), decides.
    t.asked = asked;
    t.attempts = attempts;
    return;
  }
  if (ok && attempts < options_.max_attempts) {
    t.asked = Gap{t.stream.next(), missing_to};
    t.attempts = attempts + 1;  // (reconnects that keep cutting replies short end in a report too)
    ++stats_.requests;
    RequestRange(id, t);
    return;
  }
  // The last reply says which: did the relay send every SEQ it was asked for?
  const uint64_t exist = std::min(asked.to, last) >= asked.from ? std::min(asked.to, last) - asked.from + 1 : 0;
  const bool all_sent = s.contains("sent") && s["sent"].is_number_unsigned() && s["sent"].get<uint64_t>() >= exist;
  LoseLocked(id, t, t.stream.next(), missing_to,
             !ok ? error : all_sent ? "sent by the relay, not delivered by the broker" : "the relay has no such SEQ");
}

void SeqClient::LoseLocked(uint32_t id, Topic& t, uint64_t from, uint64_t to, const std::string& why) {
  // Until 2026-12-06 the report ran over held frames, which were then
  // delivered: only the runs really gone are reported.
  for (const Gap& run : t.stream.Missing(from, to)) {
    ++stats_.gaps_unfilled;
    ReportGapLocked(t.name, run.from, run.to, why);
  }
  Deliver(t, id, t.stream.GiveUp(to));
}

void SeqClient::AbandonLocked(uint32_t id, Topic& t, const std::string& why) {
  const auto gap = t.stream.gap();
  const bool open_end = t.asked->to == kOpenEnd;
  // An open end gives up only what is known to be missing (giving up to
  // the open end would give up every SEQ).
  const uint64_t to = !open_end ? t.asked->to : gap ? gap->to : t.stream.next() - 1;
  const uint64_t from = t.stream.next();
  t.asked.reset();
  t.attempts = 0;
  t.refusal.clear();
  if (to >= from) {
    LoseLocked(id, t, from, to, why);
  } else if (open_end) {
    ++stats_.gaps_unfilled;
    ReportGapLocked(t.name, from, 0, why);  // the end was never learnt
  }
}

void SeqClient::AskRangeLocked(uint32_t id, Topic& t) {
  if (t.waiting != 0) return;  // waits already: keeps its place
  t.waiting = ++tickets_;
  waiting_.push_back({false, id, {}, t.waiting});
  PumpLocked();
}

void SeqClient::AskLookupLocked(const std::string& name) {
  Lookup& l = lookups_[name];
  l.sent = {};
  if (l.waiting != 0) return;
  l.waiting = ++tickets_;
  waiting_.push_back({true, 0, name, l.waiting});
  PumpLocked();
}

void SeqClient::PumpLocked() {
  std::erase_if(out_ranges_, [&](uint32_t id) {
    auto it = topics_.find(id);
    return it == topics_.end() || !it->second.asked || it->second.waiting != 0;
  });
  std::erase_if(out_lookups_, [&](const std::string& name) {
    auto it = lookups_.find(name);
    return it == lookups_.end() || it->second.waiting != 0;
  });
  const auto now = Clock::now();
  if (now < busy_until_) return;
  const auto limit = static_cast<std::size_t>(options_.max_outstanding);
  while (!waiting_.empty() && out_ranges_.size() + out_lookups_.size() < limit) {
    Waiting w = std::move(waiting_.front());
    waiting_.pop_front();
    if (w.lookup) {
      auto it = lookups_.find(w.name);
      if (it == lookups_.end() || it->second.waiting != w.ticket) continue;  // answered or forgotten meanwhile
      it->second.waiting = 0;
      out_lookups_.insert(w.name);
      SendLookupLocked(w.name);
    } else {
      auto it = topics_.find(w.id);
      if (it == topics_.end() || it->second.waiting != w.ticket) continue;
      Topic& t = it->second;
      t.waiting = 0;
      if (!t.asked) continue;  // done or given up meanwhile
      out_ranges_.insert(w.id);
      ++stats_.requests;
      RequestRange(w.id, t);
    }
  }
}

void SeqClient::HeardLocked(uint64_t sent_seq) {
  const auto now = Clock::now();
  for (uint32_t id : out_ranges_) {
    if (auto it = topics_.find(id); it != topics_.end() && it->second.sent_seq >= sent_seq) it->second.asked_at = now;
  }
  for (const auto& name : out_lookups_) {
    if (auto it = lookups_.find(name); it != lookups_.end() && it->second.sent_seq >= sent_seq) {
      it->second.wait_from = now;
    }
  }
}

void SeqClient::RefusedBusyLocked() {
  const auto now = Clock::now();
  if (now < busy_until_) return;  // refused during the pause that runs: the same round
  static thread_local std::mt19937 random(std::random_device{}());
  const double jitter = std::uniform_real_distribution<double>(0.5, 1.5)(random);
  const auto pause = options_.reply_timeout * (1 << std::min(busy_rounds_, 4));
  busy_until_ = now + std::chrono::duration_cast<Clock::duration>(pause * jitter);
  ++busy_rounds_;
}

void SeqClient::SendLookupLocked(const std::string& topic) {
  Lookup& l = lookups_[topic];
  l.sent = l.wait_from = Clock::now();
  l.sent_seq = ++sends_;
  ++l.attempts;
  Request(json{{"topic", topic}, {"from", kLookupFrom}}.dump());
}

void SeqClient::AbandonLookupLocked(const std::string& topic, const std::string& why, bool refused) {
  const Lookup& l = lookups_[topic];
  if (l.check) {
    // The check of a live frame below a kept start: the start stands (the
    // held frame starts the topic there).
    start_at_[topic] = l.start;
  } else if (l.start > 0 && !refused) {
    // Unanswered, and its start is known (a state file, history, --from):
    // kept, so that the first live frame shows the SEQs from it on as a
    // gap, asked for by the frame's topic id as any other, when the relay
    // may answer again. Until 2026-12-06 the topic started at its first
    // live frame, and a state file saved then skipped the SEQs below it for
    // good (a review's finding). The last N, which needs the newest SEQ, and
    // a lookup the relay refused for good (forbidden) are given up. A
    // quiet topic has no live frame: it is looked up again now and then
    // (TickLocked), and at the next reconnect.
    start_at_[topic] = l.start;
    if (unanswered_starts_.empty()) kept_lookups_at_ = Clock::now() + kept_lookup_every();
    unanswered_starts_.insert(topic);
  } else {
    unanswered_starts_.erase(topic);
    // (A lookup again after a reconnect loses nothing by failing: the
    // topic's first live frame still shows what is missing.)
    if (!l.again) ReportGapLocked(topic, 0, 0, why);
  }
  lookups_.erase(topic);
  OfferHeldLocked(topic);
}

void SeqClient::HoldLiveLocked(const std::string& topic, const std::string& bytes) {
  HeldLive& held = held_live_[topic];
  const auto view = seqrelay::DecodeFrame({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
  const uint64_t seq = view.ok() ? view->header.seq : 0;  // (its offer counts it bad)
  if (held.frames.empty() || seq > held.top_seq) {
    held.top = held.frames.size();
    held.top_seq = seq;
  }
  held.frames.push_back(bytes);
  held.bytes += bytes.size() + OrderedStream::kEntryBytes;
  // Past max_held_bytes frames are dropped, the last come first, but never
  // the one of the highest SEQ (an old frame sent again may come last):
  // offered once the lookup ends, it shows those dropped as a gap, asked
  // for in turn.
  const uint64_t bound = options_.max_held_bytes;
  for (std::size_t i = held.frames.size(); bound != 0 && held.bytes > bound && i-- > 0;) {
    if (i == held.top) continue;
    held.bytes -= held.frames[i].size() + OrderedStream::kEntryBytes;
    held.frames.erase(held.frames.begin() + static_cast<std::ptrdiff_t>(i));
    if (i < held.top) --held.top;
    ++stats_.frames_shed;
  }
}

void SeqClient::OfferHeldLocked(const std::string& topic) {
  auto held = std::move(held_live_[topic].frames);
  held_live_.erase(topic);
  for (const auto& bytes : held) OfferLocked(topic, bytes, /*replayed=*/false);
}

void SeqClient::Request(const std::string& json_text) {
  mosquitto_publish(mosq_, nullptr, requests_topic_.c_str(), static_cast<int>(json_text.size()), json_text.data(), 1,
                    false);
}

void SeqClient::RequestRange(uint32_t id, Topic& t, bool retry) {
  // Never asked again is what came already: the range starts at its first
  // SEQ not delivered or held (until 2026-12-06 a retry asked the whole
  // range again).
  const auto missing = t.stream.Missing(std::max(t.asked->from, t.stream.next()), t.asked->to);
  if (!missing.empty() && missing.front().from > t.asked->from) t.asked->from = missing.front().from;
  const Gap& range = *t.asked;
  // Which frames were held when this range was first asked for (see
  // HandleStatus). Kept for the retries: an earlier moment only spares more.
  if (!t.sent || t.sent->from != range.from || t.sent->to != range.to) {
    t.sent = range;
    t.sent_arrivals = t.stream.arrivals();
    t.statuses_due = 0;
  }
  ++t.statuses_due;
  // A retry keeps the connection the request first went out on: sent after
  // a reconnect, it does not make the first request's reply whole.
  if (!retry) t.asked_on = connections_;
  t.asked_at = Clock::now();  // its timeout runs from here
  t.sent_seq = ++sends_;
  json request{{"id", id}, {"from", range.from}};
  if (range.to != kOpenEnd) request["to"] = range.to;
  Request(request.dump());
}

void SeqClient::CatchUpLocked() {
  // Requests out at the reconnect: their replies, published while away, are
  // lost with the old connection. Each has at least one more try, on the
  // new connection: once its timeout has run (time offline counts), the
  // next tick asks again. Until 2026-12-06 a request whose last try went
  // out before the disconnect was given up at that tick, never asked on
  // the new connection (a review's finding). (Its timeout is not restarted
  // here: a link that drops more often than the timeout would then hold
  // the request unsent for as long as it kept dropping.)
  for (auto& [name, l] : lookups_) {
    if (l.waiting != 0 || l.sent == Clock::time_point{}) continue;  // not out
    l.attempts = std::min(l.attempts, options_.max_attempts - 1);
  }
  for (auto& [id, t] : topics_) {
    if (!t.asked || t.waiting != 0) continue;
    t.attempts = std::min(t.attempts, options_.max_attempts - 1);
  }
  // A topic the relay had no message of when it was looked up starts at its
  // first live frame, SEQ `start`: what was published while away would wait
  // for a later live frame to show as a gap. Looked up again.
  for (const auto& [name, start] : start_at_) {
    if (lookups_.count(name)) continue;
    lookups_[name] = Lookup{.start = start, .again = true};
    AskLookupLocked(name);
  }
  for (auto& [id, t] : topics_) {
    if (t.stream.next() == 0) continue;
    if (t.asked) {
      // A request is out: its range ends where it ends, and what was
      // published while away comes after it. Asked for once it is done.
      t.catch_up_owed = true;
      continue;
    }
    t.asked = Gap{t.stream.next(), kOpenEnd};
    t.attempts = 1;
    t.refusal.clear();
    AskRangeLocked(id, t);
  }
}

void SeqClient::Timer() {
  auto next_save = Clock::now() + std::chrono::seconds(1);
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, std::chrono::milliseconds(20), [&] { return stopping_; })) {
    const auto now = Clock::now();
    // Offline, requests wait for the connection (and a catch-up follows
    // it): no attempt is spent, and nothing given up, while none can go.
    if (connected_) TickLocked(now);
    if (now >= next_save) {
      next_save = now + std::chrono::seconds(1);
      // Flushed to the disk (two fsyncs) without the lock, which the
      // network thread takes for every frame; only when it changed.
      if (auto text = StateTextLocked()) {
        lock.unlock();
        const auto error = WriteState(*text);
        lock.lock();
        NoteSavedLocked(*text, error);
      }
    }
  }
}

void SeqClient::TickLocked(Clock::time_point now) {
  // Lookups without an answer: ask again with backoff, then give up on
  // the history so that held live frames do not pile up for ever.
  // A timeout runs from the request's sending, or from the last word of the
  // relay serving it or a request sent before it (HeardLocked).
  auto backoff = [&](int attempts) { return options_.reply_timeout * (1 << std::clamp(attempts - 1, 0, 10)); };
  std::vector<std::string> abandon;
  for (auto& [topic, l] : lookups_) {
    if (l.waiting != 0) continue;  // not sent yet: no reply is due
    if (now - l.wait_from < backoff(l.round ? 1 : l.attempts)) continue;
    if (l.round || l.attempts >= options_.max_attempts) {
      abandon.push_back(topic);
    } else {
      SendLookupLocked(topic);
    }
  }
  for (const auto& topic : abandon) AbandonLookupLocked(topic, "no reply from the relay to the lookup");
  if (!unanswered_starts_.empty() && now >= kept_lookups_at_) {
    kept_lookups_at_ = now + kept_lookup_every();
    for (const auto& name : unanswered_starts_) {
      if (lookups_.count(name)) continue;
      lookups_[name] = Lookup{.start = start_at_[name], .again = true, .round = true};
      AskLookupLocked(name);
    }
  }
  for (auto& [id, t] : topics_) {
    auto gap = t.stream.gap();
    if (t.asked) {
      if (t.waiting != 0) continue;  // not sent yet: no reply is due
      if (now - t.asked_at < backoff(t.attempts)) continue;
      if (t.attempts >= options_.max_attempts) {
        // The relay's last answer if it kept asking for a retry (unavailable, ...).
        AbandonLocked(id, t, t.refusal.empty() ? "no reply from the relay" : t.refusal);
        continue;
      }
      ++t.attempts;  // no status in time: ask again (the request keeps its place out)
      ++stats_.requests;
      RequestRange(id, t, /*retry=*/true);
      continue;
    } else if (t.catch_up_owed) {
      t.catch_up_owed = false;
      t.asked = Gap{t.stream.next(), kOpenEnd};  // from the next SEQ: any gap is in it
      t.attempts = 1;
      t.refusal.clear();
    } else {
      if (!gap) continue;
      if (t.gap_seen == Clock::time_point{}) t.gap_seen = now;
      if (now - t.gap_seen < options_.gap_wait) continue;
      t.asked = *gap;
      t.attempts = 1;
      t.refusal.clear();
    }
    AskRangeLocked(id, t);
  }
  PumpLocked();  // a busy pause may have ended
}

std::optional<std::string> SeqClient::LoadState() {
  if (options_.state_file.empty()) return std::nullopt;
  std::error_code ec;
  if (!std::filesystem::exists(options_.state_file, ec)) return std::nullopt;  // first run
  std::ifstream in(options_.state_file);
  if (!in || std::filesystem::is_directory(options_.state_file, ec)) {
    return "state file " + options_.state_file + ": cannot be read: " +
           (in ? std::string("a directory") : std::strerror(errno));
  }
  json s;
  try {
    s = json::parse(in, nullptr, false);
  } catch (const std::exception& e) {  // a read error (the stream's, not the JSON's)
    return "state file " + options_.state_file + ": cannot be read: " + e.what();
  }
  if (!s.is_object() || !s.contains("topics") || !s["topics"].is_object()) {
    return "state file " + options_.state_file + " is not a seqrelay state file ({\"topics\": {...}}); move it away "
           "to start afresh";
  }
  for (auto& [topic, last] : s["topics"].items()) {
    if (last.is_number_unsigned()) resume_[topic] = last.get<uint64_t>();
  }
  // "shown": {topic: [[from, to], ...]}, SEQs above the topic's position
  // shown already. Taken only whole and plausible for its topic: anything
  // else is left out, and those SEQs are shown again, as before the key.
  if (auto shown = s.find("shown"); shown != s.end() && shown->is_object()) {
    for (auto& [topic, runs] : shown->items()) {
      const auto kept = resume_.find(topic);
      if (kept == resume_.end() || !runs.is_array()) continue;
      std::vector<Gap> taken;
      uint64_t above = kept->second + 1, count = 0;  // each run above the one before, past the gap at `above`
      for (const auto& run : runs) {
        if (!run.is_array() || run.size() != 2 || !run[0].is_number_unsigned() || !run[1].is_number_unsigned()) break;
        const Gap g{run[0].get<uint64_t>(), run[1].get<uint64_t>()};
        if (g.from <= above || g.to < g.from || g.to - g.from >= kMaxShownOnResume - count) break;
        count += g.to - g.from + 1;
        above = g.to + 1;
        taken.push_back(g);
      }
      if (taken.size() == runs.size() && !taken.empty()) resume_shown_[topic] = std::move(taken);
    }
  }
  return std::nullopt;
}

std::optional<std::string> SeqClient::SaveState() {
  auto text = StateTextLocked();
  if (!text) return std::nullopt;
  auto error = WriteState(*text);
  NoteSavedLocked(*text, error);
  return error;
}

std::optional<std::string> SeqClient::StateTextLocked() const {
  if (options_.state_file.empty() || !state_loaded_) return std::nullopt;
  json s = {{"topics", json::object()}};
  json shown = json::object();
  const auto add_shown = [&](const std::string& topic, const std::vector<Gap>& runs) {
    json list = json::array();
    for (const Gap& g : runs) list.push_back({g.from, g.to});
    if (!list.empty()) shown[topic] = std::move(list);
  };
  for (const auto& [topic, last] : resume_) s["topics"][topic] = last;  // topics not seen this run
  for (const auto& [topic, runs] : resume_shown_) add_shown(topic, runs);
  for (const auto& [id, t] : topics_) {
    // An immediate topic may have delivered past an open gap: never beyond
    // it, and what it showed above it is listed.
    const uint64_t next = t.undelivered_from != 0 ? std::min(t.undelivered_from, t.stream.next()) : t.stream.next();
    std::vector<Gap> runs;
    uint64_t listed = 0;  // at most kMaxShownOnResume, which LoadState takes
    for (Gap g : t.stream.Shown()) {
      if (t.undelivered_from != 0) {  // what the callback may never have had is not listed
        if (g.from >= t.undelivered_from) break;
        g.to = std::min(g.to, t.undelivered_from - 1);
      }
      if (listed == kMaxShownOnResume) break;
      g.to = std::min(g.to, g.from + (kMaxShownOnResume - listed - 1));
      listed += g.to - g.from + 1;
      runs.push_back(g);
    }
    // Position 0 (nothing delivered in order yet) is written when
    // something above SEQ 1 was shown, with what (until 2026-12-07 it was
    // not, and a restart showed those SEQs again).
    if (next > 1 || !runs.empty()) {
      s["topics"][t.name] = next - 1;
      add_shown(t.name, runs);
    }
  }
  if (!shown.empty()) s["shown"] = std::move(shown);
  std::string text = s.dump(2) + "\n";
  if (saved_state_ && text == *saved_state_) return std::nullopt;  // on the disk already
  return text;
}

std::optional<std::string> SeqClient::WriteState(const std::string& text) const {
  if (auto failed = seqrelay::ReplaceFileDurably(options_.state_file, text)) return "state file: " + *failed;
  return std::nullopt;
}

void SeqClient::NoteSavedLocked(const std::string& text, const std::optional<std::string>& error) {
  if (!error) {
    saved_state_ = text;
    return;
  }
  ++stats_.state_save_errors;
  stats_.last_state_error = *error;
}

}  // namespace seqclient
