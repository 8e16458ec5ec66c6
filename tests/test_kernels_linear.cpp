// Linear layer and gemm against naive loops; backward by finite differences.
#include <gtest/gtest.h>

#include "kernel_test_utils.h"
#include "kernels/gemm.h"
#include "kernels/linear.h"

namespace qv {
namespace {

using testing::cast_vector;
using testing::numeric_grad;
using testing::pick;
using testing::random_vector;

// y[m,n] = sum_k x[m,k] w[n,k] (+ b[n]).
std::vector<double> naive_linear(const std::vector<double>& x, const std::vector<double>& w,
                                 const std::vector<double>* b, int64_t M, int64_t K, int64_t N) {
  std::vector<double> y(M * N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = b ? (*b)[n] : 0.0;
      for (int64_t k = 0; k < K; ++k) s += x[m * K + k] * w[n * K + k];
      y[m * N + n] = s;
    }
  return y;
}

template <typename T>
std::vector<double> run_linear(const std::vector<double>& x, const std::vector<double>& w,
                               const std::vector<double>* b, int64_t M, int64_t K, int64_t N) {
  const auto xt = cast_vector<T>(x), wt = cast_vector<T>(w);
  const std::vector<T> bt = b ? cast_vector<T>(*b) : std::vector<T>();
  std::vector<T> y(M * N, T(7));  // garbage: must be overwritten
  kernels::linear_forward<T>(xt.data(), wt.data(), b ? bt.data() : nullptr, y.data(), M, K, N);
  return cast_vector<double>(y);
}

TEST(KernelsLinear, ForwardMatchesNaive) {
  for (auto [M, K, N] :
       {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {7, 13, 5}, {33, 70, 45}}) {
    const auto x = random_vector(M * K, 1), w = random_vector(N * K, 2), b = random_vector(N, 3);
    for (const std::vector<double>* bias : {static_cast<const std::vector<double>*>(nullptr), &b}) {
      const auto ref = naive_linear(x, w, bias, M, K, N);
      QV_EXPECT_REL(run_linear<double>(x, w, bias, M, K, N), ref, 1e-14);
      QV_EXPECT_REL(run_linear<float>(x, w, bias, M, K, N), ref, 1e-6);
    }
  }
}

std::vector<double> naive_gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha,
                               const std::vector<double>& A, int64_t lda,
                               const std::vector<double>& B, int64_t ldb, double beta,
                               std::vector<double> C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += (ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
      C[i * ldc + j] = alpha * s + beta * C[i * ldc + j];
    }
  return C;
}

TEST(KernelsLinear, GemmAllTransposesWithLeadingDimensions) {
  const int64_t M = 6, N = 5, K = 7, pad = 3;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      SCOPED_TRACE(::testing::Message() << "trans_a " << ta << " trans_b " << tb);
      const int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
      const auto A = random_vector((ta ? K : M) * lda, 4), B = random_vector((tb ? N : K) * ldb, 5);
      const auto C0 = random_vector(M * ldc, 6);
      const auto ref = naive_gemm(ta, tb, M, N, K, 0.5, A, lda, B, ldb, -1.5, C0, ldc);
      auto C = C0;
      kernels::gemm<double>(ta, tb, M, N, K, 0.5, A.data(), lda, B.data(), ldb, -1.5, C.data(),
                            ldc);
      QV_EXPECT_REL(C, ref, 1e-14);
      auto Cf = cast_vector<float>(C0);
      const auto Af = cast_vector<float>(A), Bf = cast_vector<float>(B);
      kernels::gemm<float>(ta, tb, M, N, K, 0.5f, Af.data(), lda, Bf.data(), ldb, -1.5f, Cf.data(),
                           ldc);
      QV_EXPECT_REL(Cf, ref, 1e-6);
    }
}

TEST(KernelsLinear, GemmWithEmptyInnerDimensionScalesC) {
  std::vector<double> C = {1, 2, 3, 4}, A, B;
  kernels::gemm<double>(false, false, 2, 2, 0, 1.0, A.data(), 1, B.data(), 2, 2.0, C.data(), 2);
  EXPECT_EQ(C, (std::vector<double>{2, 4, 6, 8}));
  C = {std::nan(""), 2, 3, 4};  // beta == 0 overwrites, even NaN
  kernels::gemm<double>(false, false, 2, 2, 0, 1.0, A.data(), 1, B.data(), 2, 0.0, C.data(), 2);
  EXPECT_EQ(C, (std::vector<double>{0, 0, 0, 0}));
}

struct LinearGrads {
  std::vector<double> dx, dw, db;
};

