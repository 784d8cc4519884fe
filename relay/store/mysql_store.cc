#include "store/mysql_store.h"

#include <cppconn/datatype.h>
#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <mysql_connection.h>
#include <mysql_driver.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_set>

#include "core/log.h"
#include "store/schema.h"
#include "store/store_errors.h"
#include "core/topic_filter.h"

namespace seqrelay {
namespace {

std::string Placeholders(std::size_t rows, const char* row) {
  std::string s;
  s.reserve(rows * (std::char_traits<char>::length(row) + 1));
  for (std::size_t i = 0; i < rows; ++i) {
    if (i > 0) s += ',';
    s += row;
  }
  return s;
}

sql::SQLString Bytes(std::string_view s) { return sql::SQLString(s.data(), s.size()); }
sql::SQLString Bytes(std::span<const uint8_t> s) {
  return sql::SQLString(reinterpret_cast<const char*>(s.data()), s.size());
}

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
      // Room for the packet's header and the command byte, with some to spare.
      max_query_bytes_ = static_cast<std::size_t>(std::max<uint64_t>(rs->getUInt64(1), 2048) - 1024);
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

Result<uint32_t> MysqlStore::RegisterShard(std::string_view shard, const std::vector<std::string>& filters) {
  std::vector<std::string> mine = filters;
  std::sort(mine.begin(), mine.end());
  std::string joined;
  for (const auto& f : mine) joined += (joined.empty() ? "" : "\n") + f;
  uint32_t num = 0;
  std::string refusal;
  Status s = Guard("register shard", [&] {
    std::unique_ptr<sql::Statement> st(conn_->createStatement());
    // RELAY_STATE's one row is the registry's lock: two relays registering
    // at once are checked one after the other.
    std::unique_ptr<sql::ResultSet>(st->executeQuery("SELECT K FROM RELAY_STATE WHERE K = 1 FOR UPDATE"));
    {
      // SHARD.NAME compares by its collation (case, and on MySQL 8 accents,
      // ignored): a name that differs from an existing one only so would
      // pass the checks below as another shard and then fail the INSERT
      // (1062) on every try.
      std::unique_ptr<sql::PreparedStatement> same(conn_->prepareStatement("SELECT NAME FROM SHARD WHERE NAME = ?"));
      same->setString(1, Bytes(shard));
      std::unique_ptr<sql::ResultSet> rs(same->executeQuery());
      while (rs->next() && refusal.empty()) {
        if (const std::string name = rs->getString(1).asStdString(); name != shard) {
          refusal = fmt::format("--shard '{}' is the existing shard '{}' to the database, whose shard names compare "
                                "without case (and on MySQL, accents): give the same name, or one that differs "
                                "otherwise", shard, name);
        }
      }
    }
    std::unique_ptr<sql::ResultSet> rs(
        st->executeQuery("SELECT NAME, NUM, FILTERS, OWNER, EXPIRES_AT > NOW(6) FROM SHARD ORDER BY NUM"));
    std::optional<uint32_t> own;
    uint32_t next_num = 1;
    while (rs->next() && refusal.empty()) {
      const std::string name = rs->getString(1).asStdString();
      const uint32_t n = rs->getUInt(2);
      next_num = std::max(next_num, n + 1);
      std::vector<std::string> theirs;
      std::string text = rs->getString(3).asStdString();
      for (std::size_t at = 0; at < text.size();) {
        std::size_t nl = text.find('\n', at);
        if (nl == std::string::npos) nl = text.size();
        if (nl > at) theirs.push_back(text.substr(at, nl - at));
        at = nl + 1;
      }
      if (name == shard) {
        own = n;
        std::sort(theirs.begin(), theirs.end());
        if (!theirs.empty() && theirs != mine && rs->getInt(5) == 1) {
          refusal = fmt::format(
              "shard '{}' is active on relay '{}' with --source '{}', but this relay was given '{}': relays of one "
              "shard need the same sources", shard, rs->getString(4).asStdString(), fmt::join(theirs, "' '"),
              fmt::join(mine, "' '"));
        }
        continue;
      }
      for (const auto& a : mine) {
        for (const auto& b : theirs) {
          if (refusal.empty() && FiltersOverlap(a, b)) {
            refusal = fmt::format(
                "--shard '{}' --source '{}' overlaps shard '{}', whose --source '{}' can match the same topics (a "
                "topic must have exactly one writer): give the shards disjoint filters", shard, a, name, b);
          }
        }
      }
    }
    if (!refusal.empty()) {
      conn_->rollback();
      return;
    }
    if (own) {
      num = *own;
      std::unique_ptr<sql::PreparedStatement> up(
          conn_->prepareStatement("UPDATE SHARD SET FILTERS = ? WHERE NAME = ?"));
      up->setString(1, joined);
      up->setString(2, Bytes(shard));
      up->execute();
    } else {
      num = next_num;
      std::unique_ptr<sql::PreparedStatement> ins(
          conn_->prepareStatement("INSERT INTO SHARD (NAME, NUM, FILTERS) VALUES (?, ?, ?)"));
      ins->setString(1, Bytes(shard));
      ins->setUInt(2, num);
      ins->setString(3, joined);
      ins->execute();
    }
    CommitTransaction();
  });
  if (!s.ok()) return s;
  if (!refusal.empty()) return Status::Permanent(refusal);
  return num;
}

Result<MysqlStore::Lease> MysqlStore::TryAcquireLease(std::string_view owner, int lease_ms) {
  Lease lease;
  Status s = Guard("acquire lease", [&] {
    std::unique_ptr<sql::PreparedStatement> take(conn_->prepareStatement(
        "UPDATE SHARD SET OWNER = ?, EPOCH = EPOCH + 1, EXPIRES_AT = NOW(6) + INTERVAL ? MICROSECOND, "
        "ACQUIRED_AT = NOW(6) WHERE NAME = ? AND EXPIRES_AT < NOW(6)"));
    take->setString(1, Bytes(owner));
    take->setInt64(2, int64_t{lease_ms} * 1000);
    take->setString(3, shard_);
    lease.held = take->executeUpdate() == 1;
    if (lease.held) {
      std::unique_ptr<sql::PreparedStatement> last(
          conn_->prepareStatement("SELECT JOURNAL_ID FROM SHARD WHERE NAME = ?"));
      last->setString(1, shard_);
      std::unique_ptr<sql::ResultSet> row(last->executeQuery());
      if (row->next()) lease.previous_journal = row->getString(1).asStdString();
      // The previous holder's journal position leaves the SHARD row for its
      // JOURNAL row before this holder's first batch overwrites it (schema
      // 006). The takeover holds the row, so no batch of the old epoch can
      // move it meanwhile.
      std::unique_ptr<sql::PreparedStatement> fold(conn_->prepareStatement(
          "UPDATE JOURNAL j JOIN SHARD s ON j.ID = s.JOURNAL_ID SET j.POS = GREATEST(j.POS, s.JOURNAL_POS) "
          "WHERE s.NAME = ?"));
      fold->setString(1, shard_);
      fold->execute();
      if (!journal_id_.empty()) {
        // This holder's own journal: what it hands over later goes to this
        // shard, and counts only resends taken after this epoch (schema 009).
        std::unique_ptr<sql::PreparedStatement> mark(conn_->prepareStatement(
            "UPDATE JOURNAL j JOIN SHARD s ON s.NAME = ? SET j.EPOCH = s.EPOCH, j.SHARD = s.NAME WHERE j.ID = ?"));
        mark->setString(1, shard_);
        mark->setString(2, journal_id_);
        mark->execute();
      }
    }
    std::unique_ptr<sql::PreparedStatement> read(conn_->prepareStatement(
        "SELECT OWNER, EPOCH, TIMESTAMPDIFF(MICROSECOND, NOW(6), EXPIRES_AT), "
        "TIMESTAMPDIFF(MICROSECOND, '2000-01-01', EXPIRES_AT) FROM SHARD WHERE NAME = ?"));
    read->setString(1, shard_);
    std::unique_ptr<sql::ResultSet> rs(read->executeQuery());
    if (!rs->next()) throw std::runtime_error("shard '" + shard_ + "' has no row in SHARD");
    lease.owner = rs->getString(1).asStdString();
    lease.epoch = rs->getUInt(2);
    lease.expires_in_us = rs->getInt64(3);
    lease.expires_at_us = rs->getInt64(4);
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return lease;
}

Result<bool> MysqlStore::RenewLease(uint32_t epoch, int lease_ms) {
  bool renewed = false;
  Status s = Guard("renew lease", [&] {
    std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
        "UPDATE SHARD SET EXPIRES_AT = NOW(6) + INTERVAL ? MICROSECOND WHERE NAME = ? AND EPOCH = ?"));
    ps->setInt64(1, int64_t{lease_ms} * 1000);
    ps->setString(2, shard_);
    ps->setUInt(3, epoch);
    renewed = ps->executeUpdate() == 1;
    if (++renewals_ == stop_in_renewal_) {
      LogWarn("fault injection: SIGSTOP between a lease renewal's UPDATE and its COMMIT");
      // To this thread (raise): sent to the process, another thread may take
      // it, and this one sends the COMMIT before the group stop reaches it.
      raise(SIGSTOP);
    }
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return renewed;
}

Result<uint32_t> MysqlStore::LeaseEpoch() {
  uint32_t epoch = 0;
  Status s = Guard("read the lease", [&] {
    std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement("SELECT EPOCH FROM SHARD WHERE NAME = ?"));
    ps->setString(1, shard_);
    std::unique_ptr<sql::ResultSet> rs(ps->executeQuery());
    if (rs->next()) epoch = rs->getUInt(1);
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return epoch;
}

Status MysqlStore::ReleaseLease(uint32_t epoch) {
  return Guard("release lease", [&] {
    std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
        "UPDATE SHARD SET EXPIRES_AT = NOW(6) - INTERVAL 1 MICROSECOND WHERE NAME = ? AND EPOCH = ?"));
    ps->setString(1, shard_);
    ps->setUInt(2, epoch);
    ps->execute();
    CommitTransaction();
  });
}

Result<std::string> MysqlStore::HandOver(std::span<const HandedOver> messages, uint64_t pos) {
  std::string shard = shard_;
  Status s = Guard("hand over journaled messages", [&] {
    // The shard this journal's relay last held, and the epoch it took it
    // under (its takeover wrote both): that shard's session got
    // mosquitto's resends, so its active is the one to store these, also
    // if this relay came back under another; and only TAKEN rows of later
    // epochs are resends of them. Written maybe through another node just
    // before a crash: the read is causal (ConnectTo), as a stale, older
    // epoch would count older TAKEN rows as these messages' resends.
    uint32_t epoch = 0;
    std::unique_ptr<sql::PreparedStatement> journal(
        conn_->prepareStatement("SELECT SHARD, EPOCH FROM JOURNAL WHERE ID = ?"));
    journal->setString(1, journal_id_);
    std::unique_ptr<sql::ResultSet> rs(journal->executeQuery());
    if (rs->next()) {
      shard = rs->getString(1).asStdString();
      epoch = rs->getUInt(2);
    }
    std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
        "INSERT IGNORE INTO PENDING (JOURNAL_ID, END_POS, SHARD, ID, MID, DIGEST, MSG, MSG_ID, EPOCH, SESSION_NO) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    for (const HandedOver& m : messages) {
      ps->setString(1, journal_id_);
      ps->setUInt64(2, m.end);
      ps->setString(3, shard);
      ps->setString(4, Bytes(m.topic));
      ps->setUInt(5, m.mid);
      ps->setUInt64(6, Digest(m.topic, m.payload));
      ps->setString(7, Bytes(m.payload));
      if (m.msg_id.empty()) {
        ps->setNull(8, sql::DataType::VARBINARY);
      } else {
        ps->setString(8, Bytes(m.msg_id));
      }
      ps->setUInt(9, epoch);
      ps->setUInt64(10, m.session_no);
      ps->execute();
    }
    std::unique_ptr<sql::PreparedStatement> up(
        conn_->prepareStatement("UPDATE JOURNAL SET POS = GREATEST(POS, ?) WHERE ID = ?"));
    up->setUInt64(1, pos);
    up->setString(2, journal_id_);
    up->execute();
    CommitTransaction();
    saved_journal_pos_ = std::max(saved_journal_pos_, pos);
  });
  if (!s.ok()) return s;
  return shard;
}

Result<std::vector<MysqlStore::PendingRow>> MysqlStore::ReadPending(std::size_t limit, std::size_t max_bytes) {
  std::vector<PendingRow> rows;
  Status s = Guard("read handed-over messages", [&] {
    // One journal a round, the one whose oldest record left was handed
    // over first (no payload read for the choice), its records in their own
    // order (END_POS), whatever the database's clock did between two of its
    // chunks. Payloads can be large (up to --max-payload each, or the larger
    // one of the relay that took them): their sizes are read first, in the
    // same snapshot, by the primary key, and then only the rows that fit
    // `max_bytes`, at least one.
    std::string journal;
    {
      std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
          "SELECT JOURNAL_ID FROM PENDING WHERE SHARD = ? GROUP BY JOURNAL_ID ORDER BY MIN(HANDED_AT), JOURNAL_ID "
          "LIMIT 1"));
      ps->setString(1, shard_);
      std::unique_ptr<sql::ResultSet> rs(ps->executeQuery());
      if (!rs->next()) {
        CommitTransaction();
        return;
      }
      journal = rs->getString(1).asStdString();
    }
    auto query = [&](const char* columns, std::size_t n) {
      std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
          fmt::format("SELECT {} FROM PENDING p WHERE p.JOURNAL_ID = ? AND p.SHARD = ? ORDER BY p.END_POS LIMIT ?",
                      columns)));
      ps->setString(1, journal);
      ps->setString(2, shard_);
      ps->setUInt64(3, n);
      return std::unique_ptr<sql::ResultSet>(ps->executeQuery());
    };
    std::size_t fit = 0;
    {
      std::unique_ptr<sql::ResultSet> rs = query("LENGTH(p.MSG)", limit);
      std::size_t total = 0;
      while (rs->next()) {
        const std::size_t bytes = rs->getUInt64(1);
        if (fit > 0 && total + bytes > max_bytes) break;
        total += bytes;
        ++fit;
      }
    }
    if (fit > 0) {
      std::unique_ptr<sql::ResultSet> rs = query(
          "p.JOURNAL_ID, p.END_POS, p.MID, p.ID, p.MSG, EXISTS (SELECT 1 FROM TAKEN t WHERE t.SHARD = p.SHARD "
          "AND t.MID = p.MID AND t.DIGEST = p.DIGEST AND t.EPOCH > p.EPOCH AND t.SESSION_NO = p.SESSION_NO), "
          "COALESCE(p.MSG_ID, ''), p.SESSION_NO",
          fit);
      while (rs->next()) {
        rows.push_back({rs->getString(1).asStdString(), rs->getUInt64(2), static_cast<uint16_t>(rs->getUInt(3)),
                        rs->getString(4).asStdString(), rs->getString(5).asStdString(), rs->getInt(6) == 1,
                        rs->getString(7).asStdString(), rs->getUInt64(8)});
      }
    }
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return rows;
}

