#include "intake/committed_resends.h"

#include <gtest/gtest.h>

#include <vector>

namespace seqrelay {
namespace {

// Rows idx 101..100+n with packet ids first..first+n-1 (wrapping past
// 65535 to 1, as mosquitto numbers them), newest first.
std::vector<CommittedResends::Row> Rows(uint16_t first, int n) {
  std::vector<CommittedResends::Row> rows;
  uint16_t mid = first;
  for (int i = 0; i < n; ++i) {
    rows.push_back({static_cast<uint64_t>(101 + i), mid});
    mid = mid == 65535 ? 1 : static_cast<uint16_t>(mid + 1);
  }
  return {rows.rbegin(), rows.rend()};
}

TEST(CommittedResends, TheResendsOfTheNewestRowsMatchThemInOrder) {
  CommittedResends r;
  r.Start(Rows(40, 10));  // ids 40..49, idx 101..110
  ASSERT_EQ(r.Candidate(47), 108u);
  r.Confirm(true);
  ASSERT_EQ(r.Candidate(48), 109u);
  r.Confirm(true);
  ASSERT_EQ(r.Candidate(49), 110u);
  r.Confirm(true);
  // Past the newest row: a new message, and the checks end.
  EXPECT_EQ(r.Candidate(50), std::nullopt);
  EXPECT_FALSE(r.active());
  EXPECT_EQ(r.Candidate(41), std::nullopt);
}

TEST(CommittedResends, AfterAMatchOnlyTheNextRowMayMatch) {
  CommittedResends r;
  r.Start(Rows(40, 10));
  ASSERT_EQ(r.Candidate(44), 105u);
  r.Confirm(true);
  // 46 skips row 45: not a run of resends, so not one.
  EXPECT_EQ(r.Candidate(46), std::nullopt);
  EXPECT_FALSE(r.active());
}

TEST(CommittedResends, ADifferentContentEndsTheChecks) {
  CommittedResends r;
  r.Start(Rows(40, 10));
  ASSERT_EQ(r.Candidate(45), 106u);
  r.Confirm(false);
  EXPECT_FALSE(r.active());
  EXPECT_EQ(r.Candidate(46), std::nullopt);
}

TEST(CommittedResends, ANewMessageAfterTheNewestRowIsNeverACandidate) {
  CommittedResends r;
  r.Start(Rows(40, 10));
  EXPECT_EQ(r.Candidate(50), std::nullopt);
  EXPECT_FALSE(r.active());
}

TEST(CommittedResends, IdsWrapPast65535) {
  CommittedResends r;
  r.Start(Rows(65530, 10));  // 65530..65535, then 1..4
  ASSERT_EQ(r.Candidate(65534), 105u);
  r.Confirm(true);
  ASSERT_EQ(r.Candidate(65535), 106u);
  r.Confirm(true);
  ASSERT_EQ(r.Candidate(1), 107u);
  r.Confirm(true);
}

TEST(CommittedResends, RowsFarBeforeTheNewestOrWithoutAnIdAreLeftOut) {
  // Newest first: 900 (the newest), 899, then a row 1,500 ids before the
  // newest (another numbering, or beyond the window), then 898.
  CommittedResends r;
  r.Start({{10, 900}, {9, 899}, {8, 65036}, {7, 898}});
  EXPECT_EQ(r.Candidate(898), std::nullopt);  // behind the row that ended the window
  r.Start({{10, 900}, {9, 899}, {8, 0}, {7, 898}});
  EXPECT_EQ(r.Candidate(898), std::nullopt);  // a row without an id ends it too
  r.Start({{10, 900}, {9, 899}, {8, 65036}});
  EXPECT_EQ(r.Candidate(65036), std::nullopt);
  r.Start({{10, 900}, {9, 899}});
  EXPECT_EQ(r.Candidate(899), 9u);
}

TEST(CommittedResends, KeepsAtMostTheWindow) {
  CommittedResends r;
  r.Start(Rows(1, 1500));  // ids 1..1500, idx 101..1600
  const uint16_t oldest_kept = 1500 - CommittedResends::kWindow + 1;
  EXPECT_EQ(r.Candidate(oldest_kept - 1), std::nullopt);
  r.Start(Rows(1, 1500));
  EXPECT_EQ(r.Candidate(oldest_kept), uint64_t{100} + oldest_kept);
}

TEST(CommittedResends, NothingToCheckWithoutRows) {
  CommittedResends r;
  r.Start({});
  EXPECT_FALSE(r.active());
  EXPECT_EQ(r.Candidate(1), std::nullopt);
}

}  // namespace
}  // namespace seqrelay
