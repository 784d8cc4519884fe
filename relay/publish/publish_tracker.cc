#include "publish/publish_tracker.h"

#include <algorithm>
#include <utility>

namespace seqrelay {

bool PublishTracker::Append(uint64_t idx, bool acked) {
  if (idx <= last_sent_) return false;
  // The idx skipped (rows this process publishes no frame of) count as
  // acknowledged: they get no slot, so the watermark passes them with the
  // rows before them, in one step whatever the gap (a row far ahead, written
  // by hand or by another shard's numbering: one slot a skipped idx took
  // 2^40 steps with nothing pending, and as many slots' memory with rows
  // pending, as at a start that republishes a shard's rows).
  last_sent_ = idx;
  slots_.push_back({idx, acked});
  if (!acked) ++unacked_;
  Advance();
  return true;
}

void PublishTracker::Advance() {
  while (!slots_.empty() && slots_.front().acked) slots_.pop_front();
  watermark_ = slots_.empty() ? last_sent_ : slots_.front().idx - 1;
}

const PublishTracker::Slot* PublishTracker::Find(uint64_t idx) const {
  if (slots_.empty() || idx < slots_.front().idx) return nullptr;
  // With no idx skipped since the first slot (the usual case), its place.
  if (const uint64_t at = idx - slots_.front().idx; at < slots_.size() && slots_[at].idx == idx) return &slots_[at];
  auto it = std::lower_bound(slots_.begin(), slots_.end(), idx,
                             [](const Slot& slot, uint64_t i) { return slot.idx < i; });
  return it != slots_.end() && it->idx == idx ? &*it : nullptr;
}

PublishTracker::Slot* PublishTracker::Find(uint64_t idx) {
  return const_cast<Slot*>(std::as_const(*this).Find(idx));
}

bool PublishTracker::Acknowledged(uint64_t idx) const {
  if (idx <= watermark_) return true;
  if (idx > last_sent_) return false;
  const Slot* slot = Find(idx);
  return slot == nullptr || slot->acked;  // a skipped idx counts as acknowledged
}

void PublishTracker::Sent(uint64_t idx, int mid) {
  if (Append(idx, false)) by_mid_[mid] = idx;
}

void PublishTracker::SentUnconfirmed(uint64_t idx) { (void)Append(idx, true); }

void PublishTracker::Resent(uint64_t idx, int mid) {
  if (idx > last_sent_) return;
  if (idx > resent_through_) resent_through_ = idx;
  if (const Slot* slot = Find(idx); slot != nullptr && !slot->acked) by_mid_[mid] = idx;
}

void PublishTracker::Acked(int mid) {
  auto it = by_mid_.find(mid);
  if (it == by_mid_.end()) return;
  const uint64_t idx = it->second;
  by_mid_.erase(it);
  Slot* slot = Find(idx);
  if (slot == nullptr || slot->acked) return;  // acknowledged already, by its other mid
  slot->acked = true;
  --unacked_;
  Advance();
}

}  // namespace seqrelay
