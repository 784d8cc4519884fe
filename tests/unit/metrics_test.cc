// Tests of the stats report: percentile summaries, the bounded sample
// window, and the JSON published on <control-prefix>/stats.
#include "observe/metrics.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace seqrelay {
namespace {

struct SummaryCase {
  const char* rule;
  std::vector<double> values;
  double p50, p99, max;
};

TEST(MetricsTest, SummarizeUsesNearestRank) {
  std::vector<double> hundred;
  for (int i = 100; i >= 1; --i) hundred.push_back(i);  // unsorted on purpose
  const SummaryCase cases[] = {
      {"empty window: all zero", {}, 0, 0, 0},
      {"one sample is every percentile", {7.5}, 7.5, 7.5, 7.5},
      {"two samples: p50 is the lower", {2, 1}, 1, 2, 2},
      {"1..100: p50 = 50, p99 = 99", hundred, 50, 99, 100},
      {"rounded to three decimals", {0.12345}, 0.123, 0.123, 0.123},
  };
  for (const auto& c : cases) {
    std::vector<double> v = c.values;
    Summary s = Summarize(v);
    EXPECT_EQ(s.count, c.values.size()) << c.rule;
    EXPECT_DOUBLE_EQ(s.p50, c.p50) << c.rule;
    EXPECT_DOUBLE_EQ(s.p99, c.p99) << c.rule;
    EXPECT_DOUBLE_EQ(s.max, c.max) << c.rule;
  }
}

TEST(MetricsTest, TakeStartsANewWindow) {
  SampleWindow w;
  w.Add(3);
  w.Add(1);
  Summary first = w.Take();
  EXPECT_EQ(first.count, 2u);
  EXPECT_DOUBLE_EQ(first.max, 3);
  Summary second = w.Take();
  EXPECT_EQ(second.count, 0u);
  EXPECT_DOUBLE_EQ(second.max, 0);
}

TEST(MetricsTest, AFullWindowCountsEverySampleAndKeepsPercentilesClose) {
  SampleWindow w(100);
  for (int i = 1; i <= 10000; ++i) w.Add(i % 1000);  // uniform over 0..999
  Summary s = w.Take();
  EXPECT_EQ(s.count, 10000u);
  EXPECT_NEAR(s.p50, 500, 150);  // a 100-sample reservoir of a uniform stream
  EXPECT_LE(s.max, 999);
}

TEST(MetricsTest, StatsJsonCarriesEveryFigure) {
  RelayStats st;
  st.uptime_s = 12.3456;
  st.interval_s = 10;
  st.received = 7;
  st.committed = 6;
  st.published = 5;
  st.acked = 4;
  st.refused_topic = 1;
  st.topics = 3;
  st.batches = 2;
  st.commit_ms = {2, 0.5, 0.9, 0.9};
  st.buffer_messages = 1;
  st.buffer_max = 100;
  st.replay_requests = 9;
  st.database_up = true;
  st.intake.connected = true;
  auto j = nlohmann::json::parse(StatsJson(st));
  EXPECT_DOUBLE_EQ(j["uptime_s"].get<double>(), 12.346);
  EXPECT_EQ(j["interval_s"], 10);
  EXPECT_EQ(j["messages"]["received"], 7);
  EXPECT_EQ(j["messages"]["committed"], 6);
  EXPECT_EQ(j["messages"]["published"], 5);
  EXPECT_EQ(j["messages"]["acknowledged"], 4);
  EXPECT_EQ(j["messages"]["refused"]["topic_too_long"], 1);
  EXPECT_EQ(j["topics"], 3);
  EXPECT_EQ(j["batches"], 2);
  EXPECT_EQ(j["commit_ms"]["count"], 2);
  EXPECT_DOUBLE_EQ(j["commit_ms"]["p99"].get<double>(), 0.9);
  EXPECT_EQ(j["buffer"]["max"], 100);
  EXPECT_EQ(j["replay"]["requests"], 9);
  EXPECT_EQ(j["database"], "up");
  EXPECT_EQ(j["broker"]["intake"], "connected");
  EXPECT_EQ(j["broker"]["output"], "disconnected");
}

// Another relay of the shard reads who made a report back from it.
TEST(MetricsTest, AReportsHolderIsReadBackFromItsJson) {
  RelayStats st;
  st.relay_id = "a2";
  st.active = true;
  st.epoch = 7;
  const auto holder = ParseReportHolder(StatsJson(st));
  ASSERT_TRUE(holder.has_value());
  EXPECT_EQ(holder->relay_id, "a2");
  EXPECT_TRUE(holder->active);
  EXPECT_EQ(holder->epoch, 7u);
  st.active = false;
  EXPECT_FALSE(ParseReportHolder(StatsJson(st))->active);
  // Anything else on the topic is no report: not JSON, or without the fields.
  EXPECT_FALSE(ParseReportHolder("").has_value());
  EXPECT_FALSE(ParseReportHolder("{\"relay_id\": \"a2\", \"role\": \"active\"").has_value());
  EXPECT_FALSE(ParseReportHolder("[1, 2]").has_value());
  EXPECT_FALSE(ParseReportHolder(R"({"relay_id": "a2", "role": "active"})").has_value());
  EXPECT_FALSE(ParseReportHolder(R"({"relay_id": 2, "role": "active", "lease": {"epoch": 3}})").has_value());
  EXPECT_FALSE(ParseReportHolder(R"({"relay_id": "a2", "role": "active", "lease": {"epoch": -3}})").has_value());
  EXPECT_FALSE(
      ParseReportHolder(R"({"relay_id": "a2", "role": "active", "lease": {"epoch": 4294967296}})").has_value());
  EXPECT_EQ(ParseReportHolder(R"({"relay_id": "a2", "role": "active", "lease": {"epoch": 4294967295}})")->epoch,
            4294967295u);
}

TEST(MetricsTest, PrometheusTextHasHelpTypeAndLabelledSeries) {
  RelayStats st;
  st.committed = 42;
  st.batches = 4;
  st.commit_seconds_total = 0.25;
  st.refused_payload = 2;
  st.replay_failed = 5;
  st.replay_forbidden = 3;
  st.replay_refused = 2;
  st.replay_ignored = 1;
  st.dedupe_dropped = 7;
  st.retention_deleted = 1000;
  st.retention_transactions = 3;
  st.database_up = true;
  st.output.connected = true;
  st.replay.reads = 30;
  st.replay.read_calls = 4;
  const std::string text = PrometheusText(st);
  auto has = [&](const std::string& line) { return text.find(line + "\n") != std::string::npos; };
  EXPECT_TRUE(has("# TYPE seqrelay_messages_committed_total counter")) << text;
  EXPECT_TRUE(has("seqrelay_messages_committed_total 42")) << text;
  EXPECT_TRUE(has("# TYPE seqrelay_commit_seconds summary")) << text;
  EXPECT_TRUE(has("seqrelay_commit_seconds_sum 0.25")) << text;
  EXPECT_TRUE(has("seqrelay_commit_seconds_count 4")) << text;
  EXPECT_TRUE(has("seqrelay_messages_refused_total{reason=\"payload_too_large\"} 2")) << text;
  EXPECT_TRUE(has("seqrelay_replay_requests_total{outcome=\"error\"} 2")) << text;
  EXPECT_TRUE(has("seqrelay_replay_requests_total{outcome=\"forbidden\"} 3")) << text;
  EXPECT_TRUE(has("seqrelay_replay_requests_total{outcome=\"ignored\"} 1")) << text;
  EXPECT_TRUE(has("seqrelay_dedupe_dropped_total 7")) << text;
  EXPECT_TRUE(has("seqrelay_retention_deleted_total 1000")) << text;
  EXPECT_TRUE(has("seqrelay_retention_transactions_total 3")) << text;
  EXPECT_TRUE(has("seqrelay_database_up 1")) << text;
  EXPECT_TRUE(has("seqrelay_broker_connected{link=\"output\"} 1")) << text;
  EXPECT_TRUE(has("seqrelay_broker_connected{link=\"intake\"} 0")) << text;
  EXPECT_TRUE(has("seqrelay_broker_socket_reads_total{link=\"replay\"} 30")) << text;
  EXPECT_TRUE(has("seqrelay_broker_socket_read_calls_total{link=\"replay\"} 4")) << text;
  EXPECT_TRUE(has("seqrelay_broker_socket_reads_total{link=\"intake\"} 0")) << text;
  // One HELP and one TYPE per metric, even with several labelled series.
  std::size_t types = 0;
  for (auto at = text.find("# TYPE seqrelay_messages_refused_total "); at != std::string::npos;
       at = text.find("# TYPE seqrelay_messages_refused_total ", at + 1)) {
    ++types;
  }
  EXPECT_EQ(types, 1u);
}

}  // namespace
}  // namespace seqrelay

