#include "lease/lease.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdlib>
#include <optional>

#include "core/log.h"
#include "core/topic_filter.h"
#include "lease/twin_watch.h"

namespace seqrelay {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

int64_t Ns(Clock::time_point t) { return t.time_since_epoch().count(); }

}  // namespace

LeaseKeeper::LeaseKeeper(const Config& config, uint32_t shard_num, const std::string& journal_id)
    : config_(config), store_(config) {
  store_.UseShard(config.shard, shard_num, journal_id);
  store_.LeadTheNode();  // (SharedNode: the lease and the writer stay on one node)
  // The session's limits, applied at every connect. A commit holding the
  // shard's row (its fence) must not hold a renewal or a takeover for
  // InnoDB's default 50 s: fail after 1 s and poll again. And this session,
  // frozen between a renewal's (or a takeover's) UPDATE and its COMMIT,
  // must not hold the row for the server's wait_timeout (8 h): ended after
  // about one lease, as the writer's is.
  store_.LimitLockWait(1);
  store_.LimitIdleTransaction(MysqlStore::IdleTransactionLimit(config_.lease_ms));
  // Fault injection for the tests: the process stops itself (SIGSTOP)
  // between the Nth renewal's UPDATE and its COMMIT.
  if (const char* n = std::getenv("SEQTEST_STOP_IN_RENEWAL")) store_.InjectStopInRenewal(std::strtoull(n, nullptr, 10));
}

LeaseKeeper::~LeaseKeeper() { Stop(false); }

void LeaseKeeper::NoteReach(const Status& outcome) {
  // A server's own error (a lock wait, a grant) came from a server that
  // answers; the client's (2000 to 2999: cannot connect, the server gone
  // away, lost during the query), a server shutting down (1053) or a Galera
  // node outside the primary component (1047), and no code at all, did not.
  const int code = outcome.database_code();
  const bool client_side = code >= 2000 && code < 3000;
  reaches_database_ = outcome.ok() || (code > 0 && !client_side && code != 1053 && code != 1047);
}

bool LeaseKeeper::EnsureConnected() {
  if (store_.connected()) return true;
  Status s = store_.Connect(false);  // with the limits set at construction
  NoteReach(s);
  if (!s.ok()) {
    static RateLimit limit(std::chrono::seconds(10));
    if (auto suppressed = limit.Allow()) LogWarn("lease: database unavailable: {}{}", s.message(), SuppressedNote(*suppressed));
    return false;
  }
  return true;
}

void LeaseKeeper::MarkHeld(Clock::time_point sent) {
  const auto lease = milliseconds(config_.lease_ms);
  valid_until_ns_ = Ns(sent + lease - lease / 10);
  renewed_at_ns_ = Ns(sent);
}

bool LeaseKeeper::valid() const { return Ns(Clock::now()) < valid_until_ns_.load(); }

double LeaseKeeper::age_s() const {
  const int64_t at = renewed_at_ns_.load();
  return at == 0 ? 0.0 : static_cast<double>(Ns(Clock::now()) - at) / 1e9;
}

std::string LeaseKeeper::holder() const {
  std::lock_guard lock(mu_);
  return holder_;
}

bool LeaseKeeper::Acquire(const std::function<bool()>& stopping, const std::function<void()>& idle,
                          const std::function<bool()>& may_take, const std::string& why_not) {
  std::string said;  // the last holder logged, so that a standby logs each change once
  std::optional<Clock::time_point> refused_since;  // may_take has said no since
  TwinWatch twin(config_.relay_id);
  const std::string filters = JoinFilterLines(RemoveCoveredFilters(config_.sources));
  while (!stopping()) {
    milliseconds wait(200);
    if (may_take && !may_take()) {
      // Said once it lasts: at a start the connection it waits for is
      // usually a few milliseconds away.
      if (!refused_since) refused_since = Clock::now();
      if (said != why_not && Clock::now() - *refused_since > std::chrono::seconds(2)) {
        LogWarn("standby: not taking shard '{}' over: {}", config_.shard, why_not);
        said = why_not;
      }
    } else if (refused_since.reset(); EnsureConnected()) {
      const auto sent = Clock::now();
      auto lease = store_.TryAcquireLease(config_.relay_id, config_.lease_ms, filters);
      NoteReach(lease.status());
      if (lease.ok() && lease->held) {
        MarkHeld(sent);
        epoch_ = lease->epoch;
        previous_journal_ = lease->previous_journal;
        {
          std::lock_guard lock(mu_);
          holder_ = config_.relay_id;
        }
        return true;
      }
      if (lease.ok() && !lease->held && lease->filters != filters) {
        // A relay of the shard registered other sources since this one
        // did (the shard narrowed while this one stood by): taking the
        // shard over, it would subscribe the shard's session to the old ones
        // again, beside the shard that took their topics.
        refusal_ = fmt::format(
            "shard '{}' now has --source '{}' (a relay of the shard registered them since this one started), but "
            "this relay was given '{}': relays of one shard need the same sources; start it again with the "
            "shard's",
            config_.shard, fmt::join(SplitFilterLines(lease->filters), "' '"),
            fmt::join(SplitFilterLines(filters), "' '"));
        return false;
      }
      if (lease.ok() && twin.Observe(lease->owner, lease->epoch, lease->expires_at_us, lease->expires_in_us > 0)) {
        refusal_ = fmt::format(
            "shard '{}' is held by another live relay with this relay's id '{}' (it renewed the lease, epoch {}, "
            "while this one stood by). Relay ids must be unique among the relays of one broker (--relay-id; the "
            "default, <hostname>-<pid>, repeats in containers that share the host's name and network): the two "
            "would take each other's MQTT links over, since their client ids are made of it",
            config_.shard, config_.relay_id, lease->epoch);
        return false;
      }
      if (lease.ok()) {
        const std::string who = fmt::format("'{}' (epoch {})", lease->owner, lease->epoch);
        if (who != said) {
          LogInfo("standby: shard '{}' is held by {}; taking it over if its lease runs out (in {} ms)", config_.shard,
                  who, std::max<int64_t>(0, lease->expires_in_us / 1000));
          said = who;
        }
        {
          std::lock_guard lock(mu_);
          holder_ = lease->owner;
        }
        // Poll again just after it would expire, and at least three times per lease.
        wait = std::clamp(milliseconds(lease->expires_in_us / 1000 + 2), milliseconds(2),
                          milliseconds(config_.lease_ms / 3));
      } else {
        static RateLimit limit(std::chrono::seconds(10));
        if (auto suppressed = limit.Allow()) {
          LogWarn("standby: cannot read the lease of shard '{}': {}{}", config_.shard, lease.error(),
                  SuppressedNote(*suppressed));
        }
      }
    }
    if (idle) idle();
    // Refused (the links down) this keeper may go a while without a
    // statement: its session kept, so that the takeover does not begin with
    // a reconnect (on MySQL the session's wait_timeout is about a lease).
    (void)store_.KeepAlive();
    for (auto until = Clock::now() + wait; Clock::now() < until && !stopping();) {
      std::this_thread::sleep_for(std::min<Clock::duration>(milliseconds(100), until - Clock::now()));
    }
  }
  return false;
}

