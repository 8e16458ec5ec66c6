#include "model/vision_encoder.h"

#include <cmath>
#include <cstring>

#include "kernels/activations.h"
#include "kernels/attention.h"
#include "kernels/embedding.h"
#include "kernels/linear.h"
#include "kernels/norms.h"
#include "kernels/rope.h"

namespace qv::model {

namespace k = qv::kernels;

namespace {

constexpr float kLayerNormEps = 1e-6f;

// Full (non-causal) attention within each image / frame, heads of head_dim, scale hd^-0.5.
k::AttentionDims attention_dims(const VisionConfig& c, int64_t tokens) {
  k::AttentionDims d;
  d.tokens = tokens;
  d.heads = c.num_heads;
  d.kv_heads = c.num_heads;
  d.head_dim = c.head_dim();
  d.causal = false;
  d.scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim()));
  return d;
}

Tensor to_tensor(const Buffer& b, Shape shape) {
  return Tensor::from_f32(b, std::move(shape));
}

// Splits qkv rows [N, 3D] into q, k, v [N, D] each.
void split_qkv(const Buffer& qkv, int64_t N, int64_t D, Buffer& q, Buffer& kk, Buffer& v) {
  q.resize(N * D);
  kk.resize(N * D);
  v.resize(N * D);
#pragma omp parallel for
  for (int64_t i = 0; i < N; ++i) {
    std::memcpy(&q[i * D], &qkv[i * 3 * D], D * sizeof(float));
    std::memcpy(&kk[i * D], &qkv[i * 3 * D + D], D * sizeof(float));
    std::memcpy(&v[i * D], &qkv[i * 3 * D + 2 * D], D * sizeof(float));
  }
}

bool is_deepstack(const VisionConfig& c, int64_t block) {
  for (int64_t d : c.deepstack_visual_indexes)
    if (d == block) return true;
  return false;
}

}  // namespace

void VisionEncoder::merger_forward(ParamStore& s, const MergerParams& m, bool postshuffle,
                                   const Buffer& x, int64_t patches, MergerActs& a,
                                   Buffer& out) const {
  const int64_t D = config_.hidden_size, M = config_.merged_dim();
  const int64_t rows = patches / config_.merge_unit();
  // Post-shuffle norm works on merged rows of M values; pre-shuffle on each patch's D values.
  const int64_t norm_rows = postshuffle ? rows : patches, norm_dim = postshuffle ? M : D;
  a.ln.resize(patches * D);
  a.ln_mean.resize(norm_rows);
  a.ln_rstd.resize(norm_rows);
  k::layernorm_forward(x.data(), s.value(m.norm_w), s.value(m.norm_b), a.ln.data(),
                       a.ln_mean.data(), a.ln_rstd.data(), norm_rows, norm_dim, kLayerNormEps);
  a.fc1.resize(rows * M);
  k::linear_forward(a.ln.data(), s.weight(m.fc1_w), s.value(m.fc1_b), a.fc1.data(), rows, M, M);
  a.act.resize(rows * M);
  k::gelu_erf_forward(a.fc1.data(), a.act.data(), rows * M);
  out.resize(rows * config_.out_hidden_size);
  k::linear_forward(a.act.data(), s.weight(m.fc2_w), s.value(m.fc2_b), out.data(), rows, M,
                    config_.out_hidden_size);
}

void VisionEncoder::merger_backward(ParamStore& s, const MergerParams& m, bool postshuffle,
                                    const Buffer& x, int64_t patches, const MergerActs& a,
                                    const Buffer& dout, Buffer& dx) const {
  const int64_t D = config_.hidden_size, M = config_.merged_dim();
  const int64_t rows = patches / config_.merge_unit();
  const int64_t norm_rows = postshuffle ? rows : patches, norm_dim = postshuffle ? M : D;
  Buffer d_act(rows * M), d_fc1(rows * M), d_ln(rows * M);
  k::linear_backward(a.act.data(), s.weight(m.fc2_w), dout.data(), d_act.data(), s.grad(m.fc2_w),
                     s.grad(m.fc2_b), rows, M, config_.out_hidden_size);
  k::gelu_erf_backward(a.fc1.data(), d_act.data(), d_fc1.data(), rows * M);
  k::linear_backward(a.ln.data(), s.weight(m.fc1_w), d_fc1.data(), d_ln.data(), s.grad(m.fc1_w),
                     s.grad(m.fc1_b), rows, M, M);
  dx.resize(patches * D);
  k::layernorm_backward(x.data(), s.value(m.norm_w), a.ln_mean.data(), a.ln_rstd.data(),
                        d_ln.data(), dx.data(), s.grad(m.norm_w), s.grad(m.norm_b), norm_rows,
                        norm_dim);
}

