// MultiStatement: one transaction's statements as SQL text, packed into as
// few multi-statement queries (one round trip each) as the server's
// max_allowed_packet allows. The commit path sends a batch this way: the
// fence, the rows and their side tables in one round trip, where prepared
// statements take one each, and one more per power-of-two chunk of rows.
//
// Every value goes as a number or a hex literal (X'..', AppendHex): nothing
// is escaped, and no character set or sql_mode (NO_BACKSLASH_ESCAPES) can
// change what a byte means. The price is two bytes of text per byte.
//
// Pure text; no database. Not thread-safe: one owner (the writer's store).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace seqrelay {

// Appends `bytes` as a hex literal: X'' for none, X'00FF41' for {0, 255, 'A'}.
void AppendHex(std::string& out, std::span<const uint8_t> bytes);
void AppendHex(std::string& out, std::string_view bytes);

// Values of MultiStatement::Row besides numbers: bytes (a hex literal) and
// SQL written as it is (NOW(6)).
struct Hex {
  explicit Hex(std::span<const uint8_t> b) : bytes(b) {}
  explicit Hex(std::string_view s) : bytes(reinterpret_cast<const uint8_t*>(s.data()), s.size()) {}
  std::span<const uint8_t> bytes;
};
struct Raw {
  std::string_view sql;
};

class MultiStatement {
 public:
  struct Query {
    std::string text;            // statements separated by ';'
    std::size_t statements = 0;  // results the server sends back for it
  };

  // Queries of at most `max_query_bytes` each, unless one row alone is
  // larger (it then goes alone; the caller keeps rows under the limit).
  explicit MultiStatement(std::size_t max_query_bytes) : max_query_bytes_(max_query_bytes) {}

  // Starts over with no statements (buffers are kept).
  void Clear(std::size_t max_query_bytes);

  // A statement of its own.
  void Add(std::string_view statement);

  // A multi-row statement: `head`, then the rows joined by ',', then
  // `tail` ("INSERT INTO T (A, B) VALUES ", rows "(1,X'41')"). When the
  // next row would take the query over the limit, the statement is ended
  // and a new one (head, rows, tail) begins in a new query.
  void Open(std::string_view head, std::string_view tail = {});
  // The next row: "(v1,v2,...)", numbers in decimal.
  template <typename... Values>
  void Row(const Values&... values) {
    row_ += '(';
    bool first = true;
    auto value = [&](const auto& v) {
      if (!first) row_ += ',';
      first = false;
      Append(v);
    };
    (value(values), ...);
    row_ += ')';
    EndRow();
  }
  // Ends the statement Open began; one without rows sends nothing.
  void Close();

  std::span<const Query> queries() const { return std::span(queries_).first(used_); }
  // Statements in all queries.
  std::size_t statements() const;

 private:
  // Adds row_ to the open statement.
  void EndRow();
  void Append(uint64_t number);
  void Append(const Hex& hex) { AppendHex(row_, hex.bytes); }
  void Append(const Raw& raw) { row_ += raw.sql; }
  // Room for `bytes` more in the last query, or a new query.
  Query& QueryWithRoom(std::size_t bytes);

  std::size_t max_query_bytes_;
  std::vector<Query> queries_;
  std::size_t used_ = 0;  // queries_[0..used_) hold statements; the rest are kept buffers
  std::string head_, tail_;
  std::string row_;       // the row being written
  std::size_t rows_ = 0;  // rows in the open statement
};

}  // namespace seqrelay
