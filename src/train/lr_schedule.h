// Learning-rate schedules, as a factor of the peak lr for a 0-based step index.
#pragma once
#include <cstdint>
#include <string>

namespace qv::train {

struct LrScheduleConfig {
  std::string name = "warmup_stable_decay";  // or "hf_linear"
  int64_t warmup_steps = 0;
  double decay_ratio = -1;            // < 0: decay over every step after warmup
  std::string decay_type = "linear";  // linear | sqrt | cosine
  double min_lr_factor = 0.0;
};

class LrSchedule {
 public:
  LrSchedule(const LrScheduleConfig& config, int64_t total_steps);
  // Multiplier of the peak lr used by the optimizer step with 0-based index `step`.
  double factor(int64_t step) const;

 private:
  LrScheduleConfig c_;
  int64_t total_ = 0, warmup_ = 0, stable_ = 0, decay_ = 0;
};

}  // namespace qv::train
