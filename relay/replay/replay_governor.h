// ReplayGovernor: how fast replays may go without delaying live frames.
//
// Replay frames cross the same broker and the same cores as live frames,
// and an unpaced 10,000-frame replay delays live frames by 10 ms and more.
// The governor treats replays as background traffic, in the manner of
// LEDBAT (RFC 6817): it times live messages through the relay (from the
// arrival of a batch's oldest message, through the buffer and the commit,
// to the broker's PUBACK of the batch's first frame on seq/T; less the
// linger --batch-delay-us asks for), keeps the lowest such delay of the
// last one to two minutes as the base (forgotten after a quiet spell), and
// sets one rate for all replay frames together:
//   - every `interval`, if the worst live delay seen exceeded base + target,
//     the rate halves (never below `min_rate`, so replays cannot stall);
//   - otherwise, if replays were held back by the rate, it grows by up to a
//     quarter, less the closer the delay came to the target;
//   - no live frame in an interval: nothing to protect, the rate may grow;
//   - after a second without replay frames it restarts from `start_rate`,
//     so a new replay does not begin with a burst sized for an idle broker.
// One batch is timed at a time; one still on its way counts with its age,
// so a commit that hangs or a broker that stops answering slows replays
// down at once. A frame whose PUBACK has not come after a second is given
// up on (it may never come); a commit is waited for however long it takes.
//
// Pure logic on the caller's clock; thread-safe (one mutex, held briefly).
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>

namespace seqrelay {

class ReplayGovernor {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    Clock::duration target = std::chrono::milliseconds(2);  // zero: replays are never slowed
    double start_rate = 2000;                                // frames per second
    double min_rate = 500;
    double max_rate = 200000;
    Clock::duration interval = std::chrono::milliseconds(20);
    Clock::duration base_window = std::chrono::seconds(60);
  };

  explicit ReplayGovernor(Options options);

  // The writer took a batch of live messages at `now`, whose way through
  // the relay began at `since`. Timed if no other batch is being timed.
  void LiveBatchTaken(Clock::time_point since, Clock::time_point now);
  // A live frame went out as message `mid`: the first after the timed
  // batch was taken is the one whose PUBACK ends the timing.
  void LiveSent(int mid);
  // The writer is done with the batch; if it published nothing (every
  // message refused), it is not timed.
  void LiveBatchDone();
  // The broker acknowledged live frame `mid`.
  void LiveAcked(int mid, Clock::time_point now);
  // True if `mid` is the frame being timed: LiveAcked need only be called
  // (and the clock read) for that one. Lock-free, for the per-message path.
  bool Timing(int mid) const { return mid >= 0 && mid == probe_mid_.load(std::memory_order_relaxed); }

  // Reserves the next replay frame's slot and returns when it may go out
  // (at or before `now`: at once).
  Clock::time_point Reserve(Clock::time_point now);

  double rate() const;
  bool enabled() const { return options_.target > Clock::duration::zero(); }

 private:
  void EvaluateLocked(Clock::time_point now);
  void NoteDelayLocked(Clock::duration delay, Clock::time_point now);

  const Options options_;
  mutable std::mutex mu_;
  double rate_;
  Clock::time_point next_slot_{};        // earliest time of the next replay frame
  Clock::time_point interval_end_{};
  Clock::time_point last_reserve_{};
  bool held_back_ = false;               // a replay frame waited for its slot this interval
  std::optional<Clock::duration> worst_;  // worst live delay this interval

  // The batch being timed: kNone, kAwaitingMid, or its first frame's mid.
  // Written under mu_; read without it by Timing() and LiveSent()'s check.
  static constexpr int kNone = -1, kAwaitingMid = -2;
  std::atomic<int> probe_mid_{kNone};
  Clock::time_point probe_since_{};

  // Base delay: minima of the current and the previous base window, so
  // the base forgets a minimum after one to two windows.
  std::optional<Clock::duration> base_now_, base_before_;
  Clock::time_point base_window_end_{};
};

}  // namespace seqrelay
