// Mixture-of-experts flavors (qwen3_vl_moe): debugmodel_moe, 30B-A3B, 235B-A22B.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "model/config.h"

namespace qv::model {

std::optional<ModelConfig> moe_flavor(const std::string& name);
std::vector<std::string> moe_flavor_names();

}  // namespace qv::model
