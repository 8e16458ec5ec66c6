#include "model/moe_block.h"

#include "kernels/linear.h"

namespace qv::model {

namespace k = qv::kernels;

k::MoeDims MoeBlock::dims(int64_t tokens) const {
  k::MoeDims d;
  d.tokens = tokens;
  d.hidden = config_.hidden_size;
  d.inter = config_.moe_intermediate_size;
  d.experts = config_.num_experts;
  d.top_k = config_.num_experts_per_tok;
  d.norm_topk_prob = config_.norm_topk_prob;
  return d;
}

k::MoeExperts<float> MoeBlock::experts(const ParamStore& s) const {
  return {s.value(p_.experts_gate_up), s.value(p_.experts_down), s.value_bf16(p_.experts_gate_up),
          s.value_bf16(p_.experts_down)};
}

void MoeBlock::forward(ParamStore& s, const float* h, int64_t N, MoeActs& a, float* out) const {
  const k::MoeDims d = dims(N);
  const int64_t E = d.experts, S = d.slots(), H = d.hidden, I = d.inter;
  a.probs.resize(N * E);
  k::linear_forward(h, s.weight(p_.router), static_cast<const float*>(nullptr), a.probs.data(), N,
                    H, E);
  k::moe_softmax(a.probs.data(), a.probs.data(), N, E);
  a.expert.resize(S);
  a.weight.resize(S);
  k::moe_topk(a.probs.data(), d, a.expert.data(), a.weight.data());
  a.offsets.resize(E + 1);
  a.order.resize(S);
  a.position.resize(S);
  k::moe_bucket(a.expert.data(), d, a.offsets.data(), a.order.data(), a.position.data());
  a.xs.resize(S * H);
  a.gate_up.resize(S * 2 * I);
  a.act.resize(S * I);
  a.ys.resize(S * H);
  k::moe_experts_forward(h, experts(s), {a.offsets.data(), a.order.data(), a.position.data()},
                         a.weight.data(), d,
                         {a.xs.data(), a.gate_up.data(), a.act.data(), a.ys.data()}, out);
}

void MoeBlock::backward(ParamStore& s, const float* h, int64_t N, const MoeActs& a,
                        const float* d_out, const MoeAuxGrad* aux, float* d_h) const {
  const k::MoeDims d = dims(N);
  const int64_t E = d.experts, H = d.hidden;
  Buffer d_weight(d.slots()), d_logits(N * E);
  k::moe_experts_backward(d_out, experts(s), {a.offsets.data(), a.order.data(), a.position.data()},
                          a.weight.data(), d,
                          {a.xs.data(), a.gate_up.data(), a.act.data(), a.ys.data()}, d_h,
                          s.grad(p_.experts_gate_up), s.grad(p_.experts_down), d_weight.data());
  k::moe_topk_backward(a.probs.data(), a.expert.data(), a.weight.data(), d_weight.data(), d,
                       d_logits.data());
  if (aux && aux->per_expert)
    for (int64_t t = 0; t < N; ++t) {
      if (aux->valid && !aux->valid[t]) continue;
      for (int64_t e = 0; e < E; ++e) d_logits[t * E + e] += static_cast<float>(aux->per_expert[e]);
    }
  k::moe_softmax_backward(a.probs.data(), d_logits.data(), d_logits.data(), N, E);
  k::linear_backward(h, s.weight(p_.router), d_logits.data(), d_h, s.grad(p_.router),
                     static_cast<float*>(nullptr), N, H, E, /*accumulate_dx=*/true);
}

}  // namespace qv::model

namespace qv::model {

void RouterStats::add(const MoeActs& a, int64_t tokens, int64_t top_k, const uint8_t* valid) {
  const int64_t E = static_cast<int64_t>(a.offsets.size()) - 1;
  if (tokens_per_expert.empty()) {
    tokens_per_expert.assign(E, 0);
    chosen.assign(E, 0.0);
    prob_sum.assign(E, 0.0);
  }
  for (int64_t e = 0; e < E; ++e) tokens_per_expert[e] += a.offsets[e + 1] - a.offsets[e];
  for (int64_t t = 0; t < tokens; ++t) {
    if (valid && !valid[t]) continue;
    valid_tokens += 1;
    for (int64_t j = 0; j < top_k; ++j) chosen[a.expert[t * top_k + j]] += 1;
    for (int64_t e = 0; e < E; ++e) prob_sum[e] += a.probs[t * E + e];
  }
}

double RouterStats::aux_loss() const {
  if (empty()) return 0;
  double sum = 0;
  for (size_t e = 0; e < chosen.size(); ++e) sum += chosen[e] * prob_sum[e];
  return static_cast<double>(chosen.size()) * sum / (valid_tokens * valid_tokens);
}

std::vector<double> RouterStats::aux_grad(double scale) const {
  std::vector<double> g(chosen.size(), 0.0);
  if (empty()) return g;
  for (size_t e = 0; e < chosen.size(); ++e)
    g[e] = scale * static_cast<double>(chosen.size()) * chosen[e] / (valid_tokens * valid_tokens);
  return g;
}

}  // namespace qv::model
