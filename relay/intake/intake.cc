#include "intake/intake.h"

#include "core/topic_filter.h"
#include "core/utf8.h"

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

MsgIdVerdict CheckMsgId(std::string_view id) {
  if (id.empty()) return MsgIdVerdict::kEmpty;
  if (id.size() > kMaxMsgIdBytes) return MsgIdVerdict::kTooLong;
  if (!IsValidUtf8(id)) return MsgIdVerdict::kNotUtf8;
  return MsgIdVerdict::kValid;
}

const char* MsgIdVerdictName(MsgIdVerdict v) {
  switch (v) {
    case MsgIdVerdict::kValid: return "valid";
    case MsgIdVerdict::kEmpty: return "empty";
    case MsgIdVerdict::kTooLong: return "over 128 bytes";
    case MsgIdVerdict::kNotUtf8: return "not UTF-8";
  }
  return "?";
}

}  // namespace seqrelay
