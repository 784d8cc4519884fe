#include "intake/journal.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/config.h"
#include "core/durable_file.h"
#include "core/log.h"
#include "core/topic_filter.h"

namespace seqrelay {
namespace {

constexpr std::size_t kHeader = 8;  // crc32 + length
constexpr std::size_t kFields = 4;  // topic length + message id, counted in length
// Set in the topic length field when a msg-id (u8 length, bytes) follows the
// topic. Topics are at most 255 bytes, so journals written before msg-ids
// never have it set.
constexpr uint16_t kHasMsgId = 0x8000;
// Set in the topic length field when the checksum covers the record's
// position too (written since 2026-12-07): a record read anywhere else (a
// stale disk block after a machine crash, a record's bytes inside another's
// payload) fails it.
constexpr uint16_t kPositioned = 0x4000;
constexpr uint16_t kTopicLength = 0x3FFF;
// The longest body a record has: the fields, a topic of the intake's
// maximum, the longest msg-id a record takes and the largest payload any
// --max-payload allows (a journal may hold records of a run with a larger
// one than today's).
constexpr std::size_t kMaxRecordBody = kFields + kMaxTopicBytes + 1 + 255 + kMaxPayloadLimit;

void PutU32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t GetU32(const uint8_t* p) {
  return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}
uint32_t Crc(const uint8_t* p, std::size_t n) {
  return static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0), p, static_cast<uInt>(n)));
}
// The checksum of a positioned record: its position (u64, little-endian),
// then the bytes.
uint32_t CrcAt(uint64_t position, const uint8_t* p, std::size_t n) {
  uint8_t at[8];
  for (int i = 0; i < 8; ++i) at[i] = static_cast<uint8_t>(position >> (8 * i));
  return static_cast<uint32_t>(crc32(crc32(crc32(0L, Z_NULL, 0), at, 8), p, static_cast<uInt>(n)));
}
uint16_t TopicField(const uint8_t* body) { return static_cast<uint16_t>(body[0] | (body[1] << 8)); }

Status Errno(const std::string& what) { return Status::Error(fmt::format("journal: {}: {}", what, strerror(errno))); }

// Replaces the file at `path` with the line `line` (ReplaceFileDurably).
// `hint`, if any, follows the error of a failed write.
Status ReplaceLine(const std::string& path, std::string_view line, std::string_view hint = {}) {
  if (auto error = ReplaceFileDurably(path, std::string(line) + "\n")) {
    return Status::Error(fmt::format("journal: {}{}", *error, hint));
  }
  return Status::Ok();
}

