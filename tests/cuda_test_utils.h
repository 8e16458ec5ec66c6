// Helpers for the CUDA backend's tests: skip without a device, host <-> device vectors.
// Every CUDA test starts with QV_REQUIRE_CUDA(), which skips it with "skipped: no CUDA device"
// where the binary has the backend but the machine has no GPU (or no driver). Builds without
// the backend compile the tests out (tests/test_cuda_*.cpp keep one test that says so).
#pragma once
#include <gtest/gtest.h>

#ifdef QWEN3VL_HAS_CUDA
#include <vector>

#include "kernels/cuda/runtime.h"

#define QV_REQUIRE_CUDA()                                                       \
  do {                                                                          \
    if (::qv::kernels::cuda::device_count() == 0)                               \
      GTEST_SKIP() << "skipped: " << ::qv::kernels::cuda::unavailable_reason(); \
  } while (0)

namespace qv::testing {

template <typename T>
kernels::cuda::DeviceArray<T> to_device(const std::vector<T>& host) {
  return kernels::cuda::DeviceArray<T>(host.data(), static_cast<int64_t>(host.size()));
}

template <typename T>
std::vector<T> to_host(const kernels::cuda::DeviceArray<T>& d) {
  std::vector<T> host(static_cast<size_t>(d.size()));
  d.download(host.data());
  return host;
}

}  // namespace qv::testing
#endif
