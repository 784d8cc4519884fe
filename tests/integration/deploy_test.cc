// The shipped broker configuration, run for real: docker/mosquitto's
// mosquitto.conf and acl, with paths and ports rewritten to a temp folder,
// a password file made by mosquitto_passwd, the relay on its own listener
// with --acl-file, and clients logged in as their users. It shows that the
// files work together as the README says: clients are their usernames, the
// broker enforces the ACL live, and the relay replays only what a client may
// read.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "relay_fixture.h"
#include "seq_client.h"

namespace seqtest {
namespace {

using nlohmann::json;

// mosquitto started from the shipped files. Every line that is rewritten
// must be in the shipped file, so the test follows the file and fails if
// the file changes under it.
class ShippedBroker {
 public:
  // With `many_connections_per_user`, the clients' listener is changed the
  // way docs/retransmit.md says to let a user hold many connections: no
  // use_username_as_clientid, and no %c patterns in its ACL.
  // `extra_conf` is added to mosquitto.conf's global options.
  explicit ShippedBroker(const std::string& dir, const std::string& extra_acl, bool many_connections_per_user = false,
                         const std::string& extra_conf = "")
      : dir_(dir), client_port_(FreePort()), relay_port_(FreePort()) {
    std::filesystem::create_directories(dir_);
    const std::string docker = std::string(SEQRELAY_SOURCE_DIR) + "/docker/mosquitto";
    std::string conf = ReadFile(docker + "/mosquitto.conf");
    std::string acl = ReadFile(docker + "/acl");
    if (many_connections_per_user) {
      Rewrite(conf, "listener 1883\nuse_username_as_clientid true\n", "listener 1883\n");
      Rewrite(acl, "pattern write relay/retransmit/%c\n", "");
      Rewrite(acl, "pattern read relay/replay/%c\n", "");
      Rewrite(acl, "pattern read relay/replay/%c/#\n", "");
    }
    Rewrite(conf, "listener 1883\n", "listener " + std::to_string(client_port_) + " 127.0.0.1\n");
    Rewrite(conf, "listener 1884\n", "listener " + std::to_string(relay_port_) + " 127.0.0.1\n");
    // The messenger's WebSocket listener: mosquitto refuses to start if http_dir does not exist.
    Rewrite(conf, "listener 8080\n", "listener " + std::to_string(FreePort()) + " 127.0.0.1\n");
    Rewrite(conf, "http_dir /mosquitto/www\n", "http_dir " + std::string(SEQRELAY_SOURCE_DIR) + "/clients/messenger\n");
    Rewrite(conf, "persistence_location /mosquitto/data/\n", "persistence_location " + dir_ + "/\n");
    Rewrite(conf, "password_file /mosquitto/data/passwords\n", "password_file " + dir_ + "/passwords\n");
    Rewrite(conf, "password_file /mosquitto/data/relay-passwords\n",
            "password_file " + dir_ + "/relay-passwords\n");
    Rewrite(conf, "password_file /mosquitto/data/passwords\n", "password_file " + dir_ + "/passwords\n");
    Rewrite(conf, "acl_file /mosquitto/config/acl\n", "acl_file " + acl_path() + "\n");  // one per listener
    Rewrite(conf, "acl_file /mosquitto/config/acl\n", "acl_file " + acl_path() + "\n");
    Rewrite(conf, "acl_file /mosquitto/config/acl\n", "acl_file " + acl_path() + "\n");
    conf = extra_conf + conf;  // before the first listener: global
    if (geteuid() == 0) conf += "user root\n";  // else mosquitto drops to 'mosquitto' and cannot read the files
    std::ofstream(dir_ + "/mosquitto.conf") << conf;
    std::ofstream(acl_path()) << acl << "\n" << extra_acl;
    // As compose.yaml's entrypoint makes them: the relay's user on its own.
    for (const auto& [file, user] : kUsers) {
      const std::string path = dir_ + "/" + file;
      if (!std::filesystem::exists(path)) std::ofstream(path).close();  // mosquitto_passwd -b adds to a file
      std::string out;
      int rc = RunCommand({"mosquitto_passwd", "-b", path, user, Password(user)}, &out);
      if (rc != 0) throw std::runtime_error("mosquitto_passwd failed: " + out);
    }
    process_.Start({"mosquitto", "-c", dir_ + "/mosquitto.conf"}, dir_ + "/mosquitto.log");
    bool up = WaitFor(
        [&] { return !process_.running() || (PortAccepts(client_port_) && PortAccepts(relay_port_)); },
        std::chrono::seconds(20));
    if (!up || !process_.running()) throw std::runtime_error("mosquitto did not start:\n" + log());
  }
  ~ShippedBroker() { process_.Stop(); }

  int client_port() const { return client_port_; }
  int relay_port() const { return relay_port_; }
  void Signal(int sig) { process_.Signal(sig); }
  std::string acl_path() const { return dir_ + "/acl"; }
  std::string log() const { return ReadFile(dir_ + "/mosquitto.log"); }
  static std::string Password(const std::string& user) { return user + "-secret"; }

