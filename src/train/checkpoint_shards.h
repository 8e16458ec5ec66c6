// Sharded training checkpoints (state.json format "qwen3vl-checkpoint-v2"). Every rank writes
// the part of the training state it holds, all ranks at once, into one folder:
//
//   model-rankRRRRR.safetensors   parameter pieces: 1-D slices of HF-named tensors
//   optim-rankRRRRR.safetensors   the same pieces of AdamW's exp_avg.NAME / exp_avg_sq.NAME
//   data-rankRRRRR.json           that rank's data-loader state
//   index.json                    tensor -> pieces (file, element range) -> and every file's CRC
//   config.json                   the model config (for `qwen3vl checkpoint export`)
//   state.json                    step, layout, CRC of index.json; written last (by rank 0)
//
// What a rank writes: the flat-buffer ranges it owns (its ZeRO-3 chunk of every unit, or the
// whole buffer when replicated), split between the ranks that hold the same ranges (replicas),
// so the writing is spread over every rank. Each piece's CRC-32C sits in its file's header
// (metadata "qwen3vl_pieces"), so a reader checks exactly the pieces it reads.
//
// The folder is published as before: every rank writes and fsyncs its files into one temporary
// folder, the ranks agree that all of them succeeded, then rank 0 writes index.json and
// state.json and renames the folder into place. A kill or an error at any point leaves no listed
// checkpoint. Loading reshards: a rank reads, from the mapped files, only the pieces that
// overlap the ranges it owns in the current layout, whatever layout wrote them.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/device.h"
#include "dist/flat_range.h"
#include "io/safetensors.h"
#include "model/params.h"
#include "train/checkpoint_index.h"

namespace qv::train {

using dist::FlatRange;

// One rank's share of the state as it is saved: flat-buffer ranges (ascending, disjoint) and,
// per range, where its parameter values and (unless model-only) AdamW moments are in memory.
struct ShareView {
  std::vector<FlatRange> ranges;
  std::vector<const float*> values, exp_avg, exp_avg_sq;  // per range; moments empty: model only
  // Where the values and the moments are (a GPU's memory is written through host staging).
  Device values_device = kCpuDevice, moments_device = kCpuDevice;
  bool has_optimizer() const { return !exp_avg.empty(); }
  int64_t elements() const;
};

// The ranges a rank writes: each owned range cut into `replicas` near-equal parts, part
// `replica` (0 <= replica < replicas). Ranks holding the same ranges so write disjoint parts.
std::vector<FlatRange> ranges_to_write(const std::vector<FlatRange>& owned, int64_t replicas,
                                       int64_t replica);

// A view of `write` (inside `owned`) with no copy: values in the store, moments in AdamW's
// arrays on `moments_device` that hold `owned` range after range (null moments: model only).
ShareView view_share(const model::ParamStore& store, const std::vector<FlatRange>& write,
                     const std::vector<FlatRange>& owned, const float* exp_avg,
                     const float* exp_avg_sq, Device moments_device = kCpuDevice);

// A copy of a share in host memory (the asynchronous save's snapshot): 4 bytes per element for
// the values and 8 more with the moments, in `storage`, which is grown as needed and can be kept
// from one save to the next (no page faults after the first). The view points into it. From a
// GPU's memory the copies are device-to-host copies.
ShareView snapshot_share(const ShareView& share, std::vector<float>& storage);

// What one rank wrote: its files and their CRC-32C, or the error that stopped it.
struct RankFiles {
  std::map<std::string, uint32_t> crc;  // file name -> CRC-32C
  std::string error;
};

// Writes one rank's files into `dir` (the temporary folder): its pieces and its data state.
// Never throws: an error is returned. Safe to run on a background thread. A share in a GPU's
// memory is read (for the CRCs and the files) through a bounded host staging buffer.
RankFiles write_rank_files(const std::string& dir, int rank,
                           const std::vector<model::ParamEntry>& entries, const ShareView& share,
                           const nlohmann::json& data_state);

// write_safetensors for F32 tensors whose data is in the memory of `device`: on the CPU that
// function itself; elsewhere each tensor is copied to the host chunk by chunk (at most
// kernels::kStagingBytes held) on its way into the file. The same bytes either way.
uint32_t write_safetensors_from(const std::string& path, std::vector<io::TensorSource> tensors,
                                const std::map<std::string, std::string>& metadata, Device device);
// CRC-32C of n floats at p in the memory of `device` (staged the same way).
uint32_t crc32c_from(const float* p, int64_t n, Device device);

// index.json: every tensor's pieces (which rank's file, which elements), the layout, the CRC of
// every file the ranks wrote, and AdamW's per-entry step counts (empty: model only).
nlohmann::json build_index(const model::ParamStore& store,
                           const std::vector<std::vector<FlatRange>>& written_by_rank,
                           int64_t replicate, int64_t shard, bool has_optimizer,
                           const std::vector<int64_t>& optimizer_steps,
                           const std::map<std::string, uint32_t>& file_crcs);

// Reads a v2 checkpoint into this rank's share: parameter values inside `param_ranges` and
// AdamW moments over `owned` (packed range after range; null: not read). Every piece read has
// its CRC checked; a missing file is an error naming it.
struct ShardedLoad {
  std::vector<FlatRange> param_ranges;
  std::vector<FlatRange> owned;
  float* exp_avg = nullptr;
  float* exp_avg_sq = nullptr;
  Device moments_device = kCpuDevice;     // where exp_avg / exp_avg_sq are
  std::vector<int64_t>* steps = nullptr;  // per entry
};
void load_sharded(const std::string& path, const nlohmann::json& index, model::ParamStore& store,
                  const ShardedLoad& load);

}  // namespace qv::train
