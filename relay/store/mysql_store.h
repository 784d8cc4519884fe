// MysqlStore: the relay's one adapter to MySQL / MariaDB (Connector/C++ 1.1).
//
// Wraps one database connection. Every method returns a Status or Result;
// Connector/C++ exceptions end here. After any failure the connection may be
// gone: the caller calls Connect() again (with backoff) before the next use.
//
// Not thread-safe: each thread that needs the database owns its own store
// (the writer has one; the retransmit service will have its own).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/log.h"
#include "core/message.h"
#include "core/session_no.h"
#include "core/status.h"
#include "store/multi_statement.h"

namespace sql {
class Connection;
class PreparedStatement;
class Statement;
}  // namespace sql

namespace seqrelay {

class MysqlStore {
 public:
  explicit MysqlStore(const Config& config);
  ~MysqlStore();
  MysqlStore(const MysqlStore&) = delete;
  MysqlStore& operator=(const MysqlStore&) = delete;

  // Opens (or reopens) the connection. With create_database, creates the
  // configured database if it does not exist. With several --db-host
  // entries (a cluster's nodes), tries the node this process's sessions
  // use first (a read_only one last), then the others in order, once each;
  // the others follow where it lands at their next call.
  Status Connect(bool create_database);
  // The writer's and the lease's sessions: refused by the process's node
  // for a limit of sessions, they move it (the others follow), where
  // other sessions move alone.
  void LeadTheNode() { leads_ = true; }
  // The node of the last successful connect ("host:port"; empty on a unix
  // socket or before the first). Any thread.
  std::string endpoint() const;
  bool connected() const { return conn_ != nullptr; }
  // A session idle for its wait_timeout is ended by the server, and its next
  // statement fails ("server has gone away"). Every call of this store's
  // first reconnects, quietly, a session idle for that long less a margin;
  // KeepAlive pings one idle for a third of it, so that a waiting writer
  // keeps its session (and pays no reconnect at its next batch). Cheap
  // when not due or not connected: call it whenever idle.
  Status KeepAlive();
  // When KeepAlive is next due (time_point::max() when not connected).
  std::chrono::steady_clock::time_point keep_alive_due() const;

  // The session's limits, from the next connect on (set them before the
  // first): every connect applies them.
  // Lock waits fail after `seconds` (InnoDB's default: 50).
  void LimitLockWait(int seconds) { lock_wait_s_ = seconds; }
  // The server ends the session if it idles inside a transaction for
  // `seconds`: a writer frozen mid-commit, or a lease keeper frozen between
  // its renewal's UPDATE and COMMIT (SIGSTOP, a stalled VM, a host gone),
  // must not hold its shard's row, and so its lease, against a takeover.
  // MariaDB's idle_transaction_timeout; MySQL has none, so there the
  // session's wait_timeout takes the limit, and the session ends after
  // `seconds` of any idleness (KeepAlive keeps a waiting one).
  // IdleTransactionLimit(lease_ms) is the limit the relay's sessions take.
  void LimitIdleTransaction(int seconds) { idle_transaction_s_ = seconds; }
  // About one lease: seconds, whole, at least 1.
  static int IdleTransactionLimit(int lease_ms) { return std::max(1, (lease_ms + 999) / 1000); }

  // Applies the migrations the database lacks; with apply = false only checks
  // that it is at the newest version.
  Status Migrate(bool apply);

  // ---- Shards and their leases (schema 004) ----

  // Each shard's rows in MSG have idx in (base, base + kShardIdxSpan):
  // base = SHARD.NUM * kShardIdxSpan.
  static constexpr uint64_t kShardIdxSpan = uint64_t{1} << 40;