std::vector<uint8_t> ReadWhole(const std::string& path) {
  std::vector<uint8_t> data;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return data;
  struct stat st {};
  if (fstat(fd, &st) == 0) {
    data.resize(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (got < data.size()) {
      ssize_t n = read(fd, data.data() + got, data.size() - got);
      if (n <= 0) break;
      got += static_cast<std::size_t>(n);
    }
    data.resize(got);
  }
  close(fd);
  return data;
}

// Whether a whole record whose checksum matches starts at byte `at` of the
// segment based at `base` (one written before records were positioned
// passes on its bytes alone).
bool IntactAt(const std::vector<uint8_t>& data, uint64_t base, std::size_t at) {
  if (data.size() - at < kHeader + kFields) return false;
  const uint32_t len = GetU32(&data[at + 4]);
  if (len < kFields || data.size() - at - kHeader < len) return false;
  const uint32_t crc = GetU32(&data[at]);
  return TopicField(&data[at + kHeader]) & kPositioned ? CrcAt(base + at, &data[at + 4], 4 + len) == crc
                                                       : Crc(&data[at + 4], 4 + len) == crc;
}

// Where the first intact positioned record at or after byte `from` starts,
// or data.size() if none does: past damage only a record that says where it
// belongs is taken. Every offset is tried, the cheap checks first (a length
// that fits and that a record can have, a topic no longer than the intake
// takes, the positioned bit), so that zeroes cost no checksum and garbage
// few: a 64 MiB segment of random bytes, by estimate, some 16 GiB of
// crc32, about ten seconds at Open and again at Replay (a page of zeroes,
// the usual damage: none).
std::size_t NextIntact(const std::vector<uint8_t>& data, uint64_t base, std::size_t from) {
  for (std::size_t at = from; at + kHeader + kFields <= data.size(); ++at) {
    const uint32_t len = GetU32(&data[at + 4]);
    if (len < kFields || data.size() - at - kHeader < len || len > kMaxRecordBody) continue;
    const uint16_t topic_field = TopicField(&data[at + kHeader]);
    const std::size_t topic_len = topic_field & kTopicLength;
    if (!(topic_field & kPositioned) || topic_len > kMaxTopicBytes || kFields + topic_len > len) continue;
    if (CrcAt(base + at, &data[at + 4], 4 + len) == GetU32(&data[at])) return at;
  }
  return data.size();
}

// A segment's bytes, record by record: `on_record(at, len)` for each
// intact one, `on_damage(at, bytes)` for each run of bytes between them
// that is none (damage, or at the end a torn record). A record past damage
// is found again by its checksum, which covers its position: the records
// after a damaged one keep theirs.
template <typename OnRecord, typename OnDamage>
void ForEachRecord(const std::vector<uint8_t>& data, uint64_t base, OnRecord&& on_record, OnDamage&& on_damage) {
  for (std::size_t at = 0; at < data.size();) {
    if (IntactAt(data, base, at)) {
      const uint32_t len = GetU32(&data[at + 4]);
      on_record(at, len);
      at += kHeader + len;
      continue;
    }
    const std::size_t next = NextIntact(data, base, at + 1);
    on_damage(at, next - at);
    at = next;
  }
}

// The base of a segment file name "journal-<16 lower-case hex digits>.log";
// nullopt for any other name (a stray "journal-....bak" is not a segment).
std::optional<uint64_t> SegmentBase(std::string_view name) {
  constexpr std::string_view kPrefix = "journal-", kSuffix = ".log";
  if (name.size() != kPrefix.size() + 16 + kSuffix.size() || !name.starts_with(kPrefix) || !name.ends_with(kSuffix)) {
    return std::nullopt;
  }
  std::string_view digits = name.substr(kPrefix.size(), 16);
  uint64_t base = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), base, 16);
  if (ec != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  if (digits.find_first_of("ABCDEF") != std::string_view::npos) return std::nullopt;  // we write lower case
  return base;
}

}  // namespace

Journal::~Journal() {
  if (fd_ >= 0) close(fd_);
  if (lock_fd_ >= 0) close(lock_fd_);
}

std::string Journal::SegmentPath(uint64_t base) const { return fmt::format("{}/journal-{:016x}.log", dir_, base); }

Status Journal::StartSegment(uint64_t base) {
  int fd = open(SegmentPath(base).c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd < 0) return Errno("create " + SegmentPath(base));
  if (fd_ >= 0) close(fd_);
  fd_ = fd;
  current_base_ = base;
  std::lock_guard lock(mu_);
  if (segments_.empty() || segments_.back() != base) segments_.push_back(base);
  return Status::Ok();
}

