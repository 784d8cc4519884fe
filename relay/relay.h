// Relay: the wiring of the three stages a message passes through.
//
//   intake link thread   OnIntake: classify, copy into a Message, push into
//                        the bounded IntakeQueue (waits when full, at most a
//                        third of the keepalive, then pauses the link: that
//                        is the back-pressure on mosquitto).
//   writer thread        WriterLoop: pop a batch, give each message its idx
//                        and SEQ (Sequencer), commit the batch in one
//                        transaction (MysqlStore), then publish every frame
//                        on the output link, in order.
//   output link thread   OnPublished: the broker's PUBACKs advance the
//                        PublishTracker watermark, saved with the next commit.
//   main thread          waits for the stop; every --stats-interval it
//                        publishes the retained report on <control>/stats;
//                        resumes the paused intake when the writer asks.
//
// Receiving, committing and publishing overlap: while the writer waits on
// MySQL, the intake keeps filling the queue and the output link keeps
// sending the previous batch.
//
// Run() is called once, on the main thread; RequestStop() from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "core/config.h"
#include "intake/intake.h"
#include "intake/intake_queue.h"
#include "intake/journal.h"
#include "lease/lease.h"
#include "core/log.h"
#include "observe/metrics.h"
#include "observe/metrics_http.h"
#include "broker/mqtt_link.h"
#include "store/mysql_store.h"
#include "publish/publish_tracker.h"
#include "intake/committed_resends.h"
#include "intake/redelivery.h"
#include "replay/retransmit_service.h"
#include "store/sequencer.h"

namespace seqrelay {

class Relay {
 public:
  // Run()'s exit code when the relay lost its shard's lease: main() runs a
  // fresh Relay, which starts as a standby.
  static constexpr int kSteppedDown = 3;
  // Run()'s exit code for a configuration that cannot work (main() uses it
  // for bad options too).
  static constexpr int kBadConfiguration = 2;

  explicit Relay(Config config);
  ~Relay();

  // Runs until RequestStop() or a fatal error; returns the exit code:
  // 0 after a clean stop with every received message committed and
  // published, 1 otherwise, kBadConfiguration for a shard refused at start
  // (overlapping filters) or a relay id another live relay of the shard
  // uses, kSteppedDown after losing the lease.
  int Run();

  // Safe from any thread. Starts the orderly shutdown.
  void RequestStop();

  // Reads --acl-file again (SIGHUP, as mosquitto reads its acl_file): the
  // requests checked after it get the new rules; a reply already being sent
  // goes on. A file that cannot be read or parsed is logged, and the rules
  // in force are kept. Any thread.
  void ReloadAcl();

  // What the run is doing or waiting on ("committing what it holds"), for
  // the line that ends a stop past its bound (main.cc). Any thread.
  const char* Step() const { return step_.load(); }
  // Once a stop was asked for (a signal, a fatal error): when it has
  // overrun its bound, --shutdown-timeout + kStopMargin. None for a
  // step-down, which starts the relay again as a standby. Any thread.
  std::optional<std::chrono::steady_clock::time_point> StopDeadline() const;

  // A stop ends within --shutdown-timeout plus this: the acknowledgements
  // of the last frames (2 s), the final stats (2 s), the last replies (2 s)
  // and the links' closing. A stop still running after it waits on a
  // database or a broker that does not answer, and main() ends the process.
  static constexpr std::chrono::seconds kStopMargin{10};

