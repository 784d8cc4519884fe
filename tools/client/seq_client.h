// SeqClient: the seqrelay client module over libmosquitto.
//
// Subscribes to <seq-prefix>/<filter> for each filter, checks every frame's
// SEQ per topic id, drops duplicates, holds ordered topics back while a gap
// is open, and asks the relay for what is missing (after `gap_wait`, with
// retries and backoff) on <control>/retransmit/<requester>, at most
// `max_outstanding` requests out at once. It can start from a topic's
// history and remember where it stopped in a state file.
//
//   seqclient::Options o;
//   o.port = 1883;
//   o.client_id = "alice";
//   o.filters = {"chat/room1"};
//   o.history = seqclient::History::kAll;
//   seqclient::SeqClient client(o, [](const seqclient::Message& m) {
//     std::printf("%s #%llu %s\n", m.topic.c_str(), (unsigned long long)m.seq, m.payload.c_str());
//   });
//   if (auto error = client.Start()) { std::fprintf(stderr, "%s\n", error->c_str()); return 1; }
//   ...
//   client.Stop();
//
// Threads: the callbacks run on the client's network thread or its timer
// thread (gap give-ups), one at a time, in delivery order, with the client's
// lock held: they must not call Stop() or stats(). Start/Stop/stats from the
// owner's thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "ordered_stream.h"

struct mosquitto;
struct mosquitto_message;

