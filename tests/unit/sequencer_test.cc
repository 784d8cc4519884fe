// Tests of the Sequencer: per-topic SEQ, the global idx, ordering flags and
// the topic table (PROTOCOL.md section 2, SEQ rules).
#include "store/sequencer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace seqrelay {
namespace {

uint64_t Next(Sequencer& s, Sequencer::Topic& t) {
  auto seq = s.NextSeq(t);
  EXPECT_TRUE(seq.ok()) << seq.error();
  return seq.ok() ? *seq : 0;
}

TEST(SequencerTest, NewTopicStartsAtSeq1) {
  Sequencer s("seq", {});
  auto& t = s.Add("chat/room1", 1, 0);
  EXPECT_EQ(Next(s, t), 1u);
  EXPECT_EQ(Next(s, t), 2u);
  EXPECT_EQ(Next(s, t), 3u);
  EXPECT_EQ(t.last_seq, 3u);
}

TEST(SequencerTest, SeqContinuesFromLastCommitted) {
  Sequencer s("seq", {});
  auto& t = s.Add("chat/room1", 5, 41);
  EXPECT_EQ(t.last_seq, 41u);
  EXPECT_EQ(Next(s, t), 42u);
  EXPECT_EQ(Next(s, t), 43u);
}

TEST(SequencerTest, InterleavedTopicsAreIndependent) {
  Sequencer s("seq", {});
  auto& a = s.Add("a", 1, 0);
  auto& b = s.Add("b", 2, 100);
  EXPECT_EQ(Next(s, a), 1u);
  EXPECT_EQ(Next(s, b), 101u);
  EXPECT_EQ(Next(s, a), 2u);
  EXPECT_EQ(Next(s, a), 3u);
  EXPECT_EQ(Next(s, b), 102u);
  EXPECT_EQ(a.last_seq, 3u);
  EXPECT_EQ(b.last_seq, 102u);
}

TEST(SequencerTest, IdxIsGlobalAcrossTopics) {
  Sequencer s("seq", {});
  EXPECT_EQ(s.last_idx(), 0u);
  auto& a = s.Add("a", 1, 0);
  auto& b = s.Add("b", 2, 0);
  (void)Next(s, a);
  EXPECT_EQ(s.NextIdx(), 1u);
  (void)Next(s, b);
  EXPECT_EQ(s.NextIdx(), 2u);
  (void)Next(s, a);
  EXPECT_EQ(s.NextIdx(), 3u);
  EXPECT_EQ(s.last_idx(), 3u);
}

TEST(SequencerTest, IdxContinuesFromSetLastIdx) {
  Sequencer s("seq", {});
  s.SetLastIdx(1000);
  EXPECT_EQ(s.last_idx(), 1000u);
  EXPECT_EQ(s.NextIdx(), 1001u);
  EXPECT_EQ(s.NextIdx(), 1002u);
  EXPECT_EQ(s.last_idx(), 1002u);
}

TEST(SequencerTest, ImmediateFiltersGiveFlag0) {
  Sequencer s("seq", {"presence/#", "typing/+"});
  EXPECT_EQ(s.Add("presence/alice", 1, 0).ordering, Ordering::kImmediate);
  EXPECT_EQ(s.Add("presence", 2, 0).ordering, Ordering::kImmediate);  // "x/#" matches "x"
  EXPECT_EQ(s.Add("typing/room1", 3, 0).ordering, Ordering::kImmediate);
  EXPECT_EQ(s.Add("typing/room1/x", 4, 0).ordering, Ordering::kOrdered);
  EXPECT_EQ(s.Add("chat/room1", 5, 0).ordering, Ordering::kOrdered);
  EXPECT_EQ(s.Add("Presence/alice", 6, 0).ordering, Ordering::kOrdered);  // byte comparison

  EXPECT_EQ(s.OrderingOf("presence/bob"), Ordering::kImmediate);
  EXPECT_EQ(s.OrderingOf("chat/room2"), Ordering::kOrdered);
}

TEST(SequencerTest, NoImmediateFiltersMeansEverythingOrdered) {
  Sequencer s("seq", {});
  EXPECT_EQ(s.Add("presence/alice", 1, 0).ordering, Ordering::kOrdered);
  EXPECT_EQ(s.OrderingOf("anything"), Ordering::kOrdered);
}

TEST(SequencerTest, SeqTopicIsPrefixSlashRawTopic) {
  Sequencer s("seq", {});
  auto& t = s.Add("chat/room1", 7, 0);
  EXPECT_EQ(t.seq_topic, "seq/chat/room1");
  EXPECT_EQ(t.raw(), "chat/room1");
  EXPECT_EQ(t.id, 7u);

  Sequencer custom("out/ordered", {});
  auto& u = custom.Add("a", 1, 0);
  EXPECT_EQ(u.seq_topic, "out/ordered/a");
  EXPECT_EQ(u.raw(), "a");
}

TEST(SequencerTest, RawKeepsTheTopicBytes) {
  Sequencer s("seq", {});
  const std::string topic = std::string("bin\0ary ", 8) + "\xC3\xA9";
  auto& t = s.Add(topic, 1, 0);
  EXPECT_EQ(t.raw(), topic);
  EXPECT_EQ(s.Find(topic), &t);
}

TEST(SequencerTest, FindReturnsTheAddedTopic) {
  Sequencer s("seq", {});
  auto& t = s.Add("chat/room1", 7, 3);
  Sequencer::Topic* found = s.Find("chat/room1");
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found, &t);
  EXPECT_EQ(found->id, 7u);
  EXPECT_EQ(found->last_seq, 3u);
}

