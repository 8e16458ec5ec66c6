#include "model/params.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>

#include "core/error.h"
#include "kernels/device.h"
#include "kernels/gemm.h"

namespace qv::model {

ParamStore::ParamStore(int64_t unit_align, Device device)
    : unit_align_(unit_align), device_(device) {
  QV_CHECK(unit_align > 0 && unit_align % 16 == 0, "unit alignment ", unit_align,
           " is not a positive multiple of 16");
}

int ParamStore::begin_unit(const std::string& name, int64_t experts) {
  QV_CHECK(values_.size() == 0, "unit '", name, "' started after allocate()");
  total_ = (total_ + unit_align_ - 1) / unit_align_ * unit_align_;
  if (!units_.empty()) units_.back().end = total_;
  units_.push_back({name, total_, total_, {}, experts});
  return static_cast<int>(units_.size()) - 1;
}

ParamRef ParamStore::add(const std::string& name, Shape shape, bool is_norm_weight) {
  QV_CHECK(!by_name_.count(name), "parameter '", name, "' registered twice");
  QV_CHECK(values_.size() == 0, "parameter '", name, "' added after allocate()");
  if (units_.empty()) begin_unit("");
  QV_CHECK(units_.back().experts == 0 || units_.back().entries.empty(), "expert unit '",
           units_.back().name, "' holds one parameter; '", name, "' would be its second");
  ParamEntry e;
  e.name = name;
  e.shape = std::move(shape);
  e.ref = {total_, qv::numel(e.shape)};
  e.is_vision = name.rfind("model.visual.", 0) == 0;
  e.is_matrix = e.shape.size() >= 2;
  e.is_norm_weight = is_norm_weight;
  // Keep every parameter 16-float aligned so vector loads and shard boundaries stay tidy.
  total_ += (e.ref.numel + 15) / 16 * 16;
  by_name_[name] = entries_.size();
  by_offset_[e.ref.offset] = entries_.size();
  units_.back().entries.push_back(entries_.size());
  entries_.push_back(e);
  frozen_.push_back(0);
  return e.ref;
}

void ParamStore::allocate() {
  total_ = (total_ + unit_align_ - 1) / unit_align_ * unit_align_;
  if (!units_.empty()) units_.back().end = total_;
  values_.allocate(total_, device_);
  grads_.allocate(total_, device_);
}

void ParamStore::enable_bf16_copies(const EntryFilter& wanted) {
  QV_CHECK(values_.size() > 0, "enable_bf16_copies() before allocate()");
  if (values_bf16_.empty()) values_bf16_.allocate(total_, device_);
  bf16_entry_.clear();
  for (const ParamEntry& e : entries_) bf16_entry_.push_back(wanted(e));
  bf16_only_.clear();
  sync_bf16();
}

void ParamStore::set_bf16_only(const EntryFilter& only) {
  QV_CHECK(has_bf16_copies(), "set_bf16_only() before enable_bf16_copies()");
  bf16_only_.assign(entries_.size(), 0);
  for (size_t i = 0; i < entries_.size(); ++i) bf16_only_[i] = bf16_entry_[i] && only(entries_[i]);
}

void ParamStore::sync_bf16(int64_t begin, int64_t end) {
  if (values_bf16_.empty()) return;
  QV_CHECK(0 <= begin && begin <= end && end <= total_, "sync_bf16: bad range");
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (!bf16_entry_[i]) continue;
    const int64_t lo = std::max(begin, entries_[i].ref.offset);
    const int64_t hi = std::min(end, entries_[i].ref.offset + entries_[i].ref.numel);
    if (hi <= lo) continue;
    if (device_.is_cpu()) {
      to_bf16(values_.data() + lo, values_bf16_.data() + lo, hi - lo);
      continue;
    }
    // Elsewhere an op on the store's device (ZeRO-3 calls this for every unit it gathers).
    const DeviceScope on_store(device_);
    kernels::convert_to_bf16(values_.data() + lo, values_bf16_.data() + lo, hi - lo);
  }
}

void ParamStore::write_value(ParamRef r, const float* host, int64_t n) {
  QV_CHECK(n == r.numel, "write_value: ", n, " values for a parameter of ", r.numel);
  kernels::copy_bytes(value(r), device_, host, kCpuDevice, static_cast<size_t>(n) * sizeof(float));
}

void ParamStore::read_value(ParamRef r, float* host, int64_t n) const {
  QV_CHECK(n == r.numel, "read_value: ", n, " values for a parameter of ", r.numel);
  kernels::copy_bytes(host, kCpuDevice, value(r), device_, static_cast<size_t>(n) * sizeof(float));
}

