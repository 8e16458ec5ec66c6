// RMSNorm and LayerNorm against plain formulas; backward by finite differences.
#include <gtest/gtest.h>
#include <omp.h>

#include "kernel_test_utils.h"
#include "kernels/norms.h"

namespace qv {
namespace {

using testing::cast_vector;
using testing::numeric_grad;
using testing::random_vector;
using testing::sample_indices;

std::vector<double> naive_rmsnorm(const std::vector<double>& x, const std::vector<double>& w,
                                  int64_t rows, int64_t D, double eps) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t j = 0; j < D; ++j) ss += x[r * D + j] * x[r * D + j];
    const double rs = 1 / std::sqrt(ss / D + eps);
    for (int64_t j = 0; j < D; ++j) y[r * D + j] = w[j] * x[r * D + j] * rs;
  }
  return y;
}

std::vector<double> naive_layernorm(const std::vector<double>& x, const std::vector<double>& w,
                                    const std::vector<double>& b, int64_t rows, int64_t D,
                                    double eps) {
  std::vector<double> y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int64_t j = 0; j < D; ++j) mean += x[r * D + j] / D;
    for (int64_t j = 0; j < D; ++j) var += (x[r * D + j] - mean) * (x[r * D + j] - mean) / D;
    for (int64_t j = 0; j < D; ++j)
      y[r * D + j] = (x[r * D + j] - mean) / std::sqrt(var + eps) * w[j] + b[j];
  }
  return y;
}

struct NormOut {
  std::vector<double> y, mean, rstd;
};

template <typename T>
NormOut run_rmsnorm(const std::vector<double>& x, const std::vector<double>& w, int64_t rows,
                    int64_t D, double eps) {
  const auto xt = cast_vector<T>(x), wt = cast_vector<T>(w);
  std::vector<T> y(x.size()), rstd(rows);
  kernels::rmsnorm_forward<T>(xt.data(), wt.data(), y.data(), rstd.data(), rows, D,
                              static_cast<T>(eps));
  return {cast_vector<double>(y), {}, cast_vector<double>(rstd)};
}

template <typename T>
NormOut run_layernorm(const std::vector<double>& x, const std::vector<double>& w,
                      const std::vector<double>& b, int64_t rows, int64_t D, double eps) {
  const auto xt = cast_vector<T>(x), wt = cast_vector<T>(w), bt = cast_vector<T>(b);
  std::vector<T> y(x.size()), mean(rows), rstd(rows);
  kernels::layernorm_forward<T>(xt.data(), wt.data(), bt.data(), y.data(), mean.data(), rstd.data(),
                                rows, D, static_cast<T>(eps));
  return {cast_vector<double>(y), cast_vector<double>(mean), cast_vector<double>(rstd)};
}

TEST(KernelsNorms, RmsNormForwardMatchesFormula) {
  for (auto [rows, D] : {std::pair<int64_t, int64_t>{1, 1}, {5, 37}, {300, 130}}) {
    const auto x = random_vector(rows * D, 1, -2, 2), w = random_vector(D, 2, 0.5, 1.5);
    const auto ref = naive_rmsnorm(x, w, rows, D, 1e-6);
    QV_EXPECT_REL(run_rmsnorm<double>(x, w, rows, D, 1e-6).y, ref, 1e-14);
    QV_EXPECT_REL(run_rmsnorm<float>(x, w, rows, D, 1e-6).y, ref, 1e-6);
  }
}

TEST(KernelsNorms, RmsNormOfZeroRowIsZero) {
  const std::vector<double> x(8, 0.0), w(8, 1.0);
  const NormOut out = run_rmsnorm<float>(x, w, 1, 8, 1e-6);
  EXPECT_EQ(out.y, x);
  EXPECT_NEAR(out.rstd[0], 1000.0, 1e-3);
}

TEST(KernelsNorms, LayerNormForwardMatchesFormula) {
  for (auto [rows, D] : {std::pair<int64_t, int64_t>{1, 2}, {5, 37}, {300, 130}}) {
    const auto x = random_vector(rows * D, 3, -2, 2), w = random_vector(D, 4, 0.5, 1.5),
               b = random_vector(D, 5);
    const auto ref = naive_layernorm(x, w, b, rows, D, 1e-6);
    QV_EXPECT_REL(run_layernorm<double>(x, w, b, rows, D, 1e-6).y, ref, 1e-14);
    QV_EXPECT_REL(run_layernorm<float>(x, w, b, rows, D, 1e-6).y, ref, 1e-6);
  }
}

