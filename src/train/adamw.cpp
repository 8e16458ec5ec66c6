#include "train/adamw.h"

#include <algorithm>
#include <cmath>

#include "core/device.h"
#include "core/error.h"
#include "kernels/optim.h"

namespace qv::train {

AdamW::AdamW(const AdamWConfig& c, std::vector<ParamSpan> spans, std::vector<FlatRange> owned)
    : c_(c), spans_(std::move(spans)), owned_(std::move(owned)), steps_(spans_.size(), 0) {
  int64_t n = 0, last_end = 0;
  for (const FlatRange& r : owned_) {
    QV_CHECK(r.begin <= r.end && r.begin >= last_end, "AdamW: owned ranges must be ascending");
    last_end = r.end;
    state_base_.push_back(n);
    n += r.size();
  }
  m_.allocate(n, current_device());  // zeros, from the device's allocator
  v_.allocate(n, current_device());
  QV_CHECK(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1,
           "optimizer betas must lie in [0, 1), got (", c.beta1, ", ", c.beta2, ")");
  QV_CHECK(c.eps > 0, "optimizer eps must be positive");
}

void AdamW::write_bf16_copies(bf16* copies, std::vector<uint8_t> span_has_copy) {
  QV_CHECK(span_has_copy.size() == spans_.size(), "AdamW: one bf16 flag per span");
  bf16_copies_ = copies;
  span_has_copy_ = std::move(span_has_copy);
}

void AdamW::step(float* params, const float* grads, const std::vector<uint8_t>& active, double lr,
                 float grad_scale) {
  for (size_t s = 0; s < spans_.size(); ++s) {
    if (!active[s]) continue;
    const int64_t step = ++steps_[s];
    // Scalars in double, applied in float, in torch's order of operations.
    const double bc1 = 1 - std::pow(c_.beta1, static_cast<double>(step));
    const double bc2 = 1 - std::pow(c_.beta2, static_cast<double>(step));
    const kernels::AdamWScalars k{static_cast<float>(1.0 - lr * c_.weight_decay),
                                  static_cast<float>(c_.beta1),
                                  static_cast<float>(1 - c_.beta1),
                                  static_cast<float>(c_.beta2),
                                  static_cast<float>(1 - c_.beta2),
                                  static_cast<float>(-(lr / bc1)),
                                  static_cast<float>(std::sqrt(bc2)),
                                  static_cast<float>(c_.eps),
                                  grad_scale};
    // The parts of this span inside the owned ranges (whole span when unsharded).
    const int64_t span_end = spans_[s].offset + spans_[s].numel;
    for (size_t r = 0; r < owned_.size(); ++r) {
      const int64_t o = std::max(spans_[s].offset, owned_[r].begin);
      const int64_t n = std::min(span_end, owned_[r].end) - o;
      if (n <= 0) continue;
      float* m = m_.data() + state_base_[r] + (o - owned_[r].begin);
      float* v = v_.data() + state_base_[r] + (o - owned_[r].begin);
      bf16* pb = bf16_copies_ && span_has_copy_[s] ? bf16_copies_ + o : nullptr;
      kernels::adamw_update(k, params + o, grads + o, m, v, pb, n);
    }
  }
}

}  // namespace qv::train
