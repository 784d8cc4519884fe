#include "intake/redelivery.h"

#include <algorithm>
#include <functional>

namespace seqrelay {
namespace {

uint64_t Hash(std::string_view bytes) { return std::hash<std::string_view>{}(bytes); }

uint64_t Hash(std::span<const uint8_t> payload) {
  return Hash(std::string_view(reinterpret_cast<const char*>(payload.data()), payload.size()));
}

}  // namespace

RedeliveryFilter::Entry RedeliveryFilter::Make(uint16_t mid, std::string_view topic,
                                               std::span<const uint8_t> payload, bool committed) {
  return {mid, payload.size(), Hash(topic), Hash(payload), committed};
}

uint64_t RedeliveryFilter::Remember(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload) {
  if (mid == 0 || window_ == 0) return 0;
  Entry e = Make(mid, topic, payload, /*committed=*/false);
  e.number = taken_ + 1;
  Add(e);
  return e.number;
}

void RedeliveryFilter::RememberFromJournal(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload,
                                           bool committed) {
  if (mid == 0 || window_ == 0) return;
  Add(Make(mid, topic, payload, committed));
}

void RedeliveryFilter::Seen() {
  ++seen_;
  // The oldest go first: the deliveries are remembered in the order seen.
  // Those the identifiers may have come round to since are forgotten (the
  // window's worth of margin covers identifiers spent on messages the relay
  // never saw: ones mosquitto dropped from a full queue).
  const uint64_t span = kIdentifiers - std::min<uint64_t>(window_, kIdentifiers - 1);
  while (!entries_.empty() && seen_ - entries_.front().seen_at >= span) {
    entries_.pop_front();
    if (next_ > 0) --next_;
  }
  while (!handed_over_.empty() && seen_ - handed_over_.front().seen_at >= span) handed_over_.pop_front();
}

void RedeliveryFilter::Add(Entry e) {
  e.seen_at = seen_;
  entries_.push_back(e);
  if (entries_.size() > window_) {
    entries_.pop_front();
    if (next_ > 0) --next_;
  }
  // Handed-over messages age with this relay's deliveries, as its own do:
  // `window_` deliveries on, the session's packet ids may wrap round to theirs.
  ++taken_;
  while (!handed_over_.empty() && taken_ - handed_over_.front().taken_before >= window_) handed_over_.pop_front();
}

void RedeliveryFilter::RememberHandedOver(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload) {
  if (mid == 0 || window_ == 0) return;
  Entry e = Make(mid, topic, payload, /*committed=*/false);
  e.taken_before = taken_;
  e.seen_at = seen_;
  handed_over_.push_back(e);
  if (handed_over_.size() > window_) handed_over_.pop_front();
}

void RedeliveryFilter::Forget(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload) {
  if (mid == 0) return;
  const Entry e = Make(mid, topic, payload, false);
  auto it = std::find_if(entries_.rbegin(), entries_.rend(), [&](const Entry& x) { return Same(x, e); });
  if (it == entries_.rend()) return;
  const auto at = std::next(it).base();
  if (static_cast<std::size_t>(at - entries_.begin()) < next_) --next_;
  entries_.erase(at);
}

void RedeliveryFilter::Connected(bool session_present) {
  matched_ = false;
  next_ = 0;
  for (Entry& h : handed_over_) h.resent = false;
  armed_ = session_present;
  if (!session_present) {  // a new session: nothing of the old one comes again
    entries_.clear();
    handed_over_.clear();
    first_run_ = false;
  }
}

void RedeliveryFilter::Subscribed() { first_run_ = false; }

void RedeliveryFilter::ForgetCommitted() {
  std::erase_if(entries_, [](const Entry& e) { return e.committed; });
  matched_ = false;
  next_ = 0;
}

void RedeliveryFilter::ForgetAll() {
  entries_.clear();
  handed_over_.clear();
  matched_ = false;
  next_ = 0;
}

RedeliveryFilter::Match RedeliveryFilter::Find(uint16_t mid, std::string_view topic,
                                               std::span<const uint8_t> payload) const {
  if (mid == 0) return {};
  const Entry e = Make(mid, topic, payload, false);
  auto same = [&](const Entry& x) { return Same(x, e); };
  // The newest first: a later delivery of the same content is the one a
  // resend would be of.
  if (auto it = std::find_if(entries_.rbegin(), entries_.rend(), same); it != entries_.rend()) {
    if (it->number == 0) return {Match::Kind::kJournal, 0};
    return {Match::Kind::kDelivery, it->number};
  }
  if (std::any_of(handed_over_.begin(), handed_over_.end(), same)) return {Match::Kind::kHandedOver, 0};
  return {};
}

bool RedeliveryFilter::IsRedelivery(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload) {
  if (mid == 0) return false;
  const Entry e = Make(mid, topic, payload, false);
  auto same = [&](const Entry& x) { return Same(x, e); };
  if (armed_) {
    // The first resend may be any remembered message (the older ones were
    // acknowledged, and are forgotten); every next one is the next
    // remembered message. The resends stay: their PUBACKs may be lost with
    // this connection too.
    if (!matched_) {
      if (auto it = std::find_if(entries_.begin(), entries_.end(), same); it != entries_.end()) {
        entries_.erase(entries_.begin(), it);
        matched_ = true;
        next_ = 1;
        return true;
      }
    } else if (next_ < entries_.size() && same(entries_[next_])) {
      ++next_;
      return true;
    }
  }
  // Another relay's, anywhere before the first SUBACK (after resends this
  // relay knows nothing of, which the writer checks: CommittedResends); once
  // a connection. It stays remembered, as this relay's resends do.
  if (first_run_) {
    auto h = std::find_if(handed_over_.begin(), handed_over_.end(), [&](const Entry& x) { return !x.resent && same(x); });
    if (h != handed_over_.end()) {
      h->resent = true;
      return true;
    }
  }
  armed_ = false;  // past this relay's resends: none of its own may match until the next reconnect
  return false;
}

}  // namespace seqrelay
