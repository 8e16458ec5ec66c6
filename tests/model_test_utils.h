// Helpers for model tests: a tiny random model config and synthetic inputs.
#pragma once
#include <random>

#include "model/config.h"
#include "model/inputs.h"
#include "model/qwen3vl.h"

namespace qv::testing {

inline model::ModelConfig tiny_config() {
  model::ModelConfig c;
  c.text.vocab_size = 128;
  c.text.hidden_size = 32;
  c.text.intermediate_size = 48;
  c.text.num_layers = 2;
  c.text.num_heads = 4;
  c.text.num_kv_heads = 2;
  c.text.head_dim = 8;
  c.text.rope_theta = 10000;
  c.text.mrope_section = {2, 1, 1};
  c.text.initializer_range = 0.1;
  c.vision.depth = 2;
  c.vision.hidden_size = 16;
  c.vision.intermediate_size = 24;
  c.vision.num_heads = 2;
  c.vision.patch_size = 2;
  c.vision.temporal_patch_size = 2;
  c.vision.spatial_merge_size = 2;
  c.vision.out_hidden_size = 32;
  c.vision.num_position_embeddings = 16;
  c.vision.deepstack_visual_indexes = {0, 1};
  c.vision.initializer_range = 0.1;
  c.image_token_id = 120;
  c.video_token_id = 121;
  c.vision_start_token_id = 122;
  c.vision_end_token_id = 123;
  return c;
}

// The debug flavor cut down to 2 small layers, keeping the real vocabulary and the 14-pixel
// patch, so cc12m captions tokenize and its images fit (tests that run the CLI on real data).
inline model::ModelConfig small_real_vocab_config() {
  model::ModelConfig c = model::ModelConfig::flavor("debugmodel");
  c.text.hidden_size = 32;
  c.text.num_layers = 2;
  c.text.num_heads = 2;
  c.text.num_kv_heads = 1;
  c.text.head_dim = 16;
  c.text.intermediate_size = 64;
  c.text.mrope_section = {2, 3, 3};
  c.vision.depth = 2;
  c.vision.hidden_size = 16;
  c.vision.num_heads = 2;
  c.vision.intermediate_size = 32;
  c.vision.out_hidden_size = 32;
  c.vision.deepstack_visual_indexes = {0};
  return c;
}

inline Tensor random_pixels(int64_t patches, int64_t dim, uint64_t seed) {
  Tensor t(DType::kF32, {patches, dim});
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = n(rng);
  return t;
}

// A <|vision_start|> <|image_pad|> x merged <|vision_end|> block.
inline void append_vision(std::vector<int64_t>& ids, const model::ModelConfig& c, int64_t merged,
                          bool video = false) {
  ids.push_back(c.vision_start_token_id);
  for (int64_t i = 0; i < merged; ++i) ids.push_back(video ? c.video_token_id : c.image_token_id);
  ids.push_back(c.vision_end_token_id);
}

}  // namespace qv::testing
