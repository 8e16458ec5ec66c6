// Training checkpoints: one folder per step holding the model (HF names), the optimizer state,
// and state.json (step, data-loader state, seed, file checksums). Written into a hidden
// temporary folder, fsynced, then renamed, so a reader only ever sees complete checkpoints.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>

#include "model/params.h"
#include "train/adamw.h"

namespace qv::train {

struct TrainState {
  int64_t step = 0;  // optimizer steps completed
  nlohmann::json data_state = nlohmann::json::object();
  nlohmann::json extra = nlohmann::json::object();  // seed, config fingerprint, ...
};

// Optimizer state over the whole flat parameter buffer (gathered from all shards when the
// optimizer is sharded), so checkpoints load on any number of ranks.
struct OptimizerState {
  std::vector<float> exp_avg, exp_avg_sq;  // [store.total()]
  std::vector<int64_t> steps;              // per parameter entry
};

// Saves into folder/step-NNNNNNNN; prunes to the newest keep_latest_k (0 keeps all).
// A null optimizer saves the model only. Returns the checkpoint's path.
std::string save_checkpoint(const std::string& folder, const model::ParamStore& store,
                            const OptimizerState* optimizer, const TrainState& state,
                            int64_t keep_latest_k);

// Newest complete checkpoint in the folder, if any.
std::optional<std::string> latest_checkpoint(const std::string& folder);
// The complete checkpoint of `step` in the folder; throws naming the steps there when absent.
std::string checkpoint_at_step(const std::string& folder, int64_t step);

// Where load_checkpoint puts the optimizer state: the elements of the flat parameter buffer in
// `owned` (ranges in order) go one after another into exp_avg / exp_avg_sq, straight from the
// mapped file, so a sharded optimizer loads its share without holding the whole state.
struct OptimizerTarget {
  std::span<float> exp_avg, exp_avg_sq;  // sum of owned sizes each
  std::vector<FlatRange> owned;
  std::vector<int64_t>* steps = nullptr;  // per parameter entry
};

// Loads a checkpoint written by save_checkpoint, verifying checksums; the optimizer state is
// filled when requested (and is then required to be present). Returns the saved state.
TrainState load_checkpoint(const std::string& path, model::ParamStore& store,
                           const OptimizerTarget* optimizer);
// The same with the whole optimizer state (`optimizer` resized to store.total()).
TrainState load_checkpoint(const std::string& path, model::ParamStore& store,
                           OptimizerState* optimizer);

}  // namespace qv::train
