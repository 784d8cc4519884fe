#include "replay/replay_governor.h"

#include <algorithm>
#include <cmath>

namespace seqrelay {
namespace {

using Duration = ReplayGovernor::Clock::duration;

// A frame awaiting its PUBACK this long is given up on (counted once more
// with its age): the PUBACK may never come, e.g. a QoS 0 frame lost on a
// disconnect.
constexpr auto kProbeLimit = std::chrono::seconds(1);
// Replays paused this long restart from the start rate.
constexpr auto kIdleRestart = std::chrono::seconds(1);

double Ratio(Duration a, Duration b) { return std::chrono::duration<double>(a) / std::chrono::duration<double>(b); }

}  // namespace

ReplayGovernor::ReplayGovernor(Options options) : options_(options), rate_(options.start_rate) {}

void ReplayGovernor::LiveBatchTaken(Clock::time_point since, Clock::time_point now) {
  if (!enabled()) return;
  std::lock_guard lock(mu_);
  if (probe_mid_ != kNone) {  // a frame awaiting its PUBACK (the writer is done with its batch)
    const Duration age = now - probe_since_;
    if (age < kProbeLimit) return;
    worst_ = std::max(worst_.value_or(age), age);  // late, but no measure of the base
  }
  probe_mid_ = kAwaitingMid;
  probe_since_ = since;
}

void ReplayGovernor::LiveBatchDone() {
  if (!enabled()) return;
  std::lock_guard lock(mu_);
  if (probe_mid_ == kAwaitingMid) probe_mid_ = kNone;
}

void ReplayGovernor::LiveSent(int mid) {
  // Every live frame comes here; only the first of a timed batch takes the lock.
  if (!enabled() || probe_mid_.load(std::memory_order_relaxed) != kAwaitingMid) return;
  std::lock_guard lock(mu_);
  if (probe_mid_ == kAwaitingMid) probe_mid_ = mid;
}

void ReplayGovernor::LiveAcked(int mid, Clock::time_point now) {
  if (!enabled()) return;
  std::lock_guard lock(mu_);
  if (!Timing(mid)) return;
  probe_mid_ = kNone;
  NoteDelayLocked(now - probe_since_, now);
}

void ReplayGovernor::NoteDelayLocked(Duration delay, Clock::time_point now) {
  worst_ = std::max(worst_.value_or(delay), delay);
  if (now >= base_window_end_) {
    // A window without a live frame in between: the old minimum says
    // nothing about today's path.
    base_before_ = now < base_window_end_ + options_.base_window ? base_now_ : std::nullopt;
    base_now_.reset();
    base_window_end_ = now + options_.base_window;
  }
  base_now_ = std::min(base_now_.value_or(delay), delay);
}

ReplayGovernor::Clock::time_point ReplayGovernor::Reserve(Clock::time_point now) {
  if (!enabled()) return now;
  std::lock_guard lock(mu_);
  if (now - last_reserve_ > kIdleRestart) {
    rate_ = options_.start_rate;
    next_slot_ = now;
    worst_.reset();
    held_back_ = false;
    interval_end_ = now + options_.interval;
  }
  last_reserve_ = now;
  EvaluateLocked(now);
  if (next_slot_ > now) held_back_ = true;
  const auto slot = std::max(next_slot_, now);
  next_slot_ = slot + std::chrono::nanoseconds(std::llround(1e9 / rate_));
  return slot;
}

void ReplayGovernor::EvaluateLocked(Clock::time_point now) {
  if (now < interval_end_) return;
  std::optional<Duration> worst = worst_;
  if (probe_mid_ != kNone) {
    worst = std::max(worst.value_or(Duration::zero()), now - probe_since_);
    if (probe_mid_ >= 0 && now - probe_since_ >= kProbeLimit) probe_mid_ = kNone;  // its PUBACK may never come
  }
  std::optional<Duration> base = base_now_;
  if (base_before_) base = std::min(base.value_or(*base_before_), *base_before_);

  if (worst && base && *worst - *base > options_.target) {
    rate_ = std::max(options_.min_rate, rate_ / 2);
  } else if (held_back_) {
    // Grow by a quarter when live frames see no extra delay, by nothing at the target.
    const double room =
        (worst && base) ? std::clamp(1.0 - Ratio(*worst - *base, options_.target), 0.0, 1.0) : 1.0;
    rate_ = std::min(options_.max_rate, rate_ * (1.0 + 0.25 * room));
  }
  worst_.reset();
  held_back_ = false;
  interval_end_ = now + options_.interval;
}

double ReplayGovernor::rate() const {
  std::lock_guard lock(mu_);
  return rate_;
}

}  // namespace seqrelay
