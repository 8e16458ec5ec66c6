// LoRA's settings ([lora] in the job config) and its closed set of target projections, apart
// from the adapter arithmetic (model/lora.h) so that config parsing needs no model code.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace qv::model {

// The projections an adapter can wrap, by PEFT's module names. Closed set; the vision tower's
// modules (qkv, proj, linear_fc1, linear_fc2) are not targets.
enum class LoraTarget { kQ, kK, kV, kO, kGate, kUp, kDown };
constexpr int kLoraTargets = 7;
const char* lora_target_name(LoraTarget t);  // "q_proj", ... "down_proj"
// The target named `name`; throws naming the valid names otherwise.
LoraTarget lora_target_from_name(const std::string& name);

struct LoraConfig {
  int64_t rank = 0;  // 0: LoRA off
  double alpha = 16;
  double dropout = 0;  // probability of zeroing an element of the adapter's input (training)
  std::vector<std::string> target_modules = {"q_proj", "k_proj", "v_proj", "o_proj"};
  uint64_t seed = 0;  // A's initialisation and the dropout masks
  bool enabled() const { return rank > 0; }
  double scaling() const { return alpha / static_cast<double>(rank); }
  void validate() const;  // throws naming the bad key
};

}  // namespace qv::model
