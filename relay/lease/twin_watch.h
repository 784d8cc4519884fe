// TwinWatch: tells another live relay started with this relay's id from a
// lease this relay's own earlier run left behind.
//
// A standby reads its shard's lease (owner, epoch, expiry) a few times per
// lease. An owner equal to this relay's id is either this relay's previous
// process (killed: nothing renews its lease, which runs out) or another
// process started with the same --relay-id (a copied configuration, or
// containers on one host network, each process 1 under the host's name).
// The other process renews the lease: its expiry moves ahead within one
// epoch. Seen once, that settles it. Such twins share their own MQTT links'
// client ids, and mosquitto closes the one's link at each connect of the
// other's, for as long as both run.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace seqrelay {

class TwinWatch {
 public:
  using Clock = std::chrono::steady_clock;

  // `slack`: how far two readings of an unrenewed expiry may disagree (the
  // round trips of the reads); a renewal moves it by about a third of a lease.
  TwinWatch(std::string relay_id, std::chrono::microseconds slack);

  // One reading of the lease, sent at `at` (expiry by the database's clock,
  // as microseconds from its NOW). True once a lease held under this
  // relay's id was seen renewed.
  bool Observe(std::string_view owner, uint32_t epoch, int64_t expires_in_us, Clock::time_point at);

 private:
  struct Reading {
    uint32_t epoch;
    Clock::time_point expires_at;  // by the local clock
  };
  std::string relay_id_;
  std::chrono::microseconds slack_;
  std::optional<Reading> last_;  // the last reading of a live lease under this relay's id
};

}  // namespace seqrelay