 private:
  static void Rewrite(std::string& text, const std::string& from, const std::string& to) {
    auto at = text.find(from);
    if (at == std::string::npos) throw std::runtime_error("shipped mosquitto.conf or acl lacks '" + from + "'");
    text.replace(at, from.size(), to);
  }
  inline static const std::vector<std::pair<std::string, std::string>> kUsers = {
      {"relay-passwords", "seqrelay"}, {"relay-passwords", "seqrelay-intake"}, {"passwords", "alice"},
      {"passwords", "bob"}};
  const std::string dir_;
  const int client_port_, relay_port_;
  Process process_;
};

// The CONNACK return code for a hand-made MQTT 3.1.1 CONNECT with this
// username and password (0 = accepted), or -1 if none came.
int ConnackCode(int port, const std::string& client_id, const std::string& user, const std::string& password) {
  const std::string packet = MqttPacket(0x10, MqttConnectBody(client_id, user, password));
  const int fd = ConnectLoopback(port, std::chrono::seconds(5));
  if (fd < 0) return -1;
  int code = -1;
  unsigned char ack[4];
  if (write(fd, packet.data(), packet.size()) == static_cast<ssize_t>(packet.size()) &&
      read(fd, ack, sizeof ack) == 4 && ack[0] == 0x20) {
    code = ack[3];
  }
  close(fd);
  return code;
}

class DeployE2E : public RelayE2E {
 protected:
  void TearDown() override {
    if (HasFailure() && broker_) std::cerr << "---- shipped mosquitto log ----\n" << broker_->log();
    RelayE2E::TearDown();
  }
  // The shipped broker, with bob added the README's way (a block in the
  // acl, and a password), and the relay on it as compose runs it.
  void StartShippedWithBob() {
    broker_ = std::make_unique<ShippedBroker>(servers().dir() + "/shipped-" + name_,
                                              "user bob\ntopic write secret/#\ntopic read seq/secret/#\n");
    relay_ = std::make_unique<RelayProcess>(
        servers(), name_,
        std::vector<std::string>{"--source=#", "--acl-file=" + broker_->acl_path(), "--stats-interval=1",
                                 "--mqtt-intake-user=seqrelay-intake",
                                 "--mqtt-intake-password=" + ShippedBroker::Password("seqrelay-intake")});
    relay_->SetBroker(broker_->relay_port(), "seqrelay", ShippedBroker::Password("seqrelay"));
    relay_->Start();
  }
  std::unique_ptr<ShippedBroker> broker_;
};

TEST_F(DeployE2E, ShippedConfAndAclLetAClientReplayOnlyWhatItMayRead) {
  StartShippedWithBob();
  EXPECT_NE(relay_->log().find("replay access control: "), std::string::npos) << relay_->log();

  const std::string chat = "chat/" + name_, secret = "secret/" + name_;
  const int port = broker_->client_port();
  // Each listener knows only its own users: alice cannot log in where the
  // relay does (there her client id would be hers to choose), and nobody
  // can log in as the relay where client ids are usernames.
  EXPECT_EQ(ConnackCode(broker_->relay_port(), "bob", "alice", ShippedBroker::Password("alice")), 5);
  EXPECT_EQ(ConnackCode(port, "x", "seqrelay", ShippedBroker::Password("seqrelay")), 5);
  EXPECT_EQ(ConnackCode(port, "x", "alice", "wrong password"), 5);
  EXPECT_EQ(ConnackCode(port, "x", "alice", ShippedBroker::Password("alice")), 0);
  // Client ids are replaced by usernames on this listener: "whatever" is alice.
  // One connection per user at a time: a second one with the same username
  // takes the first one's client id, and the broker closes the first.
  auto login_alice = [&] {
    return std::make_unique<MqttClient>(port, "whatever", true, false, "alice", ShippedBroker::Password("alice"));
  };
  auto alice = login_alice();
  MqttClient bob(port, "bob", true, false, "bob", ShippedBroker::Password("bob"));
  bob.Subscribe("relay/replay/bob/#");
  for (int i = 1; i <= 5; ++i) alice->Publish(chat, "c" + std::to_string(i));
  for (int i = 1; i <= 3; ++i) bob.Publish(secret, "s" + std::to_string(i));
  alice->Publish(secret, "alice may not write here");  // dropped by the broker's ACL
  ASSERT_TRUE(alice->WaitAllAcked(10s));
  ASSERT_TRUE(bob.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(chat).size() == 5 && AuditTrail(secret).size() == 3; }, 20s));
  std::this_thread::sleep_for(Scaled(300ms));  // a negative check: nothing more arrives
  EXPECT_EQ(AuditTrail(secret).size(), 3u) << "the broker let alice write to secret/";

