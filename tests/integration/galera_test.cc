// The store on a real MariaDB Galera cluster (3 nodes on loopback, started
// by tools/galera.sh for this shard): the relay is given every node with
// --db-host, its node is killed under load, and nothing is lost, doubled or
// different between the nodes.
#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "relay_fixture.h"

namespace seqtest {
namespace {

using namespace std::chrono_literals;

const std::string kGalera = std::string(SEQRELAY_SOURCE_DIR) + "/tools/galera.sh";

class GaleraE2E : public RelayE2E {
 protected:
  static void SetUpTestSuite() {
    RelayE2E::SetUpTestSuite();
    static int starts = 0;  // one cluster per run of the suite (--gtest_repeat)
    dir_ = new std::string(SharedServers().dir() + "/galera-" + std::to_string(++starts));
    std::string out;
    // wsrep_sync_wait=1: a read on one node sees what any node committed
    // before it (the relay's checks after a lost COMMIT read another node).
    if (RunCommand({kGalera, "start", *dir_, "--option", "wsrep_sync_wait=1"}, &out) != 0) {
      std::cerr << out;
      started_ = false;
      return;
    }
    started_ = true;
    std::ifstream env(*dir_ + "/cluster.env");
    for (std::string line; std::getline(env, line);) {
      auto eq = line.find('=');
      if (eq != std::string::npos) (*env_)[line.substr(0, eq)] = line.substr(eq + 1);
    }
  }
  static void TearDownTestSuite() {
    if (dir_ == nullptr) return;
    RunCommand({kGalera, "stop", *dir_});
    std::error_code ec;
    std::filesystem::remove_all(*dir_, ec);
    delete dir_;
    dir_ = nullptr;
    env_->clear();
  }
  void SetUp() override {
    RelayE2E::SetUp();
    ASSERT_TRUE(started_) << "the Galera cluster did not start (tools/galera.sh start)";
  }

  static std::string Env(const std::string& name) { return (*env_)[name]; }

  // SQL as root on node k; its output, or "" on failure.
  std::string OnNode(int k, const std::string& sql) {
    std::string out;
    RunCommand({"mariadb", "--no-defaults", "-S", Env(fmt::format("NODE{}_SOCKET", k)), "-uroot", "-N",
                "-B", "-e", sql},
               &out);
    return out;
  }
  std::string Count(int k) { return OnNode(k, "SELECT COUNT(*) FROM `" + name_ + "`.MSG"); }
  // Every row of MSG, as one checksum line: equal on nodes that hold the same rows.
  std::string Checksum(int k) {
    return OnNode(k, "SELECT COUNT(*), BIT_XOR(CRC32(CONCAT(HEX(ID), '/', SEQ, '/', HEX(MSG)))) FROM `" + name_ +
                         "`.MSG");
  }

  static inline std::string* dir_ = nullptr;
  static inline std::map<std::string, std::string>* env_ = new std::map<std::string, std::string>();
  static inline bool started_ = false;
};

// QoS 1 load over 10 topics through a relay on node 1; node 1 is killed
// (SIGKILL) mid-stream. The relay moves to another node; the time from
// the kill to the first new commit is printed; every message is stored
// once, SEQ 1..n per topic; after node 1 rejoins, all three nodes hold the
// same rows.
TEST_F(GaleraE2E, TheRelaysNodeKilledUnderLoadLosesNothingAndTheNodesAgree) {
  StartRelay({"--db-host=" + Env("DB_HOSTS")});
  ASSERT_NE(relay_->log().find("database: connected to 127.0.0.1:" + Env("NODE1_PORT") + " (node 1 of 3)"),
            std::string::npos)
      << relay_->log();
  constexpr int kTopics = 10, kPerTopic = 300, kRate = 1000;
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  std::atomic<int> published{0};
  std::thread load([&] {
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kTopics * kPerTopic; ++i) {
      std::this_thread::sleep_until(start + std::chrono::microseconds(int64_t{1000000} * i / kRate));
      pub.Publish(fmt::format("{}/t{}", root(), i % kTopics), fmt::format("p{}", i / kTopics + 1), 1, 5000);
      published = i + 1;
    }
  });
  ASSERT_TRUE(WaitFor([&] { return published >= 1000 && Count(2) != "0\n"; }, 30s));
  const auto killed_at = std::chrono::steady_clock::now();
  ASSERT_EQ(RunCommand({kGalera, "kill", *dir_, "1"}), 0);
  // The relay's move to another node, then its first commit there (a count
  // taken before the move could change by node 1's last commits arriving).
  auto moved = [&] {
    const std::string log = relay_->log();
    return log.find("(node 2 of 3)") != std::string::npos || log.find("(node 3 of 3)") != std::string::npos;
  };
  const bool reconnected = WaitFor(moved, 60s);
  const double moved_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  const std::string before = Count(2);
  const bool committed = WaitFor([&] { return Count(2) != before; }, 60s);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  std::fprintf(stderr,
               "[ figure ] Galera, the relay's node SIGKILLed at %d msg/s: on another node after %.2f s, first new "
               "commit there after %.2f s\n",
               kRate, moved_s, took);
  load.join();
  ASSERT_TRUE(reconnected && committed) << relay_->log();
  ASSERT_TRUE(pub.WaitAllAcked(30s));

  const int total = kTopics * kPerTopic;
  ASSERT_TRUE(WaitFor([&] { return Count(2) == fmt::format("{}\n", total); }, 60s))
      << Count(2) << " rows of " << total << "\n" << relay_->log();
  for (int t = 0; t < kTopics; ++t) {
    const std::string topic = fmt::format("{}/t{}", root(), t);
    std::istringstream rows(OnNode(2, "SELECT SEQ, MSG FROM `" + name_ + "`.MSG WHERE ID = '" + topic +
                                          "' ORDER BY SEQ"));
    std::set<std::string> payloads;
    uint64_t expect = 1;
    for (std::string line; std::getline(rows, line); ++expect) {
      const auto tab = line.find('\t');
      ASSERT_EQ(std::stoull(line.substr(0, tab)), expect) << topic << ": SEQ gap or duplicate";
      EXPECT_TRUE(payloads.insert(line.substr(tab + 1)).second) << topic << ": stored twice: " << line;
    }
    EXPECT_EQ(payloads.size(), static_cast<std::size_t>(kPerTopic)) << topic;
  }

  ASSERT_EQ(RunCommand({kGalera, "restart", *dir_, "1"}), 0);
  const std::string sum = Checksum(2);
  EXPECT_EQ(Checksum(1), sum) << "node 1 after rejoining";
  EXPECT_EQ(Checksum(3), sum);
  EXPECT_EQ(relay_->Stop(), 0);
}

}  // namespace
}  // namespace seqtest
