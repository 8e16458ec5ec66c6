// The data loader on the bundled cc12m shard with small images, shared by the loader tests.
#pragma once
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "data/pipeline/loader.h"

namespace qv::testing {

inline const std::string kRoot = QWEN3VL_SOURCE_DIR;
inline const std::string kTokenizer =
    kRoot + "/third_party/npm/tokenizer-qwen3/package/models/tokenizer.json";

inline data::LoaderConfig small_config() {
  data::LoaderConfig c;
  c.path = kRoot + "/data/cc12m-train-{0000..0000}.tar";
  c.tokenizer_path = kTokenizer;
  c.seq_len = 160;
  c.batch_size = 2;
  c.packing_buffer_size = 8;
  c.shuffle_buffer = 8;
  c.num_workers = 2;
  c.sample.image.patch_size = 14;
  c.sample.image.min_pixels = 3136;
  c.sample.image.max_pixels = 12544;  // <= 16 merged tokens per image
  return c;
}

inline std::vector<data::Batch> take(data::DataLoader& l, int n) {
  std::vector<data::Batch> out;
  for (int i = 0; i < n; ++i) out.push_back(l.next());
  return out;
}

inline void expect_same(const data::Batch& a, const data::Batch& b) {
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_EQ(a.document_ids, b.document_ids);
  EXPECT_EQ(a.image_pixels, b.image_pixels);
  EXPECT_EQ(a.origins, b.origins);
}

}  // namespace qv::testing
