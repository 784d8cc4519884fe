// What the files that make up class Relay (relay*.cc) share: limits, the
// database backoff, small time helpers. Internal to them.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace seqrelay::relay_parts {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Bytes per transaction, at most: keeps every INSERT well under MariaDB's
// default max_allowed_packet (16 MiB); lowered to half the server's own
// limit at start. A single larger row still goes alone.
inline constexpr std::size_t kBatchMaxBytes = 4 * 1024 * 1024;

// Payload bytes a retention delete removes in one transaction, at most (but
// always one row): what a server writing a binary log, or a Galera
// cluster's write-set, carries for it, and what the writer's next commit
// may queue behind (on Galera, in the cluster's total order). 8 rows of the
// largest default payload; 1,000 rows (the other bound) of up to 8 KiB.
// (64 MiB until 2026-12-06: sixteen of the writer's own largest batches.)
inline constexpr uint64_t kRetentionMaxBytes = 8 * 1024 * 1024;

// What an INSERT adds to a row's payload and topic, with room to spare.
inline constexpr uint64_t kStatementOverhead = 1024;

// Publishes awaiting the broker's acknowledgement at once. MQTT message ids
// are 16-bit, so this must stay well under 65535.
inline constexpr std::size_t kMaxUnacked = 20000;

// Rows read per query when publishing again what a previous run committed.
inline constexpr std::size_t kRepublishChunk = 1000;
inline constexpr std::size_t kRepublishChunkBytes = 8 * 1024 * 1024;  // beyond a chunk's first row

// Exponential backoff for database reconnects: 100 ms doubling to 5 s.
// A migration that waited for a table in vain tries again after this at
// least (Relay::OpenDatabase): its ALTER held the running relays'
// statements on the table behind it while it waited.
inline constexpr std::chrono::milliseconds kMigrationRetryAfter{5000};

class Backoff {
 public:
  milliseconds Next() {
    milliseconds d = next_;
    next_ = std::min(next_ * 2, milliseconds(5000));
    return d;
  }

 private:
  milliseconds next_{100};
};

// The writer's session may idle inside a transaction this long (seconds)
// before the server ends it: about one lease.
inline int IdleTransactionLimit(int lease_ms) { return MysqlStore::IdleTransactionLimit(lease_ms); }

inline double SecondsSince(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace seqrelay::relay_parts
