// The data loader: shards -> raw samples (this rank's share, shuffled in a seeded buffer) ->
// samples built by worker threads (image decode + preprocessing + tokenization) -> per-sample
// limits -> buffered packing into rows of seq_len -> batches, prefetched on a background thread.
//
// Deterministic for a seed: the same config gives the same batches whatever the thread count.
// Resumable exactly: state() holds the pipeline as it stood after the last batch handed out (the
// reader's byte position, the positions of the samples in the shuffle and packing buffers, the
// RNG, the skip counts); restore() seeks the reader there and re-reads and rebuilds only those
// buffered samples. A state without a pipeline of this rank (older checkpoints; a multi-rank
// checkpoint, which holds rank 0's state) is restored by replaying the stream to the saved batch
// count, which costs as much as reading those samples did.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "data/pipeline/caption_sample.h"
#include "data/pipeline/loader_config.h"
#include "data/pipeline/packing.h"
#include "data/skip_stats.h"
#include "data/sources/obelics.h"
#include "data/sources/webdataset.h"
#include "data/tokenizer/tokenizer.h"

namespace qv::data {

struct RawItem;
class RawStream;

class DataLoader {
 public:
  explicit DataLoader(LoaderConfig config);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  // Next batch; throws qv::Error at the end of a finite run or when the data yields nothing.
  Batch next();
  // Next batch, or nothing at the end of a finite run; throws qv::Error when the data fails.
  std::optional<Batch> try_next();
  nlohmann::json state() const;
  void restore(const nlohmann::json& state);
  // Starts `epoch` from its beginning (this rank's share of it in this config's world): how a
  // job continues when the number of ranks changed since the checkpoint (states of another
  // world cannot be continued sample for sample). Costs no reading of earlier data.
  void restart_at_epoch(int64_t epoch);
  const SkipStats& skips() const { return *skips_; }
  int64_t epoch() const;
  const LoaderConfig& config() const { return c_; }
  // Samples handed to the builders (images decoded, text tokenized) since construction or the
  // last restore(): shows that a skipped sample never reached a decoder, and what a resume costs.
  int64_t samples_built() const { return samples_built_.load(); }

 private:
  void start();
  void stop();
  void produce();  // background thread body
  // Builds raw items into samples on the worker threads, in order; nullopt where skipped.
  std::vector<std::optional<Sample>> build_all(const std::vector<RawItem>& items);
  // Applies the per-sample token limit (truncation or a counted skip); false when skipped.
  bool within_limits(Sample& s);
  // Puts the stream and packer where `pipeline` (a state()'s "pipeline") says.
  void resume(const nlohmann::json& pipeline, RawStream& stream, Packer& packer);
  struct Produced {
    Batch batch;
    nlohmann::json pipeline;  // the state after this batch
  };
  LoaderConfig c_;
  Tokenizer tokenizer_;
  TokenIds tokens_;
  std::shared_ptr<SkipStats> skips_;
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Produced> queue_;
  nlohmann::json resume_;    // pipeline the next start() continues from (null: from the start)
  nlohmann::json pipeline_;  // pipeline after the last batch handed out
  std::string error_;
  bool done_ = false, stopping_ = false;
  int64_t handed_out_ = 0;
  int64_t epoch_ = 0;
  int64_t start_epoch_ = 0;  // the epoch a start() without a pipeline to resume begins with
  std::atomic<int64_t> samples_built_{0};
};

}  // namespace qv::data
