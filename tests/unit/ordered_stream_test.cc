// Tests of the client module's OrderedStream (tools/client/ordered_stream.h):
// where a stream joins, ordered topics held back until a gap fills,
// immediate topics delivered at once with gap fills marked late, duplicates
// dropped, GiveUp skipping a missing range, and a randomized-order property
// check that every SEQ is delivered exactly once.
#include "ordered_stream.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <vector>

namespace seqclient {
namespace {

constexpr bool kOrdered = true;
constexpr bool kImmediate = false;

// Every frame offered in these tests carries "p<seq>" as its payload, so a
// delivery with the wrong payload shows up as a mismatch.
std::string PayloadOf(uint64_t seq) { return "p" + std::to_string(seq); }

// What a test expects of one delivery: its SEQ and its late flag.
struct Out {
  uint64_t seq;
  bool late;
  bool operator==(const Out&) const = default;
};

void PrintTo(const Out& o, std::ostream* os) { *os << o.seq << (o.late ? " late" : ""); }

// Checks every payload and reduces the deliveries to (seq, late).
std::vector<Out> Outs(const std::vector<Delivery>& deliveries) {
  std::vector<Out> out;
  for (const auto& d : deliveries) {
    EXPECT_EQ(d.payload, PayloadOf(d.seq)) << "payload of SEQ " << d.seq;
    out.push_back({d.seq, d.late});
  }
  return out;
}

// "none" or "from..to", so gap expectations read like the rule they check.
std::string GapText(const std::optional<Gap>& gap) {
  if (!gap) return "none";
  return std::to_string(gap->from) + ".." + std::to_string(gap->to);
}

// One Offer and what must hold right after it.
struct Step {
  uint64_t seq;
  std::vector<Out> want;  // delivered by this Offer, in order
  bool duplicate;
  uint64_t next;    // next() after the Offer
  const char* gap;  // GapText(gap()) after the Offer
};

struct OfferCase {
  const char* rule;
  uint64_t start;  // constructor argument: 0 = join at the first frame seen
  bool ordered;
  std::vector<Step> steps;
  uint64_t last_delivered;  // after the last step
};

const std::vector<OfferCase> kOfferCases = {
    // Where a stream starts.
    {"start_0_joins_at_the_first_frame_seen",
     0,
     kOrdered,
     {{7, {{7, false}}, false, 8, "none"}, {8, {{8, false}}, false, 9, "none"}},
     8},
    {"start_0_after_joining_older_frames_are_duplicates",
     0,
     kOrdered,
     {{7, {{7, false}}, false, 8, "none"}, {5, {}, true, 8, "none"}, {6, {}, true, 8, "none"}},
     7},
    {"start_n_holds_frames_above_n_until_n_arrives",
     5,
     kOrdered,
     {{6, {}, false, 5, "5..5"},
      {7, {}, false, 5, "5..5"},
      {5, {{5, false}, {6, false}, {7, false}}, false, 8, "none"}},
     7},
    {"start_n_frames_below_n_are_duplicates",
     5,
     kOrdered,
     {{4, {}, true, 5, "none"},
      {1, {}, true, 5, "none"},
      {5, {{5, false}}, false, 6, "none"},
      {5, {}, true, 6, "none"}},
     5},
    {"start_n_gap_starts_at_n", 5, kOrdered, {{8, {}, false, 5, "5..7"}}, 0},

    // Ordered topics.
    {"ordered_in_order_run_delivers_each_frame_at_once",
     0,
     kOrdered,
     {{1, {{1, false}}, false, 2, "none"},
      {2, {{2, false}}, false, 3, "none"},
      {3, {{3, false}}, false, 4, "none"},
      {4, {{4, false}}, false, 5, "none"}},
     4},
    {"ordered_out_of_order_frames_are_held_then_delivered_together",
     0,
     kOrdered,
     {{1, {{1, false}}, false, 2, "none"},
      {3, {}, false, 2, "2..2"},
      {4, {}, false, 2, "2..2"},
      {2, {{2, false}, {3, false}, {4, false}}, false, 5, "none"}},
     4},
    {"ordered_duplicate_of_a_held_frame_is_dropped",
     0,
     kOrdered,
     {{1, {{1, false}}, false, 2, "none"},
      {3, {}, false, 2, "2..2"},
      {3, {}, true, 2, "2..2"},
      {2, {{2, false}, {3, false}}, false, 4, "none"},
      {3, {}, true, 4, "none"}},
     3},
    {"ordered_duplicate_of_a_delivered_frame_is_dropped",
     0,
     kOrdered,
     {{1, {{1, false}}, false, 2, "none"},
      {2, {{2, false}}, false, 3, "none"},
      {1, {}, true, 3, "none"},
      {2, {}, true, 3, "none"}},
     2},
    {"ordered_gap_reports_only_the_oldest_gap",
     0,
     kOrdered,
     {{1, {{1, false}}, false, 2, "none"},
      {3, {}, false, 2, "2..2"},
      {6, {}, false, 2, "2..2"},
      {2, {{2, false}, {3, false}}, false, 4, "4..5"},
      {5, {}, false, 4, "4..4"},
      {4, {{4, false}, {5, false}, {6, false}}, false, 7, "none"}},
     6},
    {"ordered_gap_ends_before_the_first_held_frame_not_the_last",
     0,
     kOrdered,
     {{1, {{1, false}}, false, 2, "none"}, {9, {}, false, 2, "2..8"}, {4, {}, false, 2, "2..3"}},
     1},

    // Immediate topics.
    {"immediate_gap_fill_is_delivered_late_and_later_frame_is_not",
     0,
     kImmediate,
     {{1, {{1, false}}, false, 2, "none"}, {3, {{3, false}}, false, 2, "2..2"}, {2, {{2, true}}, false, 4, "none"}},
     3},
    {"immediate_duplicate_of_a_delivered_frame_above_next_is_dropped",
     0,
     kImmediate,
     {{1, {{1, false}}, false, 2, "none"},
      {3, {{3, false}}, false, 2, "2..2"},
      {3, {}, true, 2, "2..2"},
      {2, {{2, true}}, false, 4, "none"},
      {3, {}, true, 4, "none"},
      {2, {}, true, 4, "none"}},
     3},
    {"immediate_next_advances_over_every_delivered_frame_once_the_gap_fills",
     0,
     kImmediate,
     {{1, {{1, false}}, false, 2, "none"},
      {3, {{3, false}}, false, 2, "2..2"},
      {4, {{4, false}}, false, 2, "2..2"},
      {5, {{5, false}}, false, 2, "2..2"},
      {2, {{2, true}}, false, 6, "none"},
      {6, {{6, false}}, false, 7, "none"}},
     6},
    {"immediate_gap_reports_only_the_oldest_gap",
     0,
     kImmediate,
     {{1, {{1, false}}, false, 2, "none"},
      {3, {{3, false}}, false, 2, "2..2"},
      {6, {{6, false}}, false, 2, "2..2"},
      {2, {{2, true}}, false, 4, "4..5"},
      {4, {{4, true}}, false, 5, "5..5"},
      {5, {{5, true}}, false, 7, "none"}},
     6},
    {"immediate_start_n_delivers_frames_above_n_at_once",
     5,
     kImmediate,
     {{7, {{7, false}}, false, 5, "5..6"}, {5, {{5, true}}, false, 6, "6..6"}, {6, {{6, true}}, false, 8, "none"}},
     7},
};

TEST(OrderedStreamTest, OfferTable) {
  for (const auto& c : kOfferCases) {
    SCOPED_TRACE(c.rule);
    OrderedStream s(c.start);
    for (size_t i = 0; i < c.steps.size(); ++i) {
      const Step& step = c.steps[i];
      SCOPED_TRACE("step " + std::to_string(i) + ": Offer(" + std::to_string(step.seq) + ")");
      bool duplicate = !step.duplicate;  // Offer must overwrite it either way
      EXPECT_EQ(Outs(s.Offer(step.seq, c.ordered, PayloadOf(step.seq), &duplicate)), step.want);
      EXPECT_EQ(duplicate, step.duplicate);
      EXPECT_EQ(s.next(), step.next);
      EXPECT_EQ(GapText(s.gap()), step.gap);
    }
    EXPECT_EQ(s.last_delivered(), c.last_delivered);
  }
}

TEST(OrderedStreamTest, FreshStreamHasNothing) {
  OrderedStream fresh;
  EXPECT_EQ(fresh.next(), 0u);
  EXPECT_EQ(fresh.last_delivered(), 0u);
  EXPECT_EQ(GapText(fresh.gap()), "none");

  OrderedStream at5(5);
  EXPECT_EQ(at5.next(), 5u);
  EXPECT_EQ(at5.last_delivered(), 0u);
  EXPECT_EQ(GapText(at5.gap()), "none");
}

TEST(OrderedStreamTest, DuplicateOfHeldFrameKeepsTheFirstPayload) {
  OrderedStream s(1);
  bool duplicate = true;
  EXPECT_TRUE(s.Offer(2, kOrdered, "first", &duplicate).empty());
  EXPECT_FALSE(duplicate);
  EXPECT_TRUE(s.Offer(2, kOrdered, "second", &duplicate).empty());
  EXPECT_TRUE(duplicate);

  auto out = s.Offer(1, kOrdered, "one", &duplicate);
  EXPECT_FALSE(duplicate);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].seq, 1u);
  EXPECT_EQ(out[0].payload, "one");
  EXPECT_EQ(out[1].seq, 2u);
  EXPECT_EQ(out[1].payload, "first");
}