  // alice reads her topic's history through the client library.
  alice.reset();
  seqclient::Options o;
  o.port = port;
  o.user = "alice";
  o.password = ShippedBroker::Password("alice");
  o.client_id = "alice";  // the broker makes it so anyway
  o.filters = {chat};
  o.history = seqclient::History::kAll;
  // Not asked twice: a second reply's frames would reach alice's next
  // session below (on the same topic) after the reader stopped.
  o.reply_timeout = Scaled(60s);
  std::mutex mu;
  std::vector<uint64_t> seqs;
  seqclient::SeqClient reader(o, [&](const seqclient::Message& m) {
    std::lock_guard lock(mu);
    seqs.push_back(m.seq);
  });
  ASSERT_EQ(reader.Start(), std::nullopt);
  ASSERT_TRUE(WaitFor([&] { std::lock_guard lock(mu); return seqs.size() >= 5; }, 10s));
  reader.Stop();
  EXPECT_EQ(seqs, (std::vector<uint64_t>{1, 2, 3, 4, 5}));

  // alice asks for bob's topic, by name and by id: "forbidden", no frames,
  // and the id request does not learn the topic's name.
  alice = login_alice();
  alice->Subscribe("relay/replay/alice/#");
  alice->Publish("relay/retransmit/alice", json{{"topic", secret}, {"from", 1}}.dump());
  const uint32_t secret_id = TopicId(secret);
  alice->Publish("relay/retransmit/alice", json{{"id", secret_id}, {"from", 1}}.dump());
  // The reader stopped once its 5 frames came; the ok status of its
  // request (frames first, then the status) may come after this
  // subscription: CI saw it once. It is on the same topic, and not an
  // answer to these requests.
  auto answers = [&] {
    std::vector<Received> got;
    for (auto& r : alice->received()) {
      const auto s = json::parse(r.payload, nullptr, false);
      const bool readers_answer = r.topic == "relay/replay/alice/status" && s.is_object() &&
                                  s.value("status", "") == "ok" && s.value("topic", "") == chat;
      if (!readers_answer) got.push_back(std::move(r));
    }
    return got;
  };
  ASSERT_TRUE(WaitFor([&] { return answers().size() >= 2; }, 10s));
  std::this_thread::sleep_for(Scaled(300ms));
  auto got = answers();
  std::string shown;
  for (const auto& r : got) shown += "\n  " + r.topic + " " + (r.topic.ends_with("/status") ? r.payload : "(frame)");
  ASSERT_EQ(got.size(), 2u) << "frames were sent for a forbidden topic:" << shown;
  for (const auto& r : got) {
    EXPECT_EQ(r.topic, "relay/replay/alice/status");
    auto s = json::parse(r.payload);
    EXPECT_EQ(s["status"], "error") << r.payload;
    EXPECT_EQ(s["error"], "forbidden") << r.payload;
    EXPECT_FALSE(s.contains("last")) << r.payload;
  }
  EXPECT_FALSE(json::parse(got[1].payload).contains("topic")) << got[1].payload;

  // alice cannot ask in bob's name: the broker drops the publish, so bob
  // gets no answer to it.
  const std::size_t bob_before = bob.received_count();
  alice->Publish("relay/retransmit/bob", json{{"topic", secret}, {"from", 1}}.dump());
  ASSERT_TRUE(alice->WaitAllAcked(5s));
  // bob asks for his own topic: 3 frames and an ok status.
  bob.Publish("relay/retransmit/bob", json{{"topic", secret}, {"from", 1}}.dump());
  ASSERT_TRUE(bob.WaitForCount(bob_before + 4, 10s));
  std::this_thread::sleep_for(Scaled(300ms));
  auto bob_got = bob.received();
  ASSERT_EQ(bob_got.size(), bob_before + 4) << "bob got an answer to the request alice made in his name";
  for (std::size_t i = 0; i < 3; ++i) {
    const Received& r = bob_got[bob_before + i];
    EXPECT_EQ(r.topic, "relay/replay/bob");
    auto view = seqrelay::DecodeFrame({reinterpret_cast<const uint8_t*>(r.payload.data()), r.payload.size()});
    ASSERT_TRUE(view.ok()) << r.topic;
    EXPECT_EQ(view->header.seq, i + 1);
    EXPECT_EQ(view->header.topic_id, secret_id);
  }
  auto status = json::parse(bob_got[bob_before + 3].payload);
  EXPECT_EQ(status["status"], "ok") << bob_got[bob_before + 3].payload;
  EXPECT_EQ(status["sent"], 3);

