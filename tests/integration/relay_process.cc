#include "relay_process.h"

#include <signal.h>

#include <stdexcept>

namespace seqtest {

RelayProcess::RelayProcess(TestServers& servers, std::string name, std::vector<std::string> extra_args)
    : servers_(servers), name_(std::move(name)), extra_args_(std::move(extra_args)) {}

RelayProcess::~RelayProcess() { process_.Stop(); }

void RelayProcess::Start(const std::vector<std::string>& env) {
  std::vector<std::string> argv = {SEQRELAY_BINARY,
                                   "--mqtt-port=" + std::to_string(servers_.mqtt_port()),
                                   "--db-port=" + std::to_string(servers_.db_port()),
                                   "--db-user=" + std::string(TestServers::kDbUser),
                                   "--db-name=" + name_,
                                   "--mqtt-client-id=" + name_,
                                   "--shutdown-timeout=20"};
  argv.insert(argv.end(), extra_args_.begin(), extra_args_.end());
  const std::size_t before = log().size();
  std::vector<std::string> environment = {std::string("SEQRELAY_DB_PASSWORD=") + TestServers::kDbPassword};
  environment.insert(environment.end(), env.begin(), env.end());
  process_.Start(argv, servers_.dir() + "/relay-" + name_ + ".log", environment);
  ++starts_;
  // Ready once the intake link's SUBACK arrived after this start.
  bool ready = WaitFor(
      [&] { return !process_.running() || log().find("intake: subscribed", before) != std::string::npos; },
      std::chrono::seconds(30));
  if (!ready || !process_.running()) throw std::runtime_error("relay did not start:\n" + log());
}

int RelayProcess::Stop() { return process_.Stop(std::chrono::seconds(30)); }

std::optional<int> RelayProcess::WaitExit(std::chrono::milliseconds deadline) { return process_.Wait(deadline); }

void RelayProcess::Kill() {
  process_.Signal(SIGKILL);
  process_.Wait(std::chrono::seconds(10));
}

std::string RelayProcess::log() const { return ReadFile(servers_.dir() + "/relay-" + name_ + ".log"); }

int RunRelay(const std::vector<std::string>& args, std::string* output) {
  std::vector<std::string> argv = {SEQRELAY_BINARY};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, output);
}

}  // namespace seqtest
