// bfloat16: the top 16 bits of an IEEE float (8 exponent bits, 7 stored mantissa bits). Rounding
// from float is to nearest, ties to even, as torch and the CPU's VCVTNEPS2BF16 round normal
// numbers; NaN stays a quiet NaN of the same sign, and subnormals are kept (not flushed), so the
// same input gives the same bits on every processor. One bf16 ulp is 2^-7 of its binade: a
// rounding moves a value by at most 2^-8 relative (0.39%).
#pragma once
#include <bit>
#include <cstdint>

namespace qv {

struct bf16 {
  uint16_t bits;
};

inline bf16 to_bf16(float f) {
  const uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<uint16_t>((u >> 16) | 0x40u)};
  return {static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16)};
}

inline float to_float(bf16 h) {
  return std::bit_cast<float>(static_cast<uint32_t>(h.bits) << 16);
}

// Bulk conversions (vectorised; split over threads for large n outside a parallel region).
void to_bf16(const float* src, bf16* dst, int64_t n);
void to_float(const bf16* src, float* dst, int64_t n);

}  // namespace qv
