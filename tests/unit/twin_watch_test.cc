#include "lease/twin_watch.h"

#include <gtest/gtest.h>

namespace seqrelay {
namespace {

using std::chrono::milliseconds;
constexpr std::chrono::microseconds kSlack = milliseconds(300);  // a 3 s lease's tenth

class TwinWatchTest : public ::testing::Test {
 protected:
  TwinWatch watch_{"r1", kSlack};
  TwinWatch::Clock::time_point t0_ = TwinWatch::Clock::now();
  // A reading at t0 + `at_ms` of a lease under `owner` that expires `in_ms` later.
  bool See(std::string_view owner, uint32_t epoch, int64_t in_ms, int64_t at_ms) {
    return watch_.Observe(owner, epoch, in_ms * 1000, t0_ + milliseconds(at_ms));
  }
};

// This relay's previous process, killed: its lease runs out, nothing moves it.
TEST_F(TwinWatchTest, ALeaseLeftByThisRelaysEarlierRunIsNoTwin) {
  EXPECT_FALSE(See("r1", 7, 2900, 0));
  EXPECT_FALSE(See("r1", 7, 1900, 1000));
  EXPECT_FALSE(See("r1", 7, 905, 2000));  // the reads' round trips: a few ms either way
  EXPECT_FALSE(See("r1", 7, -95, 3000));  // ran out
}

// Another process with this relay's id renews it: the expiry moves ahead.
TEST_F(TwinWatchTest, ALeaseRenewedUnderThisRelaysIdIsATwin) {
  EXPECT_FALSE(See("r1", 7, 2900, 0));
  EXPECT_TRUE(See("r1", 7, 2950, 1000));  // renewed at about 950 ms
}

TEST_F(TwinWatchTest, AnotherRelaysRenewalsAreNoTwin) {
  EXPECT_FALSE(See("r2", 7, 2000, 0));
  EXPECT_FALSE(See("r2", 7, 2900, 1000));
  EXPECT_FALSE(See("r2", 7, 2900, 2000));
}

// A new epoch is a takeover, not a renewal; the watch starts again from it.
TEST_F(TwinWatchTest, ATakeoverIsNotTakenForARenewal) {
  EXPECT_FALSE(See("r1", 7, 500, 0));
  EXPECT_FALSE(See("r1", 8, 3000, 600));
  EXPECT_TRUE(See("r1", 8, 3000, 1600));
}

// Readings of another holder in between start the watch again.
TEST_F(TwinWatchTest, AnotherHolderInBetweenStartsTheWatchAgain) {
  EXPECT_FALSE(See("r1", 7, 100, 0));
  EXPECT_FALSE(See("r2", 8, 3000, 200));
  EXPECT_FALSE(See("r1", 9, 3000, 3300));
  EXPECT_FALSE(See("r1", 9, 2000, 4300));
}

}  // namespace
}  // namespace seqrelay
