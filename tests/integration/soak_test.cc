// Soak: 2,000 msg/s over 1,000 topics through the relay, measured window by
// window: the relay's memory must level off after warm-up, the tail latency
// must not climb, and every topic's trail must be gapless. The short form
// (the README's test command) runs 20 s; tools/faults.sh --long runs the
// 10 minutes of the fault suite's brief.
#include <fmt/format.h>
#include <mosquitto.h>

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <thread>

#include "fault_fixture.h"
#include "observe/metrics.h"

namespace seqtest {
namespace {

class SoakE2E : public FaultE2E {};  // a shard of its own (tests/integration/CMakeLists.txt)

using Clock = std::chrono::steady_clock;

int64_t NowNs() { return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count(); }

long RssKb(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return 0;
}

// A subscriber on seq/<root>/# that checks order per topic and keeps the
// latency of each frame (publish time in the payload) in the current
// window, without storing the frames: the long form is 1.2 million of them.
class SoakSubscriber {
 public:
  SoakSubscriber(int port, const std::string& id, const std::string& filter) {
    mosquitto_lib_init();
    mosq_ = mosquitto_new(id.c_str(), true, this);
    mosquitto_int_option(mosq_, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_message_callback_set(mosq_, [](mosquitto*, void* obj, const mosquitto_message* m) {
      static_cast<SoakSubscriber*>(obj)->OnFrame(m);
    });
    mosquitto_subscribe_callback_set(mosq_, [](mosquitto*, void* obj, int, int, const int*) {
      auto* self = static_cast<SoakSubscriber*>(obj);
      std::lock_guard lock(self->mu_);
      self->subscribed_ = true;
      self->cv_.notify_all();
    });
    if (mosquitto_connect(mosq_, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS) throw std::runtime_error("connect");
    mosquitto_subscribe(mosq_, nullptr, filter.c_str(), 1);
    mosquitto_loop_start(mosq_);
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, Scaled(std::chrono::seconds(10)), [&] { return subscribed_; })) {
      throw std::runtime_error("soak subscriber: no SUBACK");
    }
  }
  ~SoakSubscriber() {
    mosquitto_disconnect(mosq_);
    mosquitto_loop_stop(mosq_, false);
    mosquitto_destroy(mosq_);
  }

  // The window's latencies in ms, summarised as the relay's stats report
  // does (nearest rank); a new window starts.
  seqrelay::Summary TakeWindow() {
    std::vector<double> window;
    {
      std::lock_guard lock(mu_);
      window.swap(window_);
    }
    return seqrelay::Summarize(window);
  }
  uint64_t received() {
    std::lock_guard lock(mu_);
    return received_;
  }
  uint64_t out_of_order() {
    std::lock_guard lock(mu_);
    return out_of_order_;
  }

 private:
  void OnFrame(const mosquitto_message* m) {
    const int64_t now = NowNs();
    auto view = seqrelay::DecodeFrame({static_cast<const uint8_t*>(m->payload), static_cast<std::size_t>(m->payloadlen)});
    std::lock_guard lock(mu_);
    if (!view.ok()) {
      ++out_of_order_;
      return;
    }
    ++received_;
    uint64_t& last = last_seq_[view->header.topic_id];
    if (view->header.seq != last + 1) ++out_of_order_;
    last = view->header.seq;
    // Payload "<i> <publish ns>".
    std::string payload(reinterpret_cast<const char*>(view->payload.data()), view->payload.size());
    const auto space = payload.find(' ');
    if (space != std::string::npos) window_.push_back((now - std::stoll(payload.substr(space + 1))) / 1e6);
  }

