#include "data/pipeline/loader.h"

#include <algorithm>
#include <filesystem>
#include <utility>

#include "core/error.h"
#include "core/log.h"
#include "data/pipeline/chat_sample.h"
#include "data/pipeline/raw_stream.h"
#include "data/sources/shard_list.h"

namespace qv::data {

DataLoader::DataLoader(LoaderConfig config)
    : c_(std::move(config)),
      tokenizer_(Tokenizer::load(c_.tokenizer_path)),
      tokens_(token_ids(tokenizer_)),
      skips_(std::make_shared<SkipStats>()) {
  QV_CHECK(c_.dataset == "cc12m" || c_.dataset == "obelics" || c_.dataset == "chat", "dataset '",
           c_.dataset, "' is not supported by the loader (valid: cc12m, obelics, chat)");
  if (c_.dataset == "chat")
    if (const std::string m =
            chat_template_mismatch(std::filesystem::path(c_.tokenizer_path).parent_path().string());
        !m.empty())
      log::warn(m);
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
            item.is_chat ? build_chat_sample(item.chat, tokenizer_, tokens_, c_.sample, *skips_)
            : item.is_doc
                ? build_interleaved_sample(item.doc, tokenizer_, tokens_, c_.sample, *skips_)
                : build_caption_sample(item.wds, tokenizer_, tokens_, c_.sample, *skips_);
        if (samples[i]) samples[i]->source = item.pos;
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

namespace {

nlohmann::json positions(const std::vector<Sample>& samples) {
  nlohmann::json out = nlohmann::json::array();
  for (const Sample& s : samples) out.push_back(to_json(s.source));
  return out;
}

// Everything the producer needs to continue after the batch just made: the stream, the packer's
// samples as positions, and the counters.
nlohmann::json pipeline_state(int64_t epoch, int64_t built, const RawStream& stream,
                              const Packer& packer, const SkipStats& skips) {
  nlohmann::json ready = nlohmann::json::array();
  for (const PackedRow& r : packer.ready()) ready.push_back(positions(r.docs));
  return {{"epoch", epoch},
          {"built", built},
          {"stream", stream.state()},
          {"packer", {{"buffer", positions(packer.buffer())}, {"ready", ready}}},
          {"skips", skips.to_json()}};
}

}  // namespace

void DataLoader::resume(const nlohmann::json& pipeline, RawStream& stream, Packer& packer) {
  stream.restore(pipeline.at("stream"));
  // Only the samples that sat in the packer are read and built again.
  auto rebuild = [&](const nlohmann::json& list) {
    std::vector<RawItem> items;
    for (const auto& p : list) items.push_back(stream.read_at(source_pos_from_json(p)));
    std::vector<Sample> out;
    for (auto& s : build_all(items)) {
      QV_CHECK(s && within_limits(*s), "loader state: the buffered sample at ", s ? s->origin : "?",
               " can no longer be built (did the data or config change?)");
      out.push_back(std::move(*s));
    }
    return out;
  };
  std::deque<PackedRow> ready;
  for (const auto& row : pipeline.at("packer").at("ready")) ready.push_back({rebuild(row)});
  packer.restore(rebuild(pipeline.at("packer").at("buffer")), std::move(ready));
  // Last: rebuilding may have counted skips again.
  skips_->reset(pipeline.at("skips"));
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
    const nlohmann::json pipeline = std::exchange(resume_, nullptr);
    const int64_t first_epoch =
        pipeline.is_null() ? start_epoch_ : pipeline.at("epoch").get<int64_t>();
    for (int64_t epoch = first_epoch;; ++epoch) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        epoch_ = epoch;
      }
      RawStream stream(c_, epoch, *skips_);
      int64_t built = 0;
      if (epoch == first_epoch && !pipeline.is_null()) {
        resume(pipeline, stream, packer);
        built = pipeline.at("built").get<int64_t>();
      }
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
        while (packer.has_row() ||
               (!more && !c_.infinite && c_.keep_last_partial_batch && !rows.empty())) {
          if (packer.has_row()) rows.push_back(packer.pop_row());
          const bool last =
              !packer.has_row() && !more && !c_.infinite && c_.keep_last_partial_batch;
          if (static_cast<int64_t>(rows.size()) < c_.batch_size && !last) continue;
          Produced p;
          p.batch = collate(std::move(rows), c_.seq_len, c_.sample.image.patch_dim(), tokens_);
          rows.clear();
          p.pipeline = pipeline_state(epoch, built, stream, packer, *skips_);
          std::unique_lock<std::mutex> lock(mu_);
          cv_.wait(lock,
                   [&] { return stopping_ || static_cast<int64_t>(queue_.size()) < c_.prefetch; });
          if (stopping_) return;
          queue_.push_back(std::move(p));
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
  std::optional<Batch> b = try_next();
  if (!b) fail("data loader: end of data after ", handed_out_, " batches");
  return std::move(*b);
}

std::optional<Batch> DataLoader::try_next() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !queue_.empty() || done_; });
  if (queue_.empty()) {
    QV_CHECK(error_.empty(), "data loader: ", error_);
    return std::nullopt;
  }
  Produced p = std::move(queue_.front());
  queue_.pop_front();
  ++handed_out_;
  pipeline_ = std::move(p.pipeline);
  cv_.notify_all();
  return std::move(p.batch);
}

nlohmann::json DataLoader::state() const {
  std::lock_guard<std::mutex> lock(mu_);
  nlohmann::json s = {
      {"batches", handed_out_}, {"seed", c_.seed}, {"rank", c_.rank}, {"world", c_.world_size}};
  if (!pipeline_.is_null()) s["pipeline"] = pipeline_;
  return s;
}

void DataLoader::restore(const nlohmann::json& s) {
  const int64_t target = s.value("batches", int64_t{0});
  QV_CHECK(s.value("seed", c_.seed) == c_.seed, "data loader state was saved with seed ",
           s.value("seed", c_.seed), ", this run uses ", c_.seed);
  stop();
  handed_out_ = 0;
  samples_built_ = 0;
  pipeline_ = nullptr;
  start_epoch_ = 0;
  skips_->reset(nlohmann::json::object());
  // Resharding (another world size) cannot continue the same stream: start fresh then.
  if (s.value("world", c_.world_size) != c_.world_size) {
    start();
    log::warn("data loader: world size changed since the checkpoint; data order restarts");
    return;
  }
  // The pipeline describes the saving rank's own stream. Another rank (a multi-rank job's
  // checkpoint holds rank 0's state), or a state from before seek-resume existed, replays its
  // stream to the same batch count instead.
  if (s.contains("pipeline") && s.value("rank", -1) == c_.rank) {
    resume_ = s.at("pipeline");
    handed_out_ = target;
    pipeline_ = resume_;
    start();
    return;
  }
  start();
  while (handed_out_ < target) next();
}

void DataLoader::restart_at_epoch(int64_t epoch) {
  QV_CHECK(epoch >= 0, "data loader: cannot start at epoch ", epoch);
  stop();
  handed_out_ = 0;
  samples_built_ = 0;
  pipeline_ = nullptr;
  resume_ = nullptr;
  start_epoch_ = epoch;
  skips_->reset(nlohmann::json::object());
  start();
}

}  // namespace qv::data