void LeaseKeeper::StartRenewing(std::function<void(const std::string& why)> lost, std::function<bool()> may_renew,
                               std::string why_not) {
  lost_ = std::move(lost);
  may_renew_ = std::move(may_renew);
  why_not_renewed_ = std::move(why_not);
  renewer_ = std::thread([this] { Renew(); });
}

void LeaseKeeper::Renew() {
  // A renewal that fails (the database away) is retried every 100 ms; the
  // lease lapses locally meanwhile (valid() false: the relay takes and
  // publishes nothing) but is not given up: once the database is back, the
  // renewal either finds the epoch still this relay's (nobody could take
  // over) and goes on, or finds it moved and reports the loss.
  const milliseconds interval(config_.lease_ms / 3);
  auto next = Clock::now() + interval;
  std::string failure;
  bool lapsed = false;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (cv_.wait_until(lock, next, [&] { return stop_; })) return;
    }
    bool renewed = false;
    const bool withheld = may_renew_ && !may_renew_();
    if (withheld) {
      // Withheld: the lease lapses, and a standby may take the shard over;
      // looked at (not extended), so that this relay steps down once one
      // did, and its journal goes to the new active.
      if (failure != why_not_renewed_) {
        LogWarn("lease: not renewing shard '{}' (epoch {}): {}", config_.shard, epoch_.load(), why_not_renewed_);
      }
      failure = why_not_renewed_;
      if (EnsureConnected()) {
        auto now = store_.LeaseEpoch();
        NoteReach(now.status());
        if (now.ok() && *now != epoch_.load()) {
          valid_until_ns_ = 0;
          lost_(fmt::format("another relay took over shard '{}' (the lease moved past epoch {}) while this one "
                            "could not reach mosquitto", config_.shard, epoch_.load()));
          return;
        }
      }
    } else if (EnsureConnected()) {
      const auto sent = Clock::now();
      auto r = store_.RenewLease(epoch_, config_.lease_ms);
      NoteReach(r.status());
      if (r.ok() && *r) {
        MarkHeld(sent);
        renewed = true;
        if (lapsed) {
          LogInfo("lease: renewed shard '{}' (epoch {}) after it lapsed; taking and publishing again", config_.shard,
                  epoch_.load());
        } else if (!failure.empty()) {
          LogInfo("lease: renewed again (epoch {})", epoch_.load());
        }
        failure.clear();
        lapsed = false;
      } else if (r.ok()) {
        valid_until_ns_ = 0;
        lost_(fmt::format("another relay took over shard '{}' (the lease moved past epoch {})", config_.shard,
                          epoch_.load()));
        return;
      } else {
        if (failure.empty()) LogWarn("lease: renewal failed: {}; retrying", r.error());
        failure = r.error();
      }
    } else {
      failure = "database unavailable";
    }
    if (!renewed && !valid() && !lapsed) {
      lapsed = true;
      LogWarn("lease: shard '{}' (epoch {}) not renewed within --lease-ms {} ({}): taking and publishing nothing "
              "until it is renewed, or stepping down if another relay took over", config_.shard, epoch_.load(),
              config_.lease_ms, failure);
    }
    next = Clock::now() + (renewed || withheld ? interval : milliseconds(100));
  }
}

void LeaseKeeper::Stop(bool release) {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (renewer_.joinable()) renewer_.join();
  if (release && valid() && EnsureConnected()) {
    Status s = store_.ReleaseLease(epoch_);
    // The connection may predate a database restart, found dead only now
    // (the error dropped it): once more on a new one.
    if (!s.ok() && valid() && EnsureConnected()) s = store_.ReleaseLease(epoch_);
    if (s.ok()) {
      LogInfo("lease: released shard '{}' (epoch {}) for a standby to take at once", config_.shard, epoch_.load());
    } else {
      LogWarn("lease: could not release: {}; a standby takes over when it expires", s.message());
    }
  }
  valid_until_ns_ = 0;
}

}  // namespace seqrelay
