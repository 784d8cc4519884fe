#include "broker/mqtt_link.h"

#include <fmt/ranges.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <poll.h>
#include <sys/eventfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <thread>
#include <utility>

#include "core/log.h"
#include "core/thread_interrupt.h"

namespace seqrelay {
namespace {

void InitLibraryOnce() {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
}

// A CONNACK code that trying again cannot change: a setting to fix. (A
// server busy or unavailable, or a code we do not know, is tried again.)
bool IsLoginRefusal(int rc, bool mqtt_v5) {
  if (!mqtt_v5) {
    return rc == CONNACK_REFUSED_IDENTIFIER_REJECTED || rc == CONNACK_REFUSED_BAD_USERNAME_PASSWORD ||
           rc == CONNACK_REFUSED_NOT_AUTHORIZED;
  }
  switch (rc) {
    case MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION:
    case MQTT_RC_CLIENTID_NOT_VALID:
    case MQTT_RC_BAD_USERNAME_OR_PASSWORD:
    case MQTT_RC_NOT_AUTHORIZED:
    case MQTT_RC_BANNED:
    case MQTT_RC_BAD_AUTHENTICATION_METHOD:
      return true;
    default:
      return false;
  }
}

}  // namespace

void MqttLink::Deleter::operator()(mosquitto* m) const { mosquitto_destroy(m); }

MqttLink::MqttLink(Options options, Handlers handlers)
    : options_(std::move(options)),
      handlers_(std::move(handlers)),
      subscriptions_(options_.subscriptions),
      unsubscriptions_(options_.unsubscriptions),
      unsubscribed_(unsubscriptions_.empty()) {}

Result<std::unique_ptr<MqttLink>> MqttLink::Start(Options options, Handlers handlers) {
  InitLibraryOnce();
  std::unique_ptr<MqttLink> link(new MqttLink(std::move(options), std::move(handlers)));
  const Options& o = link->options_;
  link->wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (link->wake_fd_ < 0) return Status::Error(fmt::format("{}: eventfd: {}", o.name, strerror(errno)));
  link->mosq_.reset(mosquitto_new(o.client_id.c_str(), o.clean_session, link.get()));
  if (!link->mosq_) return Status::Error(fmt::format("{}: cannot create MQTT client: {}", o.name, strerror(errno)));
  mosquitto* m = link->mosq_.get();
  mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
  mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, o.mqtt_v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
  // Outgoing QoS 1 messages in flight at once; beyond this libmosquitto
  // queues them. 20 (the default) caps a loopback relay near 20 / RTT.
  mosquitto_max_inflight_messages_set(m, 1000);
  // Publish() from other threads while Loop() runs: packets are then only
  // queued (Publish wakes the loop to write them), never written from two
  // threads.
  mosquitto_threaded_set(m, true);
  if (!o.user.empty()) {
    int rc = mosquitto_username_pw_set(m, o.user.c_str(), o.password.empty() ? nullptr : o.password.c_str());
    if (rc != MOSQ_ERR_SUCCESS) return Status::Error(fmt::format("{}: {}", o.name, mosquitto_strerror(rc)));
  }
  mosquitto_connect_with_flags_callback_set(m, &MqttLink::OnConnect);
  mosquitto_disconnect_callback_set(m, &MqttLink::OnDisconnect);
  mosquitto_publish_v5_callback_set(m, &MqttLink::OnPublish);
  mosquitto_message_v5_callback_set(m, &MqttLink::OnMessage);
  mosquitto_subscribe_callback_set(m, &MqttLink::OnSubscribe);
  mosquitto_unsubscribe_callback_set(m, &MqttLink::OnUnsubscribe);

  MqttLink* raw = link.get();
  if (o.mqtt_v5 && !o.clean_session) {
    // Its CONNECT needs properties, which libmosquitto 2.0 takes only in a
    // blocking connect: the network thread makes it, and Stop interrupts it.
    link->first_connect_in_loop_ = true;
    link->thread_ = std::thread([raw] { raw->Run(); });
    return link;
  }
  // connect_async only records the target when the broker is not there yet;
  // the loop keeps trying.
  int rc = mosquitto_connect_async(m, o.host.c_str(), o.port, o.keepalive_s);
  if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_ERRNO) {
    return Status::Error(fmt::format("{}: connect to {}:{}: {}", o.name, o.host, o.port, mosquitto_strerror(rc)));
  }
  if (rc == MOSQ_ERR_ERRNO) {
    LogWarn("{}: mosquitto at {}:{} not reachable yet ({}); retrying", o.name, o.host, o.port, strerror(errno));
  }
  link->thread_ = std::thread([raw] { raw->Run(); });
  return link;
}

