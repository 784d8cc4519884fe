#include "intake/intake.h"

#include "core/topic_filter.h"

namespace seqrelay {

Verdict IntakeRules::Classify(std::string_view topic, std::size_t payload_size, bool retain) const {
  if (IsUnderPrefix(topic, seq_prefix) || IsUnderPrefix(topic, control_prefix)) return Verdict::kOwnTopic;
  if (retain) return Verdict::kRetained;
  if (topic.size() > kMaxTopicBytes) return Verdict::kTopicTooLong;
  if (payload_size > max_payload) return Verdict::kPayloadTooLarge;
  return Verdict::kAccept;
}

const char* VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kAccept: return "accepted";
    case Verdict::kOwnTopic: return "own topic";
    case Verdict::kRetained: return "retained replay";
    case Verdict::kTopicTooLong: return "topic over 255 bytes";
    case Verdict::kPayloadTooLarge: return "payload over --max-payload";
  }
  return "?";
}

}  // namespace seqrelay