  // The relay may publish its stats report, and alice (the shipped acl's
  // example) may read it.
  alice.reset();  // (else its reconnect would take the client id back from the watcher)
  auto watcher = login_alice();
  watcher->Subscribe("relay/stats");
  ASSERT_TRUE(watcher->WaitForCount(1, 10s)) << "no stats report: the broker refused it?";
  json report;  // (the retained one may be up to a second old)
  EXPECT_TRUE(WaitForReport(*watcher, [](const json& r) { return r["replay"]["forbidden"] == 2; }, 10s, report))
      << report.dump();
  EXPECT_EQ(report["messages"]["committed"], 8);
  // The shipped ACL keeps the relay's own frames and reports from its
  // intake, although it reads '#'.
  EXPECT_EQ(report["messages"]["ignored"]["own_topics"], 0) << report.dump();
  EXPECT_EQ(relay_->log().find("delivers the relay's own topics back"), std::string::npos) << relay_->log();
  EXPECT_EQ(relay_->Stop(), 0);
}

// An operator takes a right away in the ACL file and sends SIGHUP to
// mosquitto and to the relay, as mosquitto.conf(5) says to have it read the
// file again: the relay's replays follow the new rules (until 2026-12-07
// SIGHUP ended the relay, and it read the file at start only). A later edit
// that breaks the file keeps the rules in force, rather than opening the
// history to everyone or stopping the relay.
TEST_F(DeployE2E, ASighupReadsTheAclFileAgainAndABrokenFileKeepsTheRulesInForce) {
  StartShippedWithBob();
  const std::string secret = "secret/" + name_;
  MqttClient bob(broker_->client_port(), "bob", true, false, "bob", ShippedBroker::Password("bob"));
  bob.Subscribe("relay/replay/bob/#");
  for (int i = 1; i <= 3; ++i) bob.Publish(secret, "s" + std::to_string(i));
  ASSERT_TRUE(bob.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(secret).size() == 3; }, 20s));
  // bob asks for the topic's history: the reply's status.
  auto ask = [&] {
    const std::size_t before = bob.received_count();
    bob.Publish("relay/retransmit/bob", json{{"topic", secret}, {"from", 1}}.dump());
    json status;
    EXPECT_TRUE(WaitFor(
        [&] {
          const auto got = bob.received();
          for (std::size_t i = before; i < got.size(); ++i) {
            if (got[i].topic == "relay/replay/bob/status") status = json::parse(got[i].payload);
          }
          return !status.is_null();
        },
        10s));
    return status;
  };
  auto reads_again = [&] {
    const std::string log = relay_->log();
    std::size_t n = 0;
    for (auto at = log.find("(read again)"); at != std::string::npos; at = log.find("(read again)", at + 1)) ++n;
    return n;
  };
  json status = ask();
  EXPECT_EQ(status["status"], "ok") << status.dump();
  EXPECT_EQ(status["sent"], 3) << status.dump();

  std::string acl = ReadFile(broker_->acl_path());
  const std::string grant = "topic read seq/secret/#\n";
  const std::size_t at = acl.rfind(grant);  // bob's, the last block
  ASSERT_NE(at, std::string::npos);
  acl.erase(at, grant.size());
  std::ofstream(broker_->acl_path()) << acl;
  broker_->Signal(SIGHUP);
  relay_->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return reads_again() == 1; }, 10s)) << relay_->log();
  status = ask();
  EXPECT_EQ(status["status"], "error") << status.dump();
  EXPECT_EQ(status["error"], "forbidden") << status.dump();

  std::ofstream(broker_->acl_path()) << acl << "topic reed seq/#\n";  // in bob's block
  relay_->Signal(SIGHUP);
  ASSERT_TRUE(WaitFor([&] { return relay_->log().find("the rules read before stay in force") != std::string::npos; },
                      10s))
      << relay_->log();
  EXPECT_NE(relay_->log().find("access must be read, write, readwrite or deny, got 'reed'"), std::string::npos)
      << relay_->log();
  status = ask();
  EXPECT_EQ(status["error"], "forbidden") << status.dump();
  EXPECT_EQ(reads_again(), 1u);
  EXPECT_TRUE(relay_->running());
  EXPECT_EQ(relay_->Stop(), 0);
}

// A user who joins the share group of the relays' retransmit subscription
// takes its turn of the requests, which the broker's ACL keeps from it:
// mosquitto drops a request for the whole group then. The group is named
// after the database's identity, which no client can read: alice, in the
// group named after the client id (the group until 2026-12-07, and the
// docs said so), takes nothing, and every one of bob's 20 requests is
// answered (10 of them were lost before: a helper's review).
TEST_F(DeployE2E, AUserCannotJoinTheRelaysShareGroupToMakeRequestsVanish) {
  StartShippedWithBob();
  const std::string secret = "secret/" + name_;
  const int port = broker_->client_port();
  MqttClient bob(port, "bob", true, false, "bob", ShippedBroker::Password("bob"));
  bob.Publish(secret, "s1");
  ASSERT_TRUE(bob.WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(secret).size() == 1; }, 20s));
  MqttClient alice(port, "alice", true, false, "alice", ShippedBroker::Password("alice"));
  alice.Subscribe("$share/" + name_ + "/relay/retransmit/+");  // the relay's --mqtt-client-id is name_
  alice.Subscribe("$share/" + name_ + "/relay/retransmit/+/+");
  bob.Subscribe("relay/replay/bob/#");
  constexpr int kRequests = 20;
  for (int i = 0; i < kRequests; ++i) bob.Publish("relay/retransmit/bob", json{{"topic", secret}, {"from", 1}}.dump());
  ASSERT_TRUE(bob.WaitAllAcked(10s));
  const auto statuses = [&] {
    const auto got = bob.received();
    return std::count_if(got.begin(), got.end(), [](const Received& r) { return r.topic == "relay/replay/bob/status"; });
  };
  EXPECT_TRUE(WaitFor([&] { return statuses() == kRequests; }, 10s)) << statuses() << " statuses";
  EXPECT_EQ(alice.received_count(), 0u);
  EXPECT_EQ(relay_->Stop(), 0);
}

