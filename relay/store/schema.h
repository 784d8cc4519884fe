// The schema migrations in schema/NNN_name.sql, compiled into the binary
// (schema/embed.cmake generates the definition). Versions ascend from 1.
#pragma once

#include <string_view>
#include <vector>

namespace seqrelay {

struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;  // statements separated by ';' at line ends
};

const std::vector<Migration>& Migrations();

}  // namespace seqrelay