  // Counters since start. Each is written by one stage and read by anyone.
  struct Counters {
    std::atomic<uint64_t> received{0};          // delivered by the broker (all verdicts)
    std::atomic<uint64_t> refused_topic{0};     // topic over 255 bytes
    std::atomic<uint64_t> refused_payload{0};   // payload over --max-payload
    std::atomic<uint64_t> refused_seq{0};       // topic out of SEQs (2^40-1)
    std::atomic<uint64_t> refused_topics{0};    // a new topic over --max-topics
    std::atomic<uint64_t> topics_evicted{0};    // topics the writer forgot (--topic-cache); looked up again on use
    std::atomic<uint64_t> ignored_own{0};       // under our own prefixes
    std::atomic<uint64_t> ignored_retained{0};  // retained replays
    std::atomic<uint64_t> committed{0};         // rows committed to MSG
    std::atomic<uint64_t> batches{0};           // transactions committed
    std::atomic<uint64_t> published{0};         // frames handed to the output link
    std::atomic<uint64_t> republished{0};       // of those, rows from before this start
    std::atomic<uint64_t> acked{0};             // frames acknowledged by the broker
    std::atomic<uint64_t> broker_refused{0};    // of those, refused (v5 PUBACK reason >= 0x80): lost to live subscribers
    std::atomic<uint64_t> lost{0};              // accepted, given up at shutdown, and kept nowhere
    // Given up at shutdown (or a step-down) but kept for the shard's next
    // holder: journaled (handed over at the next start), handed over
    // (its PENDING row stays), or not acknowledged (mosquitto resends it).
    std::atomic<uint64_t> deferred{0};
    std::atomic<uint64_t> set_aside{0};         // refused by the database for good; see SetAside
    std::atomic<uint64_t> intake_pauses{0};     // times intake blocked > 100 ms on a full buffer
    std::atomic<uint64_t> intake_errors{0};     // deliveries whose handling failed (Relay::OnIntake)
    std::atomic<uint64_t> journal_errors{0};    // messages that could not be journaled (acknowledged once committed)
    std::atomic<uint64_t> journal_replayed{0};  // messages stored at start from the journal
    std::atomic<uint64_t> redeliveries{0};      // broker resends of journaled messages, dropped
    std::atomic<uint64_t> dedupe_dropped{0};    // publishers' resends (msg-id sequenced before), dropped
    std::atomic<uint64_t> msg_ids_invalid{0};   // msg-ids ignored as invalid (empty, too long, not UTF-8)
    std::atomic<uint64_t> msg_ids_purged{0};    // DEDUPE records purged past --dedupe-window
    std::atomic<uint64_t> retention_deleted{0};  // MSG rows deleted by --retention
    std::atomic<uint64_t> retention_transactions{0};  // transactions in which it deleted rows
    std::atomic<uint64_t> topics{0};            // gauge: topics the writer knows (seen since start)
    std::atomic<uint64_t> commit_us{0};         // time spent in committed batches' commits, microseconds
    std::atomic<uint64_t> unacknowledged_reconnects{0};  // output reconnects for a row left unacknowledged
  };
  const Counters& counters() const { return counters_; }
  static std::atomic<uint64_t>& StepDowns();  // across the Relays of this process
  static std::atomic<uint64_t>& Takeovers();  // the same

 private:
  enum class AfterReconnect { kRetry, kDone, kLeaseLost };

  // Run()'s phases, in order. LoadAcl, StartMetrics and StartServing log
  // why they failed; OpenStorage returns the exit code to stop with, if any.
  // (LoadAcl also serves ReloadAcl: `reload` names the rules kept.)
  bool LoadAcl(bool reload = false);
  bool StartMetrics();  // /metrics, with --metrics-port; false if it cannot listen
  std::optional<int> OpenStorage();
  void ConfigureLinks();
  bool StartServing();  // the replay link: every relay serves retransmits
  // Standby until the lease is taken, then active, until a stop: stats,
  // resumes, republishes and the active relay's periodic work.
  void ServeUntilStopped();
  // Orderly: intake off, the queue committed and published, the watermark
  // saved and the lease handed over, the last stats and replies sent.
  void ShutDown();
  int ExitCode();  // logs the final counters and says how the run ended

