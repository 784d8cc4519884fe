#include "redelivery.h"

#include <algorithm>
#include <functional>

namespace seqrelay {
namespace {

uint64_t Hash(std::span<const uint8_t> payload) {
  return std::hash<std::string_view>{}(std::string_view(reinterpret_cast<const char*>(payload.data()), payload.size()));
}

}  // namespace

void RedeliveryFilter::Remember(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload) {
  if (mid == 0 || window_ == 0) return;
  entries_.push_back({mid, std::string(topic), payload.size(), Hash(payload)});
  if (entries_.size() > window_) entries_.pop_front();
}

bool RedeliveryFilter::IsRedelivery(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload) {
  if (checks_left_ == 0) return false;
  --checks_left_;
  const uint64_t hash = Hash(payload);
  auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) {
    return e.mid == mid && e.size == payload.size() && e.hash == hash && e.topic == topic;
  });
  const bool resend = it != entries_.end();
  if (resend) entries_.erase(it);
  // Past the resends: forget everything so nothing new can ever match.
  if (checks_left_ == 0) entries_.clear();
  return resend;
}

}  // namespace seqrelay