int MqttLink::ConnectWithSessionExpiry() {
  // Session Expiry Interval 0xFFFFFFFF: the broker keeps the session (and
  // queues QoS 1 messages for it) until the client comes back, as it does
  // for a 3.1.1 client with clean session off. libmosquitto keeps the
  // properties and sends them again on every reconnect.
  //
  // The connect blocks: to a host that drops SYNs (gone from the network,
  // or a listener whose queue is full) for the kernel's SYN retries, about
  // two minutes. Stop interrupts it (connect fails with EINTR), and, as
  // libmosquitto has recorded the target and the properties before it
  // connects, the next try is an asynchronous reconnect. Stop stores kStop
  // before it reads in_blocking_connect_, and this stores the flag before
  // it reads want_: one of the two sees the other.
  in_blocking_connect_.store(true);
  if (want_.load() == Want::kStop) {
    in_blocking_connect_.store(false);
    return MOSQ_ERR_NO_CONN;
  }
  mosquitto_property* props = nullptr;
  mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL, UINT32_MAX);
  const int rc = mosquitto_connect_bind_v5(mosq_.get(), options_.host.c_str(), options_.port, options_.keepalive_s,
                                           nullptr, props);
  const int error = errno;
  in_blocking_connect_.store(false);
  mosquitto_property_free_all(&props);
  if (want_.load() == Want::kStop) return rc;  // interrupted, or done meanwhile: the loop ends it
  errno = error;
  if (rc == MOSQ_ERR_ERRNO) {
    LogWarn("{}: mosquitto at {}:{} not reachable yet ({}); retrying", options_.name, options_.host, options_.port,
            strerror(errno));
  } else if (rc != MOSQ_ERR_SUCCESS) {
    LogWarn("{}: connect to {}:{}: {}; retrying", options_.name, options_.host, options_.port, mosquitto_strerror(rc));
  }
  return rc;
}

std::optional<std::string> MqttLink::UserProperty(const InboundMessage& m, std::string_view name) {
  std::optional<std::string> found;
  bool skip_first = false;
  for (const mosquitto_property* p = m.properties; p != nullptr && !found; skip_first = true) {
    char* key = nullptr;
    char* value = nullptr;
    p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &key, &value, skip_first);
    if (p != nullptr && key != nullptr && value != nullptr && name == key) found = value;
    free(key);  // the read functions hand out copies
    free(value);
  }
  return found;
}

void MqttLink::Run() {
  AcceptInterrupts();  // Stop's, whatever the mask of the thread that made the link
  Loop();
  read_ahead_.Detach();  // on the thread that attached it
}

