#include "train/validation.h"

#include <algorithm>

#include "data/pipeline/loader.h"
#include "train/batch_source.h"
#include "train/data_source.h"

namespace qv::train {
namespace {

class FixedOnce final : public ValidationSource {
 public:
  explicit FixedOnce(std::unique_ptr<BatchSource> source) : source_(std::move(source)) {}
  std::optional<model::ModelInputs> next() override {
    if (done_) return std::nullopt;
    done_ = true;
    return source_->next();
  }

 private:
  std::unique_ptr<BatchSource> source_;
  bool done_ = false;
};

class LoaderOnce final : public ValidationSource {
 public:
  explicit LoaderOnce(data::LoaderConfig c) : loader_(std::move(c)) {}
  std::optional<model::ModelInputs> next() override {
    std::optional<data::Batch> b = loader_.try_next();
    if (!b) return std::nullopt;
    return batch_to_inputs(std::move(*b));
  }

 private:
  data::DataLoader loader_;
};

// The job config with the [validation] settings in the [training] / [data] places.
JobConfig validation_job(const JobConfig& c) {
  JobConfig v = c;
  if (!c.validation_dataset.empty()) v.dataset = c.validation_dataset;
  v.dataset_path = c.validation_dataset_path;
  v.local_batch_size = c.validation_local_batch_size;
  v.seq_len = c.validation_seq_len;
  v.num_workers = c.validation_num_workers;
  v.max_images_per_sample = std::min(
      c.max_images_per_sample, std::max<int64_t>(1, c.max_images_per_batch / v.local_batch_size));
  return v;
}

}  // namespace

std::unique_ptr<ValidationSource> make_validation_source(const JobConfig& config,
                                                         const model::ModelConfig& model_config,
                                                         int rank, int world_size) {
  const JobConfig v = validation_job(config);
  if (parse_dataset_kind(v.dataset, "validation.dataset") == DatasetKind::kFixed)
    return std::make_unique<FixedOnce>(
        make_fixed_source(v.dataset_path, &model_config, rank, world_size));
  data::LoaderConfig l = loader_config(v, model_config, rank, world_size);
  l.infinite = false;
  l.keep_last_partial_batch = true;
  return std::make_unique<LoaderOnce>(std::move(l));
}

ValidationSums validation_sums(model::Qwen3VLModel& model, ValidationSource& source,
                               int64_t max_batches) {
  ValidationSums s;
  model::ForwardOptions opt;  // forward only: no activations kept, logits in chunks
  while (max_batches < 0 || s.batches < max_batches) {
    std::optional<model::ModelInputs> batch = source.next();
    if (!batch) break;
    const model::ForwardResult r = model.forward(*batch, opt);
    s.loss_sum += r.loss_sum;
    s.kept_tokens += r.kept_tokens;
    ++s.batches;
  }
  return s;
}

bool validation_due(const JobConfig& c, int64_t step) {
  return c.validation_enable && (step == 1 || step % c.validation_freq == 0 || step == c.steps);
}

}  // namespace qv::train
