// Sample fitting, buffered packing and collation.
#include <gtest/gtest.h>

#include <numeric>

#include "data/pipeline/packing.h"

namespace qv {
namespace {

using data::Sample;

const data::TokenIds kTok{/*image_pad=*/90, /*video_pad=*/91, /*vision_start=*/92,
                          /*vision_end=*/93, /*endoftext=*/99};

Sample text_sample(int64_t n, int32_t first, const std::string& origin) {
  Sample s;
  for (int64_t i = 0; i < n; ++i) {
    s.ids.push_back(first + static_cast<int32_t>(i));
    s.labels.push_back(first + static_cast<int32_t>(i));
  }
  s.origin = origin;
  return s;
}

Sample image_sample(int64_t merged, int64_t text, const std::string& origin) {
  Sample s;
  s.ids.push_back(kTok.vision_start);
  for (int64_t i = 0; i < merged; ++i) s.ids.push_back(kTok.image_pad);
  s.ids.push_back(kTok.vision_end);
  s.labels.assign(s.ids.size(), data::kIgnore);
  for (int64_t i = 0; i < text; ++i) {
    s.ids.push_back(10 + static_cast<int32_t>(i));
    s.labels.push_back(10 + static_cast<int32_t>(i));
  }
  data::VisionItem v;
  v.grid = {1, 2, 2 * merged};
  v.pixels.assign(v.grid.patches() * 3, 0.5f);
  s.vision.push_back(v);
  s.origin = origin;
  return s;
}

TEST(FitToLength, NeverCutsAnImageBlock) {
  Sample s = image_sample(4, 3, "a");  // 6 vision tokens then 3 text
  Sample t = s;
  ASSERT_FALSE(data::fit_to_length(t, 4, kTok));  // cut inside the block: nothing trainable left
  EXPECT_EQ(t.length(), 0);
  EXPECT_TRUE(t.vision.empty());
  t = s;
  ASSERT_TRUE(data::fit_to_length(t, 8, kTok));
  EXPECT_EQ(t.length(), 8);
  EXPECT_EQ(t.vision.size(), 1u);
}

TEST(Packer, RowsNeverExceedSeqLenAndKeepEverySample) {
  data::PackingConfig cfg;
  cfg.seq_len = 16;
  cfg.buffer_size = 4;
  data::Packer p(cfg, kTok);
  int64_t total_in = 0;
  for (int i = 0; i < 12; ++i) {
    Sample s = text_sample(3 + (i * 5) % 9, 0, std::to_string(i));
    total_in += s.length();
    p.add(std::move(s));
  }
  p.flush();
  int64_t total_out = 0, docs = 0;
  while (p.has_row()) {
    const auto row = p.pop_row();
    EXPECT_LE(row.tokens, cfg.seq_len);
    for (const auto& d : row.docs) total_out += d.length();
    docs += static_cast<int64_t>(row.docs.size());
  }
  EXPECT_EQ(total_in, total_out);
  EXPECT_EQ(docs, 12);
}

TEST(Packer, RespectsImagesPerRow) {
  data::PackingConfig cfg;
  cfg.seq_len = 100;
  cfg.buffer_size = 3;
  cfg.max_images_per_row = 1;
  data::Packer p(cfg, kTok);
  for (int i = 0; i < 3; ++i) p.add(image_sample(2, 2, "img"));
  p.flush();
  int rows = 0;
  while (p.has_row()) {
    EXPECT_EQ(p.pop_row().images, 1);
    ++rows;
  }
  EXPECT_EQ(rows, 3);
}

TEST(Collate, DocumentsPaddingAndImages) {
  data::PackedRow row;
  row.docs.push_back(text_sample(3, 1, "t"));
  row.docs.push_back(image_sample(1, 2, "i"));
  row.tokens = 3 + 5;
  auto b = data::collate({row}, 10, 3, kTok);
  EXPECT_EQ(b.ids, (std::vector<int64_t>{1, 2, 3, 92, 90, 93, 10, 11, 99, 99}));
  EXPECT_EQ(b.document_ids, (std::vector<int64_t>{0, 0, 0, 1, 1, 1, 1, 1, 2, 2}));
  EXPECT_EQ(b.attention_mask, (std::vector<int64_t>{1, 1, 1, 1, 1, 1, 1, 1, 0, 0}));
  EXPECT_EQ(b.labels, (std::vector<int64_t>{1, 2, 3, -100, -100, -100, 10, 11, -100, -100}));
  ASSERT_EQ(b.image_grids.size(), 1u);
  EXPECT_EQ(b.image_pixels.size(), 4u * 3);  // 4 patches of 3 values
}

}  // namespace
}  // namespace qv