void MqttLink::Loop() {
  using std::chrono::milliseconds;
  constexpr milliseconds kMaxReconnectDelay(5000);
  mosquitto* m = mosq_.get();
  milliseconds backoff(1000);
  bool connecting = !first_connect_in_loop_;  // a connect is under way (or the link is up) on the current socket
  bool first = first_connect_in_loop_;        // the first connect is this loop's to make
  bool held_back = false;                     // may_connect() said no: the next try is no failure's
  std::optional<std::chrono::steady_clock::time_point> stop_deadline;
  for (;;) {
    const Want want = want_.load();
    if (want != Want::kRun) Close();
    if (want == Want::kStop && mosquitto_socket(m) >= 0) {
      // A DISCONNECT that cannot be written (a broker that stopped reading)
      // must not hold the stop: 2 s, then the socket is shut down. Before
      // the CONNACK (a connect that may never complete) there is nothing
      // to flush: shut down at once.
      if (!stop_deadline) {
        const auto flush = connected_ ? std::chrono::seconds(2) : std::chrono::seconds(0);
        stop_deadline = std::chrono::steady_clock::now() + flush;
      }
      if (std::chrono::steady_clock::now() > *stop_deadline) shutdown(mosquitto_socket(m), SHUT_RDWR);
    }
    if (mosquitto_socket(m) < 0) {
      // No connection: closed on purpose, lost, or never made. The bytes
      // read ahead were the old socket's; a new one may get its number.
      read_ahead_.Detach();
      FinishClose();
      broken_ = false;
      connected_ = false;
      connack_taken_ = false;
      reconnect_asked_ = false;  // asked of a connection that is gone already
      closing_ = false;
      if (want == Want::kStop) return;
      std::unique_lock lock(want_mu_);
      if (want == Want::kPause) {
        wake_.wait(lock, [&] { return want_.load() != Want::kPause; });
        backoff = milliseconds(1000);
        if (want_.load() == Want::kStop) return;
      } else if (!connecting && !first && !held_back) {
        // Lost, or a connect failed: wait, then try again (1 s doubling to
        // 5 s: a try is one connect to a broker nearby, and the relay is
        // back within 5 s of mosquitto's return, not up to 30 s after it).
        wake_.wait_for(lock, backoff, [&] { return want_.load() != Want::kRun; });
        backoff = std::min(backoff * 2, kMaxReconnectDelay);
        if (want_.load() != Want::kRun) continue;
      }
      if (handlers_.may_connect && !handlers_.may_connect()) {
        // Not ours to connect now (the relay's lease has lapsed): asked
        // again every 100 ms, and once allowed, connected at once. The
        // backoff is for a broker that fails; it must not grow while we
        // stay away by choice (it did: the intake came back up to 30 s, the
        // cap then, after the lease).
        held_back = true;
        backoff = milliseconds(1000);
        wake_.wait_for(lock, milliseconds(100), [&] { return want_.load() == Want::kStop; });
        continue;
      }
      held_back = false;
      lock.unlock();
      const int rc = first ? ConnectWithSessionExpiry() : mosquitto_reconnect_async(m);
      connecting = rc == MOSQ_ERR_SUCCESS;
      first = false;  // the target and the properties are recorded: reconnects from now
      continue;
    }
    if (closing_) {
      // Write what is queued (the PUBACKs, then the DISCONNECT, after which
      // libmosquitto closes the socket) and read nothing more: a PUBLISH read
      // once the DISCONNECT is queued is a protocol error to libmosquitto,
      // which then closes the socket at once, the queued PUBACKs unsent.
      pollfd writable{mosquitto_socket(m), POLLOUT, 0};
      poll(&writable, 1, 100);
      mosquitto_loop_write(m, 1);
      continue;
    }
    const int rc = Step(std::chrono::milliseconds(100));
    if (rc == MOSQ_ERR_SUCCESS) {
      if (connected_) backoff = milliseconds(1000);
      continue;
    }
    // The socket failed or was closed (after our DISCONNECT, or by the broker).
    connecting = false;
    if (rc == MOSQ_ERR_NOMEM) {
      LogError("{}: out of memory in the MQTT loop", options_.name);
      if (handlers_.on_fatal) handlers_.on_fatal("out of memory");
      return;
    }
    Close();  // if the socket is still open: closed before a reconnect, nothing more taken from it
  }
}

