// The stats report on <control-prefix>/stats (retained, every
// --stats-interval) and the Prometheus endpoint (--metrics-port), with
// figures that match what the relay did.
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numeric>
#include <thread>

#include "relay_fixture.h"

namespace seqtest {
namespace {

using nlohmann::json;

// Every report received so far, parsed.
std::vector<json> Reports(MqttClient& client) {
  std::vector<json> out;
  for (const auto& r : client.received()) out.push_back(json::parse(r.payload));
  return out;
}

TEST_F(RelayE2E, StatsReportIsRetainedAndCountsWhatTheRelayDid) {
  // Its own control prefix: every relay of the suite shares the broker, and
  // the report is one retained message per prefix.
  const std::string control = name_ + "-ctl";
  StartRelay({"--stats-interval=1", "--control-prefix=" + control});
  MqttClient watcher(servers().mqtt_port(), name_ + "-watch");
  watcher.Subscribe(control + "/stats");

  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int i = 1; i <= 30; ++i) pub.Publish(root() + "/a", "a" + std::to_string(i));
  for (int i = 1; i <= 20; ++i) pub.Publish(root() + "/b", "b" + std::to_string(i));
  pub.Publish(root() + "/" + std::string(256, 'x'), "refused: topic over 255 bytes");
  ASSERT_TRUE(pub.WaitAllAcked(10s));

  json last;
  ASSERT_TRUE(WaitFor(
      [&] {
        auto reports = Reports(watcher);
        if (reports.empty()) return false;
        last = reports.back();
        // The refusal too: it was published last, and nothing orders its
        // intake before the 50th frame's PUBACK (and a report reads the
        // counters one by one: `received` is counted before the refusal).
        return last["messages"]["published"] == 50 && last["messages"]["acknowledged"] == 50 &&
               last["messages"]["received"] == 51 && last["messages"]["refused"]["topic_too_long"] == 1;
      },
      20s))
      << "last report: " << last.dump();
  EXPECT_EQ(last["interval_s"], 1);
  EXPECT_EQ(last["messages"]["received"], 51);
  EXPECT_EQ(last["messages"]["committed"], 50);
  EXPECT_EQ(last["messages"]["lost"], 0);
  EXPECT_EQ(last["messages"]["refused"]["topic_too_long"], 1);
  EXPECT_EQ(last["topics"], 2);
  EXPECT_EQ(last["buffer"]["messages"], 0);
  EXPECT_EQ(last["buffer"]["max"], 100000);
  EXPECT_EQ(last["database"], "up");
  EXPECT_EQ(last["broker"]["intake"], "connected");
  EXPECT_EQ(last["broker"]["output"], "connected");
  EXPECT_EQ(last["broker"]["replay"], "connected");
  EXPECT_GT(last["uptime_s"].get<double>(), 0.0);

  // The windows: every committed batch is counted in exactly one report
  // (the retained report from before the subscription held none: nothing
  // had been published yet).
  uint64_t batches_in_windows = 0, reports_with_batches = 0;
  double slowest_commit_ms = 0;
  for (const auto& r : Reports(watcher)) {
    batches_in_windows += r["commit_ms"]["count"].get<uint64_t>();
    EXPECT_EQ(r["commit_ms"]["count"], r["batch_rows"]["count"]);
    if (r["batch_rows"]["count"].get<uint64_t>() > 0) ++reports_with_batches;
    slowest_commit_ms = std::max(slowest_commit_ms, r["commit_ms"]["max"].get<double>());
  }
  EXPECT_EQ(batches_in_windows, last["batches"].get<uint64_t>());
  EXPECT_GE(reports_with_batches, 1u);
  EXPECT_GT(slowest_commit_ms, 0.0) << "a durable commit takes time";

