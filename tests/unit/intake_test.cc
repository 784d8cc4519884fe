// Tests of the intake rules (PROTOCOL.md section 1): own topics, retained
// replays, the 255-byte topic limit and --max-payload.
#include "intake/intake.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace seqrelay {
namespace {

constexpr std::size_t kMaxPayload = 1000;

IntakeRules Rules() { return IntakeRules{"seq", "relay", kMaxPayload}; }

struct ClassifyCase {
  const char* rule;
  std::string topic;
  std::size_t payload_size;
  bool retain;
  Verdict verdict;
};

const std::vector<ClassifyCase> kClassifyCases = {
    {"plain_topic_is_accepted", "chat/room1", 10, false, Verdict::kAccept},
    {"empty_payload_is_accepted", "chat/room1", 0, false, Verdict::kAccept},
    {"seq_prefix_itself_is_own", "seq", 10, false, Verdict::kOwnTopic},
    {"under_seq_prefix_is_own", "seq/x", 10, false, Verdict::kOwnTopic},
    {"deep_under_seq_prefix_is_own", "seq/chat/room1", 10, false, Verdict::kOwnTopic},
    {"control_prefix_itself_is_own", "relay", 10, false, Verdict::kOwnTopic},
    {"retransmit_request_is_own", "relay/retransmit/c", 10, false, Verdict::kOwnTopic},
    {"stats_topic_is_own", "relay/stats", 10, false, Verdict::kOwnTopic},
    {"name_starting_with_seq_is_not_own", "seqx", 10, false, Verdict::kAccept},
    {"name_starting_with_relay_is_not_own", "relayed/x", 10, false, Verdict::kAccept},
    {"seq_as_a_later_level_is_not_own", "chat/seq", 10, false, Verdict::kAccept},
    {"prefix_case_matters", "SEQ/x", 10, false, Verdict::kAccept},
    {"retained_replay_is_not_sequenced", "chat/room1", 10, true, Verdict::kRetained},
    {"own_topic_wins_over_retained", "seq/x", 10, true, Verdict::kOwnTopic},
    {"own_control_topic_wins_over_retained", "relay/stats", 10, true, Verdict::kOwnTopic},
    {"topic_of_255_bytes_is_accepted", std::string(255, 't'), 10, false, Verdict::kAccept},
    {"topic_of_256_bytes_is_too_long", std::string(256, 't'), 10, false, Verdict::kTopicTooLong},
    {"topic_limit_counts_bytes_not_characters",
     [] {
       std::string s;
       for (int i = 0; i < 128; ++i) s += "\xC3\xA9";  // 128 characters, 256 bytes
       return s;
     }(),
     10, false, Verdict::kTopicTooLong},
    {"payload_equal_to_max_is_accepted", "chat/room1", kMaxPayload, false, Verdict::kAccept},
    {"payload_one_over_max_is_too_large", "chat/room1", kMaxPayload + 1, false, Verdict::kPayloadTooLarge},
    {"retained_wins_over_payload_too_large", "chat/room1", kMaxPayload + 1, true, Verdict::kRetained},
    {"long_topic_wins_over_payload_too_large", std::string(256, 't'), kMaxPayload + 1, false, Verdict::kTopicTooLong},
};

TEST(IntakeTest, Classify) {
  const IntakeRules rules = Rules();
  for (const auto& c : kClassifyCases) {
    SCOPED_TRACE(c.rule);
    EXPECT_EQ(rules.Classify(c.topic, c.payload_size, c.retain), c.verdict)
        << "got " << VerdictName(rules.Classify(c.topic, c.payload_size, c.retain)) << ", want "
        << VerdictName(c.verdict);
  }
}

TEST(IntakeTest, CustomPrefixesReplaceTheDefaults) {
  const IntakeRules rules{"out", "ctl/relay", kMaxPayload};
  EXPECT_EQ(rules.Classify("out/chat", 1, false), Verdict::kOwnTopic);
  EXPECT_EQ(rules.Classify("ctl/relay/retransmit/c", 1, false), Verdict::kOwnTopic);
  EXPECT_EQ(rules.Classify("ctl/other", 1, false), Verdict::kAccept);
  EXPECT_EQ(rules.Classify("seq/chat", 1, false), Verdict::kAccept);
  EXPECT_EQ(rules.Classify("relay/stats", 1, false), Verdict::kAccept);
}

TEST(IntakeTest, MaxPayloadZeroAcceptsOnlyEmptyPayloads) {
  const IntakeRules rules{"seq", "relay", 0};
  EXPECT_EQ(rules.Classify("a", 0, false), Verdict::kAccept);
  EXPECT_EQ(rules.Classify("a", 1, false), Verdict::kPayloadTooLarge);
}

TEST(IntakeTest, VerdictNamesSayWhatHappened) {
  EXPECT_STREQ(VerdictName(Verdict::kAccept), "accepted");
  EXPECT_STREQ(VerdictName(Verdict::kOwnTopic), "own topic");
  EXPECT_STREQ(VerdictName(Verdict::kRetained), "retained replay");
  EXPECT_STREQ(VerdictName(Verdict::kTopicTooLong), "topic over 255 bytes");
  EXPECT_STREQ(VerdictName(Verdict::kPayloadTooLarge), "payload over --max-payload");
}

}  // namespace
}  // namespace seqrelay

