// The fault suite's fixture: a bounded, paced QoS 1 load, an ordered
// subscriber (the client library, which fills gaps from the relay), and an
// audit of what was sent, acknowledged, stored and delivered. Every scenario
// prints one row of the README's faults table; with SEQTEST_FAULT_TABLE=FILE
// the rows are also appended to FILE (tools/faults.sh collects them).
#pragma once

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include <fmt/format.h>

#include "intake/journal.h"

#include "relay_fixture.h"
#include "seq_client.h"

namespace seqtest {

// Publishes `count` messages "p<i>" to `topic` at `rate` per second.
inline void PublishPaced(MqttClient& pub, const std::string& topic, int count, int rate, std::atomic<int>& done) {
  const auto start = std::chrono::steady_clock::now();
  for (int i = 1; i <= count; ++i) {
    std::this_thread::sleep_until(start + std::chrono::microseconds(int64_t{1000000} * i / rate));
    pub.Publish(topic, "p" + std::to_string(i), 1, 5000);
    done = i;
  }
}

// The database server's global time zone set to `zone` for what follows
// (sessions opened from then on take it), and put back when this goes.
class ServerTimeZone {
 public:
  ServerTimeZone(TestServers& servers, const std::string& zone) : servers_(servers) {
    was_ = servers_.Sql("SELECT @@GLOBAL.time_zone");
    was_.erase(was_.find_last_not_of('\n') + 1);
    Set(zone);
  }
  ~ServerTimeZone() {
    try {
      Set(was_);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "time zone not restored: " << e.what();
    }
  }
  void Set(const std::string& zone) { servers_.Sql("SET GLOBAL time_zone = '" + zone + "'"); }
  void Restore() { Set(was_); }

 private:
  TestServers& servers_;
  std::string was_;
};

// A subscriber on seq/<topic> through the client library: it delivers in
// SEQ order, once, and asks the relay for frames it missed.
class OrderedSubscriber {
 public:
  OrderedSubscriber(int port, const std::string& id, const std::string& topic) {
    seqclient::Options o;
    o.port = port;
    o.client_id = id;
    o.filters = {topic};
    client_ = std::make_unique<seqclient::SeqClient>(o, [this](const seqclient::Message& m) {
      std::lock_guard lock(mu_);
      if (m.seq != last_ + 1) ++out_of_order_;
      last_ = m.seq;
      ++delivered_;
    });
    if (auto error = client_->Start()) throw std::runtime_error("subscriber: " + *error);
  }
  ~OrderedSubscriber() { client_->Stop(); }

  bool WaitDelivered(std::size_t n, std::chrono::milliseconds deadline) {
    return WaitFor([&] { return delivered() >= n; }, Scaled(deadline));
  }
  std::size_t delivered() {
    std::lock_guard lock(mu_);
    return delivered_;
  }
  std::size_t out_of_order() {
    std::lock_guard lock(mu_);
    return out_of_order_;
  }

 private:
  std::mutex mu_;
  uint64_t last_ = 0;              // guarded by mu_
  std::size_t delivered_ = 0;      // guarded by mu_
  std::size_t out_of_order_ = 0;   // guarded by mu_
  std::unique_ptr<seqclient::SeqClient> client_;
};

// A paced QoS 1 load of "p1".."p<count>" on one topic, published by its own
// thread, with an ordered subscriber on seq/<topic> started before it.
class PacedLoad {
 public:
  PacedLoad(int port, const std::string& name, std::string topic, int count, int rate)
      : sub(port, name + "-sub", topic),
        pub(port, name + "-pub"),
        topic_(std::move(topic)),
        count_(count),
        thread_([this, rate] { PublishPaced(pub, topic_, count_, rate, published_); }) {}
  ~PacedLoad() { JoinPublisher(); }
  PacedLoad(const PacedLoad&) = delete;
  PacedLoad& operator=(const PacedLoad&) = delete;

