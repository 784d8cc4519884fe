// Tests of the C++ client's CheckOptions (tools/client/seq_client.h), which
// its Start and seqsub's option parsing share: what would make the client
// subscribe to nothing, ask on the wrong topics, or wait for ever is named
// before it connects.
#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <string>

#include "seq_client.h"

namespace seqclient {
namespace {

Options Valid() {
  Options o;
  o.client_id = "c1";
  o.filters = {"chat/room1"};
  return o;
}

// The error for `o`, or "" if there is none.
std::string ErrorOf(const Options& o) { return CheckOptions(o).value_or(""); }

TEST(ClientOptionsTest, ValidOptionsPass) {
  EXPECT_EQ(ErrorOf(Valid()), "");
  Options o = Valid();
  o.filters = {"chat/+", "sensors/#"};
  o.user = "alice";
  o.gap_wait = std::chrono::hours(24);
  EXPECT_EQ(ErrorOf(o), "") << "wildcards live, a username, a day's gap wait";
}

// PROTOCOL 1: the relay never sequences a topic over 255 bytes. Until
// 2026-12-06 the client took one and waited: nothing came, and a history
// lookup of it outgrew the relay's request limit (a review's finding).
TEST(ClientOptionsTest, ATopicTheRelayNeverSequencesIsRefused) {
  Options o = Valid();
  o.filters = {std::string(255, 't')};
  EXPECT_EQ(ErrorOf(o), "") << "255 bytes: sequenced";
  o.filters = {std::string(256, 't')};
  EXPECT_NE(ErrorOf(o).find("is 256 bytes: the relay sequences topics of at most 255 bytes"), std::string::npos)
      << ErrorOf(o);
}

TEST(ClientOptionsTest, WhatWouldSubscribeToNothingIsNamed) {
  Options o = Valid();
  o.seq_prefix = "#";
  EXPECT_NE(ErrorOf(o).find("seq prefix '#'"), std::string::npos) << ErrorOf(o);
  o = Valid();
  o.control_prefix = "relay/";
  EXPECT_NE(ErrorOf(o).find("control prefix 'relay/'"), std::string::npos) << ErrorOf(o);
  o = Valid();
  o.seq_prefix = "s\xff";
  EXPECT_NE(ErrorOf(o).find("UTF-8"), std::string::npos) << ErrorOf(o);
  o = Valid();
  o.filters = {"a/#/b"};
  EXPECT_NE(ErrorOf(o).find("topic 'a/#/b'"), std::string::npos) << ErrorOf(o);
  o = Valid();
  o.filters = {"caf\xe9"};
  EXPECT_NE(ErrorOf(o).find("not valid UTF-8"), std::string::npos) << ErrorOf(o);
  o = Valid();
  o.filters.clear();
  EXPECT_EQ(ErrorOf(o), "give at least one topic");
}

TEST(ClientOptionsTest, RequesterHistoryAndWaitsAreChecked) {
  Options o = Valid();
  o.user = "bob";
  o.client_id = "x/y";  // the default requester would be bob/x/y: three levels
  EXPECT_NE(ErrorOf(o).find("requester 'bob/x/y'"), std::string::npos) << ErrorOf(o);
  o = Valid();
  o.filters = {"chat/#"};
  o.history = History::kAll;
  EXPECT_NE(ErrorOf(o).find("without '+' or '#'"), std::string::npos) << ErrorOf(o);
  o = Valid();
  o.gap_wait = std::chrono::hours(25);
  EXPECT_NE(ErrorOf(o).find("gap_wait"), std::string::npos) << "ns arithmetic would overflow far beyond";
  o = Valid();
  o.reply_timeout = std::chrono::milliseconds(0);
  EXPECT_NE(ErrorOf(o).find("reply_timeout"), std::string::npos);
  o = Valid();
  o.history = History::kFrom;
  o.history_n = uint64_t{1} << 40;
  EXPECT_NE(ErrorOf(o).find("history_n"), std::string::npos);
  o = Valid();
  o.max_attempts = 0;
  EXPECT_NE(ErrorOf(o).find("max_attempts"), std::string::npos);
  o = Valid();
  o.requester = std::string("r\0", 2);
  EXPECT_NE(ErrorOf(o).find("NUL"), std::string::npos);
  o = Valid();
  o.qos = 3;
  EXPECT_NE(ErrorOf(o).find("qos"), std::string::npos);
  o = Valid();
  o.state_file = "/tmp";
  EXPECT_NE(ErrorOf(o).find("is a directory"), std::string::npos) << "it crashed seqsub (an uncaught ios_failure)";
}

}  // namespace
}  // namespace seqclient