template <typename T>
LinearGrads run_linear_backward(const std::vector<double>& x, const std::vector<double>& w,
                                const std::vector<double>& dy, int64_t M, int64_t K, int64_t N) {
  const auto xt = cast_vector<T>(x), wt = cast_vector<T>(w), dyt = cast_vector<T>(dy);
  std::vector<T> dx(M * K, T(5)), dw(N * K, T(0)), db(N, T(0));
  kernels::linear_backward<T>(xt.data(), wt.data(), dyt.data(), dx.data(), dw.data(), db.data(), M,
                              K, N);
  return {cast_vector<double>(dx), cast_vector<double>(dw), cast_vector<double>(db)};
}

TEST(KernelsLinear, BackwardMatchesFiniteDifferences) {
  const int64_t M = 9, K = 11, N = 6;
  auto x = random_vector(M * K, 10), w = random_vector(N * K, 11), b = random_vector(N, 12);
  const auto dy = random_vector(M * N, 13);
  // phi = sum(dy * y) has gradient exactly what backward computes for upstream gradient dy.
  auto phi = [&] { return testing::dot(dy, naive_linear(x, w, &b, M, K, N)); };
  const LinearGrads g = run_linear_backward<double>(x, w, dy, M, K, N);
  const auto all = [](size_t n) { return testing::sample_indices(n, n, 0); };
  QV_EXPECT_REL(g.dx, numeric_grad(x, all(x.size()), phi), 1e-10);
  QV_EXPECT_REL(g.dw, numeric_grad(w, all(w.size()), phi), 1e-10);
  QV_EXPECT_REL(g.db, numeric_grad(b, all(b.size()), phi), 1e-10);

  const LinearGrads gf = run_linear_backward<float>(x, w, dy, M, K, N);
  QV_EXPECT_REL(gf.dx, g.dx, 1e-6);
  QV_EXPECT_REL(gf.dw, g.dw, 1e-6);
  QV_EXPECT_REL(gf.db, g.db, 1e-6);
}

TEST(KernelsLinear, BackwardAccumulatesAndSkipsNulls) {
  const int64_t M = 40, K = 70, N = 90;  // N * M large enough for the threaded bias reduction
  const auto x = random_vector(M * K, 20), w = random_vector(N * K, 21),
             dy = random_vector(M * N, 22);
  const LinearGrads once = run_linear_backward<double>(x, w, dy, M, K, N);

  // dw and dbias accumulate; dx overwrites unless asked to accumulate.
  std::vector<double> dx(M * K, 3.0), dw(N * K, 0.0), db(N, 0.0);
  for (int rep = 0; rep < 2; ++rep)
    kernels::linear_backward<double>(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(),
                                     M, K, N);
  QV_EXPECT_REL(dx, once.dx, 1e-15);
  std::vector<double> twice_dw(once.dw), twice_db(once.db);
  for (double& v : twice_dw) v *= 2;
  for (double& v : twice_db) v *= 2;
  QV_EXPECT_REL(dw, twice_dw, 1e-15);
  QV_EXPECT_REL(db, twice_db, 1e-15);

  kernels::linear_backward<double>(x.data(), w.data(), dy.data(), dx.data(), nullptr, nullptr, M, K,
                                   N, /*accumulate_dx=*/true);
  std::vector<double> twice_dx(once.dx);
  for (double& v : twice_dx) v *= 2;
  QV_EXPECT_REL(dx, twice_dx, 1e-15);

  // Only dw requested: nothing else touched.
  std::vector<double> dw_only(N * K, 0.0);
  kernels::linear_backward<double>(x.data(), w.data(), dy.data(), nullptr, dw_only.data(), nullptr,
                                   M, K, N);
  QV_EXPECT_REL(dw_only, once.dw, 1e-15);
  // Only dbias requested.
  std::vector<double> db_only(N, 0.0);
  kernels::linear_backward<double>(x.data(), w.data(), dy.data(), nullptr, nullptr, db_only.data(),
                                   M, K, N);
  QV_EXPECT_REL(db_only, once.db, 1e-15);
}

TEST(KernelsLinear, NaiveColumnSumsGiveBiasGradient) {
  const int64_t M = 300, K = 3, N = 150;
  const auto x = random_vector(M * K, 30), w = random_vector(N * K, 31),
             dy = random_vector(M * N, 32);
  const LinearGrads g = run_linear_backward<float>(x, w, dy, M, K, N);
  std::vector<double> ref(N, 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) ref[n] += static_cast<float>(dy[m * N + n]);
  QV_EXPECT_REL(g.db, ref, 1e-6);
}

}  // namespace
}  // namespace qv