namespace seqclient {

enum class History { kNone, kAll, kFrom, kLast };

struct Options {
  std::string host = "127.0.0.1";
  int port = 1883;
  std::string user;
  std::string password;
  std::string client_id;             // required
  // Names the retransmit topics: <control>/retransmit/<requester> and
  // <control>/replay/<requester>. R, or U/C (PROTOCOL 5.4: U the username,
  // C one more level). Empty: DefaultRequester(client_id, user).
  std::string requester;
  std::vector<std::string> filters;  // raw topic filters; "+"/"#" allowed
  std::string seq_prefix = "seq";
  std::string control_prefix = "relay";
  int qos = 1;
  std::chrono::milliseconds gap_wait{200};
  // Per request, doubled on each retry; it runs from the request's sending,
  // and a frame or status of this request or of one sent before it starts
  // it again (the relay serves one client's requests one after another).
  std::chrono::milliseconds reply_timeout{2000};
  int max_attempts = 5;                            // requests per gap before it is reported unfilled
  // Per topic, what may wait behind its gaps (OrderedStream's held_bytes:
  // an ordered topic's payloads and 96 bytes a frame for the record, an
  // immediate topic's records of the SEQs shown) or, while its lookup is
  // out, its live frames (each frame's bytes and the same 96). A relay that
  // answers `busy` for long, which is never a failed attempt, would
  // otherwise have the client hold every frame that comes meanwhile. Past
  // it, held frames are dropped, the newest but one first (the frame of
  // the highest SEQ stays): the relay has them, and they are asked for
  // again in turn, as a gap (Stats::frames_shed counts them; docs/
  // clients.md says when such a gap may still be reported lost). An
  // immediate topic's records
  // cannot be dropped (a frame would be shown twice): its oldest gap is
  // given up instead (through on_gap). 0: no bound.
  uint64_t max_held_bytes = uint64_t{64} << 20;
  // Requests (ranges and lookups) out at the relay at once, at most; the
  // rest wait in the order they were made. The relay holds at most 16 of a
  // user waiting and refuses more `busy`: 8 leaves room for a second
  // connection of the same user.
  int max_outstanding = 8;
  History history = History::kNone;  // needs filters without wildcards
  uint64_t history_n = 0;            // the N of kFrom / kLast
  std::string state_file;            // remember the last delivered SEQ per topic
  // Deliver at most this many messages in all (0: no limit). Those past it
  // are not delivered, and the state file resumes from the first of them.
  uint64_t max_messages = 0;
  // Test hook: live frames for which this returns true are dropped as if the
  // network had lost them (retransmitted frames are never dropped).
  std::function<bool(const std::string& topic, uint64_t seq)> drop_live_frame;
  // Frames forgotten as never stored by the relay (held above the topic's
  // newest SEQ: forged), with their SEQs; an immediate topic delivered them
  // already. Called as on_message is, under the client's lock.
  std::function<void(const std::string& topic, const std::vector<uint64_t>& seqs)> on_forged_frames;
};

// The requester a client gets by default: U/C (PROTOCOL 5.4) when it has a
// username U and another client id C, which the shipped ACL allows whatever
// the broker does with client ids; else the username or the client id (with
// the shipped broker's use_username_as_clientid the two are the same). As
// the JavaScript and Python clients choose it.
std::string DefaultRequester(const std::string& client_id, const std::string& user);

// What is wrong with `options`, if anything (Start checks the same first):
// topics and prefixes as MQTT and the relay take them, the requester, QoS,
// waits of at most a day, and topics without wildcards for history and a
// state file.
std::optional<std::string> CheckOptions(const Options& options);

struct Message {
  std::string topic;
  uint32_t topic_id = 0;
  uint64_t seq = 0;
  bool ordered = true;
  bool late = false;  // an immediate topic's gap, filled after later frames were shown
  std::string payload;
};

// Thrown by an OnMessage callback whose consumer could not take the message
// (seqsub's stdout closed or full): neither it nor any later message is
// delivered, and the state file resumes from it.
struct Undelivered {};

struct Stats {
  uint64_t delivered = 0;
  uint64_t duplicates = 0;
  uint64_t requests = 0;       // retransmit requests sent
  uint64_t gaps_filled = 0;    // gaps closed by retransmitted frames
  uint64_t gaps_unfilled = 0;  // runs of SEQs given up (each reported through on_gap)
  uint64_t bad_frames = 0;
  uint64_t callback_errors = 0;  // exceptions the callbacks threw (a message still counts as delivered)
  uint64_t lookups_pending = 0;    // topics whose history lookup is not answered yet (a gauge)
  // What waits behind gaps and lookups now, over all topics, as
  // Options::max_held_bytes counts it per topic (a gauge).
  uint64_t held_bytes = 0;
  // Held frames dropped to stay within max_held_bytes, each asked for
  // again later (lost only if that request is given up, as any gap).
  uint64_t frames_shed = 0;
  uint64_t state_save_errors = 0;  // saves of the state file that failed (last_state_error says why)
  std::string last_state_error;
  // Filters the broker refused in a SUBACK (its ACL) or libmosquitto would
  // not send, on a reconnect (Start reports the first connect's as its
  // error); last_subscribe_error says which.
  uint64_t subscribe_errors = 0;
  std::string last_subscribe_error;
  // Errors that ended libmosquitto's network loop (a packet it could not
  // take: a protocol error; out of memory), each followed by a new try to
  // connect (after 1 s, doubling to 30 s while none connects);
  // last_network_error says which.
  uint64_t network_errors = 0;
  std::string last_network_error;
};

class SeqClient {
 public:
  // Called for each message, in order per topic; may throw Undelivered.
  using OnMessage = std::function<void(const Message&)>;
  // Called when a gap is given up: topic, first and last missing SEQ, why.
  // `to` 0: a catch-up after a reconnect (from `from` on) was never
  // answered, so what it would have brought is unknown; a later frame's gap
  // is asked for as usual.
  using OnGap = std::function<void(const std::string& topic, uint64_t from, uint64_t to, const std::string& why)>;

  SeqClient(Options options, OnMessage on_message, OnGap on_gap = nullptr);
  ~SeqClient();

  // Connects (waits for the CONNACK), subscribes, starts history and
  // resumption requests. Returns an error text on failure.
  std::optional<std::string> Start();
  // Saves the state file (if any) and disconnects; saves it again once the
  // network thread has stopped (a reconnect under way is interrupted: the
  // thread is sent a real-time signal, SIGRTMIN + 4, whose handler, installed
  // then, does nothing). `saved`, if given, is called after the first save,
  // with whether it succeeded (true without a state file): a process that
  // cannot wait for the network thread may end from then on. Idempotent.
  void Stop(const std::function<void(bool saved)>& saved = {});
  Stats stats();

