// Tests of the local journal (journal.h): the record format on disk, exact
// end positions, replay from a position, cutting a torn or corrupt tail at
// Open, Open(min_position), segment rotation and Release. Each test owns a
// fresh folder under /tmp and removes it at the end.
#include "intake/journal.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace seqrelay {
namespace {

using Bytes = std::vector<uint8_t>;

constexpr uint64_t kRecordOverhead = 8 + 4;  // crc32 + length, then the u16 topic length and u16 mid

uint64_t RecordSize(const std::string& topic, const Bytes& payload) {
  return kRecordOverhead + topic.size() + payload.size();
}

std::span<const uint8_t> ByteSpan(const Bytes& b) { return {b.data(), b.size()}; }

// A fresh folder under /tmp, removed with everything in it at the end of the test.
class TempDir {
 public:
  TempDir() {
    char templ[] = "/tmp/journal_test.XXXXXX";
    const char* made = mkdtemp(templ);
    EXPECT_NE(made, nullptr) << "mkdtemp failed";
    if (made != nullptr) path_ = made;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The database identity every journal of these tests belongs to.
constexpr std::string_view kDatabase = "6ccd780c-baba-1026-9564-5b8c656024db";

// The file names in dir, sorted, but for the identity file every journal has.
std::vector<std::string> ListFiles(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (entry.path().filename() != "database-id") names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

uint64_t FileSize(const std::string& path) { return std::filesystem::file_size(path); }

Bytes ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  EXPECT_TRUE(file) << "cannot open " << path;
  return Bytes(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
}

void AppendToFile(const std::string& path, const Bytes& bytes) {
  std::ofstream file(path, std::ios::binary | std::ios::app);
  ASSERT_TRUE(file) << "cannot open " << path;
  file.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(file) << "cannot write " << path;
}

void FlipByte(const std::string& path, uint64_t offset) {
  std::fstream file(path, std::ios::binary | std::ios::in | std::ios::out);
  ASSERT_TRUE(file) << "cannot open " << path;
  file.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  ASSERT_TRUE(file.get(c)) << "no byte at " << offset;
  file.seekp(static_cast<std::streamoff>(offset));
  file.put(static_cast<char>(c ^ 0xFF));
  ASSERT_TRUE(file) << "cannot write " << path;
}

// CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320): an independent check
// of the checksum the journal writes, without zlib.
uint32_t ReferenceCrc32(const uint8_t* p, std::size_t n) {
  uint32_t crc = 0xFFFFFFFFu;
  for (std::size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

// The checksum of a record written since 2026-12-07: of its position (a
// u64, little-endian), then its bytes after the checksum.
uint32_t ReferenceCrcAt(uint64_t position, const uint8_t* p, std::size_t n) {
  Bytes all;
  for (int i = 0; i < 8; ++i) all.push_back(static_cast<uint8_t>(position >> (8 * i)));
  all.insert(all.end(), p, p + n);
  return ReferenceCrc32(all.data(), all.size());
}

uint32_t LittleU32(const Bytes& b, std::size_t at) {
  return uint32_t{b[at]} | (uint32_t{b[at + 1]} << 8) | (uint32_t{b[at + 2]} << 16) | (uint32_t{b[at + 3]} << 24);
}

// One replayed record, copied out of the callback.
struct Record {
  std::string topic;
  Bytes payload;
  uint16_t mid;
  uint64_t end;

  bool operator==(const Record&) const = default;
};

void PrintTo(const Record& r, std::ostream* os) {
  *os << "{topic(" << r.topic.size() << ")=\"" << r.topic << "\", payload(" << r.payload.size() << ")=[";
  for (std::size_t i = 0; i < r.payload.size() && i < 16; ++i) *os << (i ? " " : "") << int{r.payload[i]};
  if (r.payload.size() > 16) *os << " ...";
  *os << "], mid=" << r.mid << ", end=" << r.end << "}";
}

std::vector<Record> ReplayFrom(Journal& journal, uint64_t position) {
  std::vector<Record> out;
  Status s = journal.Replay(position, [&](const Journal::Record& r) {
    out.push_back({std::string(r.topic), Bytes(r.payload.begin(), r.payload.end()), r.mid, r.end});
  });
  EXPECT_TRUE(s.ok()) << s.message();
  return out;
}

// Appends and checks that the returned end is exactly the previous end plus the record size.
// Without `mid`, Append is called without one (its default).
uint64_t AppendOk(Journal& journal, const std::string& topic, const Bytes& payload,
                  std::optional<uint16_t> mid = std::nullopt) {
  const uint64_t before = journal.end();
  auto end = mid ? journal.Append(topic, ByteSpan(payload), *mid) : journal.Append(topic, ByteSpan(payload));
  EXPECT_TRUE(end.ok()) << end.error();
  if (!end.ok()) return 0;
  EXPECT_EQ(*end, before + RecordSize(topic, payload)) << "topic " << topic;
  EXPECT_EQ(journal.end(), *end);
  return *end;
}

// ---------------------------------------------------------------------------
// Append, reopen, replay.

const std::string kTopic255(255, 't');

struct AppendCase {
  const char* rule;
  std::string topic;
  Bytes payload;
  std::optional<uint16_t> mid;  // nullopt = appended without one, replays as 0
  uint64_t end;                 // expected position after the record
};

// Ends: 0 + 8+4+3+0 = 15; 15 + 8+4+3+6 = 36; 36 + 8+4+255+1 = 304.
const std::vector<AppendCase> kAppendCases = {
    {"empty_payload_is_a_record_without_mid", "a/b", {}, std::nullopt, 15},
    {"binary_payload_keeps_nul_and_ff_with_mid_0x1234", "bin", {0x00, 0xFF, 0x00, 'x', 0xFF, 0x00}, 0x1234, 36},
    {"topic_of_255_bytes_is_the_intake_limit_with_mid_65535", kTopic255, {'p'}, 65535, 304},
};

std::vector<Record> AllAppendRecords() {
  std::vector<Record> out;
  for (const auto& c : kAppendCases) out.push_back({c.topic, c.payload, c.mid.value_or(0), c.end});
  return out;
}

TEST(JournalTest, AppendReturnsExactEndPositions) {
  TempDir dir;
  Journal journal(dir.path());
  ASSERT_TRUE(journal.Open(0, kDatabase).ok());
  EXPECT_EQ(journal.end(), 0u);
  for (const auto& c : kAppendCases) {
    SCOPED_TRACE(c.rule);
    EXPECT_EQ(AppendOk(journal, c.topic, c.payload, c.mid), c.end);
  }
  EXPECT_EQ(ListFiles(dir.path()), (std::vector<std::string>{"journal-0000000000000000.log"}));
  EXPECT_EQ(FileSize(dir.File("journal-0000000000000000.log")), 304u);
}

TEST(JournalTest, RecordOnDiskIsCrcLengthTopicLengthMidTopicPayload) {
  TempDir dir;
  Journal journal(dir.path());
  ASSERT_TRUE(journal.Open(0, kDatabase).ok());
  EXPECT_EQ(AppendOk(journal, "a/b", {0x00, 0xFF}, 0x1234), 17u);
  EXPECT_EQ(AppendOk(journal, kTopic255, {}, 65535), 17u + 267u);
  EXPECT_EQ(AppendOk(journal, "c", {'z'}), 17u + 267u + 14u);

  const Bytes disk = ReadFile(dir.File("journal-0000000000000000.log"));
  ASSERT_EQ(disk.size(), 17u + 267u + 14u);
  // First record: length 9 = 2 + 2 + 3 + 2, topic length 3 with the positioned bit (0x4003), mid 0x1234
  // as 34 12, "a/b", payload 00 FF; the checksum of its position, 0, then those bytes.
  EXPECT_EQ(Bytes(disk.begin() + 4, disk.begin() + 17),
            (Bytes{0x09, 0x00, 0x00, 0x00, 0x03, 0x40, 0x34, 0x12, 'a', '/', 'b', 0x00, 0xFF}));
  EXPECT_EQ(LittleU32(disk, 0), ReferenceCrcAt(0, &disk[4], 13));
  // Second record, at 17: length 259 = 0x0103, topic length 255 = 0x00FF (0x40FF), mid 65535 = 0xFFFF,
  // little-endian, then the topic and no payload.
  EXPECT_EQ(Bytes(disk.begin() + 21, disk.begin() + 29), (Bytes{0x03, 0x01, 0x00, 0x00, 0xFF, 0x40, 0xFF, 0xFF}));
  EXPECT_EQ(Bytes(disk.begin() + 29, disk.begin() + 284), Bytes(kTopic255.begin(), kTopic255.end()));
  EXPECT_EQ(LittleU32(disk, 17), ReferenceCrcAt(17, &disk[21], 4 + 259));
  EXPECT_NE(LittleU32(disk, 17), ReferenceCrcAt(0, &disk[21], 4 + 259)) << "the position is in the checksum";
  // Third record, at 284, appended without a mid: length 6 = 2 + 2 + 1 + 1, topic length 1, mid 0, "c",
  // payload 'z'.
  EXPECT_EQ(Bytes(disk.begin() + 288, disk.end()), (Bytes{0x06, 0x00, 0x00, 0x00, 0x01, 0x40, 0x00, 0x00, 'c', 'z'}));
  EXPECT_EQ(LittleU32(disk, 284), ReferenceCrcAt(284, &disk[288], 4 + 6));

  EXPECT_EQ(ReplayFrom(journal, 0), (std::vector<Record>{{"a/b", {0x00, 0xFF}, 0x1234, 17},
                                                         {kTopic255, {}, 65535, 284},
                                                         {"c", {'z'}, 0, 298}}));
}

TEST(JournalTest, AMsgIdFollowsTheTopicAndTheTopLengthBitSaysSo) {
  TempDir dir;
  Journal journal(dir.path());
  ASSERT_TRUE(journal.Open(0, kDatabase).ok());
  // 8 + 4 + 3 (topic) + 1 + 2 (msg-id) + 2 (payload) = 20.
  auto end = journal.Append("a/b", ByteSpan(Bytes{0x00, 0xFF}), 0x1234, "m1");
  ASSERT_TRUE(end.ok()) << end.error();
  EXPECT_EQ(*end, 20u);
  // Then one without: the journal may mix them.
  EXPECT_EQ(AppendOk(journal, "c", {'z'}, 7), 20u + 14u);
  const std::string max_id(255, 'i');
  auto long_end = journal.Append("d", ByteSpan(Bytes{}), 8, max_id);
  ASSERT_TRUE(long_end.ok()) << long_end.error();
  EXPECT_EQ(*long_end, 34u + 8 + 4 + 1 + 1 + 255);
  EXPECT_FALSE(journal.Append("e", ByteSpan(Bytes{}), 9, std::string(256, 'i')).ok());

  const Bytes disk = ReadFile(dir.File("journal-0000000000000000.log"));
  // Length 12 = 2 + 2 + 3 + 1 + 2 + 2; topic length 3 with the top bit set and the positioned one
  // (0xC003); mid 34 12; "a/b"; msg-id length 2, "m1"; payload 00 FF.
  EXPECT_EQ(Bytes(disk.begin() + 4, disk.begin() + 20),
            (Bytes{0x0C, 0x00, 0x00, 0x00, 0x03, 0xC0, 0x34, 0x12, 'a', '/', 'b', 0x02, 'm', '1', 0x00, 0xFF}));
  EXPECT_EQ(LittleU32(disk, 0), ReferenceCrcAt(0, &disk[4], 16));

  Journal reopened(dir.path());
  ASSERT_TRUE(reopened.Open(0, kDatabase).ok());
  std::vector<std::string> ids;
  std::vector<Record> records;
  Status s = reopened.Replay(0, [&](const Journal::Record& r) {
    ids.emplace_back(r.msg_id);
    records.push_back({std::string(r.topic), Bytes(r.payload.begin(), r.payload.end()), r.mid, r.end});
  });
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(ids, (std::vector<std::string>{"m1", "", max_id}));
  EXPECT_EQ(records, (std::vector<Record>{{"a/b", {0x00, 0xFF}, 0x1234, 20}, {"c", {'z'}, 7, 34}, {"d", {}, 8, 303}}));
}

struct ReplayCase {
  const char* rule;
  uint64_t position;
  std::size_t first;  // index in kAppendCases of the first record expected
};

const std::vector<ReplayCase> kReplayCases = {
    {"from_0_returns_all", 0, 0},
    {"inside_first_record_still_returns_it", 14, 0},
    {"end_of_first_skips_it", 15, 1},
    {"one_past_end_of_first_returns_the_rest", 16, 1},
    {"end_of_second_returns_the_last", 36, 2},
    {"one_before_final_end_returns_the_last", 303, 2},
    {"final_end_returns_none", 304, 3},
    {"past_the_end_returns_none", 100000, 3},
};

TEST(JournalTest, ReopenedJournalReplaysExactRecordsFromPosition) {
  TempDir dir;
  {
    Journal journal(dir.path());
    ASSERT_TRUE(journal.Open(0, kDatabase).ok());
    for (const auto& c : kAppendCases) AppendOk(journal, c.topic, c.payload, c.mid);
  }
  Journal journal(dir.path());
  Status s = journal.Open(0, kDatabase);
  ASSERT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(journal.end(), 304u);
  const std::vector<Record> all = AllAppendRecords();
  for (const auto& c : kReplayCases) {
    SCOPED_TRACE(c.rule);
    EXPECT_EQ(ReplayFrom(journal, c.position), std::vector<Record>(all.begin() + c.first, all.end()));
  }
}

// ---------------------------------------------------------------------------
// A torn or corrupt tail is cut at Open.

const std::string kFirstTopic = "t/1";
const Bytes kFirstPayload = {'o', 'n', 'e'};
const std::string kSecondTopic = "t/2";
const Bytes kSecondPayload(100, 0x5A);
constexpr uint64_t kFirstEnd = 8 + 4 + 3 + 3;                // 18
constexpr uint64_t kSecondEnd = kFirstEnd + 8 + 4 + 3 + 100;  // 133

// Writes the two records above into a fresh journal in dir.
void WriteTwoRecords(const TempDir& dir) {
  Journal journal(dir.path());
  ASSERT_TRUE(journal.Open(0, kDatabase).ok());
  ASSERT_EQ(AppendOk(journal, kFirstTopic, kFirstPayload), kFirstEnd);
  ASSERT_EQ(AppendOk(journal, kSecondTopic, kSecondPayload), kSecondEnd);
}

struct TornCase {
  const char* rule;
  int64_t truncate_to;  // -1 = leave the size alone
  Bytes garbage;        // appended after truncating
  bool second_survives;
};

const std::vector<TornCase> kTornCases = {
    {"cut_inside_second_crc", kFirstEnd + 2, {}, false},
    {"cut_inside_second_length", kFirstEnd + 6, {}, false},
    {"cut_right_after_second_header", kFirstEnd + 8, {}, false},
    {"cut_inside_second_mid", kFirstEnd + 8 + 3, {}, false},
    {"cut_inside_second_topic", kFirstEnd + 8 + 4 + 1, {}, false},
    {"cut_one_byte_short_of_second_end", kSecondEnd - 1, {}, false},
    {"cut_second_then_garbage", kFirstEnd + 20, Bytes(30, 0xAB), false},
    {"short_garbage_after_two_records", -1, {0x01, 0x02, 0x03}, true},
    {"ff_garbage_after_two_records", -1, Bytes(64, 0xFF), true},
    {"zero_filled_tail_after_two_records", -1, Bytes(4096, 0x00), true},
};

TEST(JournalTest, OpenCutsTornTailAndAppendContinuesAfterIt) {
  for (const auto& c : kTornCases) {
    SCOPED_TRACE(c.rule);
    TempDir dir;
    WriteTwoRecords(dir);
    const std::string segment = dir.File("journal-0000000000000000.log");
    if (c.truncate_to >= 0) {
      ASSERT_EQ(truncate(segment.c_str(), static_cast<off_t>(c.truncate_to)), 0);
    }
    if (!c.garbage.empty()) AppendToFile(segment, c.garbage);

    std::vector<Record> expected = {{kFirstTopic, kFirstPayload, 0, kFirstEnd}};
    if (c.second_survives) expected.push_back({kSecondTopic, kSecondPayload, 0, kSecondEnd});
    const uint64_t valid_end = expected.back().end;

    Journal journal(dir.path());
    Status s = journal.Open(0, kDatabase);
    ASSERT_TRUE(s.ok()) << s.message();
    EXPECT_EQ(journal.end(), valid_end);
    EXPECT_EQ(FileSize(segment), valid_end) << "the torn bytes are cut off the file";
    EXPECT_EQ(ReplayFrom(journal, 0), expected);

    const Bytes next_payload = {'n', 'e', 'x', 't'};
    EXPECT_EQ(AppendOk(journal, "t/3", next_payload), valid_end + 8 + 4 + 3 + 4);
    expected.push_back({"t/3", next_payload, 0, valid_end + 19});
    EXPECT_EQ(ReplayFrom(journal, 0), expected);
    EXPECT_EQ(FileSize(segment), valid_end + 19);

    Journal reopened(dir.path());
    ASSERT_TRUE(reopened.Open(0, kDatabase).ok());
    EXPECT_EQ(reopened.end(), valid_end + 19);
    EXPECT_EQ(ReplayFrom(reopened, 0), expected);
    EXPECT_EQ(ListFiles(dir.path()), (std::vector<std::string>{"journal-0000000000000000.log"}));
  }
}

struct FlipCase {
  const char* rule;
  uint64_t offset;  // byte of the segment file to flip, inside the second record
};

const std::vector<FlipCase> kFlipCases = {
    {"flipped_payload_byte_fails_crc", kSecondEnd - 50},
    {"flipped_last_payload_byte_fails_crc", kSecondEnd - 1},
    {"flipped_topic_byte_fails_crc", kFirstEnd + 8 + 4},
    {"flipped_mid_high_byte_fails_crc", kFirstEnd + 8 + 3},
    {"flipped_mid_low_byte_fails_crc", kFirstEnd + 8 + 2},
    {"flipped_topic_length_byte_fails_crc", kFirstEnd + 8},
    {"flipped_crc_byte_fails_crc", kFirstEnd},
    {"flipped_length_byte_overruns_the_file", kFirstEnd + 4},
};

TEST(JournalTest, OpenCutsLastRecordWithBadCrc) {
  for (const auto& c : kFlipCases) {
    SCOPED_TRACE(c.rule);
    TempDir dir;
    WriteTwoRecords(dir);
    const std::string segment = dir.File("journal-0000000000000000.log");
    FlipByte(segment, c.offset);

    Journal journal(dir.path());
    Status s = journal.Open(0, kDatabase);
    ASSERT_TRUE(s.ok()) << s.message();
    EXPECT_EQ(journal.end(), kFirstEnd);
    EXPECT_EQ(FileSize(segment), kFirstEnd);
    EXPECT_EQ(ReplayFrom(journal, 0), (std::vector<Record>{{kFirstTopic, kFirstPayload, 0, kFirstEnd}}));

    EXPECT_EQ(AppendOk(journal, kSecondTopic, kSecondPayload), kSecondEnd);
    EXPECT_EQ(ReplayFrom(journal, kFirstEnd), (std::vector<Record>{{kSecondTopic, kSecondPayload, 0, kSecondEnd}}));
  }
}

// Damage before the last segment's last record (a machine crash that wrote
// the page cache back out of order, a disk that damaged a page): the
// records after it were acknowledged to their publishers. Open keeps them
// and the damaged bytes (it cuts only a torn tail); Replay reads every
// intact record, finding the next one by its checksum, and reports the
// damage. Until 2026-12-07 Open cut the segment at the damage, and the
// records after it were lost (a helper's review).
TEST(JournalTest, DamageBeforeTheLastRecordKeepsTheRecordsAfterIt) {
  const Bytes third_payload = {'3', '3', '3'};
  const uint64_t third_end = kSecondEnd + 8 + 4 + 3 + 3;
  const Record first = {kFirstTopic, kFirstPayload, 0, kFirstEnd};
  const Record third = {"t/3", third_payload, 0, third_end};
  std::vector<FlipCase> cases = kFlipCases;
  cases.push_back({"every_byte_of_the_second_record_flipped", 0});
  for (const auto& c : cases) {
    SCOPED_TRACE(c.rule);
    TempDir dir;
    WriteTwoRecords(dir);
    {
      Journal journal(dir.path());
      ASSERT_TRUE(journal.Open(0, kDatabase).ok());
      ASSERT_EQ(AppendOk(journal, "t/3", third_payload), third_end);
    }
    const std::string segment = dir.File("journal-0000000000000000.log");
    if (c.offset != 0) {
      FlipByte(segment, c.offset);
    } else {
      for (uint64_t at = kFirstEnd; at < kSecondEnd; ++at) FlipByte(segment, at);
    }

    Journal journal(dir.path());
    ASSERT_TRUE(journal.Open(0, kDatabase).ok());
    EXPECT_EQ(journal.end(), third_end);
    EXPECT_EQ(FileSize(segment), third_end) << "nothing cut";
    auto replay = [](Journal& j) {
      std::vector<Record> replayed;
      Status s = j.Replay(0, [&](const Journal::Record& r) {
        replayed.push_back({std::string(r.topic), Bytes(r.payload.begin(), r.payload.end()), r.mid, r.end});
      });
      EXPECT_FALSE(s.ok());
      EXPECT_NE(s.message().find("journal-0000000000000000.log is damaged at byte 18 (115 bytes unreadable)"),
                std::string::npos)
          << s.message();
      return replayed;
    };
    EXPECT_EQ(replay(journal), (std::vector<Record>{first, third}));

    const Bytes next_payload = {'n'};
    const uint64_t next_end = AppendOk(journal, "t/4", next_payload);
    EXPECT_EQ(next_end, third_end + 8 + 4 + 3 + 1);
    Journal reopened(dir.path());
    ASSERT_TRUE(reopened.Open(0, kDatabase).ok());
    EXPECT_EQ(reopened.end(), next_end);
    EXPECT_EQ(replay(reopened), (std::vector<Record>{first, third, {"t/4", next_payload, 0, next_end}}));
    // Committed past the damage: nothing of it is lost, nothing reported.
    EXPECT_EQ(ReplayFrom(reopened, third_end), (std::vector<Record>{{"t/4", next_payload, 0, next_end}}));
  }
}

// Past damage, only a record whose checksum holds at the place it is
// found is taken: the bytes of a record written elsewhere (here the first
// record's, copied over the second's start: a stale disk block a machine
// crash left in a file, a record inside another's payload) are damage.
// Without the position in the checksum they were taken, and the message
// stored twice.
TEST(JournalTest, PastDamageARecordsBytesFromElsewhereAreNotTaken) {
  TempDir dir;
  WriteTwoRecords(dir);
  const Bytes third_payload = {'3', '3', '3'};
  const uint64_t third_end = kSecondEnd + 8 + 4 + 3 + 3;
  {
    Journal journal(dir.path());
    ASSERT_TRUE(journal.Open(0, kDatabase).ok());
    ASSERT_EQ(AppendOk(journal, "t/3", third_payload), third_end);
  }
  const std::string segment = dir.File("journal-0000000000000000.log");
  Bytes disk = ReadFile(segment);
  std::copy(disk.begin(), disk.begin() + kFirstEnd, disk.begin() + kFirstEnd);  // the first, again, at 18
  std::fill(disk.begin() + 2 * kFirstEnd, disk.begin() + kSecondEnd, 0);
  {
    std::ofstream out(segment, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(disk.data()), static_cast<std::streamsize>(disk.size()));
  }
  Journal journal(dir.path());
  ASSERT_TRUE(journal.Open(0, kDatabase).ok());
  std::vector<Record> replayed;
  Status s = journal.Replay(0, [&](const Journal::Record& r) {
    replayed.push_back({std::string(r.topic), Bytes(r.payload.begin(), r.payload.end()), r.mid, r.end});
  });
  EXPECT_EQ(replayed, (std::vector<Record>{{kFirstTopic, kFirstPayload, 0, kFirstEnd}, {"t/3", third_payload, 0, third_end}}));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("damaged at byte 18 (115 bytes unreadable)"), std::string::npos) << s.message();
  // Damage that ends where the database has committed up to loses nothing: not reported.
  EXPECT_TRUE(journal.Replay(0, [](const Journal::Record&) {}, kSecondEnd).ok());
  EXPECT_FALSE(journal.Replay(0, [](const Journal::Record&) {}, kSecondEnd - 1).ok());
}

// Past damage a record of any size a relay takes is found, whatever
// --max-payload is now: a journal may hold records of a run with a larger
// one (a first form of the search skipped records over today's, and cut
// them off with the damage as a torn tail).
TEST(JournalTest, PastDamageALargeRecordIsFound) {
  TempDir dir;
  WriteTwoRecords(dir);
  const Bytes large(3 * 1024 * 1024, 'L');
  uint64_t large_end = 0;
  {
    Journal journal(dir.path());
    ASSERT_TRUE(journal.Open(0, kDatabase).ok());
    large_end = AppendOk(journal, "t/large", large);
  }
  FlipByte(dir.File("journal-0000000000000000.log"), kFirstEnd + 20);  // inside the second record
  Journal journal(dir.path());
  ASSERT_TRUE(journal.Open(0, kDatabase).ok());
  EXPECT_EQ(journal.end(), large_end);
  std::vector<Record> replayed;
  EXPECT_FALSE(journal.Replay(0, [&](const Journal::Record& r) {
    replayed.push_back({std::string(r.topic), Bytes(r.payload.begin(), r.payload.end()), r.mid, r.end});
  }).ok());
  EXPECT_EQ(replayed, (std::vector<Record>{{kFirstTopic, kFirstPayload, 0, kFirstEnd}, {"t/large", large, 0, large_end}}));
}

// A journal written before records were positioned (the checksum of the
// bytes alone, the bit clear) is read as it was, and appended to.
TEST(JournalTest, RecordsWrittenBeforeTheyWerePositionedAreRead) {
  TempDir dir;
  auto old_record = [](const std::string& topic, const Bytes& payload, uint16_t mid) {
    Bytes r(8, 0);
    const uint32_t len = static_cast<uint32_t>(4 + topic.size() + payload.size());
    for (int i = 0; i < 4; ++i) r[4 + i] = static_cast<uint8_t>(len >> (8 * i));
    r.push_back(static_cast<uint8_t>(topic.size()));
    r.push_back(0);
    r.push_back(static_cast<uint8_t>(mid));
    r.push_back(static_cast<uint8_t>(mid >> 8));
    r.insert(r.end(), topic.begin(), topic.end());
    r.insert(r.end(), payload.begin(), payload.end());
    const uint32_t crc = ReferenceCrc32(&r[4], 4 + len);
    for (int i = 0; i < 4; ++i) r[i] = static_cast<uint8_t>(crc >> (8 * i));
    return r;
  };
  Bytes disk = old_record("a/b", {'x', 'y'}, 7);
  const Bytes second = old_record("c", {}, 8);
  disk.insert(disk.end(), second.begin(), second.end());
  {
    Journal journal(dir.path());  // the identity and an empty segment
    ASSERT_TRUE(journal.Open(0, kDatabase).ok());
  }
  AppendToFile(dir.File("journal-0000000000000000.log"), disk);
  Journal journal(dir.path());
  ASSERT_TRUE(journal.Open(0, kDatabase).ok());
  EXPECT_EQ(journal.end(), disk.size());
  const uint64_t end = AppendOk(journal, "d", {'z'}, 9);
  EXPECT_EQ(ReplayFrom(journal, 0), (std::vector<Record>{{"a/b", {'x', 'y'}, 7, 17}, {"c", {}, 8, 30}, {"d", {'z'}, 9, end}}));
}

// ---------------------------------------------------------------------------
// Open(min_position).

struct MinPositionCase {
  const char* rule;
  uint64_t min_position;
  const char* segment;
};

const std::vector<MinPositionCase> kEmptyDirCases = {
    {"zero_starts_segment_0", 0, "journal-0000000000000000.log"},
    {"1000_is_3e8_in_hex", 1000, "journal-00000000000003e8.log"},
    {"all_sixteen_digits_in_lowercase", 0x0123456789abcdefULL, "journal-0123456789abcdef.log"},
};

TEST(JournalTest, OpenOnEmptyDirStartsAtMinPosition) {
  for (const auto& c : kEmptyDirCases) {
    SCOPED_TRACE(c.rule);
    TempDir dir;
    const uint64_t record_end = c.min_position + 8 + 4 + 1 + 2;
    {
      Journal journal(dir.path());
      Status s = journal.Open(c.min_position, kDatabase);
      ASSERT_TRUE(s.ok()) << s.message();
      EXPECT_EQ(journal.end(), c.min_position);
      EXPECT_EQ(ListFiles(dir.path()), (std::vector<std::string>{c.segment}));
      EXPECT_EQ(AppendOk(journal, "t", {0x01, 0x02}), record_end);
      EXPECT_EQ(ReplayFrom(journal, 0), (std::vector<Record>{{"t", {0x01, 0x02}, 0, record_end}}));
      EXPECT_EQ(ReplayFrom(journal, c.min_position), (std::vector<Record>{{"t", {0x01, 0x02}, 0, record_end}}));
      EXPECT_EQ(ReplayFrom(journal, record_end), std::vector<Record>{});
    }
    Journal reopened(dir.path());
    ASSERT_TRUE(reopened.Open(0, kDatabase).ok());
    EXPECT_EQ(reopened.end(), record_end);
    EXPECT_EQ(ReplayFrom(reopened, 0), (std::vector<Record>{{"t", {0x01, 0x02}, 0, record_end}}));
    EXPECT_EQ(ListFiles(dir.path()), (std::vector<std::string>{c.segment}));
  }
}

struct ExistingJournalCase {
  const char* rule;
  uint64_t min_position;
  uint64_t expected_end;              // end() after Open, with the journal ending at kSecondEnd
  std::vector<std::string> segments;  // files after Open
};

const std::vector<ExistingJournalCase> kExistingJournalCases = {
    {"min_0_appends_at_journal_end", 0, kSecondEnd, {"journal-0000000000000000.log"}},
    {"min_inside_journal_appends_at_journal_end", kFirstEnd, kSecondEnd, {"journal-0000000000000000.log"}},
    {"min_equal_to_journal_end_appends_there", kSecondEnd, kSecondEnd, {"journal-0000000000000000.log"}},
    {"min_one_past_journal_end_starts_new_segment",
     kSecondEnd + 1,
     kSecondEnd + 1,
     {"journal-0000000000000000.log", "journal-0000000000000086.log"}},
    {"min_far_past_journal_end_starts_new_segment",
     1000,
     1000,
     {"journal-0000000000000000.log", "journal-00000000000003e8.log"}},
};

TEST(JournalTest, OpenWithMinPositionPastJournalEndStartsNewSegment) {
  for (const auto& c : kExistingJournalCases) {
    SCOPED_TRACE(c.rule);
    TempDir dir;
    WriteTwoRecords(dir);
    const Record first = {kFirstTopic, kFirstPayload, 0, kFirstEnd};
    const Record second = {kSecondTopic, kSecondPayload, 0, kSecondEnd};
    const uint64_t third_end = c.expected_end + 8 + 4 + 3 + 1;
    const Record third = {"t/3", {'3'}, 0, third_end};
    {
      Journal journal(dir.path());
      Status s = journal.Open(c.min_position, kDatabase);
      ASSERT_TRUE(s.ok()) << s.message();
      EXPECT_EQ(journal.end(), c.expected_end);
      EXPECT_EQ(ListFiles(dir.path()), c.segments);
      EXPECT_EQ(AppendOk(journal, "t/3", {'3'}), third_end);
      EXPECT_EQ(ReplayFrom(journal, 0), (std::vector<Record>{first, second, third}));
      EXPECT_EQ(ReplayFrom(journal, c.expected_end), (std::vector<Record>{third}));
      EXPECT_EQ(FileSize(dir.File(c.segments.back())), third_end - (c.segments.size() == 1 ? 0 : c.expected_end));
    }
    Journal reopened(dir.path());
    ASSERT_TRUE(reopened.Open(0, kDatabase).ok());
    EXPECT_EQ(reopened.end(), third_end);
    EXPECT_EQ(ReplayFrom(reopened, 0), (std::vector<Record>{first, second, third}));
    EXPECT_EQ(ListFiles(dir.path()), c.segments);
  }
}

// A segment before the last one damaged (a machine crash can lose a
// segment's tail and keep the next segment's start): Replay reads every
// intact record, those of the later segments too (positions are absolute),
// and reports the damage. Until 2026-12-06 it stopped at the damage, and
// the start handed over none of the later records, which the next commit's
// position then released for good.
TEST(JournalTest, ADamagedSegmentBeforeTheLastHidesNoneOfTheLaterSegmentsRecords) {
  TempDir dir;
  WriteTwoRecords(dir);
  const Record first = {kFirstTopic, kFirstPayload, 0, kFirstEnd};
  const Record third = {"t/3", {'3'}, 0, 1000 + 8 + 4 + 3 + 1};
  const Record fourth = {"t/4", {'4'}, 0, third.end + 8 + 4 + 3 + 1};
  {
    Journal journal(dir.path());
    ASSERT_TRUE(journal.Open(1000, kDatabase).ok());  // a second segment, at 1000
    AppendOk(journal, "t/3", {'3'});
    AppendOk(journal, "t/4", {'4'});
  }
  FlipByte(dir.File("journal-0000000000000000.log"), kFirstEnd + 20);  // inside the second record's payload
  Journal journal(dir.path());
  ASSERT_TRUE(journal.Open(0, kDatabase).ok());
  std::vector<Record> replayed;
  Status s = journal.Replay(0, [&](const Journal::Record& r) {
    replayed.push_back({std::string(r.topic), Bytes(r.payload.begin(), r.payload.end()), r.mid, r.end});
  });
  EXPECT_EQ(replayed, (std::vector<Record>{first, third, fourth}));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("journal-0000000000000000.log is damaged at byte 18 (115 bytes unreadable)"),
            std::string::npos)
      << s.message();
}

// Files in the folder that are not segments ("journal-<16 hex>.log") are left alone.
struct StrayFileCase {
  const char* rule;
  const char* name;
};

const std::vector<StrayFileCase> kStrayFileCases = {
    {"backup_copy_with_other_suffix", "journal-0000000000000000.bak"},
    {"other_suffix_same_length", "journal-0000000000000000.tmp"},
    {"unrelated_file", "notes.txt"},
};

TEST(JournalTest, StrayFilesAreNotSegments) {
  for (const auto& c : kStrayFileCases) {
    SCOPED_TRACE(c.rule);
    TempDir dir;
    WriteTwoRecords(dir);
    const std::string segment = dir.File("journal-0000000000000000.log");
    std::filesystem::copy_file(segment, dir.File(c.name));

    Journal journal(dir.path());
    ASSERT_TRUE(journal.Open(0, kDatabase).ok());
    EXPECT_EQ(journal.end(), kSecondEnd);
    const Record first = {kFirstTopic, kFirstPayload, 0, kFirstEnd};
    const Record second = {kSecondTopic, kSecondPayload, 0, kSecondEnd};
    EXPECT_EQ(ReplayFrom(journal, 0), (std::vector<Record>{first, second}));
    journal.Release(journal.end());
    EXPECT_TRUE(std::filesystem::exists(segment)) << "Release deleted the segment being appended to";
    EXPECT_EQ(ReplayFrom(journal, 0), (std::vector<Record>{first, second}));
  }
}

// ---------------------------------------------------------------------------
// Segment rotation and Release.

constexpr std::size_t kBigPayload = 1024 * 1024;
const std::string kBigTopic = "big";
constexpr uint64_t kBigRecord = 8 + 4 + 3 + kBigPayload;  // 1048591
// Rotation happens before an append once the segment holds >= 64 MiB:
// 63 records are 66061233 bytes, 64 are 67109824 >= 67108864, so record 64
// (0-based) opens the second segment at 67109824 = 0x40003C0.
constexpr int kRecordsInFirstSegment = 64;
constexpr uint64_t kSecondBase = kRecordsInFirstSegment * kBigRecord;
constexpr int kBigRecords = 70;

Bytes BigPayload(int i) {
  Bytes payload(kBigPayload, static_cast<uint8_t>(i));
  payload.front() = 0x00;
  payload.back() = 0xFF;
  payload[kBigPayload / 2] = static_cast<uint8_t>(255 - i);
  return payload;
}

// Big record i carries mid 0xFF00 + i: distinct, both bytes non-zero.
uint16_t BigMid(int i) { return static_cast<uint16_t>(0xFF00 + i); }

// Replays from `position` and checks, without keeping 70 MiB of copies, that
// the records are exactly big records first..kBigRecords-1 in order.
void ExpectBigRecords(Journal& journal, uint64_t position, int first) {
  int next = first;
  Status s = journal.Replay(position, [&](const Journal::Record& r) {
    SCOPED_TRACE(next);
    EXPECT_EQ(r.topic, kBigTopic);
    EXPECT_EQ(r.mid, BigMid(next));
    EXPECT_EQ(r.end, static_cast<uint64_t>(next + 1) * kBigRecord);
    EXPECT_TRUE(Bytes(r.payload.begin(), r.payload.end()) == BigPayload(next)) << "payload of record " << next;
    ++next;
  });
  EXPECT_TRUE(s.ok()) << s.message();
  EXPECT_EQ(next, kBigRecords) << "replay from " << position << " stopped early";
}

TEST(JournalTest, SegmentsRotateAndReleaseDeletesOnlyWhollyCommittedOnes) {
  static_assert(kSecondBase == 0x40003C0);
  TempDir dir;
  const std::vector<std::string> both = {"journal-0000000000000000.log", "journal-00000000040003c0.log"};
  const std::vector<std::string> second_only = {"journal-00000000040003c0.log"};
  {
    Journal journal(dir.path());
    ASSERT_TRUE(journal.Open(0, kDatabase).ok());
    for (int i = 0; i < kBigRecords; ++i) {
      ASSERT_EQ(AppendOk(journal, kBigTopic, BigPayload(i), BigMid(i)), static_cast<uint64_t>(i + 1) * kBigRecord);
    }
    ASSERT_EQ(ListFiles(dir.path()), both);
    EXPECT_EQ(FileSize(dir.File(both[0])), kSecondBase);
    EXPECT_EQ(FileSize(dir.File(both[1])), (kBigRecords - kRecordsInFirstSegment) * kBigRecord);
    ExpectBigRecords(journal, 0, 0);
    ExpectBigRecords(journal, kSecondBase, kRecordsInFirstSegment);

    journal.Release(0);
    EXPECT_EQ(ListFiles(dir.path()), both) << "Release(0)";
    journal.Release(kSecondBase / 2);
    EXPECT_EQ(ListFiles(dir.path()), both) << "Release(middle of the first segment)";
    journal.Release(kSecondBase - 1);
    EXPECT_EQ(ListFiles(dir.path()), both) << "Release(one byte before the second segment)";
    journal.Release(kSecondBase);
    EXPECT_EQ(ListFiles(dir.path()), second_only) << "Release(base of the second segment)";
    journal.Release(journal.end());
    EXPECT_EQ(ListFiles(dir.path()), second_only) << "the segment being appended to is never deleted";

    ExpectBigRecords(journal, 0, kRecordsInFirstSegment);
  }
  Journal reopened(dir.path());
  ASSERT_TRUE(reopened.Open(0, kDatabase).ok());
  EXPECT_EQ(reopened.end(), kBigRecords * kBigRecord);
  ExpectBigRecords(reopened, 0, kRecordsInFirstSegment);
  EXPECT_EQ(AppendOk(reopened, "t", {}), kBigRecords * kBigRecord + 13);
  EXPECT_EQ(ListFiles(dir.path()), second_only) << "a 6 MiB segment takes more appends";
}

// ---------------------------------------------------------------------------
// A full disk.

// While alive, files this process writes may not grow past `bytes`: a write
// across the limit is cut short and the next one fails (EFBIG), as on a
// full disk (ENOSPC). SIGXFSZ is ignored meanwhile, as the relay would not
// get it from a full disk.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(uint64_t bytes) {
    EXPECT_EQ(getrlimit(RLIMIT_FSIZE, &saved_), 0);
    old_handler_ = signal(SIGXFSZ, SIG_IGN);
    rlimit limit = saved_;
    limit.rlim_cur = bytes;
    EXPECT_EQ(setrlimit(RLIMIT_FSIZE, &limit), 0);
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    signal(SIGXFSZ, old_handler_);
  }

 private:
  rlimit saved_{};
  sighandler_t old_handler_{};
};

TEST(JournalTest, ARecordTheDiskTookOnlyPartOfIsCutOffAndAppendsGoOnWhenThereIsRoom) {
  TempDir dir;
  const Bytes first(100, 'a'), refused(100, 'b'), after(100, 'c');
  uint64_t first_end = 0;
  {
    Journal journal(dir.path());
    ASSERT_TRUE(journal.Open(0, kDatabase).ok());
    first_end = AppendOk(journal, "t", first);
    {
      FileSizeLimit full(first_end + 40);  // room for 40 of the next record's 113 bytes
      auto failed = journal.Append("t", ByteSpan(refused));
      ASSERT_FALSE(failed.ok());
      EXPECT_NE(failed.error().find("journal: append: "), std::string::npos) << failed.error();
      EXPECT_EQ(journal.end(), first_end);
      EXPECT_EQ(std::filesystem::file_size(dir.File("journal-0000000000000000.log")), first_end)
          << "the 40 bytes written must be cut off";
    }
    const uint64_t after_end = AppendOk(journal, "t", after);
    EXPECT_EQ(after_end, first_end + RecordSize("t", after));
  }
  Journal reopened(dir.path());
  ASSERT_TRUE(reopened.Open(0, kDatabase).ok());
  const std::vector<Record> expected = {{"t", first, 0, first_end},
                                        {"t", after, 0, first_end + RecordSize("t", after)}};
  EXPECT_EQ(ReplayFrom(reopened, 0), expected);
  EXPECT_EQ(reopened.end(), expected.back().end);
}

// A journal belongs to the database it was written for: its records mean
// nothing to another one (a fresh or reset database would store them again
// with new SEQs), so another database is refused while the journal holds
// records, and a journal with none (or one from before identities) takes
// the new identity.
TEST(JournalTest, AJournalOfAnotherDatabaseIsRefusedWhileItHoldsRecords) {
  TempDir dir;
  {
    Journal journal(dir.path());
    ASSERT_TRUE(journal.Open(0, kDatabase).ok());
    AppendOk(journal, "t", {'x'});
  }
  {
    Journal journal(dir.path());
    Status s = journal.Open(0, "another-database");
    ASSERT_FALSE(s.ok());
    EXPECT_TRUE(s.permanent());
    EXPECT_NE(s.message().find("holds 14 bytes of records of database " + std::string(kDatabase) +
                               ", but this database is another-database"),
              std::string::npos)
        << s.message();
    EXPECT_NE(s.message().find("Point --journal-dir at an empty directory"), std::string::npos) << s.message();
  }
  Journal same(dir.path());
  EXPECT_TRUE(same.Open(14, kDatabase).ok()) << "its own database is accepted";
}

TEST(JournalTest, AJournalWithoutRecordsOrIdentityTakesTheDatabasesIdentity) {
  TempDir empty;
  {
    Journal journal(empty.path());
    ASSERT_TRUE(journal.Open(0, kDatabase).ok());
  }
  {
    Journal journal(empty.path());
    EXPECT_TRUE(journal.Open(0, "another-database").ok()) << "no records: nothing to store twice";
  }
  EXPECT_EQ(ReadFile(empty.File("database-id")), (Bytes{'a', 'n', 'o', 't', 'h', 'e', 'r', '-', 'd', 'a', 't', 'a',
                                                         'b', 'a', 's', 'e', '\n'}));
  TempDir legacy;  // records, but written before identities
  {
    Journal journal(legacy.path());
    ASSERT_TRUE(journal.Open(0, kDatabase).ok());
    AppendOk(journal, "t", {'x'});
  }
  std::filesystem::remove(legacy.File("database-id"));
  {
    Journal journal(legacy.path());
    ASSERT_TRUE(journal.Open(0, "old").ok());
  }
  EXPECT_EQ(ReadFile(legacy.File("database-id")), (Bytes{'o', 'l', 'd', '\n'}));
}

// The journal says where its newest MQTT session's records begin, and
// which session that is: nothing before the first session on record, then
// a new session at the end (numbered or not yet), kept across a reopen.
TEST(JournalTest, TheNewestSessionsStartAndNumberAreKeptAcrossAReopen) {
  TempDir dir;
  uint64_t first_end = 0;
  {
    Journal journal(dir.path());
    ASSERT_TRUE(journal.Open(0, kDatabase).ok());
    EXPECT_EQ(journal.session().start, 0u) << "a journal that never recorded a session: its records are";
    EXPECT_EQ(journal.session().number, 0u) << "of sessions before they were numbered";
    ASSERT_TRUE(journal.InSession(0).ok());
    EXPECT_FALSE(std::filesystem::exists(dir.File("session"))) << "nothing new to record";
    ASSERT_TRUE(journal.InSession(4).ok());
    EXPECT_EQ(journal.session().start, 0u);
    EXPECT_EQ(journal.session().number, 4u);
    first_end = AppendOk(journal, "t", {'x'}, 1);
    ASSERT_TRUE(journal.InSession(4).ok());
    EXPECT_EQ(journal.session().start, 0u) << "the same session: its start stays";
    ASSERT_TRUE(journal.NewSession().ok());
    EXPECT_EQ(journal.session().start, first_end);
    EXPECT_EQ(journal.session().number, kUnknownSession) << "begun, not numbered yet";
  }
  EXPECT_EQ(ReadFile(dir.File("session")), (Bytes{'1', '4', ' ', '-', '\n'}));
  {
    Journal journal(dir.path());
    ASSERT_TRUE(journal.Open(0, kDatabase).ok());
    EXPECT_EQ(journal.session().start, first_end);
    EXPECT_EQ(journal.session().number, kUnknownSession);
    ASSERT_TRUE(journal.InSession(5).ok());
    EXPECT_EQ(journal.session().start, first_end) << "nothing journaled since the session began";
    EXPECT_EQ(journal.session().number, 5u);
    const uint64_t second_end = AppendOk(journal, "t", {'y'}, 1);
    ASSERT_TRUE(journal.InSession(6).ok());  // another session, found kept
    EXPECT_EQ(journal.session().start, second_end);
    EXPECT_EQ(journal.session().number, 6u);
  }
  Journal reopened(dir.path());
  ASSERT_TRUE(reopened.Open(0, kDatabase).ok());
  EXPECT_EQ(reopened.session().start, 2 * first_end);
  EXPECT_EQ(reopened.session().number, 6u);
}

// A session file that cannot be read leaves no record to remember: its
// start is past every record, and it has no number.
TEST(JournalTest, ASessionFileThatCannotBeReadRemembersNoRecord) {
  TempDir dir;
  {
    Journal journal(dir.path());
    ASSERT_TRUE(journal.Open(0, kDatabase).ok());
    AppendOk(journal, "t", {'x'}, 1);
  }
  std::ofstream(dir.File("session")) << "14 x7\n";
  Journal journal(dir.path());
  ASSERT_TRUE(journal.Open(0, kDatabase).ok());
  EXPECT_EQ(journal.session().start, UINT64_MAX);
  EXPECT_EQ(journal.session().number, kUnknownSession);
}

// One relay per journal directory: a second one is refused while the first
// holds it, with a line that names the directory, and takes it once the
// first is gone.
TEST(JournalTest, ASecondJournalOnTheSameDirectoryIsRefusedWhileTheFirstLives) {
  TempDir dir;
  auto first = std::make_unique<Journal>(dir.path());
  ASSERT_TRUE(first->Identify().ok());
  Journal second(dir.path());
  auto refused = second.Identify();
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().find("'" + dir.path() + "' is in use by another relay"), std::string::npos)
      << refused.error();
  first.reset();
  auto taken = second.Identify();
  ASSERT_TRUE(taken.ok()) << taken.error();
  EXPECT_FALSE(taken->created) << "the same journal, with its id";
}

// A journal with records whose id file is damaged (emptied by a machine
// crash, edited) is refused: under a new id every record would count as
// uncommitted and be stored a second time (until 2026-12-06 it took a new
// id). One written before ids (records, no id file) still takes one.
TEST(JournalTest, AJournalWithRecordsAndADamagedIdFileIsRefused) {
  TempDir dir;
  std::string id;
  {
    Journal journal(dir.path());
    auto identity = journal.Identify();
    ASSERT_TRUE(identity.ok()) << identity.error();
    id = identity->id;
    ASSERT_TRUE(journal.Open(0, kDatabase).ok());
    const uint8_t payload[] = {'x'};
    ASSERT_TRUE(journal.Append("t", payload).ok());
  }
  for (const std::string& damaged : std::vector<std::string>{"", "0123", id.substr(0, 31) + "Z"}) {
    std::ofstream(dir.File("journal-id"), std::ios::trunc) << damaged << "\n";
    Journal journal(dir.path());
    auto refused = journal.Identify();
    ASSERT_FALSE(refused.ok()) << "'" << damaged << "' taken for an id";
    EXPECT_NE(refused.error().find("holds records, but its journal-id file does not hold an id"), std::string::npos)
        << refused.error();
  }
  std::ofstream(dir.File("journal-id"), std::ios::trunc) << id << "\n";
  {
    Journal journal(dir.path());
    auto same = journal.Identify();
    ASSERT_TRUE(same.ok()) << same.error();
    EXPECT_EQ(same->id, id);
    EXPECT_FALSE(same->created);
  }
  std::filesystem::remove(dir.File("journal-id"));  // as written before ids
  Journal journal(dir.path());
  auto legacy = journal.Identify();
  ASSERT_TRUE(legacy.ok()) << legacy.error();
  EXPECT_TRUE(legacy->created);
  EXPECT_NE(legacy->id, id);
}

// A directory that cannot be made: one line naming it and both options.
TEST(JournalTest, ADirectoryThatCannotBeMadeNamesItAndTheOptions) {
  TempDir dir;
  std::ofstream(dir.File("file")) << "x";
  Journal journal(dir.File("file") + "/journal");
  auto refused = journal.Identify();
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().find("cannot create the directory '" + dir.File("file") + "/journal'"), std::string::npos)
      << refused.error();
  EXPECT_NE(refused.error().find("--journal-dir DIR"), std::string::npos);
  EXPECT_NE(refused.error().find("--no-journal"), std::string::npos);
}

}  // namespace
}  // namespace seqrelay
