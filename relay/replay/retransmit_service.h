// RetransmitService: answers retransmit and history requests from MySQL
// (PROTOCOL.md section 3).
//
// Requests arrive on the replay link (its own MQTT v5 connection, so replays
// never queue behind live frames on the output link). The link's thread
// parses each request and answers a bad one at once; a good one is queued
// for its client. Workers (--replay-workers, each with its own database
// connection, so replays never wait on the writer's) take jobs round-robin
// across clients: a client flooding requests delays only itself by a turn
// per round, and with kMaxPendingPerUser requests waiting it gets "busy"
// instead. The bound is per user: U of a per-user request topic (PROTOCOL.md
// 5.4, U/C for any C) counts all of U's connections, each of which gets its
// own turns; R is its own user. Anyone gets "busy" once kMaxPendingInAll
// requests or kMaxPendingBytes of them wait in all. A
// client's good requests are served one at a time, in the order they came:
// its replies never interleave, and each status follows its own frames
// (a client that retries a slow request must not see the retry's status
// before the first request's frames). While other clients wait, a long
// reply is served in turns of 250 ms, so a small gap fill does not wait
// behind a whole history replay; with more clients waiting than workers,
// turns are shorter (25 ms at least), so that each client's next turn
// comes within about 250 ms.
//
// All replies together go at the rate the governor sets, which slows them
// down while they delay live frames (replay_governor.h); --replay-rate caps
// each reply besides. A stop ends every reply at its next frame, and every
// request not yet served, with a status saying where to ask again.
//
// With an ACL (--acl-file), a request is served only if the client may read
// <seq-prefix>/T by that ACL; otherwise it gets "forbidden", and a request by
// id learns nothing of the topic's name.
//
// OnRequest runs on the replay link's thread; Start and Stop on the main
// thread; SetAcl on any (before Start, and again when the file is read again).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "replay/acl.h"
#include "core/config.h"
#include "broker/mqtt_link.h"
#include "replay/replay_governor.h"
#include "replay/retransmit.h"

namespace seqrelay {

class MysqlStore;

class RetransmitService {
 public:
  static constexpr std::size_t kMaxPendingPerUser = 16;
  static constexpr std::size_t kMaxPendingInAll = 4096;
  static constexpr std::size_t kMaxPendingBytes = 16 * 1024 * 1024;  // request topics, names, correlation data

  explicit RetransmitService(const Config& config);
  ~RetransmitService();

  // The rules each request is checked against from now on.
  void SetAcl(std::shared_ptr<const Acl> acl) { acl_.store(std::move(acl)); }
  // Workers publish their replies on `link`, which must outlive Stop().
  void Start(MqttLink& link);
  // Ends the replies being served at their next frame and answers the
  // requests still waiting, each with a status saying where to ask again;
  // requests after it get the same answer. Call it while the link can
  // still publish.
  void Stop();

  void OnRequest(const InboundMessage& in);
  // The broker acknowledged publish `mid` of the link (link thread), with
  // the PUBACK's reason code (>= 0x80: refused, counted and logged).
  void OnPublished(int mid, int reason_code);
  // After Stop(): waits until the broker has acknowledged every reply
  // published, or `deadline` passes, so that the last statuses are not lost
  // when the link disconnects. Returns the number still unacknowledged.
  std::size_t WaitAcknowledged(std::chrono::milliseconds deadline);
  // Replies (frames and statuses) handed to the link and not yet
  // acknowledged by the broker.
  std::size_t Unacknowledged() const;

  // Times live frames so that replays yield to them (--replay-live-delay-us).
  ReplayGovernor& governor() { return governor_; }
  const ReplayGovernor& governor() const { return governor_; }

  struct Counters {
    std::atomic<uint64_t> requests{0};        // requests received (retained ones excluded)
    std::atomic<uint64_t> served{0};          // answered "ok"
    std::atomic<uint64_t> frames{0};          // frames sent in replies
    std::atomic<uint64_t> ignored_retained{0};
    std::atomic<uint64_t> ignored_topic{0};    // on a topic that names no requester (an empty level)
    std::atomic<uint64_t> forbidden{0};        // answered "error": refused by the ACL
    std::atomic<uint64_t> refused{0};          // answered "error": every other reason
    std::atomic<uint64_t> broker_refused{0};   // replies the broker acknowledged but refused (too large, ACL)
    uint64_t failed() const { return forbidden + refused; }
  };
  const Counters& counters() const { return counters_; }

 private:
  struct Job {
    std::string client;               // the requester's key: R, or U/C (its reply topics, its turn)
    std::optional<std::string> user;  // U of a per-user request
    RequestFields fields;  // topic and id both set once Prepare found the topic
    ReplyTopics topics;
    std::optional<std::string> correlation;
    // Set by Prepare: the frames still to send and the status so far.
    struct Progress {
      uint64_t next = 0, end = 0;  // SEQ range still to send
      ReplyStatus status;
    };
    std::optional<Progress> progress;
    uint64_t serial = 0;  // names the job's frames among the unacknowledged (0: none sent yet)
  };

