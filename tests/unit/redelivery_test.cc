#include "redelivery.h"

#include <gtest/gtest.h>

#include <string>

namespace seqrelay {
namespace {

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(RedeliveryFilter, DropsTheResendOfAJournaledMessageOnce) {
  RedeliveryFilter filter(20);
  const std::string payload = "hello";
  filter.Remember(7, "chat/a", Bytes(payload));
  EXPECT_TRUE(filter.IsRedelivery(7, "chat/a", Bytes(payload)));
  // The same delivery again is a new message, not a second resend.
  EXPECT_FALSE(filter.IsRedelivery(7, "chat/a", Bytes(payload)));
}

TEST(RedeliveryFilter, MatchesOnlyWhenMidTopicAndPayloadAllAgree) {
  RedeliveryFilter filter(20);
  const std::string payload = "hello";
  const std::string other = "hellp";
  filter.Remember(7, "chat/a", Bytes(payload));
  EXPECT_FALSE(filter.IsRedelivery(8, "chat/a", Bytes(payload)));
  EXPECT_FALSE(filter.IsRedelivery(7, "chat/b", Bytes(payload)));
  EXPECT_FALSE(filter.IsRedelivery(7, "chat/a", Bytes(other)));
  EXPECT_TRUE(filter.IsRedelivery(7, "chat/a", Bytes(payload)));
}

TEST(RedeliveryFilter, QosZeroMessagesAreNeverRemembered) {
  RedeliveryFilter filter(20);
  const std::string payload = "x";
  filter.Remember(0, "t", Bytes(payload));
  EXPECT_EQ(filter.remembered(), 0u);
  EXPECT_FALSE(filter.IsRedelivery(0, "t", Bytes(payload)));
}

TEST(RedeliveryFilter, RemembersOnlyTheNewestWindow) {
  RedeliveryFilter filter(3);
  const std::string payload = "p";
  for (uint16_t mid = 1; mid <= 5; ++mid) filter.Remember(mid, "t", Bytes(payload));
  EXPECT_EQ(filter.remembered(), 3u);
  EXPECT_FALSE(filter.IsRedelivery(2, "t", Bytes(payload)));  // pushed out
  EXPECT_TRUE(filter.IsRedelivery(3, "t", Bytes(payload)));
}

TEST(RedeliveryFilter, TheLastCheckInTheWindowStillMatchesAndNothingAfterIt) {
  RedeliveryFilter filter(3);
  const std::string payload = "p";
  filter.Remember(1, "t", Bytes(payload));
  filter.Remember(2, "t", Bytes(payload));
  EXPECT_FALSE(filter.IsRedelivery(9, "t", Bytes(payload)));
  EXPECT_FALSE(filter.IsRedelivery(10, "t", Bytes(payload)));
  EXPECT_TRUE(filter.IsRedelivery(1, "t", Bytes(payload)));  // third and last check
  EXPECT_EQ(filter.remembered(), 0u);
  EXPECT_FALSE(filter.IsRedelivery(2, "t", Bytes(payload)));
}

}  // namespace
}  // namespace seqrelay