int MqttLink::Step(std::chrono::milliseconds timeout) {
  // mosquitto_loop does the same with pselect on the socket and an internal
  // socket pair, which libmosquitto writes a byte to for every packet it
  // queues and mosquitto_loop reads back a byte per call. Our own wake-up
  // (wake_fd_) is written once per burst of publishes, and the socket pair
  // is left unread (its writes fail without blocking once it is full).
  mosquitto* m = mosq_.get();
  const uint64_t read_before = messages_read_;
  const int socket = mosquitto_socket(m);
  if (read_ahead_.fd() != socket) read_ahead_.Attach(socket);
  // Bytes read ahead are bytes to read now, whatever poll says.
  const bool read_ahead = read_ahead_.pending() > 0;
  pollfd fds[2] = {{socket, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  if (mosquitto_want_write(m)) fds[0].events |= POLLOUT;
  if (poll(fds, 2, read_ahead ? 0 : static_cast<int>(timeout.count())) < 0) {
    return errno == EINTR ? MOSQ_ERR_SUCCESS : MOSQ_ERR_ERRNO;
  }
  if (fds[1].revents & POLLIN) {
    eventfd_t ignored;
    eventfd_read(wake_fd_, &ignored);
    // Cleared before the write below: a publish queued after it wakes us
    // again. Acquire: a publish that found the flag still set queued its
    // packet before, and the write below sees it.
    wake_pending_.exchange(false, std::memory_order_acq_rel);
  }
  if (read_ahead || (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
    // mosquitto_loop_read reads one packet per call on the intake
    // (libmosquitto 2.0 reads up to one per QoS 1 message of ours awaiting
    // its PUBACK: none there, and on the output link it may stop after one
    // too), so a handler's kPause or kBreakConnection is seen before
    // anything more is read. Read on while the packets are messages (the
    // broker sends them in runs, up to its in-flight window) or more bytes
    // are read ahead (a run of PUBACKs): each further read saves a poll.
    for (int i = 0; i < kMaxReadsPerStep && want_.load() == Want::kRun && !closing_ && !broken_; ++i) {
      const uint64_t before = messages_read_;
      if (const int rc = mosquitto_loop_read(m, 1); rc != MOSQ_ERR_SUCCESS) return rc;
      if (mosquitto_socket(m) < 0 || (messages_read_ == before && read_ahead_.pending() == 0)) break;
    }
  }
  if (std::exchange(connack_taken_, false) && mosquitto_socket(m) >= 0) {
    // libmosquitto queues its resends of the messages it holds (those not
    // acknowledged on the old connection) after our on_connect returns and
    // before the read that took the CONNACK ends. Connected from here: a
    // publish made once connected() is true goes after them, in the order
    // it was made. (Queued between the CONNECT and here, it went first.)
    connected_ = true;
    if (handlers_.on_connected) handlers_.on_connected();
  }
  if (broken_ || reconnect_asked_.exchange(false)) return MOSQ_ERR_CONN_LOST;  // the caller closes and reconnects
  if (const int fd = mosquitto_socket(m); fd >= 0 && mosquitto_want_write(m)) {
    // The PUBACKs the reads queued, the publishes of other threads, and
    // anything left over from a write the socket could not take at once.
    // libmosquitto writes each packet with a write of its own, which with
    // TCP_NODELAY is a segment of its own for the broker to take in; corked,
    // a batch's frames (a run's PUBACKs) leave in as few segments as fit,
    // at once when uncorked. Not worth its two calls for a single packet.
    const uint64_t due = (messages_read_ - read_before) + publishes_.exchange(0, std::memory_order_relaxed);
    const int on = 1, off = 0;
    if (due > 1) setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof on);
    const int rc = mosquitto_loop_write(m, 1);
    if (due > 1 && mosquitto_socket(m) == fd) setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof off);
    if (rc != MOSQ_ERR_SUCCESS) return rc;
  }
  return mosquitto_socket(m) >= 0 ? mosquitto_loop_misc(m) : MOSQ_ERR_NO_CONN;
}

void MqttLink::WakeLoop() {
  if (!wake_pending_.exchange(true)) eventfd_write(wake_fd_, 1);
}

void MqttLink::Close() {
  const int fd = mosquitto_socket(mosq_.get());
  if (closing_ || fd < 0) return;
  closing_ = true;
  lingering_fd_ = dup(fd);  // -1 if out of descriptors: then closed as libmosquitto does
  mosquitto_disconnect(mosq_.get());
}

void MqttLink::FinishClose() {
  if (lingering_fd_ < 0) return;
  // Everything we wrote (the PUBACKs, the DISCONNECT) goes before our FIN;
  // the broker reads it, closes its end, and whatever it sent meanwhile is
  // read here and dropped (not acknowledged: it comes again). Then nothing
  // is left unread, so closing sends no reset. At most 1 s: a broker that
  // neither closes nor fails gets the reset after all.
  const int fd = std::exchange(lingering_fd_, -1);
  shutdown(fd, SHUT_WR);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd readable{fd, POLLIN, 0};
    if (left.count() <= 0 || poll(&readable, 1, static_cast<int>(left.count())) <= 0) break;
    char sink[4096];
    const ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) break;  // the broker's close, or a failure
  }
  close(fd);
}

