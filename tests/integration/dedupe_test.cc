// Publishers' message ids (PROTOCOL.md 5.1), on the real servers: a
// publisher's resend of a message whose topic and msg-id were sequenced gets
// no SEQ, no row and no frame; the record survives a restart and a kill;
// records past --dedupe-window are purged.
#include <signal.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "relay_fixture.h"

namespace seqtest {
namespace {

using nlohmann::json;
using Properties = std::vector<std::pair<std::string, std::string>>;

class DedupeE2E : public RelayE2E {
 protected:
  // The relay's final report, retained on its own control prefix after a
  // clean stop: every counter of the run.
  json FinalReport(const std::string& control) {
    EXPECT_EQ(relay_->Stop(), 0);
    MqttClient late(servers().mqtt_port(), name_ + "-late");
    late.Subscribe(control + "/stats");
    EXPECT_TRUE(late.WaitForCount(1, 10s)) << "no retained report";
    auto all = late.received();
    return all.empty() ? json() : json::parse(all.front().payload);
  }

  std::size_t Rows(const std::string& sql) { return std::stoul(servers().Sql(sql)); }

  // (topic, msg-id, SEQ) of every DEDUPE row, sorted.
  std::vector<std::string> DedupeRows() {
    std::vector<std::string> rows;
    std::istringstream lines(servers().Sql("SELECT CONCAT(ID, ' ', MSG_ID, ' ', SEQ) FROM `" + name_ +
                                           "`.DEDUPE ORDER BY ID, MSG_ID"));
    for (std::string line; std::getline(lines, line);) rows.push_back(line);
    return rows;
  }
};

TEST_F(DedupeE2E, APublisherCutOffMidStreamResendsAndEachMessageWithAnIdIsStoredOnce) {
  const std::string control = name_ + "-ctl";
  StartRelay({"--control-prefix=" + control});
  MqttClient sub(servers().mqtt_port(), name_ + "-sub");
  sub.Subscribe("seq/" + root() + "/#");
  // Two topics in one QoS 1 stream: the same messages with and without a
  // msg-id. The connection is cut eight times while messages are
  // unacknowledged; libmosquitto sends those again, and mosquitto forwards
  // again those it had. A cut waits for a pair of publishes that leaves two
  // or more unacknowledged: mosquitto acknowledges in order, so the pair's
  // message with an id is among them. (A cut at a fixed count found none
  // in flight once, beside the sanitizer stage: no resend, nothing shown.)
  MqttClient pub(servers().mqtt_port(), name_ + "-pub", /*clean=*/true, /*v5=*/true);
  const std::string with_ids = root() + "/ids", without = root() + "/plain";
  constexpr int kCount = 2000;
  bool cut_due = false;
  for (int i = 1; i <= kCount; ++i) {
    const std::string payload = "p" + std::to_string(i);
    pub.PublishWithProperties(with_ids, payload, {{"msg-id", "id-" + std::to_string(i)}});
    pub.Publish(without, payload);
    cut_due = cut_due || i % 250 == 0;
    if (cut_due && pub.unacked() >= 2) {
      pub.BreakConnection();
      cut_due = false;
    }
  }
  ASSERT_TRUE(pub.WaitAllAcked(30s)) << pub.unacked() << " unacknowledged";
  // mosquitto's PUBACKs say nothing of the relay: wait for both topics'
  // last message (the plain p2000 was published last) to be stored, and
  // for the subscriber's frames of the topic with ids.
  auto stored = [&](const std::string& topic, const std::string& payload) {
    for (const auto& [seq, hex] : AuditTrail(topic)) {
      if (hex == Hex(payload)) return true;
    }
    return false;
  };
  const std::string last = "p" + std::to_string(kCount);
  ASSERT_TRUE(WaitFor([&] { return stored(with_ids, last) && stored(without, last); }, 30s))
      << AuditTrail(with_ids).size() << " and " << AuditTrail(without).size() << " rows";
  std::set<uint64_t> seqs;
  auto framed = [&] {
    seqs.clear();
    for (const Frame& f : Frames(sub.received())) {
      if (f.raw_topic == with_ids) seqs.insert(f.seq);
    }
    return seqs.size() >= kCount;
  };
  EXPECT_TRUE(WaitFor(framed, 30s)) << seqs.size() << " frames";
  const json report = FinalReport(control);  // a clean stop: everything taken is committed

  // With ids: each message once, SEQ 1..2000 without a gap.
  const auto trail = AuditTrail(with_ids);
  ASSERT_EQ(trail.size(), static_cast<std::size_t>(kCount));
  std::set<std::string> payloads;
  for (std::size_t i = 0; i < trail.size(); ++i) {
    EXPECT_EQ(trail[i].first, i + 1);
    payloads.insert(trail[i].second);
  }
  EXPECT_EQ(payloads.size(), static_cast<std::size_t>(kCount)) << "a payload stored twice";
  // Without ids, as in v1: each resend is a new message. This is what the
  // cut did; the topic with ids had as many resends, give or take the ones
  // in flight at the instant.
  const std::size_t plain_rows = AuditTrail(without).size();
  const uint64_t dropped = report["dedupe"]["dropped"].get<uint64_t>();
  std::cout << "resends stored twice without msg-id: " << plain_rows - kCount << "; dropped with msg-id: " << dropped
            << "\n";
  EXPECT_GE(plain_rows, static_cast<std::size_t>(kCount));
  EXPECT_GT(dropped, 0u) << "the cuts caused no resend: this run shows nothing";
  EXPECT_EQ(report["messages"]["received"].get<uint64_t>(), kCount + plain_rows + dropped)
      << "every delivery is a row or a dropped resend";
  EXPECT_EQ(report["messages"]["committed"].get<uint64_t>(), kCount + plain_rows);
  EXPECT_EQ(report["dedupe"]["invalid_msg_ids"], 0);
  // No frame for a dropped resend: the subscriber saw SEQ 1..2000 only.
  framed();
  EXPECT_EQ(seqs.size(), static_cast<std::size_t>(kCount));
  EXPECT_EQ(seqs.empty() ? 0 : *seqs.rbegin(), static_cast<uint64_t>(kCount));
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM `" + name_ + "`.DEDUPE"), static_cast<std::size_t>(kCount));
}

// A batch whose statements outgrow the database's max_allowed_packet goes
// as several queries of one transaction (MultiStatement): every row, every
// DEDUPE row and every byte arrives, and no batch is refused for its size.
// 64 KiB of packet against batches of up to 32 KiB of messages (half the
// packet), each with a msg-id: about 130 KiB of SQL text per batch. The
// payloads hold the bytes a quoted SQL string would need escaped.
TEST_F(DedupeE2E, ABatchOverTheDatabasePacketLimitGoesAsSeveralQueriesAndEveryByteIsStored) {
  const std::string packet_was = servers().Sql("SELECT @@GLOBAL.max_allowed_packet");
  servers().Sql("SET GLOBAL max_allowed_packet = 65536");  // for sessions opened from now on
  struct Restore {
    TestServers& servers;
    std::string value;
    ~Restore() { servers.Sql("SET GLOBAL max_allowed_packet = " + value); }
  } restore{servers(), packet_was.substr(0, packet_was.find('\n'))};
  const std::string control = name_ + "-ctl";
  StartRelay({"--control-prefix=" + control, "--max-payload=30000"});
  const std::string inserts_before = servers().Sql("SHOW GLOBAL STATUS LIKE 'Com_insert'");

  constexpr int kCount = 600;
  const std::string topic = root() + "/" + std::string(60, 't');
  auto payload = [](int i) {
    std::string p("\0'\\\"\xff;--", 8);
    p += std::to_string(i);
    p.resize(100, static_cast<char>(i % 256));
    return p;
  };
  auto msg_id = [](int i) { return "id-" + std::string(56, 'm') + std::to_string(i); };
  MqttClient pub(servers().mqtt_port(), name_ + "-pub", true, true);
  // The database frozen while they come in: the relay journals and
  // acknowledges them, and commits the backlog in batches as big as it may.
  servers().SignalDatabase(SIGSTOP);
  for (int i = 1; i <= kCount; ++i) pub.PublishWithProperties(topic, payload(i), {{"msg-id", msg_id(i)}});
  const bool acked = pub.WaitAllAcked(10s);
  servers().SignalDatabase(SIGCONT);
  ASSERT_TRUE(acked);
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(topic).size() >= kCount; }, 60s)) << AuditTrail(topic).size();
  const json report = FinalReport(control);

  const auto trail = AuditTrail(topic);
  ASSERT_EQ(trail.size(), static_cast<std::size_t>(kCount));
  for (int i = 1; i <= kCount; ++i) {
    EXPECT_EQ(trail[i - 1].first, static_cast<uint64_t>(i));
    EXPECT_EQ(trail[i - 1].second, Hex(payload(i))) << "SEQ " << i;
  }
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM `" + name_ + "`.DEDUPE WHERE MSG_ID = CONCAT('id-', REPEAT('m', 56), SEQ)"),
            static_cast<std::size_t>(kCount));
  EXPECT_EQ(relay_->log().find("refused a batch"), std::string::npos) << relay_->log();
  EXPECT_EQ(report["messages"]["set_aside"], 0);
  // Each batch is one INSERT into MSG and one into DEDUPE unless it was
  // split: more INSERTs than that show the split happened.
  const std::string inserts_after = servers().Sql("SHOW GLOBAL STATUS LIKE 'Com_insert'");
  auto count = [](const std::string& row) { return std::stoull(row.substr(row.find('\t') + 1)); };
  const uint64_t batches = report["batches"].get<uint64_t>();
  EXPECT_GT(count(inserts_after) - count(inserts_before), 2 * batches)
      << batches << " batches; before: " << inserts_before << "after: " << inserts_after;
}

