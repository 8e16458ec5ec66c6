// The optimizer ops (kernels/optim.h) against plain loops: the fused AdamW update element by
// element in torch's order (bit-equal: the same float operations), its bf16 copy (bit-equal to
// core's round-to-nearest-even), the blocked squared norm (equal to a double sum within 1e-12
// relative, the only difference being the order of double additions) and the same bits for
// every thread count.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <random>
#include <vector>

#include "core/bf16.h"
#include "kernels/optim.h"

namespace qv {
namespace {

std::vector<float> randoms(int64_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Several parallel blocks (16384 elements each) and a ragged tail.
constexpr int64_t kN = 16384 * 5 + 37;

TEST(KernelsOptim, AdamWUpdateEqualsTheElementwiseLoopAndWritesTheBf16Copy) {
  const kernels::AdamWScalars s{0.9999f, 0.9f, 0.1f, 0.95f, 0.05f, -1e-3f, 0.3f, 1e-8f, 0.7f};
  std::vector<float> p = randoms(kN, 1), g = randoms(kN, 2, 0.01f), m = randoms(kN, 3, 1e-3f),
                     v = randoms(kN, 4, 1e-3f);
  for (float& x : v) x = x * x;
  std::vector<float> p2 = p, m2 = m, v2 = v;
  std::vector<bf16> copy(kN);
  kernels::adamw_update(s, p.data(), g.data(), m.data(), v.data(), copy.data(), kN);
  for (int64_t i = 0; i < kN; ++i) {
    const float gi = g[i] * s.grad_scale;  // clipping first, as a separate scaling pass would
    float pi = p2[i] * s.decay;
    m2[i] = m2[i] * s.b1 + s.one_b1 * gi;
    v2[i] = v2[i] * s.b2 + s.one_b2 * gi * gi;
    pi = pi + s.step_size * (m2[i] / (std::sqrt(v2[i]) / s.bc2_sqrt + s.eps));
    ASSERT_EQ(p[i], pi) << i;
    ASSERT_EQ(m[i], m2[i]) << i;
    ASSERT_EQ(v[i], v2[i]) << i;
    ASSERT_EQ(copy[i].bits, to_bf16(pi).bits) << i;
  }
  // The gradients are read, not scaled in place.
  EXPECT_EQ(g, randoms(kN, 2, 0.01f));
}

TEST(KernelsOptim, SquaredNormOfPiecesEqualsADoubleSumForAnyThreadCount) {
  const std::vector<float> x = randoms(kN * 3, 5);
  const std::vector<kernels::FlatPiece> pieces{{0, 100}, {1000, 1000 + kN}, {2 * kN, 3 * kN}};
  double want = 0;
  for (const auto& piece : pieces)
    for (int64_t j = piece.begin; j < piece.end; ++j) want += static_cast<double>(x[j]) * x[j];
  const double got = kernels::squared_norm(x.data(), pieces);
  EXPECT_NEAR(got, want, 1e-12 * want);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one_thread = kernels::squared_norm(x.data(), pieces);
  omp_set_num_threads(threads);
  EXPECT_EQ(got, one_thread);
  EXPECT_EQ(kernels::squared_norm(x.data(), {}), 0.0);
}

}  // namespace
}  // namespace qv
