// Every flavor preset gives exactly the config recorded in tests/data/flavors.json (written from
// the presets as they were when flavors.cpp moved to designated initialisers; the MoE flavors as
// they were added, from torchtitan 4c2285389 experiments/qwen3_vl). A deliberate change
// to a preset updates that file in the same commit; an accidental one fails here.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "model/config.h"

namespace qv {
namespace {

nlohmann::json recorded_flavors() {
  std::ifstream f(std::string(QWEN3VL_SOURCE_DIR) + "/tests/data/flavors.json");
  return nlohmann::json::parse(f);
}

TEST(ModelFlavors, EveryFlavorMatchesItsRecordedConfig) {
  const nlohmann::json recorded = recorded_flavors();
  std::set<std::string> recorded_names, names;
  for (const auto& [name, config] : recorded.items()) recorded_names.insert(name);
  for (const std::string& name : model::ModelConfig::flavor_names()) {
    names.insert(name);
    ASSERT_TRUE(recorded.contains(name)) << name << " has no recorded config";
    const auto config = nlohmann::json::parse(model::ModelConfig::flavor(name).to_json_text());
    EXPECT_TRUE(config == recorded[name])
        << name << ": " << nlohmann::json::diff(recorded[name], config);
  }
  EXPECT_EQ(names, recorded_names);
}

}  // namespace
}  // namespace qv