void VisionEncoder::block_forward(ParamStore& s, const VisionBlockParams& P,
                                  const VisionPositions& pos, VisionBlockActs& A, Buffer& x) const {
  const VisionConfig& c = config_;
  const int64_t D = c.hidden_size, H = c.num_heads, hd = c.head_dim(), I = c.intermediate_size;
  const int64_t N = pos.patches;
  const k::AttentionDims dims = attention_dims(c, N);
  const int64_t n_seqs = static_cast<int64_t>(pos.cu_seqlens.size()) - 1;
  A.ln1.resize(N * D);
  A.ln1_mean.resize(N);
  A.ln1_rstd.resize(N);
  k::layernorm_forward(A.x_in.data(), s.value(P.norm1_w), s.value(P.norm1_b), A.ln1.data(),
                       A.ln1_mean.data(), A.ln1_rstd.data(), N, D, kLayerNormEps);
  Buffer qkv(N * 3 * D);
  k::linear_forward(A.ln1.data(), s.weight(P.qkv_w), s.value(P.qkv_b), qkv.data(), N, D, 3 * D);
  split_qkv(qkv, N, D, A.q, A.k, A.v);
  k::rope_forward(A.q.data(), pos.cos.data(), pos.sin.data(), A.q.data(), N, H, hd);
  k::rope_forward(A.k.data(), pos.cos.data(), pos.sin.data(), A.k.data(), N, H, hd);
  A.attn.resize(N * D);
  A.lse.resize(N * H);
  k::attention_forward(A.q.data(), A.k.data(), A.v.data(), A.attn.data(), A.lse.data(),
                       pos.cu_seqlens.data(), n_seqs, dims);
  A.x_mid.resize(N * D);
  k::linear_forward(A.attn.data(), s.weight(P.proj_w), s.value(P.proj_b), A.x_mid.data(), N, D, D);
  k::add_inplace(A.x_mid.data(), A.x_in.data(), N * D);
  A.ln2.resize(N * D);
  A.ln2_mean.resize(N);
  A.ln2_rstd.resize(N);
  k::layernorm_forward(A.x_mid.data(), s.value(P.norm2_w), s.value(P.norm2_b), A.ln2.data(),
                       A.ln2_mean.data(), A.ln2_rstd.data(), N, D, kLayerNormEps);
  A.fc1.resize(N * I);
  k::linear_forward(A.ln2.data(), s.weight(P.fc1_w), s.value(P.fc1_b), A.fc1.data(), N, D, I);
  A.act.resize(N * I);
  k::gelu_tanh_forward(A.fc1.data(), A.act.data(), N * I);
  x.resize(N * D);
  k::linear_forward(A.act.data(), s.weight(P.fc2_w), s.value(P.fc2_b), x.data(), N, I, D);
  k::add_inplace(x.data(), A.x_mid.data(), N * D);
}

