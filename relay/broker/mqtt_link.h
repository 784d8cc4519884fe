// MqttLink: the relay's one adapter to libmosquitto. One MQTT connection
// with its own network thread (Loop: poll, mosquitto_loop_read and _write
// in a loop of ours), which reconnects with exponential backoff (1 s ..
// 5 s) and re-subscribes on every connect.
//
// Why a loop of our own and not mosquitto_loop_start: a clean DISCONNECT
// must be queued on the network thread itself. libmosquitto queues the
// PUBACK of a delivery before the handler runs and writes packets in queue
// order, closing the socket right after a DISCONNECT. So on one thread the
// order is known: every delivery handed to on_message before the DISCONNECT
// was queued is acknowledged, and every delivery read after it is not (the
// broker keeps it for the session and sends it again) and is therefore not
// handed to on_message at all. Queued from another thread, a delivery
// could be taken and never acknowledged, and come back as a duplicate.
//
// Threads: the handlers run on the link's network thread and must not throw
// (the trampolines catch and log). Publish() may be called from any thread;
// libmosquitto serialises it with the network thread. A handler that blocks
// stalls only this connection: the relay uses that for back-pressure on the
// intake link, for a bounded time, and then asks to pause (kPause).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "broker/read_ahead.h"
#include "core/status.h"

struct mosquitto;
struct mosquitto_message;
struct mqtt5__property;
typedef struct mqtt5__property mosquitto_property;

namespace seqrelay {

struct InboundMessage {
  std::string_view topic;
  std::span<const uint8_t> payload;
  int qos = 0;
  bool retain = false;
  uint16_t mid = 0;  // the broker's packet identifier (0 for QoS 0)
  // The Subscription Identifier the broker sent with it (the first, if the
  // message matched several subscriptions); 0 if none (v3.1.1 links, or
  // subscribed without one).
  uint32_t subscription_tag = 0;
  // MQTT v5 request/response properties; absent on v3.1.1 links.
  std::optional<std::string_view> response_topic;
  std::optional<std::span<const uint8_t>> correlation_data;
  // All of the message's v5 properties (null on v3.1.1 links, or none sent);
  // valid while the handler runs. Read with MqttLink::UserProperty.
  const mosquitto_property* properties = nullptr;
};

class MqttLink {
 public:
  // What the link does after a message handler returns.
  enum class AfterMessage {
    kReadOn,
    kPause,  // stop reading: a clean DISCONNECT after this message, until Resume()
    // Break the connection at once, with this message's PUBACK queued and
    // unsent, as a network failure would: the broker keeps the message in
    // the session. The link reconnects by itself (when may_connect allows).
    // Used by a relay whose lease lapsed, and for fault injection in tests.
    kBreakConnection,
  };
  struct Options {
    std::string host;
    int port = 1883;
    std::string user;
    std::string password;
    std::string client_id;
    bool clean_session = true;
    // v5 is needed to read properties (Response Topic, Correlation Data,
    // user properties). A v5 link with clean_session false asks for a
    // session that never expires, as a 3.1.1 persistent session.
    bool mqtt_v5 = false;
    int keepalive_s = 30;
    std::vector<std::string> subscriptions;  // subscribed at QoS 1 on every connect
    // Filters the session had and this link no longer wants: unsubscribed
    // after the SUBSCRIBE, on every connect to a session the broker kept,
    // until it has acknowledged that (see Resubscribe).
    std::vector<std::string> unsubscriptions;
    std::string name;                        // for log lines: "intake", "output"
  };
  struct Handlers {
    // Connected (again), before any message of the connection; `session_present`
    // is the CONNACK's flag.
    std::function<void(bool session_present)> on_connect;
    // Then, once connected() has turned true (libmosquitto's resends of
    // what it held are queued by then: a publish made from here on goes
    // after them). Null: none.
    std::function<void()> on_connected;
    std::function<AfterMessage(const InboundMessage&)> on_message;
    // The SUBACK of the connection's SUBSCRIBE: every message before it
    // came through the session the broker kept (its resends, its queue,
    // and live messages on its subscriptions).
    std::function<void()> on_subscribed;
    // Asked on every connect, after on_connect, on v5 links: the
    // Subscription Identifier (1 .. 268,435,455) to subscribe with; 0 for
    // none. The broker sends it with every message the subscription
    // matches, resends included. Null: none.
    std::function<uint32_t()> subscription_tag;
    // PUBACK (QoS 1), or sent (QoS 0). On v5 links `reason_code` is the
    // PUBACK's: >= 0x80 means the broker refused the message (too large for
    // its message_size_limit, denied by its ACL) although it acknowledged
    // it. Always 0 on v3.1.1 links, where a refusal cannot be seen.
    std::function<void(int mid, int reason_code)> on_published;
    // Connection refused for a reason retrying will not fix (bad credentials,
    // not authorised, bad client id).
    std::function<void(const std::string& why)> on_fatal;
    // Asked before every connect and reconnect; while it says false the
    // link stays away (asking again every 100 ms), and connects as soon as
    // it says true, without the reconnect backoff. Null: always.
    std::function<bool()> may_connect;
  };

