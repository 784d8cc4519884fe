// MysqlStore: the writer's statements (topics resolved, msg-ids looked up,
// a batch committed behind the fence) and the housekeeping's deletes
// (retention, expired msg-ids).
#include "store/mysql_store.h"

#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <fmt/format.h>
#include <mysql_connection.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <iterator>
#include <memory>
#include <unordered_set>

#include "core/log.h"
#include "store/mysql_store_values.h"
#include "store/store_errors.h"

namespace seqrelay {

using mysql_values::Bytes;
using mysql_values::Placeholders;

Result<std::vector<MysqlStore::TopicRow>> MysqlStore::ResolveTopics(std::span<const std::string_view> topics,
                                                                    std::size_t max_new) {
  std::vector<TopicRow> rows;
  auto select = [&](std::span<const std::string_view> which, bool created) {
    std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
        // ORDER BY ... LIMIT 1 on the (ID, SEQ) key: one index entry a topic,
        // where a correlated MAX read every row of each topic when TOPIC is
        // read as a range (two topics or more), seconds on a long history.
        "SELECT t.FRAME_ID, t.ID, "
        "COALESCE((SELECT m.SEQ FROM MSG m WHERE m.ID = t.ID ORDER BY m.SEQ DESC LIMIT 1), 0) FROM TOPIC t "
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

Result<MysqlStore::Trimmed> MysqlStore::TrimTopic(std::string_view topic, const RetentionRule& rule,
                                                  uint64_t published_idx,
                                                  const std::vector<IdxRange>& published_elsewhere,
                                                  std::size_t max_rows, uint64_t max_bytes) {
  // Acknowledged on seq/T: this shard's rows up to its watermark, and each
  // other shard's up to its own (until 2026-12-07 a lower-numbered shard's
  // rows counted as acknowledged below this shard's watermark, all of them:
  // a topic moved here lost the rows its old shard had committed and not
  // yet published). The values are numbers: written into the statements.
  std::string acknowledged = fmt::format("(idx BETWEEN {} AND ?", idx_base_ + 1);
  for (const IdxRange& r : published_elsewhere) acknowledged += fmt::format(" OR idx BETWEEN {} AND {}", r.from, r.to);
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
      // Only a prefix of the topic goes: its oldest row not yet acknowledged
      // holds back every row after it, acknowledged or not. (Within a shard
      // those are its newest; a topic that moved here may have older rows
      // that its old shard committed and has not published, below this
      // shard's acknowledged ones: a hole left after them would read as
      // rows lost.)
      std::unique_ptr<sql::PreparedStatement> held(conn_->prepareStatement(fmt::format(
          "SELECT MIN(SEQ) FROM MSG WHERE ID = ? AND SEQ >= ? AND SEQ < ? AND NOT {}", acknowledged)));
      held->setString(1, Bytes(topic));
      held->setUInt64(2, first);
      held->setUInt64(3, keep);
      held->setUInt64(4, published_idx);
      std::unique_ptr<sql::ResultSet> h(held->executeQuery());
      if (h->next() && !h->isNull(1)) {
        keep = h->getUInt64(1);
        cut = false;  // nothing more goes before that row is acknowledged
      }
    }
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
  Status s = Guard("commit batch", [&] {
    journal_pos = std::max(journal_pos, saved_journal_pos_);
    MultiStatement& sql = commit_sql_;
    sql.Clear(MaxQueryBytes());
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
    const std::span<const MultiStatement::Query> queries = sql.queries();
    // A query over the limit holds one row alone (MultiStatement splits the
    // rest): the server's max_allowed_packet was lowered after the start's
    // check (SET GLOBAL, or a node of --db-host configured with less). Sent,
    // the server refuses it (1153) or ends the session (2006, "gone away",
    // which is retried: seen both ways); refused here as the server
    // refuses a row over its limit, the writer sets the row aside at once
    // and commits the others.
    for (const MultiStatement::Query& q : queries) {
      if (q.text.size() + 1 > max_allowed_packet_) {  // + the command's byte
        throw sql::SQLException(
            fmt::format("a row takes {} bytes of SQL, more than the server's max_allowed_packet of {} bytes allows: "
                        "raise max_allowed_packet, or lower --max-payload",
                        q.text.size(), max_allowed_packet_),
            "HY000", 1153);
      }
    }
    if (!text_) text_.reset(conn_->createStatement());
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
  // "Duplicate entry '<topic>-<SEQ>' for key 'MSG_ID_SEQ'" (MySQL: 'MSG.MSG_ID_SEQ'):
  // the topic's other writer was first.
  if (s.database_code() == 1062 && std::string_view(s.message()).ends_with("MSG_ID_SEQ'")) {
    return Status::Database(s.message(), kSeqTakenCode);
  }
  return s;
}

Status MysqlStore::SavePublished(uint64_t published_idx) {
  return CommitBatch({}, published_idx, saved_journal_pos_);
}

}  // namespace seqrelay