// seqsub logged in as alice with a client id of her own choosing (-i
// laptop): the shipped broker makes her client id "alice", and lets her ask
// on relay/retransmit/alice (%c) or relay/retransmit/alice/<C> (%u/+),
// never on relay/retransmit/laptop. The C++ client now asks where the
// JavaScript and Python clients do, on alice/laptop (PROTOCOL 5.4). Until
// 2026-12-06 it asked on relay/retransmit/laptop: the broker dropped every
// request, and the history lookup was given up after about a minute.
TEST_F(DeployE2E, SeqsubWithAClientIdOfItsOwnAsksOnItsUsersRequestTopics) {
  broker_ = std::make_unique<ShippedBroker>(servers().dir() + "/shipped-" + name_, "");
  relay_ = std::make_unique<RelayProcess>(
      servers(), name_, std::vector<std::string>{"--source=chat/#", "--acl-file=" + broker_->acl_path()});
  relay_->SetBroker(broker_->relay_port(), "seqrelay", ShippedBroker::Password("seqrelay"));
  relay_->Start();
  const std::string chat = "chat/" + name_;
  {
    MqttClient alice(broker_->client_port(), "alice", true, false, "alice", ShippedBroker::Password("alice"));
    for (int i = 1; i <= 3; ++i) alice.Publish(chat, "h" + std::to_string(i));
    ASSERT_TRUE(alice.WaitAllAcked(10s));
  }
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(chat).size() == 3; }, 20s));
  std::string out;
  const int rc = RunCommand({"timeout", "30", SEQSUB_BINARY, "-p", std::to_string(broker_->client_port()), "-u",
                             "alice", "-P", ShippedBroker::Password("alice"), "-i", "laptop", "-t", chat, "--history",
                             "-C", "3"},
                            &out);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("h1\nh2\nh3\n"), std::string::npos) << out;
  EXPECT_EQ(relay_->Stop(), 0);
}