VisionOutputs VisionEncoder::forward(ParamStore& s, const float* pixels,
                                     const std::vector<Grid>& grids, VisionActs& a,
                                     std::map<std::string, Tensor>* record,
                                     const std::string& prefix) const {
  const VisionConfig& c = config_;
  const int64_t D = c.hidden_size, hd = c.head_dim();
  a.pos = vision_positions(c, grids);
  const int64_t N = a.pos.patches;
  a.patches = N;
  a.pixels = pixels;

  // Patch embedding (Conv3d with stride = kernel is a matrix product), then the position table.
  Buffer x(N * D), pos(N * D);
  gather(p_.stem_unit);
  k::linear_forward(pixels, s.weight(p_.patch_w), s.value(p_.patch_b), x.data(), N, c.patch_dim(),
                    D);
  k::weighted_gather_forward(a.pos.pos_index.data(), a.pos.pos_weight.data(), s.value(p_.pos_embed),
                             pos.data(), N, 4, D);
  release(p_.stem_unit);
  if (record) {
    (*record)[prefix + "patch_embed"] = to_tensor(x, {N, D});
    (*record)[prefix + "pos_embeds"] = to_tensor(pos, {N, D});
    (*record)[prefix + "rotary_angles"] = to_tensor(a.pos.angles, {N, hd / 2});
  }
  k::add_inplace(x.data(), pos.data(), N * D);

  a.blocks.assign(c.depth, {});
  a.block_out.assign(c.depth, {});
  a.deepstack.assign(c.deepstack_visual_indexes.size(), {});
  VisionOutputs out;
  out.deepstack.resize(c.deepstack_visual_indexes.size());
  for (int64_t b = 0; b < c.depth; ++b) {
    VisionBlockActs& A = a.blocks[b];
    gather(p_.block_units[b]);
    A.x_in = std::move(x);
    block_forward(s, p_.blocks[b], a.pos, A, x);
    release(p_.block_units[b]);
    if (b < static_cast<int64_t>(a.recompute.size()) && a.recompute[b]) {
      Buffer input = std::move(A.x_in);
      A = {};
      A.x_in = std::move(input);
    }
    if (b == c.depth - 1 || is_deepstack(c, b)) a.block_out[b] = x;
    if (record) (*record)[prefix + "block_output." + std::to_string(b)] = to_tensor(x, {N, D});
    for (size_t d = 0; d < c.deepstack_visual_indexes.size(); ++d)
      if (c.deepstack_visual_indexes[d] == b) {
        gather(p_.deepstack_units[d]);
        merger_forward(s, p_.deepstack[d], true, x, N, a.deepstack[d], out.deepstack[d]);
        release(p_.deepstack_units[d]);
      }
  }
  gather(p_.merger_unit);
  merger_forward(s, p_.merger, false, x, N, a.merger, out.embeds);
  release(p_.merger_unit);
  return out;
}

