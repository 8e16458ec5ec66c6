// Position information (host arrays; the decoder uploads what its kernels read): Qwen3-VL's
// multimodal rotary index (HF get_rope_index), the interleaved MRoPE cos/sin tables of the decoder,
// and the vision tower's 2-D rotary tables and bilinear position-table sampling.
#pragma once
#include <cstdint>
#include <vector>

#include "core/buffer_pool.h"
#include "kernels/device_buffer.h"
#include "model/config.h"
#include "model/inputs.h"

namespace qv::model {

struct RopeIndex {
  HostVector<int64_t> positions;  // [3, batch * seq]: rows T, H, W
  HostVector<int64_t> deltas;     // [batch]: max position + 1 - seq
};

// HF get_rope_index semantics, per document when document_ids are given. Throws qv::Error when
// the vision blocks in input_ids disagree with the grids.
RopeIndex compute_rope_index(const ModelConfig& config, const ModelInputs& inputs);

// Decoder cos/sin [tokens, head_dim] from [3, tokens] positions with the interleaved slot rule.
void text_rope_tables(const TextConfig& config, const HostVector<int64_t>& positions,
                      int64_t tokens, HostVector<float>& cos, HostVector<float>& sin);

// Per-patch tables for the vision tower over all grids (patches in merge-block order).
// The arrays ops read are computed on the host and uploaded once per forward to the device that
// is current when vision_positions() runs (kernels/device_buffer.h, Mirrored).
struct VisionPositions {
  int64_t patches = 0;
  Mirrored<int64_t> cu_seqlens;  // one attention sequence per image and per video frame
  HostVector<float> angles;      // [patches, head_dim / 2]: row freqs then col freqs (host only)
  Mirrored<float> cos, sin;      // [patches, head_dim]
  Mirrored<int64_t> pos_index;   // [patches, 4]: position-table rows
  Mirrored<float> pos_weight;    // [patches, 4]: bilinear weights
};
VisionPositions vision_positions(const VisionConfig& config, const std::vector<Grid>& grids);

// torch.linspace(start, end, steps) in float32, computed the way PyTorch's CPU kernel does.
HostVector<float> linspace_f32(float start, float end, int64_t steps);

}  // namespace qv::model