TEST(SequencerTest, FindOfUnknownTopicIsNull) {
  Sequencer s("seq", {});
  EXPECT_EQ(s.Find("chat/room1"), nullptr);
  (void)s.Add("chat/room1", 1, 0);
  EXPECT_EQ(s.Find("chat/room2"), nullptr);
  EXPECT_EQ(s.Find("chat/Room1"), nullptr);   // byte comparison
  EXPECT_EQ(s.Find("chat/room1 "), nullptr);  // trailing space is another topic
  EXPECT_EQ(s.Find("seq/chat/room1"), nullptr);
  EXPECT_EQ(s.topic_count(), 1u);
}

TEST(SequencerTest, NextSeqFailsAtMaxSeq) {
  Sequencer s("seq", {});
  auto& t = s.Add("a", 1, kMaxSeq - 1);
  auto last = s.NextSeq(t);
  ASSERT_TRUE(last.ok()) << last.error();
  EXPECT_EQ(*last, kMaxSeq);

  auto over = s.NextSeq(t);
  ASSERT_FALSE(over.ok());
  EXPECT_NE(over.error().find("'a'"), std::string::npos) << over.error();
  EXPECT_EQ(t.last_seq, kMaxSeq) << "a refused SEQ must not be used up";
  EXPECT_FALSE(s.NextSeq(t).ok()) << "stays refused";
}

TEST(SequencerTest, NextSeqFailsWhenSeededAtMaxSeq) {
  Sequencer s("seq", {});
  auto& t = s.Add("a", 1, kMaxSeq);
  EXPECT_FALSE(s.NextSeq(t).ok());
  EXPECT_EQ(t.last_seq, kMaxSeq);
}

TEST(SequencerTest, AddingAKnownTopicAgainReseedsIt) {
  Sequencer s("seq", {});
  (void)s.Add("chat/room1", 1, 5);
  auto& again = s.Add("chat/room1", 1, 9);
  (void)s.Add("chat/room2", 2, 0);  // same size: likely reuses the freed Topic

  EXPECT_EQ(s.topic_count(), 2u);
  Sequencer::Topic* found = s.Find("chat/room1");
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found, &again);
  EXPECT_EQ(found->last_seq, 9u);
  EXPECT_EQ(found->raw(), "chat/room1");
  ASSERT_NE(s.Find("chat/room2"), nullptr);
  EXPECT_EQ(s.Find("chat/room2")->id, 2u);
}

TEST(SequencerTest, ManyTopicsKeepStateAcrossRehashing) {
  constexpr int kTopics = 10000;
  Sequencer s("seq", {"fast/#"});
  std::vector<Sequencer::Topic*> added;
  added.reserve(kTopics);
  for (int i = 0; i < kTopics; ++i) {
    const std::string name = (i % 10 == 0 ? "fast/" : "topic/") + std::to_string(i);
    auto& t = s.Add(name, static_cast<uint32_t>(i + 1), static_cast<uint64_t>(i));
    ASSERT_EQ(Next(s, t), static_cast<uint64_t>(i) + 1);
    added.push_back(&t);
  }
  ASSERT_EQ(s.topic_count(), static_cast<std::size_t>(kTopics));

  for (int i = 0; i < kTopics; ++i) {
    const std::string name = (i % 10 == 0 ? "fast/" : "topic/") + std::to_string(i);
    Sequencer::Topic* t = s.Find(name);
    ASSERT_NE(t, nullptr) << name;
    ASSERT_EQ(t, added[i]) << name << ": Topic moved";
    ASSERT_EQ(t->raw(), name);
    ASSERT_EQ(t->seq_topic, "seq/" + name);
    ASSERT_EQ(t->id, static_cast<uint32_t>(i + 1)) << name;
    ASSERT_EQ(t->last_seq, static_cast<uint64_t>(i) + 1) << name;
    ASSERT_EQ(t->ordering, i % 10 == 0 ? Ordering::kImmediate : Ordering::kOrdered) << name;
    ASSERT_EQ(Next(s, *t), static_cast<uint64_t>(i) + 2) << name;
  }
  EXPECT_EQ(s.Find("topic/10000"), nullptr);
}

}  // namespace
}  // namespace seqrelay

namespace seqrelay {
namespace {

// The topic cache is bounded: the least recently used topics are forgotten
// (their last SEQ is in the database), the busy ones stay.
TEST(SequencerTest, EvictIdleForgetsTheLeastRecentlyUsedDownToNinetyPercent) {
  Sequencer s("seq", {});
  for (int i = 0; i < 20; ++i) s.Add("t" + std::to_string(i), static_cast<uint32_t>(i + 1), 0);
  // t0 and t1 are used again: the newest uses of all.
  ASSERT_TRUE(s.NextSeq(*s.Find("t0")).ok());
  ASSERT_TRUE(s.NextSeq(*s.Find("t1")).ok());
  EXPECT_EQ(s.EvictIdle(20), 0u) << "not over the bound";
  EXPECT_EQ(s.EvictIdle(10), 11u) << "20 held, down to 9";
  EXPECT_EQ(s.topic_count(), 9u);
  EXPECT_NE(s.Find("t0"), nullptr);
  EXPECT_NE(s.Find("t1"), nullptr);
  for (int i = 13; i < 20; ++i) EXPECT_NE(s.Find("t" + std::to_string(i)), nullptr) << i;
  for (int i = 2; i < 13; ++i) EXPECT_EQ(s.Find("t" + std::to_string(i)), nullptr) << i;
  // A forgotten topic comes back seeded from the database and goes on.
  Sequencer::Topic& back = s.Add("t5", 6, 41);
  EXPECT_EQ(s.NextSeq(back).value(), 42u);
}

}  // namespace
}  // namespace seqrelay
