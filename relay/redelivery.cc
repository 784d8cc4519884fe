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

void RedeliveryFilter::Connected(bool session_present) {
  if (connected_) return;
  connected_ = true;
  if (!session_present) {
    done_ = true;
    entries_.clear();
  }
}

bool RedeliveryFilter::IsRedelivery(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload) {
  if (done_ || mid == 0) return false;
  const uint64_t hash = Hash(payload);
  auto same = [&](const Entry& e) {
    return e.mid == mid && e.size == payload.size() && e.hash == hash && e.topic == topic;
  };
  // The first resend may be any remembered message (the older ones were
  // acknowledged); every next one is the next remembered message.
  auto it = matched_ ? (!entries_.empty() && same(entries_.front()) ? entries_.begin() : entries_.end())
                     : std::find_if(entries_.begin(), entries_.end(), same);
  if (it == entries_.end()) {
    done_ = true;  // past the resends: nothing new may ever match
    entries_.clear();
    return false;
  }
  entries_.erase(entries_.begin(), it + 1);
  matched_ = true;
  return true;
}

}  // namespace seqrelay
