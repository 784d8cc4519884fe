// High availability with real processes: two shards, an active and a
// standby relay for each, one mosquitto, one MariaDB. The actives are
// killed (SIGKILL) and paused (SIGSTOP beyond their lease); the standbys take
// over, the fence keeps a paused relay from writing after its successor
// began, and at the end every topic is SEQ 1..n once, every acknowledged
// message is stored once, and the ordered client delivered exactly MSG.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "fault_fixture.h"
#include "tcp_gate.h"

namespace seqtest {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

int64_t UnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double P99(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, v.size() * 99 / 100)];
}

// A paced QoS 1 load over `topics`, round robin, payload "p<k>" for the k-th
// message of its topic; remembers when each was sent.
class SpreadLoad {
 public:
  SpreadLoad(int port, const std::string& id, std::vector<std::string> topics, int count, int rate)
      : pub(port, id), topics_(std::move(topics)), sent_at_(topics_.size()) {
    for (auto& v : sent_at_) v.reserve(count / topics_.size() + 1);
    thread_ = std::thread([this, count, rate] {
      const auto start = Clock::now();
      for (int i = 0; i < count; ++i) {
        std::this_thread::sleep_until(start + std::chrono::microseconds(int64_t{1000000} * i / rate));
        const std::size_t t = static_cast<std::size_t>(i) % topics_.size();
        {
          std::lock_guard lock(mu_);
          sent_at_[t].push_back(Clock::now());
        }
        pub.Publish(topics_[t], "p" + std::to_string(sent_at_[t].size()), 1, 5000);
      }
    });
  }
  ~SpreadLoad() { Join(); }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  // When message "p<k>" of topic t was sent.
  Clock::time_point SentAt(std::size_t t, std::size_t k) {
    std::lock_guard lock(mu_);
    return sent_at_[t][k - 1];
  }
  std::size_t Sent(std::size_t t) {
    std::lock_guard lock(mu_);
    return sent_at_[t].size();
  }
  const std::vector<std::string>& topics() const { return topics_; }

  MqttClient pub;

 private:
  const std::vector<std::string> topics_;
  std::mutex mu_;
  std::vector<std::vector<Clock::time_point>> sent_at_;  // guarded by mu_
  std::thread thread_;
};

// The ordered client on several filters, keeping every delivery per topic.
class Recorder {
 public:
  struct Delivery {
    uint64_t seq;
    std::string payload;
    Clock::time_point at;
  };
  Recorder(int port, const std::string& id, std::vector<std::string> filters) {
    seqclient::Options o;
    o.port = port;
    o.client_id = id;
    o.filters = std::move(filters);
    client_ = std::make_unique<seqclient::SeqClient>(o, [this](const seqclient::Message& m) {
      std::lock_guard lock(mu_);
      by_topic_[m.topic].push_back({m.seq, m.payload, Clock::now()});
    });
    if (auto error = client_->Start()) throw std::runtime_error("subscriber: " + *error);
  }
  ~Recorder() { client_->Stop(); }
  std::map<std::string, std::vector<Delivery>> deliveries() {
    std::lock_guard lock(mu_);
    return by_topic_;
  }
  std::size_t count() {
    std::lock_guard lock(mu_);
    std::size_t n = 0;
    for (const auto& [topic, v] : by_topic_) n += v.size();
    return n;
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::vector<Delivery>> by_topic_;  // guarded by mu_
  std::unique_ptr<seqclient::SeqClient> client_;
};

class FailoverE2E : public FaultE2E {
 protected:
  // Relay `n` of shard `shard`, which sequences <root>/<shard>/#, with its
  // own journal and log, and a lease of kLeaseMs (unless `more` says
  // otherwise).
  std::unique_ptr<RelayProcess> ShardRelay(const std::string& shard, int n, std::vector<std::string> more = {}) {
    const std::string id = shard + std::to_string(n);
    std::vector<std::string> args = {"--shard=" + shard, "--source=" + root() + "/" + shard + "/#",
                                     "--relay-id=" + id, "--stats-interval=1"};
    const auto given = [&](const char* option) {
      return std::any_of(more.begin(), more.end(), [&](const std::string& a) { return a.starts_with(option); });
    };
    if (!given("--lease-ms=")) args.push_back("--lease-ms=" + std::to_string(kLeaseMs));
    if (!given("--journal-dir=")) args.push_back("--journal-dir=" + servers().dir() + "/journal-" + name_ + "-" + id);
    args.insert(args.end(), more.begin(), more.end());
    args.insert(args.end(), shard_relay_args_.begin(), shard_relay_args_.end());
    return std::make_unique<RelayProcess>(servers(), name_, args, id);
  }
  std::vector<std::string> shard_relay_args_;  // given to every ShardRelay
  static bool LogHas(RelayProcess& r, const std::string& text, std::chrono::milliseconds deadline,
                     std::size_t from = 0) {
    return WaitFor([&] { return r.log().find(text, from) != std::string::npos; }, Scaled(deadline));
  }
  // Starts `standby` and waits until it says it stands by.
  // `active` (of shard 'a') starts and SIGKILLs itself right after journaling its 100th
  // message (its PUBACK unsent); `standby` takes the shard over; all
  // `count` messages published on `topic` end up stored.
  void KillTheActiveAfterJournalingAndLetTheStandbyTakeOver(RelayProcess& active, RelayProcess& standby,
                                                            const std::string& topic, int count) {
    active.Start({"SEQTEST_KILL_AFTER_JOURNAL=100"});
    StartStandby(standby);
    MqttClient pub(servers().mqtt_port(), name_ + "-pub");
    for (int i = 1; i <= count; ++i) pub.Publish(topic, "p" + std::to_string(i));
    ASSERT_EQ(active.WaitExit(10s), 128 + SIGKILL);
    ASSERT_TRUE(LogHas(standby, "active: holding shard 'a'", std::chrono::milliseconds(kLeaseMs) + 10s))
        << standby.log();
    ASSERT_TRUE(pub.WaitAllAcked(30s));
    WaitStored(topic, count);
  }

  // `active` was started with SEQTEST_KILL_AFTER_COMMIT=count: publishes
  // p1..p<count> on `topic` and waits for its SIGKILL right after it
  // committed the last of them (whose PUBACK it never sent).
  void PublishUntilTheActiveDiesAfterCommitting(RelayProcess& active, MqttClient& pub, const std::string& topic,
                                                int count, const std::string& tail = "") {
    for (int i = 1; i <= count; ++i) pub.Publish(topic, "p" + std::to_string(i) + tail);
    ASSERT_TRUE(pub.WaitAllAcked(30s));
    ASSERT_EQ(active.WaitExit(10s), 128 + SIGKILL) << active.log();
    ASSERT_TRUE(LogHas(active, fmt::format("fault injection: SIGKILL after committing {} messages", count), 1s))
        << active.log();
  }

  // The new-session scenarios: `a1` alone stores ten "same" on `topic`
  // (packet ids 1 to 10 of the shard's MQTT session) and stops, and the
  // session is forgotten, as by a broker without persistence.
  void StoreTenSameAndForgetTheSession(RelayProcess& a1, MqttClient& pub, const std::string& topic) {
    a1.Start();
    for (int i = 0; i < 10; ++i) pub.Publish(topic, "same");
    ASSERT_TRUE(pub.WaitAllAcked(30s));
    WaitStored(topic, 10);
    EXPECT_EQ(a1.Stop(), 0);
    { MqttClient forget(servers().mqtt_port(), name_ + "-a", /*clean=*/true); }
  }
  // Then a new `a1` takes the new session with the fault hook `hook` set,
  // `a2` waits as its standby, and the new session's first delivery (one
  // more "same", packet id 1) is published, which kills `a1`.
  std::unique_ptr<RelayProcess> KillTheNewSessionsFirstHolder(const std::string& hook, RelayProcess& a2,
                                                              MqttClient& pub, const std::string& topic) {
    auto a1 = ShardRelay("a", 1);
    a1->Start({hook});
    StartStandby(a2);
    pub.Publish(topic, "same");
    return a1;
  }
  // Then `a2` took over the new session: four more "same", and every one of
  // the 15 is stored, none dropped as a resend.
  void ExpectAllFifteenStoredBy(RelayProcess& a2, MqttClient& pub, const std::string& topic) {
    ASSERT_TRUE(LogHas(a2, "active: holding shard 'a'", std::chrono::milliseconds(kLeaseMs) + 10s)) << a2.log();
    for (int i = 0; i < 4; ++i) pub.Publish(topic, "same");
    ASSERT_TRUE(pub.WaitAllAcked(30s));
    WaitStored(topic, 15);
    std::this_thread::sleep_for(500ms);
    EXPECT_EQ(Number(fmt::format("SELECT COUNT(*) FROM `{}`.MSG WHERE ID = '{}'", name_, topic)), 15u);
    EXPECT_EQ(Number(fmt::format("SELECT MAX(SEQ) FROM `{}`.MSG WHERE ID = '{}'", name_, topic)), 15u);
    EXPECT_EQ(a2.log().find("dropped mosquitto's resend"), std::string::npos) << a2.log();
  }

  // `n` more "same" on `topic`, each acknowledged by mosquitto.
  static void PublishSame(MqttClient& pub, const std::string& topic, int n) {
    for (int i = 0; i < n; ++i) pub.Publish(topic, "same");
    ASSERT_TRUE(pub.WaitAllAcked(30s));
  }
  // The scenarios' last step: one more "same" reaches `relay`, which
  // stores it (`total` rows, SEQ 1..total) and drops nothing as a resend.
  void ExpectANewSameStoredBy(RelayProcess& relay, MqttClient& pub, const std::string& topic, uint64_t total) {
    PublishSame(pub, topic, 1);
    if (HasFatalFailure()) return;
    WaitStored(topic, total, 10s);
    EXPECT_EQ(Number(fmt::format("SELECT COUNT(*) FROM `{}`.MSG WHERE ID = '{}'", name_, topic)), total);
    EXPECT_EQ(Number(fmt::format("SELECT MAX(SEQ) FROM `{}`.MSG WHERE ID = '{}'", name_, topic)), total);
    EXPECT_EQ(relay.log().find("dropped the broker's resend"), std::string::npos) << relay.log();
    EXPECT_EQ(relay.Stop(), 0);
  }

  // `n` messages "p1".."p<n>" on `topic`, each stored once, SEQ 1..n.
  void PublishAndExpectEachStoredOnce(const std::string& topic, int n) {
    MqttClient pub(servers().mqtt_port(), name_ + "-pub");
    for (int i = 1; i <= n; ++i) pub.Publish(topic, "p" + std::to_string(i));
    ASSERT_TRUE(pub.WaitAllAcked(10s));
    WaitStored(topic, static_cast<std::size_t>(n));
    ExpectEachStoredOnce(Audit(topic, static_cast<std::size_t>(n)), static_cast<std::size_t>(n));
  }

  // Ten "same" in a session that is then forgotten; the new session's
  // holder killed before its mark, with the session's first "same" read.
  void ResendOfANewSessionBeforeItsMark();

  // The active frozen between a renewal's UPDATE and its COMMIT; both
  // relays with `env`.
  void FrozenInsideALeaseRenewal(const std::vector<std::string>& env);

