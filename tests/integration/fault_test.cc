// Faults: the relay killed under load, and mosquitto killed under load.
// Each scenario counts what the publisher had acknowledged and checks it
// against MSG: every acknowledged message stored exactly once, SEQ gapless.
// The figures are printed as a table row for the README.
#include <sys/mount.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/frame.h"
#include "core/message.h"
#include "fault_fixture.h"
#include "tcp_gate.h"

namespace seqtest {
namespace {

TEST_F(FaultE2E, RelaySigkilledUnderLoadLosesNothingWithTheJournal) {
  StartRelay({"--journal-dir=" + servers().dir() + "/journal-" + name_});
  const std::string topic = root() + "/t";
  constexpr int kCount = 4000;
  PacedLoad load(servers().mqtt_port(), name_, topic, kCount, 1000);
  ASSERT_TRUE(load.WaitPublished(1500, 30s));
  relay_->Kill();
  std::this_thread::sleep_for(2s);  // the outage the scenario prescribes
  relay_->Start();
  const auto restarted = std::chrono::steady_clock::now();
  ASSERT_TRUE(load.Finish(30s));
  WaitStored(topic, kCount);
  const double recover = std::chrono::duration<double>(std::chrono::steady_clock::now() - restarted).count();
  Outcome o = Audit(load);
  Print("relay SIGKILL at 1,000 msg/s, restart after 2 s, journal on", o, recover);
  EXPECT_EQ(o.lost, 0u);
  EXPECT_EQ(o.delivered, static_cast<std::size_t>(kCount));
  EXPECT_EQ(o.duplicates, 0u);
  EXPECT_TRUE(o.gapless);
  EXPECT_EQ(o.stored, static_cast<std::size_t>(kCount));
  EXPECT_EQ(relay_->Stop(), 0);
}

// The narrowest window: killed after journaling a message but before its
// PUBACK left. The journal stores it, and the broker resends it with the
// same packet identifier; the relay must store it once.
TEST_F(FaultE2E, KilledBetweenJournalAndPubackStoresTheMessageOnce) {
  HundredMessagesThroughADyingRelay("SEQTEST_KILL_AFTER_JOURNAL=50", 128 + SIGKILL, [](const std::string& log) {
    EXPECT_NE(log.find("fault injection: SIGKILL after journaling message"), std::string::npos);
    EXPECT_NE(log.find("but not committed handed over to shard"), std::string::npos) << log;
    EXPECT_NE(log.find("dropped the broker's resend of message"), std::string::npos) << log;
  });
}

// A TAKEN row of an earlier takeover with the same packet id and content as
// a message handed over later (a device that publishes the same payload
// again and again) is another message: the handed-over one is stored. Up
// to schema 8 every TAKEN row counted, and the message was dropped as
// stored already: lost. Here every packet id of that content is in TAKEN
// under epoch 1 before the relay of epoch 2 journals it and is killed.
TEST_F(FaultE2E, AnOlderTakenRowOfTheSameContentDoesNotHideAHandedOverMessage) {
  StartRelay({"--journal-dir=" + servers().dir() + "/journal-" + name_});
  ASSERT_EQ(relay_->Stop(), 0);
  const std::string topic = root() + "/t";
  const std::string payload = "p1";
  const uint64_t digest = seqrelay::Digest(
      topic, std::span(reinterpret_cast<const uint8_t*>(payload.data()), payload.size()));
  servers().Sql("INSERT INTO `" + name_ + "`.TAKEN (SHARD, MID, DIGEST, EPOCH) SELECT 'default', seq, " +
                std::to_string(digest) + ", 1 FROM `" + name_ + "`.seq_1_to_65535");
  relay_->Start({"SEQTEST_KILL_AFTER_JOURNAL=1"});  // takes the shard under epoch 2
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  pub.Publish(topic, payload);
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_EQ(relay_->WaitExit(10s), 128 + SIGKILL);
  relay_->Start();
  WaitFor([&] { return StoredCount(topic) >= 1; }, Scaled(10s));
  std::this_thread::sleep_for(Scaled(300ms));  // a duplicate, if any, lands now
  ExpectEachStoredOnce(Audit(topic, 1), 1);
  const std::string log = relay_->log();
  EXPECT_NE(log.find("but not committed handed over to shard"), std::string::npos) << log;
  EXPECT_EQ(log.find("were stored already"), std::string::npos) << log;
  // The restarted relay's own takeover, after the hand-over (of epoch 2).
  EXPECT_EQ(servers().Sql("SELECT EPOCH FROM `" + name_ + "`.JOURNAL"), "3\n");
  EXPECT_EQ(relay_->Stop(), 0);
}

// A message handed over from a journal that the database refuses for good
// (here: a new topic over --max-topics) is refused once, as a live one is,
// and its PENDING row goes. Until 2026-12-05 the row stayed, and every
// round of the hand-over (one a second) queued and refused it again.
TEST_F(FaultE2E, AHandedOverMessageRefusedForGoodIsRefusedOnce) {
  StartRelay({"--batch-delay-us=500000"});  // nothing is committed before the kill
  ASSERT_EQ(relay_->Stop(), 0);
  relay_->Start({"SEQTEST_KILL_AFTER_JOURNAL=20"});
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int t = 1; t <= 20; ++t) pub.Publish(root() + "/t" + std::to_string(t), "p" + std::to_string(t));
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_EQ(relay_->WaitExit(10s), 128 + SIGKILL);
  ASSERT_EQ(servers().Sql("SELECT COUNT(*) FROM `" + name_ + "`.MSG"), "0\n");

