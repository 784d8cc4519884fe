// Tests of retransmit requests and their status replies (PROTOCOL.md
// section 3): request parsing and validation with the exact error texts and
// the fields an error still echoes, the status object, and which reply
// topics a requester may use.
#include "replay/retransmit.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

namespace seqrelay {
namespace {

using nlohmann::json;

// ---------------------------------------------------------------------------
// ParseRetransmitRequest
// ---------------------------------------------------------------------------

// What a request is expected to yield: the fields read and the error text
// (empty: a valid request).
struct ParseCase {
  const char* rule;
  std::string request;
  std::string error;
  std::optional<std::string> topic;
  std::optional<uint32_t> id;
  std::optional<uint64_t> from;
  std::optional<uint64_t> to;
};

void ExpectParsed(const ParseCase& c) {
  SCOPED_TRACE(c.rule);
  SCOPED_TRACE("request: " + c.request);
  const ParsedRequest r = ParseRetransmitRequest(c.request);
  EXPECT_EQ(r.ok(), c.error.empty());
  EXPECT_EQ(r.error, c.error);
  EXPECT_EQ(r.fields.topic, c.topic);
  EXPECT_EQ(r.fields.id, c.id);
  EXPECT_EQ(r.fields.from, c.from);
  EXPECT_EQ(r.fields.to, c.to);
}

constexpr std::nullopt_t kNone = std::nullopt;

const std::vector<ParseCase> kValidRequests = {
    {"topic_and_from_means_up_to_the_newest", R"({"topic":"chat/room1","from":17})", "", "chat/room1", kNone, 17,
     kNone},
    {"protocol_example_topic_from_to", R"({"topic": "chat/room1", "from": 17, "to": 25})", "", "chat/room1", kNone,
     17, 25},
    {"id_may_stand_for_the_topic", R"({"id":7,"from":17})", "", kNone, 7, 17, kNone},
    {"id_from_to", R"({"id":7,"from":17,"to":25})", "", kNone, 7, 17, 25},
    {"id_1_is_the_smallest", R"({"id":1,"from":1})", "", kNone, 1, 1, kNone},
    {"id_4294967295_is_the_largest", R"({"id":4294967295,"from":1})", "", kNone, 4294967295u, 1, kNone},
    {"from_1_without_to_is_the_history", R"({"topic":"chat/room1","from":1})", "", "chat/room1", kNone, 1, kNone},
    {"to_equal_to_from_is_one_message", R"({"topic":"a","from":5,"to":5})", "", "a", kNone, 5, 5},
    {"from_uint64_max_is_an_integer", R"({"topic":"a","from":18446744073709551615})", "", "a", kNone, UINT64_MAX,
     kNone},
    {"unknown_extra_fields_are_ignored",
     R"({"topic":"a","from":2,"to":3,"reason":"gap","n":[1,2],"o":{"x":null},"f":1.5,"b":true})", "", "a", kNone, 2,
     3},
    {"field_order_does_not_matter", R"({"to":9,"from":3,"topic":"a"})", "", "a", kNone, 3, 9},
    {"whitespace_around_the_object_is_json", " \n\t{\"topic\":\"a\",\"from\":1}\r\n ", "", "a", kNone, 1, kNone},
    {"topic_escapes_are_decoded_to_utf8_bytes", R"({"topic":"caf\u00e9/\"q\"","from":1})", "",
     "caf\xC3\xA9/\"q\"", kNone, 1, kNone},
    {"topic_is_kept_byte_for_byte_trailing_space", R"({"topic":"chat/A ","from":1})", "", "chat/A ", kNone, 1,
     kNone},
    {"raw_utf8_topic_is_kept", "{\"topic\":\"\xC3\xA9\",\"from\":1}", "", "\xC3\xA9", kNone, 1, kNone},
};

TEST(RetransmitParseTest, ValidRequests) {
  for (const auto& c : kValidRequests) ExpectParsed(c);
}