  static void StartStandby(RelayProcess& standby) {
    standby.Launch();
    ASSERT_TRUE(LogHas(standby, "standby: shard", 20s)) << standby.log();
  }
  uint64_t Number(const std::string& query) { return std::stoull("0" + servers().Sql(query)); }
  uint32_t Epoch(const std::string& shard) {
    return static_cast<uint32_t>(Number("SELECT EPOCH FROM `" + name_ + "`.SHARD WHERE NAME = '" + shard + "'"));
  }
  // Rows of shard `shard` committed under `epoch`.
  uint64_t RowsOfEpoch(const std::string& shard, uint32_t epoch) {
    return Number(fmt::format("SELECT COUNT(*) FROM `{}`.MSG WHERE EPOCH = {} AND LEFT(ID, {}) = '{}/{}/'", name_,
                              epoch, root().size() + shard.size() + 2, root(), shard));
  }
  // Unix ms of the first row of `shard` committed under `epoch`; 0 if none.
  int64_t FirstRowMs(const std::string& shard, uint32_t epoch) {
    return static_cast<int64_t>(Number(fmt::format(
        "SELECT COALESCE(ROUND(UNIX_TIMESTAMP(MIN(RECEIVED_AT)) * 1000), 0) FROM `{}`.MSG WHERE EPOCH = {} AND "
        "LEFT(ID, {}) = '{}/{}/'", name_, epoch, root().size() + shard.size() + 2, root(), shard)));
  }

  // Per topic: MSG holds SEQ 1..n once each, each of the topic's sent
  // messages exactly once, and the ordered client delivered exactly MSG's
  // rows in SEQ order.
  void AuditAll(SpreadLoad& load, Recorder& sub) {
    std::size_t stored = 0;
    for (std::size_t t = 0; t < load.topics().size(); ++t) {
      const std::string& topic = load.topics()[t];
      SCOPED_TRACE(topic);
      Outcome o = Audit(topic, load.Sent(t));
      ExpectEachStoredOnce(o, load.Sent(t));
      stored += o.stored;
    }
    ASSERT_TRUE(WaitFor([&] { return sub.count() >= stored; }, Scaled(30s))) << sub.count() << " of " << stored;
    auto delivered = sub.deliveries();
    for (const auto& topic : load.topics()) {
      auto trail = AuditTrail(topic);
      const auto& got = delivered[topic];
      ASSERT_EQ(got.size(), trail.size()) << topic;
      for (std::size_t i = 0; i < got.size(); ++i) {
        ASSERT_EQ(got[i].seq, trail[i].first) << topic;
        ASSERT_EQ(Hex(got[i].payload), trail[i].second) << topic << " SEQ " << got[i].seq;
      }
    }
  }

  static constexpr int kLeaseMs = 3000;
};

// Two relays of one shard with one --relay-id (a copied configuration, or
// containers on the host's network, each process 1 under the host's name,
// where the default id is <hostname>-<pid>): their own links, output and
// replay, have one client id, and mosquitto 2.0 closes the one's link at
// each connect of the other's, with no reason given. Until 2026-12-06 the
// two did so for as long as both ran, each saying only that it had lost its
// connection. Now the one that stands by sees the lease renewed under its
// own id and stops (exit 2) with a line saying why; the active goes on.
TEST_F(FailoverE2E, AStandbyWithTheActivesRelayIdStopsAndSaysWhy) {
  auto a1 = ShardRelay("a", 1);
  a1->Start();
  ASSERT_TRUE(LogHas(*a1, "active: holding shard 'a'", 10s)) << a1->log();
  RelayProcess twin(servers(), name_,
                    {"--shard=a", "--source=" + root() + "/a/#", "--relay-id=a1",
                     "--lease-ms=" + std::to_string(kLeaseMs),
                     "--journal-dir=" + servers().dir() + "/journal-" + name_ + "-twin"},
                    "twin");
  twin.Launch();
  const auto code = twin.WaitExit(Scaled(20s));
  ASSERT_TRUE(code.has_value()) << twin.log();
  EXPECT_EQ(*code, 2) << twin.log();
  EXPECT_NE(twin.log().find("stopped because of: shard 'a' is held by another live relay with this relay's id "
                            "'a1' (it renewed the lease"),
            std::string::npos)
      << twin.log();
  // The active was not disturbed beyond its replay link's reconnects.
  const std::string topic = root() + "/a/t";
  MqttClient sub(servers().mqtt_port(), name_ + "-sub");
  sub.Subscribe("seq/" + topic);
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int i = 1; i <= 5; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_TRUE(sub.WaitForCount(5, Scaled(20s))) << a1->log();
  EXPECT_EQ(a1->log().find("stepping down"), std::string::npos) << a1->log();
  EXPECT_EQ(a1->Stop(), 0) << a1->log();
}

TEST_F(FailoverE2E, TwoShardsSurviveAKillAndAPauseOfTheirActives) {
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2), b1 = ShardRelay("b", 1), b2 = ShardRelay("b", 2);
  a1->Start();
  b1->Start();
  StartStandby(*a2);
  StartStandby(*b2);
  ASSERT_EQ(Epoch("a"), 1u);

  std::vector<std::string> topics;
  for (int i = 0; i < 100; ++i) topics.push_back(fmt::format("{}/{}/t{}", root(), i % 2 ? "b" : "a", i));
  Recorder sub(servers().mqtt_port(), name_ + "-sub", {root() + "/a/#", root() + "/b/#"});
  constexpr int kRate = 1000, kCount = 16000;
  SpreadLoad load(servers().mqtt_port(), name_ + "-pub", topics, kCount, kRate);

  // 1. SIGKILL the active of shard a: its standby takes over.
  std::this_thread::sleep_for(3s);
  const auto kill_at = Clock::now();
  const int64_t kill_ms = UnixMs();
  a1->Kill();
  ASSERT_TRUE(LogHas(*a2, "active: holding shard 'a'", std::chrono::milliseconds(kLeaseMs) + 10s)) << a2->log();
  const uint32_t e2 = Epoch("a");
  EXPECT_EQ(e2, 2u);
  ASSERT_TRUE(WaitFor([&] { return FirstRowMs("a", e2) > 0; }, 10s));
  const int64_t takeover_ms = FirstRowMs("a", e2) - kill_ms;
  std::fprintf(stderr, "[ figure ] SIGKILL of shard a's active -> first new SEQ committed by its standby: %lld ms "
               "(--lease-ms %d)\n", static_cast<long long>(takeover_ms), kLeaseMs);
  // The lease plus a second of polling and takeover; the slack scales with
  // SEQTEST_TIME_FACTOR (a sanitized relay on a busy machine is slower to
  // take over, and what that stage checks is memory, not timing).
  EXPECT_LT(takeover_ms, kLeaseMs + Scaled(1s).count());

  // 2. Restart the killed relay: a standby now.
  std::this_thread::sleep_for(1s);
  a1 = ShardRelay("a", 1);
  StartStandby(*a1);

  // 3. SIGSTOP the new active for twice the lease: the restarted relay takes
  //    over; SIGCONT: the paused one commits and publishes nothing, and steps down.
  const std::size_t a2_log_before = a2->log().size(), a1_log_before = a1->log().size();
  MqttClient shard_stats(servers().mqtt_port(), name_ + "-stats");  // the shard's retained report, as it changes
  shard_stats.Subscribe("relay/stats/a");
  const auto stop_at = Clock::now();
  a2->Signal(SIGSTOP);
  ASSERT_TRUE(LogHas(*a1, "active: holding shard 'a'", std::chrono::milliseconds(kLeaseMs) + 10s, a1_log_before))
      << a1->log();
  const uint32_t e3 = Epoch("a");
  EXPECT_EQ(e3, 3u);
  std::this_thread::sleep_until(stop_at + std::chrono::milliseconds(2 * kLeaseMs));
  const uint64_t rows_e2_before = RowsOfEpoch("a", e2);
  a2->Signal(SIGCONT);
  EXPECT_TRUE(LogHas(*a2, "stepping down to standby", 10s, a2_log_before)) << a2->log();
  EXPECT_TRUE(LogHas(*a2, "standby: shard 'a' is held by 'a1'", 10s, a2_log_before)) << a2->log();
  // The shard's report is the new active's from its first on: the old one,
  // resumed, neither republished its own periodic one nor its final one
  // there (until 2026-12-06 its final report, "standby", replaced the new
  // active's retained one until that one's next: a review's finding).
  std::this_thread::sleep_for(Scaled(1500ms));  // the new active's next report, and the old one's, if any
  {
    std::vector<std::string> order;
    for (const auto& m : shard_stats.received()) {
      const auto r = nlohmann::json::parse(m.payload);
      order.push_back(r["relay_id"].get<std::string>() + "/" + r["role"].get<std::string>());
    }
    const auto first_a1 = std::find(order.begin(), order.end(), "a1/active");
    ASSERT_NE(first_a1, order.end()) << fmt::format("{}", fmt::join(order, " "));
    EXPECT_EQ(std::count_if(first_a1, order.end(), [](const std::string& o) { return o != "a1/active"; }), 0)
        << fmt::format("{}", fmt::join(order, " "));
  }

  load.Join();
  ASSERT_TRUE(load.pub.WaitAllAcked(30s));
  // The fence, by value: not one row under epoch 2 after epoch 3 began.
  const uint64_t rows_e2_after = RowsOfEpoch("a", e2);
  EXPECT_EQ(rows_e2_after, rows_e2_before) << "the paused relay committed after its successor took over";
  EXPECT_EQ(Number(fmt::format("SELECT COUNT(*) FROM `{}`.MSG m, `{}`.SHARD s WHERE s.NAME = 'a' AND m.EPOCH = {} "
                               "AND m.RECEIVED_AT >= s.ACQUIRED_AT AND LEFT(m.ID, {}) = '{}/a/'",
                               name_, name_, e2, root().size() + 3, root())),
            0u);

  // Shard b was never disturbed: its frames' latency before the kill and during the takeover.
  std::vector<double> before, during;
  for (const auto& [topic, got] : sub.deliveries()) {
    if (topic.find("/b/") == std::string::npos) continue;
    const std::size_t t = std::find(topics.begin(), topics.end(), topic) - topics.begin();
    for (const auto& d : got) {
      const std::size_t k = std::stoul(d.payload.substr(1));
      const auto sent = load.SentAt(t, k);
      if (sent < kill_at) {
        before.push_back(Ms(d.at - sent));
      } else if (sent < kill_at + std::chrono::milliseconds(kLeaseMs) + 1s) {
        during.push_back(Ms(d.at - sent));
      }
    }
  }
  std::fprintf(stderr, "[ figure ] shard b, publish -> ordered client, p99: %.1f ms before the kill (%zu), %.1f ms "
               "during shard a's takeover (%zu)\n", P99(before), before.size(), P99(during), during.size());
  // Stalled: a second, or twice what the machine gave shard b before the
  // kill when it was slower than that already (fourteen test shards at once
  // under the sanitizers; a p99 of 309 ms before and 710 during was seen
  // under the release stage's load), and never a whole lease: shard b
  // waiting on shard a's takeover would take that.
  const double stalled = std::min<double>(kLeaseMs, std::max(1000.0, 2 * P99(before)));
  EXPECT_LT(P99(during), stalled) << "shard b stalled while shard a failed over";
  EXPECT_EQ(Epoch("b"), 1u);