  // Records the shard's filters and gives its number, refusing (Permanent)
  // filters that can match a topic of another shard's recorded filters, or
  // other filters than those of its relay holding a live lease. Serialised
  // among relays by a lock on RELAY_STATE's row. The filters the shard had
  // and no longer has, which its MQTT session still holds, are added to
  // SHARD_SESSION.UNSUBSCRIBING (schema 13) until ForgetUnsubscribed.
  Result<uint32_t> RegisterShard(std::string_view shard, const std::vector<std::string>& filters);
  // The shard's SHARD_SESSION.UNSUBSCRIBING, sorted.
  Result<std::vector<std::string>> GivenUp();
  // The shard's session is subscribed to `filters` (SHARD_SESSION.SUBSCRIBED).
  Status RecordSubscribed(const std::vector<std::string>& filters);
  // Every other shard's filters, and those its session was last seen
  // subscribed to (empty: not yet), each sorted.
  struct ShardFilters {
    std::string name;
    std::vector<std::string> filters, subscribed;
  };
  Result<std::vector<ShardFilters>> OtherShards();
  // The shard's session no longer holds `filters` (of RegisterShard's
  // `given_up`): taken out of SHARD_SESSION.UNSUBSCRIBING.
  Status ForgetUnsubscribed(const std::vector<std::string>& filters);

  // The shard, its number and (without a journal: "") the journal whose
  // position this store reads and writes. Set before ReadProgress.
  void UseShard(std::string shard, uint32_t num, std::string journal_id);
  // The epoch every commit checks (the fence); 0 = none yet.
  void SetEpoch(uint32_t epoch) { epoch_ = epoch; }
  uint32_t epoch() const { return epoch_; }
  uint64_t idx_base() const { return idx_base_; }

  struct Lease {
    bool held = false;        // this call took it
    std::string owner;        // SHARD.OWNER after the call
    uint32_t epoch = 0;
    int64_t expires_in_us = 0;  // by the database's clock; negative = expired
    int64_t expires_at_us = 0;  // EXPIRES_AT itself (µs since 2000): within an epoch, only a renewal moves it
    // Taken: the journal of the relay whose batches were the shard's last
    // (SHARD.JOURNAL_ID; empty: none, or a relay without a journal).
    std::string previous_journal;
    std::string filters;  // SHARD.FILTERS after the call
  };
  // Takes the shard's lease for `lease_ms` if it has expired (or was never
  // held) and the shard's FILTERS are `filters` (as RegisterShard writes
  // them), bumping EPOCH; otherwise reports who holds it.
  Result<Lease> TryAcquireLease(std::string_view owner, int lease_ms, const std::string& filters);
  // Extends the lease held under `epoch`; false if the epoch moved on.
  Result<bool> RenewLease(uint32_t epoch, int lease_ms);
  // The shard's lease epoch now: a read, that extends nothing.
  Result<uint32_t> LeaseEpoch();
  // Ends the lease held under `epoch` at once (a clean stop: a standby may
  // take over without waiting for it to expire).
  Status ReleaseLease(uint32_t epoch);

  // At a takeover under `epoch`: forgets the TAKEN rows no handed-over
  // message can match any more (none newer than the oldest epoch of the
  // shard's PENDING rows and of its journals' takeovers), and any older
  // than kTakenEpochsKept epochs.
  static constexpr uint32_t kTakenEpochsKept = 1000;
  Status PruneTaken(uint32_t epoch);

  // Creates the journal's row if it has none, at `initial_pos`.
  Status RegisterJournal(uint64_t initial_pos);

  struct HandedOver {
    uint64_t end = 0;  // journal position after the record
    uint16_t mid = 0;
    std::string_view topic;
    std::span<const uint8_t> payload;
    std::string_view msg_id;  // the publisher's msg-id; empty if none
    // The SHARD.SESSION_NO of the session it was taken in (0: before schema
    // 010; kUnknownSession: an older one than its journal's newest, or
    // one the journal has no number for), in PENDING.SESSION_NO.
    SessionNo session_no = 0;
  };
  // One transaction: records `messages` of this store's journal in PENDING
  // for the active of the shard the journal's relay last held (JOURNAL.SHARD;
  // this store's shard if none; again: ignored) and moves JOURNAL.POS to
  // `pos`. Returns that shard.
  Result<std::string> HandOver(std::span<const HandedOver> messages, uint64_t pos);

  struct PendingRow {
    std::string journal_id;
    uint64_t end = 0;
    uint16_t mid = 0;
    std::string topic;
    std::string payload;
    bool taken = false;  // TAKEN holds its mid and digest: stored already
    std::string msg_id;  // the publisher's msg-id; empty if none
    SessionNo session_no = 0;  // as HandedOver's
  };
  // The shard's handed-over messages, oldest first: of one journal (the
  // one handed over first), at most `limit` and, but for the first,
  // `max_bytes` of payload.
  Result<std::vector<PendingRow>> ReadPending(std::size_t limit, std::size_t max_bytes);
  // Deletes handed-over messages that are stored already (mosquitto resent
  // them to the active, which took them live): journal id and position each.
  Status DeletePending(std::span<const std::pair<std::string, uint64_t>> rows);

