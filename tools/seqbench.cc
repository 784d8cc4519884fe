// seqbench: the relay against the plain mosquitto path, side by side, in one
// run and on the same broker, alternating the paths for several rounds.
//
//   plain:           publisher -> mosquitto -> forwarder (inp/# -> out/...,
//                    no database) -> mosquitto -> subscriber on out/#
//   relay:           publisher -> mosquitto -> seqrelay (inr/#, durable
//                    commits to MariaDB, journal on) -> mosquitto ->
//                    subscriber on seq/inr/#
//   relay-nojournal: the same through a second relay without the journal
//                    (inn/#), with --journal-cost
//   relay-ids:       the relay path with every message carrying a
//                    publisher msg-id (MQTT v5 user property; the relay
//                    records and checks it), with --msg-ids
//
// The forwarder has the relay's links without its work: one connection in,
// one out, each with libmosquitto's own network thread, TCP_NODELAY and the
// relay's in-flight window. It is no floor: it publishes from the in-link's
// thread onto the out-link's, a wake-up a message, where the relay runs its
// own network loop and corks its writes, and it takes more CPU per message
// than the relay does (25.6 against 18.8 µs in the run of record).
//
// Three modes: throughput (as fast as a window of unacknowledged QoS 1
// publishes allows: the broker queues for the publisher), closed (at most
// --e2e-window messages sent and not yet received, end to end: a chat room
// waiting for its own echo) and latency (fixed rates; publish-to-receive
// times from a timestamp in the payload). Every message must arrive exactly once and,
// on the relay paths, with consecutive SEQs per topic; a run that loses,
// duplicates or reorders one makes seqbench fail. Starts its own mosquitto
// and MariaDB on loopback unless --mqtt-port and --db-port name running ones.
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_floors.h"
#include "cli.h"
#include "core/frame.h"
#include "process.h"
#include "servers.h"

namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;

namespace {

constexpr int kInflight = 1000;  // as the relay's links (relay/mqtt_link.cc)
// A run that makes no progress for this long has lost its messages or its
// broker: it stops with what it has (the run fails) instead of waiting out
// its deadline, or for ever.
constexpr std::chrono::seconds kStall(15);

int64_t NowNs() { return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count(); }

std::string SelfPath() {
  char self[4096] = {};
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  return n > 0 ? std::string(self, static_cast<std::size_t>(n)) : std::string();
}

// ---- The plain path's forwarder (runs as `seqbench --forwarder PORT`) -------

int RunForwarder(int port) {
  mosquitto_lib_init();
  const std::string id = "seqbench-forwarder-" + std::to_string(getpid());
  mosquitto* out = mosquitto_new((id + "-out").c_str(), true, nullptr);
  mosquitto* in = mosquitto_new((id + "-in").c_str(), true, out);
  for (auto* m : {in, out}) {
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_max_inflight_messages_set(m, kInflight);
  }
  mosquitto_connect_callback_set(in, [](mosquitto* m, void*, int rc) {
    if (rc == 0) mosquitto_subscribe(m, nullptr, "inp/#", 1);
  });
  mosquitto_message_callback_set(in, [](mosquitto*, void* obj, const mosquitto_message* msg) {
    const std::string topic = std::string("out/") + (msg->topic + 4);
    mosquitto_publish(static_cast<mosquitto*>(obj), nullptr, topic.c_str(), msg->payloadlen, msg->payload, 1, false);
  });
  for (auto* m : {out, in}) {
    if (mosquitto_connect(m, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS) return 1;
  }
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  mosquitto_loop_start(out);
  mosquitto_loop_start(in);
  int sig = 0;
  sigwait(&stop, &sig);
  for (auto* m : {in, out}) {
    mosquitto_disconnect(m);
    mosquitto_loop_stop(m, false);
  }
  return 0;
}

// ---- Paths and parameters ------------------------------------------------------

struct Path {
  std::string name;
  std::string in_prefix;   // raw topics are <in_prefix>t<k>
  std::string out_filter;  // what the subscriber reads
  bool framed;             // relay frames (checked and unwrapped)
  seqtest::Process* relay; // the relay process, if any (for its RSS)
  bool msg_ids = false;    // publishers are MQTT v5 and send a msg-id with every message
};

struct Params {
  int payload = 20;
  int topics = 1;
  int publishers = 1;
  int window = 1000;
  int qos = 1;
};

// VmRSS and VmHWM of a process, in KiB (0 if unknown).
std::pair<long, long> Memory(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  long rss = 0, hwm = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) rss = std::atol(line.c_str() + 6);
    if (line.rfind("VmHWM:", 0) == 0) hwm = std::atol(line.c_str() + 6);
  }
  return {rss, hwm};
}

