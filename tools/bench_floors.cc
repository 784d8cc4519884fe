#include "bench_floors.h"

#include <cppconn/prepared_statement.h>
#include <cppconn/resultset.h>
#include <cppconn/statement.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <mysql_connection.h>
#include <mysql_driver.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

namespace seqbench {
namespace {

using Clock = std::chrono::steady_clock;

double UsSince(Clock::time_point t) { return std::chrono::duration<double, std::micro>(Clock::now() - t).count(); }

void Idle() { std::this_thread::sleep_for(std::chrono::milliseconds(10)); }

std::unique_ptr<sql::Connection> Connect(int port, const std::string& user, const std::string& password) {
  sql::ConnectOptionsMap options;
  options["hostName"] = sql::SQLString(fmt::format("tcp://127.0.0.1:{}", port));
  options["userName"] = sql::SQLString(user);
  options["password"] = sql::SQLString(password);
  options["CLIENT_MULTI_STATEMENTS"] = true;  // the relay's batch: several statements in one query
  std::unique_ptr<sql::Connection> conn(sql::mysql::get_mysql_driver_instance()->connect(options));
  // Two of the measurements wait on a row another connection holds: should
  // a statement of the holder fail, the waiter gives up after 5 s, not 50.
  std::unique_ptr<sql::Statement>(conn->createStatement())->execute("SET SESSION innodb_lock_wait_timeout = 5");
  return conn;
}

// The disk under the server's redo log, without the server. A small write
// (512 bytes) in place in a preallocated file, as a redo log's are, then
// fdatasync: through the page cache, so the disk takes one 4 KiB page and
// a flush (MariaDB 10.11 writes its log around the page cache, in the
// device's block size). Nothing measured if the directory is not ours to
// write.
void MeasureDisk(const std::string& dir, int n, DatabaseFloors& f) {
  const std::string path = fmt::format("{}/seqbench_disk_{}.tmp", dir, getpid());
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return;
  constexpr int kBlocks = 256;
  std::vector<char> block(4096, 'x');
  bool ok = true;
  for (int i = 0; i < kBlocks && ok; ++i) ok = pwrite(fd, block.data(), block.size(), off_t{i} * 4096) == 4096;
  ok = ok && fsync(fd) == 0;
  auto write_one = [&](int i, std::vector<double>& into) {
    const auto t = Clock::now();
    ok = ok && pwrite(fd, block.data(), 512, off_t{i % kBlocks} * 4096) == 512 && fdatasync(fd) == 0;
    into.push_back(UsSince(t));
  };
  for (int i = 0; i < n && ok; ++i) write_one(i, f.disk_us);
  for (int i = 0; i < std::max(n / 5, 1) && ok; ++i) {
    Idle();
    write_one(i, f.idle_disk_us);
  }
  close(fd);
  unlink(path.c_str());
  if (!ok) {
    f.disk_us.clear();
    f.idle_disk_us.clear();
    return;
  }
  f.disk_dir = dir;
}

// Whether a transaction is waiting on a row lock: InnoDB's live count of
// them (server-wide; the floors' second connection is alone to make one, the
// relays being idle meanwhile). Not information_schema.INNODB_TRX: InnoDB
// refreshes that table's cache only after 100 ms without a read of it, so a
// loop that polls it reads the same stale rows for as long as it polls
// (seen: every pair waited for its 2 s give-up). SHOW GLOBAL STATUS, not
// information_schema.GLOBAL_STATUS, which MySQL 8 no longer has. nullopt if
// the server would not say.
std::optional<bool> SomeoneWaitsOnALock(sql::Connection& asker) {
  try {
    std::unique_ptr<sql::Statement> st(asker.createStatement());
    std::unique_ptr<sql::ResultSet> rs(st->executeQuery("SHOW GLOBAL STATUS LIKE 'Innodb_row_lock_current_waits'"));
    if (!rs->next()) return std::nullopt;
    return rs->getUInt64(2) >= 1;
  } catch (const sql::SQLException&) {
    return std::nullopt;
  }
}

// Two batches in a row on two connections: the second's fence UPDATE sent
// while the first holds the row, then the first's COMMIT. InnoDB lets go of
// a transaction's row locks when it commits in memory, before the redo
// log's flush that the COMMIT waits for.
void MeasureHeldFence(int port, const std::string& user, const std::string& password, const std::string& db,
                      int n, DatabaseFloors& f) {
  auto first = Connect(port, user, password), second = Connect(port, user, password);
  for (sql::Connection* c : {first.get(), second.get()}) {
    c->setSchema(db);
    c->setAutoCommit(false);
  }
  std::unique_ptr<sql::Statement> a(first->createStatement()), b(second->createStatement());
  const std::string fence = "UPDATE FENCE SET COMMITS = COMMITS + 1 WHERE NAME = 'default' AND EPOCH = 1";
  for (int i = 0; i < n; ++i) {
    Idle();
    a->execute(fence);
    Clock::time_point committing{}, fenced{};
    std::exception_ptr failed;
    std::jthread waiting([&] {
      try {
        b->execute(fence);
      } catch (...) {
        failed = std::current_exception();
      }
      fenced = Clock::now();
    });
    const auto give_up = Clock::now() + std::chrono::seconds(2);
    std::optional<bool> seen;
    while ((seen = SomeoneWaitsOnALock(*first)) == false && Clock::now() < give_up) {
    }
    if (!seen) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));  // taken as enough for the UPDATE to reach its wait
      ++f.held_fence_unasked;
    } else if (!*seen) {
      ++f.held_fence_unseen;
    }
    committing = Clock::now();
    a->execute("COMMIT");  // lets the waiting UPDATE go (if it throws, the UPDATE times out after 5 s)
    f.held_commit_us.push_back(UsSince(committing));
    waiting.join();
    if (failed) std::rethrow_exception(failed);
    b->execute("COMMIT");
    f.waiting_fence_us.push_back(std::chrono::duration<double, std::micro>(fenced - committing).count());
  }
}

