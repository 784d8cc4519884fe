// MysqlStore's sessions: connecting (a --db-host list, Galera nodes), the
// guard every call runs in, keep-alive, migrations and the progress read at
// start. The shard's lease, the writer's statements and the reads are in
// mysql_store_lease.cc, mysql_store_write.cc and mysql_store_read.cc.
#include "store/mysql_store.h"

#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <fmt/format.h>
#include <mysql_connection.h>
#include <mysql_driver.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>

#include "core/log.h"
#include "store/mysql_store_values.h"
#include "store/schema.h"
#include "store/store_errors.h"

namespace seqrelay {

using mysql_values::Bytes;
namespace {

// The lease is the database's clock: EXPIRES_AT is written and compared
// with NOW(6), which is in the session's time zone. Every relay session
// keeps UTC, so that relays whose connections began in other zones (the
// server's zone changed between them, or the hour a server on local time
// sets its clocks forward or back) agree on when a lease ends: an hour's
// disagreement either made a live active's lease look expired to a standby
// or kept a dead one's for an hour. (Since schema 11 the columns are
// TIMESTAMP, converted from and to any session's zone, for relays of
// before it beside newer ones.)
constexpr const char* kSessionTimeZone = "SET time_zone = '+00:00'";

// Splits a migration file into statements: ';' ends a statement at a line
// end; lines starting with "--" are comments.
std::vector<std::string> Statements(std::string_view sql) {
  std::vector<std::string> out;
  std::string current;
  while (!sql.empty()) {
    auto nl = sql.find('\n');
    std::string_view line = sql.substr(0, nl);
    sql.remove_prefix(nl == std::string_view::npos ? sql.size() : nl + 1);
    auto first = line.find_first_not_of(" \t\r");
    if (first == std::string_view::npos || line.substr(first, 2) == "--") continue;
    current.append(line).push_back('\n');
    auto last = line.find_last_not_of(" \t\r");
    if (line[last] == ';') {
      current.resize(current.rfind(';'));
      out.push_back(std::move(current));
      current.clear();
    }
  }
  if (current.find_first_not_of(" \t\r\n") != std::string::npos) out.push_back(current);
  return out;
}

// True if the query, with these string parameters, returns a row.
bool Exists(sql::Connection& conn, const char* query, std::initializer_list<std::string> params) {
  std::unique_ptr<sql::PreparedStatement> ps(conn.prepareStatement(query));
  int i = 0;
  for (const auto& p : params) ps->setString(++i, p);
  std::unique_ptr<sql::ResultSet> rs(ps->executeQuery());
  return rs->next();
}

// The node of --db-host that this process's sessions use, shared by its
// stores (the writer's, the lease's, the replies'...): on Galera, two of
// them on two nodes certify against each other (the writer's batch and
// the lease's renewal update the same SHARD row, and one of them fails
// with error 1213), so when one moves, the others follow at their next
// call. By the --db-host list, for a process with stores of two.
std::atomic<std::size_t>& SharedNode(const std::string& db_host) {
  static std::mutex mu;
  static std::map<std::string, std::unique_ptr<std::atomic<std::size_t>>> nodes;
  std::lock_guard lock(mu);
  auto& node = nodes[db_host];
  if (!node) node = std::make_unique<std::atomic<std::size_t>>(0);
  return *node;
}

}  // namespace

MysqlStore::MysqlStore(const Config& config)
    : config_(config),
      shared_node_(SharedNode(config.db_host)),
      dedupe_expiry_(fmt::format("NOW(6) + INTERVAL {} SECOND", config.dedupe_window_s)) {}
MysqlStore::~MysqlStore() = default;

void MysqlStore::CommitTransaction() {
  // Not conn_->commit(): with Debian's Connector/C++ 1.1.12 on libmariadb,
  // Connection::commit() on a connection the server has closed returns
  // normally and commits nothing (seen: an INSERT, KILL of the session,
  // commit() "succeeds", the row is not there). The writer would then
  // publish frames whose rows do not exist. A COMMIT statement reports the
  // lost connection (error 2013) like any other query.
  if (!commit_) commit_.reset(conn_->createStatement());
  commit_->execute("COMMIT");
}

void MysqlStore::NextTransactionReadCommitted() {
  std::unique_ptr<sql::Statement> level(conn_->createStatement());
  level->execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED");
}

void MysqlStore::DropConnection() {
  find_msg_ids_.clear();
  text_.reset();
  commit_.reset();
  conn_.reset();
}

Status MysqlStore::QuietReconnect() {
  reconnecting_ = true;
  struct Reset {
    bool& flag;
    ~Reset() { flag = false; }
  } reset{reconnecting_};
  const std::size_t was = endpoint_index_;
  if (Status s = Connect(false); !s.ok()) return s;
  if (endpoint_index_ == was || !sync_wait_) return Status::Ok();
  // On another Galera node, which may not have applied this process's
  // last commits through the one before yet: one causal read waits until
  // it has, so that the reads that do not wait (the DEDUPE lookup) see
  // them, as after any reconnect that reads the shard's progress.
  return Guard("catch up with the cluster", [&] {
    std::unique_ptr<sql::Statement> st(conn_->createStatement());
    std::unique_ptr<sql::ResultSet> rs(st->executeQuery("SELECT COUNT(*) FROM SCHEMA_VERSION"));
    CommitTransaction();
  });
}

Status MysqlStore::Guard(const char* what, const std::function<void()>& body) {
  if (const std::size_t shared = shared_node_.load(std::memory_order_relaxed); conn_ && !reconnecting_ &&
                                                                                 followed_ != shared) {
    // Another session of this process moved to another node (its own
    // failed, or read_only came on): this one follows before it writes
    // (SharedNode), unless it is there already. Every call here ends its
    // transaction.
    if (endpoint_index_ == shared) {
      followed_ = shared;
    } else if (Status s = QuietReconnect(); !s.ok()) {
      return s;
    }
  }
  if (conn_ && !reconnecting_ && idle_limit_s_ > 0 && std::chrono::steady_clock::now() >= StaleAt()) {
    // The server has ended this session or is about to (its wait_timeout):
    // a new one now, rather than a statement that fails and a retry. Every
    // call here ends its transaction, so nothing open is lost. (Time the
    // machine spent suspended does not count here: such a session fails
    // its statement, as any lost one.)
    const int limit = idle_limit_s_;
    if (Status s = QuietReconnect(); !s.ok()) return s;
    if (auto suppressed = replaced_log_.Allow()) {
      LogInfo("database: a session idle for its wait_timeout ({} s) was replaced before '{}'{}", limit, what,
              SuppressedNote(*suppressed));
    }
  }
  // A call of a session (not a connect) that ran into the read timeout:
  // its node hangs. A session the server ended (killed, or idle past its
  // wait_timeout) fails at once, and its node is fine.
  const bool in_session = conn_ != nullptr;
  const auto called_at = std::chrono::steady_clock::now();
  const auto hung = [&] {
    return in_session && std::chrono::steady_clock::now() - called_at >= std::chrono::seconds(kReadTimeoutS) * 9 / 10;
  };
  try {
    body();
    last_used_ = std::chrono::steady_clock::now();
    return Status::Ok();
  } catch (const sql::SQLException& e) {
    // The connection's state is unknown after an error: drop it so that the
    // next use reconnects. Duplicate-key and similar errors are still errors
    // here; the caller decides what they mean.
    std::string message = fmt::format("{}: MySQL error {} ({}): {}", what, e.getErrorCode(), e.getSQLStateCStr(), e.what());
    if (IsConnectionLost(e.getErrorCode()) && hung()) LeaveTheNode();
    DropConnection();
    return Status::Database(std::move(message), e.getErrorCode());
  } catch (const std::exception& e) {
    if (hung()) LeaveTheNode();  // a ping (KeepAlive) on a hung node fails so
    DropConnection();
    return Status::Error(fmt::format("{}: {}", what, e.what()));
  }
}

void MysqlStore::LeaveTheNode() {
  // A node that hangs (a frozen server, a host gone without a reset) takes
  // a reconnect's whole connect timeout (5 s) to fail where it would start.
  // Unless another session moved the process on already. (A session ended
  // by a healthy server, by KILL or its wait_timeout, fails at once: Guard
  // moves only after a call that ran into the read timeout.)
  std::size_t here = endpoint_index_;
  if (node_count_ > 1) shared_node_.compare_exchange_strong(here, (here + 1) % node_count_, std::memory_order_relaxed);
}

std::chrono::steady_clock::time_point MysqlStore::StaleAt() const {
  // A margin for the statement's way there: the server counts from its
  // last answer, a little before last_used_.
  const auto limit = std::chrono::seconds(idle_limit_s_);
  return last_used_ + limit - std::min<std::chrono::steady_clock::duration>(std::chrono::seconds(1), limit / 5);
}

std::chrono::steady_clock::time_point MysqlStore::keep_alive_due() const {
  if (!conn_ || idle_limit_s_ <= 0) return std::chrono::steady_clock::time_point::max();
  return last_used_ + std::chrono::seconds(idle_limit_s_) / 3;
}

Status MysqlStore::KeepAlive() {
  if (std::chrono::steady_clock::now() < keep_alive_due()) return Status::Ok();
  // A COM_PING: it starts no transaction (idle_transaction_timeout stays
  // out of it) and resets the server's idle count.
  return Guard("keep the session alive", [&] {
    if (!conn_->isValid()) throw std::runtime_error("the server did not answer a ping");
  });
}

Status MysqlStore::Connect(bool create_database) {
  if (!config_.db_socket.empty()) return ConnectTo(std::nullopt, create_database);
  auto endpoints = DbEndpoints(config_.db_host, config_.db_port);
  if (!endpoints.ok()) return Status::Permanent(endpoints.error());
  // The node this process's sessions use first (SharedNode); on failure
  // the next ones in order, once each.
  const std::size_t n = endpoints->size();
  node_count_ = n;
  const std::size_t shared = shared_node_.load(std::memory_order_relaxed);
  const std::size_t first = shared % n;
  // A session the node refused for a limit of sessions (its own, or the
  // user's) goes elsewhere alone: were the others to follow, the same
  // limit would move them all round the nodes. Not the writer's or the
  // lease's (LeadTheNode), which both update the shard's row: apart, on
  // Galera, they would certify against each other.
  bool follow = true;
  const auto connected = [&](std::size_t k) {
    const DbEndpoint& e = (*endpoints)[k];
    const std::string name = fmt::format("{}:{}", e.host, e.port);
    if (n > 1 && name != endpoint_) {
      LogInfo("database: connected to {} (node {} of {}{})", name, k + 1, n, read_only_ ? ", read_only on" : "");
    }
    endpoint_index_ = k;
    if (follow) shared_node_.store(k, std::memory_order_relaxed);
    followed_ = follow ? k : shared;
    std::lock_guard lock(endpoint_mu_);
    endpoint_ = name;
    return Status::Ok();
  };
  std::string failures;
  int refusal = 0;  // the login refusal every node gave so far (IsLoginRefusal), or 0
  // A node with read_only on (an operator draining it, a donor of a state
  // transfer) answers, and refuses every write (error 1290) for as long as
  // it stays so: a node that takes writes goes first, and the first such
  // node only when none does (reads work there; writes fail and are tried
  // again, on the next connect).
  std::optional<std::size_t> read_only_node;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t k = (first + i) % n;
    const DbEndpoint& e = (*endpoints)[k];
    Status s = ConnectTo(e, create_database);
    if (s.ok() && (n == 1 || !read_only_)) return connected(k);
    if (n == 1) return s;
    if (i == 0 && !leads_ && IsSessionLimit(s.database_code())) follow = false;
    if (s.ok()) {
      DropConnection();
      if (!read_only_node) read_only_node = k;
      s = Status::Error("read_only is on");
    }
    refusal = (i == 0 || refusal != 0) && IsLoginRefusal(s.database_code()) ? s.database_code() : 0;
    failures += fmt::format("{}{}:{}: {}", failures.empty() ? "" : "; ", e.host, e.port, s.message());
  }
  if (read_only_node) {
    LogWarn("database: every node that answered has read_only on ({}); writes will fail until one takes them",
            failures);
    if (Status s = ConnectTo((*endpoints)[*read_only_node], create_database); !s.ok()) return s;
    return connected(*read_only_node);
  }
  if (refusal != 0) {
    return Status::Database(fmt::format("every database node refused the login ({})", failures), refusal);
  }
  return Status::Error(fmt::format("no database node answered ({})", failures));
}