  // Creates the client and starts connecting in the background. Fails only
  // for setup errors (bad options, out of memory), not for an absent broker.
  static Result<std::unique_ptr<MqttLink>> Start(Options options, Handlers handlers);
  ~MqttLink();

  // Queues a publish and returns its message id. QoS >= 1 messages queued
  // while disconnected are kept and sent after reconnect. Correlation data
  // is sent as a v5 property (v5 links only).
  Result<int> Publish(const std::string& topic, std::span<const uint8_t> payload, int qos,
                      std::optional<std::span<const uint8_t>> correlation_data = std::nullopt, bool retain = false);

  // As Publish (no properties, no retain), but the network thread is not
  // woken: the caller queues a run of publishes and then calls Flush (at
  // the latest before it waits for anything), so that the run leaves in as
  // few TCP segments as fit. Any thread.
  Result<int> Queue(const std::string& topic, std::span<const uint8_t> payload, int qos);
  // Wakes the network thread to write what Queue queued. Any thread.
  void Flush() { WakeLoop(); }

  // The value of the message's first user property named `name`, if any.
  static std::optional<std::string> UserProperty(const InboundMessage& m, std::string_view name);

  // Asks for a clean DISCONNECT and returns at once; the network thread
  // sends it once any handler it is running returns, then ends.
  void Disconnect();

  // Connects again after a pause (a handler's kPause: a clean DISCONNECT
  // after the PUBACKs of what was taken, queued on the network thread; the
  // broker keeps a persistent session's messages meanwhile, and no keepalive
  // can expire while we are away). Called while the link still runs, it
  // cancels the next pause a handler asks for (one the owner decided on and
  // the handler has not returned yet: the owner must not resume a link that
  // is not about to pause). Any thread.
  void Resume();

  // Drops the connection (a clean DISCONNECT) and connects again after the
  // reconnect backoff's first step (1 s): libmosquitto resends what it
  // holds unacknowledged, the only way MQTT lets a client send a message
  // again. Any thread.
  void Reconnect() {
    reconnect_asked_ = true;
    WakeLoop();
  }

  // Disconnects and joins the network thread, after any handler it is
  // running returns (the owner unblocks handlers first). Idempotent.
  void Stop();

  // The session's filters from now on, as Options::subscriptions and
  // ::unsubscriptions: sent now if connected (SUBSCRIBE, then UNSUBSCRIBE,
  // so that no topic of both goes unsubscribed in between), and on every
  // later connect. Any thread.
  void Resubscribe(std::vector<std::string> subscribe, std::vector<std::string> unsubscribe);
  // The broker has acknowledged the UNSUBSCRIBE of the last unsubscriptions
  // asked for (or a connect found no session to hold them). Any thread.
  bool unsubscribed() const { return unsubscribed_.load(); }
  // The broker granted every filter of the last SUBACK (none refused by
  // its ACL). Any thread.
  bool subscriptions_granted() const { return subscriptions_granted_.load(); }

  // From the end of the read that took a successful CONNACK to the
  // connection's loss. A QoS >= 1 publish made while this is true goes to
  // the broker after the messages libmosquitto resends at a reconnect (it
  // queues them after on_connect); one made before it (during the
  // CONNECT) would go before them.
  bool connected() const { return connected_.load(); }
  // Reads libmosquitto made of the link's sockets, and the system calls
  // they took (the rest were served from the read-ahead). Any thread.
  uint64_t socket_reads() const { return read_ahead_.reads(); }
  uint64_t socket_read_calls() const { return read_ahead_.system_reads(); }

