// Model configuration: the fields of a Hugging Face Qwen3-VL config.json, named presets
// ("flavors"), and derived figures (parameter counts, training FLOPs per token).
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace qv::model {

struct TextConfig {
  int64_t vocab_size = 151936;
  int64_t hidden_size = 4096;
  int64_t intermediate_size = 22016;
  int64_t num_layers = 32;
  int64_t num_heads = 32;
  int64_t num_kv_heads = 32;
  int64_t head_dim = 128;
  double rms_norm_eps = 1e-6;
  double rope_theta = 5000000.0;
  std::array<int64_t, 3> mrope_section = {24, 20, 20};
  int64_t max_position_embeddings = 128000;
  double initializer_range = 0.02;
  // Mixture of experts (model_type qwen3_vl_moe). num_experts == 0: a dense model, every layer
  // has the SwiGLU MLP of intermediate_size. Otherwise layer l has the sparse block (router +
  // num_experts SwiGLU experts of moe_intermediate_size, num_experts_per_tok chosen per token)
  // when (l + 1) % decoder_sparse_step == 0 and l is not in mlp_only_layers.
  int64_t num_experts = 0;
  int64_t num_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  bool norm_topk_prob = true;
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers = {};
  double router_aux_loss_coef = 0.001;  // config.json's value, exported as read; training uses
                                        // [model] router_aux_loss_coef (default 0 = off)

  bool is_moe() const { return num_experts > 0; }
  bool is_sparse_layer(int64_t layer) const;
  int64_t sparse_layers() const;  // how many layers have the sparse block
  // Parameters of layer l's feed-forward (dense MLP, or router + all experts), and the ones one
  // token multiplies with (router + its num_experts_per_tok experts).
  int64_t mlp_params(int64_t layer) const;
  int64_t mlp_active_params(int64_t layer) const;
};

struct VisionConfig {
  int64_t depth = 27;
  int64_t hidden_size = 1152;
  int64_t intermediate_size = 4304;
  int64_t num_heads = 16;
  int64_t in_channels = 3;
  int64_t patch_size = 16;
  int64_t temporal_patch_size = 2;
  int64_t spatial_merge_size = 2;
  int64_t out_hidden_size = 3584;
  int64_t num_position_embeddings = 2304;
  std::vector<int64_t> deepstack_visual_indexes = {8, 16, 24};
  double initializer_range = 0.02;

  int64_t head_dim() const { return hidden_size / num_heads; }
  int64_t patch_dim() const { return in_channels * temporal_patch_size * patch_size * patch_size; }
  int64_t merge_unit() const { return spatial_merge_size * spatial_merge_size; }
  int64_t merged_dim() const { return hidden_size * merge_unit(); }
};

struct ModelConfig {
  TextConfig text;
  VisionConfig vision;
  int64_t image_token_id = 151655;
  int64_t video_token_id = 151656;
  int64_t vision_start_token_id = 151652;
  int64_t vision_end_token_id = 151653;
  bool tie_word_embeddings = false;

  // Parses a Hugging Face config.json (errors name the file and the field).
  static ModelConfig from_json_file(const std::string& path);
  static ModelConfig from_json_text(const std::string& text, const std::string& origin);
  // Named presets: debugmodel, 2B, 4B, 8B, 32B, 72B, and the MoE debugmodel_moe, 30B-A3B,
  // 235B-A22B (see flavor_names()).
  static ModelConfig flavor(const std::string& name);
  static std::vector<std::string> flavor_names();
  // A config.json that Hugging Face transformers reads back as this model; `dtype` is the
  // weights' dtype as torch spells it ("float32", "bfloat16", "float16").
  std::string to_json_text(const std::string& dtype = "float32") const;
  // Throws qv::Error on inconsistent values (heads not dividing, odd head_dim, ...).
  void validate() const;
};

struct ParamCounts {
  int64_t vision = 0;  // model.visual.* (encoder, merger, deepstack mergers)
  int64_t text = 0;    // model.language_model.* and lm_head (once when tied)
  // Expert weights a token does not use (MoE: the unchosen experts of every sparse layer); 0
  // for a dense model.
  int64_t inactive_experts = 0;
  int64_t total() const { return vision + text; }
  int64_t active() const { return total() - inactive_experts; }
};
ParamCounts count_params(const ModelConfig& config);

// MoE: only the router and the num_experts_per_tok experts a token uses count (active FLOPs).
// Training FLOPs (forward + backward = 3x forward matmul FLOPs, attention included) per text
// token for a causal sequence of length seq_len (decoder layers only), per token that takes a
// loss (the classifier), and per vision patch for images of n_patches.
double decoder_train_flops_per_token(const ModelConfig& config, int64_t seq_len);
double classifier_train_flops_per_token(const ModelConfig& config);
// Decoder + classifier, every token taking a loss.
double text_train_flops_per_token(const ModelConfig& config, int64_t seq_len);
double vision_train_flops_per_patch(const ModelConfig& config, int64_t patches_per_image);

}  // namespace qv::model