const char kNotJson[] = "request is not JSON";
const char kNotObject[] = "request is not a JSON object";
const char kNeither[] = "give \"topic\" or \"id\"";
const char kBoth[] = "give either \"topic\" or \"id\", not both";
const char kBadTopic[] = "\"topic\" must be a non-empty string";
const char kBadId[] = "\"id\" must be an integer from 1 to 4294967295";
const char kNoFrom[] = "\"from\" is required";
const char kBadFrom[] = "\"from\" must be an integer >= 1";
const char kBadTo[] = "\"to\" must be an integer >= 1";
const char kToBeforeFrom[] = "\"to\" is less than \"from\"";

const std::vector<ParseCase> kBadRequests = {
    // Not JSON: nothing is read.
    {"empty_payload_is_not_json", "", kNotJson, kNone, kNone, kNone, kNone},
    {"plain_text_is_not_json", "chat/room1 17", kNotJson, kNone, kNone, kNone, kNone},
    {"truncated_object_is_not_json", R"({"topic":"a","from":1)", kNotJson, kNone, kNone, kNone, kNone},
    {"trailing_garbage_is_not_json", R"({"topic":"a","from":1} x)", kNotJson, kNone, kNone, kNone, kNone},
    {"two_objects_are_not_json", R"({"topic":"a","from":1}{"topic":"b","from":1})", kNotJson, kNone, kNone, kNone,
     kNone},
    {"single_quotes_are_not_json", "{'topic':'a','from':1}", kNotJson, kNone, kNone, kNone, kNone},
    {"invalid_utf8_is_not_json", "{\"topic\":\"a\xFF\",\"from\":1}", kNotJson, kNone, kNone, kNone, kNone},

    // Not an object.
    {"array_is_not_an_object", R"([{"topic":"a","from":1}])", kNotObject, kNone, kNone, kNone, kNone},
    {"empty_array_is_not_an_object", "[]", kNotObject, kNone, kNone, kNone, kNone},
    {"string_is_not_an_object", R"("chat/room1")", kNotObject, kNone, kNone, kNone, kNone},
    {"number_is_not_an_object", "17", kNotObject, kNone, kNone, kNone, kNone},
    {"null_is_not_an_object", "null", kNotObject, kNone, kNone, kNone, kNone},
    {"bool_is_not_an_object", "true", kNotObject, kNone, kNone, kNone, kNone},

    // Exactly one of topic and id.
    {"neither_topic_nor_id", R"({"from":1,"to":2})", kNeither, kNone, kNone, 1, 2},
    {"empty_object_has_neither_topic_nor_id", "{}", kNeither, kNone, kNone, kNone, kNone},
    {"both_topic_and_id", R"({"topic":"a","id":7,"from":1})", kBoth, "a", 7, 1, kNone},
    {"both_even_when_the_topic_is_unreadable", R"({"topic":"","id":7,"from":1})", kBoth, kNone, 7, 1, kNone},
    {"topic_is_case_sensitive_key_Topic_is_unknown", R"({"Topic":"a","from":1})", kNeither, kNone, kNone, 1, kNone},

    // topic: a non-empty string.
    {"empty_topic", R"({"topic":"","from":1})", kBadTopic, kNone, kNone, 1, kNone},
    {"topic_number", R"({"topic":7,"from":1})", kBadTopic, kNone, kNone, 1, kNone},
    {"topic_null", R"({"topic":null,"from":1})", kBadTopic, kNone, kNone, 1, kNone},
    {"topic_bool", R"({"topic":true,"from":1})", kBadTopic, kNone, kNone, 1, kNone},
    {"topic_array", R"({"topic":["a"],"from":1})", kBadTopic, kNone, kNone, 1, kNone},
    {"topic_object", R"({"topic":{"t":"a"},"from":1})", kBadTopic, kNone, kNone, 1, kNone},

    // id: an integer from 1 to 2^32 - 1.
    {"id_0", R"({"id":0,"from":1})", kBadId, kNone, kNone, 1, kNone},
    {"id_negative", R"({"id":-7,"from":1})", kBadId, kNone, kNone, 1, kNone},
    {"id_float_with_fraction", R"({"id":7.5,"from":1})", kBadId, kNone, kNone, 1, kNone},
    {"id_float_without_fraction_value", R"({"id":7.0,"from":1})", kBadId, kNone, kNone, 1, kNone},
    {"id_string", R"({"id":"7","from":1})", kBadId, kNone, kNone, 1, kNone},
    {"id_bool", R"({"id":true,"from":1})", kBadId, kNone, kNone, 1, kNone},
    {"id_null", R"({"id":null,"from":1})", kBadId, kNone, kNone, 1, kNone},
    {"id_4294967296_does_not_fit_uint32", R"({"id":4294967296,"from":1})", kBadId, kNone, kNone, 1, kNone},
    {"id_far_over_uint32", R"({"id":18446744073709551615,"from":1})", kBadId, kNone, kNone, 1, kNone},

    // from: required, an integer >= 1.
    {"from_missing", R"({"topic":"a"})", kNoFrom, "a", kNone, kNone, kNone},
    {"from_missing_to_still_read", R"({"topic":"a","to":5})", kNoFrom, "a", kNone, kNone, 5},
    {"from_missing_with_id", R"({"id":7})", kNoFrom, kNone, 7, kNone, kNone},
    {"from_0", R"({"topic":"a","from":0})", kBadFrom, "a", kNone, kNone, kNone},
    {"from_negative", R"({"topic":"a","from":-1})", kBadFrom, "a", kNone, kNone, kNone},
    {"from_negative_zero", R"({"topic":"a","from":-0})", kBadFrom, "a", kNone, kNone, kNone},
    {"from_float_1_5", R"({"topic":"a","from":1.5})", kBadFrom, "a", kNone, kNone, kNone},
    {"from_float_1_0_is_not_an_integer", R"({"topic":"a","from":1.0})", kBadFrom, "a", kNone, kNone, kNone},
    {"from_string", R"({"topic":"a","from":"1"})", kBadFrom, "a", kNone, kNone, kNone},
    {"from_bool", R"({"topic":"a","from":true})", kBadFrom, "a", kNone, kNone, kNone},
    {"from_null", R"({"topic":"a","from":null})", kBadFrom, "a", kNone, kNone, kNone},
    {"from_array", R"({"topic":"a","from":[1]})", kBadFrom, "a", kNone, kNone, kNone},
    {"from_over_uint64_max", R"({"topic":"a","from":18446744073709551616})", kBadFrom, "a", kNone, kNone, kNone},
    {"bad_from_keeps_readable_to", R"({"id":7,"from":0,"to":9})", kBadFrom, kNone, 7, kNone, 9},

    // to: optional, an integer >= from.
    {"to_less_than_from_keeps_every_field", R"({"topic":"a","from":5,"to":4})", kToBeforeFrom, "a", kNone, 5, 4},
    {"to_less_than_from_with_id", R"({"id":7,"from":25,"to":17})", kToBeforeFrom, kNone, 7, 25, 17},
    {"to_0", R"({"topic":"a","from":5,"to":0})", kBadTo, "a", kNone, 5, kNone},
    {"to_negative", R"({"topic":"a","from":5,"to":-9})", kBadTo, "a", kNone, 5, kNone},
    {"to_null", R"({"topic":"a","from":5,"to":null})", kBadTo, "a", kNone, 5, kNone},
    {"to_float_with_fraction", R"({"topic":"a","from":5,"to":9.5})", kBadTo, "a", kNone, 5, kNone},
    {"to_float_without_fraction_value", R"({"topic":"a","from":5,"to":9.0})", kBadTo, "a", kNone, 5, kNone},
    {"to_string", R"({"topic":"a","from":5,"to":"9"})", kBadTo, "a", kNone, 5, kNone},
    {"to_bool", R"({"topic":"a","from":5,"to":false})", kBadTo, "a", kNone, 5, kNone},

    // Several bad fields: the first in the order topic, id, from, to is named,
    // and every readable field is still echoed.
    {"first_bad_field_is_named_topic_before_from", R"({"topic":5,"from":0,"to":3})", kBadTopic, kNone, kNone, kNone,
     3},
    {"first_bad_field_is_named_from_before_to", R"({"topic":"a","from":"x","to":"y"})", kBadFrom, "a", kNone, kNone,
     kNone},
    {"a_bad_field_wins_over_to_less_than_from", R"({"id":0,"from":5,"to":4})", kBadId, kNone, kNone, 5, 4},
};

