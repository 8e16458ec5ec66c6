// AdamW with torch.optim.AdamW semantics (decoupled weight decay, bias correction, per-parameter
// step counts) over the flat parameter buffer. Parameters that took no part in a step (no
// gradient, as torch's grad=None) are skipped: no update, no decay, no step count. The moments
// live on the device current when the optimizer is made (the trainer makes it under the
// model's DeviceScope), beside the parameters the update reads.
#pragma once
#include <cstdint>
#include <vector>

#include "core/bf16.h"
#include "core/page_buffer.h"
#include "dist/flat_range.h"

namespace qv::train {

struct AdamWConfig {
  double lr = 8e-4;
  double beta1 = 0.9, beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

// A contiguous range of the flat buffer updated as one torch parameter.
struct ParamSpan {
  int64_t offset = 0, numel = 0;
};

using dist::FlatRange;

class AdamW {
 public:
  // The optimizer owns state for the flat-buffer elements of `owned` only (ascending, disjoint:
  // this rank's shards under sharding; the whole buffer otherwise). Spans are clipped to them.
  AdamW(const AdamWConfig& config, std::vector<ParamSpan> spans, std::vector<FlatRange> owned);
  const std::vector<FlatRange>& owned() const { return owned_; }
  // bf16 mixed precision: from now on step() also writes the bf16 copy of each updated span
  // whose span_has_copy[i] is set, into `copies` (the flat layout of params), in the same pass.
  void write_bf16_copies(bf16* copies, std::vector<uint8_t> span_has_copy);
  // One update of every span whose active[i] is set, with learning rate lr, from the gradients
  // times grad_scale (gradient clipping, applied on the fly; `grads` is not written).
  void step(float* params, const float* grads, const std::vector<uint8_t>& active, double lr,
            float grad_scale = 1.0f);

  // Moments of the owned elements, range after range, on the optimizer's device.
  PageBuffer& exp_avg() { return m_; }
  PageBuffer& exp_avg_sq() { return v_; }
  std::vector<int64_t>& steps() { return steps_; }  // per span
  const AdamWConfig& config() const { return c_; }

 private:
  AdamWConfig c_;
  std::vector<ParamSpan> spans_;
  std::vector<FlatRange> owned_;
  std::vector<int64_t> state_base_;  // where each owned range starts in m_ / v_
  PageBuffer m_, v_;
  std::vector<int64_t> steps_;
  bf16* bf16_copies_ = nullptr;
  std::vector<uint8_t> span_has_copy_;
};

}  // namespace qv::train
