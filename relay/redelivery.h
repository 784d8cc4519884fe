// RedeliveryFilter: recognises the broker's resends of messages the relay
// had already journaled when it was killed.
//
// The journal is written before libmosquitto sends the PUBACK; a kill in
// between leaves a message both in the journal and unacknowledged at the
// broker, which resends it when the relay's session resumes, with the same
// MQTT packet identifier (MQTT 3.1.1, 4.4). How many: libmosquitto reads
// what the socket holds before it writes the PUBACKs, and mosquitto 2.0.11
// was seen resending 46 messages although its max_inflight_messages is 20.
// So the filter remembers the newest `window` journaled messages. Only a
// session the broker kept (the first CONNACK's session-present flag) can
// hold resends; they come first, oldest first, and they are the newest
// journaled messages whose PUBACK never left, one unbroken run. The first
// delivery after start may match any remembered message (packet
// identifier, topic and payload; the ones before it were acknowledged),
// each next one only the next remembered message. The first delivery that
// does not match ends the checks for good, so no new message can be taken
// for a resend later. QoS 0 deliveries are never resent and neither match
// nor end the checks.
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
  explicit RedeliveryFilter(std::size_t window) : window_(window) {}

  // A journaled message (in journal order). QoS 0 messages (mid 0) are never resent.
  void Remember(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload);

  // The intake link connected. Only the first connect counts: without a
  // session present there is nothing to resend.
  void Connected(bool session_present);

  // True if this delivery is the resend of a remembered message; that one
  // is then forgotten. False from the first delivery that is not a resend on.
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
  bool done_ = false;          // past the resends
  bool connected_ = false;     // Connected() was called
  bool matched_ = false;       // a resend was found: the next must be the next remembered
  std::deque<Entry> entries_;  // the newest `window_`, oldest first
};

}  // namespace seqrelay
