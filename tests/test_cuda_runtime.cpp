// The CUDA backend as a machine without a GPU sees it: the binary starts, reports "no CUDA
// device" with the driver's reason, and refuses device work with that message instead of
// crashing. On a GPU machine the same tests check the device is described.
#include <gtest/gtest.h>

#include "core/error.h"
#include "cuda_test_utils.h"

#ifndef QWEN3VL_HAS_CUDA
TEST(CudaRuntime, NotBuilt) {
  GTEST_SKIP() << "skipped: this build has no CUDA backend";
}
#else
#include <vector>

#include "kernels/cuda/runtime.h"
#ifdef QWEN3VL_HAS_NCCL
#include "core/device.h"
#include "dist/nccl_communicator.h"
#endif

namespace qv {
namespace {

namespace gpu = qv::kernels::cuda;

TEST(CudaRuntime, NoDeviceIsReportedCleanly) {
  if (gpu::device_count() > 0) {
    EXPECT_TRUE(gpu::unavailable_reason().empty());
    EXPECT_NE(gpu::describe_device(0).find("sm_"), std::string::npos);
    return;
  }
  EXPECT_NE(gpu::unavailable_reason().find("no CUDA device"), std::string::npos)
      << gpu::unavailable_reason();
  try {
    gpu::require_device();
    FAIL() << "require_device() returned without a device";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no CUDA device"), std::string::npos) << e.what();
  }
  EXPECT_THROW(gpu::allocate(16), Error);
  EXPECT_THROW(gpu::set_device(0), Error);
}

#ifdef QWEN3VL_HAS_NCCL
// One rank over the local bootstrap: NCCL's collectives on device memory, and split. With one
// rank the all-reduce is the identity, the all-gather a copy, and the reduce-scatter keeps block 0.
TEST(CudaNccl, SingleRankCollectivesAndSplit) {
  QV_REQUIRE_CUDA();
  DeviceScope scope(Device{DeviceKind::kCuda, 0});
  auto boot = dist::make_local_communicator();
  auto comm = dist::make_nccl_communicator(*boot, 60);
  EXPECT_EQ(comm->rank(), 0);
  EXPECT_EQ(comm->size(), 1);
  const std::vector<float> h = {1.5f, -2.f, 3.25f, 4.f};
  auto d = testing::to_device(h);
  comm->all_reduce_sum(d.data(), 4);
  EXPECT_EQ(testing::to_host(d), h);
  gpu::DeviceArray<float> g(4);
  comm->all_gather(d.data(), g.data(), 4);
  EXPECT_EQ(testing::to_host(g), h);
  gpu::DeviceArray<float> rs(4);
  comm->reduce_scatter_sum(d.data(), rs.data(), 4);
  EXPECT_EQ(testing::to_host(rs), h);
  comm->start_all_reduce_sum(d.data(), 4);
  comm->wait_all();
  EXPECT_EQ(testing::to_host(d), h);
  double x[2] = {2.5, -1};
  comm->all_reduce_sum(x, 2);
  EXPECT_EQ(x[0], 2.5);
  comm->all_reduce_max(x, 2);
  EXPECT_EQ(x[1], -1);
  auto sub = comm->split(0, 0);
  EXPECT_EQ(sub->size(), 1);
  sub->barrier();
}

// The all-to-alls (grouped ncclSend / ncclRecv to itself on one rank): a copy, from device
// memory (expert parallelism's rows) and from host memory (the streamed export's windows,
// staged through the device), and the int64 all_to_all of counts.
TEST(CudaNccl, SingleRankAllToAllFromDeviceAndHostMemory) {
  QV_REQUIRE_CUDA();
  DeviceScope scope(Device{DeviceKind::kCuda, 0});
  auto boot = dist::make_local_communicator();
  auto comm = dist::make_nccl_communicator(*boot, 60);
  const std::vector<float> h = {1.5f, -2.f, 3.25f, 4.f, 0.5f};
  const int64_t n = static_cast<int64_t>(h.size());
  auto d = testing::to_device(h);
  gpu::DeviceArray<float> out(h.size());
  comm->all_to_all_v(d.data(), &n, out.data(), &n);
  EXPECT_EQ(testing::to_host(out), h);
  std::vector<float> host_out(h.size(), 0.0f);
  comm->all_to_all_v(h.data(), &n, host_out.data(), &n);
  EXPECT_EQ(host_out, h);
  const int64_t none = 0;
  comm->all_to_all_v(nullptr, &none, nullptr, &none);  // an empty window
  const std::vector<int64_t> counts = {7, -3, 1ll << 40};
  std::vector<int64_t> got(3, 0);
  comm->all_to_all(counts.data(), got.data(), 3);
  EXPECT_EQ(got, counts);
}
#endif

}  // namespace
}  // namespace qv
#endif
