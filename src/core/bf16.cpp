#include "core/bf16.h"

#include <omp.h>

#include <algorithm>

namespace qv {
namespace {

// Branch-free forms of the scalar conversions, so the loops vectorise.
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]] void to_bf16_block(
    const float* src, bf16* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = std::bit_cast<uint32_t>(src[i]);
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    const uint32_t nan = (u >> 16) | 0x40u;
    dst[i].bits = static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
  }
}

[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]] void to_float_block(
    const bf16* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    dst[i] = std::bit_cast<float>(static_cast<uint32_t>(src[i].bits) << 16);
}

template <class F>
void split(int64_t n, F&& block) {
  constexpr int64_t kGrain = 1 << 16;
  if (n < 2 * kGrain || omp_in_parallel()) return block(0, n);
  const int64_t pieces = (n + kGrain - 1) / kGrain;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < pieces; ++p) block(p * kGrain, std::min(n, (p + 1) * kGrain));
}

}  // namespace

void to_bf16(const float* src, bf16* dst, int64_t n) {
  split(n, [&](int64_t b, int64_t e) { to_bf16_block(src + b, dst + b, e - b); });
}

void to_float(const bf16* src, float* dst, int64_t n) {
  split(n, [&](int64_t b, int64_t e) { to_float_block(src + b, dst + b, e - b); });
}

}  // namespace qv