Result<Journal::Identity> Journal::Identify() {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) {
    return Status::Error(fmt::format("journal: cannot create the directory '{}' ({}): give a writable one with "
                                     "--journal-dir DIR, or run without a journal with --no-journal",
                                     dir_, ec.message()));
  }
  if (lock_fd_ < 0) {
    const std::string lock_path = dir_ + "/lock";
    const int fd = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (fd < 0) {
      return Status::Error(fmt::format("journal: cannot write in '{}' ({}): give a writable directory with "
                                       "--journal-dir DIR, or run without a journal with --no-journal",
                                       dir_, strerror(errno)));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      close(fd);
      if (err == EWOULDBLOCK) {
        return Status::Error(fmt::format("journal: '{}' is in use by another relay on this machine: give each "
                                         "relay its own --journal-dir", dir_));
      }
      return Status::Error(fmt::format("journal: lock {}: {}", lock_path, strerror(err)));
    }
    lock_fd_ = fd;
  }
  const std::string path = dir_ + "/journal-id";
  Identity identity;
  bool found = false;
  if (std::ifstream in(path); in) {
    found = true;
    std::getline(in, identity.id);
  }
  if (identity.id.size() == 32 && identity.id.find_first_not_of("0123456789abcdef") == std::string::npos) {
    return identity;
  }
  // A journal written before ids has records and no id file: it takes a new
  // id (and the database's one position of before, HandOverJournal). An id
  // file that is there but damaged (emptied by a machine crash, edited)
  // is not that: under a new id every record would count as uncommitted
  // and be stored a second time.
  if (found) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
      if (SegmentBase(entry.path().filename().string())) {
        return Status::Permanent(fmt::format(
            "journal: {} holds records, but its journal-id file does not hold an id ('{:.40}'); under a new id they "
            "would all be stored again. Write the journal's id back into {} (the JOURNAL table lists the ids the "
            "database knows, by shard: SELECT ID, SHARD, POS FROM JOURNAL), or move the journal "
            "away if its messages are committed",
            dir_, identity.id, path));
      }
    }
  }
  std::ifstream random("/dev/urandom", std::ios::binary);
  uint8_t bytes[16];
  if (!random.read(reinterpret_cast<char*>(bytes), sizeof bytes)) return Errno("read /dev/urandom");
  identity.id.clear();
  for (uint8_t b : bytes) identity.id += fmt::format("{:02x}", b);
  identity.created = true;
  if (Status s = ReplaceLine(path, identity.id, " (is --journal-dir writable?)"); !s.ok()) return s;
  return identity;
}

Status Journal::Open(uint64_t min_position, std::string_view database_id) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return Status::Error(fmt::format("journal: create {}: {}", dir_, ec.message()));
  std::vector<uint64_t> bases;
  uint64_t bytes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_, ec)) {
    if (auto base = SegmentBase(entry.path().filename().string())) {
      bases.push_back(*base);
      bytes += std::filesystem::file_size(entry.path(), ec);
    }
  }
  if (ec) return Status::Error(fmt::format("journal: list {}: {}", dir_, ec.message()));
  std::sort(bases.begin(), bases.end());
  if (Status s = CheckIdentity(database_id, bytes); !s.ok()) return s;
  ReadSession();
  {
    std::lock_guard lock(mu_);
    segments_ = bases;
  }
  if (bases.empty()) {
    end_ = min_position;
    return StartSegment(end_);
  }
  // Cut a torn record off the last segment. Damage before its last intact
  // record stays (Replay reports it and reads every record around it): a
  // machine crash may have written the page cache back out of order, or a
  // disk damaged a page, and the records after it were acknowledged to
  // their publishers. (Until 2026-12-07 the segment was cut at the first
  // damage, those records with it.)
  const uint64_t last = bases.back();
  const std::vector<uint8_t> data = ReadWhole(SegmentPath(last));
  std::size_t valid = 0, damaged = 0;
  ForEachRecord(
      data, last, [&](std::size_t at, uint32_t len) { valid = at + kHeader + len; },
      [&](std::size_t at, std::size_t bytes) {
        if (at + bytes < data.size() && last + at + bytes > min_position) damaged += bytes;  // not committed past
      });
  if (damaged > 0) {
    LogWarn("journal: {} has {} damaged bytes before its last record; the records around them are kept",
            SegmentPath(last), damaged);
  }
  if (valid < data.size()) {
    LogWarn("journal: cutting {} bytes of a torn record off {}", data.size() - valid, SegmentPath(last));
    if (truncate(SegmentPath(last).c_str(), static_cast<off_t>(valid)) != 0) return Errno("truncate");
  }
  end_ = last + valid;
  if (end_ < min_position) {
    LogWarn("journal: ends at {} but the database has committed up to {}; starting a new segment there", end_,
            min_position);
    end_ = min_position;
    return StartSegment(end_);
  }
  return StartSegment(last);
}

