// The sparse mixture-of-experts block's kernels (Qwen3-VL-MoE), forward and backward:
//  - routing: softmax of the router logits, top-k experts per token, weights renormalised;
//  - bucketing: the tokens x top_k (token, choice) slots sorted by expert with a counting sort;
//  - experts: per expert, grouped GEMMs over only the slots routed to it (no dense all-experts
//    compute), SwiGLU, and the weighted combine back into token order;
//  - router statistics (the load-balancing loss's inputs) accumulated where the routing lives,
//    and that loss's gradient added to the router probabilities' gradient;
//  - the dispatch (token rows into slot order) and combine (slot rows back into tokens) on their
//    own, for expert parallelism, where the slot rows travel to the rank owning the expert in
//    between (model/moe_block.cpp).
// Expert weights are Hugging Face's fused layout: gate_up [E, H, 2I] (x . gate_up[e] gives the
// gate in columns [0, I) and up in [I, 2I)) and down [E, I, H]. Templated on float and double
// (double for finite-difference tests); the float experts can multiply in bf16 (see Weight in
// kernels/linear.h).
#pragma once
#include <cstdint>

#include "core/bf16.h"

namespace qv::kernels {

struct MoeDims {
  int64_t tokens = 0, hidden = 0, inter = 0, experts = 0, top_k = 0;
  bool norm_topk_prob = true;
  int64_t slots() const { return tokens * top_k; }
};

// probs[N, E] = softmax(logits) per row, in T (float32 for the model, as HF's dtype=float).
// probs may alias logits.
template <typename T>
void moe_softmax(const T* logits, T* probs, int64_t N, int64_t E);
// d_logits = probs * (d_probs - sum(d_probs * probs)) per row; d_logits may alias d_probs.
template <typename T>
void moe_softmax_backward(const T* probs, const T* d_probs, T* d_logits, int64_t N, int64_t E);

// Top-k of each row of probs as torch.topk(largest, sorted) computes it on the CPU: (value,
// index) pairs in index order, std::nth_element at k - 1 and std::sort of the first k - 1 with
// the comparator "a > b, NaN largest" (std::partial_sort when k * 64 <= E). Distinct values come
// out in descending order; equal values in the order libstdc++'s introselect leaves them, which
// is torch's order exactly (tests/test_kernels_moe.cpp checks cases recorded from torch 1.13.1).
// weight[N, k] = the chosen probabilities, divided by their sum when norm_topk_prob.
template <typename T>
void moe_topk(const T* probs, const MoeDims& d, int32_t* expert, T* weight);
// d_probs[N, E] (overwritten) from d_weight[N, k]: zero for experts not chosen.
template <typename T>
void moe_topk_backward(const T* probs, const int32_t* expert, const T* weight, const T* d_weight,
                       const MoeDims& d, T* d_probs);

// One sparse layer's router statistics, accumulated into [E] arrays that stay on the device
// (the host downloads them once per forward): tokens_per_expert[e] += slots routed to e (every
// token); for each valid token t (valid[t] != 0, all of them when valid is null), chosen[e] +=
// its slots routed to e and prob_sum[e] += probs[t, e], in double, adding the tokens in order
// (so the sum is the same whatever the backend).
void moe_router_stats(const float* probs, const int32_t* expert, const uint8_t* valid,
                      const MoeDims& d, int64_t* tokens_per_expert, double* chosen,
                      double* prob_sum);
// d_probs[t, e] += per_expert[e] for every valid token t (valid as above; [N, E] and [E]): the
// load-balancing loss's gradient, the same for every valid token.
void moe_add_aux_grad(const float* per_expert, const uint8_t* valid, int64_t N, int64_t E,
                      float* d_probs);

// Where the slots go. Slot s = token * top_k + j. Experts' slots are contiguous and in token
// order (a stable counting sort): order[offsets[e] .. offsets[e + 1]) are expert e's slots and
// position[s] is slot s's place in that order.
struct MoeRouting {
  const int64_t* offsets = nullptr;   // [E + 1]
  const int64_t* order = nullptr;     // [slots]
  const int64_t* position = nullptr;  // [slots]
};
void moe_bucket(const int32_t* expert, const MoeDims& d, int64_t* offsets, int64_t* order,
                int64_t* position);

// The experts' weights; the bf16 copies (float only, both or neither) switch the products to
// bf16 inputs with float accumulation.
template <typename T>
struct MoeExperts {
  const T* gate_up = nullptr;  // [E, H, 2I]
  const T* down = nullptr;     // [E, I, H]
  const bf16* gate_up_b16 = nullptr;
  const bf16* down_b16 = nullptr;
};

// Activations in slot order (position), kept for backward.
template <typename T>
struct MoeActs {
  T* xs = nullptr;       // [slots, H] the routed tokens' inputs
  T* gate_up = nullptr;  // [slots, 2I]
  T* act = nullptr;      // [slots, I] silu(gate) * up
  T* ys = nullptr;       // [slots, H] expert outputs, before the routing weight
};

// The same activations as backward reads them.
template <typename T>
struct MoeSaved {
  const T* xs = nullptr;
  const T* gate_up = nullptr;
  const T* act = nullptr;
  const T* ys = nullptr;
};

// Dispatch: xs[p, H] = x[order[p] / top_k] for every slot p in bucket order (overwritten).
template <typename T>
void moe_dispatch(const T* x, const MoeRouting& r, const MoeDims& d, T* xs);
// Its backward: dx[t] (overwritten) = sum over j, in order, of d_xs[position[t * top_k + j]].
template <typename T>
void moe_dispatch_backward(const T* d_xs, const MoeRouting& r, const MoeDims& d, T* dx);
// Combine: y[t, H] (overwritten) = sum over j, in order, of ys[position[t * top_k + j]] *
// weight[t, j] (ys in bucket order: the experts' outputs before the routing weight).
template <typename T>
void moe_combine(const T* ys, const MoeRouting& r, const T* weight, const MoeDims& d, T* y);
// Its backward: d_ys[p] = weight[s] * dy[s / top_k] and d_weight[s] = dy[s / top_k] . ys[p] with
// p = position[s] (both overwritten).
template <typename T>
void moe_combine_backward(const T* dy, const T* ys, const MoeRouting& r, const T* weight,
                          const MoeDims& d, T* d_ys, T* d_weight);

// y[N, H] (overwritten) = sum over j of weight[t, j] * expert_{expert[t, j]}(x[t]): moe_dispatch,
// the grouped expert GEMMs, moe_combine.
template <typename T>
void moe_experts_forward(const T* x, const MoeExperts<T>& w, const MoeRouting& r, const T* weight,
                         const MoeDims& d, const MoeActs<T>& acts, T* y);

// From dy[N, H]: dx[N, H] (overwritten), d_gate_up / d_down (accumulated; either may be null to
// skip it), d_weight[N, k] (overwritten). Experts that received no slot get no update.
template <typename T>
void moe_experts_backward(const T* dy, const MoeExperts<T>& w, const MoeRouting& r, const T* weight,
                          const MoeDims& d, const MoeSaved<T>& acts, T* dx, T* d_gate_up, T* d_down,
                          T* d_weight);

}  // namespace qv::kernels