  for (const auto& topic : topics) WaitStored(topic, load.Sent(std::find(topics.begin(), topics.end(), topic) -
                                                               topics.begin()), 30s);
  AuditAll(load, sub);
  EXPECT_EQ(b1->Stop(), 0);
  EXPECT_EQ(b2->Stop(), 0);
  EXPECT_EQ(a1->Stop(), 0);
  EXPECT_EQ(a2->Stop(), 0);
}

// The kill, again and again (the long form: 10 in a row; 2 otherwise): each
// time the standby takes over within the lease and a second, the killed relay
// comes back as the standby, and after each round every topic is SEQ 1..n
// with every acknowledged message once.
TEST_F(FailoverE2E, KillsInARowLoseNothing) {
  const int rounds = LongForm() ? 10 : 2;
  std::unique_ptr<RelayProcess> relays[2] = {ShardRelay("a", 1), ShardRelay("a", 2)};
  relays[0]->Start();
  StartStandby(*relays[1]);
  std::vector<std::string> topics;
  for (int i = 0; i < 20; ++i) topics.push_back(fmt::format("{}/a/t{}", root(), i));
  Recorder sub(servers().mqtt_port(), name_ + "-sub", {root() + "/a/#"});
  constexpr int kRate = 500;
  const int per_round = kRate * (kLeaseMs / 1000 + 3);
  SpreadLoad load(servers().mqtt_port(), name_ + "-pub", topics, per_round * rounds, kRate);
  int active = 0;
  std::vector<int64_t> takeovers;
  for (int round = 1; round <= rounds; ++round) {
    SCOPED_TRACE(fmt::format("round {}", round));
    std::this_thread::sleep_for(1s);
    RelayProcess& standby = *relays[1 - active];
    const std::size_t from = standby.log().size();
    const uint32_t epoch = Epoch("a");
    const int64_t kill_ms = UnixMs();
    relays[active]->Kill();
    ASSERT_TRUE(LogHas(standby, "active: holding shard 'a'", std::chrono::milliseconds(kLeaseMs) + 10s, from))
        << standby.log();
    ASSERT_EQ(Epoch("a"), epoch + 1);
    ASSERT_TRUE(WaitFor([&] { return FirstRowMs("a", epoch + 1) > 0; }, 10s));
    takeovers.push_back(FirstRowMs("a", epoch + 1) - kill_ms);
    EXPECT_LT(takeovers.back(), kLeaseMs + Scaled(1s).count());
    relays[active] = ShardRelay("a", active + 1);
    StartStandby(*relays[active]);
    active = 1 - active;
  }
  load.Join();
  ASSERT_TRUE(load.pub.WaitAllAcked(30s));
  for (std::size_t t = 0; t < topics.size(); ++t) WaitStored(topics[t], load.Sent(t), 30s);
  AuditAll(load, sub);
  std::string figures;
  for (int64_t ms : takeovers) figures += fmt::format(" {}", ms);
  std::fprintf(stderr, "[ figure ] %d SIGKILLs of the active, kill -> first new SEQ committed, ms:%s (--lease-ms %d)\n",
               rounds, figures.c_str(), kLeaseMs);
  EXPECT_EQ(relays[0]->Stop(), 0);
  EXPECT_EQ(relays[1]->Stop(), 0);
}

// A new active whose first reads wait (MSG locked by another session for
// twice the lease) keeps the lease it took: it is renewed from the takeover
// on, so the second standby does not take the shard over meanwhile, and
// nobody steps down. The build before renewed only after those reads: the
// lease lapsed, the other standby took it (epoch 3) and the first stepped
// down once its reads returned.
TEST_F(FailoverE2E, ANewActiveWhoseFirstReadsWaitKeepsTheLeaseItTook) {
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2), a3 = ShardRelay("a", 3);
  a1->Start();
  StartStandby(*a2);
  StartStandby(*a3);
  ASSERT_EQ(Epoch("a"), 1u);
  {
    MsgLock lock(servers(), name_, "WRITE");
    ASSERT_TRUE(lock.locked());
    a1->Kill();
    ASSERT_TRUE(WaitFor([&] { return Epoch("a") == 2; }, Scaled(std::chrono::milliseconds(kLeaseMs) + 10s)));
    std::this_thread::sleep_for(std::chrono::milliseconds(2 * kLeaseMs));
    EXPECT_EQ(Epoch("a"), 2u) << "the lease went on while the new active's reads waited";
  }
  const std::string holding = "active: holding shard 'a'";  // said once its reads returned
  auto holds = [&](RelayProcess& r) { return r.log().find(holding) != std::string::npos; };
  ASSERT_TRUE(WaitFor([&] { return holds(*a2) || holds(*a3); }, Scaled(10s)));
  RelayProcess& active = holds(*a2) ? *a2 : *a3;
  const std::string topic = root() + "/a/t";
  PublishAndExpectEachStoredOnce(topic, 10);
  EXPECT_EQ(Epoch("a"), 2u);
  for (RelayProcess* r : {a2.get(), a3.get()}) EXPECT_EQ(r->log().find("stepping down"), std::string::npos) << r->log();
  EXPECT_EQ(active.Stop(), 0);
  EXPECT_EQ((&active == a2.get() ? *a3 : *a2).Stop(), 0);
}

// The active stops (SIGSTOP: a stalled VM, a host gone) between a lease
// renewal's UPDATE and its COMMIT, the shard's row locked by that open
// transaction. The server ends the session after about one lease
// (idle_transaction_timeout, as the writer's), and a standby takes over.
// Until 2026-12-06 only the writer's session had the limit: the frozen
// renewal held the row for the server's wait_timeout (8 h), and every
// takeover failed on its lock wait.
void FailoverE2E::FrozenInsideALeaseRenewal(const std::vector<std::string>& env) {
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2);
  std::vector<std::string> frozen = env;
  frozen.push_back("SEQTEST_STOP_IN_RENEWAL=3");
  a1->Start(frozen);
  struct Resume {  // never left stopped: the fixture ends it
    RelayProcess& relay;
    ~Resume() { relay.Signal(SIGCONT); }
  } resume{*a1};
  a2->Launch(env);
  ASSERT_TRUE(LogHas(*a2, "standby: shard", 20s)) << a2->log();
  ASSERT_TRUE(LogHas(*a1, "fault injection: SIGSTOP between a lease renewal's UPDATE", 20s)) << a1->log();
  ASSERT_TRUE(LogHas(*a2, "active: holding shard 'a'", std::chrono::milliseconds(4 * kLeaseMs) + 10s))
      << "no takeover while the frozen renewal's transaction holds the row:\n" << a2->log();
  EXPECT_EQ(Epoch("a"), 2u);
  PublishAndExpectEachStoredOnce(root() + "/a/t", 10);
  a1->Kill();
  EXPECT_EQ(a2->Stop(), 0);
}

TEST_F(FailoverE2E, AnActiveFrozenInsideALeaseRenewalDoesNotHoldItsShardAgainstATakeover) {
  FrozenInsideALeaseRenewal({});
}

// The same on MySQL, which has no idle_transaction_timeout (the relays see
// this MariaDB as MySQL): the relay's sessions take the limit as their
// wait_timeout, and the server ends the frozen one as an idle session.
// Until 2026-12-06 MySQL kept it for its wait_timeout, 8 h by default.
TEST_F(FailoverE2E, OnMySqlAnActiveFrozenInsideALeaseRenewalDoesNotHoldItsShardAgainstATakeover) {
  FrozenInsideALeaseRenewal({"SEQTEST_NO_IDLE_TRANSACTION_TIMEOUT=1"});
}

// As below, but the dead relay comes back under another shard with the
// same journal: its records go to the shard it took them for, whose active
// recognises them. Until 2026-12-05 they went to the new --shard, whose
// active stored the message a second time, in a topic of another shard.
TEST_F(FailoverE2E, AJournalBackUnderAnotherShardIsHandedToTheShardItWasTakenFor) {
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2);
  const std::string topic = root() + "/a/t";
  constexpr int kCount = 300;
  KillTheActiveAfterJournalingAndLetTheStandbyTakeOver(*a1, *a2, topic, kCount);
  if (HasFatalFailure()) return;
  auto b1 = ShardRelay("b", 1, {"--journal-dir=" + servers().dir() + "/journal-" + name_ + "-a1"});
  b1->Start();
  ASSERT_TRUE(LogHas(*b1, "but not committed handed over to shard 'a'", 10s)) << b1->log();
  EXPECT_TRUE(LogHas(*a2, "were stored already (mosquitto resent them", 10s)) << a2->log();
  std::this_thread::sleep_for(2s);  // both actives' next rounds: nothing more to store
  ExpectEachStoredOnce(Audit(topic, kCount), kCount);
  EXPECT_EQ(Number("SELECT COUNT(*) FROM `" + name_ + "`.PENDING"), 0u);
  EXPECT_EQ(b1->Stop(), 0);
  EXPECT_EQ(a2->Stop(), 0);
}

// The relay dies right after journaling a message, its PUBACK unsent:
// mosquitto resends that message to the standby once it has taken the
// shard's session over, and the dead relay, restarted, hands the same
// message over from its journal. The active recognises it (same packet id,
// topic and payload as a message it took) and stores it once.
TEST_F(FailoverE2E, AMessageResentToTheSuccessorIsNotStoredAgainFromTheOldJournal) {
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2);
  const std::string topic = root() + "/a/t";
  constexpr int kCount = 300;
  KillTheActiveAfterJournalingAndLetTheStandbyTakeOver(*a1, *a2, topic, kCount);
  if (HasFatalFailure()) return;
  a1 = ShardRelay("a", 1);
  StartStandby(*a1);
  ASSERT_TRUE(LogHas(*a1, "but not committed handed over to shard 'a'", 10s)) << a1->log();
  EXPECT_TRUE(LogHas(*a2, "were stored already (mosquitto resent them", 10s)) << a2->log();
  std::this_thread::sleep_for(2s);  // the active's next rounds: nothing more to store
  ExpectEachStoredOnce(Audit(topic, kCount), kCount);
  EXPECT_EQ(Number("SELECT COUNT(*) FROM `" + name_ + "`.PENDING"), 0u);
  EXPECT_EQ(a1->Stop(), 0);
  EXPECT_EQ(a2->Stop(), 0);
}