  // The same journal, now under a bound of 5 topics: 20 messages on 20 new
  // topics are handed over; 5 are stored, 15 refused (one batch: the
  // linger gathers the 20).
  StartRelay({"--max-topics=5", "--batch-delay-us=200000"});
  const std::string pending = "SELECT COUNT(*) FROM `" + name_ + "`.PENDING";
  const bool emptied = WaitFor([&] { return servers().Sql(pending) == "0\n"; }, Scaled(10s));
  EXPECT_TRUE(emptied) << servers().Sql(pending) << " PENDING rows left\n" << relay_->log();
  WaitFor([&] { return relay_->log().find("were refused for good") != std::string::npos; }, Scaled(5s));
  const std::string log = relay_->log();
  EXPECT_EQ(servers().Sql("SELECT COUNT(*) FROM `" + name_ + "`.MSG"), "5\n");
  EXPECT_EQ(servers().Sql("SELECT COUNT(*) FROM `" + name_ + "`.TOPIC"), "5\n");
  EXPECT_EQ(CountOf(log, "storing 20 messages a relay of shard"), 1) << log;
  EXPECT_EQ(CountOf(log, "15 messages handed over from a journal were refused for good"), 1) << log;
  EXPECT_EQ(relay_->Stop(), 0);
}

// Messages refused for good (here on new topics over --max-topics), and
// nothing else: their journal records are done with, and the journal's
// position moves past them. Until 2026-12-06 only a commit moved it: a
// stream of refused messages alone kept every record (the journal's
// segments grew without bound), and the next start handed them over and
// refused them all again.
TEST_F(FaultE2E, MessagesRefusedForGoodAreNotHandedOverAgainByTheNextStart) {
  const int metrics = FreePort();
  StartRelay({"--max-topics=1", "--metrics-port=" + std::to_string(metrics)});
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  pub.Publish(root() + "/known", "k");
  ASSERT_TRUE(WaitFor([&] { return StoredCount(root() + "/known") == 1; }, Scaled(10s))) << relay_->log();
  for (int t = 1; t <= 10; ++t) pub.Publish(root() + "/new" + std::to_string(t), "n" + std::to_string(t));
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  // All 10 refused before the stop (the log says so once in 10 s; a stop
  // after the first left the rest to the next start's intake).
  const std::string series = "seqrelay_messages_refused_total{reason=\"too_many_topics\"}";
  long long refused = -1;
  ASSERT_TRUE(WaitFor([&] { return (refused = MetricValue(HttpGet(metrics, "/metrics"), series)) == 10; }, Scaled(10s)))
      << refused << " refused\n" << relay_->log();
  ASSERT_EQ(relay_->Stop(), 0);
  EXPECT_EQ(CountOf(relay_->log(), "over --max-topics 10)"), 1) << relay_->log();
  relay_->Start();
  ASSERT_EQ(relay_->Stop(), 0);
  const std::string log = relay_->log();
  EXPECT_EQ(CountOf(log, "handed over"), 0) << log;
  EXPECT_EQ(CountOf(log, "over --max-topics 0)"), 1) << "the second run refused them again:\n" << log;
  EXPECT_EQ(servers().Sql("SELECT COUNT(*) FROM `" + name_ + "`.MSG"), "1\n");
}

// A shard whose rows have used every number of its idx range (2^40; here
// a row written by hand at its last but one): the last number is given
// out, and a batch that would pass the range's end stops the relay, saying
// so, with what it holds kept for the next start (journaled). Until
// 2026-12-06 the next rows took numbers past the range (another shard's,
// or none's), which the next start did not count as the shard's, and
// numbers were given out twice. (The first form of this test found the
// publish tracker counting the 2^40 numbers skipped before the last one
// one by one.)
TEST_F(FaultE2E, AShardThatHasUsedEveryRowNumberOfItsRangeStopsTheRelay) {
  StartRelay();
  const std::string t = root() + "/t", db = "`" + name_ + "`";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  pub.Publish(t, "m1");
  pub.Publish(root() + "/other", "o1");
  ASSERT_TRUE(WaitFor([&] { return StoredCount(t) == 1 && StoredCount(root() + "/other") == 1; }, Scaled(10s)))
      << relay_->log();
  ASSERT_EQ(relay_->Stop(), 0);
  constexpr uint64_t kLast = (uint64_t{1} << 40) - 1;  // the default shard's range: 1 .. 2^40 - 1
  servers().Sql(fmt::format("INSERT INTO {}.MSG (idx, ID, QOS, SEQ, MSG) VALUES ({}, '{}/other', 1, 2, 'x')", db,
                            kLast - 1, root()));
  // m1 and o1 unacknowledged as far as the shard knows: the start
  // republishes them and then the row far ahead, in one run, before their
  // PUBACKs (until 2026-12-07 the publish tracker then kept a slot for
  // every idx between: the relay died of it at every start).
  servers().Sql("UPDATE " + db + ".SHARD SET PUBLISHED_IDX = 0");
  MqttClient other(servers().mqtt_port(), name_ + "-other");
  other.Subscribe("seq/" + root() + "/other");
  relay_->Start();
  ASSERT_TRUE(WaitFor(
      [&] {
        const auto frames = Frames(other.received());
        return !frames.empty() && frames.back().seq == 2;
      },
      Scaled(10s)))
      << "the far row's frame, republished\n" << relay_->log();
  pub.Publish(t, "m2");  // the range's last number
  ASSERT_TRUE(WaitFor([&] { return StoredCount(t) == 2; }, Scaled(10s))) << relay_->log();
  for (int i = 3; i <= 4; ++i) pub.Publish(t, "m" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  const auto code = relay_->WaitExit(Scaled(30s));
  ASSERT_TRUE(code.has_value()) << relay_->log();
  EXPECT_EQ(*code, 1) << relay_->log();
  EXPECT_NE(relay_->log().find("stopped because of: shard 'default' has used every row number of its range"),
            std::string::npos)
      << relay_->log();
  EXPECT_EQ(servers().Sql(fmt::format("SELECT MAX(idx) FROM {}.MSG", db)), fmt::format("{}\n", kLast))
      << "a row past the shard's range, or its last number not used";
  EXPECT_NE(relay_->log().find("kept for the shard's next active"), std::string::npos) << relay_->log();
}

// The intake connection breaks right after a message was taken and before
// its PUBACK left (a network failure; here injected): the broker resends it
// (and whatever else was unacknowledged) when the session resumes, and the
// relay must recognise the resends on that reconnect too, not only on the
// first connect of a process. With and without the journal.
TEST_F(FaultE2E, IntakeReconnectBeforeThePubackLeftStoresTheMessageOnce) {
  HundredMessagesWithAFault("SEQTEST_BREAK_INTAKE_AFTER=50", [](const std::string& log) {
    EXPECT_NE(log.find("fault injection: breaking the intake connection"), std::string::npos) << log;
    EXPECT_NE(log.find("(session present)"), std::string::npos) << log;
    EXPECT_NE(log.find("dropped the broker's resend of message"), std::string::npos) << log;
  });
}

// TAKEN records the first 1,000 deliveries after a relay takes the shard,
// in the sessions it resumes, for a previous holder's journal to find its
// messages that mosquitto resent here. Until 2026-12-06 every reconnect
// that resumed the session recorded 1,000 more, and the table grew for as
// long as one relay held the shard: here a break after 1,050 deliveries
// recorded the 50 after it too (1,050 rows).
TEST_F(FaultE2E, TakenRecordsTheFirstThousandDeliveriesAfterATakeoverNotAfterEachReconnect) {
  StartRelay({"--journal-dir=" + servers().dir() + "/journal-" + name_});
  relay_->Stop();
  relay_->Start({"SEQTEST_BREAK_INTAKE_AFTER=1050"});  // its session kept: resumed at the first connect
  const std::string topic = root() + "/t";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int i = 1; i <= 1100; ++i) pub.Publish(topic, "p" + std::to_string(i), 1, 100);
  ASSERT_TRUE(pub.WaitAllAcked(Scaled(std::chrono::seconds(30))));
  WaitStored(topic, 1100);
  ExpectEachStoredOnce(Audit(topic, 1100), 1100);
  const std::string log = relay_->log();
  EXPECT_NE(log.find("fault injection: breaking the intake connection"), std::string::npos) << log;
  EXPECT_NE(log.find("(session present)", log.find("fault injection: breaking")), std::string::npos) << log;
  EXPECT_EQ(servers().Sql("SELECT COUNT(*) FROM `" + name_ + "`.TAKEN"), "1000\n");
  EXPECT_EQ(relay_->Stop(), 0);
}

// Taking a message fails (memory ran out copying it; here injected): its
// PUBACK must not leave, so mosquitto sends it again, and the redelivery
// filter must not drop that resend as one already taken. The build before
// acknowledged it and lost it. With and without the journal.
TEST_F(FaultE2E, AMessageWhoseHandlingFailsIsNotAcknowledgedAndComesAgain) {
  HundredMessagesWithAFault("SEQTEST_THROW_IN_INTAKE=50", [](const std::string& log) {
    EXPECT_NE(log.find("not taken: memory ran out; its PUBACK is withheld"), std::string::npos) << log;
    EXPECT_NE(log.find("(session present)"), std::string::npos) << log;
  });
}

// Memory runs out right after a message was journaled, before it was
// queued (here injected): this process would never commit it, and its next
// commit's journal position would pass over it. So it ends itself, and the
// crash path keeps the message: the journal hands it over at the next
// start, and mosquitto's resend is recognised. Every message once.
TEST_F(FaultE2E, MemoryRunningOutAfterTheJournalEndsTheProcessAndLosesNothing) {
  HundredMessagesThroughADyingRelay("SEQTEST_THROW_AFTER_JOURNAL=50", 128 + SIGABRT, [](const std::string& log) {
    EXPECT_NE(log.find("journaled, then memory ran out before it was queued; ending the process"), std::string::npos)
        << log;
  });
}

// Any other failure there (here an injected std::runtime_error) takes the
// same path. Until 2026-12-07 it was logged and counted as lost while the
// PUBACK left: 99 of 100 stored.
TEST_F(FaultE2E, AnyFailureAfterTheJournalEndsTheProcessAndLosesNothing) {
  HundredMessagesThroughADyingRelay("SEQTEST_THROW_AFTER_JOURNAL=50:error", 128 + SIGABRT, [](const std::string& log) {
    EXPECT_NE(log.find("journaled, then injected failure before it was queued; ending the process"),
              std::string::npos)
        << log;
  });
}

// Early in a session this process found kept, a delivery is neither
// journaled nor acknowledged before the writer's verdict (it may be
// mosquitto's resend of a message committed already). Memory running out
// right after it was queued (here injected) read on, so its PUBACK left
// before its commit, and a kill before the commit (here held up by a lock
// on MSG) lost it: 0 of 1 stored with the build before. It now waits for
// its verdict as it would have without the shortage: not acknowledged at
// the kill, sent again, stored once.
TEST_F(FaultE2E, MemoryRunningOutAfterADeliveryAwaitingItsVerdictWasQueuedStillWaitsForItsCommit) {
  StartRelay();
  ASSERT_EQ(relay_->Stop(), 0);
  const std::string topic = root() + "/t";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  pub.Publish(topic, "p1");
  ASSERT_TRUE(pub.WaitAllAcked(10s));  // the broker holds it in the stopped relay's session
  // The relay reads MSG at start; its first commit waits for the lock.
  MsgLock lock(servers(), name_);
  ASSERT_TRUE(lock.locked());
  relay_->Launch({"SEQTEST_THROW_AFTER_QUEUE=1"});  // its SUBACK comes after the verdict: no waiting for it
  const bool thrown = WaitFor(
      [&] { return relay_->log().find("queued, then memory ran out") != std::string::npos; }, Scaled(10s));
  if (thrown) std::this_thread::sleep_for(Scaled(300ms));  // a PUBACK, if one is due, leaves now
  const std::size_t stored = StoredCount(topic);
  relay_->Kill();
  lock.Release();
  ASSERT_TRUE(thrown) << relay_->log();
  ASSERT_EQ(stored, 0u) << "committed before the kill: this run shows nothing\n" << relay_->log();
  relay_->Start();
  WaitStored(topic, 1);
  ExpectEachStoredOnce(Audit(topic, 1), 1);
  EXPECT_EQ(relay_->Stop(), 0);
}

// A shortage right after a message was queued over --buffer-max (here
// injected on the third message, batches of one: the first is in the
// writer's batch, held up by a lock on MSG, the second fills the buffer of
// one, the third
// waits a third of the keepalive and goes in over the limit): the link
// pauses, as it does without the shortage. The build before read on,
// counted no pause, and left the writer's resume armed for a pause that
// never came.
TEST_F(FaultE2E, MemoryRunningOutAfterAMessageQueuedOverTheLimitStillPausesTheLink) {
  const std::string control = name_ + "-ctl";
  StartRelay({"--buffer-max=1", "--batch-max=1", "--mqtt-keepalive=5", "--control-prefix=" + control});
  ASSERT_EQ(relay_->Stop(), 0);
  relay_->Start({"SEQTEST_THROW_AFTER_QUEUE=3"});
  MsgLock lock(servers(), name_);
  ASSERT_TRUE(lock.locked());
  const std::string topic = root() + "/t";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  pub.Publish(topic, "p1");
  const bool held_up = WaitFor(
      [&] {
        return servers().Sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '" + name_ +
                             "' AND STATE LIKE 'Waiting for table%'") != "0\n";
      },
      Scaled(5s));
  if (held_up) {
    pub.Publish(topic, "p2");
    std::this_thread::sleep_for(Scaled(300ms));  // queued: the buffer is full
    pub.Publish(topic, "p3");
  }
  const bool thrown = held_up && WaitFor(
      [&] { return relay_->log().find("queued, then memory ran out") != std::string::npos; }, Scaled(10s));
  lock.Release();
  ASSERT_TRUE(held_up) << "the relay's commit was not held up by the lock\n" << relay_->log();
  ASSERT_TRUE(thrown) << relay_->log();
  WaitStored(topic, 3);
  ASSERT_EQ(relay_->Stop(), 0);
  MqttClient late(servers().mqtt_port(), name_ + "-late");
  late.Subscribe(control + "/stats");
  ASSERT_TRUE(late.WaitForCount(1, 10s)) << "no retained report";
  const auto report = nlohmann::json::parse(late.received().front().payload);
  EXPECT_EQ(report["buffer"]["intake_pauses"], 1) << report.dump();
  ExpectEachStoredOnce(Audit(topic, 3), 3);
}

