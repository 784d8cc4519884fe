// RedeliveryFilter: recognises the broker's resend of a message the relay
// had already journaled when it was killed.
//
// The journal is written before libmosquitto sends the PUBACK; a kill in
// between leaves a message both in the journal and unacknowledged at the
// broker, which resends it when the relay's session resumes, with the same
// MQTT packet identifier (MQTT 3.1.1, 4.4). The filter remembers the last
// `window` journaled messages (the broker's in-flight limit bounds how many
// can be unacknowledged: mosquitto's max_inflight_messages, 20 by default)
// and, among the first `window` messages after start, drops one whose
// packet identifier, topic and payload all match a remembered one.
//
// Pure logic; used by the intake thread only (and by Run() before that).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>

namespace seqrelay {

class RedeliveryFilter {
 public:
  explicit RedeliveryFilter(std::size_t window) : window_(window), checks_left_(window) {}

  // A journaled message (in journal order). QoS 0 messages (mid 0) are never resent.
  void Remember(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload);

  // True if this delivery is the resend of a remembered message; that one
  // is then forgotten. Only the first `window` calls can match.
  bool IsRedelivery(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload);

  std::size_t remembered() const { return entries_.size(); }

 private:
  struct Entry {
    uint16_t mid;
    std::string topic;
    std::size_t size;
    uint64_t hash;  // of the payload
  };
  const std::size_t window_;
  std::size_t checks_left_;
  std::deque<Entry> entries_;  // the newest `window_`, oldest first
};

}  // namespace seqrelay
