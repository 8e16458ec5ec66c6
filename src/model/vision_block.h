// One ViT block of the vision tower, the vision counterpart of DecoderLayer:
// LayerNorm -> fused qkv projection -> 2-D rotary -> full attention within each image / frame ->
// projection -> residual -> LayerNorm -> GELU (tanh) MLP -> residual. Explicit forward that
// saves what backward needs, and backward that accumulates parameter gradients.
#pragma once
#include <cstdint>

#include "kernels/device_buffer.h"
#include "model/config.h"
#include "model/params.h"
#include "model/positions.h"

namespace qv::model {

// Activations and their gradients: device buffers in the activation arena
// (kernels/device_buffer.h), zeroed by the device, never value-initialised by the host.
using Buffer = DeviceBuffer<float>;

struct VisionBlockActs {
  Buffer x_in, ln1, ln1_mean, ln1_rstd, q, k, v, attn, lse, x_mid, ln2, ln2_mean, ln2_rstd, fc1,
      act;
};

// The LayerNorm epsilon of every vision norm (blocks and mergers), as HF's eps=1e-6.
constexpr float kVisionLayerNormEps = 1e-6f;

class VisionBlock {
 public:
  VisionBlock(const VisionConfig& config, const VisionBlockParams& params)
      : config_(config), p_(params) {}
  // x_in: [patches, hidden] in (moved into acts.x_in); out: the block output.
  void forward(ParamStore& store, const VisionPositions& pos, Buffer x_in, VisionBlockActs& acts,
               Buffer& out) const;
  // d_out: gradient of the block output; d_in (overwritten) receives that of its input.
  void backward(ParamStore& store, const VisionPositions& pos, const VisionBlockActs& acts,
                const Buffer& d_out, Buffer& d_in) const;

 private:
  const VisionConfig& config_;
  const VisionBlockParams& p_;
};

}  // namespace qv::model