  Status OpenDatabase();
  // Refuses (permanently) a --max-payload whose rows the server's
  // max_allowed_packet cannot carry, and sets batch_max_bytes_ from it.
  Status CheckPacketLimit();
  // Publishes rows (after, last] of the shard again from MSG: at start the
  // ones above the acknowledged watermark (`again` false: they are new to
  // the tracker), after an output reconnect the ones sent and not
  // acknowledged (`again` true).
  Status Republish(uint64_t after, uint64_t last, bool again);
  // Main thread, after the output link reconnected: what was in flight on
  // the old connection may be lost to subscribers; it goes out again.
  void RepublishUnconfirmed();
  // Main thread, every second while active: a row mosquitto has not
  // acknowledged for unacknowledged_after_ while it acknowledged later
  // frames (its PUBACK lost, or the frame) gets the output link
  // reconnected, after which it goes again. MQTT allows a resend on a new
  // connection only.
  void WatchUnacknowledged();
  // Main thread: the output link's reconnects up to `reconnects` are
  // answered (their republish queued, or given up); wakes the writer.
  void AnsweredReconnects(uint64_t reconnects);
  void WriterLoop();
  bool Sequence(std::vector<Message>& batch, std::vector<Sequencer::Topic*>& topics);
  // Drops from the batch the publishers' resends (PROTOCOL.md 5.1): a
  // message whose topic and msg-id are in DEDUPE, or on an earlier message
  // of the batch. False if the relay gave up meanwhile. The PENDING rows of
  // handed-over resends it drops are deleted by ForgetDroppedResends.
  bool DropResends(std::vector<Message>& batch);
  // Writer, after the batch: deletes the PENDING rows of the handed-over
  // resends DropResends dropped, once the batch that holds the copy they
  // were dropped for (if it was in the batch) is `committed`. A batch given
  // up leaves them, to be handed over again (else a message whose only
  // other copy was in memory, with no journal, would be stored nowhere).
  void ForgetDroppedResends(bool committed);
  // Drops mosquitto's resends of messages committed already (delivered
  // before the SUBACK of a connect that resumed the shard's session, and
  // equal to the session's next newest row: CommittedResends). False if the
  // relay gave up.
  bool DropCommittedResends(std::vector<Message>& batch);
  // Writer: commits SHARD.SESSION_IDX past every row stored so far, for the
  // intake's new MQTT session `session`, and tells the intake. False if the
  // relay gave up.
  bool MarkSession(uint32_t session);
  // Writer: a batch whose every message was a dropped resend or refused
  // for good commits nothing, but the journal's position past them must be
  // saved (else a restart hands them over, and they are stored or refused
  // again, and the journal keeps them all). False if the relay gave up.
  bool SaveDroppedJournalPosition();
  // Intake: waits (at most `max_wait`, less on a stop) until the writer has
  // marked the intake's current session; false if it has not.
  bool AwaitSessionMark(std::chrono::steady_clock::duration max_wait);
  // Intake: asks the writer to mark the intake's new session, without waiting.
  void AskForSessionMark();
  // Whether mosquitto may still resend to this relay's intake a message
  // taken in session `taken_in` (a handed-over one: PENDING.SESSION_NO).
  bool SessionMayResend(SessionNo taken_in) const;
  // Intake: the link connected (again); a new MQTT session if the broker
  // kept none.
  void OnIntakeConnected(bool session_present);
  // Intake, on every connect: the MQTT v5 Subscription Identifier the
  // intake subscribes with (MSG.SUB_TAG of what it delivers).
  uint32_t IntakeSubscriptionTag() const;
  // Intake: waits until the writer has committed, or found committed (or
  // refused for good), the delivery given `ticket` (Message::verdict_ticket);
  // false once the relay gives up (GivingUp).
  bool AwaitVerdict(uint64_t ticket);
  // Writer: every delivery with a ticket up to `ticket` is committed, found
  // committed, or refused for good.
  void GiveVerdicts(uint64_t ticket);
  // Intake: the current session needs no mark (found kept) or has one.
  bool IntakeSessionMarked() const { return intake_session_ == 0 || intake_session_ == intake_marked_; }
  // Main thread, active only: deletes DEDUPE records past --dedupe-window,
  // a small batch at a time, for at most a few hundred milliseconds a call.
  void PurgeMsgIds();
  // Main thread, at a takeover: the intake's filters, from the shard's
  // sources and what it gave up (given_up_, releasing_).
  void PlanIntakeFilters();
  // Main thread, active only: records the session's subscriptions once
  // subscribed; lets go of given-up filters once every shard that takes
  // topics of them has subscribed, and records them gone once the broker
  // has acknowledged that.
  void TrackSubscriptions();
  // Main thread, active only: goes on with the pass over the shard's topics
  // that deletes what --retention no longer keeps, for at most a few
  // hundred milliseconds a call.
  void ApplyRetention();
  // Its work until `until`: true when the pass reached the last topic.
  bool RetentionWork(std::chrono::steady_clock::time_point until);
  enum class Committed { kYes, kRefused, kGaveUp };
  // Commits the batch (retrying through outages). kRefused: the server will
  // never take one of its rows (`refused` says why); kGaveUp: the stop
  // deadline passed. The journal position saved with it is at most
  // `journal_cap`: past it lie records not committed yet. SEQs another
  // writer took first (NumberAgain) are given again before the next try.
  Committed Commit(std::span<Message> batch, Status* refused = nullptr, uint64_t journal_cap = UINT64_MAX);
  // The batch, refused for a SEQ another writer committed first (a topic
  // moved between shards: the old shard stores what its session and
  // journal still held, the new one the rest), numbered again after each of
  // its topics' newest SEQ in the database. Its rows keep their idx.
  Status NumberAgain(std::span<Message> batch);
  // After kRefused: renumbers and commits the batch's messages one at a
  // time, sets aside the refused ones, and leaves in `batch` (and `topics`)
  // the committed ones to publish. False if the relay gave up meanwhile,
  // with `batch` left holding the messages it did not get to.
  bool CommitOneByOne(std::vector<Message>& batch, std::vector<Sequencer::Topic*>& topics);
  // Counts, logs and (with a journal directory) keeps a refused message.
  void SetAside(const Message& m, const Status& why);
  // Writer: a message refused for good (a new topic over --max-topics, out
  // of SEQs, set aside) is done with, as a committed one is: noted by
  // Refuse, the journal's position moved past it (dropped_journal_end_),
  // and a handed-over one's PENDING row deleted by ForgetRefused (else the
  // next round of PumpPending queues it again, for ever).
  void Refuse(const Message& m);
  // Writer: a batch not committed because the relay gives up (a stop past
  // its deadline, the lease lost) is counted lost or deferred, message by
  // message, and cleared.
  void GiveUp(std::vector<Message>& batch);
  void ForgetRefused();
  // What a frame waits for before it is queued, so that frames leave in
  // SEQ order (see Publish).
  enum class Sending {
    kNew,    // the writer's: the output link connected, its reconnect's republish queued (not at a stop), room
    kStart,  // a row of an earlier run, at start: the link connected, room; gives way to a stop
    kAgain,  // published before, not acknowledged yet (a reconnect's republish): the link connected, no wait
  };
  // Queues row `idx`'s frame on the output link without waking its network
  // thread (MqttLink::Queue): the caller calls output_->Flush() after its
  // run of frames (Publish flushes by itself before it waits for anything).
  bool Publish(const std::string& topic, std::span<const uint8_t> frame, uint64_t idx, Sending sending);
  MqttLink::AfterMessage OnIntake(const InboundMessage& in);
  // OnIntake's part after the redelivery filter remembered the delivery:
  // copies, journals and queues it (`progress` says how far it got, for a
  // failure), within `max_wait` of waiting for room.
  struct TakeProgress {
    bool journaled = false;  // in the journal
    bool queued = false;     // in the queue: the writer will commit it
    uint64_t ticket = 0;     // queued to be acknowledged only after the writer's verdict (AwaitVerdict)
    bool over_limit = false;  // queued over the buffer's limit: the link is to pause
    uint64_t delivery = 0;    // its number in the redelivery filter (Message::delivery)
  };
  MqttLink::AfterMessage Take(const InboundMessage& in, std::chrono::steady_clock::duration max_wait,
                              TakeProgress& progress);
  // Ends the process (SIGABRT) for a message journaled and not queued.
  [[noreturn]] void EndSoThatTheJournalHandsItOver(const InboundMessage& in, std::string_view why);
  // Writer and main thread: asks the main thread to resume a paused intake
  // once the queue is down to half.
  void ResumeIntakeIfDrained();
  // The lease's renewer: true while the replay link (up for as long as the
  // process runs) is connected, or lost its connection less than
  // --broker-grace ago.
  bool BrokerReachable();
  void OnPublished(int mid, int reason_code);
  // Publishes one frame of the largest size (--max-payload + header, on a
  // topic as long as the longest seq/ topic) once the output link has its
  // CONNACK, and waits up to 5 s for the broker's verdict; an error if it
  // refuses it. Without a CONNACK in 5 s the output link's first connect
  // sends it, and a refusal then stops the relay.
  Status CheckFrameLimit();
  // Publishes the probe (under publish_mu_); an error if libmosquitto
  // refuses it at once (over the broker's announced maximum packet size).
  Status SendProbe();
  Status FrameLimitVerdict(int reason_code) const;
  void Fail(const std::string& why, int exit_code = 1);
  // Lost the lease (taken over, or not renewed in time): commit and publish
  // nothing more, stop at once, and let main() start again as a standby.
  // Any thread; once.
  void StepDown(const std::string& why);
  // Takes the shard over once this relay holds its lease: reads where the
  // shard stands, opens the journal, republishes, starts the writer and the
  // intake. False if the relay must stop.
  bool BecomeActive();
  // At start, any role: opens the journal and hands what it holds beyond the
  // database over to the shard's active, through PENDING.
  Status HandOverJournal();
  // One transaction of HandOverJournal's, tried again on a lock conflict.
  // Returns the shard they went to (MysqlStore::HandOver).
  Result<std::string> HandOverChunk(std::span<const MysqlStore::HandedOver> chunk);
  // Active, main thread: queues the shard's handed-over messages for the
  // writer, one round at a time.
  enum class PendingRound {
    kNone,       // nothing handed over, or nothing of it to store yet (kept until this relay commits it)
    kWaiting,    // the round before is not committed yet, or the relay is stopping
    kProgress,   // rows queued, or found stored already and deleted
    kFailed,     // the database did not answer (logged)
  };
  PendingRound PumpPending();
  // Main thread, active: starts the intake once what was handed over when
  // the relay took the shard is stored (`round`: PumpPending's last), or
  // the database fails or stalls meanwhile.
  void StartIntakeOnceHandedOverStored(PendingRound round);
  // BecomeActive's last step, or the main loop's; false if it failed.
  bool StartIntake();
  // The figures of the stats report and /metrics. Safe from any thread once
  // Run() has started the links (it reads atomics and locked state only).
  RelayStats Snapshot() const;
  // Publishes the stats report (retained) on the replay link; main thread.
  void PublishStats();
  // <control>/stats/<shard>: the shard's active's report, retained.
  std::string ShardStatsTopic() const;
  // A report read off ShardStatsTopic (replay link's thread): another
  // relay's report as active, under a newer epoch than this relay's, says
  // that one holds the shard now (successor_epoch_).
  void OnShardReport(const InboundMessage& report);

