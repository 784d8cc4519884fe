#include "mqtt_client.h"

#include <algorithm>
#include <cstdio>

#include <mosquitto.h>
#include <mqtt_protocol.h>

#include <sys/socket.h>

#include <stdexcept>

#include "process.h"

namespace seqtest {

std::string MqttField(std::string_view s) {
  std::string out;
  out += static_cast<char>(s.size() >> 8);
  out += static_cast<char>(s.size() & 0xFF);
  out += s;
  return out;
}

std::string MqttPacket(uint8_t type, const std::string& body) {
  std::string out(1, static_cast<char>(type));
  std::size_t n = body.size();
  do {  // remaining length, 7 bits a byte
    const uint8_t byte = n % 128;
    n /= 128;
    out += static_cast<char>(n > 0 ? byte | 0x80 : byte);
  } while (n > 0);
  return out + body;
}

std::string MqttConnectBody(const std::string& client_id, const std::string& user, const std::string& password) {
  const char flags = user.empty() ? '\x02' : '\xC2';  // clean session; plus username and password
  std::string body = MqttField("MQTT") + '\x04' + flags + std::string("\0\x3c", 2) + MqttField(client_id);
  if (!user.empty()) body += MqttField(user) + MqttField(password);
  return body;
}

MqttClient::MqttClient(int port, const std::string& id, bool clean, bool v5, const std::string& user,
                       const std::string& password) {
  mosquitto_lib_init();
  mosq_ = mosquitto_new(id.c_str(), clean, this);
  if (!user.empty()) mosquitto_username_pw_set(mosq_, user.c_str(), password.c_str());
  if (v5) mosquitto_int_option(mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V5);
  mosquitto_int_option(mosq_, MOSQ_OPT_TCP_NODELAY, 1);
  mosquitto_max_inflight_messages_set(mosq_, 0);
  mosquitto_reconnect_delay_set(mosq_, 1, 2, false);
  mosquitto_connect_callback_set(mosq_, [](mosquitto*, void* self, int rc) {
    if (rc == 0) static_cast<MqttClient*>(self)->connected_ = true;
  });
  mosquitto_disconnect_callback_set(mosq_, [](mosquitto*, void* self, int) {
    static_cast<MqttClient*>(self)->connected_ = false;
  });
  mosquitto_publish_callback_set(mosq_, [](mosquitto*, void* obj, int mid) {
    auto* self = static_cast<MqttClient*>(obj);
    std::lock_guard lock(self->mu_);
    self->in_flight_.erase(mid);
    if (self->unacked_ > 0) --self->unacked_;
    self->cv_.notify_all();
  });
  mosquitto_subscribe_callback_set(mosq_, [](mosquitto*, void* obj, int mid, int, const int*) {
    auto* self = static_cast<MqttClient*>(obj);
    std::lock_guard lock(self->mu_);
    if (mid == self->suback_mid_) self->suback_ = true;
    self->cv_.notify_all();
  });
  mosquitto_message_v5_callback_set(mosq_, [](mosquitto*, void* obj, const mosquitto_message* m,
                                               const mosquitto_property* props) {
    auto* self = static_cast<MqttClient*>(obj);
    std::string correlation;
    void* data = nullptr;
    uint16_t len = 0;
    if (props && mosquitto_property_read_binary(props, MQTT_PROP_CORRELATION_DATA, &data, &len, false)) {
      correlation.assign(static_cast<const char*>(data), len);
      free(data);
    }
    const auto size = static_cast<std::size_t>(m->payloadlen);
    std::lock_guard lock(self->mu_);
    const std::size_t kept = self->prefix_topic_ == m->topic ? std::min(size, self->prefix_bytes_) : size;
    self->received_.push_back({m->topic, std::string(static_cast<const char*>(m->payload), kept), std::move(correlation),
                               std::chrono::steady_clock::now(), size});
    self->cv_.notify_all();
  });
  if (mosquitto_connect(mosq_, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS) {
    throw std::runtime_error("test client cannot connect to port " + std::to_string(port));
  }
  mosquitto_loop_start(mosq_);
  if (!WaitFor([&] { return connected_.load(); }, std::chrono::seconds(10))) {
    throw std::runtime_error("test client: no CONNACK");
  }
}

MqttClient::~MqttClient() {
  mosquitto_disconnect(mosq_);
  mosquitto_loop_stop(mosq_, false);
  mosquitto_destroy(mosq_);
}

void MqttClient::Subscribe(const std::string& filter, int qos) {
  std::unique_lock lock(mu_);
  suback_ = false;
  int mid = 0;
  if (mosquitto_subscribe(mosq_, &mid, filter.c_str(), qos) != MOSQ_ERR_SUCCESS) {
    throw std::runtime_error("subscribe failed: " + filter);
  }
  suback_mid_ = mid;
  if (!cv_.wait_for(lock, Scaled(std::chrono::seconds(10)), [&] { return suback_; })) {
    throw std::runtime_error("no SUBACK for " + filter);
  }
}

void MqttClient::Publish(const std::string& topic, const std::string& payload, int qos, std::size_t window,
                         bool retain) {
  std::unique_lock lock(mu_);
  if (qos > 0) {
    if (!cv_.wait_for(lock, Scaled(std::chrono::seconds(60)), [&] { return unacked_ < window; })) {
      throw std::runtime_error("publish window stuck");
    }
    ++unacked_;
  }
  // Under mu_: the PUBACK's callback (which takes mu_) finds the record.
  int mid = 0;
  int rc = mosquitto_publish(mosq_, &mid, topic.c_str(), static_cast<int>(payload.size()), payload.data(), qos,
                             retain);
  const bool queued = rc == MOSQ_ERR_SUCCESS || (rc == MOSQ_ERR_NO_CONN && qos > 0);
  if (queued && qos > 0) in_flight_[mid] = {topic, payload};
  lock.unlock();
  if (!queued) throw std::runtime_error(std::string("publish failed: ") + mosquitto_strerror(rc));
}

bool MqttClient::WaitAllAckedAfterARestart(std::chrono::milliseconds deadline) {
  if (WaitAllAcked(deadline / 3)) return true;
  const std::size_t n = ResendUnacked();
  std::fprintf(stderr, "[ figure ] %zu publishes never acknowledged after the broker's restart: published again\n", n);
  return WaitAllAcked(deadline - deadline / 3);
}

std::size_t MqttClient::ResendUnacked() {
  std::map<int, std::pair<std::string, std::string>> lost;
  {
    std::lock_guard lock(mu_);
    lost.swap(in_flight_);
    unacked_ -= std::min(unacked_, lost.size());
  }
  for (const auto& [mid, message] : lost) Publish(message.first, message.second, 1);
  return lost.size();
}

void MqttClient::PublishRequest(const std::string& topic, const std::string& payload,
                                const std::string& response_topic, const std::string& correlation) {
  mosquitto_property* props = nullptr;
  mosquitto_property_add_string(&props, MQTT_PROP_RESPONSE_TOPIC, response_topic.c_str());
  mosquitto_property_add_binary(&props, MQTT_PROP_CORRELATION_DATA, correlation.data(),
                                static_cast<uint16_t>(correlation.size()));
  int rc = mosquitto_publish_v5(mosq_, nullptr, topic.c_str(), static_cast<int>(payload.size()), payload.data(), 1,
                                false, props);
  mosquitto_property_free_all(&props);
  if (rc != MOSQ_ERR_SUCCESS) throw std::runtime_error(std::string("v5 publish failed: ") + mosquitto_strerror(rc));
}

void MqttClient::PublishWithProperties(const std::string& topic, const std::string& payload,
                                       const std::vector<std::pair<std::string, std::string>>& user_properties,
                                       std::size_t window) {
  {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, Scaled(std::chrono::seconds(60)), [&] { return unacked_ < window; })) {
      throw std::runtime_error("publish window stuck");
    }
    ++unacked_;
  }
  mosquitto_property* props = nullptr;
  for (const auto& [name, value] : user_properties) {
    mosquitto_property_add_string_pair(&props, MQTT_PROP_USER_PROPERTY, name.c_str(), value.c_str());
  }
  int rc = mosquitto_publish_v5(mosq_, nullptr, topic.c_str(), static_cast<int>(payload.size()), payload.data(), 1,
                                false, props);
  mosquitto_property_free_all(&props);
  if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN) {
    throw std::runtime_error(std::string("v5 publish failed: ") + mosquitto_strerror(rc));
  }
}

void MqttClient::BreakConnection() { shutdown(mosquitto_socket(mosq_), SHUT_RDWR); }

std::size_t MqttClient::unacked() {
  std::lock_guard lock(mu_);
  return unacked_;
}

bool MqttClient::WaitAllAcked(std::chrono::milliseconds deadline) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, Scaled(deadline), [&] { return unacked_ == 0; });
}

bool MqttClient::WaitForCount(std::size_t n, std::chrono::milliseconds deadline) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, Scaled(deadline), [&] { return received_.size() >= n; });
}

std::vector<Received> MqttClient::received() {
  std::lock_guard lock(mu_);
  return received_;
}

void MqttClient::KeepPayloadPrefix(const std::string& topic, std::size_t bytes) {
  std::lock_guard lock(mu_);
  prefix_topic_ = topic;
  prefix_bytes_ = bytes;
}

std::size_t MqttClient::received_count() {
  std::lock_guard lock(mu_);
  return received_.size();
}

}  // namespace seqtest