TEST(OrderedStreamTest, OfferWithoutDuplicateOutParameter) {
  OrderedStream s(1);
  EXPECT_EQ(Outs(s.Offer(1, kOrdered, PayloadOf(1))), (std::vector<Out>{{1, false}}));
  EXPECT_TRUE(s.Offer(1, kOrdered, PayloadOf(1)).empty());
  EXPECT_EQ(s.next(), 2u);
}

// GiveUp(to) after a run of Offers: what comes out and the state after it.
struct GiveUpCase {
  const char* rule;
  uint64_t start;
  bool ordered;
  std::vector<uint64_t> offers;  // offered first; their deliveries are not checked here
  uint64_t to;
  std::vector<Out> want;
  uint64_t next;
  const char* gap;
  uint64_t last_delivered;
};

const std::vector<GiveUpCase> kGiveUpCases = {
    {"ordered_giveup_releases_held_frames_after_the_range",
     0,
     kOrdered,
     {1, 5, 6},
     4,
     {{5, false}, {6, false}},
     7,
     "none",
     6},
    {"ordered_giveup_of_part_of_the_gap_leaves_the_rest_open", 0, kOrdered, {1, 5, 6}, 2, {}, 3, "3..4", 1},
    {"ordered_giveup_stops_at_the_oldest_gap_end_then_drains",
     0,
     kOrdered,
     {1, 3, 4},
     2,
     {{3, false}, {4, false}},
     5,
     "none",
     4},
    {"ordered_giveup_beyond_everything_with_nothing_held", 0, kOrdered, {1, 2}, 10, {}, 11, "none", 2},
    {"ordered_start_n_giveup_skips_n", 5, kOrdered, {7, 8}, 6, {{7, false}, {8, false}}, 9, "none", 8},
    {"giveup_below_next_does_nothing", 0, kOrdered, {1, 2, 3}, 2, {}, 4, "none", 3},
    {"giveup_just_below_next_does_nothing", 0, kOrdered, {1, 2, 3}, 3, {}, 4, "none", 3},
    {"giveup_below_next_keeps_held_frames_and_gap", 0, kOrdered, {1, 3}, 1, {}, 2, "2..2", 1},
    {"giveup_on_a_fresh_stream_does_nothing", 0, kOrdered, {}, 10, {}, 0, "none", 0},
    {"immediate_giveup_skips_delivered_frames_without_delivering_them_again",
     0,
     kImmediate,
     {1, 3, 5},
     4,
     {},
     6,
     "none",
     5},
    {"immediate_giveup_of_part_of_the_range_stops_at_the_next_gap", 0, kImmediate, {1, 3, 5}, 2, {}, 4, "4..4", 5},
};

