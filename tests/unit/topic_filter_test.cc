// Tests of MQTT topic filters and the relay's prefix rules (PROTOCOL.md
// section 1): matching, validation, coverage and the own-prefix check.
#include "core/topic_filter.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace seqrelay {
namespace {

struct MatchCase {
  const char* rule;
  const char* filter;
  std::string topic;
  bool matches;
};

const std::vector<MatchCase> kMatchCases = {
    {"exact_topic_matches_itself", "chat/room1", "chat/room1", true},
    {"plus_matches_one_level", "chat/+", "chat/room1", true},
    {"plus_does_not_match_two_levels", "chat/+", "chat/room1/x", false},
    {"plus_does_not_match_the_parent", "chat/+", "chat", false},
    {"plus_matches_an_empty_level", "chat/+", "chat/", true},
    {"plus_in_the_middle", "a/+/c", "a/b/c", true},
    {"plus_in_the_middle_needs_the_last_level", "a/+/c", "a/b/d", false},
    {"plus_alone_matches_one_level", "+", "a", true},
    {"plus_alone_does_not_match_two_levels", "+", "a/b", false},
    {"hash_matches_everything", "#", "a/b/c", true},
    {"hash_matches_a_single_level", "#", "a", true},
    {"hash_matches_any_depth", "a/#", "a/b/c/d", true},
    {"hash_matches_the_parent_level", "a/#", "a", true},
    {"hash_does_not_match_a_sibling", "a/#", "ab", false},
    {"hash_does_not_match_another_branch", "a/#", "b/a", false},
    {"plus_then_hash_matches_the_parent", "+/#", "a", true},
    {"hash_never_matches_dollar_topics", "#", "$SYS/x", false},
    {"leading_plus_never_matches_dollar_topics", "+/x", "$SYS/x", false},
    {"leading_plus_hash_never_matches_dollar_topics", "+/#", "$SYS/broker/load", false},
    {"literal_dollar_filter_matches_dollar_topics", "$SYS/#", "$SYS/x", true},
    {"literal_dollar_then_plus_matches", "$SYS/+", "$SYS/x", true},
    {"case_differs_chat_A_vs_chat_a", "chat/A", "chat/a", false},
    {"case_differs_chat_a_vs_chat_A", "chat/a", "chat/A", false},
    {"trailing_space_is_a_different_topic", "a", "a ", false},
    {"trailing_space_filter_vs_plain_topic", "a ", "a", false},
    {"e_and_e_acute_differ", "e", "\xC3\xA9", false},
    {"utf8_matches_byte_for_byte", "caf\xC3\xA9", "caf\xC3\xA9", true},
    {"trailing_slash_is_another_level", "a", "a/", false},
    {"leading_slash_is_an_empty_first_level", "/a", "/a", true},
    {"plus_matches_empty_first_level", "+/a", "/a", true},
    {"longer_filter_does_not_match_shorter_topic", "a/b/c", "a/b", false},
};

TEST(TopicFilterTest, TopicMatches) {
  for (const auto& c : kMatchCases) {
    SCOPED_TRACE(c.rule);
    EXPECT_EQ(TopicMatches(c.filter, c.topic), c.matches) << "filter '" << c.filter << "' topic '" << c.topic << "'";
  }
}

struct ValidateCase {
  const char* rule;
  std::string filter;
  bool ok;
};

const std::vector<ValidateCase> kValidateCases = {
    {"empty_filter_is_bad", "", false},
    {"hash_not_last_is_bad", "a/#/b", false},
    {"hash_sharing_a_level_is_bad", "a#", false},
    {"hash_after_text_in_a_later_level_is_bad", "a/b#", false},
    {"plus_sharing_a_level_is_bad", "a+/b", false},
    {"plus_after_text_is_bad", "a/b+", false},
    {"double_hash_is_bad", "#/#", false},
    {"nul_byte_is_bad", std::string("a\0b", 3), false},
    {"hash_alone_is_good", "#", true},
    {"plus_alone_is_good", "+", true},
    {"plus_in_the_middle_is_good", "a/+/c", true},
    {"hash_last_is_good", "a/b/#", true},
    {"plus_then_hash_is_good", "+/#", true},
    {"plain_topic_is_good", "chat/room1", true},
    {"dollar_filter_is_good", "$SYS/#", true},
    {"empty_levels_are_good", "a//b/", true},
    {"65535_bytes_is_the_limit", std::string(65535, 'a'), true},
    {"65536_bytes_is_too_long", std::string(65536, 'a'), false},
};

TEST(TopicFilterTest, ValidateFilter) {
  for (const auto& c : kValidateCases) {
    SCOPED_TRACE(c.rule);
    Status s = ValidateFilter(c.filter);
    EXPECT_EQ(s.ok(), c.ok) << s.message();
  }
}

TEST(TopicFilterTest, ValidateFilterErrorNamesTheFilter) {
  Status s = ValidateFilter("a/#/b");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("a/#/b"), std::string::npos) << s.message();
}

struct CoverCase {
  const char* rule;
  const char* wide;
  const char* narrow;
  bool covers;
};