TEST(KernelsNorms, LayerNormRowWithLargeMeanKeepsItsVariance) {
  // A one-pass E[x^2] - E[x]^2 would lose all digits of the variance here.
  const int64_t D = 64;
  auto x = random_vector(D, 6);
  for (double& v : x) v += 1e4;
  const std::vector<double> w(D, 1.0), b(D, 0.0);
  QV_EXPECT_REL(run_layernorm<float>(x, w, b, 1, D, 1e-6).y, naive_layernorm(x, w, b, 1, D, 1e-6),
                2e-3);  // float input rounding at 1e4 is ~5e-4 absolute
  QV_EXPECT_REL(run_layernorm<double>(x, w, b, 1, D, 1e-6).y, naive_layernorm(x, w, b, 1, D, 1e-6),
                1e-10);
}

struct NormGrads {
  std::vector<double> dx, dw, db;
};

template <typename T>
NormGrads rmsnorm_grads(const std::vector<double>& x, const std::vector<double>& w,
                        const std::vector<double>& dy, int64_t rows, int64_t D, double eps) {
  const auto xt = cast_vector<T>(x), wt = cast_vector<T>(w), dyt = cast_vector<T>(dy);
  std::vector<T> y(x.size()), rstd(rows), dx(x.size(), T(9)), dw(D, T(0));
  kernels::rmsnorm_forward<T>(xt.data(), wt.data(), y.data(), rstd.data(), rows, D,
                              static_cast<T>(eps));
  kernels::rmsnorm_backward<T>(xt.data(), wt.data(), rstd.data(), dyt.data(), dx.data(), dw.data(),
                               rows, D);
  return {cast_vector<double>(dx), cast_vector<double>(dw), {}};
}

template <typename T>
NormGrads layernorm_grads(const std::vector<double>& x, const std::vector<double>& w,
                          const std::vector<double>& b, const std::vector<double>& dy, int64_t rows,
                          int64_t D, double eps) {
  const auto xt = cast_vector<T>(x), wt = cast_vector<T>(w), bt = cast_vector<T>(b),
             dyt = cast_vector<T>(dy);
  std::vector<T> y(x.size()), mean(rows), rstd(rows), dx(x.size(), T(9)), dw(D, T(0)), db(D, T(0));
  kernels::layernorm_forward<T>(xt.data(), wt.data(), bt.data(), y.data(), mean.data(), rstd.data(),
                                rows, D, static_cast<T>(eps));
  kernels::layernorm_backward<T>(xt.data(), wt.data(), mean.data(), rstd.data(), dyt.data(),
                                 dx.data(), dw.data(), db.data(), rows, D);
  return {cast_vector<double>(dx), cast_vector<double>(dw), cast_vector<double>(db)};
}

TEST(KernelsNorms, RmsNormBackwardMatchesFiniteDifferences) {
  const int64_t rows = 6, D = 13;
  const double eps = 1e-2;  // a large eps so its part of the derivative is visible
  auto x = random_vector(rows * D, 10, -2, 2), w = random_vector(D, 11, 0.5, 1.5);
  const auto dy = random_vector(rows * D, 12);
  auto phi = [&] { return testing::dot(dy, naive_rmsnorm(x, w, rows, D, eps)); };
  const NormGrads g = rmsnorm_grads<double>(x, w, dy, rows, D, eps);
  QV_EXPECT_REL(g.dx, numeric_grad(x, sample_indices(x.size(), x.size(), 0), phi), 1e-9);
  QV_EXPECT_REL(g.dw, numeric_grad(w, sample_indices(w.size(), w.size(), 0), phi), 1e-9);
  const NormGrads gf = rmsnorm_grads<float>(x, w, dy, rows, D, eps);
  QV_EXPECT_REL(gf.dx, g.dx, 1e-5);
  QV_EXPECT_REL(gf.dw, g.dw, 1e-5);
}

TEST(KernelsNorms, LayerNormBackwardMatchesFiniteDifferences) {
  const int64_t rows = 6, D = 13;
  const double eps = 1e-2;
  auto x = random_vector(rows * D, 20, -2, 2), w = random_vector(D, 21, 0.5, 1.5),
       b = random_vector(D, 22);
  const auto dy = random_vector(rows * D, 23);
  auto phi = [&] { return testing::dot(dy, naive_layernorm(x, w, b, rows, D, eps)); };
  const NormGrads g = layernorm_grads<double>(x, w, b, dy, rows, D, eps);
  QV_EXPECT_REL(g.dx, numeric_grad(x, sample_indices(x.size(), x.size(), 0), phi), 1e-9);
  QV_EXPECT_REL(g.dw, numeric_grad(w, sample_indices(w.size(), w.size(), 0), phi), 1e-9);
  QV_EXPECT_REL(g.db, numeric_grad(b, sample_indices(b.size(), b.size(), 0), phi), 1e-9);
  const NormGrads gf = layernorm_grads<float>(x, w, b, dy, rows, D, eps);
  QV_EXPECT_REL(gf.dx, g.dx, 1e-5);
  QV_EXPECT_REL(gf.dw, g.dw, 1e-5);
  QV_EXPECT_REL(gf.db, g.db, 1e-5);
}

