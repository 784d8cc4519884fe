// Relay, housekeeping of the store: what the shard's active deletes in the
// background, on the main thread's own connection: publishers' msg-ids
// past --dedupe-window, and the rows --retention no longer keeps. Small
// transactions, a bounded share of each second: never a long lock a commit
// could wait on. And the shard's subscriptions as its MQTT session holds
// them (SHARD_SESSION), for topics that move between shards.
#include "relay.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <optional>
#include <string>

#include "core/log.h"
#include "core/topic_filter.h"
#include "relay_parts.h"

namespace seqrelay {

using namespace relay_parts;

namespace {

// The intake's filters: `mine` and the given-up ones, less those another
// covers (a v5 session gets a message once per matching subscription).
// Those of `mine` left out go into `unsubscribe`, after the given-up ones
// released: an earlier relay's release cut short may have left them with
// the session.
std::vector<std::string> SessionFilters(const std::vector<std::string>& mine, const std::vector<std::string>& given_up,
                                        std::vector<std::string>& unsubscribe) {
  std::vector<std::string> all = mine;
  all.insert(all.end(), given_up.begin(), given_up.end());
  std::vector<std::string> subscribe = RemoveCoveredFilters(all);
  for (const auto& f : mine) {
    if (std::find(subscribe.begin(), subscribe.end(), f) == subscribe.end()) unsubscribe.push_back(f);
  }
  return subscribe;
}

}  // namespace

void Relay::PlanIntakeFilters() {
  // What the shard gave up, as the database says now (a registration long
  // ago may have read an older list). Read again until it is: without it,
  // the intake would leave the session subscribed to them, and take their
  // topics beside their new shard, and its own twice.
  given_up_.clear();
  releasing_.clear();
  RateLimit limit(std::chrono::seconds(10));
  for (;;) {
    Status s = pending_store_.connected() ? Status::Ok() : pending_store_.Connect(false);
    if (s.ok()) {
      auto given_up = pending_store_.GivenUp();
      if (given_up.ok()) {
        given_up_ = std::move(given_up).value();
        break;
      }
      s = given_up.status();
    }
    if (GivingUp()) return;
    if (auto suppressed = limit.Allow()) {
      LogWarn("could not read the filters shard '{}' gave up ({}); retrying{}", config_.shard, s.message(),
              SuppressedNote(*suppressed));
    }
    SleepUnlessGivingUp(milliseconds(500));
  }
  const std::vector<std::string>& mine = own_filters_;
  std::erase_if(given_up_, [&](const std::string& f) {
    const bool covered = std::any_of(mine.begin(), mine.end(), [&](const auto& m) { return FilterCovers(m, f); });
    if (covered) releasing_.push_back(f);  // its topics still come through one of ours
    return covered;
  });
  std::vector<std::string> unsubscribe = releasing_;
  intake_options_.subscriptions = SessionFilters(mine, given_up_, unsubscribe);
  intake_options_.unsubscriptions = unsubscribe;
  if (!given_up_.empty()) {
    LogInfo("shard '{}' gave up '{}': its session keeps them, and this relay stores their topics, until every shard "
            "whose --source overlaps them has subscribed",
            config_.shard, fmt::join(given_up_, "' '"));
  }
}

void Relay::TrackSubscriptions() {
  const auto warn = [](const Status& s) {
    static RateLimit limit(std::chrono::minutes(1));
    if (auto suppressed = limit.Allow()) LogWarn("{}{}", s.message(), SuppressedNote(*suppressed));
  };
  if (!intake_subscribed_ || !intake_) return;
  if (!pending_store_.connected() && !pending_store_.Connect(false).ok()) return;  // tried again in a second
  const std::vector<std::string>& mine = own_filters_;
  if (!subscribed_recorded_ && intake_->subscriptions_granted()) {
    // What another shard's relay waits for before it lets go of filters it
    // gave up to this one. (A filter the broker's ACL refused: never.)
    if (Status s = pending_store_.RecordSubscribed(mine); !s.ok()) return warn(s);
    subscribed_recorded_ = true;
  }
  if (!releasing_.empty()) {
    if (!intake_->unsubscribed()) return;
    if (Status s = pending_store_.ForgetUnsubscribed(releasing_); !s.ok()) return warn(s);
    LogInfo("shard '{}': its session no longer holds '{}'", config_.shard, fmt::join(releasing_, "' '"));
    releasing_.clear();
  }
  if (given_up_.empty()) return;
  auto others = pending_store_.OtherShards();
  if (!others.ok()) return warn(others.status());
  std::vector<std::string> release, takers;
  for (const auto& f : given_up_) {
    std::vector<std::string> these;
    bool subscribed = true;
    for (const auto& shard : *others) {
      if (std::none_of(shard.filters.begin(), shard.filters.end(),
                       [&](const std::string& theirs) { return FiltersOverlap(f, theirs); })) {
        continue;
      }
      these.push_back(shard.name);
      subscribed = subscribed && shard.subscribed == shard.filters;
    }
    if (these.empty() || !subscribed) continue;
    release.push_back(f);
    takers.insert(takers.end(), these.begin(), these.end());
  }
  if (release.empty()) return;
  std::erase_if(given_up_, [&](const std::string& f) { return std::count(release.begin(), release.end(), f) > 0; });
  std::sort(takers.begin(), takers.end());
  takers.erase(std::unique(takers.begin(), takers.end()), takers.end());
  LogInfo("shard '{}': shard(s) '{}' subscribed to the topics of '{}'; unsubscribing its session from them",
          config_.shard, fmt::join(takers, "' '"), fmt::join(release, "' '"));
  releasing_ = release;
  std::vector<std::string> unsubscribe = release;
  std::vector<std::string> subscribe = SessionFilters(mine, given_up_, unsubscribe);
  intake_->Resubscribe(std::move(subscribe), std::move(unsubscribe));
}

void Relay::PurgeMsgIds() {
  // Every 10 s (or half the window, if shorter), batches of 1,000 rows,
  // each its own short transaction, for at most 200 ms: never a long lock
  // the writer's inserts could wait on. With the window at zero too: the
  // records of an earlier window, or of another shard's, still expire.
  if (stopping_ || Clock::now() < next_purge_) return;
  const uint64_t every_s = config_.dedupe_window_s == 0 ? 10 : std::clamp<uint64_t>(config_.dedupe_window_s / 2, 1, 10);
  next_purge_ = Clock::now() + std::chrono::seconds(every_s);
  if (!pending_store_.connected() && !pending_store_.Connect(false).ok()) return;
  constexpr std::size_t kPurgeBatch = 1000;
  const auto until = Clock::now() + milliseconds(200);
  for (;;) {
    auto deleted = pending_store_.PurgeMsgIds(config_.dedupe_window_s, kPurgeBatch);
    if (!deleted.ok()) {
      static RateLimit limit(std::chrono::minutes(1));
      if (auto suppressed = limit.Allow()) LogWarn("dedupe: {}{}", deleted.error(), SuppressedNote(*suppressed));
      return;
    }
    counters_.msg_ids_purged += deleted.value();
    if (deleted.value() < kPurgeBatch) return;
    if (Clock::now() >= until) {
      next_purge_ = Clock::now() + std::chrono::seconds(1);  // more to do: again soon
      return;
    }
  }
}

void Relay::ApplyRetention() {
  if (config_.retention.empty() || stopping_ || Clock::now() < next_retention_pass_) return;
  if (!pending_store_.connected() && !pending_store_.Connect(false).ok()) return;
  const auto started = Clock::now();
  const bool pass_over = RetentionWork(started + milliseconds(200));
  retention_pass_work_ += Clock::now() - started;
  if (!pass_over) return;
  // The next pass after ten times the time this one took (retention takes
  // at most a tenth of the database's attention), 1 s to 60 s, and within
  // half the shortest age.
  auto pause = std::clamp<Clock::duration>(10 * retention_pass_work_, std::chrono::seconds(1),
                                           std::chrono::seconds(60));
  for (const RetentionRule& r : config_.retention) {
    if (r.max_age_s != 0) {
      pause = std::min<Clock::duration>(pause, std::chrono::seconds(std::max<uint64_t>(r.max_age_s / 2, 1)));
    }
  }
  retention_pass_work_ = {};
  retention_cursor_.clear();
  next_retention_pass_ = Clock::now() + pause;
}

bool Relay::RetentionWork(Clock::time_point until) {
  // Only rows every subscriber could have had live are deleted: this
  // shard's up to its watermark, and another shard's (a topic that moved
  // here) up to that shard's.
  const uint64_t published = AckedWatermark();
  constexpr std::size_t kTopicsPerQuery = 1000, kRowsPerDelete = 1000;
  auto failed = [](const std::string& what) {
    static RateLimit limit(std::chrono::minutes(1));
    if (auto suppressed = limit.Allow()) LogWarn("retention: {}{}", what, SuppressedNote(*suppressed));
    return false;
  };
  auto published_elsewhere = pending_store_.PublishedElsewhere();
  if (!published_elsewhere.ok()) return failed(published_elsewhere.error());
  while (Clock::now() < until) {
    auto topics = pending_store_.ListTopics(retention_cursor_, kTopicsPerQuery);
    if (!topics.ok()) return failed(topics.error());
    for (const std::string& topic : *topics) {
      // The shard's own topics, under the strictest of their rules.
      std::optional<RetentionRule> rule;
      if (std::any_of(config_.sources.begin(), config_.sources.end(),
                      [&](const std::string& f) { return TopicMatches(f, topic); })) {
        for (const RetentionRule& r : config_.retention) {
          if (!TopicMatches(r.filter, topic)) continue;
          if (!rule) rule = RetentionRule{r.filter, 0, 0};
          auto stricter = [](uint64_t a, uint64_t b) { return a == 0 ? b : b == 0 ? a : std::min(a, b); };
          rule->max_age_s = stricter(rule->max_age_s, r.max_age_s);
          rule->max_count = stricter(rule->max_count, r.max_count);
        }
      }
      // A delete its bounds cut short: more of this topic may go. Out of
      // time, the cursor stays before it, for the next call.
      while (rule) {
        auto trimmed =
            pending_store_.TrimTopic(topic, *rule, published, *published_elsewhere, kRowsPerDelete, retention_max_bytes_);
        if (!trimmed.ok()) return failed(trimmed.error());
        if (trimmed->deleted > 0) {
          counters_.retention_deleted += trimmed->deleted;
          ++counters_.retention_transactions;
        }
        if (!trimmed->more) break;
        if (Clock::now() >= until) return false;
      }
      retention_cursor_ = topic;
      if (Clock::now() >= until) return false;
    }
    if (topics->size() < kTopicsPerQuery) return true;
  }
  return false;
}

}  // namespace seqrelay
