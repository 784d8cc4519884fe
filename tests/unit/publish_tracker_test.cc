// Tests of PublishTracker: the published-and-acknowledged watermark that a
// restarted relay republishes from.
#include "publish/publish_tracker.h"

#include <gtest/gtest.h>

namespace seqrelay {
namespace {

TEST(PublishTrackerTest, StartsEmptyAtZero) {
  PublishTracker t;
  EXPECT_EQ(t.watermark(), 0u);
  EXPECT_EQ(t.in_flight(), 0u);
}

TEST(PublishTrackerTest, InOrderAcksAdvanceTheWatermark) {
  PublishTracker t;
  t.Sent(1, 101);
  t.Sent(2, 102);
  t.Sent(3, 103);
  EXPECT_EQ(t.watermark(), 0u);
  EXPECT_EQ(t.in_flight(), 3u);

  t.Acked(101);
  EXPECT_EQ(t.watermark(), 1u);
  t.Acked(102);
  EXPECT_EQ(t.watermark(), 2u);
  t.Acked(103);
  EXPECT_EQ(t.watermark(), 3u);
  EXPECT_EQ(t.in_flight(), 0u);
}

// What a reconnect's republish skips: rows acknowledged, below the
// watermark or above it out of order.
TEST(PublishTrackerTest, AcknowledgedSaysWhichRowsTheBrokerHas) {
  PublishTracker t(10);
  t.Sent(11, 1);
  t.Sent(12, 2);
  t.Sent(13, 3);
  t.Acked(2);
  t.Acked(3);
  EXPECT_TRUE(t.Acknowledged(10)) << "at the watermark";
  EXPECT_FALSE(t.Acknowledged(11)) << "the row holding the watermark";
  EXPECT_TRUE(t.Acknowledged(12));
  EXPECT_TRUE(t.Acknowledged(13));
  EXPECT_FALSE(t.Acknowledged(14)) << "never sent";
  t.Acked(1);
  EXPECT_TRUE(t.Acknowledged(11));
  EXPECT_EQ(t.watermark(), 13u);
}

TEST(PublishTrackerTest, OutOfOrderAcksHoldTheWatermarkUntilTheGapCloses) {
  PublishTracker t;
  t.Sent(1, 11);
  t.Sent(2, 12);
  t.Sent(3, 13);
  t.Sent(4, 14);

  t.Acked(13);
  t.Acked(14);
  EXPECT_EQ(t.watermark(), 0u) << "idx 1 and 2 are still unacknowledged";
  EXPECT_EQ(t.in_flight(), 2u);

  t.Acked(11);
  EXPECT_EQ(t.watermark(), 1u) << "idx 2 is still unacknowledged";

  t.Acked(12);
  EXPECT_EQ(t.watermark(), 4u) << "the gap closed: 3 and 4 were acknowledged before";
  EXPECT_EQ(t.in_flight(), 0u);
}

TEST(PublishTrackerTest, UnknownMidIsIgnored) {
  PublishTracker t;
  t.Sent(1, 1);
  t.Acked(999);
  EXPECT_EQ(t.watermark(), 0u);
  EXPECT_EQ(t.in_flight(), 1u);

  t.Acked(1);
  EXPECT_EQ(t.watermark(), 1u);
  t.Acked(1);  // acknowledged twice: the second is unknown now
  EXPECT_EQ(t.watermark(), 1u);
  EXPECT_EQ(t.in_flight(), 0u);
}

TEST(PublishTrackerTest, InitialWatermarkIsRespected) {
  PublishTracker t(500);
  EXPECT_EQ(t.watermark(), 500u);

  t.Sent(500, 1);  // at the watermark: already acknowledged, ignored
  t.Sent(17, 2);   // below it: ignored
  EXPECT_EQ(t.in_flight(), 0u);
  t.Acked(1);
  t.Acked(2);
  EXPECT_EQ(t.watermark(), 500u);

  t.Sent(501, 3);
  t.Sent(502, 4);
  EXPECT_EQ(t.in_flight(), 2u);
  t.Acked(4);
  EXPECT_EQ(t.watermark(), 500u);
  t.Acked(3);
  EXPECT_EQ(t.watermark(), 502u);
}

TEST(PublishTrackerTest, SentAtOrBelowTheLastSentIsIgnored) {
  PublishTracker t;
  t.Sent(1, 1);
  t.Sent(2, 2);
  t.Sent(2, 3);  // resend of idx 2 under another mid: ignored
  t.Sent(1, 4);
  EXPECT_EQ(t.in_flight(), 2u);
  t.Acked(3);
  t.Acked(4);
  EXPECT_EQ(t.watermark(), 0u);
  t.Acked(1);
  t.Acked(2);
  EXPECT_EQ(t.watermark(), 2u);
}

TEST(PublishTrackerTest, SkippedIdxCountsAsAcknowledged) {
  PublishTracker t;
  t.Sent(1, 1);
  t.Sent(5, 2);  // rows 2..4 were deleted from MSG
  EXPECT_EQ(t.in_flight(), 2u) << "skipped rows are not in flight";

  t.Acked(1);
  EXPECT_EQ(t.watermark(), 4u) << "2, 3 and 4 count as acknowledged";
  t.Acked(2);
  EXPECT_EQ(t.watermark(), 5u);
  EXPECT_EQ(t.in_flight(), 0u);
}

TEST(PublishTrackerTest, SkippedIdxAckedOutOfOrder) {
  PublishTracker t(10);
  t.Sent(11, 1);
  t.Sent(14, 2);
  t.Sent(15, 3);
  t.Acked(3);
  t.Acked(2);
  EXPECT_EQ(t.watermark(), 10u) << "idx 11 is still unacknowledged";
  t.Acked(1);
  EXPECT_EQ(t.watermark(), 15u);
}

TEST(PublishTrackerTest, SkippedIdxWithNothingPendingAdvancesTheWatermarkAtOnce) {
  PublishTracker t;
  t.Sent(5, 1);
  EXPECT_EQ(t.watermark(), 4u) << "rows 1..4 count as acknowledged";

  PublishTracker u;
  u.Sent(1, 1);
  u.Acked(1);
  ASSERT_EQ(u.watermark(), 1u);
  u.Sent(4, 2);
  EXPECT_EQ(u.watermark(), 3u) << "rows 2 and 3 count as acknowledged";

  // A row far ahead (a shard's last idx, 2^40 - 1, after its first): one
  // step, not one per skipped idx (the build before counted 2^40 of them).
  PublishTracker far;
  far.Sent(1, 1);
  far.Acked(1);
  far.Sent((uint64_t{1} << 40) - 1, 2);
  EXPECT_EQ(far.watermark(), (uint64_t{1} << 40) - 2);
  EXPECT_EQ(far.in_flight(), 1u);
  far.Acked(2);
  EXPECT_EQ(far.watermark(), (uint64_t{1} << 40) - 1);
}

// The same with rows pending before the far row, as at a start that
// republishes a shard's unacknowledged rows and then one written by hand at
// the end of its range: the build before kept a slot for every idx skipped,
// 2^40 of them (the relay died of it at every start).
TEST(PublishTrackerTest, AFarSkipWithRowsPendingCostsOneSlot) {
  constexpr uint64_t kFar = (uint64_t{1} << 40) - 1;
  PublishTracker t;
  t.Sent(1, 1);
  t.Sent(2, 2);
  t.Sent(kFar, 3);
  EXPECT_EQ(t.in_flight(), 3u);
  EXPECT_EQ(t.last_sent(), kFar);
  EXPECT_EQ(t.watermark(), 0u);
  EXPECT_TRUE(t.Acknowledged(3)) << "a skipped row counts as acknowledged";
  EXPECT_FALSE(t.Acknowledged(kFar));
  t.Acked(2);
  EXPECT_EQ(t.watermark(), 0u) << "row 1 still holds it";
  t.Acked(1);
  EXPECT_EQ(t.watermark(), kFar - 1) << "2 and every skipped row passed at once";
  t.Acked(3);
  EXPECT_EQ(t.watermark(), kFar);
  EXPECT_EQ(t.in_flight(), 0u);
}

TEST(PublishTrackerTest, InFlightCountsUnacknowledgedPublishes) {
  PublishTracker t;
  for (int i = 1; i <= 100; ++i) t.Sent(static_cast<uint64_t>(i), i);
  EXPECT_EQ(t.in_flight(), 100u);
  for (int i = 100; i >= 51; --i) t.Acked(i);
  EXPECT_EQ(t.in_flight(), 50u);
  EXPECT_EQ(t.watermark(), 0u);
  for (int i = 1; i <= 50; ++i) t.Acked(i);
  EXPECT_EQ(t.in_flight(), 0u);
  EXPECT_EQ(t.watermark(), 100u);
}

TEST(PublishTrackerTest, MidsAreReusedAfterAcknowledgement) {
  // MQTT mids are 16 bits and wrap; a mid may come back once acknowledged.
  PublishTracker t;
  t.Sent(1, 65535);
  t.Acked(65535);
  t.Sent(2, 65535);
  EXPECT_EQ(t.in_flight(), 1u);
  EXPECT_EQ(t.watermark(), 1u);
  t.Acked(65535);
  EXPECT_EQ(t.watermark(), 2u);
  EXPECT_EQ(t.in_flight(), 0u);
}

// --publish-qos 0: nothing ever confirms a frame, so the watermark must not
// wait for one, also when later QoS 1 style rows are pending around it.
TEST(PublishTrackerTest, UnconfirmedRowsNeverHoldTheWatermark) {
  PublishTracker t;
  for (uint64_t idx = 1; idx <= 5; ++idx) t.SentUnconfirmed(idx);
  EXPECT_EQ(t.watermark(), 5u);
  EXPECT_EQ(t.in_flight(), 0u);
  t.Sent(6, 100);
  t.SentUnconfirmed(7);
  EXPECT_EQ(t.watermark(), 5u) << "row 6 still awaits its acknowledgement";
  t.Acked(100);
  EXPECT_EQ(t.watermark(), 7u);
  t.SentUnconfirmed(7);  // at or below the last sent: ignored
  EXPECT_EQ(t.watermark(), 7u);
}

// After a reconnect the rows not yet acknowledged go out again under new
// mids; whichever of a row's two messages the broker acknowledges counts,
// and the other's acknowledgement, if it comes too, changes nothing.
TEST(PublishTrackerTest, AResentRowCountsOnceByEitherMid) {
  PublishTracker t;
  t.Sent(1, 10);
  t.Sent(2, 11);
  t.Sent(3, 12);
  EXPECT_EQ(t.last_sent(), 3u);
  t.Resent(2, 20);
  t.Resent(3, 21);
  EXPECT_EQ(t.in_flight(), 3u) << "resending a row does not count it twice";
  t.Acked(20);  // row 2 by its second message
  EXPECT_EQ(t.watermark(), 0u);
  t.Acked(10);
  EXPECT_EQ(t.watermark(), 2u);
  t.Acked(11);  // row 2 by its first message as well: nothing changes
  EXPECT_EQ(t.watermark(), 2u);
  EXPECT_EQ(t.in_flight(), 1u);
  t.Acked(12);
  EXPECT_EQ(t.watermark(), 3u);
  EXPECT_EQ(t.in_flight(), 0u);
  t.Acked(21);  // the late second acknowledgement of an acknowledged row
  EXPECT_EQ(t.watermark(), 3u);
  EXPECT_EQ(t.in_flight(), 0u);
}

// A flapping link: each reconnect republishes only the rows not resent yet
// (libmosquitto holds the resent ones twice already and sends them again
// by itself), so its queue holds at most two copies of a row.
TEST(PublishTrackerTest, ARowIsResentOnceWhileUnacknowledged) {
  PublishTracker t;
  for (uint64_t idx = 1; idx <= 5; ++idx) t.Sent(idx, static_cast<int>(idx));
  EXPECT_EQ(t.unresent_after(), 0u);
  for (uint64_t idx = 1; idx <= 5; ++idx) t.Resent(idx, static_cast<int>(100 + idx));  // the first reconnect
  EXPECT_EQ(t.unresent_after(), 5u) << "the next reconnect has nothing of rows 1..5 to resend";
  t.Sent(6, 6);
  t.Sent(7, 7);
  EXPECT_EQ(t.unresent_after(), 5u) << "rows 6 and 7 are owed a resend";
  t.Resent(6, 106);
  t.Resent(7, 107);
  t.Resent(9, 109);  // never sent: ignored
  EXPECT_EQ(t.unresent_after(), 7u);
  for (int mid = 1; mid <= 7; ++mid) t.Acked(mid);
  EXPECT_EQ(t.watermark(), 7u);
  EXPECT_EQ(t.unresent_after(), 7u);
  t.Sent(8, 8);
  EXPECT_EQ(t.unresent_after(), 7u) << "row 8 was never resent";
  t.Acked(8);
  EXPECT_EQ(t.unresent_after(), 8u) << "the watermark, once past every resent row";
}

// A message lost with its connection is never acknowledged: the row's
// resend alone moves the watermark past it.
TEST(PublishTrackerTest, ALostMessageIsReplacedByItsResend) {
  PublishTracker t;
  t.Sent(1, 7);  // lost
  t.Sent(2, 8);
  t.Acked(8);
  EXPECT_EQ(t.watermark(), 0u);
  t.Resent(1, 9);
  t.Acked(9);
  EXPECT_EQ(t.watermark(), 2u);
  EXPECT_EQ(t.in_flight(), 0u);
  t.Resent(2, 30);  // acknowledged already: ignored
  t.Resent(5, 31);  // never sent: ignored
  t.Acked(30);
  t.Acked(31);
  EXPECT_EQ(t.watermark(), 2u);
  t.Sent(3, 7);  // libmosquitto may hand out the lost message's mid again
  t.Acked(7);
  EXPECT_EQ(t.watermark(), 3u);
}

}  // namespace
}  // namespace seqrelay