// SIGTERM while the relay holds 20,000 frames the broker never acknowledged
// (mosquitto unreachable, 25,000 committed rows to publish again at start):
// the stop ends within --shutdown-timeout, and the rows stay committed for
// the next start to publish.
TEST_F(FaultE2E, StopWithTheBrokerGoneEndsWithinTheShutdownTimeout) {
  StartRelay({"--shutdown-timeout=2", "--broker-grace=0"});  // active with no broker
  const std::string topic = root() + "/t";
  constexpr int kCount = 25000;
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int i = 1; i <= kCount; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(60s));
  WaitStored(topic, kCount);
  ASSERT_EQ(relay_->Stop(), 0);
  // As if none of it had been confirmed published, and the broker gone.
  servers().Sql("UPDATE `" + name_ + "`.SHARD SET PUBLISHED_IDX = 0");
  relay_->SetBroker(FreePort(), "", "");
  relay_->Launch();
  ASSERT_TRUE(WaitFor([&] { return relay_->log().find("republishing rows 1..") != std::string::npos; }, 30s))
      << relay_->log();
  std::this_thread::sleep_for(Scaled(1500ms));  // reads the rows and fills the 20,000 in flight
  const auto stop_at = std::chrono::steady_clock::now();
  const int code = relay_->Stop();
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - stop_at).count();
  std::fprintf(stderr, "[ figure ] stop with 20,000 frames unacknowledged and the broker gone: %.1f s "
               "(--shutdown-timeout 2)\n", took);
  EXPECT_NE(code, 128 + SIGKILL) << "the relay hung and was killed:\n" << relay_->log();
  EXPECT_LT(took, std::chrono::duration<double>(Scaled(8s)).count()) << relay_->log();
  EXPECT_EQ(StoredCount(topic), static_cast<std::size_t>(kCount)) << "committed rows are never lost";
}

// A publisher's message (msg-id x), acknowledged with no journal and held
// in memory only, and a copy of it handed over from a dead relay's journal
// (a PENDING row) meet in one batch: the copy is dropped as a resend. Its
// PENDING row goes only with the batch's commit, so a relay killed before
// that commit leaves the copy to be handed over again, and the message is
// stored once. Until 2026-12-06 the row was deleted at once, before the
// commit: the message was stored nowhere.
TEST_F(FaultE2E, AHandedOverResendIsForgottenOnlyWithTheCommitOfTheCopyItWasDroppedFor) {
  StartRelay({"--no-journal"});
  ASSERT_EQ(relay_->Stop(), 0);
  relay_->Start({"SEQTEST_KILL_AFTER_RESEND_DROP=1"});
  const std::string t = root() + "/t", db = "`" + name_ + "`";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub", true, true);
  {
    MsgLock lock(servers(), name_);
    ASSERT_TRUE(lock.locked());
    pub.Publish(t, "first");  // its batch waits for the lock
    ASSERT_TRUE(WaitFor([&] {
      return servers().Sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = '" + name_ +
                           "' AND STATE LIKE 'Waiting for table%'") != "0\n";
    }, 10s));
    pub.PublishWithProperties(t, "x", {{"msg-id", "x"}});  // queued behind it, acknowledged
    ASSERT_TRUE(pub.WaitAllAcked(10s));
    servers().Sql("INSERT INTO " + db + ".PENDING (JOURNAL_ID, END_POS, SHARD, ID, MID, DIGEST, MSG, MSG_ID) "
                  "VALUES ('a-dead-relays-journal', 100, 'default', '" + t + "', 7, 0, 'x', 'x')");
    ASSERT_TRUE(WaitFor([&] { return relay_->log().find("storing 1 messages a relay") != std::string::npos; }, 10s))
        << relay_->log();
  }
  // The next batch holds both: the copy is dropped, and the relay killed before the commit.
  ASSERT_EQ(relay_->WaitExit(Scaled(20s)), 128 + SIGKILL) << relay_->log();
  EXPECT_EQ(servers().Sql("SELECT COUNT(*) FROM " + db + ".PENDING"), "1\n");
  relay_->Start();
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(t).size() >= 2; }, 20s)) << relay_->log();
  ASSERT_EQ(relay_->Stop(), 0);
  EXPECT_EQ(AuditTrail(t), (std::vector<std::pair<uint64_t, std::string>>{{1, Hex("first")}, {2, Hex("x")}}));
  EXPECT_EQ(servers().Sql("SELECT COUNT(*) FROM " + db + ".PENDING"), "0\n");
}

// A handed-over message whose resend this relay took and has not committed
// yet (its commit held up by a lock on MSG; the relay without a journal,
// so that resend is in its memory only) stays in PENDING until that
// commit: with the relay killed before it, the next start stores it from
// PENDING; committed, the row goes as stored already. Until 2026-12-07 the
// row was deleted as soon as it matched, and with the kill the message was
// stored nowhere (a helper's review).
TEST_F(FaultE2E, AHandedOverResendTakenHereStaysInPendingUntilItsCommit) {
  StartRelay({"--no-journal"});
  ASSERT_EQ(relay_->Stop(), 0);
  relay_->Start();  // a takeover that resumes the session: its first deliveries go to TAKEN
  const std::string t = root() + "/t", db = "`" + name_ + "`";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  pub.Publish(t, "first");
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(t).size() == 1; }, Scaled(10s))) << relay_->log();
  const std::string session = SqlValue("SELECT SESSION_NO FROM " + db + ".SHARD WHERE NAME = 'default'");
  // The resend of `payload`, taken live while MSG is locked, and its copy
  // handed over (the packet id mosquitto gives it: this session's next);
  // then `end` runs with the lock still held.
  int next_mid = std::stoi(SqlValue("SELECT MID FROM " + db + ".MSG WHERE MSG = 'first'")) + 1;
  auto taken_and_handed_over = [&](const std::string& payload, int end_pos, const std::function<void()>& end) {
    const int mid = next_mid++;
    const uint64_t digest =
        seqrelay::Digest(t, std::span(reinterpret_cast<const uint8_t*>(payload.data()), payload.size()));
    const std::size_t logged = relay_->log().size();
    MsgLock lock(servers(), name_);
    ASSERT_TRUE(lock.locked());
    pub.Publish(t, payload);  // taken and acknowledged; its commit waits for the lock
    ASSERT_TRUE(pub.WaitAllAcked(10s));
    servers().Sql(fmt::format("INSERT INTO {}.PENDING (JOURNAL_ID, END_POS, SHARD, ID, MID, DIGEST, MSG, EPOCH, "
                              "SESSION_NO) VALUES ('a-dead-relays-journal', {}, 'default', '{}', {}, {}, '{}', 0, {})",
                              db, end_pos, t, mid, digest, payload, session));
    ASSERT_TRUE(WaitFor(
        [&] { return relay_->log().find("and has not committed yet; kept", logged) != std::string::npos; },
        Scaled(10s)))
        << relay_->log();
    EXPECT_EQ(servers().Sql("SELECT COUNT(*) FROM " + db + ".PENDING"), "1\n");
    end();
  };
  // (Each in a process of its own: the line waited for is said once in 30 s.)
  taken_and_handed_over("x", 100, [&] {  // killed before the commit
    relay_->Kill();
    ASSERT_EQ(relay_->WaitExit(Scaled(10s)), 128 + SIGKILL);
  });
  relay_->Start();  // stores x from PENDING
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(t).size() == 2; }, Scaled(20s))) << relay_->log();
  taken_and_handed_over("y", 200, [] {});  // committed: then stored already
  ASSERT_TRUE(WaitFor([&] { return servers().Sql("SELECT COUNT(*) FROM " + db + ".PENDING") == "0\n"; },
                      Scaled(10s)))
      << relay_->log();
  // Two journals with the same message (one relay's, then its successor's,
  // which took mosquitto's resend): the first is stored, and the second,
  // a round later, is found stored already and deleted. (A first form of
  // this change waited for TAKEN there too, which a hand-over never writes:
  // the row stayed, a helper's review.)
  const uint64_t z = seqrelay::Digest(t, std::span(reinterpret_cast<const uint8_t*>("z"), 1));
  servers().Sql(fmt::format("INSERT INTO {0}.PENDING (JOURNAL_ID, END_POS, SHARD, ID, MID, DIGEST, MSG, EPOCH, "
                            "SESSION_NO, HANDED_AT) VALUES ('journal-1', 10, 'default', '{1}', 60000, {2}, 'z', 0, "
                            "{3}, NOW(6) - INTERVAL 1 SECOND), ('journal-2', 10, 'default', '{1}', 60000, {2}, 'z', 0, "
                            "{3}, NOW(6))",
                            db, t, z, session));
  ASSERT_TRUE(WaitFor([&] { return servers().Sql("SELECT COUNT(*) FROM " + db + ".PENDING") == "0\n"; },
                      Scaled(10s)))
      << relay_->log();
  std::this_thread::sleep_for(Scaled(300ms));  // a duplicate, if any, lands now
  ASSERT_EQ(relay_->Stop(), 0);
  EXPECT_EQ(AuditTrail(t), (std::vector<std::pair<uint64_t, std::string>>{
                               {1, Hex("first")}, {2, Hex("x")}, {3, Hex("y")}, {4, Hex("z")}}));
  EXPECT_EQ(servers().Sql("SELECT COUNT(*) FROM " + db + ".PENDING"), "0\n");
}

// A restart that resumes the intake's session takes the messages queued
// meanwhile before its SUBACK, and acknowledges each only once committed
// (not journaled: one may be a resend of a committed message); what comes
// after the SUBACK is journaled. Killed after journaling the first of
// those with none of the PUBACKs gone (here a TcpGate drops them), the
// relay's next start hands the journal's record over and stores it, and
// mosquitto resends all four: the committed ones first, which are in no
// journal. Until 2026-12-07 the first of those ended the redelivery
// filter's run of this relay's resends, and the journaled message's resend
// was stored a second time (its stored copy has no packet id for the
// writer's check to find; a helper's review).
TEST_F(FaultE2E, ARelayKilledAfterJournalingItsFirstMessageAfterARestartStoresItOnce) {
  TcpGate gate(servers().mqtt_port(), /*mqtt=*/true);
  relay_ = std::make_unique<RelayProcess>(
      servers(), name_,
      std::vector<std::string>{"--source=" + root() + "/#", "--journal-dir=" + servers().dir() + "/journal-" + name_});
  relay_->SetBroker(gate.port(), "", "");
  relay_->Start();
  ASSERT_EQ(relay_->Stop(), 0);
  const std::string t = root() + "/t";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int i = 1; i <= 3; ++i) pub.Publish(t, "v" + std::to_string(i));  // queued for the relay's session
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  gate.DropClientPubacks(true);
  const std::size_t logged = relay_->log().size();
  relay_->Launch({"SEQTEST_KILL_AFTER_JOURNAL=1"});
  ASSERT_TRUE(WaitFor([&] { return relay_->log().find("intake: subscribed", logged) != std::string::npos; },
                      Scaled(20s)))
      << relay_->log();
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(t).size() == 3; }, Scaled(10s))) << relay_->log();
  pub.Publish(t, "j1");  // after the SUBACK: journaled, then the kill
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_EQ(relay_->WaitExit(Scaled(10s)), 128 + SIGKILL) << relay_->log();
  ASSERT_NE(relay_->log().find("SIGKILL after journaling message", logged), std::string::npos) << relay_->log();
  EXPECT_GE(gate.dropped_pubacks(), 3u);
  gate.DropClientPubacks(false);
  relay_->Start();
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(t).size() >= 4; }, Scaled(20s))) << relay_->log();
  std::this_thread::sleep_for(Scaled(300ms));  // a duplicate, if any, lands now
  ASSERT_EQ(relay_->Stop(), 0);
  std::multiset<std::string> stored;
  for (const auto& [seq, hex] : AuditTrail(t)) stored.insert(hex);
  EXPECT_EQ(stored, (std::multiset<std::string>{Hex("v1"), Hex("v2"), Hex("v3"), Hex("j1")})) << relay_->log();
}