// Per-user request topics (PROTOCOL 5.4) on the shipped broker, with the
// clients' listener set up for many connections per user: alice on two
// connections asks on relay/retransmit/alice/<C> from each and gets her own
// replies on each; she cannot ask in bob's name (the broker drops it), and
// the relay checks her username against the ACL.
TEST_F(DeployE2E, OneUserOnTwoConnectionsAsksOnItsOwnTopicsAndNotAsAnother) {
  broker_ = std::make_unique<ShippedBroker>(servers().dir() + "/shipped-" + name_,
                                            "user bob\ntopic write secret/#\ntopic read seq/secret/#\n",
                                            /*many_connections_per_user=*/true);
  relay_ = std::make_unique<RelayProcess>(
      servers(), name_, std::vector<std::string>{"--source=#", "--acl-file=" + broker_->acl_path(),
                                                 "--mqtt-intake-user=seqrelay-intake",
                                                 "--mqtt-intake-password=" + ShippedBroker::Password("seqrelay-intake")});
  relay_->SetBroker(broker_->relay_port(), "seqrelay", ShippedBroker::Password("seqrelay"));
  relay_->Start();
  const int port = broker_->client_port();
  const std::string chat = "chat/" + name_, secret = "secret/" + name_;
  auto login = [&](const std::string& user, const std::string& client_id) {
    return std::make_unique<MqttClient>(port, client_id, true, false, user, ShippedBroker::Password(user));
  };
  auto phone = login("alice", "alice-phone"), laptop = login("alice", "alice-laptop");
  auto bob = login("bob", "bob-1");
  for (int i = 1; i <= 4; ++i) phone->Publish(chat, "c" + std::to_string(i));
  for (int i = 1; i <= 2; ++i) bob->Publish(secret, "s" + std::to_string(i));
  ASSERT_TRUE(phone->WaitAllAcked(10s));
  ASSERT_TRUE(bob->WaitAllAcked(10s));
  ASSERT_TRUE(WaitFor([&] { return AuditTrail(chat).size() == 4 && AuditTrail(secret).size() == 2; }, 20s));

  phone->Subscribe("relay/replay/alice/phone/#");
  laptop->Subscribe("relay/replay/alice/laptop/#");
  bob->Subscribe("relay/replay/bob/#");
  // Whatever the broker answers to this SUBSCRIBE, it delivers alice none
  // of bob's replies (read access is checked for every message).
  laptop->Subscribe("relay/replay/bob/#");
  phone->Publish("relay/retransmit/alice/phone", json{{"topic", chat}, {"from", 1}}.dump());
  laptop->Publish("relay/retransmit/alice/laptop", json{{"topic", chat}, {"from", 3}}.dump());
  laptop->Publish("relay/retransmit/alice/laptop", json{{"topic", secret}, {"from", 1}}.dump());
  laptop->Publish("relay/retransmit/bob/x", json{{"topic", secret}, {"from", 1}}.dump());  // dropped by the broker
  ASSERT_TRUE(phone->WaitForCount(5, 10s)) << phone->received_count();
  ASSERT_TRUE(laptop->WaitForCount(4, 10s)) << laptop->received_count();
  std::this_thread::sleep_for(Scaled(300ms));  // a negative check: nothing more arrives

  // The phone: 4 frames and the status, on its own reply topic.
  auto got = phone->received();
  ASSERT_EQ(got.size(), 5u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(got[i].topic, "relay/replay/alice/phone");
    auto view = seqrelay::DecodeFrame({reinterpret_cast<const uint8_t*>(got[i].payload.data()), got[i].payload.size()});
    ASSERT_TRUE(view.ok());
    EXPECT_EQ(view->header.seq, static_cast<uint64_t>(i + 1));
  }
  EXPECT_EQ(got[4].topic, "relay/replay/alice/phone/status");
  EXPECT_EQ(json::parse(got[4].payload)["sent"], 4) << got[4].payload;
  // The laptop: SEQ 3 and 4, its status, and "forbidden" for bob's topic;
  // nothing from the request made in bob's name.
  got = laptop->received();
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[0].topic, "relay/replay/alice/laptop");
  EXPECT_EQ(got[1].topic, "relay/replay/alice/laptop");
  EXPECT_EQ(got[2].topic, "relay/replay/alice/laptop/status");
  EXPECT_EQ(json::parse(got[2].payload)["sent"], 2) << got[2].payload;
  EXPECT_EQ(got[3].topic, "relay/replay/alice/laptop/status");
  const json refused = json::parse(got[3].payload);
  EXPECT_EQ(refused["code"], "forbidden") << got[3].payload;
  EXPECT_EQ(refused["retry"], false);
  EXPECT_EQ(bob->received_count(), 0u) << "bob got an answer to a request alice made in his name";
  // bob asks for his own topic on his per-user topic: 2 frames and ok.
  bob->Publish("relay/retransmit/bob/bob-1", json{{"topic", secret}, {"from", 1}}.dump());
  ASSERT_TRUE(bob->WaitForCount(3, 10s));
  EXPECT_EQ(json::parse(bob->received()[2].payload)["status"], "ok");
  EXPECT_EQ(relay_->Stop(), 0);
}

// A broker that refuses the relay's login (either of its accounts) ends the
// start with the broker's reason, exit 1. The links are MQTT v5, whose
// CONNACK reason codes (mosquitto 2.0.11 answers a wrong password with 135,
// not authorised) the build before did not take for a refusal: it tried
// again every 5 s for ever.
TEST_F(DeployE2E, ABrokerThatRefusesTheRelaysLoginEndsTheStart) {
  broker_ = std::make_unique<ShippedBroker>(servers().dir() + "/shipped-" + name_, "");
  {
    RelayProcess relay(servers(), name_, {"--source=chat/#"}, "main");
    relay.SetBroker(broker_->relay_port(), "seqrelay", "not-the-password");
    const std::string log = LogOfARefusedStart(relay);
    EXPECT_NE(log.find("refused the connection: Not authorized"), std::string::npos) << log;
    EXPECT_NE(log.find("stopped because of: "), std::string::npos) << log;
  }
  RelayProcess relay(servers(), name_,
                     {"--source=chat/#", "--mqtt-intake-user=seqrelay-intake", "--mqtt-intake-password=wrong"},
                     "intake");
  relay.SetBroker(broker_->relay_port(), "seqrelay", ShippedBroker::Password("seqrelay"));
  const std::string log = LogOfARefusedStart(relay);
  EXPECT_NE(log.find("stopped because of: intake link: Not authorized"), std::string::npos) << log;
}