// The same, but the relay that died is the next active itself (its
// successor stopped meanwhile): it cannot remember what its successor took,
// so it learns it from TAKEN, which the successor committed with the
// resends it took after resuming the session.
// As above, but the dead relay comes back only after the shard changed
// hands eleven more times (the epoch moved by hand, as by relays that came
// and went): the successor's record of the resend (TAKEN, epoch 2) is still
// there for its journal. Until 2026-12-05 every takeover deleted TAKEN rows
// older than 10 epochs, and the returning journal's messages that mosquitto
// had resent to the successor were stored a second time.
TEST_F(FailoverE2E, AJournalBackAfterElevenTakeoversStillFindsWhatItsSuccessorTook) {
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2), a3 = ShardRelay("a", 3);
  const std::string topic = root() + "/a/t";
  constexpr int kCount = 300;
  KillTheActiveAfterJournalingAndLetTheStandbyTakeOver(*a1, *a2, topic, kCount);
  if (HasFatalFailure()) return;
  ASSERT_EQ(Epoch("a"), 2u);
  ASSERT_GT(Number("SELECT COUNT(*) FROM `" + name_ + "`.TAKEN WHERE EPOCH = 2"), 0u);
  StartStandby(*a3);
  servers().Sql("UPDATE `" + name_ + "`.SHARD SET EPOCH = EPOCH + 11 WHERE NAME = 'a'");
  // a2's lease is gone (it steps down and waits as a standby again); one of
  // the two takes the shard over under epoch 14, and prunes TAKEN.
  ASSERT_TRUE(WaitFor([&] { return Epoch("a") == 14; }, Scaled(std::chrono::milliseconds(kLeaseMs) + 10s)));
  const std::string holding = "active: holding shard 'a' (epoch 14)";
  auto holds = [&](RelayProcess& r) { return r.log().find(holding) != std::string::npos; };
  ASSERT_TRUE(WaitFor([&] { return holds(*a2) || holds(*a3); }, Scaled(10s))) << a2->log() << a3->log();
  RelayProcess& active = holds(*a2) ? *a2 : *a3;
  EXPECT_GT(Number("SELECT COUNT(*) FROM `" + name_ + "`.TAKEN WHERE EPOCH = 2"), 0u) << "pruned";
  a1 = ShardRelay("a", 1);
  StartStandby(*a1);
  ASSERT_TRUE(LogHas(*a1, "but not committed handed over to shard 'a'", 10s)) << a1->log();
  EXPECT_TRUE(LogHas(active, "were stored already (mosquitto resent them", 10s)) << active.log();
  std::this_thread::sleep_for(2s);  // the active's next rounds: nothing more to store
  ExpectEachStoredOnce(Audit(topic, kCount), kCount);
  EXPECT_EQ(Number("SELECT COUNT(*) FROM `" + name_ + "`.PENDING"), 0u);
  for (RelayProcess* r : {a1.get(), a2.get(), a3.get()}) EXPECT_EQ(r->Stop(), 0);
}

TEST_F(FailoverE2E, AResentMessageIsNotStoredAgainWhenTheOldRelayIsActiveAgain) {
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2);
  const std::string topic = root() + "/a/t";
  constexpr int kCount = 300;
  KillTheActiveAfterJournalingAndLetTheStandbyTakeOver(*a1, *a2, topic, kCount);
  if (HasFatalFailure()) return;
  EXPECT_EQ(a2->Stop(), 0);  // hands the lease back at once
  EXPECT_GT(Number("SELECT COUNT(*) FROM `" + name_ + "`.TAKEN"), 0u);
  a1 = ShardRelay("a", 1);
  a1->Start();
  EXPECT_TRUE(LogHas(*a1, "were stored already (mosquitto resent them", 10s)) << a1->log();
  std::this_thread::sleep_for(2s);
  ExpectEachStoredOnce(Audit(topic, kCount), kCount);
  EXPECT_EQ(Number("SELECT COUNT(*) FROM `" + name_ + "`.PENDING"), 0u);
  EXPECT_EQ(a1->Stop(), 0);
}

// The relay dies after committing a message whose PUBACK mosquitto never
// read (here: never sent, the link broken first; after a real kill, unread
// in mosquitto's socket). mosquitto resends it to the standby that resumes
// the session, before the standby's SUBACK; the standby finds it as the
// session's newest row (MSG.MID, schema 007) and does not store it again.
TEST_F(FailoverE2E, AMessageCommittedBeforeItsPubackWasReadIsNotStoredAgainByTheSuccessor) {
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2);
  const std::string topic = root() + "/a/t";
  constexpr int kFirst = 20, kCount = 40;
  // Bytes >= 0x80 ("é" in UTF-8): until 2026-12-06 the check compared the
  // row's (signed) chars with the message's bytes and took every such
  // payload for another message's, storing its resend again.
  const std::string kTail = "\xC3\xA9";
  a1->Start({"SEQTEST_KILL_AFTER_COMMIT=" + std::to_string(kFirst)});
  StartStandby(*a2);
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  PublishUntilTheActiveDiesAfterCommitting(*a1, pub, topic, kFirst, kTail);
  if (HasFatalFailure()) return;
  EXPECT_EQ(RowsOfEpoch("a", 1), uint64_t{kFirst});
  // The rows carry their packet ids: p20, the last one, is still in flight.
  EXPECT_EQ(Number(fmt::format("SELECT COUNT(DISTINCT MID) FROM `{}`.MSG WHERE MID <> 0", name_)), uint64_t{kFirst});
  // a1 began the shard's MQTT session: its first row is where the session's rows begin.
  EXPECT_EQ(Number(fmt::format("SELECT SESSION_IDX FROM `{}`.SHARD WHERE NAME = 'a'", name_)),
            Number(fmt::format("SELECT MIN(idx) FROM `{}`.MSG", name_)));
  ASSERT_TRUE(LogHas(*a2, "active: holding shard 'a'", std::chrono::milliseconds(kLeaseMs) + 10s)) << a2->log();
  for (int i = kFirst + 1; i <= kCount; ++i) pub.Publish(topic, "p" + std::to_string(i) + kTail);
  ASSERT_TRUE(pub.WaitAllAcked(30s));
  WaitStored(topic, kCount);
  EXPECT_TRUE(LogHas(*a2, "dropped mosquitto's resend of message", 5s)) << a2->log();
  std::this_thread::sleep_for(500ms);  // anything stored twice would be stored by now
  ExpectEachStoredOnce(Audit(topic, kCount, nullptr, nullptr, kTail), kCount);
  EXPECT_EQ(RowsOfEpoch("a", 2), uint64_t{kCount - kFirst});
  EXPECT_EQ(a2->Stop(), 0);
}

// The successor drops mosquitto's resends of committed messages and is
// killed right after the first batch of them. The resends it read by then
// (17 of 20 with the faster network loop) were neither journaled nor
// acknowledged before the writer's verdict: started again, it hands over
// nothing, and mosquitto's next resends are dropped again. (Journaled and
// acknowledged at once, as before, they were handed over and stored twice.)
TEST_F(FailoverE2E, ADroppedResendIsNotHandedOverByTheRelayThatDroppedIt) {
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2);
  const std::string topic = root() + "/a/t";
  constexpr int kFirst = 20, kCount = 40;
  a1->Start({"SEQTEST_KILL_AFTER_COMMIT=" + std::to_string(kFirst)});
  a2->Launch({"SEQTEST_KILL_AFTER_RESEND_DROP=1"});
  ASSERT_TRUE(LogHas(*a2, "standby: shard", 20s)) << a2->log();
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  PublishUntilTheActiveDiesAfterCommitting(*a1, pub, topic, kFirst);
  if (HasFatalFailure()) return;
  ASSERT_EQ(a2->WaitExit(std::chrono::milliseconds(kLeaseMs) + 20s), 128 + SIGKILL) << a2->log();
  ASSERT_TRUE(LogHas(*a2, "dropped mosquitto's resend of message", 1s)) << a2->log();
  EXPECT_EQ(Number(fmt::format("SELECT COUNT(*) FROM `{}`.MSG", name_)), uint64_t{kFirst});
  a2 = ShardRelay("a", 2);
  a2->Start();
  for (int i = kFirst + 1; i <= kCount; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(30s));
  WaitStored(topic, kCount);
  std::this_thread::sleep_for(1s);  // a hand-over would be stored by now
  EXPECT_EQ(a2->log().find("but not committed handed over"), std::string::npos) << a2->log();
  ExpectEachStoredOnce(Audit(topic, kCount), kCount);
  EXPECT_EQ(a2->Stop(), 0);
}

// A new MQTT session (the broker forgot the shard's session) whose first
// holder dies before committing anything of it: the standby that resumes it
// gets that holder's unacknowledged delivery again, under packet id 1, with
// the same topic and payload as the old session's first row. SESSION_IDX,
// committed before the new session's first delivery was acknowledged,
// keeps the old session's rows out of the comparison: it is stored.
// A relay active again after another relay wrote the shard: what its
// journal remembers of the session is from its earlier stint. a1 stores ten
// "same" (packet ids 1..10) and stops; the session is forgotten; a2 stores
// five more in a new session (ids 1..5) and stops; a1, back and active, gets
// a sixth (id 6, the content of its remembered id 6). Until 2026-12-05 it
// took that new message for mosquitto's resend of its own: acknowledged, and
// stored nowhere.
TEST_F(FailoverE2E, ARelayActiveAgainTakesNoNewMessageForAResendOfItsEarlierStint) {
  const std::string topic = root() + "/a/t";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2);
  StoreTenSameAndForgetTheSession(*a1, pub, topic);
  if (HasFatalFailure()) return;
  a2->Start();
  for (int i = 0; i < 5; ++i) pub.Publish(topic, "same");
  ASSERT_TRUE(pub.WaitAllAcked(30s));
  WaitStored(topic, 15);
  EXPECT_EQ(a2->Stop(), 0);
  a1 = ShardRelay("a", 1);
  a1->Start();
  ExpectANewSameStoredBy(*a1, pub, topic, 16);
}

// The same relay across a session mosquitto forgot: a1 stores ten "same"
// (packet ids 1..10) and stops; the session is forgotten; a1 stores three
// more in a new session (ids 1..3) and stops; a1, back and resuming that
// session, gets a fourth (id 4, the content of the old session's id 4).
// Until 2026-12-05 its journal gave the filter the records of both
// sessions, and it took that new message for a resend: acknowledged, and
// stored nowhere.
TEST_F(FailoverE2E, ARelayActiveAgainAfterTheBrokerForgotItsSessionRemembersOnlyTheNewOne) {
  const std::string topic = root() + "/a/t";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  auto a1 = ShardRelay("a", 1);
  StoreTenSameAndForgetTheSession(*a1, pub, topic);
  if (HasFatalFailure()) return;
  a1 = ShardRelay("a", 1);
  a1->Start();
  PublishSame(pub, topic, 3);
  if (HasFatalFailure()) return;
  WaitStored(topic, 13);
  EXPECT_EQ(a1->Stop(), 0);
  a1 = ShardRelay("a", 1);
  a1->Start();
  ExpectANewSameStoredBy(*a1, pub, topic, 14);
}

// A relay killed right after journaling a message keeps that record as
// perhaps unacknowledged: at its next takeover, mosquitto may still resend
// it. Not if the session it was taken in is gone: a1 journals three "same"
// (ids 1..3) and is killed; the session is forgotten; a2 stores two in a new
// session (ids 1, 2) and stops; a1, back and active, hands its journal over
// and gets a new message (id 3, the content of its uncommitted record).
// Until 2026-12-05 it took it for a resend: acknowledged, and stored
// nowhere.
TEST_F(FailoverE2E, ARelayActiveAgainForgetsWhatItJournaledInASessionAnotherRelayReplaced) {
  const std::string topic = root() + "/a/t";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2);
  a1->Start({"SEQTEST_KILL_AFTER_JOURNAL=3"});
  for (int i = 0; i < 3; ++i) pub.Publish(topic, "same");
  ASSERT_EQ(a1->WaitExit(10s), 128 + SIGKILL) << a1->log();
  { MqttClient forget(servers().mqtt_port(), name_ + "-a", /*clean=*/true); }
  a2->Start();
  PublishSame(pub, topic, 2);
  if (HasFatalFailure()) return;
  WaitStored(topic, 2);  // a2's two (and a1's committed ones)
  EXPECT_EQ(a2->Stop(), 0);
  a1 = ShardRelay("a", 1);
  a1->Start();
  WaitStored(topic, 5, 10s);  // a1's three (committed, or handed over now) and a2's two
  ExpectANewSameStoredBy(*a1, pub, topic, 6);
}