// Arrival times, pushed at a fixed rate by a thread of its own for a
// while; Take hands over all that arrived (waiting for one), false at the end.
class Arrivals {
 public:
  Arrivals(int rate, std::chrono::milliseconds duration)
      : thread_([this, rate, duration] {
          const auto step = std::chrono::nanoseconds(1'000'000'000 / rate);
          const auto end = Clock::now() + duration;
          for (auto t = Clock::now() + step; t < end; t += step) {
            std::this_thread::sleep_until(t);
            {
              std::lock_guard lock(mu_);
              queue_.push_back(Clock::now());  // when it is there to take, not when it was due
            }
            cv_.notify_one();
          }
          {
            std::lock_guard lock(mu_);
            done_ = true;
          }
          cv_.notify_all();
        }) {}
  ~Arrivals() { thread_.join(); }
  // What has arrived, without waiting: false if nothing.
  bool TryTake(std::vector<Clock::time_point>& batch) {
    std::lock_guard lock(mu_);
    batch.assign(queue_.begin(), queue_.end());
    queue_.clear();
    return !batch.empty();
  }
  bool Take(std::vector<Clock::time_point>& batch) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return !queue_.empty() || done_; });
    batch.assign(queue_.begin(), queue_.end());
    queue_.clear();
    return !batch.empty();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Clock::time_point> queue_;
  bool done_ = false;
  std::thread thread_;  // last: starts once the rest is built
};

