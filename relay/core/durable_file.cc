#include "core/durable_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

namespace seqrelay {
namespace {

std::string Failed(std::string_view what, const std::string& file) {
  return fmt::format("cannot {} {}: {}", what, file, std::strerror(errno));
}

}  // namespace

std::optional<std::string> ReplaceFileDurably(const std::string& path, std::string_view content) {
  const std::string tmp = path + ".tmp";
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Failed("create", tmp);
  for (std::size_t done = 0; done < content.size();) {
    const ssize_t n = write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      std::string error = Failed("write", tmp);
      close(fd);
      return error;
    }
    done += static_cast<std::size_t>(n);
  }
  // On the disk before the rename, so that a machine crash after it finds
  // the new content under the name, not an empty file.
  if (fsync(fd) != 0) {
    std::string error = Failed("flush", tmp);
    close(fd);
    return error;
  }
  if (close(fd) != 0) return Failed("close", tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return Failed("rename " + tmp + " to", path);
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  if (const int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    const bool synced = fsync(dfd) == 0 || errno == EINVAL;
    std::string error = synced ? std::string() : Failed("flush the directory", dir);
    close(dfd);
    if (!synced) return error;
  }
  return std::nullopt;
}

}  // namespace seqrelay
