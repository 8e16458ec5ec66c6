#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/json_depth.h"
#include "io/json_number.h"

namespace qv::model {

using nlohmann::json;

namespace {

// Reads an optional field with a type check; errors name the file and the key path.
template <typename T>
void read_field(const json& j, const char* key, T& out, const std::string& where) {
  if (!j.contains(key) || j[key].is_null()) return;
  const json& v = j[key];
  auto wrong = [&] { fail(where, ": field '", key, "' has the wrong type (", v.dump(), ")"); };
  if constexpr (std::is_same_v<T, int64_t>) {
    const auto i = io::json_integer<int64_t>(v);
    if (!i) wrong();
    out = *i;
  } else if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
    if (!v.is_array()) wrong();
    out.clear();
    for (const json& e : v) {
      const auto i = io::json_integer<int64_t>(e);
      if (!i) wrong();
      out.push_back(*i);
    }
  } else {
    try {
      out = v.get<T>();
    } catch (const json::exception&) {
      wrong();
    }
  }
}

TextConfig parse_text(const json& t, const std::string& where) {
  TextConfig c;
  read_field(t, "vocab_size", c.vocab_size, where);
  read_field(t, "hidden_size", c.hidden_size, where);
  read_field(t, "intermediate_size", c.intermediate_size, where);
  read_field(t, "num_hidden_layers", c.num_layers, where);
  read_field(t, "num_attention_heads", c.num_heads, where);
  c.num_kv_heads = c.num_heads;
  read_field(t, "num_key_value_heads", c.num_kv_heads, where);
  c.head_dim = c.hidden_size / std::max<int64_t>(1, c.num_heads);
  read_field(t, "head_dim", c.head_dim, where);
  read_field(t, "rms_norm_eps", c.rms_norm_eps, where);
  read_field(t, "rope_theta", c.rope_theta, where);
  read_field(t, "max_position_embeddings", c.max_position_embeddings, where);
  read_field(t, "initializer_range", c.initializer_range, where);
  // Legacy rope_scaling (4.57) or rope_parameters (5.x) carry mrope_section (and theta in 5.x).
  for (const char* key : {"rope_scaling", "rope_parameters"}) {
    if (!t.contains(key) || !t[key].is_object()) continue;
    const json& r = t[key];
    if (r.contains("rope_theta")) read_field(r, "rope_theta", c.rope_theta, where + "." + key);
    if (r.contains("rope_type") && r["rope_type"].is_string()) {
      const std::string type = r["rope_type"].get<std::string>();
      QV_CHECK(type == "default" || type == "mrope", where, ": ", key, ".rope_type '", type,
               "' is not supported (only default / mrope)");
    }
    if (r.contains("mrope_section")) {
      std::vector<int64_t> s;
      read_field(r, "mrope_section", s, where + "." + key);
      QV_CHECK(s.size() == 3, where, ": ", key, ".mrope_section must have 3 entries, has ",
               s.size());
      c.mrope_section = {s[0], s[1], s[2]};
    }
  }
  return c;
}

// The sparse block's fields of a qwen3_vl_moe text_config; missing ones take Hugging Face's
// Qwen3VLMoeTextConfig defaults.
void parse_moe(const json& t, TextConfig& c, const std::string& where) {
  c.num_experts = 60;
  c.num_experts_per_tok = 4;
  c.moe_intermediate_size = 1408;
  read_field(t, "num_experts", c.num_experts, where);
  read_field(t, "num_experts_per_tok", c.num_experts_per_tok, where);
  read_field(t, "moe_intermediate_size", c.moe_intermediate_size, where);
  read_field(t, "norm_topk_prob", c.norm_topk_prob, where);
  read_field(t, "decoder_sparse_step", c.decoder_sparse_step, where);
  read_field(t, "mlp_only_layers", c.mlp_only_layers, where);
  read_field(t, "router_aux_loss_coef", c.router_aux_loss_coef, where);
}

VisionConfig parse_vision(const json& v, const std::string& where) {
  VisionConfig c;
  read_field(v, "depth", c.depth, where);
  read_field(v, "hidden_size", c.hidden_size, where);
  read_field(v, "intermediate_size", c.intermediate_size, where);
  read_field(v, "num_heads", c.num_heads, where);
  read_field(v, "in_channels", c.in_channels, where);
  read_field(v, "patch_size", c.patch_size, where);
  read_field(v, "temporal_patch_size", c.temporal_patch_size, where);
  read_field(v, "spatial_merge_size", c.spatial_merge_size, where);
  read_field(v, "out_hidden_size", c.out_hidden_size, where);
  read_field(v, "num_position_embeddings", c.num_position_embeddings, where);
  read_field(v, "deepstack_visual_indexes", c.deepstack_visual_indexes, where);
  read_field(v, "initializer_range", c.initializer_range, where);
  if (v.contains("hidden_act") && v["hidden_act"].is_string()) {
    const std::string act = v["hidden_act"].get<std::string>();
    QV_CHECK(act == "gelu_pytorch_tanh", where, ": vision hidden_act '", act,
             "' is not supported (Qwen3-VL uses gelu_pytorch_tanh)");
  }
  return c;
}

}  // namespace

