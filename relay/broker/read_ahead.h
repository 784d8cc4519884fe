// ReadAhead: one socket's reads on one thread, served from a buffer.
//
// libmosquitto 2.0 reads a packet with one read(2) for its command byte,
// one per byte of its remaining length and one for the rest: three system
// calls for a 20-byte PUBLISH, and three for each 4-byte PUBACK. Attached
// to its socket on the link's network thread, a ReadAhead turns the reads
// of a burst into one: a read it cannot serve from its buffer takes what
// the socket holds (up to kCapacity bytes), and the reads after it are
// copies.
//
// How: this file defines read(2) for the process. The executable's symbol
// comes before libc's for every library that calls read, libmosquitto
// included, so a read of the attached socket by the attaching thread comes
// here; any other read goes on to the next read(2) in the lookup order at
// once (libc's, or a sanitizer's that checks it; a thread-local load and a
// compare on the way). It must see every read of the socket: the Debian
// libmosquitto 2.0.11 reads its sockets with read(2) only (no recv, no
// __read_chk), and the metrics test fails if its reads stop coming here.
//
// The buffer holds only bytes the kernel already handed out: to the reader
// (libmosquitto) they are the same stream, in the same order, and a read
// that finds the buffer empty behaves exactly as read(2) on the socket
// (EAGAIN, EOF, errors).
//
// The owner's two duties:
//   - poll does not know about the buffer: while pending() > 0 the socket
//     counts as readable (MqttLink::Step then polls with a zero timeout);
//   - the buffer is the socket's: Detach before the socket is closed or
//     replaced (a new socket may get the same descriptor number). Bytes
//     left in it are dropped, as unread bytes are by a close.
//
// Not thread-safe: one owner thread, the one that attached it (reads()
// and system_reads() may be read from any).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace seqrelay {

class ReadAhead {
 public:
  static constexpr std::size_t kCapacity = 16 * 1024;

  ReadAhead();
  ~ReadAhead();  // detaches
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;

  // Serves the calling thread's reads of `fd` from now on (a thread serves
  // one socket at most: attaching here detaches any other ReadAhead of
  // this thread). Drops anything buffered.
  void Attach(int fd);
  // Reads of the socket go to the kernel again; buffered bytes are dropped.
  void Detach();

  int fd() const { return fd_; }
  // Bytes taken from the socket and not yet read.
  std::size_t pending() const { return end_ - begin_; }
  // Reads of the attached sockets served since construction, and the
  // system calls they took.
  uint64_t reads() const { return reads_.load(std::memory_order_relaxed); }
  uint64_t system_reads() const { return system_reads_.load(std::memory_order_relaxed); }

  // read(2) of the attached socket; called by the process's read.
  ssize_t Read(void* out, std::size_t count);

 private:
  int fd_ = -1;
  std::unique_ptr<uint8_t[]> buffer_;
  std::size_t begin_ = 0, end_ = 0;  // buffer_[begin_, end_) is pending
  // Written by the owner thread only: a load and a store, no locked add.
  std::atomic<uint64_t> reads_{0}, system_reads_{0};
  static void Count(std::atomic<uint64_t>& counter) {
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
};

}  // namespace seqrelay
