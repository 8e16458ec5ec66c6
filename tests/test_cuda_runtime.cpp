// The CUDA backend as a machine without a GPU sees it: the binary starts, reports "no CUDA
// device" with the driver's reason, and refuses device work with that message instead of
// crashing. On a GPU machine the same tests check the device is described.
#include <gtest/gtest.h>

#include "core/error.h"
#include "cuda_test_utils.h"

#ifndef QWEN3VL_HAS_CUDA
TEST(CudaRuntime, NotBuilt) { GTEST_SKIP() << "skipped: this build has no CUDA backend"; }
#else
#include "kernels/cuda/runtime.h"

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

}  // namespace
}  // namespace qv
#endif
