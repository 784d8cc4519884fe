// Which database errors a retry can fix.
//
// The writer retries a failed commit until it succeeds: a server that is
// down, restarting, out of connections, in a deadlock or missing a grant
// will take the same rows later. A few errors say the opposite: this row's
// content will never be accepted as it is (too large for the server's
// packet limit, too long for its column, refused by a constraint or a
// trigger). Retrying those would stall every message behind them forever,
// so the writer finds the row and sets it aside (relay.cc, CommitOneByOne).
//
// Pure logic: server error numbers in, a class out.
#pragma once

namespace seqrelay {

enum class DatabaseFailure {
  kRetry,       // the same statement may succeed later
  kRowRefused,  // the server will never take this row as it is
  kLeaseLost,   // the commit's fence found another epoch: this relay no longer owns its shard
  kSeqTaken,    // another writer committed a SEQ of the batch first: numbered again, it may go
};

// Not a server error: the code MysqlStore gives a commit whose fence found
// that the shard's lease has moved to another relay (rolled back).
inline constexpr int kLeaseLostCode = -1;
// Not a server error either: a commit refused for a duplicate (ID, SEQ)
// (1062 on MSG_ID_SEQ): another shard wrote the topic (one moved between
// shards, for a while), and the batch's SEQs of it are taken (rolled back).
inline constexpr int kSeqTakenCode = -2;

DatabaseFailure ClassifyDatabaseError(int server_error);

// True if the server refused the login itself (a wrong user or password,
// no grant on the database, a database that does not exist): at start, a
// setting to change rather than a server still coming up.
bool IsLoginRefusal(int server_error);

// True if a node refused a session for a limit of sessions (the server's
// max_connections, the user's max_user_connections or its resources): the
// node is up, and another session may still find room there.
bool IsSessionLimit(int server_error);

// True if the connection to the server broke in the middle of a call
// (client errors 2006 and 2013: the server went away, or stopped answering
// until the read timeout), as opposed to the server answering with an
// error: whatever the session did there, the node itself may be gone.
bool IsConnectionLost(int error);

// True if a migration's DDL statement failed because what it makes exists
// already (a column, an index, a table), or what it drops is gone: a
// migration cut short is applied again from its start, and its statements
// that took effect (each DDL commits on its own) are done.
bool IsAlreadyApplied(int server_error);

// ER_LOCK_WAIT_TIMEOUT: a row lock (innodb_lock_wait_timeout) or a table's
// metadata lock (lock_wait_timeout) waited for too long.
inline constexpr int kLockWaitTimeout = 1205;

}  // namespace seqrelay
