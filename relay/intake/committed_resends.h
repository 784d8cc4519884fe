// CommittedResends: recognises mosquitto's resends of messages that are
// committed already, by a relay that died before mosquitto read their
// PUBACKs.
//
// The relay acknowledges a delivery right after journaling it, long before
// its commit, but a relay killed with deliveries unread in its socket resets
// the connection, and mosquitto drops a reset connection without reading the
// PUBACKs still in its socket. Those messages stay in flight in the shard's
// session, and mosquitto resends them, under their packet ids, to whichever
// relay resumes the session next. If the dead relay had committed them, they
// are the session's newest rows (MSG.MID holds each live row's packet id,
// schema 007); storing them again would give one message two SEQs.
//
// Fed by the writer with the resumed session's newest rows (packet id and
// idx), newest first, and then with the deliveries that came before the
// relay's SUBACK on that connect, in order (mosquitto's resends come
// first, then its queue and live messages). The rule is the RedeliveryFilter's,
// for rows instead of remembered deliveries: the first such delivery may be
// the resend of any of those rows with its packet id, each next one only of
// the next row, and the first that is not ends the checks until the next
// connect. A candidate row counts only once its topic and payload are found
// byte for byte equal to the delivery's, and its subscription tag
// (MSG.SUB_TAG, schema 008) the one the delivery came with (Confirm).
//
// Why a new message cannot be taken for a resend: within one MQTT session
// mosquitto numbers messages in order, so a message newer than the
// session's newest row carries a packet id past it; only rows whose id is
// at most kWindow before the newest row's count. Rows of an older session
// are left out by the caller (SHARD.SESSION_IDX), and where that mark is
// behind (its holder died before committing it), by their subscription tag
// on a v5 intake: each connect subscribes under a tag of its own, and
// mosquitto resends a message with the tag of its first delivery (a 3.1.1
// intake has no tags; docs/faults.md, "Known bounds"). Only sessions the process found kept are checked. Pure logic;
// writer thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace seqrelay {

class CommittedResends {
 public:
  // Rows considered, and how far a row's packet id may lie before the
  // newest row's: far beyond mosquitto's in-flight window (20 by default).
  static constexpr std::size_t kWindow = 1000;

  struct Row {
    uint64_t idx = 0;
    uint16_t mid = 0;  // nonzero: rows without a packet id are not given
  };
  // A resumed session's newest rows, newest first (at most kWindow are
  // kept). The checks of the previous connect end.
  void Start(const std::vector<Row>& newest_first);
  // Ends the checks until the next Start (a delivery that is not a resend).
  void End() { rows_.clear(); }
  bool active() const { return !rows_.empty(); }

  // The row this delivery may be the resend of, if any; nullopt ends the
  // checks. After a row is given, Confirm must say whether it matched.
  std::optional<uint64_t> Candidate(uint16_t mid);
  // The candidate's topic and payload are (not) the delivery's.
  void Confirm(bool same);

 private:
  std::vector<Row> rows_;           // oldest first
  std::optional<std::size_t> next_;  // after a match: the row the next delivery must be
  std::size_t candidate_ = 0;        // the row Candidate last gave
};

}  // namespace seqrelay