// mosquitto numbers every delivery to the intake's session, those the
// relay does not take too (here 65,534 refused for their size): the next
// message after them has the packet id of the one taken before them, as
// ids go from 1 to 65535 and round. After a reconnect that resumes the
// session, that message, equal to the one taken, is a new message. Until
// 2026-12-07 the redelivery filter took it for that one's resend and
// dropped it, acknowledged and stored nowhere (a helper's review).
TEST_F(FaultE2E, AMessageWhosePacketIdCameRoundIsNoResend) {
  TcpGate gate(servers().mqtt_port(), /*mqtt=*/true);  // cuts the relay's links
  relay_ = std::make_unique<RelayProcess>(
      servers(), name_, std::vector<std::string>{"--source=" + root() + "/#", "--max-payload=4", "--stats-interval=1"});
  relay_->SetBroker(gate.port(), "", "");
  relay_->Start();
  const std::string t = root() + "/t";
  MqttClient watcher(servers().mqtt_port(), name_ + "-watch");
  watcher.Subscribe("relay/stats");
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  pub.Publish(t, "1");
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(t).size() == 1; }, Scaled(10s))) << relay_->log();
  constexpr int kRefused = 65534;
  for (int i = 0; i < kRefused; ++i) pub.Publish(t, "large", 1, 1000);
  ASSERT_TRUE(pub.WaitAllAcked(Scaled(60s)));
  nlohmann::json report;
  ASSERT_TRUE(WaitForReport(
      watcher, [&](const nlohmann::json& r) { return r["messages"]["refused"]["payload_too_large"] == kRefused; },
      Scaled(60s), report))
      << report.dump();
  const std::size_t logged = relay_->log().size();
  gate.Shut();
  gate.Open();
  ASSERT_TRUE(WaitFor([&] { return relay_->log().find("(session present)", logged) != std::string::npos; },
                      Scaled(20s)))
      << relay_->log();
  pub.Publish(t, "1");  // the packet id of the first "1"
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  EXPECT_TRUE(WaitFor([&] { return AuditTrail(t).size() == 2; }, Scaled(10s))) << relay_->log().substr(logged);
  EXPECT_EQ(relay_->log().find("dropped the broker's resend", logged), std::string::npos) << relay_->log().substr(logged);
  EXPECT_EQ(relay_->Stop(), 0);
}

// A round of handed-over messages (one journal's) holds one the shard's
// session has stored already (its resend is in TAKEN) and one it has not;
// the first one's DELETE fails (here killed while PENDING is locked), and
// the round is tried again. Until 2026-12-06 the second had been
// remembered as handed over before the failed DELETE returned it unqueued,
// and the next round took it for a resend this relay had taken: deleted
// from PENDING, stored nowhere.
TEST_F(FaultE2E, AHandedOverMessageIsStoredWhenTheDeleteOfAnotherInItsRoundFails) {
  StartRelay();
  const std::string t = root() + "/t", db = "`" + name_ + "`";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  pub.Publish(t, "first");
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(t).size() == 1; }, Scaled(10s))) << relay_->log();
  // The intake's session (numbered by its first delivery): both rows were
  // taken in it, so mosquitto may resend them to this relay.
  const std::string session = SqlValue("SELECT SESSION_NO FROM " + db + ".SHARD WHERE NAME = 'default'");
  {
    SessionHolder holder(
        servers(), name_,
        "INSERT INTO " + db + ".PENDING (JOURNAL_ID, END_POS, SHARD, ID, MID, DIGEST, MSG, EPOCH, SESSION_NO) "
        "VALUES ('a-dead-relays-journal', 50, 'default', '" + t + "', 5, 11, 'stored-already', 0, " + session +
        "), ('a-dead-relays-journal', 100, 'default', '" + t + "', 7, 12, 'not-stored', 0, " + session + "); " +
        "INSERT INTO " + db + ".TAKEN (SHARD, MID, DIGEST, EPOCH, SESSION_NO) VALUES ('default', 5, 11, 1, " +
        session + "); LOCK TABLES " + db + ".PENDING READ, " + db + ".TAKEN READ;");
    ASSERT_TRUE(holder.locked());
    std::string deleting;
    ASSERT_TRUE(WaitFor([&] {
      deleting = SqlValue("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = '" + name_ +
                       "' AND INFO LIKE 'DELETE FROM PENDING%'");
      return !deleting.empty();
    }, Scaled(10s))) << "the round's DELETE never waited on PENDING:\n" << relay_->log();
    servers().Sql("KILL QUERY " + deleting);
    ASSERT_TRUE(WaitFor([&] { return relay_->log().find("retried with the next round") != std::string::npos; },
                        Scaled(10s)))
        << relay_->log();
  }
  ASSERT_TRUE(WaitFor([&] { return servers().Sql("SELECT COUNT(*) FROM " + db + ".PENDING") == "0\n"; }, Scaled(20s)))
      << relay_->log();
  std::this_thread::sleep_for(Scaled(300ms));  // a duplicate, if any, lands now
  ASSERT_EQ(relay_->Stop(), 0);
  EXPECT_EQ(AuditTrail(t),
            (std::vector<std::pair<uint64_t, std::string>>{{1, Hex("first")}, {2, Hex("not-stored")}}));
}

// A stop whose deadline passes while the broker holds back its PUBACKs
// (paused here, with 20,000 frames in flight) leaves the frames of a
// committed batch unsent. The batches the writer still commits after that
// (here once MSG, locked again, lets them) publish nothing either: the
// saved watermark stays below the unsent frames, and the next start
// republishes them. Until 2026-12-06 the next batch's frames went out once
// the broker answered again, the watermark passed the unsent rows (taken
// for deleted ones), and no subscriber ever received them.
TEST_F(FaultE2E, FramesLeftUnsentAtTheStopsDeadlineAreRepublishedByTheNextStart) {
  constexpr int kTimeoutS = 2;
  // A lease long enough that holding MSG locked (and so the shard's row,
  // which the writer's transaction holds) does not let it lapse.
  const std::string control = name_ + "-ctl";
  StartRelay({"--shutdown-timeout=" + std::to_string(kTimeoutS), "--lease-ms=120000", "--stats-interval=1",
              "--control-prefix=" + control});
  const std::string topic = root() + "/t";
  MqttClient sub(servers().mqtt_port(), name_ + "-sub");
  sub.Subscribe("seq/" + topic);
  MqttClient stats(servers().mqtt_port(), name_ + "-stats");
  stats.Subscribe(control + "/stats");
  auto received = [&] {
    const auto reports = stats.received();
    return reports.empty() ? 0 : nlohmann::json::parse(reports.back().payload)["messages"]["received"].get<int>();
  };
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  constexpr std::size_t kCount = 25000;  // over the 20,000 frames in flight
  struct Resume {  // mosquitto is paused below: never left so for the shard's next tests
    pid_t pid;
    ~Resume() { kill(pid, SIGCONT); }
  } resume{servers().broker_pid()};
  {
    MsgLock lock(servers(), name_);
    ASSERT_TRUE(lock.locked());
    for (std::size_t i = 1; i <= kCount; ++i) pub.Publish(topic, "p" + std::to_string(i), 1, 2000);
    // All journaled and queued in the relay, none committed.
    ASSERT_TRUE(WaitFor([&] { return received() >= static_cast<int>(kCount); }, Scaled(60s)))
        << received() << "\n" << relay_->log();
    kill(servers().broker_pid(), SIGSTOP);
  }
  // The writer commits until 20,000 frames wait for their PUBACKs.
  WaitStored(topic, 20000);
  ASSERT_GE(StoredCount(topic), 20000u);
  kill(relay_->pid(), SIGTERM);
  ASSERT_TRUE(WaitFor([&] { return relay_->log().find("received SIGTERM, stopping") != std::string::npos; }, 10s));
  {
    MsgLock again(servers(), name_);
    ASSERT_TRUE(again.locked());
    // The deadline passes: the frames of the batch being published stay unsent.
    std::this_thread::sleep_for(std::chrono::seconds(kTimeoutS + 1));
    kill(servers().broker_pid(), SIGCONT);
    // The broker takes the frames sent before and acknowledges them: room
    // for more, before the next batch commits.
    ASSERT_TRUE(WaitFor([&] { return sub.received_count() >= 20000; }, 30s)) << sub.received_count();
  }
  const auto code = relay_->WaitExit(Scaled(30s));
  ASSERT_TRUE(code.has_value()) << relay_->log();
  relay_->Start();  // (and takes what mosquitto still held for it)
  WaitStored(topic, kCount);
  auto seqs = [&] {
    std::set<uint64_t> seen;
    for (const auto& m : sub.received()) {
      auto view = seqrelay::DecodeFrame({reinterpret_cast<const uint8_t*>(m.payload.data()), m.payload.size()});
      if (view.ok()) seen.insert(view->header.seq);
    }
    return seen;
  };
  EXPECT_TRUE(WaitFor([&] { return seqs().size() >= kCount; }, 30s))
      << seqs().size() << " SEQs of " << kCount << " ever published\n" << relay_->log();
  const std::set<uint64_t> seen = seqs();
  EXPECT_EQ(StoredCount(topic), kCount);
  EXPECT_EQ(seen.size(), kCount);
  EXPECT_EQ(seen.empty() ? 0 : *seen.rbegin(), kCount);
  EXPECT_EQ(relay_->Stop(), 0);
}

