// seqsub: an ordered subscriber for seqrelay's sequenced topics, in the
// manner of mosquitto_sub. It prints each message once, in SEQ order per
// topic, asking the relay for anything it missed.
//
// Exit codes: 0 done (-C reached, or SIGINT/SIGTERM), 1 it could not start
// (connection, authentication, a state file it cannot read or write), a
// save of the state file failed, or stdout could not be written (a closed
// pipe, a full disk), 2 bad options, 128 + the signal for a second
// SIGINT/SIGTERM during a stop (which quits without waiting).
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli.h"
#include "client/seq_client.h"
#include "core/frame.h"
#include "core/topic_filter.h"

namespace po = boost::program_options;

namespace {

// Well-formed UTF-8 (RFC 3629): no overlong form, no surrogate, nothing
// above U+10FFFF. What passes goes out as JSON text unchanged; anything
// else would be replaced (U+FFFD) by the JSON writer, so it goes as base64.
bool ValidUtf8(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    int extra = 0;
    uint32_t cp = c, least = 0;
    if (c >= 0x80) {
      if ((c >> 5) == 6) {
        extra = 1, cp = c & 0x1F, least = 0x80;
      } else if ((c >> 4) == 14) {
        extra = 2, cp = c & 0x0F, least = 0x800;
      } else if ((c >> 3) == 30) {
        extra = 3, cp = c & 0x07, least = 0x10000;
      } else {
        return false;  // not a lead byte
      }
    }
    if (i + extra >= s.size()) return false;  // cut short
    for (int k = 1; k <= extra; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b >> 6) != 2) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < least || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

std::string Base64(const std::string& in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  seqclient::Options o;
  std::string format = "text";
  bool verbose = false, history = false;
  long long count = 0, gap_wait_ms = 200;
  long long from = 0, last = 0;  // signed: a negative number is an error, not a huge SEQ

  po::options_description desc(
      "seqsub: subscribe to seqrelay's sequenced topics and print each message once, in SEQ order, filling gaps "
      "from the relay.\n\nUsage: seqsub -t TOPIC [-t TOPIC...] [options]\n\nExit codes: 0 done (-C reached, or "
      "SIGINT/SIGTERM); 1 it could not start, a save of the state file failed, or stdout could not be written (a "
      "closed pipe: --state then resumes at the first message not printed); 2 bad options; 128 + the signal for a "
      "second SIGINT/SIGTERM during a stop, which quits at once (a stop waits for a print blocked on stdout; "
      "--state is saved first).\n\nOptions");
  desc.add_options()
      ("help", "Print this help and exit.")
      ("host,h", po::value(&o.host)->default_value(o.host), "Broker host.")
      ("port,p", po::value(&o.port)->default_value(o.port), "Broker port.")
      ("topic,t", po::value(&o.filters),
       "Raw topic T (seqsub subscribes to <seq-prefix>/T); repeatable; '+' and '#' allowed except with history "
       "and --state.")
      ("username,u", po::value(&o.user), "Username.")
      ("pw,P", po::value(&o.password), "Password.")
      ("id,i", po::value(&o.client_id),
       "Client id. Default: the username when -u is given (a broker with use_username_as_clientid, like the "
       "shipped one, renames the client to it), else seqsub-<pid>.")
      ("requester,r", po::value(&o.requester),
       "Where retransmit requests go and replies come: <control-prefix>/retransmit/R and "
       "<control-prefix>/replay/R, R one level or USER/C (the relay's per-user topics). Default: USER/ID when -u "
       "and an -i other than USER are given (the shipped ACL lets a user ask there whatever the broker makes of "
       "client ids), else the username or the client id.")
      ("qos,q", po::value(&o.qos)->default_value(o.qos), "QoS of the subscription (0, 1 or 2).")
      ("verbose,v", po::bool_switch(&verbose), "Print 'topic SEQ payload' instead of the payload alone.")
      ("count,C", po::value(&count), "Exit after N messages.")
      ("format", po::value(&format)->default_value(format),
       "text, or json: one object a line with topic, id, seq, flag, late and payload (text) or payload_base64.")
      ("history", po::bool_switch(&history), "Start with each topic's whole history, then go live (no gap, no "
       "duplicate at the seam).")
      ("from", po::value(&from),
       "Start each topic at SEQ N (a resume: if the relay's answer puts N past a topic's newest SEQ + 1, that is "
       "taken for a database reset since, said on stderr, and that topic is read from its oldest SEQ).")
      ("last", po::value(&last), "Start with each topic's last N messages.")
      ("gap-wait", po::value(&gap_wait_ms)->default_value(gap_wait_ms),
       "Milliseconds a gap may stay open before the missing range is requested.")
      ("state", po::value(&o.state_file),
       "Remember the last delivered SEQ per topic in FILE and resume from it on the next start. A topic FILE "
       "knows resumes there, whatever --history, --from or --last say.")
      ("seq-prefix", po::value(&o.seq_prefix)->default_value(o.seq_prefix), "The relay's --seq-prefix.")
      ("control-prefix", po::value(&o.control_prefix)->default_value(o.control_prefix),
       "The relay's --control-prefix.");
  auto check = [&](const po::variables_map& vm) {
    if (o.filters.empty()) throw po::error("give at least one topic with -t");
    for (const auto& f : o.filters) {
      if (auto s = seqrelay::ValidateFilter(f); !s.ok()) throw po::error("-t: " + s.message());
    }
    if (o.port < 1 || o.port > 65535) throw po::error("--port must be 1 to 65535");
    if (vm.count("requester")) {
      const auto& r = o.requester;
      const auto slash = r.find('/');
      if (r.empty() || r.find_first_of("+#") != std::string::npos || r.front() == '/' || r.back() == '/' ||
          (slash != std::string::npos && r.find('/', slash + 1) != std::string::npos)) {
        throw po::error("--requester must be one topic level, or USER/C: two, without '+' or '#'");
      }
    }
    if (format != "text" && format != "json") throw po::error("--format must be text or json");
    if (int(history) + int(vm.count("from")) + int(vm.count("last")) > 1) {
      throw po::error("give only one of --history, --from, --last");
    }
    if (o.qos < 0 || o.qos > 2) throw po::error("--qos must be 0, 1 or 2");
    if (gap_wait_ms < 0 || gap_wait_ms > 86'400'000) throw po::error("--gap-wait must be 0 to 86400000 (a day)");
    if (vm.count("state") && o.state_file.empty()) throw po::error("--state: give a file name");
    constexpr auto kMaxSeq = static_cast<long long>(seqrelay::kMaxSeq);
    if (vm.count("from") && (from < 1 || from > kMaxSeq)) throw po::error("--from must be a SEQ, 1 to 2^40-1");
    if (vm.count("last") && (last < 1 || last > kMaxSeq)) throw po::error("--last must be 1 to 2^40-1");
    if (vm.count("count") && count < 1) throw po::error("--count must be at least 1");
    // The rest as the client checks it at its start: an option error here.
    if (o.client_id.empty()) o.client_id = o.user.empty() ? "seqsub-" + std::to_string(getpid()) : o.user;
    o.gap_wait = std::chrono::milliseconds(gap_wait_ms);
    if (history) o.history = seqclient::History::kAll;
    if (from) o.history = seqclient::History::kFrom, o.history_n = static_cast<uint64_t>(from);
    if (last) o.history = seqclient::History::kLast, o.history_n = static_cast<uint64_t>(last);
    if (auto error = seqclient::CheckOptions(o)) throw po::error(*error);
  };
  if (auto exit_code = seqtools::ParseCommandLine("seqsub", argc, argv, desc, check)) return *exit_code;
  o.on_forged_frames = [](const std::string& topic, const std::vector<uint64_t>& seqs) {
    std::fprintf(stderr, "seqsub: '%s': %zu frame(s) from SEQ %llu on above the newest the relay stored, dropped "
                 "(someone else publishes on its sequenced topic)\n",
                 topic.c_str(), seqs.size(), static_cast<unsigned long long>(seqs.front()));
  };
  // The client stops delivering at -C, so that --state resumes at the first
  // message not printed (frames keep coming until Stop()).
  o.max_messages = static_cast<uint64_t>(count);

  // SIGINT and SIGTERM go to one thread. During the start (up to the
  // broker's CONNACK, or a connect to a host that does not answer) they end
  // the process at once if nothing was printed yet: the state file is then
  // as it was. Else the loop below stops the client, which saves its state.
  // (Static: the thread, detached, may outlive main's locals.)
  static sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  // A closed pipe (`seqsub ... | head`) is a write error, which stops the
  // client with its state file at the first message not printed, not a
  // SIGPIPE, which ended the process before it saved anything.
  signal(SIGPIPE, SIG_IGN);
  static std::atomic<bool> started{false}, stopping{false};
  static std::atomic<int> write_error{0};  // errno of a failed write to stdout
  static std::atomic<long long> printed{0};
  static std::timed_mutex printing;  // a print, or the decision to end before the start's end
  static std::atomic<bool> state_saved{false};  // by the stop, before it waits for the network thread
  static const bool with_state = !o.state_file.empty();
  std::thread([] {
    int sig = 0;
    sigwait(&stop, &sig);
    // (A print blocked on a stalled stdout holds the lock: a message came,
    // and the stop is the loop's below, not an end at once.)
    if (std::unique_lock lock(printing, std::defer_lock); lock.try_lock_for(std::chrono::seconds(1))) {
      if (!started && printed == 0) {
        std::fprintf(stderr, "seqsub: %s before the broker answered: stopped\n", strsignal(sig));
        std::_Exit(0);
      }
    }
    stopping = true;
    // The stop saves the state file, then waits for the network thread
    // (a print under way; a connect under way is interrupted): should that
    // take long, a second signal ends the process at once, once the state
    // file is saved (2 s at most).
    const timespec patience{2, 0};
    int again;
    while ((again = sigtimedwait(&stop, nullptr, &patience)) < 0 && errno == EINTR) {
    }
    if (again < 0) {
      std::fprintf(stderr, "seqsub: still stopping after 2 s, waiting for the network thread; %s again quits at "
                   "once\n", strsignal(sig));
      sigwait(&stop, &again);
    }
    for (int i = 0; i < 200 && with_state && !state_saved; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::fprintf(stderr, "seqsub: %s again: quit without waiting%s\n", strsignal(again),
                 with_state && !state_saved ? " (the state file not saved: the last second's messages may be printed "
                                              "again)" : "");
    std::_Exit(128 + again);
  }).detach();

  const bool json_out = format == "json";
  seqclient::SeqClient client(
      o,
      [&](const seqclient::Message& m) {
        std::lock_guard lock(printing);
        // Stopping: the state file is saved, and may be the last word
        // (a second signal); what comes now is for the next start.
        if (stopping) throw seqclient::Undelivered{};
        if (count > 0 && printed.load() >= count) return;
        if (json_out) {
          nlohmann::json line = {{"topic", m.topic}, {"id", m.topic_id}, {"seq", m.seq},
                                 {"flag", m.ordered ? 1 : 0}, {"late", m.late}};
          if (ValidUtf8(m.payload)) {
            line["payload"] = m.payload;
          } else {
            line["payload_base64"] = Base64(m.payload);
          }
          std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
          std::fprintf(stdout, "%s\n", text.c_str());
        } else if (verbose) {
          std::fprintf(stdout, "%s %llu ", m.topic.c_str(), static_cast<unsigned long long>(m.seq));
          std::fwrite(m.payload.data(), 1, m.payload.size(), stdout);  // (NUL bytes and all)
          std::fputc('\n', stdout);
        } else {
          std::fwrite(m.payload.data(), 1, m.payload.size(), stdout);
          std::fputc('\n', stdout);
        }
        if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
          write_error = errno != 0 ? errno : EIO;
          throw seqclient::Undelivered{};  // neither this message nor any later one counts as printed
        }
        ++printed;
      },
      [](const std::string& topic, uint64_t a, uint64_t b, const std::string& why) {
        if (a == 0 && b == 0) {  // the topic's start (history, resume) could not be settled
          std::fprintf(stderr, "seqsub: '%s': %s\n", topic.c_str(), why.c_str());
          return;
        }
        if (b == 0) {  // a catch-up never answered: its end is unknown
          std::fprintf(stderr, "seqsub: '%s': what came after SEQ %llu while away could not be fetched (%s)\n",
                       topic.c_str(), static_cast<unsigned long long>(a - 1), why.c_str());
          return;
        }
        std::fprintf(stderr, "seqsub: gap in '%s': SEQ %llu..%llu not delivered (%s)\n", topic.c_str(),
                     static_cast<unsigned long long>(a), static_cast<unsigned long long>(b), why.c_str());
      });
  if (auto error = client.Start()) {
    std::fprintf(stderr, "seqsub: %s\n", error->c_str());
    return 1;
  }
  started = true;
  while ((count == 0 || printed.load() < count) && !stopping && write_error == 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  client.Stop([](bool saved) { state_saved = saved; });  // a failed save is counted, and said below
  if (write_error != 0) {
    std::fprintf(stderr, "seqsub: writing to stdout: %s; stopped after %lld messages%s\n", std::strerror(write_error),
                 printed.load(), o.state_file.empty() ? "" : " (--state resumes at the first one not printed)");
  }
  auto s = client.stats();
  std::fprintf(stderr,
               "seqsub: delivered %llu, duplicates dropped %llu, gaps filled %llu, gaps unfilled %llu, retransmit "
               "requests %llu\n",
               static_cast<unsigned long long>(printed.load()), (unsigned long long)s.duplicates, (unsigned long long)s.gaps_filled,
               (unsigned long long)s.gaps_unfilled, (unsigned long long)s.requests);
  if (s.subscribe_errors > 0) {
    std::fprintf(stderr, "seqsub: %llu subscriptions failed after a reconnect, the last: %s\n",
                 (unsigned long long)s.subscribe_errors, s.last_subscribe_error.c_str());
  }
  if (s.network_errors > 0) {
    std::fprintf(stderr, "seqsub: %llu errors ended the network loop, each followed by a new try to connect, the last: %s\n",
                 (unsigned long long)s.network_errors, s.last_network_error.c_str());
  }
  if (s.state_save_errors > 0) {
    std::fprintf(stderr, "seqsub: %llu saves of the state file failed, the last: %s\n",
                 (unsigned long long)s.state_save_errors, s.last_state_error.c_str());
    return 1;
  }
  return write_error != 0 ? 1 : 0;
}
