// The Hugging Face export of a running job's model, streamed to rank 0 instead of gathered onto
// it. Rank 0 writes the files, byte for byte what model::save_hf_checkpoint writes for the whole
// model; the values of the files' tensors come to it in windows of at most `window` floats, in
// file order, each element sent by the one rank that writes it in a checkpoint (one
// all-to-all per window). So no rank ever holds more of the model than its own share plus
// the windows: rank 0 three (its own part, what it receives, and the same values in file
// order), every other rank one (what it sends).
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "dist/communicator.h"
#include "dist/flat_range.h"
#include "model/config.h"
#include "model/params.h"

namespace qv::train {

struct StreamedExport {
  std::string dir;  // the export folder (replaced when it exists)
  DType dtype = DType::kF32;
  int64_t max_shard_bytes = 4ll << 30;
  // Files written next to the weights ({name, content}); called on rank 0 only.
  std::function<std::vector<std::pair<std::string, std::string>>()> extra_texts;
  int64_t window = int64_t{8} << 20;  // floats per exchange (32 MiB)
  // The values a rank sends for flat elements [begin, begin + n) of its ranges, into host
  // memory; unset: the store's own (ParamStore::read_value). A LoRA export passes the merged
  // weights here (model::LoraMergedValues).
  std::function<void(int64_t begin, int64_t n, float* out)> values;
  // Parameters left out of the files (unset: none); their elements are never sent. A merged
  // LoRA export leaves out the adapters.
  std::function<bool(const model::ParamEntry&)> skip;
};

// What one export moved, for the log.
struct StreamedExportStats {
  int64_t windows = 0;
  int64_t bytes_written = 0;  // tensor bytes in the files (rank 0)
};

// Collective: every rank calls it with the ranges of the flat parameter buffer it sends, which
// must be disjoint between ranks and together cover the buffer (the ranges each rank writes in
// a checkpoint: train::ranges_to_write). An error on rank 0 (a full disk) does not stop the
// exchange; at the end every rank throws (rank 0 with its error, the others naming rank 0). The
// folder appears complete or not at all.
StreamedExportStats export_hf_streamed(dist::Communicator& comm, const model::ParamStore& store,
                                       const std::vector<dist::FlatRange>& mine,
                                       const model::ModelConfig& config,
                                       const StreamedExport& options);

}  // namespace qv::train
