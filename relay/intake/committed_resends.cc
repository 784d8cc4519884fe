#include "intake/committed_resends.h"

#include <algorithm>

namespace seqrelay {

void CommittedResends::Start(const std::vector<Row>& newest_first) {
  rows_.clear();
  next_.reset();
  if (newest_first.empty()) return;
  const uint16_t newest = newest_first.front().mid;
  for (const Row& row : newest_first) {
    if (rows_.size() == kWindow) break;
    // How far before the newest row's id, modulo the 16-bit ids' wrap.
    const auto behind = static_cast<uint16_t>(newest - row.mid);
    if (row.mid == 0 || behind >= kWindow) break;  // older than the window, or another numbering
    rows_.push_back(row);
  }
  std::reverse(rows_.begin(), rows_.end());
}

std::optional<uint64_t> CommittedResends::Candidate(uint16_t mid) {
  if (rows_.empty()) return std::nullopt;
  std::optional<std::size_t> found;
  if (next_) {
    if (*next_ < rows_.size() && rows_[*next_].mid == mid) found = *next_;
  } else {
    // The newest row with this id (ids repeat only after 65535 others).
    for (std::size_t i = rows_.size(); i-- > 0;) {
      if (rows_[i].mid == mid) {
        found = i;
        break;
      }
    }
  }
  if (!found) {
    End();
    return std::nullopt;
  }
  candidate_ = *found;
  return rows_[candidate_].idx;
}

void CommittedResends::Confirm(bool same) {
  if (!same) {
    End();
    return;
  }
  next_ = candidate_ + 1;
}

}  // namespace seqrelay