TEST(RetransmitParseTest, BadRequests) {
  for (const auto& c : kBadRequests) ExpectParsed(c);
}

// The longest topic the relay stores is 255 bytes (the intake refuses a
// longer one): a request for a longer one is a bad field, read no further,
// echoed. Until 2026-12-06 it went on to the replay ACL, whose %c patterns
// took seconds of a worker's time for a topic of 4,000 bytes.
TEST(RetransmitParseTest, ATopicLongerThanAnyStoredIsABadField) {
  const std::string longest(255, 't'), longer(256, 't');
  ExpectParsed({"topic_of_255_bytes", R"({"topic":")" + longest + R"(","from":1})", "", longest, kNone, 1, kNone});
  ExpectParsed({"topic_of_256_bytes", R"({"topic":")" + longer + R"(","from":1})",
                "\"topic\" is longer than 255 bytes, the longest the relay stores", kNone, kNone, 1, kNone});
  const ParsedRequest r = ParseRetransmitRequest(R"({"topic":")" + longer + R"(","from":1})");
  EXPECT_EQ(r.code, ErrorCode::kBadField);
  ASSERT_EQ(r.fields.invalid.size(), 1u);
  EXPECT_EQ(r.fields.invalid[0].second, "\"" + longer + "\"") << "echoed";
}

