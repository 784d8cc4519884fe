#include "intake/intake_queue.h"

#include <utility>

namespace seqrelay {

bool IntakeQueue::Push(Message&& m, std::chrono::steady_clock::duration* waited) {
  return PushWithin(std::move(m), std::chrono::steady_clock::duration::max(), waited) != Pushed::kClosed;
}

IntakeQueue::Pushed IntakeQueue::PushWithin(Message&& m, std::chrono::steady_clock::duration max_wait,
                                            std::chrono::steady_clock::duration* waited) {
  std::unique_lock lock(mu_);
  if (FullLocked() && !closed_ && max_wait.count() > 0) {
    const auto start = std::chrono::steady_clock::now();
    auto room = [&] { return closed_ || !FullLocked(); };
    if (max_wait == std::chrono::steady_clock::duration::max()) {
      not_full_.wait(lock, room);
    } else {
      not_full_.wait_for(lock, max_wait, room);
    }
    if (waited) *waited = std::chrono::steady_clock::now() - start;
  }
  if (closed_) return Pushed::kClosed;
  const bool over = FullLocked();
  const std::size_t bytes = m.bytes();
  q_.push_back(std::move(m));  // first: if it throws, nothing is counted
  bytes_ += bytes;
  peak_ = std::max(peak_, q_.size());
  not_empty_.notify_one();
  return over ? Pushed::kOverLimit : Pushed::kQueued;
}

bool IntakeQueue::PopBatch(std::vector<Message>& out, std::size_t max, std::size_t max_bytes,
                           std::chrono::microseconds linger, std::chrono::steady_clock::duration* lingered,
                           std::chrono::steady_clock::time_point idle_until) {
  std::unique_lock lock(mu_);
  auto ready = [&] { return closed_ || woken_ || !q_.empty(); };
  if (idle_until == std::chrono::steady_clock::time_point::max()) {
    not_empty_.wait(lock, ready);
  } else if (!not_empty_.wait_until(lock, idle_until, ready)) {
    return true;  // idle until then: the consumer's other work
  }
  const bool woken = std::exchange(woken_, false);
  if (q_.empty()) return woken && !closed_;  // false: closed and drained
  if (lingered) *lingered = {};
  // No linger behind a delivery that awaits its verdict: the intake pushes
  // nothing more until this batch is committed.
  if (linger.count() > 0 && q_.size() < max && !closed_ && q_.back().verdict_ticket == 0) {
    const auto start = std::chrono::steady_clock::now();
    not_empty_.wait_until(lock, start + linger, [&] { return closed_ || q_.size() >= max; });
    if (lingered) *lingered = std::chrono::steady_clock::now() - start;
  }
  std::size_t taken_bytes = 0;
  while (!q_.empty() && out.size() < max && (out.empty() || taken_bytes + q_.front().bytes() <= max_bytes)) {
    taken_bytes += q_.front().bytes();
    out.push_back(std::move(q_.front()));
    q_.pop_front();
  }
  bytes_ -= taken_bytes;
  not_full_.notify_one();
  return true;
}

void IntakeQueue::Wake() {
  std::lock_guard lock(mu_);
  woken_ = true;
  not_empty_.notify_all();
}

void IntakeQueue::Close() {
  std::lock_guard lock(mu_);
  closed_ = true;
  not_empty_.notify_all();
  not_full_.notify_all();
}

std::size_t IntakeQueue::size() const {
  std::lock_guard lock(mu_);
  return q_.size();
}

std::size_t IntakeQueue::peak() const {
  std::lock_guard lock(mu_);
  return peak_;
}

bool IntakeQueue::below_resume_mark() const {
  std::lock_guard lock(mu_);
  return q_.size() <= max_messages_ / 2 && bytes_ <= max_bytes_ / 2;
}

bool IntakeQueue::full_now() const {
  std::lock_guard lock(mu_);
  return FullLocked();
}

}  // namespace seqrelay
