// The fixture shared by the end-to-end tests: real mosquitto and MariaDB
// (SharedServers), the real relay binary, and helpers to decode frames and
// read the audit trail. Each test gets its own database, relay client id
// and topic root (the test's name), so tests never see each other's state.
#pragma once

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <functional>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "core/frame.h"
#include "mqtt_client.h"
#include "relay_process.h"
#include "servers.h"

namespace seqtest {

using namespace std::chrono_literals;

struct Frame {
  std::string raw_topic;  // seq/ stripped
  uint32_t id = 0;
  uint64_t seq = 0;
  int flag = -1;
  std::string payload;
};

// How often `needle` occurs in `haystack` from `from` on (a log line, say).
inline int CountOf(std::string_view haystack, std::string_view needle, std::size_t from = 0) {
  int n = 0;
  for (auto at = haystack.find(needle, from); at != std::string_view::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

// Seconds from the relay's log line that holds `from` to the one that holds
// `to` (their leading ISO 8601 times, "...THH:MM:SS.mmmZ"; across midnight
// too).
inline double LogSecondsBetween(std::string_view log, std::size_t from, std::size_t to) {
  const auto seconds = [&](std::size_t at) {
    const std::size_t newline = log.rfind('\n', at);
    const std::string t(log.substr((newline == std::string_view::npos ? 0 : newline + 1) + 11, 12));
    return std::stoi(t.substr(0, 2)) * 3600 + std::stoi(t.substr(3, 2)) * 60 + std::stod(t.substr(6));
  };
  const double gap = seconds(to) - seconds(from);
  return gap < 0 ? gap + 24 * 3600 : gap;
}

// Waits until the newest report `watcher` has had (it subscribes to
// relay/stats) satisfies `done`; that report in `report`, for the failure
// message. Reports are retained and sent every --stats-interval.
inline bool WaitForReport(MqttClient& watcher, const std::function<bool(const nlohmann::json&)>& done,
                          std::chrono::milliseconds deadline, nlohmann::json& report) {
  return WaitFor(
      [&] {
        const auto all = watcher.received();
        if (all.empty()) return false;
        report = nlohmann::json::parse(all.back().payload);
        return done(report);
      },
      deadline);
}

inline std::string Hex(std::string_view bytes) {
  static const char* digits = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

// Decodes every received message as a frame; a message that is not a valid
// frame fails the test.
inline std::vector<Frame> Frames(const std::vector<Received>& received) {
  std::vector<Frame> frames;
  for (const auto& r : received) {
    auto view = seqrelay::DecodeFrame({reinterpret_cast<const uint8_t*>(r.payload.data()), r.payload.size()});
    EXPECT_TRUE(view.ok()) << "bad frame on " << r.topic << ": " << (view.ok() ? "" : view.error());
    if (!view.ok()) continue;
    EXPECT_EQ(r.topic.rfind("seq/", 0), 0u) << r.topic;
    frames.push_back({r.topic.substr(4), view->header.topic_id, view->header.seq,
                      static_cast<int>(view->header.ordering),
                      std::string(reinterpret_cast<const char*>(view->payload.data()), view->payload.size())});
  }
  return frames;
}

class RelayE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { SharedServers(); }

  void SetUp() override {
    // The test's name, short enough for a database name, and unique per run
    // so that --gtest_repeat starts from empty state each time.
    static int runs = 0;
    name_ = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    name_ = name_.substr(0, 40) + "_" + std::to_string(++runs);
    for (auto& c : name_) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }

  void TearDown() override {
    if (HasFailure()) {
      // The relay's log first: it says most, and a cut CI log keeps the start.
      if (relay_) std::cerr << "---- relay log ----\n" << Tail(servers().dir() + "/relay-" + name_ + ".log", 60);
      std::cerr << servers().Logs();
    }
  }

  TestServers& servers() { return SharedServers(); }
  std::string root() const { return name_; }

  // Runs `sql` in a mysql client in the background (`holder`), which prints
  // each result at once (--unbuffered), and returns once its first line is
  // "1": the statements before it have run (a lock taken, a table read).
  // Watching its output costs no fork, which takes long in a sanitizer build.
  void StartHolder(Process& holder, const std::string& sql) {
    auto command = servers().SqlCommand(sql);
    command.insert(command.begin() + 2, "--unbuffered");  // after --no-defaults, which must come first
    holder.Start(command, servers().dir() + "/holder-" + name_ + ".log");
    ASSERT_TRUE(WaitFor([&] { return ReadFile(holder.log_path()) == "1\n"; }, Scaled(std::chrono::seconds(5))))
        << "the holder's first result did not come: " << ReadFile(holder.log_path());
  }

  // Stops the shared database; it is started again by Now(), or when this
  // goes out of scope, so that the shard's next tests find it up.
  class DatabaseDown {
   public:
    explicit DatabaseDown(TestServers& servers) : servers_(servers) { servers_.StopDatabase(); }
    ~DatabaseDown() { Now(); }
    DatabaseDown(const DatabaseDown&) = delete;
    DatabaseDown& operator=(const DatabaseDown&) = delete;
    void Now() {
      if (std::exchange(down_, false)) servers_.StartDatabase();
    }

   private:
    TestServers& servers_;
    bool down_ = true;
  };

  // `env`: "NAME=value" pairs for the relay (fault injection).
  RelayProcess& StartRelay(std::vector<std::string> args = {}, const std::vector<std::string>& env = {}) {
    args.push_back("--source=" + root() + "/#");
    relay_ = std::make_unique<RelayProcess>(servers(), name_, args);
    relay_->Start(env);
    return *relay_;
  }

  // The audit trail of a topic: SEQ and payload hex, in SEQ order.
  std::vector<std::pair<uint64_t, std::string>> AuditTrail(const std::string& topic) {
    std::string out = servers().Sql("SELECT SEQ, HEX(MSG) FROM `" + name_ + "`.MSG WHERE ID = X'" + Hex(topic) +
                                    "' ORDER BY SEQ");
    std::vector<std::pair<uint64_t, std::string>> rows;
    std::istringstream lines(out);
    std::string line;
    while (std::getline(lines, line)) {
      auto tab = line.find('\t');
      rows.emplace_back(std::stoull(line.substr(0, tab)), tab == std::string::npos ? "" : line.substr(tab + 1));
    }
    return rows;
  }

  uint32_t TopicId(const std::string& topic) {
    return static_cast<uint32_t>(
        std::stoul(servers().Sql("SELECT FRAME_ID FROM `" + name_ + "`.TOPIC WHERE ID = X'" + Hex(topic) + "'")));
  }

  // Frames of one topic must carry SEQ 1..n in order, once each, with the
  // topic's id; their payloads are returned in that order.
  std::vector<std::string> CheckGapless(const std::vector<Frame>& frames, const std::string& topic,
                                        bool allow_duplicates = false) {
    std::vector<std::string> payloads;
    const uint32_t id = TopicId(topic);
    uint64_t last = 0;
    for (const auto& f : frames) {
      if (f.raw_topic != topic) continue;
      EXPECT_EQ(f.id, id) << topic;
      if (allow_duplicates && f.seq <= last) continue;  // a republished duplicate, dropped by SEQ like a client
      EXPECT_EQ(f.seq, last + 1) << topic << ": SEQ out of order or gap";
      last = f.seq;
      payloads.push_back(f.payload);
    }
    return payloads;
  }

  // Launches a relay that must refuse to start: expects `exit_code` (1, or
  // 2 for a refusal of its options, the shard's among them) and returns its
  // log, for the caller to check the one line that says why.
  static std::string LogOfARefusedStart(RelayProcess& relay, int exit_code = 1) {
    relay.Launch();
    auto code = relay.WaitExit(Scaled(std::chrono::seconds(30)));
    EXPECT_TRUE(code.has_value()) << "the relay did not exit:\n" << relay.log();
    if (code) {
      EXPECT_EQ(*code, exit_code) << relay.log();
    } else {
      relay.Kill();
    }
    return relay.log();
  }

  std::string name_;
  std::unique_ptr<RelayProcess> relay_;
};

}  // namespace seqtest
