#include "intake_queue.h"

namespace seqrelay {

bool IntakeQueue::Push(Message&& m, std::chrono::steady_clock::duration* waited) {
  std::unique_lock lock(mu_);
  if (FullLocked() && !closed_) {
    const auto start = std::chrono::steady_clock::now();
    not_full_.wait(lock, [&] { return closed_ || !FullLocked(); });
    if (waited) *waited = std::chrono::steady_clock::now() - start;
  }
  if (closed_) return false;
  bytes_ += m.bytes();
  q_.push_back(std::move(m));
  peak_ = std::max(peak_, q_.size());
  not_empty_.notify_one();
  return true;
}

bool IntakeQueue::PopBatch(std::vector<Message>& out, std::size_t max, std::size_t max_bytes,
                           std::chrono::microseconds linger, std::chrono::steady_clock::duration* lingered) {
  std::unique_lock lock(mu_);
  not_empty_.wait(lock, [&] { return closed_ || !q_.empty(); });
  if (q_.empty()) return false;  // closed and drained
  if (lingered) *lingered = {};
  if (linger.count() > 0 && q_.size() < max && !closed_) {
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

bool IntakeQueue::full_now() const {
  std::lock_guard lock(mu_);
  return FullLocked();
}

}  // namespace seqrelay
