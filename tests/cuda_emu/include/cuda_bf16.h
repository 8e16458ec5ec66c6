// CUDA emulator (tests/cuda_emu, docs/CUDA.md): stand-in for cuda_bf16.h. __nv_bfloat16 is the
// 16 upper bits of a float; conversions round to nearest even and keep NaN a (quiet) NaN, as the
// device's cvt.rn.bf16.f32 does.
//
// Emulated: __nv_bfloat16 (and its raw bits), __float2bfloat16(_rn), __bfloat162float,
// conversions to and from float, the arithmetic operators (computed in float and rounded once).
// Not emulated: __nv_bfloat162 pairs and the packed intrinsics, the rz/rd/ru roundings. A bf16 sum
// computed in float and rounded may differ from the device's native bf16 add by double rounding
// when the exponents are far apart (products of two bf16 are exact in float, so multiply matches).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

struct __nv_bfloat16_raw {
  unsigned short x;
};

inline unsigned short qvemu_float_to_bf16_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<unsigned short>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<unsigned short>(u >> 16);
}

inline float qvemu_bf16_bits_to_float(unsigned short b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

struct __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  __nv_bfloat16(float f) : __x(qvemu_float_to_bf16_bits(f)) {}
  __nv_bfloat16(double f) : __x(qvemu_float_to_bf16_bits(static_cast<float>(f))) {}
  __nv_bfloat16(const __nv_bfloat16_raw& r) : __x(r.x) {}
  operator float() const { return qvemu_bf16_bits_to_float(__x); }
  operator __nv_bfloat16_raw() const { return {__x}; }
};
static_assert(sizeof(__nv_bfloat16) == 2, "__nv_bfloat16 is 16 bits");

inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  __nv_bfloat16 b;
  b.__x = qvemu_float_to_bf16_bits(f);
  return b;
}
inline __nv_bfloat16 __float2bfloat16(float f) {
  return __float2bfloat16_rn(f);
}
inline float __bfloat162float(__nv_bfloat16 b) {
  return qvemu_bf16_bits_to_float(b.__x);
}

#define QVEMU_BF16_OP(op)                                                   \
  inline __nv_bfloat16 operator op(__nv_bfloat16 a, __nv_bfloat16 b) {      \
    return __float2bfloat16_rn(__bfloat162float(a) op __bfloat162float(b)); \
  }
QVEMU_BF16_OP(+)
QVEMU_BF16_OP(-)
QVEMU_BF16_OP(*)
QVEMU_BF16_OP(/)
#undef QVEMU_BF16_OP