// SIGTERM twice (an impatient operator, or an orchestrator's repeat) while
// the stop waits for the database to commit what the relay holds: the
// second one is logged and changes nothing, and once the database is back
// the stop ends cleanly with every message stored.
TEST_F(FaultE2E, ASecondSigtermDuringTheStopIsHarmless) {
  StartRelay({"--no-journal"});  // what the broker redelivers is all there is
  const std::string topic = root() + "/t";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int i = 1; i <= 100; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  WaitStored(topic, 100);
  servers().StopDatabase();
  for (int i = 101; i <= 200; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return relay_->log().find("holding messages and retrying") != std::string::npos; }, 20s))
      << relay_->log();
  kill(relay_->pid(), SIGTERM);
  ASSERT_TRUE(WaitFor([&] { return relay_->log().find("received SIGTERM, stopping") != std::string::npos; }, 10s));
  kill(relay_->pid(), SIGTERM);
  EXPECT_TRUE(WaitFor([&] { return relay_->log().find("already stopping") != std::string::npos; }, 10s))
      << relay_->log();
  EXPECT_TRUE(relay_->running()) << "the second SIGTERM cut the stop short";
  servers().StartDatabase();
  auto code = relay_->WaitExit(Scaled(30s));
  ASSERT_TRUE(code.has_value()) << relay_->log();
  EXPECT_EQ(*code, 0) << relay_->log();
  relay_->Start();  // whatever the broker still held for the session
  WaitStored(topic, 200);
  Outcome o = Audit(topic, 200);
  EXPECT_EQ(o.lost, 0u);
  EXPECT_EQ(o.duplicates, 0u);
  EXPECT_EQ(relay_->Stop(), 0);
}

// A stop is bounded even by a database that hangs (paused here: its
// connections stay open and answer nothing, as on a stalled disk). The
// writer's call in flight would hold the stop for the connector's 30 s read
// timeout, and the lease's release after it as long again. The process ends
// at --shutdown-timeout + 10 s instead, with one line saying what it was
// waiting on, and the messages it had acknowledged, journaled, are stored
// once by the next start. Until 2026-12-06 it was still stopping 25 s after
// the SIGTERM, when this test gives up.
TEST_F(FaultE2E, AStopPastItsBoundEndsTheProcessAndTheJournalKeepsWhatItHeld) {
  StartRelay({"--shutdown-timeout=1", "--lease-ms=120000"});  // no step-down while the database hangs
  const std::string topic = root() + "/t";
  MqttClient sub(servers().mqtt_port(), name_ + "-sub");
  sub.Subscribe("seq/" + topic);
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int i = 1; i <= 10; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_TRUE(sub.WaitForCount(10, Scaled(20s))) << relay_->log();
  struct Resume {  // never left paused for the shard's next tests
    TestServers& servers;
    ~Resume() { servers.SignalDatabase(SIGCONT); }
  } resume{servers()};
  servers().SignalDatabase(SIGSTOP);
  for (int i = 11; i <= 20; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  // Taken by the relay (journaled; the writer's batch waits on the
  // database), not only by the broker: a stop before that holds nothing,
  // and waits on another step (seen once in CI: "saving the published
  // watermark").
  const std::string journal = servers().dir() + "/journal-" + name_;
  auto journaled = [&] {
    std::string records;
    for (const auto& entry : std::filesystem::directory_iterator(journal)) records += ReadFile(entry.path().string());
    for (int i = 11; i <= 20; ++i) {
      if (records.find("p" + std::to_string(i)) == std::string::npos) return false;
    }
    return true;
  };
  ASSERT_TRUE(WaitFor(journaled, Scaled(10s))) << relay_->log();
  const auto signalled = std::chrono::steady_clock::now();
  kill(relay_->pid(), SIGTERM);
  const auto code = relay_->WaitExit(25s);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - signalled);
  ASSERT_TRUE(code.has_value()) << "still stopping after " << took.count() << " ms\n" << relay_->log();
  EXPECT_EQ(*code, 1);
  EXPECT_GE(took, 10s) << relay_->log();  // 11 s, less the stop's start
  EXPECT_LE(took, 16s) << relay_->log();
  EXPECT_NE(relay_->log().find("the stop did not end within --shutdown-timeout (1 s) + 10 s; still committing what "
                               "it holds: ending the process now (exit 1). Messages acknowledged and not committed "
                               "stay in the journal, for its next start"),
            std::string::npos)
      << relay_->log();
  servers().SignalDatabase(SIGCONT);
  RestartAfterAnUnreleasedLeaseAndExpectAllStored(topic, 20);
}

// A relay killed during a database outage with more in its journal than one
// round of the hand-over (1,000 messages): at its next start every round
// is stored before the intake takes anything new, so SEQs follow arrival.
// Until 2026-12-07 only the first round went before: the messages mosquitto
// kept for the relay meanwhile were stored between the rounds.
TEST_F(FaultE2E, AJournalOfSeveralRoundsIsStoredBeforeAnythingNewAtTheNextStart) {
  StartRelay({"--lease-ms=30000"});  // takes all 2,500 with MariaDB paused (a lapsed lease takes nothing)
  const std::string topic = root() + "/t";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int i = 1; i <= 10; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  WaitStored(topic, 10);
  struct Resume {  // never left paused for the shard's next tests
    TestServers& servers;
    ~Resume() { servers.SignalDatabase(SIGCONT); }
  } resume{servers()};
  servers().SignalDatabase(SIGSTOP);
  constexpr int kJournaled = 2510, kKept = 200;  // three rounds; then what mosquitto keeps for the relay
  for (int i = 11; i <= kJournaled; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(Scaled(20s)));
  const std::string journal = servers().dir() + "/journal-" + name_;
  auto journaled = [&] {  // the relay journals in arrival order: the last one, and all before it
    for (const auto& entry : std::filesystem::directory_iterator(journal)) {
      if (ReadFile(entry.path().string()).find("p" + std::to_string(kJournaled)) != std::string::npos) return true;
    }
    return false;
  };
  ASSERT_TRUE(WaitFor(journaled, Scaled(20s))) << relay_->log();
  relay_->Kill();
  servers().SignalDatabase(SIGCONT);
  for (int i = kJournaled + 1; i <= kJournaled + kKept; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  RestartAfterAnUnreleasedLeaseAndExpectAllStored(topic, kJournaled + kKept);
  const auto trail = AuditTrail(topic);
  ASSERT_EQ(trail.size(), static_cast<std::size_t>(kJournaled + kKept));
  std::size_t out_of_order = 0, first = 0;
  for (std::size_t i = 0; i < trail.size(); ++i) {
    if (trail[i].second != Hex("p" + std::to_string(i + 1)) && out_of_order++ == 0) first = i;
  }
  EXPECT_EQ(out_of_order, 0u) << "SEQ " << trail[first].first << " holds a message taken after later SEQs'\n"
                              << relay_->log();
}

// A stop with both servers away: the writer commits what it holds once
// MariaDB is back and publishes it once mosquitto is, its frames after
// libmosquitto's resends. Until 9ba772b they also waited for the output
// reconnect's republish, which the main thread, stopping, never ran: the
// stop took its whole --shutdown-timeout and those frames went out only at
// the next start (a review's finding).
TEST_F(FaultE2E, AStopWhileBothServersAreAwayPublishesOnceTheyReturn) {
  StartRelay({"--shutdown-timeout=40"});
  const std::string topic = root() + "/t";
  MqttClient sub(servers().mqtt_port(), name_ + "-sub", /*clean=*/false);
  sub.Subscribe("seq/" + topic);
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int i = 1; i <= 10; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_TRUE(sub.WaitForCount(10, Scaled(20s))) << relay_->log();
  servers().StopDatabase();
  struct Restart {  // never left down for the shard's next tests
    TestServers& servers;
    bool db = true, broker = false;
    ~Restart() {
      if (db) servers.StartDatabase();
      if (broker) servers.StartBroker();
    }
  } restart{servers()};
  for (int i = 11; i <= 20; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return relay_->log().find("holding messages and retrying") != std::string::npos; }, 20s))
      << relay_->log();
  servers().StopBroker();
  restart.broker = true;
  relay_->Signal(SIGTERM);
  ASSERT_TRUE(WaitFor([&] { return relay_->log().find("received SIGTERM, stopping") != std::string::npos; }, 10s));
  const auto stop_asked = std::chrono::steady_clock::now();
  servers().StartDatabase();
  restart.db = false;
  servers().StartBroker();
  restart.broker = false;
  const auto code = relay_->WaitExit(Scaled(35s));
  const auto took = std::chrono::steady_clock::now() - stop_asked;
  ASSERT_TRUE(code.has_value()) << relay_->log();
  EXPECT_EQ(*code, 0) << relay_->log();
  std::cerr << "[ figure ] the stop took "
            << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms after SIGTERM\n";
  // Everything committed reached the subscriber before the relay exited.
  const auto trail = AuditTrail(topic);
  ASSERT_GE(trail.size(), 11u) << "nothing was committed during the stop";
  std::set<uint64_t> seqs;
  ASSERT_TRUE(WaitFor(
      [&] {
        for (const auto& m : sub.received()) {
          auto view = seqrelay::DecodeFrame({reinterpret_cast<const uint8_t*>(m.payload.data()), m.payload.size()});
          if (view.ok()) seqs.insert(view->header.seq);
        }
        return seqs.size() >= trail.size();
      },
      Scaled(10s)))
      << seqs.size() << " SEQs of " << trail.size() << " committed reached the subscriber\n" << relay_->log();
  EXPECT_EQ(relay_->log().find("not committed before --shutdown-timeout"), std::string::npos) << relay_->log();
}

