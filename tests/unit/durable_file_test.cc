// Tests of ReplaceFileDurably (core/durable_file.h): the new content under
// the name, nothing left beside it, and a failure that names the file and
// leaves the old content as it was.
#include "core/durable_file.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

namespace seqrelay {
namespace {

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class DurableFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/seqrelay-durable-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(DurableFileTest, ReplacesTheContentAndLeavesNothingBeside) {
  const std::string path = dir_ + "/state";
  EXPECT_EQ(ReplaceFileDurably(path, "first\n"), std::nullopt);
  EXPECT_EQ(Read(path), "first\n");
  const std::string big(100000, 'x');  // more than one write may take
  EXPECT_EQ(ReplaceFileDurably(path, big), std::nullopt);
  EXPECT_EQ(Read(path), big);
  EXPECT_EQ(ReplaceFileDurably(path, ""), std::nullopt);
  EXPECT_EQ(Read(path), "");
  EXPECT_TRUE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST_F(DurableFileTest, AFileInTheWorkingDirectoryIsReplacedToo) {
  const auto cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir_);
  const auto error = ReplaceFileDurably("state", "here\n");
  std::filesystem::current_path(cwd);
  EXPECT_EQ(error, std::nullopt);
  EXPECT_EQ(Read(dir_ + "/state"), "here\n");
}

TEST_F(DurableFileTest, AFailureNamesTheFileAndLeavesTheOldContent) {
  const auto error = ReplaceFileDurably(dir_ + "/no/such/dir/state", "x");
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(*error, "cannot create " + dir_ + "/no/such/dir/state.tmp: No such file or directory");

  const std::string path = dir_ + "/state";
  ASSERT_EQ(ReplaceFileDurably(path, "old\n"), std::nullopt);
  std::filesystem::create_directory(path + ".tmp");  // in the way of the temporary file, even for root
  const auto refused = ReplaceFileDurably(path, "new\n");
  ASSERT_TRUE(refused.has_value());
  EXPECT_EQ(*refused, "cannot create " + path + ".tmp: Is a directory");
  EXPECT_EQ(Read(path), "old\n");
}

}  // namespace
}  // namespace seqrelay