// User plus system CPU time a process has used so far, in seconds (-1 if
// unknown: no such process). /proc counts in clock ticks (10 ms), so a run
// must last seconds for a per-message figure to mean anything.
double CpuSeconds(pid_t pid) {
  if (pid <= 0) return -1;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return -1;
  const auto name_end = stat.rfind(')');  // the command name may hold spaces
  if (name_end == std::string::npos) return -1;
  std::istringstream fields(stat.substr(name_end + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && fields >> field; ++i) {  // field 3 is the state; 14 utime, 15 stime
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// The processes on a message's way whose CPU a run accounts: the broker,
// the hop (the relay, or the plain path's forwarder) and the database.
struct CpuPids {
  pid_t broker = 0, hop = 0, db = 0;
};
struct CpuTimes {
  double broker = -1, hop = -1, db = -1;  // seconds; -1 unknown
};
CpuTimes ReadCpu(const CpuPids& pids) {
  return {CpuSeconds(pids.broker), CpuSeconds(pids.hop), CpuSeconds(pids.db)};
}

// What a process asked of the kernel: its read and write calls (/proc/PID/io:
// syscr and syscw count read(2), write(2) and their vector and positioned
// forms, for all its threads, those that ended too; how mosquitto 2.0.11,
// libmosquitto and the relay move MQTT, but not recv(2) and send(2), which
// MariaDB's client protocol uses: the database's figure is mostly its redo
// log's writes, and the relay's leaves out its database round trips), and
// its threads' context switches, voluntary (a wait for I/O or a lock: a
// wake-up each) and not, per thread (/proc/PID/task/TID/status).
struct KernelSnapshot {
  double calls = -1;                              // -1: unknown
  std::optional<std::map<std::string, double>> switches;  // per thread id
};
KernelSnapshot ReadKernelSnapshot(pid_t pid) {
  KernelSnapshot k;
  if (pid <= 0) return k;
  const std::string dir = "/proc/" + std::to_string(pid);
  {
    std::ifstream io(dir + "/io");
    double calls = 0;
    int found = 0;
    for (std::string line; std::getline(io, line);) {
      if (line.rfind("syscr:", 0) == 0 || line.rfind("syscw:", 0) == 0) {
        calls += std::atof(line.c_str() + 6);
        ++found;
      }
    }
    if (found == 2) k.calls = calls;
  }
  std::error_code ec;
  std::map<std::string, double> threads;
  std::filesystem::directory_iterator task(dir + "/task", ec), end;
  for (; !ec && task != end; task.increment(ec)) {
    std::ifstream status(task->path() / "status");
    double& switches = threads[task->path().filename().string()];
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0) switches += std::atof(line.c_str() + 24);
      if (line.rfind("nonvoluntary_ctxt_switches:", 0) == 0) switches += std::atof(line.c_str() + 27);
    }
  }
  if (!ec && !threads.empty()) k.switches = std::move(threads);
  return k;
}
// Counted between two snapshots, -1 where unknown. The switches are a
// lower bound: a thread that ended in between takes its own with it (one
// that began counts whole).
struct KernelCounts {
  double calls = -1, switches = -1;
};
KernelCounts Between(const KernelSnapshot& before, const KernelSnapshot& after) {
  KernelCounts k;
  if (before.calls >= 0 && after.calls >= 0) k.calls = after.calls - before.calls;
  if (before.switches && after.switches) {
    k.switches = 0;
    for (const auto& [tid, n] : *after.switches) {
      const auto was = before.switches->find(tid);
      k.switches += n - (was != before.switches->end() ? was->second : 0);
    }
  }
  return k;
}
struct KernelSnapshots {
  KernelSnapshot broker, hop, db;
};
KernelSnapshots ReadKernel(const CpuPids& pids) {
  return {ReadKernelSnapshot(pids.broker), ReadKernelSnapshot(pids.hop), ReadKernelSnapshot(pids.db)};
}
struct KernelTimes {
  KernelCounts broker, hop, db;
};

struct RunResult {
  std::string path, mode;
  int round = 0;
  int rate = 0;  // offered msg/s in latency mode, 0 in throughput mode
  uint64_t sent = 0, received = 0, duplicates = 0, out_of_order = 0;
  double seconds = 0;
  long relay_rss_kb = 0, relay_hwm_kb = 0;
  CpuTimes cpu;                    // used during the run
  KernelTimes kernel;              // counted during the run
  std::vector<double> latency_us;  // per message, publish to receive; sorted
  // CPU microseconds per message received, -1 if unknown.
  double CpuPerMessageUs(double seconds) const { return seconds < 0 || received == 0 ? -1 : seconds / received * 1e6; }
  // The kernel counts per message received, -1 where unknown.
  KernelTimes KernelPerMessage() const {
    auto per = [&](const KernelCounts& k) {
      auto one = [&](double count) { return count < 0 || received == 0 ? -1 : count / received; };
      return KernelCounts{one(k.calls), one(k.switches)};
    };
    return {per(kernel.broker), per(kernel.hop), per(kernel.db)};
  }
  double throughput() const { return seconds > 0 ? received / seconds : 0; }
  // Nearest rank: the smallest value with at least q of them at or below
  // it (until 2026-12-07 one rank above: a 400-message run's p99 was its
  // 4th largest, where it is its 5th).
  double Percentile(double q) const {
    if (latency_us.empty()) return 0;
    const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(latency_us.size())));
    return latency_us[std::min(latency_us.size(), std::max<std::size_t>(rank, 1)) - 1];
  }
  bool clean() const { return received == sent && duplicates == 0 && out_of_order == 0; }
};

// ---- The relay's own stage histograms (/metrics) ------------------------------

// seqrelay_stage_seconds from one scrape: per stage, the cumulative bucket
// counts in bucket order (the last is +Inf), with their upper bounds.
struct StageScrape {
  std::map<std::string, std::vector<std::pair<double, uint64_t>>> buckets;
  std::map<std::string, double> sum_s;
};

StageScrape ScrapeStages(int port) {
  StageScrape out;
  std::istringstream lines(seqtest::HttpGet(port, "/metrics"));
  for (std::string line; std::getline(lines, line);) {
    // seqrelay_stage_seconds_bucket{stage="commit",le="0.001"} 42
    const auto stage_at = line.find("stage=\"");
    if (line.rfind("seqrelay_stage_seconds_", 0) != 0 || stage_at == std::string::npos) continue;
    const auto stage_end = line.find('"', stage_at + 7);
    const std::string stage = line.substr(stage_at + 7, stage_end - stage_at - 7);
    const double value = std::stod(line.substr(line.rfind(' ') + 1));
    if (line.rfind("seqrelay_stage_seconds_bucket", 0) == 0) {
      const auto le_at = line.find("le=\"") + 4;
      const std::string le = line.substr(le_at, line.find('"', le_at) - le_at);
      out.buckets[stage].emplace_back(le == "+Inf" ? 1e9 : std::stod(le), static_cast<uint64_t>(value));
    } else if (line.rfind("seqrelay_stage_seconds_sum", 0) == 0) {
      out.sum_s[stage] = value;
    }
  }
  return out;
}