  // Runs `attempt` until it succeeds, reconnecting to the database with
  // backoff in between. After each reconnect `check` sees the committed
  // progress and may declare the work done. Returns false only when the
  // relay gives up (shutdown deadline passed).
  // With `refused` given, an attempt the server refuses for good (see
  // store_errors.h) ends the retry at once: false, with *refused set.
  bool Retry(const char* what, const std::function<Status()>& attempt,
             const std::function<AfterReconnect(const MysqlStore::Progress&)>& check, Status* refused = nullptr);
  // The same for an attempt that a reconnect never makes unnecessary (a
  // read, or a write that may safely be done twice): always tried again.
  bool Retry(const char* what, const std::function<Status()>& attempt);
  // The tracker's published watermark (rows up to it acknowledged on
  // seq/T), read under publish_mu_.
  uint64_t AckedWatermark();
  Status ConnectDatabase(MysqlStore::Progress& progress);
  bool GivingUp() const;
  void SleepUnlessGivingUp(std::chrono::milliseconds d);

  const Config config_;
  // --source less the filters another covers: what the shard records and
  // its session subscribes (a v5 session gets a message once per matching
  // subscription).
  const std::vector<std::string> own_filters_;
  const IntakeRules rules_;
  Counters counters_;
  // For the stats report: written by the writer thread, read by the main
  // thread. database_up_ starts false and is true while the writer's last
  // database call succeeded (the report's "database" also asks the lease);
  // the windows hold samples since the last report.
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::atomic<bool> database_up_{false};
  SampleWindow commit_ms_;
  SampleWindow batch_rows_;
  // One log line per class of refusal per interval (intake thread).
  RateLimit topic_refusals_log_{std::chrono::seconds(10)};
  RateLimit payload_refusals_log_{std::chrono::seconds(10)};
  IntakeQueue queue_;