// A new MQTT session is numbered at its connect, not at its first
// delivery: a2 stores ten "same" (ids 1..10) and stops; a1 takes the shard
// over, and the broker forgets the session under it (a clean connect under
// the session's client id), so a1 reconnects to a new one, and is killed
// before any delivery. a2, back, resumes a1's session and gets a new "same"
// (id 1, the content of its remembered id 1). Until 2026-12-05 nothing
// numbered a session before its first delivery, so a2 took the new message
// for a resend: acknowledged, stored nowhere.
TEST_F(FailoverE2E, ARelayActiveAgainAfterASessionBegunWithoutADeliveryForgetsTheOldOne) {
  const std::string topic = root() + "/a/t";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2);
  a2->Start();
  PublishSame(pub, topic, 10);
  if (HasFatalFailure()) return;
  WaitStored(topic, 10);
  EXPECT_EQ(a2->Stop(), 0);
  a1->Start();
  { MqttClient forget(servers().mqtt_port(), name_ + "-a", /*clean=*/true); }
  EXPECT_TRUE(LogHas(*a1, "intake: a new MQTT session; its rows begin at idx", 10s)) << a1->log();
  a1->Kill();
  a2 = ShardRelay("a", 2);
  a2->Start();
  ExpectANewSameStoredBy(*a2, pub, topic, 11);
}

// A handed-over message is "stored already" when a later holder took its
// resend (TAKEN): only a resend of the same MQTT session. a2 journals two
// "same" (ids 1, 2) and is killed; the session is forgotten; a1 stores one
// in a new session (id 1), stops, resumes that session and takes another
// (id 2, a TAKEN row: the content of a2's uncommitted record); a2, back,
// hands its record over. Until 2026-12-05 that TAKEN row hid it: deleted
// from PENDING, stored nowhere.
TEST_F(FailoverE2E, ARelayActiveAgainStoresAHandedOverMessageThatALaterSessionsResendLooksLike) {
  const std::string topic = root() + "/a/t";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2);
  a2->Start({"SEQTEST_KILL_AFTER_JOURNAL=2"});
  for (int i = 0; i < 2; ++i) pub.Publish(topic, "same");
  ASSERT_EQ(a2->WaitExit(10s), 128 + SIGKILL) << a2->log();
  { MqttClient forget(servers().mqtt_port(), name_ + "-a", /*clean=*/true); }
  a1->Start();
  pub.Publish(topic, "same");
  ASSERT_TRUE(pub.WaitAllAcked(30s));
  WaitStored(topic, 2, 10s);  // a2's first, if it committed it, and a1's
  EXPECT_EQ(a1->Stop(), 0);
  a1 = ShardRelay("a", 1);
  a1->Start();
  pub.Publish(topic, "same");
  ASSERT_TRUE(pub.WaitAllAcked(30s));
  ASSERT_TRUE(WaitFor([&] { return Number(fmt::format("SELECT COUNT(*) FROM `{}`.TAKEN WHERE MID = 2", name_)) == 1; },
                      Scaled(10s)))
      << "a1's second delivery is a resend candidate under packet id 2";
  a2 = ShardRelay("a", 2);
  StartStandby(*a2);
  WaitStored(topic, 4, 10s);
  ASSERT_TRUE(WaitFor([&] { return Number(fmt::format("SELECT COUNT(*) FROM `{}`.PENDING", name_)) == 0; },
                      Scaled(10s)));
  std::this_thread::sleep_for(Scaled(500ms));  // a duplicate, if any, lands now
  EXPECT_EQ(Number(fmt::format("SELECT COUNT(*) FROM `{}`.MSG WHERE ID = '{}'", name_, topic)), 4u);
  EXPECT_EQ(Number(fmt::format("SELECT MAX(SEQ) FROM `{}`.MSG WHERE ID = '{}'", name_, topic)), 4u);
  EXPECT_EQ(Number(fmt::format("SELECT COUNT(*) FROM `{}`.PENDING", name_)), 0u);
  EXPECT_EQ(a1->Stop(), 0);
  EXPECT_EQ(a2->Stop(), 0);
}

// The other side of the same check: the resend a later holder took is
// found in TAKEN although another session's delivery has since had the
// same packet id and content. a1 journals one "same" (id 1) and is
// killed; a2 resumes the session and stores mosquitto's resend (a TAKEN
// row); the broker forgets the session under a2, which reconnects to a new
// one and stops; a2, back, resumes that and takes a new "same" (id 1
// again: a second TAKEN row); a1, back, hands its record over, and it is
// not stored a second time. With one TAKEN row per packet id and content,
// the new session's overwrote the old one's: 3 rows for 2 messages.
TEST_F(FailoverE2E, ARelayActiveAgainFindsTheResendTakenInItsSessionAfterALaterSessionsLookalike) {
  const std::string topic = root() + "/a/t";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2);
  a1->Start({"SEQTEST_KILL_AFTER_JOURNAL=1"});
  pub.Publish(topic, "same");
  ASSERT_EQ(a1->WaitExit(10s), 128 + SIGKILL) << a1->log();
  a2->Start();
  WaitStored(topic, 1, 10s);  // mosquitto's resend of a1's unacknowledged delivery
  ASSERT_TRUE(WaitFor([&] { return Number(fmt::format("SELECT COUNT(*) FROM `{}`.TAKEN", name_)) == 1; },
                      Scaled(10s)));
  { MqttClient forget(servers().mqtt_port(), name_ + "-a", /*clean=*/true); }
  ASSERT_TRUE(LogHas(*a2, "intake: a new MQTT session; its rows begin at idx", 10s)) << a2->log();
  EXPECT_EQ(a2->Stop(), 0);
  a2 = ShardRelay("a", 2);
  a2->Start();
  pub.Publish(topic, "same");
  ASSERT_TRUE(pub.WaitAllAcked(30s));
  WaitStored(topic, 2, 10s);
  EXPECT_TRUE(WaitFor([&] { return Number(fmt::format("SELECT COUNT(*) FROM `{}`.TAKEN", name_)) == 2; },
                      Scaled(10s)))
      << "the new session's delivery under packet id 1 is a second row";
  a1 = ShardRelay("a", 1);
  StartStandby(*a1);
  ASSERT_TRUE(WaitFor([&] { return Number(fmt::format("SELECT COUNT(*) FROM `{}`.PENDING", name_)) == 0; },
                      Scaled(10s)))
      << "a1's record, handed over, is dealt with";
  EXPECT_TRUE(LogHas(*a2, "handed over from another relay's journal were stored already", 1s)) << a2->log();
  std::this_thread::sleep_for(Scaled(500ms));  // a duplicate, if any, lands now
  EXPECT_EQ(Number(fmt::format("SELECT COUNT(*) FROM `{}`.MSG WHERE ID = '{}'", name_, topic)), 2u);
  EXPECT_EQ(a2->Stop(), 0);
  EXPECT_EQ(a1->Stop(), 0);
}

TEST_F(FailoverE2E, ANewSessionsResendIsNeverTakenForAnOlderSessionsRow) {
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2);
  const std::string topic = root() + "/a/t";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  StoreTenSameAndForgetTheSession(*a1, pub, topic);
  if (HasFatalFailure()) return;
  a1 = KillTheNewSessionsFirstHolder("SEQTEST_KILL_AFTER_JOURNAL=1", *a2, pub, topic);
  ASSERT_EQ(a1->WaitExit(10s), 128 + SIGKILL) << a1->log();
  EXPECT_TRUE(LogHas(*a1, "intake: a new MQTT session; its rows begin at idx", 1s)) << a1->log();
  ExpectAllFifteenStoredBy(*a2, pub, topic);
  EXPECT_EQ(Number(fmt::format("SELECT SESSION_IDX FROM `{}`.SHARD WHERE NAME = 'a'", name_)),
            Number(fmt::format("SELECT MIN(idx) FROM `{}`.MSG", name_)) + 10);
  EXPECT_EQ(a2->Stop(), 0);
}

// As above, but the new session's first holder dies before its mark is
// committed: SESSION_IDX still points at the old session, whose rows hold
// the same packet id, topic and payload as the resend. The resend carries
// the Subscription Identifier of the new session's subscription, the old
// rows another (MSG.SUB_TAG, schema 008): it is stored.
TEST_F(FailoverE2E, ANewSessionsResendIsNeverTakenForAnOlderSessionsRowBeforeItsMark) {
  ResendOfANewSessionBeforeItsMark();
}

// The same with --dedupe-window 0, whose intake spoke MQTT 3.1.1 (no
// Subscription Identifiers) until 2026-12-05: the standby took the new
// session's five messages for the old session's rows (10 rows of 15).
TEST_F(FailoverE2E, ANewSessionsResendIsNeverTakenForAnOlderSessionsRowWithDedupeOff) {
  shard_relay_args_ = {"--dedupe-window=0"};
  ResendOfANewSessionBeforeItsMark();
}

void FailoverE2E::ResendOfANewSessionBeforeItsMark() {
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2);
  const std::string topic = root() + "/a/t";
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  StoreTenSameAndForgetTheSession(*a1, pub, topic);
  if (HasFatalFailure()) return;
  const uint64_t first = Number(fmt::format("SELECT MIN(idx) FROM `{}`.MSG", name_));
  EXPECT_EQ(Number(fmt::format("SELECT SESSION_IDX FROM `{}`.SHARD WHERE NAME = 'a'", name_)), first);
  EXPECT_EQ(Number(fmt::format("SELECT COUNT(DISTINCT SUB_TAG) FROM `{}`.MSG WHERE SUB_TAG <> 0", name_)), 1u);
  a1 = KillTheNewSessionsFirstHolder("SEQTEST_KILL_BEFORE_SESSION_MARK=1", *a2, pub, topic);
  ASSERT_EQ(a1->WaitExit(10s), 128 + SIGKILL) << a1->log();
  EXPECT_TRUE(LogHas(*a1, "SIGKILL before committing the mark of a new MQTT session (a delivery waits for it)", 1s))
      << a1->log();
  EXPECT_EQ(Number(fmt::format("SELECT SESSION_IDX FROM `{}`.SHARD WHERE NAME = 'a'", name_)), first);
  ExpectAllFifteenStoredBy(*a2, pub, topic);
  // Packet id 1 twice: the old session's first row and the resend, under a1's two subscriptions.
  EXPECT_EQ(Number(fmt::format("SELECT COUNT(*) FROM `{}`.MSG WHERE MID = 1", name_)), 2u);
  EXPECT_EQ(Number(fmt::format("SELECT COUNT(DISTINCT SUB_TAG) FROM `{}`.MSG WHERE MID = 1", name_)), 2u);
  EXPECT_EQ(a2->Stop(), 0);
}

