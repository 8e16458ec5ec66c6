// Chooses the batch source a job config names (fixed / cc12m / obelics).
#pragma once
#include <memory>

#include "model/config.h"
#include "train/batch_source.h"
#include "train/job_config.h"

namespace qv::train {

std::unique_ptr<BatchSource> make_batch_source(const JobConfig& config,
                                               const model::ModelConfig& model_config, int rank,
                                               int world_size);

// The cc12m loader as a batch source (train/loader_source.cpp).
std::unique_ptr<BatchSource> make_loader_source(const JobConfig& config,
                                                const model::ModelConfig& model_config, int rank,
                                                int world_size);

}  // namespace qv::train
