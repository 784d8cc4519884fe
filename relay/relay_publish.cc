// Relay, the publish stage: frames out on seq/T under the publish mutex,
// the broker's PUBACKs into the watermark, the frame size check, and
// republishing what an earlier run committed but never saw acknowledged.
#include "relay.h"

#include <fmt/format.h>

#include <thread>
#include <utility>

#include "core/log.h"
#include "core/topic_filter.h"
#include "relay_parts.h"

namespace seqrelay {

using namespace relay_parts;

Status Relay::Republish(uint64_t after, const uint64_t last, bool again) {
  // Rows committed but perhaps never acknowledged on seq/T by the broker:
  // publish them again (clients drop duplicates by SEQ).
  struct FlushAtEnd {  // Publish only queues: the last chunk leaves on any return
    MqttLink& link;
    ~FlushAtEnd() { link.Flush(); }
  } flush{*output_};
  if (republish_delay_.count() > 0) SleepUnlessGivingUp(republish_delay_);  // test hook
  while (after < last) {
    output_->Flush();  // the chunk before leaves while the next is read
    Result<std::vector<MysqlStore::StoredRow>> rows = Status::Ok();
    if (again) {
      // The main thread, beside the writer: on its own connection, one try
      // (the caller tries again a second later).
      if (!pending_store_.connected()) {
        if (Status s = pending_store_.Connect(false); !s.ok()) return s;
      }
      rows = pending_store_.ReadRowsAfter(after, kRepublishChunk, kRepublishChunkBytes);
      if (!rows.ok()) return rows.status();
    } else if (!Retry("read rows to republish", [&] {
                 return (rows = store_.ReadRowsAfter(after, kRepublishChunk, kRepublishChunkBytes)).status();
               })) {
      return Status::Error("stopped while republishing");
    }
    if (rows->empty()) break;  // rows deleted behind the watermark: nothing left to send
    for (const auto& row : *rows) {
      if (row.idx > last) return Status::Ok();
      after = row.idx;  // even a row that cannot be framed is passed over, not read again
      if (again) {
        // After a reconnect only what the broker has not acknowledged: a
        // frame never acknowledged holds the watermark while the rows
        // after it are (until 2026-12-06 all of them went again, past the
        // bound on frames in flight).
        std::lock_guard lock(publish_mu_);
        if (tracker_.Acknowledged(row.idx)) continue;
      }
      auto frame = EncodeFrame({row.topic_id, row.seq, static_cast<Ordering>(row.ordering & 1)},
                               {reinterpret_cast<const uint8_t*>(row.payload.data()), row.payload.size()});
      if (!frame.ok()) {
        LogError("row idx {} of '{}' cannot be framed: {}", row.idx, row.topic, frame.error());
        continue;
      }
      const std::string topic = fmt::format("{}/{}", config_.seq_prefix, row.topic);
      const auto& bytes = frame.value();
      if (!Publish(topic, {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}, row.idx,
                   again ? Sending::kAgain : Sending::kStart)) {
        return Status::Error("stopped while republishing");
      }
      ++counters_.republished;
    }
  }
  return Status::Ok();
}

void Relay::RepublishUnconfirmed() {
  // A row resent at a reconnect is queued twice in libmosquitto, which
  // sends both copies again by itself at every reconnect: resent at each
  // reconnect of a link that flaps, the whole unacknowledged window would
  // be added to that queue each time. So a reconnect resends only the rows
  // not resent yet, unless the last republish is 10 s old and what
  // libmosquitto holds is within the bounds of one window (20,000 frames,
  // --buffer-max-bytes): then every unacknowledged row goes again (a copy
  // may be lost all the same). It holds at most two windows' worth.
  // The connects this call answers: the writer's frames wait until it
  // has queued what it sends again (a later reconnect asks for another).
  const uint64_t reconnects = output_reconnects_.load();
  if (!output_->connected()) {  // lost again: its next connect asks for this, with 10 s of tries of its own
    republish_failing_since_ = {};
    return;
  }
  const auto now = Clock::now();
  const bool recently = now - last_republish_ < kRepublishAgainAfter;
  uint64_t after = 0, last = 0;
  {
    std::lock_guard lock(publish_mu_);
    const bool room = held_frames_ <= kMaxUnacked && held_bytes_ <= static_cast<uint64_t>(config_.buffer_max_bytes);
    after = !recently && room ? tracker_.watermark() : tracker_.unresent_after();
    last = tracker_.last_sent();
  }
  if (after >= last) {
    AnsweredReconnects(reconnects);
    return;
  }
  last_republish_ = now;
  // libmosquitto sends its own unacknowledged messages again too; a frame
  // lost anyway (seen once in a broker restart test, cause not found) is
  // covered by this, at the cost of duplicates that clients drop by SEQ.
  LogInfo("output: reconnected; publishing rows {}..{} again (sent, not yet acknowledged by mosquitto)", after + 1,
          last);
  if (Status s = Republish(after, last, true); !s.ok()) {
    if (!output_->connected()) {
      LogWarn("output: the link went while publishing again; the next connect does it");
      republish_failing_since_ = {};  // (a failure of this connection's must not shorten the next one's tries)
      return;
    }
    if (republish_failing_since_ == Clock::time_point{}) republish_failing_since_ = now;
    if (now - republish_failing_since_ < kRepublishGiveUpAfter) {
      LogWarn("output: republishing after the reconnect: {}; trying again in 1 s (new frames wait)", s.message());
      republish_retry_ = true;
      return;
    }
    // Order gives way to delivery: the rows stay below the watermark (a
    // reconnect or the next start sends them).
    LogError("output: could not publish rows {}..{} again for {} s ({}); newer frames go on without them", after + 1,
             last, std::chrono::duration_cast<std::chrono::seconds>(kRepublishGiveUpAfter).count(), s.message());
  }
  republish_failing_since_ = {};
  AnsweredReconnects(reconnects);
}

void Relay::AnsweredReconnects(uint64_t reconnects) {
  {
    std::lock_guard lock(publish_mu_);  // the writer waits on acked_cv_ for this
    republished_reconnects_ = reconnects;
  }
  acked_cv_.notify_all();
}

void Relay::WatchUnacknowledged() {
  uint64_t watermark = 0, acked_above = 0;
  {
    std::lock_guard lock(publish_mu_);
    watermark = tracker_.watermark();
    acked_above = tracker_.last_sent() - watermark - tracker_.in_flight();
  }
  const auto now = Clock::now();
  if (watermark != watched_watermark_) {
    watched_watermark_ = watermark;
    watermark_moved_at_ = now;
    unacknowledged_wait_ = unacknowledged_after_;
    return;
  }
  if (acked_above == 0 || !output_ || !output_->connected()) {
    watermark_moved_at_ = now;  // the clock starts again, the wait stays (a reconnect of ours is under way)
    return;
  }
  if (now - watermark_moved_at_ < unacknowledged_wait_) return;
  // A broker that acknowledges nothing (paused, overloaded) is not this:
  // its keepalive is the link's business. (Rows passed over count as
  // acknowledged above the watermark too: the PUBACKs must be recent.)
  const auto last_puback = Clock::time_point(Clock::duration(last_puback_ns_.load()));
  if (now - last_puback > unacknowledged_wait_ + std::chrono::seconds(2)) return;
  LogWarn("output: row {} not acknowledged by mosquitto for {} s while {} later frames were; reconnecting the "
          "output link to send it again", watermark + 1,
          std::chrono::duration_cast<std::chrono::seconds>(now - watermark_moved_at_).count(), acked_above);
  ++counters_.unacknowledged_reconnects;
  output_->Reconnect();
  // Again for the same row after twice as long each time (10 min at most).
  watermark_moved_at_ = now;
  unacknowledged_wait_ = std::min<std::chrono::seconds>(2 * unacknowledged_wait_, std::chrono::minutes(10));
}

bool Relay::Publish(const std::string& topic, std::span<const uint8_t> frame, uint64_t idx, Sending sending) {
  const bool again = sending == Sending::kAgain;
  // Committed under the lease, but once it has lapsed a successor may be
  // publishing: wait for the renewal (the writer holds back meanwhile); if
  // the lease is lost instead, the next active republishes every row above
  // the acknowledged watermark.
  while (!lease_->valid()) {
    output_->Flush();  // what is queued leaves meanwhile
    if (stepped_down_ || GivingUp()) return false;
    SleepUnlessGivingUp(milliseconds(20));
  }
  std::unique_lock lock(publish_mu_);
  // Fault injection (SEQTEST_LOSE_FRAME_AT, SEQTEST_LOSE_FRAMES_WHILE_AWAY):
  // the frame is lost as if in flight, never acknowledged.
  auto lost_for_test = [&] {
    const bool lose_this = lose_frame_at_ != 0 && counters_.published + 1 == lose_frame_at_;
    if (config_.publish_qos == 0 || !(lose_this || (lose_frames_while_away_ && !output_->connected()))) return false;
    LogWarn("fault injection: frame of row {} lost ({})", idx, lose_this ? "SEQTEST_LOSE_FRAME_AT" : "the output link is down");
    tracker_.Sent(idx, lost_mid_--);  // a mid libmosquitto never uses: never acknowledged
    ++counters_.published;
    return true;
  };
  // A row sent again is counted already. A frame alone over the byte bound
  // goes when nothing else is held.
  auto full = [&] {
    return tracker_.in_flight() >= kMaxUnacked ||
           (held_bytes_ > 0 && held_bytes_ + frame.size() > static_cast<uint64_t>(config_.buffer_max_bytes));
  };
  // In SEQ order on seq/T: a new frame waits for the output link (a frame
  // queued before the CONNACK went out ahead of the ones libmosquitto
  // resends), and the writer's frames for the reconnect's republish too.
  // At a stop the main thread no longer answers reconnects: the writer's
  // frames then go after libmosquitto's resends only (a frame lost all the
  // same stays below the saved watermark: the next start sends it).
  auto in_order = [&] {
    return output_->connected() &&
           (sending != Sending::kNew || stopping_ || republished_reconnects_.load() == output_reconnects_.load());
  };
  // Test hook (SEQTEST_HOLD_FIRST_FRAME_MS): the first new frame waits.
  auto held_for_test = [&] {
    if (hold_first_frame_.count() == 0 || sending != Sending::kNew || counters_.published != 0) return false;
    if (first_frame_held_until_ == Clock::time_point{}) {
      first_frame_held_until_ = Clock::now() + hold_first_frame_;
      LogWarn("fault injection: holding the first frame for {} ms", hold_first_frame_.count());
    }
    if (Clock::now() < first_frame_held_until_) return true;
    if (!std::exchange(first_frame_hold_over_, true)) LogWarn("fault injection: the first frame's hold is over");
    return false;
  };
  // A row sent again goes only on the connection it was meant for: queued
  // during the next CONNECT it would go ahead of libmosquitto's resends.
  if (again && !output_->connected()) return false;
  while (!again) {
    if (lost_for_test()) return true;
    // The lease again, past the wait: a wait here may outlast it (the link
    // away, the frames in flight at their bound), and a successor publishes
    // meanwhile. (Until 2026-12-07 only the check before the wait counted:
    // a frame committed under the lease went out after it had lapsed.)
    if (!held_for_test() && in_order() && !full() && lease_->valid()) break;
    // No one wakes us when the stop deadline passes (the broker may be
    // gone): wait in slices and look between them. The writer drains its
    // queue at a stop; a start's republish (the main thread's) gives way to
    // it (the next start publishes those rows).
    if (GivingUp() || stepped_down_ || (sending == Sending::kStart && stopping_)) return false;
    output_->Flush();  // the frames whose PUBACKs we wait for must leave first
    // Waiting for the broker, not the database: the hand-over's stall clock
    // (StartIntakeOnceHandedOverStored) does not run meanwhile.
    writer_unstalled_at_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    acked_cv_.wait_for(lock, milliseconds(100));  // PUBACKs, a connect and a republish's end notify it
  }
  // Queued only: the caller flushes the run (WriterLoop, Republish).
  auto mid = output_->Queue(topic, frame, config_.publish_qos);
  if (config_.publish_qos == 0) {
    // Nothing will confirm it: never wait for it (the watermark would stop
    // here for good when the connection drops with it queued).
    tracker_.SentUnconfirmed(idx);
    if (mid.ok()) ++counters_.published;
    return true;
  }
  if (!mid.ok()) {
    // libmosquitto refused it for good (a frame over the maximum packet size
    // the broker announced, a QoS the broker does not take, memory). Passed
    // over, the row would count as deleted once a later one is sent, and be
    // published by no start: the relay stops instead, saying why, with the
    // watermark below the row.
    Fail(fmt::format("output link: mosquitto refuses the frame of row {} ({} bytes): {}", idx, frame.size(),
                     mid.error()));
    return false;
  }
  if (again) {
    tracker_.Resent(idx, mid.value());
  } else {
    tracker_.Sent(idx, mid.value());
  }
  InFlight& sent = in_flight_[static_cast<uint16_t>(mid.value())];
  sent.sent_at_ns = Clock::now().time_since_epoch().count();
  if (sent.bytes == 0) ++held_frames_;
  sent.bytes += static_cast<uint32_t>(frame.size());
  held_bytes_ += frame.size();
  // Under publish_mu_, like the PUBACK's LiveAcked: the ack cannot overtake this.
  retransmit_.governor().LiveSent(mid.value());
  ++counters_.published;
  return true;
}

Status Relay::CheckFrameLimit() {
  // The largest frame the relay can make: --max-payload plus the header. A
  // broker whose message_size_limit is smaller drops it (while still
  // acknowledging it), and every subscriber loses that message for good:
  // find out now, before taking any message.
  // After the CONNACK, which may announce the broker's maximum packet size
  // (max_packet_size): libmosquitto refuses a larger publish then, and one
  // queued before it, resent after, is dropped (libmosquitto 2.0.11 was seen
  // to abort on an assertion of its own there).
  const auto connack_by = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!output_->connected() && !stopping_ && std::chrono::steady_clock::now() < connack_by) {
    std::this_thread::sleep_for(milliseconds(5));
  }
  if (!output_->connected()) {
    LogWarn("frame size check: no answer from mosquitto in 5 s; checked when the output link connects");
    {
      std::lock_guard lock(publish_mu_);
      probe_late_ = true;
    }
    probe_on_connect_ = true;
    // Connected meanwhile (its connect handler may have read the flag before
    // it was set): sent here. The handler counts the connect before it reads
    // the flag, so one of the two sees the other. (`connected()` turns true
    // only after the handler: a review found the probe skipped between them.)
    if (output_connects_ > 0 && probe_on_connect_.exchange(false)) {
      if (Status s = SendProbe(); !s.ok()) return s;
    }
    return Status::Ok();
  }
  if (Status s = SendProbe(); !s.ok()) return s;
  std::unique_lock lock(publish_mu_);
  if (!acked_cv_.wait_for(lock, std::chrono::seconds(5), [&] { return probe_reason_.has_value() || stopping_; })) {
    LogWarn("frame size check: mosquitto has not answered in 5 s; checked when it does");
    probe_late_ = true;
    return Status::Ok();
  }
  return probe_reason_ ? FrameLimitVerdict(*probe_reason_) : Status::Ok();
}

