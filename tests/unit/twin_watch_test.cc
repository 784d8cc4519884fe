#include "lease/twin_watch.h"

#include <gtest/gtest.h>

namespace seqrelay {
namespace {

// Readings of the lease as a standby takes them: owner, epoch, the stored
// expiry (ms here) and whether it is live by the database's clock.
class TwinWatchTest : public ::testing::Test {
 protected:
  TwinWatch watch_{"r1"};
  bool See(std::string_view owner, uint32_t epoch, int64_t expires_ms, bool live = true) {
    return watch_.Observe(owner, epoch, expires_ms * 1000, live);
  }
};

// This relay's previous process, killed: its lease runs out, nothing moves
// its stored expiry, however the reads are delayed (a slow first read and
// a fast second one moved an expiry computed on the reader's clock, which
// the first version of this check used: a review's finding).
TEST_F(TwinWatchTest, ALeaseLeftByThisRelaysEarlierRunIsNoTwin) {
  EXPECT_FALSE(See("r1", 7, 3000));
  EXPECT_FALSE(See("r1", 7, 3000));
  EXPECT_FALSE(See("r1", 7, 3000));
  EXPECT_FALSE(See("r1", 7, 3000, /*live=*/false));  // ran out
}

// Another process with this relay's id renews it: the stored expiry moves.
TEST_F(TwinWatchTest, ALeaseRenewedUnderThisRelaysIdIsATwin) {
  EXPECT_FALSE(See("r1", 7, 3000));
  EXPECT_TRUE(See("r1", 7, 4000));
}

TEST_F(TwinWatchTest, AnotherRelaysRenewalsAreNoTwin) {
  EXPECT_FALSE(See("r2", 7, 3000));
  EXPECT_FALSE(See("r2", 7, 4000));
  EXPECT_FALSE(See("r2", 7, 5000));
}

// A new epoch is a takeover, not a renewal; the watch starts again from it.
TEST_F(TwinWatchTest, ATakeoverIsNotTakenForARenewal) {
  EXPECT_FALSE(See("r1", 7, 3000));
  EXPECT_FALSE(See("r1", 8, 9000));
  EXPECT_TRUE(See("r1", 8, 10000));
}

// Readings of another holder, or of no live one, in between start the watch again.
TEST_F(TwinWatchTest, AnotherHolderInBetweenStartsTheWatchAgain) {
  EXPECT_FALSE(See("r1", 7, 3000));
  EXPECT_FALSE(See("r2", 8, 6000));
  EXPECT_FALSE(See("r1", 9, 9000));
  EXPECT_FALSE(See("r1", 9, 9000, /*live=*/false));
  EXPECT_FALSE(See("r1", 9, 10000));
}

}  // namespace
}  // namespace seqrelay
