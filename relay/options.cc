#include "options.h"

#include <fmt/format.h>

#include <boost/algorithm/string.hpp>
#include <boost/program_options.hpp>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>

extern char** environ;

namespace seqrelay {
namespace po = boost::program_options;

namespace {

constexpr const char* kEnvPrefix = "SEQRELAY_";

std::string EnvName(const std::string& option) {
  std::string name = kEnvPrefix;
  for (char ch : option) name += ch == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return name;
}

po::options_description Describe(Config& c, std::string& config_file, std::string& log_level,
                                 std::string& log_format, bool& no_migrate, bool& no_journal,
                                 std::string& dedupe_window, std::vector<std::string>& retention) {
  po::options_description general("General");
  general.add_options()
      ("help", "Print this help and exit.")
      ("version", "Print the version and exit.")
      ("config", po::value(&config_file)->value_name("FILE"),
       "Read options from an INI-style FILE (lines 'name = value'; repeat a line for a repeatable option). "
       "Flags win over environment variables, which win over the file.")
      ("log-level", po::value(&log_level)->default_value("info")->value_name("LEVEL"),
       "debug, info, warn or error.")
      ("log-format", po::value(&log_format)->default_value("text")->value_name("FORMAT"),
       "text (one line per event) or json (one JSON object per line: ts, level, msg).");

  po::options_description mqtt("mosquitto");
  mqtt.add_options()
      ("mqtt-host", po::value(&c.mqtt_host)->default_value(c.mqtt_host)->value_name("HOST"), "Broker host.")
      ("mqtt-port", po::value(&c.mqtt_port)->default_value(c.mqtt_port)->value_name("PORT"), "Broker port.")
      ("mqtt-user", po::value(&c.mqtt_user)->value_name("USER"), "Username for both relay connections.")
      ("mqtt-password", po::value(&c.mqtt_password)->value_name("PASSWORD"),
       "Password (prefer SEQRELAY_MQTT_PASSWORD: flags are visible in ps).")
      ("mqtt-intake-user", po::value(&c.mqtt_intake_user)->value_name("USER"),
       "Username of the intake link only (default: --mqtt-user). With its own user, the broker's ACL can deny it "
       "read access on the relay's own topics (seq/#, relay/#), so that a --source of '#' does not feed every "
       "frame back into the intake (see docker/mosquitto/acl).")
      ("mqtt-intake-password", po::value(&c.mqtt_intake_password)->value_name("PASSWORD"),
       "Its password (prefer SEQRELAY_MQTT_INTAKE_PASSWORD; default: --mqtt-password).")
      ("mqtt-client-id", po::value(&c.mqtt_client_id)->default_value(c.mqtt_client_id)->value_name("ID"),
       "Client id of the intake session (persistent: the broker queues raw messages under it while the relay is "
       "away): ID for the default shard, ID-<shard> for the others, shared by the shard's relays (one at a time). "
       "Each relay's own links use ID-<relay-id>-out and ID-<relay-id>-replay, and their retransmit subscription "
       "is shared as $share/ID-<the database's identity, hex>/... (so no '/', '+' or '#' in ID). Keep it fixed "
       "across restarts.")
      ("mqtt-keepalive", po::value(&c.mqtt_keepalive_s)->default_value(c.mqtt_keepalive_s)->value_name("SECONDS"),
       "MQTT keepalive interval.")
      ("publish-qos", po::value(&c.publish_qos)->default_value(c.publish_qos)->value_name("0|1|2"),
       "MQTT QoS of the frames published on the sequenced topics.");

  po::options_description db("MySQL / MariaDB");
  db.add_options()
      ("db-host", po::value(&c.db_host)->default_value(c.db_host)->value_name("HOSTS"),
       "Database host, or a Galera cluster's nodes as a comma-separated list (h1:3306,h2,h3): the relay connects "
       "to one at a time and moves on when it fails. --db-port is the port of entries without one.")
      ("db-port", po::value(&c.db_port)->default_value(c.db_port)->value_name("PORT"), "Database port.")
      ("db-socket", po::value(&c.db_socket)->value_name("PATH"),
       "Unix socket of the database; when set, --db-host and --db-port are not used.")
      ("db-user", po::value(&c.db_user)->default_value(c.db_user)->value_name("USER"), "Database user.")
      ("db-password", po::value(&c.db_password)->value_name("PASSWORD"),
       "Database password (prefer SEQRELAY_DB_PASSWORD).")
      ("db-name", po::value(&c.db_name)->default_value(c.db_name)->value_name("NAME"),
       "Database (schema) holding the MSG and TOPIC tables.")
      ("no-migrate", po::bool_switch(&no_migrate),
       "Do not create or upgrade the schema at start; fail if it is not at the relay's version.");

  po::options_description ha("High availability");
  ha.add_options()
      ("shard", po::value(&c.shard)->default_value(c.shard)->value_name("NAME"),
       "The set of --source filters this relay sequences. Several shards on one database split the topic space; "
       "their filters must not be able to match one topic (checked at start against the filters every shard "
       "recorded in the database: exit 2 naming both). Relays started with the same shard and sources are one "
       "active and its standbys.")
      ("relay-id", po::value(&c.relay_id)->value_name("ID"),
       "This relay among its shard's relays, in the lease and in its own client ids (ID-<relay-id>-out, "
       "-replay): unique among all relays on one broker, every shard's (two relays with one id knock each other's "
       "links off the broker; a standby that finds its shard's active under its own id stops, exit 2). Default: "
       "<hostname>-<pid>.")
      ("lease-ms", po::value(&c.lease_ms)->default_value(c.lease_ms)->value_name("MILLIS"),
       "The shard's lease: the active renews it about three times per lease; a standby takes the shard over once "
       "the lease has gone this long without renewal (the database's clock). An active that cannot renew within "
       "it takes and publishes nothing until it renews, and steps down if another relay took the shard over. "
       "300..600000.")
      ("broker-grace", po::value(&c.broker_grace_s)->default_value(c.broker_grace_s)->value_name("SECONDS"),
       "An active relay that has had no connection to mosquitto for this long stops renewing its lease, so that "
       "a standby which reaches mosquitto takes the shard over (a relay cut off from the broker sequences "
       "nothing); it stands by once the shard has moved, and renews again if it reaches mosquitto before that. A "
       "standby takes a shard over only while it reaches mosquitto. 0: the lease does not depend on mosquitto. "
       "0..3600.");

  po::options_description seq("Sequencing");
  seq.add_options()
      ("source", po::value(&c.sources)->value_name("FILTER")->multitoken(),
       "Raw topic filter to sequence; repeatable. Default '#'. Topics under the relay's own prefixes are never "
       "sequenced; filters covered by another are dropped so no message arrives twice, and two that share topics "
       "otherwise ('a/+' and '+/b') are refused.")
      ("immediate", po::value(&c.immediate)->value_name("FILTER")->multitoken(),
       "Topics matching FILTER get ordering flag 0 (clients show them at once); repeatable. All others get 1 "
       "(ordered).")
      ("seq-prefix", po::value(&c.seq_prefix)->default_value(c.seq_prefix)->value_name("PREFIX"),
       "Frames of raw topic T go out on PREFIX/T.")
      ("control-prefix", po::value(&c.control_prefix)->default_value(c.control_prefix)->value_name("PREFIX"),
       "Prefix of the relay's own control topics (retransmit, replay, stats).")
      ("max-payload", po::value(&c.max_payload)->default_value(c.max_payload)->value_name("BYTES"),
       fmt::format("Largest payload sequenced; larger ones are refused, logged and counted. At most {} "
                   "(MEDIUMBLOB), and twice it must fit the database's max_allowed_packet (rows go as hex text; checked at "
                   "start). Set "
                   "mosquitto's message_size_limit to this plus 10 (the frame header; checked at start).",
                   kMaxPayloadLimit)
           .c_str())
      ("max-topics", po::value(&c.max_topics)->default_value(c.max_topics)->value_name("N"),
       "Most topics the database may hold (TOPIC rows). A message that would create a further topic is refused, "
       "logged and counted: a publisher with write rights on a wildcard cannot make the relay create topics "
       "without end. 0 = no bound.")
      ("topic-cache", po::value(&c.topic_cache)->default_value(c.topic_cache)->value_name("N"),
       "Most topics the writer keeps in memory (about 200 bytes each). Beyond it the least recently used are "
       "forgotten and looked up again in the database when they come back (one query).");

  po::options_description pipe("Pipeline");
  pipe.add_options()
      ("batch-max", po::value(&c.batch_max)->default_value(c.batch_max)->value_name("ROWS"),
       fmt::format("Most rows in one database transaction (group commit), 1..{}.", kMaxBatchRows).c_str())
      ("batch-delay-us", po::value(&c.batch_delay_us)->default_value(c.batch_delay_us)->value_name("MICROS"),
       "How long a batch waits for more rows after its first before it commits. 0 commits whatever has arrived "
       "as soon as the previous commit is done: under load batches grow by themselves, and an idle relay adds no "
       "delay.")
      ("buffer-max", po::value(&c.buffer_max)->default_value(c.buffer_max)->value_name("MESSAGES"),
       "Most messages held in memory between intake and commit (e.g. while the database is away). When full, "
       "the relay stops reading from mosquitto, which queues further messages in the relay's session.")
      ("buffer-max-bytes", po::value(&c.buffer_max_bytes)->default_value(c.buffer_max_bytes)->value_name("BYTES"),
       "The same bound in payload bytes; also the most bytes of published frames awaiting mosquitto's PUBACK "
       "(the writer waits beyond it, as beyond 20,000 such frames).")
      ("dedupe-window", po::value(&dedupe_window)->default_value(FormatDuration(c.dedupe_window_s))
                            ->value_name("DURATION"),
       "How long a publisher's msg-id is remembered (the MQTT v5 user property msg-id, 1 to 128 bytes of "
       "UTF-8): a message whose topic and msg-id were sequenced within it is a resend and gets no SEQ, no row "
       "and no frame (counted as dedupe.dropped). The record is committed with the message, so restarts and "
       "failovers keep it; older ones are purged in the background. 90s, 30m, 24h, 7d; 0 ignores msg-ids.")
      ("retention", po::value(&retention)->value_name("FILTER=LIMIT")->multitoken(),
       "Keep at most this much of each topic matching FILTER, repeatable: an age ('chat/#=30d'; s, m, h or d) or "
       "a count of messages ('sensors/#=100000'); give both as two entries. Every matching rule applies. Older "
       "rows are deleted from MSG in the background, at most 1,000 rows and 8 MiB of payload a transaction, by the "
       "shard's active; a topic's newest "
       "message is always kept, and SEQ never restarts. Retransmit statuses say where a topic's history now "
       "starts (\"first\"). Default: keep everything.")
      ("journal-dir", po::value(&c.journal_dir)->value_name("DIR"),
       "The local journal: every accepted message is written there before it is acknowledged to mosquitto, and "
       "what it holds beyond the database is stored at start, so a killed relay loses nothing. Default: "
       "journal/<mqtt-client-id> under $STATE_DIRECTORY, $XDG_STATE_HOME/seqrelay, ~/.local/state/seqrelay or, "
       "without a home, /var/lib/seqrelay. One relay per directory (it is locked). The page cache keeps the "
       "journal through a process kill; a machine crash can lose its last records (no fsync).")
      ("no-journal", po::bool_switch(&no_journal),
       "Run without a journal: messages received but not yet committed (held in memory while the database is "
       "slow or away) are lost if the relay is killed.")
      ("shutdown-timeout", po::value(&c.shutdown_timeout_s)->default_value(c.shutdown_timeout_s)->value_name("SECONDS"),
       "On SIGTERM/SIGINT, how long to keep trying to commit and publish what was received before giving up. "
       "The stop's last steps take up to 10 s more; a stop still running then (a database or broker that does "
       "not answer) ends the process with exit code 1, as a SIGKILL would: the journal keeps what was not "
       "committed.");

  po::options_description replay("Retransmit and history");
  replay.add_options()
      ("replay-max", po::value(&c.replay_max)->default_value(c.replay_max)->value_name("FRAMES"),
       "Most frames in one reply. A larger range is cut: the status says \"truncated\": true and the \"next\" SEQ "
       "to ask from.")
      ("replay-workers", po::value(&c.replay_workers)->default_value(c.replay_workers)->value_name("N"),
       "Replies served at once, each with its own database connection (1..16). Further requests wait, taken "
       "round-robin across clients; one client's requests are served one at a time, in order.")
      ("replay-rate", po::value(&c.replay_rate)->default_value(c.replay_rate)->value_name("FRAMES"),
       "Pace each reply at FRAMES per second, to leave the broker room for live traffic while replays run "
       "(docs/retransmit.md has figures). 0 sends as fast as the broker takes them.")
      ("replay-live-delay-us", po::value(&c.replay_live_delay_us)->default_value(c.replay_live_delay_us)
           ->value_name("MICROS"),
       "Replays yield to live traffic: the relay times live frames from intake to the broker's PUBACK, and when "
       "they take more than MICROS longer than the lowest time of the last minute or two, all replays "
       "together slow down (halving their rate, down to 500 frames/s); while live frames are on time, replays speed up again. "
       "0 turns this off: replies go as fast as the broker takes them (or --replay-rate).")
      ("acl-file", po::value(&c.acl_file)->value_name("FILE"),
       "mosquitto's acl_file: a replay of topic T is served only if the requester may read <seq-prefix>/T by "
       "this file, else the status says \"forbidden\". The relay cannot see MQTT usernames: a request on "
       "<control-prefix>/retransmit/U/C is checked as user U (%c patterns grant nothing there; the broker's "
       "ACL lets only U publish there), one on <control-prefix>/retransmit/R as user and client R: for that "
       "form run the clients' listener with use_username_as_clientid true (the shipped mosquitto.conf does). "
       "Read at start, and again on SIGHUP (send it to mosquitto too): a file that cannot be read or has a bad "
       "line then keeps the rules in force. Without it every client may replay every topic.");

  po::options_description observe("Observability");
  observe.add_options()
      ("stats-interval", po::value(&c.stats_interval_s)->default_value(c.stats_interval_s)->value_name("SECONDS"),
       "Publish a JSON report (counters, commit latency, buffer, connection states) every SECONDS on "
       "<control-prefix>/stats/<shard>/<relay-id>; the shard's active relay also retained on "
       "<control-prefix>/stats/<shard>, and the default shard's on <control-prefix>/stats. 0 turns it off.")
      ("metrics-port", po::value(&c.metrics_port)->default_value(c.metrics_port)->value_name("PORT"),
       "Serve the same figures for Prometheus at http://<metrics-bind>:PORT/metrics. 0 (the default) turns it "
       "off.")
      ("metrics-bind", po::value(&c.metrics_bind)->default_value(c.metrics_bind)->value_name("ADDRESS"),
       "Address the metrics endpoint listens on; 0.0.0.0 for every interface (e.g. in a container).");

  po::options_description all(
      "seqrelay: gives every MQTT message a per-topic sequence number, commits it to MySQL, then republishes it "
      "on <seq-prefix>/<topic>.\n\nUsage: seqrelay [options]\n\nEvery option can also be set by an environment "
      "variable SEQRELAY_<NAME> (upper case, '-' as '_'; repeatable ones comma-separated) or in --config FILE");
  all.add(general).add(mqtt).add(db).add(ha).add(seq).add(pipe).add(replay).add(observe);
  return all;
}

// The option `name` names, or nullptr.
const po::option_description* FindOption(const po::options_description& desc, const std::string& name) {
  for (const auto& option : desc.options()) {
    if (option->long_name() == name) return option.get();
  }
  return nullptr;
}

// Reads "name = value" lines. Boost's own config-file parser is not used: it
// cuts every value at '#', which is the MQTT multi-level wildcard
// ("source = a/#" would become "a/"). Here only a line whose first
// non-blank character is '#' or ';' is a comment.
Result<po::parsed_options> ParseConfigFile(const std::string& path, const po::options_description& desc) {
  std::ifstream file(path);
  // (A directory opens, and reads as empty.)
  std::error_code ec;
  if (!file || std::filesystem::is_directory(path, ec)) {
    return Status::Error(fmt::format("--config: cannot read '{}'{}", path,
                                     std::filesystem::is_directory(path, ec) ? ": a directory" : ""));
  }
  po::parsed_options parsed(&desc);
  std::string line;
  for (int number = 1; std::getline(file, line); ++number) {
    boost::trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    auto eq = line.find('=');
    if (eq == std::string::npos) {
      return Status::Error(fmt::format("--config {} line {}: expected 'name = value'", path, number));
    }
    std::string name = boost::trim_copy(line.substr(0, eq));
    const po::option_description* option = FindOption(desc, name);
    if (option == nullptr || name == "help" || name == "version" || name == "config") {
      return Status::Error(fmt::format("--config {} line {}: unknown option '{}'", path, number, name));
    }
    const std::string value = boost::trim_copy(line.substr(eq + 1));
    // As for the environment: Boost reads an empty value as a switch's "on",
    // and a blank template line (`no-journal =`) would turn the journal off.
    if (option->semantic()->max_tokens() == 0 && value.empty()) {
      return Status::Error(fmt::format("--config {} line {}: '{}' has no value: set it to 1 (or true) to turn --{} "
                                       "on, or leave the line out",
                                       path, number, name, name));
    }
    po::option opt(name, {value});
    opt.original_tokens = {line};
    parsed.options.push_back(std::move(opt));
  }
  return parsed;
}

}  // namespace

std::string DefaultJournalDir(const std::map<std::string, std::string>& env, const std::string& client_id) {
  auto get = [&](const char* name) {
    auto it = env.find(name);
    return it == env.end() ? std::string() : it->second;
  };
  std::string base;
  if (std::string state = get("STATE_DIRECTORY"); !state.empty()) {
    base = state.substr(0, state.find(':'));  // systemd's StateDirectory=; the first of several
  } else if (std::string xdg = get("XDG_STATE_HOME"); !xdg.empty()) {
    base = xdg + "/seqrelay";
  } else if (std::string home = get("HOME"); !home.empty()) {
    base = home + "/.local/state/seqrelay";
  } else {
    base = "/var/lib/seqrelay";
  }
  // One path level: the client id, which Validate allows no '/'.
  std::string level = client_id;
  if (level.empty() || level == "." || level == "..") level = "_" + level;
  return base + "/journal/" + level;
}

Result<ParsedOptions> ParseOptions(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
  ParsedOptions out;
  Config& c = out.config;
  std::string config_file, log_level, log_format, dedupe_window;
  std::vector<std::string> retention;
  bool no_migrate = false, no_journal = false;
  // Where --journal-dir and --no-journal came from: 0 a flag, 1 the
  // environment, 2 the config file, 3 nowhere. The nearer one wins, as for
  // every option (the image sets SEQRELAY_JOURNAL_DIR, and `docker run ...
  // --no-journal` must turn the journal off).
  int journal_dir_from = 3, no_journal_from = 3;
  po::options_description desc =
      Describe(c, config_file, log_level, log_format, no_migrate, no_journal, dedupe_window, retention);
  std::ostringstream help;
  help << desc;
  out.help_text = help.str();

  try {
    po::variables_map vm;
    const po::parsed_options parsed = po::command_line_parser(args).options(desc).run();
    if (auto stray = po::collect_unrecognized(parsed.options, po::include_positional); !stray.empty()) {
      return Status::Error(fmt::format("unexpected argument '{}': options begin with --", stray.front()));
    }
    po::store(parsed, vm);

    // Environment: names map onto options; repeatable ones split on commas.
    po::parsed_options from_env(&desc);
    for (const auto& [name, value] : env) {
      if (name.rfind(kEnvPrefix, 0) != 0) continue;
      const po::option_description* match = nullptr;
      for (const auto& option : desc.options()) {
        if (EnvName(option->long_name()) == name) match = option.get();
      }
      if (match == nullptr) {
        return Status::Error(fmt::format("environment variable {} names no option", name));
      }
      if (match->long_name() == "help" || match->long_name() == "version") {
        return Status::Error(fmt::format("{} cannot be set from the environment", name));
      }
      // Boost reads an empty value as a switch's "on": a blank entry (in a
      // compose file, say) would turn the journal off.
      if (match->semantic()->max_tokens() == 0 && boost::trim_copy(value).empty()) {
        return Status::Error(fmt::format("environment variable {} is empty: set it to 1 (or true) to turn --{} on, "
                                         "or leave it unset",
                                         name, match->long_name()));
      }
      po::option opt(match->long_name(), {});
      if (match->long_name() == "source" || match->long_name() == "immediate" || match->long_name() == "retention") {
        boost::split(opt.value, value, boost::is_any_of(","));
        for (auto& v : opt.value) boost::trim(v);
        std::erase(opt.value, std::string());
      } else {
        opt.value.push_back(value);
      }
      opt.original_tokens = {name + "=" + value};
      from_env.options.push_back(std::move(opt));
    }
    po::store(from_env, vm);

    // The config file named by a flag or SEQRELAY_CONFIG, read last so that
    // it only fills what flags and environment left unset.
    std::optional<po::parsed_options> from_file;
    if (vm.count("config")) {
      auto file = ParseConfigFile(vm["config"].as<std::string>(), desc);
      if (!file.ok()) return file.status();
      from_file = std::move(file).value();
      po::store(*from_file, vm);
    }
    const auto source_of = [&](const std::string& name) {
      const auto in = [&](const po::parsed_options& p) {
        return std::any_of(p.options.begin(), p.options.end(), [&](const po::option& o) { return o.string_key == name; });
      };
      return in(parsed) ? 0 : in(from_env) ? 1 : from_file && in(*from_file) ? 2 : 3;
    };
    journal_dir_from = source_of("journal-dir");
    no_journal_from = source_of("no-journal");
    po::notify(vm);
    out.help = vm.count("help") > 0;
    out.version = vm.count("version") > 0;
  } catch (const po::error& e) {
    return Status::Error(e.what());
  }

  auto level = ParseLogLevel(log_level);
  if (!level) return Status::Error(fmt::format("--log-level must be debug, info, warn or error, got '{}'", log_level));
  c.log_level = *level;
  auto format = ParseLogFormat(log_format);
  if (!format) return Status::Error(fmt::format("--log-format must be text or json, got '{}'", log_format));
  c.log_format = *format;
  c.migrate = !no_migrate;
  if (out.help || out.version) return out;
  auto window = ParseAge(dedupe_window);
  if (!window.ok()) return Status::Error(fmt::format("--dedupe-window: {}", window.error()));
  c.dedupe_window_s = window.value();
  auto rules = ParseRetention(retention);
  if (!rules.ok()) return Status::Error(fmt::format("--retention: {}", rules.error()));
  c.retention = std::move(rules).value();
  if (no_journal && !c.journal_dir.empty()) {
    if (journal_dir_from == no_journal_from) {
      return Status::Error("--journal-dir and --no-journal contradict each other: give one of them");
    }
    if (no_journal_from < journal_dir_from) {
      c.journal_dir.clear();
    } else {
      no_journal = false;
    }
  }
  if (!no_journal && c.journal_dir.empty()) c.journal_dir = DefaultJournalDir(env, c.mqtt_client_id);
  if (Status s = Validate(c); !s.ok()) return s;
  return out;
}

std::map<std::string, std::string> ProcessEnvironment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry(*e);
    auto eq = entry.find('=');
    if (eq != std::string_view::npos) env.emplace(entry.substr(0, eq), entry.substr(eq + 1));
  }
  return env;
}

}  // namespace seqrelay
