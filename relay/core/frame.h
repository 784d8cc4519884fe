// The sequenced frame (PROTOCOL.md section 2): the payload of every message on
// seq/T and relay/replay/R.
//
//   offset 0  ID    4 bytes  uint32 big-endian, topic id
//   offset 4  SEQ   5 bytes  uint40 big-endian, sequence number within T
//   offset 9  QOS   1 byte   ordering flag: 1 ordered, 0 immediate
//   offset 10 message        the publisher's payload, unchanged
//
// The writer (EncodeHeader) and the reader (DecodeFrame) sit side by side so
// that one cannot change without the other. Pure functions; any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "core/status.h"

namespace seqrelay {

inline constexpr std::size_t kFrameHeaderSize = 10;
inline constexpr uint64_t kMaxSeq = (uint64_t{1} << 40) - 1;

enum class Ordering : uint8_t { kImmediate = 0, kOrdered = 1 };

struct FrameHeader {
  uint32_t topic_id = 0;
  uint64_t seq = 0;  // 1..kMaxSeq
  Ordering ordering = Ordering::kOrdered;
};

// Writes the 10-byte header into out[0..10). Fails (writes nothing) if SEQ is
// 0 or does not fit in 40 bits, or if out is shorter than the header.
Status EncodeHeader(const FrameHeader& header, std::span<uint8_t> out);

// A whole frame: header followed by the payload.
Result<std::string> EncodeFrame(const FrameHeader& header, std::span<const uint8_t> payload);

struct FrameView {
  FrameHeader header;
  std::span<const uint8_t> payload;  // points into the decoded buffer
};

// Fails on a frame shorter than 10 bytes, SEQ 0, or a flag other than 0 or 1.
Result<FrameView> DecodeFrame(std::span<const uint8_t> frame);

}  // namespace seqrelay
