// Tests of ReadAhead (broker/read_ahead.h) over a real socket pair, read
// with the process's read(2) as libmosquitto reads: the bytes and their
// order, the system calls saved, read(2)'s answers (EAGAIN, EOF) at the
// buffer's end, and that only the attaching thread and socket are served.
#include "broker/read_ahead.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace seqrelay {
namespace {

class ReadAheadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds_), 0);
  }
  void TearDown() override {
    for (int fd : fds_) {
      if (fd >= 0) close(fd);
    }
  }
  void Send(const std::string& bytes) { ASSERT_EQ(write(fds_[1], bytes.data(), bytes.size()), ssize_t(bytes.size())); }
  // As libmosquitto reads a packet: the command byte, the remaining length
  // (one byte here), then the rest.
  std::string ReadPacket(int fd) {
    uint8_t command = 0, length = 0;
    EXPECT_EQ(read(fd, &command, 1), 1);
    EXPECT_EQ(read(fd, &length, 1), 1);
    std::string body(length, '\0');
    EXPECT_EQ(read(fd, body.data(), length), ssize_t(length));
    return std::string(1, char(command)) + body;
  }
  int fds_[2] = {-1, -1};
};

std::string Packet(char command, const std::string& body) { return std::string{command, char(body.size())} + body; }

TEST_F(ReadAheadTest, AnAttachedSocketsBurstIsReadWithOneSystemCall) {
  ReadAhead ahead;
  ahead.Attach(fds_[0]);
  Send(Packet('0', "first") + Packet('0', "second message") + Packet('@', "ack"));
  EXPECT_EQ(ReadPacket(fds_[0]), "0first");
  EXPECT_EQ(ahead.pending(), 2 + 14 + 2 + 3u);
  EXPECT_EQ(ReadPacket(fds_[0]), "0second message");
  EXPECT_EQ(ReadPacket(fds_[0]), "@ack");
  EXPECT_EQ(ahead.pending(), 0u);
  EXPECT_EQ(ahead.reads(), 9u);
  EXPECT_EQ(ahead.system_reads(), 1u);

  // Empty: read(2)'s own answer, EAGAIN on this non-blocking socket.
  char c = 0;
  errno = 0;
  EXPECT_EQ(read(fds_[0], &c, 1), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_EQ(ahead.system_reads(), 2u);
}

TEST_F(ReadAheadTest, AShortBufferHandsOutWhatItHasAndTheRestComesFromTheSocket) {
  ReadAhead ahead;
  ahead.Attach(fds_[0]);
  Send("ab");
  char out[8] = {};
  EXPECT_EQ(read(fds_[0], out, 1), 1);
  EXPECT_EQ(read(fds_[0], out + 1, 5), 1);  // only what was there, as a socket's read
  Send("cdef");
  EXPECT_EQ(read(fds_[0], out + 2, 6), 4);
  EXPECT_EQ(std::string(out, 6), "abcdef");
}

TEST_F(ReadAheadTest, BytesBufferedBeforeThePeersCloseComeFirstThenEndOfFile) {
  ReadAhead ahead;
  ahead.Attach(fds_[0]);
  Send("xyz");
  close(fds_[1]);
  fds_[1] = -1;
  char c = 0;
  std::string got;
  ssize_t n;
  while ((n = read(fds_[0], &c, 1)) == 1) got += c;
  EXPECT_EQ(got, "xyz");
  EXPECT_EQ(n, 0);
}

TEST_F(ReadAheadTest, OnlyTheAttachingThreadIsServedFromTheBuffer) {
  ReadAhead ahead;
  ahead.Attach(fds_[0]);
  Send("12345");
  char c = 0;
  ASSERT_EQ(read(fds_[0], &c, 1), 1);
  ASSERT_EQ(ahead.pending(), 4u);
  // Another thread reads the kernel's socket, which the buffer emptied.
  ssize_t other = 0;
  int other_errno = 0;
  std::thread([&] {
    char d = 0;
    other = read(fds_[0], &d, 1);
    other_errno = errno;
  }).join();
  EXPECT_EQ(other, -1);
  EXPECT_EQ(other_errno, EAGAIN);
  EXPECT_EQ(ahead.pending(), 4u);
  EXPECT_EQ(ahead.reads(), 1u);
}

TEST_F(ReadAheadTest, OtherDescriptorsAndADetachedSocketGoToTheKernel) {
  int other[2];
  ASSERT_EQ(pipe2(other, O_NONBLOCK), 0);
  ReadAhead ahead;
  ahead.Attach(fds_[0]);
  ASSERT_EQ(write(other[1], "pq", 2), 2);
  char c = 0;
  EXPECT_EQ(read(other[0], &c, 1), 1);
  EXPECT_EQ(c, 'p');
  EXPECT_EQ(ahead.reads(), 0u);  // not ours
  close(other[0]);
  close(other[1]);

  Send("uvw");
  ASSERT_EQ(read(fds_[0], &c, 1), 1);
  EXPECT_EQ(ahead.pending(), 2u);
  // Detached, the bytes read ahead go with the buffer (as a close drops
  // unread bytes); what comes next is read from the socket.
  ahead.Detach();
  EXPECT_EQ(ahead.pending(), 0u);
  Send("!");
  EXPECT_EQ(read(fds_[0], &c, 1), 1);
  EXPECT_EQ(c, '!');
  EXPECT_EQ(ahead.reads(), 1u);
}

TEST_F(ReadAheadTest, AReadAsLargeAsTheBufferGoesStraightIn) {
  ReadAhead ahead;
  ahead.Attach(fds_[0]);
  const std::string big(2 * ReadAhead::kCapacity, 'b');
  Send(big);
  std::vector<char> out(big.size());
  const ssize_t n = read(fds_[0], out.data(), out.size());
  // More than the buffer holds: the read went into `out` itself.
  ASSERT_GT(n, ssize_t(ReadAhead::kCapacity));
  EXPECT_EQ(std::string(out.data(), size_t(n)), big.substr(0, size_t(n)));
  EXPECT_EQ(ahead.pending(), 0u);
  EXPECT_EQ(ahead.system_reads(), 1u);
}

TEST_F(ReadAheadTest, AZeroByteReadAnswersZeroWithoutAskingTheSocket) {
  ReadAhead ahead;
  ahead.Attach(fds_[0]);
  char c = 0;
  EXPECT_EQ(read(fds_[0], &c, 0), 0);
  EXPECT_EQ(ahead.system_reads(), 0u);
}

TEST_F(ReadAheadTest, AttachingAnotherOnTheSameThreadDetachesTheFirst) {
  int other[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, other), 0);
  ReadAhead first, second;
  first.Attach(fds_[0]);
  Send("12");
  char c = 0;
  ASSERT_EQ(read(fds_[0], &c, 1), 1);
  ASSERT_EQ(first.pending(), 1u);
  second.Attach(other[0]);
  EXPECT_EQ(first.fd(), -1);
  EXPECT_EQ(first.pending(), 0u);  // its bytes dropped, not left for a poll to spin on
  ASSERT_EQ(write(other[1], "z", 1), 1);
  EXPECT_EQ(read(other[0], &c, 1), 1);
  EXPECT_EQ(c, 'z');
  EXPECT_EQ(second.reads(), 1u);
  close(other[0]);
  close(other[1]);
}

}  // namespace
}  // namespace seqrelay