std::string MysqlStore::endpoint() const {
  std::lock_guard lock(endpoint_mu_);
  return endpoint_;
}

Status MysqlStore::ConnectTo(const std::optional<DbEndpoint>& e, bool create_database) {
  DropConnection();
  return Guard("connect", [&] {
    sql::ConnectOptionsMap options;
    if (!e) {
      options["hostName"] = sql::SQLString("localhost");
      options["socket"] = sql::SQLString(config_.db_socket);
    } else {
      const bool v6 = e->host.find(':') != std::string::npos;
      const std::string host = v6 ? "[" + e->host + "]" : e->host;
      options["hostName"] = sql::SQLString(fmt::format("tcp://{}:{}", host, e->port));
    }
    options["userName"] = sql::SQLString(config_.db_user);
    options["password"] = sql::SQLString(config_.db_password);
    options["OPT_CONNECT_TIMEOUT"] = 5;
    // A hung server must not hang the writer forever: reads and writes time
    // out, the connection is dropped and the batch retried.
    options["OPT_READ_TIMEOUT"] = kReadTimeoutS;
    options["OPT_WRITE_TIMEOUT"] = kReadTimeoutS;
    options["OPT_CHARSET_NAME"] = sql::SQLString("utf8mb4");
    // CommitBatch sends a batch as one query of several statements. Every
    // value in them is a number or a hex literal (multi_statement.h).
    options["CLIENT_MULTI_STATEMENTS"] = true;
    conn_.reset(sql::mysql::get_mysql_driver_instance()->connect(options));
    std::unique_ptr<sql::Statement> st(conn_->createStatement());
    // Only when missing: a user with rights on an existing database but
    // none to create one (least privilege) must be able to connect.
    if (create_database && !Exists(*conn_, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
                                   {config_.db_name})) {
      st->execute(fmt::format("CREATE DATABASE IF NOT EXISTS `{}`", config_.db_name));
    }
    {
      std::unique_ptr<sql::ResultSet> rs(
          st->executeQuery("SELECT @@max_allowed_packet, VERSION() LIKE '%MariaDB%', @@SESSION.wait_timeout, "
                           "@@GLOBAL.read_only"));
      rs->next();
      max_allowed_packet_ = rs->getUInt64(1);
      mariadb_ = rs->getInt(2) == 1;
      // Test hook: the session as on MySQL, which lacks the setting.
      idle_transaction_timeout_ = mariadb_ && !std::getenv("SEQTEST_NO_IDLE_TRANSACTION_TIMEOUT");
      idle_limit_s_ = static_cast<int>(std::min<uint64_t>(rs->getUInt64(3), 365 * 86400));
      read_only_ = rs->getInt(4) != 0;
    }
    // On a Galera cluster a node answers reads from the write-sets it has
    // applied, which may lag what the cluster has ordered: a batch the
    // previous active committed through another node, the row a takeover
    // wrote a moment ago, the frame a subscriber asks to have resent. Each
    // read of this session first waits until its node has applied
    // everything ordered before it (wsrep_sync_wait bit 1, kept with the
    // bits the operator set). The batches' fence and inserts are not reads
    // and do not wait (certification orders them), nor does the DEDUPE
    // lookup (FindSequencedMsgIds). Without Galera the setting does
    // nothing; MySQL has none (error 1193) and nothing lags.
    try {
      st->execute("SET SESSION wsrep_sync_wait = @@GLOBAL.wsrep_sync_wait | 1");
      sync_wait_ = true;
    } catch (const sql::SQLException& e) {
      if (e.getErrorCode() != 1193) throw;  // ER_UNKNOWN_SYSTEM_VARIABLE
      sync_wait_ = false;
    }
    st->execute(kSessionTimeZone);
    if (lock_wait_s_ > 0) ApplyLockWait(*st);
    if (idle_transaction_s_ > 0) ApplyIdleTransactionLimit(*st);
    conn_->setSchema(config_.db_name);
    conn_->setAutoCommit(false);
    conn_->setTransactionIsolation(sql::TRANSACTION_READ_COMMITTED);
  });
}

