#include "train/data_source.h"

#include "core/error.h"

namespace qv::train {

std::unique_ptr<BatchSource> make_batch_source(const JobConfig& config,
                                               const model::ModelConfig& model_config, int rank,
                                               int world_size) {
  if (parse_dataset_kind(config.dataset) == DatasetKind::kFixed) {
    QV_CHECK(!config.dataset_path.empty(),
             "training.dataset = \"fixed\" needs training.dataset_path");
    return make_fixed_source(config.dataset_path, &model_config, rank, world_size);
  }
  return make_loader_source(config, model_config, rank, world_size);
}

}  // namespace qv::train