  // The journal (null without --journal-dir): appended on the intake
  // thread, released by the writer, replayed by Run() at start.
  std::unique_ptr<Journal> journal_;
  // Recognises the broker's resends of messages already taken (after a kill,
  // from the journal; after any reconnect, from the intake; after a
  // failover, messages another relay handed over); filled at start from the
  // journal.
  // Guarded by redelivery_mu_: the intake thread checks and remembers every
  // delivery, the main thread checks handed-over messages (PumpPending).
  std::mutex redelivery_mu_;
  RedeliveryFilter redelivery_{kRedeliveryWindow};
  static constexpr std::size_t kRedeliveryWindow = 4096;  // taken messages a reconnect checks resends against
  // True from the intake's pause (its buffer stayed full for a third of the
  // keepalive) until the main thread resumes the link. Set by the intake
  // thread, cleared by the main thread, read by the writer.
  std::atomic<bool> intake_paused_{false};
  // Fault injection for the test suite (SEQTEST_KILL_AFTER_JOURNAL=N): the
  // relay SIGKILLs itself right after journaling its Nth message, before
  // the PUBACK can leave. 0 = off. Intake thread only.
  uint64_t kill_after_journal_ = 0;
  uint64_t journaled_ = 0;
  // SEQTEST_BREAK_INTAKE_AFTER=N: the intake connection is broken right
  // after the Nth message taken, its PUBACK unsent. 0 = off. Intake thread only.
  uint64_t break_intake_after_ = 0;
  // SEQTEST_KILL_AFTER_COMMIT=N: as SEQTEST_BREAK_INTAKE_AFTER=N, and the
  // link stays away; the relay SIGKILLs itself right after committing that
  // message (its PUBACK never read by mosquitto, as after a kill with
  // deliveries unread). 0 = off. Set before the threads start.
  uint64_t kill_after_commit_ = 0;
  // SEQTEST_KILL_AFTER_RESEND_DROP=1: SIGKILL right after a batch dropped a
  // resend (and saved what it must). Writer thread.
  bool kill_after_resend_drop_ = false;
  // SEQTEST_KILL_BEFORE_SESSION_MARK=N: SIGKILL right before committing the
  // Nth new MQTT session's mark, once a delivery waits for it (read, not
  // acknowledged; 60 s at most). 0 = off. Writer thread.
  uint64_t kill_before_session_mark_ = 0;
  uint64_t session_marks_ = 0;
  // A delivery has waited for a session's mark (set by the intake; never
  // reset: the hook is meaningful for N = 1).
  std::atomic<bool> mark_awaited_{false};
  std::atomic<bool> intake_held_{false};
  // SEQTEST_LOSE_FRAMES_WHILE_AWAY=1: a frame published while the output
  // link is down is dropped, as if lost in flight (never acknowledged), to
  // show the republish after the reconnect. Under publish_mu_.
  bool lose_frames_while_away_ = false;
  uint64_t lose_frame_at_ = 0;  // test hook: the frame of the N-th row published is lost, link up or not
  int lost_mid_ = -1;
  // SEQTEST_REPUBLISH_DELAY_MS: Republish starts this late (at start, and
  // after an output reconnect: to show that the writer's frames wait for it).
  std::chrono::milliseconds republish_delay_{0};
  // SEQTEST_HOLD_FIRST_FRAME_MS: the first new frame waits this long before
  // it may go, as behind a link away (to show a lease lapsing meanwhile).
  // Under publish_mu_.
  std::chrono::milliseconds hold_first_frame_{0};
  std::chrono::steady_clock::time_point first_frame_held_until_{};
  bool first_frame_hold_over_ = false;
  uint64_t taken_ = 0;
  // SEQTEST_THROW_IN_INTAKE=N: copying the Nth message taken throws
  // std::bad_alloc, as when memory runs out. 0 = off. Intake thread only.
  uint64_t throw_in_intake_at_ = 0;
  // SEQTEST_THROW_AFTER_JOURNAL=N: the same right after journaling the Nth
  // message (before it is queued); N:error throws std::runtime_error.
  uint64_t throw_after_journal_ = 0;
  bool throw_after_journal_error_ = false;
  // SEQTEST_THROW_AFTER_QUEUE=N: the same right after queueing the Nth
  // message taken (before any wait for its verdict).
  uint64_t throw_after_queue_ = 0;
  // Deliveries after taking the shard still to record in TAKEN, over every
  // connect that resumes the session (mosquitto resends the previous
  // holder's unacknowledged ones first; its in-flight window is far
  // smaller). Set by StartIntake before the intake starts, then on the
  // intake thread: counted down, and zeroed by a connect without a session.
  // (Until 2026-12-06 every resuming connect set it again, and TAKEN grew by
  // up to 1,000 rows a reconnect for as long as the relay held the shard.)
  static constexpr int kResumedWindow = 1000;
  int resumed_left_ = 0;
  // The intake's MQTT sessions and connects (Message::intake_session,
  // Message::resume_connect), and whether this connect resumed a kept
  // session and has no SUBACK yet. Intake thread.
  uint32_t intake_session_ = 0;
  uint32_t intake_marked_ = 0;  // the newest session seen marked
  // SHARD.SESSION_NO of the session the intake takes deliveries in, which
  // the journal records (Journal::InSession) and TAKEN rows carry: the
  // shard's, read at the takeover, until this relay marks a session of its
  // own; kUnknownSession from a connect that found no session kept
  // until the first delivery after its mark (AwaitSessionMark). Written
  // before the intake starts, then by the intake thread; read by
  // PumpPending too.
  std::atomic<SessionNo> intake_session_no_{0};
  uint32_t intake_connects_ = 0;
  bool before_suback_ = false;
  // A new session's first delivery is acknowledged only once SESSION_IDX
  // marks where it begins (so no older row can be taken for its resend):
  // the intake asks (session_mark_wanted_), the writer commits and answers
  // (session_marked_). Guarded by session_mark_mu_.
  std::mutex session_mark_mu_;
  std::condition_variable session_mark_cv_;
  uint32_t session_mark_wanted_ = 0;
  uint32_t session_marked_ = 0;
  SessionNo marked_session_no_ = 0;  // SHARD.SESSION_NO committed with session_marked_
  // Deliveries that may be mosquitto's resends of committed messages are
  // acknowledged only after the writer's verdict: the intake numbers them
  // (verdict_tickets_, intake thread), the writer answers up to which
  // (verdicts_, guarded by verdict_mu_).
  uint64_t verdict_tickets_ = 0;
  std::mutex verdict_mu_;
  std::condition_variable verdict_cv_;
  uint64_t verdicts_ = 0;

