// The guarded test device (kernels/guarded/guard.h, guard_census.h): host memory that host code
// cannot touch outside the ops of src/kernels. First the mechanism itself (a host write or read
// is caught, an op is not, strict mode stops at the first access, a fault elsewhere still
// crashes); then the census of the tiny dense model (forward, forward + backward, a 2-step
// Trainer::run) on that device, which lists every place where the model would touch GPU memory
// from the host, and strict checks for the parts that are clean (issue #18).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "core/buffer_pool.h"
#include "core/device.h"
#include "core/error.h"
#include "device_guard_test_utils.h"
#include "guard_census.h"
#include "kernels/activations.h"
#include "kernels/device.h"
#include "kernels/device_buffer.h"
#include "kernels/guarded/guard.h"
#include "model/inputs_io.h"
#include "model/qwen3vl.h"
#include "train/trainer.h"
#include "train_test_utils.h"

namespace qv {
namespace {

using testing::GuardCensus;
using testing::GuardMode;
using testing::host_copy;
using testing::kFixtures;
using testing::kGuardedDevice;
using testing::read_back;
using testing::report;

// A guarded buffer of n floats (the arena of the guarded device).
PoolVector<float> guarded_floats(size_t n) {
  DeviceScope on_guarded(kGuardedDevice);
  PoolVector<float> v;
  v.reserve(n);  // allocates without touching the elements
  return v;
}

bool any_site_in(const GuardCensus& census, const std::string& function_part) {
  for (const testing::GuardSite& s : census.sites())
    if (s.function.find(function_part) != std::string::npos) return true;
  return false;
}

TEST(DeviceGuard, AHostWriteAndAHostReadAreCaught) {
  GuardCensus census;
  PoolVector<float> v = guarded_floats(64);
  EXPECT_EQ(v.get_allocator().device, kGuardedDevice);
  volatile float* p = v.data();
  p[3] = 2.0f;  // host write: faults, is recorded, then allowed until the next op ends
  EXPECT_EQ(census.faults(), 1);
  EXPECT_EQ(p[3], 2.0f);  // the block stays open until an op closes it: no second fault
  EXPECT_EQ(census.faults(), 1);
  kernels::zero_bytes(v.data(), 64 * sizeof(float));  // on the CPU device: a plain memset
  {
    DeviceScope on_guarded(kGuardedDevice);
    kernels::zero_bytes(v.data(), 64 * sizeof(float));  // an op: closes the block again
  }
  const float read = p[3];  // host read: caught again
  EXPECT_EQ(read, 0.0f);
  ASSERT_EQ(census.faults(), 2);
  const std::vector<testing::GuardSite> sites = census.sites();
  ASSERT_EQ(sites.size(), 1u);
  EXPECT_EQ(sites[0].writes, 1);
  EXPECT_EQ(sites[0].reads, 1);
  EXPECT_TRUE(any_site_in(census, "AHostWriteAndAHostReadAreCaught")) << sites[0].function;
  std::printf("%s", census.report("the test's own two accesses").c_str());
}

TEST(DeviceGuard, OpsOnGuardedMemoryAreNotCaught) {
  GuardCensus census;
  const size_t n = 1000;
  PoolVector<float> a = guarded_floats(n), b = guarded_floats(n);
  std::vector<float> host(n), back(n, -1.0f);
  for (size_t i = 0; i < n; ++i) host[i] = 0.25f * static_cast<float>(i);
  {
    DeviceScope on_guarded(kGuardedDevice);
    kernels::copy_bytes(a.data(), kGuardedDevice, host.data(), kCpuDevice, n * sizeof(float));
    kernels::zero_bytes(b.data(), n * sizeof(float));
    kernels::add_inplace(b.data(), a.data(), static_cast<int64_t>(n));  // a dispatched op
    kernels::add_inplace(b.data(), a.data(), static_cast<int64_t>(n));
    kernels::copy_bytes(back.data(), kCpuDevice, b.data(), kGuardedDevice, n * sizeof(float));
  }
  EXPECT_EQ(census.faults(), 0) << census.report("ops only");
  EXPECT_EQ(census.host_pointers(), 0) << census.report("ops only");
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(back[i], 2 * host[i]) << i;
  EXPECT_GT(kernels::guarded::ops_opened(), 0);
}

TEST(DeviceGuard, HostMemoryGivenToAnOpIsReported) {
  GuardCensus census;
  PoolVector<float> a = guarded_floats(8);
  std::vector<float> host(8, 1.0f);
  {
    DeviceScope on_guarded(kGuardedDevice);
    kernels::zero_bytes(a.data(), 8 * sizeof(float));
    kernels::add_inplace(a.data(), host.data(), 8);  // host memory as an op's input
  }
  EXPECT_EQ(census.faults(), 0);
  ASSERT_EQ(census.host_pointers(), 1);
  const std::vector<testing::GuardSite> sites = census.sites();
  ASSERT_EQ(sites.size(), 1u);
  EXPECT_EQ(sites[0].via, "op add_inplace");
  EXPECT_TRUE(any_site_in(census, "HostMemoryGivenToAnOpIsReported")) << sites[0].function;
}

TEST(DeviceGuardDeathTest, StrictModeStopsAtTheFirstHostAccess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        GuardCensus strict(GuardMode::kStrict);
        PoolVector<float> v = guarded_floats(16);
        volatile float* p = v.data();
        p[0] = 1.0f;
      },
      "host code touched device memory outside an op");
}