// The shipped message_size_limit and the relay's --max-payload fit
// together: a payload of exactly --max-payload becomes a frame 10 bytes
// larger, which the broker must carry to subscribers (it used to drop it
// while acknowledging it). A relay whose largest frame the broker would
// refuse does not start, and says which two settings to change.
TEST_F(DeployE2E, TheLargestFrameFitsTheShippedLimitAndAMismatchStopsTheStart) {
  broker_ = std::make_unique<ShippedBroker>(servers().dir() + "/shipped-" + name_, "");
  relay_ = std::make_unique<RelayProcess>(servers(), name_, std::vector<std::string>{"--source=chat/#"});
  relay_->SetBroker(broker_->relay_port(), "seqrelay", ShippedBroker::Password("seqrelay"));
  relay_->Start();
  EXPECT_NE(relay_->log().find("frame size check: mosquitto takes frames of 1048586 bytes"), std::string::npos)
      << relay_->log();
  const std::string chat = "chat/" + name_;
  MqttClient alice(broker_->client_port(), "alice", true, false, "alice", ShippedBroker::Password("alice"));
  alice.Subscribe("seq/" + chat);
  const std::string largest(1048576, 'x');  // exactly --max-payload
  alice.Publish(chat, largest);
  alice.Publish(chat, "after");
  ASSERT_TRUE(alice.WaitForCount(2, 20s)) << "the largest frame did not reach the subscriber";
  auto got = alice.received();
  EXPECT_EQ(got[0].payload.size(), largest.size() + 10);
  EXPECT_EQ(got[0].payload.substr(10), largest);

  // A row larger than today's limit (stored under an earlier, larger
  // --max-payload): its replay frame is refused by the broker, and the
  // status does not count it as sent.
  servers().Sql("INSERT INTO `" + name_ + "`.MSG (idx, ID, QOS, SEQ, MSG) SELECT MAX(idx) + 1, '" + chat +
                "', 1, 3, REPEAT('z', 1048577) FROM `" + name_ + "`.MSG");
  alice.Subscribe("relay/replay/alice/#");
  const std::size_t before = alice.received_count();
  alice.Publish("relay/retransmit/alice", "{\"topic\": \"" + chat + "\", \"from\": 1}");
  ASSERT_TRUE(WaitFor([&] { return alice.received_count() >= before + 3; }, 20s));
  std::this_thread::sleep_for(Scaled(300ms));
  got = alice.received();
  ASSERT_EQ(got.size(), before + 3) << "the oversized frame reached the client?";
  EXPECT_EQ(got[before].payload.size(), largest.size() + 10);
  EXPECT_EQ(got[before + 1].payload.substr(10), "after");
  auto status = json::parse(got[before + 2].payload);
  EXPECT_EQ(got[before + 2].topic, "relay/replay/alice/status");
  EXPECT_EQ(status["status"], "ok") << status.dump();
  EXPECT_EQ(status["sent"], 2) << "a frame the broker refused was counted as sent: " << status.dump();
  EXPECT_EQ(status["last"], 3) << status.dump();
  EXPECT_EQ(relay_->Stop(), 0);
  EXPECT_NE(relay_->log().find("mosquitto refused a retransmit reply it acknowledged (PUBACK reason 0x"),
            std::string::npos)
      << relay_->log();

  // One byte more than the shipped limit allows: refused at start.
  RelayProcess too_big(servers(), name_ + "_big", {"--source=chat/#", "--max-payload=1048577"});
  too_big.SetBroker(broker_->relay_port(), "seqrelay", ShippedBroker::Password("seqrelay"));
  const std::string log = LogOfARefusedStart(too_big);
  EXPECT_NE(log.find("mosquitto refuses a frame of 1048587 bytes (--max-payload 1048577 + the 10-byte header"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("set its message_size_limit to at least 1048587, or lower --max-payload"), std::string::npos);
}

// A broker whose max_packet_size (announced to MQTT v5 clients in the
// CONNACK) is below the relay's largest frame: the start is refused, naming
// the two settings. The build before queued its probe before the CONNACK,
// and libmosquitto dropped it without a word: the relay started, and every
// frame over the limit was refused by libmosquitto, logged, and passed over
// for good (never published, the watermark past it).
TEST_F(DeployE2E, ABrokersMaxPacketSizeBelowTheLargestFrameStopsTheStart) {
  broker_ = std::make_unique<ShippedBroker>(servers().dir() + "/shipped-" + name_, "", false, "max_packet_size 2000\n");
  RelayProcess relay(servers(), name_, {"--source=chat/#", "--max-payload=4096"});
  relay.SetBroker(broker_->relay_port(), "seqrelay", ShippedBroker::Password("seqrelay"));
  const std::string log = LogOfARefusedStart(relay);
  EXPECT_NE(log.find("frame size check: mosquitto refuses a frame of 4106 bytes (--max-payload 4096 + the 10-byte "
                     "header)"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("raise its max_packet_size, or lower --max-payload"), std::string::npos) << log;
}

// The same when the broker's CONNACK comes late (mosquitto paused at the
// relay's start, --broker-grace 0: active without it): the start goes on
// without the check, and the output link's first connect sends the probe,
// whose refusal stops the relay.
TEST_F(DeployE2E, ABrokersMaxPacketSizeIsCheckedWhenItsConnackComesLate) {
  broker_ = std::make_unique<ShippedBroker>(servers().dir() + "/shipped-" + name_, "", false, "max_packet_size 2000\n");
  RelayProcess relay(servers(), name_, {"--source=chat/#", "--max-payload=4096", "--broker-grace=0"});
  relay.SetBroker(broker_->relay_port(), "seqrelay", ShippedBroker::Password("seqrelay"));
  broker_->Signal(SIGSTOP);
  struct Resume {
    ShippedBroker& broker;
    ~Resume() { broker.Signal(SIGCONT); }
  } resume{*broker_};
  relay.Launch();
  ASSERT_TRUE(WaitFor([&] { return relay.log().find("checked when the output link connects") != std::string::npos; },
                      Scaled(30s)))
      << relay.log();
  broker_->Signal(SIGCONT);
  const auto code = relay.WaitExit(Scaled(30s));
  ASSERT_TRUE(code.has_value()) << relay.log();
  EXPECT_EQ(*code, 1) << relay.log();
  EXPECT_NE(relay.log().find("stopped because of: frame size check: mosquitto refuses a frame of 4106 bytes"),
            std::string::npos)
      << relay.log();
}

// A broker whose address takes no connection and refuses none (a host gone
// from the network drops the SYNs; here a loopback listener whose accept
// queue is full, which the kernel then drops them for). The intake's first
// connect is libmosquitto's blocking one (it carries the session's expiry):
// the build before waited it out, the kernel's SYN retries, about two
// minutes, past --shutdown-timeout. Now the stop interrupts it.
TEST_F(DeployE2E, AStopIsNotHeldByAConnectToABrokerThatDropsItsSyns) {
  const int port = FreePort();
  const FullListener listener(port);
  ASSERT_TRUE(listener.DropsSyns()) << "a connect to the full listener completed or failed: this proves nothing";

  RelayProcess relay(servers(), name_, {"--source=chat/#", "--broker-grace=0", "--shutdown-timeout=2"});
  relay.SetBroker(port, "", "");
  relay.Launch();
  // The intake connects once the start's frame size check has waited its
  // 5 s for the output link's CONNACK.
  ASSERT_TRUE(WaitFor([&] { return relay.log().find("checked when the output link connects") != std::string::npos; },
                      Scaled(30s)))
      << relay.log();
  // The intake's connect under way: a thread of the relay in connect(2).
  auto in_connect = [&] {
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(relay.pid()) + "/task", ec)) {
      std::istringstream call(ReadFile(task.path().string() + "/syscall"));
      long number = -1;
      if (call >> number && number == SYS_connect) return true;
    }
    return false;
  };
  ASSERT_TRUE(WaitFor(in_connect, Scaled(10s))) << "no thread of the relay in connect(2):\n" << relay.log();
  const auto asked = std::chrono::steady_clock::now();
  relay.Signal(SIGTERM);
  const auto code = relay.WaitExit(Scaled(20s));
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - asked);
  if (!code) relay.Kill();
  ASSERT_TRUE(code.has_value()) << "the stop was still held after " << took.count() << " ms:\n" << relay.log();
  EXPECT_EQ(*code, 0) << relay.log();
  // Nothing to flush to a broker never reached: --shutdown-timeout (2 s) is
  // not even needed (the build before: 20 s and more, the SYN retries'
  // two minutes).
  EXPECT_LT(took, Scaled(5s)) << relay.log();
}

