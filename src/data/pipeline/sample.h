// A training sample after tokenization and image preprocessing, and a collated batch.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "data/image/vision_item.h"

namespace qv::data {

// Where a sample's raw data starts in the rank's file list (the reader's state just before it),
// so a resumed loader can re-read that one sample instead of replaying the epoch. `check` is a
// CRC-32C of the sample's origin ("shard:key", "file:line"): a re-read that finds another sample
// there (the data changed) is an error, not silently different data.
struct SourcePos {
  int64_t file_index = 0, offset = 0;
  int64_t member_index = 0;  // tar members before it (WebDataset); 0 for OBELICS
  int64_t sample_index = 0;  // samples before it in the shard (WebDataset), lines (OBELICS)
  uint32_t check = 0;
};

// A length a sample may be cut to, and the vision items wholly before it.
struct CutPoint {
  int64_t length = 0, vision_items = 0;
};

struct Sample {
  std::vector<int32_t> ids;
  std::vector<int32_t> labels;     // -100 where no loss is taken
  std::vector<VisionItem> vision;  // in placeholder order
  std::string origin;              // "shard:key" or "file:line", for messages
  SourcePos source;                // set by the loader
  // Chat samples: the only places it may be cut (after each assistant turn). Empty: anywhere
  // outside a vision block.
  std::vector<CutPoint> cut_points;
  int64_t length() const { return static_cast<int64_t>(ids.size()); }
};

// Rows of seq_len tokens, each holding one or more documents; all images concatenated.
struct Batch {
  int64_t rows = 0, seq = 0;
  std::vector<int64_t> ids, labels, attention_mask, document_ids;  // [rows * seq]
  int64_t patch_dim = 0;
  std::vector<float> image_pixels, video_pixels;  // [patches, patch_dim]
  std::vector<VisionGrid> image_grids, video_grids;
  std::vector<std::string> origins;  // of every document, row-major
};

// Special token ids the sample builders and packer need (looked up by content in the tokenizer).
struct TokenIds {
  int32_t image_pad = -1, video_pad = -1, vision_start = -1, vision_end = -1, endoftext = -1;
};

constexpr int32_t kIgnore = -100;

}  // namespace qv::data