  struct Progress {
    uint64_t max_idx = 0;        // highest MSG.idx of the shard; its base when it has none
    uint64_t published_idx = 0;  // SHARD.PUBLISHED_IDX
    // This store's journal: JOURNAL.POS, or the JOURNAL_POS of a SHARD row
    // that still names the journal (any shard's: a relay may come back
    // under another --shard with the same journal), if greater.
    uint64_t journal_pos = 0;
    uint64_t legacy_journal_pos = 0;  // RELAY_STATE.JOURNAL_POS (before schema 004: the one journal's)
    uint32_t epoch = 0;          // SHARD.EPOCH: the lease's current epoch
    uint64_t session_idx = 0;    // SHARD.SESSION_IDX: the first row of the intake's current MQTT session
    SessionNo session_no = 0;    // SHARD.SESSION_NO: that session's number (schema 010)
    std::string instance;        // RELAY_STATE.INSTANCE: the database's identity (a UUID made with the schema)
  };
  Result<Progress> ReadProgress();

  // The server's max_allowed_packet: no statement (so no row, no batch)
  // may be larger.
  Result<uint64_t> ReadMaxAllowedPacket();

  struct TopicRow {
    std::string topic;
    uint32_t id = 0;
    uint64_t last_seq = 0;  // highest SEQ committed for the topic; 0 = none
    bool created = false;   // the TOPIC row was made by this call
    uint64_t first_seq = 0;  // lowest SEQ still stored (FindTopic only); 0 = none
  };
  // Ids and last SEQs of `topics`, creating TOPIC rows for at most
  // `max_new` of those that have none (in the order given); the others are
  // left out of the result.
  Result<std::vector<TopicRow>> ResolveTopics(std::span<const std::string_view> topics,
                                              std::size_t max_new = SIZE_MAX);
  // Rows in TOPIC.
  Result<uint64_t> CountTopics();
  // RELAY_STATE.INSTANCE: the database's identity, a UUID made with the
  // schema, known to whoever reads the database and to nobody else.
  Result<std::string> DatabaseIdentity();

  // ---- Retention (PROTOCOL.md 5.2) ----

  // Up to `limit` topic names after `after` (byte order), for a pass over
  // every topic.
  Result<std::vector<std::string>> ListTopics(std::string_view after, std::size_t limit);
  // The rows of the other shards that their relays have acknowledged on
  // seq/T: each one's idx from its base to its PUBLISHED_IDX (for
  // TrimTopic: a topic that moved to this shard from another has its older
  // rows in that shard's range, which may hold rows committed and not yet
  // acknowledged, for its next start to publish).
  struct IdxRange {
    uint64_t from = 0, to = 0;
  };
  Result<std::vector<IdxRange>> PublishedElsewhere();
  // Deletes the oldest rows of `topic` that `rule` no longer keeps, at most
  // `max_rows` and `max_bytes` of payload (but always one row) in one short
  // transaction at READ COMMITTED: only a prefix of its SEQs, never its
  // newest row, never a row not yet acknowledged on seq/T (only this
  // shard's rows up to `published_idx`, and the other shards' in
  // `published_elsewhere`). The bytes bound
  // what a server writing a binary log, or a Galera cluster (its
  // write-set), holds for one transaction.
  struct Trimmed {
    uint64_t deleted = 0;
    bool more = false;  // a bound cut the delete short: the topic may have more to go now
  };
  Result<Trimmed> TrimTopic(std::string_view topic, const RetentionRule& rule, uint64_t published_idx,
                            const std::vector<IdxRange>& published_elsewhere, std::size_t max_rows, uint64_t max_bytes);

  // ---- Publishers' message ids (schema 005, PROTOCOL.md 5.1) ----