TEST(DeviceGuardDeathTest, AFaultOutsideGuardedMemoryStillCrashes) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        GuardCensus census;
        volatile int* null = nullptr;
        *null = 1;
      },
      "");
}

// DeviceBuffer keeps std::vector's meaning (zeros on growth, contents kept, copies) on either
// device; on the guarded one without the host touching its memory.
TEST(DeviceGuard, DeviceBufferZeroesGrowsAndCopiesThroughTheDevice) {
  GuardCensus census;
  for (const Device device : {kCpuDevice, kGuardedDevice}) {
    DeviceScope scope(device);
    DeviceBuffer<float> b(5);
    EXPECT_EQ(b.device(), device);
    EXPECT_EQ(read_back(b.data(), 5, device), std::vector<float>(5, 0.0f));
    b.assign(3, 2.5f);  // a non-zero fill: uploaded from the host
    b.resize(6);        // within capacity: the new tail is zeroed
    const std::vector<float> want{2.5f, 2.5f, 2.5f, 0.0f, 0.0f, 0.0f};
    EXPECT_EQ(read_back(b.data(), 6, device), want);
    DeviceBuffer<float> c = b;  // a device copy
    c.resize(40);               // grows: contents copied, the rest zero
    std::vector<float> grown = want;
    grown.resize(40, 0.0f);
    EXPECT_EQ(read_back(c.data(), 40, device), grown);
    DeviceBuffer<float> moved = std::move(c);
    EXPECT_EQ(moved.size(), 40u);
    EXPECT_EQ(read_back(b.data(), 6, device), want);  // the original is untouched
  }
  EXPECT_EQ(census.faults(), 0) << census.report("DeviceBuffer");
  EXPECT_EQ(census.host_pointers(), 0) << census.report("DeviceBuffer");
  BufferPool::of(kGuardedDevice).release_cached();
}

// Mirrored: on the CPU, ops read the host array itself; elsewhere the copy upload() made, and
// a host array changed since is an error rather than stale data.
TEST(DeviceGuard, MirroredUploadsOnlyOffTheCpu) {
  GuardCensus census;
  {
    Mirrored<int64_t> on_cpu;
    on_cpu.host = {3, 1, 4};
    on_cpu.upload();
    EXPECT_EQ(on_cpu.data(), on_cpu.host.data());
  }
  {
    DeviceScope on_guarded(kGuardedDevice);
    Mirrored<int64_t> m;
    m.host = {3, 1, 4};
    EXPECT_TRUE(m.host.get_allocator().device.is_cpu());
    m.upload();
    EXPECT_NE(m.data(), m.host.data());
    EXPECT_EQ(read_back(m.data(), 3, kGuardedDevice), (std::vector<int64_t>{3, 1, 4}));
    m.host.push_back(1);
    EXPECT_THROW(m.data(), Error);
  }
  EXPECT_EQ(census.faults(), 0) << census.report("Mirrored");
  BufferPool::of(kGuardedDevice).release_cached();
}

// The model side: the fixtures on the guarded device. The results must equal the CPU's bit for
// bit (the same CPU kernels run, only the memory is guarded), which shows the census let every
// access through unchanged. The dense text model's forward, backward and training steps are
// clean (strict: any host access or host pointer fails the test with the census as message);
// the other paths print their census (the list docs/CUDA.md "Not done yet" quotes). Decoding,
// checkpoints, LoRA, the recorder and the exports: tests/test_device_guard_state.cpp.