// One line per stage for what happened between two scrapes: count, mean,
// and the bucket bounds the p50 and p99 fall under.
void PrintStages(const StageScrape& before, const StageScrape& after) {
  std::printf("    %-14s %8s %10s %10s %10s\n", "stage", "count", "mean us", "p50 <= us", "p99 <= us");
  for (const char* stage : {"intake_queue", "sequence", "insert", "commit", "puback"}) {
    const auto a = after.buckets.find(stage);
    if (a == after.buckets.end()) continue;
    const auto b = before.buckets.find(stage);
    std::vector<uint64_t> delta;
    for (std::size_t i = 0; i < a->second.size(); ++i) {
      const uint64_t was = b != before.buckets.end() && i < b->second.size() ? b->second[i].second : 0;
      delta.push_back(a->second[i].second - was);
    }
    const uint64_t count = delta.empty() ? 0 : delta.back();
    const double sum = after.sum_s.count(stage) ? after.sum_s.at(stage) - (before.sum_s.count(stage) ? before.sum_s.at(stage) : 0) : 0;
    auto bound = [&](double q) {
      for (std::size_t i = 0; i < delta.size(); ++i) {
        if (static_cast<double>(delta[i]) >= q * static_cast<double>(count)) return a->second[i].first * 1e6;
      }
      return 0.0;
    };
    std::printf("    %-14s %8llu %10.0f %10.0f %10.0f\n", stage, static_cast<unsigned long long>(count),
                count ? sum / static_cast<double>(count) * 1e6 : 0.0, bound(0.5), bound(0.99));
  }
}

// ---- One measured run: publishers and a subscriber on one path --------------

class Run {
 public:
  Run(int port, const Path& path, const Params& p, uint64_t count)
      : path_(path), p_(p), seen_(count, 0), latency_ns_(count, 0) {
    static std::atomic<int> n{0};
    const std::string id = fmt::format("seqbench-{}-{}", getpid(), ++n);
    sub_ = mosquitto_new((id + "-sub").c_str(), true, this);
    for (int k = 0; k < p.publishers; ++k) pubs_.push_back(mosquitto_new(fmt::format("{}-pub{}", id, k).c_str(), true, this));
    for (auto* m : All()) {
      mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
      mosquitto_max_inflight_messages_set(m, 0);  // the window below bounds it
    }
    if (path.msg_ids) {
      for (auto* m : pubs_) mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
      id_prefix_ = id + "-";
    }
    mosquitto_message_callback_set(sub_, &Run::OnMessage);
    mosquitto_subscribe_callback_set(sub_, [](mosquitto*, void* self, int, int, const int*) {
      static_cast<Run*>(self)->subscribed_ = true;
    });
    for (auto* m : pubs_) {
      mosquitto_publish_callback_set(m, [](mosquitto*, void* obj, int) {
        auto* self = static_cast<Run*>(obj);
        std::lock_guard lock(self->window_mu_);
        --self->unacked_;
        self->window_cv_.notify_one();
      });
    }
    for (auto* m : All()) {
      if (mosquitto_connect(m, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS)
        throw std::runtime_error(fmt::format("cannot connect to mosquitto on 127.0.0.1:{}", port));
      mosquitto_loop_start(m);
    }
    mosquitto_subscribe(sub_, nullptr, path.out_filter.c_str(), p.qos);
    if (!seqtest::WaitFor([&] { return subscribed_.load(); }, std::chrono::seconds(10)))
      throw std::runtime_error("the subscriber's SUBSCRIBE was not acknowledged in 10 s");
  }
  ~Run() {
    for (auto* m : All()) {
      mosquitto_disconnect(m);
      mosquitto_loop_stop(m, false);
      mosquitto_destroy(m);
    }
  }
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;

  // Publishes message i (blocking while `window` are unacknowledged),
  // stamped `due` (when it was meant to go: a paced load's latency counts
  // from there, so a publisher held up, by the window or a busy core, does
  // not hide the wait) or, without one, now.
  void Publish(uint64_t i, std::optional<int64_t> due = std::nullopt) {
    std::string payload(static_cast<std::size_t>(p_.payload), 'x');
    const int64_t stamp = due.value_or(NowNs());
    std::memcpy(payload.data(), &stamp, 8);
    std::memcpy(payload.data() + 8, &i, 8);
    const std::string topic = path_.in_prefix + "t" + std::to_string(i % static_cast<uint64_t>(p_.topics));
    if (p_.qos > 0) {
      std::unique_lock lock(window_mu_);
      if (!window_cv_.wait_for(lock, kStall, [&] { return unacked_ < p_.window; })) {
        throw std::runtime_error(fmt::format("{}: no PUBACK for {} s with {} publishes unacknowledged: is the broker "
                                             "still up?", path_.name, kStall.count(), unacked_));
      }
      ++unacked_;
    }
    if (path_.msg_ids) {
      mosquitto_property* props = nullptr;
      mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, "msg-id",
                                         (id_prefix_ + std::to_string(i)).c_str());
      mosquitto_publish_v5(pubs_[i % pubs_.size()], nullptr, topic.c_str(), static_cast<int>(payload.size()),
                           payload.data(), p_.qos, false, props);
      mosquitto_property_free_all(&props);
      return;
    }
    mosquitto_publish(pubs_[i % pubs_.size()], nullptr, topic.c_str(), static_cast<int>(payload.size()),
                      payload.data(), p_.qos, false);
  }

  uint64_t received() const { return received_.load(); }

  // Closed loop: blocks until fewer than `window` of the messages before
  // `i` are still on their way (sent, not received).
  void WaitEndToEnd(uint64_t i, uint64_t window) {
    if (i < window + received_.load()) return;
    std::unique_lock lock(mu_);
    waiting_ = true;
    for (uint64_t before = received_.load(); !received_cv_.wait_for(lock, kStall, [&] { return i < window + received_.load(); });
         before = received_.load()) {
      if (received_.load() == before) {
        throw std::runtime_error(fmt::format("{}: closed loop: nothing received for {} s, {} of {} sent: messages were "
                                             "lost on the way (with --mqtt-port, see --help)", path_.name,
                                             kStall.count(), received_.load(), i));
      }
    }
    waiting_ = false;
  }

  RunResult Finish(uint64_t sent, Clock::time_point start, std::chrono::seconds deadline) {
    uint64_t seen = received_.load();
    auto moved = Clock::now();
    seqtest::WaitFor([&] {
      if (const uint64_t now = received_.load(); now != seen) {
        seen = now;
        moved = Clock::now();
      }
      return seen >= sent || Clock::now() - moved > kStall;  // the rest lost: the run fails with what came
    }, deadline);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // a late duplicate still counts
    RunResult r;
    std::lock_guard lock(mu_);
    r.path = path_.name;
    r.sent = sent;
    r.received = received_;
    r.duplicates = duplicates_;
    r.out_of_order = out_of_order_;
    r.seconds = std::chrono::duration<double>(last_receive_ - start).count();
    for (uint64_t i = 0; i < sent; ++i) {
      if (seen_[i]) r.latency_us.push_back(static_cast<double>(latency_ns_[i]) / 1000.0);
    }
    std::sort(r.latency_us.begin(), r.latency_us.end());
    if (path_.relay) std::tie(r.relay_rss_kb, r.relay_hwm_kb) = Memory(path_.relay->pid());
    return r;
  }