  // Writer state: touched by Run() before the writer starts, then only by
  // the writer thread.
  MysqlStore store_;
  Sequencer sequencer_;
  uint64_t topic_rows_ = 0;  // rows in TOPIC: counted at start, then grown by the writer's lookups
  std::size_t batch_max_bytes_ = 0;  // bytes per transaction; set by CheckPacketLimit before the writer starts
  // Time per pipeline stage, for /metrics (any thread observes).
  LatencyHistogram stage_intake_queue_, stage_sequence_, stage_insert_, stage_commit_, stage_puback_;
  // The journal position after the last resend dropped or message refused
  // for good: released with the next commit (neither has anything to commit).
  uint64_t dropped_journal_end_ = 0;
  uint64_t saved_dropped_end_ = 0;  // the greatest dropped_journal_end_ committed so far
  uint64_t resends_dropped_ = 0;    // by DropResends and DropCommittedResends
  std::vector<std::pair<std::string, uint64_t>> refused_pending_;  // PENDING rows of refused messages (Refuse)
  std::vector<std::pair<std::string, uint64_t>> dropped_pending_;  // PENDING rows of dropped resends (DropResends)
  // The intake's MQTT session the writer last marked (packet ids of older
  // ones are not stored), and the checks of the connect whose
  // early deliveries it is looking at (CommittedResends).
  uint32_t stored_session_ = 0;
  uint32_t resends_connect_ = 0;
  CommittedResends committed_resends_;

