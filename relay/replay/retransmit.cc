#include "replay/retransmit.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "core/topic_filter.h"

namespace seqrelay {
namespace {

using nlohmann::json;

// A JSON integer (no fraction, not a string/bool/null) in [lo, hi].
std::optional<uint64_t> ReadInteger(const json& v, uint64_t lo, uint64_t hi) {
  if (v.is_number_unsigned()) {
    uint64_t n = v.get<uint64_t>();
    if (n >= lo && n <= hi) return n;
  }
  return std::nullopt;
}

}  // namespace

std::string_view CodeName(ErrorCode code) {
  switch (code) {
    case ErrorCode::kBadJson: return "bad_json";
    case ErrorCode::kBadField: return "bad_field";
    case ErrorCode::kUnknownTopic: return "unknown_topic";
    case ErrorCode::kUnknownId: return "unknown_id";
    case ErrorCode::kForbidden: return "forbidden";
    case ErrorCode::kBadResponseTopic: return "bad_response_topic";
    case ErrorCode::kBusy: return "busy";
    case ErrorCode::kUnavailable: return "unavailable";
    case ErrorCode::kStopping: return "stopping";
    case ErrorCode::kInternal: return "internal";
  }
  return "internal";
}

bool Retryable(ErrorCode code) {
  switch (code) {
    case ErrorCode::kBusy:
    case ErrorCode::kUnavailable:
    case ErrorCode::kStopping:
    case ErrorCode::kInternal:
      return true;
    default:
      return false;
  }
}

ParsedRequest ParseRetransmitRequest(std::string_view text) {
  ParsedRequest r;
  r.code = ErrorCode::kBadJson;
  if (text.size() > kMaxRequestBytes) {
    r.error = fmt::format("request of {} bytes is over the limit of {}", text.size(), kMaxRequestBytes);
    return r;
  }
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    r.error = "request is not JSON";
    return r;
  }
  if (!doc.is_object()) {
    r.error = "request is not a JSON object";
    return r;
  }
  r.code = ErrorCode::kBadField;
  // An integer of either sign, or a string for the topic: readable, so
  // echoed when invalid.
  auto keep_invalid = [&](const char* name, const json& v, bool readable) {
    if (readable) r.fields.invalid.emplace_back(name, v.dump());
  };
  // Read every field first, so that an error can echo what was readable.
  std::string field_error;
  auto note = [&](std::string e) {
    if (field_error.empty()) field_error = std::move(e);
  };
  if (auto it = doc.find("topic"); it != doc.end()) {
    if (it->is_string() && !it->get_ref<const std::string&>().empty() &&
        it->get_ref<const std::string&>().size() <= kMaxTopicBytes) {
      r.fields.topic = it->get<std::string>();
    } else if (it->is_string() && !it->get_ref<const std::string&>().empty()) {
      // No such topic is ever stored (the intake refuses it), and none may
      // reach the replay ACL, whose patterns cost more with every byte.
      keep_invalid("topic", *it, true);
      note(fmt::format("\"topic\" is longer than {} bytes, the longest the relay stores", kMaxTopicBytes));
    } else {
      keep_invalid("topic", *it, it->is_string());
      note("\"topic\" must be a non-empty string");
    }
  }
  if (auto it = doc.find("id"); it != doc.end()) {
    if (auto id = ReadInteger(*it, 1, UINT32_MAX)) {
      r.fields.id = static_cast<uint32_t>(*id);
    } else {
      keep_invalid("id", *it, it->is_number_integer());
      note("\"id\" must be an integer from 1 to 4294967295");
    }
  }
  if (auto it = doc.find("from"); it != doc.end()) {
    if (auto from = ReadInteger(*it, 1, UINT64_MAX)) {
      r.fields.from = *from;
    } else {
      keep_invalid("from", *it, it->is_number_integer());
      note("\"from\" must be an integer >= 1");
    }
  } else {
    note("\"from\" is required");
  }
  if (auto it = doc.find("to"); it != doc.end()) {
    if (auto to = ReadInteger(*it, 1, UINT64_MAX)) {
      r.fields.to = *to;
    } else {
      keep_invalid("to", *it, it->is_number_integer());
      note("\"to\" must be an integer >= 1");
    }
  }
  const bool has_topic = doc.contains("topic"), has_id = doc.contains("id");
  if (has_topic && has_id) {
    r.error = "give either \"topic\" or \"id\", not both";
  } else if (!has_topic && !has_id) {
    r.error = "give \"topic\" or \"id\"";
  } else if (!field_error.empty()) {
    r.error = field_error;
  } else if (r.fields.to && *r.fields.to < *r.fields.from) {
    r.error = "\"to\" is less than \"from\"";
  }
  return r;
}

