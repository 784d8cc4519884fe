// IntakeQueue: the bounded buffer between the intake (MQTT network thread)
// and the writer thread.
//
// Bounded in messages and in bytes. The intake pushes with PushWithin: while
// the queue is full it waits (holding the intake connection's network loop,
// so the relay stops reading and mosquitto holds further messages), but only
// briefly, never as long as the MQTT keepalive: after that the message is
// queued over the limit and the intake pauses its link (a clean DISCONNECT;
// the broker queues for the persistent session) until the queue is back
// below half (below_resume_mark). This is the relay's only back-pressure,
// and it never touches the output connection, so frames keep flowing while
// intake waits. Over the limit the queue holds the one message whose wait
// ran out: the link reads nothing more once its DISCONNECT is queued.
//
// One producer (the intake callback) and one consumer (the writer); both
// sides are guarded by mu_.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <vector>

#include "core/message.h"

namespace seqrelay {

class IntakeQueue {
 public:
  IntakeQueue(std::size_t max_messages, std::size_t max_bytes) : max_messages_(max_messages), max_bytes_(max_bytes) {}

  // Blocks while full. Returns false (the message is not taken) only after
  // Close(). If `waited` is given, it is set to how long Push blocked.
  bool Push(Message&& m, std::chrono::steady_clock::duration* waited = nullptr);

  enum class Pushed {
    kQueued,
    kOverLimit,  // still full after max_wait: queued beyond the limit; stop producing
    kClosed,     // not taken
  };
  // Waits at most `max_wait` for room (0: not at all), then queues the
  // message, over the limit if need be. If `waited` is given, it is set to
  // how long it waited.
  Pushed PushWithin(Message&& m, std::chrono::steady_clock::duration max_wait,
                    std::chrono::steady_clock::duration* waited = nullptr);

  // Moves up to `max` messages into `out`. Waits until at least one is
  // there; then, if `linger` > 0, waits up to `linger` from the first message
  // for the batch to fill (not when the newest awaits its verdict:
  // Message::verdict_ticket), and says in `lingered` how long it waited.
  // Returns false when closed and empty; true with nothing after Wake(), or
  // once `idle_until` has passed with the queue empty.
  bool PopBatch(std::vector<Message>& out, std::size_t max, std::size_t max_bytes, std::chrono::microseconds linger,
                std::chrono::steady_clock::duration* lingered = nullptr,
                std::chrono::steady_clock::time_point idle_until = std::chrono::steady_clock::time_point::max());

  // Makes a PopBatch waiting on an empty queue return true with nothing
  // (the consumer has other work: Relay::MarkSession).
  void Wake();

  // Wakes everyone; Push refuses from now on, PopBatch drains what is left.
  void Close();

  std::size_t size() const;
  std::size_t peak() const;  // most messages held at once since start
  bool full_now() const;
  // At most half full in messages and in bytes: a paused intake may read again.
  bool below_resume_mark() const;

 private:
  bool FullLocked() const { return q_.size() >= max_messages_ || bytes_ >= max_bytes_; }

  const std::size_t max_messages_;
  const std::size_t max_bytes_;
  mutable std::mutex mu_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<Message> q_;   // guarded by mu_
  std::size_t bytes_ = 0;   // sum of bytes() in q_; guarded by mu_
  std::size_t peak_ = 0;    // guarded by mu_
  bool closed_ = false;     // guarded by mu_
  bool woken_ = false;      // guarded by mu_
};

}  // namespace seqrelay
