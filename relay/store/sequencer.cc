#include "store/sequencer.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/topic_filter.h"

namespace seqrelay {

Sequencer::Sequencer(std::string seq_prefix, std::vector<std::string> immediate)
    : seq_prefix_(std::move(seq_prefix)), immediate_(std::move(immediate)) {}

Sequencer::Topic* Sequencer::Find(std::string_view raw_topic) {
  auto it = topics_.find(raw_topic);
  return it == topics_.end() ? nullptr : it->second.get();
}

Sequencer::Topic& Sequencer::Add(std::string_view raw_topic, uint32_t id, uint64_t last_seq) {
  if (Topic* known = Find(raw_topic)) {
    // Re-seeding a known topic updates it in place: its key views into it.
    known->id = id;
    known->last_seq = last_seq;
    known->last_used = ++use_clock_;
    return *known;
  }
  auto topic = std::make_unique<Topic>();
  topic->id = id;
  topic->last_seq = last_seq;
  topic->ordering = OrderingOf(raw_topic);
  topic->seq_topic = fmt::format("{}/{}", seq_prefix_, raw_topic);
  topic->raw_offset = seq_prefix_.size() + 1;
  topic->last_used = ++use_clock_;
  Topic& ref = *topic;
  topics_.emplace(ref.raw(), std::move(topic));
  return ref;
}

Result<uint64_t> Sequencer::NextSeq(Topic& topic) {
  if (topic.last_seq >= kMaxSeq) {
    return Status::Error(fmt::format("topic '{}' has used every SEQ up to 2^40-1", topic.raw()));
  }
  topic.last_used = ++use_clock_;
  return ++topic.last_seq;
}

std::size_t Sequencer::EvictIdle(std::size_t max_topics) {
  if (topics_.size() <= max_topics) return 0;
  const std::size_t keep = max_topics - max_topics / 10;
  std::vector<uint64_t> ages;
  ages.reserve(topics_.size());
  for (const auto& [name, topic] : topics_) ages.push_back(topic->last_used);
  // The use clock never repeats, so exactly the `evict` oldest are below the cut.
  const std::size_t evict = topics_.size() - keep;
  std::nth_element(ages.begin(), ages.begin() + static_cast<std::ptrdiff_t>(evict), ages.end());
  const uint64_t cut = ages[evict];
  std::erase_if(topics_, [cut](const auto& entry) { return entry.second->last_used < cut; });
  return evict;
}

Ordering Sequencer::OrderingOf(std::string_view raw_topic) const {
  for (const auto& filter : immediate_) {
    if (TopicMatches(filter, raw_topic)) return Ordering::kImmediate;
  }
  return Ordering::kOrdered;
}

}  // namespace seqrelay