  bool WaitPublished(int n, std::chrono::milliseconds deadline) {
    return WaitFor([&] { return published_ >= n; }, deadline);
  }
  int published() const { return published_; }
  void JoinPublisher() {
    if (thread_.joinable()) thread_.join();
  }
  // The whole load published and acknowledged by the broker.
  bool Finish(std::chrono::milliseconds ack_deadline) {
    JoinPublisher();
    return pub.WaitAllAcked(ack_deadline);
  }
  const std::string& topic() const { return topic_; }
  int count() const { return count_; }

  OrderedSubscriber sub;
  MqttClient pub;

 private:
  const std::string topic_;
  const int count_;
  std::atomic<int> published_{0};
  std::thread thread_;  // last: starts once everything above exists
};

class FaultE2E : public RelayE2E {
 protected:
  // The relay, stopped without releasing its lease (the database hung or
  // was gone), is started again once the lease is let run out (rather than
  // waited for), and stores p1..p<count> on `topic`, each once.
  void RestartAfterAnUnreleasedLeaseAndExpectAllStored(const std::string& topic, std::size_t count) {
    servers().Sql("UPDATE `" + name_ + "`.SHARD SET EXPIRES_AT = '2000-01-01' WHERE NAME = 'default'");
    relay_->Start();
    WaitStored(topic, count);
    Outcome o = Audit(topic, count);
    EXPECT_EQ(o.lost, 0u);
    EXPECT_EQ(o.duplicates, 0u);
    EXPECT_EQ(relay_->Stop(), 0);
  }

  struct Outcome {
    std::size_t sent = 0, acked = 0, stored = 0, distinct = 0, lost = 0, duplicates = 0;
    std::size_t delivered = 0;  // by the ordered subscriber, if there was one
    bool has_subscriber = false;
    bool gapless = true;
    long peak_rss_kb = 0;  // the relay's, if it is still running
  };

  // Compares MSG's trail of `topic` with payloads "p1".."p<sent>" (each
  // followed by `tail`).
  Outcome Audit(const std::string& topic, std::size_t sent, MqttClient* pub = nullptr,
                OrderedSubscriber* sub = nullptr, const std::string& tail = "") {
    Outcome o;
    o.sent = sent;
    o.acked = pub ? sent - pub->unacked() : sent;
    auto trail = AuditTrail(topic);
    o.stored = trail.size();
    std::map<std::string, int> copies;
    for (std::size_t i = 0; i < trail.size(); ++i) {
      o.gapless = o.gapless && trail[i].first == i + 1;
      ++copies[trail[i].second];
    }
    for (std::size_t i = 1; i <= sent; ++i) {
      auto it = copies.find(Hex("p" + std::to_string(i) + tail));
      if (it == copies.end()) {
        ++o.lost;
      } else {
        o.duplicates += it->second - 1;
      }
    }
    o.distinct = copies.size();
    if (sub) {
      sub->WaitDelivered(o.stored, std::chrono::seconds(20));
      o.has_subscriber = true;
      o.delivered = sub->delivered();
      EXPECT_EQ(sub->out_of_order(), 0u) << "the ordered subscriber saw a SEQ out of order";
    }
    if (relay_ && relay_->running()) o.peak_rss_kb = relay_->PeakRssKb();
    return o;
  }

  // A database session in the background that runs `statements` (taking
  // locks) and then holds them (120 s at most). Locked once the constructor
  // returns (the session prints its id when it has run them); Release()
  // kills that session, and the locks go with it.
  class SessionHolder {
   public:
    SessionHolder(TestServers& servers, const std::string& database, const std::string& statements)
        : servers_(servers) {
      auto command = servers.SqlCommand(statements + " SELECT CONNECTION_ID(); DO SLEEP(120);");
      command.insert(command.begin() + 2, "--unbuffered");  // after --no-defaults, which must come first
      const std::string log = servers.dir() + "/holder-" + database + ".log";
      std::filesystem::remove(log);  // a lock taken before in the test wrote its session there
      holder_.Start(command, log);
      locked_ = WaitFor([&] { return (session_ = ReadFile(holder_.log_path())).find('\n') != std::string::npos; },
                        Scaled(std::chrono::seconds(5)));
    }
    bool locked() const { return locked_; }
    void Release() {
      if (locked_) servers_.Sql("KILL " + session_.substr(0, session_.find('\n')));
      locked_ = false;
    }
    ~SessionHolder() { Release(); }