std::string StatusJson(const RequestFields& f, const ReplyStatus& s) {
  json out = json::object();
  if (f.topic) out["topic"] = *f.topic;
  if (f.id) out["id"] = *f.id;
  if (f.from) out["from"] = *f.from;
  if (f.to) out["to"] = *f.to;
  for (const auto& [name, value] : f.invalid) out[name] = json::parse(value);
  if (s.error.empty()) {
    out["sent"] = s.sent;
    out["last"] = s.last;
    if (s.first) out["first"] = *s.first;
    out["status"] = "ok";
    if (s.next) {
      out["truncated"] = true;
      out["next"] = *s.next;
    }
  } else {
    out["status"] = "error";
    out["error"] = s.error;
    out["code"] = CodeName(s.code);
    out["retry"] = Retryable(s.code);
    if (s.next) out["next"] = *s.next;
  }
  // Topics are bytes; one that is not valid UTF-8 is shown with U+FFFD.
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::optional<Requester> ParseRequestTopic(std::string_view control_prefix, std::string_view topic) {
  const std::string prefix = fmt::format("{}/retransmit/", control_prefix);
  if (topic.size() <= prefix.size() || topic.substr(0, prefix.size()) != prefix) return std::nullopt;
  const std::string_view rest = topic.substr(prefix.size());
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos) return Requester{std::string(rest), std::nullopt};
  const std::string_view user = rest.substr(0, slash), client = rest.substr(slash + 1);
  if (user.empty() || client.empty() || client.find('/') != std::string_view::npos) return std::nullopt;
  return Requester{std::string(rest), std::string(user)};
}

ReplyTopics DefaultReplyTopics(std::string_view control_prefix, std::string_view client) {
  std::string frames = fmt::format("{}/replay/{}", control_prefix, client);
  return {frames, frames + "/status"};
}

Result<ReplyTopics> ChooseReplyTopics(std::string_view control_prefix, std::string_view client,
                                      std::optional<std::string_view> response_topic) {
  ReplyTopics own = DefaultReplyTopics(control_prefix, client);
  if (!response_topic) return own;
  if (!IsUnderPrefix(*response_topic, own.frames) || response_topic->find_first_of("+#") != std::string_view::npos) {
    return Status::Error(fmt::format("response topic '{}' is not under '{}'", *response_topic, own.frames));
  }
  // Its status goes to <response topic>/status, itself an MQTT topic of at
  // most 65,535 bytes: a longer one could not be published, and the frames
  // would go without the one status every request gets.
  constexpr std::size_t kMaxMqttTopic = 65535, kStatusLevel = sizeof("/status") - 1;
  if (response_topic->size() > kMaxMqttTopic - kStatusLevel) {
    return Status::Error(fmt::format("response topic of {} bytes leaves no room for its status topic (at most {} "
                                     "bytes)", response_topic->size(), kMaxMqttTopic - kStatusLevel));
  }
  return ReplyTopics{std::string(*response_topic), fmt::format("{}/status", *response_topic)};
}

}  // namespace seqrelay
