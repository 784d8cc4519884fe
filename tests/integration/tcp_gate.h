// TcpGate: a loopback TCP forwarder in front of one server port, which a
// test shuts to cut one client (a relay) off from a server that every other
// client still reaches: a network partition between two processes on one
// machine, without touching the server.
//
// Shut() closes every connection it forwards, and from then on accepts new
// ones only to close them at once: the client sees its connections lost
// and its reconnects fail (no server answers), as when a link goes down
// and the client's kernel learns of it. Open() forwards new connections
// again.
//
// Made for MQTT (`mqtt`), it forwards the client's bytes packet by packet,
// and DropClientPubacks(true) drops the client's PUBACKs: the server keeps
// those messages unacknowledged (and resends them to the session's next
// connection), as when the client dies before its acknowledgements leave.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

namespace seqtest {

class TcpGate {
 public:
  // Listens on a free port of 127.0.0.1 and forwards to 127.0.0.1:target_port.
  explicit TcpGate(int target_port, bool mqtt = false);
  ~TcpGate();
  TcpGate(const TcpGate&) = delete;
  TcpGate& operator=(const TcpGate&) = delete;

  int port() const { return port_; }
  // Returns once every forwarded connection is closed.
  void Shut();
  void Open();
  // MQTT only: the client's PUBACKs dropped from now on (true) or forwarded.
  void DropClientPubacks(bool on) { drop_pubacks_ = on; }
  uint64_t dropped_pubacks() const { return dropped_pubacks_.load(); }
  // Writes `bytes` to every client connection forwarded now, as if the
  // server had sent them (a test sends them while the server sends
  // nothing, or they would land inside one of its packets). Returns once
  // written, with the number of connections they went to.
  int SendToClients(const std::string& bytes);

 private:
  void Run();
  // Takes the whole packets off the front of `bytes`, less the PUBACKs
  // while they are dropped.
  std::string WholePackets(std::string& bytes);

  const int target_port_;
  const bool mqtt_;
  std::atomic<bool> drop_pubacks_{false};
  std::atomic<uint64_t> dropped_pubacks_{0};
  int port_ = 0;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: Shut, Open and the destructor wake the loop
  std::atomic<bool> shut_{false}, stop_{false};
  std::atomic<uint64_t> shuts_{0};  // Shut() calls so far
  std::mutex mu_;
  std::condition_variable cv_;
  uint64_t shuts_done_ = 0;  // of them, those the loop has acted on; mu_
  std::string to_clients_;     // SendToClients' bytes, for the loop to write; mu_
  uint64_t sends_asked_ = 0, sends_done_ = 0;  // SendToClients calls, and those written; mu_
  int sent_to_ = 0;            // the connections the last one went to; mu_
  std::thread thread_;
};

}  // namespace seqtest