void ParamStore::copy_from(const ParamStore& other) {
  for (size_t i = 0; i < other.entries_.size(); ++i) {
    const ParamEntry& src = other.entries_[i];
    auto it = by_name_.find(src.name);
    QV_CHECK(it != by_name_.end() && entries_[it->second].ref.numel == src.ref.numel,
             "copy_from: parameter '", src.name, "' missing or of another size");
    kernels::copy_bytes(value(entries_[it->second].ref), device_, other.value(src.ref),
                        other.device_, static_cast<size_t>(src.ref.numel) * sizeof(float));
    frozen_[it->second] = other.frozen_[i];
  }
  sync_bf16();
}

const ParamEntry* ParamStore::find(const std::string& name) const {
  auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &entries_[it->second];
}

size_t ParamStore::index_of(ParamRef r) const {
  auto it = by_offset_.find(r.offset);
  QV_CHECK(it != by_offset_.end(), "no parameter at offset ", r.offset);
  return it->second;
}

void ParamStore::zero_grads() {
  grads_.fill_zero();
}

int ParamStore::set_frozen_prefix(const std::string& prefix, bool frozen) {
  int n = 0;
  for (size_t i = 0; i < entries_.size(); ++i)
    if (entries_[i].name.rfind(prefix, 0) == 0) {
      frozen_[i] = frozen;
      ++n;
    }
  return n;
}

namespace {

MergerParams add_merger(ParamStore& s, const std::string& p, const VisionConfig& v,
                        bool postshuffle) {
  const int64_t M = v.merged_dim();
  const int64_t norm_dim = postshuffle ? M : v.hidden_size;
  MergerParams m;
  m.norm_w = s.add(p + ".norm.weight", {norm_dim}, true);
  m.norm_b = s.add(p + ".norm.bias", {norm_dim});
  m.fc1_w = s.add(p + ".linear_fc1.weight", {M, M});
  m.fc1_b = s.add(p + ".linear_fc1.bias", {M});
  m.fc2_w = s.add(p + ".linear_fc2.weight", {v.out_hidden_size, M});
  m.fc2_b = s.add(p + ".linear_fc2.bias", {v.out_hidden_size});
  return m;
}

// The layer's feed-forward: the dense SwiGLU MLP or the sparse MoE block (HF names).
void add_mlp(ParamStore& s, const std::string& l, const std::string& unit, const TextConfig& t,
             bool sparse, TextLayerParams& L, ExpertUnits& units) {
  const int64_t H = t.hidden_size;
  if (!sparse) {
    L.gate = s.add(l + "mlp.gate_proj.weight", {t.intermediate_size, H});
    L.up = s.add(l + "mlp.up_proj.weight", {t.intermediate_size, H});
    L.down = s.add(l + "mlp.down_proj.weight", {H, t.intermediate_size});
    return;
  }
  const int64_t E = t.num_experts, I = t.moe_intermediate_size;
  L.router = s.add(l + "mlp.gate.weight", {E, H});
  units.gate_up = s.begin_unit(unit + ".experts.gate_up", E);
  L.experts_gate_up = s.add(l + "mlp.experts.gate_up_proj", {E, H, 2 * I});
  units.down = s.begin_unit(unit + ".experts.down", E);
  L.experts_down = s.add(l + "mlp.experts.down_proj", {E, I, H});
}

}  // namespace

