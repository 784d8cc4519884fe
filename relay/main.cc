// seqrelay: options in, exit code out.
//
// Exit codes: 0 clean stop, 1 runtime failure (see the log), 2 bad options
// (or a shard whose filters overlap another's, or a relay id that another
// live relay of the shard runs with).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/log.h"
#include "options.h"
#include "relay.h"

#ifndef SEQRELAY_VERSION
#define SEQRELAY_VERSION "dev"
#endif

namespace {

// <hostname>-<pid>: unique among the relays of one machine, and readable in
// the lease's OWNER column.
std::string DefaultRelayId() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') std::strcpy(host, "relay");
  std::string id;
  for (const char* c = host; *c != '\0' && id.size() < 48; ++c) {
    id += std::isalnum(static_cast<unsigned char>(*c)) || *c == '.' || *c == '_' ? *c : '-';
  }
  return id + "-" + std::to_string(getpid());
}

}  // namespace

int main(int argc, char** argv) {
  using namespace seqrelay;
  auto parsed = ParseOptions({argv + 1, argv + argc}, ProcessEnvironment());
  if (!parsed.ok()) {
    std::fprintf(stderr, "seqrelay: %s (see --help)\n", parsed.error().c_str());
    return 2;
  }
  if (parsed->help) {
    std::fputs(parsed->help_text.c_str(), stdout);
    return 0;
  }
  if (parsed->version) {
    std::puts("seqrelay " SEQRELAY_VERSION);
    return 0;
  }
  SetLogLevel(parsed->config.log_level);
  SetLogFormat(parsed->config.log_format);

  // SIGTERM and SIGINT (stop) and SIGHUP (read --acl-file again) are taken
  // by one thread with sigwait, so no thread is ever interrupted by them;
  // SIGPIPE is ignored (a broken socket is an error value, not a death).
  sigset_t taken_signals;
  sigemptyset(&taken_signals);
  sigaddset(&taken_signals, SIGTERM);
  sigaddset(&taken_signals, SIGINT);
  sigaddset(&taken_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &taken_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  LogInfo("seqrelay {} starting", SEQRELAY_VERSION);
  Config config = std::move(parsed->config);
  if (config.relay_id.empty()) config.relay_id = DefaultRelayId();

  // A relay that loses its shard's lease ends its Relay (Run() returns
  // kSteppedDown) and starts a fresh one, which waits as a standby. The
  // signal thread may call RequestStop() on the current Relay at any moment
  // until it is joined, so it is joined before the last Relay is destroyed:
  // once the runs are over, it is woken with a SIGTERM of its own.
  std::mutex mu;
  Relay* current = nullptr;  // guarded by mu
  bool stop = false;         // guarded by mu
  std::atomic<bool> runs_over{false};
  std::thread signals([&] {
    // A second signal during the orderly stop: said, not acted on (the stop
    // already runs against --shutdown-timeout).
    //
    // The stop is bounded: --shutdown-timeout for committing what the relay
    // holds, then Relay::kStopMargin for its last steps, whether a signal or
    // a fatal error began it. One still running after that waits on a
    // database or a broker that does not answer (a call in flight holds out
    // for the connector's 30 s read timeout). The process then ends here,
    // as the SIGKILL an orchestrator would send next, and as safely: every
    // message acknowledged and not committed is in the journal, which the
    // next start hands over. Looked at every second.
    using Clock = std::chrono::steady_clock;
    std::optional<Clock::time_point> signalled;  // a signal's stop: its bound (the run may end before it)
    for (;;) {
      const timespec tick{1, 0};
      int sig = sigtimedwait(&taken_signals, nullptr, &tick);
      if (runs_over) return;
      if (sig == SIGHUP) {
        // Between two runs (a step-down's restart) nobody holds the rules:
        // the next run reads the file at its start.
        LogInfo("received SIGHUP: reading --acl-file again");
        std::lock_guard lock(mu);
        if (current != nullptr) current->ReloadAcl();
        sig = 0;  // no stop; the deadline's check below as on any tick
      }
      if (sig > 0 && !signalled) {
        LogInfo("received {}, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
        signalled = Clock::now() + std::chrono::seconds(config.shutdown_timeout_s) + Relay::kStopMargin;
        std::lock_guard lock(mu);
        stop = true;
        if (current != nullptr) current->RequestStop();
        continue;
      }
      if (sig > 0) {
        LogWarn("received {} again; already stopping (--shutdown-timeout bounds the stop)",
                sig == SIGINT ? "SIGINT" : "SIGTERM");
      }
      std::lock_guard lock(mu);  // main() cannot end the run meanwhile
      if (runs_over) return;
      const auto now = Clock::now();
      const std::optional<Clock::time_point> fatal = current != nullptr ? current->StopDeadline() : std::nullopt;
      if (!(signalled && now >= *signalled) && !(fatal && now >= *fatal)) continue;
      LogError("the stop did not end within --shutdown-timeout ({} s) + {} s; {}: ending the process now (exit 1). {}",
               config.shutdown_timeout_s, Relay::kStopMargin.count(),
               current != nullptr ? std::string("still ") + current->Step() : std::string("its run had ended"),
               config.journal_dir.empty()
                   ? "With --no-journal, messages acknowledged and not committed are lost"
                   : "Messages acknowledged and not committed stay in the journal, for its next start");
      _exit(1);
    }
  });
  int code = 0;
  for (;;) {
    Relay relay(config);
    {
      std::lock_guard lock(mu);
      if (stop) break;
      current = &relay;
    }
    code = relay.Run();
    {
      std::lock_guard lock(mu);
      current = nullptr;
      if (stop || code != Relay::kSteppedDown) break;
    }
    LogInfo("starting again as a standby of shard '{}'", config.shard);
  }
  if (code == Relay::kSteppedDown) code = 0;  // stopped by a signal right after stepping down
  {
    std::lock_guard lock(mu);  // the signal thread decides under it whether the stop overran
    runs_over = true;
  }
  pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  return code;
}