 private:
  std::vector<mosquitto*> All() const {
    std::vector<mosquitto*> all = pubs_;
    all.push_back(sub_);
    return all;
  }

  static void OnMessage(mosquitto*, void* obj, const mosquitto_message* m) {
    auto* self = static_cast<Run*>(obj);
    const int64_t now = NowNs();
    auto* bytes = static_cast<const uint8_t*>(m->payload);
    std::size_t len = static_cast<std::size_t>(m->payloadlen);
    std::lock_guard lock(self->mu_);
    if (self->path_.framed) {
      auto frame = seqrelay::DecodeFrame({bytes, len});
      if (!frame.ok()) {
        ++self->out_of_order_;  // not a frame: counted as a failure
        return;
      }
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
    if (self->waiting_) self->received_cv_.notify_one();
  }

  const Path path_;
  const Params p_;
  mosquitto* sub_ = nullptr;
  std::vector<mosquitto*> pubs_;
  std::string id_prefix_;  // msg-ids are <id_prefix_><i>: unique per run
  std::atomic<bool> subscribed_{false};
  std::atomic<uint64_t> received_{0};
  std::mutex window_mu_;
  std::condition_variable window_cv_;
  int unacked_ = 0;  // guarded by window_mu_
  std::mutex mu_;
  std::vector<uint8_t> seen_;                    // guarded by mu_
  std::vector<int64_t> latency_ns_;              // guarded by mu_
  std::map<uint32_t, uint64_t> last_seq_;        // framed paths: last SEQ per topic id; mu_
  uint64_t duplicates_ = 0, out_of_order_ = 0;   // guarded by mu_
  Clock::time_point last_receive_{};             // guarded by mu_
  std::condition_variable received_cv_;          // WaitEndToEnd, with mu_
  bool waiting_ = false;                         // guarded by mu_
};

// A progress line per second: rewritten in place on a terminal, one line
// each otherwise (CI logs).
class Progress {
 public:
  explicit Progress(std::string label) : label_(std::move(label)), tty_(isatty(STDERR_FILENO)) {}
  void Update(const Run& run, uint64_t sent, uint64_t total) {
    const auto now = Clock::now();
    if (now < next_) return;
    next_ = now + std::chrono::seconds(1);
    Print(run, sent, total, false);
  }
  void Done(const Run& run, uint64_t total) { Print(run, total, total, true); }

 private:
  void Print(const Run& run, uint64_t sent, uint64_t total, bool final) {
    std::fprintf(stderr, "%s  %-32s sent %8llu/%llu  received %8llu%s", tty_ ? "\r" : "", label_.c_str(),
                 static_cast<unsigned long long>(sent), static_cast<unsigned long long>(total),
                 static_cast<unsigned long long>(run.received()), final || !tty_ ? "\n" : "");
  }
  std::string label_;
  bool tty_;
  Clock::time_point next_{};
};

// `e2e_window` 0: open (bounded by PUBACKs only); else a closed loop.
RunResult Throughput(int port, const Path& path, const Params& p, uint64_t count, const std::string& label,
                     uint64_t e2e_window = 0) {
  Run run(port, path, p, count);
  Progress progress(label);
  const auto start = Clock::now();
  for (uint64_t i = 0; i < count; ++i) {
    if (e2e_window > 0) run.WaitEndToEnd(i, e2e_window);
    run.Publish(i);
    progress.Update(run, i + 1, count);
  }
  RunResult r = run.Finish(count, start, std::chrono::seconds(120));
  progress.Done(run, count);
  return r;
}

RunResult Latency(int port, const Path& path, const Params& p, int rate, double seconds, const std::string& label) {
  const uint64_t count = static_cast<uint64_t>(rate * seconds);
  Run run(port, path, p, count);
  Progress progress(label);
  const auto start = Clock::now();
  for (uint64_t i = 0; i < count; ++i) {
    const auto due = start + std::chrono::nanoseconds(int64_t{1000000000} * static_cast<int64_t>(i) / rate);
    std::this_thread::sleep_until(due);
    // Stamped when due, not when sent (until 2026-12-07 the send: a
    // publisher that fell behind stamped its late messages afresh, and
    // their wait was not counted).
    run.Publish(i, std::chrono::duration_cast<std::chrono::nanoseconds>(due.time_since_epoch()).count());
    progress.Update(run, i + 1, count);
  }
  RunResult r = run.Finish(count, start, std::chrono::seconds(60));
  r.rate = rate;
  progress.Done(run, count);
  if (r.throughput() < 0.95 * rate) {
    std::printf("  %s: %.0f of %d msg/s: the load saturated the machine, and its latencies are queues\n",
                label.c_str(), r.throughput(), rate);
  }
  return r;
}

std::vector<int> ParseRates(const std::string& list) {
  std::vector<int> rates;
  std::stringstream in(list);
  for (std::string item; std::getline(in, item, ',');) {
    std::size_t used = 0;
    int rate = 0;
    try {
      rate = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || rate < 1) throw po::error("--rate: '" + item + "' is not a positive number");
    rates.push_back(rate);
  }
  if (rates.empty()) throw po::error("--rate: give at least one rate");
  return rates;
}

// Of an even count, the mean of the two middle values (until 2026-12-07 the
// upper one: two rounds' "median" was their higher, and tools/bench.sh took
// the lower).
double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace

namespace {

int Main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--forwarder") return RunForwarder(std::atoi(argv[2]));