  mosquitto* mosq_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  bool subscribed_ = false;                // guarded by mu_
  std::map<uint32_t, uint64_t> last_seq_;  // guarded by mu_
  std::vector<double> window_;            // guarded by mu_
  uint64_t received_ = 0, out_of_order_ = 0;  // guarded by mu_
};

TEST_F(SoakE2E, SoakAtTwoThousandPerSecondOverAThousandTopics) {
  const auto duration = LongForm() ? std::chrono::seconds(600) : std::chrono::seconds(20);
  const int windows = 10;
  constexpr int kRate = 2000, kTopics = 1000;
  const int count = kRate * static_cast<int>(duration.count());
  StartRelay({"--journal-dir=" + servers().dir() + "/journal-" + name_});
  SoakSubscriber sub(servers().mqtt_port(), name_ + "-sub", "seq/" + root() + "/#");  // returns after the SUBACK
  MqttClient pub(servers().mqtt_port(), name_ + "-pub");
  std::atomic<int> published{0};
  std::thread publisher([&] {
    const auto start = Clock::now();
    for (int i = 1; i <= count; ++i) {
      std::this_thread::sleep_until(start + std::chrono::microseconds(int64_t{1000000} * i / kRate));
      pub.Publish(fmt::format("{}/t{}", root(), i % kTopics), fmt::format("{} {}", i, NowNs()), 1, 5000);
      published = i;
    }
  });

  struct Window {
    uint64_t frames;
    double p50, p99, max;
    long rss_kb;
  };
  std::vector<Window> seen;
  const auto step = duration / windows;
  const auto t0 = Clock::now();
  for (int w = 1; w <= windows; ++w) {
    std::this_thread::sleep_until(t0 + step * w);
    auto lat = sub.TakeWindow();
    seen.push_back({lat.count, lat.p50, lat.p99, lat.max,
                    RssKb(relay_->pid())});
    const Window& x = seen.back();
    std::fprintf(stderr, "[ figure ] soak window %2d: %6llu frames, latency ms p50 %.2f p99 %.2f max %.1f, relay RSS %.1f MiB\n",
                 w, static_cast<unsigned long long>(x.frames), x.p50, x.p99, x.max, x.rss_kb / 1024.0);
  }
  publisher.join();
  ASSERT_TRUE(pub.WaitAllAcked(30s));
  ASSERT_TRUE(WaitFor([&] { return sub.received() >= static_cast<uint64_t>(count); }, 60s))
      << sub.received() << " of " << count;

  // The trail: every message once, every topic gapless.
  Outcome o;
  o.sent = static_cast<std::size_t>(count);
  o.acked = o.sent - pub.unacked();
  o.stored = std::stoul(servers().Sql("SELECT COUNT(*) FROM `" + name_ + "`.MSG"));
  o.distinct = std::stoul(servers().Sql("SELECT COUNT(DISTINCT MSG) FROM `" + name_ + "`.MSG"));
  o.lost = o.sent > o.distinct ? o.sent - o.distinct : 0;
  const std::string gaps = servers().Sql("SELECT ID FROM `" + name_ +
                                         "`.MSG GROUP BY ID HAVING COUNT(*) <> MAX(SEQ) OR MIN(SEQ) <> 1");
  o.gapless = gaps.empty();
  o.has_subscriber = true;
  o.delivered = sub.received();
  o.peak_rss_kb = relay_->PeakRssKb();
  Print(fmt::format("soak: {} s at 2,000 msg/s over 1,000 topics, journal on", duration.count()), o, 0);
  EXPECT_EQ(o.stored, o.sent);
  EXPECT_EQ(o.lost, 0u);
  EXPECT_TRUE(o.gapless) << "topics with gaps:\n" << gaps;
  EXPECT_EQ(std::stoul(servers().Sql("SELECT COUNT(DISTINCT ID) FROM `" + name_ + "`.MSG")),
            static_cast<std::size_t>(kTopics));
  EXPECT_EQ(sub.out_of_order(), 0u) << "a frame out of SEQ order (or a bad frame) on some topic";
  EXPECT_EQ(o.delivered, o.sent);

  // Flat after warm-up (the first two windows): memory does not keep
  // growing, and the tail does not climb. Loose bounds: they catch a leak
  // or a queue that builds up, not the noise of a shared 2-core machine.
  // A queue that builds up stays up, so the tail has climbed if the last
  // two windows are both over the bound. Windows over it in mid-run that
  // the relay then catches up on are a stall of the machine (seen: 577 ms
  // in one window while the suite ran its other shards and Chromium beside
  // it; and in one CI run four windows in a row, p99 0.96 to 1.85 s with
  // 2,318 to 3,279 frames each, then 7,658 frames and p99 23 ms and less
  // to the end).
  // 250 ms: far above one slow fsync, far below a queue that builds up
  // (times the sanitizer factor).
  const double floor_ms = static_cast<double>(Scaled(std::chrono::milliseconds(250)).count());
  const double bound = std::max(floor_ms, 5 * seen[1].p99);
  EXPECT_FALSE(seen[windows - 2].p99 >= bound && seen[windows - 1].p99 >= bound)
      << "the last two windows: the tail climbs (p99 " << seen[windows - 2].p99 << " and " << seen[windows - 1].p99
      << " ms, bound " << bound << " ms)";
  EXPECT_LT(seen.back().p99, 4 * bound) << "the last window: the tail climbs";
  if (!RelaySanitized()) {  // ASan's quarantine grows by design
    EXPECT_LT(seen.back().rss_kb - seen[1].rss_kb, 16 * 1024) << "relay RSS keeps growing after warm-up";
  }
  EXPECT_EQ(relay_->Stop(), 0);
}

}  // namespace
}  // namespace seqtest
