#include "servers.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>

namespace seqtest {
namespace {

std::string FindBinary(const std::string& name) {
  for (const char* dir : {"/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"}) {
    std::string path = std::string(dir) + "/" + name;
    if (access(path.c_str(), X_OK) == 0) return path;
  }
  throw std::runtime_error(name + " not found: install it (tools/test.sh does)");
}

// Whether a server's log says that its port was taken.
bool LostItsPort(const std::string& log) {
  const std::string text = ReadFile(log);
  return text.find("Address already in use") != std::string::npos || text.find("Bind on TCP/IP port") != std::string::npos;
}

// Runs `start`. Ports are picked free but not held until the server binds
// them: a server whose log says it lost its port to someone else is
// started again after `repick` chose another, up to three times in all.
void StartKeepingPortsFree(const std::function<void()>& start, const std::string& log,
                           const std::function<void()>& repick) {
  for (int attempt = 1;; ++attempt) {
    try {
      start();
      return;
    } catch (const std::runtime_error&) {
      if (attempt == 3 || !LostItsPort(log)) throw;
      repick();
    }
  }
}

}  // namespace

TestServers::TestServers() {
  char tmpl[] = "/tmp/seqtest-XXXXXX";  // short: the socket path must stay under 108 bytes
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  dir_ = tmpl;
  db_socket_ = dir_ + "/my.sock";
  mqtt_port_ = FreePort();
  db_port_ = FreePort();

  // Temp files of our own: servers of test shards that run side by side
  // would otherwise collide on the names MariaDB makes in /tmp (seen:
  // "Unknown table 'mysql.tmp_user_nopasswd'" from two installs at once).
  std::filesystem::create_directories(dir_ + "/tmp");
  if (const char* db = std::getenv("SEQTEST_DB"); db != nullptr && std::string(db) == "galera") {
    // The relay's tests read what any node committed (wsrep_sync_wait).
    // galera.sh creates the same user and password.
    // (Its nodes are galera.sh's, in sessions of their own: a signal's
    // cleanup leaves this directory to them, and galera.sh's watchdog stops
    // them once this process is gone.)
    galera_dir_ = dir_ + "/galera";
    Galera("start", {"--option", "wsrep_sync_wait=1", "--owner", std::to_string(getpid())});
    db_port_ = std::stoi(GaleraEnv("NODE1_PORT"));
    db_socket_ = GaleraEnv("NODE1_SOCKET");
  } else {
    if (!std::getenv("SEQTEST_KEEP")) RemoveOnSignal(dir_);
    InstallDatabase();
  }

  WriteBrokerConfig();
  StartKeepingPortsFree([&] { StartBroker(); }, dir_ + "/mosquitto.log", [&] {
    mqtt_port_ = FreePort();
    WriteBrokerConfig();
  });
}

TestServers::~TestServers() {
  broker_.Stop();
  db_.Stop();
  if (galera()) {
    try {
      Galera("stop");
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s\n", e.what());
    }
  }
  if (!std::getenv("SEQTEST_KEEP")) std::filesystem::remove_all(dir_);
  ForgetOnSignal(dir_);
}

void TestServers::InstallDatabase() {
  std::string out;
  int rc = RunCommand({FindBinary("mariadb-install-db"), "--no-defaults", "--user=root", "--datadir=" + dir_ + "/db",
                       "--tmpdir=" + dir_ + "/tmp", "--auth-root-authentication-method=normal", "--skip-test-db"},
                      &out);
  if (rc != 0) throw std::runtime_error("mariadb-install-db failed:\n" + out);
  StartKeepingPortsFree([&] { StartDatabase(); }, dir_ + "/mariadb.log", [&] { db_port_ = FreePort(); });
  Sql(std::string("CREATE USER '") + kDbUser + "'@'%' IDENTIFIED BY '" + kDbPassword + "'; GRANT ALL ON *.* TO '" +
      kDbUser + "'@'%';");
}

void TestServers::WriteBrokerConfig() {
  std::ofstream conf(dir_ + "/mosquitto.conf");
  conf << "listener " << mqtt_port_ << " 127.0.0.1\n"
       << "allow_anonymous true\n"
       << "user root\n"
       << "set_tcp_nodelay true\n"
       << "max_queued_messages 0\n"
       << "persistence true\n"
       << "persistence_location " << dir_ << "/\n"
       << "autosave_interval 1\n"
       << "log_dest stderr\n"
       << "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n";
  conf.close();
}

void TestServers::Galera(const std::string& command, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {std::string(SEQRELAY_SOURCE_DIR) + "/tools/galera.sh", command, galera_dir_};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out;
  if (RunCommand(argv, &out) != 0) throw std::runtime_error("tools/galera.sh " + command + " failed:\n" + out);
}

std::string TestServers::GaleraEnv(const std::string& key) const {
  std::ifstream env(galera_dir_ + "/cluster.env");
  for (std::string line; std::getline(env, line);) {
    if (line.rfind(key + "=", 0) == 0) return line.substr(key.size() + 1);
  }
  throw std::runtime_error("no " + key + " in " + galera_dir_ + "/cluster.env");
}

void TestServers::SignalDatabase(int sig) {
  if (galera()) {
    kill(static_cast<pid_t>(std::stol(GaleraEnv("NODE1_PID"))), sig);
  } else {
    db_.Signal(sig);
  }
}

void TestServers::StartDatabase() {
  if (galera()) return Galera("restart", {"1"});
  db_.Start({FindBinary("mariadbd"), "--no-defaults", "--user=root", "--datadir=" + dir_ + "/db",
             "--tmpdir=" + dir_ + "/tmp", "--socket=" + db_socket_, "--port=" + std::to_string(db_port_), "--bind-address=127.0.0.1",
             "--innodb-flush-log-at-trx-commit=1", "--skip-name-resolve"},
            dir_ + "/mariadb.log");
  // The socket is ours alone (another server may answer on a port we lost),
  // and MariaDB opens it after its TCP port.
  bool up = WaitFor([&] { return !db_.running() || UnixSocketAccepts(db_socket_); }, std::chrono::seconds(60));
  if (!up || !db_.running()) throw std::runtime_error("mariadbd did not start:\n" + Tail(dir_ + "/mariadb.log", 30));
}

void TestServers::StopDatabase(int sig) {
  if (galera()) return sig == SIGKILL ? Galera("kill", {"1"}) : Galera("stop", {"1"});
  db_.Signal(sig);
  if (!db_.Wait(std::chrono::seconds(60))) throw std::runtime_error("mariadbd did not stop");
}

void TestServers::StartBroker() {
  // Ready once it says so (another server may answer on a port we lost)
  // and its port answers. The log's end is taken before the start: the
  // broker can say so before this thread reads on.
  const std::size_t log_start = ReadFile(dir_ + "/mosquitto.log").size();
  broker_.Start({FindBinary("mosquitto"), "-c", dir_ + "/mosquitto.conf"}, dir_ + "/mosquitto.log");
  bool up = WaitFor(
      [&] {
        return !broker_.running() || (ReadFile(dir_ + "/mosquitto.log").find(" running", log_start) != std::string::npos &&
                                      PortAccepts(mqtt_port_));
      },
      std::chrono::seconds(20));
  if (!up || !broker_.running()) {
    throw std::runtime_error("mosquitto did not start:\n" + Tail(dir_ + "/mosquitto.log", 30));
  }
}

void TestServers::StopBroker(int sig) {
  broker_.Signal(sig);
  if (!broker_.Wait(std::chrono::seconds(30))) throw std::runtime_error("mosquitto did not stop");
}

std::vector<std::string> TestServers::SqlCommand(const std::string& sql) const {
  return {FindBinary("mariadb"), "--no-defaults", "-S", db_socket_, "-uroot", "-N", "-B", "-e", sql};
}

std::string TestServers::Sql(const std::string& sql) {
  std::string out;
  int rc = RunCommand(SqlCommand(sql), &out);
  if (rc != 0) throw std::runtime_error("SQL failed (" + sql + "):\n" + out + Logs());
  return out;
}

std::string TestServers::Logs() const {
  return "---- mosquitto log (tail) ----\n" + Tail(dir_ + "/mosquitto.log", 40) + "---- mariadb log (tail) ----\n" +
         Tail(galera() ? GaleraEnv("NODE1_LOG") : dir_ + "/mariadb.log", 40);
}

TestServers& SharedServers() {
  static TestServers* servers = new TestServers();  // stopped by the atexit hook below
  static bool registered = [] {
    std::atexit([] { delete servers; });
    return true;
  }();
  (void)registered;
  return *servers;
}

}  // namespace seqtest
