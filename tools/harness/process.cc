#include "process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <thread>

extern char** environ;

namespace seqtest {
namespace {

// What a signal ends (EndCleanlyOnSignals): the running children's PIDs and
// the directories to remove.
struct Leftovers {
  std::mutex mu;
  std::set<pid_t> children;
  std::set<std::string> dirs;
};
Leftovers& leftovers() {
  static Leftovers l;
  return l;
}

}  // namespace

void EndCleanlyOnSignals(const char* program) {
  static sigset_t signals;
  sigemptyset(&signals);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::thread([program] {
    int sig = 0;
    sigwait(&signals, &sig);
    // A second signal ends the process at once, should the cleanup hang.
    for (int s : {SIGINT, SIGTERM, SIGHUP}) signal(s, SIG_DFL);
    pthread_sigmask(SIG_UNBLOCK, &signals, nullptr);
    Leftovers& l = leftovers();
    std::lock_guard lock(l.mu);  // held until the exit: nothing starts meanwhile
    // Each child leads a process group of its own: what it started goes
    // too (mariadb-install-db's mariadbd --bootstrap, say).
    for (pid_t pid : l.children) kill(-pid, SIGKILL);
    for (pid_t pid : l.children) waitpid(pid, nullptr, 0);
    for (const std::string& dir : l.dirs) {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
    std::fprintf(stderr, "%s: %s: stopped %zu processes it had started and removed %zu directories\n", program,
                 strsignal(sig), l.children.size(), l.dirs.size());
    std::_Exit(128 + sig);
  }).detach();
}

void RemoveOnSignal(const std::string& dir) {
  std::lock_guard lock(leftovers().mu);
  leftovers().dirs.insert(dir);
}

void ForgetOnSignal(const std::string& dir) {
  std::lock_guard lock(leftovers().mu);
  leftovers().dirs.erase(dir);
}

std::chrono::milliseconds Scaled(std::chrono::milliseconds d) {
  static const double factor = [] {
    const char* f = std::getenv("SEQTEST_TIME_FACTOR");
    return f ? std::max(1.0, std::atof(f)) : 1.0;
  }();
  return std::chrono::milliseconds(static_cast<int64_t>(d.count() * factor));
}

Process::~Process() {
  if (pid_ > 0 && !exit_code_) {
    kill(pid_, SIGKILL);
    // Reaped and forgotten in one step: a signal's cleanup never kills a
    // PID reaped and taken by another process meanwhile.
    std::lock_guard lock(leftovers().mu);
    waitpid(pid_, nullptr, 0);
    leftovers().children.erase(pid_);
  }
}

void Process::Start(const std::vector<std::string>& argv, const std::string& log_path,
                    const std::vector<std::string>& env) {
  if (pid_ > 0 && !exit_code_) throw std::runtime_error("process already running: " + argv.at(0));
  log_path_ = log_path;
  exit_code_.reset();
  // The caller's variables replace the inherited ones of the same name
  // (a duplicate would be read first-come by getenv).
  auto name_of = [](std::string_view entry) { return entry.substr(0, entry.find('=')); };
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    const std::string_view inherited(*e);
    const bool replaced = std::any_of(env.begin(), env.end(),
                                      [&](const std::string& mine) { return name_of(mine) == name_of(inherited); });
    if (!replaced) env_strings.emplace_back(inherited);
  }
  for (const auto& e : env) env_strings.push_back(e);
  std::vector<char*> args, envp;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  for (const auto& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) throw std::runtime_error("cannot open " + log_path + ": " + strerror(errno));
  const pid_t parent = getpid();
  // Held across the fork: a signal's cleanup waits until the child is
  // registered, and kills it too.
  std::unique_lock registry(leftovers().mu);
  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + strerror(errno));
  if (pid_ == 0) {
    // Child: ends with the thread that started it, however that ends
    // (Ctrl-C, which mariadbd ignores; a SIGKILL; a crash), so that no
    // server outlives its test or bench. The check after it catches a
    // parent gone before the request.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    // A process group of its own, which a signal's cleanup ends whole; the
    // terminal's Ctrl-C reaches the harness alone, which ends it so.
    setpgid(0, 0);
    // A clean signal state, stdin from /dev/null, output to the log.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    int devnull = open("/dev/null", O_RDONLY);
    dup2(devnull, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execvpe(args[0], args.data(), envp.data());
    dprintf(2, "exec %s: %s\n", args[0], strerror(errno));
    _exit(127);
  }
  leftovers().children.insert(pid_);
  registry.unlock();
  close(log_fd);
}

bool Process::running() {
  if (pid_ <= 0 || exit_code_) return false;
  int status = 0;
  std::lock_guard lock(leftovers().mu);  // reaped and forgotten in one step (~Process)
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    leftovers().children.erase(pid_);
    return false;
  }
  return true;
}

void Process::Signal(int sig) {
  if (running()) kill(pid_, sig);
}

std::optional<int> Process::Wait(std::chrono::milliseconds deadline) {
  WaitFor([&] { return !running(); }, deadline);
  return exit_code_;
}

int Process::Stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return -1;
  Signal(SIGTERM);
  if (auto code = Wait(grace)) return *code;
  Signal(SIGKILL);
  return Wait(std::chrono::seconds(10)).value_or(-1);
}

