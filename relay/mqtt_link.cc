#include "mqtt_link.h"

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <sys/socket.h>

#include <mutex>

#include "log.h"

namespace seqrelay {
namespace {

void InitLibraryOnce() {
  static std::once_flag once;
  std::call_once(once, [] { mosquitto_lib_init(); });
}

}  // namespace

void MqttLink::Deleter::operator()(mosquitto* m) const { mosquitto_destroy(m); }

MqttLink::MqttLink(Options options, Handlers handlers) : options_(std::move(options)), handlers_(std::move(handlers)) {}

Result<std::unique_ptr<MqttLink>> MqttLink::Start(Options options, Handlers handlers) {
  InitLibraryOnce();
  std::unique_ptr<MqttLink> link(new MqttLink(std::move(options), std::move(handlers)));
  const Options& o = link->options_;
  link->mosq_.reset(mosquitto_new(o.client_id.c_str(), o.clean_session, link.get()));
  if (!link->mosq_) return Status::Error(fmt::format("{}: cannot create MQTT client: {}", o.name, strerror(errno)));
  mosquitto* m = link->mosq_.get();
  mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
  mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, o.mqtt_v5 ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
  // Outgoing QoS 1 messages in flight at once; beyond this libmosquitto
  // queues them. 20 (the default) caps a loopback relay near 20 / RTT.
  mosquitto_max_inflight_messages_set(m, 1000);
  mosquitto_reconnect_delay_set(m, 1, 30, true);
  if (!o.user.empty()) {
    int rc = mosquitto_username_pw_set(m, o.user.c_str(), o.password.empty() ? nullptr : o.password.c_str());
    if (rc != MOSQ_ERR_SUCCESS) return Status::Error(fmt::format("{}: {}", o.name, mosquitto_strerror(rc)));
  }
  mosquitto_connect_with_flags_callback_set(m, &MqttLink::OnConnect);
  mosquitto_disconnect_callback_set(m, &MqttLink::OnDisconnect);
  mosquitto_publish_v5_callback_set(m, &MqttLink::OnPublish);
  mosquitto_message_v5_callback_set(m, &MqttLink::OnMessage);
  mosquitto_subscribe_callback_set(m, &MqttLink::OnSubscribe);

  // connect_async only records the target when the broker is not there yet;
  // the loop thread keeps trying.
  int rc = mosquitto_connect_async(m, o.host.c_str(), o.port, o.keepalive_s);
  if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_ERRNO) {
    return Status::Error(fmt::format("{}: connect to {}:{}: {}", o.name, o.host, o.port, mosquitto_strerror(rc)));
  }
  if (rc == MOSQ_ERR_ERRNO) {
    LogWarn("{}: mosquitto at {}:{} not reachable yet ({}); retrying", o.name, o.host, o.port, strerror(errno));
  }
  rc = mosquitto_loop_start(m);
  if (rc != MOSQ_ERR_SUCCESS) return Status::Error(fmt::format("{}: loop start: {}", o.name, mosquitto_strerror(rc)));
  link->started_ = true;
  return link;
}

MqttLink::~MqttLink() { Stop(); }

Result<int> MqttLink::Publish(const std::string& topic, std::span<const uint8_t> payload, int qos,
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
  if (rc == MOSQ_ERR_SUCCESS || (rc == MOSQ_ERR_NO_CONN && qos > 0)) return mid;
  return Status::Error(fmt::format("publish on '{}': {}", topic, mosquitto_strerror(rc)));
}

void MqttLink::Disconnect() { mosquitto_disconnect(mosq_.get()); }

void MqttLink::Pause() {
  if (paused_.exchange(true)) return;
  // Sets the state to "disconnecting": once the DISCONNECT is written (or
  // the socket fails), mosquitto_loop_forever returns instead of reconnecting.
  mosquitto_disconnect(mosq_.get());
}

void MqttLink::Resume() {
  if (!started_ || !paused_) return;
  mosquitto* m = mosq_.get();
  // The network thread ends by itself after the DISCONNECT; join it (the
  // write to the wake-up pipe only hurries a thread still in select()).
  mosquitto_loop_stop(m, false);
  paused_ = false;
  int rc = mosquitto_reconnect_async(m);
  if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_ERRNO) {
    LogError("{}: reconnect after a pause: {}", options_.name, mosquitto_strerror(rc));
  }
  rc = mosquitto_loop_start(m);  // an unreachable broker is retried by the loop, as at start
  if (rc != MOSQ_ERR_SUCCESS) {
    LogError("{}: loop start after a pause: {}", options_.name, mosquitto_strerror(rc));
    if (handlers_.on_fatal) handlers_.on_fatal(fmt::format("cannot restart the network thread: {}", mosquitto_strerror(rc)));
  }
}

