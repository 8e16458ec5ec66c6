// Per-sample limits in the loader: tokens (truncate by default, counted skip when configured),
// images per sample (counted skip, checked before decoding), and the decoder's pixel limit
// (checked on the header, before any pixel is decoded).
#include <gtest/gtest.h>

#include <map>

#include "core/error.h"
#include "data/caption_sample.h"
#include "data/loader.h"
#include "data/webdataset.h"
#include "loader_test_utils.h"
#include "train/job_config.h"

namespace qv {
namespace {

using testing::kRoot;
using testing::small_config;

std::vector<data::Batch> all_batches(data::DataLoader& l) {
  std::vector<data::Batch> out;
  try {
    while (true) out.push_back(l.next());
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("end of data"), std::string::npos) << e.what();
  }
  return out;
}

// Length of every document in the batches (attention_mask 1 runs of one document id).
std::vector<int64_t> document_lengths(const std::vector<data::Batch>& batches) {
  std::vector<int64_t> out;
  for (const auto& b : batches)
    for (int64_t r = 0; r < b.rows; ++r) {
      std::map<int64_t, int64_t> len;
      for (int64_t i = 0; i < b.seq; ++i)
        if (b.attention_mask[r * b.seq + i]) ++len[b.document_ids[r * b.seq + i]];
      for (const auto& [doc, n] : len) out.push_back(n);
    }
  return out;
}

data::LoaderConfig one_epoch(int64_t max_tokens, bool truncate) {
  auto c = small_config();
  c.infinite = false;
  c.max_tokens_per_sample = max_tokens;
  c.truncate_long_samples = truncate;
  return c;
}

TEST(LoaderLimits, LongSamplesAreTruncatedByDefault) {
  data::DataLoader l(one_epoch(30, true));
  const auto batches = all_batches(l);
  ASSERT_FALSE(batches.empty());
  for (int64_t n : document_lengths(batches)) EXPECT_LE(n, 30);
  EXPECT_EQ(l.skips().count("too many tokens"), 0);
}

TEST(LoaderLimits, LongSamplesAreCountedSkipsNamingTheSampleWhenConfigured) {
  data::DataLoader l(one_epoch(30, false));
  const auto batches = all_batches(l);
  const int64_t skipped = l.skips().count("too many tokens");
  EXPECT_GT(skipped, 0);
  for (int64_t n : document_lengths(batches)) EXPECT_LE(n, 30);
  bool named = false;
  for (const auto& r : l.skips().records())
    if (r.reason == "too many tokens") {
      named = true;
      EXPECT_NE(r.origin.find("cc12m-train-0000.tar:"), std::string::npos) << r.origin;
      EXPECT_NE(r.detail.find("limit 30"), std::string::npos) << r.detail;
    }
  EXPECT_TRUE(named);
}

TEST(LoaderLimits, MaxTokensAboveSeqLenIsCappedAtSeqLen) {
  data::DataLoader l(one_epoch(100000, false));
  const auto batches = all_batches(l);
  ASSERT_FALSE(batches.empty());
  for (int64_t n : document_lengths(batches)) EXPECT_LE(n, 160);
}

TEST(LoaderLimits, SamplesWithTooManyImagesAreSkippedBeforeDecoding) {
  auto c = small_config();
  c.dataset = "obelics";
  c.path = kRoot + "/tests/data/obelics/sample.jsonl";
  c.infinite = false;
  c.shuffle_buffer = 0;
  c.max_images_per_sample = 1;  // document 2 has two images
  data::DataLoader l(c);
  const auto batches = all_batches(l);
  ASSERT_EQ(l.skips().count("too many images"), 1);
  const auto records = l.skips().records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_NE(records[0].origin.find("sample.jsonl:2"), std::string::npos) << records[0].origin;
  EXPECT_EQ(records[0].detail, "2 images, limit 1");
  for (const auto& b : batches)
    for (const auto& o : b.origins) EXPECT_EQ(o.find("sample.jsonl:2"), std::string::npos);
  EXPECT_EQ(l.samples_built(), 2);  // documents 1 and 3: document 2 was never decoded
}

TEST(LoaderLimits, PixelLimitIsAppliedToTheHeaderBeforeDecoding) {
  data::WebDatasetReader reader({kRoot + "/data/cc12m-train-0000.tar"});
  data::RawSample raw;
  ASSERT_TRUE(reader.next(raw));
  // A PNG header claiming 100000 x 100000 pixels and no pixel data at all: only a check on the
  // header can reject it with the size (decoding would fail on the missing data instead).
  raw.members.erase("jpg");
  raw.members["png"] = std::string(
      "\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR\0\x01\x86\xa0\0\x01\x86\xa0\x08\x02\0\0\0\0\0\0\0", 33);
  const auto tokenizer = data::Tokenizer::load(testing::kTokenizer);
  data::CaptionSampleConfig cfg = small_config().sample;
  data::SkipStats skips;
  EXPECT_FALSE(data::build_caption_sample(raw, tokenizer, data::token_ids(tokenizer), cfg, skips));
  const auto records = skips.records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].origin, raw.origin());
  EXPECT_NE(records[0].detail.find("100000x100000"), std::string::npos) << records[0].detail;
  EXPECT_NE(records[0].detail.find("exceeds the limit"), std::string::npos) << records[0].detail;
}

TEST(LoaderLimits, BadLimitSettingsAreClearErrors) {
  auto c = small_config();
  c.max_images_per_row = 4;
  c.max_images_per_sample = 5;  // could never fit in a row
  try {
    data::DataLoader l(c);
    FAIL() << "accepted max_images_per_sample above the per-row limit";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_images_per_sample is 5"), std::string::npos)
        << e.what();
  }
  try {
    train::JobConfig::parse("[data]\noverlong_samples = \"drop\"\n", "job.toml");
    FAIL() << "accepted overlong_samples = drop";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("overlong_samples"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("truncate"), std::string::npos) << e.what();
  }
  EXPECT_THROW(train::JobConfig::parse("[data]\nmax_tokens_per_sample = -1\n", "job.toml"), Error);
}

}  // namespace
}  // namespace qv
