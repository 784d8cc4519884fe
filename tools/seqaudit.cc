// seqaudit: checks the audit trail in MySQL. For every topic (or one), the
// rows must carry SEQ first..last with no gap (SEQ is unique by the table's
// key, so no duplicate can exist). first is 1 unless --retention deleted
// the oldest rows (PROTOCOL.md 5.2), which is shown; --from-one makes it a
// gap. Prints one line per topic and a summary.
//
// It reads a live database the relay writes to, so it reads in short
// statements: a page of topics with their first and last SEQ, then rows
// counted in SEQ windows of at most --chunk-rows SEQs a statement (small
// topics together), each count beside the topic's first SEQ in the same
// read (rows retention deleted meanwhile are no gap), and a pause before
// each next statement so that they take at most --busy percent of its
// time. A window short of rows has its missing ranges read, that window
// only; after a full window the next starts at the next stored SEQ, so a
// gap costs no statements. (One statement over the whole table, as before 2026-12-06, runs
// into the store's 30 s read timeout on a large one and holds InnoDB's
// purge as long: docs/faults.md.)
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
       "At most N SEQs counted by one statement (a topic's rows in SEQ windows of N, smaller topics together), so "
       "at most N index entries read: each statement stays short on a live database.")
      ("busy", po::value(&busy)->default_value(busy)->value_name("PERCENT"),
       "The share of its time the audit keeps the database busy: after each statement it pauses so that "
       "statements take at most PERCENT of the run (1 to 100; 100: no pause).");
  auto check = [&](const po::variables_map&) {
    if (c.db_port < 1 || c.db_port > 65535) throw po::error("--db-port must be 1 to 65535");
    if (chunk_rows < 1 || chunk_rows > (uint64_t{1} << 40)) throw po::error("--chunk-rows must be 1 to 2^40");
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
  // Every statement timed; the next one waits until the statements have
  // taken at most busy percent of the time (no wait after the last).
  using Clock = std::chrono::steady_clock;
  Clock::duration reading{}, paused{}, owed{};
  uint64_t statements = 0;
  auto paced = [&](auto&& statement) {
    if (owed > Clock::duration::zero()) {
      std::this_thread::sleep_for(owed);
      paused += owed;
      owed = {};
    }
    const auto started = Clock::now();
    auto result = statement();
    const auto took = Clock::now() - started;
    reading += took;
    ++statements;
    if (result.ok()) owed = took * (100 - busy) / busy;
    return result;
  };
  auto failed = [](const std::string& why) {
    std::fprintf(stderr, "seqaudit: %s\n", why.c_str());
    return 3;
  };
  const std::optional<std::string> only = topic.empty() ? std::nullopt : std::optional(topic);

  // Where a topic's missing SEQs are: a window short of rows (its ranges
  // read for the report), or a run of SEQs known missing whole (skipped:
  // nothing stored between a full window and the next stored SEQ).
  struct Gap {
    uint64_t from = 0, to = 0;
    bool known = false;
  };
  struct Audited {
    seqrelay::MysqlStore::TopicSpan span;  // first_seq: as of the topic's last count
    uint64_t missing = 0;                  // SEQs missing within its windows
    std::vector<Gap> gaps;                 // in SEQ order
  };
  std::vector<Audited> audited;
  // Topic by topic in FRAME_ID order: a page's spans, then their rows
  // counted, the windows of one statement adding up to at most chunk_rows
  // SEQs. A window's expected rows are its SEQs from the topic's first one
  // in the same read on.
  constexpr std::size_t kTopicsPerPage = 1000, kWindowsPerStatement = 200;
  for (uint32_t after = 0;;) {
    auto spans = paced([&] { return store.TopicSpans(after, kTopicsPerPage, only); });
    if (!spans.ok()) return failed(spans.error());
    if (const char* ms = std::getenv("SEQTEST_AUDIT_PAUSE_MS")) {  // a test's rows deleted meanwhile
      std::fprintf(stderr, "seqaudit: test pause after the spans\n");
      std::this_thread::sleep_for(std::chrono::milliseconds(std::atoi(ms)));
    }
    const std::size_t first_of_page = audited.size();
    for (const auto& t : *spans) audited.push_back({.span = t, .missing = 0, .gaps = {}});
    std::vector<seqrelay::MysqlStore::SeqWindow> windows;
    std::vector<std::size_t> window_of;  // index into audited
    uint64_t window_seqs = 0;
    seqrelay::MysqlStore::WindowCount last_count;  // of the last window counted
    auto count = [&]() -> std::optional<std::string> {
      if (windows.empty()) return std::nullopt;
      auto counts = paced([&] { return store.CountRows(windows); });
      if (!counts.ok()) return counts.error();
      for (std::size_t i = 0; i < windows.size(); ++i) {
        Audited& a = audited[window_of[i]];
        const auto& w = windows[i];
        const uint64_t first = (*counts)[i].first_seq;
        a.span.first_seq = first;
        const uint64_t from = std::max(w.from, first);
        const uint64_t expected = first == 0 || from > w.to ? 0 : w.to - from + 1;
        if ((*counts)[i].rows < expected) {
          a.missing += expected - (*counts)[i].rows;
          a.gaps.push_back({.from = w.from, .to = w.to, .known = false});
        }
      }
      last_count = counts->back();
      windows.clear();
      window_of.clear();
      window_seqs = 0;
      return std::nullopt;
    };
    for (std::size_t k = first_of_page; k < audited.size(); ++k) {
      Audited& a = audited[k];
      const auto& t = a.span;
      if (t.first_seq == 0 || t.first_seq > t.last_seq) continue;  // no rows
      const uint64_t last = t.last_seq;
      for (uint64_t from = t.first_seq;;) {
        const uint64_t to = last - from < chunk_rows ? last : from + chunk_rows - 1;
        if (window_seqs + (to - from + 1) > chunk_rows || windows.size() == kWindowsPerStatement) {
          if (auto error = count()) return failed(*error);
        }
        windows.push_back({.topic = t.topic, .from = from, .to = to});
        window_of.push_back(k);
        window_seqs += to - from + 1;
        if (to == last) break;
        // A full window is a statement of its own: counted now, the next
        // starts at the next stored SEQ, and the SEQs between (above the
        // topic's first: below it, retention deleted them) are missing
        // whole. A gap costs no statements, however many SEQs it spans.
        if (auto error = count()) return failed(*error);
        const uint64_t next = last_count.next_seq == 0 || last_count.next_seq > last ? last + 1 : last_count.next_seq;
        const uint64_t gap_from = std::max(to + 1, last_count.first_seq);
        if (last_count.first_seq != 0 && gap_from < next) {
          a.missing += next - gap_from;
          a.gaps.push_back({.from = gap_from, .to = next - 1, .known = true});
        }
        if (next > last) break;
        from = std::max(next, last_count.first_seq);
      }
    }
    if (auto error = count()) return failed(*error);
    if (only || spans->size() < kTopicsPerPage) break;
    after = spans->back().id;
  }

  uint64_t rows = 0, bad = 0;
  for (const auto& a : audited) {
    const auto& t = a.span;
    // Rows: the span as of its last count, less the SEQs found missing
    // (counted against an older first, if retention moved it meanwhile: at
    // most the whole span; it wrapped around to a huge count before
    // 2026-12-06, a review's finding).
    // Retention may have deleted every row of the span by its count (a
    // count rule on a busy topic: newer rows came meanwhile), its first now
    // past its last: no row of it is left (the span wrapped around to a huge
    // count until 2026-12-07, a review's finding).
    const bool emptied = t.first_seq > t.last_seq;
    const uint64_t span = t.first_seq == 0 || emptied ? 0 : t.last_seq - t.first_seq + 1;
    const uint64_t n = span - std::min(span, a.missing);
    const uint64_t first = span == 0 ? 0 : t.first_seq, last = span == 0 ? 0 : t.last_seq;
    rows += n;
    const bool trimmed = n > 0 && first > 1;  // by retention, or a gap with --from-one
    // (Missing SEQs found before retention emptied the span are still a
    // gap: until 2026-12-07 a topic with no row left read "ok" whatever its
    // windows had found, a review's finding.)
    const bool gapless = a.missing == 0 && (n == 0 || !from_one || first == 1);
    std::printf("%-40s id %-6u rows %-10llu SEQ %llu..%llu  %s", t.topic.c_str(), t.id,
                static_cast<unsigned long long>(n), static_cast<unsigned long long>(first),
                static_cast<unsigned long long>(last), gapless ? "ok" : "GAPS:");
    if (gapless && trimmed) {
      std::printf(" (starts at %llu: older rows deleted)", static_cast<unsigned long long>(first));
    }
    if (emptied) {
      std::printf(" (every row up to SEQ %llu deleted meanwhile)", static_cast<unsigned long long>(t.last_seq));
    }
    if (!gapless) {
      ++bad;
      if (from_one && first > 1) std::printf(" 1..%llu", static_cast<unsigned long long>(first - 1));
      // The first ten ranges (read from the short windows only, adjacent
      // ones joined), "..." if there are more, and the count of every
      // missing SEQ.
      constexpr std::size_t kShown = 10;
      std::vector<std::pair<uint64_t, uint64_t>> ranges;
      std::string error;
      for (const auto& g : a.gaps) {
        if (ranges.size() > kShown) break;
        auto missing = g.known ? seqrelay::Result<std::vector<std::pair<uint64_t, uint64_t>>>(
                                     std::vector<std::pair<uint64_t, uint64_t>>{{g.from, g.to}})
                               : paced([&] { return store.MissingRanges(t.topic, g.from, g.to, kShown + 1); });
        if (!missing.ok()) {
          error = missing.error();
          break;
        }
        for (const auto& r : *missing) {
          if (!ranges.empty() && ranges.back().second + 1 == r.first) {
            ranges.back().second = r.second;
          } else {
            ranges.push_back(r);
          }
        }
      }
      for (std::size_t i = 0; i < std::min(kShown, ranges.size()); ++i) {
        std::printf(" %llu..%llu", static_cast<unsigned long long>(ranges[i].first),
                    static_cast<unsigned long long>(ranges[i].second));
      }
      if (ranges.size() > kShown) std::printf(" ...");
      if (!error.empty()) {
        std::printf(" (ranges not read: %s)", error.c_str());
        // The store dropped its connection with the error: the next topic's
        // ranges need one.
        if (auto s = store.Connect(false); !s.ok()) {
          std::printf("\n");
          return failed(s.message());
        }
      }
      const uint64_t before = from_one && first > 0 ? first - 1 : 0;
      std::printf(" (%llu SEQs missing)", static_cast<unsigned long long>(a.missing + before));
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