ModelParams layout_params(const ModelConfig& config, ParamStore& s) {
  const TextConfig& t = config.text;
  const VisionConfig& v = config.vision;
  ModelParams p;
  // Text model.
  const std::string lm = "model.language_model.";
  p.text.embed_unit = s.begin_unit("embed_tokens");
  p.text.embed = s.add(lm + "embed_tokens.weight", {t.vocab_size, t.hidden_size});
  const int64_t H = t.hidden_size, q = t.num_heads * t.head_dim, kv = t.num_kv_heads * t.head_dim;
  for (int64_t i = 0; i < t.num_layers; ++i) {
    const std::string l = lm + "layers." + std::to_string(i) + ".";
    const std::string unit = "layers." + std::to_string(i);
    p.text.layer_units.push_back(s.begin_unit(unit));
    TextLayerParams L;
    L.input_norm = s.add(l + "input_layernorm.weight", {H}, true);
    L.q_proj = s.add(l + "self_attn.q_proj.weight", {q, H});
    L.k_proj = s.add(l + "self_attn.k_proj.weight", {kv, H});
    L.v_proj = s.add(l + "self_attn.v_proj.weight", {kv, H});
    L.o_proj = s.add(l + "self_attn.o_proj.weight", {H, q});
    L.q_norm = s.add(l + "self_attn.q_norm.weight", {t.head_dim}, true);
    L.k_norm = s.add(l + "self_attn.k_norm.weight", {t.head_dim}, true);
    L.post_norm = s.add(l + "post_attention_layernorm.weight", {H}, true);
    ExpertUnits eu;
    add_mlp(s, l, unit, t, t.is_sparse_layer(i), L, eu);
    p.text.layers.push_back(L);
    p.text.expert_units.push_back(eu);
  }
  p.text.norm_unit = s.begin_unit("norm");
  p.text.norm = s.add(lm + "norm.weight", {H}, true);
  if (config.tie_word_embeddings) {
    p.text.lm_head_unit = p.text.embed_unit;
    p.text.lm_head = p.text.embed;
  } else {
    p.text.lm_head_unit = s.begin_unit("lm_head");
    p.text.lm_head = s.add("lm_head.weight", {t.vocab_size, H});
  }
  // Vision tower.
  const std::string vp = "model.visual.";
  const int64_t D = v.hidden_size;
  p.vision.stem_unit = s.begin_unit("visual.stem");
  p.vision.patch_w = s.add(vp + "patch_embed.proj.weight",
                           {D, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size});
  p.vision.patch_b = s.add(vp + "patch_embed.proj.bias", {D});
  p.vision.pos_embed = s.add(vp + "pos_embed.weight", {v.num_position_embeddings, D});
  for (int64_t i = 0; i < v.depth; ++i) {
    const std::string b = vp + "blocks." + std::to_string(i) + ".";
    p.vision.block_units.push_back(s.begin_unit("visual.blocks." + std::to_string(i)));
    VisionBlockParams B;
    B.norm1_w = s.add(b + "norm1.weight", {D}, true);
    B.norm1_b = s.add(b + "norm1.bias", {D});
    B.qkv_w = s.add(b + "attn.qkv.weight", {3 * D, D});
    B.qkv_b = s.add(b + "attn.qkv.bias", {3 * D});
    B.proj_w = s.add(b + "attn.proj.weight", {D, D});
    B.proj_b = s.add(b + "attn.proj.bias", {D});
    B.norm2_w = s.add(b + "norm2.weight", {D}, true);
    B.norm2_b = s.add(b + "norm2.bias", {D});
    B.fc1_w = s.add(b + "mlp.linear_fc1.weight", {v.intermediate_size, D});
    B.fc1_b = s.add(b + "mlp.linear_fc1.bias", {v.intermediate_size});
    B.fc2_w = s.add(b + "mlp.linear_fc2.weight", {D, v.intermediate_size});
    B.fc2_b = s.add(b + "mlp.linear_fc2.bias", {D});
    p.vision.blocks.push_back(B);
  }
  p.vision.merger_unit = s.begin_unit("visual.merger");
  p.vision.merger = add_merger(s, vp + "merger", v, false);
  for (size_t k = 0; k < v.deepstack_visual_indexes.size(); ++k) {
    p.vision.deepstack_units.push_back(
        s.begin_unit("visual.deepstack_merger_list." + std::to_string(k)));
    p.vision.deepstack.push_back(
        add_merger(s, vp + "deepstack_merger_list." + std::to_string(k), v, true));
  }
  return p;
}

