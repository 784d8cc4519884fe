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

}  // namespace
}  // namespace seqrelay
