// The tests' scratch folders have fixed names under the temp directory; before any test runs,
// TMPDIR is pointed at a folder of this build tree's own (/tmp/qwen3vl-tests-<hash of the build
// path>, short because Open MPI puts its session sockets there too), so two checkouts testing at
// once on one machine never share them. Child processes (the CLI, mpirun) inherit it.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>

namespace {

std::string point_tmpdir_at_this_build() {
  const size_t hash = std::hash<std::string>{}(QWEN3VL_BUILD_DIR);
  const std::string dir = "/tmp/qwen3vl-tests-" + std::to_string(hash % 100000000);
  std::filesystem::create_directories(dir);
  setenv("TMPDIR", dir.c_str(), 1);
  return dir;
}

const std::string kTestTmpdir = point_tmpdir_at_this_build();

TEST(TestScratch, TempDirectoryIsThisBuildsOwn) {
  EXPECT_EQ(std::filesystem::temp_directory_path(), kTestTmpdir);
  EXPECT_TRUE(std::filesystem::is_directory(kTestTmpdir));
}

}  // namespace
