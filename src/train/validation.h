// Validation: the forward-only loss on held-out data ([validation] in the job config). Each rank
// reads its share of the validation set through a loader of its own, built afresh for every
// run (so the training loader's state and resume are never touched, and every run sees the same
// batches); the loss is the sum of token losses over the kept tokens of every rank's batches,
// divided by their count.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>

#include "model/config.h"
#include "model/inputs.h"
#include "model/qwen3vl.h"
#include "train/job_config.h"

namespace qv::train {

// One pass over this rank's validation batches; nothing at the end.
class ValidationSource {
 public:
  virtual ~ValidationSource() = default;
  virtual std::optional<model::ModelInputs> next() = 0;
};

// The validation set of `config` ([validation] dataset, dataset_path, local_batch_size, seq_len,
// dataloader.num_workers; the rest as for training): the loader datasets read once with the
// last rows kept as a smaller batch; "fixed" yields its batch (this rank's rows) once.
std::unique_ptr<ValidationSource> make_validation_source(const JobConfig& config,
                                                         const model::ModelConfig& model_config,
                                                         int rank, int world_size);

// This rank's part of a validation run.
struct ValidationSums {
  double loss_sum = 0;  // summed token losses
  int64_t kept_tokens = 0;
  int64_t batches = 0;
};

// Forward-only over up to validation_steps batches (-1: all) of `source`. The model's parameters
// must all be present on this rank (no unit hooks).
ValidationSums validation_sums(model::Qwen3VLModel& model, ValidationSource& source,
                               int64_t max_batches);

// Whether validation runs after `step` (1-based): torchtitan's step 1 and every freq steps, and
// the last step.
bool validation_due(const JobConfig& config, int64_t step);

}  // namespace qv::train
