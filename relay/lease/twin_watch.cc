#include "lease/twin_watch.h"

#include <utility>

namespace seqrelay {

TwinWatch::TwinWatch(std::string relay_id, std::chrono::microseconds slack)
    : relay_id_(std::move(relay_id)), slack_(slack) {}

bool TwinWatch::Observe(std::string_view owner, uint32_t epoch, int64_t expires_in_us, Clock::time_point at) {
  if (owner != relay_id_ || expires_in_us <= 0) {
    last_.reset();  // held by another relay, or by nobody
    return false;
  }
  const Reading now{epoch, at + std::chrono::microseconds(expires_in_us)};
  const bool renewed = last_ && last_->epoch == now.epoch && now.expires_at > last_->expires_at + slack_;
  last_ = now;
  return renewed;
}

}  // namespace seqrelay
