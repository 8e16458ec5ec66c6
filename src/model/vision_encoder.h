// The vision tower: patch embedding, interpolated position table, ViT blocks (model/vision_block.h)
// with 2-D rotary and per-image attention, the patch merger and the DeepStack mergers. Explicit
// forward that saves what backward needs, and backward that accumulates parameter gradients.
#pragma once
#include <string>
#include <vector>

#include "core/buffer_pool.h"
#include "kernels/device_buffer.h"
#include "model/config.h"
#include "model/params.h"
#include "model/positions.h"
#include "model/recorder.h"
#include "model/unit_hooks.h"
#include "model/vision_block.h"

namespace qv::model {

struct MergerActs {
  Buffer ln, ln_mean, ln_rstd, fc1, act;
};

struct VisionActs {
  VisionPositions pos;
  const float* pixels = nullptr;  // the input on the current device (on the CPU the caller's)
  DeviceBuffer<float> pixels_on_device;  // the uploaded copy off the CPU; empty on it
  int64_t patches = 0;
  PoolVector<VisionBlockActs> blocks;
  // Output of the blocks a merger reads (DeepStack indexes and the last block); empty otherwise.
  PoolVector<Buffer> block_out;
  // Activation checkpointing: set by the caller before forward(); a block marked 1 keeps only its
  // input, and backward() rebuilds it (bit-identically) before its gradient. Empty: none.
  HostVector<uint8_t> recompute;  // per block: dropped after forward (host flags)
  MergerActs merger;
  PoolVector<MergerActs> deepstack;
};

struct VisionOutputs {
  Buffer embeds;                 // [patches / merge_unit, out_hidden]
  PoolVector<Buffer> deepstack;  // one per deepstack index, same shape
};

class VisionEncoder {
 public:
  VisionEncoder(const VisionConfig& config, const VisionParams& params, UnitHooks* hooks = nullptr)
      : config_(config), p_(params), hooks_(hooks) {}

  // pixels: [patches, patch_dim] (host memory). `record` receives debug tensors (patch_embed,
  // pos_embeds, rotary_angles, block_output.i). uploaded: the same pixels already on the current
  // device (model/device_inputs.h), or null to copy them there here (off the CPU).
  VisionOutputs forward(ParamStore& store, const float* pixels, const std::vector<Grid>& grids,
                        VisionActs& acts, const Recorder& record = {},
                        const float* uploaded = nullptr) const;

  // d_embeds / d_deepstack: gradients of the outputs; accumulates into store's gradients.
  void backward(ParamStore& store, const VisionActs& acts, const Buffer& d_embeds,
                const PoolVector<Buffer>& d_deepstack) const;

  // The hook calls of one forward / backward pass without any computation: a rank with no
  // images joins the unit collectives of ranks that have some.
  void idle_forward() const;
  void idle_backward() const;

 private:
  bool recomputed(const VisionActs& acts, int64_t block) const {
    return block < static_cast<int64_t>(acts.recompute.size()) && acts.recompute[block];
  }
  void merger_forward(ParamStore& store, const MergerParams& m, bool postshuffle, const Buffer& x,
                      int64_t patches, MergerActs& a, Buffer& out) const;
  void merger_backward(ParamStore& store, const MergerParams& m, bool postshuffle, const Buffer& x,
                       int64_t patches, const MergerActs& a, const Buffer& dout, Buffer& dx) const;
  void gather(int unit) const {
    if (hooks_) hooks_->gather(unit);
  }
  void release(int unit) const {
    if (hooks_) hooks_->release(unit);
  }
  void grads_ready(int unit) const {
    if (hooks_) hooks_->grads_ready(unit);
  }
  const VisionConfig& config_;
  const VisionParams& p_;
  UnitHooks* hooks_;
};

}  // namespace qv::model
