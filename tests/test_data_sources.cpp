// Shard lists, the streaming tar reader, WebDataset grouping and sample building on the real
// cc12m shard and on damaged copies of it.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "data/pipeline/caption_sample.h"
#include "data/sources/shard_list.h"
#include "data/sources/webdataset.h"
#include "train_test_utils.h"

namespace qv {
namespace {

namespace fs = std::filesystem;
const std::string kShard = std::string(QWEN3VL_SOURCE_DIR) + "/data/cc12m-train-0000.tar";
const std::string kTokenizer = std::string(QWEN3VL_SOURCE_DIR) +
                               "/third_party/npm/tokenizer-qwen3/package/models/tokenizer.json";

fs::path scratch(const std::string& name) {
  const fs::path p = fs::temp_directory_path() / ("qwen3vl_data_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::vector<data::RawSample> read_all(const std::vector<std::string>& shards, int64_t* damaged) {
  data::WebDatasetReader r(shards);
  std::vector<data::RawSample> out;
  data::RawSample s;
  while (r.next(s)) out.push_back(s);
  if (damaged) *damaged = r.skips().total();
  return out;
}

TEST(ShardList, BraceRangesKeepZeroPaddingAndListsExpand) {
  EXPECT_EQ(data::expand_braces("a-{0008..0011}.tar"),
            (std::vector<std::string>{"a-0008.tar", "a-0009.tar", "a-0010.tar", "a-0011.tar"}));
  EXPECT_EQ(data::expand_braces("{x,y}/{1..2}"),
            (std::vector<std::string>{"x/1", "x/2", "y/1", "y/2"}));
  EXPECT_THROW(data::expand_shards("/nonexistent/shard-{0..1}.tar"), Error);
  EXPECT_THROW(data::expand_shards("/nonexistent/*.tar"), Error);
}

TEST(WebDatasetRealShard, ReadsEveryRealSampleWithImageAndCaption) {
  int64_t damaged = 0;
  const auto samples = read_all({kShard}, &damaged);
  EXPECT_EQ(damaged, 0);
  ASSERT_EQ(samples.size(), 32u);
  for (const auto& s : samples) {
    EXPECT_TRUE(s.members.count("jpg")) << s.key;
    ASSERT_TRUE(s.members.count("txt")) << s.key;
    EXPECT_FALSE(s.members.at("txt").empty()) << s.key;
    EXPECT_TRUE(s.members.count("json")) << s.key;
  }
}

TEST(WebDatasetRealShard, TruncatedShardYieldsCompleteSamplesAndIsCounted) {
  const fs::path dir = scratch("truncated");
  for (const int64_t keep : {int64_t{700000}, int64_t{1000}, int64_t{100}}) {
    const fs::path cut = dir / ("cut" + std::to_string(keep) + ".tar");
    fs::copy_file(kShard, cut);
    fs::resize_file(cut, keep);
    int64_t damaged = 0;
    const auto samples = read_all({cut.string(), kShard}, &damaged);
    EXPECT_EQ(damaged, 1) << keep;
    EXPECT_GE(samples.size(), 32u) << keep;  // the intact shard after it is still read
    EXPECT_LT(samples.size(), 64u) << keep;
  }
}

TEST(WebDatasetRealShard, MissingShardIsAClearError) {
  try {
    read_all({"/nonexistent.tar", kShard}, nullptr);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent.tar"), std::string::npos) << e.what();
  }
}

class CaptionSamples : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(kTokenizer)) << "run scripts/fetch_tokenizer.sh first";
    tokenizer_ = std::make_unique<data::Tokenizer>(data::Tokenizer::load(kTokenizer));
    tokens_ = data::token_ids(*tokenizer_);
    cfg_.image.patch_size = 14;
    cfg_.image.min_pixels = 3136;
    cfg_.image.max_pixels = 50176;
    samples_ = read_all({kShard}, nullptr);
  }
  std::optional<data::Sample> build(const data::RawSample& raw) {
    return data::build_caption_sample(raw, *tokenizer_, tokens_, cfg_, skips_);
  }
  std::unique_ptr<data::Tokenizer> tokenizer_;
  data::TokenIds tokens_;
  data::CaptionSampleConfig cfg_;
  data::SkipStats skips_;
  std::vector<data::RawSample> samples_;
};

TEST_F(CaptionSamples, LayoutIsVisionBlockThenCaptionThenEnd) {
  const auto s = build(samples_[0]);
  ASSERT_TRUE(s.has_value());
  ASSERT_EQ(s->vision.size(), 1u);
  const auto& g = s->vision[0].grid;
  const int64_t merged = g.patches() / 4;
  EXPECT_EQ(s->ids[0], tokens_.vision_start);
  EXPECT_EQ(s->ids[merged + 1], tokens_.vision_end);
  for (int64_t i = 0; i <= merged + 1; ++i) EXPECT_EQ(s->labels[i], data::kIgnore);
  EXPECT_EQ(s->ids.back(), tokens_.endoftext);
  const std::vector<int32_t> caption = tokenizer_->encode(samples_[0].members.at("txt"), false);
  EXPECT_EQ(std::vector<int32_t>(s->ids.begin() + merged + 2, s->ids.end() - 1), caption);
  EXPECT_LE(g.h * g.w * 14 * 14, 50176);
}

TEST_F(CaptionSamples, BadSamplesAreCountedSkipsWithReasons) {
  data::RawSample no_caption = samples_[1];
  no_caption.members.erase("txt");
  no_caption.members.erase("json");
  data::RawSample bad_utf8 = samples_[2];
  bad_utf8.members["txt"] = std::string("caf\xC3", 4);
  data::RawSample empty_image = samples_[3];
  empty_image.members["jpg"].clear();
  data::RawSample corrupt_image = samples_[4];
  corrupt_image.members["jpg"].resize(corrupt_image.members["jpg"].size() / 3);
  data::RawSample no_image = samples_[5];
  no_image.members.erase("jpg");
  data::RawSample huge_header = samples_[6];
  // A PNG header claiming 100000 x 100000 pixels (rejected before any allocation).
  huge_header.members.erase("jpg");
  huge_header.members["png"] = std::string(
      "\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\x01\x86\xa0\0\x01\x86\xa0\x08\x02\0\0\0\0\0\0\0", 33);
  for (const auto* raw :
       {&no_caption, &bad_utf8, &empty_image, &corrupt_image, &no_image, &huge_header})
    EXPECT_FALSE(build(*raw).has_value()) << raw->key;
  const auto reasons = skips_.by_reason();
  EXPECT_EQ(skips_.total(), 6);
  EXPECT_EQ(reasons.at("no caption"), 1);
  EXPECT_EQ(reasons.at("caption is not valid UTF-8"), 1);
  EXPECT_EQ(reasons.at("empty image"), 1);
  EXPECT_EQ(reasons.at("no image"), 1);
  EXPECT_EQ(reasons.at("bad image"), 2);
}

}  // namespace
}  // namespace qv