  Params p;
  std::string mode = "both", json_path, csv_path, relay_binary, rate_list = "1000", perf_path;
  std::string db_user = seqtest::TestServers::kDbUser, db_password = seqtest::TestServers::kDbPassword;
  long long count = 50000, e2e_window = 1000;  // signed: a negative number is an error, not a huge count
  int rounds = 3, batch_delay_us = 0, mqtt_port = 0, db_port = 0, floors = 0;
  std::vector<std::string> relay_args;
  double duration = 5;
  bool journal_cost = false, own_frames = false, msg_ids = false, stages = false, unix_socket = false;
  {
    const std::string self = SelfPath();
    relay_binary = self.substr(0, self.rfind('/')) + "/../relay/seqrelay";
  }
  po::options_description desc(
      "seqbench: the relay against the plain mosquitto path, side by side in one run, alternating.\n\n"
      "  plain: publisher -> mosquitto -> forwarder (in/out connections, no database) -> mosquitto -> subscriber\n"
      "  relay: publisher -> mosquitto -> seqrelay (durable MariaDB commits, journal) -> mosquitto -> subscriber\n\n"
      "Every message must arrive once, and on the relay path in SEQ order; otherwise seqbench exits 1.\n\n"
      "Usage: seqbench [options]\n\nOptions");
  desc.add_options()
      ("help", "Print this help and exit.")
      ("mode", po::value(&mode)->default_value(mode),
       "throughput, closed, latency, both (throughput and latency) or all (the three).")
      ("e2e-window", po::value(&e2e_window)->default_value(e2e_window),
       "Closed loop: most messages sent and not yet received by the subscriber.")
      ("count", po::value(&count)->default_value(count), "Messages per throughput run.")
      ("rate", po::value(&rate_list)->default_value(rate_list),
       "Offered msg/s in latency runs; a comma-separated list runs each (e.g. 1000,5000,10000).")
      ("duration", po::value(&duration)->default_value(duration), "Seconds per latency run.")
      ("rounds", po::value(&rounds)->default_value(rounds), "Runs per path, mode and rate, alternating the paths.")
      ("payload", po::value(&p.payload)->default_value(p.payload), "Payload bytes (at least 16: timestamp and index).")
      ("topics", po::value(&p.topics)->default_value(p.topics), "Topics the messages are spread over, round robin.")
      ("publishers", po::value(&p.publishers)->default_value(p.publishers), "Publisher connections, round robin.")
      ("window", po::value(&p.window)->default_value(p.window), "Unacknowledged QoS 1/2 publishes at most, in all.")
      ("qos", po::value(&p.qos)->default_value(p.qos), "QoS of publishes and subscriptions (0, 1 or 2).")
      ("journal-cost", po::bool_switch(&journal_cost), "Also run a relay without the journal (path relay-nojournal).")
      ("stages", po::bool_switch(&stages),
       "Also print, after each run of the relay path, the time per pipeline stage from its /metrics histograms "
       "(intake queue, sequence, insert, commit, publish to PUBACK): count, mean, and the bucket bounds of p50 "
       "and p99.")
      ("msg-ids", po::bool_switch(&msg_ids),
       "Also run the relay path with a publisher msg-id on every message (path relay-ids: MQTT v5 publishers; "
       "the relay looks each up and records it, PROTOCOL.md 5.1).")
      ("own-frames", po::bool_switch(&own_frames),
       "The relays also read their own frames back (as with --source '#' on a broker whose ACL does not keep "
       "them from the intake): to price that traffic against a run without it.")
      ("batch-delay-us", po::value(&batch_delay_us)->default_value(batch_delay_us), "The relays' --batch-delay-us.")
      ("relay-arg", po::value(&relay_args)->value_name("ARG"),
       "One more option for the relays, as on their command line (repeatable: --relay-arg=--dedupe-window=0).")
      ("unix-socket", po::bool_switch(&unix_socket),
       "The relays reach seqbench's own MariaDB through its Unix socket (--db-socket) instead of TCP on loopback, "
       "as a relay on the database's host may.")
      ("relay-binary", po::value(&relay_binary)->default_value(relay_binary), "The seqrelay executable.")
      ("mqtt-port", po::value(&mqtt_port), "Use the mosquitto already on 127.0.0.1:PORT (needs --db-port too). It must queue without "
       "limit for a slow subscriber (max_queued_messages 0), as seqbench's own does, or a run drops messages "
       "and fails.")
      ("db-port", po::value(&db_port), "Use the MariaDB/MySQL already on 127.0.0.1:PORT (needs --mqtt-port too).")
      ("db-user", po::value(&db_user)->default_value(db_user), "Database user for the relays (with --db-port).")
      ("db-password", po::value(&db_password), "Its password (with --db-port; default: the throwaway server's).")
      ("floors", po::value(&floors)->default_value(floors),
       "Also measure the floors under the relay's latency alone, after the runs: N round trips and N one-row "
       "transactions (INSERT and COMMIT timed apart) back to back, then N/5 of them one every 10 ms; N/5 of the "
       "relay's one-message batch (fence and INSERT, then COMMIT); N/5 pairs of batches on two connections (when "
       "the second's fence, waiting on the row, returns); a writer alone at 100, 1,000 and 5,000 msg/s for "
       "min(N, 2000) ms each, one or two transactions in flight (arrival to COMMIT returned); and the disk alone "
       "(512-byte pwrite + fdatasync in the server's data directory, N back to back and N/5 one every 10 ms). "
       "0: not measured.")
      ("perf", po::value(&perf_path), "Record a perf profile (call graphs) of the relay during its first throughput run into FILE.")
      ("json", po::value(&json_path), "Also write every run's figures to FILE as JSON.")
      ("csv", po::value(&csv_path), "Also write every run's figures to FILE as CSV.");
  std::vector<int> rates;
  auto check = [&](const po::variables_map&) {
    if (mode != "throughput" && mode != "closed" && mode != "latency" && mode != "both" && mode != "all") {
      throw po::error("--mode: throughput, closed, latency, both or all");
    }
    if (e2e_window < 1) throw po::error("--e2e-window must be positive");
    if (count > 10'000'000) throw po::error("--count must be at most 10,000,000 (its latencies are kept in memory)");
    if (p.payload < 16) throw po::error("--payload must be at least 16 (timestamp and index)");
    if (p.topics < 1 || p.publishers < 1 || p.window < 1 || rounds < 1 || count < 1 || !(duration > 0))
      throw po::error("--topics, --publishers, --window, --rounds, --count and --duration must be positive");
    if (p.qos < 0 || p.qos > 2) throw po::error("--qos must be 0, 1 or 2");
    if (floors < 0) throw po::error("--floors must be 0 or more");
    if ((mqtt_port == 0) != (db_port == 0)) throw po::error("--mqtt-port and --db-port go together");
    if (unix_socket && db_port != 0) throw po::error("--unix-socket is for seqbench's own servers, not --db-port");
    if (mqtt_port < 0 || mqtt_port > 65535 || db_port < 0 || db_port > 65535)
      throw po::error("--mqtt-port and --db-port must be 1..65535");
    if (batch_delay_us < 0) throw po::error("--batch-delay-us must be 0 or more");
    if (own_frames && msg_ids)
      throw po::error("--own-frames and --msg-ids do not go together (the relay-ids topics have another depth)");
    struct stat st{};
    if (stat(relay_binary.c_str(), &st) != 0 || !S_ISREG(st.st_mode) || access(relay_binary.c_str(), X_OK) != 0)
      throw po::error("no relay executable at " + relay_binary);
    rates = ParseRates(rate_list);
    // A latency run keeps every message's figures in memory, as --count does.
    for (int rate : rates) {
      const double messages = rate * duration;
      if (!(messages >= 1 && messages <= 10'000'000))
        throw po::error(fmt::format("--rate {} for --duration {} s is {} messages a run: give 1 to 10,000,000", rate,
                                    duration, messages));
    }
    // The figures' files can be written: known now, not after the runs.
    for (const std::string* path : {&json_path, &csv_path}) {
      if (!path->empty() && !std::ofstream(*path, std::ios::app))
        throw po::error("cannot write " + *path + ": " + std::strerror(errno));
    }
  };
  if (auto exit_code = seqtools::ParseCommandLine("seqbench", argc, argv, desc, check)) return *exit_code;

