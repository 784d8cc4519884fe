#include "relay_process.h"

#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <sstream>
#include <stdexcept>

namespace seqtest {
namespace {

// The relay under test: the one built beside the tests, unless
// SEQTEST_RELAY_BINARY names another (a sanitizer build of the relay).
std::string RelayBinary() {
  const char* other = std::getenv("SEQTEST_RELAY_BINARY");
  return other && *other ? other : SEQRELAY_BINARY;
}

// Ctrl-C on ctest or on this binary ends the servers and relays the tests
// started and removes their directories. Set before main, so before any
// thread (gtest_main starts none before it).
const bool kEndsCleanlyOnSignals = (EndCleanlyOnSignals("integration_tests"), true);

}  // namespace

bool RelaySanitized() {
#if defined(__SANITIZE_ADDRESS__)
  return true;
#else
  return std::getenv("SEQTEST_RELAY_SANITIZED") != nullptr;
#endif
}

RelayProcess::RelayProcess(TestServers& servers, std::string name, std::vector<std::string> extra_args,
                           std::string instance)
    : servers_(servers),
      name_(std::move(name)),
      extra_args_(std::move(extra_args)),
      log_path_(servers_.dir() + "/relay-" + name_ + (instance.empty() ? "" : "-" + instance) + ".log"),
      journal_dir_(servers_.dir() + "/journal-" + name_ + (instance.empty() ? "" : "-" + instance)) {}

RelayProcess::~RelayProcess() { process_.Stop(); }

void RelayProcess::Start(const std::vector<std::string>& env) {
  const std::size_t before = log().size();
  Launch(env);
  // Ready once the intake link's SUBACK arrived after this start.
  bool ready = WaitFor(
      [&] { return !process_.running() || log().find("intake: subscribed", before) != std::string::npos; },
      std::chrono::seconds(30));
  if (!ready || !process_.running()) throw std::runtime_error("relay did not start:\n" + log());
}

void RelayProcess::Launch(const std::vector<std::string>& env) {
  std::vector<std::string> argv = {RelayBinary(),
                                   "--mqtt-port=" + std::to_string(mqtt_port_ ? mqtt_port_ : servers_.mqtt_port()),
                                   "--db-port=" + std::to_string(db_port_ ? db_port_ : servers_.db_port()),
                                   "--db-user=" + db_user_,
                                   "--db-name=" + name_,
                                   "--mqtt-client-id=" + name_};
  const bool own_timeout = std::any_of(extra_args_.begin(), extra_args_.end(),
                                       [](const std::string& a) { return a.rfind("--shutdown-timeout", 0) == 0; });
  if (!own_timeout) argv.push_back("--shutdown-timeout=20");
  argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
  // The journal is on by default, under the user's home: each relay of a
  // test gets its own in the test's folder instead, unless the test chose
  // (a flag, or the variables the default is made from).
  auto given = [](const std::vector<std::string>& list, std::initializer_list<const char*> prefixes) {
    return std::any_of(list.begin(), list.end(), [&](const std::string& a) {
      return std::any_of(prefixes.begin(), prefixes.end(), [&](const char* p) { return a.rfind(p, 0) == 0; });
    });
  };
  if (!given(extra_args_, {"--journal-dir", "--no-journal"}) &&
      !given(env, {"HOME=", "XDG_STATE_HOME=", "STATE_DIRECTORY="})) {
    argv.push_back("--journal-dir=" + journal_dir_);
  }
  std::vector<std::string> environment = {"SEQRELAY_DB_PASSWORD=" + db_password_};
  if (!mqtt_user_.empty()) {
    argv.push_back("--mqtt-user=" + mqtt_user_);
    environment.push_back("SEQRELAY_MQTT_PASSWORD=" + mqtt_password_);
  }
  environment.insert(environment.end(), env.begin(), env.end());
  process_.Start(argv, log_path_, environment);
  ++starts_;
}

int RelayProcess::Stop() { return process_.Stop(std::chrono::seconds(30)); }

std::optional<int> RelayProcess::WaitExit(std::chrono::milliseconds deadline) { return process_.Wait(deadline); }

void RelayProcess::Kill() {
  process_.Signal(SIGKILL);
  process_.Wait(std::chrono::seconds(10));
}

long RelayProcess::PeakRssKb() const {
  std::istringstream status(ReadFile("/proc/" + std::to_string(process_.pid()) + "/status"));
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return 0;
}

std::string RelayProcess::log() const { return ReadFile(log_path_); }

int RunRelay(const std::vector<std::string>& args, std::string* output) {
  std::vector<std::string> argv = {RelayBinary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, output);
}

}  // namespace seqtest