Status Relay::SendProbe() {
  const std::vector<uint8_t> probe(static_cast<std::size_t>(config_.max_payload) + kFrameHeaderSize, 0);
  // As long as the longest seq/ topic: the broker's max_packet_size counts
  // the topic too.
  std::string topic = fmt::format("{}/replay/{}/probe", config_.control_prefix, config_.mqtt_client_id);
  const std::size_t longest = config_.seq_prefix.size() + 1 + kMaxTopicBytes;
  if (topic.size() + 1 < longest) topic += "/" + std::string(longest - topic.size() - 1, 'x');
  std::lock_guard lock(publish_mu_);
  auto mid = output_->Publish(topic, probe, 1);
  if (!mid.ok()) {
    return Status::Error(fmt::format(
        "frame size check: mosquitto refuses a frame of {} bytes (--max-payload {} + the {}-byte header) on a topic "
        "of {} bytes: {}; raise its max_packet_size, or lower --max-payload",
        probe.size(), config_.max_payload, kFrameHeaderSize, topic.size(), mid.error()));
  }
  probe_mid_ = mid.value();
  return Status::Ok();
}

Status Relay::FrameLimitVerdict(int reason) const {
  const std::size_t bytes = static_cast<std::size_t>(config_.max_payload) + kFrameHeaderSize;
  if (reason == 0x87) {  // not authorised: the ACL, not the size
    LogWarn("frame size check: mosquitto's ACL denies the relay's user {}/replay/{}/probe; the frame size limit was "
            "not checked (frames are up to {} bytes)", config_.control_prefix, config_.mqtt_client_id, bytes);
    return Status::Ok();
  }
  if (reason >= 0x80) {
    return Status::Error(fmt::format(
        "mosquitto refuses a frame of {} bytes (--max-payload {} + the {}-byte header; PUBACK reason 0x{:02x}): set "
        "its message_size_limit to at least {}, or lower --max-payload", bytes, config_.max_payload,
        kFrameHeaderSize, reason, bytes));
  }
  LogInfo("frame size check: mosquitto takes frames of {} bytes (--max-payload {} + header)", bytes,
          config_.max_payload);
  return Status::Ok();
}

