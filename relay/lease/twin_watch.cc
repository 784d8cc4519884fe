#include "lease/twin_watch.h"

#include <utility>

namespace seqrelay {

TwinWatch::TwinWatch(std::string relay_id) : relay_id_(std::move(relay_id)) {}

bool TwinWatch::Observe(std::string_view owner, uint32_t epoch, int64_t expires_at_us, bool live) {
  if (owner != relay_id_ || !live) {
    last_.reset();  // held by another relay, or by nobody
    return false;
  }
  const bool renewed = last_ && last_->epoch == epoch && expires_at_us > last_->expires_at_us;
  last_ = Reading{epoch, expires_at_us};
  return renewed;
}

}  // namespace seqrelay