TEST_F(DedupeE2E, AResendAfterARestartIsDroppedAndOnlyTheSameTopicAndIdMatch) {
  const std::string control = name_ + "-ctl";
  const int metrics = FreePort();
  StartRelay({"--control-prefix=" + control, "--metrics-port=" + std::to_string(metrics)});
  MqttClient pub(servers().mqtt_port(), name_ + "-pub", true, true);
  const std::string a = root() + "/a", b = root() + "/b";
  pub.PublishWithProperties(a, "first", {{"msg-id", "x"}});
  pub.PublishWithProperties(b, "same id, other topic", {{"msg-id", "x"}});
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(a).size() == 1 && AuditTrail(b).size() == 1; }, 20s));
  ASSERT_EQ(relay_->Stop(), 0);

  relay_->Start();  // a new process: what it knows of "x" is in the database
  pub.PublishWithProperties(a, "second", {{"msg-id", "x"}});                // a resend: dropped
  pub.PublishWithProperties(a, "y", {{"msg-id", "y"}});                     // new
  pub.PublishWithProperties(a, "empty id", {{"msg-id", ""}});              // invalid: sequenced, counted
  pub.PublishWithProperties(a, "long id", {{"msg-id", std::string(129, 'l')}});  // invalid too
  pub.PublishWithProperties(a, "128-byte id", {{"msg-id", std::string(128, 'l')}});
  pub.PublishWithProperties(a, "other property", {{"trace", "x"}});        // no msg-id
  pub.Publish(a, "v3.1.1-style, no properties");
  pub.PublishWithProperties(a, "z", {{"trace", "t"}, {"msg-id", "z"}});    // not the first property
  pub.PublishWithProperties(a, "z again", {{"msg-id", "z"}});              // right behind it: dropped
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  // All 9 taken by the relay before it stops (mosquitto's PUBACKs say
  // nothing of that; a stop commits what the relay took, and "z again"
  // may come after "z"'s commit).
  long long received = -1;
  ASSERT_TRUE(WaitFor(
      [&] { return (received = MetricValue(HttpGet(metrics, "/metrics"), "seqrelay_messages_received_total")) == 9; },
      20s))
      << received << " received\n" << relay_->log();
  const json report = FinalReport(control);

  const auto trail = AuditTrail(a);
  std::vector<std::string> stored;
  for (const auto& [seq, hex] : trail) stored.push_back(std::to_string(seq) + ":" + hex);
  auto row = [](int seq, const std::string& text) { return std::to_string(seq) + ":" + Hex(text); };
  EXPECT_EQ(stored, (std::vector<std::string>{row(1, "first"), row(2, "y"), row(3, "empty id"), row(4, "long id"),
                                              row(5, "128-byte id"), row(6, "other property"),
                                              row(7, "v3.1.1-style, no properties"), row(8, "z")}));
  EXPECT_EQ(AuditTrail(b).size(), 1u);
  EXPECT_EQ(report["dedupe"]["dropped"], 2);
  EXPECT_EQ(report["dedupe"]["invalid_msg_ids"], 2);
  EXPECT_EQ(DedupeRows(), (std::vector<std::string>{a + " " + std::string(128, 'l') + " 5", a + " x 1", a + " y 2",
                                                    a + " z 8", b + " x 1"}));
  EXPECT_NE(relay_->log().find("invalid msg-id (empty)"), std::string::npos) << relay_->log();
}