// A valid request padded with spaces to `size` bytes.
std::string PaddedRequest(std::size_t size) {
  std::string request = R"({"topic":"chat/room1","from":1})";
  request.resize(size, ' ');
  return request;
}

TEST(RetransmitParseTest, RequestOverTheLimitIsRefusedUnread) {
  ASSERT_EQ(kMaxRequestBytes, 4096u);
  const ParsedRequest r = ParseRetransmitRequest(PaddedRequest(kMaxRequestBytes + 1));
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error, "request of 4097 bytes is over the limit of 4096");
  EXPECT_EQ(r.fields.topic, std::nullopt);
  EXPECT_EQ(r.fields.id, std::nullopt);
  EXPECT_EQ(r.fields.from, std::nullopt);
  EXPECT_EQ(r.fields.to, std::nullopt);

  // Refused unread: not even checked for being JSON.
  const ParsedRequest junk = ParseRetransmitRequest(std::string(100000, 'x'));
  EXPECT_EQ(junk.error, "request of 100000 bytes is over the limit of 4096");
}

TEST(RetransmitParseTest, RequestOfExactlyTheLimitIsRead) {
  const ParsedRequest r = ParseRetransmitRequest(PaddedRequest(kMaxRequestBytes));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.fields.topic, "chat/room1");
  EXPECT_EQ(r.fields.from, 1u);
  EXPECT_EQ(r.fields.to, std::nullopt);
}

// ---------------------------------------------------------------------------
// StatusJson
// ---------------------------------------------------------------------------

// Parses a status object; a status that is not JSON fails the test.
json ParseStatus(const std::string& text) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(doc.is_discarded()) << "status is not JSON: " << text;
  return doc;
}

TEST(RetransmitStatusTest, OkStatusHasExactlyTheProtocolExampleKeys) {
  RequestFields f;
  f.topic = "chat/room1";
  f.id = 7;
  f.from = 17;
  f.to = 25;
  ReplyStatus s;
  s.sent = 9;
  s.last = 31;
  const json expected =
      json::parse(R"({"topic": "chat/room1", "id": 7, "from": 17, "to": 25, "sent": 9, "last": 31, "status": "ok"})");
  EXPECT_EQ(ParseStatus(StatusJson(f, s)), expected);
}

TEST(RetransmitStatusTest, AV11OkStatusSaysWhereTheHistoryStartsAndKeepsFromAsAsked) {
  RequestFields f;
  f.topic = "chat/room1";
  f.id = 7;
  f.from = 1;
  f.to = 50;
  ReplyStatus s;
  s.first = 20;
  s.sent = 31;
  s.last = 60;
  const json expected = json::parse(
      R"({"topic": "chat/room1", "id": 7, "from": 1, "to": 50, "first": 20, "sent": 31, "last": 60, "status": "ok"})");
  EXPECT_EQ(ParseStatus(StatusJson(f, s)), expected);
  // Not in an error status.
  ReplyStatus refused = ReplyStatus::Refused(ErrorCode::kBusy, "too many requests pending");
  refused.first = 20;
  EXPECT_FALSE(ParseStatus(StatusJson(f, refused)).contains("first"));
}