  // After a clean stop the final report stays retained for newcomers.
  ASSERT_EQ(relay_->Stop(), 0);
  MqttClient late(servers().mqtt_port(), name_ + "-late");
  late.Subscribe(control + "/stats");
  ASSERT_TRUE(late.WaitForCount(1, 5s)) << "no retained report";
  json retained = Reports(late).front();
  EXPECT_EQ(retained["messages"]["committed"], 50);
  EXPECT_EQ(retained["messages"]["acknowledged"], 50);
  EXPECT_EQ(retained["broker"]["intake"], "disconnected") << "the final report is made after intake stopped";
}

// No report is queued while the broker is away: each would be kept by
// libmosquitto (QoS 1) until the reconnect, without bound, and all sent at
// once then. Until 2026-12-07 a relay away from the broker for 4 s with
// --stats-interval 1 sent four or more reports within moments of its
// reconnect.
TEST_F(RelayE2E, StatsReportsAreNotQueuedWhileTheBrokerIsAway) {
  const std::string id = name_.substr(0, 20) + "-r";
  StartRelay({"--stats-interval=1", "--relay-id=" + id});
  const std::string own = "relay/stats/default/" + id;  // not retained: what comes is what the relay sent
  {
    MqttClient first(servers().mqtt_port(), name_ + "-first");
    first.Subscribe(own);
    ASSERT_TRUE(first.WaitForCount(1, Scaled(10s))) << relay_->log();
  }
  servers().StopBroker();
  std::this_thread::sleep_for(4s);  // four intervals of the relay's, away
  servers().StartBroker();
  MqttClient sub(servers().mqtt_port(), name_ + "-sub");  // before the relay's reconnect (1 s on)
  sub.Subscribe(own);
  ASSERT_TRUE(sub.WaitForCount(2, Scaled(20s))) << relay_->log();
  const auto received = sub.received();
  const auto burst = std::count_if(received.begin(), received.end(), [&](const Received& r) {
    return r.topic == own && r.at - received.front().at < 500ms;
  });
  EXPECT_LE(burst, 1) << received.size() << " reports\n" << relay_->log();
  EXPECT_EQ(relay_->Stop(), 0);
}

TEST_F(RelayE2E, StatsIntervalZeroPublishesNoReport) {
  const std::string control = name_ + "-ctl";
  StartRelay({"--stats-interval=0", "--control-prefix=" + control});
  MqttClient watcher(servers().mqtt_port(), name_ + "-watch");
  watcher.Subscribe(control + "/stats");
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  pub.Publish(root() + "/a", "x");
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  // A negative check needs time: two would-be intervals.
  std::this_thread::sleep_for(Scaled(2s));
  ASSERT_EQ(relay_->Stop(), 0);
  std::this_thread::sleep_for(Scaled(300ms));  // a final report, if one were made, has time to arrive
  EXPECT_EQ(watcher.received_count(), 0u);
}

// seqrelay_database_up follows the database on a standby, which has no
// writer, and on an idle active, whose writer makes no call: the lease's
// session, which polls or renews every third of a lease, tells too. Until
// 2026-12-06 both said 1 through an outage (a review's finding). A relay
// started while the database is down answers scrapes while it waits for
// it; until 2026-12-07 /metrics listened only once the database was open.
TEST_F(RelayE2E, DatabaseUpFollowsTheDatabaseOnAStandbyAndAnIdleActive) {
  const int active_port = FreePort(), standby_port = FreePort();
  StartRelay({"--metrics-port=" + std::to_string(active_port), "--stats-interval=1"});
  MqttClient watcher(servers().mqtt_port(), name_ + "-stats");
  watcher.Subscribe("relay/stats");  // the shard's report, retained
  auto database = [&] {
    const auto reports = watcher.received();
    return reports.empty() ? std::string() : nlohmann::json::parse(reports.back().payload)["database"].get<std::string>();
  };
  RelayProcess standby(servers(), name_,
                       {"--source=" + root() + "/#", "--relay-id=standby",
                        "--metrics-port=" + std::to_string(standby_port),
                        "--journal-dir=" + servers().dir() + "/journal-" + name_ + "-standby"},
                       "standby");
  auto up = [&](int port) {  // 1, 0, or -1: no answer
    const std::string body = HttpGet(port, "/metrics");
    if (body.find("\nseqrelay_database_up 1\n") != std::string::npos) return 1;
    return body.find("\nseqrelay_database_up 0\n") != std::string::npos ? 0 : -1;
  };
  auto both = [&](int value) { return up(active_port) == value && up(standby_port) == value; };
  {
    DatabaseDown outage(servers());
    standby.Launch();  // waits for the database
    EXPECT_TRUE(WaitFor([&] { return up(standby_port) == 0; }, Scaled(10s))) << up(standby_port) << "\n"
                                                                            << standby.log();
  }
  ASSERT_TRUE(WaitFor([&] { return both(1); }, Scaled(20s))) << up(active_port) << " " << up(standby_port) << "\n"
                                                            << standby.log();
  DatabaseDown outage(servers());
  EXPECT_TRUE(WaitFor([&] { return both(0); }, Scaled(10s))) << up(active_port) << " " << up(standby_port);
  // The active's lease lapses meanwhile (it cannot renew it); the shard's
  // report says so all the same.
  EXPECT_TRUE(WaitFor([&] { return database() == "down"; }, Scaled(10s))) << database();
  outage.Now();
  EXPECT_TRUE(WaitFor([&] { return both(1); }, Scaled(30s))) << up(active_port) << " " << up(standby_port);
  standby.Stop();
  relay_->Stop();
}

TEST_F(RelayE2E, MetricsEndpointServesPrometheusTextOfTheSameFigures) {
  const int port = FreePort();
  StartRelay({"--metrics-port=" + std::to_string(port)});
  // The endpoint starts before the database is open (Start() waits for the intake link).
  EXPECT_TRUE(WaitFor(
      [&] {
        return relay_->log().find("metrics: serving http://127.0.0.1:" + std::to_string(port) + "/metrics") !=
               std::string::npos;
      },
      10s))
      << relay_->log();
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  for (int i = 1; i <= 10; ++i) pub.Publish(root() + "/m", std::to_string(i));
  ASSERT_TRUE(pub.WaitAllAcked(10s));
  std::string body;
  ASSERT_TRUE(WaitFor(
      [&] {
        body = HttpGet(port, "/metrics");
        return body.find("\nseqrelay_messages_acknowledged_total 10\n") != std::string::npos;
      },
      10s))
      << body;
  EXPECT_EQ(body.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << body;
  EXPECT_NE(body.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << body;
  EXPECT_NE(body.find("\nseqrelay_messages_committed_total 10\n"), std::string::npos) << body;
  EXPECT_NE(body.find("\nseqrelay_topics 1\n"), std::string::npos) << body;
  EXPECT_NE(body.find("\nseqrelay_database_up 1\n"), std::string::npos) << body;
  EXPECT_NE(body.find("\nseqrelay_broker_connected{link=\"intake\"} 1\n"), std::string::npos) << body;
  // The stages: every message through the intake queue and to its PUBACK;
  // every batch through sequence, insert and commit (as many as committed).
  EXPECT_NE(body.find("\nseqrelay_stage_seconds_count{stage=\"intake_queue\"} 10\n"), std::string::npos) << body;
  EXPECT_NE(body.find("\nseqrelay_stage_seconds_count{stage=\"puback\"} 10\n"), std::string::npos) << body;
  EXPECT_NE(body.find("\nseqrelay_stage_seconds_bucket{stage=\"puback\",le=\"+Inf\"} 10\n"), std::string::npos)
      << body;
  const auto count_of = [&](const std::string& stage) {
    return MetricValue(body, "seqrelay_stage_seconds_count{stage=\"" + stage + "\"}");
  };
  EXPECT_GE(count_of("commit"), 1) << body;
  EXPECT_LE(count_of("commit"), 10) << body;
  EXPECT_EQ(count_of("insert"), count_of("commit")) << body;
  EXPECT_GE(count_of("sequence"), count_of("commit")) << body;
  // libmosquitto's reads of the links' sockets come through the relay's
  // read-ahead (broker/read_ahead.h): three per packet at least (a PUBLISH
  // in, a PUBACK back on the output link), in fewer system calls, where
  // libmosquitto alone takes one each. The intake's ten messages, however
  // they come, take at most half as many: a burst's one, and the one that
  // finds the socket empty.
  const auto counter = [&](const std::string& key) {
    const auto at = body.find("\n" + key + " ");
    return at == std::string::npos ? -1 : std::stol(body.substr(at + key.size() + 2));
  };
  const auto reads = [&](const std::string& link) {
    return counter("seqrelay_broker_socket_reads_total{link=\"" + link + "\"}");
  };
  const auto calls = [&](const std::string& link) {
    return counter("seqrelay_broker_socket_read_calls_total{link=\"" + link + "\"}");
  };
  EXPECT_GE(reads("intake"), 3 * 10) << body;
  EXPECT_GE(calls("intake"), 1) << body;
  EXPECT_LE(2 * calls("intake"), reads("intake")) << body;
  EXPECT_GE(reads("output"), 3 * 10) << body;
  EXPECT_GE(calls("output"), 1) << body;
  EXPECT_LT(calls("output"), reads("output")) << body;
  // The replay link reads through it too: a retransmit request of the ten
  // (a PUBLISH in, then the PUBACKs of its frames and status).
  MqttClient reader(servers().mqtt_port(), name_ + "-reader");
  reader.Subscribe("relay/replay/" + name_ + "-reader/#");
  reader.Publish("relay/retransmit/" + name_ + "-reader", R"({"topic":")" + root() + R"(/m","from":1,"to":10})");
  ASSERT_TRUE(reader.WaitForCount(11, 10s)) << "ten frames and a status expected, got " << reader.received_count();
  body = HttpGet(port, "/metrics");
  EXPECT_GE(reads("replay"), 3 * 2) << body;
  EXPECT_GE(calls("replay"), 1) << body;
  EXPECT_LT(calls("replay"), reads("replay")) << body;
  EXPECT_EQ(HttpGet(port, "/other").rfind("HTTP/1.1 404", 0), 0u);
  EXPECT_EQ(HttpGet(port, "/metrics", "POST").rfind("HTTP/1.1 405", 0), 0u);
  // HEAD: GET's header, its Content-Length, no body; and the absolute
  // form a proxy sends (until 2026-12-06: 405 and 404).
  const std::string head = HttpGet(port, "/metrics", "HEAD");
  EXPECT_EQ(head.rfind("HTTP/1.1 200 OK", 0), 0u) << head;
  const auto header_end = head.find("\r\n\r\n");
  ASSERT_NE(header_end, std::string::npos) << head;
  EXPECT_EQ(header_end + 4, head.size()) << "a body after HEAD's header: " << head;
  const auto length_at = head.find("Content-Length: ");
  ASSERT_NE(length_at, std::string::npos) << head;
  EXPECT_GT(std::stoll(head.substr(length_at + 16)), 1000) << head;
  const std::string absolute = HttpGet(port, "http://127.0.0.1:" + std::to_string(port) + "/metrics");
  EXPECT_EQ(absolute.rfind("HTTP/1.1 200 OK", 0), 0u) << absolute.substr(0, 200);
  EXPECT_NE(absolute.find("seqrelay_messages_committed_total"), std::string::npos);
  // A client that connects and says nothing does not block the next scrape.
  // (The server drops an idle client after 5 s, so the scrape must come well
  // before that to show it was not waiting for the idle one.)
  const int idle = ConnectLoopback(port);
  ASSERT_GE(idle, 0);
  const auto scrape_at = std::chrono::steady_clock::now();
  EXPECT_EQ(HttpGet(port, "/metrics").rfind("HTTP/1.1 200 OK", 0), 0u);
  EXPECT_LT(std::chrono::steady_clock::now() - scrape_at, 2s) << "the scrape waited for the idle connection";
  close(idle);
  EXPECT_EQ(relay_->Stop(), 0);
  EXPECT_EQ(HttpGet(port, "/metrics"), "") << "the endpoint outlived the relay";
}

std::size_t OpenDescriptors(pid_t pid) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    ++n;
  }
  return n;
}

// A thousand connections that say nothing must not take the relay's file
// descriptors (MQTT, MySQL and the journal need theirs): the endpoint
// serves a bounded number at once and closes the rest on accept. An
// oversized request header is refused, and the endpoint serves again once
// the crowd is gone.
TEST_F(RelayE2E, MetricsEndpointBoundsConnectionsAndRequestSizes) {
  const int port = FreePort();
  StartRelay({"--metrics-port=" + std::to_string(port)});
  ASSERT_TRUE(WaitFor([&] { return HttpGet(port, "/metrics").rfind("HTTP/1.1 200 OK", 0) == 0; }, 10s));
  const std::size_t before = OpenDescriptors(relay_->pid());
  std::vector<int> idle;
  for (int i = 0; i < 1000; ++i) {
    const int fd = ConnectLoopback(port);
    ASSERT_GE(fd, 0) << "connection " << i;
    idle.push_back(fd);
  }
  // Give the relay time to accept the whole backlog, then count.
  std::size_t peak = 0;
  const auto until = std::chrono::steady_clock::now() + Scaled(1500ms);
  while (std::chrono::steady_clock::now() < until) {
    peak = std::max(peak, OpenDescriptors(relay_->pid()));
    std::this_thread::sleep_for(20ms);
  }
  std::fprintf(stderr, "[ figure ] relay descriptors: %zu before, at most %zu with 1,000 idle connections\n", before,
               peak);
  EXPECT_LE(peak, before + 20) << "idle metrics connections took the relay's descriptors";
  // Idle connections do not keep a scraper out: its request comes with its
  // connection, and a new connection closes the oldest one still waiting
  // for its request (until 2026-12-06 the new one was closed).
  std::string scraped = HttpGet(port, "/metrics");
  EXPECT_EQ(scraped.rfind("HTTP/1.1 200 OK", 0), 0u) << "a scrape beside 1,000 idle connections: " << scraped;
  for (int fd : idle) close(fd);
  std::string body;
  EXPECT_TRUE(WaitFor([&] { return (body = HttpGet(port, "/metrics")).rfind("HTTP/1.1 200 OK", 0) == 0; }, 10s))
      << "the endpoint did not serve again after the idle connections closed: " << body;

  // A 64 KiB header: no answer but a closed connection, and no crash.
  const std::string huge = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + std::string(64 * 1024, 'x') +
                           "\r\n\r\n";
  const int fd = ConnectLoopback(port);
  ASSERT_GE(fd, 0);
  (void)!send(fd, huge.data(), huge.size(), MSG_NOSIGNAL);  // the server may close mid-way
  char buf[256];
  const ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  EXPECT_LE(n, 0) << "an oversized header was answered: " << std::string(buf, n > 0 ? n : 0);
  EXPECT_EQ(HttpGet(port, "/metrics").rfind("HTTP/1.1 200 OK", 0), 0u);
  EXPECT_TRUE(relay_->running());
  EXPECT_EQ(relay_->Stop(), 0);
}


// A start with rows to publish again and mosquitto paused (SIGSTOP) as it
// begins: the bounds on what the republish reads and hands libmosquitto.
class RepublishE2E : public RelayE2E {
 protected:
  // Stores `rows` messages of `size` bytes, then starts the relay again as
  // if none of them had been confirmed published, with `args` besides the
  // frames in flight bounded to 4 MiB, and pauses mosquitto once the relay
  // says it republishes them (its republish waits `delay` after that line,
  // so that the pause comes first). mosquitto is resumed when the test ends.
  void StoreThenRepublishPaused(int rows, std::size_t size, std::vector<std::string> args,
                                std::chrono::milliseconds delay) {
    StartRelay();
    const std::string topic = root() + "/big";
    {
      MqttClient pub(servers().mqtt_port(), name_ + "-pub");
      for (int i = 1; i <= rows; ++i) pub.Publish(topic, std::string(size, 'x'), 1, 8);
      ASSERT_TRUE(pub.WaitAllAcked(Scaled(60s)));
    }
    const std::string count = "SELECT COUNT(*) FROM `" + name_ + "`.MSG";
    ASSERT_TRUE(WaitFor([&] { return servers().Sql(count) == std::to_string(rows) + "\n"; }, Scaled(60s)));
    ASSERT_EQ(relay_->Stop(), 0);

    servers().Sql("UPDATE `" + name_ + "`.SHARD SET PUBLISHED_IDX = 0");
    args.insert(args.end(), {"--source=" + root() + "/#", "--buffer-max-bytes=4194304", "--shutdown-timeout=2",
                             "--broker-grace=0"});
    relay_ = std::make_unique<RelayProcess>(servers(), name_, args);
    resume_ = servers().broker_pid();
    relay_->Launch({"SEQTEST_REPUBLISH_DELAY_MS=" + std::to_string(Scaled(delay).count())});
    const std::string line = "republishing rows 1.." + std::to_string(rows);
    ASSERT_TRUE(WaitFor([&] { return relay_->log().find(line) != std::string::npos; }, 30s)) << relay_->log();
    kill(servers().broker_pid(), SIGSTOP);
  }

