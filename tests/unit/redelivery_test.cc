#include "intake/redelivery.h"

#include "core/message.h"

#include <gtest/gtest.h>

#include <string>

namespace seqrelay {
namespace {

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// A filter of window 20 that remembers messages 1..last, all "p" on "t".
RedeliveryFilter Remembering(uint16_t last) {
  RedeliveryFilter filter(20);
  for (uint16_t mid = 1; mid <= last; ++mid) filter.Remember(mid, "t", Bytes("p"));
  filter.Connected(true);
  return filter;
}

TEST(RedeliveryFilter, DropsTheResendOfAJournaledMessageOnce) {
  RedeliveryFilter filter(20);
  const std::string payload = "hello";
  filter.Remember(7, "chat/a", Bytes(payload));
  filter.Connected(true);
  EXPECT_TRUE(filter.IsRedelivery(7, "chat/a", Bytes(payload)));
  // The same delivery again is a new message, not a second resend.
  EXPECT_FALSE(filter.IsRedelivery(7, "chat/a", Bytes(payload)));
}

// After a takeover from another relay, the journal's committed records of
// an earlier stint say nothing of the session's newest deliveries: a new
// message with such an id and content is not a resend. Its uncommitted
// records may still be resent, and are recognised.
TEST(RedeliveryFilter, AfterForgettingTheCommittedOnlyTheUncommittedAreResends) {
  RedeliveryFilter filter(20);
  for (uint16_t mid = 1; mid <= 10; ++mid) filter.RememberFromJournal(mid, "t", Bytes("p"), /*committed=*/mid <= 8);
  filter.ForgetCommitted();
  EXPECT_EQ(filter.remembered(), 2u);
  filter.Connected(true);
  EXPECT_FALSE(filter.Contains(6, "t", Bytes("p")));
  EXPECT_TRUE(filter.IsRedelivery(9, "t", Bytes("p")));
  EXPECT_TRUE(filter.IsRedelivery(10, "t", Bytes("p")));
}

// After a takeover that finds the session replaced, nothing remembered is
// a resend, committed or not.
TEST(RedeliveryFilter, AfterForgettingAllNothingIsAResend) {
  RedeliveryFilter filter(20);
  for (uint16_t mid = 1; mid <= 10; ++mid) filter.RememberFromJournal(mid, "t", Bytes("p"), /*committed=*/mid <= 8);
  filter.ForgetAll();
  EXPECT_EQ(filter.remembered(), 0u);
  EXPECT_FALSE(filter.Contains(9, "t", Bytes("p")));
  filter.Connected(true);
  EXPECT_FALSE(filter.IsRedelivery(9, "t", Bytes("p")));
}

TEST(RedeliveryFilter, AForgottenDeliveryIsTakenWhenItComesAgain) {
  RedeliveryFilter filter(20);
  filter.Remember(1, "t", Bytes("p1"));
  filter.Remember(2, "t", Bytes("p2"));
  filter.Forget(2, "t", Bytes("px"));  // another content: kept
  filter.Forget(3, "t", Bytes("p2"));  // another mid: kept
  EXPECT_EQ(filter.remembered(), 2u);
  filter.Remember(9, "h", Bytes("handed over"));  // remembered in between, by another thread
  filter.Forget(2, "t", Bytes("p2"));
  EXPECT_EQ(filter.remembered(), 2u);
  filter.Connected(true);
  EXPECT_TRUE(filter.IsRedelivery(1, "t", Bytes("p1")));
  EXPECT_FALSE(filter.IsRedelivery(2, "t", Bytes("p2")));  // its handling failed: taken this time
}

TEST(RedeliveryFilter, MatchesOnlyWhenMidTopicAndPayloadAllAgree) {
  const std::string payload = "hello", other = "hellp";
  struct Case {
    const char* rule;
    uint16_t mid;
    std::string topic, payload;
    bool resend;
  };
  for (const Case& c : {Case{"other_mid", 8, "chat/a", payload, false}, Case{"other_topic", 7, "chat/b", payload, false},
                        Case{"other_payload", 7, "chat/a", other, false}, Case{"all_agree", 7, "chat/a", payload, true}}) {
    SCOPED_TRACE(c.rule);
    RedeliveryFilter filter(20);
    filter.Remember(7, "chat/a", Bytes(payload));
    filter.Connected(true);
    EXPECT_EQ(filter.IsRedelivery(c.mid, c.topic, Bytes(c.payload)), c.resend);
  }
}

TEST(RedeliveryFilter, QosZeroMessagesAreNeverRememberedNorEndTheChecks) {
  RedeliveryFilter filter(20);
  const std::string payload = "x";
  filter.Remember(0, "t", Bytes(payload));
  EXPECT_EQ(filter.remembered(), 0u);
  filter.Remember(5, "t", Bytes(payload));
  filter.Connected(true);
  EXPECT_FALSE(filter.IsRedelivery(0, "t", Bytes(payload)));
  EXPECT_TRUE(filter.IsRedelivery(5, "t", Bytes(payload)));
}

TEST(RedeliveryFilter, RemembersOnlyTheNewestWindow) {
  RedeliveryFilter filter(3);
  const std::string payload = "p";
  for (uint16_t mid = 1; mid <= 5; ++mid) filter.Remember(mid, "t", Bytes(payload));
  EXPECT_EQ(filter.remembered(), 3u);
  filter.Connected(true);
  EXPECT_TRUE(filter.IsRedelivery(3, "t", Bytes(payload)));
  EXPECT_TRUE(filter.IsRedelivery(4, "t", Bytes(payload)));
  EXPECT_TRUE(filter.IsRedelivery(5, "t", Bytes(payload)));

  RedeliveryFilter pushed_out(3);
  for (uint16_t mid = 1; mid <= 5; ++mid) pushed_out.Remember(mid, "t", Bytes(payload));
  pushed_out.Connected(true);
  EXPECT_FALSE(pushed_out.IsRedelivery(2, "t", Bytes(payload)));
}

// mosquitto 2.0.11 resent 46 journaled messages after a kill (its
// max_inflight_messages is 20): every one of them is a resend.
TEST(RedeliveryFilter, RecognisesEveryResendOfALongUnacknowledgedRun) {
  RedeliveryFilter filter(4096);
  for (uint16_t mid = 1; mid <= 50; ++mid) filter.Remember(mid, "t", Bytes("p" + std::to_string(mid)));
  filter.Connected(true);
  for (uint16_t mid = 5; mid <= 50; ++mid) {
    EXPECT_TRUE(filter.IsRedelivery(mid, "t", Bytes("p" + std::to_string(mid)))) << mid;
  }
  EXPECT_FALSE(filter.IsRedelivery(51, "t", Bytes("p51")));
}

TEST(RedeliveryFilter, TheFirstDeliveryThatIsNoResendEndsTheChecks) {
  RedeliveryFilter filter = Remembering(3);
  const std::string payload = "p";
  EXPECT_TRUE(filter.IsRedelivery(1, "t", Bytes(payload)));
  EXPECT_FALSE(filter.IsRedelivery(9, "t", Bytes(payload)));  // a new message
  EXPECT_FALSE(filter.IsRedelivery(2, "t", Bytes(payload))) << "a new message that happens to look like one";
  EXPECT_EQ(filter.remembered(), 3u) << "kept for the next reconnect, the resend too";
}

// Checks are not only for the first connect of a process: the broker may
// drop the link at any time (keepalive, restart) with PUBACKs unsent.
TEST(RedeliveryFilter, EveryReconnectToAKeptSessionIsChecked) {
  RedeliveryFilter filter(20);
  filter.Connected(false);
  const std::string payload = "p";
  for (uint16_t mid = 1; mid <= 3; ++mid) {
    EXPECT_FALSE(filter.IsRedelivery(mid, "t", Bytes(payload)));
    filter.Remember(mid, "t", Bytes(payload));
  }
  filter.Connected(true);  // the link dropped with the PUBACKs of 2 and 3 unsent
  EXPECT_TRUE(filter.IsRedelivery(2, "t", Bytes(payload)));
  EXPECT_TRUE(filter.IsRedelivery(3, "t", Bytes(payload)));
  EXPECT_FALSE(filter.IsRedelivery(4, "t", Bytes(payload)));
  filter.Remember(4, "t", Bytes(payload));
  filter.Connected(true);  // and again, right after 4
  EXPECT_TRUE(filter.IsRedelivery(4, "t", Bytes(payload)));
  EXPECT_FALSE(filter.IsRedelivery(5, "t", Bytes(payload)));
}

TEST(RedeliveryFilter, NothingIsAResendBeforeAKeptSessionResumes) {
  RedeliveryFilter filter(20);
  filter.Remember(1, "t", Bytes("p"));
  EXPECT_FALSE(filter.IsRedelivery(1, "t", Bytes("p"))) << "not connected yet";
}

TEST(RedeliveryFilter, MessagesTheBrokerHadAcknowledgedAreSkipped) {
  RedeliveryFilter filter = Remembering(10);
  const std::string payload = "p";
  EXPECT_TRUE(filter.IsRedelivery(4, "t", Bytes(payload)));  // 1..3 were acknowledged before the kill
  EXPECT_EQ(filter.remembered(), 7u) << "4..10: the resend stays, its PUBACK may be lost again";
  EXPECT_FALSE(filter.IsRedelivery(2, "t", Bytes(payload))) << "older than the last resend: new";
}

// A connection that breaks again before the PUBACKs of the resends it
// brought leave (the lease lapsing, a delivery waiting past the keepalive
// for its verdict) brings them once more, this relay's and a handed-over
// one alike: recognised again. Until 2026-12-07 each resend was forgotten
// when recognised, and taken as a new message the second time (a helper's
// review).
TEST(RedeliveryFilter, ResendsAreRecognisedAgainAfterASecondBreak) {
  RedeliveryFilter filter(20);
  for (uint16_t mid = 1; mid <= 4; ++mid) filter.Remember(mid, "t", Bytes("p" + std::to_string(mid)));
  filter.RememberHandedOver(9, "t", Bytes("h"));
  filter.Connected(true);  // the PUBACKs of 3 and 4 never left
  EXPECT_TRUE(filter.IsRedelivery(3, "t", Bytes("p3")));
  EXPECT_TRUE(filter.IsRedelivery(9, "t", Bytes("h")));
  EXPECT_TRUE(filter.IsRedelivery(4, "t", Bytes("p4")));
  filter.Connected(true);  // broken again before their PUBACKs left
  EXPECT_TRUE(filter.IsRedelivery(3, "t", Bytes("p3")));
  EXPECT_TRUE(filter.IsRedelivery(4, "t", Bytes("p4")));
  EXPECT_TRUE(filter.IsRedelivery(9, "t", Bytes("h")));
  EXPECT_FALSE(filter.IsRedelivery(5, "t", Bytes("p5"))) << "a new message ends the checks";
  EXPECT_FALSE(filter.IsRedelivery(4, "t", Bytes("p4"))) << "after a new one: new too";
  filter.Connected(true);  // their PUBACKs left this time: the next resend is of a later delivery
  filter.Remember(5, "t", Bytes("p5"));
  filter.Connected(true);
  EXPECT_TRUE(filter.IsRedelivery(5, "t", Bytes("p5")));
  EXPECT_EQ(filter.remembered(), 2u) << "5, and the handed-over one (it ages with this relay's deliveries)";
}

TEST(RedeliveryFilter, ResendsAreOneUnbrokenRun) {
  RedeliveryFilter filter = Remembering(10);
  const std::string payload = "p";
  EXPECT_TRUE(filter.IsRedelivery(4, "t", Bytes(payload)));
  EXPECT_TRUE(filter.IsRedelivery(5, "t", Bytes(payload)));
  EXPECT_FALSE(filter.IsRedelivery(7, "t", Bytes(payload))) << "6 was skipped: 7 is a new message";
  EXPECT_FALSE(filter.IsRedelivery(6, "t", Bytes(payload)));
}

// A handed-over message remembered between two deliveries of this relay's
// breaks no run: when the session resumes, this relay's resends 2 and 3
// are both recognised, and so is the handed-over one's, wherever it comes.
// Until 2026-12-05 the handed-over message sat in the run between 2 and 3,
// the resend of 3 ended the checks, and 3 was stored twice.
TEST(RedeliveryFilter, AHandedOverMessageRememberedBetweenTwoDeliveriesBreaksNoRun) {
  RedeliveryFilter filter(20);
  filter.Remember(1, "t", Bytes("a"));
  filter.Remember(2, "t", Bytes("b"));
  filter.RememberHandedOver(7, "t", Bytes("h"));
  filter.Remember(3, "t", Bytes("c"));
  EXPECT_EQ(filter.remembered(), 4u);
  filter.Connected(true);  // the PUBACKs of 2 and 3 never left
  EXPECT_TRUE(filter.IsRedelivery(2, "t", Bytes("b")));
  EXPECT_TRUE(filter.IsRedelivery(3, "t", Bytes("c")));
  EXPECT_TRUE(filter.IsRedelivery(7, "t", Bytes("h"))) << "the handed-over message's resend, after them";
  EXPECT_FALSE(filter.IsRedelivery(4, "t", Bytes("d")));
  // And first: a handed-over resend does not end the run that follows it.
  RedeliveryFilter other(20);
  other.Remember(2, "t", Bytes("b"));
  other.RememberHandedOver(7, "t", Bytes("h"));
  other.Remember(3, "t", Bytes("c"));
  other.Connected(true);
  EXPECT_TRUE(other.IsRedelivery(7, "t", Bytes("h")));
  EXPECT_TRUE(other.IsRedelivery(2, "t", Bytes("b")));
  EXPECT_TRUE(other.IsRedelivery(3, "t", Bytes("c")));
  EXPECT_FALSE(other.IsRedelivery(7, "t", Bytes("h"))) << "taken once: a new message now";
}

// A handed-over message's resend comes before the SUBACK of the relay's
// first resumption of the session, maybe after resends this relay knows
// nothing of (messages the previous holder committed, which the writer
// checks): until that SUBACK it is recognised, after it never, and Contains
// finds it for as long as this relay's own deliveries would be found.
// Until 2026-12-05 the first unknown resend ended the checks, and the
// handed-over message's resend was stored a second time.
TEST(RedeliveryFilter, AHandedOverMessageIsAResendUntilTheFirstSubackAfterUnknownResendsToo) {
  RedeliveryFilter filter(20);
  filter.RememberHandedOver(100, "t", Bytes("1"));
  filter.RememberHandedOver(101, "t", Bytes("2"));
  filter.Connected(true);
  EXPECT_FALSE(filter.IsRedelivery(99, "t", Bytes("committed by the previous holder")));
  EXPECT_TRUE(filter.IsRedelivery(100, "t", Bytes("1")));
  filter.Subscribed();
  EXPECT_FALSE(filter.IsRedelivery(101, "t", Bytes("2"))) << "after the SUBACK: a new message";
  EXPECT_TRUE(filter.Contains(101, "t", Bytes("2"))) << "a second hand-over of it is still found";
  filter.Connected(true);  // a later reconnect
  EXPECT_FALSE(filter.IsRedelivery(101, "t", Bytes("2")));
}

// Handed-over messages age with the relay's own deliveries: `window`
// deliveries later the packet ids may wrap round to theirs.
TEST(RedeliveryFilter, AHandedOverMessageAgesWithTheRelaysOwnDeliveries) {
  RedeliveryFilter filter(20);
  filter.RememberHandedOver(100, "t", Bytes("1"));
  for (uint16_t mid = 1; mid <= 19; ++mid) filter.Remember(mid, "t", Bytes("p"));
  EXPECT_TRUE(filter.Contains(100, "t", Bytes("1")));
  filter.Remember(20, "t", Bytes("p"));
  EXPECT_FALSE(filter.Contains(100, "t", Bytes("1")));
}

// A new session forgets handed-over messages too.
TEST(RedeliveryFilter, ANewSessionForgetsHandedOverMessagesToo) {
  RedeliveryFilter filter(20);
  filter.RememberHandedOver(1, "t", Bytes("h"));
  filter.Connected(false);
  EXPECT_EQ(filter.remembered(), 0u);
  EXPECT_FALSE(filter.Contains(1, "t", Bytes("h")));
}

TEST(RedeliveryFilter, ANewSessionHoldsNoResends) {
  RedeliveryFilter filter(20);
  const std::string payload = "online";
  filter.Remember(1, "dev/a", Bytes(payload));
  filter.Connected(true);
  filter.Connected(false);  // e.g. the broker lost its persistence: packet ids start at 1 again
  EXPECT_FALSE(filter.IsRedelivery(1, "dev/a", Bytes(payload))) << "a new message, however alike";
  EXPECT_EQ(filter.remembered(), 0u);
}

// A message another relay handed over from its journal: stored already if
// this relay took mosquitto's resend of it (same id, topic and payload),
// whether or not the filter is armed, and asking changes nothing.
TEST(RedeliveryFilter, FindAnswersForTakenMessagesWithoutForgettingThem) {
  using Kind = RedeliveryFilter::Match::Kind;
  RedeliveryFilter filter(3);
  EXPECT_EQ(filter.Remember(5, "chat/a", Bytes("x")), 1u);
  EXPECT_EQ(filter.Remember(6, "chat/a", Bytes("y")), 2u);
  EXPECT_EQ(filter.Remember(0, "chat/a", Bytes("z")), 0u);  // QoS 0: never remembered, no number
  auto delivery = [&](uint16_t mid, std::string_view topic, std::string_view payload) {
    const auto m = filter.Find(mid, topic, Bytes(std::string(payload)));
    return m.kind == Kind::kDelivery ? m.delivery : 0;
  };
  EXPECT_EQ(delivery(5, "chat/a", "x"), 1u);
  EXPECT_EQ(delivery(5, "chat/a", "x"), 1u);  // still there
  EXPECT_EQ(delivery(6, "chat/a", "y"), 2u);
  EXPECT_EQ(filter.Find(5, "chat/a", Bytes("y")).kind, Kind::kNone);  // same id, other payload
  EXPECT_EQ(filter.Find(5, "chat/b", Bytes("x")).kind, Kind::kNone);  // same id, other topic
  EXPECT_EQ(filter.Find(7, "chat/a", Bytes("x")).kind, Kind::kNone);  // other id
  EXPECT_EQ(filter.Find(0, "chat/a", Bytes("x")).kind, Kind::kNone);  // QoS 0
  filter.Remember(7, "t", Bytes("p"));
  filter.Remember(8, "t", Bytes("p"));  // the window is 3: message 5 is forgotten
  EXPECT_EQ(filter.Find(5, "chat/a", Bytes("x")).kind, Kind::kNone);
  EXPECT_EQ(delivery(6, "chat/a", "y"), 2u);
}

// What kind of remembered message a handed-over one matches: PumpPending
// waits only for a delivery of this relay's not committed yet.
TEST(RedeliveryFilter, FindTellsJournalRecordsAndHandedOverMessagesFromDeliveries) {
  using Kind = RedeliveryFilter::Match::Kind;
  RedeliveryFilter filter(10);
  filter.RememberFromJournal(1, "t", Bytes("j"), /*committed=*/false);
  filter.RememberHandedOver(2, "t", Bytes("h"));
  EXPECT_EQ(filter.Remember(3, "t", Bytes("d")), 2u) << "numbered after the journal's record";
  EXPECT_EQ(filter.Find(1, "t", Bytes("j")).kind, Kind::kJournal);
  EXPECT_EQ(filter.Find(2, "t", Bytes("h")).kind, Kind::kHandedOver);
  EXPECT_EQ(filter.Find(3, "t", Bytes("d")).kind, Kind::kDelivery);
  EXPECT_EQ(filter.Find(3, "t", Bytes("d")).delivery, 2u);
}

// The digest that, with the packet id, recognises a message across relays:
// the topic and payload are kept apart, and it is the FNV-1a of the bytes
// (topic, a NUL, payload), so every process and build agrees.
// mosquitto numbers the deliveries the relay does not take too (retained
// replays on every resumed SUBSCRIBE, messages refused for their size):
// once kIdentifiers - window of them followed a remembered message, the
// identifiers may have come round to its own, and a new message equal to
// it is no resend. Until 2026-12-07 it was taken for one and dropped.
TEST(RedeliveryFilter, ARememberedMessageIsForgottenBeforeTheIdentifiersComeRoundToIt) {
  constexpr std::size_t kWindow = 20;
  RedeliveryFilter filter(kWindow);
  filter.Seen();
  filter.Remember(7, "hb", Bytes("1"));
  filter.Seen();
  filter.Remember(8, "hb", Bytes("2"));
  // Untaken deliveries up to one short of the span from the first.
  for (uint64_t i = 2; i < RedeliveryFilter::kIdentifiers - kWindow; ++i) filter.Seen();
  EXPECT_TRUE(filter.Contains(7, "hb", Bytes("1")));
  filter.Seen();
  EXPECT_FALSE(filter.Contains(7, "hb", Bytes("1")));
  EXPECT_TRUE(filter.Contains(8, "hb", Bytes("2")));  // seen one later: kept one more
  filter.Connected(true);
  filter.Seen();  // the first delivery after the reconnect: id 7 again, come round
  EXPECT_FALSE(filter.IsRedelivery(7, "hb", Bytes("1")));
}

// Resends count as deliveries too, and the filter still finds them: the
// span is far beyond what can be in flight.
TEST(RedeliveryFilter, ResendsAreFoundAfterManyUntakenDeliveries) {
  RedeliveryFilter filter(20);
  for (int i = 0; i < 50000; ++i) filter.Seen();
  for (uint16_t mid = 1; mid <= 5; ++mid) {
    filter.Seen();
    filter.Remember(mid, "t", Bytes("p"));
  }
  filter.Connected(true);
  for (uint16_t mid = 3; mid <= 5; ++mid) {
    filter.Seen();
    EXPECT_TRUE(filter.IsRedelivery(mid, "t", Bytes("p"))) << mid;
  }
}

TEST(MessageDigest, SeparatesTopicFromPayloadAndIsFnv1a) {
  EXPECT_EQ(Digest("t", Bytes("ab")), Digest("t", Bytes("ab")));
  EXPECT_NE(Digest("t", Bytes("ab")), Digest("ta", Bytes("b")));
  EXPECT_NE(Digest("t", Bytes("ab")), Digest("t", Bytes("ba")));
  EXPECT_EQ(Digest("", Bytes("")), 0xaf63bd4c8601b7dfu);  // FNV-1a 64 of one NUL byte
}

}  // namespace
}  // namespace seqrelay