 private:
  // The network thread's: mosquitto_loop_forever, run again after an
  // error that ends it, until Stop.
  void RunNetwork();
  // Disconnects, and ends and joins network_.
  void StopNetwork();
  struct Topic {
    std::string name;
    bool ordered = true;
    OrderedStream stream;
    // The outstanding retransmit request for the current gap.
    std::optional<Gap> asked{};
    std::chrono::steady_clock::time_point gap_seen{};
    // When the outstanding request was last sent, or later when the relay
    // was heard serving it or a request sent before it: its timeout runs
    // from here. sent_seq: its place among this client's sends.
    std::chrono::steady_clock::time_point asked_at{};
    uint64_t sent_seq = 0;
    int attempts = 0;
    // A reconnect came while a request was out: what was published while
    // away is asked for (open-ended, from the next SEQ) once it is done.
    bool catch_up_owed = false;
    // Frames of it were shed (max_held_bytes) since it last had no gap: a
    // forged frame forgotten above them may leave them in no gap.
    bool shed = false;
    // The first SEQ the stream released but max_messages (or a callback
    // that threw Undelivered) kept from the callback (0: none): what the
    // state file resumes from.
    uint64_t undelivered_from = 0;
    // The range last asked for, and stream.arrivals() when it first was.
    std::optional<Gap> sent{};
    uint64_t sent_arrivals = 0;
    // Statuses of that range not come yet, one a send: the relay answers
    // each request, in order, so while more than one is due, a status of
    // the range is an earlier send's, not the last one's (or the last
    // one's after an earlier one was lost: a relay restarted, a reconnect).
    int statuses_due = 0;
    // connections_ when the request was last sent: one sent before the
    // latest reconnect may have lost frames of its reply.
    uint64_t asked_on = 0;
    // The last answer asking for a retry (unavailable, ...): the reason,
    // if the request is given up after all.
    std::string refusal{};
    // Nonzero while `asked` waits to be sent (in waiting_, behind
    // max_outstanding others or a busy pause): its place's ticket.
    uint64_t waiting = 0;
  };