ModelConfig ModelConfig::from_json_text(const std::string& text, const std::string& origin) {
  const json j = io::parse_json(text, origin);
  QV_CHECK(j.is_object(), origin, ": config must be a JSON object");
  bool moe = false;
  if (j.contains("model_type") && j["model_type"].is_string()) {
    const std::string mt = j["model_type"].get<std::string>();
    QV_CHECK(mt == "qwen3_vl" || mt == "qwen3_vl_moe", origin, ": model_type '", mt,
             "' is not qwen3_vl or qwen3_vl_moe");
    moe = mt == "qwen3_vl_moe";
  }
  QV_CHECK(j.contains("text_config") && j["text_config"].is_object(), origin,
           ": missing 'text_config' object");
  QV_CHECK(j.contains("vision_config") && j["vision_config"].is_object(), origin,
           ": missing 'vision_config' object");
  ModelConfig c;
  c.text = parse_text(j["text_config"], origin + ": text_config");
  if (moe) parse_moe(j["text_config"], c.text, origin + ": text_config");
  c.vision = parse_vision(j["vision_config"], origin + ": vision_config");
  read_field(j, "image_token_id", c.image_token_id, origin);
  read_field(j, "video_token_id", c.video_token_id, origin);
  read_field(j, "vision_start_token_id", c.vision_start_token_id, origin);
  read_field(j, "vision_end_token_id", c.vision_end_token_id, origin);
  // transformers 4.57 reads text_config.tie_word_embeddings, 5.x the top level; released
  // configs set both. Either one set to true ties.
  bool tie_top = false, tie_text = false;
  read_field(j, "tie_word_embeddings", tie_top, origin);
  read_field(j["text_config"], "tie_word_embeddings", tie_text, origin + ": text_config");
  c.tie_word_embeddings = tie_top || tie_text;
  c.validate();
  return c;
}

ModelConfig ModelConfig::from_json_file(const std::string& path) {
  return from_json_text(io::read_file(path), path);
}

namespace {

void validate_moe(const TextConfig& t) {
  // 512 experts and top-64 are far above released models (235B-A22B: 128 experts, top-8).
  QV_CHECK(t.num_experts <= 512, "text_config.num_experts = ", t.num_experts,
           " exceeds the limit of 512");
  QV_CHECK(t.num_experts_per_tok > 0 && t.num_experts_per_tok <= t.num_experts,
           "text_config.num_experts_per_tok (", t.num_experts_per_tok, ") must be in [1, ",
           "num_experts = ", t.num_experts, "]");
  QV_CHECK(t.moe_intermediate_size > 0 && t.moe_intermediate_size <= (1 << 17),
           "text_config.moe_intermediate_size (", t.moe_intermediate_size,
           ") must be in [1, 131072]");
  QV_CHECK(t.decoder_sparse_step > 0 && t.decoder_sparse_step <= t.num_layers,
           "text_config.decoder_sparse_step (", t.decoder_sparse_step, ") must be in [1, ",
           "num_hidden_layers = ", t.num_layers, "]");
  for (int64_t l : t.mlp_only_layers)
    QV_CHECK(l >= 0 && l < t.num_layers, "text_config.mlp_only_layers entry ", l,
             " is outside [0, num_hidden_layers = ", t.num_layers, ")");
  QV_CHECK(std::isfinite(t.router_aux_loss_coef) && t.router_aux_loss_coef >= 0,
           "text_config.router_aux_loss_coef must be a finite non-negative number");
}

}  // namespace

bool TextConfig::is_sparse_layer(int64_t layer) const {
  if (!is_moe() || (layer + 1) % decoder_sparse_step != 0) return false;
  return std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) == mlp_only_layers.end();
}

