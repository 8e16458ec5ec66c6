// Rotary embedding against the rotate_half formula; backward by finite differences.
#include <gtest/gtest.h>

#include "core/error.h"
#include "kernel_test_utils.h"
#include "kernels/rope.h"

namespace qv {
namespace {

using testing::cast_vector;
using testing::numeric_grad;
using testing::random_vector;
using testing::sample_indices;

// y = x * cos + rotate_half(x) * sin with rotate_half([a, b]) = [-b, a], built explicitly.
std::vector<double> naive_rope(const std::vector<double>& x, const std::vector<double>& cos,
                               const std::vector<double>& sin, int64_t rows, int64_t heads,
                               int64_t hd) {
  std::vector<double> y(x.size());
  const int64_t half = hd / 2;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < heads; ++h) {
      const double* xv = x.data() + (r * heads + h) * hd;
      std::vector<double> rot(hd);
      for (int64_t i = 0; i < half; ++i) {
        rot[i] = -xv[i + half];
        rot[i + half] = xv[i];
      }
      for (int64_t i = 0; i < hd; ++i)
        y[(r * heads + h) * hd + i] = xv[i] * cos[r * hd + i] + rot[i] * sin[r * hd + i];
    }
  return y;
}

struct RopeCase {
  int64_t rows = 5, heads = 3, hd = 6;  // hd even but not a power of two
  std::vector<double> x, cos, sin;
  RopeCase() {
    x = random_vector(rows * heads * hd, 1);
    // Arbitrary tables (not only true rotations), so every term of the formula is exercised.
    cos = random_vector(rows * hd, 2);
    sin = random_vector(rows * hd, 3);
  }
};

template <typename T>
std::vector<double> run_rope(const RopeCase& c, bool in_place) {
  auto x = cast_vector<T>(c.x);
  const auto cs = cast_vector<T>(c.cos), sn = cast_vector<T>(c.sin);
  std::vector<T> y(x.size());
  T* dst = in_place ? x.data() : y.data();
  kernels::rope_forward<T>(x.data(), cs.data(), sn.data(), dst, c.rows, c.heads, c.hd);
  return cast_vector<double>(in_place ? x : y);
}

template <typename T>
std::vector<double> run_rope_backward(const RopeCase& c, const std::vector<double>& dy,
                                      bool in_place) {
  auto g = cast_vector<T>(dy);
  const auto cs = cast_vector<T>(c.cos), sn = cast_vector<T>(c.sin);
  std::vector<T> dx(g.size(), T(3));
  T* dst = in_place ? g.data() : dx.data();
  kernels::rope_backward<T>(g.data(), cs.data(), sn.data(), dst, c.rows, c.heads, c.hd);
  return cast_vector<double>(in_place ? g : dx);
}

TEST(KernelsRope, ForwardMatchesRotateHalfAndMayRunInPlace) {
  const RopeCase c;
  const auto ref = naive_rope(c.x, c.cos, c.sin, c.rows, c.heads, c.hd);
  QV_EXPECT_REL(run_rope<double>(c, false), ref, 1e-15);
  QV_EXPECT_REL(run_rope<float>(c, false), ref, 1e-6);
  EXPECT_EQ(run_rope<double>(c, true), run_rope<double>(c, false));
  EXPECT_EQ(run_rope<float>(c, true), run_rope<float>(c, false));
}

TEST(KernelsRope, BackwardMatchesFiniteDifferencesAndMayRunInPlace) {
  RopeCase c;
  const auto dy = random_vector(c.x.size(), 4);
  auto phi = [&] { return testing::dot(dy, naive_rope(c.x, c.cos, c.sin, c.rows, c.heads, c.hd)); };
  const auto dx = run_rope_backward<double>(c, dy, false);
  QV_EXPECT_REL(dx, numeric_grad(c.x, sample_indices(c.x.size(), c.x.size(), 0), phi), 1e-10);
  QV_EXPECT_REL(run_rope_backward<float>(c, dy, false), dx, 1e-6);
  EXPECT_EQ(run_rope_backward<double>(c, dy, true), dx);
  EXPECT_EQ(run_rope_backward<float>(c, dy, true), run_rope_backward<float>(c, dy, false));
}

TEST(KernelsRope, LargeInputUsesThreadsAndStillMatches) {
  RopeCase c;
  c.rows = 300, c.heads = 4, c.hd = 64;
  c.x = random_vector(c.rows * c.heads * c.hd, 5);
  c.cos = random_vector(c.rows * c.hd, 6);
  c.sin = random_vector(c.rows * c.hd, 7);
  QV_EXPECT_REL(run_rope<double>(c, true), naive_rope(c.x, c.cos, c.sin, c.rows, c.heads, c.hd),
                1e-15);
}

TEST(KernelsRope, OddHeadDimThrows) {
  std::vector<float> x(3), cs(3), sn(3), y(3);
  EXPECT_THROW(kernels::rope_forward<float>(x.data(), cs.data(), sn.data(), y.data(), 1, 1, 3),
               Error);
  EXPECT_THROW(kernels::rope_backward<float>(x.data(), cs.data(), sn.data(), y.data(), 1, 1, 3),
               Error);
}

}  // namespace
}  // namespace qv
