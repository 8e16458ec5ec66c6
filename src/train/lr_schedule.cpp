#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace qv::train {

LrSchedule::LrSchedule(const LrScheduleConfig& c, int64_t total_steps)
    : c_(c), total_(total_steps) {
  QV_CHECK(c.name == "warmup_stable_decay" || c.name == "hf_linear", "lr_scheduler.name '", c.name,
           "' is not one of: warmup_stable_decay, hf_linear");
  QV_CHECK(c.decay_type == "linear" || c.decay_type == "sqrt" || c.decay_type == "cosine",
           "lr_scheduler.decay_type '", c.decay_type, "' is not one of: linear, sqrt, cosine");
  QV_CHECK(c.warmup_steps >= 0, "lr_scheduler.warmup_steps must be >= 0");
  warmup_ = c.warmup_steps;
  // torchtitan: decay_steps = round(steps * decay_ratio), stable = the rest after warmup.
  decay_ = c.decay_ratio >= 0 ? static_cast<int64_t>(std::nearbyint(total_ * c.decay_ratio))
                              : std::max<int64_t>(0, total_ - warmup_);
  stable_ = total_ - warmup_ - decay_;
}

double LrSchedule::factor(int64_t step) const {
  if (c_.name == "hf_linear") {
    // transformers get_linear_schedule_with_warmup: lr 0 at step 0, peak at warmup.
    if (step < warmup_) return static_cast<double>(step) / std::max<int64_t>(1, warmup_);
    return std::max(0.0,
                    static_cast<double>(total_ - step) / std::max<int64_t>(1, total_ - warmup_));
  }
  // torchtitan linear_warmup_stable_decay, evaluated at the LambdaLR index of this step.
  const int64_t warm_stable = warmup_ + stable_;
  step = std::min(step, warm_stable + decay_);
  if (step < warmup_) return static_cast<double>(step + 1) / static_cast<double>(warmup_ + 1);
  if (step < warm_stable || decay_ == 0) return 1.0;
  const double progress =
      static_cast<double>(step + 1 - warm_stable) / static_cast<double>(decay_ + 1);
  double adj = 1 - progress;
  if (c_.decay_type == "sqrt") adj = 1 - std::sqrt(progress);
  if (c_.decay_type == "cosine") adj = 0.5 * (1.0 + std::cos(M_PI * progress));
  return c_.min_lr_factor + (1 - c_.min_lr_factor) * adj;
}

}  // namespace qv::train
