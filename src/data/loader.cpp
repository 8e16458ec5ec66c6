#include "data/loader.h"

#include <algorithm>
#include <random>

#include "core/error.h"
#include "core/log.h"
#include "data/obelics.h"
#include "data/shard_list.h"
#include "data/webdataset.h"

namespace qv::data {

// One unprocessed sample: a WebDataset group (cc12m) or an interleaved document (OBELICS).
struct RawItem {
  RawSample wds;
  Document doc;
  bool is_doc = false;
};

namespace {

// Raw samples of one epoch for this rank, shuffled through a seeded buffer.
class RawStream {
 public:
  RawStream(const LoaderConfig& c, int64_t epoch, SkipStats& skips)
      : c_(c), rng_(c.seed * 1000003ull + static_cast<uint64_t>(epoch) * 7919ull + c.rank) {
    RankShare share = share_for_rank(expand_shards(c.path), c.rank, c.world_size);
    stride_ = share.sample_stride;
    offset_ = share.sample_offset;
    if (c.dataset == "obelics")
      docs_ = std::make_unique<ObelicsReader>(std::move(share.shards), c.obelics, &skips);
    else
      reader_ = std::make_unique<WebDatasetReader>(std::move(share.shards), c.webdataset, &skips);
  }

  bool next(RawItem& out) {
    while (static_cast<int64_t>(buffer_.size()) < std::max<int64_t>(1, c_.shuffle_buffer) &&
           !exhausted_) {
      RawItem s;
      s.is_doc = docs_ != nullptr;
      if (!(s.is_doc ? docs_->next(s.doc) : reader_->next(s.wds))) {
        exhausted_ = true;
        break;
      }
      if (index_++ % stride_ != offset_) continue;
      buffer_.push_back(std::move(s));
    }
    if (buffer_.empty()) return false;
    size_t pick = 0;
    if (c_.shuffle_buffer > 0)
      pick = std::uniform_int_distribution<size_t>(0, buffer_.size() - 1)(rng_);
    out = std::move(buffer_[pick]);
    buffer_[pick] = std::move(buffer_.back());
    buffer_.pop_back();
    return true;
  }

