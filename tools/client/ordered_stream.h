// OrderedStream: the client module's per-topic state (the paper's client
// side): which SEQ comes next, what is held back, what is missing.
//
// One per topic id. Frames are offered in whatever order they arrive (live
// frames, replayed frames, duplicates); the stream says what to deliver now.
//  - ordered topics (flag 1): delivered strictly in SEQ order; a frame after
//    a gap is held until the gap fills or is given up;
//  - immediate topics (flag 0): delivered at once; a frame that fills a gap
//    is delivered when it comes and marked late.
// Either way each SEQ is delivered at most once: duplicates are dropped.
//
// Pure logic, not thread-safe: the client guards it with its own mutex.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace seqclient {

struct Delivery {
  uint64_t seq = 0;
  std::string payload;
  bool late = false;  // filled a gap after later frames were shown (immediate topics)
};

struct Gap {
  uint64_t from = 0;  // first missing SEQ
  uint64_t to = 0;    // last missing SEQ (the one before the next frame held or seen)
};

class OrderedStream {
 public:
  // `next` is the first SEQ this client wants; 0 = start at the first frame seen.
  explicit OrderedStream(uint64_t next = 0) : next_(next) {}

  // Offers one frame. Returns what can be delivered now, in delivery order.
  // `duplicate` is set when the frame was already delivered or held.
  std::vector<Delivery> Offer(uint64_t seq, bool ordered, std::string payload, bool* duplicate = nullptr);

  // The oldest open gap, if any frame above next() has been seen.
  std::optional<Gap> gap() const;

  // Gives up on every SEQ up to and including `to` that has not come: they
  // will not be delivered. Returns what becomes deliverable (held frames).
  std::vector<Delivery> GiveUp(uint64_t to);

  // The runs of SEQs from `from` to `to` (UINT64_MAX: no end) that are not
  // held (nor, immediate, shown), ascending. SEQs below next() count as
  // missing here: callers start at next() where what was passed is not wanted.
  std::vector<Gap> Missing(uint64_t from, uint64_t to) const;

  // Forgets every frame held with a SEQ from `from` to `to` that came by the
  // moment arrivals() was `by` (ordered: never delivered; immediate:
  // delivered, its SEQ free again), as frames the relay never stored.
  // Returns their SEQs, ascending.
  std::vector<uint64_t> Forget(uint64_t from, uint64_t to, uint64_t by = UINT64_MAX);
  // Frames held so far, ever: a moment for Forget().
  uint64_t arrivals() const { return arrivals_; }

  // Immediate topics: the runs of SEQs above next() shown already, ascending
  // (a state file keeps them, so that a restart does not show them again).
  std::vector<Gap> Shown() const;
  // Takes `seq` (above next(), which must be set) for one shown already, as
  // by an earlier run: a frame of it is a duplicate, and a gap below it
  // filled later is late.
  void MarkShown(uint64_t seq);

  // The next SEQ to deliver in order; every SEQ below it was delivered or
  // given up. 0 = nothing seen yet.
  uint64_t next() const { return next_; }
  // The highest SEQ delivered so far (0 = none).
  uint64_t last_delivered() const { return last_delivered_; }

  // What the frames above next() hold: their payloads (held back, ordered)
  // and kEntryBytes each for the record (an immediate topic's shown SEQs
  // too). It grows while a gap stays open, and falls as it fills or is
  // given up.
  static constexpr uint64_t kEntryBytes = 96;
  uint64_t held_bytes() const { return held_bytes_; }

  // Drops held frames (ordered: never delivered), the newest but one first,
  // while held_bytes() is over `bound`. The newest stays, so that those
  // dropped are missing below it (gap(), Missing()): asked for again in
  // turn, as any gap. An immediate topic's records are never dropped (their
  // frames were shown: a record dropped would let one be shown again).
  // Returns the SEQs dropped, ascending.
  std::vector<uint64_t> Shed(uint64_t bound);

 private:
  std::vector<Delivery> Drain();

  uint64_t next_ = 0;
  uint64_t last_delivered_ = 0;
  // Above next_: frames held back (ordered) or already delivered (immediate,
  // payload empty and `delivered` true).
  struct Above {
    std::string payload;
    bool delivered = false;
    uint64_t arrival = 0;  // arrivals_ once it came
    uint64_t bytes = 0;    // its share of held_bytes_
  };
  // Adds or erases an entry of above_, and its bytes to or from held_bytes_.
  void Hold(uint64_t seq, std::string payload, bool delivered);
  std::map<uint64_t, Above>::iterator Erase(std::map<uint64_t, Above>::iterator it);

  std::map<uint64_t, Above> above_;
  uint64_t arrivals_ = 0;
  uint64_t held_bytes_ = 0;
};

}  // namespace seqclient
