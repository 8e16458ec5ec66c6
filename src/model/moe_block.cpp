#include "model/moe_block.h"

#include "kernels/device.h"
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

k::MoeExperts<float> MoeBlock::experts(const ParamStore& s, int64_t first) const {
  const int64_t gu = first * config_.hidden_size * 2 * config_.moe_intermediate_size;
  const int64_t dn = first * config_.moe_intermediate_size * config_.hidden_size;
  const bf16* gu_b = s.value_bf16(p_.experts_gate_up);
  const bf16* dn_b = s.value_bf16(p_.experts_down);
  return {s.value(p_.experts_gate_up) + gu, s.value(p_.experts_down) + dn,
          gu_b ? gu_b + gu : nullptr, dn_b ? dn_b + dn : nullptr};
}

void MoeBlock::route(ParamStore& s, const float* h, int64_t N, MoeActs& a) const {
  const k::MoeDims d = dims(N);
  const int64_t E = d.experts, S = d.slots(), H = d.hidden;
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
}

void MoeBlock::forward(ParamStore& s, const float* h, int64_t N, MoeActs& a, float* out) const {
  route(s, h, N, a);
  if (ExpertExchange* ep = expert_exchange(); ep && ep->size() > 1)
    return forward_parallel(*ep, s, h, N, a, out);
  const k::MoeDims d = dims(N);
  const int64_t S = d.slots(), H = d.hidden, I = d.inter;
  a.xs.resize(S * H);
  a.gate_up.resize(S * 2 * I);
  a.act.resize(S * I);
  a.ys.resize(S * H);
  k::moe_experts_forward(h, experts(s), {a.offsets.data(), a.order.data(), a.position.data()},
                         a.weight.data(), d,
                         {a.xs.data(), a.gate_up.data(), a.act.data(), a.ys.data()}, out);
}

namespace {

// The owner's view of the rows it received: `rows` rows, top_k 1, its `local` experts.
k::MoeDims owner_dims(k::MoeDims d, int64_t rows, int64_t local) {
  d.tokens = rows;
  d.top_k = 1;
  d.experts = local;
  return d;
}

int64_t sum(const HostVector<int64_t>& v) {
  int64_t total = 0;
  for (int64_t x : v) total += x;
  return total;
}

// A host copy of a device array (one device-to-host copy; on the CPU a plain copy).
template <typename T>
HostVector<T> to_host(const DeviceBuffer<T>& v) {
  HostVector<T> out(v.size());
  if (!v.empty()) k::copy_bytes(out.data(), kCpuDevice, v.data(), v.device(), v.size() * sizeof(T));
  return out;
}

}  // namespace

// The slots are in bucket order, so expert ranges and hence destination ranks are contiguous:
// rank r gets bucket rows [offsets[r El], offsets[(r + 1) El]). The owner receives, per source
// rank in rank order, its experts' rows in expert order, regroups them by expert (a stable
// bucketing, so an expert's rows stay in (source rank, token) order: the order one process with
// the group's combined batch would use) and runs the same grouped-GEMM kernel with top-k 1 and
// weight 1 (exact), which leaves each row's output in received order to send back.
void MoeBlock::forward_parallel(ExpertExchange& ep, ParamStore& s, const float* h, int64_t N,
                                MoeActs& a, float* out) const {
  const k::MoeDims d = dims(N);
  const int64_t S = d.slots(), H = d.hidden, I = d.inter, R = ep.size(), L = d.experts / R;
  MoeParallelActs& p = a.ep;
  p.send.resize(R * L);
  p.recv.resize(R * L);
  const HostVector<int64_t> offsets = to_host(a.offsets);  // the counts the exchange sends
  for (int64_t e = 0; e < R * L; ++e) p.send[e] = offsets[e + 1] - offsets[e];
  ep.exchange_counts(p.send.data(), p.recv.data(), L);
  p.send_floats.assign(R, 0);
  p.recv_floats.assign(R, 0);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t l = 0; l < L; ++l) {
      p.send_floats[r] += p.send[r * L + l] * H;
      p.recv_floats[r] += p.recv[r * L + l] * H;
    }
  const int64_t rows = sum(p.recv);
  const k::MoeRouting routing{a.offsets.data(), a.order.data(), a.position.data()};
  Buffer xs_send(S * H), x_recv(rows * H), y_recv(rows * H);
  k::moe_dispatch(h, routing, d, xs_send.data());
  ep.exchange_rows(xs_send.data(), p.send_floats.data(), x_recv.data(), p.recv_floats.data());
  Mirrored<int32_t> local;  // each received row's local expert
  local.host.resize(rows);
  for (int64_t r = 0, i = 0; r < R; ++r)
    for (int64_t l = 0; l < L; ++l)
      for (int64_t n = 0; n < p.recv[r * L + l]; ++n) local.host[i++] = static_cast<int32_t>(l);
  local.upload();
  const k::MoeDims od = owner_dims(d, rows, L);
  p.offsets.resize(L + 1);
  p.order.resize(rows);
  p.position.resize(rows);
  k::moe_bucket(local.data(), od, p.offsets.data(), p.order.data(), p.position.data());
  p.ones.assign(rows, 1.0f);
  a.xs.resize(rows * H);
  a.gate_up.resize(rows * 2 * I);
  a.act.resize(rows * I);
  a.ys.resize(rows * H);
  k::moe_experts_forward(x_recv.data(), experts(s, ep.rank() * L),
                         {p.offsets.data(), p.order.data(), p.position.data()}, p.ones.data(), od,
                         {a.xs.data(), a.gate_up.data(), a.act.data(), a.ys.data()}, y_recv.data());
  p.slot_ys.resize(S * H);
  ep.exchange_rows(y_recv.data(), p.recv_floats.data(), p.slot_ys.data(), p.send_floats.data());
  k::moe_combine(p.slot_ys.data(), routing, a.weight.data(), d, out);
}

