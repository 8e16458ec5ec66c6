// The trainer against the fixtures' 5-step Hugging Face + torch.optim.AdamW run.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "train/trainer.h"

namespace qv {
namespace {

namespace fs = std::filesystem;
const std::string kFixtures = std::string(QWEN3VL_SOURCE_DIR) + "/tests/fixtures/";

std::string fixture_toml(const std::string& fixture, const std::string& dump) {
  const std::string dir = kFixtures + fixture;
  return "[job]\ndump_folder = \"" + dump + "\"\n[model]\nhf_config = \"" + dir +
         "\"\n[optimizer]\nlr = 1e-3\nbetas = [0.9, 0.95]\neps = 1e-8\nweight_decay = 0.1\n"
         "[lr_scheduler]\nname = \"hf_linear\"\nwarmup_steps = 2\n"
         "[training]\nsteps = 5\nmax_norm = 1.0\ndataset = \"fixed\"\ndataset_path = \"" +
         dir + "/inputs.safetensors\"\n[checkpoint]\ninitial_load_path = \"" + dir +
         "\"\n[metrics]\nenable_jsonl = false\n";
}

void reproduce(const std::string& fixture) {
  const fs::path dump = fs::temp_directory_path() / ("qwen3vl_train_" + fixture);
  fs::remove_all(dump);
  const train::JobConfig config =
      train::JobConfig::parse(fixture_toml(fixture, dump.string()), fixture + ".toml");
  auto model = train::build_model(config);
  auto data = train::make_fixed_source(config.dataset_path);
  train::Trainer trainer(config, std::move(model), std::move(data),
                         dist::make_local_communicator());
  const auto history = trainer.run();
  const auto steps =
      nlohmann::json::parse(io::read_file(kFixtures + fixture + "/train_steps.json"))["steps"];
  ASSERT_EQ(history.size(), steps.size());
  for (size_t i = 0; i < history.size(); ++i) {
    const double loss = steps[i]["loss"], norm = steps[i]["grad_norm"], lr = steps[i]["lr"];
    EXPECT_NEAR(history[i].loss, loss, 1e-5) << "step " << i;
    EXPECT_NEAR(history[i].grad_norm, norm, 1e-4 * norm) << "step " << i;
    EXPECT_NEAR(history[i].lr, lr, 1e-12) << "step " << i;
    std::printf("[train %s] step %zu loss %.7f (HF %.7f) grad_norm %.7f (HF %.7f)\n",
                fixture.c_str(), i, history[i].loss, loss, history[i].grad_norm, norm);
  }
  const io::TensorMap final_weights =
      io::load_safetensors(kFixtures + fixture + "/final.safetensors");
  double worst = 0;
  int64_t over_1e6 = 0, total = 0;
  for (const auto& e : trainer.model().store().entries()) {
    auto it = final_weights.find(e.name);
    ASSERT_NE(it, final_weights.end()) << e.name;
    const float* got = trainer.model().store().value(e.ref);
    const float* want = it->second.data<float>();
    for (int64_t j = 0; j < e.ref.numel; ++j) {
      const double err = std::fabs(static_cast<double>(got[j]) - want[j]);
      worst = std::max(worst, err);
      over_1e6 += err > 1e-6;
      ++total;
    }
  }
  std::printf("[train %s] final weights: worst |err| %.3g, %lld of %lld elements above 1e-6\n",
              fixture.c_str(), worst, static_cast<long long>(over_1e6),
              static_cast<long long>(total));
  EXPECT_LT(worst, 2e-4);
  EXPECT_LT(static_cast<double>(over_1e6), 0.001 * total);
  fs::remove_all(dump);
}

TEST(TrainFixture, TinyImageFiveStepsMatchTorch) {
  reproduce("hf-tiny-image");
}
TEST(TrainFixture, TinyTextFiveStepsMatchTorchAndSkipUnusedVision) {
  reproduce("hf-tiny-text");
}

}  // namespace
}  // namespace qv
