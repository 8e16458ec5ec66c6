// The asynchronous training step (docs/CUDA.md "The asynchronous step"): the classifier's row
// losses stay on the device until the step's end (model::LossTerms, kernels::cross_entropy_terms)
// and the next step's inputs are fetched and uploaded while the current step computes
// (model::DeviceInputs, kernels::upload_input_ahead, Trainer::prefetch_next_batch).
//  - LossTerms adds the terms in the documented association (per chunk, then per micro-batch),
//    checked with values where another association gives another double;
//  - the model's deferred loss equals the returning path's bit for bit, with equal gradients,
//    on the CPU and on the guarded device;
//  - on the guarded device, Trainer::run issues step N+1's ahead uploads before it reads step
//    N's loss back, touches no device memory from the host, and trains as the CPU does.
// The checkpoint side (a save while a batch waits records the loader's state from before it):
// TrainCc12m.LossFallsAndResumeMidEpochMatchesStraightRun (tests/test_loader.cpp) saves at step
// 6 of 12 with step 7's batch prefetched and resumes bit for bit; saving the loader's state
// after the prefetch instead fails it from step 7 on.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/buffer_pool.h"
#include "core/device.h"
#include "core/error.h"
#include "device_guard_test_utils.h"
#include "guard_census.h"
#include "kernels/cross_entropy.h"
#include "kernels/guarded/guard.h"
#include "model/inputs_io.h"
#include "model/loss_terms.h"
#include "model/qwen3vl.h"
#include "train/batch_source.h"
#include "train/trainer.h"
#include "train_test_utils.h"

