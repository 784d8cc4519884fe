#include "publish/publish_tracker.h"

namespace seqrelay {

bool PublishTracker::Append(uint64_t idx, bool acked) {
  const uint64_t next = watermark_ + 1 + acked_.size();
  if (idx < next) return false;
  for (uint64_t skipped = next; skipped < idx; ++skipped) {
    if (acked_.empty()) {
      ++watermark_;  // nothing pending before it: acknowledged at once
    } else {
      acked_.push_back(true);
    }
  }
  acked_.push_back(acked);
  Advance();
  return true;
}

void PublishTracker::Advance() {
  while (!acked_.empty() && acked_.front()) {
    acked_.pop_front();
    ++watermark_;
  }
}

void PublishTracker::Sent(uint64_t idx, int mid) {
  if (Append(idx, false)) by_mid_[mid] = idx;
}

void PublishTracker::SentUnconfirmed(uint64_t idx) { (void)Append(idx, true); }

void PublishTracker::Acked(int mid) {
  auto it = by_mid_.find(mid);
  if (it == by_mid_.end()) return;
  acked_[it->second - watermark_ - 1] = true;
  by_mid_.erase(it);
  Advance();
}

}  // namespace seqrelay