// The active's journal position rides on its shard's row with every batch
// (schema 006), and the takeover moves it into the old journal's JOURNAL
// row before the new holder's batches overwrite it: the old relay, started
// again, hands over nothing it had stored.
TEST_F(FailoverE2E, TheActivesJournalPositionMovesFromTheShardRowToItsJournalAtTheTakeover) {
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2);
  const std::string topic = root() + "/a/t";
  auto journal_id = [&](const std::string& relay) {
    std::ifstream in(servers().dir() + "/journal-" + name_ + "-" + relay + "/journal-id");
    std::string id;
    std::getline(in, id);
    return id;
  };
  auto shard_row = [&] {
    return servers().Sql(fmt::format("SELECT JOURNAL_ID, JOURNAL_POS FROM `{}`.SHARD WHERE NAME = 'a'", name_));
  };
  auto journal_pos = [&](const std::string& id) {
    return Number(fmt::format("SELECT POS FROM `{}`.JOURNAL WHERE ID = '{}'", name_, id));
  };
  a1->Start();  // alone, so that no takeover can come before the checks below
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int i = 1; i <= 50; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(30s));
  WaitStored(topic, 50);
  const std::string id1 = journal_id("a1");
  ASSERT_FALSE(id1.empty());
  // Stored: a1's position is on the shard's row, past its 50 records, and
  // its JOURNAL row was left alone (a1 still holds the shard: epoch 1).
  ASSERT_EQ(Epoch("a"), 1u);
  const std::string row = shard_row();
  ASSERT_EQ(row.substr(0, id1.size() + 1), id1 + "\t") << row;
  const uint64_t pos1 = std::stoull(row.substr(id1.size() + 1));
  EXPECT_GT(pos1, 50u * 4);
  EXPECT_LT(journal_pos(id1), pos1);

  StartStandby(*a2);
  const std::string id2 = journal_id("a2");
  ASSERT_FALSE(id2.empty());
  ASSERT_NE(id1, id2);
  EXPECT_EQ(a1->Stop(), 0);  // hands the lease over at once
  ASSERT_TRUE(LogHas(*a2, "active: holding shard 'a'", 20s)) << a2->log();
  EXPECT_EQ(journal_pos(id1), pos1);  // folded by the takeover
  for (int i = 51; i <= 60; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(30s));
  WaitStored(topic, 60);
  EXPECT_EQ(shard_row().substr(0, id2.size() + 1), id2 + "\t");
  EXPECT_EQ(journal_pos(id1), pos1);

  a1 = ShardRelay("a", 1);
  StartStandby(*a1);
  EXPECT_EQ(a1->log().find("but not committed handed over"), std::string::npos) << a1->log();
  ExpectEachStoredOnce(Audit(topic, 60), 60);
  EXPECT_EQ(a1->Stop(), 0);
  EXPECT_EQ(a2->Stop(), 0);
}

// A relay stopped cleanly leaves its journal's position on its shard's row
// (nobody took the shard over to fold it into JOURNAL); started again under
// another shard with the same journal, it still finds that position and
// hands over nothing it had stored.
TEST_F(FailoverE2E, AJournalMovedToAnotherShardFindsItsPositionOnTheOldShardsRow) {
  const std::string journal = servers().dir() + "/journal-" + name_ + "-moved";
  auto a1 = ShardRelay("a", 1, {"--journal-dir=" + journal});
  const std::string topic = root() + "/a/t";
  a1->Start();
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int i = 1; i <= 50; ++i) pub.Publish(topic, "p" + std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(30s));
  WaitStored(topic, 50);
  EXPECT_EQ(a1->Stop(), 0);
  EXPECT_EQ(Number(fmt::format("SELECT COUNT(*) FROM `{}`.SHARD WHERE NAME = 'a' AND JOURNAL_POS > 0", name_)), 1u);

  auto b1 = ShardRelay("b", 1, {"--journal-dir=" + journal});
  b1->Start();
  ASSERT_TRUE(LogHas(*b1, "active: holding shard 'b'", 20s)) << b1->log();
  EXPECT_EQ(b1->log().find("but not committed handed over"), std::string::npos) << b1->log();
  std::this_thread::sleep_for(2s);  // a round of PENDING, had there been any
  EXPECT_EQ(Number("SELECT COUNT(*) FROM `" + name_ + "`.PENDING"), 0u);
  ExpectEachStoredOnce(Audit(topic, 50), 50);
  EXPECT_EQ(b1->Stop(), 0);
}

// The database restarted (down for longer than the lease) while a standby
// waits: the standby keeps waiting, the active either renews its lease or
// loses it cleanly to the standby, and never do two relays write: every
// message once, gapless, and no row of the old epoch after the new began.
TEST_F(FailoverE2E, ADatabaseRestartWhileAStandbyWaitsKeepsOneWriter) {
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2);
  a1->Start();
  StartStandby(*a2);
  std::vector<std::string> topics;
  for (int i = 0; i < 20; ++i) topics.push_back(fmt::format("{}/a/t{}", root(), i));
  Recorder sub(servers().mqtt_port(), name_ + "-sub", {root() + "/a/#"});
  SpreadLoad load(servers().mqtt_port(), name_ + "-pub", topics, 6000, 500);
  std::this_thread::sleep_for(2s);
  servers().StopDatabase();
  std::this_thread::sleep_for(std::chrono::milliseconds(kLeaseMs) + 2s);
  servers().StartDatabase();
  load.Join();
  ASSERT_TRUE(load.pub.WaitAllAcked(60s));
  for (std::size_t t = 0; t < topics.size(); ++t) WaitStored(topics[t], load.Sent(t), 60s);
  AuditAll(load, sub);
  const uint32_t epoch = Epoch("a");
  std::fprintf(stderr, "[ figure ] database down %d ms with a standby waiting: the lease %s (epoch %u)\n",
               kLeaseMs + 2000, epoch == 1 ? "stayed with the active" : "went to the standby", epoch);
  EXPECT_LE(epoch, 2u);
  if (epoch == 2) {
    EXPECT_EQ(Number(fmt::format("SELECT COUNT(*) FROM `{}`.MSG m, `{}`.SHARD s WHERE s.NAME = 'a' AND m.EPOCH = 1 "
                                 "AND m.RECEIVED_AT >= s.ACQUIRED_AT", name_, name_)),
              0u);
  }
  EXPECT_EQ(a1->Stop(), 0);
  EXPECT_EQ(a2->Stop(), 0);
}

// Topics move to another shard by narrowing their shard's --source and
// giving them to the other. The shard's MQTT session is mosquitto's, and
// outlives its relays with the subscriptions it made: the narrowed shard
// must not go on taking the topics it gave away (two writers of a topic).
TEST_F(FailoverE2E, ATopicMovedToAnotherShardIsWrittenByThatShardAlone) {
  const std::string moved = root() + "/m/t", kept = root() + "/a/t";
  auto wide = ShardRelay("a", 0, {"--source=" + root() + "/#"});  // before shard a is narrowed
  wide->Start();
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  pub.Publish(moved, "p1");
  pub.Publish(kept, "p1");
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  WaitStored(moved, 1);
  WaitStored(kept, 1);
  EXPECT_EQ(wide->Stop(), 0);

  auto a1 = ShardRelay("a", 1);  // <root>/a/# now
  a1->Start();
  auto m1 = ShardRelay("m", 1);
  m1->Start();
  // Once shard m's session has subscribed, shard a's lets go (the next test).
  ASSERT_TRUE(LogHas(*a1, "shard 'a': its session no longer holds '" + root() + "/#'", 20s)) << a1->log();
  constexpr int kN = 50;
  for (int i = 2; i <= kN; ++i) {
    pub.Publish(moved, "p" + std::to_string(i));
    pub.Publish(kept, "p" + std::to_string(i));
  }
  ASSERT_TRUE(pub.WaitAllAcked(30s));
  WaitStored(kept, kN, 20s);
  WaitStored(moved, kN, 20s);
  ExpectEachStoredOnce(Audit(kept, kN), kN);
  ExpectEachStoredOnce(Audit(moved, kN), kN);
  // After the move, shard m's rows alone (its idx range is its NUM's).
  EXPECT_EQ(Number(fmt::format("SELECT COUNT(*) FROM `{0}`.MSG m JOIN `{0}`.SHARD s ON s.NAME = 'm' WHERE m.ID = "
                               "X'{1}' AND m.idx >= s.NUM << 40", name_, Hex(moved))),
            static_cast<uint64_t>(kN - 1))
      << a1->log() << m1->log();
  EXPECT_EQ(a1->Stop(), 0);
  EXPECT_EQ(m1->Stop(), 0);
}

// A shard that gives topics up keeps its session's subscription to them,
// and stores what comes, until the shard that takes them has subscribed:
// until 2026-12-08 that subscription was never dropped (the test before);
// dropped at once, what was published before the new shard's relay ran
// would be lost. The narrowed shard's own topic, matched by the kept filter
// and its own, comes once.
TEST_F(FailoverE2E, ATopicGivenUpIsStoredByItsOldShardUntilItsNewShardHasSubscribed) {
  const std::string moved = root() + "/m/t", kept = root() + "/a/t";
  auto wide = ShardRelay("a", 0, {"--source=" + root() + "/#"});  // before shard a is narrowed
  wide->Start();
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  pub.Publish(moved, "p1");
  WaitStored(moved, 1);
  EXPECT_EQ(wide->Stop(), 0);

  auto a1 = ShardRelay("a", 1);  // <root>/a/#
  a1->Start();
  EXPECT_TRUE(LogHas(*a1, "shard 'a' gave up '" + root() + "/#': its session keeps them", 1s)) << a1->log();
  pub.Publish(moved, "p2");  // no shard has it yet but a's session
  pub.Publish(kept, "k1");
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  WaitStored(moved, 2, 20s);
  WaitStored(kept, 1, 20s);
  EXPECT_EQ(Number(fmt::format("SELECT COUNT(*) FROM `{}`.MSG WHERE ID = X'{}' AND SEQ = 2 AND idx >> 40 = 1", name_,
                               Hex(moved))),
            1u)
      << "p2 stored by shard a (number 1)";

  auto m1 = ShardRelay("m", 1);
  m1->Start();
  ASSERT_TRUE(LogHas(*a1, "shard 'a': shard(s) 'm' subscribed to the topics of '" + root() + "/#'", 20s))
      << a1->log();
  ASSERT_TRUE(LogHas(*a1, "shard 'a': its session no longer holds '" + root() + "/#'", 20s)) << a1->log();
  pub.Publish(moved, "p3");
  pub.Publish(kept, "k2");
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  WaitStored(moved, 3, 20s);
  WaitStored(kept, 2, 20s);
  std::this_thread::sleep_for(Scaled(300ms));  // a second copy, if any, lands now
  std::vector<std::string> rows;
  for (const auto& [seq, payload] : AuditTrail(moved)) rows.push_back(std::to_string(seq) + "=" + payload);
  EXPECT_EQ(rows, (std::vector<std::string>{"1=" + Hex("p1"), "2=" + Hex("p2"), "3=" + Hex("p3")}))
      << a1->log() << m1->log();
  EXPECT_EQ(Number(fmt::format("SELECT COUNT(*) FROM `{0}`.MSG m JOIN `{0}`.SHARD s ON s.NAME = 'm' WHERE m.ID = "
                               "X'{1}' AND m.SEQ = 3 AND m.idx >> 40 = s.NUM", name_, Hex(moved))),
            1u)
      << "p3 stored by shard m";
  EXPECT_EQ(StoredCount(kept), 2u) << a1->log();
  EXPECT_EQ(Number(fmt::format("SELECT COUNT(*) FROM `{}`.SHARD_SESSION WHERE UNSUBSCRIBING IS NOT NULL", name_)), 0u);
  EXPECT_EQ(a1->Stop(), 0);
  EXPECT_EQ(m1->Stop(), 0);
}

