// Training checkpoints: one folder per step holding the model (HF names), the optimizer state,
// every rank's data-loader state and state.json (step, seed, file checksums). Written into a
// hidden temporary folder, fsynced, then renamed, so a reader only ever sees complete
// checkpoints. Two formats: v2 (train/checkpoint_shards.h), written by all ranks in parallel,
// each its own share, and read back by any layout; v1 (one model.safetensors and one
// optimizer.safetensors with whole tensors, written by rank 0), still read.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>

#include "dist/communicator.h"
#include "model/params.h"
#include "train/adamw.h"
#include "train/checkpoint_shards.h"

namespace qv::train {

struct TrainState {
  int64_t step = 0;                                      // optimizer steps completed
  nlohmann::json data_state = nlohmann::json::object();  // v1: rank 0's loader state
  nlohmann::json extra = nlohmann::json::object();       // seed, config fingerprint, ...
  // Loaded from v2: every saving rank's loader state, in rank order (their count is the
  // world size that saved). Empty for v1.
  std::vector<nlohmann::json> data_states;
  std::string format;  // "qwen3vl-checkpoint-v1" | "qwen3vl-checkpoint-v2"
};

// Optimizer state over the whole flat parameter buffer (gathered from all shards when the
// optimizer is sharded), so checkpoints load on any number of ranks.
struct OptimizerState {
  std::vector<float> exp_avg, exp_avg_sq;  // [store.total()]
  std::vector<int64_t> steps;              // per parameter entry
};

// Single-process save (format v2, one rank writing everything) into folder/step-NNNNNNNN;
// prunes to the newest keep_latest_k (0 keeps all). A null optimizer saves the model only.
// Returns the checkpoint's path.
std::string save_checkpoint(const std::string& folder, const model::ParamStore& store,
                            const OptimizerState* optimizer, const TrainState& state,
                            int64_t keep_latest_k);

// The format before sharding (v1: whole tensors in model.safetensors / optimizer.safetensors,
// rank 0's data state in state.json). Kept so that reading it stays tested.
std::string save_checkpoint_v1(const std::string& folder, const model::ParamStore& store,
                               const OptimizerState* optimizer, const TrainState& state,
                               int64_t keep_latest_k);

// folder/step-NNNNNNNN.
std::string checkpoint_dir(const std::string& folder, int64_t step);

// The sharded save as a collective, in two halves so the writing between them can run on a
// background thread (train/checkpoint_shards.h describes the files):
//   begin: rank 0 removes temporary folders of dead writers and makes the temporary folder for
//          `final_dir`; every rank gets its path (an error on rank 0 throws on every rank);
//   (each rank: write_rank_files into it)
//   finish: the ranks exchange outcomes, CRCs and written ranges; when all succeeded rank 0
//          writes index.json, config.json and state.json, publishes the folder and prunes to
//          keep_latest_k; otherwise the folder is removed. Every rank throws if any rank failed
//          (that rank with its own error, the others naming it). Returns final_dir.
std::string begin_sharded_save(dist::Communicator& comm, const std::string& final_dir);
struct SaveInfo {
  int64_t step = 0;
  nlohmann::json extra = nlohmann::json::object();
  int64_t replicate = 1, shard = 1;      // the layout that saved
  std::vector<int64_t> optimizer_steps;  // AdamW's per-entry step counts; empty: model only
  std::string model_config_json;         // written as config.json (for export); may be empty
  int64_t keep_latest_k = 0;
};
std::string finish_sharded_save(dist::Communicator& comm, const std::string& tmp_dir,
                                const std::string& final_dir, const RankFiles& mine,
                                const std::vector<FlatRange>& written,
                                const model::ParamStore& store, const SaveInfo& info);

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
  Device device = kCpuDevice;             // where exp_avg / exp_avg_sq are
};

// Loads a checkpoint (either format), verifying checksums; the optimizer state is filled when
// requested (and is then required to be present). Parameter values are read inside
// `param_ranges` (null: the whole store); nothing else of the store is written. Returns the
// saved state.
TrainState load_checkpoint(const std::string& path, model::ParamStore& store,
                           const OptimizerTarget* optimizer,
                           const std::vector<FlatRange>* param_ranges = nullptr);
// The same with the whole optimizer state (`optimizer` resized to store.total()).
TrainState load_checkpoint(const std::string& path, model::ParamStore& store,
                           OptimizerState* optimizer);

}  // namespace qv::train