void VisionEncoder::backward(ParamStore& s, const VisionActs& a, const Buffer& d_embeds,
                             const PoolVector<Buffer>& d_deepstack) const {
  const VisionConfig& c = config_;
  const int64_t D = c.hidden_size, H = c.num_heads, hd = c.head_dim(), I = c.intermediate_size;
  const int64_t N = a.patches;
  const k::AttentionDims dims = attention_dims(c, N);
  const int64_t n_seqs = static_cast<int64_t>(a.pos.cu_seqlens.size()) - 1;

  Buffer dx;  // gradient w.r.t. the current block output
  gather(p_.merger_unit);
  merger_backward(s, p_.merger, false, a.block_out[c.depth - 1], N, a.merger, d_embeds, dx);
  grads_ready(p_.merger_unit);
  release(p_.merger_unit);
  Buffer d_fc1(N * I), d_act(N * I), d_mid(N * D), d_ln(N * D);
  Buffer dq(N * D), dk(N * D), dv(N * D), dqkv(N * 3 * D), d_attn(N * D);
  VisionBlockActs rebuilt;  // a recomputed block's activations
  Buffer rebuilt_out;
  for (int64_t b = c.depth - 1; b >= 0; --b) {
    for (size_t d = 0; d < c.deepstack_visual_indexes.size(); ++d) {
      if (c.deepstack_visual_indexes[d] != b) continue;
      Buffer d_from_merger;
      gather(p_.deepstack_units[d]);
      merger_backward(s, p_.deepstack[d], true, a.block_out[b], N, a.deepstack[d], d_deepstack[d],
                      d_from_merger);
      grads_ready(p_.deepstack_units[d]);
      release(p_.deepstack_units[d]);
      k::add_inplace(dx.data(), d_from_merger.data(), N * D);
    }
    const VisionBlockParams& P = p_.blocks[b];
    gather(p_.block_units[b]);
    const bool rebuild = b < static_cast<int64_t>(a.recompute.size()) && a.recompute[b];
    if (rebuild) {  // activation checkpointing: the block's forward again, from its saved input
      rebuilt.x_in = a.blocks[b].x_in;
      block_forward(s, P, a.pos, rebuilt, rebuilt_out);
    }
    const VisionBlockActs& A = rebuild ? rebuilt : a.blocks[b];
    // MLP branch: x = x_mid + fc2(gelu(fc1(ln2(x_mid)))).
    k::linear_backward(A.act.data(), s.weight(P.fc2_w), dx.data(), d_act.data(), s.grad(P.fc2_w),
                       s.grad(P.fc2_b), N, I, D);
    k::gelu_tanh_backward(A.fc1.data(), d_act.data(), d_fc1.data(), N * I);
    k::linear_backward(A.ln2.data(), s.weight(P.fc1_w), d_fc1.data(), d_ln.data(), s.grad(P.fc1_w),
                       s.grad(P.fc1_b), N, D, I);
    k::layernorm_backward(A.x_mid.data(), s.value(P.norm2_w), A.ln2_mean.data(), A.ln2_rstd.data(),
                          d_ln.data(), d_mid.data(), s.grad(P.norm2_w), s.grad(P.norm2_b), N, D);
    k::add_inplace(d_mid.data(), dx.data(), N * D);
    // Attention branch: x_mid = x_in + proj(attn(rope(q), rope(k), v)).
    k::linear_backward(A.attn.data(), s.weight(P.proj_w), d_mid.data(), d_attn.data(),
                       s.grad(P.proj_w), s.grad(P.proj_b), N, D, D);
    k::attention_backward(A.q.data(), A.k.data(), A.v.data(), A.attn.data(), A.lse.data(),
                          d_attn.data(), dq.data(), dk.data(), dv.data(), a.pos.cu_seqlens.data(),
                          n_seqs, dims);
    k::rope_backward(dq.data(), a.pos.cos.data(), a.pos.sin.data(), dq.data(), N, H, hd);
    k::rope_backward(dk.data(), a.pos.cos.data(), a.pos.sin.data(), dk.data(), N, H, hd);
#pragma omp parallel for
    for (int64_t i = 0; i < N; ++i) {
      std::memcpy(&dqkv[i * 3 * D], &dq[i * D], D * sizeof(float));
      std::memcpy(&dqkv[i * 3 * D + D], &dk[i * D], D * sizeof(float));
      std::memcpy(&dqkv[i * 3 * D + 2 * D], &dv[i * D], D * sizeof(float));
    }
    k::linear_backward(A.ln1.data(), s.weight(P.qkv_w), dqkv.data(), d_ln.data(), s.grad(P.qkv_w),
                       s.grad(P.qkv_b), N, D, 3 * D);
    dx.resize(N * D);
    k::layernorm_backward(A.x_in.data(), s.value(P.norm1_w), A.ln1_mean.data(), A.ln1_rstd.data(),
                          d_ln.data(), dx.data(), s.grad(P.norm1_w), s.grad(P.norm1_b), N, D);
    k::add_inplace(dx.data(), d_mid.data(), N * D);
    grads_ready(p_.block_units[b]);
    release(p_.block_units[b]);
  }
  // dx is now the gradient of (patch embedding + position table). Neither backward reads the
  // stem's parameters (no input gradient is needed), so the stem is not gathered.
  if (float* g = s.grad(p_.pos_embed))
    k::weighted_gather_backward(a.pos.pos_index.data(), a.pos.pos_weight.data(), dx.data(), g, N, 4,
                                D);
  k::linear_backward(a.pixels, s.weight(p_.patch_w), dx.data(), static_cast<float*>(nullptr),
                     s.grad(p_.patch_w), s.grad(p_.patch_b), N, c.patch_dim(), D);
  grads_ready(p_.stem_unit);
}

void VisionEncoder::idle_forward() const {
  const VisionConfig& c = config_;
  gather(p_.stem_unit);
  release(p_.stem_unit);
  for (int64_t b = 0; b < c.depth; ++b) {
    gather(p_.block_units[b]);
    release(p_.block_units[b]);
    for (size_t d = 0; d < c.deepstack_visual_indexes.size(); ++d)
      if (c.deepstack_visual_indexes[d] == b) {
        gather(p_.deepstack_units[d]);
        release(p_.deepstack_units[d]);
      }
  }
  gather(p_.merger_unit);
  release(p_.merger_unit);
}

void VisionEncoder::idle_backward() const {
  const VisionConfig& c = config_;
  auto unit_backward = [&](int u) {
    gather(u);
    grads_ready(u);
    release(u);
  };
  unit_backward(p_.merger_unit);
  for (int64_t b = c.depth - 1; b >= 0; --b) {
    for (size_t d = 0; d < c.deepstack_visual_indexes.size(); ++d)
      if (c.deepstack_visual_indexes[d] == b) unit_backward(p_.deepstack_units[d]);
    unit_backward(p_.block_units[b]);
  }
  grads_ready(p_.stem_unit);
}

}  // namespace qv::model
