#include "train/adamw.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

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
  m_.assign(n, 0.0f);
  v_.assign(n, 0.0f);
  QV_CHECK(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1,
           "optimizer betas must lie in [0, 1), got (", c.beta1, ", ", c.beta2, ")");
  QV_CHECK(c.eps > 0, "optimizer eps must be positive");
}

void AdamW::step(float* params, const float* grads, const std::vector<uint8_t>& active, double lr) {
  for (size_t s = 0; s < spans_.size(); ++s) {
    if (!active[s]) continue;
    const int64_t step = ++steps_[s];
    // Scalars in double, applied in float, in torch's order of operations.
    const float decay = static_cast<float>(1.0 - lr * c_.weight_decay);
    const float b1 = static_cast<float>(c_.beta1), one_b1 = static_cast<float>(1 - c_.beta1);
    const float b2 = static_cast<float>(c_.beta2), one_b2 = static_cast<float>(1 - c_.beta2);
    const double bc1 = 1 - std::pow(c_.beta1, static_cast<double>(step));
    const double bc2 = 1 - std::pow(c_.beta2, static_cast<double>(step));
    const float step_size = static_cast<float>(-(lr / bc1));
    const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
    const float eps = static_cast<float>(c_.eps);
    // The parts of this span inside the owned ranges (whole span when unsharded).
    const int64_t span_end = spans_[s].offset + spans_[s].numel;
    for (size_t r = 0; r < owned_.size(); ++r) {
      const int64_t o = std::max(spans_[s].offset, owned_[r].begin);
      const int64_t n = std::min(span_end, owned_[r].end) - o;
      if (n <= 0) continue;
      float* p = params + o;
      const float* g = grads + o;
      float* m = m_.data() + state_base_[r] + (o - owned_[r].begin);
      float* v = v_.data() + state_base_[r] + (o - owned_[r].begin);
#pragma omp parallel for if (n > 65536)
      for (int64_t i = 0; i < n; ++i) {
        p[i] = p[i] * decay;
        m[i] = m[i] * b1 + one_b1 * g[i];
        v[i] = v[i] * b2 + one_b2 * g[i] * g[i];
        const float denom = std::sqrt(v[i]) / bc2_sqrt + eps;
        p[i] = p[i] + step_size * (m[i] / denom);
      }
    }
  }
}

}  // namespace qv::train