TEST(OrderedStreamTest, GiveUpTable) {
  for (const auto& c : kGiveUpCases) {
    SCOPED_TRACE(c.rule);
    OrderedStream s(c.start);
    for (uint64_t seq : c.offers) (void)s.Offer(seq, c.ordered, PayloadOf(seq));
    EXPECT_EQ(Outs(s.GiveUp(c.to)), c.want);
    EXPECT_EQ(s.next(), c.next);
    EXPECT_EQ(GapText(s.gap()), c.gap);
    EXPECT_EQ(s.last_delivered(), c.last_delivered);
  }
}

TEST(OrderedStreamTest, GiveUpOnFreshStreamStillJoinsAtFirstFrame) {
  OrderedStream s;
  EXPECT_TRUE(s.GiveUp(10).empty());
  EXPECT_EQ(s.next(), 0u);
  EXPECT_EQ(Outs(s.Offer(3, kOrdered, PayloadOf(3))), (std::vector<Out>{{3, false}}));
  EXPECT_EQ(s.next(), 4u);
}

TEST(OrderedStreamTest, GivenUpFrameArrivingLaterIsADuplicate) {
  for (bool ordered : {kOrdered, kImmediate}) {
    SCOPED_TRACE(ordered ? "ordered" : "immediate");
    OrderedStream s;
    (void)s.Offer(1, ordered, PayloadOf(1));
    (void)s.Offer(5, ordered, PayloadOf(5));
    (void)s.GiveUp(4);
    ASSERT_EQ(s.next(), 6u);
    bool duplicate = false;
    EXPECT_TRUE(s.Offer(3, ordered, PayloadOf(3), &duplicate).empty());
    EXPECT_TRUE(duplicate);
  }
}