int64_t TextConfig::sparse_layers() const {
  int64_t n = 0;
  for (int64_t l = 0; l < num_layers; ++l) n += is_sparse_layer(l);
  return n;
}

int64_t TextConfig::mlp_params(int64_t layer) const {
  if (!is_sparse_layer(layer)) return 3 * hidden_size * intermediate_size;
  return hidden_size * num_experts + num_experts * 3 * hidden_size * moe_intermediate_size;
}

int64_t TextConfig::mlp_active_params(int64_t layer) const {
  if (!is_sparse_layer(layer)) return mlp_params(layer);
  return hidden_size * num_experts + num_experts_per_tok * 3 * hidden_size * moe_intermediate_size;
}

void ModelConfig::validate() const {
  const TextConfig& t = text;
  const VisionConfig& v = vision;
  auto positive = [](int64_t x) { return x > 0; };
  // Bounds far above any released model (72B: hidden 8192, intermediate 29568, 80 layers) that
  // keep parameter counts, FLOPs and buffer sizes inside int64 for a hostile config.json.
  constexpr int64_t kWidth = 1 << 17, kCount = 1 << 12, kVocab = 1 << 24, kSmall = 16;
  const struct {
    const char* name;
    int64_t value, limit;
  } bounds[] = {
      {"text_config.vocab_size", t.vocab_size, kVocab},
      {"text_config.hidden_size", t.hidden_size, kWidth},
      {"text_config.intermediate_size", t.intermediate_size, kWidth},
      {"text_config.num_hidden_layers", t.num_layers, kCount},
      {"text_config.num_attention_heads", t.num_heads, kCount},
      {"text_config.num_key_value_heads", t.num_kv_heads, kCount},
      {"text_config.head_dim", t.head_dim, kCount},
      {"text_config.max_position_embeddings", t.max_position_embeddings, int64_t{1} << 40},
      {"vision_config.depth", v.depth, kCount},
      {"vision_config.hidden_size", v.hidden_size, kWidth},
      {"vision_config.intermediate_size", v.intermediate_size, kWidth},
      {"vision_config.num_heads", v.num_heads, kCount},
      {"vision_config.in_channels", v.in_channels, kSmall},
      {"vision_config.patch_size", v.patch_size, kCount},
      {"vision_config.temporal_patch_size", v.temporal_patch_size, kSmall},
      {"vision_config.spatial_merge_size", v.spatial_merge_size, kSmall},
      {"vision_config.out_hidden_size", v.out_hidden_size, kWidth},
      {"vision_config.num_position_embeddings", v.num_position_embeddings, kVocab},
  };
  for (const auto& b : bounds)
    QV_CHECK(b.value <= b.limit, b.name, " = ", b.value, " exceeds the limit of ", b.limit);
  for (int64_t s : t.mrope_section)
    QV_CHECK(s <= kCount, "text_config: mrope_section entry ", s, " exceeds ", kCount);
  QV_CHECK(positive(t.vocab_size) && positive(t.hidden_size) && positive(t.intermediate_size) &&
               positive(t.num_layers) && positive(t.num_heads) && positive(t.num_kv_heads) &&
               positive(t.head_dim),
           "text_config: sizes must be positive");
  QV_CHECK(t.num_heads % t.num_kv_heads == 0, "text_config: num_attention_heads (", t.num_heads,
           ") must be a multiple of num_key_value_heads (", t.num_kv_heads, ")");
  QV_CHECK(t.head_dim % 2 == 0, "text_config: head_dim must be even, is ", t.head_dim);
  for (int64_t s : t.mrope_section)
    QV_CHECK(s >= 0, "text_config: mrope_section entries must be non-negative");
  QV_CHECK(positive(v.depth) && positive(v.hidden_size) && positive(v.intermediate_size) &&
               positive(v.num_heads) && positive(v.patch_size) && positive(v.temporal_patch_size) &&
               positive(v.spatial_merge_size) && positive(v.out_hidden_size) &&
               positive(v.num_position_embeddings) && positive(v.in_channels),
           "vision_config: sizes must be positive");
  QV_CHECK(v.hidden_size % v.num_heads == 0, "vision_config: hidden_size (", v.hidden_size,
           ") must be a multiple of num_heads (", v.num_heads, ")");
  QV_CHECK(v.head_dim() % 4 == 0, "vision_config: head_dim (", v.head_dim(),
           ") must be a multiple of 4 for the 2-D rotary embedding");
  int64_t side = 0;
  while ((side + 1) * (side + 1) <= v.num_position_embeddings) ++side;
  QV_CHECK(side * side == v.num_position_embeddings, "vision_config: num_position_embeddings (",
           v.num_position_embeddings, ") must be a perfect square");
  QV_CHECK(v.out_hidden_size == t.hidden_size, "vision_config.out_hidden_size (", v.out_hidden_size,
           ") must equal text_config.hidden_size (", t.hidden_size, ")");
  for (size_t i = 0; i < v.deepstack_visual_indexes.size(); ++i) {
    const int64_t idx = v.deepstack_visual_indexes[i];
    QV_CHECK(idx >= 0 && idx < v.depth, "vision_config.deepstack_visual_indexes[", i, "] = ", idx,
             " is outside [0, depth=", v.depth, ")");
  }
  QV_CHECK(static_cast<int64_t>(v.deepstack_visual_indexes.size()) <= t.num_layers,
           "more deepstack features (", v.deepstack_visual_indexes.size(),
           ") than decoder layers (", t.num_layers, ")");
  if (t.is_moe()) validate_moe(t);
}