DatabaseFloors::PacedWriter MeasurePacedWriter(sql::Statement* statements[2], uint64_t& id, int rate,
                                               std::chrono::milliseconds duration, bool two_in_flight,
                                               bool commit_in_query, bool appended = false) {
  DatabaseFloors::PacedWriter w;
  w.rate = rate;
  w.two_in_flight = two_in_flight;
  w.commit_in_query = commit_in_query;
  w.appended = appended;
  std::mutex mu;  // guards w and id, and turn and finished below
  auto query = [&](std::size_t rows) {
    std::lock_guard lock(mu);
    std::string q = fmt::format("UPDATE FENCE SET COMMITS = COMMITS + 1, LAST = {} WHERE NAME = 'default' AND "
                                "EPOCH = 1;{}INSERT INTO F (id, b) VALUES ", id + rows,
                                commit_in_query ? "SET @fence = ~0 + (1 - ROW_COUNT());" : "");
    for (std::size_t i = 0; i < rows; ++i) {
      fmt::format_to(std::back_inserter(q), "{}({}, X'7878787878787878787878787878787878787878')", i ? "," : "", ++id);
    }
    if (commit_in_query) q += ";COMMIT";
    return q;
  };
  auto record = [&](const std::vector<Clock::time_point>& batch) {
    const auto now = Clock::now();
    std::lock_guard lock(mu);
    ++w.batches;
    for (const auto t : batch) w.latency_us.push_back(std::chrono::duration<double, std::micro>(now - t).count());
  };
  // The query's statements: the fence, the check and COMMIT if in the
  // query, the INSERT; their results read one by one (update counts all).
  const int statements_in_query = commit_in_query ? 4 : 2;
  auto run = [&](sql::Statement& st, const std::string& q) {
    st.execute(q);
    for (int i = 1; i < statements_in_query; ++i) st.getMoreResults();
  };
  // The rows of messages that came while a batch's statements ran, and
  // the journal's position moved past them on the fence's row (held).
  auto appended_query = [&](std::size_t rows) {
    std::lock_guard lock(mu);
    std::string q = fmt::format("UPDATE FENCE SET LAST = {} WHERE NAME = 'default';INSERT INTO F (id, b) VALUES ",
                                id + rows);
    for (std::size_t i = 0; i < rows; ++i) {
      fmt::format_to(std::back_inserter(q), "{}({}, X'7878787878787878787878787878787878787878')", i ? "," : "", ++id);
    }
    return q;
  };
  Arrivals arrivals(rate, duration);
  if (!two_in_flight) {
    std::vector<Clock::time_point> batch, more;
    while (arrivals.Take(batch)) {
      run(*statements[0], query(batch.size()));
      if (appended && arrivals.TryTake(more)) {
        statements[0]->execute(appended_query(more.size()));
        statements[0]->getMoreResults();
        batch.insert(batch.end(), more.begin(), more.end());
      }
      if (!commit_in_query) statements[0]->execute("COMMIT");
      record(batch);
    }
  } else {
    // The turn to take a batch and send its statements passes to the other
    // connection once they have returned: batches reach the fence in order.
    std::condition_variable turned;
    int turn = 0;
    bool finished = false;
    std::exception_ptr failed;
    auto write = [&](int k) {
      std::vector<Clock::time_point> batch;
      for (;;) {
        {
          std::unique_lock lock(mu);
          turned.wait(lock, [&] { return turn == k || finished; });
          if (finished) return;
        }
        const bool more = arrivals.Take(batch);
        if (more) run(*statements[k], query(batch.size()));
        {
          std::lock_guard lock(mu);
          turn = k ^ 1;
          finished = finished || !more;
        }
        turned.notify_all();
        if (!more) return;
        statements[k]->execute("COMMIT");
        record(batch);
      }
    };
    auto writer = [&](int k) {
      try {
        write(k);
      } catch (...) {
        {
          std::lock_guard lock(mu);
          if (!failed) failed = std::current_exception();
          finished = true;
        }
        turned.notify_all();
      }
    };
    {
      std::jthread first(writer, 0), second(writer, 1);
    }
    if (failed) std::rethrow_exception(failed);
  }
  std::sort(w.latency_us.begin(), w.latency_us.end());
  return w;
}

}  // namespace

