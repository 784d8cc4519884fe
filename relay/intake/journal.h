// Journal: an append-only local log of every message the relay accepted,
// written on the intake thread before the intake callback returns, so
// before libmosquitto sends the PUBACK (it writes queued packets only after
// the callback, on the same thread). A message the broker considers
// delivered is therefore always in the journal or in MSG: one the journal
// could not take (a full disk) is acknowledged only once it is committed
// (Relay::OnIntake).
//
// Positions are byte offsets in one endless log, split into segment files
// "journal-<base offset, 16 hex digits>.log" of about kSegmentBytes each.
// Each record is (little-endian):
//   u32 crc32 (of its position, as a u64, then everything after the crc)
//   u32 length (of what follows)
//   u16 topic length  u16 MQTT message id  topic bytes  [msg-id]  payload bytes
// where the topic length's top bit says whether the publisher's msg-id
// (PROTOCOL.md 5.1) follows the topic, as u8 length and bytes, and the
// next bit that the crc covers the position (records written before
// 2026-12-07 have it clear, and a crc of the bytes alone; relays from
// before then read the newer records as damaged). Past damage the next
// record is found by its crc, which a record's bytes anywhere else (a stale
// disk block, a record inside a payload) fail.
// The message id lets the relay recognise the broker's resend of a message
// that was journaled but whose PUBACK never left (see Relay::OnIntake).
// The commit that stores a message in MSG also stores the journal position
// after it, in the same transaction (on the shard's SHARD row while this
// journal's relay is active, folded into JOURNAL.POS at the next takeover),
// so at start the records after that position are exactly the ones to store
// again.
//
// The journal belongs to one database: the file "database-id" holds that
// database's identity (RELAY_STATE.INSTANCE). Its records and positions
// mean nothing to another database (a fresh or reset one would store them
// again with new SEQs), so Open refuses a journal of another database.
//
// Durability: a write(2) per record, no fsync. The page cache survives a
// process kill (SIGKILL, crash); a machine crash can lose the last records.
//
// Records carry no MQTT session, but the journal says where the newest
// session's records begin (the file "session": a position and the
// session's number, SHARD.SESSION_NO): the broker resends a message only
// in the session it was delivered in, so the relay remembers for resends
// only the records of the session it may resume.
//
// Threads: Append, NewSession and InSession are called by the intake
// thread only; Release by the writer thread; Open and Replay before either
// runs. mu_ guards segments_.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/session_no.h"
#include "core/status.h"

namespace seqrelay {

class Journal {
 public:
  static constexpr uint64_t kSegmentBytes = 64 * 1024 * 1024;

  explicit Journal(std::string dir) : dir_(std::move(dir)) {}
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  struct Identity {
    std::string id;        // 32 hex digits, kept in dir/journal-id
    bool created = false;  // made by this call (a new journal, or one written before ids)
  };
  // The journal's own id, the key of its position in the database (JOURNAL
  // table): made on first use, then kept with the journal. Creates dir and
  // locks it (dir/lock, flock) for as long as this object lives: a second
  // relay on the same directory is refused, naming it.
  Result<Identity> Identify();

  // Opens the journal in dir (created if missing) for the database whose
  // identity is `database_id`. Refuses (a permanent error naming both ids)
  // a journal that holds records of another database; a journal with no
  // identity yet (new, or written before identities) takes this one. A torn
  // record at the end (the process died mid-write) is cut off; damage before
  // the last intact record is kept, for Replay to read past. New records
  // are appended at the end, or at `min_position` if the journal ends before
  // it (a journal folder newer than the database's position).
  Status Open(uint64_t min_position, std::string_view database_id);

  struct Record {
    std::string_view topic;
    std::span<const uint8_t> payload;
    uint16_t mid = 0;  // MQTT message id of the delivery; 0 for QoS 0
    std::string_view msg_id;  // the publisher's msg-id; empty if none
    uint64_t end = 0;  // position after the record
  };

  // Calls `fn` for every record that ends after `position`, in order. A
  // damaged stretch (or a malformed record) is passed over, and named in the
  // error returned once every intact record has been read, unless it ends
  // at or before `report_after` (committed: nothing of it is lost).
  Status Replay(uint64_t position, const std::function<void(const Record&)>& fn, uint64_t report_after = 0);

  // Appends one record; returns the position after it. A record the disk
  // took only part of (full disk) is cut off again, and the journal stays
  // usable once there is room. If even the cut fails, every later Append
  // fails until the relay restarts (Open then cuts the torn tail).
  Result<uint64_t> Append(std::string_view topic, std::span<const uint8_t> payload, uint16_t mid = 0,
                          std::string_view msg_id = {});

  // Every record up to `position` is committed: segments wholly before it
  // are deleted.
  void Release(uint64_t position);

  // Where the newest MQTT session's records begin: the records that end at
  // or before `start` were taken in earlier sessions. `number` is the
  // session's SHARD.SESSION_NO; kUnknownSession for a session begun here and
  // not numbered yet (nothing of it is journaled: its first delivery waits
  // for the number). Read at Open. A journal that never recorded a session
  // holds records of sessions before schema 010 only, which are number 0.
  struct Session {
    uint64_t start = 0;
    SessionNo number = 0;
  };
  const Session& session() const { return session_; }

  // The intake began a new MQTT session (the broker kept none): the records
  // from the end on are of it. Written to dir/session before it returns.
  Status NewSession();

  // The next records are of session `number`: recorded (dir/session) unless
  // the newest session on record is that one already. Fails when the file
  // cannot be written; the record must then not be journaled, or a restart
  // would take it for one of the session before.
  Status InSession(SessionNo number);

  uint64_t end() const { return end_; }

 private:
  std::string SegmentPath(uint64_t base) const;
  // Compares the recorded database identity with `database_id` (`bytes`:
  // the size of the segments found) and records it when the journal takes it.
  Status CheckIdentity(std::string_view database_id, uint64_t bytes);
  Status StartSegment(uint64_t base);
  Status WriteSession(const Session& session);
  void ReadSession();

  const std::string dir_;
  int lock_fd_ = -1;             // holds the directory's lock; set by Identify
  int fd_ = -1;                  // the segment being appended to; intake thread after Open
  uint64_t end_ = 0;             // position after the last record; intake thread after Open
  uint64_t current_base_ = 0;    // base of the segment fd_ appends to; intake thread after Open
  std::mutex mu_;
  std::vector<uint64_t> segments_;  // bases of the segment files, ascending; guarded by mu_
  std::vector<uint8_t> buffer_;     // record assembly; intake thread
  bool torn_ = false;               // a partial record could not be cut off: no more appends; intake thread
  Session session_;                 // as in dir/session; read at Open, then intake thread
};

}  // namespace seqrelay