// Frames the relay never stored (held above its newest SEQ, forged) are
// forgotten: those that came by a given moment, in a range. The gap ends
// below them again, and their SEQs are free for the real frames.
TEST(OrderedStreamTest, ForgetDropsWhatIsHeldInARangeAndCameByAMoment) {
  for (bool ordered : {kOrdered, kImmediate}) {
    SCOPED_TRACE(ordered ? "ordered" : "immediate");
    OrderedStream s;
    for (uint64_t seq : {1, 4, 9, 1000000}) (void)s.Offer(seq, ordered, PayloadOf(seq));
    const uint64_t moment = s.arrivals();
    (void)s.Offer(12, ordered, PayloadOf(12));  // came after the moment
    EXPECT_EQ(s.Forget(6, UINT64_MAX, moment), (std::vector<uint64_t>{9, 1000000}));
    EXPECT_EQ(GapText(s.gap()), "2..3");
    EXPECT_EQ(s.last_delivered(), ordered ? 1u : 12u);
    EXPECT_TRUE(s.Forget(6, UINT64_MAX, moment).empty());
    bool duplicate = true;
    (void)s.Offer(9, ordered, PayloadOf(9), &duplicate);
    EXPECT_FALSE(duplicate);
    (void)s.Offer(12, ordered, PayloadOf(12), &duplicate);
    EXPECT_TRUE(duplicate);
    EXPECT_EQ(s.Forget(10, 12), std::vector<uint64_t>{12});  // no moment: whenever it came
  }
}

// What a stream holds above a gap, in bytes: an ordered topic's payloads
// and a record each, an immediate topic's records of the SEQs shown; back
// to nothing once the gap fills, or is given up, or its frames forgotten.
TEST(OrderedStreamTest, HeldBytesCountWhatWaitsAboveAGapAndFallAsItGoes) {
  constexpr uint64_t kEntry = OrderedStream::kEntryBytes;
  for (bool ordered : {kOrdered, kImmediate}) {
    SCOPED_TRACE(ordered ? "ordered" : "immediate");
    const uint64_t payload = ordered ? 10 : 0;  // PayloadOf(seq) of two digits: "payload-NN"
    OrderedStream s(1);
    (void)s.Offer(1, ordered, "payload-01");
    EXPECT_EQ(s.held_bytes(), 0u) << "delivered at once: nothing held";
    for (uint64_t seq : {10, 11, 12, 20}) (void)s.Offer(seq, ordered, "payload-" + std::to_string(seq));
    EXPECT_EQ(s.held_bytes(), 4 * (payload + kEntry));
    (void)s.Offer(11, ordered, "payload-11");  // a duplicate adds nothing
    EXPECT_EQ(s.held_bytes(), 4 * (payload + kEntry));
    EXPECT_EQ(s.Forget(20, 20), std::vector<uint64_t>{20});
    EXPECT_EQ(s.held_bytes(), 3 * (payload + kEntry));
    (void)s.GiveUp(5);  // 2..5 given up; 6..9 still missing
    EXPECT_EQ(s.held_bytes(), 3 * (payload + kEntry));
    for (uint64_t seq : {8, 7}) (void)s.Offer(seq, ordered, "payload-0" + std::to_string(seq));
    EXPECT_EQ(s.held_bytes(), 5 * (payload + kEntry));
    (void)s.Offer(6, ordered, "payload-06");  // 6..8 out; 9 still missing
    EXPECT_EQ(s.held_bytes(), 3 * (payload + kEntry));
    (void)s.Offer(9, ordered, "payload-09");  // fills the gap: 9..12 out
    EXPECT_EQ(s.held_bytes(), 0u);
    (void)s.Offer(30, ordered, "payload-30");
    (void)s.GiveUp(29);
    EXPECT_EQ(s.held_bytes(), 0u);
    s.MarkShown(40);
    EXPECT_EQ(s.held_bytes(), kEntry);
    s.MarkShown(40);
    EXPECT_EQ(s.held_bytes(), kEntry) << "marked twice, held once";
  }
}