int RunCommand(const std::vector<std::string>& argv, std::string* output) {
  char path[] = "/tmp/seqtest-cmd-XXXXXX";
  int fd = mkstemp(path);
  close(fd);
  RemoveOnSignal(path);
  Process p;
  p.Start(argv, path);
  auto code = p.Wait(std::chrono::minutes(2));
  if (output) *output = ReadFile(path);
  unlink(path);
  ForgetOnSignal(path);
  return code.value_or(-1);
}

bool PortAccepts(int port) {
  const int fd = ConnectLoopback(port);
  if (fd >= 0) close(fd);
  return fd >= 0;
}

namespace {

sockaddr_in Loopback(int port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  return addr;
}

// A connect to 127.0.0.1:port that does not wait: a socket, or -1.
int ConnectWithoutWaiting(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const sockaddr_in addr = Loopback(port);
  connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);  // EINPROGRESS
  return fd;
}

}  // namespace

IdleListener::IdleListener() {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + strerror(errno));
  sockaddr_in addr = Loopback(0);
  socklen_t len = sizeof addr;
  if (bind(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 || listen(fd_, 4) != 0 ||
      getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string why = strerror(errno);
    close(fd_);
    throw std::runtime_error("IdleListener: " + why);
  }
  port_ = ntohs(addr.sin_port);
}

IdleListener::~IdleListener() { close(fd_); }

FullListener::FullListener(int port) : port_(port) {
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) throw std::runtime_error(std::string("socket: ") + strerror(errno));
  fds_.push_back(listener);
  const int reuse = 1;  // a port whose last connections wait in TIME_WAIT
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof reuse);
  const sockaddr_in addr = Loopback(port);
  // A backlog of 1 queues two connections (the kernel counts past it);
  // the SYNs after them are dropped. (A backlog of 0 queues one, which
  // then needs a SYN cookie.)
  if (bind(listener, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 || listen(listener, 1) != 0) {
    const std::string why = strerror(errno);
    close(listener);
    throw std::runtime_error("FullListener: port " + std::to_string(port) + ": " + why);
  }
  for (int i = 0; i < 2; ++i) fds_.push_back(ConnectWithoutWaiting(port));
}

FullListener::~FullListener() {
  for (int fd : fds_) {
    if (fd >= 0) close(fd);
  }
}

bool FullListener::DropsSyns() const {
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // the fillers' handshakes, on loopback
  const int probe = ConnectWithoutWaiting(port_);
  if (probe < 0) return false;
  pollfd done{probe, POLLOUT, 0};
  const int ready = poll(&done, 1, 1500);
  close(probe);
  return ready == 0;
}

int ConnectLoopback(int port, std::chrono::milliseconds recv_timeout) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (recv_timeout.count() > 0) {
    timeval tv{static_cast<time_t>(recv_timeout.count() / 1000), static_cast<suseconds_t>(recv_timeout.count() % 1000 * 1000)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  const sockaddr_in addr = Loopback(port);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

std::string HttpGet(int port, const std::string& target, const std::string& method) {
  const int fd = ConnectLoopback(port, std::chrono::seconds(10));
  if (fd < 0) return "";
  const std::string request = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return "";
  }
  std::string response;
  char buf[8192];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) response.append(buf, static_cast<std::size_t>(n));
  close(fd);
  return response;
}

long long MetricValue(const std::string& body, const std::string& name) {
  const std::string line = "\n" + name + " ";
  const auto at = body.find(line);
  return at == std::string::npos ? -1 : std::stoll(body.substr(at + line.size()));
}

int FreePort() {
  // Below the ephemeral range, so that no outgoing connection (the suite
  // makes thousands) takes the port before the server binds it, and below
  // the 20000 where tools/galera.sh picks its nodes' ports. Random, so that
  // test shards started side by side do not try the same ports in order.
  // Never the same port twice in one process: a port given out is not
  // bound until its server starts, and a test that asks for two ports
  // before starting anything (the shipped broker's two listeners) got the
  // same one twice once (its broker: "Address already in use").
  static std::mutex mu;
  static std::set<int> given;
  std::lock_guard lock(mu);
  static std::mt19937 random(std::random_device{}() ^ static_cast<unsigned>(getpid()));
  std::uniform_int_distribution<int> pick(10000, 19999);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    const int port = pick(random);
    if (given.count(port) > 0) continue;
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(std::string("socket: ") + strerror(errno));
    const sockaddr_in addr = Loopback(port);
    const bool free = bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    if (free) {
      given.insert(port);
      return port;
    }
  }
  throw std::runtime_error("no free TCP port on 127.0.0.1 between 10000 and 19999");
}

bool UnixSocketAccepts(const std::string& path) {
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    close(fd);
    return false;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const bool accepted = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return accepted;
}

bool WaitFor(const std::function<bool()>& ready, std::chrono::milliseconds deadline) {
  auto until = std::chrono::steady_clock::now() + Scaled(deadline);
  while (true) {
    if (ready()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string Tail(const std::string& path, std::size_t lines) {
  std::string text = ReadFile(path);
  if (text.empty()) return text;
  std::size_t pos = text.size();
  for (std::size_t n = 0; n <= lines && pos > 0; ++n) {
    pos = text.rfind('\n', pos - 1);
    if (pos == std::string::npos) return text;
  }
  return text.substr(pos + 1);
}

}  // namespace seqtest