  // Publishing: the tracker maps PUBACKs to rows; publish_mu_ guards it and
  // is held across each mosquitto_publish so that an acknowledgement can
  // never arrive before its mid is recorded. Frames in flight are bounded by
  // kMaxUnacked (mids are 16-bit) and by --buffer-max-bytes (libmosquitto
  // holds a copy of each until its PUBACK); the writer waits on acked_cv_
  // beyond either.
  std::mutex publish_mu_;
  std::condition_variable acked_cv_;
  PublishTracker tracker_;
  // Each MQTT message id in flight: when it was published (steady clock,
  // ns; 0 = none), for the publish-to-PUBACK stage, and the bytes
  // libmosquitto holds for it until its PUBACK; held_bytes_ is their sum,
  // held_frames_ their number (copies of a row republished included).
  // Guarded by publish_mu_.
  struct InFlight {
    int64_t sent_at_ns = 0;
    uint32_t bytes = 0;
  };
  std::vector<InFlight> in_flight_ = std::vector<InFlight>(65536);
  uint64_t held_bytes_ = 0;
  uint64_t held_frames_ = 0;
  // The frame size check's publish and the broker's answer; guarded by publish_mu_.
  int probe_mid_ = -1;
  std::optional<int> probe_reason_;
  bool probe_late_ = false;  // the start stopped waiting: OnPublished judges the answer
  std::atomic<bool> probe_on_connect_{false};  // no CONNACK at start: the output link's connect sends the probe