TEST(KernelsNorms, WeightGradientsAccumulateAndNullsAreSkipped) {
  // Big enough for the threaded column-block reductions.
  const int64_t rows = 700, D = 150;
  const auto x = random_vector(rows * D, 30), w = random_vector(D, 31, 0.5, 1.5),
             b = random_vector(D, 32), dy = random_vector(rows * D, 33);
  const NormGrads rms = rmsnorm_grads<double>(x, w, dy, rows, D, 1e-6);
  const NormGrads ln = layernorm_grads<double>(x, w, b, dy, rows, D, 1e-6);
  auto doubled = [](std::vector<double> v) {
    for (double& e : v) e *= 2;
    return v;
  };

  std::vector<double> y(x.size()), mean(rows), rstd(rows), dx(x.size()), dw(D, 0.0), db(D, 0.0);
  kernels::rmsnorm_forward<double>(x.data(), w.data(), y.data(), rstd.data(), rows, D, 1e-6);
  for (int rep = 0; rep < 2; ++rep)
    kernels::rmsnorm_backward<double>(x.data(), w.data(), rstd.data(), dy.data(), dx.data(),
                                      dw.data(), rows, D);
  QV_EXPECT_REL(dw, doubled(rms.dw), 1e-15);
  QV_EXPECT_REL(dx, rms.dx, 1e-15);
  std::fill(dx.begin(), dx.end(), 0.0);
  kernels::rmsnorm_backward<double>(x.data(), w.data(), rstd.data(), dy.data(), dx.data(), nullptr,
                                    rows, D);
  QV_EXPECT_REL(dx, rms.dx, 1e-15);

  std::fill(dw.begin(), dw.end(), 0.0);
  kernels::layernorm_forward<double>(x.data(), w.data(), b.data(), y.data(), mean.data(),
                                     rstd.data(), rows, D, 1e-6);
  for (int rep = 0; rep < 2; ++rep)
    kernels::layernorm_backward<double>(x.data(), w.data(), mean.data(), rstd.data(), dy.data(),
                                        dx.data(), dw.data(), db.data(), rows, D);
  QV_EXPECT_REL(dw, doubled(ln.dw), 1e-15);
  QV_EXPECT_REL(db, doubled(ln.db), 1e-15);
  QV_EXPECT_REL(dx, ln.dx, 1e-15);
  std::vector<double> db_only(D, 0.0);
  kernels::layernorm_backward<double>(x.data(), w.data(), mean.data(), rstd.data(), dy.data(),
                                      dx.data(), nullptr, db_only.data(), rows, D);
  QV_EXPECT_REL(db_only, ln.db, 1e-15);
  std::vector<double> dw_only(D, 0.0);
  kernels::layernorm_backward<double>(x.data(), w.data(), mean.data(), rstd.data(), dy.data(),
                                      dx.data(), dw_only.data(), nullptr, rows, D);
  QV_EXPECT_REL(dw_only, ln.dw, 1e-15);
  QV_EXPECT_REL(dx, ln.dx, 1e-15);
}

TEST(KernelsNorms, WeightGradientsDoNotDependOnThreadCount) {
  const int64_t rows = 1000, D = 96;  // many row chunks, as for the per-head q/k norms
  const auto x = random_vector(rows * D, 40), w = random_vector(D, 41, 0.5, 1.5),
             b = random_vector(D, 42), dy = random_vector(rows * D, 43);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const NormGrads rms1 = rmsnorm_grads<float>(x, w, dy, rows, D, 1e-6);
  const NormGrads ln1 = layernorm_grads<float>(x, w, b, dy, rows, D, 1e-6);
  omp_set_num_threads(3);
  const NormGrads rms3 = rmsnorm_grads<float>(x, w, dy, rows, D, 1e-6);
  const NormGrads ln3 = layernorm_grads<float>(x, w, b, dy, rows, D, 1e-6);
  omp_set_num_threads(saved);
  EXPECT_EQ(rms1.dw, rms3.dw);
  EXPECT_EQ(rms1.dx, rms3.dx);
  EXPECT_EQ(ln1.dw, ln3.dw);
  EXPECT_EQ(ln1.db, ln3.db);
  EXPECT_EQ(ln1.dx, ln3.dx);
}

}  // namespace
}  // namespace qv