 private:
  MqttLink(Options options, Handlers handlers);
  enum class Want { kRun, kPause, kStop };
  // The network thread: Loop, then lets go of the read-ahead.
  void Run();
  // Step, the DISCONNECT when want_ says so, reconnects with backoff.
  void Loop();
  // Network thread, connected: waits up to `timeout` for the socket or a
  // wake-up, then reads, writes and keeps alive. A libmosquitto result
  // (anything but MOSQ_ERR_SUCCESS: the connection is gone).
  int Step(std::chrono::milliseconds timeout);
  // Any thread: makes the network thread's poll return (once for any number
  // of calls until it has).
  void WakeLoop();
  static constexpr int kMaxReadsPerStep = 64;
  // Queues a publish; wakes nothing.
  Result<int> Enqueue(const std::string& topic, std::span<const uint8_t> payload, int qos,
                      std::optional<std::span<const uint8_t>> correlation_data, bool retain);
  // Network thread: the first connect of a v5 persistent session, which
  // carries its CONNECT properties (kept by libmosquitto for reconnects).
  int ConnectWithSessionExpiry();
  // Network thread: queues a clean DISCONNECT once per connection.
  void Close();
  // Network thread: ends the socket Close() kept (see lingering_fd_).
  void FinishClose();
  static void OnConnect(mosquitto*, void* self, int rc, int flags) noexcept;
  static void OnDisconnect(mosquitto*, void* self, int rc) noexcept;
  static void OnPublish(mosquitto*, void* self, int mid, int reason_code, const mosquitto_property*) noexcept;
  static void OnMessage(mosquitto*, void* self, const mosquitto_message* m, const mosquitto_property* props) noexcept;
  static void OnSubscribe(mosquitto*, void* self, int mid, int count, const int* granted) noexcept;
  static void OnUnsubscribe(mosquitto*, void* self, int mid) noexcept;
  // Sends the SUBSCRIBE (with `tag`, if not 0) and the UNSUBSCRIBE of
  // filters_mu_'s lists. Under filters_mu_; the network thread, or any
  // thread while connected.
  void SendFiltersLocked(uint32_t tag);

  const Options options_;
  const Handlers handlers_;
  struct Deleter {
    void operator()(mosquitto* m) const;
  };
  std::unique_ptr<mosquitto, Deleter> mosq_;
  std::atomic<bool> connected_{false};
  // The session's filters (Options' at first; Resubscribe), the pending
  // UNSUBSCRIBE's message id, the connection's subscription tag, and
  // whether a connection's CONNACK came (until its loss): all filters_mu_.
  std::mutex filters_mu_;
  std::vector<std::string> subscriptions_, unsubscriptions_;
  std::vector<std::string> sent_subscriptions_;  // of the SUBSCRIBE last sent, whose id is subscribe_mid_
  int subscribe_mid_ = -1, unsubscribe_mid_ = -1;
  uint32_t tag_ = 0;
  bool link_up_ = false;
  std::atomic<bool> unsubscribed_{true};
  std::atomic<bool> subscriptions_granted_{false};
  std::atomic<bool> ever_connected_{false};
  // What the owner (or a handler) wants of the connection. The network
  // thread acts on it between Steps; wake_ (with want_mu_) cuts its backoff
  // or pause short, WakeLoop its poll.
  std::atomic<Want> want_{Want::kRun};
  std::mutex want_mu_;
  std::condition_variable wake_;
  // A Resume that came before the pause it answers (guarded by want_mu_,
  // as is a handler's kPause turning into want_).
  bool resume_early_ = false;
  // A DISCONNECT is queued on the current connection: nothing read after it
  // is handed to on_message. Network thread only.
  bool closing_ = false;
  // A second descriptor of the socket being closed, taken when the
  // DISCONNECT is queued: libmosquitto close()s its own right after writing
  // the DISCONNECT, which with PUBLISHes still unread makes the kernel send
  // a reset, and mosquitto, seeing the reset when it next writes, drops the
  // connection before reading our last PUBACKs (it then sends those
  // messages again to the next session: stored twice). This descriptor
  // keeps the socket open so that it can be half-closed and drained to the
  // broker's own close instead. Network thread only.
  int lingering_fd_ = -1;
  // The network thread's wake-up (an eventfd), written by WakeLoop when
  // wake_pending_ was clear; the thread clears it before writing.
  int wake_fd_ = -1;
  std::atomic<bool> wake_pending_{false};
  // Publishes queued since the network thread last wrote (to cork a run of them).
  std::atomic<uint64_t> publishes_{0};
  uint64_t messages_read_ = 0;  // PUBLISHes handed to OnMessage; network thread only
  // The socket's reads by libmosquitto, a burst at a time (read_ahead.h).
  // Attached by Step to the current socket, detached once it is gone.
  // Network thread only.
  ReadAhead read_ahead_;
  // OnConnect took a successful CONNACK; Step turns connected_ on once the
  // read that took it has returned. Network thread only.
  bool connack_taken_ = false;
  std::atomic<bool> reconnect_asked_{false};  // Reconnect(): Step drops the connection
  // A handler asked for kBreakConnection: nothing more is read from this
  // socket. Network thread only; cleared once the socket is gone.
  bool broken_ = false;
  bool first_connect_in_loop_ = false;  // set by Start before the thread runs
  // The network thread is in (or about to enter) the blocking first connect.
  std::atomic<bool> in_blocking_connect_{false};
  std::thread thread_;  // the network thread; joined by Stop()
};

}  // namespace seqrelay
