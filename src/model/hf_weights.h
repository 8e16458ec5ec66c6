// Hugging Face checkpoints in and out: config.json + model.safetensors (or sharded with
// model.safetensors.index.json), F32 / BF16 / F16 tensors with HF names.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "model/params.h"

namespace qv::model {

// Loads every parameter of `store` from the checkpoint folder. Missing, unexpected or mis-shaped
// tensors are errors naming the tensor (and both shapes). A tied model accepts (and ignores) an
// lm_head.weight only if it equals embed_tokens.
void load_hf_weights(const std::string& dir, ParamStore& store);

// Writes config.json and model.safetensors (sharded above max_shard_bytes, with an index) in
// `dtype` (F32, BF16 or F16), plus copies of `extra_files` ({name in the folder, source path},
// e.g. the tokenizer) and `extra_texts` ({name in the folder, content}). The folder is
// written under a temporary name and renamed into place, so `dir` is never half-written; an
// existing `dir` is replaced.
void save_hf_checkpoint(const std::string& dir, const ModelConfig& config, const ParamStore& store,
                        DType dtype = DType::kF32, int64_t max_shard_bytes = 4ll << 30,
                        const std::vector<std::pair<std::string, std::string>>& extra_files = {},
                        const std::vector<std::pair<std::string, std::string>>& extra_texts = {});

// How an export splits its tensors into files: in the order given, a new file whenever the next
// tensor would take the current one past max_bytes. One file is model.safetensors; more are
// model-0000i-of-0000n.safetensors, listed in model.safetensors.index.json. save_hf_checkpoint
// and the training job's streamed export (train/streamed_export.h) both split the store's
// entries in order this way, so they give the same files.
struct HfWeightsFile {
  std::string name;
  std::vector<size_t> tensors;  // indices into the list given
};
std::vector<HfWeightsFile> split_hf_weights(const std::vector<int64_t>& tensor_bytes,
                                            int64_t max_bytes);
// model.safetensors.index.json for `files` (only written when there are several).
std::string hf_weights_index_json(const std::vector<HfWeightsFile>& files,
                                  const std::vector<std::string>& names,
                                  const std::vector<int64_t>& tensor_bytes);

}  // namespace qv::model