MqttLink::~MqttLink() {
  Stop();
  if (lingering_fd_ >= 0) close(lingering_fd_);  // the loop ended before finishing a close
  if (wake_fd_ >= 0) close(wake_fd_);
}

Result<int> MqttLink::Publish(const std::string& topic, std::span<const uint8_t> payload, int qos,
                              std::optional<std::span<const uint8_t>> correlation_data, bool retain) {
  Result<int> mid = Enqueue(topic, payload, qos, correlation_data, retain);
  WakeLoop();
  return mid;
}

Result<int> MqttLink::Queue(const std::string& topic, std::span<const uint8_t> payload, int qos) {
  return Enqueue(topic, payload, qos, std::nullopt, false);
}

Result<int> MqttLink::Enqueue(const std::string& topic, std::span<const uint8_t> payload, int qos,
                              std::optional<std::span<const uint8_t>> correlation_data, bool retain) {
  int mid = 0;
  mosquitto_property* props = nullptr;
  if (correlation_data) {
    mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, correlation_data->data(),
                                  static_cast<uint16_t>(correlation_data->size()));
  }
  int rc = mosquitto_publish_v5(mosq_.get(), &mid, topic.c_str(), static_cast<int>(payload.size()), payload.data(),
                                qos, retain, props);
  mosquitto_property_free_all(&props);
  // NO_CONN: the message is queued and goes out after reconnect (QoS >= 1).
  // Retrying here would send it twice.
  if (rc == MOSQ_ERR_SUCCESS) publishes_.fetch_add(1, std::memory_order_relaxed);
  if (rc == MOSQ_ERR_SUCCESS || (rc == MOSQ_ERR_NO_CONN && qos > 0)) return mid;
  return Status::Error(fmt::format("publish on '{}': {}", topic, mosquitto_strerror(rc)));
}

void MqttLink::Disconnect() {
  Want run = Want::kRun, pause = Want::kPause;
  if (want_.compare_exchange_strong(run, Want::kStop) || want_.compare_exchange_strong(pause, Want::kStop)) {
    std::lock_guard lock(want_mu_);
    wake_.notify_all();
    WakeLoop();
  }
}

void MqttLink::Resume() {
  std::lock_guard lock(want_mu_);
  Want pause = Want::kPause;
  if (want_.compare_exchange_strong(pause, Want::kRun)) {
    wake_.notify_all();
  } else if (want_.load() == Want::kRun) {
    resume_early_ = true;  // the handler's kPause is on its way: it is cancelled
  }
}

