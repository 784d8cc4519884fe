// Retransmit requests and their status replies (PROTOCOL.md section 3): the
// pure part. Parsing, validation, the status JSON and which reply topics a
// requester may use. No I/O; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace seqrelay {

// Requests longer than this are refused unread.
inline constexpr std::size_t kMaxRequestBytes = 4096;

// Error texts that are final answers, shared by the relay, which sends them,
// and the client library, which gives up on them instead of asking again.
inline constexpr std::string_view kErrorForbidden = "forbidden";
inline constexpr std::string_view kErrorUnknownTopic = "unknown topic";
inline constexpr std::string_view kErrorUnknownId = "unknown id";

// An error status's `code` (PROTOCOL.md 5.3): what a client decides on.
enum class ErrorCode {
  kBadJson,
  kBadField,
  kUnknownTopic,
  kUnknownId,
  kForbidden,
  kBadResponseTopic,
  kBusy,
  kUnavailable,
  kStopping,
  kInternal,
};
std::string_view CodeName(ErrorCode code);
// `retry`: whether the same request may succeed later.
bool Retryable(ErrorCode code);

// What a request said, as far as it could be read: an error status echoes
// whichever of these were readable.
struct RequestFields {
  std::optional<std::string> topic;
  std::optional<uint32_t> id;
  std::optional<uint64_t> from;
  std::optional<uint64_t> to;
  // Fields present with a readable JSON type but an invalid value ("id": 0,
  // "topic": "", "from": -3): name and value as JSON text, echoed as sent.
  std::vector<std::pair<std::string, std::string>> invalid;
};

struct ParsedRequest {
  RequestFields fields;
  std::string error;  // empty: a valid request
  ErrorCode code = ErrorCode::kBadField;  // when not ok
  bool ok() const { return error.empty(); }
};

ParsedRequest ParseRetransmitRequest(std::string_view json);

// The outcome of serving a request.
struct ReplyStatus {
  uint64_t sent = 0;
  uint64_t last = 0;  // the topic's newest SEQ when the reply was made
  // The topic's oldest SEQ still stored (PROTOCOL.md 5.2): in every ok
  // status of a v1.1 relay.
  std::optional<uint64_t> first;
  std::optional<uint64_t> next;  // set when the range was cut at the cap, or where to ask again
  std::string error;  // non-empty: "status": "error"
  ErrorCode code = ErrorCode::kInternal;  // with an error

  static ReplyStatus Refused(ErrorCode code, std::string why) {
    ReplyStatus s;
    s.code = code;
    s.error = std::move(why);
    return s;
  }
};

// One status object. `fields` are echoed (for an ok reply, `to` is the
// effective upper end and `topic`/`id` both known).
std::string StatusJson(const RequestFields& fields, const ReplyStatus& status);

// Who asks, from the request's topic (PROTOCOL.md 3 and 5.4).
struct Requester {
  // "R" for <control>/retransmit/R, "U/C" for <control>/retransmit/U/C:
  // the replies go to <control>/replay/<key>.
  std::string key;
  // U, for the per-user form: the replay ACL is evaluated for this
  // username (and no client id); for the v1 form, R is both.
  std::optional<std::string> user;
};
// nullopt for a topic that names no requester: not under
// <control>/retransmit/, an empty level, or deeper than U/C.
std::optional<Requester> ParseRequestTopic(std::string_view control_prefix, std::string_view topic);

struct ReplyTopics {
  std::string frames;  // where the frames go
  std::string status;  // where the status object goes
};

// Reply topics for requester `client` (the last level of
// <control>/retransmit/<client>). A v5 Response Topic is honoured only if it
// is <control>/replay/<client> or lies under it; otherwise an error, and the
// caller answers on the default status topic instead.
Result<ReplyTopics> ChooseReplyTopics(std::string_view control_prefix, std::string_view client,
                                      std::optional<std::string_view> response_topic);

// The default reply topics of `client`.
ReplyTopics DefaultReplyTopics(std::string_view control_prefix, std::string_view client);

}  // namespace seqrelay
