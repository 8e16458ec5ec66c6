#include "model/vision_block.h"

#include <cmath>

#include "kernels/activations.h"
#include "kernels/attention.h"
#include "kernels/linear.h"
#include "kernels/norms.h"
#include "kernels/rope.h"
#include "kernels/rows.h"

namespace qv::model {

namespace k = qv::kernels;

namespace {

// Full (non-causal) attention within each image / frame, heads of head_dim, scale hd^-0.5; bf16
// products under mixed precision (the store's bf16 copies).
k::AttentionDims attention_dims(const VisionConfig& c, int64_t tokens, bool bf16_products) {
  k::AttentionDims d;
  d.tokens = tokens;
  d.heads = c.num_heads;
  d.kv_heads = c.num_heads;
  d.head_dim = c.head_dim();
  d.causal = false;
  d.scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim()));
  d.bf16_products = bf16_products;
  return d;
}

int64_t sequences(const VisionPositions& pos) {
  return static_cast<int64_t>(pos.cu_seqlens.size()) - 1;
}

}  // namespace

void VisionBlock::forward(ParamStore& s, const VisionPositions& pos, Buffer x_in,
                          VisionBlockActs& A, Buffer& out) const {
  const VisionConfig& c = config_;
  const int64_t D = c.hidden_size, H = c.num_heads, hd = c.head_dim(), I = c.intermediate_size;
  const int64_t N = pos.patches;
  A.x_in = std::move(x_in);
  A.ln1.resize(N * D);
  A.ln1_mean.resize(N);
  A.ln1_rstd.resize(N);
  k::layernorm_forward(A.x_in.data(), s.value(p_.norm1_w), s.value(p_.norm1_b), A.ln1.data(),
                       A.ln1_mean.data(), A.ln1_rstd.data(), N, D, kVisionLayerNormEps);
  // One projection to [N, 3D] rows, split into q, k and v [N, D].
  Buffer qkv(N * 3 * D);
  k::linear_forward(A.ln1.data(), s.weight(p_.qkv_w), s.value(p_.qkv_b), qkv.data(), N, D, 3 * D);
  Buffer* parts[3] = {&A.q, &A.k, &A.v};
  for (int p = 0; p < 3; ++p) {
    parts[p]->resize(N * D);
    k::copy_columns(qkv.data() + p * D, 3 * D, parts[p]->data(), D, N, D);
  }
  k::rope_forward(A.q.data(), pos.cos.data(), pos.sin.data(), A.q.data(), N, H, hd);
  k::rope_forward(A.k.data(), pos.cos.data(), pos.sin.data(), A.k.data(), N, H, hd);
  A.attn.resize(N * D);
  A.lse.resize(N * H);
  k::attention_forward(A.q.data(), A.k.data(), A.v.data(), A.attn.data(), A.lse.data(),
                       pos.cu_seqlens.data(), sequences(pos),
                       attention_dims(c, N, s.has_bf16_copies()));
  A.x_mid.resize(N * D);
  k::linear_forward(A.attn.data(), s.weight(p_.proj_w), s.value(p_.proj_b), A.x_mid.data(), N, D,
                    D);
  k::add_inplace(A.x_mid.data(), A.x_in.data(), N * D);
  A.ln2.resize(N * D);
  A.ln2_mean.resize(N);
  A.ln2_rstd.resize(N);
  k::layernorm_forward(A.x_mid.data(), s.value(p_.norm2_w), s.value(p_.norm2_b), A.ln2.data(),
                       A.ln2_mean.data(), A.ln2_rstd.data(), N, D, kVisionLayerNormEps);
  A.fc1.resize(N * I);
  k::linear_forward(A.ln2.data(), s.weight(p_.fc1_w), s.value(p_.fc1_b), A.fc1.data(), N, D, I);
  A.act.resize(N * I);
  k::gelu_tanh_forward(A.fc1.data(), A.act.data(), N * I);
  out.resize(N * D);
  k::linear_forward(A.act.data(), s.weight(p_.fc2_w), s.value(p_.fc2_b), out.data(), N, I, D);
  k::add_inplace(out.data(), A.x_mid.data(), N * D);
}

void VisionBlock::backward(ParamStore& s, const VisionPositions& pos, const VisionBlockActs& A,
                           const Buffer& d_out, Buffer& d_in) const {
  const VisionConfig& c = config_;
  const int64_t D = c.hidden_size, H = c.num_heads, hd = c.head_dim(), I = c.intermediate_size;
  const int64_t N = pos.patches;
  // MLP branch: out = x_mid + fc2(gelu(fc1(ln2(x_mid)))).
  Buffer d_act(N * I), d_fc1(N * I), d_ln(N * D), d_mid(N * D);
  k::linear_backward(A.act.data(), s.weight(p_.fc2_w), d_out.data(), d_act.data(), s.grad(p_.fc2_w),
                     s.grad(p_.fc2_b), N, I, D);
  k::gelu_tanh_backward(A.fc1.data(), d_act.data(), d_fc1.data(), N * I);
  k::linear_backward(A.ln2.data(), s.weight(p_.fc1_w), d_fc1.data(), d_ln.data(), s.grad(p_.fc1_w),
                     s.grad(p_.fc1_b), N, D, I);
  k::layernorm_backward(A.x_mid.data(), s.value(p_.norm2_w), A.ln2_mean.data(), A.ln2_rstd.data(),
                        d_ln.data(), d_mid.data(), s.grad(p_.norm2_w), s.grad(p_.norm2_b), N, D);
  k::add_inplace(d_mid.data(), d_out.data(), N * D);
  // Attention branch: x_mid = x_in + proj(attn(rope(q), rope(k), v)).
  Buffer d_attn(N * D), dq(N * D), dk(N * D), dv(N * D), dqkv(N * 3 * D);
  k::linear_backward(A.attn.data(), s.weight(p_.proj_w), d_mid.data(), d_attn.data(),
                     s.grad(p_.proj_w), s.grad(p_.proj_b), N, D, D);
  k::attention_backward(A.q.data(), A.k.data(), A.v.data(), A.attn.data(), A.lse.data(),
                        d_attn.data(), dq.data(), dk.data(), dv.data(), pos.cu_seqlens.data(),
                        sequences(pos), attention_dims(c, N, s.has_bf16_copies()));
  k::rope_backward(dq.data(), pos.cos.data(), pos.sin.data(), dq.data(), N, H, hd);
  k::rope_backward(dk.data(), pos.cos.data(), pos.sin.data(), dk.data(), N, H, hd);
  const Buffer* parts[3] = {&dq, &dk, &dv};
  for (int p = 0; p < 3; ++p)
    k::copy_columns(parts[p]->data(), D, dqkv.data() + p * D, 3 * D, N, D);
  k::linear_backward(A.ln1.data(), s.weight(p_.qkv_w), dqkv.data(), d_ln.data(), s.grad(p_.qkv_w),
                     s.grad(p_.qkv_b), N, D, 3 * D);
  d_in.resize(N * D);
  k::layernorm_backward(A.x_in.data(), s.value(p_.norm1_w), A.ln1_mean.data(), A.ln1_rstd.data(),
                        d_ln.data(), d_in.data(), s.grad(p_.norm1_w), s.grad(p_.norm1_b), N, D);
  k::add_inplace(d_in.data(), d_mid.data(), N * D);
}

}  // namespace qv::model
