// Helpers of the guarded-device tests (tests/test_device_guard*.cpp): the fixtures' folder, host
// copies of device memory through kernels::copy_bytes, and the census printout that is also the
// strict check (kernels/guarded/guard.h, guard_census.h).
#pragma once
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/page_buffer.h"
#include "guard_census.h"
#include "kernels/device.h"

namespace qv::testing {

inline const std::string kFixtures = std::string(QWEN3VL_SOURCE_DIR) + "/tests/fixtures/";

// n values at p on `device`, copied to the host.
template <class T>
std::vector<T> read_back(const T* p, size_t n, Device device) {
  std::vector<T> out(n);
  kernels::copy_bytes(out.data(), kCpuDevice, p, device, n * sizeof(T));
  return out;
}

// A page buffer's values, copied to the host.
template <class T>
std::vector<T> host_copy(const PageArray<T>& b, Device device) {
  return read_back(b.data(), static_cast<size_t>(b.size()), device);
}

// Prints the census of `stage`; strict: it must be empty (any host access or host pointer fails
// the test, the census as the message).
inline void report(const GuardCensus& census, const std::string& stage, bool strict) {
  const std::string table = census.report(stage);
  std::printf("%s", table.c_str());
  if (!strict) return;
  EXPECT_EQ(census.faults(), 0) << table;
  EXPECT_EQ(census.host_pointers(), 0) << table;
}

}  // namespace qv::testing