   private:
    TestServers& servers_;
    Process holder_;
    std::string session_;
    bool locked_ = false;
  };

  // One value of a query on the test database's server, its newline cut.
  std::string SqlValue(const std::string& query) {
    std::string out = servers().Sql(query);
    if (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  }

  // The test database's MSG locked by another session: `mode` READ holds
  // the relay's writes (it reads, and its commits wait); WRITE its reads too.
  class MsgLock : public SessionHolder {
   public:
    MsgLock(TestServers& servers, const std::string& database, const std::string& mode = "READ")
        : SessionHolder(servers, database, "LOCK TABLES `" + database + "`.MSG " + mode + ";") {}
  };

  // The relay (its journal in a folder of its own) restarted with the
  // fault `env` ("NAME=value"), which ends it with `exit_code` while
  // p1..p100 are published on root()/t (the broker queues them for its
  // session), then restarted without it: each stored once. `check` then
  // reads the relay's log.
  void HundredMessagesThroughADyingRelay(const std::string& env, int exit_code,
                                         const std::function<void(const std::string&)>& check) {
    StartRelay({"--journal-dir=" + servers().dir() + "/journal-" + name_});
    ASSERT_EQ(relay_->Stop(), 0);
    relay_->Start({env});
    const std::string topic = root() + "/t";
    MqttClient pub(servers().mqtt_port(), name_ + "-pub");
    for (int i = 1; i <= 100; ++i) pub.Publish(topic, "p" + std::to_string(i));
    ASSERT_TRUE(pub.WaitAllAcked(std::chrono::seconds(10)));
    ASSERT_EQ(relay_->WaitExit(std::chrono::seconds(10)), exit_code) << relay_->log();
    relay_->Start();
    WaitStored(topic, 100);
    ExpectEachStoredOnce(Audit(topic, 100), 100);
    check(relay_->log());
    EXPECT_EQ(relay_->Stop(), 0);
  }

  // With the journal, then without: the relay restarted with the fault
  // `env` ("NAME=value"), p1..p100 published on root()/j (or /m), and each
  // stored once; `check` then reads the relay's log.
  void HundredMessagesWithAFault(const std::string& env, const std::function<void(const std::string&)>& check) {
    for (bool journal : {true, false}) {
      SCOPED_TRACE(journal ? "with the journal" : "without the journal");
      std::vector<std::string> args;
      args.push_back(journal ? "--journal-dir=" + servers().dir() + "/journal-" + name_ : "--no-journal");
      StartRelay(args);
      relay_->Stop();
      relay_->Start({env});
      const std::string topic = root() + (journal ? "/j" : "/m");
      MqttClient pub(servers().mqtt_port(), name_ + "-pub");
      for (int i = 1; i <= 100; ++i) pub.Publish(topic, "p" + std::to_string(i));
      ASSERT_TRUE(pub.WaitAllAcked(std::chrono::seconds(10)));
      WaitStored(topic, 100);
      std::this_thread::sleep_for(Scaled(std::chrono::milliseconds(300)));  // a duplicate, if any, lands now
      ExpectEachStoredOnce(Audit(topic, 100), 100);
      check(relay_->log());
      EXPECT_EQ(relay_->Stop(), 0);
    }
  }

  // Every one of the `n` messages stored exactly once, SEQ 1..n.
  static void ExpectEachStoredOnce(const Outcome& o, std::size_t n) {
    EXPECT_EQ(o.lost, 0u);
    EXPECT_EQ(o.duplicates, 0u);
    EXPECT_EQ(o.stored, n);
    EXPECT_TRUE(o.gapless);
  }

  Outcome Audit(PacedLoad& load) {
    return Audit(load.topic(), static_cast<std::size_t>(load.count()), &load.pub, &load.sub);
  }

  // One row of the faults table: scenario, sent, acknowledged, stored,
  // delivered, lost, duplicates, gaps, peak RSS, time to recover.
  static void Print(const std::string& scenario, const Outcome& o, double recover_s) {
    const std::string row = fmt::format(
        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1f} s |", scenario, o.sent, o.acked, o.stored,
        o.has_subscriber ? std::to_string(o.delivered) : "-", o.lost, o.stored - o.distinct,
        o.gapless ? "none" : "GAP", o.peak_rss_kb ? fmt::format("{:.1f} MiB", o.peak_rss_kb / 1024.0) : "-",
        recover_s);
    std::fprintf(stderr, "[ figure ] %s\n", row.c_str());
    if (const char* table = std::getenv("SEQTEST_FAULT_TABLE")) {
      if (FILE* f = std::fopen(table, "a")) {
        std::fprintf(f, "%s\n", row.c_str());
        std::fclose(f);
      }
    }
  }

