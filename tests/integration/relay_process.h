// RelayProcess: the real seqrelay binary, run against the shared test
// servers with its own database and client id, so that tests do not see
// each other's state.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "process.h"
#include "servers.h"

namespace seqtest {

class RelayProcess {
 public:
  // `name` becomes the database name, the MQTT client id and the log name
  // (with `instance`, when several relays share the database: relay-<name>-<instance>.log).
  // --shutdown-timeout is 20 unless `extra_args` set it.
  RelayProcess(TestServers& servers, std::string name, std::vector<std::string> extra_args = {},
               std::string instance = "");
  ~RelayProcess();

  // Starts the relay and waits until its intake link is subscribed. `env`
  // entries ("NAME=value") are added to its environment.
  void Start(const std::vector<std::string>& env = {});
  // Starts the relay and returns at once (for a relay that cannot get ready).
  void Launch(const std::vector<std::string>& env = {});
  int Stop();  // SIGTERM; returns the exit code
  void Kill();  // SIGKILL
  void Signal(int sig) { process_.Signal(sig); }
  std::optional<int> WaitExit(std::chrono::milliseconds deadline);
  bool running() { return process_.running(); }
  pid_t pid() const { return process_.pid(); }
  // The largest resident set the running relay has had (VmHWM), in KiB.
  long PeakRssKb() const;
  // Connect as another database user from the next Start() on.
  void SetDbUser(std::string user, std::string password) {
    db_user_ = std::move(user);
    db_password_ = std::move(password);
  }
  // Reach the database on another port (a TcpGate's) from the next Start() on.
  void SetDbPort(int port) { db_port_ = port; }
  // Use another broker (port, user, password) from the next Start() on.
  void SetBroker(int port, std::string user, std::string password) {
    mqtt_port_ = port;
    mqtt_user_ = std::move(user);
    mqtt_password_ = std::move(password);
  }
  std::string log() const;

 private:
  TestServers& servers_;
  const std::string name_;
  const std::vector<std::string> extra_args_;
  const std::string log_path_;
  const std::string journal_dir_;  // --journal-dir unless the test gives its own
  std::string db_user_ = TestServers::kDbUser;
  std::string db_password_ = TestServers::kDbPassword;
  int db_port_ = 0;    // 0: the shared database's
  int mqtt_port_ = 0;  // 0: the shared broker
  std::string mqtt_user_, mqtt_password_;
  Process process_;
  int starts_ = 0;
};

// True if the relay under test runs under AddressSanitizer (this binary was
// built with it, or SEQTEST_RELAY_SANITIZED is set beside a sanitized
// SEQTEST_RELAY_BINARY): its memory figures mean nothing then.
bool RelaySanitized();

// The relay's exit code and output for a run with these arguments only (no
// servers needed): for option errors and --help.
int RunRelay(const std::vector<std::string>& args, std::string* output);

}  // namespace seqtest
