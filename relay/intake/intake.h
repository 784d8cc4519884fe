// Intake rules: what the relay does with a raw message the broker delivered
// (PROTOCOL.md section 1). Pure logic; called on the intake network thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace seqrelay {

enum class Verdict {
  kAccept,           // sequence it
  kOwnTopic,         // under the seq or control prefix: never sequenced
  kRetained,         // a replay of stored state, not a new message
  kTopicTooLong,     // more than 255 bytes: refused, logged, counted
  kPayloadTooLarge,  // more than --max-payload: refused, logged, counted
};

struct IntakeRules {
  std::string seq_prefix;
  std::string control_prefix;
  std::size_t max_payload = 0;

  Verdict Classify(std::string_view topic, std::size_t payload_size, bool retain) const;
};

const char* VerdictName(Verdict v);

// A publisher's message id (PROTOCOL.md 5.1): the MQTT v5 user property
// `msg-id`, 1 to 128 bytes of valid UTF-8. An invalid one is ignored (the
// message is sequenced as if it had none) and counted.
inline constexpr std::string_view kMsgIdProperty = "msg-id";
inline constexpr std::size_t kMaxMsgIdBytes = 128;
enum class MsgIdVerdict { kValid, kEmpty, kTooLong, kNotUtf8 };
MsgIdVerdict CheckMsgId(std::string_view id);
const char* MsgIdVerdictName(MsgIdVerdict v);

}  // namespace seqrelay
