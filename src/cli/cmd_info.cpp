// qwen3vl info: parameter counts and training FLOPs of a flavor or a model folder.
#include <cstdio>
#include <filesystem>

#include "cli/command.h"
#include "core/error.h"
#include "model/config.h"

namespace qv::cli {
namespace {

int run_info(const Args& args) {
  Flags f(args);
  f.allow_only({"flavor", "model", "seq-len", "image-patches"});
  QV_CHECK(f.has("flavor") != f.has("model"), "give exactly one of --flavor NAME or --model DIR");
  const model::ModelConfig c =
      f.has("flavor") ? model::ModelConfig::flavor(f.get("flavor"))
                      : model::ModelConfig::from_json_file(
                            (std::filesystem::path(f.get("model")) / "config.json").string());
  const int64_t seq = f.get_int("seq-len", 2048);
  const int64_t patches = f.get_int("image-patches", 784);
  const model::ParamCounts n = model::count_params(c);
  std::printf("model: %s\n", f.has("flavor") ? f.get("flavor").c_str() : f.get("model").c_str());
  std::printf(
      "text:   hidden %lld, layers %lld, heads %lld/%lld kv, head_dim %lld, ffn %lld, "
      "vocab %lld, tied %s, mrope [%lld, %lld, %lld], theta %g\n",
      (long long)c.text.hidden_size, (long long)c.text.num_layers, (long long)c.text.num_heads,
      (long long)c.text.num_kv_heads, (long long)c.text.head_dim,
      (long long)c.text.intermediate_size, (long long)c.text.vocab_size,
      c.tie_word_embeddings ? "yes" : "no", (long long)c.text.mrope_section[0],
      (long long)c.text.mrope_section[1], (long long)c.text.mrope_section[2], c.text.rope_theta);
  std::printf(
      "vision: hidden %lld, depth %lld, heads %lld, ffn %lld, patch %lld, temporal %lld, "
      "merge %lld, position table %lld, deepstack",
      (long long)c.vision.hidden_size, (long long)c.vision.depth, (long long)c.vision.num_heads,
      (long long)c.vision.intermediate_size, (long long)c.vision.patch_size,
      (long long)c.vision.temporal_patch_size, (long long)c.vision.spatial_merge_size,
      (long long)c.vision.num_position_embeddings);
  for (int64_t i : c.vision.deepstack_visual_indexes) std::printf(" %lld", (long long)i);
  std::printf("\nparameters: vision %.4gM, text %.4gM, total %.4gM (%lld)\n", n.vision / 1e6,
              n.text / 1e6, n.total() / 1e6, (long long)n.total());
  if (c.text.is_moe())
    std::printf(
        "experts: %lld of width %lld, top-%lld%s, sparse layers %lld of %lld; active parameters "
        "per token %.4gM (%lld), %.4gM expert parameters idle per token\n",
        (long long)c.text.num_experts, (long long)c.text.moe_intermediate_size,
        (long long)c.text.num_experts_per_tok, c.text.norm_topk_prob ? " renormalised" : "",
        (long long)c.text.sparse_layers(), (long long)c.text.num_layers, n.active() / 1e6,
        (long long)n.active(), n.inactive_experts / 1e6);
  std::printf(
      "training FLOPs: %.4g per text token at seq_len %lld%s, %.4g per vision patch at %lld "
      "patches per image\n",
      model::text_train_flops_per_token(c, seq), (long long)seq,
      c.text.is_moe() ? " (active experts only)" : "",
      model::vision_train_flops_per_patch(c, patches), (long long)patches);
  return 0;
}

const Registration kRegistration({"info",
                                  "parameter counts and FLOPs (--flavor NAME | --model DIR)",
                                  run_info});

}  // namespace
}  // namespace qv::cli
