#include "core/thread_interrupt.h"

#include <pthread.h>
#include <signal.h>

#include <mutex>

namespace seqrelay {
namespace {

// A real-time signal the process has no other use for.
int InterruptSignal() { return SIGRTMIN + 4; }

sigset_t InterruptSet() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, InterruptSignal());
  return set;
}

}  // namespace

void AcceptInterrupts() {
  const sigset_t set = InterruptSet();
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

void InterruptThread(std::thread& thread) {
  static std::once_flag installed;
  std::call_once(installed, [] {
    struct sigaction action {};
    action.sa_handler = [](int) {};
    sigemptyset(&action.sa_mask);
    action.sa_flags = 0;  // no SA_RESTART
    sigaction(InterruptSignal(), &action, nullptr);
  });
  if (thread.joinable()) pthread_kill(thread.native_handle(), InterruptSignal());
}

}  // namespace seqrelay