  // Waits until MSG holds at least `n` rows for `topic`, or the count has
  // not moved for 3 s (some were lost); returns seconds waited.
  double WaitStored(const std::string& topic, std::size_t n, std::chrono::seconds deadline = 60s) {
    const auto t0 = std::chrono::steady_clock::now();
    std::size_t last = 0;
    auto moved = t0;
    WaitFor(
        [&] {
          std::size_t now = StoredCount(topic);
          if (now != last) last = now, moved = std::chrono::steady_clock::now();
          return now >= n || std::chrono::steady_clock::now() - moved > Scaled(3s);
        },
        deadline);
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  std::size_t StoredCount(const std::string& topic) {
    return std::stoul(servers().Sql("SELECT COUNT(*) FROM `" + name_ + "`.MSG WHERE ID = X'" + Hex(topic) + "'"));
  }

  // The SEQ-less view: which of "p1".."p<sent>" are missing from MSG.
  std::vector<int> Missing(const std::string& topic, int sent) {
    std::set<std::string> have;
    for (const auto& [seq, hex] : AuditTrail(topic)) have.insert(hex);
    std::vector<int> missing;
    for (int i = 1; i <= sent; ++i) {
      if (!have.count(Hex("p" + std::to_string(i)))) missing.push_back(i);
    }
    return missing;
  }

  // The payloads of every record the journal in `dir` still holds, read
  // with the relay's own reader (segments wholly committed may be deleted):
  // what mosquitto delivered to the relay. The relay must be stopped (it
  // holds the journal's lock).
  std::set<std::string> JournaledPayloads(const std::string& dir) {
    std::set<std::string> payloads;
    seqrelay::Journal journal(dir);
    auto identity = journal.Identify();
    EXPECT_TRUE(identity.ok()) << (identity.ok() ? "" : identity.error());
    const std::string database = servers().Sql("SELECT INSTANCE FROM `" + name_ + "`.RELAY_STATE WHERE K = 1");
    seqrelay::Status s = journal.Open(0, database.substr(0, database.find('\n')));
    if (s.ok()) {
      s = journal.Replay(0, [&](const seqrelay::Journal::Record& r) {
        payloads.emplace(reinterpret_cast<const char*>(r.payload.data()), r.payload.size());
      });
    }
    EXPECT_TRUE(s.ok()) << s.message();
    return payloads;
  }

  // The long form of the suite (tools/faults.sh --long) sets SEQTEST_LONG.
  static bool LongForm() { return std::getenv("SEQTEST_LONG") != nullptr; }
};

}  // namespace seqtest