// Past a bound, an ordered topic's held frames are dropped, the newest but
// one first: the newest stays, so the dropped show as missing below it and
// are asked for again; an immediate topic's records are never dropped.
TEST(OrderedStreamTest, ShedDropsHeldFramesNewestButOneFirstAndKeepsTheNewest) {
  constexpr uint64_t kFrame = 10 + OrderedStream::kEntryBytes;  // "payload-NN"
  OrderedStream s(1);
  for (uint64_t seq : {3, 4, 5, 6, 9}) (void)s.Offer(seq, kOrdered, "payload-0" + std::to_string(seq));
  ASSERT_EQ(s.held_bytes(), 5 * kFrame);
  EXPECT_TRUE(s.Shed(5 * kFrame).empty()) << "not over the bound";
  EXPECT_EQ(s.Shed(3 * kFrame), (std::vector<uint64_t>{5, 6}));
  EXPECT_EQ(s.held_bytes(), 3 * kFrame);
  EXPECT_EQ(GapText(s.gap()), "1..2");
  const auto missing = s.Missing(1, 9);
  ASSERT_EQ(missing.size(), 2u);
  EXPECT_EQ(GapText(missing[0]) + " " + GapText(missing[1]), "1..2 5..8");
  EXPECT_EQ(s.Shed(0), (std::vector<uint64_t>{3, 4}));
  EXPECT_EQ(s.held_bytes(), kFrame) << "the newest stays, whatever the bound";
  // What was dropped comes again, and everything is delivered in order.
  std::vector<uint64_t> delivered;
  for (uint64_t seq : {1, 2, 3, 4, 5, 6, 7, 8}) {
    for (const auto& d : s.Offer(seq, kOrdered, "payload-0" + std::to_string(seq))) delivered.push_back(d.seq);
  }
  EXPECT_EQ(delivered, (std::vector<uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(s.held_bytes(), 0u);

  OrderedStream immediate(1);
  for (uint64_t seq : {3, 4, 9}) (void)immediate.Offer(seq, kImmediate, "payload-0" + std::to_string(seq));
  EXPECT_TRUE(immediate.Shed(0).empty()) << "records of frames shown stay";
  EXPECT_EQ(immediate.held_bytes(), 3 * OrderedStream::kEntryBytes);
}

// An immediate topic's frames shown above a gap, as runs (what the state
// file keeps), and a stream resumed below the gap that takes them for shown:
// the frames of those SEQs are duplicates, and the gap's frames are late.
TEST(OrderedStreamTest, ShownRunsAboveAGapAreNotShownAgainAfterAResume) {
  auto text = [](const std::vector<Gap>& runs) {
    std::string out;
    for (const Gap& g : runs) out += (out.empty() ? "" : " ") + GapText(g);
    return out;
  };
  OrderedStream before;
  for (uint64_t seq : {1, 2, 5, 6, 9}) (void)before.Offer(seq, kImmediate, PayloadOf(seq));
  EXPECT_EQ(text(before.Shown()), "5..6 9..9");
  EXPECT_EQ(before.next(), 3u);
  OrderedStream ordered;
  for (uint64_t seq : {1, 5, 6}) (void)ordered.Offer(seq, kOrdered, PayloadOf(seq));
  EXPECT_EQ(text(ordered.Shown()), "");  // held back, not shown

  OrderedStream after(3);
  for (const Gap& run : before.Shown()) {
    for (uint64_t seq = run.from; seq <= run.to; ++seq) after.MarkShown(seq);
  }
  after.MarkShown(3);  // the gap's own first SEQ was never shown: not taken
  EXPECT_EQ(text(after.Shown()), "5..6 9..9");
  std::vector<std::string> shown;
  for (uint64_t seq = 3; seq <= 10; ++seq) {
    bool duplicate = false;
    for (const Delivery& d : after.Offer(seq, kImmediate, PayloadOf(seq), &duplicate)) {
      shown.push_back(std::to_string(d.seq) + (d.late ? " late" : ""));
    }
    EXPECT_EQ(duplicate, seq == 5 || seq == 6 || seq == 9) << seq;
  }
  EXPECT_EQ(shown, (std::vector<std::string>{"3 late", "4 late", "7 late", "8 late", "10"}));
  EXPECT_EQ(after.next(), 11u);
  EXPECT_EQ(text(after.Shown()), "");
}

// Missing(): the runs of a range that are not held (held back, or shown on
// an immediate topic), as the JavaScript and Python streams' missing() say.
TEST(OrderedStreamTest, MissingNamesTheRunsOfARangeThatAreNotHeld) {
  auto text = [](const std::vector<Gap>& runs) {
    std::string out;
    for (const Gap& g : runs) out += (out.empty() ? "" : " ") + GapText(g);
    return out;
  };
  for (bool ordered : {kOrdered, kImmediate}) {
    SCOPED_TRACE(ordered ? "ordered" : "immediate");
    OrderedStream s(5);
    for (uint64_t seq : {7, 10, 11, 20}) (void)s.Offer(seq, ordered, PayloadOf(seq));
    EXPECT_EQ(text(s.Missing(5, 19)), "5..6 8..9 12..19");
    EXPECT_EQ(text(s.Missing(10, 11)), "");
    EXPECT_EQ(text(s.Missing(11, UINT64_MAX)), "12..19 21.." + std::to_string(UINT64_MAX));
    EXPECT_EQ(text(s.Missing(1, 4)), "1..4") << "below next() counts as missing";
    EXPECT_EQ(text(s.Missing(9, 8)), "");
  }
  EXPECT_EQ(text(OrderedStream(0).Missing(3, 3)), "3..3");
}

// The header: GiveUp(to) gives up "every SEQ up to and including `to` that
// has not come: they will not be delivered", and every SEQ below next() was
// delivered or given up. A held frame inside the range does not change that:
// the held frame is delivered and the missing SEQs after it are skipped too.
TEST(OrderedStreamTest, GiveUpSkipsMissingSeqsOnBothSidesOfAHeldFrame) {
  OrderedStream s;
  (void)s.Offer(1, kOrdered, PayloadOf(1));
  (void)s.Offer(3, kOrdered, PayloadOf(3));
  (void)s.Offer(5, kOrdered, PayloadOf(5));
  EXPECT_EQ(Outs(s.GiveUp(4)), (std::vector<Out>{{3, false}, {5, false}}));
  EXPECT_EQ(s.next(), 6u);
  EXPECT_EQ(GapText(s.gap()), "none");
  bool duplicate = false;
  EXPECT_TRUE(s.Offer(4, kOrdered, PayloadOf(4), &duplicate).empty()) << "4 was given up";
  EXPECT_TRUE(duplicate);
}

TEST(OrderedStreamTest, GiveUpBeyondTheLastHeldFrameSkipsToTheEndOfTheRange) {
  OrderedStream s;
  (void)s.Offer(1, kOrdered, PayloadOf(1));
  (void)s.Offer(3, kOrdered, PayloadOf(3));
  EXPECT_EQ(Outs(s.GiveUp(10)), (std::vector<Out>{{3, false}}));
  EXPECT_EQ(s.next(), 11u);
}

// Property: SEQ 1..kLast in a shuffled order with about 10% of them sent twice.
struct SeedCase {
  const char* rule;
  uint64_t seed;
};

const std::vector<SeedCase> kSeedCases = {
    {"seed_1", 1}, {"seed_2", 2}, {"seed_42", 42}, {"seed_1234", 1234}, {"seed_987654321", 987654321},
};

constexpr uint64_t kLast = 500;

struct Shuffled {
  std::vector<uint64_t> seqs;
  size_t extra_copies = 0;
};

Shuffled ShuffledWithDuplicates(uint64_t seed) {
  std::mt19937_64 rng(seed);
  Shuffled s;
  for (uint64_t seq = 1; seq <= kLast; ++seq) {
    s.seqs.push_back(seq);
    if (rng() % 10 == 0) {
      s.seqs.push_back(seq);
      ++s.extra_copies;
    }
  }
  std::shuffle(s.seqs.begin(), s.seqs.end(), rng);
  return s;
}

std::vector<uint64_t> OneTo(uint64_t last) {
  std::vector<uint64_t> v;
  for (uint64_t seq = 1; seq <= last; ++seq) v.push_back(seq);
  return v;
}

TEST(OrderedStreamTest, RandomOrderOrderedDeliversExactlyOneToLastInOrder) {
  for (const auto& c : kSeedCases) {
    SCOPED_TRACE(c.rule);
    const Shuffled in = ShuffledWithDuplicates(c.seed);
    ASSERT_GT(in.extra_copies, 0u);
    // Start at 1: a stream starting at 0 would join at whichever frame came first.
    OrderedStream s(1);
    std::vector<uint64_t> delivered;
    size_t duplicates = 0;
    size_t late = 0;
    for (uint64_t seq : in.seqs) {
      bool duplicate = false;
      for (const auto& d : s.Offer(seq, kOrdered, PayloadOf(seq), &duplicate)) {
        EXPECT_EQ(d.payload, PayloadOf(d.seq));
        if (d.late) ++late;
        delivered.push_back(d.seq);
      }
      if (duplicate) ++duplicates;
    }
    EXPECT_EQ(delivered, OneTo(kLast));
    EXPECT_EQ(duplicates, in.extra_copies);
    EXPECT_EQ(late, 0u) << "ordered deliveries are never late";
    EXPECT_EQ(s.next(), kLast + 1);
    EXPECT_EQ(s.last_delivered(), kLast);
    EXPECT_EQ(GapText(s.gap()), "none");
  }
}

TEST(OrderedStreamTest, RandomOrderImmediateDeliversEverySeqExactlyOnce) {
  for (const auto& c : kSeedCases) {
    SCOPED_TRACE(c.rule);
    const Shuffled in = ShuffledWithDuplicates(c.seed);
    OrderedStream s(1);
    std::vector<uint64_t> delivered;
    size_t duplicates = 0;
    uint64_t highest = 0;
    for (uint64_t seq : in.seqs) {
      bool duplicate = false;
      for (const auto& d : s.Offer(seq, kImmediate, PayloadOf(seq), &duplicate)) {
        EXPECT_EQ(d.payload, PayloadOf(d.seq));
        // Late exactly when a higher SEQ was already shown.
        EXPECT_EQ(d.late, d.seq < highest) << "SEQ " << d.seq;
        highest = std::max(highest, d.seq);
        delivered.push_back(d.seq);
      }
      if (duplicate) ++duplicates;
    }
    std::vector<uint64_t> sorted = delivered;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(sorted, OneTo(kLast));
    EXPECT_EQ(duplicates, in.extra_copies);
    EXPECT_EQ(s.next(), kLast + 1);
    EXPECT_EQ(s.last_delivered(), kLast);
    EXPECT_EQ(GapText(s.gap()), "none");
  }
}

TEST(OrderedStreamTest, RandomOrderFromZeroJoinsAtTheFirstFrame) {
  for (const auto& c : kSeedCases) {
    SCOPED_TRACE(c.rule);
    const Shuffled in = ShuffledWithDuplicates(c.seed);
    OrderedStream s;
    std::vector<uint64_t> delivered;
    for (uint64_t seq : in.seqs) {
      for (const auto& d : s.Offer(seq, kOrdered, PayloadOf(seq))) delivered.push_back(d.seq);
    }
    const uint64_t first = in.seqs.front();
    std::vector<uint64_t> want;
    for (uint64_t seq = first; seq <= kLast; ++seq) want.push_back(seq);
    EXPECT_EQ(delivered, want);
    EXPECT_EQ(s.next(), kLast + 1);
  }
}

}  // namespace
}  // namespace seqclient
