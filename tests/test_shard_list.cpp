#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "core/error.h"
#include "data/sources/shard_list.h"
#include "data_test_utils.h"

namespace qv::data {
namespace {

using Names = std::vector<std::string>;

TEST(ShardList, BraceRangeKeepsZeroPadding) {
  const Names names = expand_braces("cc12m-train-{0000..0099}.tar");
  ASSERT_EQ(names.size(), 100u);
  EXPECT_EQ(names.front(), "cc12m-train-0000.tar");
  EXPECT_EQ(names[57], "cc12m-train-0057.tar");
  EXPECT_EQ(names.back(), "cc12m-train-0099.tar");
}

TEST(ShardList, RangePaddingFollowsTheBounds) {
  EXPECT_EQ(expand_braces("{8..11}"), (Names{"8", "9", "10", "11"}));
  EXPECT_EQ(expand_braces("{08..11}"), (Names{"08", "09", "10", "11"}));
  EXPECT_EQ(expand_braces("{1..003}"), (Names{"001", "002", "003"}));
  EXPECT_EQ(expand_braces("{3..1}"), (Names{"3", "2", "1"}));
  EXPECT_EQ(expand_braces("{0..0}"), (Names{"0"}));
}

TEST(ShardList, CommaListsGroupsAndNesting) {
  EXPECT_EQ(expand_braces("{a,b}-{1..2}.tar"), (Names{"a-1.tar", "a-2.tar", "b-1.tar", "b-2.tar"}));
  EXPECT_EQ(expand_braces("s{x,y{1,2}}"), (Names{"sx", "sy1", "sy2"}));
  EXPECT_EQ(expand_braces("x{,a}"), (Names{"x", "xa"}));
  EXPECT_EQ(expand_braces("plain.tar"), (Names{"plain.tar"}));
  // A group without a comma or range stays literal, as in the shell.
  EXPECT_EQ(expand_braces("{abc}-{1,2}"), (Names{"{abc}-1", "{abc}-2"}));
}

TEST(ShardList, BadPatternsAreErrors) {
  EXPECT_THROW(expand_braces("shard-{0..9.tar"), Error);
  EXPECT_THROW(expand_braces("{0..99999999999}"), Error);
  EXPECT_THROW(expand_shards(""), Error);
  EXPECT_THROW(expand_shards("https://example.com/shard-{0..3}.tar"), Error);
}

TEST(ShardList, GlobsAreSortedAndMissingFilesNamed) {
  testing::TempDir dir;
  for (const char* n : {"b-0001.tar", "a-0002.tar", "a-0001.tar", "notes.txt"})
    testing::write_bytes(dir.file(n), "x");
  EXPECT_EQ(expand_shards(dir.file("*.tar")),
            (Names{dir.file("a-0001.tar"), dir.file("a-0002.tar"), dir.file("b-0001.tar")}));
  EXPECT_EQ(expand_shards(dir.file("{b,a}-000[12].tar")),
            (Names{dir.file("b-0001.tar"), dir.file("a-0001.tar"), dir.file("a-0002.tar")}));
  EXPECT_EQ(expand_shards(Names{dir.file("b-0001.tar"), dir.file("a-{0001..0002}.tar")}),
            (Names{dir.file("b-0001.tar"), dir.file("a-0001.tar"), dir.file("a-0002.tar")}));
  try {
    expand_shards(dir.file("*.tgz"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("*.tgz"), std::string::npos) << e.what();
  }
  try {
    expand_shards(dir.file("a-{0001..0003}.tar"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("a-0003.tar"), std::string::npos) << e.what();
  }
}

TEST(ShardList, TheCommittedShardIsFound) {
  const Names names = expand_shards(testing::source_path("data/cc12m-train-{0000..0000}.tar"));
  ASSERT_EQ(names.size(), 1u);
}

TEST(ShardList, RanksGetDisjointWholeShards) {
  const Names shards = expand_braces("s-{0..4}.tar");
  const RankShare r0 = share_for_rank(shards, 0, 2), r1 = share_for_rank(shards, 1, 2);
  EXPECT_EQ(r0.shards, (Names{"s-0.tar", "s-2.tar", "s-4.tar"}));
  EXPECT_EQ(r1.shards, (Names{"s-1.tar", "s-3.tar"}));
  EXPECT_EQ(r0.sample_stride, 1);
  std::set<std::string> all;
  for (int rank = 0; rank < 3; ++rank)
    for (const auto& s : share_for_rank(shards, rank, 3).shards) EXPECT_TRUE(all.insert(s).second);
  EXPECT_EQ(all.size(), shards.size());
}

TEST(ShardList, FewerShardsThanRanksSplitsSamples) {
  const Names shards = {"only.tar"};
  for (int rank = 0; rank < 3; ++rank) {
    const RankShare r = share_for_rank(shards, rank, 3);
    EXPECT_EQ(r.shards, shards);
    EXPECT_EQ(r.sample_stride, 3);
    EXPECT_EQ(r.sample_offset, rank);
  }
  EXPECT_THROW(share_for_rank(shards, 3, 3), Error);
  EXPECT_THROW(share_for_rank(shards, 0, 0), Error);
  EXPECT_THROW(share_for_rank({}, 0, 1), Error);
}

}  // namespace
}  // namespace qv::data