  // Ctrl-C ends the servers and relays this run started and removes their
  // directories (a MariaDB's is 150 MB).
  seqtest::EndCleanlyOnSignals("seqbench");
  // The run's own directory when the servers are given: removed at the end.
  struct OwnDir {
    std::string path;
    ~OwnDir() {
      if (path.empty()) return;
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
      seqtest::ForgetOnSignal(path);
    }
  } own_dir;
  std::optional<seqtest::TestServers> servers;
  std::string work_dir;
  if (mqtt_port == 0) {
    std::fprintf(stderr, "seqbench: starting mosquitto and MariaDB on loopback...\n");
    servers.emplace();
    mqtt_port = servers->mqtt_port();
    db_port = servers->db_port();
    work_dir = servers->dir();
  } else {
    char tmpl[] = "/tmp/seqbench-XXXXXX";
    if (!mkdtemp(tmpl)) return 1;
    work_dir = own_dir.path = tmpl;
    seqtest::RemoveOnSignal(work_dir);
  }
  mosquitto_lib_init();

  seqtest::Process forwarder, relay, relay_nojournal;
  forwarder.Start({SelfPath(), "--forwarder", std::to_string(mqtt_port)}, work_dir + "/forwarder.log");
  const int metrics_port = seqtest::FreePort();
  // A relay reads the raw topics <in>/... (with --own-frames, <in>/t<k> and
  // its frames seq/<in>/t<k>: filters that share no topic, as the relay
  // requires).
  auto start_relay = [&](seqtest::Process& proc, const std::string& name, const std::string& in, bool journal) {
    std::vector<std::string> argv = {relay_binary,
                                     "--mqtt-port=" + std::to_string(mqtt_port),
                                     "--mqtt-client-id=seqbench-" + name,
                                     "--db-port=" + std::to_string(db_port),
                                     "--db-user=" + db_user,
                                     "--db-name=seqbench_" + std::to_string(getpid()) + "_" + std::to_string(journal),
                                     "--source=" + in + (own_frames ? "/+" : "/#"),
                                     "--control-prefix=relay-" + name,
                                     "--batch-delay-us=" + std::to_string(batch_delay_us)};
    argv.push_back(journal ? "--journal-dir=" + work_dir + "/journal-" + name : "--no-journal");
    if (unix_socket) argv.push_back("--db-socket=" + servers->db_socket());
    argv.insert(argv.end(), relay_args.begin(), relay_args.end());
    if (stages && name == "relay") argv.push_back("--metrics-port=" + std::to_string(metrics_port));
    if (own_frames) argv.push_back("--source=+/" + in + "/+");
    proc.Start(argv, work_dir + "/" + name + ".log", {"SEQRELAY_DB_PASSWORD=" + db_password});
    // Ready once its intake is subscribed: what is published before that
    // is not queued for it (a new session), and the warm-up would wait for
    // it in vain.
    if (!seqtest::WaitFor([&] { return seqtest::ReadFile(work_dir + "/" + name + ".log").find("intake: subscribed") !=
                                       std::string::npos || !proc.running(); },
                          std::chrono::seconds(60)) || !proc.running()) {
      throw std::runtime_error(fmt::format("the relay '{}' did not get ready; its log:\n{}", name,
                                           seqtest::Tail(work_dir + "/" + name + ".log", 20)));
    }
  };
  std::vector<Path> paths = {{"plain", "inp/", "out/#", false, nullptr}, {"relay", "inr/", "seq/inr/#", true, &relay}};
  start_relay(relay, "relay", "inr", true);
  if (journal_cost) {
    start_relay(relay_nojournal, "relay-nojournal", "inn", false);
    paths.push_back({"relay-nojournal", "inn/", "seq/inn/#", true, &relay_nojournal});
  }
  // The same relay, on topics of their own (runs never overlap).
  if (msg_ids) paths.push_back({"relay-ids", "inr/ids/", "seq/inr/ids/#", true, &relay, true});

  // Ready when messages go through every path.
  for (const Path& path : paths) {
    RunResult r = Throughput(mqtt_port, path, p, 100, "warm-up " + path.name);
    if (!r.clean()) {
      std::fprintf(stderr, "seqbench: the %s path does not deliver (%llu of 100); its log:\n%s\n", path.name.c_str(),
                   static_cast<unsigned long long>(r.received),
                   seqtest::Tail(work_dir + "/" + (path.relay ? path.name : std::string("forwarder")) + ".log", 20)
                       .c_str());
      return 1;
    }
  }