  // Set while the metrics thread may read them (Snapshot): under links_mu_
  // then (replay_ by StartServing, output_ by BecomeActive, intake_ by
  // StartIntake).
  mutable std::mutex links_mu_;
  std::unique_ptr<MqttLink> output_;
  std::unique_ptr<MqttLink> intake_;
  // Retransmit: requests and replies on their own v5 link, served from
  // their own database connections.
  RetransmitService retransmit_;
  std::unique_ptr<MqttLink> replay_;
  std::atomic<int64_t> broker_lost_at_ns_{0};  // steady clock; 0 = connected (BrokerReachable, renewer thread)
  std::unique_ptr<MetricsHttp> metrics_;  // null without --metrics-port; started before the database
  // The shard's lease; made once the shard is registered. active_: holding
  // it and the intake and writer run. stepped_down_: lost it.
  std::unique_ptr<LeaseKeeper> lease_;
  std::atomic<bool> storage_open_{false};  // OpenStorage is done: lease_ is set (for the metrics thread)
  std::atomic<bool> active_{false};
  std::atomic<bool> stepped_down_{false};
  std::atomic<uint64_t> takeovers_{0};
  // The newest epoch another relay of the shard reported itself active
  // under (OnShardReport): a relay whose lease lapsed while it could not
  // reach the database stops putting its report over that one's.
  std::atomic<uint32_t> successor_epoch_{0};
  // The newest delivery (Message::delivery) the writer has committed, or
  // dropped as stored already, or set aside: PumpPending deletes a
  // handed-over copy of one only then. Deliveries are queued and committed
  // in the order they are numbered.
  std::atomic<uint64_t> committed_delivery_{0};
  bool journal_created_ = false;
  std::string journal_id_;         // this relay's journal (journal-id); empty without one
  std::string replay_group_;       // the retransmit subscription's share group (ReplayShareGroup)
  uint32_t shard_num_ = 0;        // SHARD.NUM, from OpenDatabase
  // Filters the shard gave up (SHARD_SESSION.UNSUBSCRIBING, read at each takeover,
  // PlanIntakeFilters), which its MQTT session still holds: those this
  // relay's sources cover are unsubscribed at once (after the SUBSCRIBE:
  // releasing_); the others stay subscribed, and their topics are stored
  // here, until every shard whose filters overlap one has subscribed
  // (given_up_; TrackSubscriptions). Main thread.
  std::vector<std::string> given_up_, releasing_;
  std::atomic<bool> intake_subscribed_{false};  // the intake's first SUBACK came
  bool subscribed_recorded_ = false;            // SHARD_SESSION.SUBSCRIBED written (main thread)
  bool shard_refused_ = false;    // OpenDatabase failed because the shard overlaps another: exit 2  // the journal got its id in this run (new, or written before ids)
  MqttLink::Options intake_options_;
  MysqlStore pending_store_{config_};  // PumpPending's and the housekeeping's connection (main thread)
  std::chrono::steady_clock::time_point next_purge_{};  // main thread
  // ApplyRetention's pass: the last topic done (byte order; "" = from the
  // start), and when the next pass may begin. Main thread.
  std::string retention_cursor_;
  uint64_t retention_max_bytes_;  // payload per delete: kRetentionMaxBytes (a test lowers it)
  std::chrono::steady_clock::time_point next_retention_pass_{};
  std::chrono::steady_clock::duration retention_pass_work_{};  // time spent in the current pass
  std::atomic<std::size_t> pending_queued_{0};  // handed-over messages queued and not yet committed or lost
  // The intake waits for what was handed over at takeover (main thread).
  bool intake_after_hand_over_ = false;
  bool hand_over_round_failed_ = false;  // its last round failed: the next one a second on, not at once
  // Its last progress: a round queued, or the output link away; or, on the
  // writer's side (steady_clock's ticks), a round committed or the writer
  // waiting for the broker (not stalled on the database).
  std::chrono::steady_clock::time_point hand_over_progress_at_;
  std::atomic<int64_t> writer_unstalled_at_{0};
  static constexpr std::chrono::seconds kHandOverStall{30};
  MqttLink::Options output_options_;
  std::thread writer_;

  // Stop state, guarded by stop_mu_. give_up_at_ is set when the stop
  // starts; retry loops read it through GivingUp().
  mutable std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stop_requested_ = false;
  bool resume_intake_ = false;
  bool republish_due_ = false;  // the output link reconnected
  bool republish_retry_ = false;  // the last republish failed (main thread only)
  std::chrono::steady_clock::time_point last_republish_{};  // main thread only
  static constexpr std::chrono::seconds kRepublishAgainAfter{10};
  std::atomic<int> output_connects_{0};
  // The output link's reconnects (counted by its on_connect, before the
  // link counts as connected), and how many of them RepublishUnconfirmed
  // has answered: the writer publishes only when the two are equal, so
  // its frames follow what goes again.
  std::atomic<uint64_t> output_reconnects_{0};
  std::atomic<uint64_t> republished_reconnects_{0};
  // WatchUnacknowledged's state (main thread): the watermark it last saw,
  // since when it has stood with later rows acknowledged and the link up,
  // and how long it waits before a reconnect.
  // SEQTEST_UNACKNOWLEDGED_S shortens the wait.
  uint64_t watched_watermark_ = 0;
  std::chrono::steady_clock::time_point watermark_moved_at_{};
  std::chrono::seconds unacknowledged_after_{30};
  std::chrono::seconds unacknowledged_wait_{30};  // doubles while the same row stays unacknowledged
  std::atomic<int64_t> last_puback_ns_{0};  // steady clock, the latest frame's PUBACK
  // RepublishUnconfirmed failing since (main thread); after
  // kRepublishGiveUpAfter the writer's frames go on without those rows.
  std::chrono::steady_clock::time_point republish_failing_since_{};
  static constexpr std::chrono::seconds kRepublishGiveUpAfter{10};
  bool last_stats_acked_ = false;  // the broker acknowledged the newest stats report (its last publish)
  std::atomic<int> last_stats_mid_{-1};  // the writer asks the main thread to resume the paused intake
  std::string fatal_;  // non-empty: stop with exit code fatal_code_
  int fatal_code_ = 1;
  std::atomic<bool> stopping_{false};
  std::chrono::steady_clock::time_point give_up_at_{};  // guarded by stop_mu_
  std::atomic<const char*> step_{"starting"};  // a string literal (Step())
};

}  // namespace seqrelay