  struct MsgIdKey {
    std::string_view topic;
    std::string_view msg_id;
    bool operator==(const MsgIdKey&) const = default;
  };
  // Which of `keys` DEDUPE holds (sequenced before and not purged yet), in
  // no particular order.
  Result<std::vector<MsgIdKey>> FindSequencedMsgIds(std::span<const MsgIdKey> keys);
  // Deletes at most `limit` DEDUPE rows older than `window_s` seconds (the
  // database's clock), in a short transaction of its own at READ COMMITTED,
  // so that it takes no gap locks a commit could wait for. Returns how many.
  Result<uint64_t> PurgeMsgIds(uint64_t window_s, std::size_t limit);

  // One transaction: inserts every message (idx, topic, flag, SEQ, payload,
  // epoch, packet id) and, for those with a msg-id, its DEDUPE row; sets the shard's
  // PUBLISHED_IDX and, when it moved, the journal's POS (the position after
  // the batch's last journaled message), and checks the fence: the shard's
  // row must still carry this store's epoch, or everything is rolled back
  // and the error has code kLeaseLostCode (store_errors.h). Two round trips:
  // the fence and the rows as one multi-statement query (more only if the
  // batch outgrows max_allowed_packet), then COMMIT. An error leaves the
  // outcome unknown if it struck during COMMIT: the caller decides by
  // reading ReadProgress() after reconnecting.
  // With `timing`, the time of its query before COMMIT and of the COMMIT
  // itself are stored there (for a call that succeeded).
  struct CommitTiming {
    std::chrono::nanoseconds statements{}, commit{};
  };
  Status CommitBatch(std::span<const Message> batch, uint64_t published_idx, uint64_t journal_pos,
                     CommitTiming* timing = nullptr);

  // Fault injection for the test suite: the `nth` non-empty CommitBatch
  // of this store kills its own session after the INSERTs and before
  // COMMIT, as a database restart at that instant would. 0 = off.
  void InjectKillBeforeCommit(uint64_t nth) { kill_before_commit_ = nth; }
  // Tests: SIGSTOP to this process between the nth RenewLease's UPDATE and
  // its COMMIT (0 = never).
  void InjectStopInRenewal(uint64_t nth) { stop_in_renewal_ = nth; }

  // The intake began a new MQTT session, whose rows start at `idx`: it
  // and the session's number, one past the last (SHARD.SESSION_IDX and
  // SESSION_NO), are written with the fence of every commit from now on
  // (the writer commits them at once, before the session's first delivery
  // is acknowledged). Read back by ReadProgress.
  void BeginSession(uint64_t idx) {
    session_idx_ = idx;
    ++session_no_;
  }
  uint64_t session_start() const { return session_idx_; }
  SessionNo session_no() const { return session_no_; }

  struct LiveRow {
    uint64_t idx = 0;
    uint16_t mid = 0;
  };
  // The shard's newest rows with a packet id (MSG.MID) at or above
  // SESSION_IDX and at most `last_idx`, newest first, at most `limit`, among
  // the newest kSessionTailSpan idx.
  static constexpr uint64_t kSessionTailSpan = 20000;
  Result<std::vector<LiveRow>> ReadSessionTail(uint64_t last_idx, std::size_t limit);
  struct RowContent {
    std::string topic, payload;
    uint32_t sub_tag = 0;  // MSG.SUB_TAG
  };
  // Row `idx`'s topic, payload and subscription tag; nullopt if there is none.
  Result<std::optional<RowContent>> ReadRow(uint64_t idx);

  // Sets the shard's PUBLISHED_IDX on its own (at shutdown, or when idle),
  // fenced like a commit.
  Status SavePublished(uint64_t published_idx);

  // A topic by name or by frame id (exactly one given), with its newest
  // committed SEQ and its oldest one still stored; nullopt if there is no
  // such topic.
  Result<std::optional<TopicRow>> FindTopic(const std::optional<std::string>& topic, std::optional<uint32_t> id);

  struct RangeRow {
    uint64_t seq = 0;
    uint8_t ordering = 1;
    std::string payload;
  };
  // Rows of `topic` with SEQ in [from, to], in SEQ order, at most `limit`
  // and, beyond the first, at most `max_bytes` of payload together.
  Result<std::vector<RangeRow>> ReadRange(std::string_view topic, uint64_t from, uint64_t to, std::size_t limit,
                                          std::size_t max_bytes);