TEST_F(DedupeE2E, AMessageJournaledByAKilledRelayKeepsItsIdThroughTheHandOver) {
  StartRelay();
  ASSERT_EQ(relay_->Stop(), 0);
  // Dies after journaling the first message, before its PUBACK: the next
  // start hands it over through PENDING, and mosquitto sends it again.
  relay_->Start({"SEQTEST_KILL_AFTER_JOURNAL=1"});
  MqttClient pub(servers().mqtt_port(), name_ + "-pub", true, true);
  const std::string t = root() + "/t";
  pub.PublishWithProperties(t, "journaled", {{"msg-id", "j"}});
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_EQ(relay_->WaitExit(10s), 128 + SIGKILL);
  relay_->Start();
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(t).size() == 1; }, 20s));
  EXPECT_EQ(DedupeRows(), (std::vector<std::string>{t + " j 1"}));
  // The publisher's resend of it now, after the hand-over: dropped.
  pub.PublishWithProperties(t, "journaled", {{"msg-id", "j"}});
  pub.PublishWithProperties(t, "next", {{"msg-id", "k"}});
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(t).size() >= 2; }, 20s));
  ASSERT_EQ(relay_->Stop(), 0);
  EXPECT_EQ(AuditTrail(t), (std::vector<std::pair<uint64_t, std::string>>{{1, Hex("journaled")}, {2, Hex("next")}}));
}