Status MysqlStore::DeletePending(std::span<const std::pair<std::string, uint64_t>> rows) {
  return Guard("delete handed-over messages", [&] {
    std::unique_ptr<sql::PreparedStatement> ps(
        conn_->prepareStatement("DELETE FROM PENDING WHERE JOURNAL_ID = ? AND END_POS = ?"));
    for (const auto& [journal, end] : rows) {
      ps->setString(1, journal);
      ps->setUInt64(2, end);
      ps->execute();
    }
    CommitTransaction();
  });
}

Status MysqlStore::PruneTaken(uint32_t epoch) {
  return Guard("prune TAKEN", [&] {
    // A row of epoch t counts only for a handed-over message of an older
    // epoch: the shard's PENDING rows, and the records of the journals
    // whose relays took the shard before t (one that is down may come back
    // with some). Rows no newer than the oldest of those count for nobody.
    // A journal that never comes back keeps the rest for kTakenEpochsKept
    // takeovers at most.
    std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
        "DELETE FROM TAKEN WHERE SHARD = ? AND (EPOCH + ? < ? OR EPOCH <= LEAST("
        "COALESCE((SELECT MIN(EPOCH) FROM JOURNAL WHERE SHARD = ? AND EPOCH > 0), ?), "
        "COALESCE((SELECT MIN(EPOCH) FROM PENDING WHERE SHARD = ?), ?)))"));
    ps->setString(1, shard_);
    ps->setUInt(2, kTakenEpochsKept);
    ps->setUInt(3, epoch);
    ps->setString(4, shard_);
    ps->setUInt(5, epoch);
    ps->setString(6, shard_);
    ps->setUInt(7, epoch);
    ps->execute();
    CommitTransaction();
  });
}