  void TearDown() override {
    if (resume_ != 0) kill(resume_, SIGCONT);  // never left paused for the shard's next tests
    RelayE2E::TearDown();
  }

 private:
  pid_t resume_ = 0;
};

// libmosquitto keeps every published frame until its PUBACK. With the
// broker not answering, what the relay hands it is bounded by
// --buffer-max-bytes as well as by count: 20,000 frames of up to
// --max-payload each would be gigabytes (until 2026-12-05 the count was the
// only bound). Here a start has 300 rows of 64 KiB to publish again, and
// mosquitto is paused before the republish starts; under a 4 MiB bound the
// relay hands libmosquitto 63 of them (4 MiB over 64 KiB and the frame's
// header) and waits. (Since 2026-12-06 nothing is handed over while the
// broker is gone, so that frames leave in SEQ order: a paused broker is
// the case left.)
TEST_F(RepublishE2E, FramesAwaitingTheirPubackAreBoundedInBytes) {
  const int port = FreePort();
  StoreThenRepublishPaused(300, 64 * 1024, {"--metrics-port=" + std::to_string(port)}, 3000ms);
  if (HasFatalFailure()) return;
  long long published = -1;
  const bool filled = WaitFor(
      [&] { return (published = MetricValue(HttpGet(port, "/metrics"), "seqrelay_messages_published_total")) >= 63; },
      30s);
  EXPECT_TRUE(filled) << published << " frames published\n" << relay_->log();
  std::this_thread::sleep_for(Scaled(500ms));  // time to hand over more, if it would
  published = MetricValue(HttpGet(port, "/metrics"), "seqrelay_messages_published_total");
  std::cout << "[ figure ] frames handed to libmosquitto with the broker paused, 300 rows of 64 KiB, "
               "--buffer-max-bytes 4 MiB: " << published << "\n";
  EXPECT_EQ(published, 63) << relay_->log();
  relay_->Kill();  // its stop would wait for PUBACKs that cannot come (FaultE2E times that)
}

// Publishing again what a run committed but never saw acknowledged reads
// the rows a bounded chunk at a time, in bytes too: 48 rows of 1 MiB to
// publish again at start. Until 2026-12-06 a chunk was 1,000 rows whatever
// their size: all 48 MiB at once, held twice (the result set and the
// rows), 1 GiB at the default --max-payload for a full chunk.
TEST_F(RepublishE2E, RowsPublishedAgainAreReadABoundedChunkAtATime) {
  StoreThenRepublishPaused(48, 1024 * 1024, {}, 1500ms);
  if (HasFatalFailure()) return;
  const long before_kb = relay_->PeakRssKb();
  std::this_thread::sleep_for(Scaled(1500ms) + Scaled(1500ms));  // the delay, then time to read all, if it would
  const long paused_kb = relay_->PeakRssKb();
  std::cout << "[ figure ] publishing 48 rows of 1 MiB again at start, mosquitto paused: relay peak RSS "
            << before_kb / 1024 << " MiB before, " << paused_kb / 1024 << " MiB after\n";
  if (!RelaySanitized()) {
    // 8 MiB of rows read at a time (and a row beyond), 4 MiB of frames in
    // flight, with their copies, against the 48 MiB twice before.
    EXPECT_LT(paused_kb - before_kb, 40 * 1024) << "the republish read more than a bounded chunk";
  }
  relay_->Kill();  // its stop would wait for PUBACKs that may not come
}

// Reply frames awaiting their PUBACK are bounded in count too: libmosquitto
// numbers publishes with a 16-bit counter that does not pass over ids in
// flight, and small frames reach 65,535 of them long before the 16 MiB
// bound (until 2026-12-06 the only one): a frame then shared its id with an
// older one, untracked, so the bound no longer held and a PUBACK was taken
// for another job's frame. Here 8 clients ask for the history of 10,000
// small messages each with mosquitto paused (SIGSTOP) once the relay took
// the requests: 80,000 frames, of which at most 20,000 are handed over
// until PUBACKs come; then all arrive, once each, in order.
TEST_F(RelayE2E, ReplyFramesAwaitingTheirPubackAreBoundedInCount) {
  constexpr int kMessages = 10000;
  constexpr int kClients = 8;
  const int port = FreePort();
  StartRelay({"--metrics-port=" + std::to_string(port), "--replay-workers=" + std::to_string(kClients)});
  const std::string topic = root() + "/chat";
  {
    MqttClient sub(servers().mqtt_port(), name_ + "-seed-sub");
    sub.Subscribe("seq/" + topic);
    MqttClient pub(servers().mqtt_port(), name_ + "-seed-pub");
    for (int i = 1; i <= kMessages; ++i) pub.Publish(topic, "m" + std::to_string(i), 1, 1000);
    ASSERT_TRUE(sub.WaitForCount(kMessages, Scaled(60s))) << sub.received_count();
  }
  std::vector<std::unique_ptr<MqttClient>> clients;
  for (int c = 0; c < kClients; ++c) {
    const std::string id = name_ + "-c" + std::to_string(c);
    clients.push_back(std::make_unique<MqttClient>(servers().mqtt_port(), id));
    clients.back()->Subscribe("relay/replay/" + id + "/#");
  }
  struct Resume {  // mosquitto is paused below: never left so for the shard's next tests
    pid_t pid;
    ~Resume() { kill(pid, SIGCONT); }
  } resume{servers().broker_pid()};
  for (int c = 0; c < kClients; ++c) {
    clients[c]->Publish("relay/retransmit/" + name_ + "-c" + std::to_string(c),
                        json{{"topic", topic}, {"from", 1}}.dump());
  }
  // The relay has the requests once it sends frames of each: a pause
  // before that would hold some of them in the broker.
  ASSERT_TRUE(WaitFor([&] {
    return std::all_of(clients.begin(), clients.end(), [](const auto& c) { return c->received_count() > 0; });
  }, Scaled(30s)));
  kill(servers().broker_pid(), SIGSTOP);
  long long unacked = -1;
  const bool filled = WaitFor(
      [&] { return (unacked = MetricValue(HttpGet(port, "/metrics"), "seqrelay_replay_unacknowledged")) >= 20000; },
      Scaled(20s));
  std::this_thread::sleep_for(Scaled(500ms));  // time to hand over more, if it would
  unacked = MetricValue(HttpGet(port, "/metrics"), "seqrelay_replay_unacknowledged");
  kill(servers().broker_pid(), SIGCONT);
  std::cout << "[ figure ] reply frames and statuses handed to libmosquitto with the broker paused, "
            << kClients << " histories of " << kMessages << " small messages: " << unacked << "\n";
  EXPECT_TRUE(filled) << unacked << "\n" << relay_->log();
  // The frames' bound, and a status of each job whose frames all went out.
  EXPECT_GE(unacked, 20000);
  EXPECT_LE(unacked, 20000 + kClients);
  for (int c = 0; c < kClients; ++c) {
    MqttClient& client = *clients[c];
    const std::string replies = "relay/replay/" + name_ + "-c" + std::to_string(c);
    ASSERT_TRUE(WaitFor([&] { return client.received_count() >= kMessages + 1; }, Scaled(120s)))
        << c << ": " << client.received_count();
    std::vector<uint64_t> seqs;
    std::vector<json> statuses;
    for (const auto& r : client.received()) {
      if (r.topic == replies + "/status") statuses.push_back(json::parse(r.payload));
      if (r.topic != replies) continue;
      auto view = seqrelay::DecodeFrame({reinterpret_cast<const uint8_t*>(r.payload.data()), r.payload.size()});
      ASSERT_TRUE(view.ok());
      seqs.push_back(view->header.seq);
    }
    std::vector<uint64_t> expected(kMessages);
    std::iota(expected.begin(), expected.end(), 1);
    EXPECT_EQ(seqs, expected) << "client " << c;
    ASSERT_EQ(statuses.size(), 1u) << c;
    EXPECT_EQ(statuses[0]["sent"], kMessages) << c;
  }
  EXPECT_EQ(relay_->Stop(), 0);
}

}  // namespace
}  // namespace seqtest
