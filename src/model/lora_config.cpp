#include "model/lora_config.h"

#include <cmath>
#include <set>

#include "core/error.h"

namespace qv::model {
namespace {

constexpr const char* kTargetNames[kLoraTargets] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                    "gate_proj", "up_proj", "down_proj"};

}  // namespace

const char* lora_target_name(LoraTarget t) {
  return kTargetNames[static_cast<int>(t)];
}

LoraTarget lora_target_from_name(const std::string& name) {
  for (int i = 0; i < kLoraTargets; ++i)
    if (name == kTargetNames[i]) return static_cast<LoraTarget>(i);
  fail("lora.target_modules entry '", name,
       "' is not one of: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj (the "
       "vision tower's modules are not LoRA targets here)");
}

void LoraConfig::validate() const {
  QV_CHECK(rank >= 0, "lora.rank must be >= 0 (0: LoRA off), got ", rank);
  if (!enabled()) return;
  QV_CHECK(alpha > 0 && std::isfinite(alpha), "lora.alpha must be positive, got ", alpha);
  QV_CHECK(dropout >= 0 && dropout < 1, "lora.dropout must be in [0, 1), got ", dropout);
  QV_CHECK(!target_modules.empty(), "lora.target_modules is empty");
  std::set<std::string> seen;
  for (const auto& t : target_modules) {
    lora_target_from_name(t);
    QV_CHECK(seen.insert(t).second, "lora.target_modules names '", t, "' twice");
  }
}

}  // namespace qv::model
