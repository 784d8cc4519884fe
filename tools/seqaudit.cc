// seqaudit: checks the audit trail in MySQL. For every topic (or one), the
// rows must carry SEQ first..last with no gap (SEQ is unique by the table's
// key, so no duplicate can exist). first is 1 unless --retention deleted
// the oldest rows (PROTOCOL.md 5.2), which is shown; --from-one makes it a
// gap. Prints one line per topic and a summary.
//
// Exit codes: 0 every topic gapless, 1 a gap was found, 2 bad options,
// 3 the database could not be read, 4 no such topic (--topic).
#include <boost/program_options.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "cli.h"
#include "store/mysql_store.h"

namespace po = boost::program_options;

int main(int argc, char** argv) {
  seqrelay::Config c;
  std::string topic;
  bool from_one = false;
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
       "Count rows missing before a topic's first stored SEQ as a gap (for a relay run without --retention).");
  auto check = [&](const po::variables_map&) {
    if (c.db_port < 1 || c.db_port > 65535) throw po::error("--db-port must be 1 to 65535");
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
  auto topics = store.AuditTopics(topic.empty() ? std::nullopt : std::optional(topic));
  if (!topics.ok()) {
    std::fprintf(stderr, "seqaudit: %s\n", topics.error().c_str());
    return 3;
  }
  uint64_t rows = 0, bad = 0;
  for (const auto& t : *topics) {
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
  if (!topic.empty() && topics->empty()) {
    std::fprintf(stderr, "seqaudit: no topic '%s'\n", topic.c_str());
    return 4;
  }
  std::printf("seqaudit: %zu topics, %llu rows, %llu with gaps\n", topics->size(),
              static_cast<unsigned long long>(rows), static_cast<unsigned long long>(bad));
  return bad == 0 ? 0 : 1;
}