TEST_F(DedupeE2E, RecordsPastTheWindowArePurgedAndTheIdIsNewAgain) {
  StartRelay({"--dedupe-window=2s"});
  MqttClient pub(servers().mqtt_port(), name_ + "-pub", true, true);
  const std::string t = root() + "/t";
  pub.PublishWithProperties(t, "one", {{"msg-id", "w"}});
  pub.PublishWithProperties(t, "one again", {{"msg-id", "w"}});  // within the window: dropped
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(t).size() == 1; }, 20s));
  ASSERT_EQ(DedupeRows().size(), 1u);
  ASSERT_TRUE(WaitFor([&] { return DedupeRows().empty(); }, 15s)) << "the record outlived the window";
  pub.PublishWithProperties(t, "one, much later", {{"msg-id", "w"}});
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(t).size() == 2; }, 20s));
  ASSERT_EQ(relay_->Stop(), 0);
  EXPECT_EQ(AuditTrail(t), (std::vector<std::pair<uint64_t, std::string>>{{1, Hex("one")}, {2, Hex("one, much later")}}));
}

// A record past the window that the purge has not reached yet (it runs
// every few seconds, and drains a backlog 1,000 rows at a time) is of an
// older message: the msg-id is new again at once, and the new message's
// commit replaces the record. Until 2026-12-06 the lookup took any record
// for the message's own: acknowledged, stored nowhere, until the purge came.
TEST_F(DedupeE2E, ARecordPastTheWindowIsNotTakenForTheMessageBeforeThePurgeReachesIt) {
  StartRelay({"--dedupe-window=1h"});
  const std::string t = root() + "/t";
  servers().Sql("INSERT INTO `" + name_ + "`.DEDUPE (ID, MSG_ID, SEQ, SEEN_AT) VALUES ('" + t +
                "', 'w', 7, NOW(6) - INTERVAL 2 HOUR)");
  MqttClient pub(servers().mqtt_port(), name_ + "-pub", true, true);
  pub.PublishWithProperties(t, "new", {{"msg-id", "w"}});
  pub.PublishWithProperties(t, "its resend", {{"msg-id", "w"}});  // within the window now: dropped
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return !AuditTrail(t).empty(); }, 10s)) << relay_->log();
  ASSERT_TRUE(WaitFor([&] { return relay_->log().find("dedupe: dropped a resend on") != std::string::npos || AuditTrail(t).size() > 1; },
                      5s));
  ASSERT_EQ(relay_->Stop(), 0);
  EXPECT_EQ(AuditTrail(t), (std::vector<std::pair<uint64_t, std::string>>{{1, Hex("new")}}));
  EXPECT_EQ(DedupeRows(), std::vector<std::string>{t + " w 1"});
}