 private:
  const LoaderConfig& c_;
  std::mt19937_64 rng_;
  std::unique_ptr<WebDatasetReader> reader_;
  std::unique_ptr<ObelicsReader> docs_;
  std::vector<RawItem> buffer_;
  int64_t index_ = 0, stride_ = 1, offset_ = 0;
  bool exhausted_ = false;
};

}  // namespace

DataLoader::DataLoader(LoaderConfig config)
    : c_(std::move(config)),
      tokenizer_(Tokenizer::load(c_.tokenizer_path)),
      tokens_(token_ids(tokenizer_)),
      skips_(std::make_shared<SkipStats>()) {
  QV_CHECK(c_.dataset == "cc12m" || c_.dataset == "obelics", "dataset '", c_.dataset,
           "' is not supported by the loader (valid: cc12m, obelics)");
  QV_CHECK(c_.batch_size > 0 && c_.seq_len > 1, "loader: batch_size and seq_len must be positive");
  QV_CHECK(c_.max_tokens_per_sample >= 0, "loader: max_tokens_per_sample is ",
           c_.max_tokens_per_sample, "; it must be >= 0 (0: seq_len)");
  QV_CHECK(c_.max_images_per_sample >= 0 && c_.max_images_per_sample <= c_.max_images_per_row,
           "loader: max_images_per_sample is ", c_.max_images_per_sample,
           "; it must be between 0 (the per-row limit) and the per-row limit ",
           c_.max_images_per_row, " (a sample has to fit in one row)");
  // A caption sample has one image; documents are counted by the reader, before loading images.
  c_.obelics.max_images =
      c_.max_images_per_sample > 0 ? c_.max_images_per_sample : c_.max_images_per_row;
  c_.sample.image.validate();
  expand_shards(c_.path);  // fail early on a bad path
  start();
}

DataLoader::~DataLoader() {
  stop();
}

void DataLoader::start() {
  stopping_ = done_ = false;
  error_.clear();
  queue_.clear();
  thread_ = std::thread([this] { produce(); });
}

void DataLoader::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

int64_t DataLoader::epoch() const {
  std::lock_guard<std::mutex> lock(mu_);
  return epoch_;
}

std::vector<std::optional<Sample>> DataLoader::build_all(const std::vector<RawItem>& items) {
  std::vector<std::optional<Sample>> samples(items.size());
  const int workers = std::max(1, c_.num_workers);
  std::vector<std::thread> pool;
  for (int w = 0; w < workers; ++w)
    pool.emplace_back([&, w] {
      for (size_t i = w; i < items.size(); i += workers) {
        const RawItem& item = items[i];
        samples_built_.fetch_add(1);
        samples[i] =
            item.is_doc
                ? build_interleaved_sample(item.doc, tokenizer_, tokens_, c_.sample, *skips_)
                : build_caption_sample(item.wds, tokenizer_, tokens_, c_.sample, *skips_);
      }
    });
  for (auto& t : pool) t.join();
  return samples;
}

bool DataLoader::within_limits(Sample& s) {
  const int64_t limit =
      c_.max_tokens_per_sample > 0 ? std::min(c_.max_tokens_per_sample, c_.seq_len) : c_.seq_len;
  if (s.length() > limit && !c_.truncate_long_samples) {
    skips_->add(skip::kTooManyTokens, s.origin, cat(s.length(), " tokens, limit ", limit));
    return false;
  }
  const int64_t length = s.length();
  if (!fit_to_length(s, limit, tokens_)) {
    skips_->add(skip::kTooLongForSeqLen, s.origin,
                cat(length, " tokens, limit ", limit, ": nothing to train on before the image"));
    return false;
  }
  return true;
}

void DataLoader::produce() {
  try {
    PackingConfig pc;
    pc.seq_len = c_.seq_len;
    pc.buffer_size = c_.packing_buffer_size;
    pc.max_images_per_row = c_.max_images_per_row;
    Packer packer(pc, tokens_);
    std::vector<PackedRow> rows;
    const int workers = std::max(1, c_.num_workers);
    for (int64_t epoch = 0;; ++epoch) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        epoch_ = epoch;
      }
      RawStream stream(c_, epoch, *skips_);
      int64_t built = 0;
      bool more = true;
      while (more) {
        // A chunk of raw samples, built in parallel, consumed in order.
        std::vector<RawItem> chunk;
        RawItem raw;
        while (static_cast<int>(chunk.size()) < workers * 4 && (more = stream.next(raw)))
          chunk.push_back(std::move(raw));
        for (auto& s : build_all(chunk)) {
          if (!s || !within_limits(*s)) continue;
          ++built;
          packer.add(std::move(*s));
        }
        if (!more && !c_.infinite) packer.flush();
        while (packer.has_row()) {
          rows.push_back(packer.pop_row());
          if (static_cast<int64_t>(rows.size()) < c_.batch_size) continue;
          Batch b = collate(std::move(rows), c_.seq_len, c_.sample.image.patch_dim(), tokens_);
          rows.clear();
          std::unique_lock<std::mutex> lock(mu_);
          cv_.wait(lock,
                   [&] { return stopping_ || static_cast<int64_t>(queue_.size()) < c_.prefetch; });
          if (stopping_) return;
          queue_.push_back(std::move(b));
          cv_.notify_all();
        }
        std::lock_guard<std::mutex> lock(mu_);
        if (stopping_) return;
      }
      QV_CHECK(built > 0, "dataset ", c_.path, " yielded no usable sample in epoch ", epoch,
               " for rank ", c_.rank, " (", skips_->total(), " skipped)");
      if (!c_.infinite) break;
    }
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lock(mu_);
    error_ = e.what();
    done_ = true;
  }
  cv_.notify_all();
}

Batch DataLoader::next() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !queue_.empty() || done_; });
  if (queue_.empty()) {
    QV_CHECK(error_.empty(), "data loader: ", error_);
    fail("data loader: end of data after ", handed_out_, " batches");
  }
  Batch b = std::move(queue_.front());
  queue_.pop_front();
  ++handed_out_;
  cv_.notify_all();
  return b;
}

nlohmann::json DataLoader::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  return {{"batches", handed_out_}, {"seed", c_.seed}, {"rank", c_.rank}, {"world", c_.world_size}};
}

void DataLoader::restore(const nlohmann::json& s) {
  const int64_t target = s.value("batches", int64_t{0});
  QV_CHECK(s.value("seed", c_.seed) == c_.seed, "data loader state was saved with seed ",
           s.value("seed", c_.seed), ", this run uses ", c_.seed);
  stop();
  handed_out_ = 0;
  start();
  // Resharding (another world size) cannot replay the same stream: start fresh then.
  if (s.value("world", c_.world_size) != c_.world_size) {
    log::warn("data loader: world size changed since the checkpoint; data order restarts");
    return;
  }
  while (handed_out_ < target) next();
}

}  // namespace qv::data
