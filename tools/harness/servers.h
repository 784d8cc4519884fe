// TestServers: a throwaway MariaDB and mosquitto on free 127.0.0.1 ports,
// with their data and logs in one temp folder, for the tests (started once
// per test binary, see SharedServers) and for seqbench. Stopped by PID. Tests that restart
// a server use the Stop/Start pairs, which keep data, ports and config.
//
// A missing server binary is a failure, not a skip.
//
// With SEQTEST_DB=galera in the environment the database is a 3-node
// MariaDB Galera cluster (tools/galera.sh) instead: db_port(), db_socket()
// and Sql() are node 1's, and the Stop/Start/Signal calls act on node 1 (the
// other nodes keep running). For running the suite against a cluster.
#pragma once

#include <signal.h>

#include <memory>
#include <string>

#include "process.h"

namespace seqtest {

class TestServers {
 public:
  TestServers();  // creates the folder, installs the database, starts both
  ~TestServers();

  const std::string& dir() const { return dir_; }
  int mqtt_port() const { return mqtt_port_; }
  int db_port() const { return db_port_; }
  const std::string& db_socket() const { return db_socket_; }
  // The servers' PIDs (0 when not running; the database's is node 1's
  // with a cluster), for their CPU time.
  pid_t broker_pid() const { return broker_.pid(); }
  pid_t db_pid() const { return galera() ? 0 : db_.pid(); }
  static constexpr const char* kDbUser = "seqrelay";
  static constexpr const char* kDbPassword = "test-password";

  void StartDatabase();
  void StopDatabase(int sig = SIGTERM);
  void StartBroker();
  void StopBroker(int sig = SIGTERM);
  // Sends a signal and returns (SIGSTOP and SIGCONT: a server that hangs).
  void SignalDatabase(int sig);
  bool galera() const { return !galera_dir_.empty(); }

  // Runs SQL as root through the mariadb client; returns its output
  // (tab-separated, no column names). Fails the test on error.
  std::string Sql(const std::string& sql);
  // The command Sql() runs, to run it in the background (Process).
  std::vector<std::string> SqlCommand(const std::string& sql) const;

  // The last lines of both servers' logs, for a failing test.
  std::string Logs() const;

 private:
  std::string dir_;
  int mqtt_port_ = 0;
  int db_port_ = 0;
  std::string db_socket_;
  Process db_;
  std::string galera_dir_;  // SEQTEST_DB=galera: the cluster's folder
  // A new MariaDB in dir_/db, started, with the tests' user.
  void InstallDatabase();
  void WriteBrokerConfig();
  // Runs tools/galera.sh with `args` (the cluster's folder after the command).
  void Galera(const std::string& command, const std::vector<std::string>& args = {});
  // A value of the cluster's cluster.env (it changes as nodes restart).
  std::string GaleraEnv(const std::string& key) const;
  Process broker_;
};

// The servers shared by all tests of one binary.
TestServers& SharedServers();

}  // namespace seqtest
