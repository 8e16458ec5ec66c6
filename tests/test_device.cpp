// The device seam on a CPU build: device names, the allocator registry, tensors that know their
// device, the calling thread's current device, and the clear errors a binary without the CUDA
// backend gives when asked for a GPU.
#include <gtest/gtest.h>

#include <thread>

#include "core/allocator.h"
#include "core/device.h"
#include "core/error.h"
#include "core/tensor.h"
#include "kernels/device.h"
#include "kernels/norms.h"

namespace qv {
namespace {

TEST(Device, ParsesAndPrintsTheClosedSet) {
  EXPECT_TRUE(parse_device("cpu").is_cpu());
  EXPECT_EQ(parse_device("cuda"), (Device{DeviceKind::kCuda, 0}));
  EXPECT_EQ(parse_device("cuda:3"), (Device{DeviceKind::kCuda, 3}));
  EXPECT_EQ(to_string(parse_device("cuda:3")), "cuda:3");
  EXPECT_EQ(to_string(kCpuDevice), "cpu");
  for (const char* bad : {"", "gpu", "cuda:", "cuda:-1", "cuda:1x", "CPU", "cuda:99999999999"})
    EXPECT_THROW(parse_device(bad), Error) << bad;
}

TEST(Device, CpuAllocatorGivesAlignedZeroableMemory) {
  Allocator& a = allocator_for(kCpuDevice);
  EXPECT_TRUE(a.device().is_cpu());
  EXPECT_EQ(a.allocate(0), nullptr);
  auto* p = static_cast<unsigned char*>(a.allocate(1000));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  p[999] = 7;
  a.zero(p, 1000);
  EXPECT_EQ(p[999], 0);
  a.deallocate(p, 1000);
}

TEST(Device, TensorsCarryTheirDevice) {
  const Tensor t(DType::kF32, {3, 4});
  EXPECT_TRUE(t.device().is_cpu());
  EXPECT_EQ(t.data<float>()[11], 0.0f);
}

TEST(Device, CurrentDeviceIsPerThreadAndScopesNest) {
  EXPECT_TRUE(current_device().is_cpu());
  {
    DeviceScope outer(Device{DeviceKind::kCuda, 1});
    EXPECT_EQ(current_device(), (Device{DeviceKind::kCuda, 1}));
    Device seen_by_other_thread;
    std::thread([&] { seen_by_other_thread = current_device(); }).join();
    EXPECT_TRUE(seen_by_other_thread.is_cpu());
    {
      DeviceScope inner(kCpuDevice);
      EXPECT_TRUE(current_device().is_cpu());
    }
    EXPECT_EQ(current_device(), (Device{DeviceKind::kCuda, 1}));
  }
  EXPECT_TRUE(current_device().is_cpu());
}

TEST(Device, HostCopiesAndZeroing) {
  std::vector<float> a{1, 2, 3}, b(3);
  kernels::copy_bytes(b.data(), kCpuDevice, a.data(), kCpuDevice, 3 * sizeof(float));
  EXPECT_EQ(a, b);
  kernels::zero_bytes(b.data(), sizeof(float));
  EXPECT_EQ(b, (std::vector<float>{0, 2, 3}));
}

#if !QWEN3VL_HAS_CUDA
// Without the backend every way onto a GPU names the device and the reason.
TEST(Device, ABinaryWithoutCudaSaysSo) {
  const Device gpu{DeviceKind::kCuda, 0};
  auto expect_says_built_without = [](auto&& f) {
    try {
      f();
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("built without the CUDA backend"), std::string::npos)
          << e.what();
    }
  };
  expect_says_built_without([&] { allocator_for(gpu); });
  expect_says_built_without([&] { Tensor(DType::kF32, {2}, gpu); });
  float x = 1, y = 0;
  expect_says_built_without([&] { kernels::copy_bytes(&y, gpu, &x, kCpuDevice, sizeof x); });
  DeviceScope scope(gpu);
  float w = 1, rstd = 0;
  expect_says_built_without(
      [&] { kernels::rmsnorm_forward<float>(&x, &w, &y, &rstd, 1, 1, 1e-6f); });
}
#endif

}  // namespace
}  // namespace qv