void MysqlStore::ApplyLockWait(sql::Statement& st) {
  st.execute(fmt::format("SET SESSION innodb_lock_wait_timeout = {}", lock_wait_s_));
  // A table's metadata lock too (another session's ALTER waiting for it, or
  // holding it): the server's default wait is a day (MariaDB), a year (MySQL).
  st.execute(fmt::format("SET SESSION lock_wait_timeout = {}", lock_wait_s_));
}

void MysqlStore::ApplyIdleTransactionLimit(sql::Statement& st) {
  if (idle_transaction_timeout_) {
    st.execute(fmt::format("SET SESSION idle_transaction_timeout = {}", idle_transaction_s_));
  } else {
    // MySQL: the session's idleness, in a transaction or not (KeepAlive).
    st.execute(fmt::format("SET SESSION wait_timeout = {}", idle_transaction_s_));
    idle_limit_s_ = idle_transaction_s_;
  }
}

namespace {
// How long a migration's DDL waits for its table (Migrate): no longer than
// a lease's session (1 s), whose renewal, queued behind it, then still gets
// the table before its own wait ends.
constexpr int kMigrationLockWaitS = 1;
}  // namespace

Status MysqlStore::Migrate(bool apply) {
  int current = 0;
  Status s = Guard("read schema version", [&] {
    std::unique_ptr<sql::Statement> st(conn_->createStatement());
    if (!Exists(*conn_,
                "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?",
                {"SCHEMA_VERSION"})) {
      if (!apply) return;  // version 0: --no-migrate creates nothing
      st->execute(
        "CREATE TABLE IF NOT EXISTS SCHEMA_VERSION (VERSION INT NOT NULL PRIMARY KEY, NAME VARCHAR(255) NOT NULL, "
        "APPLIED_AT TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP) ENGINE=InnoDB");
    }
    std::unique_ptr<sql::ResultSet> rs(st->executeQuery("SELECT COALESCE(MAX(VERSION), 0) FROM SCHEMA_VERSION"));
    rs->next();
    current = rs->getInt(1);
    CommitTransaction();
  });
  if (!s.ok()) return s;
  const int newest = Migrations().empty() ? 0 : Migrations().back().version;
  if (current > newest) {
    return Status::Permanent(
        fmt::format("database schema is at version {}, newer than this relay's {}", current, newest));
  }
  if (current == newest) return Status::Ok();
  if (!apply) {
    return Status::Permanent(
        fmt::format("database schema is at version {}, the relay needs {} (run without --no-migrate)", current, newest));
  }
  for (const Migration& m : Migrations()) {
    if (m.version <= current) continue;
    LogInfo("schema: applying {} (version {})", m.name, m.version);
    s = Guard("migrate", [&] {
      std::unique_ptr<sql::Statement> st(conn_->createStatement());
      // An ALTER waits for its table's metadata lock, and every statement
      // on the table after it queues behind it meanwhile: the running
      // relays' commits and lease renewals, on every shard. A transaction
      // some other session left open on the table would hold them all for
      // as long as it stays open. So the wait is short, and tried again.
      st->execute(fmt::format("SET SESSION lock_wait_timeout = {}", kMigrationLockWaitS));
      for (const auto& statement : Statements(m.sql)) {
        try {
          st->execute(statement);
        } catch (const sql::SQLException& e) {
          // Each DDL statement commits on its own: a migration cut short (a
          // kill between two ALTERs) is applied again, and what it did is done.
          if (!IsAlreadyApplied(e.getErrorCode())) throw;
          LogInfo("schema: {}: {} (done before; going on)", m.name, e.what());
        }
      }
      st->execute(kSessionTimeZone);  // whatever zone the migration worked in (011 reads the server's)
      std::unique_ptr<sql::PreparedStatement> done(
          conn_->prepareStatement("INSERT INTO SCHEMA_VERSION (VERSION, NAME) VALUES (?, ?)"));
      done->setInt(1, m.version);
      done->setString(2, Bytes(m.name));
      done->execute();
      CommitTransaction();
      st->execute(lock_wait_s_ > 0 ? fmt::format("SET SESSION lock_wait_timeout = {}", lock_wait_s_)
                                   : std::string("SET SESSION lock_wait_timeout = DEFAULT"));
    });
    if (s.database_code() == kLockWaitTimeout) {
      return Status::Database(fmt::format("{} ({}: waited {} s for a table another session holds, maybe a "
                                          "transaction left open; trying again)",
                                          s.message(), m.name, kMigrationLockWaitS),
                              kLockWaitTimeout);
    }
    if (!s.ok()) return Status::Error(fmt::format("{} ({})", s.message(), m.name));
  }
  return Status::Ok();
}

