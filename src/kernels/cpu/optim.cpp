// The AdamW update rounds after every operation, as torch's separate tensor ops do: GCC would
// otherwise contract a * b + c into an FMA in the AVX2 / AVX-512 clones (C++ mode does not forbid
// it), and the result would depend on which clone the processor runs. Before any include.
#pragma GCC optimize("fp-contract=off")

#include "kernels/cpu/optim.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace qv::kernels::cpu {
namespace {

// One element-wise AdamW update of n elements. The float results do not depend on which clone
// runs: no contraction (above), and sqrt and division are exact in every instruction set.
[[gnu::target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")]] void update_block(
    const AdamWScalars& s, float* p, const float* g, float* m, float* v, bf16* pb, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] * s.grad_scale;
    float pi = p[i] * s.decay;
    m[i] = m[i] * s.b1 + s.one_b1 * gi;
    v[i] = v[i] * s.b2 + s.one_b2 * gi * gi;
    const float denom = std::sqrt(v[i]) / s.bc2_sqrt + s.eps;
    pi = pi + s.step_size * (m[i] / denom);
    p[i] = pi;
  }
  if (pb) to_bf16(p, pb, n);
}

constexpr int64_t kUpdateBlock = 16384;
constexpr int64_t kNormBlock = int64_t{1} << 15;

}  // namespace

void adamw_update(const AdamWScalars& s, float* p, const float* g, float* m, float* v, bf16* p_bf16,
                  int64_t n) {
  const int64_t blocks = (n + kUpdateBlock - 1) / kUpdateBlock;
#pragma omp parallel for schedule(static) if (blocks > 4)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t i = b * kUpdateBlock, len = std::min(kUpdateBlock, n - i);
    update_block(s, p + i, g + i, m + i, v + i, p_bf16 ? p_bf16 + i : nullptr, len);
  }
}

double squared_norm(const float* x, std::span<const FlatPiece> pieces) {
  std::vector<FlatPiece> blocks;
  for (const FlatPiece& piece : pieces)
    for (int64_t b = piece.begin; b < piece.end; b += kNormBlock)
      blocks.push_back({b, std::min(piece.end, b + kNormBlock)});
  std::vector<double> sums(blocks.size(), 0.0);
#pragma omp parallel for schedule(dynamic, 16)
  for (size_t k = 0; k < blocks.size(); ++k) {
    double sq = 0;
    for (int64_t j = blocks[k].begin; j < blocks[k].end; ++j)
      sq += static_cast<double>(x[j]) * x[j];
    sums[k] = sq;
  }
  double sq = 0;
  for (double s : sums) sq += s;
  return sq;
}

}  // namespace qv::kernels::cpu
