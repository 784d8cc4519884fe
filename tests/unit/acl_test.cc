// Tests of Acl: mosquitto's acl_file format and its evaluation (users,
// anonymous block, patterns with %c and %u, '+' and '#', deny first).
#include "replay/acl.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

namespace seqrelay {
namespace {

constexpr const char* kFile = R"(# a comment
topic read public/#

user alice
topic read seq/chat/#
topic deny seq/chat/secret
topic write chat/#

user bob
topic readwrite seq/+/bob
topic seq/plain

pattern read seq/home/%c/#
pattern read seq/users/%u
pattern deny seq/home/+/private
)";

struct Case {
  const char* rule;
  std::optional<std::string> username;
  std::string client_id;
  std::string topic;
  bool read;
};

TEST(AclTest, EvaluatesLikeMosquitto) {
  auto acl = Acl::Parse(kFile);
  ASSERT_TRUE(acl.ok()) << acl.error();
  EXPECT_EQ(acl->rule_count(), 9u);
  const Case cases[] = {
      {"user rule with # grants", "alice", "alice", "seq/chat/room1", true},
      {"# also matches the parent level", "alice", "alice", "seq/chat", true},
      {"deny wins over a wider grant, whatever the order", "alice", "alice", "seq/chat/secret", false},
      {"write-only rule does not grant read", "alice", "alice", "chat/room1", false},
      {"another user's rule does not apply", "alice", "alice", "seq/x/bob", false},
      {"+ matches exactly one level", "bob", "bob", "seq/a/bob", true},
      {"+ does not match two levels", "bob", "bob", "seq/a/b/bob", false},
      {"rule without access is readwrite", "bob", "bob", "seq/plain", true},
      {"anonymous block applies to no username", std::nullopt, "anon1", "public/news", true},
      {"anonymous block does not apply to users", "alice", "alice", "public/news", false},
      {"%c pattern with the client id", "carol", "c-42", "seq/home/c-42/lights", true},
      {"%c pattern, someone else's id", "carol", "c-42", "seq/home/c-43/lights", false},
      {"pattern deny before pattern grant", "carol", "c-42", "seq/home/c-42/private", false},
      {"%u pattern with the username", "dave", "dave-phone", "seq/users/dave", true},
      {"%u pattern never applies to anonymous (not even literally)", std::nullopt, "x", "seq/users/%u", false},
      {"a %u inside the client id is not expanded", "mallory", "%u", "seq/home/mallory", false},
      {"...it stays literal", "mallory", "%u", "seq/home/%u", true},
      {"+ in the client id refuses all patterns", "carol", "c+", "seq/home/c+/lights", false},
      {"# in the username refuses all patterns", "d#", "d1", "seq/users/d#", false},
      {"a user without a block still gets patterns", "erin", "erin", "seq/home/erin", true},
      {"nothing matches: refused", "alice", "alice", "seq/other/topic", false},
      {"topics are compared byte for byte", "alice", "alice", "seq/Chat/room1", false},
  };
  for (const auto& c : cases) {
    std::optional<std::string_view> user;
    if (c.username) user = *c.username;
    EXPECT_EQ(acl->MayRead(user, c.client_id, c.topic), c.read) << c.rule;
  }
}

TEST(AclTest, WriteAccessIsSeparate) {
  auto acl = Acl::Parse(kFile);
  ASSERT_TRUE(acl.ok());
  EXPECT_TRUE(acl->Allows("alice", "alice", "chat/room1", Acl::kWrite));
  EXPECT_FALSE(acl->Allows("alice", "alice", "seq/chat/room1", Acl::kWrite));
  EXPECT_TRUE(acl->Allows("bob", "bob", "seq/a/bob", Acl::kWrite));
}

TEST(AclTest, AnEmptyFileRefusesEverything) {
  auto acl = Acl::Parse("# nothing\n\n");
  ASSERT_TRUE(acl.ok());
  EXPECT_FALSE(acl->MayRead("alice", "alice", "seq/chat/room1"));
  EXPECT_FALSE(acl->MayRead(std::nullopt, "x", "seq/chat/room1"));
}

TEST(AclTest, BadLinesAreErrorsThatNameTheLine) {
  const struct {
    const char* rule;
    const char* text;
    const char* error_has;
  } cases[] = {
      {"unknown keyword", "topic read a\nfoo bar\n", "line 2"},
      {"unknown access", "topic reed a/b\n", "access must be"},
      {"topic keyword without a topic", "topic\n", "needs a topic"},
      {"user without a name", "user\n", "needs a username"},
      {"a '/' in a username", "topic read a\n\nuser team/alice\ntopic read b\n",
       "line 3: user 'team/alice': a username with '/' is refused; its requests would read as those of user 'team'"},
      {"# not at the end of a filter", "topic read a/#/b\n", "line 1"},
  };
  for (const auto& c : cases) {
    auto acl = Acl::Parse(c.text);
    ASSERT_FALSE(acl.ok()) << c.rule;
    EXPECT_NE(acl.error().find(c.error_has), std::string::npos) << c.rule << ": " << acl.error();
  }
}

// Words as mosquitto 2.0 splits them: at spaces only. A tab between the
// access and the topic makes them one word, which mosquitto takes for the
// topic (read and write): tried against mosquitto 2.0.11, a subscriber as
// alice on seq/chat/# gets nothing. Until 2026-12-07 the relay read it as
// read on seq/chat/#, and replayed alice what the broker kept from her.
TEST(AclTest, WordsAreSplitAtSpacesOnlyAsMosquittoSplitsThem) {
  auto tab = Acl::Parse("user alice\ntopic read\tseq/chat/#\n");
  ASSERT_TRUE(tab.ok()) << tab.error();
  EXPECT_FALSE(tab->MayRead("alice", "alice", "seq/chat/room1"));
  EXPECT_TRUE(tab->MayRead("alice", "alice", "read\tseq/chat/#")) << "the topic of that name, read and write";
  // After the access word's space, the rest is trimmed of white space, tabs too.
  auto spaced = Acl::Parse("user  alice\ntopic read \tseq/chat/#\ntopic  read  seq/news \t\r\n");
  ASSERT_TRUE(spaced.ok()) << spaced.error();
  EXPECT_TRUE(spaced->MayRead("alice", "alice", "seq/chat/room1"));
  EXPECT_TRUE(spaced->MayRead("alice", "alice", "seq/news"));
  EXPECT_FALSE(spaced->Allows("alice", "alice", "seq/news", Acl::kWrite));
  // A tab after the keyword's space starts the next word: the odd topic "\tseq/a", read and write.
  auto tab_first = Acl::Parse("user alice\ntopic \tseq/a\n");
  ASSERT_TRUE(tab_first.ok()) << tab_first.error();
  EXPECT_FALSE(tab_first->MayRead("alice", "alice", "seq/a"));
  EXPECT_TRUE(tab_first->MayRead("alice", "alice", "\tseq/a"));
  // Lines mosquitto refuses to start with.
  for (const char* text : {"\ttopic read seq/a\n", "user alice\n  # an indented comment\n", "user\talice\n",
                           "topic \tread seq/a\n"}) {
    EXPECT_FALSE(Acl::Parse(text).ok()) << text;
  }
}

TEST(AclTest, TheShippedAclParsesAndSaysWhatItsCommentsSay) {
  std::ifstream in(std::string(SEQRELAY_SOURCE_DIR) + "/docker/mosquitto/acl");
  ASSERT_TRUE(in) << "docker/mosquitto/acl not found";
  std::stringstream text;
  text << in.rdbuf();
  auto acl = Acl::Parse(text.str());
  ASSERT_TRUE(acl.ok()) << acl.error();
  // alice reads her chat topics sequenced; nothing else, and never a
  // relay-only topic.
  EXPECT_TRUE(acl->MayRead("alice", "alice", "seq/chat/room1"));
  EXPECT_FALSE(acl->MayRead("alice", "alice", "seq/ops/alerts"));
  EXPECT_TRUE(acl->MayRead("alice", "alice", "relay/replay/alice"));
  EXPECT_FALSE(acl->MayRead("alice", "alice", "relay/replay/bob"));
  EXPECT_TRUE(acl->Allows("alice", "alice", "relay/retransmit/alice", Acl::kWrite));
  EXPECT_FALSE(acl->Allows("alice", "alice", "relay/retransmit/bob", Acl::kWrite));
  EXPECT_FALSE(acl->Allows("alice", "alice", "seq/chat/room1", Acl::kWrite)) << "only the relay publishes frames";
  EXPECT_TRUE(acl->Allows("seqrelay", "seqrelay-out", "seq/chat/room1", Acl::kWrite));
}

}  // namespace
}  // namespace seqrelay