Status MysqlStore::RegisterJournal(uint64_t initial_pos) {
  return Guard("register journal", [&] {
    std::unique_ptr<sql::PreparedStatement> ps(
        conn_->prepareStatement("INSERT IGNORE INTO JOURNAL (ID, SHARD, POS) VALUES (?, ?, ?)"));
    ps->setString(1, journal_id_);
    ps->setString(2, shard_);
    ps->setUInt64(3, initial_pos);
    ps->execute();
    CommitTransaction();
  });
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

Result<std::vector<MysqlStore::TopicRow>> MysqlStore::ResolveTopics(std::span<const std::string_view> topics,
                                                                    std::size_t max_new) {
  std::vector<TopicRow> rows;
  auto select = [&](std::span<const std::string_view> which, bool created) {
    std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
        "SELECT t.FRAME_ID, t.ID, COALESCE((SELECT MAX(m.SEQ) FROM MSG m WHERE m.ID = t.ID), 0) FROM TOPIC t "
        "WHERE t.ID IN (" + Placeholders(which.size(), "?") + ")"));
    for (std::size_t i = 0; i < which.size(); ++i) ps->setString(i + 1, Bytes(which[i]));
    std::unique_ptr<sql::ResultSet> rs(ps->executeQuery());
    while (rs->next()) rows.push_back({rs->getString(2).asStdString(), rs->getUInt(1), rs->getUInt64(3), created});
  };
  std::size_t expected = topics.size();
  Status s = Guard("resolve topics", [&] {
    rows.clear();
    select(topics, false);
    if (rows.size() < topics.size()) {
      std::unordered_set<std::string_view> found;
      for (const auto& r : rows) found.insert(r.topic);
      std::vector<std::string_view> missing;
      for (auto t : topics) {
        if (!found.contains(t) && missing.size() < max_new) missing.push_back(t);
      }
      expected = rows.size() + missing.size();
      if (!missing.empty()) {
        std::unique_ptr<sql::PreparedStatement> ins(
            conn_->prepareStatement("INSERT INTO TOPIC (ID) VALUES " + Placeholders(missing.size(), "(?)")));
        for (std::size_t i = 0; i < missing.size(); ++i) ins->setString(i + 1, Bytes(missing[i]));
        ins->execute();
        CommitTransaction();
        select(missing, true);
      }
    }
    CommitTransaction();
  });
  if (!s.ok()) return s;
  if (rows.size() != expected) {
    return Status::Error(fmt::format("resolve topics: expected {}, found {}", expected, rows.size()));
  }
  return rows;
}

