#include "model/text_decoder.h"

#include <cmath>

#include "kernels/cpu/activations.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/linear.h"
#include "kernels/cpu/norms.h"
#include "kernels/cpu/rope.h"

namespace qv::model {

namespace k = qv::kernels;

namespace {
k::AttentionDims attention_dims(const TextConfig& c, int64_t tokens) {
  k::AttentionDims d;
  d.tokens = tokens;
  d.heads = c.num_heads;
  d.kv_heads = c.num_kv_heads;
  d.head_dim = c.head_dim;
  d.causal = true;
  d.scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  return d;
}
}  // namespace

void DecoderLayer::mlp_forward(ParamStore& s, const float* h, int64_t N, DecoderLayerActs& A,
                               float* out) const {
  if (p_.sparse()) return MoeBlock(config_, p_).forward(s, h, N, A.moe, out);
  const int64_t H = config_.hidden_size, I = config_.intermediate_size;
  const float* none = nullptr;
  DenseMlpActs& m = A.mlp;
  m.gate.resize(N * I);
  m.up.resize(N * I);
  m.act.resize(N * I);
  k::linear_forward(h, s.weight(p_.gate), none, m.gate.data(), N, H, I);
  k::linear_forward(h, s.weight(p_.up), none, m.up.data(), N, H, I);
  k::swiglu_forward(m.gate.data(), m.up.data(), m.act.data(), N * I);
  k::linear_forward(m.act.data(), s.weight(p_.down), none, out, N, I, H);
}

void DecoderLayer::mlp_backward(ParamStore& s, const float* h, int64_t N, const DecoderLayerActs& A,
                                const float* d_out, const MoeAuxGrad* aux, float* d_h) const {
  if (p_.sparse()) return MoeBlock(config_, p_).backward(s, h, N, A.moe, d_out, aux, d_h);
  const int64_t H = config_.hidden_size, I = config_.intermediate_size;
  float* none = nullptr;
  const DenseMlpActs& m = A.mlp;
  Buffer d_act(N * I), d_gate(N * I), d_up(N * I);
  k::linear_backward(m.act.data(), s.weight(p_.down), d_out, d_act.data(), s.grad(p_.down), none, N,
                     I, H);
  k::swiglu_backward(m.gate.data(), m.up.data(), d_act.data(), d_gate.data(), d_up.data(), N * I);
  k::linear_backward(h, s.weight(p_.gate), d_gate.data(), d_h, s.grad(p_.gate), none, N, H, I);
  k::linear_backward(h, s.weight(p_.up), d_up.data(), d_h, s.grad(p_.up), none, N, H, I,
                     /*accumulate_dx=*/true);
}

void DecoderLayer::forward(ParamStore& s, const DecoderContext& ctx, Buffer x_in,
                           DecoderLayerActs& A, Buffer& out) const {
  const TextConfig& c = config_;
  const int64_t N = ctx.tokens, H = c.hidden_size, nh = c.num_heads, nkv = c.num_kv_heads,
                hd = c.head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  A.x_in = std::move(x_in);
  A.h1.resize(N * H);
  A.rstd1.resize(N);
  k::rmsnorm_forward(A.x_in.data(), s.value(p_.input_norm), A.h1.data(), A.rstd1.data(), N, H, eps);
  A.q_raw.resize(N * nh * hd);
  A.k_raw.resize(N * nkv * hd);
  A.v.resize(N * nkv * hd);
  k::linear_forward(A.h1.data(), s.weight(p_.q_proj), static_cast<const float*>(nullptr),
                    A.q_raw.data(), N, H, nh * hd);
  k::linear_forward(A.h1.data(), s.weight(p_.k_proj), static_cast<const float*>(nullptr),
                    A.k_raw.data(), N, H, nkv * hd);
  k::linear_forward(A.h1.data(), s.weight(p_.v_proj), static_cast<const float*>(nullptr),
                    A.v.data(), N, H, nkv * hd);
  // Per-head RMSNorm over head_dim (one weight shared by all heads), then rotary.
  A.q.resize(N * nh * hd);
  A.k.resize(N * nkv * hd);
  A.rstd_q.resize(N * nh);
  A.rstd_k.resize(N * nkv);
  k::rmsnorm_forward(A.q_raw.data(), s.value(p_.q_norm), A.q.data(), A.rstd_q.data(), N * nh, hd,
                     eps);
  k::rmsnorm_forward(A.k_raw.data(), s.value(p_.k_norm), A.k.data(), A.rstd_k.data(), N * nkv, hd,
                     eps);
  k::rope_forward(A.q.data(), ctx.cos.data(), ctx.sin.data(), A.q.data(), N, nh, hd);
  k::rope_forward(A.k.data(), ctx.cos.data(), ctx.sin.data(), A.k.data(), N, nkv, hd);
  A.attn.resize(N * nh * hd);
  A.lse.resize(N * nh);
  k::attention_forward(A.q.data(), A.k.data(), A.v.data(), A.attn.data(), A.lse.data(),
                       ctx.cu_seqlens.data(), static_cast<int64_t>(ctx.cu_seqlens.size()) - 1,
                       attention_dims(c, N),
                       ctx.key_valid.empty() ? nullptr : ctx.key_valid.data());
  A.x_mid.resize(N * H);
  k::linear_forward(A.attn.data(), s.weight(p_.o_proj), static_cast<const float*>(nullptr),
                    A.x_mid.data(), N, nh * hd, H);
  k::add_inplace(A.x_mid.data(), A.x_in.data(), N * H);
  A.h2.resize(N * H);
  A.rstd2.resize(N);
  k::rmsnorm_forward(A.x_mid.data(), s.value(p_.post_norm), A.h2.data(), A.rstd2.data(), N, H, eps);
  out.resize(N * H);
  mlp_forward(s, A.h2.data(), N, A, out.data());
  k::add_inplace(out.data(), A.x_mid.data(), N * H);
}

void DecoderLayer::decode(ParamStore& s, const float* cos, const float* sin, KvLayer& cache,
                          Buffer& x) const {
  const TextConfig& c = config_;
  const int64_t H = c.hidden_size, nh = c.num_heads, nkv = c.num_kv_heads, hd = c.head_dim;
  const float eps = static_cast<float>(c.rms_norm_eps);
  const float* none = nullptr;
  Buffer h(H), q(nh * hd), k(nkv * hd), v(nkv * hd), rs(std::max(nh, nkv));
  k::rmsnorm_forward(x.data(), s.value(p_.input_norm), h.data(), rs.data(), 1, H, eps);
  k::linear_forward(h.data(), s.weight(p_.q_proj), none, q.data(), 1, H, nh * hd);
  k::linear_forward(h.data(), s.weight(p_.k_proj), none, k.data(), 1, H, nkv * hd);
  k::linear_forward(h.data(), s.weight(p_.v_proj), none, v.data(), 1, H, nkv * hd);
  k::rmsnorm_forward(q.data(), s.value(p_.q_norm), q.data(), rs.data(), nh, hd, eps);
  k::rmsnorm_forward(k.data(), s.value(p_.k_norm), k.data(), rs.data(), nkv, hd, eps);
  k::rope_forward(q.data(), cos, sin, q.data(), 1, nh, hd);
  k::rope_forward(k.data(), cos, sin, k.data(), 1, nkv, hd);
  cache.k.insert(cache.k.end(), k.begin(), k.end());
  cache.v.insert(cache.v.end(), v.begin(), v.end());
  const int64_t length = static_cast<int64_t>(cache.k.size()) / (nkv * hd);
  Buffer attn(nh * hd), o(H);
  k::attention_decode(q.data(), cache.k.data(), cache.v.data(), attn.data(), length,
                      attention_dims(c, length));
  k::linear_forward(attn.data(), s.weight(p_.o_proj), none, o.data(), 1, nh * hd, H);
  k::add_inplace(x.data(), o.data(), H);
  Buffer down(H);
  k::rmsnorm_forward(x.data(), s.value(p_.post_norm), h.data(), rs.data(), 1, H, eps);
  DecoderLayerActs scratch;
  mlp_forward(s, h.data(), 1, scratch, down.data());
  k::add_inplace(x.data(), down.data(), H);
}

void DecoderLayer::backward(ParamStore& s, const DecoderContext& ctx, const DecoderLayerActs& A,
                            const Buffer& d_out, Buffer& d_in, const MoeAuxGrad* aux) const {
  const TextConfig& c = config_;
  const int64_t N = ctx.tokens, H = c.hidden_size, nh = c.num_heads, nkv = c.num_kv_heads,
                hd = c.head_dim;
  // Feed-forward branch.
  Buffer d_h(N * H), d_mid(N * H);
  mlp_backward(s, A.h2.data(), N, A, d_out.data(), aux, d_h.data());
  k::rmsnorm_backward(A.x_mid.data(), s.value(p_.post_norm), A.rstd2.data(), d_h.data(),
                      d_mid.data(), s.grad(p_.post_norm), N, H);
  k::add_inplace(d_mid.data(), d_out.data(), N * H);
  // Attention branch.
  Buffer d_attn(N * nh * hd), dq(N * nh * hd), dk(N * nkv * hd), dv(N * nkv * hd);
  k::linear_backward(A.attn.data(), s.weight(p_.o_proj), d_mid.data(), d_attn.data(),
                     s.grad(p_.o_proj), static_cast<float*>(nullptr), N, nh * hd, H);
  k::attention_backward(A.q.data(), A.k.data(), A.v.data(), A.attn.data(), A.lse.data(),
                        d_attn.data(), dq.data(), dk.data(), dv.data(), ctx.cu_seqlens.data(),
                        static_cast<int64_t>(ctx.cu_seqlens.size()) - 1, attention_dims(c, N),
                        ctx.key_valid.empty() ? nullptr : ctx.key_valid.data());
  k::rope_backward(dq.data(), ctx.cos.data(), ctx.sin.data(), dq.data(), N, nh, hd);
  k::rope_backward(dk.data(), ctx.cos.data(), ctx.sin.data(), dk.data(), N, nkv, hd);
  Buffer dq_raw(N * nh * hd), dk_raw(N * nkv * hd);
  k::rmsnorm_backward(A.q_raw.data(), s.value(p_.q_norm), A.rstd_q.data(), dq.data(), dq_raw.data(),
                      s.grad(p_.q_norm), N * nh, hd);
  k::rmsnorm_backward(A.k_raw.data(), s.value(p_.k_norm), A.rstd_k.data(), dk.data(), dk_raw.data(),
                      s.grad(p_.k_norm), N * nkv, hd);
  k::linear_backward(A.h1.data(), s.weight(p_.q_proj), dq_raw.data(), d_h.data(), s.grad(p_.q_proj),
                     static_cast<float*>(nullptr), N, H, nh * hd);
  k::linear_backward(A.h1.data(), s.weight(p_.k_proj), dk_raw.data(), d_h.data(), s.grad(p_.k_proj),
                     static_cast<float*>(nullptr), N, H, nkv * hd, true);
  k::linear_backward(A.h1.data(), s.weight(p_.v_proj), dv.data(), d_h.data(), s.grad(p_.v_proj),
                     static_cast<float*>(nullptr), N, H, nkv * hd, true);
  d_in.resize(N * H);
  k::rmsnorm_backward(A.x_in.data(), s.value(p_.input_norm), A.rstd1.data(), d_h.data(),
                      d_in.data(), s.grad(p_.input_norm), N, H);
  k::add_inplace(d_in.data(), d_mid.data(), N * H);
}

}  // namespace qv::model
