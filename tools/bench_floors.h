// The floors under the relay's latency, measured alone (seqbench --floors):
// what the database and its disk cost at the least on this machine, with
// the relay's connector and nothing else running. The insert and commit
// stages of seqbench --stages sit on these; an added latency below them
// cannot be had with commit-before-publish.
#pragma once

#include <string>
#include <vector>

namespace seqbench {

struct DatabaseFloors {
  // A round trip (SELECT 1), then a durable one-row transaction, its INSERT
  // and its COMMIT (the redo log's flush) timed apart; back to back, and
  // one every 10 ms (as at 100 msg/s: the server's and the client's threads
  // fall asleep between transactions; the INSERT comes right after the
  // round trip, so it is not the first statement). Sorted, in µs.
  std::vector<double> round_trip_us, insert_us, commit_us;
  std::vector<double> idle_round_trip_us, idle_insert_us, idle_commit_us;
  // The relay's shape of a one-message batch: the fence (an UPDATE of one
  // row on a table of its own) and the INSERT in one query, then COMMIT,
  // each the first statement after 10 ms idle, as a message alone in its
  // batch at 100 msg/s is.
  std::vector<double> idle_batch_us, idle_batch_commit_us;
  std::vector<double> idle_batch_in_one_us;  // the same batch with its COMMIT in the query
  // The disk alone: a 512-byte pwrite and fdatasync of a file in the
  // server's data directory, back to back and one every 10 ms. Measured
  // only on a server seqbench started (disk_measured); empty when the
  // directory could not be written.
  bool disk_measured = false;
  std::string disk_dir;
  std::vector<double> disk_us, idle_disk_us;
  // Two batches on two connections, as a relay that overlapped them would
  // run: the first's COMMIT, and the second's fence UPDATE, sent before
  // that COMMIT and waiting on the row the first holds, both timed from
  // the moment the COMMIT is sent (one every 10 ms). The fence serialises
  // the batches only up to where the second's UPDATE returns.
  std::vector<double> held_commit_us, waiting_fence_us;
  int held_fence_unseen = 0;   // pairs whose COMMIT went after the 2 s give-up
  int held_fence_unasked = 0;  // pairs whose lock wait the server would not report
  // A writer alone, as the relay's would be without MQTT: messages arrive
  // at a fixed rate, and each batch (all that arrived meanwhile) is the
  // relay's shape, the fence and a multi-row INSERT in one query, then
  // COMMIT; latency from arrival to the COMMIT's return. One transaction
  // in flight (the relay's writer), or two: the next batch's statements sent
  // once the previous batch's have returned (they wait on the fence's row
  // until its COMMIT lets go of it), and its COMMIT without waiting for the
  // previous COMMIT to return (a shared flush, if InnoDB groups them); or
  // one, with the COMMIT in the batch's query behind a check that stops
  // the query when the fence changed no row (`SET @fence = ~0 + (1 -
  // ROW_COUNT())`: BIGINT UNSIGNED overflow, error 1690), the shape the
  // relay would need to save a round trip a batch (docs/performance.md:
  // tried, not kept); and one with what came during the batch's
  // statements inserted before its COMMIT (tried, not kept). The three
  // one-in-flight writers run in turns, a third of the time each, three
  // times, the first of a turn rotating.
  struct PacedWriter {
    int rate = 0;
    bool two_in_flight = false;
    bool commit_in_query = false;
    // Messages that arrived while the batch's statements ran inserted in
    // the same transaction, before its COMMIT (one more statement), rather
    // than waiting for the next batch.
    bool appended = false;
    std::size_t batches = 0;
    std::vector<double> latency_us;  // sorted
  };
  std::vector<PacedWriter> paced;
};

// Creates a database of its own on the server (dropped afterwards); `n`
// back-to-back transactions, n/5 of each idle kind, the paced writer for
// min(n, 2000) ms at each of 100, 1,000 and 5,000 msg/s, four ways; the
// disk only if `server_is_ours` (started by seqbench, so its data directory
// is on this machine). Throws sql::SQLException, from this thread or a
// measuring thread of its own.
DatabaseFloors MeasureDatabaseFloors(int port, const std::string& user, const std::string& password, int n,
                                     bool server_is_ours);

void PrintFloors(const DatabaseFloors& f);

}  // namespace seqbench
