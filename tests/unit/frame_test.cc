// Tests of the frame codec (PROTOCOL.md section 2): golden encodings, the
// SEQ and flag limits, and the golden frame files in tests/data/.
#include "core/frame.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace seqrelay {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes ToBytes(const std::string& s) { return Bytes(s.begin(), s.end()); }

std::span<const uint8_t> AsSpan(const Bytes& b) { return {b.data(), b.size()}; }

Bytes ReadDataFile(const std::string& name) {
  std::ifstream file(std::string(SEQRELAY_TEST_DATA) + "/" + name, std::ios::binary);
  EXPECT_TRUE(file) << "cannot open tests/data/" << name;
  return Bytes(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

// Golden encodings: the header bytes for a given header, byte for byte.
struct EncodeCase {
  const char* rule;
  FrameHeader header;
  Bytes expected;
};

const std::vector<EncodeCase> kEncodeCases = {
    {"id_and_seq_are_big_endian_flag_last",
     {7, 17, Ordering::kOrdered},
     {0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x11, 0x01}},
    {"immediate_topic_has_flag_0",
     {7, 17, Ordering::kImmediate},
     {0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x11, 0x00}},
    {"first_seq_is_1", {1, 1, Ordering::kOrdered}, {0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01}},
    {"every_id_and_seq_byte_has_its_place",
     {0x01020304, 0x0506070809, Ordering::kOrdered},
     {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x01}},
    {"seq_max_is_five_bytes_of_ff",
     {7, kMaxSeq, Ordering::kOrdered},
     {0x00, 0x00, 0x00, 0x07, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}},
    {"id_max_is_four_bytes_of_ff",
     {0xFFFFFFFF, 1, Ordering::kImmediate},
     {0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00}},
    {"seq_2_pow_32_needs_the_fifth_byte",
     {7, uint64_t{1} << 32, Ordering::kOrdered},
     {0x00, 0x00, 0x00, 0x07, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01}},
};

TEST(FrameTest, EncodeHeaderGoldenBytes) {
  for (const auto& c : kEncodeCases) {
    SCOPED_TRACE(c.rule);
    Bytes out(kFrameHeaderSize, 0xAA);
    ASSERT_TRUE(EncodeHeader(c.header, out).ok());
    EXPECT_EQ(out, c.expected);
  }
}

TEST(FrameTest, EncodeFrameGoldenBytesWithPayload) {
  const Bytes payload = {'h', 'i'};
  auto frame = EncodeFrame({7, 17, Ordering::kOrdered}, payload);
  ASSERT_TRUE(frame.ok()) << frame.error();
  EXPECT_EQ(ToBytes(*frame), (Bytes{0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x11, 0x01, 'h', 'i'}));
}

// SEQ limits: 1..2^40-1 encode, everything else is refused and nothing is written.
struct SeqLimitCase {
  const char* rule;
  uint64_t seq;
  bool ok;
};

const std::vector<SeqLimitCase> kSeqLimitCases = {
    {"seq_0_is_refused", 0, false},
    {"seq_1_is_the_first", 1, true},
    {"seq_2_pow_40_minus_1_is_the_last", kMaxSeq, true},
    {"seq_2_pow_40_does_not_fit_5_bytes", kMaxSeq + 1, false},
    {"seq_uint64_max_does_not_fit_5_bytes", UINT64_MAX, false},
};

TEST(FrameTest, EncodeHeaderSeqLimits) {
  for (const auto& c : kSeqLimitCases) {
    SCOPED_TRACE(c.rule);
    Bytes out(kFrameHeaderSize, 0xAA);
    Status s = EncodeHeader({7, c.seq, Ordering::kOrdered}, out);
    EXPECT_EQ(s.ok(), c.ok) << s.message();
    if (!c.ok) {
      EXPECT_EQ(out, Bytes(kFrameHeaderSize, 0xAA)) << "a refused header must write nothing";
      EXPECT_FALSE(EncodeFrame({7, c.seq, Ordering::kOrdered}, {}).ok());
    }
  }
}

TEST(FrameTest, EncodeHeaderRejectsShortBuffer) {
  Bytes out(kFrameHeaderSize - 1, 0xAA);
  EXPECT_FALSE(EncodeHeader({7, 17, Ordering::kOrdered}, out).ok());
  EXPECT_EQ(out, Bytes(kFrameHeaderSize - 1, 0xAA));
}

TEST(FrameTest, MaxSeqConstantIs2Pow40Minus1) { EXPECT_EQ(kMaxSeq, uint64_t{1099511627775}); }

TEST(FrameTest, EmptyPayloadGivesExactlyTheHeader) {
  auto frame = EncodeFrame({7, 17, Ordering::kOrdered}, {});
  ASSERT_TRUE(frame.ok()) << frame.error();
  EXPECT_EQ(frame->size(), 10u);

  const Bytes bytes = ToBytes(*frame);
  auto view = DecodeFrame(bytes);
  ASSERT_TRUE(view.ok()) << view.error();
  EXPECT_TRUE(view->payload.empty());
  EXPECT_EQ(view->header.seq, 17u);
}

TEST(FrameTest, RoundTripKeepsEveryField) {
  const Bytes payload = {'h', 'e', 'l', 'l', 'o'};
  const FrameHeader header{0xDEADBEEF, 0x123456789A, Ordering::kImmediate};
  auto frame = EncodeFrame(header, payload);
  ASSERT_TRUE(frame.ok()) << frame.error();
  const Bytes bytes = ToBytes(*frame);

  auto view = DecodeFrame(bytes);
  ASSERT_TRUE(view.ok()) << view.error();
  EXPECT_EQ(view->header.topic_id, 0xDEADBEEFu);
  EXPECT_EQ(view->header.seq, uint64_t{0x123456789A});
  EXPECT_EQ(view->header.ordering, Ordering::kImmediate);
  EXPECT_EQ(Bytes(view->payload.begin(), view->payload.end()), payload);
  // The payload is a view into the decoded buffer, not a copy.
  EXPECT_EQ(view->payload.data(), bytes.data() + kFrameHeaderSize);
}

TEST(FrameTest, BinaryPayloadRoundTripsByteForByte) {
  Bytes payload = {0x00, 0xFF, 0x00, 0x00, 0x7F, 0x80, 0xFF, 0x0A, 0x0D, 0x00};
  for (int b = 0; b < 256; ++b) payload.push_back(static_cast<uint8_t>(b));
  auto frame = EncodeFrame({42, kMaxSeq, Ordering::kOrdered}, payload);
  ASSERT_TRUE(frame.ok()) << frame.error();
  ASSERT_EQ(frame->size(), kFrameHeaderSize + payload.size());
  const Bytes bytes = ToBytes(*frame);

  auto view = DecodeFrame(bytes);
  ASSERT_TRUE(view.ok()) << view.error();
  EXPECT_EQ(view->header.topic_id, 42u);
  EXPECT_EQ(view->header.seq, kMaxSeq);
  EXPECT_EQ(Bytes(view->payload.begin(), view->payload.end()), payload);
}

// Decoding: which byte strings are frames.
struct DecodeCase {
  const char* rule;
  Bytes frame;
  bool ok;
};

const std::vector<DecodeCase> kDecodeCases = {
    {"empty_input_is_shorter_than_header", {}, false},
    {"nine_bytes_is_shorter_than_header", {0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x11}, false},
    {"ten_bytes_is_a_frame_with_empty_message", {0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x11, 0x01}, true},
    {"seq_0_is_refused", {0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01}, false},
    {"seq_0_is_refused_even_with_payload", {0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 'x'}, false},
    {"flag_0_immediate_is_accepted", {0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x11, 0x00}, true},
    {"flag_2_is_refused", {0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x11, 0x02}, false},
    {"flag_ff_is_refused", {0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x11, 0xFF}, false},
    {"seq_max_five_bytes_of_ff_is_accepted", {0x00, 0x00, 0x00, 0x07, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, true},
    {"topic_id_0_is_not_checked_by_the_codec", {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x01}, true},
};

TEST(FrameTest, DecodeEdgeCases) {
  for (const auto& c : kDecodeCases) {
    SCOPED_TRACE(c.rule);
    auto view = DecodeFrame(AsSpan(c.frame));
    EXPECT_EQ(view.ok(), c.ok) << (view.ok() ? "" : view.error());
  }
}

TEST(FrameTest, DecodeGoldenId7Seq17) {
  const Bytes bytes = {0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x11, 0x01, 0xAB};
  auto view = DecodeFrame(bytes);
  ASSERT_TRUE(view.ok()) << view.error();
  EXPECT_EQ(view->header.topic_id, 7u);
  EXPECT_EQ(view->header.seq, 17u);
  EXPECT_EQ(view->header.ordering, Ordering::kOrdered);
  ASSERT_EQ(view->payload.size(), 1u);
  EXPECT_EQ(view->payload[0], 0xAB);
}

TEST(FrameTest, DecodeErrorsSayWhatIsWrong) {
  const Bytes short_frame(9, 0x01);
  auto too_short = DecodeFrame(short_frame);
  ASSERT_FALSE(too_short.ok());
  EXPECT_NE(too_short.error().find("9 bytes"), std::string::npos) << too_short.error();

  const Bytes bad_flag = {0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x11, 0x02};
  auto flag = DecodeFrame(bad_flag);
  ASSERT_FALSE(flag.ok());
  EXPECT_NE(flag.error().find("flag 2"), std::string::npos) << flag.error();
}

// The golden files in tests/data/: each name says whether it is a frame.
struct GoldenFileCase {
  const char* file;
  std::size_t size;
  bool ok;
};

const std::vector<GoldenFileCase> kGoldenFiles = {
    {"frame_valid_id7_seq17.bin", 10, true}, {"frame_valid_immediate_payload.bin", 14, true},
    {"frame_max_seq.bin", 10, true},         {"frame_short_9_bytes.bin", 9, false},
    {"frame_bad_flag.bin", 10, false},       {"frame_seq_zero.bin", 10, false},
};

TEST(FrameTest, GoldenFilesDecodeAsTheirNamesSay) {
  for (const auto& c : kGoldenFiles) {
    SCOPED_TRACE(c.file);
    const Bytes bytes = ReadDataFile(c.file);
    ASSERT_EQ(bytes.size(), c.size);
    auto view = DecodeFrame(AsSpan(bytes));
    EXPECT_EQ(view.ok(), c.ok) << (view.ok() ? "" : view.error());
  }
}

TEST(FrameTest, GoldenFileValuesAreExact) {
  {
    const Bytes bytes = ReadDataFile("frame_valid_id7_seq17.bin");
    auto view = DecodeFrame(AsSpan(bytes));
    ASSERT_TRUE(view.ok()) << view.error();
    EXPECT_EQ(view->header.topic_id, 7u);
    EXPECT_EQ(view->header.seq, 17u);
    EXPECT_EQ(view->header.ordering, Ordering::kOrdered);
    EXPECT_TRUE(view->payload.empty());
    // The writer produces the same bytes.
    auto frame = EncodeFrame({7, 17, Ordering::kOrdered}, {});
    ASSERT_TRUE(frame.ok()) << frame.error();
    EXPECT_EQ(ToBytes(*frame), bytes);
  }
  {
    const Bytes bytes = ReadDataFile("frame_max_seq.bin");
    auto view = DecodeFrame(AsSpan(bytes));
    ASSERT_TRUE(view.ok()) << view.error();
    EXPECT_EQ(view->header.topic_id, 0xFFFFFFFFu);
    EXPECT_EQ(view->header.seq, kMaxSeq);
    EXPECT_EQ(view->header.ordering, Ordering::kOrdered);
  }
  {
    const Bytes bytes = ReadDataFile("frame_valid_immediate_payload.bin");
    auto view = DecodeFrame(AsSpan(bytes));
    ASSERT_TRUE(view.ok()) << view.error();
    EXPECT_EQ(view->header.topic_id, 0x01020304u);
    EXPECT_EQ(view->header.seq, uint64_t{0x0A0B0C0D0E});
    EXPECT_EQ(view->header.ordering, Ordering::kImmediate);
    EXPECT_EQ(Bytes(view->payload.begin(), view->payload.end()), (Bytes{'h', 'i', 0x00, 0xFF}));
  }
}

}  // namespace
}  // namespace seqrelay