  std::vector<RunResult> results;
  std::vector<std::string> modes;
  if (mode == "throughput" || mode == "both" || mode == "all") modes.push_back("throughput");
  if (mode == "closed" || mode == "all") modes.push_back("closed");
  if (mode == "latency" || mode == "both" || mode == "all") modes.push_back("latency");
  for (const auto& m : modes) {
    for (int rate : m != "latency" ? std::vector<int>{0} : rates) {
      for (int round = 1; round <= rounds; ++round) {
        // Rotate which path goes first, so none always runs on a warmer machine.
        std::vector<Path> order = paths;
        std::rotate(order.begin(), order.begin() + (round - 1) % order.size(), order.end());
        for (const Path& path : order) {
          const std::string label = m != "latency" ? fmt::format("{} {} {}/{}", m, path.name, round, rounds)
                                                   : fmt::format("{} msg/s {} {}/{}", rate, path.name, round, rounds);
          std::optional<seqtest::Process> perf;
          if (!perf_path.empty() && m == "throughput" && round == 1 && path.name == "relay") {
            perf.emplace();
            perf->Start({"perf", "record", "-F", "999", "-g", "-o", perf_path, "-p", std::to_string(relay.pid())},
                        work_dir + "/perf.log");
            std::this_thread::sleep_for(std::chrono::milliseconds(500));  // perf attaches
          }
          const bool scrape = stages && path.name == "relay";
          const StageScrape before = scrape ? ScrapeStages(metrics_port) : StageScrape{};
          const CpuPids pids{servers ? servers->broker_pid() : 0, path.relay ? path.relay->pid() : forwarder.pid(),
                             servers ? servers->db_pid() : 0};
          const CpuTimes cpu_before = ReadCpu(pids);
          const KernelSnapshots kernel_before = ReadKernel(pids);
          RunResult r = m == "throughput" ? Throughput(mqtt_port, path, p, count, label)
                        : m == "closed"   ? Throughput(mqtt_port, path, p, count, label, e2e_window)
                                          : Latency(mqtt_port, path, p, rate, duration, label);
          const CpuTimes cpu_after = ReadCpu(pids);
          const KernelSnapshots kernel_after = ReadKernel(pids);
          auto used = [](double a, double b) { return a < 0 || b < 0 ? -1.0 : b - a; };
          r.cpu = {used(cpu_before.broker, cpu_after.broker), used(cpu_before.hop, cpu_after.hop),
                   used(cpu_before.db, cpu_after.db)};
          r.kernel = {Between(kernel_before.broker, kernel_after.broker), Between(kernel_before.hop, kernel_after.hop),
                      Between(kernel_before.db, kernel_after.db)};
          if (perf) {
            perf->Signal(SIGINT);
            if (perf->Wait(std::chrono::seconds(30)) != 0)
              std::fprintf(stderr, "seqbench: perf failed:\n%s\n", seqtest::Tail(perf->log_path(), 10).c_str());
          }
          if (scrape) {
            std::printf("  stages of %s:\n", label.c_str());
            PrintStages(before, ScrapeStages(metrics_port));
          }
          r.mode = m;
          r.round = round;
          results.push_back(std::move(r));
        }
      }
    }
  }
  std::optional<seqbench::DatabaseFloors> database_floors;
  if (floors > 0) database_floors = seqbench::MeasureDatabaseFloors(db_port, db_user, db_password, floors, servers.has_value());
  relay.Stop();
  if (journal_cost) relay_nojournal.Stop();
  forwarder.Stop();

