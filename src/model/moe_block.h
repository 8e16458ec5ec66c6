// The sparse mixture-of-experts feed-forward of a Qwen3-VL-MoE decoder layer (HF
// Qwen3VLMoeTextSparseMoeBlock): router mlp.gate (no bias) -> softmax in float32 -> top-k
// experts per token (weights renormalised when norm_topk_prob) -> each expert's SwiGLU over the
// tokens routed to it (grouped GEMMs, kernels/moe.h) -> weighted sum. Chosen per layer by
// TextConfig::is_sparse_layer; the dense SwiGLU MLP is the other choice (text_decoder.cpp).
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/moe.h"
#include "model/config.h"
#include "model/params.h"
#include "model/vision_encoder.h"  // Buffer

namespace qv::model {

struct MoeActs {
  Buffer probs;                                  // [N, E] router softmax
  Buffer weight;                                 // [N, k] routing weights of the chosen experts
  PoolVector<int32_t> expert;                    // [N, k] chosen experts
  PoolVector<int64_t> offsets, order, position;  // slots bucketed by expert (moe_bucket)
  Buffer xs, gate_up, act, ys;                   // per slot, in bucket order
};

// The load-balancing loss's gradient for one layer: d(objective)/d(probs[t, e]) =
// per_expert[e] for every token t whose valid flag is set (all tokens when valid is null).
struct MoeAuxGrad {
  const double* per_expert = nullptr;
  const uint8_t* valid = nullptr;
};

// Routing over the sparse layers of one forward: what HF's load_balancing_loss_func reads
// (router logits of all sparse layers concatenated, padding masked out) and the per-step router
// statistics.
struct RouterStats {
  std::vector<int64_t> tokens_per_expert;  // [E] slots routed to each expert, padding included
  std::vector<double> chosen;              // [E] valid tokens' slots routed to each expert
  std::vector<double> prob_sum;            // [E] valid tokens' router probabilities summed
  double valid_tokens = 0;                 // valid tokens x sparse layers

  void add(const MoeActs& acts, int64_t tokens, int64_t top_k, const uint8_t* valid);
  bool empty() const { return valid_tokens == 0; }
  // num_experts x sum_e (chosen_e / T) (prob_sum_e / T), T = valid_tokens (Switch-style).
  double aux_loss() const;
  // d(scale x aux_loss) / d probs[t, e] for a valid token t: the same for every t and layer.
  std::vector<double> aux_grad(double scale) const;
};

class MoeBlock {
 public:
  MoeBlock(const TextConfig& config, const TextLayerParams& params) : config_(config), p_(params) {}
  kernels::MoeDims dims(int64_t tokens) const;
  // h: [tokens, hidden] (the post-attention norm output); out (overwritten): [tokens, hidden].
  void forward(ParamStore& store, const float* h, int64_t tokens, MoeActs& acts, float* out) const;
  // d_h (overwritten) from d_out; accumulates the router's and experts' gradients. aux (may be
  // null) adds the load-balancing loss's gradient through the router probabilities.
  void backward(ParamStore& store, const float* h, int64_t tokens, const MoeActs& acts,
                const float* d_out, const MoeAuxGrad* aux, float* d_h) const;

 private:
  kernels::MoeExperts<float> experts(const ParamStore& store) const;
  const TextConfig& config_;
  const TextLayerParams& p_;
};

}  // namespace qv::model