// A stop past --shutdown-timeout with the database gone gives up what it
// holds uncommitted: journaled (and acknowledged), it is kept, not lost.
// The stop says so and exits 0, and the next start hands it over. Until
// 2026-12-06 it was counted lost, and the stop exited 1 saying so.
TEST_F(FaultE2E, JournaledMessagesAStopGivesUpAreKeptForTheNextStartNotLost) {
  StartRelay({"--shutdown-timeout=2", "--lease-ms=60000"});  // no step-down while the database is gone
  const std::string topic = root() + "/t";
  MqttClient sub(servers().mqtt_port(), name_ + "-sub");
  sub.Subscribe("seq/" + topic);
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int i = 1; i <= 10; ++i) pub.Publish(topic, "p" + std::to_string(i));
  // Published: the relay has its COMMITs' answers (rows merely in MSG may
  // be of a COMMIT whose answer the database's stop then cuts off).
  ASSERT_TRUE(sub.WaitForCount(10, Scaled(20s))) << relay_->log();
  DatabaseDown database(servers());
  for (int i = 11; i <= 20; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return relay_->log().find("holding messages and retrying") != std::string::npos; }, 20s))
      << relay_->log();
  EXPECT_EQ(relay_->Stop(), 0) << relay_->log();
  const std::string log = relay_->log();
  // Those the intake had taken by the stop (mosquitto may still have been
  // delivering the last ones: it keeps those in the relay's session).
  const auto kept = log.find(" received messages were not committed before --shutdown-timeout (2 s): kept for the "
                             "shard's next active");
  ASSERT_NE(kept, std::string::npos) << log;
  const auto count_at = log.rfind(' ', kept - 1) + 1;
  const int not_committed = std::stoi(log.substr(count_at, kept - count_at));
  EXPECT_GE(not_committed, 1) << log;
  EXPECT_LE(not_committed, 10) << log;
  EXPECT_EQ(log.find("they are lost"), std::string::npos) << log;
  database.Now();
  RestartAfterAnUnreleasedLeaseAndExpectAllStored(topic, 20);
}

// The journal belongs to its database: started against a fresh database
// (here: dropped and made again) with an old --journal-dir, the relay
// refuses with one clear line instead of storing the journal's records
// again with new SEQs; with an empty journal directory it runs.
TEST_F(FaultE2E, AJournalOfAnotherDatabaseIsRefusedAtStart) {
  const std::string journal = servers().dir() + "/journal-" + name_;
  StartRelay({"--journal-dir=" + journal});
  const std::string topic = root() + "/t";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int i = 1; i <= 50; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  WaitStored(topic, 50);
  ASSERT_EQ(relay_->Stop(), 0);
  servers().Sql("DROP DATABASE `" + name_ + "`");
  const std::string log = LogOfARefusedStart(*relay_);
  EXPECT_NE(log.find("journal " + journal + " holds "), std::string::npos) << log;
  EXPECT_NE(log.find("(a fresh or reset database?)"), std::string::npos) << log;
  EXPECT_EQ(servers().Sql("SELECT COUNT(*) FROM `" + name_ + "`.MSG"), "0\n") << "nothing may be stored again";
  std::filesystem::remove_all(journal);
  relay_->Start();
  EXPECT_EQ(relay_->Stop(), 0);
}

// The journal is on by default, under the user's state directory; a
// journal directory that cannot be made stops the start (exit 2) with one
// line naming it and both options; a second relay on a journal directory
// in use is refused the same way.
TEST_F(FaultE2E, TheJournalIsOnByDefaultAndAnUnusableDirectoryStopsTheStart) {
  const std::string home = servers().dir() + "/home-" + name_;
  relay_ = std::make_unique<RelayProcess>(servers(), name_, std::vector<std::string>{"--source=" + root() + "/#"});
  relay_->Start({"HOME=" + home});
  const std::string dir = home + "/.local/state/seqrelay/journal/" + name_;
  EXPECT_TRUE(std::filesystem::exists(dir + "/journal-id")) << relay_->log();
  EXPECT_EQ(relay_->log().find("--no-journal:"), std::string::npos) << "no warning about a missing journal";

  // The same directory, given by a second relay while the first runs.
  RelayProcess second(servers(), name_, {"--source=" + root() + "/#", "--journal-dir=" + dir}, "second");
  second.Launch();
  auto code = second.WaitExit(Scaled(30s));
  ASSERT_TRUE(code.has_value()) << second.log();
  EXPECT_EQ(*code, 2) << second.log();
  EXPECT_NE(second.log().find("journal: '" + dir + "' is in use by another relay"), std::string::npos)
      << second.log();
  EXPECT_EQ(relay_->Stop(), 0);

  // A path under a file: it cannot be made, whoever runs the relay.
  const std::string file = servers().dir() + "/file-" + name_;
  std::ofstream(file) << "x";
  RelayProcess bad(servers(), name_, {"--source=" + root() + "/#", "--journal-dir=" + file + "/journal"}, "bad");
  bad.Launch();
  code = bad.WaitExit(Scaled(30s));
  ASSERT_TRUE(code.has_value()) << bad.log();
  EXPECT_EQ(*code, 2) << bad.log();
  EXPECT_NE(bad.log().find("cannot create the directory '" + file + "/journal'"), std::string::npos) << bad.log();
  EXPECT_NE(bad.log().find("--no-journal"), std::string::npos) << bad.log();
}

// Without the journal, the messages the relay held in memory when it was
// killed are lost (libmosquitto acknowledged them before the relay saw
// them). The count is printed, not asserted: it depends on timing.
TEST_F(FaultE2E, RelaySigkilledUnderLoadWithoutJournalShowsTheWindow) {
  StartRelay({"--no-journal", "--batch-delay-us=20000"});  // a wide window: up to 20 ms of messages in memory
  const std::string topic = root() + "/t";
  constexpr int kCount = 4000;
  PacedLoad load(servers().mqtt_port(), name_, topic, kCount, 1000);
  ASSERT_TRUE(load.WaitPublished(1500, 30s));
  relay_->Kill();
  std::this_thread::sleep_for(2s);
  relay_->Start();
  ASSERT_TRUE(load.Finish(30s));
  WaitStored(topic, kCount);
  Outcome o = Audit(load);
  Print("relay SIGKILL at 1,000 msg/s, restart after 2 s, no journal", o, 0);
  EXPECT_EQ(o.duplicates, 0u);
  EXPECT_EQ(o.delivered, o.stored);
  EXPECT_TRUE(o.gapless) << "even with loss, SEQ has no gap";
}

TEST_F(FaultE2E, BrokerSigkilledUnderLoadWithTheRelayConnectedLosesNothing) {
  StartRelay({"--journal-dir=" + servers().dir() + "/journal-" + name_});
  // mosquitto saves sessions when `last save + autosave_interval < now` in
  // whole seconds: with autosave_interval 1, a session can be up to 2 s old
  // before it is on disk. A relay that has run longer than that has its
  // session saved; one killed with the broker sooner starts a new session.
  std::this_thread::sleep_for(2500ms);
  const std::string topic = root() + "/t";
  constexpr int kCount = 3000;
  PacedLoad load(servers().mqtt_port(), name_, topic, kCount, 1000);
  ASSERT_TRUE(load.WaitPublished(1000, 30s));
  const int at_kill = load.published();
  servers().StopBroker(SIGKILL);
  servers().StartBroker();
  const auto restarted = std::chrono::steady_clock::now();
  // (It failed in CI with one publish never acknowledged to the publisher,
  // and MSG 2999 of 3000: libmosquitto never sent it again. Published again.)
  load.JoinPublisher();
  ASSERT_TRUE(load.pub.WaitAllAckedAfterARestart(60s))
      << load.pub.unacked() << " publishes never acknowledged to the publisher; MSG holds " << StoredCount(topic)
      << " of " << kCount;
  WaitStored(topic, kCount);
  const double recover = std::chrono::duration<double>(std::chrono::steady_clock::now() - restarted).count();
  Outcome o = Audit(load);
  Print("mosquitto SIGKILL at 1,000 msg/s, relay connected, journal on", o, recover);
  // Nothing mosquitto delivered to the relay may be lost. What it accepted
  // from the publisher and had not yet sent on (its queue for the relay's
  // session, in memory until the next autosave) dies with it: none when the
  // relay keeps up, a few dozen when it falls behind (seen beside the
  // sanitizer build). The relay's journal tells the two apart.
  ASSERT_EQ(relay_->Stop(), 0);
  const std::set<std::string> journaled = JournaledPayloads(servers().dir() + "/journal-" + name_);
  std::size_t lost_by_broker = 0;
  for (int m : Missing(topic, kCount)) {
    const bool reached_relay = journaled.count("p" + std::to_string(m)) > 0;
    lost_by_broker += !reached_relay;
    std::fprintf(stderr, "[ figure ] lost p%d (the kill came after p%d): %s\n", m, at_kill,
                 reached_relay ? "the relay had taken it" : "mosquitto never sent it to the relay");
    EXPECT_FALSE(reached_relay) << "p" << m << " reached the relay and was lost";
  }
  // Every stored message went through the journal: else the check above shows nothing.
  EXPECT_GE(journaled.size(), kCount - Missing(topic, kCount).size()) << "the journal was not read";
  EXPECT_LE(lost_by_broker, 200u) << "more than mosquitto's queue of 0.2 s at this rate: the relay fell far behind";
  EXPECT_EQ(o.delivered, o.stored);  // a publisher resend after its reconnect is a new message
  const std::string log = relay_->log();
  EXPECT_NE(log.find("intake: reconnected to mosquitto", log.find("lost the connection")), std::string::npos);
  EXPECT_NE(log.find("(session present)", log.find("lost the connection")), std::string::npos)
      << "the restarted broker no longer had the relay's session";
  EXPECT_TRUE(o.gapless);
}

// mosquitto keeps queued messages only in memory between autosaves
// (autosave_interval 1 in every config the project ships or starts). When
// it is SIGKILLed while the relay is away, the relay's session survives with
// what was saved; what the broker accepted after its last save is lost, and
// no relay can get it back. The test shows that bound.
TEST_F(FaultE2E, BrokerSigkilledWhileTheRelayIsAwayLosesAtMostItsLastAutosaveInterval) {
  StartRelay({"--journal-dir=" + servers().dir() + "/journal-" + name_});
  const std::string topic = root() + "/t";
  constexpr int kCount = 3000, kRate = 1000;
  PacedLoad load(servers().mqtt_port(), name_, topic, kCount, kRate);
  ASSERT_TRUE(load.WaitPublished(1000, 30s));
  relay_->Kill();
  const int at_relay_kill = load.published();
  std::this_thread::sleep_for(2500ms);  // the broker queues for the relay's session meanwhile
  const int at_broker_kill = load.published();
  servers().StopBroker(SIGKILL);
  servers().StartBroker();
  relay_->Start();
  ASSERT_TRUE(load.Finish(60s));
  WaitStored(topic, kCount);
  Outcome o = Audit(load);
  Print("mosquitto SIGKILL after 2.5 s of queue for the absent relay", o, 0);
  EXPECT_TRUE(o.gapless);
  EXPECT_EQ(o.delivered, o.stored);
  EXPECT_EQ(o.duplicates, 0u);
  // The session survived: what was queued before the last autosave is there.
  // Only messages from the last autosave interval (1 s, plus one for the
  // save's own timing) before the kill may be missing.
  for (int m : Missing(topic, kCount)) {
    EXPECT_GT(m, at_broker_kill - 2 * kRate) << "message " << m << " was queued long before the kill";
    // (+200: the publisher goes on between the count read and the kill,
    // 1 message a millisecond; a busy machine may pause the test that long.)
    EXPECT_LE(m, at_broker_kill + 200) << "message " << m << " was published after the broker came back";
  }
  EXPECT_GT(at_broker_kill - at_relay_kill, 1500) << "the queue the session had to keep";
  EXPECT_EQ(relay_->Stop(), 0);
}