DatabaseFloors MeasureDatabaseFloors(int port, const std::string& user, const std::string& password, int n,
                                     bool server_is_ours) {
  auto conn = Connect(port, user, password);
  const std::string db = fmt::format("seqbench_floor_{}", getpid());
  std::unique_ptr<sql::Statement> st(conn->createStatement());
  std::string datadir;
  {
    std::unique_ptr<sql::ResultSet> rs(st->executeQuery("SELECT @@datadir"));
    if (rs->next()) datadir = rs->getString(1);
    while (datadir.size() > 1 && datadir.back() == '/') datadir.pop_back();
  }
  st->execute(fmt::format("CREATE DATABASE `{}`", db));
  conn->setSchema(db);
  st->execute("CREATE TABLE F (id BIGINT UNSIGNED NOT NULL PRIMARY KEY, b VARBINARY(64) NOT NULL) ENGINE=InnoDB");
  st->execute("CREATE TABLE FENCE (NAME VARCHAR(64) NOT NULL PRIMARY KEY, EPOCH INT UNSIGNED NOT NULL, "
              "COMMITS BIGINT UNSIGNED NOT NULL, LAST BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB");
  st->execute("INSERT INTO FENCE VALUES ('default', 1, 0, 0)");
  conn->setAutoCommit(false);
  std::unique_ptr<sql::PreparedStatement> select(conn->prepareStatement("SELECT 1"));
  std::unique_ptr<sql::PreparedStatement> insert(conn->prepareStatement("INSERT INTO F (id, b) VALUES (?, ?)"));
  DatabaseFloors f;
  const std::string payload(20, 'x');
  std::string payload_hex;
  for (const char c : payload) payload_hex += fmt::format("{:02x}", static_cast<unsigned char>(c));
  uint64_t id = 0;
  auto transaction = [&](std::vector<double>& round_trip, std::vector<double>& inserted, std::vector<double>& committed) {
    auto t = Clock::now();
    std::unique_ptr<sql::ResultSet>(select->executeQuery());
    round_trip.push_back(UsSince(t));
    t = Clock::now();
    insert->setUInt64(1, ++id);
    insert->setString(2, payload);
    insert->execute();
    inserted.push_back(UsSince(t));
    t = Clock::now();
    st->execute("COMMIT");
    committed.push_back(UsSince(t));
  };
  for (int i = 0; i < n; ++i) transaction(f.round_trip_us, f.insert_us, f.commit_us);
  const int idle_n = std::max(n / 5, 1);
  for (int i = 0; i < idle_n; ++i) {
    Idle();
    transaction(f.idle_round_trip_us, f.idle_insert_us, f.idle_commit_us);
  }
  for (int i = 0; i < idle_n; ++i) {
    Idle();
    auto t = Clock::now();
    ++id;
    st->execute(fmt::format("UPDATE FENCE SET COMMITS = COMMITS + 1, LAST = {} WHERE NAME = 'default' AND EPOCH = 1;"
                            "INSERT INTO F (id, b) VALUES ({}, X'{}')",
                            id, id, payload_hex));
    while (st->getMoreResults()) {
    }
    f.idle_batch_us.push_back(UsSince(t));
    t = Clock::now();
    st->execute("COMMIT");
    f.idle_batch_commit_us.push_back(UsSince(t));
  }
  for (int i = 0; i < idle_n; ++i) {
    Idle();
    auto t = Clock::now();
    ++id;
    st->execute(fmt::format("UPDATE FENCE SET COMMITS = COMMITS + 1, LAST = {} WHERE NAME = 'default' AND EPOCH = 1;"
                            "INSERT INTO F (id, b) VALUES ({}, X'{}'); COMMIT",
                            id, id, payload_hex));
    st->getMoreResults();  // false for an update count: one call per further statement
    st->getMoreResults();
    f.idle_batch_in_one_us.push_back(UsSince(t));
  }
  MeasureHeldFence(port, user, password, db, idle_n, f);
  {
    auto other = Connect(port, user, password);
    other->setSchema(db);
    other->setAutoCommit(false);
    std::unique_ptr<sql::Statement> st2(other->createStatement());
    sql::Statement* statements[2] = {st.get(), st2.get()};
    const std::chrono::milliseconds duration(std::min(n, 2000));
    for (const int rate : {100, 1000, 5000}) {
      // The COMMIT apart, in the query, and apart with an append, in turns
      // of a third each, the first of a turn rotating: the machine's drift
      // (a minute's), and whatever the run before leaves, fall on all alike.
      DatabaseFloors::PacedWriter apart, in_query, appended;
      std::array<DatabaseFloors::PacedWriter*, 3> order = {&apart, &in_query, &appended};
      for (int turn = 0; turn < 3; ++turn) {
        for (DatabaseFloors::PacedWriter* w : order) {
          DatabaseFloors::PacedWriter part =
              MeasurePacedWriter(statements, id, rate, std::max(duration / 3, std::chrono::milliseconds(20)),
                                 false, w == &in_query, w == &appended);
          w->rate = part.rate;
          w->commit_in_query = part.commit_in_query;
          w->appended = part.appended;
          w->batches += part.batches;
          w->latency_us.insert(w->latency_us.end(), part.latency_us.begin(), part.latency_us.end());
        }
        std::rotate(order.begin(), order.begin() + 1, order.end());
      }
      for (DatabaseFloors::PacedWriter* w : {&apart, &in_query, &appended}) {
        std::sort(w->latency_us.begin(), w->latency_us.end());
      }
      f.paced.push_back(std::move(apart));
      f.paced.push_back(MeasurePacedWriter(statements, id, rate, duration, true, false));
      f.paced.push_back(std::move(in_query));
      f.paced.push_back(std::move(appended));
    }
  }
  conn->setAutoCommit(true);
  st->execute(fmt::format("DROP DATABASE `{}`", db));
  if (server_is_ours && !datadir.empty()) MeasureDisk(datadir, n, f);
  f.disk_measured = server_is_ours;
  for (auto* v : {&f.round_trip_us, &f.insert_us, &f.commit_us, &f.idle_round_trip_us, &f.idle_insert_us,
                  &f.idle_commit_us, &f.idle_batch_us, &f.idle_batch_commit_us, &f.idle_batch_in_one_us, &f.disk_us, &f.idle_disk_us,
                  &f.held_commit_us, &f.waiting_fence_us}) {
    std::sort(v->begin(), v->end());
  }
  return f;
}

