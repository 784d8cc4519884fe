#include "tcp_gate.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "process.h"

namespace seqtest {
namespace {


// Writes all of `data`; false if the socket failed, or its reader had not
// taken it all within 5 s (the pair is closed then, not waited for: Shut()
// and the destructor must not hang on a client that stopped reading).
// MSG_NOSIGNAL: a peer gone is an error here, not a SIGPIPE for the tests.
bool WriteAll(int fd, const char* data, std::size_t size) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (size > 0) {
    const ssize_t n = send(fd, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                            std::chrono::steady_clock::now());
      pollfd writable{fd, POLLOUT, 0};
      if (left.count() <= 0 || poll(&writable, 1, static_cast<int>(left.count())) <= 0) return false;
      continue;
    }
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

TcpGate::TcpGate(int target_port, bool mqtt) : target_port_(target_port), mqtt_(mqtt) {
  listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};  // 127.0.0.1, a port the kernel picks
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  // Its connections, closed, may wait in TIME_WAIT: a test can bind the
  // port again once the gate is gone (the reuse is inherited by them).
  const int reuse = 1;
  if (listen_fd_ >= 0) setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof reuse);
  if (listen_fd_ < 0 || bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      listen(listen_fd_, 64) != 0 || getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    const std::string why = std::strerror(errno);
    if (listen_fd_ >= 0) close(listen_fd_);
    throw std::runtime_error("TcpGate: listen: " + why);
  }
  port_ = ntohs(a.sin_port);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    const std::string why = std::strerror(errno);
    close(listen_fd_);
    throw std::runtime_error("TcpGate: eventfd: " + why);
  }
  try {
    thread_ = std::thread([this] { Run(); });
  } catch (...) {
    close(listen_fd_);
    close(wake_fd_);
    throw;
  }
}

TcpGate::~TcpGate() {
  stop_ = true;
  eventfd_write(wake_fd_, 1);
  thread_.join();
  close(listen_fd_);
  close(wake_fd_);
}

void TcpGate::Shut() {
  const uint64_t asked = ++shuts_;
  shut_ = true;
  eventfd_write(wake_fd_, 1);
  // Returns once the loop has closed what it forwarded.
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return shuts_done_ >= asked; });
}

void TcpGate::Open() {
  shut_ = false;
  eventfd_write(wake_fd_, 1);
}

int TcpGate::SendToClients(const std::string& bytes) {
  std::unique_lock lock(mu_);
  to_clients_ += bytes;
  const uint64_t asked = ++sends_asked_;
  eventfd_write(wake_fd_, 1);
  cv_.wait(lock, [&] { return sends_done_ >= asked; });
  return sent_to_;
}

std::string TcpGate::WholePackets(std::string& bytes) {
  // MQTT's fixed header: a type byte, then the remaining length in 1 to 4
  // bytes of 7 bits each, low first.
  std::string whole;
  std::size_t at = 0;
  for (;;) {
    std::size_t length = 0, header = 1;
    bool complete = false;
    for (int shift = 0; header < 5 && at + header < bytes.size(); shift += 7) {
      const auto b = static_cast<uint8_t>(bytes[at + header++]);
      length |= static_cast<std::size_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) {
        complete = true;
        break;
      }
    }
    if (!complete || bytes.size() - at < header + length) break;
    if (drop_pubacks_ && (static_cast<uint8_t>(bytes[at]) & 0xF0) == 0x40) {
      ++dropped_pubacks_;
    } else {
      whole.append(bytes, at, header + length);
    }
    at += header + length;
  }
  bytes.erase(0, at);
  return whole;
}

void TcpGate::Run() {
  struct Pair {
    int client, server;
    std::string from_client;  // mqtt_: the client's bytes short of a whole packet
  };
  std::vector<Pair> pairs;
  const auto close_pair = [](const Pair& p) {
    close(p.client);
    close(p.server);
  };
  std::vector<char> buffer(64 * 1024);
  uint64_t shuts_done_seen = 0;  // shuts_done_, as this thread last set it
  while (!stop_) {
    // A Shut() is confirmed by its count, also when an Open() came before
    // the loop saw it. (While shut, no pair is made: nothing more to close.)
    const uint64_t asked = shuts_.load();
    if (asked > shuts_done_seen) {
      for (const Pair& p : pairs) close_pair(p);
      pairs.clear();
      shuts_done_seen = asked;
      std::lock_guard lock(mu_);
      shuts_done_ = asked;
      cv_.notify_all();
    }
    {
      std::lock_guard lock(mu_);
      if (sends_done_ < sends_asked_) {
        // A pair whose client did not take the bytes is closed, as a
        // forwarding that fails is: a packet cut short would be read on.
        sent_to_ = 0;
        std::vector<Pair> kept;
        for (const Pair& p : pairs) {
          if (WriteAll(p.client, to_clients_.data(), to_clients_.size())) {
            ++sent_to_;
            kept.push_back(p);
          } else {
            close_pair(p);
          }
        }
        pairs.swap(kept);
        to_clients_.clear();
        sends_done_ = sends_asked_;
        cv_.notify_all();
      }
    }
    std::vector<pollfd> fds = {{listen_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    for (const Pair& p : pairs) {
      fds.push_back({p.client, POLLIN, 0});
      fds.push_back({p.server, POLLIN, 0});
    }
    if (poll(fds.data(), fds.size(), 1000) < 0 && errno != EINTR) break;
    if (fds[1].revents & POLLIN) {
      eventfd_t ignored;
      eventfd_read(wake_fd_, &ignored);
    }
    if (fds[0].revents & POLLIN) {
      const int client = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client >= 0 && shut_) {
        close(client);  // no server answers
      } else if (client >= 0) {
        const int server = ConnectLoopback(target_port_);
        if (server >= 0) {
          const int on = 1;
          setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
          setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
          pairs.push_back({client, server, {}});
        } else {
          close(client);
        }
      }
    }
    // The pairs polled this round are the first (fds.size() - 2) / 2.
    std::vector<Pair> kept;
    const std::size_t polled = (fds.size() - 2) / 2;
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      bool open = true;
      if (i < polled) {
        for (const auto& [from, to] : {std::pair{fds[2 + 2 * i], pairs[i].server},
                                       std::pair{fds[3 + 2 * i], pairs[i].client}}) {
          if (!open || !(from.revents & (POLLIN | POLLHUP | POLLERR))) continue;
          const ssize_t n = read(from.fd, buffer.data(), buffer.size());
          if (n > 0 && mqtt_ && from.fd == pairs[i].client) {
            std::string& bytes = pairs[i].from_client;
            bytes.append(buffer.data(), static_cast<std::size_t>(n));
            const std::string whole = WholePackets(bytes);
            open = WriteAll(to, whole.data(), whole.size());
            continue;
          }
          open = n > 0 && WriteAll(to, buffer.data(), static_cast<std::size_t>(n));
        }
      }
      if (open) {
        kept.push_back(pairs[i]);
      } else {
        close_pair(pairs[i]);
      }
    }
    pairs.swap(kept);
  }
  for (const Pair& p : pairs) close_pair(p);
  std::lock_guard lock(mu_);
  shuts_done_ = UINT64_MAX;  // nothing is forwarded any more: no Shut() waits
  sends_done_ = UINT64_MAX;  // nor a SendToClients()
  sent_to_ = 0;
  cv_.notify_all();
}

}  // namespace seqtest
