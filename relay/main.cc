// seqrelay: options in, exit code out.
//
// Exit codes: 0 clean stop, 1 runtime failure (see the log), 2 bad options.
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include "log.h"
#include "options.h"
#include "relay.h"

#ifndef SEQRELAY_VERSION
#define SEQRELAY_VERSION "dev"
#endif

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

  // SIGTERM and SIGINT are taken by one thread with sigwait, so no thread is
  // ever interrupted by them; SIGPIPE is ignored (a broken socket is an
  // error value, not a death).
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  LogInfo("seqrelay {} starting", SEQRELAY_VERSION);
  Relay relay(std::move(parsed->config));
  // The signal thread may call RequestStop() at any moment until it is
  // joined, so it is joined before `relay` is destroyed: once Run() returns,
  // it is woken with a SIGTERM of its own and told that the run is over.
  std::atomic<bool> run_over{false};
  std::thread signals([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    if (run_over) return;
    LogInfo("received {}, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    relay.RequestStop();
    // A second signal during the orderly stop: said, not acted on (the stop
    // already runs against --shutdown-timeout).
    while (sigwait(&stop_signals, &sig) == 0 && !run_over) {
      LogWarn("received {} again; already stopping (--shutdown-timeout bounds the stop)",
              sig == SIGINT ? "SIGINT" : "SIGTERM");
    }
  });
  const int code = relay.Run();
  run_over = true;
  pthread_kill(signals.native_handle(), SIGTERM);
  signals.join();
  return code;
}
