#include "replay/acl.h"

#include <fmt/format.h>

#include "core/topic_filter.h"

namespace seqrelay {
namespace {

// The file is read as mosquitto 2.0 reads it (aclfile__parse), or a replay
// could grant what the broker does not: words are split at spaces only
// (strtok with " "); a username, and a topic after an access word, are
// trimmed of white space (tabs too) at both ends. So "topic read<TAB>seq/a/#" is
// one word after "topic": a topic of that name, read and write, as the
// broker takes it; until 2026-12-07 the relay read it as read on
// seq/a/#, which the broker did not grant (a helper's review). A line
// the broker refuses to start with (a keyword after a tab, a comment
// after blanks) the relay refuses too.
constexpr std::string_view kWhite = " \t\r\n\v\f";

std::string_view TrimWhite(std::string_view s) {
  const auto first = s.find_first_not_of(kWhite);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kWhite) - first + 1);
}

// Splits "word rest" as strtok_r(" ") then strtok_r(""): the word after
// any leading spaces, up to the next space; the rest after that space, as
// it is (a tab there starts the next word, as for mosquitto). The caller
// trims what mosquitto trims (misc__trimblanks): a username, the topic
// after an access word.
std::pair<std::string_view, std::string_view> FirstWord(std::string_view s) {
  const auto start = s.find_first_not_of(' ');
  if (start == std::string_view::npos) return {};
  s.remove_prefix(start);
  const auto end = s.find(' ');
  if (end == std::string_view::npos) return {s, {}};
  return {s.substr(0, end), s.substr(end + 1)};
}

std::optional<Acl::Access> ParseAccess(std::string_view word) {
  if (word == "read") return Acl::kRead;
  if (word == "write") return Acl::kWrite;
  if (word == "readwrite") return Acl::kReadWrite;
  if (word == "deny") return Acl::kDeny;
  return std::nullopt;
}

// %c and %u replaced in one pass, left to right, as mosquitto does: text
// that came in with the client id is never expanded again.
std::string Expand(std::string_view pattern, std::string_view client_id, std::optional<std::string_view> username) {
  std::string out;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size()) {
      if (pattern[i + 1] == 'c') {
        out += client_id;
        ++i;
        continue;
      }
      if (pattern[i + 1] == 'u' && username) {
        out += *username;
        ++i;
        continue;
      }
    }
    out += pattern[i];
  }
  return out;
}

// Whether `pattern` matches `topic` for some client id, when the client id
// is not known (a per-user request's connection). A client id that makes
// it match is written into it as is, so it is a piece of `topic`: each
// piece is tried, one byte or more, '/' among them (an id may hold one, and
// then spans levels) but neither '+' nor '#', which mosquitto refuses in an
// id. A topic is at most a few hundred bytes; a request is checked once.
bool MatchesForSomeClientId(std::string_view pattern, std::string_view topic,
                            std::optional<std::string_view> username) {
  for (std::size_t start = 0; start < topic.size(); ++start) {
    for (std::size_t end = start + 1; end <= topic.size(); ++end) {
      const std::string_view id = topic.substr(start, end - start);
      if (id.back() == '+' || id.back() == '#') break;
      if (TopicMatches(Expand(pattern, id, username), topic)) return true;
    }
  }
  return false;
}

}  // namespace

Result<Acl> Acl::Parse(std::string_view text) {
  Acl acl;
  std::vector<Rule>* block = &acl.anonymous_;
  int number = 0;
  while (!text.empty()) {
    ++number;
    const auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    line = line.substr(0, line.find_last_not_of(kWhite) + 1);  // npos + 1 == 0: a blank line
    if (line.empty() || line.front() == '#') continue;
    auto [keyword, after_keyword] = FirstWord(line);
    if (keyword.empty()) continue;  // spaces only
    if (keyword == "user") {
      const std::string_view rest = TrimWhite(after_keyword);
      if (rest.empty()) return Status::Error(fmt::format("acl line {}: 'user' needs a username", number));
      if (rest.find('/') != std::string_view::npos) {
        // Its requests on relay/retransmit/<name> would read as user U's on
        // connection C (PROTOCOL.md 5.4), and be answered with U's rights.
        return Status::Error(fmt::format(
            "acl line {}: user '{}': a username with '/' is refused; its requests would read as those of user '{}' "
            "on one of its connections (relay/retransmit/U/C, PROTOCOL.md 5.4)",
            number, rest, rest.substr(0, rest.find('/'))));
      }
      block = &acl.users_[std::string(rest)];
      continue;
    }
    if (keyword != "topic" && keyword != "pattern") {
      return Status::Error(fmt::format("acl line {}: expected 'user', 'topic' or 'pattern', got '{}'", number, keyword));
    }
    // As mosquitto reads it: with one word after the keyword, that word is
    // the topic (read and write); with more, the first is the access.
    Rule rule;
    auto [first, after] = FirstWord(after_keyword);
    if (first.empty()) return Status::Error(fmt::format("acl line {}: '{}' needs a topic", number, keyword));
    if (after.empty()) {
      rule.topic = std::string(first);
    } else {
      auto access = ParseAccess(first);
      if (!access) {
        return Status::Error(fmt::format("acl line {}: access must be read, write, readwrite or deny, got '{}'",
                                         number, first));
      }
      rule.access = *access;
      rule.topic = std::string(TrimWhite(after));
    }
    if (Status s = ValidateFilter(rule.topic); !s.ok()) {
      return Status::Error(fmt::format("acl line {}: {}", number, s.message()));
    }
    (keyword == "pattern" ? acl.patterns_ : *block).push_back(std::move(rule));
  }
  return acl;
}

std::optional<bool> Acl::Check(const std::vector<Rule>& rules, std::string_view topic, Access access,
                               std::optional<std::string_view> username, std::optional<std::string_view> client_id,
                               bool expand) {
  auto matches = [&](const Rule& rule) -> bool {
    if (!expand) return TopicMatches(rule.topic, topic);
    if (!username && rule.topic.find("%u") != std::string::npos) return false;
    if (!client_id && rule.topic.find("%c") != std::string::npos) {
      // No client id to put in: a grant does not apply, and a deny applies
      // if it would for some client id.
      return rule.access == kDeny && MatchesForSomeClientId(rule.topic, topic, username);
    }
    return TopicMatches(Expand(rule.topic, client_id.value_or(""), username), topic);
  };
  for (const Rule& rule : rules) {
    if (rule.access == kDeny && matches(rule)) return false;
  }
  for (const Rule& rule : rules) {
    if (rule.access != kDeny && (rule.access & access) == access && matches(rule)) return true;
  }
  return std::nullopt;
}

bool Acl::Allows(std::optional<std::string_view> username, std::optional<std::string_view> client_id,
                 std::string_view topic, Access access) const {
  const std::vector<Rule>* block = &anonymous_;
  if (username) {
    auto it = users_.find(*username);
    block = it == users_.end() ? nullptr : &it->second;
  }
  if (block) {
    if (auto verdict = Check(*block, topic, access, username, client_id, /*expand=*/false)) return *verdict;
  }
  if (patterns_.empty()) return false;
  auto wild = [](std::string_view s) { return s.find_first_of("+#") != std::string_view::npos; };
  if ((client_id && wild(*client_id)) || (username && wild(*username))) return false;
  return Check(patterns_, topic, access, username, client_id, /*expand=*/true).value_or(false);
}

std::size_t Acl::rule_count() const {
  std::size_t n = anonymous_.size() + patterns_.size();
  for (const auto& [user, rules] : users_) n += rules.size();
  return n;
}

}  // namespace seqrelay