TEST(RetransmitStatusTest, FromPastLastIsOkWithNothingSent) {
  RequestFields f;
  f.topic = "chat/room1";
  f.id = 7;
  f.from = 40;
  f.to = 31;  // the effective upper end: `last`, the request had no `to`
  ReplyStatus s;
  s.sent = 0;
  s.last = 31;
  const json expected = {{"topic", "chat/room1"}, {"id", 7},   {"from", 40},       {"to", 31},
                         {"sent", 0},             {"last", 31}, {"status", "ok"}};
  EXPECT_EQ(ParseStatus(StatusJson(f, s)), expected);
}

TEST(RetransmitStatusTest, TruncatedStatusSaysWhereToAskAgain) {
  RequestFields f;
  f.topic = "chat/room1";
  f.id = 7;
  f.from = 1;
  f.to = 50000;
  ReplyStatus s;
  s.sent = 10000;
  s.last = 50000;
  s.next = 10001;
  const json expected = {{"topic", "chat/room1"}, {"id", 7},       {"from", 1},         {"to", 50000},
                         {"sent", 10000},         {"last", 50000}, {"status", "ok"},    {"truncated", true},
                         {"next", 10001}};
  const json got = ParseStatus(StatusJson(f, s));
  EXPECT_EQ(got, expected);
  ASSERT_TRUE(got.contains("truncated"));
  EXPECT_TRUE(got["truncated"].is_boolean());
  EXPECT_TRUE(got["next"].is_number_unsigned());
}

TEST(RetransmitStatusTest, LargeValuesAreEchoedExactly) {
  RequestFields f;
  f.id = UINT32_MAX;
  f.from = UINT64_MAX;
  f.to = UINT64_MAX;
  ReplyStatus s;
  s.last = (uint64_t{1} << 40) - 1;
  const std::string text = StatusJson(f, s);
  const json got = ParseStatus(text);
  EXPECT_EQ(got["id"].get<uint64_t>(), 4294967295u);
  EXPECT_EQ(got["from"].get<uint64_t>(), UINT64_MAX);
  EXPECT_EQ(got["last"].get<uint64_t>(), 1099511627775u);
  // Integers, not floats: the client compares SEQs exactly.
  EXPECT_NE(text.find("\"from\":18446744073709551615"), std::string::npos) << text;
}

// Error statuses (PROTOCOL 5.3): "status": "error", the text, the code and
// whether to retry, and every field present with a readable JSON type, valid
// or not.
struct ErrorStatusCase {
  const char* rule;
  std::string request;
  json expected;
};

const std::vector<ErrorStatusCase> kErrorStatusCases = {
    {"to_less_than_from_echoes_topic_from_to",
     R"({"topic":"a","from":5,"to":4})",
     {{"topic", "a"}, {"from", 5}, {"to", 4}, {"status", "error"}, {"error", "\"to\" is less than \"from\""},
      {"code", "bad_field"}, {"retry", false}}},
    {"not_json_echoes_nothing",
     "not json",
     {{"status", "error"}, {"error", "request is not JSON"}, {"code", "bad_json"}, {"retry", false}}},
    {"an_array_is_bad_json",
     "[1,2]",
     {{"status", "error"}, {"error", "request is not a JSON object"}, {"code", "bad_json"}, {"retry", false}}},
    {"bad_from_is_echoed_as_sent",
     R"({"id":7,"from":0})",
     {{"id", 7}, {"from", 0}, {"status", "error"}, {"error", "\"from\" must be an integer >= 1"},
      {"code", "bad_field"}, {"retry", false}}},
    {"negative_from_zero_id_and_empty_topic_are_echoed",
     R"({"topic":"","id":0,"from":-3})",
     {{"topic", ""}, {"id", 0}, {"from", -3}, {"status", "error"},
      {"error", "give either \"topic\" or \"id\", not both"}, {"code", "bad_field"}, {"retry", false}}},
    {"an_id_over_32_bits_is_echoed",
     R"({"id":4294967296,"from":1})",
     {{"id", 4294967296u}, {"from", 1}, {"status", "error"}, {"error", "\"id\" must be an integer from 1 to 4294967295"},
      {"code", "bad_field"}, {"retry", false}}},
    {"unreadable_types_are_not_echoed",
     R"({"topic":5,"from":1.5,"to":"9"})",
     {{"status", "error"}, {"error", "\"topic\" must be a non-empty string"}, {"code", "bad_field"},
      {"retry", false}}},
    {"both_topic_and_id_echoes_both",
     R"({"topic":"chat/room1","id":7,"from":17,"to":25})",
     {{"topic", "chat/room1"},
      {"id", 7},
      {"from", 17},
      {"to", 25},
      {"status", "error"},
      {"error", "give either \"topic\" or \"id\", not both"},
      {"code", "bad_field"},
      {"retry", false}}},
};

