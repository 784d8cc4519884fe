// seqbench: the relay against the plain mosquitto path, side by side, in one
// run and on the same broker, alternating the two paths for several rounds.
//
//   plain: publisher -> mosquitto -> forwarder (inp/# -> out/..., no
//          database) -> mosquitto -> subscriber
//   relay: publisher -> mosquitto -> seqrelay (inr/#, durable commits to
//          MariaDB, journal on) -> mosquitto -> subscriber on seq/inr/...
//
// Two modes: throughput (as fast as a window of unacknowledged QoS 1
// publishes allows) and latency (a fixed rate; publish-to-receive times
// from a timestamp in the payload). Every message must arrive exactly once
// (and, on the relay path, in SEQ order per topic); a run that loses one
// fails. Starts its own mosquitto and MariaDB on loopback.
#include <mosquitto.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/program_options.hpp>
#include <chrono>
#include <fmt/format.h>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "frame.h"
#include "process.h"
#include "servers.h"

namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;

namespace {

int64_t NowNs() { return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count(); }

// ---- The plain path's forwarder (runs as `seqbench --forwarder PORT`) -------

int RunForwarder(int port) {
  mosquitto_lib_init();
  mosquitto* m = mosquitto_new("seqbench-forwarder", true, nullptr);
  mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
  mosquitto_max_inflight_messages_set(m, 1000);
  mosquitto_connect_callback_set(m, [](mosquitto* m, void*, int rc) {
    if (rc == 0) mosquitto_subscribe(m, nullptr, "inp/#", 1);
  });
  mosquitto_message_callback_set(m, [](mosquitto* m, void*, const mosquitto_message* msg) {
    std::string out = std::string("out/") + (msg->topic + 4);
    mosquitto_publish(m, nullptr, out.c_str(), msg->payloadlen, msg->payload, 1, false);
  });
  if (mosquitto_connect(m, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS) return 1;
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  mosquitto_loop_start(m);
  int sig = 0;
  sigwait(&stop, &sig);
  mosquitto_disconnect(m);
  mosquitto_loop_stop(m, false);
  return 0;
}

// ---- One measured run ----------------------------------------------------------

struct Params {
  int payload = 20;
  int topics = 1;
  int window = 1000;
  int qos = 1;
};

struct RunResult {
  std::string path, mode;
  int round = 0;
  uint64_t sent = 0, received = 0, duplicates = 0, out_of_order = 0;
  double seconds = 0;
  std::vector<double> latency_us;  // per message, publish to receive
  double throughput() const { return seconds > 0 ? received / seconds : 0; }
};

class Run {
 public:
  Run(int port, bool relay, const Params& p, uint64_t count)
      : relay_(relay), p_(p), seen_(count, 0), latency_ns_(count, 0) {
    static std::atomic<int> n{0};
    const std::string id = "seqbench-" + std::to_string(getpid()) + "-" + std::to_string(++n);
    sub_ = mosquitto_new((id + "-sub").c_str(), true, this);
    pub_ = mosquitto_new((id + "-pub").c_str(), true, this);
    for (auto* m : {sub_, pub_}) {
      mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
      mosquitto_max_inflight_messages_set(m, 0);
    }
    mosquitto_message_callback_set(sub_, &Run::OnMessage);
    mosquitto_subscribe_callback_set(sub_, [](mosquitto*, void* self, int, int, const int*) {
      static_cast<Run*>(self)->subscribed_ = true;
    });
    mosquitto_publish_callback_set(pub_, [](mosquitto*, void* obj, int) {
      auto* self = static_cast<Run*>(obj);
      std::lock_guard lock(self->mu_);
      --self->unacked_;
      self->cv_.notify_all();
    });
    for (auto* m : {sub_, pub_}) {
      if (mosquitto_connect(m, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS) throw std::runtime_error("connect");
      mosquitto_loop_start(m);
    }
    mosquitto_subscribe(sub_, nullptr, relay ? "seq/inr/#" : "out/#", p.qos);
    seqtest::WaitFor([&] { return subscribed_.load(); }, std::chrono::seconds(10));
  }
  ~Run() {
    for (auto* m : {sub_, pub_}) {
      mosquitto_disconnect(m);
      mosquitto_loop_stop(m, false);
      mosquitto_destroy(m);
    }
  }

  // Publishes message i (blocking while `window` are unacknowledged).
  void Publish(uint64_t i) {
    std::string payload(std::max(p_.payload, 16), 'x');
    const int64_t now = NowNs();
    std::memcpy(payload.data(), &now, 8);
    std::memcpy(payload.data() + 8, &i, 8);
    const std::string topic =
        std::string(relay_ ? "inr/t" : "inp/t") + std::to_string(i % static_cast<uint64_t>(p_.topics));
    if (p_.qos > 0) {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return unacked_ < p_.window; });
      ++unacked_;
    }
    mosquitto_publish(pub_, nullptr, topic.c_str(), static_cast<int>(payload.size()), payload.data(), p_.qos, false);
  }

  uint64_t received() const { return received_.load(); }

  RunResult Finish(uint64_t sent, Clock::time_point start, std::chrono::seconds deadline) {
    seqtest::WaitFor([&] { return received_.load() >= sent; }, deadline);
    RunResult r;
    std::lock_guard lock(mu_);
    r.sent = sent;
    r.received = received_;
    r.duplicates = duplicates_;
    r.out_of_order = out_of_order_;
    r.seconds = std::chrono::duration<double>(last_receive_ - start).count();
    for (uint64_t i = 0; i < sent; ++i) {
      if (seen_[i]) r.latency_us.push_back(latency_ns_[i] / 1000.0);
    }
    return r;
  }

 private:
  static void OnMessage(mosquitto*, void* obj, const mosquitto_message* m) {
    auto* self = static_cast<Run*>(obj);
    const int64_t now = NowNs();
    auto* bytes = static_cast<const uint8_t*>(m->payload);
    std::size_t len = static_cast<std::size_t>(m->payloadlen);
    std::lock_guard lock(self->mu_);
    if (self->relay_) {
      auto frame = seqrelay::DecodeFrame({bytes, len});
      if (!frame.ok()) return;
      uint64_t& last = self->last_seq_[frame->header.topic_id];
      if (last != 0 && frame->header.seq != last + 1) ++self->out_of_order_;
      last = frame->header.seq;
      bytes = frame->payload.data();
      len = frame->payload.size();
    }
    if (len < 16) return;
    int64_t sent_ns;
    uint64_t i;
    std::memcpy(&sent_ns, bytes, 8);
    std::memcpy(&i, bytes + 8, 8);
    if (i >= self->seen_.size()) return;
    if (self->seen_[i]) {
      ++self->duplicates_;
      return;
    }
    self->seen_[i] = 1;
    self->latency_ns_[i] = now - sent_ns;
    self->last_receive_ = Clock::now();
    ++self->received_;
  }

  const bool relay_;
  const Params p_;
  mosquitto* sub_ = nullptr;
  mosquitto* pub_ = nullptr;
  std::atomic<bool> subscribed_{false};
  std::atomic<uint64_t> received_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  int unacked_ = 0;                         // guarded by mu_
  std::vector<uint8_t> seen_;               // guarded by mu_
  std::vector<int64_t> latency_ns_;         // guarded by mu_
  std::map<uint32_t, uint64_t> last_seq_;   // relay path: last SEQ per topic id; mu_
  uint64_t duplicates_ = 0, out_of_order_ = 0;  // guarded by mu_
  Clock::time_point last_receive_{};        // guarded by mu_
};

void Progress(const std::string& label, const Run& run, uint64_t sent, uint64_t total, bool done = false) {
  std::fprintf(stderr, "\r  %-28s sent %8llu/%llu  received %8llu%s", label.c_str(), (unsigned long long)sent,
               (unsigned long long)total, (unsigned long long)run.received(), done ? "\n" : "");
}

RunResult Throughput(int port, bool relay, const Params& p, uint64_t count, const std::string& label) {
  Run run(port, relay, p, count);
  const auto start = Clock::now();
  auto next_progress = start;
  for (uint64_t i = 0; i < count; ++i) {
    run.Publish(i);
    if (Clock::now() >= next_progress) {
      Progress(label, run, i + 1, count);
      next_progress += std::chrono::seconds(1);
    }
  }
  RunResult r = run.Finish(count, start, std::chrono::seconds(120));
  Progress(label, run, count, count, true);
  return r;
}

RunResult Latency(int port, bool relay, const Params& p, int rate, double seconds, const std::string& label) {
  const uint64_t count = static_cast<uint64_t>(rate * seconds);
  Run run(port, relay, p, count);
  const auto start = Clock::now();
  auto next_progress = start;
  for (uint64_t i = 0; i < count; ++i) {
    std::this_thread::sleep_until(start + std::chrono::nanoseconds(int64_t{1000000000} * static_cast<int64_t>(i) / rate));
    run.Publish(i);
    if (Clock::now() >= next_progress) {
      Progress(label, run, i + 1, count);
      next_progress += std::chrono::seconds(1);
    }
  }
  RunResult r = run.Finish(count, start, std::chrono::seconds(60));
  Progress(label, run, count, count, true);
  return r;
}

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(q * v.size()))];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--forwarder") return RunForwarder(std::atoi(argv[2]));

  Params p;
  std::string mode = "both", json_path, relay_binary;
  uint64_t count = 20000;
  int rate = 1000, rounds = 3, batch_delay_us = 0;
  double duration = 5;
  {
    char self[4096] = {};
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    std::string dir = n > 0 ? std::string(self, n) : std::string(argv[0]);
    relay_binary = dir.substr(0, dir.rfind('/')) + "/../relay/seqrelay";
  }
  po::options_description desc(
      "seqbench: the relay against the plain mosquitto path, side by side in one run, alternating.\n\n"
      "Usage: seqbench [options]\n\nOptions");
  desc.add_options()
      ("help", "Print this help and exit.")
      ("mode", po::value(&mode)->default_value(mode), "throughput, latency or both.")
      ("count", po::value(&count)->default_value(count), "Messages per throughput run.")
      ("rate", po::value(&rate)->default_value(rate), "Messages per second in latency runs.")
      ("duration", po::value(&duration)->default_value(duration), "Seconds per latency run.")
      ("rounds", po::value(&rounds)->default_value(rounds), "Runs per path and mode, alternating plain and relay.")
      ("payload", po::value(&p.payload)->default_value(p.payload), "Payload bytes (at least 16: timestamp and index).")
      ("topics", po::value(&p.topics)->default_value(p.topics), "Topics the messages are spread over.")
      ("window", po::value(&p.window)->default_value(p.window), "Unacknowledged QoS 1 publishes at most.")
      ("qos", po::value(&p.qos)->default_value(p.qos), "QoS of publishes and subscriptions.")
      ("batch-delay-us", po::value(&batch_delay_us)->default_value(batch_delay_us), "The relay's --batch-delay-us.")
      ("relay-binary", po::value(&relay_binary)->default_value(relay_binary), "The seqrelay executable.")
      ("json", po::value(&json_path), "Also write every run's figures to FILE as JSON.");
  try {
    po::variables_map vm;
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
    if (vm.count("help")) {
      std::cout << desc;
      return 0;
    }
    if (mode != "throughput" && mode != "latency" && mode != "both") throw po::error("--mode: throughput, latency or both");
    if (p.payload < 16) throw po::error("--payload must be at least 16");
    if (p.topics < 1 || p.window < 1 || rounds < 1 || rate < 1 || count < 1) throw po::error("counts must be >= 1");
    if (p.qos < 0 || p.qos > 2) throw po::error("--qos must be 0, 1 or 2");
  } catch (const po::error& e) {
    std::fprintf(stderr, "seqbench: %s (see --help)\n", e.what());
    return 2;
  }

  std::fprintf(stderr, "seqbench: starting mosquitto and MariaDB on loopback...\n");
  seqtest::TestServers servers;
  mosquitto_lib_init();
  seqtest::Process forwarder, relay;
  char self[4096] = {};
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  forwarder.Start({std::string(self, n > 0 ? n : 0), "--forwarder", std::to_string(servers.mqtt_port())},
                  servers.dir() + "/forwarder.log");
  relay.Start({relay_binary, "--mqtt-port=" + std::to_string(servers.mqtt_port()),
               "--db-port=" + std::to_string(servers.db_port()), "--db-user=seqrelay", "--db-name=bench",
               "--source=inr/#", "--journal-dir=" + servers.dir() + "/journal", "--log-level=warn",
               "--batch-delay-us=" + std::to_string(batch_delay_us)},
              servers.dir() + "/relay.log", {std::string("SEQRELAY_DB_PASSWORD=") + seqtest::TestServers::kDbPassword});
  // Ready when a message goes through each path.
  for (bool via_relay : {false, true}) {
    Params warm = p;
    RunResult r = Throughput(servers.mqtt_port(), via_relay, warm, 100, via_relay ? "warm-up relay" : "warm-up plain");
    if (r.received != r.sent) {
      std::fprintf(stderr, "seqbench: the %s path does not deliver; relay log:\n%s\n", via_relay ? "relay" : "plain",
                   seqtest::Tail(servers.dir() + "/relay.log", 20).c_str());
      return 1;
    }
  }

  std::vector<RunResult> results;
  std::vector<std::string> modes;
  if (mode != "latency") modes.push_back("throughput");
  if (mode != "throughput") modes.push_back("latency");
  for (const auto& m : modes) {
    for (int round = 1; round <= rounds; ++round) {
      // Alternate which path goes first, so neither always runs on a warmer machine.
      for (bool via_relay : round % 2 ? std::vector<bool>{false, true} : std::vector<bool>{true, false}) {
        const std::string label = fmt::format("{} {} {}/{}", m, via_relay ? "relay" : "plain", round, rounds);
        RunResult r = m == "throughput" ? Throughput(servers.mqtt_port(), via_relay, p, count, label)
                                        : Latency(servers.mqtt_port(), via_relay, p, rate, duration, label);
        r.path = via_relay ? "relay" : "plain";
        r.mode = m;
        r.round = round;
        results.push_back(std::move(r));
      }
    }
  }
  relay.Stop();
  forwarder.Stop();

  // ---- Report ----------------------------------------------------------------
  bool failed = false;
  nlohmann::json out = nlohmann::json::array();
  std::printf("\nseqbench: %d-byte QoS %d messages over %d topic(s); relay commits durably to MariaDB "
              "(innodb_flush_log_at_trx_commit=1), journal on\n",
              p.payload, p.qos, p.topics);
  for (const auto& m : modes) {
    std::printf("\n%s (%s)\n", m.c_str(),
                m == "throughput" ? fmt::format("{} messages, window {}", count, p.window).c_str()
                                  : fmt::format("{} msg/s for {} s", rate, duration).c_str());
    std::printf("  %-6s %5s %10s %10s %9s %9s %9s %9s %9s %5s %5s\n", "path", "round", "msg/s", "received", "p50 us",
                "p90 us", "p99 us", "p99.9 us", "max us", "dup", "order");
    std::map<std::string, std::vector<double>> throughput, latency;
    for (const auto& r : results) {
      if (r.mode != m) continue;
      std::printf("  %-6s %5d %10.0f %10llu %9.0f %9.0f %9.0f %9.0f %9.0f %5llu %5llu\n", r.path.c_str(), r.round,
                  r.throughput(), (unsigned long long)r.received, Percentile(r.latency_us, 0.5),
                  Percentile(r.latency_us, 0.9), Percentile(r.latency_us, 0.99), Percentile(r.latency_us, 0.999),
                  Percentile(r.latency_us, 1.0), (unsigned long long)r.duplicates, (unsigned long long)r.out_of_order);
      if (r.received != r.sent || r.duplicates || r.out_of_order) failed = true;
      throughput[r.path].push_back(r.throughput());
      latency[r.path].insert(latency[r.path].end(), r.latency_us.begin(), r.latency_us.end());
      out.push_back({{"mode", r.mode}, {"path", r.path}, {"round", r.round}, {"sent", r.sent},
                     {"received", r.received}, {"duplicates", r.duplicates}, {"out_of_order", r.out_of_order},
                     {"msg_per_s", r.throughput()}, {"p50_us", Percentile(r.latency_us, 0.5)},
                     {"p99_us", Percentile(r.latency_us, 0.99)}, {"max_us", Percentile(r.latency_us, 1.0)}});
    }
    auto median = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; };
    if (m == "throughput") {
      std::printf("  => median msg/s: plain %.0f, relay %.0f; relay / plain = %.2f\n", median(throughput["plain"]),
                  median(throughput["relay"]), median(throughput["relay"]) / median(throughput["plain"]));
    } else {
      for (double q : {0.5, 0.99}) {
        const double a = Percentile(latency["plain"], q), b = Percentile(latency["relay"], q);
        std::printf("  => p%g over all rounds: plain %.0f us, relay %.0f us; relay - plain = %.0f us\n", q * 100, a,
                    b, b - a);
      }
    }
  }
  if (!json_path.empty()) std::ofstream(json_path) << out.dump(2) << "\n";
  if (failed) {
    std::printf("\nseqbench: FAILED: a run lost, duplicated or reordered messages (see received/dup/order)\n");
    return 1;
  }
  return 0;
}
