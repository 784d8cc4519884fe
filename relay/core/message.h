// Message: one raw MQTT message on its way through the relay.
//
// The intake thread creates it with the payload already placed after a
// 10-byte gap; the writer thread fills that gap with the frame header once it
// has a SEQ. So the frame is built once, in place, and the same bytes are
// stored (payload part) and published (whole frame) without another copy.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/frame.h"
#include "core/session_no.h"

namespace seqrelay {

struct Message {
  Message(std::string_view raw_topic, const void* payload, std::size_t size)
      : topic(raw_topic), frame(kFrameHeaderSize + size) {
    if (size > 0) std::memcpy(frame.data() + kFrameHeaderSize, payload, size);
  }

  std::span<const uint8_t> payload() const { return std::span(frame).subspan(kFrameHeaderSize); }
  // What it holds, for --buffer-max-bytes and a batch's size (the queue
  // counts it at push and pop: nothing here changes while it is queued).
  std::size_t bytes() const { return topic.size() + frame.size() + msg_id.size(); }

  std::string topic;           // raw topic T, as received
  std::vector<uint8_t> frame;  // header (filled by the writer) + payload
  uint64_t idx = 0;            // MSG.idx, set by the writer
  uint64_t seq = 0;            // SEQ within T, set by the writer
  uint64_t journal_end = 0;    // journal position after this message; 0 = not journaled
  std::string msg_id;          // the publisher's msg-id (PROTOCOL.md 5.1), valid; empty if none
  // Its number among this process's deliveries (RedeliveryFilter::Remember;
  // 0: QoS 0, or not live from the intake): the writer publishes the
  // newest one committed (Relay::committed_delivery_).
  uint64_t delivery = 0;
  // Taken among the first deliveries after the shard's session resumed
  // (maybe the resend of a message another relay journaled): the commit
  // records its mid and Digest in TAKEN.
  uint16_t resumed_mid = 0;
  // The SHARD.SESSION_NO of the MQTT session it was delivered in, as the
  // intake knew it (TAKEN.SESSION_NO).
  SessionNo session_no = 0;
  // The MQTT packet id it was delivered under (0: QoS 0, or not live from
  // the intake), stored as MSG.MID; the writer clears it for a message of
  // another session than the one it last marked (Relay::MarkSession).
  uint16_t mid = 0;
  // The MQTT v5 Subscription Identifier it was delivered under (0: none),
  // stored as MSG.SUB_TAG: a resend carries its first delivery's.
  uint32_t sub_tag = 0;
  // Which MQTT session of this process's intake delivered it: counts the
  // connects that found no session kept (0 until the first such one);
  // the shard's number for the session is session_no.
  uint32_t intake_session = 0;
  // Nonzero (the intake's connect count) for a delivery that came before
  // the SUBACK of a connect that resumed a kept session: perhaps
  // mosquitto's resend of a message committed already (CommittedResends).
  uint32_t resume_connect = 0;
  // Nonzero while the intake holds this delivery's PUBACK until the writer
  // has committed it or found it committed (Relay::OnIntake): the intake's
  // count of such deliveries, which the writer reports back.
  uint64_t verdict_ticket = 0;
  // Handed over by a relay's journal (PENDING's key): the commit that stores
  // it deletes that row. Empty otherwise.
  std::string pending_journal;
  uint64_t pending_end = 0;
  std::chrono::steady_clock::time_point received{};  // arrival on the intake link; zero if from the journal
};

// A digest of a message's topic and payload (64-bit FNV-1a), the same in
// every process and build: with the MQTT packet id it recognises a
// message across relays (TAKEN, PENDING).
inline uint64_t Digest(std::string_view topic, std::span<const uint8_t> payload) {
  uint64_t h = 0xcbf29ce484222325u;
  auto mix = [&h](uint8_t byte) {
    h ^= byte;
    h *= 0x100000001b3u;
  };
  for (char c : topic) mix(static_cast<uint8_t>(c));
  mix(0);
  for (uint8_t b : payload) mix(b);
  return h;
}

}  // namespace seqrelay