Result<uint64_t> MysqlStore::CountTopics() { return QueryNumber("count topics", "SELECT COUNT(*) FROM TOPIC"); }

sql::PreparedStatement& MysqlStore::Repeated(std::vector<std::unique_ptr<sql::PreparedStatement>>& cache,
                                             std::size_t rows, const char* head, const char* row,
                                             const char* separator, const char* tail) {
  const std::size_t slot = std::countr_zero(rows);  // rows is a power of two
  if (cache.size() <= slot) cache.resize(slot + 1);
  if (!cache[slot]) {
    std::string text = head;
    for (std::size_t i = 0; i < rows; ++i) {
      if (i > 0) text += separator;
      text += row;
    }
    text += tail;
    cache[slot].reset(conn_->prepareStatement(text));
  }
  return *cache[slot];
}

Result<std::vector<MysqlStore::MsgIdKey>> MysqlStore::FindSequencedMsgIds(std::span<const MsgIdKey> keys) {
  std::vector<MsgIdKey> found;
  Status s = Guard("look up msg-ids", [&] {
    std::span<const MsgIdKey> rest = keys;
    while (!rest.empty()) {
      const std::size_t n = std::min<std::size_t>(std::bit_floor(rest.size()), 256);
      // Not a causal read (ConnectTo): this relay alone writes its topics'
      // DEDUPE rows while it holds the lease, and the causal ReadProgress
      // after its takeover or any reconnect saw every row written before.
      // A wait for the cluster per batch would be for nothing. (SET
      // STATEMENT is MariaDB's; another server with wsrep_sync_wait, such
      // as Percona XtraDB Cluster, waits.)
      // Only records within the window: one past it, not purged yet (the
      // purge runs every few seconds, and drains a backlog 1,000 rows at a
      // time), is of a message the publisher may send again as new, whose
      // commit then replaces the record (CommitBatch).
      sql::PreparedStatement& ps = Repeated(
          find_msg_ids_, n,
          sync_wait_ && mariadb_
              ? "SET STATEMENT wsrep_sync_wait = 0 FOR SELECT ID, MSG_ID FROM DEDUPE WHERE SEEN_AT >= NOW(6) - "
                "INTERVAL ? SECOND AND ("
              : "SELECT ID, MSG_ID FROM DEDUPE WHERE SEEN_AT >= NOW(6) - INTERVAL ? SECOND AND (",
          "(ID = ? AND MSG_ID = ?)", " OR ", ")");
      unsigned p = 1;
      ps.setUInt64(p++, config_.dedupe_window_s);
      for (const MsgIdKey& k : rest.first(n)) {
        ps.setString(p++, Bytes(k.topic));
        ps.setString(p++, Bytes(k.msg_id));
      }
      std::unique_ptr<sql::ResultSet> rs(ps.executeQuery());
      while (rs->next()) {
        const std::string topic = rs->getString(1).asStdString(), msg_id = rs->getString(2).asStdString();
        // Handed back as views into `keys` (byte-exact, like the key).
        for (const MsgIdKey& k : rest.first(n)) {
          if (k.topic == topic && k.msg_id == msg_id) {
            found.push_back(k);
            break;
          }
        }
      }
      rest = rest.subspan(n);
    }
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return found;
}

Result<std::vector<std::string>> MysqlStore::ListTopics(std::string_view after, std::size_t limit) {
  std::vector<std::string> topics;
  Status s = Guard("list topics", [&] {
    std::unique_ptr<sql::PreparedStatement> ps(
        conn_->prepareStatement("SELECT ID FROM TOPIC WHERE ID > ? ORDER BY ID LIMIT ?"));
    ps->setString(1, Bytes(after));
    ps->setUInt64(2, limit);
    std::unique_ptr<sql::ResultSet> rs(ps->executeQuery());
    while (rs->next()) topics.push_back(rs->getString(1).asStdString());
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return topics;
}

Result<std::vector<MysqlStore::IdxRange>> MysqlStore::PublishedAbove() {
  std::vector<IdxRange> ranges;
  Status s = Guard("read the other shards' acknowledged rows", [&] {
    std::unique_ptr<sql::PreparedStatement> ps(
        conn_->prepareStatement("SELECT NUM, PUBLISHED_IDX FROM SHARD WHERE NUM > ? ORDER BY NUM"));
    ps->setUInt64(1, idx_base_ / kShardIdxSpan);
    std::unique_ptr<sql::ResultSet> rs(ps->executeQuery());
    while (rs->next()) {
      const uint64_t base = rs->getUInt64(1) * kShardIdxSpan;
      const uint64_t to = std::min(rs->getUInt64(2), base + kShardIdxSpan - 1);
      if (to > base) ranges.push_back({base + 1, to});
    }
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return ranges;
}

Result<MysqlStore::Trimmed> MysqlStore::TrimTopic(std::string_view topic, const RetentionRule& rule,
                                                  uint64_t published_idx, const std::vector<IdxRange>& published_above,
                                                  std::size_t max_rows, uint64_t max_bytes) {
  // Acknowledged on seq/T: this shard's rows up to its watermark (and the
  // lower shards' below it), and the higher shards' acknowledged ones. The
  // values are numbers: written into the statements.
  std::string acknowledged = "(idx <= ?";
  for (const IdxRange& r : published_above) acknowledged += fmt::format(" OR idx BETWEEN {} AND {}", r.from, r.to);
  acknowledged += ")";
  Trimmed trimmed;
  Status s = Guard("trim topic", [&] {
    trimmed = {};
    NextTransactionReadCommitted();
    // The topic's ends (two index dives on (ID, SEQ)).
    std::unique_ptr<sql::PreparedStatement> ends(
        conn_->prepareStatement("SELECT COALESCE(MIN(SEQ), 0), COALESCE(MAX(SEQ), 0) FROM MSG WHERE ID = ?"));
    ends->setString(1, Bytes(topic));
    std::unique_ptr<sql::ResultSet> rs(ends->executeQuery());
    rs->next();
    const uint64_t first = rs->getUInt64(1), last = rs->getUInt64(2);
    if (first == 0 || first == last) {
      CommitTransaction();
      return;
    }
    // Keep SEQ >= keep: the strictest of the limits, at most `max_rows`
    // rows past first, and never the newest row.
    uint64_t keep = first;
    if (rule.max_count != 0 && last >= rule.max_count) keep = std::max(keep, last - rule.max_count + 1);
    if (rule.max_age_s != 0) {
      // The first row young enough among the next `max_rows`: rows are in
      // SEQ order by arrival, so the ones before it are the old ones (a
      // prefix, whatever a clock did).
      std::unique_ptr<sql::PreparedStatement> young(conn_->prepareStatement(
          "SELECT MIN(SEQ) FROM MSG WHERE ID = ? AND SEQ BETWEEN ? AND ? AND RECEIVED_AT >= NOW(6) - INTERVAL ? "
          "SECOND"));
      young->setString(1, Bytes(topic));
      young->setUInt64(2, first);
      young->setUInt64(3, first + max_rows - 1);
      young->setUInt64(4, rule.max_age_s);
      std::unique_ptr<sql::ResultSet> y(young->executeQuery());
      y->next();
      keep = std::max(keep, y->isNull(1) ? first + max_rows : y->getUInt64(1));
    }
    bool cut = keep >= first + max_rows;
    keep = std::min({keep, last, first + max_rows});
    if (keep > first) {
      // The rows' sizes, to stop before `max_bytes` (FitRows: in growing
      // chunks, as LENGTH reads a payload whole). Cut after the last row
      // that fits: the rows between it and the one that did not are not
      // acknowledged yet, which the delete leaves anyway.
      std::unique_ptr<sql::PreparedStatement> sizes(conn_->prepareStatement(fmt::format(
          "SELECT SEQ, LENGTH(MSG) FROM MSG WHERE ID = ? AND SEQ >= ? AND SEQ < ? AND {} ORDER BY SEQ LIMIT ?",
          acknowledged)));
      sizes->setString(1, Bytes(topic));
      sizes->setUInt64(3, keep);
      sizes->setUInt64(4, published_idx);
      const Fit fit = FitRows(*sizes, 2, 5, first, max_rows, max_bytes);
      const uint64_t rows = fit.rows;
      if (fit.full) {
        keep = fit.last + 1;
        cut = true;
      }
      if (rows > 0) {
        std::unique_ptr<sql::PreparedStatement> del(
            conn_->prepareStatement(fmt::format("DELETE FROM MSG WHERE ID = ? AND SEQ < ? AND {}", acknowledged)));
        del->setString(1, Bytes(topic));
        del->setUInt64(2, keep);
        del->setUInt64(3, published_idx);
        trimmed.deleted = static_cast<uint64_t>(del->executeUpdate());
      }
      // More may go at once only if a bound cut this delete short and it
      // deleted what it counted: a row not yet acknowledged on seq/T (the
      // newest are the last so) holds the rest back until the next pass.
      trimmed.more = cut && rows > 0 && trimmed.deleted == rows;
    }
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return trimmed;
}

Result<uint64_t> MysqlStore::PurgeMsgIds(uint64_t window_s, std::size_t limit) {
  uint64_t deleted = 0;
  Status s = Guard("purge msg-ids", [&] {
    NextTransactionReadCommitted();
    // Whatever shard wrote a record, and with whatever window: each
    // carries its end (schema 12). Those from before it carry none and age
    // out by this relay's window.
    std::unique_ptr<sql::PreparedStatement> expired(conn_->prepareStatement(
        "DELETE FROM DEDUPE WHERE EXPIRES_AT < NOW(6) ORDER BY EXPIRES_AT LIMIT ?"));
    expired->setUInt64(1, limit);
    deleted = static_cast<uint64_t>(expired->executeUpdate());
    // With the window at zero (msg-ids ignored), none: another shard's
    // records from before schema 12 still count by its own window.
    if (deleted < limit && window_s > 0) {
      std::unique_ptr<sql::PreparedStatement> older(
          conn_->prepareStatement("DELETE FROM DEDUPE WHERE EXPIRES_AT IS NULL AND SEEN_AT < NOW(6) - INTERVAL ? "
                                  "SECOND ORDER BY EXPIRES_AT, SEEN_AT LIMIT ?"));
      older->setUInt64(1, window_s);
      older->setUInt64(2, limit - deleted);
      deleted += static_cast<uint64_t>(older->executeUpdate());
    }
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return deleted;
}

Status MysqlStore::CommitBatch(std::span<const Message> batch, uint64_t published_idx, uint64_t journal_pos,
                               CommitTiming* timing) {
  using Clock = std::chrono::steady_clock;
  const auto started = Clock::now();
  return Guard("commit batch", [&] {
    journal_pos = std::max(journal_pos, saved_journal_pos_);
    MultiStatement& sql = commit_sql_;
    sql.Clear(max_query_bytes_);
    // The fence, first: a relay whose epoch has moved on writes nothing, and
    // the shard's row stays locked until COMMIT, so that no takeover (which
    // updates the same row) can begin while this transaction writes. The
    // journal's position rides on the same row (schema 006), so the batch
    // updates one row besides its inserts. The row always changes
    // (COMMITS), so the fence holds exactly when the statement changed a row.
    std::string fence = fmt::format("UPDATE SHARD SET COMMITS = COMMITS + 1, PUBLISHED_IDX = {}, JOURNAL_ID = ",
                                    published_idx);
    AppendHex(fence, journal_id_);
    fmt::format_to(std::back_inserter(fence), ", JOURNAL_POS = {}, SESSION_IDX = {}, SESSION_NO = {} WHERE NAME = ",
                   journal_pos, session_idx_, session_no_);
    AppendHex(fence, shard_);
    fmt::format_to(std::back_inserter(fence), " AND EPOCH = {}", epoch_);
    sql.Add(fence);

    sql.Open("INSERT INTO MSG (idx, ID, QOS, SEQ, MSG, EPOCH, MID, SUB_TAG) VALUES ");
    for (const Message& m : batch) {
      sql.Row(m.idx, Hex(m.topic), m.frame[kFrameHeaderSize - 1], m.seq, Hex(m.payload()), epoch_, m.mid, m.sub_tag);
    }
    sql.Close();
    // The publishers' msg-ids, with the message: a resend that comes after
    // this commit finds them (Relay::DropResends).
    // A record past the window that the purge has not reached yet is of an
    // older message: replaced.
    // Each record ends after this relay's window, which another shard's
    // purge honours (schema 12).
    sql.Open("INSERT INTO DEDUPE (ID, MSG_ID, SEQ, SEEN_AT, EXPIRES_AT) VALUES ",
             " ON DUPLICATE KEY UPDATE SEQ = VALUES(SEQ), SEEN_AT = VALUES(SEEN_AT), EXPIRES_AT = VALUES(EXPIRES_AT)");
    for (const Message& m : batch) {
      if (!m.msg_id.empty()) sql.Row(Hex(m.topic), Hex(m.msg_id), m.seq, Raw{"NOW(6)"}, Raw{dedupe_expiry_});
    }
    sql.Close();
    // Deliveries of a resumed session (TAKEN), and handed-over messages
    // leaving PENDING.
    sql.Open("INSERT INTO TAKEN (SHARD, MID, DIGEST, EPOCH, SESSION_NO) VALUES ",
             " ON DUPLICATE KEY UPDATE EPOCH = VALUES(EPOCH)");
    for (const Message& m : batch) {
      if (m.resumed_mid != 0) {
        sql.Row(Hex(shard_), m.resumed_mid, Digest(m.topic, m.payload()), epoch_, m.session_no);
      }
    }
    sql.Close();
    sql.Open("DELETE FROM PENDING WHERE (JOURNAL_ID, END_POS) IN (", ")");
    for (const Message& m : batch) {
      if (!m.pending_journal.empty()) sql.Row(Hex(m.pending_journal), m.pending_end);
    }
    sql.Close();

    // One round trip per query (one, unless the batch outgrows
    // max_allowed_packet). Every statement's result is read before the next
    // query; the server stops a query at its first error, which is thrown
    // here, and the transaction stays open for the rollback below or the
    // caller's reconnect.
    if (!text_) text_.reset(conn_->createStatement());
    const std::span<const MultiStatement::Query> queries = sql.queries();
    for (std::size_t k = 0; k < queries.size(); ++k) {
      text_->execute(queries[k].text);
      // The fence is the first statement, and the only result whose count
      // Connector/C++ reports (getUpdateCount after getMoreResults does not).
      const bool lease_lost = k == 0 && text_->getUpdateCount() == 0;
      try {
        for (std::size_t i = 1; i < queries[k].statements; ++i) text_->getMoreResults();
      } catch (const sql::SQLException&) {
        if (!lease_lost) throw;  // else a row the new holder wrote meanwhile: the lease is the news
      }
      if (lease_lost) {
        conn_->rollback();
        throw sql::SQLException(
            fmt::format("the lease of shard '{}' is no longer held under epoch {} (another relay took it over); "
                        "rolled back", shard_, epoch_),
            "HY000", kLeaseLostCode);
      }
    }
    if (!batch.empty() && ++batches_tried_ == kill_before_commit_) {
      LogWarn("fault injection: killing the database session before COMMIT of batch {}", batches_tried_);
      try {
        text_->execute("KILL CONNECTION_ID()");
      } catch (const sql::SQLException&) {
        // 1927 "Connection was killed": what this hook is for.
      }
    }
    const auto committing = Clock::now();
    CommitTransaction();
    saved_journal_pos_ = journal_pos;
    if (timing) *timing = {committing - started, Clock::now() - committing};
  });
}

Status MysqlStore::SavePublished(uint64_t published_idx) {
  return CommitBatch({}, published_idx, saved_journal_pos_);
}

Result<std::vector<MysqlStore::LiveRow>> MysqlStore::ReadSessionTail(uint64_t last_idx, std::size_t limit) {
  std::vector<LiveRow> rows;
  Status s = Guard("read the session's newest rows", [&] {
    std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
        "SELECT idx, MID FROM MSG WHERE idx >= ? AND idx <= ? AND MID <> 0 ORDER BY idx DESC LIMIT ?"));
    ps->setUInt64(1, std::max(session_idx_, idx_base_ + 1));
    ps->setUInt64(2, std::min(last_idx, idx_base_ + kShardIdxSpan - 1));
    ps->setUInt64(3, limit);
    std::unique_ptr<sql::ResultSet> rs(ps->executeQuery());
    while (rs->next()) rows.push_back({rs->getUInt64(1), static_cast<uint16_t>(rs->getUInt(2))});
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return rows;
}

Result<std::optional<MysqlStore::RowContent>> MysqlStore::ReadRow(uint64_t idx) {
  std::optional<RowContent> row;
  Status s = Guard("read a row", [&] {
    std::unique_ptr<sql::PreparedStatement> ps(
        conn_->prepareStatement("SELECT ID, MSG, SUB_TAG FROM MSG WHERE idx = ?"));
    ps->setUInt64(1, idx);
    std::unique_ptr<sql::ResultSet> rs(ps->executeQuery());
    if (rs->next()) row.emplace(RowContent{rs->getString(1).asStdString(), rs->getString(2).asStdString(), rs->getUInt(3)});
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return row;
}

Result<std::vector<MysqlStore::StoredRow>> MysqlStore::ReadRowsAfter(uint64_t after_idx, std::size_t limit,
                                                                     std::size_t max_bytes) {
  std::vector<StoredRow> rows;
  Status s = Guard("read rows", [&] {
    // The sizes first: a chunk of 1,000 rows of 1 MiB each held a GiB
    // twice over (until 2026-12-06).
    const uint64_t first = std::max(after_idx, idx_base_) + 1;
    std::unique_ptr<sql::PreparedStatement> sizes(conn_->prepareStatement(
        "SELECT idx, LENGTH(MSG) FROM MSG WHERE idx >= ? AND idx < ? ORDER BY idx LIMIT ?"));
    sizes->setUInt64(2, idx_base_ + kShardIdxSpan);
    const Fit fit = FitRows(*sizes, 1, 3, first, limit, max_bytes);
    if (fit.rows == 0) {
      CommitTransaction();
      return;
    }
    std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
        "SELECT m.idx, t.FRAME_ID, m.SEQ, m.QOS, m.ID, m.MSG FROM MSG m JOIN TOPIC t ON t.ID = m.ID "
        "WHERE m.idx >= ? AND m.idx <= ? ORDER BY m.idx LIMIT ?"));
    ps->setUInt64(1, first);
    ps->setUInt64(2, fit.last);
    ps->setUInt64(3, fit.rows);
    std::unique_ptr<sql::ResultSet> rs(ps->executeQuery());
    while (rs->next()) {
      rows.push_back({rs->getUInt64(1), rs->getUInt(2), rs->getUInt64(3), static_cast<uint8_t>(rs->getInt(4)),
                      rs->getString(5).asStdString(), rs->getString(6).asStdString()});
    }
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return rows;
}

}  // namespace seqrelay

namespace seqrelay {

Result<std::optional<MysqlStore::TopicRow>> MysqlStore::FindTopic(const std::optional<std::string>& topic,
                                                                  std::optional<uint32_t> id) {
  std::optional<TopicRow> row;
  Status s = Guard("find topic", [&] {
    std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
        std::string("SELECT t.FRAME_ID, t.ID, COALESCE((SELECT MAX(m.SEQ) FROM MSG m WHERE m.ID = t.ID), 0), "
                    "COALESCE((SELECT MIN(m.SEQ) FROM MSG m WHERE m.ID = t.ID), 0) FROM TOPIC t WHERE ") +
        (topic ? "t.ID = ?" : "t.FRAME_ID = ?")));
    if (topic) {
      ps->setString(1, Bytes(*topic));
    } else {
      ps->setUInt(1, id.value_or(0));
    }
    std::unique_ptr<sql::ResultSet> rs(ps->executeQuery());
    if (rs->next()) {
      row = TopicRow{.topic = rs->getString(2).asStdString(), .id = rs->getUInt(1), .last_seq = rs->getUInt64(3),
                     .first_seq = rs->getUInt64(4)};
    }
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return row;
}

MysqlStore::Fit MysqlStore::FitRows(sql::PreparedStatement& sizes, int from_param, int limit_param, uint64_t from,
                                    std::size_t limit, std::size_t max_bytes) {
  const uint64_t largest = static_cast<uint64_t>(std::max(config_.max_payload, 1));
  uint64_t chunk = std::clamp<uint64_t>(max_bytes / largest + 1, 1, std::max<std::size_t>(limit, 1));
  Fit fit;
  uint64_t total = 0;
  for (bool more = true, full = false; more && !full && fit.rows < limit;) {
    const uint64_t asked = std::min<uint64_t>(chunk, limit - fit.rows);
    sizes.setUInt64(from_param, fit.rows == 0 ? from : fit.last + 1);
    sizes.setUInt64(limit_param, asked);
    std::unique_ptr<sql::ResultSet> rs(sizes.executeQuery());
    uint64_t got = 0;
    while (rs->next()) {
      ++got;
      const uint64_t bytes = rs->getUInt64(2);
      if (fit.rows > 0 && total + bytes > max_bytes) {
        full = fit.full = true;
        break;
      }
      total += bytes;
      ++fit.rows;
      fit.last = rs->getUInt64(1);
    }
    more = got == asked;
    chunk = std::min<uint64_t>(chunk * 4, limit);
  }
  return fit;
}

Result<std::vector<MysqlStore::RangeRow>> MysqlStore::ReadRange(std::string_view topic, uint64_t from, uint64_t to,
                                                                std::size_t limit, std::size_t max_bytes) {
  std::vector<RangeRow> rows;
  Status s = Guard("read range", [&] {
    // Payloads can be large: up to --max-payload each, and rows stored under
    // an earlier, larger --max-payload larger still. So their sizes are read
    // first, and then only the rows that fit, at least one.
    // The topic's rows in [from, to], at most `limit`: `columns` of each.
    auto query = [&](const char* columns) {
      std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
          fmt::format("SELECT {} FROM MSG WHERE ID = ? AND SEQ BETWEEN ? AND ? ORDER BY SEQ LIMIT ?", columns)));
      ps->setString(1, Bytes(topic));
      ps->setUInt64(2, from);
      ps->setUInt64(3, to);
      ps->setUInt64(4, limit);
      return std::unique_ptr<sql::ResultSet>(ps->executeQuery());
    };
    {
      std::unique_ptr<sql::PreparedStatement> sizes(conn_->prepareStatement(
          "SELECT SEQ, LENGTH(MSG) FROM MSG WHERE ID = ? AND SEQ BETWEEN ? AND ? ORDER BY SEQ LIMIT ?"));
      sizes->setString(1, Bytes(topic));
      sizes->setUInt64(3, to);
      const Fit fit = FitRows(*sizes, 2, 4, from, limit, max_bytes);
      if (fit.rows == 0) {
        CommitTransaction();
        return;
      }
      limit = fit.rows;
      to = fit.last;
    }
    // Fault injection for the tests: a pause between the two statements,
    // each of which reads its own snapshot (READ COMMITTED).
    static const long pause_ms = [] {
      const char* ms = std::getenv("SEQTEST_PAUSE_IN_RANGE_READ_MS");
      return ms ? std::strtol(ms, nullptr, 10) : 0L;
    }();
    if (pause_ms > 0) {
      LogWarn("fault injection: pausing {} ms between a range read's two statements", pause_ms);
      std::this_thread::sleep_for(std::chrono::milliseconds(pause_ms));
    }
    std::unique_ptr<sql::ResultSet> rs = query("SEQ, QOS, MSG");
    while (rs->next()) {
      rows.push_back({rs->getUInt64(1), static_cast<uint8_t>(rs->getInt(2)), rs->getString(3).asStdString()});
    }
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return rows;
}

Result<std::vector<MysqlStore::TopicSpan>> MysqlStore::TopicSpans(uint32_t after, std::size_t limit,
                                                                  const std::optional<std::string>& topic) {
  std::vector<TopicSpan> spans;
  Status s = Guard("topic spans", [&] {
    // ORDER BY ... LIMIT 1 on the (ID, SEQ) key: one index entry each, where
    // a correlated MIN or MAX may read every row of the topic.
    std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
        std::string("SELECT t.FRAME_ID, t.ID, "
                    "COALESCE((SELECT m.SEQ FROM MSG m WHERE m.ID = t.ID ORDER BY m.SEQ LIMIT 1), 0), "
                    "COALESCE((SELECT m.SEQ FROM MSG m WHERE m.ID = t.ID ORDER BY m.SEQ DESC LIMIT 1), 0) "
                    "FROM TOPIC t WHERE ") +
        (topic ? "t.ID = ?" : "t.FRAME_ID > ? ORDER BY t.FRAME_ID LIMIT ?")));
    if (topic) {
      ps->setString(1, Bytes(*topic));
    } else {
      ps->setUInt(1, after);
      ps->setUInt64(2, limit);
    }
    std::unique_ptr<sql::ResultSet> rs(ps->executeQuery());
    while (rs->next()) {
      spans.push_back({.topic = rs->getString(2).asStdString(), .id = rs->getUInt(1), .first_seq = rs->getUInt64(3),
                       .last_seq = rs->getUInt64(4)});
    }
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return spans;
}

Result<std::vector<MysqlStore::WindowCount>> MysqlStore::CountRows(const std::vector<SeqWindow>& windows) {
  std::vector<WindowCount> counts(windows.size());
  if (windows.empty()) return counts;
  Status s = Guard("count rows", [&] {
    // One statement, so one read: a range of the (ID, SEQ) key per window,
    // numbered, with the topic's first SEQ and the first above the window
    // (one entry of the same key each).
    std::string sql;
    for (std::size_t i = 0; i < windows.size(); ++i) {
      if (i > 0) sql += " UNION ALL ";
      sql += fmt::format(
          "SELECT {}, COUNT(*), COALESCE((SELECT f.SEQ FROM MSG f WHERE f.ID = ? ORDER BY f.SEQ LIMIT 1), 0), "
          "COALESCE((SELECT n.SEQ FROM MSG n WHERE n.ID = ? AND n.SEQ > ? ORDER BY n.SEQ LIMIT 1), 0) "
          "FROM MSG WHERE ID = ? AND SEQ BETWEEN ? AND ?",
          i);
    }
    std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(sql));
    for (std::size_t i = 0; i < windows.size(); ++i) {
      const auto at = static_cast<unsigned>(6 * i);
      ps->setString(at + 1, Bytes(windows[i].topic));
      ps->setString(at + 2, Bytes(windows[i].topic));
      ps->setUInt64(at + 3, windows[i].to);
      ps->setString(at + 4, Bytes(windows[i].topic));
      ps->setUInt64(at + 5, windows[i].from);
      ps->setUInt64(at + 6, windows[i].to);
    }
    std::unique_ptr<sql::ResultSet> rs(ps->executeQuery());
    std::vector<bool> seen(windows.size(), false);
    while (rs->next()) {
      const uint64_t i = rs->getUInt64(1);
      if (i >= counts.size() || seen[i]) throw std::runtime_error(fmt::format("count rows: window {} twice or unknown", i));
      seen[i] = true;
      counts[i] = {.rows = rs->getUInt64(2), .first_seq = rs->getUInt64(3), .next_seq = rs->getUInt64(4)};
    }
    if (std::count(seen.begin(), seen.end(), true) != static_cast<std::ptrdiff_t>(windows.size())) {
      throw std::runtime_error("count rows: a window's count did not come back");
    }
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return counts;
}

Result<std::vector<std::pair<uint64_t, uint64_t>>> MysqlStore::MissingRanges(std::string_view topic, uint64_t from,
                                                                             uint64_t to, std::size_t limit) {
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  Status s = Guard("missing ranges", [&] {
    // The rows of lo..to between two markers, lo - 1 and to + 1, so that a
    // gap at either end of the window shows too (lo: from, or the topic's
    // first SEQ if retention deleted up to it).
    std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
        "WITH b AS (SELECT GREATEST(?, COALESCE((SELECT f.SEQ FROM MSG f WHERE f.ID = ? ORDER BY f.SEQ LIMIT 1), 0)) "
        "AS lo) "
        "SELECT SEQ + 1, NEXT_SEQ - 1 FROM (SELECT SEQ, LEAD(SEQ) OVER (ORDER BY SEQ) AS NEXT_SEQ FROM ("
        "SELECT b.lo - 1 AS SEQ FROM b UNION ALL "
        "SELECT m.SEQ FROM MSG m, b WHERE m.ID = ? AND m.SEQ BETWEEN b.lo AND ? UNION ALL "
        "SELECT ? + 1) s) x WHERE NEXT_SEQ > SEQ + 1 AND SEQ + 1 <= ? ORDER BY SEQ LIMIT ?"));
    ps->setUInt64(1, from);
    ps->setString(2, Bytes(topic));
    ps->setString(3, Bytes(topic));
    ps->setUInt64(4, to);
    ps->setUInt64(5, to);
    ps->setUInt64(6, to);
    ps->setUInt64(7, limit);
    std::unique_ptr<sql::ResultSet> rs(ps->executeQuery());
    while (rs->next()) ranges.emplace_back(rs->getUInt64(1), rs->getUInt64(2));
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return ranges;
}

}  // namespace seqrelay