// A small tmpfs, mounted for one test and detached at its end.
class SmallDisk {
 public:
  SmallDisk(std::string path, const std::string& size) : path_(std::move(path)) {
    std::filesystem::create_directories(path_);
    if (mount("tmpfs", path_.c_str(), "tmpfs", 0, ("size=" + size).c_str()) != 0) {
      error_ = std::strerror(errno);
    }
  }
  ~SmallDisk() {
    if (error_.empty()) umount2(path_.c_str(), MNT_DETACH);
  }
  bool Resize(const std::string& size) {
    return mount("tmpfs", path_.c_str(), "tmpfs", MS_REMOUNT, ("size=" + size).c_str()) == 0;
  }
  const std::string& error() const { return error_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::string error_;
};

// The journal's disk fills up under load: every failed write is counted
// (journal.errors in relay/stats) and logged, and a message the journal
// could not take is acknowledged to mosquitto only once it is committed,
// so a SIGKILL then loses none (mosquitto sends the unacknowledged ones
// again). Acknowledged at once and kept in memory, as they were until
// 2026-12-05, the messages of the batch under way were lost by that kill.
// Once there is room the journal takes records again, and after a second
// SIGKILL it gives back the ones not yet committed. This needs the record
// the disk took only part of to be cut off: left in place, the next start
// reads the journal as ending there and loses what came after it.
TEST_F(FaultE2E, AFullJournalDiskIsCountedAndLoggedAndLosesNothing) {
  SmallDisk disk(servers().dir() + "/small-disk", "64k");
  if (!disk.error().empty()) GTEST_SKIP() << "cannot mount a tmpfs here: " << disk.error();
  // Lingering, batches wait 100 ms: messages acknowledged before their
  // commit would be a batch's worth in memory at the first kill, and the
  // second kill finds messages journaled but not yet committed. A relay
  // that starts with messages waiting for it takes those that come before
  // its SUBACK one commit at a time: that start is made without the linger.
  auto relay = [&](bool linger) {
    std::vector<std::string> args = {"--journal-dir=" + disk.path(), "--stats-interval=1",
                                     "--source=" + root() + "/#"};
    if (linger) args.push_back("--batch-delay-us=100000");
    relay_ = std::make_unique<RelayProcess>(servers(), name_, args);
    return relay_.get();
  };
  relay(true)->Start();
  const std::string topic = root() + "/t";
  // Records (12 bytes + topic + payload "p<i>") fill the 65,536 bytes in
  // order, less the two 4 KiB tmpfs pages of the journal's database-id and
  // journal-id files; from the first that does not fit on, every one is an
  // error.
  int fit = 0;
  for (std::size_t bytes = 0;; ++fit) {
    bytes += 12 + topic.size() + ("p" + std::to_string(fit + 1)).size();
    if (bytes > 64 * 1024 - 2 * 4096) break;
  }
  const int count = fit + 3000;
  constexpr int kAfter = 200;

  MqttClient stats(servers().mqtt_port(), name_ + "-stats");
  stats.Subscribe("relay/stats");
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  std::atomic<int> published{0};
  std::thread paced([&] { PublishPaced(pub, topic, count, 2000, published); });
  // Past the full disk each message waits for its own commit, and with it
  // the reading of the next: killed once 20 of them are stored and a report
  // (one a second) has counted their errors.
  int errors = -1;
  const bool past = WaitFor(
      [&] {
        if (auto reports = stats.received(); !reports.empty()) {
          errors = nlohmann::json::parse(reports.back().payload)["journal"]["errors"].get<int>();
        }
        return errors > 0 && StoredCount(topic) >= static_cast<std::size_t>(fit) + 20;
      },
      Scaled(30s));
  relay_->Kill();
  paced.join();
  ASSERT_TRUE(past) << StoredCount(topic) << " stored, " << fit << " fit in the journal, " << errors
                    << " journal errors reported";
  ASSERT_TRUE(pub.WaitAllAcked(10s));  // by the broker, which keeps the rest for the relay's session
  const std::size_t stored_at_kill = StoredCount(topic);
  EXPECT_LT(stored_at_kill, static_cast<std::size_t>(count)) << "the kill came after the whole load was stored";
  EXPECT_NE(relay_->log().find("journal: append: No space left on device; the message is acknowledged to mosquitto "
                               "only once committed"),
            std::string::npos) << relay_->log();

  // Room again: everything the kill left unacknowledged comes back.
  ASSERT_TRUE(disk.Resize("4m")) << std::strerror(errno);
  relay(false)->Start();
  WaitStored(topic, count);
  ASSERT_EQ(relay_->Stop(), 0);
  const std::size_t stored_after_restart = StoredCount(topic);

  // Dies after the 100th record journaled; its successor gets them back.
  relay(true)->Start({"SEQTEST_KILL_AFTER_JOURNAL=100"});
  for (int i = count + 1; i <= count + kAfter; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_EQ(relay_->WaitExit(Scaled(10s)), 128 + SIGKILL) << "the journal took no 100 records after the resize";
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  relay(false)->Start();
  WaitStored(topic, count + kAfter);
  const std::string log = relay_->log();
  EXPECT_NE(log.find("but not committed handed over to shard"), std::string::npos) << log;
  EXPECT_EQ(log.find("the messages recorded there are lost"), std::string::npos) << log;
  Outcome o = Audit(topic, count + kAfter);
  std::cout << "[ figure ] full journal disk: " << fit << " journaled, killed with " << stored_at_kill << " of "
            << count << " stored (" << errors << " journal errors reported), " << stored_after_restart
            << " after the restart; " << o.stored << " of " << count + kAfter << " after a second kill, " << o.lost
            << " lost, " << o.duplicates << " duplicates\n";
  EXPECT_EQ(stored_after_restart, static_cast<std::size_t>(count));
  ExpectEachStoredOnce(o, count + kAfter);
  EXPECT_EQ(relay_->Stop(), 0);
}

TEST_F(FaultE2E, SeqauditFindsGapsAndPassesAGaplessTrail) {
  StartRelay();
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int i = 1; i <= 30; ++i) pub.Publish(root() + (i % 2 ? "/a" : "/b"), "p" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  WaitStored(root() + "/a", 15);
  WaitStored(root() + "/b", 15);
  const std::vector<std::string> db = {SEQAUDIT_BINARY, "--db-port=" + std::to_string(servers().db_port()),
                                       "--db-user=seqrelay", "--db-password=" + std::string(TestServers::kDbPassword),
                                       "--db-name=" + name_};
  std::string out;
  EXPECT_EQ(RunCommand(db, &out), 0) << out;
  EXPECT_NE(out.find("seqaudit: 2 topics, 30 rows, 0 with gaps"), std::string::npos) << out;

  servers().Sql("DELETE FROM `" + name_ + "`.MSG WHERE ID = '" + root() + "/b' AND SEQ IN (1, 4, 5, 9)");
  EXPECT_EQ(RunCommand(db, &out), 1) << out;
  EXPECT_NE(out.find("rows 11         SEQ 2..15  GAPS: 4..5 9..9 (3 SEQs missing)"), std::string::npos) << out;
  EXPECT_NE(out.find("seqaudit: 2 topics, 26 rows, 1 with gaps"), std::string::npos) << out;
  // Rows missing before the first stored one are what retention deletes
  // (PROTOCOL 5.2): shown, not a gap, unless --from-one.
  servers().Sql("DELETE FROM `" + name_ + "`.MSG WHERE ID = '" + root() + "/a' AND SEQ <= 3");
  auto a_from_one = db;
  a_from_one.insert(a_from_one.end(), {"--topic=" + root() + "/a"});
  EXPECT_EQ(RunCommand(a_from_one, &out), 0) << out;
  EXPECT_NE(out.find("rows 12         SEQ 4..15  ok (starts at 4: older rows deleted)"), std::string::npos) << out;
  a_from_one.push_back("--from-one");
  EXPECT_EQ(RunCommand(a_from_one, &out), 1) << out;
  EXPECT_NE(out.find("SEQ 4..15  GAPS: 1..3 (3 SEQs missing)"), std::string::npos) << out;

  auto only_a = db;
  only_a.push_back("--topic=" + root() + "/a");
  EXPECT_EQ(RunCommand(only_a, &out), 0) << out;
  EXPECT_NE(out.find("seqaudit: 1 topics, 12 rows, 0 with gaps"), std::string::npos) << out;
  auto wrong_port = db;
  wrong_port[1] = "--db-port=" + std::to_string(FreePort());
  EXPECT_EQ(RunCommand(wrong_port, &out), 3) << out;
  // A port no server can have is an option error (until 2026-12-06 70000
  // reached port 4464, and 0 port 3306: exit 3).
  for (const char* bad : {"--db-port=70000", "--db-port=0", "--db-host=127.0.0.1:abc"}) {
    auto bad_port = db;
    bad_port[1] = bad;
    EXPECT_EQ(RunCommand(bad_port, &out), 2) << bad << ": " << out;
  }
  auto no_such = db;
  no_such.push_back("--topic=" + root() + "/none");
  EXPECT_EQ(RunCommand(no_such, &out), 4) << out;
  // More than ten ranges: the first ten, "...", and the count of all.
  for (int i = 31; i <= 60; ++i) pub.Publish(root() + "/c", "c" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  WaitStored(root() + "/c", 30);
  servers().Sql("DELETE FROM `" + name_ + "`.MSG WHERE ID = '" + root() + "/c' AND SEQ % 2 = 0 AND SEQ < 30");
  auto only_c = db;
  only_c.push_back("--topic=" + root() + "/c");
  EXPECT_EQ(RunCommand(only_c, &out), 1) << out;
  EXPECT_NE(out.find("GAPS: 2..2 4..4 6..6 8..8 10..10 12..12 14..14 16..16 18..18 20..20 ... (14 SEQs missing)"),
            std::string::npos)
      << out;
}

// seqaudit reads a live database in short statements (--chunk-rows index
// entries at most, --busy percent of its time): the verdicts are the same
// whatever the windows, one SEQ or the default 100,000.
TEST_F(FaultE2E, SeqauditInWindowsOfAnySizeGivesTheSameVerdicts) {
  StartRelay();
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  const std::vector<std::pair<std::string, int>> sizes = {{"/a", 25}, {"/b", 7}, {"/c", 1}, {"/d", 13}};
  for (const auto& [t, n] : sizes) {
    for (int i = 1; i <= n; ++i) pub.Publish(root() + t, "p" + std::to_string(i));
  }
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  for (const auto& [t, n] : sizes) WaitStored(root() + t, n);
  const std::string msg = "`" + name_ + "`.MSG";
  servers().Sql("DELETE FROM " + msg + " WHERE ID = '" + root() + "/a' AND SEQ IN (5, 6, 17)");
  servers().Sql("DELETE FROM " + msg + " WHERE ID = '" + root() + "/d' AND SEQ <= 4");  // as retention does
  const std::vector<std::string> db = {SEQAUDIT_BINARY, "--db-port=" + std::to_string(servers().db_port()),
                                       "--db-user=seqrelay", "--db-password=" + std::string(TestServers::kDbPassword),
                                       "--db-name=" + name_};
  // stdout alone: the last line on stderr gives the statements and times.
  auto audit = [&](std::vector<std::string> options, std::string* report, std::string* figures) {
    auto argv = db;
    argv.insert(argv.end(), options.begin(), options.end());
    std::string out;
    const int code = RunCommand(argv, &out);
    report->clear();
    figures->clear();
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
      (line.find(" statements, ") != std::string::npos ? *figures : *report) += line + "\n";
    }
    return code;
  };
  std::string whole, whole_figures;
  ASSERT_EQ(audit({}, &whole, &whole_figures), 1) << whole << whole_figures;
  EXPECT_NE(whole.find("rows 22         SEQ 1..25  GAPS: 5..6 17..17 (3 SEQs missing)"), std::string::npos) << whole;
  EXPECT_NE(whole.find("rows 9          SEQ 5..13  ok (starts at 5: older rows deleted)"), std::string::npos)
      << whole;
  EXPECT_NE(whole.find("seqaudit: 4 topics, 39 rows, 1 with gaps"), std::string::npos) << whole;
  EXPECT_NE(whole_figures.find("(--busy 50, --chunk-rows 100000)"), std::string::npos) << whole_figures;
  for (const char* chunk : {"--chunk-rows=1", "--chunk-rows=4", "--chunk-rows=25"}) {
    std::string report, figures;
    EXPECT_EQ(audit({chunk, "--busy=100"}, &report, &figures), 1) << chunk << ": " << report << figures;
    EXPECT_EQ(report, whole) << chunk;
    EXPECT_NE(figures.find("0.00 s paused"), std::string::npos) << chunk << ": " << figures;
  }
  // Windows of one SEQ, each a statement: the span's page, then one per
  // stored SEQ (22 + 7 + 1 + 9; the missing ones are skipped over, known
  // missing), where the default needs three (the page, one count, the
  // gappy window's ranges).
  std::string report, figures;
  ASSERT_EQ(audit({"--chunk-rows=1", "--busy=100"}, &report, &figures), 1);
  unsigned long long statements = 0;
  ASSERT_EQ(std::sscanf(figures.c_str(), "seqaudit: %llu statements", &statements), 1) << figures;
  EXPECT_EQ(statements, 40u) << figures;
  unsigned long long default_statements = 0;
  ASSERT_EQ(std::sscanf(whole_figures.c_str(), "seqaudit: %llu statements", &default_statements), 1);
  EXPECT_EQ(default_statements, 3u) << whole_figures;
  // The pause before each next statement: (100 - busy) / busy of the
  // last one's time, slept (the run takes at least the pauses it counts).
  const auto started = std::chrono::steady_clock::now();
  ASSERT_EQ(audit({"--chunk-rows=1", "--busy=10"}, &report, &figures), 1);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  double reading = 0, paused = 0;
  ASSERT_EQ(std::sscanf(figures.c_str(), "seqaudit: %*u statements, %lf s reading, %lf s paused", &reading, &paused),
            2)
      << figures;
  EXPECT_GT(paused, 0) << figures;
  EXPECT_LE(paused, 9 * reading + 0.06) << figures;  // both rounded to 0.01 s
  EXPECT_GE(wall, reading + paused - 0.02) << figures;
  for (const char* bad : {"--chunk-rows=0", "--chunk-rows=-1", "--busy=0", "--busy=101"}) {
    EXPECT_EQ(audit({bad}, &report, &figures), 2) << bad << ": " << report << figures;
  }
}

// seqaudit pages through more topics than one statement lists (1,000),
// counts up to 200 small topics a statement, and takes rows retention
// deletes while it reads (between its read of a topic's span and its
// count) for what they are: no gap.
TEST_F(FaultE2E, SeqauditPagesThroughTopicsAndTakesRowsDeletedMeanwhileForNoGap) {
  StartRelay();
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  const std::string old_topic = root() + "/old";
  for (int i = 1; i <= 50; ++i) pub.Publish(old_topic, "p" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  WaitStored(old_topic, 50);
  ASSERT_EQ(relay_->Stop(), 0);
  // 1,100 more topics of one row each, written as the relay writes them.
  const std::string db = "`" + name_ + "`";
  servers().Sql("INSERT INTO " + db + ".TOPIC (ID) SELECT CONCAT('" + root() + "/t', seq) FROM " + db +
                ".seq_1_to_1100");
  servers().Sql("INSERT INTO " + db + ".MSG (idx, ID, QOS, SEQ, MSG) SELECT 1000 + seq, CONCAT('" + root() +
                "/t', seq), 1, 1, 'x' FROM " + db + ".seq_1_to_1100");
  const std::vector<std::string> db_options = {"--db-port=" + std::to_string(servers().db_port()),
                                               "--db-user=seqrelay",
                                               "--db-password=" + std::string(TestServers::kDbPassword),
                                               "--db-name=" + name_, "--busy=100"};
  std::vector<std::string> argv = {SEQAUDIT_BINARY};
  argv.insert(argv.end(), db_options.begin(), db_options.end());
  std::string out;
  EXPECT_EQ(RunCommand(argv, &out), 0) << out;
  EXPECT_NE(out.find("seqaudit: 1101 topics, 1150 rows, 0 with gaps"), std::string::npos) << out;
  // Two pages of spans, and the counts: 1,050 SEQs in windows of 100,000,
  // 200 windows a statement at most: 6 of them.
  EXPECT_NE(out.find("seqaudit: 8 statements,"), std::string::npos) << out;

  // The oldest 20 rows of `old` deleted after seqaudit read its span
  // (1..50) and before it counts them.
  const std::string log = servers().dir() + "/" + name_ + "-seqaudit.log";
  argv.push_back("--topic=" + old_topic);
  Process audit;
  audit.Start(argv, log, {"SEQTEST_AUDIT_PAUSE_MS=" + std::to_string(Scaled(2000ms).count())});
  ASSERT_TRUE(WaitFor([&] { return ReadFile(log).find("test pause after the spans") != std::string::npos; }, 10s))
      << ReadFile(log);
  servers().Sql("DELETE FROM " + db + ".MSG WHERE ID = '" + old_topic + "' AND SEQ <= 20");
  const auto code = audit.Wait(Scaled(20s));
  ASSERT_TRUE(code.has_value()) << ReadFile(log);
  EXPECT_EQ(*code, 0) << ReadFile(log);
  EXPECT_NE(ReadFile(log).find("rows 30         SEQ 21..50  ok (starts at 21: older rows deleted)"), std::string::npos)
      << ReadFile(log);

  // A gap of a million SEQs costs no statements: after a full window the
  // next starts at the next stored SEQ.
  servers().Sql("INSERT INTO " + db + ".MSG (idx, ID, QOS, SEQ, MSG) SELECT 10000 + seq, '" + old_topic +
                "', 1, 1000050 + seq, 'y' FROM " + db + ".seq_1_to_10");
  argv.push_back("--chunk-rows=10");
  EXPECT_EQ(RunCommand(argv, &out), 1) << out;
  EXPECT_NE(out.find("rows 40         SEQ 21..1000060  GAPS: 51..1000050 (1000000 SEQs missing)"), std::string::npos)
      << out;
  // The span, then windows 21..30, 31..40, 41..50, 1000051..1000060.
  EXPECT_NE(out.find("seqaudit: 5 statements,"), std::string::npos) << out;

  // Every row of the span deleted while seqaudit pauses, newer ones come
  // (a count rule on a busy topic): its first SEQ now past the span's last.
  // Until 2026-12-07 the rows wrapped around to a 20-digit count (a
  // review's finding).
  const std::string log3 = log + "-3";  // (the first run's pause line is in `log`)
  audit.Start(argv, log3, {"SEQTEST_AUDIT_PAUSE_MS=" + std::to_string(Scaled(2000ms).count())});
  ASSERT_TRUE(WaitFor([&] { return ReadFile(log3).find("test pause after the spans") != std::string::npos; }, 10s))
      << ReadFile(log3);
  servers().Sql("INSERT INTO " + db + ".MSG (idx, ID, QOS, SEQ, MSG) SELECT 20000 + seq, '" + old_topic +
                "', 1, 1000060 + seq, 'z' FROM " + db + ".seq_1_to_5");
  servers().Sql("DELETE FROM " + db + ".MSG WHERE ID = '" + old_topic + "' AND SEQ <= 1000062");
  const auto emptied = audit.Wait(Scaled(20s));
  ASSERT_TRUE(emptied.has_value()) << ReadFile(log3);
  EXPECT_EQ(*emptied, 0) << ReadFile(log3);
  EXPECT_NE(ReadFile(log3).find("rows 0          SEQ 0..0  ok (every row up to SEQ 1000060 deleted meanwhile)"),
            std::string::npos)
      << ReadFile(log3);
  EXPECT_NE(ReadFile(log3).find("seqaudit: 1 topics, 0 rows, 0 with gaps"), std::string::npos) << ReadFile(log3);
}

}  // namespace
}  // namespace seqtest
