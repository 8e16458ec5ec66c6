// Where the trainer's micro-batches come from: the data loader (cc12m / OBELICS) or a fixed
// batch from a safetensors file (dataset = "fixed", used to reproduce fixture runs).
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/inputs.h"

namespace qv::train {

struct JobConfig;

class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual model::ModelInputs next() = 0;
  virtual nlohmann::json state() const = 0;
  virtual void restore(const nlohmann::json& state) = 0;
  // Continues from a checkpoint saved by another number of ranks: `states` holds every saving
  // rank's state (rank order). The rule (docs/CHECKPOINTS.md): the epoch the furthest saving
  // rank was in restarts from its beginning over the new ranks, or with next_epoch the epoch
  // after it begins. Sources without epochs restore the first state.
  virtual void restore_resharded(const std::vector<nlohmann::json>& states, bool next_epoch) {
    (void)next_epoch;
    restore(states.at(0));
  }
  virtual std::string describe() const = 0;
  // Samples skipped so far because of bad data (logged by the source with file and key).
  virtual int64_t skipped() const { return 0; }
};

// Every call returns the batch in `path`; with several data-parallel ranks each rank gets its
// contiguous share of the rows (the batch size must divide evenly).
std::unique_ptr<BatchSource> make_fixed_source(const std::string& path,
                                               const model::ModelConfig* config = nullptr,
                                               int rank = 0, int world_size = 1);

}  // namespace qv::train
