#include "broker/read_ahead.h"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

// libc's read(2) itself, under the name glibc also exports it by.
extern "C" ssize_t __read(int fd, void* buf, size_t count);

namespace seqrelay {
namespace {

// The calling thread's ReadAhead, if it attached one. Constant-initialised:
// safe to read in any read(2), however early in a thread's life.
thread_local ReadAhead* t_attached = nullptr;

// The read(2) this one stands in front of: libc's, or in a sanitized build
// the sanitizer's, which checks the buffer and then calls libc's. Found
// once at load; reads before that (other libraries' constructors) go to
// libc's directly.
using ReadFunction = ssize_t (*)(int, void*, size_t);
ReadFunction next_read = &__read;

__attribute__((constructor)) void FindNextRead() {
  if (void* next = dlsym(RTLD_NEXT, "read")) next_read = reinterpret_cast<ReadFunction>(next);
}

}  // namespace

ReadAhead::ReadAhead() : buffer_(new uint8_t[kCapacity]) {}

ReadAhead::~ReadAhead() { Detach(); }

void ReadAhead::Attach(int fd) {
  if (t_attached != nullptr && t_attached != this) t_attached->Detach();
  fd_ = fd;
  begin_ = end_ = 0;
  t_attached = this;
}

void ReadAhead::Detach() {
  if (t_attached == this) t_attached = nullptr;
  fd_ = -1;
  begin_ = end_ = 0;
}

ssize_t ReadAhead::Read(void* out, std::size_t count) {
  Count(reads_);
  if (count == 0) return 0;  // as read(2) answers, without asking the socket
  if (begin_ == end_) {
    // A read as large as the buffer gains nothing from it: straight in.
    if (count >= kCapacity) {
      Count(system_reads_);
      return next_read(fd_, out, count);
    }
    Count(system_reads_);
    const ssize_t n = next_read(fd_, buffer_.get(), kCapacity);
    if (n <= 0) return n;  // EOF, or the error (EAGAIN included) in errno, as the caller expects of read(2)
    begin_ = 0;
    end_ = static_cast<std::size_t>(n);
  }
  const std::size_t n = std::min(count, end_ - begin_);
  std::memcpy(out, buffer_.get() + begin_, n);
  begin_ += n;
  return static_cast<ssize_t>(n);
}

}  // namespace seqrelay

// The process's read(2) (see read_ahead.h). Exported whatever the build's
// default visibility: libmosquitto must find it.
extern "C" __attribute__((visibility("default"))) ssize_t read(int fd, void* buf, size_t count) {
  seqrelay::ReadAhead* const attached = seqrelay::t_attached;
  if (attached != nullptr && attached->fd() == fd) return attached->Read(buf, count);
  return seqrelay::next_read(fd, buf, count);
}