  static void OnConnect(mosquitto*, void* self, int rc);
  static void OnDisconnect(mosquitto*, void* self, int rc);
  static void OnSubscribe(mosquitto*, void* self, int mid, int count, const int* granted);
  // Under mu_: a subscription failed (`why` names the topic).
  void SubscribeFailedLocked(const std::string& why);
  static void OnMessageTrampoline(mosquitto*, void* self, const mosquitto_message* m);
  void HandleFrame(const std::string& topic_name, const std::string& bytes, bool replayed);
  void OfferLocked(const std::string& topic_name, const std::string& bytes, bool replayed);
  // Topic `name`, id `id`: its stream from `start`, made if new.
  std::map<uint32_t, Topic>::iterator AddTopicLocked(uint32_t id, const std::string& name, uint64_t start);
  void HandleStatus(const std::string& json_text);
  void LookupAnsweredLocked(const nlohmann::json& status, const std::string& topic);
  void RangeAnsweredLocked(const nlohmann::json& status);
  void Deliver(Topic& t, uint32_t id, std::vector<Delivery> deliveries);
  // Calls on_gap (an exception it throws is counted, and nothing else changes).
  void ReportGapLocked(const std::string& topic, uint64_t from, uint64_t to, const std::string& why);
  void Timer();
  // The timer's work while connected: lookups and requests asked again or
  // given up, gaps asked for, owed catch-ups sent.
  void TickLocked(std::chrono::steady_clock::time_point now);
  void Request(const std::string& json_text);
  void SendLookupLocked(const std::string& topic);
  // The lookup of `topic` failed or was never answered: it starts at its
  // first live frame, the held ones included, or, unanswered with its
  // start known, at that start. `refused`: the relay's answer was final (forbidden), not a lack of one.
  void AbandonLookupLocked(const std::string& topic, const std::string& why, bool refused = false);
  // Holds a live frame of `topic`, whose lookup is out, within
  // max_held_bytes.
  void HoldLiveLocked(const std::string& topic, const std::string& bytes);
  // Offers the live frames held while `topic` was looked up.
  void OfferHeldLocked(const std::string& topic);
  // Asks for `t.asked` of topic `id` (an open end: up to the newest SEQ),
  // from its first SEQ not delivered or held. `retry`: the request again,
  // after no status came in time.
  void RequestRange(uint32_t id, Topic& t, bool retry = false);
  // A new request of topic `id` (t.asked set) or of lookup `name`: it waits
  // its turn behind those made before it (keeping its place if it waits
  // already), and goes out when fewer than max_outstanding are out.
  void AskRangeLocked(uint32_t id, Topic& t);
  void AskLookupLocked(const std::string& name);
  // Sends what waits, oldest first, while fewer than max_outstanding are
  // out and no busy pause runs.
  void PumpLocked();
  // The relay was heard serving the request sent `sent_seq`-th: the
  // timeouts of the requests out that were sent then or later start again.
  void HeardLocked(uint64_t sent_seq);
  // `busy` (PROTOCOL 5.3): no failed attempt, nothing given up; the request
  // waits again, behind the others, and nothing waiting goes out for a
  // pause (reply_timeout, doubled for each pause since the relay last
  // served this client, at most 16 times, times a random 0.5 to 1.5).
  void RefusedBusyLocked();
  // Keeps `t` within max_held_bytes: sheds held frames, or (immediate)
  // gives up its oldest gaps.
  void BoundHeldLocked(uint32_t id, Topic& t);
  // Gives up every SEQ of topic `id` up to `to`, and reports the runs from
  // `from` that are not held (a held frame is delivered, not gone).
  void LoseLocked(uint32_t id, Topic& t, uint64_t from, uint64_t to, const std::string& why);
  // Gives the outstanding request of topic `id` up: a range to its end; an
  // open end (a catch-up) only what is known missing, and with nothing
  // known, reported with `to` 0.
  void AbandonLocked(uint32_t id, Topic& t, const std::string& why);
  // After a reconnect: frames published while the client was away are
  // missed, and without a later frame no gap would show. Asks for every
  // known topic from its next SEQ on.
  void CatchUpLocked();
  // The state file's positions; an error text if it exists but cannot be
  // read or is not a state file (a missing one is a first run).
  std::optional<std::string> LoadState();
  // Writes it (a temporary file, flushed, then renamed over it) if it
  // changed since the last save; an error text if that fails. Counted in
  // stats_; mu_ held (or not yet shared).
  std::optional<std::string> SaveState();
  // SaveState's steps, for Timer, which writes without mu_: the text to
  // save (mu_ held; nullopt if unchanged or no state file), the write (no
  // lock), and its outcome (mu_ held).
  std::optional<std::string> StateTextLocked() const;
  std::optional<std::string> WriteState(const std::string& text) const;
  void NoteSavedLocked(const std::string& text, const std::optional<std::string>& error);