  // ---- Report ----------------------------------------------------------------
  bool failed = false;
  nlohmann::json json = nlohmann::json::array();
  std::ofstream csv;
  if (!csv_path.empty()) {
    csv.open(csv_path);
    csv << "mode,path,rate,round,topics,payload,sent,received,duplicates,out_of_order,msg_per_s,p50_us,p90_us,p99_us,"
           "p999_us,max_us,relay_rss_kb,relay_hwm_kb,broker_cpu_us,hop_cpu_us,db_cpu_us,broker_calls,hop_calls,db_calls,"
           "broker_switches,hop_switches,db_switches\n";
  }
  std::printf("\nseqbench: %d-byte QoS %d messages, %d topic(s), %d publisher(s); relays commit durably to MariaDB "
              "(innodb_flush_log_at_trx_commit=1), batch-delay-us %d\n",
              p.payload, p.qos, p.topics, p.publishers, batch_delay_us);
  for (const auto& m : modes) {
    for (int rate : m != "latency" ? std::vector<int>{0} : rates) {
      const std::string title =
          m == "throughput" ? fmt::format("throughput: {} messages, window {}", count, p.window)
          : m == "closed"   ? fmt::format("closed loop: {} messages, at most {} sent and not yet received", count,
                                          e2e_window)
                            : fmt::format("latency: {} msg/s for {} s", rate, duration);
      std::printf("\n%s\n", title.c_str());
      std::printf("  %-16s %5s %9s %9s %8s %8s %8s %9s %8s %4s %5s %9s  %s\n", "path", "round", "msg/s", "received",
                  "p50 us", "p90 us", "p99 us", "p99.9 us", "max us", "dup", "order", "relay RSS",
                  "CPU us/msg: broker hop db");
      std::map<std::string, std::vector<double>> msg_per_s, p50, p99, cpu_broker, cpu_hop, cpu_db;
      // The median over this mode's and rate's runs of `path` of a kernel
      // count per message: `proc`'s (broker, hop, db) `what` (calls, switches).
      auto kernel_median = [&](const std::string& path, KernelCounts KernelTimes::*proc, double KernelCounts::*what) {
        std::vector<double> v;
        for (const auto& r : results) {
          if (r.mode == m && r.rate == rate && r.path == path) v.push_back(r.KernelPerMessage().*proc.*what);
        }
        const double x = Median(v);
        return x < 0 ? std::string("-") : fmt::format("{:.2f}", x);
      };
      for (const auto& r : results) {
        if (r.mode != m || r.rate != rate) continue;
        const std::string rss = r.relay_rss_kb ? fmt::format("{:.1f} MiB", r.relay_rss_kb / 1024.0) : "-";
        const double broker_us = r.CpuPerMessageUs(r.cpu.broker), hop_us = r.CpuPerMessageUs(r.cpu.hop),
                     db_us = r.CpuPerMessageUs(r.cpu.db);
        const KernelTimes k = r.KernelPerMessage();
        auto us = [](double v) { return v < 0 ? std::string("-") : fmt::format("{:.1f}", v); };
        std::printf("  %-16s %5d %9.0f %9llu %8.0f %8.0f %8.0f %9.0f %8.0f %4llu %5llu %9s  %6s %6s %6s\n",
                    r.path.c_str(), r.round, r.throughput(), static_cast<unsigned long long>(r.received),
                    r.Percentile(0.5), r.Percentile(0.9), r.Percentile(0.99), r.Percentile(0.999), r.Percentile(1.0),
                    static_cast<unsigned long long>(r.duplicates), static_cast<unsigned long long>(r.out_of_order),
                    rss.c_str(), us(broker_us).c_str(), us(hop_us).c_str(), us(db_us).c_str());
        cpu_broker[r.path].push_back(broker_us);
        cpu_hop[r.path].push_back(hop_us);
        cpu_db[r.path].push_back(db_us);
        if (!r.clean()) failed = true;
        msg_per_s[r.path].push_back(r.throughput());
        p50[r.path].push_back(r.Percentile(0.5));
        p99[r.path].push_back(r.Percentile(0.99));
        json.push_back({{"mode", r.mode}, {"path", r.path}, {"rate", r.rate}, {"round", r.round},
                        {"topics", p.topics}, {"payload", p.payload}, {"sent", r.sent}, {"received", r.received},
                        {"duplicates", r.duplicates}, {"out_of_order", r.out_of_order}, {"msg_per_s", r.throughput()},
                        {"p50_us", r.Percentile(0.5)}, {"p90_us", r.Percentile(0.9)}, {"p99_us", r.Percentile(0.99)},
                        {"p999_us", r.Percentile(0.999)}, {"max_us", r.Percentile(1.0)},
                        {"relay_rss_kb", r.relay_rss_kb}, {"relay_hwm_kb", r.relay_hwm_kb},
                        {"broker_cpu_us_per_msg", broker_us}, {"hop_cpu_us_per_msg", hop_us},
                        {"db_cpu_us_per_msg", db_us},
                        {"broker_calls_per_msg", k.broker.calls}, {"hop_calls_per_msg", k.hop.calls},
                        {"db_calls_per_msg", k.db.calls}, {"broker_switches_per_msg", k.broker.switches},
                        {"hop_switches_per_msg", k.hop.switches}, {"db_switches_per_msg", k.db.switches}});
        if (csv.is_open()) {
          csv << fmt::format(
              "{},{},{},{},{},{},{},{},{},{},{:.0f},{:.0f},{:.0f},{:.0f},{:.0f},{:.0f},{},{},{:.1f},{:.1f},{:.1f},{:.2f},"
              "{:.2f},{:.2f},{:.2f},{:.2f},{:.2f}\n",
              r.mode, r.path, r.rate, r.round, p.topics, p.payload, r.sent, r.received, r.duplicates, r.out_of_order,
              r.throughput(), r.Percentile(0.5), r.Percentile(0.9), r.Percentile(0.99), r.Percentile(0.999),
              r.Percentile(1.0), r.relay_rss_kb, r.relay_hwm_kb, broker_us, hop_us, db_us, k.broker.calls,
              k.hop.calls, k.db.calls, k.broker.switches, k.hop.switches, k.db.switches);
        }
      }
      for (const Path& path : paths) {
        if (!path.relay) continue;
        if (m != "latency") {
          std::printf("  => median msg/s: plain %.0f, %s %.0f; %s / plain = %.2f\n", Median(msg_per_s["plain"]),
                      path.name.c_str(), Median(msg_per_s[path.name]), path.name.c_str(),
                      Median(msg_per_s[path.name]) / Median(msg_per_s["plain"]));
          // Issue 14's measure: the relay's CPU per message against the
          // broker's in the plain path, and the forwarder's (libmosquitto's
          // receive and publish with its own threads: no floor, see above).
          const double relay_us = Median(cpu_hop[path.name]), plain_broker_us = Median(cpu_broker["plain"]);
          if (relay_us >= 0 && plain_broker_us > 0) {
            std::printf("  => median CPU per message: %s %.1f us (its broker %.1f, MariaDB %.1f); plain: broker %.1f "
                        "us, forwarder %.1f us; %s / plain broker = %.2f\n",
                        path.name.c_str(), relay_us, Median(cpu_broker[path.name]), Median(cpu_db[path.name]),
                        plain_broker_us, Median(cpu_hop["plain"]), path.name.c_str(), relay_us / plain_broker_us);
          }
          auto counts = [&](const std::string& of, KernelCounts KernelTimes::*proc) {
            return kernel_median(of, proc, &KernelCounts::calls) + " | " +
                   kernel_median(of, proc, &KernelCounts::switches);
          };
          std::printf("  => median per message, read/write calls | context switches: %s: broker %s, hop %s, MariaDB "
                      "%s; plain: broker %s, forwarder %s\n",
                      path.name.c_str(), counts(path.name, &KernelTimes::broker).c_str(),
                      counts(path.name, &KernelTimes::hop).c_str(), counts(path.name, &KernelTimes::db).c_str(),
                      counts("plain", &KernelTimes::broker).c_str(), counts("plain", &KernelTimes::hop).c_str());
        } else {
          std::printf("  => median over rounds: %s - plain = %+.0f us at p50, %+.0f us at p99\n", path.name.c_str(),
                      Median(p50[path.name]) - Median(p50["plain"]), Median(p99[path.name]) - Median(p99["plain"]));
        }
      }
    }
  }
  if (database_floors) seqbench::PrintFloors(*database_floors);
  if (!json_path.empty()) std::ofstream(json_path) << json.dump(2) << "\n";
  if (failed) {
    std::printf("\nseqbench: FAILED: a run lost, duplicated or reordered messages (see received, dup, order)\n");
    return 1;
  }
  return 0;
}

}  // namespace

// An error anywhere ends the run through the stack, so that the servers and
// relays it started are stopped by their destructors (an uncaught exception
// would leave them running).
int main(int argc, char** argv) {
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "seqbench: %s\n", e.what());
    return 1;
  }
}
