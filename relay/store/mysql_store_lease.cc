// MysqlStore: the shard and its lease (SHARD: registration, takeover,
// renewal, release) and a takeover's hand-over of the previous writer's
// journal (PENDING, TAKEN, JOURNAL).
#include "store/mysql_store.h"

#include <cppconn/datatype.h>
#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <mysql_connection.h>
#include <signal.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <stdexcept>
#include <utility>

#include "core/log.h"
#include "core/topic_filter.h"
#include "store/mysql_store_values.h"

namespace seqrelay {

using mysql_values::Bytes;

Result<uint32_t> MysqlStore::RegisterShard(std::string_view shard, const std::vector<std::string>& filters) {
  std::vector<std::string> mine = filters;
  std::sort(mine.begin(), mine.end());
  const std::string joined = JoinFilterLines(mine);
  uint32_t num = 0;
  std::vector<std::string> given_up;
  std::string refusal;
  Status s = Guard("register shard", [&] {
    given_up.clear();
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
    std::unique_ptr<sql::ResultSet> rs(st->executeQuery(
        "SELECT s.NAME, s.NUM, s.FILTERS, s.OWNER, s.EXPIRES_AT > NOW(6), COALESCE(x.UNSUBSCRIBING, '') FROM SHARD s "
        "LEFT JOIN SHARD_SESSION x ON x.NAME = s.NAME ORDER BY s.NUM"));
    // (A shard's UNSUBSCRIBING matters to itself alone.)
    std::optional<uint32_t> own;
    uint32_t next_num = 1;
    while (rs->next() && refusal.empty()) {
      const std::string name = rs->getString(1).asStdString();
      const uint32_t n = rs->getUInt(2);
      next_num = std::max(next_num, n + 1);
      const std::vector<std::string> theirs = SplitFilterLines(rs->getString(3).asStdString());
      const std::vector<std::string> unsubscribing = SplitFilterLines(rs->getString(6).asStdString());
      if (name == shard) {
        own = n;
        if (!theirs.empty() && theirs != mine && rs->getInt(5) == 1) {
          refusal = fmt::format(
              "shard '{}' is active on relay '{}' with --source '{}', but this relay was given '{}': relays of one "
              "shard need the same sources", shard, rs->getString(4).asStdString(), fmt::join(theirs, "' '"),
              fmt::join(mine, "' '"));
        }
        // What the shard's session may hold and this relay does not want:
        // the filters recorded before, and those still to unsubscribe.
        for (const auto* held : {&theirs, &unsubscribing}) {
          for (const auto& f : *held) {
            if (!std::binary_search(mine.begin(), mine.end(), f)) given_up.push_back(f);
          }
        }
        std::sort(given_up.begin(), given_up.end());
        given_up.erase(std::unique(given_up.begin(), given_up.end()), given_up.end());
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
        // (Filters another shard gave up and still holds are not refused:
        // that shard stores their topics until this one has subscribed.)
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
      std::unique_ptr<sql::PreparedStatement> session(conn_->prepareStatement(
          "INSERT INTO SHARD_SESSION (NAME, UNSUBSCRIBING) VALUES (?, ?) "
          "ON DUPLICATE KEY UPDATE UNSUBSCRIBING = VALUES(UNSUBSCRIBING)"));
      session->setString(1, Bytes(shard));
      if (given_up.empty()) {
        session->setNull(2, sql::DataType::VARCHAR);
      } else {
        session->setString(2, JoinFilterLines(given_up));
      }
      session->execute();
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

Result<std::vector<std::string>> MysqlStore::GivenUp() {
  std::vector<std::string> given_up;
  Status s = Guard("read the filters the shard gave up", [&] {
    std::unique_ptr<sql::PreparedStatement> ps(
        conn_->prepareStatement("SELECT COALESCE(UNSUBSCRIBING, '') FROM SHARD_SESSION WHERE NAME = ?"));
    ps->setString(1, shard_);
    std::unique_ptr<sql::ResultSet> rs(ps->executeQuery());
    given_up = rs->next() ? SplitFilterLines(rs->getString(1).asStdString()) : std::vector<std::string>{};
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return given_up;
}

Status MysqlStore::RecordSubscribed(const std::vector<std::string>& filters) {
  return Guard("record the session's subscriptions", [&] {
    std::unique_ptr<sql::PreparedStatement> up(conn_->prepareStatement(
        "INSERT INTO SHARD_SESSION (NAME, SUBSCRIBED) VALUES (?, ?) "
        "ON DUPLICATE KEY UPDATE SUBSCRIBED = VALUES(SUBSCRIBED)"));
    up->setString(1, shard_);
    up->setString(2, JoinFilterLines(filters));
    up->execute();
    CommitTransaction();
  });
}

Result<std::vector<MysqlStore::ShardFilters>> MysqlStore::OtherShards() {
  std::vector<ShardFilters> shards;
  Status s = Guard("read the other shards' filters", [&] {
    shards.clear();
    std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
        "SELECT s.NAME, s.FILTERS, COALESCE(x.SUBSCRIBED, '') FROM SHARD s LEFT JOIN SHARD_SESSION x ON x.NAME = "
        "s.NAME WHERE s.NAME <> ? ORDER BY s.NUM"));
    ps->setString(1, shard_);
    std::unique_ptr<sql::ResultSet> rs(ps->executeQuery());
    while (rs->next()) {
      shards.push_back({rs->getString(1).asStdString(), SplitFilterLines(rs->getString(2).asStdString()),
                        SplitFilterLines(rs->getString(3).asStdString())});
    }
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return shards;
}

Status MysqlStore::ForgetUnsubscribed(const std::vector<std::string>& filters) {
  return Guard("record the session's unsubscribe", [&] {
    // In turn with registrations (RegisterShard's lock): one that read the
    // list before this and wrote it back after would leave them there.
    std::unique_ptr<sql::Statement> st(conn_->createStatement());
    std::unique_ptr<sql::ResultSet>(st->executeQuery("SELECT K FROM RELAY_STATE WHERE K = 1 FOR UPDATE"));
    std::unique_ptr<sql::PreparedStatement> read(
        conn_->prepareStatement("SELECT COALESCE(UNSUBSCRIBING, '') FROM SHARD_SESSION WHERE NAME = ?"));
    read->setString(1, shard_);
    std::unique_ptr<sql::ResultSet> rs(read->executeQuery());
    std::vector<std::string> left;
    if (rs->next()) {
      for (auto& f : SplitFilterLines(rs->getString(1).asStdString())) {
        if (std::find(filters.begin(), filters.end(), f) == filters.end()) left.push_back(std::move(f));
      }
    }
    std::unique_ptr<sql::PreparedStatement> up(
        conn_->prepareStatement("UPDATE SHARD_SESSION SET UNSUBSCRIBING = ? WHERE NAME = ?"));
    if (left.empty()) {
      up->setNull(1, sql::DataType::VARCHAR);
    } else {
      up->setString(1, JoinFilterLines(left));
    }
    up->setString(2, shard_);
    up->execute();
    CommitTransaction();
  });
}

Result<MysqlStore::Lease> MysqlStore::TryAcquireLease(std::string_view owner, int lease_ms,
                                                      const std::string& filters) {
  Lease lease;
  Status s = Guard("acquire lease", [&] {
    std::unique_ptr<sql::PreparedStatement> take(conn_->prepareStatement(
        "UPDATE SHARD SET OWNER = ?, EPOCH = EPOCH + 1, EXPIRES_AT = NOW(6) + INTERVAL ? MICROSECOND, "
        "ACQUIRED_AT = NOW(6) WHERE NAME = ? AND EXPIRES_AT < NOW(6) AND FILTERS = ?"));
    take->setString(1, Bytes(owner));
    take->setInt64(2, int64_t{lease_ms} * 1000);
    take->setString(3, shard_);
    take->setString(4, filters);
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
        "TIMESTAMPDIFF(MICROSECOND, '2000-01-01', EXPIRES_AT), FILTERS FROM SHARD WHERE NAME = ?"));
    read->setString(1, shard_);
    std::unique_ptr<sql::ResultSet> rs(read->executeQuery());
    if (!rs->next()) throw std::runtime_error("shard '" + shard_ + "' has no row in SHARD");
    lease.owner = rs->getString(1).asStdString();
    lease.epoch = rs->getUInt(2);
    lease.expires_in_us = rs->getInt64(3);
    lease.expires_at_us = rs->getInt64(4);
    lease.filters = rs->getString(5).asStdString();
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

}  // namespace seqrelay
