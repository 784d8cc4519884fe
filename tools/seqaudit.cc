// seqaudit: checks the audit trail in MySQL. For every topic (or one), the
// rows must carry SEQ first..last with no gap (SEQ is unique by the table's
// key, so no duplicate can exist). first is 1 unless --retention deleted
// the oldest rows (PROTOCOL.md 5.2), which is shown; --from-one makes it a
// gap. Prints one line per topic and a summary.
//
// It reads a live database the relay writes to, so it reads in short
// statements: a page of topics with their first and last SEQ, then rows
// counted in SEQ windows of at most --chunk-rows index entries a
// statement, pausing between statements so that they take at most
// --busy percent of its time. (One GROUP BY over a million rows, or a
// COUNT(*) over a topic's, is felt by the live path on a small machine:
// docs/operations.md, retention.) A topic whose count shows a gap is
// counted again in one statement, a consistent read (rows deleted by
// retention between two statements are no gap), and its missing ranges
// are read.
//
// Exit codes: 0 every topic gapless, 1 a gap was found, 2 bad options,
// 3 the database could not be read, 4 no such topic (--topic).
#include <boost/program_options.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "cli.h"
#include "store/mysql_store.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  seqrelay::Config c;
  std::string topic;
  bool from_one = false;
  uint64_t chunk_rows = 100000;
  int busy = 50;
  if (const char* pw = std::getenv("SEQRELAY_DB_PASSWORD")) c.db_password = pw;
  po::options_description desc(
      "seqaudit: check that every topic's rows in MSG carry SEQ first..last with no gap (first is 1 unless "
      "--retention deleted older rows).\n\n"
      "Usage: seqaudit [options]   (the password also from SEQRELAY_DB_PASSWORD)\n\n"
      "Exit codes: 0 every topic gapless, 1 a gap found, 2 bad options, 3 the database could not be read, 4 no "
      "such topic (--topic).\n\nOptions");
  desc.add_options()
      ("help", "Print this help and exit.")
      ("db-host", po::value(&c.db_host)->default_value(c.db_host)->value_name("HOSTS"),
       "Database host, or a Galera cluster's nodes as a comma-separated list (h1:3306,h2): the first that answers "
       "is read. --db-port is the port of entries without one.")
      ("db-port", po::value(&c.db_port)->default_value(c.db_port), "Database port.")
      ("db-socket", po::value(&c.db_socket), "Unix socket; wins over host and port.")
      ("db-user", po::value(&c.db_user)->default_value(c.db_user), "Database user.")
      ("db-password", po::value(&c.db_password), "Database password.")
      ("db-name", po::value(&c.db_name)->default_value(c.db_name), "Database holding MSG and TOPIC.")
      ("topic", po::value(&topic), "Check only this raw topic.")
      ("from-one", po::bool_switch(&from_one),
       "Count rows missing before a topic's first stored SEQ as a gap (for a relay run without --retention).")
      ("chunk-rows", po::value(&chunk_rows)->default_value(chunk_rows)->value_name("N"),
       "At most N index entries read by one statement (a topic's rows are counted in SEQ windows of N; smaller "
       "topics together): each statement stays short on a live database.")
      ("busy", po::value(&busy)->default_value(busy)->value_name("PERCENT"),
       "The share of its time the audit keeps the database busy: after each statement it pauses so that "
       "statements take at most PERCENT of the run (1 to 100; 100: no pause).");
  auto check = [&](const po::variables_map&) {
    if (c.db_port < 1 || c.db_port > 65535) throw po::error("--db-port must be 1 to 65535");
    if (chunk_rows < 1) throw po::error("--chunk-rows must be at least 1");
    if (busy < 1 || busy > 100) throw po::error("--busy must be 1 to 100");
    if (auto endpoints = seqrelay::DbEndpoints(c.db_host, c.db_port); !endpoints.ok()) {
      throw po::error(endpoints.error());
    }
  };
  if (auto exit_code = seqtools::ParseCommandLine("seqaudit", argc, argv, desc, check)) return *exit_code;

  seqrelay::MysqlStore store(c);
  if (auto s = store.Connect(false); !s.ok()) {
    std::fprintf(stderr, "seqaudit: %s\n", s.message().c_str());
    return 3;
  }
  // Every statement timed, and followed by its pause.
  using Clock = std::chrono::steady_clock;
  Clock::duration reading{}, paused{};
  uint64_t statements = 0;
  auto paced = [&](auto&& statement) {
    const auto started = Clock::now();
    auto result = statement();
    const auto took = Clock::now() - started;
    reading += took;
    ++statements;
    if (busy < 100) {
      const auto pause = took * (100 - busy) / busy;
      std::this_thread::sleep_for(pause);
      paused += pause;
    }
    return result;
  };
  auto failed = [](const std::string& why) {
    std::fprintf(stderr, "seqaudit: %s\n", why.c_str());
    return 3;
  };
  const std::optional<std::string> only = topic.empty() ? std::nullopt : std::optional(topic);

  // Topic by topic in FRAME_ID order: a page's spans, then their rows
  // counted, windows of one statement adding up to at most chunk_rows SEQs.
  constexpr std::size_t kTopicsPerPage = 1000, kWindowsPerStatement = 200;
  std::vector<seqrelay::MysqlStore::AuditRow> audited;
  for (uint32_t after = 0;;) {
    auto spans = paced([&] { return store.TopicSpans(after, kTopicsPerPage, only); });
    if (!spans.ok()) return failed(spans.error());
    const std::size_t first_of_page = audited.size();
    for (const auto& t : *spans) {
      audited.push_back({.topic = t.topic, .id = t.id, .rows = 0, .first_seq = t.first_seq, .last_seq = t.last_seq});
    }
    std::vector<seqrelay::MysqlStore::SeqWindow> windows;
    std::vector<std::size_t> window_of;  // index into audited
    uint64_t window_seqs = 0;
    auto count = [&]() -> std::optional<std::string> {
      if (windows.empty()) return std::nullopt;
      auto counts = paced([&] { return store.CountRows(windows); });
      if (!counts.ok()) return counts.error();
      for (std::size_t i = 0; i < windows.size(); ++i) audited[window_of[i]].rows += (*counts)[i];
      windows.clear();
      window_of.clear();
      window_seqs = 0;
      return std::nullopt;
    };
    for (std::size_t k = first_of_page; k < audited.size(); ++k) {
      const auto& t = audited[k];
      if (t.first_seq == 0) continue;  // no rows
      for (uint64_t from = t.first_seq;;) {
        const uint64_t to = t.last_seq - from < chunk_rows ? t.last_seq : from + chunk_rows - 1;
        if (window_seqs + (to - from + 1) > chunk_rows || windows.size() == kWindowsPerStatement) {
          if (auto error = count()) return failed(*error);
        }
        windows.push_back({.topic = t.topic, .from = from, .to = to});
        window_of.push_back(k);
        window_seqs += to - from + 1;
        if (to == t.last_seq) break;
        from = to + 1;
      }
    }
    if (auto error = count()) return failed(*error);
    if (only || spans->size() < kTopicsPerPage) break;
    after = spans->back().id;
  }
  // A count short of its span: a gap, or rows retention deleted between the
  // span's read and the count. Counted again in one statement to tell.
  for (auto& t : audited) {
    if (t.first_seq == 0 || t.rows == t.last_seq - t.first_seq + 1) continue;
    auto again = paced([&] { return store.AuditTopics(t.topic); });
    if (!again.ok()) return failed(again.error());
    if (!again->empty()) t = again->front();
  }
  uint64_t rows = 0, bad = 0;
  for (const auto& t : audited) {
    rows += t.rows;
    const bool trimmed = t.rows > 0 && t.first_seq > 1;  // by retention, or a gap with --from-one
    const bool gapless =
        t.rows == 0 || (t.rows == t.last_seq - t.first_seq + 1 && (!from_one || t.first_seq == 1));
    std::printf("%-40s id %-6u rows %-10llu SEQ %llu..%llu  %s", t.topic.c_str(), t.id,
                static_cast<unsigned long long>(t.rows), static_cast<unsigned long long>(t.first_seq),
                static_cast<unsigned long long>(t.last_seq), gapless ? "ok" : "GAPS:");
    if (gapless && trimmed) {
      std::printf(" (starts at %llu: older rows deleted)", static_cast<unsigned long long>(t.first_seq));
    }
    if (!gapless) {
      ++bad;
      if (from_one && t.first_seq > 1) std::printf(" 1..%llu", static_cast<unsigned long long>(t.first_seq - 1));
      // The first ten ranges, "..." if there are more, and the count of
      // every missing SEQ.
      constexpr std::size_t kShown = 10;
      auto missing = store.MissingRanges(t.topic, kShown + 1);
      if (missing.ok()) {
        for (std::size_t i = 0; i < std::min(kShown, missing->size()); ++i) {
          std::printf(" %llu..%llu", static_cast<unsigned long long>((*missing)[i].first),
                      static_cast<unsigned long long>((*missing)[i].second));
        }
        if (missing->size() > kShown) std::printf(" ...");
      } else {
        std::printf(" (ranges not read: %s)", missing.error().c_str());
      }
      const uint64_t in_range = t.last_seq - t.first_seq + 1 - t.rows;
      const uint64_t before = from_one ? t.first_seq - 1 : 0;
      std::printf(" (%llu SEQs missing)", static_cast<unsigned long long>(in_range + before));
    }
    std::printf("\n");
  }
  if (!topic.empty() && audited.empty()) {
    std::fprintf(stderr, "seqaudit: no topic '%s'\n", topic.c_str());
    return 4;
  }
  std::printf("seqaudit: %zu topics, %llu rows, %llu with gaps\n", audited.size(),
              static_cast<unsigned long long>(rows), static_cast<unsigned long long>(bad));
  using Seconds = std::chrono::duration<double>;
  std::fprintf(stderr, "seqaudit: %llu statements, %.2f s reading, %.2f s paused (--busy %d, --chunk-rows %llu)\n",
               static_cast<unsigned long long>(statements), Seconds(reading).count(), Seconds(paused).count(), busy,
               static_cast<unsigned long long>(chunk_rows));
  return bad == 0 ? 0 : 1;
}