struct Pass {
  double loss = 0;
  std::vector<float> grads;
};

// forward (loss only), then forward + backward, on the current device.
Pass forward_backward(model::Qwen3VLModel& m, const model::ModelInputs& in,
                      GuardCensus* census = nullptr, bool strict = false) {
  const double loss_only = m.forward(in).loss;
  if (census) report(*census, "forward (loss only)", strict);
  if (census) census->clear();
  model::ForwardOptions opt;
  opt.backward = true;
  m.store().zero_grads();
  Pass p;
  p.loss = m.forward(in, opt).loss;
  EXPECT_EQ(p.loss, loss_only);
  m.backward();
  if (census) report(*census, "forward + backward", strict);
  p.grads = host_copy(m.store().grads(), m.device());
  return p;
}

// The fixture's model and inputs: forward and backward on the CPU, then on the guarded device
// under a census; the two must agree exactly.
void census_of_fixture(const std::string& fixture, bool strict) {
  const std::string dir = kFixtures + fixture;
  const model::ModelInputs in = model::load_inputs(dir + "/inputs.safetensors");
  const Pass want = forward_backward(*model::Qwen3VLModel::from_pretrained(dir), in);
  GuardCensus census;
  {
    DeviceScope on_guarded(kGuardedDevice);
    auto m = model::Qwen3VLModel::from_pretrained(dir);
    report(census, fixture + ": from_pretrained (config, weights)", strict);
    census.clear();
    const Pass got = forward_backward(*m, in, &census, strict);
    EXPECT_EQ(got.loss, want.loss);
    EXPECT_EQ(got.grads, want.grads);
  }
  BufferPool::of(kGuardedDevice).release_cached();
  EXPECT_EQ(kernels::guarded::live_blocks(), 0);
}

TEST(DeviceGuardCensus, TinyDenseTextForwardAndBackwardAreClean) {
  census_of_fixture("hf-tiny-text", /*strict=*/true);
}

TEST(DeviceGuardCensus, TinyImageForwardAndBackwardAreClean) {
  census_of_fixture("hf-tiny-image", /*strict=*/true);
}

TEST(DeviceGuardCensus, TinyMoeForwardAndBackwardAreClean) {
  census_of_fixture("hf-tiny-moe", /*strict=*/true);
}

std::vector<train::StepRecord> two_steps(
    const std::string& name, const std::string& fixture,
    const std::vector<std::pair<std::string, std::string>>& extra) {
  const std::string dump = testing::fresh_dir("device_guard", name);
  auto config = train::JobConfig::load(testing::fixed_batch_config(fixture, dump, 2, 2), extra);
  auto m = train::build_model(config);
  train::Trainer trainer(config, std::move(m), train::make_fixed_source(config.dataset_path),
                         dist::make_local_communicator());
  return trainer.run();
}

// A 2-step Trainer::run on the CPU and on the guarded device (model built and trained there).
void census_of_training(const std::string& name, const std::string& fixture,
                        const std::vector<std::pair<std::string, std::string>>& extra,
                        bool strict) {
  const std::vector<train::StepRecord> want = two_steps(name + "_cpu", fixture, extra);
  GuardCensus census;
  std::vector<train::StepRecord> got;
  {
    DeviceScope on_guarded(kGuardedDevice);
    got = two_steps(name + "_guarded", fixture, extra);
  }
  report(census, name + ": Trainer::run, 2 steps (build, steps, end)", strict);
  ASSERT_EQ(got.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(got[i].loss, want[i].loss) << "step " << i + 1;
    EXPECT_EQ(got[i].grad_norm, want[i].grad_norm) << "step " << i + 1;
  }
  BufferPool::of(kGuardedDevice).release_cached();
  EXPECT_EQ(kernels::guarded::live_blocks(), 0);
}

TEST(DeviceGuardCensus, TinyDenseTrainingStepsAreClean) {
  census_of_training("dense", "hf-tiny-text", {{"checkpoint.enable", "false"}}, /*strict=*/true);
}

TEST(DeviceGuardCensus, TinyImageTrainingStepsAreClean) {
  census_of_training("image", "hf-tiny-image", {{"checkpoint.enable", "false"}}, /*strict=*/true);
}

}  // namespace
}  // namespace qv
