// The data loader: shards -> raw samples (this rank's share, shuffled in a seeded buffer) ->
// samples built by worker threads (image decode + preprocessing + tokenization) -> buffered
// packing into rows of seq_len -> batches, prefetched on a background thread.
//
// Deterministic for a seed: the same config gives the same batches whatever the thread count.
// Resumable exactly: state() is the number of batches handed out; restore() rebuilds the
// pipeline and replays it to that point (replay decodes again, so it costs as much as reading
// those samples did).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "data/caption_sample.h"
#include "data/obelics.h"
#include "data/packing.h"
#include "data/skip_stats.h"
#include "data/tokenizer.h"
#include "data/webdataset.h"

namespace qv::data {

struct LoaderConfig {
  std::string dataset = "cc12m";  // cc12m (WebDataset shards) | obelics (JSONL documents)
  std::string path;               // file pattern: globs and {0000..0099} ranges
  std::string tokenizer_path;
  int64_t seq_len = 2048;
  int64_t batch_size = 1;  // rows per batch
  int64_t packing_buffer_size = 100;
  int64_t max_images_per_row = 64;
  // Per-sample limits. A sample longer than max_tokens_per_sample (0: seq_len; capped at seq_len)
  // is cut without splitting an image block, or with truncate_long_samples = false is a counted
  // skip "too many tokens". A sample with more images than max_images_per_sample (0: the per-row
  // limit; at most that) is a counted skip "too many images", found before any image is decoded.
  int64_t max_tokens_per_sample = 0;
  bool truncate_long_samples = true;
  int64_t max_images_per_sample = 0;
  int64_t shuffle_buffer = 64;  // raw samples; 0 keeps shard order
  uint64_t seed = 42;
  int rank = 0, world_size = 1;
  int num_workers = 2;
  int64_t prefetch = 4;  // batches
  bool infinite = true;  // start a new (reshuffled) epoch at the end of the data
  CaptionSampleConfig sample;
  ReaderLimits webdataset;  // cc12m shards: member size limit, kept extensions
  // OBELICS rows and images; downloaded images are cached under .cache/qwen3vl-images.
  ObelicsOptions obelics = [] {
    ObelicsOptions o;
    o.http.cache_dir = ".cache/qwen3vl-images";
    return o;
  }();
};

class DataLoader {
 public:
  explicit DataLoader(LoaderConfig config);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Next batch; throws qv::Error at the end of a finite run or when the data yields nothing.
  Batch next();
  nlohmann::json state() const;
  void restore(const nlohmann::json& state);
  const SkipStats& skips() const { return *skips_; }
  int64_t epoch() const;
  const LoaderConfig& config() const { return c_; }
  // Samples handed to the builders (images decoded, text tokenized) so far: shows that a sample
  // skipped for its image count never reached a decoder.
  int64_t samples_built() const { return samples_built_.load(); }

 private:
  void start();
  void stop();
  void produce();  // background thread body
  // The sample limits after building: truncation or a counted skip (false).
  bool within_token_limit(Sample& s);
  LoaderConfig c_;
  Tokenizer tokenizer_;
  TokenIds tokens_;
  std::shared_ptr<SkipStats> skips_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  std::string error_;
  bool done_ = false, stopping_ = false;
  int64_t handed_out_ = 0;
  int64_t epoch_ = 0;
  std::atomic<int64_t> samples_built_{0};
};

}  // namespace qv::data