void Relay::OnPublished(int mid, int reason) {
  {
    std::lock_guard lock(publish_mu_);
    if (mid == probe_mid_ && !probe_reason_) {
      probe_reason_ = reason;
      if (probe_late_) {  // the start did not wait for this answer
        if (Status s = FrameLimitVerdict(reason); !s.ok()) Fail(s.message());
      }
      acked_cv_.notify_all();
      return;
    }
    tracker_.Acked(mid);
    last_puback_ns_.store(Clock::now().time_since_epoch().count(), std::memory_order_relaxed);
    InFlight& sent = in_flight_[static_cast<uint16_t>(mid)];
    const uint32_t bytes = std::exchange(sent.bytes, 0);
    held_bytes_ -= bytes;
    if (bytes != 0) --held_frames_;
    if (sent.sent_at_ns != 0) {
      stage_puback_.Observe(std::chrono::nanoseconds(Clock::now().time_since_epoch().count() - sent.sent_at_ns));
      sent.sent_at_ns = 0;
    }
    ReplayGovernor& governor = retransmit_.governor();
    if (governor.Timing(mid)) governor.LiveAcked(mid, Clock::now());
  }
  ++counters_.acked;
  acked_cv_.notify_all();
  if (reason >= 0x80) {
    ++counters_.broker_refused;
    static RateLimit limit(std::chrono::seconds(10));
    if (auto suppressed = limit.Allow()) {
      LogError("mosquitto refused a frame it acknowledged (PUBACK reason 0x{:02x}; check its message_size_limit and "
               "ACL): live subscribers do not get it{}", reason, SuppressedNote(*suppressed));
    }
  }
}

}  // namespace seqrelay
