// Parameters live in one flat float buffer (and gradients in a second, same layout), with named
// views carrying Hugging Face names and shapes. One buffer makes the optimizer one loop and
// gradient communication one call per bucket. Parameters are grouped into units (a decoder
// layer, a vision block, the embedding, ...): contiguous, aligned ranges that sharded training
// gathers, frees and reduces as a whole.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/bf16.h"
#include "core/device.h"
#include "core/page_buffer.h"
#include "core/tensor.h"
#include "kernels/linear.h"
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

// A contiguous range [begin, end) of the flat buffers holding whole parameters; begin and end
// are multiples of the store's unit alignment.
struct ParamUnit {
  std::string name;
  int64_t begin = 0, end = 0;
  std::vector<size_t> entries;  // indices into ParamStore::entries()
  // > 0: an expert unit, its one entry stacking this many experts along dim 0 (expert
  // parallelism splits it by expert; dist/sharded_data_parallel.cpp).
  int64_t experts = 0;
};

class ParamStore {
 public:
  // unit_align: units start and end at multiples of this many floats (a multiple of 16).
  // device: where values, gradients and bf16 copies live (their pages come from that device's
  // Allocator); by default the calling thread's current device.
  explicit ParamStore(int64_t unit_align = 16, Device device = current_device());
  Device device() const { return device_; }
  // Starts a new unit; parameters added next belong to it. Returns its index. experts > 0:
  // an expert unit (ParamUnit::experts), which must get exactly one parameter.
  int begin_unit(const std::string& name, int64_t experts = 0);
  ParamRef add(const std::string& name, Shape shape, bool is_norm_weight = false);
  void allocate();  // closes the last unit and maps values() and grads() (zeros)

  float* value(ParamRef r) { return values_.data() + r.offset; }
  const float* value(ParamRef r) const { return values_.data() + r.offset; }
  // Gradient slot, or nullptr when the parameter is frozen (its gradient is not computed).
  float* grad(ParamRef r) { return frozen_[index_of(r)] ? nullptr : grads_.data() + r.offset; }

  // bf16 copies of the parameters that bf16 matrix products read (mixed precision), in a buffer
  // with the layout of values(); off until enable_bf16_copies(). Only the chosen entries'
  // pages are ever written, so the others cost no memory. Whoever changes values() refreshes
  // the copies of what it changed: the optimizer as it updates, loaders and sharded gathers
  // through sync_bf16().
  using EntryFilter = std::function<bool(const ParamEntry&)>;
  void enable_bf16_copies(const EntryFilter& wanted);  // allocates and fills the copies
  bool has_bf16_copies() const { return !values_bf16_.empty(); }
  bool has_bf16_copy(size_t entry_index) const {
    return !bf16_entry_.empty() && bf16_entry_[entry_index];
  }
  const std::vector<uint8_t>& bf16_entries() const { return bf16_entry_; }  // per entry
  // Entries whose float values no forward or backward reads after a whole-unit gather while the
  // copies are on (only their bf16 copy is a matrix operand; a tied embedding's float rows are
  // asked for separately, UnitHooks::gather_rows): sharded training gathers these as bf16 alone.
  // The model marks them (it knows its readers); every other entry, copy or not, is also read
  // in float.
  void set_bf16_only(const EntryFilter& only);
  bool bf16_only(size_t entry_index) const {
    return !bf16_only_.empty() && bf16_only_[entry_index];
  }
  const bf16* value_bf16(ParamRef r) const {
    return has_bf16_copy(index_of(r)) ? values_bf16_.data() + r.offset : nullptr;
  }
  PageArray<bf16>& values_bf16() { return values_bf16_; }
  // Refreshes the copies inside flat elements [begin, end); no-op when off.
  void sync_bf16(int64_t begin, int64_t end);
  void sync_bf16() { sync_bf16(0, total_); }
  // Host <-> store copies of one parameter's values, whichever device the store is on (host
  // code never touches the store's memory directly when it is on a GPU).
  void write_value(ParamRef r, const float* host, int64_t n);
  void read_value(ParamRef r, float* host, int64_t n) const;
  // The parameter as a matrix operand: its values and, when enabled, its bf16 copy.
  kernels::Weight weight(ParamRef r) const { return {value(r), value_bf16(r)}; }

  PageBuffer& values() { return values_; }
  const PageBuffer& values() const { return values_; }
  PageBuffer& grads() { return grads_; }
  const PageBuffer& grads() const { return grads_; }
  const std::vector<ParamEntry>& entries() const { return entries_; }
  const std::vector<ParamUnit>& units() const { return units_; }
  int64_t unit_align() const { return unit_align_; }
  const ParamEntry* find(const std::string& name) const;
  int64_t total() const { return total_; }  // floats in each buffer, padding included
  // Copies values and frozen flags of every parameter of `other` by name (layouts may differ).
  void copy_from(const ParamStore& other);

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
  std::vector<ParamUnit> units_;
  PageBuffer values_, grads_;
  PageArray<bf16> values_bf16_;
  std::vector<uint8_t> bf16_entry_;  // per entry: has a bf16 copy
  std::vector<uint8_t> bf16_only_;   // per entry: has a copy, float value unread (set_bf16_only)
  int64_t unit_align_ = 16;
  int64_t total_ = 0;
  Device device_ = kCpuDevice;
};

// ---- the model's parameter layout, with HF names ----

struct TextLayerParams {
  ParamRef input_norm, q_proj, k_proj, v_proj, o_proj, q_norm, k_norm, post_norm;
  ParamRef gate, up, down;  // dense MLP (invalid in a sparse layer)
  // Sparse MoE block: router mlp.gate.weight [E, H], fused experts mlp.experts.gate_up_proj
  // [E, H, 2I] (gate columns first) and mlp.experts.down_proj [E, I, H].
  ParamRef router, experts_gate_up, experts_down;
  bool sparse() const { return router.valid(); }
};

// The two expert units of a sparse layer (each expert tensor in a unit of its own, after the
// layer's unit, so expert parallelism can split it by expert); -1 in a dense layer.
struct ExpertUnits {
  int gate_up = -1, down = -1;
  bool valid() const { return gate_up >= 0; }
};

// Unit indices (ParamStore::units()) sit next to the parameters they group.
struct TextParams {
  int embed_unit = -1, norm_unit = -1, lm_head_unit = -1;  // lm_head_unit = embed_unit when tied
  std::vector<int> layer_units;
  std::vector<ExpertUnits> expert_units;  // per layer
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
  int stem_unit = -1, merger_unit = -1;  // stem: patch embedding + position table
  std::vector<int> block_units, deepstack_units;
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

enum class InitScheme {
  kHf,          // matrices ~ N(0, initializer_range) (vision range for model.visual.*)
  kTorchtitan,  // torchtitan's qwen3_vl init_weights: truncated normals, depth-scaled (params.cpp)
};

// Initialisation from scratch: the scheme's matrices, biases 0, norm weights 1. Deterministic
// for a seed. kTorchtitan refuses a parameter it has no rule for, naming it.
void init_params(const ModelConfig& config, ParamStore& store, uint64_t seed,
                 InitScheme scheme = InitScheme::kHf);
// "hf" | "torchtitan"; an error names any other value.
InitScheme parse_init_scheme(const std::string& name);

}  // namespace qv::model
