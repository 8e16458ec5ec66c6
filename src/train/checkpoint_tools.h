// What `qwen3vl checkpoint inspect|export` do, as library functions: a summary of a training
// checkpoint with every file's CRC checked, and a Hugging Face folder assembled from a sharded
// checkpoint's pieces while it is written (no tensor is ever held whole in memory).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace qv::train {

struct CheckpointFileReport {
  std::string name;
  int64_t bytes = -1;  // -1: missing
  bool crc_ok = false;
};

struct CheckpointReport {
  std::string path, format;
  int64_t step = 0;
  int64_t world = 1, replicate = 1, shard = 1;
  bool has_optimizer = false;
  int64_t tensors = 0, parameters = 0;
  std::vector<CheckpointFileReport> files;
  bool ok() const;  // every file present with its CRC
  std::string describe() const;
};

// Reads state.json and the index, and checks every file's CRC-32C (v1 and v2).
CheckpointReport inspect_checkpoint(const std::string& path);

// Writes a v2 checkpoint's model as a Hugging Face folder (config.json, safetensors shards of at
// most max_shard_bytes with model.safetensors.index.json when more than one), in F32, BF16 or
// F16; each piece's CRC is checked as it is read. The folder appears complete or not at all.
void export_checkpoint(const std::string& path, const std::string& out, DType dtype,
                       int64_t max_shard_bytes = 4ll << 30);

}  // namespace qv::train
