// The sparse mixture-of-experts feed-forward of a Qwen3-VL-MoE decoder layer (HF
// Qwen3VLMoeTextSparseMoeBlock): router mlp.gate (no bias) -> softmax in float32 -> top-k
// experts per token (weights renormalised when norm_topk_prob) -> each expert's SwiGLU over the
// tokens routed to it (grouped GEMMs, kernels/moe.h) -> weighted sum. Chosen per layer by
// TextConfig::is_sparse_layer; the dense SwiGLU MLP is the other choice (text_decoder.cpp).
// While an expert-parallel group is installed (model/expert_parallel.h) the experts' part runs
// split by expert over the group's ranks, with the slot rows exchanged all-to-all.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/device_buffer.h"
#include "kernels/moe.h"
#include "model/config.h"
#include "model/expert_parallel.h"
#include "model/params.h"
#include "model/vision_encoder.h"  // Buffer

namespace qv::model {

// What an expert-parallel forward adds: the traffic of each rank pair (host counts, for the
// exchange) and the rows this rank received, bucketed by its own (local) experts.
struct MoeParallelActs {
  HostVector<int64_t> send, recv;                // [ranks x local experts] rows to / from each rank
  HostVector<int64_t> send_floats, recv_floats;  // [ranks] floats to / from each rank
  DeviceBuffer<int64_t> offsets, order, position;  // received rows bucketed by local expert
  Buffer ones;                                     // [received rows] routing weight 1 (exact)
  Buffer slot_ys;                                  // [slots, H] experts' outputs, bucket order
};

// Device memory, like every activation: the host reads none of it (the router statistics reach
// the host through RouterStats::download, the expert-parallel counts through one copy of
// offsets).
struct MoeActs {
  Buffer probs;                                    // [N, E] router softmax
  Buffer weight;                                   // [N, k] routing weights of the chosen experts
  DeviceBuffer<int32_t> expert;                    // [N, k] chosen experts
  DeviceBuffer<int64_t> offsets, order, position;  // slots bucketed by expert (moe_bucket)
  // Per slot in bucket order; under expert parallelism per received row in local bucket order.
  Buffer xs, gate_up, act, ys;
  MoeParallelActs ep;  // expert parallelism only
};

// The load-balancing loss's gradient for one layer: d(objective)/d(probs[t, e]) =
// per_expert[e] for every token t whose valid flag is set (all tokens when valid is null). Both
// device memory (kernels::moe_add_aux_grad reads them).
struct MoeAuxGrad {
  const float* per_expert = nullptr;  // [E]
  const uint8_t* valid = nullptr;     // [N]
};

// Routing over the sparse layers of one forward: what HF's load_balancing_loss_func reads
// (router logits of all sparse layers concatenated, padding masked out) and the per-step router
// statistics. add() accumulates on the device (kernels::moe_router_stats); download() copies
// the totals to the host once per forward, where aux_loss() and aux_grad() read them.
// Arena vectors, so that a step after the first allocates nothing (tests/test_no_alloc.cpp).
struct RouterStats {
  struct OnDevice {
    DeviceBuffer<int64_t> tokens_per_expert;
    DeviceBuffer<double> chosen, prob_sum;
  } device;
  HostVector<int64_t> tokens_per_expert;  // [E] slots routed to each expert, padding included
  HostVector<double> chosen;              // [E] valid tokens' slots routed to each expert
  HostVector<double> prob_sum;            // [E] valid tokens' router probabilities summed
  double valid_tokens = 0;                // valid tokens x sparse layers

  // One sparse layer: valid (device memory, may be null) and valid_host (the same flags on the
  // host, for the count of valid tokens).
  void add(const MoeActs& acts, const kernels::MoeDims& d, const uint8_t* valid,
           const uint8_t* valid_host);
  // The device totals into the host vectors (one device-to-host copy each).
  void download();
  bool empty() const { return valid_tokens == 0; }
  // num_experts x sum_e (chosen_e / T) (prob_sum_e / T), T = valid_tokens (Switch-style).
  double aux_loss() const;
  // d(scale x aux_loss) / d probs[t, e] for a valid token t: the same for every t and layer.
  HostVector<double> aux_grad(double scale) const;
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
  // Router, top-k and bucketing: acts.probs, weight, expert, offsets, order, position.
  void route(ParamStore& store, const float* h, int64_t tokens, MoeActs& acts) const;
  // The experts' part split over the group (forward and backward), from the slots in bucket
  // order to the combined output / from d_out to the slots' input gradients d_h.
  void forward_parallel(ExpertExchange& ep, ParamStore& store, const float* h, int64_t tokens,
                        MoeActs& acts, float* out) const;
  void backward_parallel(ExpertExchange& ep, ParamStore& store, int64_t tokens, const MoeActs& acts,
                         const float* d_out, float* d_weight, float* d_h) const;
  // Experts [first, first + count) (all of them by default).
  kernels::MoeExperts<float> experts(const ParamStore& store, int64_t first = 0) const;
  const TextConfig& config_;
  const TextLayerParams& p_;
};

}  // namespace qv::model
