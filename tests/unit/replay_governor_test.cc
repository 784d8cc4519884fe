// Tests of ReplayGovernor: the rate at which replays may go, set from the
// delay of live frames. Driven on a made-up clock.
#include "replay/replay_governor.h"

#include <gtest/gtest.h>

namespace seqrelay {
namespace {

using namespace std::chrono_literals;
using Clock = ReplayGovernor::Clock;

constexpr auto kInterval = 20ms;

class ReplayGovernorTest : public ::testing::Test {
 protected:
  ReplayGovernorTest() : gov_(Options()) {}

  static ReplayGovernor::Options Options() {
    return {.target = 2ms, .start_rate = 2000, .min_rate = 500, .max_rate = 8000, .interval = kInterval};
  }

  // A live batch taken `delay` ago whose first frame, `mid`, is acknowledged now.
  void Live(int mid, Clock::duration delay) {
    gov_.LiveBatchTaken(now_ - delay, now_ - delay / 2);
    gov_.LiveSent(mid);
    gov_.LiveBatchDone();
    gov_.LiveAcked(mid, now_);
  }
  // A replay that wants to go faster than the rate: two frames at once, so
  // the second waits for its slot.
  void ReplayFlatOut() {
    gov_.Reserve(now_);
    gov_.Reserve(now_);
  }
  // Ends the interval: the next Reserve applies what it saw.
  void NextInterval() { now_ += kInterval; }
  // The next `n` intervals, with a replay flat out in each.
  void NextIntervalsFlatOut(int n = 1) {
    for (int i = 0; i < n; ++i) {
      NextInterval();
      ReplayFlatOut();
    }
  }