  const Options options_;
  const std::string requests_topic_, replies_topic_;  // <control>/retransmit|replay/<requester>
  const OnMessage on_message_;
  const OnGap on_gap_;
  static constexpr int kKeepaliveS = 30;
  mosquitto* mosq_ = nullptr;
  std::thread network_;  // runs RunNetwork; StopNetwork ends it
  bool network_ended_ = false;  // its loop has returned; mu_

  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint32_t, Topic> topics_;          // guarded by mu_
  // Each topic's id, once known: a topic keeps it for the life of the
  // database, so a frame on seq/T with another id is not the relay's. mu_
  std::map<std::string, uint32_t> ids_;
  std::map<std::string, uint64_t> resume_;    // topic -> last delivered SEQ from the state file; mu_
  // Immediate topics: the SEQs above that one shown already (an open gap
  // below them), from the state file, until the topic's stream takes them. mu_
  std::map<std::string, std::vector<Gap>> resume_shown_;
  bool state_loaded_ = false;  // LoadState succeeded: only then may SaveState replace the file
  std::optional<std::string> saved_state_;  // what the file holds since the last save that worked; mu_
  // Topics being looked up before they start (history or resume): where
  // each starts, and its outstanding lookup, retried by Timer. mu_.
  struct Lookup {
    uint64_t start = 0;  // first SEQ wanted; 0 for kLast, known once the lookup answers
    std::chrono::steady_clock::time_point sent{};  // zero while it waits to be sent
    std::chrono::steady_clock::time_point wait_from{};  // as Topic::asked_at
    uint64_t sent_seq = 0;
    int attempts = 0;
    bool again = false;  // after a reconnect (start_at_): failing loses nothing
    bool round = false;  // a kept start's round (unanswered_starts_): one try, one reply timeout
    bool check = false;  // of a live frame below a kept start (OfferLocked): given up, the start stands
    uint64_t waiting = 0;  // nonzero while it waits to be sent: its place's ticket
  };
  std::map<std::string, Lookup> lookups_;
  // Topics the relay had no message of when looked up: the first SEQ wanted
  // (the first live frame must be it; looked up again after a reconnect,
  // since what came while away shows as no gap). mu_.
  std::map<std::string, uint64_t> start_at_;
  // Of those, the ones whose lookup went unanswered (AbandonLookupLocked):
  // looked up again every kept_lookup_every() while no live frame of theirs
  // comes, so that a quiet topic catches up once the relay answers. mu_.
  std::set<std::string> unanswered_starts_;
  std::chrono::steady_clock::time_point kept_lookups_at_{};
  std::chrono::milliseconds kept_lookup_every() const { return options_.reply_timeout * 16; }
  // Live frames of topics being looked up, and their bytes; mu_.
  struct HeldLive {
    std::vector<std::string> frames;
    uint64_t bytes = 0;
    std::size_t top = 0;   // frames[top] has the highest SEQ
    uint64_t top_seq = 0;
  };
  std::map<std::string, HeldLive> held_live_;
  // Requests made and not sent yet, in the order they were made: a topic's
  // range (by id) or a lookup (by name), with the ticket of its place (an
  // entry whose request has another ticket, or none, is stale). mu_.
  struct Waiting {
    bool lookup = false;
    uint32_t id = 0;
    std::string name;
    uint64_t ticket = 0;
  };
  std::deque<Waiting> waiting_;
  uint64_t tickets_ = 0;
  // The requests out at the relay and not answered yet; PumpLocked drops
  // those answered, given up or forgotten. mu_.
  std::set<uint32_t> out_ranges_;
  std::set<std::string> out_lookups_;
  // Requests sent so far (first sends, retries, continuations): each
  // send's place. The relay serves a client's requests one after another:
  // a frame or status of one sent k-th shows the relay busy with this
  // client, so the timeouts of those sent k-th or later start again; one
  // sent before it is done or lost, and its timeout runs on. mu_.
  uint64_t sends_ = 0;
  // `busy`: nothing waiting is sent before busy_until_; busy_rounds_: pauses
  // since the relay last served this client (a frame or an ok status). mu_.
  std::chrono::steady_clock::time_point busy_until_{};
  int busy_rounds_ = 0;
  Stats stats_;                               // guarded by mu_
  bool undelivered_ = false;                  // a callback threw Undelivered; guarded by mu_
  int connack_ = -1;                          // guarded by mu_
  uint64_t connections_ = 0;                  // connects accepted so far; guarded by mu_
  bool connected_ = false;                    // guarded by mu_
  // The SUBSCRIBEs of the current connection awaiting their SUBACK: mid ->
  // the topic it asked for. mu_.
  std::map<int, std::string> subscribing_;
  std::string first_subscribe_error_;  // while Start waits for the SUBACKs: its error. mu_
  bool starting_ = false;              // Start waits for the first SUBACKs (across reconnects). mu_
  bool stopping_ = false;                     // guarded by mu_
  std::thread timer_;
};

}  // namespace seqclient
