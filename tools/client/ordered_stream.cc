#include "ordered_stream.h"

#include <algorithm>

namespace seqclient {

std::vector<Delivery> OrderedStream::Offer(uint64_t seq, bool ordered, std::string payload, bool* duplicate) {
  if (duplicate) *duplicate = false;
  if (next_ == 0) next_ = seq;  // joined here
  if (seq < next_ || above_.count(seq)) {
    if (duplicate) *duplicate = true;
    return {};
  }
  std::vector<Delivery> out;
  if (seq == next_) {
    out.push_back({seq, std::move(payload), seq < last_delivered_});
    last_delivered_ = std::max(last_delivered_, seq);
    ++next_;
    auto more = Drain();
    out.insert(out.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
    return out;
  }
  if (ordered) {
    Hold(seq, std::move(payload), false);
    return out;
  }
  // Immediate: show it now, remember that it was shown.
  out.push_back({seq, std::move(payload), seq < last_delivered_});
  last_delivered_ = std::max(last_delivered_, seq);
  Hold(seq, {}, true);
  return out;
}

void OrderedStream::Hold(uint64_t seq, std::string payload, bool delivered) {
  const uint64_t bytes = payload.size() + kEntryBytes;
  above_[seq] = {std::move(payload), delivered, ++arrivals_, bytes};
  held_bytes_ += bytes;
}

std::map<uint64_t, OrderedStream::Above>::iterator OrderedStream::Erase(std::map<uint64_t, Above>::iterator it) {
  held_bytes_ -= it->second.bytes;
  return above_.erase(it);
}

std::vector<Delivery> OrderedStream::Drain() {
  std::vector<Delivery> out;
  for (auto it = above_.begin(); it != above_.end() && it->first == next_; it = Erase(it)) {
    if (!it->second.delivered) {
      out.push_back({it->first, std::move(it->second.payload), it->first < last_delivered_});
      last_delivered_ = std::max(last_delivered_, it->first);
    }
    ++next_;
  }
  return out;
}

std::optional<Gap> OrderedStream::gap() const {
  if (above_.empty()) return std::nullopt;
  return Gap{next_, above_.begin()->first - 1};
}

std::vector<Delivery> OrderedStream::GiveUp(uint64_t to) {
  if (next_ == 0 || to < next_) return {};
  // Up to `to`, frames that came are delivered in order and missing SEQs are
  // skipped; then whatever follows `to` without a break comes out too.
  std::vector<Delivery> out;
  while (!above_.empty() && above_.begin()->first <= to) {
    auto it = above_.begin();
    if (!it->second.delivered) {
      out.push_back({it->first, std::move(it->second.payload), it->first < last_delivered_});
      last_delivered_ = std::max(last_delivered_, it->first);
    }
    Erase(it);
  }
  next_ = to + 1;
  auto more = Drain();
  out.insert(out.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  return out;
}

std::vector<Gap> OrderedStream::Missing(uint64_t from, uint64_t to) const {
  std::vector<Gap> runs;
  if (from > to) return runs;
  uint64_t at = from;  // the lowest SEQ not yet placed in a run or passed as held
  for (auto it = above_.lower_bound(from); it != above_.end() && it->first <= to; ++it) {
    if (it->first > at) runs.push_back({at, it->first - 1});
    at = it->first + 1;
  }
  if (at <= to && at != 0) runs.push_back({at, to});  // at 0: the last held SEQ was UINT64_MAX
  return runs;
}

std::vector<uint64_t> OrderedStream::Forget(uint64_t from, uint64_t to, uint64_t by) {
  std::vector<uint64_t> dropped;
  if (from > to) return dropped;
  for (auto it = above_.lower_bound(from); it != above_.end() && it->first <= to;) {
    if (it->second.arrival <= by) {
      dropped.push_back(it->first);
      it = Erase(it);
    } else {
      ++it;
    }
  }
  if (dropped.empty()) return dropped;
  // The highest SEQ delivered may have been a forgotten (immediate) frame:
  // recounted from next_ - 1 (every SEQ below next_ is passed; a given-up one
  // there makes no frame late, as none comes below next_) and the immediate
  // frames still held.
  last_delivered_ = next_ > 0 ? next_ - 1 : 0;
  for (const auto& [seq, held] : above_) {
    if (held.delivered) last_delivered_ = std::max(last_delivered_, seq);
  }
  return dropped;
}

std::vector<uint64_t> OrderedStream::Shed(uint64_t bound) {
  std::vector<uint64_t> dropped;
  if (above_.empty()) return dropped;
  auto it = std::prev(above_.end());  // the newest: kept
  while (held_bytes_ > bound && it != above_.begin()) {
    --it;
    if (it->second.delivered) continue;
    dropped.push_back(it->first);
    it = Erase(it);  // its successor: the loop steps back from there
  }
  std::reverse(dropped.begin(), dropped.end());
  return dropped;
}

std::vector<Gap> OrderedStream::Shown() const {
  std::vector<Gap> runs;
  for (const auto& [seq, held] : above_) {
    if (!held.delivered) continue;
    if (!runs.empty() && runs.back().to + 1 == seq) {
      runs.back().to = seq;
    } else {
      runs.push_back({seq, seq});
    }
  }
  return runs;
}

void OrderedStream::MarkShown(uint64_t seq) {
  if (next_ == 0 || seq <= next_) return;  // only above a gap: next_ itself is missing
  if (above_.count(seq)) return;
  Hold(seq, {}, true);
  last_delivered_ = std::max(last_delivered_, seq);
}

}  // namespace seqclient