Status Journal::CheckIdentity(std::string_view database_id, uint64_t bytes) {
  const std::string path = dir_ + "/database-id";
  std::string recorded;
  if (std::ifstream in(path); in) std::getline(in, recorded);
  if (recorded == database_id) return Status::Ok();
  if (!recorded.empty() && bytes > 0) {
    return Status::Permanent(fmt::format(
        "journal {} holds {} bytes of records of database {}, but this database is {} (a fresh or reset database?); "
        "storing them here would give them new SEQs. Point --journal-dir at an empty directory, or move this "
        "journal away if its messages are committed elsewhere", dir_, bytes, recorded, database_id));
  }
  if (!recorded.empty()) {
    LogInfo("journal: {} was of database {}, holds no records; it now belongs to database {}", dir_, recorded,
            database_id);
  } else if (bytes > 0) {
    LogWarn("journal: {} has no database identity (written by an older relay); it now belongs to database {}", dir_,
            database_id);
  }
  return ReplaceLine(path, database_id);
}

Status Journal::Replay(uint64_t position, const std::function<void(const Record&)>& fn, uint64_t report_after) {
  std::vector<uint64_t> bases;
  {
    std::lock_guard lock(mu_);
    bases = segments_;
  }
  // Damage (Open cuts a torn tail off the last segment) is reported once
  // every intact record has been read: positions are absolute, so the
  // records after it stand on their own.
  std::string damage;
  for (std::size_t i = 0; i < bases.size(); ++i) {
    const uint64_t base = bases[i];
    const uint64_t next_base = i + 1 < bases.size() ? bases[i + 1] : UINT64_MAX;
    if (next_base <= position) continue;  // wholly committed
    const std::vector<uint8_t> data = ReadWhole(SegmentPath(base));
    auto on_damage = [&](std::size_t at, std::size_t bytes) {
      if (base + at + bytes <= std::max(position, report_after)) return;  // committed
      damage += fmt::format("{}{} is damaged at byte {} ({} bytes unreadable)", damage.empty() ? "" : "; ",
                            SegmentPath(base), at, bytes);
    };
    auto on_record = [&](std::size_t at, uint32_t len) {
      const uint64_t end = base + at + kHeader + len;
      if (end <= position) return;
      const uint8_t* body = &data[at + kHeader];
      const uint16_t topic_field = TopicField(body);
      const std::size_t topic_len = topic_field & kTopicLength;
      std::size_t used = kFields + topic_len;  // of len: fields, topic, msg-id
      if (used > len || ((topic_field & kHasMsgId) && used + 1 + body[used] > len)) {
        if (end > report_after) damage += fmt::format("{}a bad record at {}", damage.empty() ? "" : "; ", base + at);
        return;
      }
      Record r;
      r.mid = static_cast<uint16_t>(body[2] | (body[3] << 8));
      r.topic = std::string_view(reinterpret_cast<const char*>(body + kFields), topic_len);
      if (topic_field & kHasMsgId) {
        r.msg_id = std::string_view(reinterpret_cast<const char*>(body + used + 1), body[used]);
        used += 1 + r.msg_id.size();
      }
      r.payload = {body + used, len - used};
      r.end = end;
      fn(r);
    };
    ForEachRecord(data, base, on_record, on_damage);
  }
  if (!damage.empty()) return Status::Error("journal: " + damage);
  return Status::Ok();
}

