// Breaking one thread out of a blocking system call: libmosquitto's
// connect(2) to a host that drops the SYNs blocks for the kernel's retries,
// about two minutes, and nothing else ends it early.
#pragma once

#include <thread>

namespace seqrelay {

// Sends `thread` a signal whose handler does nothing and is installed
// (once, here, before the first send) without SA_RESTART: the call it
// blocks in fails with EINTR. The process's other threads are not touched.
// A signal that lands outside a blocking call is spent: a caller whose
// thread may be about to block sends it again until the thread is out.
void InterruptThread(std::thread& thread);

// Lets the signal reach the calling thread, which a thread that will be
// interrupted calls first: it was started with its creator's signal mask,
// which may block every signal (a program that takes its signals with
// sigwait).
void AcceptInterrupts();

}  // namespace seqrelay