  ReplayGovernor gov_;
  Clock::time_point now_ = Clock::time_point{} + 100s;
};

TEST_F(ReplayGovernorTest, SpacesReplayFramesAtTheStartRate) {
  const auto first = gov_.Reserve(now_);
  const auto second = gov_.Reserve(now_);
  const auto third = gov_.Reserve(now_);
  EXPECT_EQ(first, now_);
  EXPECT_EQ(second - first, 500us);  // 2,000 frames/s
  EXPECT_EQ(third - second, 500us);
  EXPECT_DOUBLE_EQ(gov_.rate(), 2000);
}

TEST_F(ReplayGovernorTest, ATargetOfZeroNeverHoldsAReplayBack) {
  ReplayGovernor off({.target = Clock::duration::zero()});
  EXPECT_FALSE(off.enabled());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(off.Reserve(now_), now_);
}

TEST_F(ReplayGovernorTest, GrowsByAQuarterWhileLiveFramesAreOnTime) {
  ReplayFlatOut();
  Live(1, 300us);
  NextIntervalsFlatOut();
  EXPECT_DOUBLE_EQ(gov_.rate(), 2500);
  NextIntervalsFlatOut();
  EXPECT_DOUBLE_EQ(gov_.rate(), 3125);
}

TEST_F(ReplayGovernorTest, GrowsLessTheCloserLiveDelayComesToTheTarget) {
  ReplayFlatOut();
  Live(1, 300us);  // the base
  Live(2, 1300us);  // base + half the target
  NextIntervalsFlatOut();
  EXPECT_DOUBLE_EQ(gov_.rate(), 2250);  // +12.5%
}

TEST_F(ReplayGovernorTest, HalvesWhenLiveFramesAreLateAndStopsAtTheFloor) {
  ReplayFlatOut();
  Live(1, 300us);
  NextIntervalsFlatOut();
  ASSERT_DOUBLE_EQ(gov_.rate(), 2500);
  Live(2, 2400us);  // 2.1 ms over the base
  NextIntervalsFlatOut();
  EXPECT_DOUBLE_EQ(gov_.rate(), 1250);
  Live(3, 5ms);
  NextIntervalsFlatOut();
  EXPECT_DOUBLE_EQ(gov_.rate(), 625);
  Live(4, 5ms);
  NextIntervalsFlatOut();
  EXPECT_DOUBLE_EQ(gov_.rate(), 500);
  // The halved rate spaces the frames.
  now_ += 1ms;
  const auto a = gov_.Reserve(now_);
  EXPECT_EQ(gov_.Reserve(now_) - a, 2ms);
}

TEST_F(ReplayGovernorTest, DoesNotGrowWhenReplaysAreSlowerThanTheRate) {
  gov_.Reserve(now_);
  Live(1, 300us);
  for (int i = 0; i < 5; ++i) {
    NextInterval();
    gov_.Reserve(now_);  // one frame per interval: 50 frames/s, far under 2,000
  }
  EXPECT_DOUBLE_EQ(gov_.rate(), 2000);
}

TEST_F(ReplayGovernorTest, NoLiveTrafficLetsTheRateGrowToTheCeiling) {
  for (int i = 0; i < 20; ++i) {
    ReplayFlatOut();
    NextInterval();
  }
  gov_.Reserve(now_);
  EXPECT_DOUBLE_EQ(gov_.rate(), 8000);
}

TEST_F(ReplayGovernorTest, ALiveFrameStillUnacknowledgedCountsWithItsAge) {
  ReplayFlatOut();
  Live(1, 300us);
  gov_.LiveBatchTaken(now_, now_);
  gov_.LiveSent(2);  // its PUBACK does not come
  now_ += 3ms;
  NextIntervalsFlatOut();
  EXPECT_DOUBLE_EQ(gov_.rate(), 1000);
}

TEST_F(ReplayGovernorTest, ABatchStillBeingCommittedCountsWithItsAgeHoweverLongItTakes) {
  ReplayFlatOut();
  Live(1, 300us);
  gov_.LiveBatchTaken(now_, now_);  // its commit hangs: no frame goes out
  NextIntervalsFlatOut();
  EXPECT_DOUBLE_EQ(gov_.rate(), 1000) << "20 ms and counting";
  NextIntervalsFlatOut(150);  // 3 s: never given up
  EXPECT_DOUBLE_EQ(gov_.rate(), 500);
  gov_.LiveSent(2);  // committed at last
  gov_.LiveBatchDone();
  gov_.LiveAcked(2, now_);
  NextIntervalsFlatOut();
  EXPECT_DOUBLE_EQ(gov_.rate(), 500) << "its 3 s count once more";
  NextIntervalsFlatOut();
  EXPECT_DOUBLE_EQ(gov_.rate(), 625);
}

TEST_F(ReplayGovernorTest, ABatchThatPublishedNothingIsNotTimed) {
  ReplayFlatOut();
  Live(1, 300us);
  gov_.LiveBatchTaken(now_, now_);
  gov_.LiveBatchDone();  // every message refused
  now_ += 5ms;
  NextIntervalsFlatOut();
  EXPECT_DOUBLE_EQ(gov_.rate(), 2500);
}

TEST_F(ReplayGovernorTest, TimesOneBatchAtATime) {
  ReplayFlatOut();
  Live(1, 300us);
  gov_.LiveBatchTaken(now_, now_);
  gov_.LiveSent(2);
  gov_.LiveBatchTaken(now_ - 50ms, now_);  // ignored: a frame is being timed
  gov_.LiveSent(3);                  // not the timed batch's first frame
  gov_.LiveAcked(3, now_);
  gov_.LiveAcked(2, now_ + 300us);
  NextIntervalsFlatOut();
  EXPECT_DOUBLE_EQ(gov_.rate(), 2500) << "frame 3's 50 ms must not count";
}

TEST_F(ReplayGovernorTest, GivesUpOnAFrameUnacknowledgedForASecond) {
  ReplayFlatOut();
  Live(1, 300us);
  gov_.LiveBatchTaken(now_, now_);
  gov_.LiveSent(2);  // its PUBACK never comes (e.g. QoS 0 lost on a disconnect)
  NextIntervalsFlatOut(50);  // 1 s: it counts with its age every interval
  ASSERT_DOUBLE_EQ(gov_.rate(), 500);
  NextIntervalsFlatOut();
  EXPECT_DOUBLE_EQ(gov_.rate(), 625) << "frame 2 must count no longer";
  gov_.LiveAcked(2, now_);  // too late: ignored
  Live(3, 300us);           // the next frame is timed
  NextIntervalsFlatOut();
  EXPECT_DOUBLE_EQ(gov_.rate(), 781.25);
}

TEST_F(ReplayGovernorTest, ForgetsAnOldBaseAfterAQuietSpell) {
  Live(1, 300us);
  now_ += 3min;  // no live frame for more than two base windows
  ReplayFlatOut();
  Live(2, 2500us);  // slower than the old base by more than the target
  NextIntervalsFlatOut();
  EXPECT_DOUBLE_EQ(gov_.rate(), 2500) << "2.5 ms is today's base, not a late frame";
}

TEST_F(ReplayGovernorTest, KeepsTheBaseThroughTheNextWindow) {
  Live(1, 300us);
  now_ += 70s;  // into the next window: the minimum of the one before still counts
  ReplayFlatOut();
  Live(2, 2500us);
  NextIntervalsFlatOut();
  EXPECT_DOUBLE_EQ(gov_.rate(), 1000);
}

TEST_F(ReplayGovernorTest, RestartsFromTheStartRateAfterASecondWithoutReplays) {
  for (int i = 0; i < 3; ++i) {
    ReplayFlatOut();
    NextInterval();
  }
  gov_.Reserve(now_);
  ASSERT_GT(gov_.rate(), 2000);
  now_ += 2s;
  const auto a = gov_.Reserve(now_);
  EXPECT_EQ(a, now_) << "no slot is owed from before the pause";
  EXPECT_DOUBLE_EQ(gov_.rate(), 2000);
}

}  // namespace
}  // namespace seqrelay
