// Loading a share of the optimizer state: ranges that cut through parameter tensors land exactly
// where a sharded optimizer keeps them, and a size mismatch is an error.
#include <gtest/gtest.h>

#include <filesystem>

#include "core/error.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#include "train_test_utils.h"

namespace qv {
namespace {

namespace fs = std::filesystem;

TEST(CheckpointLoad, OwnedRangesGetExactlyTheirElements) {
  const std::string dump = (fs::temp_directory_path() / "qwen3vl_ckptload").string();
  fs::remove_all(dump);
  auto config = train::JobConfig::load(testing::fixed_batch_config("hf-tiny-text", dump, 1, 1));
  auto model = train::build_model(config);
  const int64_t total = model->store().total();
  train::OptimizerState saved;
  for (int64_t i = 0; i < total; ++i) {
    saved.exp_avg.push_back(static_cast<float>(i));
    saved.exp_avg_sq.push_back(static_cast<float>(-i));
  }
  for (size_t i = 0; i < model->store().entries().size(); ++i)
    saved.steps.push_back(static_cast<int64_t>(i) + 5);
  train::TrainState state;
  state.step = 7;
  const std::string path = train::save_checkpoint(dump, model->store(), &saved, state, 0);

  // Two ranges, each crossing the boundary between two parameter tensors, plus the last element.
  const auto& e = model->store().entries();
  ASSERT_GE(e.size(), 4u);
  const int64_t b1 = e[1].ref.offset, b3 = e[3].ref.offset;
  const std::vector<train::FlatRange> owned = {
      {b1 - 3, b1 + 4}, {b3 - 1, b3 + 2}, {total - 1, total}};
  std::vector<float> m(7 + 3 + 1, 99.0f), v(m.size(), 99.0f);
  std::vector<int64_t> steps;
  train::OptimizerTarget target{m, v, owned, &steps};
  EXPECT_EQ(train::load_checkpoint(path, model->store(), &target).step, 7);
  size_t k = 0;
  for (const auto& r : owned)
    for (int64_t i = r.begin; i < r.end; ++i, ++k) {
      EXPECT_EQ(m[k], static_cast<float>(i)) << i;
      EXPECT_EQ(v[k], static_cast<float>(-i)) << i;
    }
  EXPECT_EQ(steps, saved.steps);

  std::vector<float> short_m(3), short_v(3);
  train::OptimizerTarget wrong{short_m, short_v, owned, &steps};
  EXPECT_THROW(train::load_checkpoint(path, model->store(), &wrong), Error);
}

}  // namespace
}  // namespace qv
