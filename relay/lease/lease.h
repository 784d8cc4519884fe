// LeaseKeeper: this relay's hold on its shard.
//
// The lease is the shard's row in SHARD (owner, epoch, expiry by the
// database's clock), not a session lock: it survives a connection blip and
// replicates like any row. A standby polls it and takes it once it has
// expired, bumping the epoch; the active renews it about three times per
// lease on a connection of its own. Every commit also checks the epoch in
// its own transaction (MysqlStore::CommitBatch): the lease says who may
// write, the fence makes sure a relay that lost it writes nothing.
//
// Locally, the lease counts as held until lease-ms (less a tenth for clock
// rates) after the last renewal was *sent*: the database's expiry is at
// least that late, so while valid() is true no standby can have taken over.
// A relay publishes frames, and takes messages from its intake, only while
// valid() is true.
//
// Threads: Acquire and Stop on the main thread; the renewer runs on its own
// thread; valid(), epoch() and the figures from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "core/config.h"
#include "store/mysql_store.h"

namespace seqrelay {

class LeaseKeeper {
 public:
  // `shard_num` and `journal_id` as for MysqlStore::UseShard (the journal's
  // JOURNAL row records the epoch of each takeover).
  LeaseKeeper(const Config& config, uint32_t shard_num, const std::string& journal_id);
  ~LeaseKeeper();
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Waits as a standby until this relay holds the lease (true), `stopping`
  // says to give up (false, checked at least every 100 ms), or another live
  // relay holds it under this relay's id (false, twin() says so).
  // `idle` is called between polls (the main thread's other duties). While
  // `may_take` (if given) says no, the lease is not tried; `why_not` says
  // why, once, in the log.
  bool Acquire(const std::function<bool()>& stopping, const std::function<void()>& idle,
               const std::function<bool()>& may_take = nullptr, const std::string& why_not = "");

  // Renews the lease in the background until Stop(); calls `lost` once, on
  // the renewer's thread, if it is lost (taken over, or not renewed in time).
  // While `may_renew` (if given; called on the renewer's thread) says no,
  // the lease is not renewed and lapses (`why_not` says why, in the log);
  // renewals go on once it says yes again.
  void StartRenewing(std::function<void(const std::string& why)> lost, std::function<bool()> may_renew = nullptr,
                     std::string why_not = "");

  // Stops renewing; with `release`, ends the lease at once so that a standby
  // takes over without waiting for it to expire.
  void Stop(bool release);

  bool valid() const;
  uint32_t epoch() const { return epoch_.load(); }
  // Once held: the journal of the shard's previous writer (SHARD.JOURNAL_ID
  // when this relay took it; empty if none). Main thread.
  const std::string& previous_journal() const { return previous_journal_; }
  // Seconds since the lease was last taken or renewed; 0 before.
  double age_s() const;
  // The lease as the standby saw it last: holder and epoch.
  std::string holder() const;
  // Whether the lease's last call reached the database (answered, if only
  // with an error of its own): polled or renewed every third of a lease,
  // standby or active, busy or idle. Any thread.
  bool reaches_database() const { return reaches_database_.load(); }
  // Non-empty once Acquire found that this relay must not stand by: another
  // live relay renewed the lease under its id (TwinWatch), or the shard's
  // sources are no longer this relay's (a relay registered others since).
  // What to say. Main thread.
  const std::string& refusal() const { return refusal_; }

 private:
  void Renew();
  // Connects the lease's own session if needed; false on failure (logged, rate-limited).
  bool EnsureConnected();
  void MarkHeld(std::chrono::steady_clock::time_point sent);
  // Records whether a call's outcome came from the server (reaches_database).
  void NoteReach(const Status& outcome);

  const Config& config_;
  MysqlStore store_;  // the lease's own connection: a renewal waits for a commit in flight only (the fence's row lock)
  std::atomic<uint32_t> epoch_{0};
  std::atomic<int64_t> valid_until_ns_{0};  // steady clock; 0 = not held
  std::atomic<int64_t> renewed_at_ns_{0};
  std::atomic<bool> reaches_database_{true};  // (the start connected)
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;        // guarded by mu_
  std::string holder_;       // guarded by mu_
  std::string previous_journal_;  // set by Acquire
  std::string refusal_;           // set by Acquire
  std::function<void(const std::string&)> lost_;
  std::function<bool()> may_renew_;  // set before the renewer starts
  std::string why_not_renewed_;
  std::thread renewer_;
};

}  // namespace seqrelay
