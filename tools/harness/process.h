// Process: a child process the tests own, started with fork/exec, its
// stdout and stderr appended to a log file, and ended only by its PID. A
// child is SIGKILLed when the thread that started it ends (the kernel's
// parent-death signal): start a process that must outlive a short thread
// from a longer one.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace seqtest {

// Deadlines in tests are multiplied by SEQTEST_TIME_FACTOR (default 1; the
// test script raises it for sanitizer builds).
std::chrono::milliseconds Scaled(std::chrono::milliseconds d);

class Process {
 public:
  Process() = default;
  ~Process();  // SIGKILLs a child still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // env entries ("NAME=value") are added to the current environment.
  void Start(const std::vector<std::string>& argv, const std::string& log_path,
             const std::vector<std::string>& env = {});
  bool running();
  pid_t pid() const { return pid_; }
  void Signal(int sig);
  // Waits for the exit; returns the exit code (128+signal if killed), or
  // nullopt if the deadline passed first.
  std::optional<int> Wait(std::chrono::milliseconds deadline);
  // SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit code.
  int Stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  const std::string& log_path() const { return log_path_; }

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string log_path_;
};

// On SIGINT, SIGTERM or SIGHUP (Ctrl-C on seqbench or ctest): every child
// a Process started and that still runs is killed by its PID and reaped,
// the directories named to RemoveOnSignal are removed, and the process
// exits 128 + the signal, saying so. Call it before any other thread
// starts: it blocks the signals in the calling thread, and the threads
// started after inherit that (children get a clean mask).
void EndCleanlyOnSignals(const char* program);
// A directory (or file) to remove on such a signal (a TestServers' own),
// and no longer (removed already).
void RemoveOnSignal(const std::string& dir);
void ForgetOnSignal(const std::string& dir);

// Runs a command to completion; returns its exit code and output.
int RunCommand(const std::vector<std::string>& argv, std::string* output = nullptr);

// A TCP port on 127.0.0.1 that was free a moment ago (10000 to 19999).
int FreePort();

// Whether a connection to the Unix socket at `path` is accepted.
bool UnixSocketAccepts(const std::string& path);

// A TCP connection to 127.0.0.1:port, as a file descriptor the caller
// closes, or -1. With recv_timeout > 0, reads on it time out after that.
int ConnectLoopback(int port, std::chrono::milliseconds recv_timeout = std::chrono::milliseconds(0));

// A plain HTTP/1.1 request (GET by default) on 127.0.0.1:port; returns the
// whole response (status line, headers, body), or "" if the connection
// failed. Reads time out after 10 s.
std::string HttpGet(int port, const std::string& target, const std::string& method = "GET");

// A series' value in a /metrics response, `name` with its labels as
// printed; -1 if it is not there.
long long MetricValue(const std::string& body, const std::string& name);

// Whether a TCP connection to 127.0.0.1:port is accepted (closed at once).
bool PortAccepts(int port);

// A listener on a free port of 127.0.0.1 that never accepts: the kernel
// completes the handshakes, nothing more (a broker that does not answer; a
// port another process holds). Closed with it.
class IdleListener {
 public:
  IdleListener();  // throws std::runtime_error if no port can be bound
  ~IdleListener();
  IdleListener(const IdleListener&) = delete;
  IdleListener& operator=(const IdleListener&) = delete;
  int port() const { return port_; }
  int fd() const { return fd_; }  // readable once a connection waits to be accepted

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A listener on 127.0.0.1:port whose accept queue is full of its own
// connections: the kernel drops the SYNs of any other connect there, which
// neither completes nor fails (the client's kernel retries for about 2
// minutes), as to a broker host gone from the network. Closed with it.
class FullListener {
 public:
  explicit FullListener(int port);  // throws std::runtime_error if the port cannot be bound
  ~FullListener();
  FullListener(const FullListener&) = delete;
  FullListener& operator=(const FullListener&) = delete;

  // The premise, tried: a connect there neither completes nor fails within 1.5 s.
  bool DropsSyns() const;

 private:
  int port_;
  std::vector<int> fds_;  // the listener, then the connections that fill its queue
};

// Polls `ready` every 20 ms until it returns true or `deadline` passes.
bool WaitFor(const std::function<bool()>& ready, std::chrono::milliseconds deadline);

std::string ReadFile(const std::string& path);
std::string Tail(const std::string& path, std::size_t lines);

}  // namespace seqtest