// Shards of one database with different windows: each record ends after
// the window of the relay that wrote it (schema 12), whichever relay
// purges. Until 2026-12-06 each relay purged every record older than its
// own window: shard a's 2 s purged shard b's record of a moment ago, and
// b's publisher's resend within b's hour was sequenced again.
TEST_F(DedupeE2E, AShardWithAShorterWindowDoesNotPurgeAnotherShardsRecords) {
  RelayProcess a(servers(), name_, {"--shard=a", "--source=" + root() + "/a/#", "--dedupe-window=2s"}, "a");
  RelayProcess b(servers(), name_, {"--shard=b", "--source=" + root() + "/b/#", "--dedupe-window=1h"}, "b");
  a.Start();
  b.Start();
  MqttClient pub(servers().mqtt_port(), name_ + "-pub", true, true);
  const std::string ta = root() + "/a/t", tb = root() + "/b/t";
  pub.PublishWithProperties(ta, "on a", {{"msg-id", "m"}});
  pub.PublishWithProperties(tb, "on b", {{"msg-id", "m"}});
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(ta).size() == 1 && AuditTrail(tb).size() == 1; }, 20s));
  // a purges its own record after its 2 s (every second), and only that.
  ASSERT_TRUE(WaitFor([&] { return DedupeRows() == std::vector<std::string>{tb + " m 1"}; }, 15s))
      << "rows: " << testing::PrintToString(DedupeRows()) << "\n" << a.log();
  const auto purged = std::chrono::steady_clock::now();
  // Three more of a's purges, and b's record is still there: a resend on b
  // is dropped, one on a is new.
  ASSERT_TRUE(WaitFor([&] { return std::chrono::steady_clock::now() - purged > 3s; }, 5s));
  EXPECT_EQ(DedupeRows(), std::vector<std::string>{tb + " m 1"});
  pub.PublishWithProperties(tb, "on b, resent", {{"msg-id", "m"}});
  pub.PublishWithProperties(ta, "on a, later", {{"msg-id", "m"}});
  pub.PublishWithProperties(tb, "on b, next", {{"msg-id", "n"}});
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(ta).size() == 2 && AuditTrail(tb).size() >= 2; }, 20s));
  ASSERT_EQ(a.Stop(), 0);
  ASSERT_EQ(b.Stop(), 0);
  EXPECT_EQ(AuditTrail(tb), (std::vector<std::pair<uint64_t, std::string>>{{1, Hex("on b")}, {2, Hex("on b, next")}}));
  EXPECT_EQ(AuditTrail(ta), (std::vector<std::pair<uint64_t, std::string>>{{1, Hex("on a")}, {2, Hex("on a, later")}}));
}

