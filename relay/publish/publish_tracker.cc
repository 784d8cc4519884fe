#include "publish/publish_tracker.h"

namespace seqrelay {

bool PublishTracker::Append(uint64_t idx, bool acked) {
  const uint64_t next = watermark_ + 1 + acked_.size();
  if (idx < next) return false;
  // The idx skipped (rows this process publishes no frame of) count as
  // acknowledged: with nothing pending before them the watermark passes
  // them at once, in one step whatever the gap (a row far ahead, written
  // by hand or by another shard's numbering, took 2^40 steps).
  if (acked_.empty()) {
    watermark_ = idx - 1;
  } else {
    acked_.insert(acked_.end(), idx - next, true);
  }
  acked_.push_back(acked);
  if (!acked) ++unacked_;
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

void PublishTracker::Resent(uint64_t idx, int mid) {
  if (idx > last_sent()) return;
  if (idx > resent_through_) resent_through_ = idx;
  if (idx > watermark_ && !acked_[idx - watermark_ - 1]) by_mid_[mid] = idx;
}

void PublishTracker::Acked(int mid) {
  auto it = by_mid_.find(mid);
  if (it == by_mid_.end()) return;
  const uint64_t idx = it->second;
  by_mid_.erase(it);
  if (idx <= watermark_) return;  // acknowledged already, by its other mid
  auto slot = acked_.begin() + static_cast<std::ptrdiff_t>(idx - watermark_ - 1);
  if (*slot) return;
  *slot = true;
  --unacked_;
  Advance();
}

}  // namespace seqrelay