// A standby started before its shard was narrowed would, taking the shard
// over, subscribe the shard's session to the filters it gave up again,
// beside the shard that took their topics: once the shard's sources are no
// longer its own (here set by hand, as a narrowed relay's registration
// writes them), it stops, exit 2, saying why.
TEST_F(FailoverE2E, AStandbyWhoseShardsSourcesChangedSinceItStartedStops) {
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2);
  a1->Start();
  StartStandby(*a2);
  servers().Sql(fmt::format("UPDATE `{}`.SHARD SET FILTERS = '{}/a/x/#' WHERE NAME = 'a'", name_, root()));
  EXPECT_EQ(a2->WaitExit(Scaled(10s)), 2) << a2->log();
  EXPECT_NE(a2->log().find(fmt::format("shard 'a' now has --source '{0}/a/x/#' (a relay of the shard registered them "
                                       "since this one started), but this relay was given '{0}/a/#'",
                                       root())),
            std::string::npos)
      << a2->log();
  EXPECT_TRUE(a1->running());
  EXPECT_EQ(a1->Stop(), 0);
}

// Another writer's row at the SEQ this relay gives a topic next (as the
// old shard of a moved topic stores what its session or a journal handed
// over still held, while the new shard writes the topic): the commit is
// refused for (ID, SEQ) (1062); the batch is numbered again after the
// topic's newest row and committed, and the shard goes on. Until
// 2026-12-08 the same commit was retried for ever, and every topic of the
// shard stalled behind it.
TEST_F(FailoverE2E, ASeqAnotherWriterCommittedFirstIsPassedOverAndTheShardGoesOn) {
  const std::string t = root() + "/a/t", u = root() + "/a/u";
  auto a1 = ShardRelay("a", 1);
  a1->Start();
  MqttClient sub(servers().mqtt_port(), name_ + "-sub");
  sub.Subscribe("seq/" + t);
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  pub.Publish(t, "p1");
  WaitStored(t, 1);
  // SEQ 2 written by "shard 7" (its range of idx).
  servers().Sql(fmt::format("INSERT INTO `{}`.MSG (idx, ID, QOS, SEQ, MSG, EPOCH) VALUES ({}, X'{}', 1, 2, 'other', 1)",
                            name_, (uint64_t{7} << 40) + 1, Hex(t)));
  pub.Publish(t, "p2");
  pub.Publish(u, "u1");
  ASSERT_TRUE(pub.WaitAllAcked(30s));
  WaitStored(t, 3, 20s);
  WaitStored(u, 1, 20s);
  std::vector<std::string> rows;
  for (const auto& [seq, payload] : AuditTrail(t)) rows.push_back(std::to_string(seq) + "=" + payload);
  EXPECT_EQ(rows, (std::vector<std::string>{"1=" + Hex("p1"), "2=" + Hex("other"), "3=" + Hex("p2")})) << a1->log();
  EXPECT_EQ(StoredCount(u), 1u) << a1->log();
  ASSERT_TRUE(sub.WaitForCount(2, 10s)) << a1->log();
  std::vector<uint64_t> seqs;
  for (const Received& r : sub.received()) {
    auto view = seqrelay::DecodeFrame({reinterpret_cast<const uint8_t*>(r.payload.data()), r.payload.size()});
    ASSERT_TRUE(view.ok());
    seqs.push_back(view->header.seq);
  }
  EXPECT_EQ(seqs, (std::vector<uint64_t>{1, 3})) << "the frame goes out with the SEQ it was committed under";
  EXPECT_TRUE(LogHas(*a1, "topic '" + t + "': SEQ 2 to 2 were committed by another writer meanwhile", 1s))
      << a1->log();
  EXPECT_EQ(a1->Stop(), 0);
}

// Two shards whose filters can match one topic: the second is refused at
// start, exit 2, with one line naming both.
TEST_F(FailoverE2E, AShardOverlappingAnotherIsRefusedAtStart) {
  auto a = ShardRelay("a", 1);
  a->Start();
  RelayProcess b(servers(), name_, {"--shard=b", "--source=" + root() + "/+/x", "--relay-id=b1"}, "b1");
  const std::string log = LogOfARefusedStart(b, 2);
  EXPECT_NE(log.find(fmt::format("--shard 'b' --source '{}/+/x' overlaps shard 'a', whose --source '{}/a/#'",
                                 root(), root())),
            std::string::npos)
      << log;
  EXPECT_EQ(a->Stop(), 0);
}


// A shard name that differs from an existing one only in case is the same
// name to the database (SHARD.NAME's collation): refused at start, naming
// both. Until 2026-12-06 it passed the overlap checks as another shard and
// its INSERT failed (1062) on every try, the relay never ready.
TEST_F(FailoverE2E, AShardNameThatDiffersFromAnotherOnlyInCaseIsRefusedAtStart) {
  auto a = ShardRelay("a", 1);
  a->Start();
  RelayProcess b(servers(), name_, {"--shard=A", "--source=" + root() + "/b/#", "--relay-id=b1"}, "b1");
  const std::string log = LogOfARefusedStart(b, 2);
  EXPECT_NE(log.find("--shard 'A' is the existing shard 'a' to the database"), std::string::npos) << log;
  EXPECT_EQ(a->Stop(), 0);
}

// A relay cut off from mosquitto sequences nothing, so it takes no shard
// over (--broker-grace): started first, against a port nothing listens on,
// it stands by, and the relay started after it, which reaches mosquitto, is
// the shard's active and stores what is published. Until 2026-12-05 the
// first took the lease and kept it, and nothing was stored.
TEST_F(FailoverE2E, ARelayThatCannotReachMosquittoTakesNoShardOver) {
  auto cut_off = ShardRelay("a", 1);
  cut_off->SetBroker(FreePort(), "", "");
  cut_off->Launch();
  // Until it has decided: it says it stands by (or, in the build before,
  // that it is active).
  ASSERT_TRUE(WaitFor(
      [&] {
        const std::string log = cut_off->log();
        return log.find("standby: not taking shard 'a' over") != std::string::npos ||
               log.find("active: holding shard 'a'") != std::string::npos;
      },
      Scaled(20s)))
      << cut_off->log();
  auto reaches = ShardRelay("a", 2);
  reaches->Launch();
  ASSERT_TRUE(LogHas(*reaches, "active: holding shard 'a'", 20s)) << cut_off->log() << reaches->log();
  ASSERT_TRUE(LogHas(*reaches, "intake: subscribed", 20s)) << reaches->log();  // the shard's session exists
  EXPECT_NE(cut_off->log().find("standby: not taking shard 'a' over: no connection to mosquitto"),
            std::string::npos) << cut_off->log();
  PublishAndExpectEachStoredOnce(root() + "/a/t", 20);
  EXPECT_EQ(cut_off->log().find("active: holding shard"), std::string::npos) << cut_off->log();
  EXPECT_EQ(reaches->Stop(), 0);
  EXPECT_EQ(cut_off->Stop(), 0);
}

// The lease's clock is the database's, in UTC whatever zone a relay's
// connection began in. The server's zone moves five hours east (as a
// server on local time moves by one when its clocks go forward): a standby
// that connects then sees the live active's lease as any relay does and
// waits; once the zone is back, a standby that connects then takes the
// shard over within a lease of its holder's death. Until 2026-12-05 NOW(6)
// was in the connection's zone: the first standby took the shard from its
// live active at once, and the second would have waited five hours.
TEST_F(FailoverE2E, StandbysWhoseConnectionsBeganInAnotherTimeZoneAgreeOnTheLease) {
  auto a1 = ShardRelay("a", 1), a2 = ShardRelay("a", 2), a3 = ShardRelay("a", 3);
  a1->Start();
  ASSERT_TRUE(LogHas(*a1, "active: holding shard 'a'", 20s)) << a1->log();
  const uint32_t epoch = Epoch("a");

  ServerTimeZone zone(servers(), "+05:00");
  StartStandby(*a2);
  std::this_thread::sleep_for(std::chrono::milliseconds(2 * kLeaseMs));
  EXPECT_EQ(Epoch("a"), epoch);
  EXPECT_EQ(a2->log().find("active: holding shard 'a'"), std::string::npos) << a2->log();

  a1->Kill();
  ASSERT_TRUE(LogHas(*a2, "active: holding shard 'a'", std::chrono::milliseconds(kLeaseMs) + 10s)) << a2->log();
  zone.Restore();
  StartStandby(*a3);
  const auto killed = Clock::now();
  a2->Kill();
  ASSERT_TRUE(LogHas(*a3, "active: holding shard 'a'", std::chrono::milliseconds(kLeaseMs) + 10s)) << a3->log();
  std::fprintf(stderr, "[ figure ] the active in UTC+5 killed -> the standby in the server's zone active: %.0f ms "
               "(--lease-ms %d)\n", Ms(Clock::now() - killed), kLeaseMs);
  EXPECT_EQ(Epoch("a"), epoch + 2);
  PublishAndExpectEachStoredOnce(root() + "/a/t", 20);
  EXPECT_EQ(a3->Stop(), 0);
}

// A mosquitto of its own for one relay, on loopback: to cut that relay off
// from the broker while the others keep theirs.
class OwnBroker {
 public:
  explicit OwnBroker(const std::string& dir) : dir_(dir), port_(FreePort()) {
    std::ofstream(dir_ + "/own-mosquitto.conf") << "listener " << port_ << " 127.0.0.1\nallow_anonymous true\n"
                                                << (geteuid() == 0 ? "user root\n" : "");
    Start();
  }
  void Start() {
    process_.Start({"mosquitto", "-c", dir_ + "/own-mosquitto.conf"}, dir_ + "/own-mosquitto.log");
    if (!WaitFor([&] { return !process_.running() || PortAccepts(port_); }, 20s) || !process_.running()) {
      throw std::runtime_error("mosquitto did not start:\n" + ReadFile(dir_ + "/own-mosquitto.log"));
    }
  }
  void Kill() {
    process_.Signal(SIGKILL);
    process_.Wait(10s);
  }
  int port() const { return port_; }

 private:
  const std::string dir_;
  const int port_;
  Process process_;
};