TEST(DeployOptions, ABadAclFileStopsTheRelayAtStartAndNamesTheLine) {
  char path[] = "/tmp/seqtest-acl-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string bad = "user alice\ntopic reed seq/chat/#\n";
  ASSERT_EQ(write(fd, bad.data(), bad.size()), static_cast<ssize_t>(bad.size()));
  close(fd);
  std::string out;
  // No servers: the file is read before anything is connected.
  EXPECT_EQ(RunRelay({std::string("--acl-file=") + path, "--db-port=1", "--mqtt-port=1"}, &out), 2) << out;
  EXPECT_NE(out.find("acl line 2: access must be read, write, readwrite or deny, got 'reed'"), std::string::npos)
      << out;
  unlink(path);
  EXPECT_EQ(RunRelay({"--acl-file=/nonexistent/acl", "--db-port=1", "--mqtt-port=1"}, &out), 2) << out;
  EXPECT_NE(out.find("--acl-file: cannot read '/nonexistent/acl'"), std::string::npos) << out;
}

// A --metrics-port another process holds stops the start, as a bad option
// does: one line, exit 2 (exit 1 until 2026-12-07, a helper's review).
TEST(DeployOptions, AMetricsPortInUseStopsTheRelayAtStart) {
  const IdleListener holder;
  const std::string port = std::to_string(holder.port());
  std::string out;
  EXPECT_EQ(RunRelay({"--metrics-port=" + port, "--db-port=1", "--mqtt-port=1"}, &out), 2) << out;
  EXPECT_NE(out.find("metrics: cannot listen on 127.0.0.1:" + port), std::string::npos) << out;
}

}  // namespace
}  // namespace seqtest
