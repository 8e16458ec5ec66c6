// Parameters live in one flat float buffer (and gradients in a second, same layout), with named
// views carrying Hugging Face names and shapes. One buffer makes the optimizer one loop and
// gradient communication one call per bucket.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace qv::model {

// A parameter's place in the flat buffers.
struct ParamRef {
  int64_t offset = -1;
  int64_t numel = 0;
  bool valid() const { return offset >= 0; }
};

struct ParamEntry {
  std::string name;  // Hugging Face name, e.g. model.language_model.layers.0.mlp.up_proj.weight
  Shape shape;
  ParamRef ref;
  bool is_vision = false;  // under model.visual.
  bool is_matrix = false;  // 2-D+ weight (initialised from N(0, std)); else norm weight / bias
  bool is_norm_weight = false;
};

class ParamStore {
 public:
  ParamRef add(const std::string& name, Shape shape, bool is_norm_weight = false);
  void allocate();  // sizes values() and grads() once the layout is complete
  // Grows both buffers (zeros past total()) to a multiple of m, so they split evenly into shards.
  void pad_to_multiple(int64_t m);
  int64_t padded_total() const { return static_cast<int64_t>(values_.size()); }

  float* value(ParamRef r) { return values_.data() + r.offset; }
  const float* value(ParamRef r) const { return values_.data() + r.offset; }
  // Gradient slot, or nullptr when the parameter is frozen (its gradient is not computed).
  float* grad(ParamRef r) { return frozen_[index_of(r)] ? nullptr : grads_.data() + r.offset; }

  std::vector<float>& values() { return values_; }
  const std::vector<float>& values() const { return values_; }
  std::vector<float>& grads() { return grads_; }
  const std::vector<ParamEntry>& entries() const { return entries_; }
  const ParamEntry* find(const std::string& name) const;
  int64_t total() const { return total_; }

  void zero_grads();
  // Freezes every parameter whose name starts with the prefix; returns how many were frozen.
  int set_frozen_prefix(const std::string& prefix, bool frozen);
  bool frozen(size_t entry_index) const { return frozen_[entry_index]; }

 private:
  size_t index_of(ParamRef r) const;
  std::vector<ParamEntry> entries_;
  std::map<std::string, size_t> by_name_;
  std::map<int64_t, size_t> by_offset_;
  std::vector<uint8_t> frozen_;
  std::vector<float> values_, grads_;
  int64_t total_ = 0;
};

// ---- the model's parameter layout, with HF names ----

struct TextLayerParams {
  ParamRef input_norm, q_proj, k_proj, v_proj, o_proj, q_norm, k_norm, post_norm, gate, up, down;
};

struct TextParams {
  ParamRef embed;
  std::vector<TextLayerParams> layers;
  ParamRef norm;
  ParamRef lm_head;  // equals embed when tie_word_embeddings
};

struct VisionBlockParams {
  ParamRef norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b, norm2_w, norm2_b, fc1_w, fc1_b, fc2_w,
      fc2_b;
};

struct MergerParams {
  ParamRef norm_w, norm_b, fc1_w, fc1_b, fc2_w, fc2_b;
};

struct VisionParams {
  ParamRef patch_w, patch_b, pos_embed;
  std::vector<VisionBlockParams> blocks;
  MergerParams merger;
  std::vector<MergerParams> deepstack;
};

struct ModelParams {
  TextParams text;
  VisionParams vision;
};

// Registers every parameter of the model in `store` (call store.allocate() afterwards).
ModelParams layout_params(const ModelConfig& config, ParamStore& store);

// HF-style initialisation: matrices ~ N(0, initializer_range) (vision range for model.visual.*),
// biases 0, norm weights 1. Deterministic for a seed.
void init_params(const ModelConfig& config, ParamStore& store, uint64_t seed);

}  // namespace qv::model