TEST(RetransmitStatusTest, ErrorStatusEchoesTheReadableFieldsWithCodeAndRetry) {
  for (const auto& c : kErrorStatusCases) {
    SCOPED_TRACE(c.rule);
    const ParsedRequest r = ParseRetransmitRequest(c.request);
    ASSERT_FALSE(r.ok());
    const json got = ParseStatus(StatusJson(r.fields, ReplyStatus::Refused(r.code, r.error)));
    EXPECT_EQ(got, c.expected);
    EXPECT_FALSE(got.contains("sent"));
    EXPECT_FALSE(got.contains("last"));
  }
}

TEST(RetransmitStatusTest, ErrorStatusLeavesOutCountsAndSaysWhereToAskAgain) {
  RequestFields f;
  f.topic = "chat/room1";
  ReplyStatus s = ReplyStatus::Refused(ErrorCode::kUnknownTopic, "unknown topic");
  s.sent = 3;
  s.last = 9;
  const json expected = {
      {"topic", "chat/room1"}, {"status", "error"}, {"error", "unknown topic"}, {"code", "unknown_topic"},
      {"retry", false}};
  EXPECT_EQ(ParseStatus(StatusJson(f, s)), expected);
  ReplyStatus stopping = ReplyStatus::Refused(ErrorCode::kStopping, "relay stopping");
  stopping.next = 4;
  const json got = ParseStatus(StatusJson(f, stopping));
  EXPECT_EQ(got["code"], "stopping");
  EXPECT_EQ(got["retry"], true);
  EXPECT_EQ(got["next"], 4);
}

// Every code of the fixed list, with its retry flag (PROTOCOL 5.3).
TEST(RetransmitStatusTest, EveryCodeHasItsNameAndRetryFlag) {
  const std::vector<std::tuple<ErrorCode, std::string, bool>> codes = {
      {ErrorCode::kBadJson, "bad_json", false},       {ErrorCode::kBadField, "bad_field", false},
      {ErrorCode::kUnknownTopic, "unknown_topic", false}, {ErrorCode::kUnknownId, "unknown_id", false},
      {ErrorCode::kForbidden, "forbidden", false},    {ErrorCode::kBadResponseTopic, "bad_response_topic", false},
      {ErrorCode::kBusy, "busy", true},               {ErrorCode::kUnavailable, "unavailable", true},
      {ErrorCode::kStopping, "stopping", true},       {ErrorCode::kInternal, "internal", true}};
  for (const auto& [code, name, retry] : codes) {
    EXPECT_EQ(CodeName(code), name);
    EXPECT_EQ(Retryable(code), retry) << name;
  }
}

// Topics are bytes; a topic that is not valid UTF-8 must still give a JSON
// status (no exception), its bad bytes shown as U+FFFD.
struct Utf8Case {
  const char* rule;
  std::string topic;
  std::string shown;
};

const char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD

