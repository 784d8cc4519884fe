// MqttClient: a plain libmosquitto client for tests: publishes with a
// bounded window of unacknowledged QoS 1 messages (so the broker never has
// to drop anything) and records what it receives.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

struct mosquitto;

namespace seqtest {

struct Received {
  std::string topic;
  std::string payload;
  std::string correlation;  // v5 Correlation Data, empty if none
  std::chrono::steady_clock::time_point at;  // when the client received it
  std::size_t size = 0;  // the payload's whole size: `payload` holds its first bytes only after KeepPayloadPrefix
};

// MQTT 3.1.1 packets by hand, for tests that send what libmosquitto refuses
// to (bad topic names) or look at raw replies (CONNACK codes).
// A length-prefixed string field.
std::string MqttField(std::string_view s);
// A whole packet: the type byte, the remaining length, the body.
std::string MqttPacket(uint8_t type, const std::string& body);
// A CONNECT body (clean session, keepalive 60 s), with username and
// password when `user` is given.
std::string MqttConnectBody(const std::string& client_id, const std::string& user = "",
                            const std::string& password = "");

class MqttClient {
 public:
  // clean = false gives a persistent session (the broker queues QoS 1
  // messages for it while it is disconnected).
  // With `user`, it logs in with that username and password.
  MqttClient(int port, const std::string& id, bool clean = true, bool v5 = false, const std::string& user = "",
             const std::string& password = "");
  ~MqttClient();

  void Subscribe(const std::string& filter, int qos = 1);
  // Blocks while `window` messages are unacknowledged. Survives broker
  // restarts: libmosquitto queues and resends.
  void Publish(const std::string& topic, const std::string& payload, int qos = 1, std::size_t window = 200,
               bool retain = false);
  // A v5 publish with Response Topic and Correlation Data (v5 clients only).
  void PublishRequest(const std::string& topic, const std::string& payload, const std::string& response_topic,
                      const std::string& correlation);
  // A v5 QoS 1 publish with user properties (name, value), in the same
  // window as Publish (v5 clients only).
  void PublishWithProperties(const std::string& topic, const std::string& payload,
                             const std::vector<std::pair<std::string, std::string>>& user_properties,
                             std::size_t window = 200);
  // Cuts the TCP connection as a network failure would (no DISCONNECT).
  // libmosquitto reconnects and sends again every QoS 1 message whose
  // PUBACK it has not seen: the broker takes those as new messages.
  void BreakConnection();
  bool WaitAllAcked(std::chrono::milliseconds deadline);
  std::size_t unacked();
  // Publishes again, as new messages, Publish's QoS 1 messages whose PUBACK
  // never came (all of them: call it once the publisher is done), and says
  // how many. libmosquitto 2.0.11 was seen, rarely, never to send one again
  // after a broker restart: a loss of the test's publisher, before any
  // broker or relay had it.
  std::size_t ResendUnacked();
  // WaitAllAcked after a broker restart: what is still unacknowledged after
  // a third of `deadline` is published again (ResendUnacked, said on
  // stderr), then waited for.
  bool WaitAllAckedAfterARestart(std::chrono::milliseconds deadline);
  bool WaitForCount(std::size_t n, std::chrono::milliseconds deadline);
  // Keeps only the first `bytes` of each payload received on `topic` from
  // now on (Received::size has the whole size): a history of gigabytes is
  // checked without holding it.
  void KeepPayloadPrefix(const std::string& topic, std::size_t bytes);
  std::vector<Received> received();
  std::size_t received_count();
  bool connected() const { return connected_; }

 private:
  mosquitto* mosq_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Received> received_;  // guarded by mu_
  std::size_t unacked_ = 0;         // guarded by mu_
  std::map<int, std::pair<std::string, std::string>> in_flight_;  // Publish's QoS 1 by mid: topic, payload; mu_
  int suback_mid_ = -1;             // guarded by mu_
  bool suback_ = false;             // guarded by mu_
  std::atomic<bool> connected_{false};
  std::string prefix_topic_;          // KeepPayloadPrefix's; guarded by mu_
  std::size_t prefix_bytes_ = 0;      // guarded by mu_
};

}  // namespace seqtest
