// Cross-entropy against a plain log-sum-exp; dlogits by finite differences.
#include <gtest/gtest.h>

#include <string>

#include "core/error.h"
#include "kernel_test_utils.h"
#include "kernels/cross_entropy.h"

namespace qv {
namespace {

using kernels::kIgnoreIndex;
using testing::cast_vector;
using testing::numeric_grad;
using testing::random_vector;
using testing::sample_indices;

kernels::CrossEntropyResult naive_ce(const std::vector<double>& logits,
                                     const std::vector<int64_t>& targets, int64_t V) {
  kernels::CrossEntropyResult r;
  for (size_t row = 0; row < targets.size(); ++row) {
    if (targets[row] == kIgnoreIndex) continue;
    long double mx = logits[row * V], sum = 0;
    for (int64_t j = 0; j < V; ++j) mx = std::max<long double>(mx, logits[row * V + j]);
    for (int64_t j = 0; j < V; ++j) sum += std::exp(logits[row * V + j] - mx);
    r.loss_sum += static_cast<double>(mx + std::log(sum) - logits[row * V + targets[row]]);
    ++r.kept;
  }
  return r;
}

struct CeCase {
  int64_t V = 11;
  std::vector<int64_t> targets = {3, kIgnoreIndex, 0, 10, kIgnoreIndex, 7};
  std::vector<double> logits;
  CeCase() {
    logits = random_vector(targets.size() * V, 1, -4, 4);
    logits[2 * V + 5] = 30;  // one dominant logit
  }
  int64_t rows() const { return static_cast<int64_t>(targets.size()); }
};

template <typename T>
std::pair<kernels::CrossEntropyResult, std::vector<double>> run_ce(const CeCase& c, double scale,
                                                                   bool want_grad, bool in_place) {
  auto x = cast_vector<T>(c.logits);
  std::vector<T> d(x.size(), T(5));  // garbage, including in ignored rows
  T* dptr = want_grad ? (in_place ? x.data() : d.data()) : nullptr;
  const auto r = kernels::cross_entropy<T>(x.data(), c.targets.data(), dptr, c.rows(), c.V,
                                           static_cast<T>(scale));
  return {r, cast_vector<double>(in_place ? x : d)};
}

TEST(KernelsCrossEntropy, LossMatchesLogSumExpAndSkipsIgnoredRows) {
  const CeCase c;
  const auto ref = naive_ce(c.logits, c.targets, c.V);
  EXPECT_EQ(ref.kept, 4);
  for (bool grad : {false, true}) {
    const auto [rd, gd] = run_ce<double>(c, 1.0, grad, false);
    EXPECT_EQ(rd.kept, 4);
    EXPECT_NEAR(rd.loss_sum, ref.loss_sum, 1e-13 * std::fabs(ref.loss_sum));
    const auto [rf, gf] = run_ce<float>(c, 1.0, grad, false);
    EXPECT_EQ(rf.kept, 4);
    EXPECT_NEAR(rf.loss_sum, ref.loss_sum, 1e-6 * std::fabs(ref.loss_sum));
  }
}

TEST(KernelsCrossEntropy, GradientMatchesFiniteDifferences) {
  CeCase c;
  const double scale = 0.25;
  const auto [r, grad] = run_ce<double>(c, scale, true, false);
  auto phi = [&] { return scale * naive_ce(c.logits, c.targets, c.V).loss_sum; };
  QV_EXPECT_REL(grad, numeric_grad(c.logits, sample_indices(c.logits.size(), 1000, 0), phi), 1e-10);
  // Ignored rows get exact zeros.
  for (int64_t row : {1, 4})
    for (int64_t j = 0; j < c.V; ++j) EXPECT_EQ(grad[row * c.V + j], 0.0);
  // In place (dlogits aliasing logits) gives the same numbers.
  const auto [r2, grad_in_place] = run_ce<double>(c, scale, true, true);
  EXPECT_EQ(r2.loss_sum, r.loss_sum);
  EXPECT_EQ(grad_in_place, grad);
  const auto [rf, gradf] = run_ce<float>(c, scale, true, false);
  QV_EXPECT_REL(gradf, grad, 1e-6);
  const auto [rf2, gradf_in_place] = run_ce<float>(c, scale, true, true);
  EXPECT_EQ(gradf_in_place, gradf);
}

TEST(KernelsCrossEntropy, HugeLogitsStayFinite) {
  CeCase c;
  for (double& v : c.logits) v = v * 1000 + 5e4;  // exp would overflow without the max shift
  const auto ref = naive_ce(c.logits, c.targets, c.V);
  const auto [rf, gradf] = run_ce<float>(c, 1.0, true, false);
  EXPECT_TRUE(std::isfinite(rf.loss_sum));
  EXPECT_NEAR(rf.loss_sum, ref.loss_sum, 1e-5 * std::fabs(ref.loss_sum));
  for (double g : gradf) EXPECT_TRUE(std::isfinite(g));
}

TEST(KernelsCrossEntropy, ManyRowsUseThreadsAndStillMatch) {
  CeCase c;
  c.V = 1000;
  c.targets.resize(300);
  for (size_t i = 0; i < c.targets.size(); ++i)
    c.targets[i] = i % 7 == 0 ? kIgnoreIndex : static_cast<int64_t>(i * 37 % c.V);
  c.logits = random_vector(c.targets.size() * c.V, 2, -5, 5);
  const auto ref = naive_ce(c.logits, c.targets, c.V);
  const auto [rd, gd] = run_ce<double>(c, 1.0, true, false);
  EXPECT_EQ(rd.kept, ref.kept);
  EXPECT_NEAR(rd.loss_sum, ref.loss_sum, 1e-12 * std::fabs(ref.loss_sum));
  // Each kept row of softmax - onehot sums to zero.
  for (size_t row = 0; row < c.targets.size(); ++row) {
    double s = 0;
    for (int64_t j = 0; j < c.V; ++j) s += gd[row * c.V + j];
    EXPECT_NEAR(s, 0.0, 1e-12);
  }
}

// The bf16-gradient form is the float form rounded afterwards, bit for bit (the same float
// arithmetic, then round to nearest even), with the same loss; ignored rows get +0. Rows long
// enough (V = 3000 x 40 rows) that the row loop runs in parallel. Also in place: each row's bf16
// gradient written into the first half of its own float row (ld = 2 V), the same bits.
TEST(KernelsCrossEntropy, Bf16GradientIsTheFloatGradientRounded) {
  const int64_t V = 3000, rows = 40;
  std::vector<int64_t> targets(rows);
  for (int64_t r = 0; r < rows; ++r) targets[r] = r % 7 == 3 ? kIgnoreIndex : (r * 977) % V;
  const std::vector<float> logits = cast_vector<float>(random_vector(rows * V, 21, -8, 8));
  std::vector<float> x32 = logits, d32(rows * V);
  const auto r32 =
      kernels::cross_entropy<float>(x32.data(), targets.data(), d32.data(), rows, V, 0.01f);
  std::vector<float> scratch = logits;
  std::vector<bf16> d16(rows * V, bf16{0x7fff});
  const auto r16 =
      kernels::cross_entropy(scratch.data(), targets.data(), d16.data(), V, rows, V, 0.01f);
  EXPECT_EQ(r16.loss_sum, r32.loss_sum);
  EXPECT_EQ(r16.kept, r32.kept);
  for (int64_t i = 0; i < rows * V; ++i) ASSERT_EQ(d16[i].bits, to_bf16(d32[i]).bits) << i;
  std::vector<float> in_place = logits;
  bf16* over = reinterpret_cast<bf16*>(in_place.data());
  const auto rp =
      kernels::cross_entropy(in_place.data(), targets.data(), over, 2 * V, rows, V, 0.01f);
  EXPECT_EQ(rp.loss_sum, r32.loss_sum);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < V; ++j)
      ASSERT_EQ(over[r * 2 * V + j].bits, to_bf16(d32[r * V + j]).bits) << r << " " << j;
}

TEST(KernelsCrossEntropy, TargetOutsideVocabularyThrows) {
  const CeCase good;
  for (int64_t bad : {int64_t{11}, int64_t{-1}, int64_t{-101}}) {
    CeCase c = good;
    c.targets[3] = bad;
    std::vector<float> x = cast_vector<float>(c.logits);
    try {
      kernels::cross_entropy<float>(x.data(), c.targets.data(), nullptr, c.rows(), c.V, 1.0f);
      ADD_FAILURE() << "no error for target " << bad;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("target " + std::to_string(bad)), std::string::npos) << msg;
      EXPECT_NE(msg.find("row 3"), std::string::npos) << msg;
    }
  }
}

}  // namespace
}  // namespace qv