void MqttLink::Stop() {
  if (!started_) return;
  started_ = false;
  Disconnect();
  mosquitto_loop_stop(mosq_.get(), false);
  connected_ = false;
}

void MqttLink::OnConnect(mosquitto* m, void* obj, int rc, int flags) noexcept {
  auto* self = static_cast<MqttLink*>(obj);
  const Options& o = self->options_;
  if (rc != 0) {
    std::string why = mosquitto_connack_string(rc);
    LogError("{}: mosquitto at {}:{} refused the connection: {}", o.name, o.host, o.port, why);
    // 2: identifier rejected, 4: bad user name or password, 5: not authorised.
    if ((rc == 2 || rc == 4 || rc == 5) && self->handlers_.on_fatal) self->handlers_.on_fatal(why);
    return;
  }
  const bool again = self->ever_connected_.exchange(true);
  if (self->handlers_.on_connect) self->handlers_.on_connect((flags & 1) != 0);
  LogInfo("{}: {} mosquitto at {}:{} as '{}'{}", o.name, again ? "reconnected to" : "connected to", o.host, o.port,
          o.client_id, (flags & 1) ? " (session present)" : "");
  if (!o.subscriptions.empty()) {
    // One SUBSCRIBE for all filters, so one SUBACK says we are listening.
    std::vector<char*> filters;
    for (const auto& f : o.subscriptions) filters.push_back(const_cast<char*>(f.c_str()));
    int sub_rc = mosquitto_subscribe_multiple(m, nullptr, static_cast<int>(filters.size()), filters.data(), 1, 0,
                                              nullptr);
    if (sub_rc != MOSQ_ERR_SUCCESS) LogError("{}: subscribe: {}", o.name, mosquitto_strerror(sub_rc));
  }
  self->connected_ = true;
}

void MqttLink::OnDisconnect(mosquitto*, void* obj, int rc) noexcept {
  auto* self = static_cast<MqttLink*>(obj);
  self->connected_ = false;
  if (rc != 0) {
    LogWarn("{}: lost the connection to mosquitto at {}:{} ({}); reconnecting", self->options_.name,
            self->options_.host, self->options_.port, mosquitto_strerror(rc));
  }
}

void MqttLink::OnPublish(mosquitto*, void* obj, int mid, int reason_code, const mosquitto_property*) noexcept {
  auto* self = static_cast<MqttLink*>(obj);
  if (self->handlers_.on_published) self->handlers_.on_published(mid, reason_code);
}

void MqttLink::OnSubscribe(mosquitto*, void* obj, int, int count, const int* granted) noexcept {
  auto* self = static_cast<MqttLink*>(obj);
  const auto& subs = self->options_.subscriptions;
  for (int i = 0; i < count && i < static_cast<int>(subs.size()); ++i) {
    if (granted[i] > 2) {
      LogError("{}: mosquitto refused the subscription to '{}' (check its ACL)", self->options_.name, subs[i]);
    } else if (granted[i] < 1) {
      LogWarn("{}: '{}' granted at QoS {} only: the broker will not queue it while the relay is away",
              self->options_.name, subs[i], granted[i]);
    }
  }
  LogInfo("{}: subscribed to {} filter(s)", self->options_.name, count);
}

void MqttLink::OnMessage(mosquitto*, void* obj, const mosquitto_message* m, const mosquitto_property* props) noexcept {
  auto* self = static_cast<MqttLink*>(obj);
  if (!self->handlers_.on_message) return;
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
  }
  if (response_topic) in.response_topic = response_topic;
  if (correlation) in.correlation_data = std::span(static_cast<const uint8_t*>(correlation), correlation_len);
  try {
    switch (self->handlers_.on_message(in)) {
      case AfterMessage::kReadOn:
        break;
      case AfterMessage::kPause:
        self->Pause();
        break;
      case AfterMessage::kBreakConnection:
        // The loop sees the dead socket on its next read or write and
        // reconnects; nothing queued (the PUBACK) is sent on this one.
        shutdown(mosquitto_socket(self->mosq_.get()), SHUT_RDWR);
        break;
    }
  } catch (const std::exception& e) {
    LogError("{}: message on '{}' not handled: {}", self->options_.name, in.topic, e.what());
  }
  free(response_topic);  // the read functions hand out copies
  free(correlation);
}

}  // namespace seqrelay