namespace {

// Turns a dense config.json into Hugging Face's qwen3_vl_moe one.
void add_moe_fields(const TextConfig& t, json& j) {
  j["architectures"] = {"Qwen3VLMoeForConditionalGeneration"};
  j["model_type"] = "qwen3_vl_moe";
  j["vision_config"]["model_type"] = "qwen3_vl_moe";
  json& tc = j["text_config"];
  tc["model_type"] = "qwen3_vl_moe_text";
  tc["num_experts"] = t.num_experts;
  tc["num_experts_per_tok"] = t.num_experts_per_tok;
  tc["moe_intermediate_size"] = t.moe_intermediate_size;
  tc["norm_topk_prob"] = t.norm_topk_prob;
  tc["decoder_sparse_step"] = t.decoder_sparse_step;
  tc["mlp_only_layers"] = t.mlp_only_layers;
  tc["router_aux_loss_coef"] = t.router_aux_loss_coef;
}

}  // namespace

std::string ModelConfig::to_json_text(const std::string& dtype) const {
  json tc = {
      {"model_type", "qwen3_vl_text"},
      {"vocab_size", text.vocab_size},
      {"hidden_size", text.hidden_size},
      {"intermediate_size", text.intermediate_size},
      {"num_hidden_layers", text.num_layers},
      {"num_attention_heads", text.num_heads},
      {"num_key_value_heads", text.num_kv_heads},
      {"head_dim", text.head_dim},
      {"hidden_act", "silu"},
      {"rms_norm_eps", text.rms_norm_eps},
      {"rope_theta", text.rope_theta},
      {"rope_scaling",
       {{"rope_type", "default"},
        {"mrope_section", {text.mrope_section[0], text.mrope_section[1], text.mrope_section[2]}},
        {"mrope_interleaved", true}}},
      {"max_position_embeddings", text.max_position_embeddings},
      {"initializer_range", text.initializer_range},
      {"attention_bias", false},
      {"attention_dropout", 0.0},
      {"use_cache", true},
      {"tie_word_embeddings", tie_word_embeddings}};
  json vc = {{"model_type", "qwen3_vl"},
             {"depth", vision.depth},
             {"hidden_size", vision.hidden_size},
             {"intermediate_size", vision.intermediate_size},
             {"num_heads", vision.num_heads},
             {"in_channels", vision.in_channels},
             {"patch_size", vision.patch_size},
             {"temporal_patch_size", vision.temporal_patch_size},
             {"spatial_merge_size", vision.spatial_merge_size},
             {"out_hidden_size", vision.out_hidden_size},
             {"num_position_embeddings", vision.num_position_embeddings},
             {"deepstack_visual_indexes", vision.deepstack_visual_indexes},
             {"hidden_act", "gelu_pytorch_tanh"},
             {"initializer_range", vision.initializer_range}};
  json j = {{"architectures", {"Qwen3VLForConditionalGeneration"}},
            {"model_type", "qwen3_vl"},
            {"dtype", dtype},
            {"torch_dtype", dtype},  // the name transformers < 4.56 reads
            {"image_token_id", image_token_id},
            {"video_token_id", video_token_id},
            {"vision_start_token_id", vision_start_token_id},
            {"vision_end_token_id", vision_end_token_id},
            {"tie_word_embeddings", tie_word_embeddings},
            {"text_config", tc},
            {"vision_config", vc}};
  if (text.is_moe()) add_moe_fields(text, j);
  return j.dump(2) + "\n";
}

}  // namespace qv::model