const std::vector<CoverCase> kCoverCases = {
    {"hash_covers_a_topic", "#", "a/b", true},
    {"hash_covers_plus", "#", "+", true},
    {"hash_covers_itself", "#", "#", true},
    {"prefix_hash_covers_the_parent", "a/#", "a", true},
    {"prefix_hash_covers_deeper_hash", "a/#", "a/b/#", true},
    {"prefix_hash_does_not_cover_a_sibling", "a/#", "b/c", false},
    {"plus_covers_a_literal_level", "a/+", "a/b", true},
    {"plus_does_not_cover_hash", "a/+", "a/#", false},
    {"plus_does_not_cover_two_levels", "a/+", "a/b/c", false},
    {"literal_does_not_cover_plus", "a/b", "a/+", false},
    {"literal_covers_itself", "a/b", "a/b", true},
    {"topic_does_not_cover_its_parent_hash", "a/b", "a/#", false},
    {"hash_does_not_cover_dollar_hash", "#", "$SYS/#", false},
    {"hash_does_not_cover_a_dollar_topic", "#", "$SYS/x", false},
    {"plus_does_not_cover_a_dollar_level", "+/x", "$SYS/x", false},
    {"dollar_hash_covers_itself", "$SYS/#", "$SYS/#", true},
    {"dollar_hash_covers_a_dollar_topic", "$SYS/#", "$SYS/broker/load", true},
    {"narrow_hash_reaches_deeper_than_plus", "+", "#", false},
    {"case_matters_in_coverage", "chat/A/#", "chat/a/x", false},
};

TEST(TopicFilterTest, FilterCovers) {
  for (const auto& c : kCoverCases) {
    SCOPED_TRACE(c.rule);
    EXPECT_EQ(FilterCovers(c.wide, c.narrow), c.covers) << "wide '" << c.wide << "' narrow '" << c.narrow << "'";
  }
}

struct RemoveCase {
  const char* rule;
  std::vector<std::string> in;
  std::vector<std::string> out;
};

const std::vector<RemoveCase> kRemoveCases = {
    {"hash_swallows_a_topic", {"#", "a/b"}, {"#"}},
    {"order_does_not_matter_for_hash", {"a/b", "#"}, {"#"}},
    {"plus_swallows_its_literal_but_not_others", {"a/+", "a/b", "c"}, {"a/+", "c"}},
    {"duplicates_keep_the_first", {"a/b", "c", "a/b"}, {"a/b", "c"}},
    {"duplicate_hash_keeps_one", {"#", "#"}, {"#"}},
    {"hash_keeps_dollar_hash", {"#", "$SYS/#"}, {"#", "$SYS/#"}},
    {"disjoint_filters_are_all_kept", {"a/#", "b/#", "c"}, {"a/#", "b/#", "c"}},
    {"nested_hashes_keep_the_widest", {"a/b/#", "a/#", "a/b/c"}, {"a/#"}},
    {"empty_list_stays_empty", {}, {}},
};

TEST(TopicFilterTest, RemoveCoveredFilters) {
  for (const auto& c : kRemoveCases) {
    SCOPED_TRACE(c.rule);
    EXPECT_EQ(RemoveCoveredFilters(c.in), c.out);
  }
}

struct PrefixCase {
  const char* rule;
  const char* topic;
  const char* prefix;
  bool under;
};

const std::vector<PrefixCase> kPrefixCases = {
    {"the_prefix_itself_is_under_it", "seq", "seq", true},
    {"a_child_is_under_it", "seq/x", "seq", true},
    {"a_grandchild_is_under_it", "seq/x/y", "seq", true},
    {"an_empty_child_level_is_under_it", "seq/", "seq", true},
    {"a_longer_name_is_not_under_it", "seqx", "seq", false},
    {"a_shorter_name_is_not_under_it", "se", "seq", false},
    {"another_topic_is_not_under_it", "chat/seq", "seq", false},
    {"case_matters", "SEQ/x", "seq", false},
    {"multi_level_prefix", "relay/retransmit/c", "relay/retransmit", true},
};

TEST(TopicFilterTest, IsUnderPrefix) {
  for (const auto& c : kPrefixCases) {
    SCOPED_TRACE(c.rule);
    EXPECT_EQ(IsUnderPrefix(c.topic, c.prefix), c.under) << "topic '" << c.topic << "' prefix '" << c.prefix << "'";
  }
}

// Two shards may not hold filters that share a topic: the pairs that do and
// those that do not, each checked both ways round.
TEST(TopicFilterTest, FiltersOverlap) {
  struct Case {
    const char* a;
    const char* b;
    bool overlap;
  };
  const Case cases[] = {
      {"chat/a/#", "chat/b/#", false},
      {"chat/a/#", "chat/+/x", true},   // chat/a/x
      {"chat/#", "chat", true},         // '#' matches its parent level
      {"chat/a", "chat/a", true},
      {"chat/a", "chat/b", false},
      {"chat/+", "chat/+/x", false},    // different depths, no '#'
      {"+/+", "chat/a", true},
      {"#", "$SYS/x", false},           // wildcards never match '$' topics
      {"+/x", "$SYS/x", false},
      {"$SYS/#", "$SYS/+", true},
      {"#", "anything/at/all", true},
      {"a/+/c", "a/b/+", true},         // a/b/c
      {"a/+/c", "a/b/d", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(FiltersOverlap(c.a, c.b), c.overlap) << "'" << c.a << "' and '" << c.b << "'";
    EXPECT_EQ(FiltersOverlap(c.b, c.a), c.overlap) << "'" << c.b << "' and '" << c.a << "'";
  }
}

TEST(TopicFilterTest, FilterLinesAreSortedOneALineAndReadBackWithoutEmptyLines) {
  EXPECT_EQ(JoinFilterLines({"chat/#", "a/+", "b"}), "a/+\nb\nchat/#");
  EXPECT_EQ(JoinFilterLines({}), "");
  EXPECT_EQ(SplitFilterLines("chat/#\n\na/+\n"), (std::vector<std::string>{"a/+", "chat/#"}));
  EXPECT_EQ(SplitFilterLines(""), std::vector<std::string>{});
  const std::vector<std::string> filters = {"x/y", "#", "a b/c"};
  std::vector<std::string> sorted = filters;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(SplitFilterLines(JoinFilterLines(filters)), sorted);
}

}  // namespace
}  // namespace seqrelay