Result<uint64_t> Journal::Append(std::string_view topic, std::span<const uint8_t> payload, uint16_t mid,
                                 std::string_view msg_id) {
  if (torn_) return Status::Error("journal: unusable since a failed write could not be cut off");
  if (end_ - current_base_ >= kSegmentBytes) {
    if (Status s = StartSegment(end_); !s.ok()) return s;
  }
  if (topic.size() > kTopicLength || msg_id.size() > 255) {
    return Status::Error(fmt::format("journal: topic of {} bytes or msg-id of {} bytes too long for a record",
                                     topic.size(), msg_id.size()));
  }
  const std::size_t id_field = msg_id.empty() ? 0 : 1 + msg_id.size();
  const std::size_t len = kFields + topic.size() + id_field + payload.size();
  buffer_.resize(kHeader + len);
  uint8_t* p = buffer_.data();
  PutU32(p + 4, static_cast<uint32_t>(len));
  const uint16_t topic_field =
      static_cast<uint16_t>(topic.size() | kPositioned | (msg_id.empty() ? 0 : kHasMsgId));
  p[8] = static_cast<uint8_t>(topic_field);
  p[9] = static_cast<uint8_t>(topic_field >> 8);
  p[10] = static_cast<uint8_t>(mid);
  p[11] = static_cast<uint8_t>(mid >> 8);
  uint8_t* at = p + 8 + kFields;
  std::memcpy(at, topic.data(), topic.size());
  at += topic.size();
  if (!msg_id.empty()) {
    *at++ = static_cast<uint8_t>(msg_id.size());
    std::memcpy(at, msg_id.data(), msg_id.size());
    at += msg_id.size();
  }
  if (!payload.empty()) std::memcpy(at, payload.data(), payload.size());
  PutU32(p, CrcAt(end_, p + 4, 4 + len));
  std::size_t done = 0;
  while (done < buffer_.size()) {
    ssize_t n = write(fd_, p + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;  // a regular file takes at least a byte or fails
      Status failed = Errno("append");
      // A full disk takes part of a record and refuses the rest. The part
      // must go: the next record would follow it, off its position, and the
      // journal would read as damaged from there on.
      if (done > 0 && ftruncate(fd_, static_cast<off_t>(end_ - current_base_)) != 0) {
        torn_ = true;
        return Status::Error(fmt::format("{}; cutting off the part written failed too: {}", failed.message(),
                                         strerror(errno)));
      }
      return failed;
    }
    done += static_cast<std::size_t>(n);
  }
  end_ += buffer_.size();
  return end_;
}

void Journal::ReadSession() {
  session_ = Session{};  // never written: the records are of sessions before they were numbered
  const std::string path = dir_ + "/session";
  std::ifstream in(path);
  if (!in) return;
  std::string start, number;
  Session read;
  in >> start >> number;
  auto parse = [](std::string_view text, uint64_t& to) {
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), to);
    return ec == std::errc() && end == text.data() + text.size();
  };
  uint64_t value = 0;
  if (parse(start, read.start) && (number == "-" || parse(number, value))) {
    read.number = number == "-" ? kUnknownSession : value;
    session_ = read;
    return;
  }
  // Which records are of which session is unknown: none is remembered for
  // resends (a resend may then be stored twice, but no new message is ever
  // taken for one).
  LogWarn("journal: {} is not '<position> <session>'; none of the journal's records is taken for the session the "
          "broker may resume", path);
  session_ = Session{.start = UINT64_MAX, .number = kUnknownSession};
}

Status Journal::WriteSession(const Session& session) {
  const std::string line =
      fmt::format("{} {}", session.start, session.number == kUnknownSession ? "-" : std::to_string(session.number));
  if (Status s = ReplaceLine(dir_ + "/session", line); !s.ok()) return s;
  session_ = session;
  return Status::Ok();
}

Status Journal::NewSession() { return WriteSession({.start = end_, .number = kUnknownSession}); }

Status Journal::InSession(SessionNo number) {
  if (session_.number == number) return Status::Ok();
  // A session on record without a number is the one this number was given
  // to, and nothing of it is journaled yet: end_ is still its start.
  return WriteSession({.start = end_, .number = number});
}

void Journal::Release(uint64_t position) {
  std::lock_guard lock(mu_);
  // A segment may go once the next one starts at or before `position`.
  while (segments_.size() > 1 && segments_[1] <= position) {
    if (unlink(SegmentPath(segments_.front()).c_str()) != 0 && errno != ENOENT) {
      LogWarn("journal: cannot delete {}: {}", SegmentPath(segments_.front()), strerror(errno));
    }
    segments_.erase(segments_.begin());
  }
}

}  // namespace seqrelay
