// exp(x) written with plain arithmetic so that softmax loops vectorise (libm's exp is a call per
// element). Private to kernels/cpu.
//
// x = n ln2 + r with |r| <= ln2/2, exp(r) by its Taylor polynomial (degree 7 for float, 13 for
// double: truncation below 0.1 ulp), 2^n built in the exponent bits. The integer n comes from
// the "add 1.5 * 2^mantissa_bits" rounding trick, so no float->int conversion is needed (SSE has
// none for 64-bit integers). Relative error is about 1 ulp. Results below the smallest normal
// number are flushed to 0 (so exp(-inf) = 0), arguments too large for the range give +inf, and
// NaN stays NaN.
#pragma once
#include <bit>
#include <cstdint>
#include <limits>

namespace qv::kernels::cpu {

inline float fast_exp(float x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693145751953125f;  // few mantissa bits: n * kLn2Hi is exact
  constexpr float kLn2Lo = 1.42860682030941723212e-6f;
  constexpr float kShift = 12582912.0f;                  // 1.5 * 2^23
  constexpr float kLo = -87.33654f;                      // ln(FLT_MIN)
  constexpr float kHi = 88.37626f;                       // largest x with n <= 127
  const float xc = x < kLo ? kLo : (x > kHi ? kHi : x);  // NaN passes through
  const float t = xc * kLog2e + kShift;
  const float n = t - kShift;
  const float r = (xc - n * kLn2Hi) - n * kLn2Lo;
  float p = 1.0f / 5040;
  p = p * r + 1.0f / 720;
  p = p * r + 1.0f / 120;
  p = p * r + 1.0f / 24;
  p = p * r + 1.0f / 6;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const uint32_t bits = (std::bit_cast<uint32_t>(t) << 23) + (127u << 23);
  const float y = p * std::bit_cast<float>(bits);
  return x < kLo ? 0.0f : (x > kHi ? std::numeric_limits<float>::infinity() : y);
}

inline double fast_exp(double x) {
  constexpr double kLog2e = 1.4426950408889634074;
  constexpr double kLn2Hi = 6.93147180369123816490e-01;  // n * kLn2Hi is exact for |n| < 2^11
  constexpr double kLn2Lo = 1.90821492927058770002e-10;
  constexpr double kShift = 6755399441055744.0;  // 1.5 * 2^52
  constexpr double kLo = -708.3964185322641;     // ln(DBL_MIN)
  constexpr double kHi = 709.43;                 // largest x with n <= 1023
  const double xc = x < kLo ? kLo : (x > kHi ? kHi : x);
  const double t = xc * kLog2e + kShift;
  const double n = t - kShift;
  const double r = (xc - n * kLn2Hi) - n * kLn2Lo;
  double p = 1.0 / 6227020800.0;  // 1/13!
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const uint64_t bits = (std::bit_cast<uint64_t>(t) << 52) + (uint64_t{1023} << 52);
  const double y = p * std::bit_cast<double>(bits);
  return x < kLo ? 0.0 : (x > kHi ? std::numeric_limits<double>::infinity() : y);
}

// y[j] = exp(x[j] - shift) for j < n, returning the sum of the y[j] in double; y may alias x.
// Compiled for AVX2 + FMA too, chosen at load time when the CPU has them.
double exp_shifted(const float* x, float* y, int64_t n, float shift);
double exp_shifted(const double* x, double* y, int64_t n, double shift);

}  // namespace qv::kernels::cpu
