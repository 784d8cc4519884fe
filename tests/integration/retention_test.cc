// Retention (PROTOCOL.md 5.2), on the real servers: --retention deletes a
// topic's oldest rows in the background, never its newest; SEQ goes on; a
// retransmit status says where the history now starts ("first"), and a
// request from below it is served from there.
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "relay_fixture.h"

namespace seqtest {
namespace {

using nlohmann::json;

class RetentionE2E : public RelayE2E {
 protected:
  // Asks for `topic` from `from` and returns (frames' SEQs, status).
  std::pair<std::vector<uint64_t>, json> Replay(const std::string& topic, uint64_t from) {
    const std::string who = name_ + "-r" + std::to_string(++requests_);
    MqttClient client(servers().mqtt_port(), who);
    client.Subscribe("relay/replay/" + who + "/#");
    client.Publish("relay/retransmit/" + who, json{{"topic", topic}, {"from", from}}.dump());
    std::vector<uint64_t> seqs;
    json status;
    EXPECT_TRUE(WaitFor(
        [&] {
          auto got = client.received();
          return !got.empty() && got.back().topic == "relay/replay/" + who + "/status";
        },
        10s));
    for (const auto& r : client.received()) {
      if (r.topic.ends_with("/status")) {
        status = json::parse(r.payload);
      } else {
        auto view = seqrelay::DecodeFrame({reinterpret_cast<const uint8_t*>(r.payload.data()), r.payload.size()});
        EXPECT_TRUE(view.ok()) << r.topic;
        if (view.ok()) seqs.push_back(view->header.seq);
      }
    }
    return {seqs, status};
  }

  std::vector<uint64_t> StoredSeqs(const std::string& topic) {
    std::vector<uint64_t> seqs;
    for (const auto& [seq, hex] : AuditTrail(topic)) seqs.push_back(seq);
    return seqs;
  }

  static std::vector<uint64_t> Range(uint64_t from, uint64_t to) {
    std::vector<uint64_t> out;
    for (uint64_t s = from; s <= to; ++s) out.push_back(s);
    return out;
  }

  int requests_ = 0;
};

TEST_F(RetentionE2E, ACountKeepsTheNewestRowsAndAReplyFromBelowStartsAtFirst) {
  const std::string kept = root() + "/kept", all = root() + "/all";
  StartRelay({"--retention=" + kept + "=5", "--stats-interval=1"});
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int i = 1; i <= 20; ++i) {
    pub.Publish(kept, "k" + std::to_string(i));
    pub.Publish(all, "a" + std::to_string(i));
  }
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return StoredSeqs(kept) == Range(16, 20); }, 20s)) << AuditTrail(kept).size();
  EXPECT_EQ(StoredSeqs(all), Range(1, 20)) << "a topic no rule names keeps everything";

  auto [seqs, status] = Replay(kept, 1);
  EXPECT_EQ(seqs, Range(16, 20));
  EXPECT_EQ(status["status"], "ok") << status.dump();
  EXPECT_EQ(status["from"], 1) << "from as asked";
  EXPECT_EQ(status["first"], 16) << status.dump();
  EXPECT_EQ(status["sent"], 5);
  EXPECT_EQ(status["last"], 20);
  auto [all_seqs, all_status] = Replay(all, 1);
  EXPECT_EQ(all_seqs.size(), 20u);
  EXPECT_EQ(all_status["first"], 1) << "nothing deleted: first is 1";

  // SEQ goes on after the deleted ones; the window moves.
  for (int i = 21; i <= 22; ++i) pub.Publish(kept, "k" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return StoredSeqs(kept) == Range(18, 22); }, 20s)) << AuditTrail(kept).size();
  EXPECT_EQ(AuditTrail(kept).back().second, Hex("k22"));
  ASSERT_EQ(relay_->Stop(), 0);
  // A restart does not renumber: the next message is 23.
  relay_->Start();
  pub.Publish(kept, "k23");
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return !StoredSeqs(kept).empty() && StoredSeqs(kept).back() == 23; }, 20s));
  ASSERT_EQ(relay_->Stop(), 0);
}

TEST_F(RetentionE2E, AnAgeDeletesOldRowsButNeverATopicsNewest) {
  const std::string t = root() + "/t";
  StartRelay({"--retention=" + root() + "/#=2s"});
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int i = 1; i <= 10; ++i) pub.Publish(t, "m" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(t).size() == 10; }, 20s));
  // Older than 2 s: all but the newest go, whatever the wait.
  ASSERT_TRUE(WaitFor([&] { return StoredSeqs(t) == std::vector<uint64_t>{10}; }, 20s)) << AuditTrail(t).size();
  std::this_thread::sleep_for(Scaled(2500ms));
  EXPECT_EQ(StoredSeqs(t), std::vector<uint64_t>{10}) << "the newest row must stay";
  auto [seqs, status] = Replay(t, 3);
  EXPECT_EQ(seqs, std::vector<uint64_t>{10});
  EXPECT_EQ(status["first"], 10) << status.dump();
  EXPECT_EQ(status["from"], 3);
  pub.Publish(t, "m11");
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return !StoredSeqs(t).empty() && StoredSeqs(t).back() == 11; }, 20s));
  ASSERT_EQ(relay_->Stop(), 0);
}

}  // namespace
}  // namespace seqtest
