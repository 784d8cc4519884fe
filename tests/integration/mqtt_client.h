// MqttClient: a plain libmosquitto client for tests: publishes with a
// bounded window of unacknowledged QoS 1 messages (so the broker never has
// to drop anything) and records what it receives.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

struct mosquitto;

namespace seqtest {

struct Received {
  std::string topic;
  std::string payload;
  std::string correlation;  // v5 Correlation Data, empty if none
  std::chrono::steady_clock::time_point at;  // when the client received it
};

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
  bool WaitAllAcked(std::chrono::milliseconds deadline);
  std::size_t unacked();
  bool WaitForCount(std::size_t n, std::chrono::milliseconds deadline);
  std::vector<Received> received();
  std::size_t received_count();
  bool connected() const { return connected_; }

 private:
  mosquitto* mosq_ = nullptr;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Received> received_;  // guarded by mu_
  std::size_t unacked_ = 0;         // guarded by mu_
  int suback_mid_ = -1;             // guarded by mu_
  bool suback_ = false;             // guarded by mu_
  std::atomic<bool> connected_{false};
};

}  // namespace seqtest
