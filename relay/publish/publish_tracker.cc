#include "publish/publish_tracker.h"

#include <algorithm>

namespace seqrelay {

bool PublishTracker::Append(uint64_t idx, bool acked) {
  if (idx <= last_sent_) return false;
  // The idx skipped count as acknowledged: with nothing pending before them
  // the watermark passes them at once, in one step whatever the gap (a row
  // far ahead, written by hand or by another shard's numbering). Until
  // 2026-12-07 the tracker kept a flag for each idx since the watermark:
  // such a row, with rows pending, took 2^40 of them, and a start that
  // republished it died allocating.
  last_sent_ = idx;
  if (!acked) unacked_.push_back(idx);
  SetWatermark();
  return true;
}

std::deque<uint64_t>::const_iterator PublishTracker::Find(uint64_t idx) const {
  if (unacked_.empty() || idx < unacked_.front()) return unacked_.end();
  // Rows acknowledged in order, none skipped since the first unacknowledged
  // (the usual case): its place.
  if (const uint64_t at = idx - unacked_.front(); at < unacked_.size() && unacked_[at] == idx) {
    return unacked_.begin() + static_cast<std::ptrdiff_t>(at);
  }
  auto it = std::lower_bound(unacked_.begin(), unacked_.end(), idx);
  return it != unacked_.end() && *it == idx ? it : unacked_.end();
}

bool PublishTracker::Acknowledged(uint64_t idx) const {
  return idx <= watermark_ || (idx <= last_sent_ && Find(idx) == unacked_.end());
}

void PublishTracker::Sent(uint64_t idx, int mid) {
  if (Append(idx, false)) by_mid_[mid] = idx;
}

void PublishTracker::SentUnconfirmed(uint64_t idx) { (void)Append(idx, true); }

void PublishTracker::Resent(uint64_t idx, int mid) {
  if (idx > last_sent_) return;
  if (idx > resent_through_) resent_through_ = idx;
  if (Find(idx) != unacked_.end()) by_mid_[mid] = idx;
}

void PublishTracker::Acked(int mid) {
  auto it = by_mid_.find(mid);
  if (it == by_mid_.end()) return;
  const uint64_t idx = it->second;
  by_mid_.erase(it);
  const auto at = Find(idx);
  if (at == unacked_.end()) return;  // acknowledged already, by its other mid
  unacked_.erase(at);
  SetWatermark();
}

}  // namespace seqrelay