namespace seqrelay {
namespace {

// PROTOCOL.md 5.1: a msg-id is 1 to 128 bytes of valid UTF-8.
struct MsgIdCase {
  const char* rule;
  std::string id;
  MsgIdVerdict verdict;
};

const std::vector<MsgIdCase> kMsgIdCases = {
    {"one_byte_is_valid", "a", MsgIdVerdict::kValid},
    {"a_uuid_is_valid", "0f8fad5b-d9cb-469f-a165-70867728950e", MsgIdVerdict::kValid},
    {"exactly_128_bytes_is_valid", std::string(128, 'x'), MsgIdVerdict::kValid},
    {"multibyte_characters_are_valid", "caf\xc3\xa9-\xe2\x82\xac-\xf0\x9f\x98\x80", MsgIdVerdict::kValid},
    {"empty_is_refused", "", MsgIdVerdict::kEmpty},
    {"129_bytes_is_too_long", std::string(129, 'x'), MsgIdVerdict::kTooLong},
    {"64_two_byte_characters_fit", [] {
       std::string s;
       for (int i = 0; i < 64; ++i) s += "\xc3\xa9";
       return s;
     }(), MsgIdVerdict::kValid},
    {"65_two_byte_characters_are_too_long", [] {
       std::string s;
       for (int i = 0; i < 65; ++i) s += "\xc3\xa9";
       return s;
     }(), MsgIdVerdict::kTooLong},
    {"a_lone_continuation_byte_is_not_utf8", "a\x80", MsgIdVerdict::kNotUtf8},
    {"a_truncated_sequence_is_not_utf8", "a\xe2\x82", MsgIdVerdict::kNotUtf8},
    {"an_overlong_slash_is_not_utf8", "\xc0\xaf", MsgIdVerdict::kNotUtf8},
    {"an_overlong_three_byte_form_is_not_utf8", "\xe0\x80\xaf", MsgIdVerdict::kNotUtf8},
    {"a_surrogate_is_not_utf8", "\xed\xa0\x80", MsgIdVerdict::kNotUtf8},
    {"past_u10ffff_is_not_utf8", "\xf4\x90\x80\x80", MsgIdVerdict::kNotUtf8},
    {"byte_ff_is_not_utf8", "\xff", MsgIdVerdict::kNotUtf8},
    {"a_nul_byte_is_valid_utf8", std::string("a\0b", 3), MsgIdVerdict::kValid},
};

class MsgIdTest : public ::testing::TestWithParam<MsgIdCase> {};

TEST_P(MsgIdTest, CheckMsgIdFollowsTheProtocol) {
  EXPECT_EQ(CheckMsgId(GetParam().id), GetParam().verdict) << MsgIdVerdictName(CheckMsgId(GetParam().id));
}

INSTANTIATE_TEST_SUITE_P(Rules, MsgIdTest, ::testing::ValuesIn(kMsgIdCases),
                         [](const auto& info) { return std::string(info.param.rule); });

}  // namespace
}  // namespace seqrelay
