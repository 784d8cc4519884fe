// SessionNo: which of a shard's MQTT sessions with mosquitto a message was
// delivered in.
//
// mosquitto resends a message only in the session it delivered it in, and
// numbers its packet ids per session: the relay takes a delivery for the
// resend of one it already holds only if both are of one session. The
// shard's active numbers each session the broker did not keep
// (SHARD.SESSION_NO, raised with the commit that marks where the session
// begins; schema 010). TAKEN, PENDING and the journal's `session` file carry
// the number; sessions before schema 010 are all number 0.
#pragma once

#include <cstdint>
#include <limits>

namespace seqrelay {

using SessionNo = uint64_t;

// A session whose number is not known: begun and not numbered yet (the
// intake between a connect without a session and its mark; the journal
// before the session's first record), or older than the newest session a
// journal recorded. It is no session that may resend: nothing of it is
// taken for a resend, and a handed-over message of it matches no TAKEN row.
inline constexpr SessionNo kUnknownSession = std::numeric_limits<SessionNo>::max();

}  // namespace seqrelay
