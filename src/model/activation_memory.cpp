#include "model/activation_memory.h"

#include <algorithm>

#include "model/activation_checkpoint.h"

namespace qv::model {

namespace {
constexpr int64_t kFloat = 4;

// Floats the feed-forward of a layer saves per token. Dense: gate / up / SiLU. Sparse (MoE,
// model/moe_block.h, without expert parallelism): router probabilities [E], routing weights and
// chosen experts (int32) [k], the slots' bucket order and position (int64) [k], and per slot its
// input, gate_up, SwiGLU and expert output.
int64_t mlp_floats_per_token(const TextConfig& t, bool sparse) {
  if (!sparse) return 3 * t.intermediate_size;
  const int64_t k = t.num_experts_per_tok;
  return t.num_experts + 2 * k + 4 * k + k * (2 * t.hidden_size + 3 * t.moe_intermediate_size);
}

// Floats one decoder layer saves per token: the input, both norm outputs and their rstd, raw and
// rotated q / k, v, the attention output and its log-sum-exp, the residual, the feed-forward's.
int64_t decoder_layer_floats_per_token(const TextConfig& t, bool sparse) {
  const int64_t q = t.num_heads * t.head_dim, kv = t.num_kv_heads * t.head_dim;
  return 4 * t.hidden_size + 3 * q + 3 * kv + t.num_heads + t.num_kv_heads + 2 +
         mlp_floats_per_token(t, sparse);
}

// Floats one decoder layer's backward holds at once per token: the layer's input and output
// gradients and the two residual-branch gradients, plus the larger of the feed-forward branch's
// scratch (dense: gate / up / SiLU gradients; MoE: router logit and routing weight gradients and
// per slot the output, SwiGLU, gate_up and input gradients), freed before the attention branch
// starts, and the attention branch's (o_proj input, q / k / v and pre-norm q / k gradients).
int64_t decoder_backward_floats_per_token(const TextConfig& t, bool sparse) {
  const int64_t q = t.num_heads * t.head_dim, kv = t.num_kv_heads * t.head_dim;
  const int64_t k = t.num_experts_per_tok;
  const int64_t mlp =
      sparse ? t.num_experts + k + k * (2 * t.hidden_size + 3 * t.moe_intermediate_size)
             : 3 * t.intermediate_size;
  return 4 * t.hidden_size + std::max(mlp, 3 * q + 3 * kv);
}

// Floats per patch of one ViT block: input, two LayerNorms (+ mean, rstd), q, k, v, attention
// output and log-sum-exp, residual, fc1 and GELU.
int64_t vision_block_floats_per_patch(const VisionConfig& v) {
  return 8 * v.hidden_size + 4 + v.num_heads + 2 * v.intermediate_size;
}

// Blocks whose output a merger reads in backward (the DeepStack indexes and the last block).
int64_t merger_inputs(const VisionConfig& v) {
  int64_t n = 1;
  for (int64_t d : v.deepstack_visual_indexes) n += d != v.depth - 1;
  return n;
}
}  // namespace

ActivationBytes activation_arena_bytes(const ModelConfig& c, const StepShape& s) {
  const TextConfig& t = c.text;
  const VisionConfig& v = c.vision;
  const int64_t N = s.tokens, H = t.hidden_size, L = t.num_layers;
  auto layer = [&](int64_t l) {
    return decoder_layer_floats_per_token(t, t.is_sparse_layer(l)) * N;
  };
  const Checkpointing& ac = s.checkpointing;
  // A dropped layer keeps its input; backward rebuilds one layer at a time. Only a rebuild of the
  // last layer adds to the peak: any earlier one happens after a later layer has been freed.
  int64_t saved = 0;
  for (int64_t l = 0; l < L; ++l) saved += ac.decoder_layer(l) ? N * H : layer(l);
  if (L > 0 && ac.decoder_layer(L - 1)) saved += layer(L - 1);
  ActivationBytes b;
  b.decoder_saved = kFloat * saved;

  const int64_t P = s.patches;
  if (P > 0) {
    const int64_t rows = P / v.merge_unit(),
                  mergers = 1 + static_cast<int64_t>(v.deepstack_visual_indexes.size());
    const int64_t merger = P * (3 * v.hidden_size + 2) + rows * v.out_hidden_size;
    const int64_t tables = P * (2 * v.head_dim() + v.head_dim() / 2 + 8 + 4);
    // A checkpointed block keeps its input. Its rebuild in backward runs after the decoder's
    // activations are freed, so it is not counted (it fits in what they left, as long as one
    // ViT block's activations are smaller than the decoder's).
    int64_t kept_blocks = 0;
    for (int64_t i = 0; i < v.depth; ++i) kept_blocks += !ac.vision_block(i, L);
    const int64_t blocks = kept_blocks * vision_block_floats_per_patch(v) +
                           (v.depth - kept_blocks) * v.hidden_size +
                           merger_inputs(v) * v.hidden_size;
    b.vision_saved = kFloat * (blocks * P + mergers * merger + tables);
  }
  // Final-norm input, output, rstd and output gradient; rotary cos / sin; [3, N] int64 positions.
  b.other_saved = kFloat * (3 * N * H + N + 2 * N * t.head_dim + 6 * N);

  const int64_t chunk = std::min(s.classifier_chunk, std::max<int64_t>(s.loss_tokens, 1));
  const int64_t classifier = chunk * (t.vocab_size + 2 * H);
  const int64_t deepstack_grads =
      static_cast<int64_t>(v.deepstack_visual_indexes.size()) * (P / v.merge_unit()) * H;
  int64_t layer_backward = 0;
  for (int64_t l = 0; l < L; ++l)
    layer_backward =
        std::max(layer_backward, decoder_backward_floats_per_token(t, t.is_sparse_layer(l)));
  const int64_t backward = layer_backward * N + deepstack_grads;
  b.transient = kFloat * std::max(classifier, backward);
  return b;
}

}  // namespace qv::model