const std::vector<Utf8Case> kUtf8Cases = {
    {"valid_utf8_is_unchanged", "caf\xC3\xA9", "caf\xC3\xA9"},
    {"byte_ff_is_replaced", "chat/\xFF/x", std::string("chat/") + kReplacement + "/x"},
    {"lone_continuation_byte_is_replaced", "a\x80" "b", std::string("a") + kReplacement + "b"},
    {"truncated_sequence_at_the_end_is_replaced", "a\xC3", std::string("a") + kReplacement},
    {"truncated_sequence_before_ascii_keeps_the_ascii", "\xC3(b", std::string(kReplacement) + "(b"},
    {"latin1_e_acute_is_replaced", "caf\xE9", std::string("caf") + kReplacement},
};

TEST(RetransmitStatusTest, TopicThatIsNotUtf8IsReplacedNotThrown) {
  for (const auto& c : kUtf8Cases) {
    SCOPED_TRACE(c.rule);
    RequestFields f;
    f.topic = c.topic;
    f.from = 1;
    std::string text;
    ASSERT_NO_THROW(text = StatusJson(f, ReplyStatus::Refused(ErrorCode::kUnknownTopic, "unknown topic")));
    const json got = ParseStatus(text);
    ASSERT_TRUE(got.contains("topic")) << text;
    EXPECT_EQ(got["topic"].get<std::string>(), c.shown);
    EXPECT_EQ(got["status"], "error");
    EXPECT_EQ(got["from"], 1);
  }
}

// ---------------------------------------------------------------------------
// ChooseReplyTopics / DefaultReplyTopics
// ---------------------------------------------------------------------------

TEST(RetransmitReplyTopicsTest, DefaultTopicsOfAClient) {
  const ReplyTopics t = DefaultReplyTopics("relay", "R");
  EXPECT_EQ(t.frames, "relay/replay/R");
  EXPECT_EQ(t.status, "relay/replay/R/status");

  const ReplyTopics other = DefaultReplyTopics("ctl", "client-9");
  EXPECT_EQ(other.frames, "ctl/replay/client-9");
  EXPECT_EQ(other.status, "ctl/replay/client-9/status");
}

TEST(RetransmitReplyTopicsTest, NoResponseTopicGivesTheDefaults) {
  auto t = ChooseReplyTopics("relay", "R", std::nullopt);
  ASSERT_TRUE(t.ok()) << t.error();
  EXPECT_EQ(t->frames, "relay/replay/R");
  EXPECT_EQ(t->status, "relay/replay/R/status");
}

struct HonouredCase {
  const char* rule;
  std::string response_topic;
  std::string status;
};

const std::vector<HonouredCase> kHonoured = {
    {"own_reply_topic", "relay/replay/R", "relay/replay/R/status"},
    {"one_level_under_own_reply_topic", "relay/replay/R/q1", "relay/replay/R/q1/status"},
    {"two_levels_under_own_reply_topic", "relay/replay/R/a/b", "relay/replay/R/a/b/status"},
    {"own_status_topic_is_under_too", "relay/replay/R/status", "relay/replay/R/status/status"},
};

TEST(RetransmitReplyTopicsTest, ResponseTopicUnderOwnReplyTopicIsHonoured) {
  for (const auto& c : kHonoured) {
    SCOPED_TRACE(c.rule);
    auto t = ChooseReplyTopics("relay", "R", c.response_topic);
    ASSERT_TRUE(t.ok()) << t.error();
    EXPECT_EQ(t->frames, c.response_topic);
    EXPECT_EQ(t->status, c.status);
  }
}

struct RefusedCase {
  const char* rule;
  std::string control_prefix;
  std::string response_topic;
};

const std::vector<RefusedCase> kRefused = {
    {"sequenced_topic_others_read", "relay", "seq/chat/room1"},
    {"raw_topic_others_read", "relay", "chat/room1"},
    {"longer_level_with_own_name_as_prefix", "relay", "relay/replay/Rx"},
    {"another_clients_reply_topic", "relay", "relay/replay/other"},
    {"another_clients_reply_subtopic", "relay", "relay/replay/other/R"},
    {"plus_wildcard_under_own_topic", "relay", "relay/replay/R/+"},
    {"hash_wildcard_under_own_topic", "relay", "relay/replay/R/#"},
    {"plus_wildcard_in_place_of_client", "relay", "relay/replay/+"},
    {"hash_wildcard_in_place_of_client", "relay", "relay/replay/#"},
    {"parent_of_own_reply_topic", "relay", "relay/replay"},
    {"own_retransmit_topic", "relay", "relay/retransmit/R"},
    {"stats_topic", "relay", "relay/stats"},
    {"client_id_is_case_sensitive", "relay", "relay/replay/r"},
    {"trailing_space_is_another_level", "relay", "relay/replay/R "},
    {"leading_slash_is_another_topic", "relay", "/relay/replay/R"},
    {"empty_response_topic", "relay", ""},
    {"different_control_prefix", "ctl", "relay/replay/R"},
    {"different_control_prefix_under", "ctl", "relay/replay/R/q1"},
};

