// RedeliveryFilter: recognises the broker's resends of messages the relay
// has already taken.
//
// libmosquitto queues the PUBACK of a QoS 1 delivery before the relay's
// callback runs, but sends it only later, from its network thread. If the
// connection ends in between (the relay killed after journaling, the link
// dropped by the broker, a broker restart), the broker still holds those
// messages as unacknowledged and resends them, with the same MQTT packet
// identifier, when the relay's session resumes (MQTT 3.1.1, 4.4). They are
// already journaled or queued here; storing them again would give one
// message two SEQs.
//
// So the filter remembers the newest `window` taken deliveries (packet
// identifier, and hashes of topic and payload: no copy, no allocation per
// message beyond the window's ring). A session the broker kept
// (session-present CONNACK, on the first connect or any later one) may
// start with resends: they come first, oldest first, and they are the
// newest taken messages whose PUBACK never left, one unbroken run. The first
// delivery after such a connect may match any remembered message (the ones
// before it were acknowledged), each next one only the next remembered
// message, and the first delivery that does not match ends the checks of
// this relay's own deliveries until the next reconnect, so no new message
// can be taken for a resend. A
// connect without a session resets everything (nothing can be resent).
//
// Why a new message cannot match: the broker numbers a session's messages
// in order, so the first new message after a reconnect carries an
// identifier past every remembered one (the window, 4096, is far below the
// 65535 identifiers). The broker also numbers deliveries the relay does
// not take (retained replays, which every SUBSCRIBE of a resumed session
// brings again; messages refused for their size): a remembered message
// that kIdentifiers - window of the link's deliveries have followed is
// forgotten (Seen), before the identifiers can come round to its own
// (until 2026-12-07 it was kept: a quiet shard whose reconnects replayed
// enough retained messages took a new message equal to a remembered one
// for its resend, and dropped it; a helper's review). That holds while
// the remembered deliveries are the session's newest: a relay that takes
// the shard over from another relay (whose deliveries moved the
// identifiers on, maybe round past the remembered ones) forgets its
// journal's committed records (ForgetCommitted),
// and all of them (ForgetAll) if the session they were taken in has been
// replaced; a relay restarting remembers only its journal's newest
// session's records (Journal::session). QoS 0 deliveries are never resent
// and neither match nor end the checks.
//
// Messages other relays handed over (RememberHandedOver) are kept apart:
// mosquitto resends one to this relay only right after its first
// resumption of the session, before the SUBACK, in no order this relay
// knows (later resends would be of a delivery this relay took itself).
//
// Pure logic, not thread-safe: the relay serialises its callers (the
// intake thread, and PumpPending on the main thread) with redelivery_mu_.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string_view>

namespace seqrelay {

class RedeliveryFilter {
 public:
  // MQTT's packet identifiers, 1 to 65535, which mosquitto hands out in turn.
  static constexpr uint64_t kIdentifiers = 65535;

  explicit RedeliveryFilter(std::size_t window) : window_(window) {}

  // A delivery of the intake link with a packet identifier (QoS 1 or 2),
  // taken or not: the broker spent an identifier on it. Call it for every
  // such delivery, before IsRedelivery and Remember.
  void Seen();

  // A delivery the relay took (journaled or queued), in the order taken.
  // Returns its number (1, 2, ... in that order; 0 for QoS 0 messages,
  // mid 0, which are never resent and are not remembered).
  uint64_t Remember(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload);

  // A record of this relay's journal, read at start, of the session that
  // may still resend it; `committed`: the database has it.
  void RememberFromJournal(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload, bool committed);

  // A message another relay took and handed over from its journal, which
  // this relay stores: mosquitto may resend it here (the other relay's
  // PUBACK never left), but only among the resends that follow this
  // relay's first resumption of the session, before that connect's SUBACK
  // (Subscribed). Kept apart from the deliveries this relay took, so that
  // it does not break their run: its resend may come anywhere before that
  // SUBACK, also after resends this relay does not know (the writer checks
  // those), and matching it neither ends the checks nor skips a delivery
  // of this relay's. Contains finds it for as long as this relay's own
  // deliveries would be found (the newest `window` of them).
  void RememberHandedOver(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload);

