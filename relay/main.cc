// seqrelay: options in, exit code out.
//
// Exit codes: 0 clean stop, 1 runtime failure (see the log), 2 bad options.
#include <signal.h>

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
  std::thread signals([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    LogInfo("received {}, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
    relay.RequestStop();
  });
  signals.detach();  // ends with the process
  return relay.Run();
}