void PrintFloors(const DatabaseFloors& f) {
  auto line = [](const char* what, const std::vector<double>& v) {
    double sum = 0;
    for (double x : v) sum += x;
    auto at = [&](double q) {  // nearest rank, as seqbench's percentiles
      if (v.empty()) return 0.0;
      const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
      return v[std::min(v.size(), std::max<std::size_t>(rank, 1)) - 1];
    };
    std::printf("  %-44s %8.0f %8.0f %8.0f\n", what, v.empty() ? 0.0 : sum / static_cast<double>(v.size()), at(0.5),
                at(0.99));
  };
  std::printf("\ndatabase floors, measured alone with the relay's connector (the relays idle):\n");
  std::printf("  %-44s %8s %8s %8s\n", "", "mean us", "p50 us", "p99 us");
  std::printf("  back to back, %zu transactions:\n", f.commit_us.size());
  line("  round trip (prepared SELECT 1)", f.round_trip_us);
  line("  one-row INSERT (prepared)", f.insert_us);
  line("  COMMIT of it (redo log flush)", f.commit_us);
  std::printf("  one every 10 ms, %zu transactions:\n", f.idle_commit_us.size());
  line("  round trip (prepared SELECT 1)", f.idle_round_trip_us);
  line("  one-row INSERT (prepared)", f.idle_insert_us);
  line("  COMMIT of it (redo log flush)", f.idle_commit_us);
  std::printf("  the relay's one-message batch, one every 10 ms, %zu transactions:\n", f.idle_batch_commit_us.size());
  line("  fence UPDATE + INSERT, one query", f.idle_batch_us);
  line("  COMMIT of it", f.idle_batch_commit_us);
  line("  the three in one query", f.idle_batch_in_one_us);
  std::printf("  two batches on two connections, one pair every 10 ms, %zu pairs (from the first's COMMIT sent):\n",
              f.held_commit_us.size());
  line("  the first's COMMIT returns", f.held_commit_us);
  line("  the second's held fence UPDATE returns", f.waiting_fence_us);
  if (f.held_fence_unseen > 0) {
    std::printf("    (in %d pairs the second's wait was not seen within 2 s: the COMMIT went without it)\n",
                f.held_fence_unseen);
  }
  if (f.held_fence_unasked > 0) {
    std::printf("    (in %d pairs the server would not say whether the second waited: the COMMIT went 1 ms after it)\n",
                f.held_fence_unasked);
  }
  std::printf("  a writer alone, the relay's batch shape at a fixed rate, one or two transactions in flight\n"
              "  (one: the COMMIT apart, or in the batch's query behind the fence's check, or apart with what\n"
              "  came during the statements inserted before it; the three in turns), from arrival to COMMIT\n"
              "  returned:\n");
  for (const DatabaseFloors::PacedWriter& w : f.paced) {
    const char* shape = w.two_in_flight     ? "two"
                        : w.commit_in_query ? "one, in query"
                        : w.appended        ? "one, appended"
                                            : "one";
    line(fmt::format("  {:>5} msg/s, {}, {} batches", w.rate, shape, w.batches).c_str(), w.latency_us);
  }
  if (f.disk_dir.empty()) {
    std::printf("  the disk alone: not measured (%s)\n", f.disk_measured
                                                          ? "the server's data directory is not writable here"
                                                          : "a server of --db-port: its disk may not be this one");
    return;
  }
  std::printf("  the disk alone, 512 B pwrite + fdatasync in %s:\n", f.disk_dir.c_str());
  line("  back to back", f.disk_us);
  line("  one every 10 ms", f.idle_disk_us);
}

}  // namespace seqbench
