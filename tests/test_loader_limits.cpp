// Per-sample limits in the loader: tokens (truncate by default, counted skip when configured),
// images per sample (counted skip, checked before any image is read), the decoder's pixel limit
// (checked on the header, before any pixel is decoded), and the job config keys that set them.
#include <gtest/gtest.h>

#include <map>

#include "core/error.h"
#include "data/pipeline/caption_sample.h"
#include "data/pipeline/loader.h"
#include "data/sources/webdataset.h"
#include "data_test_utils.h"
#include "loader_test_utils.h"
#include "model/config.h"
#include "train/data_source.h"
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

TEST(LoaderLimits, ImageCountIsCheckedBeforeAnyImageIsRead) {
  // Both images are missing: had the reader tried to load them, the skip would say so.
  testing::TempDir dir;
  const std::string path = dir.file("docs.jsonl");
  testing::write_bytes(path,
                       R"({"texts": ["a", null, null], "images": [null, "gone1.png", "gone2.png"]})"
                       "\n");
  data::SkipStats skips;
  data::ObelicsOptions o;
  o.max_images = 1;
  data::ObelicsReader reader({path}, o, &skips);
  data::Document doc;
  EXPECT_FALSE(reader.next(doc));
  EXPECT_EQ(skips.count("too many images"), 1);
  EXPECT_EQ(skips.count("missing image file"), 0);
  ASSERT_EQ(skips.records().size(), 1u);
  EXPECT_EQ(skips.records()[0].origin, path + ":1");
  EXPECT_EQ(skips.records()[0].detail, "2 images, limit 1");
}

TEST(LoaderLimits, ImageLimitAbovePerRowLimitIsAnError) {
  auto c = small_config();
  c.max_images_per_row = 2;
  c.max_images_per_sample = 3;
  try {
    data::DataLoader l(c);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_images_per_sample is 3"), std::string::npos)
        << e.what();
  }
}

train::JobConfig job_with(const std::string& data_keys) {
  return train::JobConfig::parse(
      "[model]\nflavor = \"debugmodel\"\ntokenizer_path = \"" + testing::kTokenizer +
          "\"\n[training]\nlocal_batch_size = 2\ndataset_path = \"" + kRoot +
          "/data/cc12m-train-0000.tar\"\n[data]\npatch_size = 14\nmax_images_per_batch = 8\n" +
          data_keys,
      "job.toml");
}

TEST(LoaderLimits, JobConfigKeysReachTheLoader) {
  const auto mc = model::ModelConfig::flavor("debugmodel");
  auto l = train::loader_config(job_with("max_tokens_per_sample = 90\noverlong_samples = \"skip\"\n"
                                         "max_images_per_sample = 3\n"),
                                mc, 0, 1);
  EXPECT_EQ(l.max_tokens_per_sample, 90);
  EXPECT_FALSE(l.truncate_long_samples);
  EXPECT_EQ(l.max_images_per_sample, 3);
  EXPECT_TRUE(train::loader_config(job_with(""), mc, 0, 1).truncate_long_samples);

  auto error_of = [&](const std::string& keys) -> std::string {
    try {
      train::loader_config(job_with(keys), mc, 0, 1);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(error_of("overlong_samples = \"drop\"\n").find("not one of: truncate, skip"),
            std::string::npos)
      << error_of("overlong_samples = \"drop\"\n");
  EXPECT_NE(error_of("max_tokens_per_sample = -1\n").find("max_tokens_per_sample must be >= 0"),
            std::string::npos);
  // 8 images per batch over 2 rows: 4 per row.
  const std::string too_many = error_of("max_images_per_sample = 5\n");
  EXPECT_NE(too_many.find("max_images_per_sample (5) exceeds"), std::string::npos) << too_many;
  EXPECT_NE(too_many.find("hold (4 = max_images_per_batch"), std::string::npos) << too_many;
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

}  // namespace
}  // namespace qv