  // Whose jobs a per-user bound counts together: U of U/C, else R.
  static const std::string& UserOf(const Job& job) { return job.user ? *job.user : job.client; }
  static std::size_t BytesOf(const Job& job);
  // A job enters or leaves pending_ (mu_ held): the bounds' counts.
  void CountPendingLocked(const Job& job, bool in);
  // Why a new job may not wait now (mu_ held), or nullopt.
  std::optional<std::string> OverPendingBoundLocked(const Job& job) const;
  void Worker();
  // Looks the topic up and checks the request against it. Answers and
  // returns false if there is nothing to send; else sets job.progress.
  bool Prepare(Job& job, MysqlStore& store);
  // Serves one turn of the job: to its end (answered, returns true), or
  // for a turn if other clients are waiting (returns false; the job goes on
  // at its client's next turn).
  bool Serve(Job& job, MysqlStore& store);
  // Rows of the job's range are missing from `seq` on: moves its status's
  // `first` past them if retention deleted them. Returns the topic's oldest
  // SEQ now (nullopt if the database could not say).
  std::optional<uint64_t> MissingFrom(uint64_t seq, Job& job, MysqlStore& store);
  bool OthersWaiting();
  // How long a turn of a reply lasts now: shorter the more clients wait.
  std::chrono::steady_clock::duration TurnLength();
  // True if the ACL (if any) lets the job's client read the frames of `topic`.
  bool MayRead(const Job& job, std::string_view topic) const;
  void Answer(const Job& job, const ReplyStatus& status);
  // Gives the job its serial at its first frame. False if the frame did not
  // go out (libmosquitto refused it: too large for the broker's maximum
  // packet size, say), which the status must not count as sent.
  bool PublishFrame(Job& job, std::span<const uint8_t> frame);
  void MarkUnackedLocked(int mid, std::size_t bytes, uint64_t job);  // unacked_mu_ held
  // Before a job's final status: waits (2 s at most) until the broker has
  // answered each of its frames, and returns how many it refused (v5 PUBACK
  // reason >= 0x80), which the status must not count as sent.
  uint64_t SettleFrames(const Job& job);

  const Config& config_;
  // Test hook (SEQTEST_FAIL_OLDEST_LOOKUP): MissingFrom's lookup fails.
  const bool fail_oldest_lookup_;
  ReplayGovernor governor_;
  MqttLink* link_ = nullptr;  // set by Start (under mu_, started_ notified), before any worker runs
  std::atomic<std::shared_ptr<const Acl>> acl_;  // null: no access control
  // Which MQTT message ids (16-bit) of replies are published and not yet
  // acknowledged, with their bytes, and how many: a slot per id, so a frame
  // costs no allocation. Guarded by unacked_mu_ (workers set, the link
  // thread clears; PUBACKs of the link's other publishes find their slot 0).
  mutable std::mutex unacked_mu_;
  std::condition_variable acked_cv_;
  std::vector<uint32_t> unacked_ = std::vector<uint32_t>(65536);  // bytes of publish `mid`; 0 = acknowledged
  std::size_t unacked_count_ = 0;
  std::size_t unacked_bytes_ = 0;  // sum of unacked_
  // The job (Job::serial) each unacknowledged frame belongs to, and per job
  // its frames not yet answered and those the broker refused. An entry
  // lives from the job's first frame to SettleFrames.
  std::vector<uint64_t> owner_ = std::vector<uint64_t>(65536);
  struct FrameAcks {
    uint64_t pending = 0, refused = 0;
  };
  std::unordered_map<uint64_t, FrameAcks> frame_acks_;
  uint64_t next_serial_ = 0;
  Counters counters_;
  std::vector<std::thread> workers_;

  // Fair queue, guarded by mu_: each client's jobs in arrival order; the
  // clients with jobs waiting and none being served, in the order they get
  // their next turn; and the clients a worker is serving now (a client is
  // in turns_ or in serving_, never both).
  std::mutex mu_;
  std::condition_variable work_;
  // Paced replies wait on this one, woken only by Stop(): a wake-up meant
  // for an idle worker (work_ is notified one at a time) must never be
  // taken by a worker that is pacing.
  std::condition_variable stop_cv_;
  std::condition_variable started_;  // link_ set, or stopping_
  std::map<std::string, std::deque<Job>> pending_;
  std::size_t pending_jobs_ = 0, pending_bytes_ = 0;      // over all of pending_
  std::unordered_map<std::string, std::size_t> pending_per_user_;  // no entry for 0
  std::deque<std::string> turns_;
  std::set<std::string> serving_;
  std::atomic<bool> stopping_{false};  // written under mu_; read by pacing workers without it
};

}  // namespace seqrelay
