// A branch-free exp for float that the compiler vectorises (glibc's expf is a scalar call).
// Range reduction x = n ln2 + r, |r| <= ln2/2, then a degree-6 polynomial for e^r and 2^n by
// exponent bits: relative error below 2e-7 on [-87, 88]; results below e^-87 flush to zero.
// The double overload is the libm function (used by finite-difference tests).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

namespace qv::kernels {

inline float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float n = std::nearbyint(x * 1.44269504088896341f);
  // Two-step Cody-Waite: ln2 = C1 + C2 with C1 exact in few bits.
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, 4);
  return x <= -87.0f ? 0.0f : p * scale;
}

inline double fast_exp(double x) { return std::exp(x); }

}  // namespace qv::kernels