namespace {

// A truncated normal: N(0, std) resampled until it lies in [lo, hi] (the distribution
// torch.nn.init.trunc_normal_ draws; its inverse-CDF sampler is another way to the same law).
struct TruncNormal {
  double std, lo, hi;
};

// torchtitan's rule for one parameter (matrices and embeddings; norms and biases are 1 / 0).
// Sources, at torchtitan 4c2285389 (the qwen3_vl experiment) and the Qwen3 model it builds on,
// torchtitan/models/qwen3/model/model.py as of 9810191bb^ (the experiment calls its
// init_weights; depth_init = True in Qwen3ModelArgs):
// - Qwen3Model.init_weights: tok_embeddings ~ N(0, 1) (nn.init.normal_, not truncated); output
//   (lm_head) ~ trunc N(0, s = dim^-0.5) on [-3s, 3s]. With tied embeddings the two are one
//   tensor and the output's rule, applied last, is what it holds.
// - Attention.init_weights: wq, wk, wv (q/k/v_proj) ~ trunc N(0, 0.02); wo (o_proj) ~ trunc
//   N(0, init_std). FeedForward.init_weights: w1 (gate_proj) ~ trunc N(0, 0.02); w2, w3
//   (down_proj, up_proj) ~ trunc N(0, init_std). TransformerBlock: init_std =
//   0.02 / sqrt(2 (layer_id + 1)). These use torchtitan.models.utils.trunc_normal_ with its
//   default bounds [-2, 2] (absolute: +-100 std at 0.02, so in effect untruncated).
// - experiments/qwen3_vl/model/vision_encoder.py, the init_weights of PatchEmbed, VisionAttention,
//   VisionMLP, PatchMerger and Qwen3VLVisionEncoder: patch_embed.proj, pos_embed, attn.qkv,
//   attn.proj, mlp.linear_fc1/2, merger and deepstack linear_fc1/2 ~ trunc N(0, 0.02) on [-2, 2]
//   (nn.init.trunc_normal_ defaults).
TruncNormal torchtitan_rule(const ModelConfig& c, const std::string& name) {
  auto ends = [&](const std::string& tail) {
    return name.size() >= tail.size() &&
           name.compare(name.size() - tail.size(), tail.size(), tail) == 0;
  };
  constexpr double kStd = 0.02, kBound = 2.0;
  if (name.rfind("model.visual.", 0) == 0) return {kStd, -kBound, kBound};
  const double out_std = 1.0 / std::sqrt(static_cast<double>(c.text.hidden_size));
  if (name == "lm_head.weight" ||
      (name == "model.language_model.embed_tokens.weight" && c.tie_word_embeddings))
    return {out_std, -3 * out_std, 3 * out_std};
  if (name == "model.language_model.embed_tokens.weight")
    return {1.0, -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity()};
  const std::string layers = "model.language_model.layers.";
  QV_CHECK(name.rfind(layers, 0) == 0, "init = \"torchtitan\": no rule for parameter ", name);
  const int64_t layer = std::stoll(name.substr(layers.size()));
  const double depth_std = kStd / std::sqrt(2.0 * static_cast<double>(layer + 1));
  if (ends(".self_attn.q_proj.weight") || ends(".self_attn.k_proj.weight") ||
      ends(".self_attn.v_proj.weight") || ends(".mlp.gate_proj.weight"))
    return {kStd, -kBound, kBound};
  if (ends(".self_attn.o_proj.weight") || ends(".mlp.up_proj.weight") ||
      ends(".mlp.down_proj.weight"))
    return {depth_std, -kBound, kBound};
  QV_CHECK(false, "init = \"torchtitan\": no rule for parameter ", name);
  return {};
}

}  // namespace

InitScheme parse_init_scheme(const std::string& name) {
  if (name == "hf") return InitScheme::kHf;
  QV_CHECK(name == "torchtitan", "model init '", name, "' is not one of: hf, torchtitan");
  return InitScheme::kTorchtitan;
}

void init_params(const ModelConfig& config, ParamStore& store, uint64_t seed, InitScheme scheme) {
  std::mt19937_64 rng(seed);
  // On a GPU each parameter is drawn into host scratch, then copied over (same values).
  const bool on_host = store.device().is_cpu();
  std::vector<float> scratch;
  for (const ParamEntry& e : store.entries()) {
    if (!on_host) scratch.resize(static_cast<size_t>(e.ref.numel));
    float* w = on_host ? store.value(e.ref) : scratch.data();
    if (e.is_norm_weight) {
      std::fill(w, w + e.ref.numel, 1.0f);
    } else if (!e.is_matrix) {
      std::fill(w, w + e.ref.numel, 0.0f);
    } else if (scheme == InitScheme::kHf) {
      const double stddev =
          e.is_vision ? config.vision.initializer_range : config.text.initializer_range;
      std::normal_distribution<float> normal(0.0f, static_cast<float>(stddev));
      for (int64_t i = 0; i < e.ref.numel; ++i) w[i] = normal(rng);
    } else {
      const TruncNormal t = torchtitan_rule(config, e.name);
      std::normal_distribution<double> normal(0.0, t.std);
      for (int64_t i = 0; i < e.ref.numel; ++i) {
        double x = normal(rng);
        while (x < t.lo || x > t.hi) x = normal(rng);
        w[i] = static_cast<float>(x);
      }
    }
    if (!on_host) store.write_value(e.ref, w, e.ref.numel);
  }
}

}  // namespace qv::model