// A response topic under the requester's own, but so long that its status
// topic (<response topic>/status) would pass MQTT's 65,535 bytes: refused,
// as the frames would otherwise go without a status.
TEST(RetransmitReplyTopicsTest, AResponseTopicWithNoRoomForItsStatusTopicIsRefused) {
  const std::string own = "relay/replay/R/";
  const std::string fits = own + std::string(65528 - own.size(), 'q');
  auto t = ChooseReplyTopics("relay", "R", fits);
  ASSERT_TRUE(t.ok()) << t.error();
  EXPECT_EQ(t->status.size(), 65535u);
  const std::string over = fits + "q";
  t = ChooseReplyTopics("relay", "R", over);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error(), "response topic of 65529 bytes leaves no room for its status topic (at most 65528 bytes)");
}

TEST(RetransmitReplyTopicsTest, ResponseTopicElsewhereIsRefused) {
  for (const auto& c : kRefused) {
    SCOPED_TRACE(c.rule);
    auto t = ChooseReplyTopics(c.control_prefix, "R", c.response_topic);
    ASSERT_FALSE(t.ok()) << "honoured: frames " << t->frames << ", status " << t->status;
    EXPECT_EQ(t.error(), "response topic '" + c.response_topic + "' is not under '" + c.control_prefix +
                             "/replay/R'");
  }
}

}  // namespace
}  // namespace seqrelay

namespace seqrelay {
namespace {

// ParseRequestTopic: who asks (PROTOCOL.md 3 and 5.4).
TEST(RetransmitRequesterTest, TheV1TopicNamesTheClientAsUserAndKey) {
  auto r = ParseRequestTopic("relay", "relay/retransmit/alice");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->key, "alice");
  EXPECT_EQ(r->user, std::nullopt);
}

TEST(RetransmitRequesterTest, ThePerUserTopicNamesTheUserAndItsOwnLevel) {
  auto r = ParseRequestTopic("relay", "relay/retransmit/alice/phone-1");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->key, "alice/phone-1");
  EXPECT_EQ(r->user, "alice");
  // Its replies: relay/replay/alice/phone-1 and .../status; a Response
  // Topic under it is honoured, one under another connection's is not.
  EXPECT_EQ(DefaultReplyTopics("relay", r->key).frames, "relay/replay/alice/phone-1");
  EXPECT_EQ(DefaultReplyTopics("relay", r->key).status, "relay/replay/alice/phone-1/status");
  EXPECT_TRUE(ChooseReplyTopics("relay", r->key, "relay/replay/alice/phone-1/req-7").ok());
  EXPECT_FALSE(ChooseReplyTopics("relay", r->key, "relay/replay/alice/laptop").ok());
  EXPECT_FALSE(ChooseReplyTopics("relay", r->key, "relay/replay/alice").ok());
}

TEST(RetransmitRequesterTest, TopicsThatNameNoRequesterAreIgnored) {
  for (const char* topic : {"relay/retransmit/alice/phone/deeper", "relay/retransmit/", "relay/retransmit//c",
                            "relay/retransmit/alice/", "relay/retransmit", "other/retransmit/alice",
                            "relayx/retransmit/alice"}) {
    EXPECT_EQ(ParseRequestTopic("relay", topic), std::nullopt) << topic;
  }
  EXPECT_TRUE(ParseRequestTopic("ctl/x", "ctl/x/retransmit/alice/c").has_value()) << "a prefix of two levels";
}

}  // namespace
}  // namespace seqrelay
