#include "model/vision_encoder.h"

#include "kernels/activations.h"
#include "kernels/embedding.h"
#include "kernels/linear.h"
#include "kernels/norms.h"

namespace qv::model {

namespace k = qv::kernels;

namespace {

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
                       a.ln_mean.data(), a.ln_rstd.data(), norm_rows, norm_dim,
                       kVisionLayerNormEps);
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

VisionOutputs VisionEncoder::forward(ParamStore& s, const float* pixels,
                                     const std::vector<Grid>& grids, VisionActs& a,
                                     const Recorder& record, const float* uploaded) const {
  const VisionConfig& c = config_;
  const int64_t D = c.hidden_size, hd = c.head_dim();
  a.pos = vision_positions(c, grids);
  const int64_t N = a.pos.patches;
  a.patches = N;
  // The pixels come from the host: off the CPU they are uploaded once, for forward and backward,
  // through pinned staging without waiting (the copy overlaps the host's work until an op needs
  // them; kernels::upload_input), unless a trainer uploaded them ahead.
  a.pixels = pixels;
  if (uploaded && !current_device().is_cpu()) {
    a.pixels = uploaded;
  } else if (!current_device().is_cpu()) {
    a.pixels_on_device.upload_from_host(pixels, static_cast<size_t>(N * c.patch_dim()));
    a.pixels = a.pixels_on_device.data();
  }

  // Patch embedding (Conv3d with stride = kernel is a matrix product), then the position table.
  Buffer x(N * D), pos(N * D);
  gather(p_.stem_unit);
  k::linear_forward(a.pixels, s.weight(p_.patch_w), s.value(p_.patch_b), x.data(), N, c.patch_dim(),
                    D);
  k::weighted_gather_forward(a.pos.pos_index.data(), a.pos.pos_weight.data(), s.value(p_.pos_embed),
                             pos.data(), N, 4, D);
  release(p_.stem_unit);
  record("patch_embed", x, {N, D});
  record("pos_embeds", pos, {N, D});
  record("rotary_angles", a.pos.angles, {N, hd / 2});
  k::add_inplace(x.data(), pos.data(), N * D);

  a.blocks.assign(c.depth, {});
  a.block_out.assign(c.depth, {});
  a.deepstack.assign(c.deepstack_visual_indexes.size(), {});
  VisionOutputs out;
  out.deepstack.resize(c.deepstack_visual_indexes.size());
  for (int64_t b = 0; b < c.depth; ++b) {
    VisionBlockActs& A = a.blocks[b];
    Buffer y;
    gather(p_.block_units[b]);
    VisionBlock(c, p_.blocks[b]).forward(s, a.pos, std::move(x), A, y);
    release(p_.block_units[b]);
    x = std::move(y);
    if (recomputed(a, b)) {  // activation checkpointing: keep only the block's input
      Buffer input = std::move(A.x_in);
      A = {};
      A.x_in = std::move(input);
    }
    if (b == c.depth - 1 || is_deepstack(c, b)) a.block_out[b] = x;
    record("block_output", b, x, {N, D});
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
  const int64_t D = c.hidden_size, N = a.patches;
  Buffer dx, d_in;  // gradients of the current block's output and input
  gather(p_.merger_unit);
  merger_backward(s, p_.merger, false, a.block_out[c.depth - 1], N, a.merger, d_embeds, dx);
  grads_ready(p_.merger_unit);
  release(p_.merger_unit);
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
    const VisionBlock block(c, p_.blocks[b]);
    gather(p_.block_units[b]);
    if (recomputed(a, b))  // activation checkpointing: the block's forward again, from its input
      block.forward(s, a.pos, a.blocks[b].x_in, rebuilt, rebuilt_out);
    block.backward(s, a.pos, recomputed(a, b) ? rebuilt : a.blocks[b], dx, d_in);
    std::swap(dx, d_in);
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