namespace seqrelay {
namespace {

TEST(MetricsTest, ALatencyHistogramCountsEachObservationInItsBucketAndPrometheusCumulates) {
  using namespace std::chrono;
  LatencyHistogram h;
  h.Observe(microseconds(30));    // <= 50 us
  h.Observe(microseconds(50));    // <= 50 us (bounds are inclusive)
  h.Observe(microseconds(700));   // <= 1 ms
  h.Observe(milliseconds(3));     // <= 5 ms
  h.Observe(seconds(9));          // +Inf
  const auto snap = h.Take();
  EXPECT_EQ(snap.count, 5u);
  EXPECT_EQ(snap.counts[0], 2u);
  EXPECT_EQ(snap.counts[4], 1u);  // 0.001
  EXPECT_EQ(snap.counts[6], 1u);  // 0.005
  EXPECT_EQ(snap.counts.back(), 1u);
  EXPECT_NEAR(snap.sum_s, 9.00378, 1e-9);

  RelayStats st;
  st.stages = {{"commit", snap}};
  const std::string text = PrometheusText(st);
  auto has = [&](const std::string& line) { return text.find(line + "\n") != std::string::npos; };
  EXPECT_TRUE(has("# TYPE seqrelay_stage_seconds histogram")) << text;
  EXPECT_TRUE(has("seqrelay_stage_seconds_bucket{stage=\"commit\",le=\"5e-05\"} 2")) << text;
  EXPECT_TRUE(has("seqrelay_stage_seconds_bucket{stage=\"commit\",le=\"0.0005\"} 2")) << text;
  EXPECT_TRUE(has("seqrelay_stage_seconds_bucket{stage=\"commit\",le=\"0.001\"} 3")) << text;
  EXPECT_TRUE(has("seqrelay_stage_seconds_bucket{stage=\"commit\",le=\"5\"} 4")) << text;
  EXPECT_TRUE(has("seqrelay_stage_seconds_bucket{stage=\"commit\",le=\"+Inf\"} 5")) << text;
  EXPECT_TRUE(has("seqrelay_stage_seconds_count{stage=\"commit\"} 5")) << text;
}

}  // namespace
}  // namespace seqrelay