// The longest window (36500d): a record's end lies past 2038, where a
// TIMESTAMP ends (the first form of schema 12 had one: in strict mode every
// message with a msg-id was refused, and set aside).
TEST_F(DedupeE2E, TheLongestWindowEndsRecordsPast2038) {
  StartRelay({"--dedupe-window=36500d"});
  MqttClient pub(servers().mqtt_port(), name_ + "-pub", true, true);
  const std::string t = root() + "/t";
  pub.PublishWithProperties(t, "one", {{"msg-id", "w"}});
  pub.PublishWithProperties(t, "one again", {{"msg-id", "w"}});
  pub.PublishWithProperties(t, "two", {{"msg-id", "v"}});
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(t).size() >= 2; }, 20s)) << relay_->log();
  ASSERT_EQ(relay_->Stop(), 0);
  EXPECT_EQ(AuditTrail(t), (std::vector<std::pair<uint64_t, std::string>>{{1, Hex("one")}, {2, Hex("two")}}));
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM `" + name_ + "`.DEDUPE WHERE YEAR(EXPIRES_AT) > 2100"), 2u);
}

// Records written before schema 12 carry no end of their own: they age out
// by the purging relay's window, as they did.
TEST_F(DedupeE2E, RecordsFromBeforeTheirOwnEndAgeOutByThePurgingRelaysWindow) {
  StartRelay({"--dedupe-window=1h"});
  const std::string t = root() + "/t";
  servers().Sql("INSERT INTO `" + name_ + "`.DEDUPE (ID, MSG_ID, SEQ, SEEN_AT) VALUES ('" + t +
                "', 'old', 1, NOW(6) - INTERVAL 2 HOUR), ('" + t + "', 'recent', 2, NOW(6) - INTERVAL 30 MINUTE)");
  ASSERT_TRUE(WaitFor([&] { return DedupeRows() == std::vector<std::string>{t + " recent 2"}; }, 20s))
      << testing::PrintToString(DedupeRows());
  EXPECT_EQ(Rows("SELECT COUNT(*) FROM `" + name_ + "`.DEDUPE WHERE EXPIRES_AT IS NULL"), 1u);
  ASSERT_EQ(relay_->Stop(), 0);
}

// With the window at zero, msg-ids are ignored, and the records written
// under an earlier window are still purged once they expire (until
// 2026-12-07 the purge did not run at all then: they stayed for good). A
// record from before schema 12 (no end of its own), which another shard's
// window may still need, is left alone (the review of that change).
TEST_F(DedupeE2E, WithTheWindowAtZeroMsgIdsAreIgnoredAsInV1) {
  StartRelay({"--dedupe-window=0"});
  MqttClient pub(servers().mqtt_port(), name_ + "-pub", true, true);
  const std::string t = root() + "/t";
  servers().Sql("INSERT INTO `" + name_ + "`.DEDUPE (ID, MSG_ID, SEQ, SEEN_AT, EXPIRES_AT) VALUES ('" + t +
                "', 'earlier', 1, UTC_TIMESTAMP(6) - INTERVAL 2 HOUR, UTC_TIMESTAMP(6) - INTERVAL 1 HOUR), ('" + t +
                "', 'no-end', 2, NOW(6) - INTERVAL 30 MINUTE, NULL)");
  const std::vector<std::string> left = {t + " no-end 2"};
  EXPECT_TRUE(WaitFor([&] { return DedupeRows() == left; }, 20s)) << testing::PrintToString(DedupeRows());
  pub.PublishWithProperties(t, "one", {{"msg-id", "w"}});
  pub.PublishWithProperties(t, "one again", {{"msg-id", "w"}});
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(t).size() == 2; }, 20s));
  ASSERT_EQ(relay_->Stop(), 0);
  EXPECT_EQ(DedupeRows(), left) << "no record of the two msg-ids, and the one without an end kept";
}

}  // namespace
}  // namespace seqtest
