// What the data loader reads and how it builds, limits, packs and batches samples.
#pragma once
#include <cstdint>
#include <string>

#include "data/pipeline/caption_sample.h"
#include "data/sources/obelics.h"
#include "data/sources/webdataset.h"

namespace qv::data {

struct LoaderConfig {
  // cc12m (WebDataset shards) | obelics (JSONL or Parquet documents) | chat (JSONL conversations)
  std::string dataset = "cc12m";
  std::string path;  // file pattern: globs and {0000..0099} ranges
  std::string tokenizer_path;
  int64_t seq_len = 2048;
  int64_t batch_size = 1;  // rows per batch
  int64_t packing_buffer_size = 100;
  int64_t max_images_per_row = 64;
  // Per-sample limits. A sample over max_tokens_per_sample tokens (0: seq_len; never more than
  // seq_len) is cut at the limit without splitting an image block, or, with
  // truncate_long_samples = false, is a counted skip "too many tokens". A sample with more images
  // than max_images_per_sample (0: max_images_per_row, which is also its upper bound, since a
  // sample has to fit in one row) is a counted skip "too many images", found before any of its
  // images is loaded or decoded.
  int64_t max_tokens_per_sample = 0;
  bool truncate_long_samples = true;
  int64_t max_images_per_sample = 0;
  int64_t shuffle_buffer = 64;  // raw samples; 0 keeps shard order
  uint64_t seed = 42;
  int rank = 0, world_size = 1;
  int num_workers = 2;
  int64_t prefetch = 4;  // batches
  bool infinite = true;  // start a new (reshuffled) epoch at the end of the data
  // A finite run hands out its last rows as a smaller batch instead of dropping them (validation:
  // one pass over every sample, whatever the batch size or rank count).
  bool keep_last_partial_batch = false;
  CaptionSampleConfig sample;
  ReaderLimits webdataset;  // cc12m shards: member size limit, kept extensions
  // OBELICS and chat rows and images; downloaded images are cached under .cache/qwen3vl-images.
  ObelicsOptions obelics = [] {
    ObelicsOptions o;
    o.http.cache_dir = ".cache/qwen3vl-images";
    return o;
  }();
};

}  // namespace qv::data