  // The intake's SUBACK came (of any connect: the first one ends the
  // window for handed-over messages' resends).
  void Subscribed();

  // The intake link connected (first connect or reconnect), with the
  // CONNACK's session-present flag.
  void Connected(bool session_present);

  // Forgets the committed journal records: another relay took deliveries
  // of the shard's session since, so their packet identifiers have moved on
  // (maybe round to remembered ones), and what the session still holds
  // unacknowledged of this relay's is among its uncommitted records only.
  void ForgetCommitted();

  // Forgets everything: the deliveries remembered were taken in an MQTT
  // session that has been replaced since, so none can be resent.
  void ForgetAll();

  // Forgets the newest remembered delivery that is this one: it was not
  // taken after all (its handling failed), and its resend must be taken.
  void Forget(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload);

  // True if this delivery is the resend of a remembered message. The
  // first resend after a connect forgets every older one this relay took
  // (the broker had acknowledged them); the resends themselves stay
  // remembered, as handed-over messages do: a connection that breaks
  // before their PUBACKs leave brings them again (until 2026-12-07 they
  // were forgotten, and taken as new then; a helper's review). For this
  // relay's own deliveries, false from the first delivery after a connect
  // that is not a resend on, until the next connect; for handed-over
  // messages, false from the first SUBACK on.
  bool IsRedelivery(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload);

  // What remembered message has this id and content, if any. Unlike
  // IsRedelivery it changes nothing: for a message another relay handed
  // over from its journal, which mosquitto may have resent to this relay
  // already (same packet id: the session is the shard's, not the relay's).
  struct Match {
    enum class Kind {
      kNone,
      kHandedOver,  // handed over to this relay (RememberHandedOver)
      kJournal,     // a record of this relay's journal (RememberFromJournal)
      kDelivery,    // a delivery this relay took (Remember): `delivery` is its number
    };
    Kind kind = Kind::kNone;
    uint64_t delivery = 0;
  };
  Match Find(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload) const;
  bool Contains(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload) const {
    return Find(mid, topic, payload).kind != Match::Kind::kNone;
  }

  std::size_t remembered() const { return entries_.size() + handed_over_.size(); }

 private:
  struct Entry {
    uint16_t mid;
    std::size_t size;
    uint64_t topic_hash;
    uint64_t payload_hash;
    bool committed;
    uint64_t taken_before = 0;  // handed over: this relay's deliveries remembered before it
    uint64_t number = 0;        // a delivery's (Remember's); 0 for a journal record
    bool resent = false;        // handed over: its resend came on this connection (once a connection)
    uint64_t seen_at = 0;       // the link's deliveries seen when it was remembered
  };
  const std::size_t window_;
  bool armed_ = false;         // a kept session resumed and no new message came yet
  bool matched_ = false;       // a resend was found: the next must be the next remembered
  std::size_t next_ = 0;       // matched_: the index in entries_ of the next remembered
  std::deque<Entry> entries_;  // the newest `window_` taken, oldest first
  std::deque<Entry> handed_over_;  // the newest `window_` handed over, oldest first
  bool first_run_ = true;          // no SUBACK of a resumed session yet: a handed-over message's resend may come
  uint64_t taken_ = 0;             // this relay's deliveries remembered so far
  uint64_t seen_ = 0;              // the link's deliveries with an identifier so far (Seen)

  static Entry Make(uint16_t mid, std::string_view topic, std::span<const uint8_t> payload, bool committed);
  void Add(Entry e);  // to entries_ (seen now), the oldest past the window dropped
  static bool Same(const Entry& a, const Entry& b) {
    return a.mid == b.mid && a.size == b.size && a.payload_hash == b.payload_hash && a.topic_hash == b.topic_hash;
  }
};

}  // namespace seqrelay