Result<MysqlStore::Progress> MysqlStore::ReadProgress() {
  Progress p;
  Status s = Guard("read progress", [&] {
    std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
        "SELECT (SELECT COALESCE(MAX(idx), ?) FROM MSG WHERE idx > ? AND idx < ?), s.PUBLISHED_IDX, s.EPOCH, "
        "GREATEST((SELECT COALESCE(MAX(POS), 0) FROM JOURNAL WHERE ID = ?), "
        "(SELECT COALESCE(MAX(JOURNAL_POS), 0) FROM SHARD WHERE JOURNAL_ID = ?)), "
        "r.JOURNAL_POS, r.INSTANCE, s.SESSION_IDX, s.SESSION_NO FROM SHARD s, RELAY_STATE r WHERE s.NAME = ? AND r.K = 1"));
    ps->setUInt64(1, idx_base_);
    ps->setUInt64(2, idx_base_);
    ps->setUInt64(3, idx_base_ + kShardIdxSpan);
    ps->setString(4, journal_id_);
    ps->setString(5, journal_id_);
    ps->setString(6, shard_);
    std::unique_ptr<sql::ResultSet> rs(ps->executeQuery());
    if (!rs->next()) throw std::runtime_error("shard '" + shard_ + "' has no row in SHARD");
    p.max_idx = rs->getUInt64(1);
    p.published_idx = rs->getUInt64(2);
    p.epoch = rs->getUInt(3);
    p.journal_pos = rs->getUInt64(4);
    p.legacy_journal_pos = rs->getUInt64(5);
    p.instance = rs->getString(6).asStdString();
    p.session_idx = rs->getUInt64(7);
    p.session_no = rs->getUInt64(8);
    CommitTransaction();
  });
  if (!s.ok()) return s;
  saved_journal_pos_ = p.journal_pos;
  // A new session's start set by the writer but not committed yet (the
  // connection broke) is newer than the row's: it stays, for the retry.
  session_idx_ = std::max(session_idx_, p.session_idx);
  session_no_ = std::max(session_no_, p.session_no);
  return p;
}

void MysqlStore::UseShard(std::string shard, uint32_t num, std::string journal_id) {
  shard_ = std::move(shard);
  idx_base_ = uint64_t{num} * kShardIdxSpan;
  journal_id_ = std::move(journal_id);
}

Result<uint64_t> MysqlStore::QueryNumber(const char* what, const char* query) {
  uint64_t n = 0;
  Status s = Guard(what, [&] {
    std::unique_ptr<sql::Statement> st(conn_->createStatement());
    std::unique_ptr<sql::ResultSet> rs(st->executeQuery(query));
    rs->next();
    n = rs->getUInt64(1);
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return n;
}

Result<uint64_t> MysqlStore::ReadMaxAllowedPacket() {
  return QueryNumber("read max_allowed_packet", "SELECT @@max_allowed_packet");
}

}  // namespace seqrelay
