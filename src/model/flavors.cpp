// Named model presets and derived figures (parameter counts, FLOPs).
#include "core/error.h"
#include "model/config.h"
#include "model/flavors_moe.h"

namespace qv::model {

namespace {

struct Preset {
  const char* name;
  // text
  int64_t hidden, layers, heads, kv_heads, head_dim, ffn;
  double theta;
  bool tied;
  // vision
  int64_t v_depth, v_hidden, v_ffn, v_heads, patch, pos_embeds;
  std::vector<int64_t> deepstack;
  std::array<int64_t, 3> mrope;
};

// debugmodel, 2B and 8B follow torchtitan's Qwen3-VL flavor table; 4B and 32B are the released
// Hugging Face configs (QWEN3VL_FACTS.md section 2). 72B has no released Qwen3-VL checkpoint: it
// pairs a Qwen2.5-72B-shaped decoder (8192 x 80 layers, 64/8 heads, ffn 29568) with the 8B-class
// vision tower, as a size for planning and benchmarks.
const std::vector<Preset>& presets() {
  static const std::vector<Preset> kPresets = {
      {"debugmodel",
       256,
       4,
       4,
       2,
       64,
       512,
       1e6,
       false,
       4,
       256,
       512,
       4,
       14,
       1024,
       {1, 2, 3},
       {8, 8, 8}},
      {"2B",
       2048,
       28,
       16,
       8,
       128,
       6144,
       5e6,
       true,
       24,
       1024,
       4096,
       16,
       16,
       2304,
       {5, 11, 17},
       {24, 20, 20}},
      {"4B",
       2560,
       36,
       32,
       8,
       128,
       9728,
       5e6,
       true,
       24,
       1024,
       4096,
       16,
       16,
       2304,
       {5, 11, 17},
       {24, 20, 20}},
      {"8B",
       4096,
       36,
       32,
       8,
       128,
       12288,
       5e6,
       false,
       27,
       1152,
       4304,
       16,
       16,
       2304,
       {8, 16, 24},
       {24, 20, 20}},
      {"32B",
       5120,
       64,
       64,
       8,
       128,
       25600,
       5e6,
       false,
       27,
       1152,
       4304,
       16,
       16,
       2304,
       {8, 16, 24},
       {24, 20, 20}},
      {"72B",
       8192,
       80,
       64,
       8,
       128,
       29568,
       5e6,
       false,
       27,
       1152,
       4304,
       16,
       16,
       2304,
       {8, 16, 24},
       {24, 20, 20}},
  };
  return kPresets;
}

}  // namespace

std::vector<std::string> ModelConfig::flavor_names() {
  std::vector<std::string> names;
  for (const auto& p : presets()) names.push_back(p.name);
  for (const auto& n : moe_flavor_names()) names.push_back(n);
  return names;
}

ModelConfig ModelConfig::flavor(const std::string& name) {
  if (auto moe = moe_flavor(name)) return *moe;
  for (const auto& p : presets()) {
    if (name != p.name) continue;
    ModelConfig c;
    c.text.vocab_size = 151936;
    c.text.hidden_size = p.hidden;
    c.text.num_layers = p.layers;
    c.text.num_heads = p.heads;
    c.text.num_kv_heads = p.kv_heads;
    c.text.head_dim = p.head_dim;
    c.text.intermediate_size = p.ffn;
    c.text.rope_theta = p.theta;
    c.text.mrope_section = p.mrope;
    c.text.max_position_embeddings = 262144;
    c.tie_word_embeddings = p.tied;
    c.vision.depth = p.v_depth;
    c.vision.hidden_size = p.v_hidden;
    c.vision.intermediate_size = p.v_ffn;
    c.vision.num_heads = p.v_heads;
    c.vision.patch_size = p.patch;
    c.vision.num_position_embeddings = p.pos_embeds;
    c.vision.deepstack_visual_indexes = p.deepstack;
    c.vision.out_hidden_size = p.hidden;
    c.validate();
    return c;
  }
  std::string list;
  for (const auto& n : flavor_names()) list += " " + n;
  fail("unknown flavor '", name, "' (valid:", list, ")");
}

ParamCounts count_params(const ModelConfig& c) {
  const TextConfig& t = c.text;
  const VisionConfig& v = c.vision;
  ParamCounts n;
  const int64_t D = v.hidden_size, M = v.merged_dim();
  const int64_t block = 4 * D /*norms*/ + (3 * D * D + 3 * D) + (D * D + D) +
                        (v.intermediate_size * D + v.intermediate_size) +
                        (D * v.intermediate_size + D);
  const int64_t merger_tail = (M * M + M) + (v.out_hidden_size * M + v.out_hidden_size);
  n.vision = D * v.patch_dim() + D + v.num_position_embeddings * D + v.depth * block +
             (2 * D + merger_tail) +
             static_cast<int64_t>(v.deepstack_visual_indexes.size()) * (2 * M + merger_tail);
  const int64_t H = t.hidden_size, q = t.num_heads * t.head_dim, kv = t.num_kv_heads * t.head_dim;
  const int64_t layer = 2 * H + H * q + 2 * H * kv + q * H + 2 * t.head_dim;
  n.text = t.vocab_size * H * (c.tie_word_embeddings ? 1 : 2) + t.num_layers * layer + H;
  for (int64_t l = 0; l < t.num_layers; ++l) {
    n.text += t.mlp_params(l);
    n.inactive_experts += t.mlp_params(l) - t.mlp_active_params(l);
  }
  return n;
}

double decoder_train_flops_per_token(const ModelConfig& c, int64_t seq_len) {
  const TextConfig& t = c.text;
  const double H = t.hidden_size, q = t.num_heads * t.head_dim, kv = t.num_kv_heads * t.head_dim;
  double matmul_params = t.num_layers * (H * q + 2 * H * kv + q * H);
  for (int64_t l = 0; l < t.num_layers; ++l) matmul_params += t.mlp_active_params(l);
  // Causal attention: QK^T and PV each 2*q*(average context = seq_len/2) per token and layer.
  const double attn = t.num_layers * 2.0 * 2.0 * q * (seq_len / 2.0);
  return 3.0 * (2.0 * matmul_params + attn);
}

double classifier_train_flops_per_token(const ModelConfig& c) {
  return 3.0 * 2.0 * static_cast<double>(c.text.vocab_size) * c.text.hidden_size;
}

double text_train_flops_per_token(const ModelConfig& c, int64_t seq_len) {
  return decoder_train_flops_per_token(c, seq_len) + classifier_train_flops_per_token(c);
}

double vision_train_flops_per_patch(const ModelConfig& c, int64_t patches_per_image) {
  const VisionConfig& v = c.vision;
  const double D = v.hidden_size, M = v.merged_dim();
  const double per_block = 4 * D * D + 2 * D * v.intermediate_size;
  const double merger = (M * M + M * v.out_hidden_size) / v.merge_unit();
  const double matmul_params =
      D * v.patch_dim() + v.depth * per_block + (1 + v.deepstack_visual_indexes.size()) * merger;
  const double attn = v.depth * 2.0 * 2.0 * D * patches_per_image;
  return 3.0 * (2.0 * matmul_params + attn);
}

}  // namespace qv::model