void MoeBlock::backward_parallel(ExpertExchange& ep, ParamStore& s, int64_t N, const MoeActs& a,
                                 const float* d_out, float* d_weight, float* d_h) const {
  const k::MoeDims d = dims(N);
  const int64_t S = d.slots(), H = d.hidden, I = d.inter, R = ep.size(), L = d.experts / R;
  const MoeParallelActs& p = a.ep;
  const int64_t rows = sum(p.recv), first = ep.rank() * L;
  const k::MoeRouting routing{a.offsets.data(), a.order.data(), a.position.data()};
  Buffer d_ys(S * H), dy_recv(rows * H), dx_recv(rows * H), unused(rows), d_xs(S * H);
  k::moe_combine_backward(d_out, p.slot_ys.data(), routing, a.weight.data(), d, d_ys.data(),
                          d_weight);
  ep.exchange_rows(d_ys.data(), p.send_floats.data(), dy_recv.data(), p.recv_floats.data());
  float* g_gu = s.grad(p_.experts_gate_up);
  float* g_dn = s.grad(p_.experts_down);
  k::moe_experts_backward(dy_recv.data(), experts(s, first),
                          {p.offsets.data(), p.order.data(), p.position.data()}, p.ones.data(),
                          owner_dims(d, rows, L),
                          {a.xs.data(), a.gate_up.data(), a.act.data(), a.ys.data()},
                          dx_recv.data(), g_gu ? g_gu + first * H * 2 * I : nullptr,
                          g_dn ? g_dn + first * I * H : nullptr, unused.data());
  ep.exchange_rows(dx_recv.data(), p.recv_floats.data(), d_xs.data(), p.send_floats.data());
  k::moe_dispatch_backward(d_xs.data(), routing, d, d_h);
}

void MoeBlock::backward(ParamStore& s, const float* h, int64_t N, const MoeActs& a,
                        const float* d_out, const MoeAuxGrad* aux, float* d_h) const {
  const k::MoeDims d = dims(N);
  const int64_t E = d.experts, H = d.hidden;
  Buffer d_weight(d.slots()), d_logits(N * E);
  if (ExpertExchange* ep = expert_exchange(); ep && ep->size() > 1)
    backward_parallel(*ep, s, N, a, d_out, d_weight.data(), d_h);
  else
    k::moe_experts_backward(d_out, experts(s),
                            {a.offsets.data(), a.order.data(), a.position.data()}, a.weight.data(),
                            d, {a.xs.data(), a.gate_up.data(), a.act.data(), a.ys.data()}, d_h,
                            s.grad(p_.experts_gate_up), s.grad(p_.experts_down), d_weight.data());
  k::moe_topk_backward(a.probs.data(), a.expert.data(), a.weight.data(), d_weight.data(), d,
                       d_logits.data());
  if (aux && aux->per_expert)
    k::moe_add_aux_grad(aux->per_expert, aux->valid, N, E, d_logits.data());
  k::moe_softmax_backward(a.probs.data(), d_logits.data(), d_logits.data(), N, E);
  k::linear_backward(h, s.weight(p_.router), d_logits.data(), d_h, s.grad(p_.router),
                     static_cast<float*>(nullptr), N, H, E, /*accumulate_dx=*/true);
}

}  // namespace qv::model

namespace qv::model {

void RouterStats::add(const MoeActs& a, const k::MoeDims& d, const uint8_t* valid,
                      const uint8_t* valid_host) {
  const int64_t E = d.experts;
  if (device.tokens_per_expert.empty()) {
    device.tokens_per_expert.assign(E, 0);
    device.chosen.assign(E, 0.0);
    device.prob_sum.assign(E, 0.0);
  }
  for (int64_t t = 0; t < d.tokens; ++t)
    if (!valid_host || valid_host[t]) valid_tokens += 1;
  k::moe_router_stats(a.probs.data(), a.expert.data(), valid, d, device.tokens_per_expert.data(),
                      device.chosen.data(), device.prob_sum.data());
}

void RouterStats::download() {
  tokens_per_expert = to_host(device.tokens_per_expert);
  chosen = to_host(device.chosen);
  prob_sum = to_host(device.prob_sum);
}

double RouterStats::aux_loss() const {
  if (empty()) return 0;
  double sum = 0;
  for (size_t e = 0; e < chosen.size(); ++e) sum += chosen[e] * prob_sum[e];
  return static_cast<double>(chosen.size()) * sum / (valid_tokens * valid_tokens);
}

HostVector<double> RouterStats::aux_grad(double scale) const {
  HostVector<double> g(chosen.size(), 0.0);
  if (empty()) return g;
  for (size_t e = 0; e < chosen.size(); ++e)
    g[e] = scale * static_cast<double>(chosen.size()) * chosen[e] / (valid_tokens * valid_tokens);
  return g;
}

}  // namespace qv::model