// The active loses mosquitto (its own broker killed here; a network cut
// alike) while the database stays: after --broker-grace it stops renewing
// its lease, and the standby, which reaches mosquitto, takes the shard over
// and stores what is published; the cut-off relay, looking at the lease
// without renewing it, finds it moved and stands by. Until 2026-12-05 it
// kept renewing, and the shard was sequenced by nobody.
TEST_F(FailoverE2E, AnActiveCutOffFromMosquittoHandsItsShardToAStandbyThatReachesIt) {
  OwnBroker own(servers().dir());
  auto cut = ShardRelay("a", 1, {"--broker-grace=2"});
  cut->SetBroker(own.port(), "", "");
  cut->Start();
  ASSERT_TRUE(LogHas(*cut, "active: holding shard 'a'", 20s)) << cut->log();
  auto standby = ShardRelay("a", 2, {"--broker-grace=2"});
  StartStandby(*standby);
  const uint32_t epoch = Epoch("a");

  const auto killed = Clock::now();
  own.Kill();
  ASSERT_TRUE(LogHas(*standby, "active: holding shard 'a'", std::chrono::milliseconds(kLeaseMs) + 20s))
      << cut->log() << standby->log();
  const double took = Ms(Clock::now() - killed);
  // Its intake's session on this broker is new: published to once it is subscribed.
  ASSERT_TRUE(LogHas(*standby, "intake: subscribed", 20s)) << standby->log();
  EXPECT_EQ(Epoch("a"), epoch + 1);
  EXPECT_NE(cut->log().find("lease: not renewing shard 'a' (epoch " + std::to_string(epoch) +
                            "): no connection to mosquitto for 2 s (--broker-grace)"),
            std::string::npos) << cut->log();
  PublishAndExpectEachStoredOnce(root() + "/a/t", 20);
  std::fprintf(stderr, "[ figure ] the active's broker killed -> the standby active: %.0f ms (--broker-grace 2, "
               "--lease-ms %d)\n", took, kLeaseMs);

  // Cut off, it finds the shard moved and stands by (its journal goes to
  // the new active), and stays a standby once its broker is back.
  EXPECT_TRUE(LogHas(*cut, "another relay took over shard 'a' (the lease moved past epoch " + std::to_string(epoch) +
                               ") while this one could not reach mosquitto",
                     20s))
      << cut->log();
  own.Start();
  EXPECT_TRUE(LogHas(*cut, "standby: shard 'a' is held by 'a2'", 40s)) << cut->log();
  EXPECT_EQ(cut->Stop(), 0);  // first: the standby's stop releases the lease, which it would take
  EXPECT_EQ(standby->Stop(), 0);
}

// The active loses the database (its network to it cut, TcpGate) while
// mosquitto stays: its lease lapses, and a standby, which reaches the
// database, takes the shard over. The shard's retained report says
// "database": "down" while no relay holds the shard, a report an older
// deployment left there (another database's epoch 99) notwithstanding,
// then is the new active's alone: until 2026-12-07 the cut-off relay put
// its own "down" over its successor's report every interval for as long
// as the cut lasted. Once the database is back, the cut-off relay stands by.
TEST_F(FailoverE2E, AnActiveCutOffFromTheDatabaseLeavesTheShardsReportToItsSuccessor) {
  TcpGate gate(servers().db_port());
  MqttClient shard_stats(servers().mqtt_port(), name_ + "-stats");
  {
    MqttClient old(servers().mqtt_port(), name_ + "-old");
    old.Publish("relay/stats/a", R"({"relay_id": "old", "role": "active", "lease": {"epoch": 99}, "database": "up"})",
                1, 200, /*retain=*/true);
    ASSERT_TRUE(old.WaitAllAcked(10s));
  }
  shard_stats.Subscribe("relay/stats/a");
  // Reports by relay and role, with what they say of the database, in the
  // order the broker passed them on.
  const auto reports = [&] {
    std::vector<std::string> order;
    for (const auto& m : shard_stats.received()) {
      const auto r = nlohmann::json::parse(m.payload);
      order.push_back(fmt::format("{}/{}/{}", r["relay_id"].get<std::string>(), r["role"].get<std::string>(),
                                  r["database"].get<std::string>()));
    }
    return order;
  };
  const auto count_from = [&](std::size_t from, const std::string& what) {
    const auto order = reports();
    return from >= order.size() ? 0 : std::count(order.begin() + static_cast<std::ptrdiff_t>(from), order.end(), what);
  };
  auto cut = ShardRelay("a", 1);
  cut->SetDbPort(gate.port());
  cut->Start();
  ASSERT_TRUE(LogHas(*cut, "active: holding shard 'a'", 20s)) << cut->log();
  const uint32_t epoch = Epoch("a");

  gate.Shut();
  ASSERT_TRUE(LogHas(*cut, "not renewed within --lease-ms", std::chrono::milliseconds(kLeaseMs) + 10s)) << cut->log();
  // Lapsed, no successor yet: its news goes on (the report of epoch 99,
  // retained before this relay subscribed, is not taken for a successor's).
  const std::size_t lapsed_at = reports().size();
  EXPECT_TRUE(WaitFor([&] { return count_from(lapsed_at, "a1/active/down") >= 2; }, Scaled(10s)))
      << fmt::format("{}", fmt::join(reports(), " "));

  auto standby = ShardRelay("a", 2);
  standby->Launch();  // the lease has expired: it takes the shard at once
  ASSERT_TRUE(LogHas(*standby, "active: holding shard 'a'", 20s)) << cut->log() << standby->log();
  EXPECT_EQ(Epoch("a"), epoch + 1);
  PublishAndExpectEachStoredOnce(root() + "/a/t", 20);
  // Once the cut-off relay has had the successor's reports for a while
  // (its own last may cross the successor's first on their way), the
  // successor's only: until 2026-12-07 the two alternated every interval.
  ASSERT_TRUE(WaitFor([&] { return count_from(0, "a2/active/up") >= 3; }, Scaled(20s)))
      << fmt::format("{}", fmt::join(reports(), " "));
  const std::size_t settled = reports().size();
  ASSERT_TRUE(WaitFor([&] { return count_from(settled, "a2/active/up") >= 3; }, Scaled(20s)))
      << fmt::format("{}", fmt::join(reports(), " "));
  const auto order = reports();
  ASSERT_EQ(order.front(), "old/active/up");
  EXPECT_EQ(std::count_if(order.begin() + static_cast<std::ptrdiff_t>(settled), order.end(),
                          [](const std::string& o) { return o != "a2/active/up"; }),
            0)
      << fmt::format("{}", fmt::join(order, " "));

  gate.Open();
  EXPECT_TRUE(LogHas(*cut, "standby: shard 'a' is held by 'a2'", 30s)) << cut->log();
  EXPECT_EQ(cut->Stop(), 0);  // first: the standby's stop releases the lease, which it would take
  EXPECT_EQ(standby->Stop(), 0);
}

// A frame committed under the lease and held back from the broker (the
// output link away, the frames in flight at their bound; here
// SEQTEST_HOLD_FIRST_FRAME_MS) while the relay loses the database and its
// lease lapses: a standby takes the shard over and publishes the row (above
// the shard's PUBLISHED_IDX); the first relay, once its wait is over,
// publishes nothing. Until 2026-12-07 the lease was checked only before
// that wait, and the frame went out a second time, after the successor's
// (a helper's review).
TEST_F(FailoverE2E, AFrameHeldPastItsLeaseIsLeftToTheSuccessor) {
  const std::string topic = root() + "/a/t";
  TcpGate gate(servers().db_port());
  MqttClient sub(servers().mqtt_port(), name_ + "-sub");
  sub.Subscribe("seq/" + topic);
  auto cut = ShardRelay("a", 1);
  cut->SetDbPort(gate.port());
  cut->Start({"SEQTEST_HOLD_FIRST_FRAME_MS=4000"});
  ASSERT_TRUE(LogHas(*cut, "active: holding shard 'a'", 20s)) << cut->log();
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  pub.Publish(topic, "m1");
  ASSERT_TRUE(LogHas(*cut, "fault injection: holding the first frame", 10s)) << cut->log();  // committed
  gate.Shut();
  ASSERT_TRUE(LogHas(*cut, "not renewed within --lease-ms", std::chrono::milliseconds(kLeaseMs) + 10s)) << cut->log();
  auto standby = ShardRelay("a", 2);
  standby->Launch();
  ASSERT_TRUE(LogHas(*standby, "active: holding shard 'a'", 20s)) << standby->log();
  ASSERT_TRUE(sub.WaitForCount(1, 10s)) << standby->log();
  // The held frame's wait is over (4 s after it began): nothing more comes.
  ASSERT_TRUE(LogHas(*cut, "fault injection: the first frame's hold is over", 10s)) << cut->log();
  EXPECT_FALSE(sub.WaitForCount(2, 1s)) << cut->log();
  const auto frames = Frames(sub.received());
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].seq, 1u);
  EXPECT_EQ(frames[0].payload, "m1");
  gate.Open();
  EXPECT_TRUE(LogHas(*cut, "standby: shard 'a' is held by 'a2'", 30s)) << cut->log();
  EXPECT_EQ(sub.received().size(), 1u);
  EXPECT_EQ(cut->Stop(), 0);  // first: the standby's stop releases the lease, which it would take
  EXPECT_EQ(standby->Stop(), 0);
}

// The writer's fence, by itself: the shard's epoch moved by hand (as by a
// takeover this relay has not noticed yet: its lease of 60 s is renewed
// every 20 s) makes its next batch roll back, nothing of it committed under
// the old epoch or published, and the relay steps down. (The other fence
// tests pause or kill relays, and a renewal may find the move first.)
TEST_F(FailoverE2E, ABatchAfterTheEpochMovedIsRolledBackAndNothingOfItIsPublished) {
  const std::string topic = root() + "/a/t";
  auto relay = ShardRelay("a", 1, {"--lease-ms=60000"});
  relay->Start();
  MqttClient sub(servers().mqtt_port(), name_ + "-sub");
  sub.Subscribe("seq/" + topic);
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  pub.Publish(topic, "before");
  ASSERT_TRUE(sub.WaitForCount(1, 10s)) << relay->log();
  const uint32_t epoch = Epoch("a");
  ASSERT_GT(epoch, 0u);
  servers().Sql("UPDATE `" + name_ + "`.SHARD SET EPOCH = EPOCH + 1 WHERE NAME = 'a'");
  pub.Publish(topic, "after");
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  EXPECT_TRUE(LogHas(*relay, fmt::format("is no longer held under epoch {} (another relay took it over); rolled back",
                                        epoch), 10s))
      << relay->log();
  EXPECT_TRUE(LogHas(*relay, "stepping down to standby", 10s)) << relay->log();
  const auto rows = [&](const std::string& payload) {
    return Number(fmt::format("SELECT COUNT(*) FROM `{}`.MSG WHERE EPOCH = {} AND ID = '{}' AND MSG = '{}'", name_,
                              epoch, topic, payload));
  };
  EXPECT_EQ(rows("after"), 0u) << "committed under the epoch that had moved on";
  EXPECT_EQ(rows("before"), 1u);
  std::this_thread::sleep_for(Scaled(500ms));  // a frame of 'after', if one were published, has time to arrive
  EXPECT_EQ(sub.received_count(), 1u) << "a frame published after the fence failed";
  EXPECT_EQ(relay->Stop(), 0) << relay->log();
}

}  // namespace
}  // namespace seqtest