namespace qv {
namespace {

using testing::GuardCensus;
using testing::host_copy;
using testing::kFixtures;
using testing::kGuardedDevice;
using testing::report;

constexpr int64_t kIgnore = kernels::kIgnoreIndex;

// Terms chosen so that the association shows: 1e16 + 1 rounds back to 1e16 (ties to even), so a
// running sum over [1e16, 1, 1, 1] stays at 1e16, while chunks of 2 give 1e16 + 2.
TEST(AsyncStep, LossTermsAddChunksThenMicroBatchesInOrder) {
  model::LossTerms terms;  // on the CPU: add_batch hands out host memory
  const std::vector<int64_t> t1 = {5, 5, 5, 5, kIgnore}, t2 = {kIgnore, 7, 7};
  double* a = terms.add_batch(t1, 2);
  const double va[5] = {1e16, 1, 1, 1, 123};  // the ignored row's term is not read
  std::copy(va, va + 5, a);
  double* b = terms.add_batch(t2, 2);
  const double vb[3] = {99, 3, 0.5};
  std::copy(vb, vb + 3, b);
  const double batch1 = (0.0 + (0.0 + 1e16 + 1)) + (0.0 + 1 + 1);  // chunks [1e16, 1] [1, 1] [-]
  const double batch2 = (0.0 + 3) + (0.0 + 0.5);                   // chunks [-, 3] [0.5]
  EXPECT_EQ(terms.sum(), 0.0 + batch1 + batch2);
  EXPECT_EQ(terms.sum(), 1e16 + 5.5);
  EXPECT_NE(terms.sum(), ((((1e16 + 1) + 1) + 1) + 3) + 0.5);  // what one running sum gives
  EXPECT_EQ(terms.batches(), 2);
}

struct Passes {
  double loss_sum = 0;
  std::vector<float> grads;
};

// Two micro-batches (the fixture's inputs twice) with forward + backward, the losses summed as
// the trainer sums them: returned by each forward, or deferred into LossTerms.
Passes two_micro_batches(model::Qwen3VLModel& m, const model::ModelInputs& in, bool deferred) {
  m.store().zero_grads();
  model::LossTerms terms;
  model::ForwardOptions opt;
  opt.backward = true;
  opt.loss_grad_scale = 1.0 / 64;
  opt.classifier_chunk = 3;  // several chunks, the last one short
  if (deferred) opt.loss_terms = &terms;
  Passes p;
  for (int i = 0; i < 2; ++i) {
    const model::ForwardResult r = m.forward(in, opt);
    if (deferred) {
      EXPECT_TRUE(std::isnan(r.loss_sum) && std::isnan(r.loss));
    }
    p.loss_sum += r.loss_sum;
    m.backward();
  }
  if (deferred) p.loss_sum = terms.sum();
  p.grads = host_copy(m.store().grads(), m.device());
  return p;
}

void expect_deferred_equals_returned(const std::string& fixture, bool bf16) {
  const std::string dir = kFixtures + fixture;
  const model::ModelInputs in = model::load_inputs(dir + "/inputs.safetensors");
  auto m = model::Qwen3VLModel::from_pretrained(dir);
  if (bf16) m->enable_bf16_matmuls();
  const Passes want = two_micro_batches(*m, in, /*deferred=*/false);
  const Passes got = two_micro_batches(*m, in, /*deferred=*/true);
  EXPECT_EQ(got.loss_sum, want.loss_sum);
  EXPECT_EQ(got.grads, want.grads);
  GuardCensus census;
  {
    DeviceScope on_guarded(kGuardedDevice);
    auto g = model::Qwen3VLModel::from_pretrained(dir);
    if (bf16) g->enable_bf16_matmuls();
    census.clear();
    const Passes guarded = two_micro_batches(*g, in, /*deferred=*/true);
    EXPECT_EQ(guarded.loss_sum, want.loss_sum);
    EXPECT_EQ(guarded.grads, want.grads);
  }
  report(census, fixture + ": deferred losses on the guarded device", /*strict=*/true);
  BufferPool::of(kGuardedDevice).release_cached();
}

TEST(AsyncStep, DeferredLossEqualsTheReturnedOneWithEqualGradients) {
  expect_deferred_equals_returned("hf-tiny-text", /*bf16=*/false);
  expect_deferred_equals_returned("hf-tiny-image", /*bf16=*/true);
}

// The order of the host <-> guarded copies during a run: 'A' an ahead input upload, 'U' an
// input upload inside a forward, 'D' another copy to the device, 'H' a copy to the host.
std::string g_transfers;
void record_transfer(kernels::guarded::Transfer kind, size_t /*bytes*/) {
  using kernels::guarded::Transfer;
  g_transfers += kind == Transfer::kInputUploadAhead ? 'A'
                 : kind == Transfer::kInputUpload    ? 'U'
                 : kind == Transfer::kToDevice       ? 'D'
                                                     : 'H';
}

std::vector<train::StepRecord> three_steps(const std::string& name) {
  const std::string dump = testing::fresh_dir("async_step", name);
  auto config = train::JobConfig::load(
      testing::fixed_batch_config("hf-tiny-image", dump, 3, 3),
      {{"checkpoint.enable", "false"}, {"training.global_batch_size", "2"}});  // 2 micro-batches
  auto m = train::build_model(config);
  train::Trainer trainer(config, std::move(m), train::make_fixed_source(config.dataset_path),
                         dist::make_local_communicator());
  return trainer.run();
}

// Each step reads its loss back once ('H': the two micro-batches' row terms, one copy each),
// after the next step's ahead uploads ('A': token ids and pixels of its two micro-batches). So
// steps 1 and 2 end with "AAAA HH", the last step (nothing to prefetch) with "HH" alone; step
// 1's own inputs are uploaded at its start.
TEST(AsyncStep, NextStepsUploadsComeBeforeTheLossIsReadBack) {
  const std::vector<train::StepRecord> want = three_steps("cpu");
  GuardCensus census;
  std::vector<train::StepRecord> got;
  g_transfers.clear();
  kernels::guarded::set_transfer_hook(record_transfer);
  {
    DeviceScope on_guarded(kGuardedDevice);
    got = three_steps("guarded");
  }
  kernels::guarded::set_transfer_hook(nullptr);
  report(census, "Trainer::run, 3 steps with prefetching", /*strict=*/true);
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(got[i].loss, want[i].loss) << "step " << i + 1;
    EXPECT_EQ(got[i].grad_norm, want[i].grad_norm) << "step " << i + 1;
  }
  // The run's order, without the forwards' own uploads and other copies to the device.
  std::string order;
  for (char c : g_transfers)
    if (c == 'A' || c == 'H') order += c;
  // Step 1: its own 4 uploads, step 2's 4, its 2 read-backs; step 2: step 3's 4, its 2;
  // step 3: its 2.
  EXPECT_EQ(order, "AAAAAAAAHHAAAAHHHH") << g_transfers;
  BufferPool::of(kGuardedDevice).release_cached();
  EXPECT_EQ(kernels::guarded::live_blocks(), 0);
}

// A source whose `fail_at`-th batch (1-based) throws, as a loader meeting an unreadable shard.
class FailingSource : public train::BatchSource {
 public:
  FailingSource(std::unique_ptr<train::BatchSource> inner, int fail_at)
      : inner_(std::move(inner)), fail_at_(fail_at) {}
  model::ModelInputs next() override {
    if (++calls_ == fail_at_) fail("test source: batch ", calls_, " is unreadable");
    return inner_->next();
  }
  nlohmann::json state() const override { return inner_->state(); }
  void restore(const nlohmann::json& st) override { inner_->restore(st); }
  std::string describe() const override { return "failing test source"; }

 private:
  std::unique_ptr<train::BatchSource> inner_;
  int fail_at_, calls_ = 0;
};

// Step 3's batch, prefetched during step 2, cannot be read: step 2 still finishes, is logged and
// saved, and the error stops the run when step 3 takes its batch.
TEST(AsyncStep, APrefetchErrorStopsTheStepThatNeedsTheBatch) {
  const std::string dump = testing::fresh_dir("async_step", "prefetch_error");
  auto config = train::JobConfig::load(testing::fixed_batch_config("hf-tiny-text", dump, 3, 1));
  auto data =
      std::make_unique<FailingSource>(train::make_fixed_source(config.dataset_path), /*fail_at=*/3);
  train::Trainer trainer(config, train::build_model(config), std::move(data),
                         dist::make_local_communicator());
  try {
    trainer.run();
    FAIL() << "the unreadable batch did not stop the run";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("batch 3 is unreadable"), std::string::npos) << e.what();
  }
  EXPECT_EQ(trainer.step(), 2);
  std::ifstream metrics(dump + "/metrics.jsonl");
  int logged = 0;
  for (std::string line; std::getline(metrics, line);) logged += !line.empty();
  EXPECT_EQ(logged, 2);
  EXPECT_TRUE(std::filesystem::exists(dump + "/checkpoint/step-00000002/state.json"));
}

}  // namespace
}  // namespace qv
