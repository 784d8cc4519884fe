// MysqlStore: reads for replays (a topic, a range of SEQs, spans and
// counts, missing ranges) and for the start and the republish (rows of
// the session, rows after an index, topics).
#include "store/mysql_store.h"

#include <cppconn/exception.h>
#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <fmt/format.h>
#include <mysql_connection.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <memory>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>

#include "core/log.h"
#include "store/mysql_store_values.h"

namespace seqrelay {

using mysql_values::Bytes;

Result<std::string> MysqlStore::DatabaseIdentity() {
  std::string id;
  Status s = Guard("read the database's identity", [&] {
    std::unique_ptr<sql::Statement> st(conn_->createStatement());
    std::unique_ptr<sql::ResultSet> rs(st->executeQuery("SELECT INSTANCE FROM RELAY_STATE WHERE K = 1"));
    if (!rs->next()) throw std::runtime_error("RELAY_STATE has no row");
    id = rs->getString(1).asStdString();
    CommitTransaction();
  });
  if (!s.ok()) return s;
  return id;
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

Result<std::vector<MysqlStore::IdxRange>> MysqlStore::PublishedElsewhere() {
  std::vector<IdxRange> ranges;
  Status s = Guard("read the other shards' acknowledged rows", [&] {
    std::unique_ptr<sql::PreparedStatement> ps(
        conn_->prepareStatement("SELECT NUM, PUBLISHED_IDX FROM SHARD WHERE NUM <> ? ORDER BY NUM"));
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

Result<std::vector<MysqlStore::LiveRow>> MysqlStore::ReadSessionTail(uint64_t last_idx, std::size_t limit) {
  std::vector<LiveRow> rows;
  Status s = Guard("read the session's newest rows", [&] {
    // No index has MID: the rows are walked back from the newest until
    // `limit` with a packet id are found. Rows without one (QoS 0, handed
    // over, from before schema 007) count too, so the walk ends within
    // kSessionTailSpan rows (20,000), which mosquitto's resends cannot
    // reach past (the intake's in-flight window, its Receive Maximum, is 20): a shard of mostly QoS 0 messages, or
    // the first takeover after an upgrade, read the session's every row,
    // past the 30 s read timeout on a large one (until 2026-12-07).
    std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
        "SELECT idx, MID FROM MSG WHERE idx >= ? AND idx <= ? AND MID <> 0 ORDER BY idx DESC LIMIT ?"));
    const uint64_t to = std::min(last_idx, idx_base_ + kShardIdxSpan - 1);
    ps->setUInt64(1, std::max({session_idx_, idx_base_ + 1, to - std::min(to, kSessionTailSpan - 1)}));
    ps->setUInt64(2, to);
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

Result<std::optional<MysqlStore::TopicRow>> MysqlStore::FindTopic(const std::optional<std::string>& topic,
                                                                  std::optional<uint32_t> id) {
  std::optional<TopicRow> row;
  Status s = Guard("find topic", [&] {
    std::unique_ptr<sql::PreparedStatement> ps(conn_->prepareStatement(
        // One index entry each, as in TopicSpans (a correlated MIN or MAX may
        // read every row of the topic).
        std::string("SELECT t.FRAME_ID, t.ID, "
                    "COALESCE((SELECT m.SEQ FROM MSG m WHERE m.ID = t.ID ORDER BY m.SEQ DESC LIMIT 1), 0), "
                    "COALESCE((SELECT m.SEQ FROM MSG m WHERE m.ID = t.ID ORDER BY m.SEQ LIMIT 1), 0) "
                    "FROM TOPIC t WHERE ") +
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