  // The audit of seqaudit, in short statements on a live database: a
  // page of topics with their first and last SEQ (two index lookups each),
  // then the rows of SEQ windows counted, no statement reading an index
  // entry outside its windows. Each statement is a transaction of its own.
  struct TopicSpan {
    std::string topic;
    uint32_t id = 0;
    uint64_t first_seq = 0;  // 0 when the topic has no rows
    uint64_t last_seq = 0;
  };
  // Up to `limit` topics with a FRAME_ID above `after` (or only `topic`),
  // in FRAME_ID order.
  Result<std::vector<TopicSpan>> TopicSpans(uint32_t after, std::size_t limit, const std::optional<std::string>& topic);
  struct SeqWindow {
    std::string topic;
    uint64_t from = 0;  // SEQ from..to, both included
    uint64_t to = 0;
  };
  struct WindowCount {
    uint64_t rows = 0;
    // The topic's first SEQ in the same read (0: it has no rows): retention
    // deletes a topic's oldest rows meanwhile, and a window's rows below it
    // are deleted, not missing.
    uint64_t first_seq = 0;
    uint64_t next_seq = 0;  // the first stored SEQ above the window, in the same read (0: none)
  };
  // Each window's rows, in the windows' order, all in one read.
  Result<std::vector<WindowCount>> CountRows(const std::vector<SeqWindow>& windows);

  // The first `limit` missing SEQ ranges of `topic` within from..to, from
  // raised to the topic's first SEQ in the same read (a window query:
  // MySQL 8 and MariaDB 10.2+). Reads the rows of from..to only.
  Result<std::vector<std::pair<uint64_t, uint64_t>>> MissingRanges(std::string_view topic, uint64_t from, uint64_t to,
                                                                   std::size_t limit);

  struct StoredRow {
    uint64_t idx = 0;
    uint32_t topic_id = 0;
    uint64_t seq = 0;
    uint8_t ordering = 1;
    std::string topic;
    std::string payload;
  };
  // The shard's rows with idx > after_idx in idx order, at most `limit`
  // and, beyond the first, at most `max_bytes` of payload together.
  Result<std::vector<StoredRow>> ReadRowsAfter(uint64_t after_idx, std::size_t limit, std::size_t max_bytes);

 private:
  Status Guard(const char* what, const std::function<void()>& body);
  // Guard's reconnect before a call (to follow SharedNode, or for a session
  // idle for its wait_timeout): a causal read after it, if on another node.
  Status QuietReconnect();
  // How many rows, in key order from `from`, fit in `max_bytes` (always the
  // first), at most `limit`, and the key of the last: `sizes` selects a
  // key and LENGTH(MSG) in key order, its parameter `from_param` the first
  // key and `limit_param` the LIMIT (the others bound by the caller).
  // LENGTH reads a payload whole, so the sizes come in chunks that grow
  // from what `max_bytes` holds of --max-payload (plus one): no more is
  // read than the caller takes, give or take a chunk of rows smaller than
  // that. Inside a Guard.
  struct Fit {
    std::size_t rows = 0;
    uint64_t last = 0;
    bool full = false;  // a row after them did not fit (else the rows or `limit` ran out)
  };
  Fit FitRows(sql::PreparedStatement& sizes, int from_param, int limit_param, uint64_t from, std::size_t limit,
              std::size_t max_bytes);
  // The first column of the first row of `query`, as a number.
  Result<uint64_t> QueryNumber(const char* what, const char* query);
  // Ends the open transaction; throws if the server did not confirm it.
  void CommitTransaction();
  // The next transaction at READ COMMITTED: it takes no gap locks, so a
  // housekeeping delete never holds up the writer's inserts.
  void NextTransactionReadCommitted();
  // After a connection lost in the middle of a call (IsConnectionLost)
  // that ran into the read timeout: the process's sessions start from the
  // next node (SharedNode), the idle ones moving before their next call,
  // rather than try this one again first.
  void LeaveTheNode();
  // The connector's read and write timeouts, seconds: a hung server's call
  // fails after this long.
  static constexpr int kReadTimeoutS = 30;
  // Forgets the connection and everything prepared on it.
  void DropConnection();
  // The session limits asked for (LimitLockWait, LimitIdleTransaction),
  // on this connection.
  void ApplyLockWait(sql::Statement& st);
  void ApplyIdleTransactionLimit(sql::Statement& st);
  // When Guard replaces the session rather than use it (see KeepAlive).
  std::chrono::steady_clock::time_point StaleAt() const;
  Status ConnectTo(const std::optional<DbEndpoint>& endpoint, bool create_database);
  // A statement of `rows` (a power of two) copies of `row` after `head`,
  // then `tail`, prepared once per connection and size in `cache`.
  sql::PreparedStatement& Repeated(std::vector<std::unique_ptr<sql::PreparedStatement>>& cache, std::size_t rows,
                                   const char* head, const char* row, const char* separator = ",",
                                   const char* tail = "");

