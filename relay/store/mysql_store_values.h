// Values into Connector/C++'s types for the relay's adapter to it, the
// mysql_store*.cc files: byte strings as SQLString, and placeholder lists
// for a statement of many rows.
#pragma once

#include <cppconn/sqlstring.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace seqrelay::mysql_values {

// `rows` copies of `row` ("(?,?)"), comma-separated.
inline std::string Placeholders(std::size_t rows, const char* row) {
  std::string s;
  s.reserve(rows * (std::char_traits<char>::length(row) + 1));
  for (std::size_t i = 0; i < rows; ++i) {
    if (i > 0) s += ',';
    s += row;
  }
  return s;
}

// Bytes as they are (no terminator, any value), for VARBINARY and BLOB.
inline sql::SQLString Bytes(std::string_view s) { return sql::SQLString(s.data(), s.size()); }
inline sql::SQLString Bytes(std::span<const uint8_t> s) {
  return sql::SQLString(reinterpret_cast<const char*>(s.data()), s.size());
}

}  // namespace seqrelay::mysql_values
