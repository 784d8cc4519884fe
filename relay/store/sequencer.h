// Sequencer: the per-topic numbering state of the relay.
//
// For every raw topic T seen by this process it holds the topic id, the last
// SEQ given out and the ordering flag, and it hands out the global row index
// (MSG.idx) that orders all rows in the order the relay committed them.
//
// Invariants: SEQ of T starts at 1 and grows by exactly 1 per message; idx
// grows by exactly 1 per message across all topics. Both continue from the
// database after a restart: the writer seeds them with Add() and SetLastIdx()
// from what is committed. Owned and used by the writer thread only.
//
// The topics form a cache of the database, bounded by EvictIdle(): a topic
// not used for longest is forgotten (its last SEQ is committed; the writer
// seeds it again from the database when it comes back). Evict only between
// batches, when every SEQ given out is committed and no Topic* is held.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/frame.h"
#include "core/status.h"

namespace seqrelay {

class Sequencer {
 public:
  struct Topic {
    uint32_t id = 0;
    uint64_t last_seq = 0;  // last SEQ given out; 0 = none yet
    Ordering ordering = Ordering::kOrdered;
    std::string seq_topic;  // "<seq prefix>/T": the topic frames go out on
    std::string_view raw() const { return std::string_view(seq_topic).substr(raw_offset); }
    std::size_t raw_offset = 0;
    uint64_t last_used = 0;  // the sequencer's use clock at its last NextSeq or Add
  };

  // `immediate` lists the filters whose topics get ordering flag 0.
  Sequencer(std::string seq_prefix, std::vector<std::string> immediate);

  // nullptr if T has not been added yet.
  Topic* Find(std::string_view raw_topic);

  // Adds T with its id and the last SEQ already committed for it; for a
  // known T, sets both.
  Topic& Add(std::string_view raw_topic, uint32_t id, uint64_t last_seq);

  // The next SEQ of the topic. Fails once SEQ would pass 2^40-1.
  Result<uint64_t> NextSeq(Topic& topic);

  uint64_t NextIdx() { return ++last_idx_; }
  uint64_t last_idx() const { return last_idx_; }
  void SetLastIdx(uint64_t idx) { last_idx_ = idx; }

  std::size_t topic_count() const { return topics_.size(); }
  // If more than `max_topics` are held, forgets the least recently used
  // down to 90% of it (so that eviction runs once per many new topics, not
  // per topic). Returns how many were forgotten.
  std::size_t EvictIdle(std::size_t max_topics);
  Ordering OrderingOf(std::string_view raw_topic) const;

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  const std::string seq_prefix_;
  const std::vector<std::string> immediate_;
  // Keys view into the Topic they map to (Topic::raw()), so each topic name is
  // stored once; the unique_ptr keeps that storage still across rehashes.
  std::unordered_map<std::string_view, std::unique_ptr<Topic>, Hash, std::equal_to<>> topics_;
  uint64_t last_idx_ = 0;  // last MSG.idx given out; 0 = none
  uint64_t use_clock_ = 0;  // counts NextSeq and Add calls: the age of Topic::last_used
};

}  // namespace seqrelay
