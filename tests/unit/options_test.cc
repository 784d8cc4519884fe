// Tests of the relay's configuration: Validate and Describe (config.h) and
// ParseOptions (options.h): defaults, flag > environment > file precedence,
// repeatable options, and errors that name the option.
#include "options.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/config.h"

namespace seqrelay {
namespace {

using Env = std::map<std::string, std::string>;
using Args = std::vector<std::string>;

// A config file in the temp folder, removed when the test ends.
class TempConfigFile {
 public:
  explicit TempConfigFile(const std::string& contents) {
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("seqrelay_options_test_" + std::to_string(getpid()) + "_" + info->name() + ".conf");
    std::ofstream(path_) << contents;
  }
  ~TempConfigFile() { std::filesystem::remove(path_); }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

Config ParseOk(const Args& args, const Env& env = {}) {
  auto parsed = ParseOptions(args, env);
  EXPECT_TRUE(parsed.ok()) << parsed.error();
  return parsed.ok() ? parsed->config : Config{};
}

std::string ParseError(const Args& args, const Env& env = {}) {
  auto parsed = ParseOptions(args, env);
  EXPECT_FALSE(parsed.ok()) << "expected an error";
  return parsed.ok() ? std::string() : parsed.error();
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// ---- Config defaults and Validate ----

TEST(ConfigTest, DefaultsAreValid) {
  Status s = Validate(Config{});
  EXPECT_TRUE(s.ok()) << s.message();
}

struct ValidateCase {
  const char* rule;
  std::function<void(Config&)> change;
  const char* error_names;  // substring of the message; nullptr = valid
};

const std::vector<ValidateCase> kValidateCases = {
    {"mqtt_port_0_is_out_of_range", [](Config& c) { c.mqtt_port = 0; }, "--mqtt-port"},
    {"mqtt_port_65535_is_the_last", [](Config& c) { c.mqtt_port = 65535; }, nullptr},
    {"mqtt_port_65536_is_out_of_range", [](Config& c) { c.mqtt_port = 65536; }, "--mqtt-port"},
    {"db_port_1_is_the_first", [](Config& c) { c.db_port = 1; }, nullptr},
    {"db_port_70000_is_out_of_range", [](Config& c) { c.db_port = 70000; }, "--db-port"},
    {"metrics_bind_is_an_address", [](Config& c) { c.metrics_bind = "notanaddress"; }, "--metrics-bind"},
    {"metrics_bind_may_be_ipv6", [](Config& c) { c.metrics_bind = "::1"; }, nullptr},
    {"publish_qos_3_is_not_mqtt", [](Config& c) { c.publish_qos = 3; }, "--publish-qos"},
    {"keepalive_below_5_is_refused", [](Config& c) { c.mqtt_keepalive_s = 4; }, "--mqtt-keepalive"},
    {"batch_max_0_is_refused", [](Config& c) { c.batch_max = 0; }, "--batch-max"},
    {"batch_max_1_is_the_least", [](Config& c) { c.batch_max = 1; }, nullptr},
    {"batch_max_10000_is_the_most", [](Config& c) { c.batch_max = kMaxBatchRows; }, nullptr},
    {"batch_max_over_10000_is_refused", [](Config& c) { c.batch_max = kMaxBatchRows + 1; }, "--batch-max"},
    {"batch_delay_negative_is_refused", [](Config& c) { c.batch_delay_us = -1; }, "--batch-delay-us"},
    {"max_payload_mediumblob_is_the_most", [](Config& c) { c.max_payload = kMaxPayloadLimit; }, nullptr},
    {"max_payload_over_mediumblob_is_refused", [](Config& c) { c.max_payload = kMaxPayloadLimit + 1; },
     "--max-payload"},
    {"max_topics_0_means_no_bound", [](Config& c) { c.max_topics = 0; }, nullptr},
    {"max_topics_negative_is_refused", [](Config& c) { c.max_topics = -1; }, "--max-topics"},
    {"topic_cache_below_100_is_refused", [](Config& c) { c.topic_cache = 99; }, "--topic-cache"},
    {"buffer_max_0_is_refused", [](Config& c) { c.buffer_max = 0; }, "--buffer-max"},
    {"buffer_max_below_batch_max_is_refused",
     [](Config& c) {
       c.batch_max = 500;
       c.buffer_max = 499;
     },
     "--buffer-max (499) must be at least --batch-max (500)"},
    {"buffer_max_bytes_below_1mib_is_refused", [](Config& c) { c.buffer_max_bytes = (1 << 20) - 1; },
     "--buffer-max-bytes"},
    {"shutdown_timeout_negative_is_refused", [](Config& c) { c.shutdown_timeout_s = -1; }, "--shutdown-timeout"},
    {"empty_seq_prefix_is_refused", [](Config& c) { c.seq_prefix = ""; }, "--seq-prefix"},
    {"wildcard_seq_prefix_is_refused", [](Config& c) { c.seq_prefix = "seq/#"; }, "--seq-prefix"},
    {"trailing_slash_control_prefix_is_refused", [](Config& c) { c.control_prefix = "relay/"; }, "--control-prefix"},
    {"dollar_seq_prefix_is_refused", [](Config& c) { c.seq_prefix = "$seq"; }, "--seq-prefix"},
    {"multi_level_prefix_is_fine", [](Config& c) { c.seq_prefix = "out/ordered"; }, nullptr},
    {"equal_prefixes_overlap", [](Config& c) { c.control_prefix = "seq"; }, "must not overlap"},
    {"control_under_seq_overlaps", [](Config& c) { c.control_prefix = "seq/ctl"; }, "--control-prefix"},
    {"seq_under_control_overlaps", [](Config& c) { c.seq_prefix = "relay/seq"; }, "--seq-prefix"},
    {"sibling_names_do_not_overlap", [](Config& c) { c.control_prefix = "seqx"; }, nullptr},
    {"empty_client_id_is_refused", [](Config& c) { c.mqtt_client_id = ""; }, "--mqtt-client-id"},
    {"empty_db_name_is_refused", [](Config& c) { c.db_name = ""; }, "--db-name"},
    {"no_sources_is_refused", [](Config& c) { c.sources.clear(); }, "--source"},
    {"source_not_utf8_is_refused", [](Config& c) { c.sources = {"caf\xe9/#"}; }, "--source: topic filter is not valid UTF-8"},
    {"seq_prefix_not_utf8_is_refused", [](Config& c) { c.seq_prefix = "s\xff"; }, "--seq-prefix must be UTF-8"},
    {"control_prefix_with_nul_is_refused", [](Config& c) { c.control_prefix = std::string("r\0x", 3); },
     "--control-prefix must be UTF-8"},
    {"client_id_with_slash_is_refused", [](Config& c) { c.mqtt_client_id = "grp/x"; }, "--mqtt-client-id 'grp/x'"},
    {"client_id_with_plus_is_refused", [](Config& c) { c.mqtt_client_id = "a+b"; }, "--mqtt-client-id 'a+b'"},
    {"client_id_with_hash_is_refused", [](Config& c) { c.mqtt_client_id = "a#"; }, "--mqtt-client-id 'a#'"},
    {"client_id_not_utf8_is_refused", [](Config& c) { c.mqtt_client_id = "r\xc3"; }, "--mqtt-client-id"},
    {"client_id_utf8_is_fine", [](Config& c) { c.mqtt_client_id = "relais-\xc3\xa9t\xc3\xa9"; }, nullptr},
    // mosquitto delivers a v5 session a message once per matching subscription.
    {"sources_sharing_topics_are_refused", [](Config& c) { c.sources = {"a/+", "+/b"}; },
     "--source 'a/+' and '+/b' share topics"},
    {"sources_sharing_topics_through_hash_are_refused", [](Config& c) { c.sources = {"x/#", "+/y"}; },
     "--source 'x/#' and '+/y' share topics"},
    {"a_source_covered_by_another_is_fine", [](Config& c) { c.sources = {"a/+", "a/#", "b/c", "+/#"}; }, nullptr},
    {"disjoint_wildcard_sources_are_fine", [](Config& c) { c.sources = {"a/+/c", "a/+/d", "b/#", "$SYS/x"}; },
     nullptr},
    {"invalid_source_filter_is_refused", [](Config& c) { c.sources = {"a/#/b"}; }, "--source"},
    {"source_under_seq_prefix_is_refused", [](Config& c) { c.sources = {"seq/#"}; }, "--source 'seq/#'"},
    {"source_one_topic_under_seq_is_refused", [](Config& c) { c.sources = {"seq/chat/+"}; }, "--source"},
    {"source_equal_to_control_prefix_is_refused", [](Config& c) { c.sources = {"relay"}; }, "--source"},
    {"source_under_custom_prefix_is_refused",
     [](Config& c) {
       c.seq_prefix = "out";
       c.sources = {"a/#", "out/x"};
     },
     "--source 'out/x'"},
    {"source_named_like_the_prefix_is_fine",
     [](Config& c) {
       c.sources = {"seqx/#", "chat/+"};
     },
     nullptr},
    {"invalid_immediate_filter_is_refused", [](Config& c) { c.immediate = {"a+"}; }, "--immediate"},
    {"valid_immediate_filter_is_fine", [](Config& c) { c.immediate = {"presence/#"}; }, nullptr},
    {"stats_interval_zero_turns_stats_off", [](Config& c) { c.stats_interval_s = 0; }, nullptr},
    {"negative_stats_interval_is_refused", [](Config& c) { c.stats_interval_s = -1; }, "--stats-interval"},
};

TEST(ConfigTest, Validate) {
  for (const auto& c : kValidateCases) {
    SCOPED_TRACE(c.rule);
    Config config;
    c.change(config);
    Status s = Validate(config);
    if (c.error_names == nullptr) {
      EXPECT_TRUE(s.ok()) << s.message();
    } else {
      ASSERT_FALSE(s.ok());
      EXPECT_TRUE(Contains(s.message(), c.error_names)) << s.message();
    }
  }
}

TEST(ConfigTest, DescribeMasksPasswords) {
  Config c;
  c.mqtt_user = "mqtt-operator";
  c.mqtt_password = "mqtt-Secret-1";
  c.db_password = "db-Secret-2";
  const std::vector<std::string> lines = Describe(c);
  ASSERT_FALSE(lines.empty());
  std::string all;
  for (const auto& line : lines) all += line + "\n";
  EXPECT_FALSE(Contains(all, "mqtt-Secret-1")) << all;
  EXPECT_FALSE(Contains(all, "db-Secret-2")) << all;
  EXPECT_FALSE(Contains(all, "Secret")) << all;
  EXPECT_TRUE(Contains(all, "password=****")) << all;
  EXPECT_TRUE(Contains(all, "user=mqtt-operator")) << all;
}

TEST(ConfigTest, DescribeShowsSettings) {
  Config c;
  c.sources = {"a/#", "b/+"};
  c.batch_max = 250;
  c.db_socket = "/run/mysqld/mysqld.sock";
  std::string all;
  for (const auto& line : Describe(c)) all += line + "\n";
  EXPECT_TRUE(Contains(all, "sources [a/#, b/+]")) << all;
  EXPECT_TRUE(Contains(all, "batch-max=250")) << all;
  EXPECT_TRUE(Contains(all, "unix:/run/mysqld/mysqld.sock")) << all;
  EXPECT_TRUE(Contains(all, "password=(none)")) << all;
  EXPECT_TRUE(Contains(all, "log-level=info")) << all;
}

// ---- ParseOptions ----

TEST(OptionsTest, NoOptionsGiveTheDefaults) {
  auto parsed = ParseOptions({}, {});
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_FALSE(parsed->help);
  EXPECT_FALSE(parsed->version);
  const Config& c = parsed->config;
  EXPECT_EQ(c.mqtt_host, "127.0.0.1");
  EXPECT_EQ(c.mqtt_port, 1883);
  EXPECT_EQ(c.mqtt_user, "");
  EXPECT_EQ(c.mqtt_password, "");
  EXPECT_EQ(c.mqtt_client_id, "seqrelay");
  EXPECT_EQ(c.mqtt_keepalive_s, 30);
  EXPECT_EQ(c.publish_qos, 1);
  EXPECT_EQ(c.db_host, "127.0.0.1");
  EXPECT_EQ(c.db_port, 3306);
  EXPECT_EQ(c.db_socket, "");
  EXPECT_EQ(c.db_user, "seqrelay");
  EXPECT_EQ(c.db_name, "seqrelay");
  EXPECT_TRUE(c.migrate);
  EXPECT_EQ(c.sources, std::vector<std::string>{"#"});
  EXPECT_TRUE(c.immediate.empty());
  EXPECT_EQ(c.seq_prefix, "seq");
  EXPECT_EQ(c.control_prefix, "relay");
  EXPECT_EQ(c.max_payload, 1024 * 1024);
  EXPECT_EQ(c.batch_max, 1000);
  EXPECT_EQ(c.batch_delay_us, 0);
  EXPECT_EQ(c.buffer_max, 100000);
  EXPECT_EQ(c.buffer_max_bytes, int64_t{256} * 1024 * 1024);
  EXPECT_EQ(c.shutdown_timeout_s, 30);
  EXPECT_EQ(c.log_level, LogLevel::kInfo);
  EXPECT_EQ(c.dedupe_window_s, 24u * 3600);
}

TEST(OptionsTest, DedupeWindowTakesADurationAndZeroTurnsItOff) {
  EXPECT_EQ(ParseOk({"--dedupe-window=90s"}).dedupe_window_s, 90u);
  EXPECT_EQ(ParseOk({"--dedupe-window=30m"}).dedupe_window_s, 1800u);
  EXPECT_EQ(ParseOk({"--dedupe-window=2h"}).dedupe_window_s, 7200u);
  EXPECT_EQ(ParseOk({"--dedupe-window=7d"}).dedupe_window_s, 7u * 86400);
  EXPECT_EQ(ParseOk({"--dedupe-window=600"}).dedupe_window_s, 600u);
  EXPECT_EQ(ParseOk({"--dedupe-window=0"}).dedupe_window_s, 0u);
  EXPECT_EQ(ParseOk({}, {{"SEQRELAY_DEDUPE_WINDOW", "1h"}}).dedupe_window_s, 3600u);
  for (const char* bad : {"--dedupe-window=", "--dedupe-window=h", "--dedupe-window=-5s", "--dedupe-window=1w",
                          "--dedupe-window=1.5h", "--dedupe-window=10ms", "--dedupe-window=99999999999999999999d",
                          "--dedupe-window=36501d"}) {
    const std::string error = ParseError({bad});
    EXPECT_TRUE(Contains(error, "--dedupe-window")) << bad << ": " << error;
  }
}

TEST(OptionsTest, RetentionTakesAnAgeOrACountPerFilterAndMergesThem) {
  EXPECT_TRUE(ParseOk({}).retention.empty()) << "default: keep everything";
  const Config c = ParseOk({"--retention=chat/#=30d", "--retention", "sensors/+/t=100000", "--retention=chat/#=5000"});
  EXPECT_EQ(c.retention, (std::vector<RetentionRule>{{"chat/#", 30 * 86400, 5000}, {"sensors/+/t", 0, 100000}}));
  EXPECT_EQ(DescribeRetention(c.retention), "chat/#=30d and 5000 messages, sensors/+/t=100000 messages");
  EXPECT_EQ(ParseOk({}, {{"SEQRELAY_RETENTION", "a/#=1h, b=10"}}).retention,
            (std::vector<RetentionRule>{{"a/#", 3600, 0}, {"b", 0, 10}}));
  // A filter may hold '=': the last one splits.
  EXPECT_EQ(ParseOk({"--retention=x=y/#=2h"}).retention, (std::vector<RetentionRule>{{"x=y/#", 7200, 0}}));
  for (const char* bad : {"--retention=chat/#", "--retention==30d", "--retention=chat/#=", "--retention=chat/#=0",
                          "--retention=chat/#=0d", "--retention=chat/#=30x", "--retention=chat/#=-1",
                          "--retention=chat/#a=1d", "--retention=a/#/b=1d"}) {
    const std::string error = ParseError({bad});
    EXPECT_TRUE(Contains(error, "--retention")) << bad << ": " << error;
  }
  const std::string twice = ParseError({"--retention=chat/#=1d", "--retention=chat/#=2d"});
  EXPECT_TRUE(Contains(twice, "has a maximum age already")) << twice;
  // Ages up to 100 years: past a few millennia the database's cutoff was
  // NULL, and every pass deleted all but each topic's newest row. Counts
  // have no such bound.
  EXPECT_EQ(ParseOk({"--retention=chat/#=36500d"}).retention,
            (std::vector<RetentionRule>{{"chat/#", 36500ull * 86400, 0}}));
  const std::string too_old = ParseError({"--retention=chat/#=1000000d"});
  EXPECT_TRUE(Contains(too_old, "is over 36500d (100 years)")) << too_old;
  EXPECT_EQ(ParseOk({"--retention=chat/#=5000000000"}).retention,
            (std::vector<RetentionRule>{{"chat/#", 0, 5000000000ull}}));
}

TEST(ConfigTest, DurationsAreWrittenTheShortestWay) {
  EXPECT_EQ(FormatDuration(86400), "1d");
  EXPECT_EQ(FormatDuration(7200), "2h");
  EXPECT_EQ(FormatDuration(90), "90s");
  EXPECT_EQ(FormatDuration(120), "2m");
  EXPECT_EQ(FormatDuration(0), "0s");
}

TEST(OptionsTest, FlagsSetTheirFields) {
  const Config c =
      ParseOk({"--mqtt-host=broker", "--mqtt-port", "1884", "--db-host=db", "--db-user=u", "--db-name=n",
               "--db-socket=/tmp/s", "--batch-max=50", "--batch-delay-us=200", "--seq-prefix=out",
               "--control-prefix=ctl", "--log-level=debug", "--no-migrate", "--publish-qos=2", "--max-payload=0"});
  EXPECT_EQ(c.mqtt_host, "broker");
  EXPECT_EQ(c.mqtt_port, 1884);
  EXPECT_EQ(c.db_host, "db");
  EXPECT_EQ(c.db_user, "u");
  EXPECT_EQ(c.db_name, "n");
  EXPECT_EQ(c.db_socket, "/tmp/s");
  EXPECT_EQ(c.batch_max, 50);
  EXPECT_EQ(c.batch_delay_us, 200);
  EXPECT_EQ(c.seq_prefix, "out");
  EXPECT_EQ(c.control_prefix, "ctl");
  EXPECT_EQ(c.log_level, LogLevel::kDebug);
  EXPECT_FALSE(c.migrate);
  EXPECT_EQ(c.publish_qos, 2);
  EXPECT_EQ(c.max_payload, 0);
}

TEST(OptionsTest, StatsIntervalAndLogFormat) {
  const Config defaults = ParseOk({});
  EXPECT_EQ(defaults.stats_interval_s, 10);
  EXPECT_EQ(defaults.log_format, LogFormat::kText);
  const Config c = ParseOk({"--stats-interval=2"}, {{"SEQRELAY_LOG_FORMAT", "json"}});
  EXPECT_EQ(c.stats_interval_s, 2);
  EXPECT_EQ(c.log_format, LogFormat::kJson);
  EXPECT_TRUE(Contains(ParseError({"--log-format=xml"}), "--log-format")) << ParseError({"--log-format=xml"});
}

// A password without its user is refused, naming both (it was dropped
// without a word until 2026-12-07: the intake then logged in as the relay).
TEST(OptionsTest, APasswordWithoutItsUserIsRefused) {
  EXPECT_TRUE(Contains(ParseError({}, {{"SEQRELAY_MQTT_INTAKE_PASSWORD", "x"}}), "without --mqtt-intake-user"));
  EXPECT_TRUE(Contains(ParseError({"--mqtt-intake-password=x", "--mqtt-user=relay"}), "--mqtt-intake-user"));
  EXPECT_TRUE(Contains(ParseError({"--mqtt-password=x"}), "without --mqtt-user"));
  const Config both = ParseOk({"--mqtt-user=relay", "--mqtt-password=x", "--mqtt-intake-user=in",
                               "--mqtt-intake-password=y"});
  EXPECT_EQ(both.mqtt_intake_user, "in");
  EXPECT_EQ(both.mqtt_intake_password, "y");
}

TEST(OptionsTest, MetricsEndpointIsOffByDefault) {
  const Config defaults = ParseOk({});
  EXPECT_EQ(defaults.metrics_port, 0);
  EXPECT_EQ(defaults.metrics_bind, "127.0.0.1");
  const Config c = ParseOk({}, {{"SEQRELAY_METRICS_PORT", "9108"}, {"SEQRELAY_METRICS_BIND", "0.0.0.0"}});
  EXPECT_EQ(c.metrics_port, 9108);
  EXPECT_EQ(c.metrics_bind, "0.0.0.0");
  EXPECT_TRUE(Contains(ParseError({"--metrics-port=70000"}), "--metrics-port"));
  const Config acl = ParseOk({"--acl-file=/etc/seqrelay/acl", "--replay-rate=5000"});
  EXPECT_EQ(acl.acl_file, "/etc/seqrelay/acl");
  EXPECT_EQ(acl.replay_rate, 5000);
  EXPECT_EQ(defaults.replay_rate, 0);
  EXPECT_TRUE(Contains(ParseError({"--replay-rate=-1"}), "--replay-rate"));
  EXPECT_EQ(defaults.replay_live_delay_us, 2000);
  EXPECT_EQ(ParseOk({"--replay-live-delay-us=0"}).replay_live_delay_us, 0);
  EXPECT_EQ(ParseOk({}, {{"SEQRELAY_REPLAY_LIVE_DELAY_US", "5000"}}).replay_live_delay_us, 5000);
  EXPECT_TRUE(Contains(ParseError({"--replay-live-delay-us=-1"}), "--replay-live-delay-us"));
}

TEST(LogTest, TextAndJsonLines) {
  EXPECT_EQ(FormatLogLine(LogFormat::kText, "2026-12-01T10:00:00.123Z", LogLevel::kWarn, "database: down"),
            "2026-12-01T10:00:00.123Z warn  database: down");
  EXPECT_EQ(FormatLogLine(LogFormat::kJson, "2026-12-01T10:00:00.123Z", LogLevel::kError, "topic 'a\"b'"),
            R"({"level":"error","msg":"topic 'a\"b'","ts":"2026-12-01T10:00:00.123Z"})");
  // Invalid UTF-8 (a raw 0xFF byte) is replaced, never an exception.
  EXPECT_EQ(FormatLogLine(LogFormat::kJson, "t", LogLevel::kInfo, "x\xffy"),
            "{\"level\":\"info\",\"msg\":\"x\xEF\xBF\xBDy\",\"ts\":\"t\"}");
}

TEST(OptionsTest, EnvironmentSetsFields) {
  const Config c = ParseOk({}, {{"SEQRELAY_DB_PORT", "3307"},
                                {"SEQRELAY_DB_PASSWORD", "pw"},
                                {"SEQRELAY_MQTT_CLIENT_ID", "relay-7"},
                                {"SEQRELAY_LOG_LEVEL", "warn"}});
  EXPECT_EQ(c.db_port, 3307);
  EXPECT_EQ(c.db_password, "pw");
  EXPECT_EQ(c.mqtt_client_id, "relay-7");
  EXPECT_EQ(c.log_level, LogLevel::kWarn);
}

TEST(OptionsTest, OtherEnvironmentVariablesAreIgnored) {
  const Config c = ParseOk({}, {{"PATH", "/usr/bin"}, {"DB_PORT", "1"}, {"seqrelay_db_port", "2"}});
  EXPECT_EQ(c.db_port, 3306);
}

TEST(OptionsTest, FlagWinsOverEnvironmentWhichWinsOverFile) {
  TempConfigFile file("db-port = 1111\nmqtt-port = 1112\nbatch-max = 11\n");
  const Env env = {{"SEQRELAY_DB_PORT", "2222"}, {"SEQRELAY_MQTT_PORT", "2223"}};

  const Config all = ParseOk({"--config", file.path(), "--db-port=3333"}, env);
  EXPECT_EQ(all.db_port, 3333) << "flag over environment and file";
  EXPECT_EQ(all.mqtt_port, 2223) << "environment over file";
  EXPECT_EQ(all.batch_max, 11) << "file over default";

  const Config no_flag = ParseOk({"--config", file.path()}, env);
  EXPECT_EQ(no_flag.db_port, 2222);

  const Config file_only = ParseOk({"--config", file.path()});
  EXPECT_EQ(file_only.db_port, 1111);
  EXPECT_EQ(file_only.mqtt_port, 1112);
}

TEST(OptionsTest, ConfigFileNamedByEnvironment) {
  TempConfigFile file("db-name = from_file\n");
  const Config c = ParseOk({}, {{"SEQRELAY_CONFIG", file.path()}});
  EXPECT_EQ(c.db_name, "from_file");
}

TEST(OptionsTest, SourceRepeatedAsFlags) {
  EXPECT_EQ(ParseOk({"--source", "a/#", "--source", "b/#"}).sources, (std::vector<std::string>{"a/#", "b/#"}));
  EXPECT_EQ(ParseOk({"--source=a/#", "--source=b/+", "--source=c"}).sources,
            (std::vector<std::string>{"a/#", "b/+", "c"}));
}

TEST(OptionsTest, SourceFlagReplacesTheDefault) {
  EXPECT_EQ(ParseOk({"--source=a/#"}).sources, std::vector<std::string>{"a/#"});
}

TEST(OptionsTest, SourceFromEnvironmentIsCommaSeparated) {
  EXPECT_EQ(ParseOk({}, {{"SEQRELAY_SOURCE", "a/#,b/#"}}).sources, (std::vector<std::string>{"a/#", "b/#"}));
  EXPECT_EQ(ParseOk({}, {{"SEQRELAY_SOURCE", " a/# , b/+ ,"}}).sources, (std::vector<std::string>{"a/#", "b/+"}))
      << "spaces trimmed, empty items dropped";
  EXPECT_EQ(ParseOk({}, {{"SEQRELAY_IMMEDIATE", "presence/#,typing/+"}}).immediate,
            (std::vector<std::string>{"presence/#", "typing/+"}));
}

TEST(OptionsTest, SourceFromRepeatedFileLines) {
  TempConfigFile file("source = a/+\nsource = b/c\nimmediate = a/fast\n");
  const Config c = ParseOk({"--config=" + file.path()});
  EXPECT_EQ(c.sources, (std::vector<std::string>{"a/+", "b/c"}));
  EXPECT_EQ(c.immediate, std::vector<std::string>{"a/fast"});
}

TEST(OptionsTest, SourceFlagsWinOverEnvironmentAndFileWithoutMerging) {
  TempConfigFile file("source = file/+\n");
  const Env env = {{"SEQRELAY_SOURCE", "env/+"}};
  EXPECT_EQ(ParseOk({"--config", file.path(), "--source=flag/+"}, env).sources, std::vector<std::string>{"flag/+"});
  EXPECT_EQ(ParseOk({"--config", file.path()}, env).sources, std::vector<std::string>{"env/+"});
  EXPECT_EQ(ParseOk({"--config", file.path()}).sources, std::vector<std::string>{"file/+"});
}

TEST(OptionsTest, HashWildcardInConfigFileIsKept) {
  TempConfigFile file("source = a/#\nsource = b/#\nimmediate = presence/#\n");
  const Config c = ParseOk({"--config=" + file.path()});
  EXPECT_EQ(c.sources, (std::vector<std::string>{"a/#", "b/#"}));
  EXPECT_EQ(c.immediate, std::vector<std::string>{"presence/#"});
}

TEST(OptionsTest, HashInConfigFilePasswordIsKept) {
  TempConfigFile file("db-password = pa#ss\n");
  EXPECT_EQ(ParseOk({"--config=" + file.path()}).db_password, "pa#ss");
}

struct ErrorCase {
  const char* rule;
  Args args;
  Env env;
  const char* error_names;  // substring the message must contain
};

const std::vector<ErrorCase> kErrorCases = {
    {"unknown_flag", {"--bogus-flag=1"}, {}, "bogus-flag"},
    {"unknown_seqrelay_variable", {}, {{"SEQRELAY_BOGUS", "1"}}, "SEQRELAY_BOGUS"},
    {"misspelt_seqrelay_variable", {}, {{"SEQRELAY_DBPORT", "3306"}}, "SEQRELAY_DBPORT"},
    {"help_from_environment", {}, {{"SEQRELAY_HELP", "1"}}, "SEQRELAY_HELP"},
    {"non_numeric_port_flag", {"--db-port=abc"}, {}, "db-port"},
    {"non_numeric_port_variable", {}, {{"SEQRELAY_DB_PORT", "abc"}}, "db-port"},
    {"out_of_range_port_flag", {"--db-port=70000"}, {}, "--db-port"},
    {"out_of_range_port_variable", {}, {{"SEQRELAY_MQTT_PORT", "0"}}, "--mqtt-port"},
    {"batch_max_0", {"--batch-max=0"}, {}, "--batch-max"},
    {"overlapping_prefixes", {"--seq-prefix=relay/seq"}, {}, "--seq-prefix"},
    {"equal_prefixes", {"--seq-prefix=x", "--control-prefix=x"}, {}, "--control-prefix"},
    {"source_under_seq_prefix", {"--source=seq/#"}, {}, "--source"},
    {"source_is_a_seq_topic", {"--source=seq/chat/room1"}, {}, "--source"},
    {"source_under_control_prefix_from_env", {}, {{"SEQRELAY_SOURCE", "a/#,relay/#"}}, "--source"},
    {"invalid_source_filter", {"--source=a/#/b"}, {}, "--source"},
    {"invalid_immediate_filter", {"--immediate=a+"}, {}, "--immediate"},
    {"bad_log_level", {"--log-level=verbose"}, {}, "--log-level"},
    {"bad_log_level_variable", {}, {{"SEQRELAY_LOG_LEVEL", "INFO"}}, "--log-level"},
    {"single_valued_flag_given_twice", {"--db-port=1", "--db-port=2"}, {}, "db-port"},
    {"missing_config_file", {"--config=/nonexistent/seqrelay.conf"}, {}, "--config"},
    {"stray_argument", {"--db-port=3306", "positional"}, {}, "unexpected argument 'positional'"},
    {"value_after_a_switch", {"--no-migrate", "yes"}, {}, "unexpected argument 'yes'"},
};

TEST(OptionsTest, ErrorsNameTheOption) {
  for (const auto& c : kErrorCases) {
    SCOPED_TRACE(c.rule);
    const std::string error = ParseError(c.args, c.env);
    EXPECT_TRUE(Contains(error, c.error_names)) << "message: " << error;
  }
}

TEST(OptionsTest, UnknownOptionInConfigFileIsAnError) {
  TempConfigFile file("db-port = 1111\nbogus-option = 1\n");
  const std::string error = ParseError({"--config", file.path()});
  EXPECT_TRUE(Contains(error, "bogus-option")) << error;
}

TEST(OptionsTest, NonNumericPortInConfigFileIsAnError) {
  TempConfigFile file("db-port = abc\n");
  const std::string error = ParseError({"--config", file.path()});
  EXPECT_TRUE(Contains(error, "db-port")) << error;
}

TEST(OptionsTest, HelpSetsHelpAndListsEveryOption) {
  auto parsed = ParseOptions({"--help"}, {});
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_TRUE(parsed->help);
  EXPECT_FALSE(parsed->version);
  const std::string& text = parsed->help_text;
  for (const char* name :
       {"help",           "version",       "config",           "log-level",       "mqtt-host",   "mqtt-port",
        "mqtt-user",      "mqtt-password", "mqtt-client-id",   "mqtt-keepalive",  "publish-qos", "db-host",
        "db-port",        "db-socket",     "db-user",          "db-password",     "db-name",     "no-migrate",
        "source",         "immediate",     "seq-prefix",       "control-prefix",  "max-payload", "batch-max",
        "batch-delay-us", "buffer-max",    "buffer-max-bytes", "shutdown-timeout", "stats-interval", "log-format", "metrics-port", "metrics-bind",
        "acl-file", "journal-dir", "no-journal", "replay-max", "replay-workers", "replay-rate",
        "replay-live-delay-us", "max-topics", "topic-cache", "mqtt-intake-user", "mqtt-intake-password",
        "dedupe-window", "retention"}) {
    // "--name " with the space, so "--buffer-max" is not found inside "--buffer-max-bytes".
    EXPECT_TRUE(Contains(text, std::string("--") + name + " ")) << "--help does not mention --" << name;
  }
  EXPECT_TRUE(Contains(text, "SEQRELAY_")) << "--help explains the environment variables";
}

TEST(OptionsTest, HelpIsGivenEvenWithInvalidSettings) {
  auto parsed = ParseOptions({"--help", "--batch-max=0"}, {});
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_TRUE(parsed->help);
}

TEST(OptionsTest, VersionSetsVersion) {
  auto parsed = ParseOptions({"--version"}, {});
  ASSERT_TRUE(parsed.ok()) << parsed.error();
  EXPECT_TRUE(parsed->version);
  EXPECT_FALSE(parsed->help);
}

TEST(OptionsTest, DescribeOfParsedConfigMasksPasswords) {
  const Config c = ParseOk({"--mqtt-user=relay", "--mqtt-password=Flag-Pass-1"}, {{"SEQRELAY_DB_PASSWORD", "Env-Pass-2"}});
  ASSERT_EQ(c.mqtt_password, "Flag-Pass-1");
  ASSERT_EQ(c.db_password, "Env-Pass-2");
  for (const auto& line : Describe(c)) {
    EXPECT_FALSE(Contains(line, "Flag-Pass-1")) << line;
    EXPECT_FALSE(Contains(line, "Env-Pass-2")) << line;
  }
}

TEST(OptionsTest, ConfigFileCommentsAndErrors) {
  TempConfigFile commented("# a comment\n  ; another\n\ndb-name = audit\n");
  EXPECT_EQ(ParseOk({"--config=" + commented.path()}).db_name, "audit");

  TempConfigFile unknown("db-name = audit\nno-such-option = 1\n");
  auto r = ParseOptions({"--config=" + unknown.path()}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("line 2: unknown option 'no-such-option'"), std::string::npos) << r.error();

  TempConfigFile no_equals("db-name audit\n");
  r = ParseOptions({"--config=" + no_equals.path()}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("line 1: expected 'name = value'"), std::string::npos) << r.error();

  r = ParseOptions({"--config=/nonexistent/seqrelay.conf"}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("cannot read '/nonexistent/seqrelay.conf'"), std::string::npos) << r.error();

  // A directory opens and reads as empty: it was taken for a file of no settings.
  r = ParseOptions({"--config=/tmp"}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("cannot read '/tmp': a directory"), std::string::npos) << r.error();
}

// Boost reads an empty value as a switch's "on": SEQRELAY_NO_JOURNAL= (a
// blank entry in a compose file) turned the journal off.
TEST(OptionsTest, AnEmptyEnvironmentValueForASwitchIsAnError) {
  EXPECT_NE(ParseError({}, {{"SEQRELAY_NO_JOURNAL", ""}}).find("SEQRELAY_NO_JOURNAL is empty"), std::string::npos);
  EXPECT_NE(ParseError({}, {{"SEQRELAY_NO_MIGRATE", " "}}).find("SEQRELAY_NO_MIGRATE is empty"), std::string::npos);
  EXPECT_EQ(ParseOk({}, {{"SEQRELAY_NO_JOURNAL", "1"}}).journal_dir, "") << "1: no journal";
  EXPECT_NE(ParseOk({}, {{"SEQRELAY_NO_JOURNAL", "false"}}).journal_dir, "") << "false: the default journal";
  EXPECT_EQ(ParseOk({}, {{"SEQRELAY_MQTT_PASSWORD", ""}}).mqtt_password, "") << "an empty value that is not a switch";
}

// The same in a --config file: `no-journal =` (a blank template line)
// turned the journal off until 2026-12-06.
TEST(OptionsTest, AnEmptyConfigFileValueForASwitchIsAnError) {
  TempConfigFile blank("db-port = 3307\nno-journal =\n");
  auto r = ParseOptions({"--config=" + blank.path()}, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("line 2: 'no-journal' has no value"), std::string::npos) << r.error();
  TempConfigFile on("no-journal = 1\n");
  EXPECT_EQ(ParseOk({"--config=" + on.path()}).journal_dir, "") << "1: no journal";
  TempConfigFile off("no-journal = false\n");
  EXPECT_NE(ParseOk({"--config=" + off.path()}, {{"HOME", "/home/ann"}}).journal_dir, "") << "false: the journal";
  TempConfigFile password("db-password =\n");
  EXPECT_EQ(ParseOk({"--config=" + password.path()}).db_password, "") << "an empty value that is not a switch";
}

// The journal is on unless --no-journal says otherwise: under the state
// directory systemd gives, else the XDG one, else the home, else /var/lib.
TEST(OptionsTest, TheJournalIsOnByDefaultUnderTheStateDirectory) {
  EXPECT_EQ(ParseOk({}, {{"HOME", "/home/ann"}}).journal_dir, "/home/ann/.local/state/seqrelay/journal/seqrelay");
  EXPECT_EQ(ParseOk({"--mqtt-client-id=.."}, {{"HOME", "/home/ann"}, {"XDG_STATE_HOME", "/st"}}).journal_dir,
            "/st/seqrelay/journal/_..");
  EXPECT_EQ(ParseOk({}, {{"HOME", "/home/ann"}, {"STATE_DIRECTORY", "/var/lib/relay:/var/lib/other"}}).journal_dir,
            "/var/lib/relay/journal/seqrelay");
  EXPECT_EQ(ParseOk({}, {}).journal_dir, "/var/lib/seqrelay/journal/seqrelay");
  EXPECT_EQ(ParseOk({"--journal-dir=/j"}, {{"HOME", "/home/ann"}}).journal_dir, "/j");
  EXPECT_EQ(ParseOk({"--no-journal"}, {{"HOME", "/home/ann"}}).journal_dir, "");
  auto both = ParseOptions({"--no-journal", "--journal-dir=/j"}, {});
  ASSERT_FALSE(both.ok());
  EXPECT_NE(both.error().find("--journal-dir and --no-journal"), std::string::npos) << both.error();
  auto both_in_env = ParseOptions({}, {{"SEQRELAY_NO_JOURNAL", "1"}, {"SEQRELAY_JOURNAL_DIR", "/j"}});
  ASSERT_FALSE(both_in_env.ok());
}

// A flag wins over the environment, which wins over the file, for the
// journal's two options too: the image sets SEQRELAY_JOURNAL_DIR, and
// `docker run ... --no-journal` turns the journal off (until 2026-12-07
// it stopped the start: "contradict each other"; a helper's review).
TEST(OptionsTest, TheNearerOfJournalDirAndNoJournalWins) {
  EXPECT_EQ(ParseOk({"--no-journal"}, {{"SEQRELAY_JOURNAL_DIR", "/image/journal"}}).journal_dir, "");
  EXPECT_EQ(ParseOk({"--journal-dir=/j"}, {{"SEQRELAY_NO_JOURNAL", "1"}}).journal_dir, "/j");
  TempConfigFile dir("journal-dir = /from/file\n");
  EXPECT_EQ(ParseOk({"--config=" + dir.path()}, {{"SEQRELAY_NO_JOURNAL", "1"}}).journal_dir, "");
  TempConfigFile off("no-journal = 1\n");
  EXPECT_EQ(ParseOk({"--config=" + off.path()}, {{"SEQRELAY_JOURNAL_DIR", "/e"}}).journal_dir, "/e");
}

// --db-host as a list of a cluster's nodes: host, host:port, [v6]:port,
// --db-port where no port is given; a bad entry is named.
TEST(OptionsTest, DbHostTakesAListOfNodes) {
  auto one = DbEndpoints("db1", 3307);
  ASSERT_TRUE(one.ok()) << one.error();
  EXPECT_EQ(*one, (std::vector<DbEndpoint>{{"db1", 3307}}));
  auto many = DbEndpoints("10.0.0.1:3306, db2 ,[::1]:4406,[fe80::1]", 3310);
  ASSERT_TRUE(many.ok()) << many.error();
  EXPECT_EQ(*many, (std::vector<DbEndpoint>{{"10.0.0.1", 3306}, {"db2", 3310}, {"::1", 4406}, {"fe80::1", 3310}}));
  for (const char* bad : {"db1:0", "db1:65536", "db1:x", "db1:", ",db2", "db1,,db2", "::1", "[::1", "[::1]x"}) {
    auto r = DbEndpoints(bad, 3306);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.error().find("--db-host"), std::string::npos) << r.error();
    }
  }
  EXPECT_NE(ParseError({"--db-host=db1:99999"}).find("the port must be 1 to 65535"), std::string::npos);
  EXPECT_EQ(ParseOk({"--db-host=h1:1,h2:2"}).db_host, "h1:1,h2:2");
}

}  // namespace
}  // namespace seqrelay
