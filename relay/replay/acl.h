// Acl: mosquitto's acl_file, read and evaluated the way mosquitto 2.0's
// built-in check does, so that the relay replays a topic only to a client
// that could read it live (PROTOCOL.md section 3: "a topic the client may not
// read" is a bad request).
//
// The format (mosquitto.conf(5), acl_file), one rule per line:
//   # ...                          a comment ('#' first on the line)
//   user NAME                      starts NAME's block; lines before the
//                                  first user line are for anonymous clients
//   topic [ACCESS] TOPIC           a rule of the current block
//   pattern [ACCESS] TOPIC         a rule for every client; %c is replaced by
//                                  its client id, %u by its username
// ACCESS is read, write, readwrite (the default) or deny; TOPIC may hold
// '+' and '#', and spaces when ACCESS is given. A line mosquitto would
// refuse (an unknown keyword or access, a bad filter) is an error here too,
// and so is a NAME with '/', which mosquitto takes: that user's requests on
// relay/retransmit/NAME would read as another user's (PROTOCOL.md 5.4).
//
// A check for (username, client id, topic, access) goes like mosquitto's:
//   1. the client's block (its user's, or the anonymous one): a matching
//      deny refuses; a matching rule that grants the access allows;
//   2. if any pattern exists and the username or client id holds '+' or
//      '#', refused (they would widen the pattern: CVE-2017-7650);
//   3. the patterns, expanded, the same way (a %u pattern does not apply to
//      an anonymous client);
//   4. anything else is refused.
// Within the block and within the patterns, denies are checked before
// grants, whatever their order in the file.
//
// Pure; immutable once parsed, so any thread may call it.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace seqrelay {

class Acl {
 public:
  enum Access : unsigned { kDeny = 0, kRead = 1, kWrite = 2, kReadWrite = 3 };

  // Parses the file's text; an error names the line.
  static Result<Acl> Parse(std::string_view text);

  // `username` is nullopt for an anonymous client; `client_id` is nullopt
  // when the client is known by its username only (a per-user request,
  // PROTOCOL.md 5.4): then %c patterns grant nothing, and a %c deny refuses
  // if it would for some client id.
  bool Allows(std::optional<std::string_view> username, std::optional<std::string_view> client_id,
              std::string_view topic, Access access) const;
  bool MayRead(std::optional<std::string_view> username, std::optional<std::string_view> client_id,
               std::string_view topic) const {
    return Allows(username, client_id, topic, kRead);
  }

  std::size_t rule_count() const;

 private:
  struct Rule {
    std::string topic;
    Access access = kReadWrite;
  };
  // Denies first, then grants in file order.
  static std::optional<bool> Check(const std::vector<Rule>& rules, std::string_view topic, Access access,
                                   std::optional<std::string_view> username,
                                   std::optional<std::string_view> client_id, bool expand);

  std::vector<Rule> anonymous_;
  std::map<std::string, std::vector<Rule>, std::less<>> users_;
  std::vector<Rule> patterns_;
};

}  // namespace seqrelay