void MqttLink::Stop() {
  Disconnect();
  // A blocking first connect is interrupted, again every 50 ms while it
  // lasts (a signal sent before the thread enters connect(2) is spent).
  if (thread_.joinable()) {
    while (in_blocking_connect_.load()) {
      InterruptThread(thread_);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  // The loop ends once the DISCONNECT is written (or the socket fails).
  if (thread_.joinable()) thread_.join();
  connected_ = false;
}

void MqttLink::OnConnect(mosquitto*, void* obj, int rc, int flags) noexcept {
  auto* self = static_cast<MqttLink*>(obj);
  const Options& o = self->options_;
  if (rc != 0) {
    // An MQTT v5 link's code is a v5 reason code (PROTOCOL: the links are
    // v5 since the intake's session numbers), 3.1.1's otherwise.
    std::string why = o.mqtt_v5 ? mosquitto_reason_string(rc) : mosquitto_connack_string(rc);
    LogError("{}: mosquitto at {}:{} refused the connection: {}", o.name, o.host, o.port, why);
    if (IsLoginRefusal(rc, o.mqtt_v5) && self->handlers_.on_fatal) self->handlers_.on_fatal(why);
    return;
  }
  const bool again = self->ever_connected_.exchange(true);
  if (self->handlers_.on_connect) self->handlers_.on_connect((flags & 1) != 0);
  LogInfo("{}: {} mosquitto at {}:{} as '{}'{}", o.name, again ? "reconnected to" : "connected to", o.host, o.port,
          o.client_id, (flags & 1) ? " (session present)" : "");
  {
    const uint32_t tag = o.mqtt_v5 && self->handlers_.subscription_tag ? self->handlers_.subscription_tag() : 0;
    std::lock_guard lock(self->filters_mu_);
    self->tag_ = tag;
    self->link_up_ = true;
    // A new session holds no filters: nothing to unsubscribe it from.
    if ((flags & 1) == 0) self->unsubscribed_ = true;
    self->SendFiltersLocked(tag);
  }
  self->connack_taken_ = true;  // connected once the read that took it ends (Step)
}

void MqttLink::OnDisconnect(mosquitto*, void* obj, int rc) noexcept {
  auto* self = static_cast<MqttLink*>(obj);
  self->connected_ = false;
  {
    std::lock_guard lock(self->filters_mu_);
    self->link_up_ = false;
  }
  if (rc != 0) {
    LogWarn("{}: lost the connection to mosquitto at {}:{} ({}); reconnecting", self->options_.name,
            self->options_.host, self->options_.port, mosquitto_strerror(rc));
  }
}

void MqttLink::OnPublish(mosquitto*, void* obj, int mid, int reason_code, const mosquitto_property*) noexcept {
  auto* self = static_cast<MqttLink*>(obj);
  if (self->handlers_.on_published) self->handlers_.on_published(mid, reason_code);
}

void MqttLink::SendFiltersLocked(uint32_t tag) {
  mosquitto* m = mosq_.get();
  const std::string& name = options_.name;
  if (!subscriptions_.empty()) {
    // One SUBSCRIBE for all filters, so one SUBACK says we are listening.
    std::vector<char*> filters;
    for (const auto& f : subscriptions_) filters.push_back(const_cast<char*>(f.c_str()));
    mosquitto_property* props = nullptr;
    if (tag != 0) mosquitto_property_add_varint(&props, MQTT_PROP_SUBSCRIPTION_IDENTIFIER, tag);
    const int rc = mosquitto_subscribe_multiple(m, &subscribe_mid_, static_cast<int>(filters.size()),
                                                filters.data(), 1, 0, props);
    sent_subscriptions_ = subscriptions_;
    mosquitto_property_free_all(&props);
    if (rc != MOSQ_ERR_SUCCESS) LogError("{}: subscribe: {}", name, mosquitto_strerror(rc));
  }
  if (!unsubscribed_ && !unsubscriptions_.empty()) {
    // The broker keeps a session's subscriptions with it: one this link no
    // longer makes would go on delivering. After the SUBSCRIBE: a topic of
    // both is never without a subscription. (Queued messages still come.)
    std::vector<char*> filters;
    for (const auto& f : unsubscriptions_) filters.push_back(const_cast<char*>(f.c_str()));
    const int rc = mosquitto_unsubscribe_multiple(m, &unsubscribe_mid_, static_cast<int>(filters.size()),
                                                  filters.data(), nullptr);
    if (rc != MOSQ_ERR_SUCCESS) {
      LogError("{}: unsubscribe: {}", name, mosquitto_strerror(rc));  // sent again at the next connect
    } else {
      LogInfo("{}: unsubscribing the session from '{}'", name, fmt::join(unsubscriptions_, "' '"));
    }
  }
}

void MqttLink::Resubscribe(std::vector<std::string> subscribe, std::vector<std::string> unsubscribe) {
  std::lock_guard lock(filters_mu_);
  subscriptions_ = std::move(subscribe);
  unsubscriptions_ = std::move(unsubscribe);
  unsubscribe_mid_ = -1;
  unsubscribed_ = unsubscriptions_.empty();
  // Not connected: the next connect sends them. (Connected but about to
  // lose it: the same; libmosquitto refuses packets without a socket.)
  if (link_up_) {
    SendFiltersLocked(tag_);
    WakeLoop();
  }
}

void MqttLink::OnUnsubscribe(mosquitto*, void* obj, int mid) noexcept {
  auto* self = static_cast<MqttLink*>(obj);
  std::lock_guard lock(self->filters_mu_);
  if (mid != self->unsubscribe_mid_) return;  // of an earlier list
  self->unsubscribed_ = true;
  LogInfo("{}: unsubscribed the session from '{}'", self->options_.name, fmt::join(self->unsubscriptions_, "' '"));
}

void MqttLink::OnSubscribe(mosquitto*, void* obj, int mid, int count, const int* granted) noexcept {
  auto* self = static_cast<MqttLink*>(obj);
  std::vector<std::string> subs;
  {
    std::lock_guard lock(self->filters_mu_);
    if (mid != self->subscribe_mid_) return;  // of an earlier list: the last one's SUBACK follows
    subs = self->sent_subscriptions_;
  }
  bool granted_all = true;
  for (int i = 0; i < count && i < static_cast<int>(subs.size()); ++i) {
    granted_all = granted_all && granted[i] <= 2;
    if (granted[i] > 2) {
      LogError("{}: mosquitto refused the subscription to '{}' (check its ACL)", self->options_.name, subs[i]);
    } else if (granted[i] < 1) {
      LogWarn("{}: '{}' granted at QoS {} only: the broker will not queue it while the relay is away",
              self->options_.name, subs[i], granted[i]);
    }
  }
  self->subscriptions_granted_ = granted_all;
  LogInfo("{}: subscribed to {} filter(s)", self->options_.name, count);
  if (self->handlers_.on_subscribed) self->handlers_.on_subscribed();
}

void MqttLink::OnMessage(mosquitto*, void* obj, const mosquitto_message* m, const mosquitto_property* props) noexcept {
  auto* self = static_cast<MqttLink*>(obj);
  ++self->messages_read_;
  // Read after our DISCONNECT was queued: its PUBACK will never be sent, so
  // the broker keeps it and sends it again. Not ours to take.
  if (!self->handlers_.on_message || self->closing_) return;
  InboundMessage in;
  in.topic = m->topic;
  in.payload = {static_cast<const uint8_t*>(m->payload), static_cast<std::size_t>(m->payloadlen)};
  in.qos = m->qos;
  in.retain = m->retain;
  in.mid = static_cast<uint16_t>(m->mid);
  char* response_topic = nullptr;
  void* correlation = nullptr;
  uint16_t correlation_len = 0;
  if (props != nullptr) {
    mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &response_topic, false);
    mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &correlation, &correlation_len, false);
    mosquitto_property_read_varint(props, MQTT_PROP_SUBSCRIPTION_IDENTIFIER, &in.subscription_tag, false);
  }
  if (response_topic) in.response_topic = response_topic;
  if (correlation) in.correlation_data = std::span(static_cast<const uint8_t*>(correlation), correlation_len);
  in.properties = props;
  try {
    switch (self->handlers_.on_message(in)) {
      case AfterMessage::kReadOn:
        break;
      case AfterMessage::kPause: {
        // On the network thread, right after this message's PUBACK: see Loop.
        std::unique_lock lock(self->want_mu_);
        if (std::exchange(self->resume_early_, false)) break;  // resumed before it could pause
        Want run = Want::kRun;
        if (self->want_.compare_exchange_strong(run, Want::kPause)) {
          lock.unlock();
          self->Close();
        }
        break;
      }
      case AfterMessage::kBreakConnection:
        // Nothing more is read (a shut-down socket still hands out what it
        // had buffered): Step returns at once, the loop closes the socket
        // and reconnects; nothing queued (the PUBACK) is sent on this one.
        self->broken_ = true;
        shutdown(mosquitto_socket(self->mosq_.get()), SHUT_RDWR);
        break;
    }
  } catch (const std::bad_alloc&) {
    // Memory ran out in a handler's own failure path: its PUBACK is queued
    // already, and only a broken connection keeps it from the broker,
    // which then sends the message again.
    self->broken_ = true;
    shutdown(mosquitto_socket(self->mosq_.get()), SHUT_RDWR);
    LogErrorNoThrow("{}: message on '{}' not handled: memory ran out; breaking the connection so that it comes again",
                    self->options_.name, in.topic);
  } catch (const std::exception& e) {
    // The handlers deal with their own failures (Relay::OnIntake); this is
    // a last guard for the network thread.
    LogError("{}: message on '{}' not handled: {}", self->options_.name, in.topic, e.what());
  }
  free(response_topic);  // the read functions hand out copies
  free(correlation);
}

}  // namespace seqrelay