namespace seqrelay {
namespace {

// A per-user request (PROTOCOL.md 5.4) is checked for its username alone.
TEST(AclTest, WithoutAClientIdPercentCGrantsNothingAndItsDeniesRefuse) {
  auto acl = Acl::Parse(
      "user alice\n"
      "topic read seq/chat/#\n"
      "pattern read seq/inbox/%u/#\n"
      "pattern read seq/device/%c/#\n"
      "pattern deny seq/chat/%c\n");
  ASSERT_TRUE(acl.ok()) << acl.error();
  EXPECT_TRUE(acl->MayRead("alice", std::nullopt, "seq/chat/room1")) << "her user block";
  EXPECT_TRUE(acl->MayRead("bob", std::nullopt, "seq/inbox/bob/1")) << "a %u pattern";
  EXPECT_FALSE(acl->MayRead("bob", std::nullopt, "seq/inbox/alice/1"));
  EXPECT_FALSE(acl->MayRead("bob", std::nullopt, "seq/device/bob/1")) << "a %c grant needs a client id";
  EXPECT_TRUE(acl->MayRead("bob", "bob", "seq/device/bob/1")) << "as before with one";
  // The %c deny, for any client id: it refuses carol's seq/chat/x, which a
  // client id "x" would be denied (alice's own block decides first), and
  // seq/chat/x/deeper, which the client id "x/deeper" would.
  auto with_grant = Acl::Parse("pattern read seq/#\npattern deny seq/chat/%c\n");
  ASSERT_TRUE(with_grant.ok());
  EXPECT_FALSE(with_grant->MayRead("carol", std::nullopt, "seq/chat/x"));
  EXPECT_FALSE(with_grant->MayRead("carol", std::nullopt, "seq/chat/x/deeper"));
  EXPECT_TRUE(with_grant->MayRead("carol", std::nullopt, "seq/room/x")) << "not under the deny";
  EXPECT_TRUE(with_grant->MayRead("carol", "y", "seq/chat/x")) << "with a client id, only its own level is denied";
  EXPECT_TRUE(with_grant->MayRead("carol", "y", "seq/chat/x/deeper"));
}

// mosquitto writes %c in wherever it stands, and a client id may hold '/':
// a deny with %c inside a level, or followed by more levels, refuses a
// per-user request whenever some client id would be refused. Until
// 2026-12-05 the id was taken for one whole level ("+"), and such denies
// refused nothing.
TEST(AclTest, WithoutAClientIdADenyRefusesWhatItWouldForSomeClientIdAnywhereInTheTopic) {
  auto acl = Acl::Parse(
      "pattern read seq/#\n"
      "pattern deny seq/chat/x-%c\n"
      "pattern deny seq/%c/secret\n"
      "pattern deny seq/twice/%c/%c\n");
  ASSERT_TRUE(acl.ok()) << acl.error();
  EXPECT_FALSE(acl->MayRead("u", std::nullopt, "seq/chat/x-bob")) << "%c inside a level";
  EXPECT_TRUE(acl->MayRead("u", std::nullopt, "seq/chat/y-bob"));
  EXPECT_TRUE(acl->MayRead("u", "bob", "seq/chat/x-carol")) << "with a client id, only its own";
  EXPECT_FALSE(acl->MayRead("u", "bob", "seq/chat/x-bob"));
  EXPECT_FALSE(acl->MayRead("u", std::nullopt, "seq/a/secret"));
  EXPECT_FALSE(acl->MayRead("u", std::nullopt, "seq/a/b/secret")) << "the client id 'a/b'";
  EXPECT_TRUE(acl->MayRead("u", std::nullopt, "seq/a/b/public"));
  EXPECT_FALSE(acl->MayRead("u", std::nullopt, "seq/twice/k/k")) << "one client id in both places";
  EXPECT_TRUE(acl->MayRead("u", std::nullopt, "seq/twice/k/j"));
}

}  // namespace
}  // namespace seqrelay
