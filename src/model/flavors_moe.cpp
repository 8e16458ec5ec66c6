// Sources: torchtitan's Qwen3-VL flavor table (pytorch/torchtitan 4c2285389,
// torchtitan/experiments/qwen3_vl/__init__.py: debugmodel_moe, 30B-A3B, 235B-A22B). The two
// large ones are the released Qwen3-VL-30B-A3B / Qwen3-VL-235B-A22B shapes (Qwen3-30B-A3B and
// Qwen3-235B-A22B decoders: 128 experts, top-8, every layer sparse, expert width 768 / 1536)
// with the 27-block vision tower. debugmodel_moe takes torchtitan's widths (hidden 256, 64
// experts of 768, top-8) but 4 decoder layers instead of 1: its vision tower has 3 DeepStack
// features, and our decoder (as HF's) adds feature d after layer d, so it needs at least 3.
#include "model/flavors_moe.h"

namespace qv::model {

namespace {

struct MoePreset {
  const char* name;
  TextConfig text;
  VisionConfig vision;
};

const std::vector<MoePreset>& presets() {
  static const std::vector<MoePreset> kPresets = {
      {.name = "debugmodel_moe",
       .text = {.hidden_size = 256,
                .intermediate_size = 512,
                .num_layers = 4,
                .num_heads = 4,
                .num_kv_heads = 2,
                .head_dim = 64,
                .rope_theta = 1e6,
                .mrope_section = {8, 8, 8},
                .num_experts = 64,
                .num_experts_per_tok = 8,
                .moe_intermediate_size = 768},
       .vision = {.depth = 4,
                  .hidden_size = 256,
                  .intermediate_size = 512,
                  .num_heads = 4,
                  .patch_size = 14,
                  .num_position_embeddings = 1024,
                  .deepstack_visual_indexes = {1, 2, 3}}},
      {.name = "30B-A3B",
       .text = {.hidden_size = 2048,
                .intermediate_size = 6144,
                .num_layers = 48,
                .num_heads = 32,
                .num_kv_heads = 4,
                .head_dim = 128,
                .rope_theta = 5e6,
                .mrope_section = {24, 20, 20},
                .num_experts = 128,
                .num_experts_per_tok = 8,
                .moe_intermediate_size = 768},
       .vision = {.depth = 27,
                  .hidden_size = 1152,
                  .intermediate_size = 4304,
                  .num_heads = 16,
                  .patch_size = 16,
                  .num_position_embeddings = 2304,
                  .deepstack_visual_indexes = {8, 16, 24}}},
      {.name = "235B-A22B",
       .text = {.hidden_size = 4096,
                .intermediate_size = 12288,
                .num_layers = 94,
                .num_heads = 64,
                .num_kv_heads = 4,
                .head_dim = 128,
                .rope_theta = 5e6,
                .mrope_section = {24, 20, 20},
                .num_experts = 128,
                .num_experts_per_tok = 8,
                .moe_intermediate_size = 1536},
       .vision = {.depth = 27,
                  .hidden_size = 1152,
                  .intermediate_size = 4304,
                  .num_heads = 16,
                  .patch_size = 16,
                  .num_position_embeddings = 2304,
                  .deepstack_visual_indexes = {8, 16, 24}}},
  };
  return kPresets;
}

}  // namespace

std::optional<ModelConfig> moe_flavor(const std::string& name) {
  for (const MoePreset& p : presets()) {
    if (name != p.name) continue;
    ModelConfig c;
    c.text = p.text;
    c.text.max_position_embeddings = 262144;
    c.vision = p.vision;
    c.vision.out_hidden_size = p.text.hidden_size;
    c.tie_word_embeddings = false;
    c.validate();
    return c;
  }
  return std::nullopt;
}

std::vector<std::string> moe_flavor_names() {
  std::vector<std::string> names;
  for (const MoePreset& p : presets()) names.push_back(p.name);
  return names;
}

}  // namespace qv::model
