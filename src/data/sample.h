// A training sample after tokenization and image preprocessing, and a collated batch.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qv::data {

struct VisionGrid {
  int64_t t = 1, h = 0, w = 0;  // in patches
  int64_t patches() const { return t * h * w; }
};

struct VisionItem {
  std::vector<float> pixels;  // [grid.patches(), patch_dim], HF processor layout
  VisionGrid grid;
  bool is_video = false;
};

struct Sample {
  std::vector<int32_t> ids;
  std::vector<int32_t> labels;     // -100 where no loss is taken
  std::vector<VisionItem> vision;  // in placeholder order
  std::string origin;              // "shard:key" or "file:line", for messages
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