  const Config& config_;
  std::unique_ptr<sql::Connection> conn_;
  std::size_t endpoint_index_ = 0;  // into DbEndpoints(--db-host): the node this session is on
  std::size_t node_count_ = 1;      // DbEndpoints(--db-host).size() at the last Connect
  std::atomic<std::size_t>& shared_node_;  // the node this process's sessions use (SharedNode)
  std::size_t followed_ = 0;  // shared_node_ when this session connected: a change of it is followed
  bool leads_ = false;        // LeadTheNode
  bool read_only_ = false;          // the connected node's read_only (read at connect)
  mutable std::mutex endpoint_mu_;
  std::string endpoint_;  // guarded by endpoint_mu_
  // DEDUPE lookups for 1, 2, 4, ... keys: a lookup is split into
  // power-of-two chunks so that at most log2(batch-max)+1 are ever prepared.
  std::vector<std::unique_ptr<sql::PreparedStatement>> find_msg_ids_;
  std::unique_ptr<sql::Statement> commit_;                 // runs COMMIT; created once per connection
  std::unique_ptr<sql::Statement> text_;    // runs CommitBatch's queries; created once per connection
  MultiStatement commit_sql_{0};            // CommitBatch's text, its buffers kept from batch to batch
  const std::string dedupe_expiry_;         // a DEDUPE record's EXPIRES_AT: NOW(6) + the window
  uint64_t max_allowed_packet_ = 0;  // the server's, read at every connect
  // The largest query built: max_allowed_packet less room for the packet's
  // header and the command byte, with some to spare.
  std::size_t MaxQueryBytes() const {
    return static_cast<std::size_t>(std::max<uint64_t>(max_allowed_packet_, 2048) - 1024);
  }
  std::string shard_ = "default";
  uint64_t idx_base_ = 0;  // SHARD.NUM * kShardIdxSpan
  std::string journal_id_;
  uint32_t epoch_ = 0;
  uint64_t saved_journal_pos_ = 0;    // last JOURNAL_POS written or read by this connection
  uint64_t session_idx_ = 0;          // SHARD.SESSION_IDX, read at ReadProgress and written by every fence
  SessionNo session_no_ = 0;          // SHARD.SESSION_NO, the same way
  uint64_t kill_before_commit_ = 0;   // see InjectKillBeforeCommit; 0 = off
  uint64_t stop_in_renewal_ = 0;      // see InjectStopInRenewal
  uint64_t renewals_ = 0;             // RenewLease calls, for stop_in_renewal_
  uint64_t batches_tried_ = 0;        // non-empty CommitBatch calls, for kill_before_commit_
  bool sync_wait_ = false;            // the server knows wsrep_sync_wait: reads are causal
  bool mariadb_ = false;              // the server is MariaDB (SET STATEMENT ... FOR)
  bool idle_transaction_timeout_ = false;  // it has idle_transaction_timeout (MariaDB; MySQL has not)
  // The limits asked for (0: the server's), applied at every connect.
  int lock_wait_s_ = 0;
  int idle_transaction_s_ = 0;
  // The session's wait_timeout, read or set at connect; and when the
  // session last answered (see KeepAlive).
  int idle_limit_s_ = 0;
  std::chrono::steady_clock::time_point last_used_{};
  bool reconnecting_ = false;  // Guard's quiet reconnect is under way
  RateLimit replaced_log_{std::chrono::minutes(1)};  // its line, once a minute at most
};

}  // namespace seqrelay
