#include "model/text_decoder.h"

#include <cmath>

#include "core/error.h"
#include "kernels/activations.h"
#include "kernels/attention.h"
#include "kernels/linear.h"
#include "kernels/norms.h"
#include "kernels/rope.h"
#include "kernels/rows.h"

namespace qv::model {

namespace k = qv::kernels;

namespace {
// Causal attention over documents; bf16 products under mixed precision (the store's bf16 copies).
k::AttentionDims attention_dims(const TextConfig& c, int64_t tokens, bool bf16_products) {
  k::AttentionDims d;
  d.tokens = tokens;
  d.heads = c.num_heads;
  d.kv_heads = c.num_kv_heads;
  d.head_dim = c.head_dim;
  d.causal = true;
  d.scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  d.bf16_products = bf16_products;
  return d;
}
}  // namespace

void DecoderLayer::linear(ParamStore& s, LoraTarget t, ParamRef w, const float* x, float* y,
                          int64_t M, int64_t K, int64_t N, DecoderLayerActs* acts,
                          int64_t dropout_key) const {
  const LoraAdapter* adapter = lora_ ? lora_->get(t) : nullptr;
  dense_forward(s, w, adapter, x, y, M, K, N,
                adapter && acts ? &acts->lora[static_cast<int>(t)] : nullptr, dropout_key);
}

void DecoderLayer::linear_backward(ParamStore& s, LoraTarget t, ParamRef w, const float* x,
                                   const DecoderLayerActs& acts, const float* dy, float* dx,
                                   int64_t M, int64_t K, int64_t N, bool accumulate_dx,
                                   int64_t dropout_key) const {
  dense_backward(s, w, lora_ ? lora_->get(t) : nullptr, x, &acts.lora[static_cast<int>(t)], dy, dx,
                 M, K, N, accumulate_dx, dropout_key);
}

void DecoderLayer::mlp_forward(ParamStore& s, const float* h, int64_t N, DecoderLayerActs& A,
                               float* out, int64_t key) const {
  if (p_.sparse()) return MoeBlock(config_, p_).forward(s, h, N, A.moe, out);
  const int64_t H = config_.hidden_size, I = config_.intermediate_size;
  DenseMlpActs& m = A.mlp;
  m.gate.resize(N * I);
  m.up.resize(N * I);
  m.act.resize(N * I);
  linear(s, LoraTarget::kGate, p_.gate, h, m.gate.data(), N, H, I, &A, key);
  linear(s, LoraTarget::kUp, p_.up, h, m.up.data(), N, H, I, &A, key);
  k::swiglu_forward(m.gate.data(), m.up.data(), m.act.data(), N * I);
  linear(s, LoraTarget::kDown, p_.down, m.act.data(), out, N, I, H, &A, key);
}

void DecoderLayer::mlp_backward(ParamStore& s, const float* h, int64_t N, const DecoderLayerActs& A,
                                const float* d_out, const MoeAuxGrad* aux, float* d_h,
                                int64_t key) const {
  if (p_.sparse()) return MoeBlock(config_, p_).backward(s, h, N, A.moe, d_out, aux, d_h);
  const int64_t H = config_.hidden_size, I = config_.intermediate_size;
  const DenseMlpActs& m = A.mlp;
  Buffer d_act(N * I), d_gate(N * I), d_up(N * I);
  linear_backward(s, LoraTarget::kDown, p_.down, m.act.data(), A, d_out, d_act.data(), N, I, H,
                  false, key);
  k::swiglu_backward(m.gate.data(), m.up.data(), d_act.data(), d_gate.data(), d_up.data(), N * I);
  linear_backward(s, LoraTarget::kGate, p_.gate, h, A, d_gate.data(), d_h, N, H, I, false, key);
  linear_backward(s, LoraTarget::kUp, p_.up, h, A, d_up.data(), d_h, N, H, I,
                  /*accumulate_dx=*/true, key);
}

void DecoderLayer::attend(const DecoderContext& ctx, DecoderLayerActs& A, KvLayer* cache,
                          bool bf16_products) const {
  const TextConfig& c = config_;
  const int64_t N = ctx.tokens, nh = c.num_heads, kv_dim = c.num_kv_heads * c.head_dim;
  const int64_t cached = cache ? static_cast<int64_t>(cache->k.size()) / kv_dim : 0;
  if (cache) {  // append this pass's rows
    for (auto [from, to] : {std::pair{&A.k, &cache->k}, {&A.v, &cache->v}}) {
      to->resize((cached + N) * kv_dim);
      k::copy_rows(from->data(), nullptr, to->data() + cached * kv_dim, nullptr, N, kv_dim);
    }
  }
  A.attn.resize(N * nh * c.head_dim);
  if (cached > 0) {  // decode: the new token attends to every cached position, itself included
    QV_CHECK(N == 1, "a filled kv cache takes one token at a time, got ", N);
    k::attention_decode(A.q.data(), cache->k.data(), cache->v.data(), A.attn.data(), cached + 1,
                        attention_dims(c, cached + 1, bf16_products));
    return;
  }
  A.lse.resize(N * nh);
  k::attention_forward(A.q.data(), A.k.data(), A.v.data(), A.attn.data(), A.lse.data(),
                       ctx.cu_seqlens.data(), static_cast<int64_t>(ctx.cu_seqlens.size()) - 1,
                       attention_dims(c, N, bf16_products), ctx.key_valid.data_or_null());
}

void DecoderLayer::forward(ParamStore& s, const DecoderContext& ctx, Buffer x_in,
                           DecoderLayerActs& A, Buffer& out, KvLayer* cache) const {
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
  const int64_t key = ctx.lora_dropout_key;
  linear(s, LoraTarget::kQ, p_.q_proj, A.h1.data(), A.q_raw.data(), N, H, nh * hd, &A, key);
  linear(s, LoraTarget::kK, p_.k_proj, A.h1.data(), A.k_raw.data(), N, H, nkv * hd, &A, key);
  linear(s, LoraTarget::kV, p_.v_proj, A.h1.data(), A.v.data(), N, H, nkv * hd, &A, key);
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
  attend(ctx, A, cache, s.has_bf16_copies());
  A.x_mid.resize(N * H);
  linear(s, LoraTarget::kO, p_.o_proj, A.attn.data(), A.x_mid.data(), N, nh * hd, H, &A, key);
  k::add_inplace(A.x_mid.data(), A.x_in.data(), N * H);
  A.h2.resize(N * H);
  A.rstd2.resize(N);
  k::rmsnorm_forward(A.x_mid.data(), s.value(p_.post_norm), A.h2.data(), A.rstd2.data(), N, H, eps);
  out.resize(N * H);
  mlp_forward(s, A.h2.data(), N, A, out.data(), key);
  k::add_inplace(out.data(), A.x_mid.data(), N * H);
}

void DecoderLayer::backward(ParamStore& s, const DecoderContext& ctx, const DecoderLayerActs& A,
                            const Buffer& d_out, Buffer& d_in, const MoeAuxGrad* aux) const {
  const TextConfig& c = config_;
  const int64_t N = ctx.tokens, H = c.hidden_size, nh = c.num_heads, nkv = c.num_kv_heads,
                hd = c.head_dim;
  const int64_t key = ctx.lora_dropout_key;
  // Feed-forward branch.
  Buffer d_h(N * H), d_mid(N * H);
  mlp_backward(s, A.h2.data(), N, A, d_out.data(), aux, d_h.data(), key);
  k::rmsnorm_backward(A.x_mid.data(), s.value(p_.post_norm), A.rstd2.data(), d_h.data(),
                      d_mid.data(), s.grad(p_.post_norm), N, H);
  k::add_inplace(d_mid.data(), d_out.data(), N * H);
  // Attention branch.
  Buffer d_attn(N * nh * hd), dq(N * nh * hd), dk(N * nkv * hd), dv(N * nkv * hd);
  linear_backward(s, LoraTarget::kO, p_.o_proj, A.attn.data(), A, d_mid.data(), d_attn.data(), N,
                  nh * hd, H, false, key);
  k::attention_backward(A.q.data(), A.k.data(), A.v.data(), A.attn.data(), A.lse.data(),
                        d_attn.data(), dq.data(), dk.data(), dv.data(), ctx.cu_seqlens.data(),
                        static_cast<int64_t>(ctx.cu_seqlens.size()) - 1,
                        attention_dims(c, N, s.has_bf16_copies()), ctx.key_valid.data_or_null());
  k::rope_backward(dq.data(), ctx.cos.data(), ctx.sin.data(), dq.data(), N, nh, hd);
  k::rope_backward(dk.data(), ctx.cos.data(), ctx.sin.data(), dk.data(), N, nkv, hd);
  Buffer dq_raw(N * nh * hd), dk_raw(N * nkv * hd);
  k::rmsnorm_backward(A.q_raw.data(), s.value(p_.q_norm), A.rstd_q.data(), dq.data(), dq_raw.data(),
                      s.grad(p_.q_norm), N * nh, hd);
  k::rmsnorm_backward(A.k_raw.data(), s.value(p_.k_norm), A.rstd_k.data(), dk.data(), dk_raw.data(),
                      s.grad(p_.k_norm), N * nkv, hd);
  linear_backward(s, LoraTarget::kQ, p_.q_proj, A.h1.data(), A, dq_raw.data(), d_h.data(), N, H,
                  nh * hd, false, key);
  linear_backward(s, LoraTarget::kK, p_.k_proj, A.h1.data(), A, dk_raw.data(), d_h.data(), N, H,
                  nkv * hd, true, key);
  linear_backward(s, LoraTarget::kV, p_.v_proj, A.h1.data(), A, dv.data(), d_h.data(), N, H,
                  nkv * hd, true, key);
  d_in.resize(N * H);
  k::rmsnorm_backward(A.x_in.data(), s.value(p_.input_norm), A.rstd1.data(), d_h.data(),
                      d_in.data(), s.grad(p_.input_norm), N, H);
  k::add_inplace(d_in.data(), d_mid.data(), N * H);
}

}  // namespace qv::model
