// TwinWatch: tells another live relay started with this relay's id from a
// lease this relay's own earlier run left behind.
//
// A standby reads its shard's lease (owner, epoch, expiry) a few times per
// lease. An owner equal to this relay's id is either this relay's previous
// process (killed: nothing renews its lease, which runs out) or another
// process started with the same --relay-id (a copied configuration, or
// containers on one host network, each process 1 under the host's name).
// The other process renews the lease: the stored expiry (EXPIRES_AT, by the
// database's clock, never the reader's) moves within one epoch, which
// nothing else does. Seen once, that settles it. Such twins share their
// own MQTT links' client ids, and mosquitto closes the one's link at each
// connect of the other's, for as long as both run.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace seqrelay {

class TwinWatch {
 public:
  explicit TwinWatch(std::string relay_id);

  // One reading of the lease: its owner, epoch, stored expiry (any fixed
  // origin), and whether it is live (not expired by the database's clock).
  // True once a live lease held under this relay's id was seen renewed.
  bool Observe(std::string_view owner, uint32_t epoch, int64_t expires_at_us, bool live);

 private:
  struct Reading {
    uint32_t epoch;
    int64_t expires_at_us;
  };
  std::string relay_id_;
  std::optional<Reading> last_;  // the last reading of a live lease under this relay's id
};

}  // namespace seqrelay
