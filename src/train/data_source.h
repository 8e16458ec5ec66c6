// Chooses the batch source a job config names (fixed / cc12m / obelics).
#pragma once
#include <memory>

#include "data/pipeline/loader_config.h"
#include "data/pipeline/sample.h"
#include "model/config.h"
#include "train/batch_source.h"
#include "train/job_config.h"

namespace qv::train {

std::unique_ptr<BatchSource> make_batch_source(const JobConfig& config,
                                               const model::ModelConfig& model_config, int rank,
                                               int world_size);

// The data loader's settings for a job (cc12m / obelics), checked against the model's vision
// config (train/loader_source.cpp).
data::LoaderConfig loader_config(const JobConfig& config, const model::ModelConfig& model_config,
                                 int rank, int world_size);

// A loader batch as model inputs (train/loader_source.cpp).
model::ModelInputs batch_to_inputs(data::Batch&& batch);

// The cc12m loader as a batch source (train/loader_source.cpp).
std::unique_ptr<BatchSource> make_loader_source(const JobConfig& config,
                                                const model::ModelConfig& model_config, int rank,
                                                int world_size);

}  // namespace qv::train
