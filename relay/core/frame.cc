#include "core/frame.h"

#include <fmt/format.h>

#include <cstring>

namespace seqrelay {

Status EncodeHeader(const FrameHeader& h, std::span<uint8_t> out) {
  if (out.size() < kFrameHeaderSize) return Status::Error("frame buffer shorter than the 10-byte header");
  if (h.seq == 0 || h.seq > kMaxSeq) return Status::Error(fmt::format("SEQ {} outside 1..2^40-1", h.seq));
  out[0] = static_cast<uint8_t>(h.topic_id >> 24);
  out[1] = static_cast<uint8_t>(h.topic_id >> 16);
  out[2] = static_cast<uint8_t>(h.topic_id >> 8);
  out[3] = static_cast<uint8_t>(h.topic_id);
  for (int i = 0; i < 5; ++i) out[4 + i] = static_cast<uint8_t>(h.seq >> (8 * (4 - i)));
  out[9] = static_cast<uint8_t>(h.ordering);
  return Status::Ok();
}

Result<std::string> EncodeFrame(const FrameHeader& header, std::span<const uint8_t> payload) {
  std::string frame(kFrameHeaderSize + payload.size(), '\0');
  auto* bytes = reinterpret_cast<uint8_t*>(frame.data());
  if (Status s = EncodeHeader(header, {bytes, kFrameHeaderSize}); !s.ok()) return s;
  if (!payload.empty()) std::memcpy(bytes + kFrameHeaderSize, payload.data(), payload.size());
  return frame;
}

Result<FrameView> DecodeFrame(std::span<const uint8_t> f) {
  if (f.size() < kFrameHeaderSize) {
    return Status::Error(fmt::format("frame of {} bytes is shorter than the 10-byte header", f.size()));
  }
  FrameView v;
  v.header.topic_id = (uint32_t{f[0]} << 24) | (uint32_t{f[1]} << 16) | (uint32_t{f[2]} << 8) | f[3];
  uint64_t seq = 0;
  for (int i = 0; i < 5; ++i) seq = (seq << 8) | f[4 + i];
  if (seq == 0) return Status::Error("frame has SEQ 0");
  v.header.seq = seq;
  if (f[9] > 1) return Status::Error(fmt::format("frame has ordering flag {}, expected 0 or 1", f[9]));
  v.header.ordering = static_cast<Ordering>(f[9]);
  v.payload = f.subspan(kFrameHeaderSize);
  return v;
}

}  // namespace seqrelay
