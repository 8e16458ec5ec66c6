// Named model presets and derived figures (parameter counts, FLOPs).
#include "core/error.h"
#include "model/config.h"
#include "model/flavors_moe.h"

namespace qv::model {

namespace {

// A flavor's own values; every other field keeps its TextConfig / VisionConfig default, and
// flavor() sets the ones all flavors share (vocabulary, context length, merger width).
struct Preset {
  const char* name;
  TextConfig text;
  VisionConfig vision;
  bool tie_word_embeddings = false;
};

// debugmodel, 2B and 8B follow torchtitan's Qwen3-VL flavor table; 4B and 32B are the released
// Hugging Face configs (QWEN3VL_FACTS.md section 2). 72B has no released Qwen3-VL checkpoint: it
// pairs a Qwen2.5-72B-shaped decoder (8192 x 80 layers, 64/8 heads, ffn 29568) with the 8B-class
// vision tower, as a size for planning and benchmarks.
const std::vector<Preset>& presets() {
  static const std::vector<Preset> kPresets = {
      {.name = "debugmodel",
       .text = {.hidden_size = 256,
                .intermediate_size = 512,
                .num_layers = 4,
                .num_heads = 4,
                .num_kv_heads = 2,
                .head_dim = 64,
                .rope_theta = 1e6,
                .mrope_section = {8, 8, 8}},
       .vision = {.depth = 4,
                  .hidden_size = 256,
                  .intermediate_size = 512,
                  .num_heads = 4,
                  .patch_size = 14,
                  .num_position_embeddings = 1024,
                  .deepstack_visual_indexes = {1, 2, 3}},
       .tie_word_embeddings = false},
      {.name = "2B",
       .text = {.hidden_size = 2048,
                .intermediate_size = 6144,
                .num_layers = 28,
                .num_heads = 16,
                .num_kv_heads = 8,
                .head_dim = 128,
                .rope_theta = 5e6,
                .mrope_section = {24, 20, 20}},
       .vision = {.depth = 24,
                  .hidden_size = 1024,
                  .intermediate_size = 4096,
                  .num_heads = 16,
                  .patch_size = 16,
                  .num_position_embeddings = 2304,
                  .deepstack_visual_indexes = {5, 11, 17}},
       .tie_word_embeddings = true},
      {.name = "4B",
       .text = {.hidden_size = 2560,
                .intermediate_size = 9728,
                .num_layers = 36,
                .num_heads = 32,
                .num_kv_heads = 8,
                .head_dim = 128,
                .rope_theta = 5e6,
                .mrope_section = {24, 20, 20}},
       .vision = {.depth = 24,
                  .hidden_size = 1024,
                  .intermediate_size = 4096,
                  .num_heads = 16,
                  .patch_size = 16,
                  .num_position_embeddings = 2304,
                  .deepstack_visual_indexes = {5, 11, 17}},
       .tie_word_embeddings = true},
      {.name = "8B",
       .text = {.hidden_size = 4096,
                .intermediate_size = 12288,
                .num_layers = 36,
                .num_heads = 32,
                .num_kv_heads = 8,
                .head_dim = 128,
                .rope_theta = 5e6,
                .mrope_section = {24, 20, 20}},
       .vision = {.depth = 27,
                  .hidden_size = 1152,
                  .intermediate_size = 4304,
                  .num_heads = 16,
                  .patch_size = 16,
                  .num_position_embeddings = 2304,
                  .deepstack_visual_indexes = {8, 16, 24}},
       .tie_word_embeddings = false},
      {.name = "32B",
       .text = {.hidden_size = 5120,
                .intermediate_size = 25600,
                .num_layers = 64,
                .num_heads = 64,
                .num_kv_heads = 8,
                .head_dim = 128,
                .rope_theta = 5e6,
                .mrope_section = {24, 20, 20}},
       .vision = {.depth = 27,
                  .hidden_size = 1152,
                  .intermediate_size = 4304,
                  .num_heads = 16,
                  .patch_size = 16,
                  .num_position_embeddings = 2304,
                  .deepstack_visual_indexes = {8, 16, 24}},
       .tie_word_embeddings = false},
      {.name = "72B",
       .text = {.hidden_size = 8192,
                .intermediate_size = 29568,
                .num_layers = 80,
                .num_heads = 64,
                .num_kv_heads = 8,
                .head_dim = 128,
                .rope_theta = 5e6,
                .mrope_section = {24, 20, 20}},
       .vision = {.depth = 27,
                  .hidden_size = 1152,
                  .intermediate_size = 4304,
                  .num_heads = 16,
                  .patch_size = 16,
                  .num_position_embeddings = 2304,
                  .deepstack_visual_indexes = {8, 16, 24}},
       .tie_word_embeddings = false},
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
    c.text = p.text;
    c.text.vocab_size = 151936;
    c.text.max_position_embeddings = 262144;
    c.vision = p.vision;
    c.vision.out_hidden_size = p.text.hidden_size;  // the merger projects into the decoder width
    c.tie_word_embeddings = p.tie_word_embeddings;
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
