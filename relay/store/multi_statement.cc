#include "store/multi_statement.h"

#include <charconv>

namespace seqrelay {

void AppendHex(std::string& out, std::span<const uint8_t> bytes) {
  static constexpr char kDigits[] = "0123456789ABCDEF";
  const std::size_t at = out.size();
  out.resize(at + 2 * bytes.size() + 3);
  char* p = out.data() + at;
  *p++ = 'X';
  *p++ = '\'';
  for (uint8_t b : bytes) {
    *p++ = kDigits[b >> 4];
    *p++ = kDigits[b & 0xF];
  }
  *p = '\'';
}

void AppendHex(std::string& out, std::string_view bytes) {
  AppendHex(out, std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
}

void MultiStatement::Append(uint64_t number) {
  char digits[20];
  const auto end = std::to_chars(digits, digits + sizeof digits, number).ptr;
  row_.append(digits, end);
}

void MultiStatement::Clear(std::size_t max_query_bytes) {
  max_query_bytes_ = max_query_bytes;
  for (std::size_t i = 0; i < used_; ++i) {
    queries_[i].text.clear();
    queries_[i].statements = 0;
  }
  used_ = 0;
  rows_ = 0;
  row_.clear();
}

std::size_t MultiStatement::statements() const {
  std::size_t n = 0;
  for (const Query& q : queries()) n += q.statements;
  return n;
}

MultiStatement::Query& MultiStatement::QueryWithRoom(std::size_t bytes) {
  if (used_ > 0) {
    Query& last = queries_[used_ - 1];
    if (last.text.size() + bytes <= max_query_bytes_) return last;
  }
  if (queries_.size() == used_) queries_.emplace_back();
  return queries_[used_++];
}

void MultiStatement::Add(std::string_view statement) {
  Query& q = QueryWithRoom(statement.size() + 1);
  if (!q.text.empty()) q.text += ';';
  q.text += statement;
  ++q.statements;
}

void MultiStatement::Open(std::string_view head, std::string_view tail) {
  head_ = head;
  tail_ = tail;
  rows_ = 0;
  row_.clear();
}

void MultiStatement::EndRow() {
  if (rows_ > 0) {
    Query& last = queries_[used_ - 1];
    if (last.text.size() + 1 + row_.size() + tail_.size() <= max_query_bytes_) {
      last.text += ',';
      last.text += row_;
      ++rows_;
      row_.clear();
      return;
    }
    Close();  // this statement is full: the row begins the next one
  }
  Query& q = QueryWithRoom(1 + head_.size() + row_.size() + tail_.size());
  if (!q.text.empty()) q.text += ';';
  q.text += head_;
  q.text += row_;
  ++q.statements;
  rows_ = 1;
  row_.clear();
}

void MultiStatement::Close() {
  if (rows_ > 0) queries_[used_ - 1].text += tail_;
  rows_ = 0;
}

}  // namespace seqrelay
