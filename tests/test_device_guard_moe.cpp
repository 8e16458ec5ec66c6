// The mixture-of-experts model on the guarded test device (kernels/guarded/guard.h,
// guard_census.h; issue #18): 2-step Trainer::runs of the tiny MoE fixture, with and without the
// load-balancing loss, built and trained on that device, strict (no host access to device
// memory, no host pointer given to an op) and equal to the same run on the CPU bit for bit.
// The fixture's forward and backward alone are tests/test_device_guard.cpp's
// DeviceGuardCensus.TinyMoeForwardAndBackward.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "core/buffer_pool.h"
#include "core/device.h"
#include "guard_census.h"
#include "kernels/guarded/guard.h"
#include "train/trainer.h"
#include "train_test_utils.h"

namespace qv {
namespace {

using testing::GuardCensus;
using testing::kGuardedDevice;
using Overrides = std::vector<std::pair<std::string, std::string>>;

std::vector<train::StepRecord> two_moe_steps(const std::string& name, const Overrides& extra) {
  const std::string dump = testing::fresh_dir("device_guard_moe", name);
  auto config =
      train::JobConfig::load(testing::fixed_batch_config("hf-tiny-moe", dump, 2, 2), extra);
  auto m = train::build_model(config);
  train::Trainer trainer(config, std::move(m), train::make_fixed_source(config.dataset_path),
                         dist::make_local_communicator());
  return trainer.run();
}

// The run on the CPU, then on the guarded device under a strict census.
void strict_moe_training(const std::string& name, const Overrides& extra) {
  const std::vector<train::StepRecord> want = two_moe_steps(name + "_cpu", extra);
  GuardCensus census;
  std::vector<train::StepRecord> got;
  {
    DeviceScope on_guarded(kGuardedDevice);
    got = two_moe_steps(name + "_guarded", extra);
  }
  const std::string table = census.report(name + ": Trainer::run, 2 steps (build, steps, end)");
  std::printf("%s", table.c_str());
  EXPECT_EQ(census.faults(), 0) << table;
  EXPECT_EQ(census.host_pointers(), 0) << table;
  ASSERT_EQ(got.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(got[i].loss, want[i].loss) << "step " << i + 1;
    EXPECT_EQ(got[i].grad_norm, want[i].grad_norm) << "step " << i + 1;
    EXPECT_EQ(got[i].aux_loss, want[i].aux_loss) << "step " << i + 1;
    EXPECT_EQ(got[i].expert_max_share, want[i].expert_max_share) << "step " << i + 1;
    EXPECT_EQ(got[i].expert_min_share, want[i].expert_min_share) << "step " << i + 1;
  }
  // The router statistics reached the host: the slots' shares are real ones (the largest at
  // least 1 / experts), and the aux loss is positive.
  EXPECT_GT(got[0].expert_max_share, 0.0);
  EXPECT_GT(got[0].aux_loss, 0.0);
  BufferPool::of(kGuardedDevice).release_cached();
  EXPECT_EQ(kernels::guarded::live_blocks(), 0);
}

TEST(DeviceGuardCensus, TinyMoeTrainingStepsAreClean) {
  strict_moe_training("moe", {{"checkpoint.enable", "false"}});
}

// With the load-balancing loss: its gradient is uploaded once per forward and added on the
// device (kernels::moe_add_aux_grad).
TEST(DeviceGuardCensus, TinyMoeTrainingWithAuxLossIsClean) {
  strict_moe_training("moe_aux",
                      {{"checkpoint.enable", "false"}, {"model.router_aux_loss_coef", "0.01"}});
}

}  // namespace
}  // namespace qv
