// Replacing a small file (a position, an id, a client's state) so that a
// kill or a machine crash leaves the old content or the new one, never an
// empty or torn file.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace seqrelay {

// Writes `content` to `path`.tmp, flushes it to the disk, renames it over
// `path` and flushes the directory. Returns what failed, naming the file,
// or nullopt. A directory that cannot be flushed (a file system without
// the call) is no error; the rename has happened by then.
std::optional<std::string> ReplaceFileDurably(const std::string& path, std::string_view content);

}  // namespace seqrelay
