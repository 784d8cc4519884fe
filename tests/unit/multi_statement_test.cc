#include "store/multi_statement.h"

#include <gtest/gtest.h>

#include <vector>

namespace seqrelay {
namespace {

std::vector<std::string> Texts(const MultiStatement& m) {
  std::vector<std::string> out;
  for (const auto& q : m.queries()) out.push_back(q.text);
  return out;
}

TEST(AppendHex, EveryByteValueAsTwoDigitsInAHexLiteral) {
  std::string s = "(";
  AppendHex(s, std::string_view("\0\xff" "A'\\", 5));
  EXPECT_EQ(s, "(X'00FF41275C'");
  std::string empty;
  AppendHex(empty, std::string_view());
  EXPECT_EQ(empty, "X''");
  std::vector<uint8_t> all(256);
  for (int i = 0; i < 256; ++i) all[i] = static_cast<uint8_t>(i);
  std::string t;
  AppendHex(t, all);
  ASSERT_EQ(t.size(), 3u + 512u);
  EXPECT_EQ(t.substr(0, 8), "X'000102");
  EXPECT_EQ(t.substr(t.size() - 5), "FEFF'");
}

void AddRows(MultiStatement& m, int from, int to) {
  m.Open("INSERT INTO T VALUES ", " ON DUPLICATE KEY UPDATE A = A");
  for (int i = from; i <= to; ++i) m.Row(i);
  m.Close();
}

TEST(MultiStatement, RowsOfNumbersHexAndRawSql) {
  MultiStatement m(1000);
  m.Open("INSERT INTO D VALUES ");
  const uint8_t payload[] = {0, 0x27, 0xff};
  m.Row(uint64_t{18446744073709551615u}, Hex(std::string_view("ab")), Hex(payload), Raw{"NOW(6)"});
  m.Row(uint8_t{1}, Hex(std::string_view()), uint16_t{65535}, Raw{"NULL"});
  m.Close();
  EXPECT_EQ(Texts(m), std::vector<std::string>{"INSERT INTO D VALUES (18446744073709551615,X'6162',X'0027FF',NOW(6)),"
                                               "(1,X'',65535,NULL)"});
}

TEST(MultiStatement, StatementsAndRowsShareOneQueryWhileItFits) {
  MultiStatement m(1000);
  m.Add("UPDATE S SET N = N + 1");
  AddRows(m, 1, 3);
  m.Open("DELETE FROM P WHERE (K, L) IN (", ")");  // no rows: nothing sent
  m.Close();
  m.Open("DELETE FROM Q WHERE (K, L) IN (", ")");
  m.Row(1, 2);
  m.Row(3, 4);
  m.Close();
  m.Add("COMMIT");
  EXPECT_EQ(Texts(m), std::vector<std::string>{"UPDATE S SET N = N + 1;INSERT INTO T VALUES (1),(2),(3) ON DUPLICATE "
                                               "KEY UPDATE A = A;DELETE FROM Q WHERE (K, L) IN ((1,2),(3,4));COMMIT"});
  EXPECT_EQ(m.queries()[0].statements, 4u);
  EXPECT_EQ(m.statements(), 4u);
}

TEST(MultiStatement, AFullQuerySplitsTheRowsIntoAStatementInTheNextQuery) {
  // "A;I V (1),(2),(3) E" is 19 bytes: a fourth row would make it 23.
  MultiStatement m(20);
  m.Add("A");
  m.Open("I V ", " E");
  for (int i = 1; i <= 6; ++i) m.Row(i);
  m.Close();
  const auto texts = Texts(m);
  ASSERT_EQ(texts.size(), 2u);
  EXPECT_EQ(texts[0], "A;I V (1),(2),(3) E");
  EXPECT_EQ(texts[1], "I V (4),(5),(6) E");
  for (const auto& t : texts) EXPECT_LE(t.size(), 20u);
  EXPECT_EQ(m.queries()[0].statements, 2u);
  EXPECT_EQ(m.queries()[1].statements, 1u);
  EXPECT_EQ(m.statements(), 3u);
}

TEST(MultiStatement, ARowLargerThanTheLimitGoesAloneAndClearStartsOver) {
  MultiStatement m(10);
  m.Add("A");
  m.Open("I ");
  const std::string big(14, 'x');
  m.Row(Hex(big));
  m.Close();
  m.Add("B");
  std::string hex;
  for (int i = 0; i < 14; ++i) hex += "78";  // 'x'
  EXPECT_EQ(Texts(m), (std::vector<std::string>{"A", "I (X'" + hex + "')", "B"}));
  m.Clear(100);
  EXPECT_TRUE(m.queries().empty());
  m.Add("C");
  m.Add("D");
  EXPECT_EQ(Texts(m), std::vector<std::string>{"C;D"});
  EXPECT_EQ(m.statements(), 2u);
}

}  // namespace
}  // namespace seqrelay
