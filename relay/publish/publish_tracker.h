// PublishTracker: which committed rows the broker has acknowledged on seq/T.
//
// Rows are published in MSG.idx order. The broker acknowledges each publish
// by its MQTT message id (mid); acknowledgements may come out of order and
// mids repeat (16 bits). The tracker maps mid -> idx and keeps the
// watermark: the highest idx such that it and every row before it has been
// acknowledged. The watermark is saved with each commit as
// RELAY_STATE.PUBLISHED_IDX; a restarted relay publishes again every row
// above it (clients drop the duplicates by SEQ).
//
// Pure logic, not thread-safe: the relay guards it with the publish mutex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <unordered_map>

namespace seqrelay {

class PublishTracker {
 public:
  // Rows up to and including `watermark` count as acknowledged already.
  explicit PublishTracker(uint64_t watermark = 0) : watermark_(watermark), last_sent_(watermark) {}

  // Row `idx` went out as message `mid`. Rows must be sent in idx order; an
  // idx that skips ahead (rows deleted from MSG) counts the skipped ones as
  // acknowledged. Sending an idx at or below the last one sent is ignored.
  void Sent(uint64_t idx, int mid);

  // Row `idx` went out with nothing to wait for (MQTT QoS 0: the broker
  // never acknowledges it, and libmosquitto drops such a publish without a
  // callback when the connection breaks). It counts as acknowledged, so the
  // watermark never waits for it. Same ordering rule as Sent().
  void SentUnconfirmed(uint64_t idx);

  // Row `idx`, sent before and not acknowledged yet, went out again as
  // message `mid` (republished after a reconnect): an acknowledgement of
  // either message counts. Ignored for a row acknowledged already or never
  // sent.
  void Resent(uint64_t idx, int mid);

  // The broker acknowledged `mid`. Unknown mids, and a second
  // acknowledgement of a row, are ignored.
  void Acked(int mid);

  uint64_t watermark() const { return watermark_; }
  // Whether the broker has acknowledged row `idx` (a row at or below the
  // watermark, or one above it acknowledged out of order).
  bool Acknowledged(uint64_t idx) const;
  // Rows above this one were not resent since they were sent: where a
  // republish after a reconnect soon after another starts (see
  // Relay::RepublishUnconfirmed).
  uint64_t unresent_after() const { return resent_through_ > watermark_ ? resent_through_ : watermark_; }
  uint64_t last_sent() const { return last_sent_; }
  // Rows sent and not acknowledged yet.
  std::size_t in_flight() const { return unacked_.size(); }

 private:
  // Records row `idx` as sent; false if it is not past the last one sent.
  bool Append(uint64_t idx, bool acked);
  // Where row `idx` is in unacked_, or unacked_.end().
  std::deque<uint64_t>::const_iterator Find(uint64_t idx) const;
  void SetWatermark() { watermark_ = unacked_.empty() ? last_sent_ : unacked_.front() - 1; }

  // Only the rows not acknowledged are kept: every other idx up to the last
  // sent counts as acknowledged, a row the broker took as well as an idx
  // skipped (rows this process publishes no frame of). So a skip costs
  // nothing however far it goes, and the memory is bounded by the frames in
  // flight, however long an old one waits for its PUBACK while newer ones
  // get theirs.
  uint64_t watermark_;                         // every idx <= it is acknowledged
  uint64_t last_sent_;                         // the highest idx sent (or the watermark)
  std::deque<uint64_t> unacked_;               // rows sent and not acknowledged, ascending
  uint64_t resent_through_ = 0;                // the highest idx resent
  // Mids awaiting acknowledgement. A row resent has two; the one that is
  // never acknowledged (lost with its connection) stays until its mid is
  // used again.
  std::unordered_map<int, uint64_t> by_mid_;
};

}  // namespace seqrelay
